-- spec/support/ws.lua -- a small WebSocket client on LuaSocket, for specs only.
--
-- It speaks the protocol by hand so that specs can also send what a good client never would:
-- unmasked frames, reserved bits, bad UTF-8, a declared length of 2^62, raw HTTP.
local socket = require "socket"

local ws = {}
ws.__index = ws

local OP = { continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10 }
ws.OP = OP

local function u16(n) return string.char((n >> 8) & 255, n & 255) end
local function u64(n)
  local t = {}
  for i = 7, 0, -1 do t[#t + 1] = string.char((n >> (8 * i)) & 255) end
  return table.concat(t)
end

-- Connects a TCP socket with a timeout; returns the LuaSocket object.
function ws.tcp(port, timeout)
  local s = assert(socket.tcp())
  s:settimeout(timeout or 5)
  assert(s:connect("127.0.0.1", port))
  s:setoption("tcp-nodelay", true)
  return s
end

-- Reads an HTTP response head (and a Content-Length body); returns status, headers, body, or nil.
function ws.read_http_response(s)
  local status_line, err = s:receive("*l")
  if not status_line then return nil, err end
  local status = tonumber(status_line:match("^HTTP/1%.1 (%d%d%d)"))
  local headers = {}
  while true do
    local line = s:receive("*l")
    if not line or line == "" then break end
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k then headers[k:lower()] = v end
  end
  local body = ""
  local n = tonumber(headers["content-length"] or "")
  if n and n > 0 then body = s:receive(n) or "" end
  return status, headers, body
end

function ws.handshake_request(opts)
  opts = opts or {}
  local lines = {
    ("GET %s HTTP/1.1"):format(opts.path or "/"),
    "Host: 127.0.0.1",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
  }
  for _, h in ipairs(opts.headers or {}) do lines[#lines + 1] = h end
  return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

-- Opens a WebSocket connection. opts.path, opts.headers (array of "Name: value").
-- Returns the client, or nil, status, headers, body when the upgrade is refused.
function ws.connect(port, opts)
  opts = opts or {}
  local s = ws.tcp(port, opts.timeout)
  assert(s:send(ws.handshake_request(opts)))
  local status, headers, body = ws.read_http_response(s)
  if status ~= 101 then
    s:close()
    return nil, status, headers, body
  end
  assert(headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "bad accept key")
  return setmetatable({ sock = s, port = port }, ws)
end

-- Encodes one frame. f.opcode, f.payload, f.fin (default true), f.mask (default true),
-- f.rsv (0..7), f.length (a declared length that may lie).
function ws.frame(f)
  local payload = f.payload or ""
  local fin = f.fin == false and 0 or 0x80
  local b0 = fin | ((f.rsv or 0) << 4) | f.opcode
  local len = f.length or #payload
  local masked = f.mask ~= false
  local mbit = masked and 0x80 or 0
  local head
  if len < 126 then
    head = string.char(b0, mbit | len)
  elseif len <= 0xffff then
    head = string.char(b0, mbit | 126) .. u16(len)
  else
    head = string.char(b0, mbit | 127) .. u64(len)
  end
  if not masked then return head .. payload end
  local key = { 0x12, 0x34, 0x56, 0x78 }
  local out = {}
  for i = 1, #payload, 4096 do
    local chunk = payload:sub(i, i + 4095)
    local bytes = { chunk:byte(1, -1) }
    for j = 1, #bytes do
      bytes[j] = bytes[j] ~ key[((i + j - 2) % 4) + 1]
    end
    out[#out + 1] = string.char(table.unpack(bytes))
  end
  return head .. string.char(table.unpack(key)) .. table.concat(out)
end

function ws:send_raw(bytes) return self.sock:send(bytes) end

function ws:send(payload, binary)
  return self.sock:send(ws.frame { opcode = binary and OP.binary or OP.text, payload = payload })
end

function ws:send_frame(f) return self.sock:send(ws.frame(f)) end

-- Receives one frame: opcode, payload, fin; or nil, "timeout" / "closed".
function ws:receive_frame(timeout)
  self.sock:settimeout(timeout or 5)
  local head, err = self.sock:receive(2)
  if not head then return nil, err end
  local b0, b1 = head:byte(1, 2)
  local len = b1 & 0x7f
  if len == 126 or len == 127 then
    local ext
    ext, err = self.sock:receive(len == 126 and 2 or 8)
    if not ext then return nil, err end
    len = 0
    for i = 1, #ext do len = (len << 8) | ext:byte(i) end
  end
  assert(b1 & 0x80 == 0, "server frames must not be masked")
  local payload = ""
  if len > 0 then
    payload, err = self.sock:receive(len)
    if not payload then return nil, err end
  end
  return b0 & 0x0f, payload, (b0 & 0x80) ~= 0
end

-- Receives one data message (answering nothing): payload, is_binary; or nil, err.
-- A close frame returns nil, "close", code, reason.
function ws:receive(timeout)
  local op, payload = self:receive_frame(timeout)
  if not op then return nil, payload end
  if op == OP.close then
    local code = #payload >= 2 and ((payload:byte(1) << 8) | payload:byte(2)) or nil
    return nil, "close", code, payload:sub(3)
  end
  if op == OP.ping or op == OP.pong then return self:receive(timeout) end
  return payload, op == OP.binary
end

-- Expects the server to close: returns the close code and reason it sent (nil when the
-- socket ended without a close frame).
function ws:expect_close(timeout)
  while true do
    local payload, err, code, reason = self:receive(timeout)
    if not payload then
      if err == "close" then return code, reason end
      return nil, err
    end
  end
end

-- Sends a close frame and waits for the server's answer; returns its code.
function ws:close(code)
  self:send_frame { opcode = OP.close, payload = u16(code or 1000) }
  local got = self:expect_close(2)
  self.sock:close()
  return got
end

-- True when nothing arrives within the timeout.
function ws:silent(timeout)
  local payload, err = self:receive(timeout or 0.2)
  return payload == nil and err == "timeout"
end

-- Connects and logs in with the default protocol; returns the client.
function ws.login(port, uid)
  local c = assert(ws.connect(port))
  c:send(uid)
  local reply = c:receive()
  assert(reply == "login success, your uid is " .. uid, "login failed: " .. tostring(reply))
  return c
end

return ws
