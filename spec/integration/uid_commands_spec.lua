-- The backend's hands on a uid's connections: disconnect, join and leave, from the push API
-- and from Lua, on every node of a cluster.
local ws = require "ws"
local http = require "http"
local server = require "server"
local cluster = require "cluster"

local function post(node, target)
  local status, _, body = http.request1(node.push_port, "POST", target, { body = "" })
  return status, body
end

describe("POST /disconnect, /join, /leave", function()
  local srv

  setup(function() srv = server.start() end)
  teardown(function() assert.equals(0, srv:stop()) end)

  it("closes every connection of the uid with 1000 and says how many", function()
    local a1, a2 = ws.login(srv.port, "k-alice"), ws.login(srv.port, "k-alice")
    local other = ws.login(srv.port, "k-other")
    local status, body = post(srv, "/disconnect?uid=k-alice")
    assert.equals(200, status)
    assert.same({ disconnected = 2 }, http.json(body))
    assert.equals(1000, a1:expect_close())
    assert.equals(1000, a2:expect_close())
    assert.is_true(other:silent())
    other:close()
  end)

  it("closes with the code and reason given", function()
    local c = ws.login(srv.port, "k-code")
    post(srv, "/disconnect?uid=k-code&code=4001&reason=kicked%20out")
    local code, reason = c:expect_close()
    assert.equals(4001, code)
    assert.equals("kicked out", reason)
  end)

  it("refuses a bad code, a missing uid or group, and GET", function()
    assert.equals(400, (post(srv, "/disconnect?uid=x&code=1005")))
    assert.equals(400, (post(srv, "/disconnect?uid=x&code=abc")))
    assert.equals(400, (post(srv, "/disconnect")))
    assert.equals(400, (post(srv, "/join?uid=x")))
    assert.equals(400, (post(srv, "/leave?group=g")))
    assert.equals(405, (http.request1(srv.push_port, "GET", "/join?uid=x&group=g")))
  end)

  it("makes every connection of the uid join a group, and leave it", function()
    local c1, c2 = ws.login(srv.port, "k-member"), ws.login(srv.port, "k-member")
    local status, body = post(srv, "/join?uid=k-member&group=k-room")
    assert.equals(200, status)
    assert.same({ joined = 2 }, http.json(body))
    local _, _, sent = http.request1(srv.push_port, "POST", "/send?group=k-room", { body = "to the room" })
    assert.same({ delivered = 2 }, http.json(sent))
    assert.equals("to the room", c1:receive())
    assert.equals("to the room", c2:receive())
    assert.same({ left = 2 }, http.json(select(2, post(srv, "/leave?uid=k-member&group=k-room"))))
    _, _, sent = http.request1(srv.push_port, "POST", "/send?group=k-room", { body = "anyone?" })
    assert.same({ delivered = 0 }, http.json(sent))
    c1:close()
    c2:close()
  end)
end)

describe("uidcast.disconnect, join and leave in Lua", function()
  local srv

  setup(function()
    srv = server.start { script = server.script([[
      local uidcast = require "uidcast"
      return {
        on_open = function(conn, req) if req.query.uid then conn:bind(req.query.uid) end end,
        on_message = function(conn, data)
          local ok, a = pcall(assert(load("local uidcast = ... " .. data)), uidcast)
          conn:send(tostring(ok) .. " " .. tostring(a))
        end }
    ]]) }
  end)
  teardown(function() assert.equals(0, srv:stop()) end)

  it("closes, joins and leaves the uid's connections and returns how many", function()
    local target = assert(ws.connect(srv.port, { path = "/?uid=l-bob" }))
    local admin = assert(ws.connect(srv.port))
    admin:send("return uidcast.join('l-bob', 'l-room')")
    assert.equals("true 1", admin:receive())
    admin:send("return uidcast.send_group('l-room', 'hi room')")
    assert.equals("true 1", admin:receive())
    assert.equals("hi room", target:receive())
    admin:send("return uidcast.leave('l-bob', 'l-room')")
    assert.equals("true 1", admin:receive())
    admin:send("return uidcast.disconnect('l-bob', 4002, 'bye')")
    assert.equals("true 1", admin:receive())
    assert.same({ 4002, "bye" }, { target:expect_close() })
    admin:send("return uidcast.disconnect('l-bob', 1005)")
    assert.matches("^false .*close code must be", (admin:receive()))
    admin:close()
  end)
end)

describe("disconnect, join and leave across a cluster", function()
  local r, a, b

  setup(function() r, a, b = cluster.start(2) end)
  teardown(function() cluster.stop(r, a, b) end)

  it("closes the uid's connections on every node and counts them all", function()
    local on_a, on_b = ws.login(a.port, "c-kick"), ws.login(b.port, "c-kick")
    local status, body = post(a, "/disconnect?uid=c-kick&code=4003")
    assert.equals(200, status)
    assert.same({ disconnected = 2 }, http.json(body))
    assert.equals(4003, on_a:expect_close())
    assert.equals(4003, on_b:expect_close())
  end)

  it("makes the uid's connections on another node join and leave a group", function()
    local on_b = ws.login(b.port, "c-join")
    assert.same({ joined = 1 }, http.json(select(2, post(a, "/join?uid=c-join&group=c-room"))))
    assert(server.eventually(function()
      local _, _, sent = http.request1(b.push_port, "POST", "/send?group=c-room", { body = "room" })
      return http.json(sent).delivered == 1
    end))
    assert.equals("room", on_b:receive())
    post(a, "/leave?uid=c-join&group=c-room")
    assert(server.eventually(function()
      local _, _, sent = http.request1(b.push_port, "POST", "/send?group=c-room", { body = "x" })
      return http.json(sent).delivered == 0
    end))
    on_b:close()
  end)
end)
