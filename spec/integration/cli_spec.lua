-- The command line: --help, --version, --check, bad options, and the signals.
local ws = require "ws"
local server = require "server"

-- Runs the binary with args; returns exit status, stdout, stderr.
local function run(args)
  local out, err = os.tmpname(), os.tmpname()
  local ok, _, code = os.execute(("%s %s >%s 2>%s </dev/null"):format(
    server.shell_quote(server.BIN), args, out, err))
  local o, e = server.read_file(out), server.read_file(err)
  os.remove(out)
  os.remove(err)
  return ok and 0 or code, o, e
end

describe("uidcast command line", function()
  it("--help documents every option and exits 0", function()
    local code, out = run("--help")
    assert.equals(0, code)
    for _, opt in ipairs { "--listen", "--max-message", "--max-send-buffer", "--max-connections",
                           "--handshake-timeout", "--close-timeout", "--drain-timeout",
                           "--ping-interval", "--idle-timeout", "--max-fragments",
                           "--message-timeout", "--allow-origin", "--push", "--push-token", "--redis", "--workers",
                           "--push-timeout", "--presence-ttl", "--max-groups-per-connection",
                           "--lua-timeout", "--lua-budget", "--lua-memory", "--redis-timeout",
                           "--redis-max-pending",
                           "--log-level", "--check", "--version", "SIGHUP", "SIGTERM" } do
      assert.truthy(out:find(opt, 1, true), opt .. " missing from --help")
    end
  end)

  it("--help and the README's option table name the same options with the same defaults", function()
    local _, out = run("--help")
    local help = {}
    local current
    for line in out:gmatch("[^\n]+") do
      local name = line:match("^  %-?%a?,?%s+%-%-([%a%-]+)")
      if name then current = name; help[name] = false end
      local default = line:match("%(default ([^)]+)%)")
      if current and default and not default:find("^env") and not default:find("^none") then
        help[current] = default
      end
    end
    local readme = server.read_file(server.ROOT .. "/README.md")
    local table_text = readme:match("## Command line(.-)\n## ")
    local documented = {}
    for row in table_text:gmatch("\n(| `[^\n]+)") do
      row = row:gsub("\\|", "/") -- an escaped pipe inside a cell
      for name in row:match("^| ([^|]+) |"):gmatch("%-%-([%a%-]+)") do
        documented[name] = row:match("^| [^|]+ | ([^|]*) |") or ""
      end
    end
    for name, default in pairs(help) do
      assert.truthy(documented[name], "--" .. name .. " is missing from the README's option table")
      if default then
        assert.truthy(documented[name]:find("`" .. default .. "`", 1, true),
                      ("--%s: README says %s, --help says %s"):format(name, documented[name], default))
      end
    end
    for name in pairs(documented) do
      assert.is_not_nil(help[name], "--" .. name .. " is in the README but not in --help")
    end
  end)

  it("--log-format json writes one JSON object per line: time, level, pid, event, msg, fields", function()
    local srv = server.start {
      args = { "--log-format", "json" },
      script = server.script([[local uidcast = require "uidcast"
        return { on_start = function() uidcast.log("warn", 'say "hi"\n\\ \255 done') end,
                 on_message = function() error("boom") end }]]),
    }
    local c = assert(ws.connect(srv.port))
    c:send("x")
    assert(server.eventually(function() return srv:log():find("lua.error", 1, true) end))
    c:close()
    local log = srv:log()
    assert.equals(0, srv:stop())
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(srv:log())
    f:close()
    local ok = os.execute(("python3 -c %s < %s"):format(server.shell_quote([[
import json, sys
lines = [json.loads(l) for l in sys.stdin if l.strip()]
keys = {"time", "level", "pid", "event", "msg"}
assert all(keys <= set(l) <= keys | {"fields"} for l in lines), lines
assert any(l["msg"] == '[lua] say "hi"\n\\ \u00ff done' and l["level"] == "warn" for l in lines), lines
events = {l["event"]: l.get("fields") for l in lines}
assert events["server.listening"]["url"].startswith("ws://127.0.0.1:"), events
assert events["server.started"]["version"] and events["server.started"]["script"], events
assert "boom" in events["lua.error"]["error"] and events["lua.error"]["handler"] == "on_message", events
assert events["server.stopping"]["signal"] == "SIGTERM", events
assert "server.stopped" in events, events
]]), path))
    os.remove(path)
    assert.truthy(ok, log)
  end)

  it("--push-token-file takes the push token from a file", function()
    local http = require "http"
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write("from-a-file\n")
    f:close()
    local srv = server.start { args = { "--push-token-file", path } }
    assert.equals(401, (http.request1(srv.push_port, "GET", "/stats")))
    assert.equals(200, (http.request1(srv.push_port, "GET", "/stats",
                                       { headers = { "Authorization: Bearer from-a-file" } })))
    assert.equals(0, srv:stop())
    os.remove(path)
  end)

  it("--version prints the version, the commit and the libraries it runs with, and exits 0", function()
    local code, out = run("--version")
    assert.equals(0, code)
    assert.matches("^uidcast %d+%.%d+%.%d+ %(commit [%w+]+%)\n", out)
    for _, lib in ipairs { "libev %d+%.%d+", "wslay [%d.]+", "Lua 5%.4%.%d+", "hiredis %d+%.%d+%.%d+",
                           "http%-parser %d+%.%d+%.%d+", "OpenSSL %d+%.%d+" } do
      assert.matches(lib, out)
    end
  end)

  it("--check accepts the default script", function()
    local code, out, err = run("--check scripts/default.lua")
    assert.equals("", err)
    assert.equals(0, code)
    assert.matches("is OK", out)
  end)

  it("--check warns about a misspelled handler and names the one it meant", function()
    local path = server.script("return { on_mesage = function() end, on_frobnicate = 1, helper = 2 }\n")
    local code, _, err = run("--check " .. path)
    assert.equals(0, code)
    assert.truthy(err:find("on_mesage is not a handler uidcast calls (did you mean on_message?)", 1, true), err)
    assert.truthy(err:find("on_frobnicate is not a handler uidcast calls", 1, true), err)
    assert.falsy(err:find("helper", 1, true), err)
  end)

  it("--check reports a syntax error with file and line and exits 1", function()
    local path = server.script("local M = {}\nfunction M.on_message(\n  oops oops\nend\nreturn M\n")
    local code, _, err = run("--check " .. path)
    assert.equals(1, code)
    assert.truthy(err:find(path .. ":3:", 1, true), err)
  end)

  it("--check reports a runtime error in the main chunk with its line", function()
    local path = server.script("local x = nil\n\nreturn x.field\n")
    local code, _, err = run("--check " .. path)
    assert.equals(1, code)
    assert.truthy(err:find(path .. ":3:", 1, true), err)
  end)

  it("--check refuses a script that does not return a table of handlers", function()
    local code, _, err = run("--check " .. server.script("return 42\n"))
    assert.equals(1, code)
    assert.matches("must return a table of handlers, not number", err)
    code, _, err = run("--check " .. server.script("return { on_message = 'nope' }\n"))
    assert.equals(1, code)
    assert.matches("on_message must be a function", err)
  end)

  it("--check reports a missing script", function()
    local code, _, err = run("--check /nonexistent/script.lua")
    assert.equals(1, code)
    assert.matches("cannot open /nonexistent/script.lua", err)
  end)

  for _, case in ipairs {
    { "--bogus", "unknown option '%-%-bogus'" },
    { "--listen", "needs a value" },
    { "--listen nowhere", "expected HOST:PORT" },
    { "--listen 127.0.0.1:99999", "port must be a number from 0 to 65535" },
    { "--max-message 0", "%-%-max%-message takes a byte count" },
    { "--max-message lots", "%-%-max%-message takes a byte count" },
    { "--max-send-buffer -5", "%-%-max%-send%-buffer takes a byte count" },
    { "--max-connections x", "%-%-max%-connections takes a whole number" },
    { "--handshake-timeout 0", "%-%-handshake%-timeout takes a positive number" },
    { "--log-level loud", "%-%-log%-level takes error, warn, info or debug" },
    { "--ping-interval 30 --idle-timeout 20", "must be longer than %-%-ping%-interval" },
    { "--max-fragments 0", "%-%-max%-fragments takes a whole number from 1 to 100000000" },
    { "--push-token-file /nonexistent/token", "%-%-push%-token%-file takes a readable file" },
    { "--log-format yaml", "%-%-log%-format takes text or json" },
    { "--max-groups-per-connection 0", "%-%-max%-groups%-per%-connection takes a whole number from 1 to 100000000" },
    { "--lua-timeout 0", "%-%-lua%-timeout takes a number of seconds, at least 0%.001" },
    { "--redis-timeout 0.01", "%-%-redis%-timeout takes a number of seconds, at least 0%.05" },
    { "--redis-max-pending 1k", "%-%-redis%-max%-pending takes a byte count of at least 64k" },
    { "--push somewhere", "expected HOST:PORT" },
    { "--redis localhost:6379", "%-%-redis takes a URL such as redis://" },
    { "--workers 0", "%-%-workers takes a whole number from 1 to 256" },
    { "--presence-ttl 0.5", "%-%-presence%-ttl takes a number of seconds, at least 1" },
    { "--push-token ''", "%-%-push%-token takes a value that is not empty" },
    { "a.lua b.lua", "unexpected argument 'b.lua'" },
  } do
    it("rejects '" .. case[1] .. "' with a clear message and exit 2", function()
      local code, _, err = run(case[1])
      assert.equals(2, code)
      assert.matches(case[2], err)
      assert.matches("Try 'uidcast %-%-help'", err)
    end)
  end

  it("exits 1 with a clear message when the port is taken", function()
    local srv = server.start()
    local code, _, err = run("--listen 127.0.0.1:" .. srv.port)
    assert.equals(1, code)
    assert.matches("cannot listen on 127%.0%.0%.1:%d+: Address already in use", err)
    assert.equals(0, srv:stop())
  end)

  it("listens on an IPv6 literal", function()
    local srv = server.start { args = { "--listen", "[::1]:0" } }
    assert.truthy(srv:log():find("listening on ws://[::1]:", 1, true))
    assert.equals(0, srv:stop())
  end)
end)

describe("signals", function()
  it("SIGTERM closes every connection with 1001 and exits 0", function()
    local srv = server.start()
    local a, b = ws.login(srv.port, "t-a"), ws.login(srv.port, "t-b")
    srv:signal("TERM")
    assert.equals(1001, (a:expect_close()))
    assert.equals(1001, (b:expect_close()))
    a:send_frame { opcode = ws.OP.close, payload = "\3\233" }
    b:send_frame { opcode = ws.OP.close, payload = "\3\233" }
    assert.equals(0, srv:wait(3))
  end)

  it("SIGINT stops the server the same way", function()
    local srv = server.start()
    local a = ws.login(srv.port, "i-a")
    srv:signal("INT")
    assert.equals(1001, (a:expect_close()))
    assert.equals(0, srv:wait(5))
  end)

  it("SIGTERM exits within the drain timeout even when clients never answer", function()
    local srv = server.start { args = { "--drain-timeout", "0.5", "--close-timeout", "5" } }
    local a = ws.login(srv.port, "deaf")
    srv:signal("TERM")
    assert.equals(0, srv:wait(3))
    a.sock:close()
  end)
end)

describe("uidcast --config", function()
  local function config(text)
    local path = os.tmpname()
    server.write_file(path, text)
    return path
  end

  it("reads options from the file, the command line overriding them", function()
    local path = config("# chat\nmax-message = 2k\n\nallow-origin = https://a.example\n")
    local srv = server.start { args = { "--config", path } }
    local function login()
      local c = assert(ws.connect(srv.port, { headers = { "Origin: https://a.example" } }))
      c:send("cfg")
      assert.equals("login success, your uid is cfg", c:receive())
      return c
    end
    local c = login()
    c:send("cfg:" .. string.rep("x", 3000))
    assert.equals(1009, c:expect_close())
    local refused = { ws.connect(srv.port, { headers = { "Origin: https://b.example" } }) }
    assert.equals(403, refused[2])
    assert.equals(0, srv:stop())
    srv = server.start { args = { "--config", path, "--max-message", "4k" } }
    c = login()
    c:send("cfg:" .. string.rep("x", 3000))
    assert.equals(string.rep("x", 3000), c:receive())
    c:close()
    assert.equals(0, srv:stop())
    os.remove(path)
  end)

  it("names the file and line of a bad line, and --check checks the file too", function()
    local path = config("listen = 127.0.0.1:0\n\nmax-message = lots\n")
    local code, _, err = run("--config " .. path .. " --check")
    assert.equals(2, code)
    assert.matches(path:gsub("%p", "%%%0") .. ":3: max%-message takes a byte count", err)
    for text, why in pairs {
      ["bogus = 1\n"] = ":1: unknown option 'bogus'",
      ["check = 1\n"] = ":1: check is for the command line only",
      ["just words\n"] = ':1: expected "name = value"',
      ["[section]\nlisten = x\n"] = "sections are not used",
      ["# long\nlua-path = /" .. string.rep("a", 300) .. "\n"] = ":2: a line longer than 198 bytes",
    } do
      local bad = config(text)
      code, _, err = run("-c " .. bad)
      assert.equals(2, code)
      assert.truthy(err:find(why, 1, true), err)
      os.remove(bad)
    end
    code, _, err = run("--config /nonexistent/uidcast.conf")
    assert.equals(2, code)
    assert.matches("/nonexistent/uidcast.conf: No such file", err)
    local good = config("script = " .. server.ROOT .. "/scripts/rooms.lua\n")
    local out
    code, out = run("--config=" .. good .. " --check")
    assert.equals(0, code)
    assert.matches("rooms.lua are OK", out)
    os.remove(path)
    os.remove(good)
  end)

  it("ships dist/uidcast.conf naming every option of --help, each default valid", function()
    local _, help = run("--help")
    local example = server.read_file(server.ROOT .. "/dist/uidcast.conf")
    for name in help:gmatch("\n  [%-%a, ]-%-%-([%a%-]+)") do
      if name ~= "help" and name ~= "version" and name ~= "check" and name ~= "config" then
        assert.truthy(example:find("\n# " .. name .. " = ", 1, true), name .. " missing from dist/uidcast.conf")
      end
    end
    -- Uncommented, the lines that show a default make a file uidcast accepts.
    local lines = {}
    for name, value in example:gmatch("\n# ([%a%-]+) = ([^\n]*)") do
      if not value:match("^[A-Z]") and name ~= "script" then lines[#lines + 1] = name .. " = " .. value end
    end
    local path = config(table.concat(lines, "\n") .. "\n")
    local code, out, err = run("--config " .. path .. " --check " .. server.ROOT .. "/scripts/default.lua")
    assert.equals(0, code, err)
    assert.matches("are OK", out)
    os.remove(path)
  end)
end)
