-- Heartbeats and hostile pacing: pings to the silent, 1001 for the dead, 1008 for messages that
-- never end or come in too many pieces.
local ws = require "ws"
local server = require "server"
local socket = require "socket"

local OP = ws.OP

describe("liveness", function()
  local srv

  setup(function()
    srv = server.start { args = { "--ping-interval", "0.3", "--idle-timeout", "1.2",
                                  "--message-timeout", "0.8", "--max-fragments", "16" } }
  end)
  teardown(function() assert.equals(0, srv:stop()) end)

  it("pings a silent client, keeps one that answers, and closes one that does not", function()
    local good, dead = ws.login(srv.port, "alive"), ws.login(srv.port, "dead")
    local pings = 0
    local deadline = socket.gettime() + 3 * server.slowdown
    while socket.gettime() < deadline do
      local op, payload = good:receive_frame(0.1)
      if op == OP.ping then
        pings = pings + 1
        good:send_frame { opcode = OP.pong, payload = payload }
      end
    end
    assert.is_true(pings >= 2)
    good:send("alive:still here")
    assert.equals("still here", good:receive())
    -- the silent one was pinged, then closed with 1001
    local op = dead:receive_frame(1)
    assert.equals(OP.ping, op)
    assert.equals(1001, (dead:expect_close()))
    assert.truthy(srv:log():find("nothing heard for", 1, true))
    good:close()
  end)

  it("does not close a client that keeps sending messages without answering pings", function()
    local chatty = ws.login(srv.port, "chatty")
    local deadline = socket.gettime() + 2 * server.slowdown
    while socket.gettime() < deadline do
      chatty:send("chatty:x")
      socket.sleep(0.2)
    end
    chatty:send("chatty:last")
    local got
    repeat got = chatty:receive(1) until got ~= "x"
    assert.equals("last", got)
    chatty:close()
  end)

  it("closes with 1008 a message with more empty fragments than --max-fragments", function()
    local c = assert(ws.connect(srv.port))
    c:send_frame { opcode = OP.text, payload = "a", fin = false }
    for _ = 1, 17 do c:send_frame { opcode = OP.continuation, payload = "", fin = false } end
    assert.equals(1008, (c:expect_close()))
  end)

  it("passes a message within --max-message whatever its fragmentation", function()
    -- almost 1 MiB (the default --max-message) in 64-byte fragments: 16,384 of them, a
    -- thousand times --max-fragments, as Autobahn's cases 9.3.x send
    local c = ws.login(srv.port, "frag")
    local message = "frag:" .. string.rep("0123456789abcdef", 65535)
    local frames = {}
    for i = 1, #message, 64 do
      frames[#frames + 1] = ws.frame { opcode = i == 1 and OP.text or OP.continuation,
                                       payload = message:sub(i, i + 63), fin = i + 64 > #message }
    end
    assert(c:send_raw(table.concat(frames)))
    assert.equals(#message - 5, #assert(c:receive(5 * server.slowdown)))
    c:close()
  end)

  it("closes with 1008 a single frame trickled in past --message-timeout", function()
    local c = assert(ws.connect(srv.port))
    local frame = ws.frame { opcode = OP.text, payload = string.rep("t", 100) }
    local t0 = socket.gettime()
    local code
    for i = 1, #frame do
      if not c:send_raw(frame:sub(i, i)) then break end
      local payload, err, close_code = c:receive(0.05)
      if err == "close" then code = close_code break end
      if payload == nil and err ~= "timeout" then break end
      if socket.gettime() - t0 > 5 * server.slowdown then break end
    end
    assert.equals(1008, code)
    assert.is_true(socket.gettime() - t0 < 3 * server.slowdown)
  end)

  it("accepts a message of exactly --max-fragments fragments", function()
    local c = assert(ws.connect(srv.port))
    c:send_frame { opcode = OP.text, payload = "f", fin = false }
    for _ = 1, 14 do c:send_frame { opcode = OP.continuation, payload = "f", fin = false } end
    c:send_frame { opcode = OP.continuation, payload = "f" }
    assert.equals("login success, your uid is " .. string.rep("f", 16), c:receive())
    c:close()
  end)

  it("closes with 1008 a fragmented message left unfinished past --message-timeout", function()
    local c = assert(ws.connect(srv.port))
    c:send_frame { opcode = OP.text, payload = "never", fin = false }
    local t0 = socket.gettime()
    assert.equals(1008, (c:expect_close(5 * server.slowdown)))
    assert.is_true(socket.gettime() - t0 < 3 * server.slowdown)
  end)
end)

describe("--allow-origin", function()
  local srv

  setup(function()
    srv = server.start { args = { "--allow-origin", "https://app.example",
                                  "--allow-origin", "http://localhost:8080" } }
  end)
  teardown(function() assert.equals(0, srv:stop()) end)

  it("accepts a listed origin", function()
    local c = assert(ws.connect(srv.port, { headers = { "Origin: https://app.example" } }))
    c:close()
    c = assert(ws.connect(srv.port, { headers = { "Origin: http://localhost:8080" } }))
    c:close()
  end)

  it("refuses another origin, or none, with 403", function()
    local c, status = ws.connect(srv.port, { headers = { "Origin: https://evil.example" } })
    assert.is_nil(c)
    assert.equals(403, status)
    c, status = ws.connect(srv.port)
    assert.is_nil(c)
    assert.equals(403, status)
  end)
end)

describe("extensions", function()
  it("never negotiates permessage-deflate", function()
    local srv = server.start()
    local s = ws.tcp(srv.port)
    s:send(ws.handshake_request {
      headers = { "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits" } })
    local status, headers = ws.read_http_response(s)
    assert.equals(101, status)
    assert.is_nil(headers["sec-websocket-extensions"])
    s:close()
    assert.equals(0, srv:stop())
  end)
end)
