-- The Debian package: dpkg-buildpackage builds uidcast_<version>_<arch>.deb from a copy of
-- the tree, lintian finds no error, and the package installed on this machine runs as its
-- unit would (the uidcast user, the installed script and config) and serves.
local ws = require "ws"
local server = require "server"

local sh = server.sh

describe("the Debian package #no_memcheck", function()
  local dir, deb, version

  setup(function()
    assert(os.execute("command -v dpkg-buildpackage >/dev/null"), "dpkg-buildpackage is missing: make test-deps")
    version = server.read_file(server.ROOT .. "/core/cli.h"):match('#define UC_VERSION "([^"]+)"')
    dir = os.tmpname()
    os.remove(dir)
    local ok, out = sh(("mkdir -p %s/src && cd %s && git ls-files -z | xargs -0 cp --parents -t %s/src")
      :format(dir, server.ROOT, dir))
    assert(ok, out)
    ok, out = sh(("cd %s/src && dpkg-buildpackage -us -uc -b"):format(dir))
    assert(ok, out:sub(-3000))
    local _, arch = sh("dpkg --print-architecture")
    deb = ("%s/uidcast_%s_%s.deb"):format(dir, version, arch:match("%S+"))
  end)
  teardown(function() os.execute("rm -rf " .. dir) end)

  it("is named uidcast_<version>_<arch>.deb, the version the binary says", function()
    assert.truthy(server.read_file(deb), deb .. " was not built")
    local changelog = server.read_file(server.ROOT .. "/debian/changelog")
    assert.equals(version, changelog:match("^uidcast %(([^)]+)%)"))
  end)

  it("has no lintian error", function()
    local ok, out = sh("lintian --fail-on error " .. deb)
    assert.truthy(ok, out)
  end)

  it("depends on the libraries it links (shlibs) and keeps /etc/uidcast/uidcast.conf as a conffile", function()
    local _, info = sh("dpkg-deb -I " .. deb)
    for _, lib in ipairs { "libev4", "libwslay1", "liblua5.4%-0", "libhiredis", "libjansson4", "libcurl4",
                           "libinih1", "libssl3", "libsodium23", "adduser" } do
      assert.matches("Depends:[^\n]*" .. lib, info)
    end
    local _, conffiles = sh("dpkg-deb --ctrl-tarfile " .. deb .. " | tar -xOf - ./conffiles")
    assert.matches("/etc/uidcast/uidcast.conf", conffiles)
  end)

  it("installs, runs as the uidcast user with the installed script, serves, and purges", function()
    if sh("dpkg -s uidcast") then
      pending("uidcast is installed on this machine already; not touching it")
      return
    end
    local ok, out = sh("dpkg -i " .. deb)
    assert.truthy(ok, out)
    local _, user = sh("id -u uidcast")
    assert.matches("^%d+", user)
    local unit = server.read_file("/lib/systemd/system/uidcast.service")
    assert.matches("\nUser=uidcast\n", unit)
    assert.matches("\nExecStart=/usr/bin/uidcast %$UIDCAST_OPTS\n", unit)
    -- As the unit runs it: the uidcast user, the packaged binary, its defaults.
    local bin = server.BIN
    server.BIN = "/usr/bin/uidcast"
    local srv = server.start { prefix = "setpriv --reuid=uidcast --regid=uidcast --init-groups",
                               script = "/usr/share/uidcast/scripts/default.lua" }
    server.BIN = bin
    local c = ws.login(srv.port, "packaged")
    c:send("packaged:hello from the .deb")
    assert.equals("hello from the .deb", c:receive())
    c:close()
    local _, owner = sh("ps -o user= -p " .. srv.pid)
    assert.matches("uidcast", owner)
    assert.equals(0, srv:stop())
    ok, out = sh("dpkg --purge uidcast")
    assert.truthy(ok, out)
    assert.is_nil(server.read_file("/usr/bin/uidcast"))
    assert.is_nil(server.read_file("/etc/uidcast/uidcast.conf"))
  end)
end)
