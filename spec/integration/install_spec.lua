-- make install and make uninstall: what a packager or an operator gets, in a scratch DESTDIR.
local server = require "server"

local sh = server.sh

describe("make install #no_memcheck", function()
  local dest

  setup(function()
    dest = os.tmpname()
    os.remove(dest)
    local ok, out = sh(("make -C %s install DESTDIR=%s PREFIX=/usr"):format(server.ROOT, dest))
    assert(ok, out)
  end)
  teardown(function() os.execute("rm -rf " .. dest) end)

  it("installs the binary, the scripts, the man page, the unit and the README under PREFIX", function()
    for _, f in ipairs { "/usr/bin/uidcast", "/usr/share/uidcast/scripts/default.lua",
                         "/usr/share/uidcast/scripts/auth_token.lua", "/usr/share/uidcast/scripts/rooms.lua",
                         "/usr/share/man/man1/uidcast.1", "/usr/lib/systemd/system/uidcast.service",
                         "/usr/share/doc/uidcast/README.md" } do
      assert.truthy(server.read_file(dest .. f), f .. " missing")
    end
  end)

  it("gives a binary that runs the installed default script, and defaults to its final path", function()
    local ok, out = sh(("%s/usr/bin/uidcast --check %s/usr/share/uidcast/scripts/default.lua"):format(dest, dest))
    assert.truthy(ok, out)
    assert.matches("is OK", out)
    local _, help = sh(dest .. "/usr/bin/uidcast --help")
    assert.matches("%(default /usr/share/uidcast/scripts/default%.lua%)", help)
  end)

  it("writes a man page that documents every option, the signals and the exit status", function()
    local man = server.read_file(dest .. "/usr/share/man/man1/uidcast.1")
    assert.matches('%.TH UIDCAST "1"', man)
    local _, help = sh(server.BIN .. " --help")
    for name in help:gmatch("%-%-([%a][%a%-]+)") do
      assert.truthy(man:find("\\-\\-" .. name:gsub("%-", "\\-"), 1, true), "--" .. name .. " not in the man page")
    end
    assert.truthy(man:find("SIGHUP", 1, true))
    assert.truthy(man:find("Exit status", 1, true))
  end)

  it("ships a unit that runs the installed paths and keeps secrets in an environment file", function()
    local unit = server.read_file(dest .. "/usr/lib/systemd/system/uidcast.service")
    assert.matches("ExecStart=/usr/bin/uidcast %$UIDCAST_OPTS\n", unit)
    assert.matches("EnvironmentFile=%-/etc/uidcast/uidcast%.env", unit)
    assert.falsy(unit:find("Environment=UIDCAST_PUSH_TOKEN", 1, true))
    assert.falsy(unit:find("@PREFIX@", 1, true))
    -- Ordered after a local Redis only in the cluster variant, a drop-in shipped as an example.
    assert.falsy(unit:find("redis", 1, true))
    local dropin = server.read_file(dest .. "/usr/share/doc/uidcast/cluster.conf")
    assert.matches("\n%[Unit%]\nWants=redis%-server%.service\nAfter=redis%-server%.service\n", dropin)
  end)

  it("ships a unit that systemd-analyze verifies and rates as well confined", function()
    if not os.execute("command -v systemd-analyze >/dev/null 2>&1") then
      pending("systemd-analyze is not on this machine")
      return
    end
    -- the unit pointed at the DESTDIR copy, so that verify finds the binary it names
    local unit = server.read_file(dest .. "/usr/lib/systemd/system/uidcast.service")
      :gsub("/usr/bin/uidcast", dest .. "/usr/bin/uidcast")
      :gsub("/usr/share/uidcast", dest .. "/usr/share/uidcast")
    local path = dest .. "/uidcast.service"
    local f = assert(io.open(path, "w"))
    f:write(unit)
    f:close()
    local ok, out = sh("systemd-analyze verify --man=no " .. path)
    assert.truthy(ok, out)
    local _, rating = sh("systemd-analyze security --offline=true " .. path)
    local exposure = tonumber(rating:match("Overall exposure level for [^:]+: ([%d.]+)"))
    assert.truthy(exposure and exposure <= 2.0, rating:sub(-300))
    os.remove(path)
  end)

  it("installs the example config as /etc/uidcast/uidcast.conf, never over an operator's", function()
    local conf = server.read_file(dest .. "/etc/uidcast/uidcast.conf")
    assert.matches("\n# listen = 127%.0%.0%.1:1234\n", conf)
    assert.matches("\n# script = /usr/share/uidcast/scripts/default%.lua\n", conf)
    assert.equals(conf, server.read_file(dest .. "/usr/share/doc/uidcast/uidcast.conf"))
    server.write_file(dest .. "/etc/uidcast/uidcast.conf", "listen = 127.0.0.1:9\n")
    local ok, out = sh(("make -C %s install DESTDIR=%s PREFIX=/usr"):format(server.ROOT, dest))
    assert(ok, out)
    assert.equals("listen = 127.0.0.1:9\n", server.read_file(dest .. "/etc/uidcast/uidcast.conf"))
    local _, help = sh(dest .. "/usr/bin/uidcast --help")
    assert.matches("%-%-config FILE.-%(default /etc/uidcast/uidcast%.conf%)", help)
  end)

  it("is taken away again by make uninstall, all but the operator's config", function()
    local ok, out = sh(("make -C %s uninstall DESTDIR=%s PREFIX=/usr"):format(server.ROOT, dest))
    assert.truthy(ok, out)
    local _, left = sh("find " .. dest .. " -type f")
    assert.equals(dest .. "/etc/uidcast/uidcast.conf\n", left)
  end)
end)
