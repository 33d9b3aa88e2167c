-- The README's examples, taken from README.md as a reader would copy them and run against the
-- real server: if the text drifts from the behaviour, this fails.
local ws = require "ws"
local server = require "server"
local socket = require "socket"

local README = assert(server.read_file(server.ROOT .. "/README.md"))

-- The first fenced block of that language after the marker text.
local function block(lang, after)
  local from = assert(README:find(after, 1, true), "README has no " .. after)
  return assert(README:match("```" .. lang .. "\n(.-)```", from), "no " .. lang .. " block after " .. after)
end

local function run(cmd)
  local out = os.tmpname()
  local ok = os.execute(cmd .. " >" .. out .. " 2>&1")
  local text = server.read_file(out)
  os.remove(out)
  return ok, text
end

describe("README", function()
  it("its Lua example script logs in by token and answers an offline target", function()
    local srv = server.start { script = server.script(block("lua", "## Writing a policy in Lua")) }
    local hmac = function(uid) -- HMAC-SHA256("change me", uid), as the example's comment says
      local _, out = run(("printf %%s %s | openssl dgst -sha256 -hmac 'change me' -r"):format(server.shell_quote(uid)))
      return out:match("^(%x+)")
    end
    local c, status = ws.connect(srv.port, { path = "/?uid=ann&token=bad" })
    assert.is_nil(c)
    assert.equals(401, status)
    local ann = assert(ws.connect(srv.port, { path = "/?uid=ann&token=" .. hmac("ann") }))
    local bob = assert(ws.connect(srv.port, { path = "/?uid=bob&token=" .. hmac("bob") }))
    ann:send("bob:hello")
    assert.equals("ann says hello", bob:receive())
    ann:send("carol:are you there")
    assert.equals("error: carol is offline", ann:receive())
    assert.is_true(bob:silent(0.2))
    ann:close()
    bob:close()
    assert.equals(0, srv:stop())
  end)

  it("its Python push snippet returns the count and raises with the server's reason", function()
    local srv = server.start { args = { "--push-token", "s3cret" } }
    local alice = ws.login(srv.port, "alice")
    local script = server.script((block("python", "From Python:") .. [[

import sys
os.environ["UIDCAST_PUSH_TOKEN"] = "s3cret"
print(uidcast_send("alice", "from python"))
os.environ["UIDCAST_PUSH_TOKEN"] = "wrong"
try:
    uidcast_send("alice", "x")
except RuntimeError as e:
    print(e)
]]):gsub("127%.0%.0%.1:1235", "127.0.0.1:" .. srv.push_port))
    local ok, out = run("python3 " .. script)
    assert.truthy(ok, out)
    assert.equals("1\nuidcast: missing or wrong Authorization: Bearer token\n", out)
    assert.equals("from python", alice:receive())
    alice:close()
    assert.equals(0, srv:stop())
  end)

  it("its PHP push snippet returns the count, and throws when the server is down", function()
    local srv = server.start()
    local alice = ws.login(srv.port, "alice")
    local php = block("php", "From PHP"):gsub("127%.0%.0%.1:1235", "127.0.0.1:" .. srv.push_port)
    php = php:gsub("^<%?php\n", "<?php\nputenv('UIDCAST_PUSH_TOKEN=');\n")
    local path = server.script(php)
    local ok, out = run("php " .. path)
    assert.truthy(ok, out)
    assert.equals("1\n", out)
    assert.equals("your order has shipped", alice:receive())
    alice:close()
    assert.equals(0, srv:stop())
    local t0 = socket.gettime()
    ok, out = run("php " .. path)
    assert.is_not_true(ok)
    assert.matches("uidcast unreachable", out)
    assert.is_true(socket.gettime() - t0 < 3)
  end)

  it("its nginx block forwards the client's address and outlasts --ping-interval", function()
    local nginx = block("nginx", "TLS with nginx in front")
    assert.matches("proxy_set_header X%-Forwarded%-For %$remote_addr;", nginx)
    local timeout = tonumber(nginx:match("proxy_read_timeout (%d+)s"))
    assert.is_true(timeout > 60, "proxy_read_timeout must exceed --ping-interval and --idle-timeout")
    -- Its access log leaves the query string (the login token) out.
    local format = assert(nginx:match("log_format uidcast ('[^']*');"))
    assert.is_nil(format:find("$request ", 1, true) or format:find("$request_uri", 1, true)
      or format:find("$args", 1, true) or format:find("$query_string", 1, true), format)
    assert.matches("access_log %S+ uidcast;", nginx)
  end)

  it("its keep example answers the number the message is kept under", function()
    local srv = server.start()
    local cmd = block("sh", "## Kept messages"):match("^(curl[^\n]*)")
    local ok, out = run(cmd:gsub("127%.0%.0%.1:1235", "127.0.0.1:" .. srv.push_port))
    assert.truthy(ok, out)
    assert.matches('^{"delivered":0,"seq":%d+}$', out)
    assert.equals(0, srv:stop())
  end)

  it("its browser client logs in, resumes after the number it saw and reports a gap", function()
    -- Node 20+ has the browser's WebSocket (behind a flag before 22); localStorage is a table.
    local srv = server.start { args = { "--mailbox-max-messages", "2" } }
    local js = block("js", "A minimal browser client"):gsub("127%.0%.0%.1:1234", "127.0.0.1:" .. srv.port)
    local push = function(body)
      local http = require "http"
      local _, _, answer = http.request1(srv.push_port, "POST", "/send?uid=alice&keep=60", { body = body })
      return tonumber(answer:match('"seq":(%d+)'))
    end
    local first = push("one")
    for _, m in ipairs { "two", "three", "four" } do push(m) end
    local path = os.tmpname() .. ".js"
    local f = assert(io.open(path, "w"))
    f:write("globalThis.localStorage = { last: '", first, "' };\n", js,
            "\nsetTimeout(() => { console.log('last=' + localStorage.last); process.exit(0); }, 1000);\n")
    f:close()
    local ok, out = run("node --experimental-websocket " .. path .. " 2>&1 | grep -v ExperimentalWarning")
    os.remove(path)
    assert.truthy(ok, out)
    assert.equals(table.concat({
      "login success, your uid is alice",
      ("missed %d %d"):format(first + 1, first + 1),
      "three", "four", "last=" .. (first + 3) }, "\n") .. "\n", out:gsub("[^\n]*node %-%-trace%-warnings[^\n]*\n", ""))
    assert.equals(0, srv:stop())
  end)
end)
