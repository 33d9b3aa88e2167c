-- The seed protocol end to end: the real binary, real sockets, scripts/default.lua.
local ws = require "ws"
local server = require "server"

describe("default script over WebSocket", function()
  local srv

  setup(function() srv = server.start() end)
  teardown(function() assert.equals(0, srv:stop()) end)

  it("replies to the first message with the login line", function()
    local c = ws.login(srv.port, "alice")
    c:close()
  end)

  it("refuses a bad uid and lets the client try again on the same connection", function()
    local c = assert(ws.connect(srv.port))
    c:send("all")
    assert.matches("^login failed:", (c:receive()))
    c:send("a:b")
    assert.matches("^login failed:", (c:receive()))
    c:send("")
    assert.matches("^login failed:", (c:receive()))
    c:send(string.rep("x", 129))
    assert.matches("^login failed:", (c:receive()))
    c:send("carol")
    assert.equals("login success, your uid is carol", c:receive())
    c:close()
  end)

  it("routes uid:message to every connection of that uid, keeping later colons", function()
    local a = ws.login(srv.port, "r-alice")
    local b1, b2 = ws.login(srv.port, "r-bob"), ws.login(srv.port, "r-bob")
    a:send("r-bob:see you at 12:30:00")
    assert.equals("see you at 12:30:00", b1:receive())
    assert.equals("see you at 12:30:00", b2:receive())
    assert.is_true(a:silent())
    for _, c in ipairs { a, b1, b2 } do c:close() end
  end)

  it("sends all:message to every logged-in connection, the sender included", function()
    local a, b = ws.login(srv.port, "b-alice"), ws.login(srv.port, "b-bob")
    local unbound = assert(ws.connect(srv.port))
    a:send("all:hello everyone")
    assert.equals("hello everyone", a:receive())
    assert.equals("hello everyone", b:receive())
    assert.is_true(unbound:silent())
    for _, c in ipairs { a, b, unbound } do c:close() end
  end)

  it("drops a message to an offline uid silently and keeps serving", function()
    local a = ws.login(srv.port, "o-alice")
    a:send("o-nobody:anyone?")
    assert.is_true(a:silent())
    a:send("o-alice:me")
    assert.equals("me", a:receive())
    a:close()
  end)

  it("answers a message without a colon with an error line", function()
    local a = ws.login(srv.port, "e-alice")
    a:send("no colon here")
    assert.matches("^error:", (a:receive()))
    a:close()
  end)

  it("keeps other connections of a uid reachable after one closes", function()
    local a = ws.login(srv.port, "c-alice")
    local b1, b2 = ws.login(srv.port, "c-bob"), ws.login(srv.port, "c-bob")
    b1:close()
    a:send("c-bob:still here?")
    assert.equals("still here?", b2:receive())
    a:send("all:x")
    assert.equals("x", a:receive())
    assert.equals("x", b2:receive())
    a:close()
    b2:close()
  end)

  it("removes the binding of a connection that vanished without a close frame", function()
    local http = require "http"
    local a = ws.login(srv.port, "v-alice")
    local b = ws.login(srv.port, "v-bob")
    local function connections(uid)
      local _, _, body = http.request1(srv.push_port, "GET", "/online?uid=" .. uid)
      return http.json(body).connections
    end
    assert.equals(1, connections("v-bob"))
    b.sock:close()
    assert.truthy(server.eventually(function() return connections("v-bob") == 0 end))
    a:send("v-bob:into the void")
    a:send("v-alice:ok")
    assert.equals("ok", a:receive()) -- nothing else arrived first, and the sender is fine
    a:close()
  end)

  it("delivers a binary message as binary after login", function()
    local a, b = ws.login(srv.port, "bin-alice"), ws.login(srv.port, "bin-bob")
    a:send("bin-bob:\0\1\2\255", true)
    local data, binary = b:receive()
    assert.equals("\0\1\2\255", data)
    assert.is_true(binary)
    a:close()
    b:close()
  end)

  it("refuses a binary message before login", function()
    local c = assert(ws.connect(srv.port))
    c:send("alice", true)
    assert.matches("^login failed:", (c:receive()))
    c:close()
  end)

  it("carries UTF-8 text unchanged", function()
    local a, b = ws.login(srv.port, "u-alice"), ws.login(srv.port, "ü-bøb")
    local text = "héllo wörld — 你好 🌍"
    a:send("ü-bøb:" .. text)
    assert.equals(text, b:receive())
    a:close()
    b:close()
  end)

  it("carries a 200 KB payload intact", function()
    local a, b = ws.login(srv.port, "big-alice"), ws.login(srv.port, "big-bob")
    local chunk = {}
    for i = 1, 200 * 1024 do chunk[i] = string.char(97 + i % 26) end
    local payload = table.concat(chunk)
    a:send("big-bob:" .. payload)
    assert.equals(payload, b:receive(10))
    a:close()
    b:close()
  end)

  it("delivers 5,000 messages in order with none lost", function()
    local a, b = ws.login(srv.port, "seq-alice"), ws.login(srv.port, "seq-bob")
    local frames = {}
    for i = 1, 5000 do frames[i] = ws.frame { opcode = ws.OP.text, payload = "seq-bob:" .. i } end
    a:send_raw(table.concat(frames))
    for i = 1, 5000 do
      local got = b:receive(10)
      if got ~= tostring(i) then
        assert.equals(tostring(i), got)
      end
    end
    assert.is_true(b:silent())
    a:close()
    b:close()
  end)
end)
