-- Frames from clients, good and hostile: the exact close code, and the server still serving.
local ws = require "ws"
local server = require "server"

local OP = ws.OP

describe("WebSocket framing", function()
  local srv

  setup(function() srv = server.start { args = { "--max-message", "65536" } } end)
  teardown(function() assert.equals(0, srv:stop()) end)

  local function still_serving()
    local c = ws.login(srv.port, "healthy")
    c:send("healthy:ok")
    assert.equals("ok", c:receive())
    c:close()
  end

  it("reassembles a fragmented message", function()
    local c = assert(ws.connect(srv.port))
    c:send_frame { opcode = OP.text, payload = "frag", fin = false }
    c:send_frame { opcode = OP.continuation, payload = "men", fin = false }
    c:send_frame { opcode = OP.continuation, payload = "ted" }
    assert.equals("login success, your uid is fragmented", c:receive())
    c:close()
  end)

  it("answers a ping in the middle of a fragmented message with a pong", function()
    local c = assert(ws.connect(srv.port))
    c:send_frame { opcode = OP.text, payload = "pi", fin = false }
    c:send_frame { opcode = OP.ping, payload = "are you there" }
    local op, payload = c:receive_frame()
    assert.equals(OP.pong, op)
    assert.equals("are you there", payload)
    c:send_frame { opcode = OP.continuation, payload = "ng" }
    assert.equals("login success, your uid is ping", c:receive())
    c:close()
  end)

  it("echoes the client's close code in the close handshake", function()
    local c = assert(ws.connect(srv.port))
    assert.equals(4001, c:close(4001))
  end)

  it("closes the TCP connection first once the close handshake is complete", function()
    local c = assert(ws.connect(srv.port))
    c:send_frame { opcode = OP.close, payload = "\3\232" }
    assert.equals(1000, (c:expect_close()))
    c.sock:settimeout(2 * server.slowdown)
    local data, err = c.sock:receive(1)
    assert.is_nil(data)
    assert.equals("closed", err)
    c.sock:close()
  end)

  for _, case in ipairs {
    { "an unmasked frame", { opcode = OP.text, payload = "x", mask = false }, 1002 },
    { "a reserved bit", { opcode = OP.text, payload = "x", rsv = 4 }, 1002 },
    { "a reserved opcode", { opcode = 3, payload = "x" }, 1002 },
    { "a fragmented ping", { opcode = OP.ping, payload = "x", fin = false }, 1002 },
    { "a control frame over 125 bytes", { opcode = OP.ping, payload = string.rep("p", 126) },
      1002 },
    { "a continuation with nothing to continue", { opcode = OP.continuation, payload = "x" },
      1002 },
    { "text that is not UTF-8", { opcode = OP.text, payload = "bad \xff\xfe utf8" }, 1007 },
    { "text with a truncated UTF-8 sequence", { opcode = OP.text, payload = "end \xe2\x82" },
      1007 },
    { "a message over --max-message", { opcode = OP.text, payload = string.rep("a", 65537) },
      1009 },
    { "a frame declaring 2^62 bytes", { opcode = OP.binary, length = 1 << 62, payload = "xyz" }, 1009 },
    { "an invalid close code", { opcode = OP.close, payload = "\3\237" }, 1002 },
    { "a close frame with a 1-byte payload", { opcode = OP.close, payload = "\3" }, 1002 },
  } do
    it("closes on " .. case[1] .. " with " .. case[3], function()
      local c = assert(ws.connect(srv.port))
      c:send_frame(case[2])
      assert.equals(case[3], (c:expect_close()))
      still_serving()
    end)
  end

  it("closes on invalid UTF-8 split across fragments with 1007", function()
    local c = assert(ws.connect(srv.port))
    c:send_frame { opcode = OP.text, payload = "ok \xe2", fin = false }
    c:send_frame { opcode = OP.continuation, payload = "\x28 not a continuation byte" }
    assert.equals(1007, (c:expect_close()))
  end)

  it("closes on fragments that add up to more than --max-message with 1009", function()
    local c = assert(ws.connect(srv.port))
    c:send_frame { opcode = OP.binary, payload = string.rep("a", 40000), fin = false }
    c:send_frame { opcode = OP.continuation, payload = string.rep("a", 40000) }
    assert.equals(1009, (c:expect_close()))
  end)

  it("closes on garbage bytes after the handshake with 1002", function()
    local c = assert(ws.connect(srv.port))
    c:send_raw("\255\255\255\255 this is not a frame")
    assert.equals(1002, (c:expect_close()))
    still_serving()
  end)

  it("accepts a message of exactly --max-message bytes", function()
    local a, b = ws.login(srv.port, "max-a"), ws.login(srv.port, "max-b")
    local payload = string.rep("m", 65536 - #"max-b:")
    a:send("max-b:" .. payload)
    assert.equals(payload, b:receive())
    a:close()
    b:close()
  end)

  it("reads a burst far larger than one read's turn in full", function()
    -- 2.2 MB in one write: the server reads a few buffers per turn and must come back for the
    -- rest even though the sender sends nothing more.
    local sink = ws.login(srv.port, "sink")
    local burst = ws.login(srv.port, "burst")
    local n = 20000
    local one = ws.frame { opcode = OP.text, payload = "sink:" .. string.rep("x", 100) }
    assert(burst:send_raw(string.rep(one, n) .. ws.frame { opcode = OP.text, payload = "sink:end" }))
    for i = 1, n do
      local got, err = sink:receive()
      assert(got == string.rep("x", 100), "message " .. i .. ": " .. tostring(got or err))
    end
    assert.equals("end", sink:receive())
    sink:close()
    burst:close()
  end)

  it("keeps delivering to healthy clients while others send garbage", function()
    local a, b = ws.login(srv.port, "h-a"), ws.login(srv.port, "h-b")
    for i = 1, 20 do
      local bad = assert(ws.connect(srv.port))
      bad:send_raw(string.rep(string.char(i * 7 % 256), 64))
      a:send("h-b:" .. i)
      assert.equals(tostring(i), b:receive())
      bad.sock:close()
    end
    a:close()
    b:close()
  end)
end)
