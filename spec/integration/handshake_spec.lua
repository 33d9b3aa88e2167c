-- The HTTP upgrade (RFC 6455 section 4.2): what is accepted, and the exact answer to what is not.
local ws = require "ws"
local server = require "server"
local socket = require "socket"

local KEY = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="

-- Sends raw request bytes; returns the status, headers and body of the answer.
local function ask(port, request)
  local s = ws.tcp(port)
  s:send(request)
  local status, headers, body = ws.read_http_response(s)
  s:close()
  return status, headers, body
end

local function request(lines) return table.concat(lines, "\r\n") .. "\r\n\r\n" end

describe("WebSocket upgrade", function()
  local srv

  setup(function() srv = server.start { args = { "--handshake-timeout", "1" } } end)
  teardown(function() assert.equals(0, srv:stop()) end)

  it("answers a valid upgrade with 101 and the RFC's accept key", function()
    local c = assert(ws.connect(srv.port))
    c:close()
  end)

  it("accepts Connection as a comma list and header names in any case", function()
    local status, headers = ask(srv.port, request {
      "GET /chat?x=1 HTTP/1.1", "host: example", "UPGRADE: WebSocket",
      "connection: keep-alive, Upgrade", "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==",
      "SEC-WEBSOCKET-VERSION: 13" })
    assert.equals(101, status)
    assert.equals("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", headers["sec-websocket-accept"])
  end)

  describe("a request head that arrives in several reads", function()
    -- The head in two writes with frames behind its second part: the server buffers the
    -- head, and the frames that follow it in the same read must reach the script intact.
    local function split_login(uid, tail)
      local s = ws.tcp(srv.port)
      local head = ws.handshake_request()
      assert(s:send(head:sub(1, 10)))
      socket.sleep(0.05)
      assert(s:send(head:sub(11) .. ws.frame { opcode = ws.OP.text, payload = uid } .. (tail or "")))
      local status = ws.read_http_response(s)
      assert.equals(101, status)
      return setmetatable({ sock = s, port = srv.port }, ws)
    end

    it("feeds the frames pipelined behind the head's last part", function()
      local c = split_login("split-alice")
      assert.equals("login success, your uid is split-alice", c:receive())
      c:close()
    end)

    it("keeps a 20 kB message that follows the head in the same read", function()
      local big = string.rep("x", 20000)
      local c = split_login("split-bob", ws.frame { opcode = ws.OP.text, payload = "split-bob:" .. big })
      assert.equals("login success, your uid is split-bob", c:receive())
      assert.equals(big, c:receive())
      c:close()
    end)
  end)

  it("lets a refused client finish sending and still read the refusal", function()
    -- a 200 kB head: the 431 is written after 8 KiB while the rest is on its way
    local s = ws.tcp(srv.port)
    assert(s:send("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " .. string.rep("b", 200000) .. "\r\n\r\n"))
    local status = ws.read_http_response(s)
    assert.equals(431, status)
    s:close()
  end)

  it("answers a plain GET with 426 Upgrade Required", function()
    local status, headers = ask(srv.port, request { "GET / HTTP/1.1", "Host: x" })
    assert.equals(426, status)
    assert.equals("websocket", headers["upgrade"])
  end)

  it("answers another WebSocket version with 426 and Sec-WebSocket-Version: 13", function()
    local status, headers = ask(srv.port, request {
      "GET / HTTP/1.1", "Host: x", "Upgrade: websocket", "Connection: Upgrade", KEY,
      "Sec-WebSocket-Version: 8" })
    assert.equals(426, status)
    assert.equals("13", headers["sec-websocket-version"])
  end)

  for _, case in ipairs {
    { "a POST", { "POST / HTTP/1.1", "Host: x", "Upgrade: websocket", "Connection: Upgrade", KEY,
                  "Sec-WebSocket-Version: 13", "Content-Length: 0" } },
    { "HTTP/1.0", { "GET / HTTP/1.0", "Host: x", "Upgrade: websocket", "Connection: Upgrade", KEY,
                    "Sec-WebSocket-Version: 13" } },
    { "a missing Host", { "GET / HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade", KEY,
                          "Sec-WebSocket-Version: 13" } },
    { "a missing Sec-WebSocket-Key", { "GET / HTTP/1.1", "Host: x", "Upgrade: websocket",
                                       "Connection: Upgrade", "Sec-WebSocket-Version: 13" } },
    { "a key that is not 16 bytes of base64", { "GET / HTTP/1.1", "Host: x",
        "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: c2hvcnQ=",
        "Sec-WebSocket-Version: 13" } },
    { "a key with invalid base64", { "GET / HTTP/1.1", "Host: x", "Upgrade: websocket",
        "Connection: Upgrade", "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==",
        "Sec-WebSocket-Version: 13" } },
    { "Connection without the upgrade token", { "GET / HTTP/1.1", "Host: x",
        "Upgrade: websocket", "Connection: keep-alive", KEY, "Sec-WebSocket-Version: 13" } },
    { "an Upgrade to another protocol", { "GET / HTTP/1.1", "Host: x", "Upgrade: h2c",
        "Connection: Upgrade", KEY, "Sec-WebSocket-Version: 13" } },
    { "two keys", { "GET / HTTP/1.1", "Host: x", "Upgrade: websocket", "Connection: Upgrade",
        KEY, KEY, "Sec-WebSocket-Version: 13" } },
  } do
    it("answers " .. case[1] .. " with 400", function()
      assert.equals(400, (ask(srv.port, request(case[2]))))
    end)
  end

  it("answers bytes that are not HTTP with 400", function()
    assert.equals(400, (ask(srv.port, "\22\3\1\0\165\1\0\0\161\3\3garbage\r\n\r\n")))
  end)

  it("answers a request head over 8 KiB with 431", function()
    local big = request { "GET / HTTP/1.1", "Host: x", "X-Big: " .. string.rep("a", 9000) }
    assert.equals(431, (ask(srv.port, big)))
  end)

  it("answers more than 64 header lines with 431", function()
    local lines = { "GET / HTTP/1.1", "Host: x" }
    for i = 1, 70 do lines[#lines + 1] = "X-H" .. i .. ": v" end
    assert.equals(431, (ask(srv.port, request(lines))))
  end)

  it("accepts a request that arrives a few bytes at a time", function()
    local s = ws.tcp(srv.port)
    local req = ws.handshake_request()
    for i = 1, #req, 7 do
      s:send(req:sub(i, i + 6))
      socket.sleep(0.002)
    end
    assert.equals(101, (ws.read_http_response(s)))
    s:close()
  end)

  it("keeps a frame pipelined right behind the request", function()
    local s = ws.tcp(srv.port)
    s:send(ws.handshake_request() .. ws.frame { opcode = ws.OP.text, payload = "pipelined" })
    assert.equals(101, (ws.read_http_response(s)))
    local c = setmetatable({ sock = s }, ws)
    assert.equals("login success, your uid is pipelined", c:receive())
    c:close()
  end)

  it("closes a connection that does not finish its handshake in time", function()
    local s = ws.tcp(srv.port)
    s:send("GET / HTTP/1.1\r\nHost: x\r\n")
    s:settimeout(5 * server.slowdown)
    local t0 = socket.gettime()
    local data, err, partial = s:receive("*a")
    assert.are_not.equals("timeout", err)
    assert.equals("", data or partial)
    assert.is_true(socket.gettime() - t0 < 4 * server.slowdown)
    s:close()
  end)

  it("does not extend the handshake deadline for a client trickling bytes", function()
    local s = ws.tcp(srv.port)
    local req = "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " .. string.rep("a", 100)
    local t0 = socket.gettime()
    local closed = false
    for i = 1, #req do
      if not s:send(req:sub(i, i)) then closed = true break end
      socket.sleep(0.05)
      if socket.gettime() - t0 > 4 * server.slowdown then break end
    end
    s:settimeout(2 * server.slowdown)
    local _, err = s:receive(1)
    assert.is_true(closed or err == "closed")
    assert.is_true(socket.gettime() - t0 < 4 * server.slowdown)
    s:close()
  end)

  it("keeps serving after refusals", function()
    assert.equals(400, (ask(srv.port, "BLAH\r\n\r\n")))
    assert.equals(426, (ask(srv.port, request { "GET / HTTP/1.1", "Host: x" })))
    local c = ws.login(srv.port, "still-alive")
    c:close()
  end)
end)
