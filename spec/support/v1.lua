-- spec/support/v1.lua -- a client of the uidcast.v1 subprotocol (kept messages, resume) on
-- top of ws.lua, for the mailbox specs.
local ws = require "ws"

local v1 = {}

local V1 = "Sec-WebSocket-Protocol: uidcast.v1"
v1.HEADER = V1

-- Opens a uidcast.v1 connection (path may carry ?since=N).
function v1.open(port, path)
  return assert(ws.connect(port, { path = path, headers = { V1 } }))
end

-- Reads one message of a uidcast.v1 connection: "kept", seq, payload, binary; "plain",
-- payload, binary; "gap", first, last; "unavailable"; or nil, err.
function v1.read(c, timeout)
  local data, binary = c:receive(timeout)
  if not data then return nil, binary end
  local seq, payload = data:match("^(%d+) (.*)$")
  if seq then return "kept", math.tointeger(tonumber(seq)), payload, binary end
  local first, last = data:match("^!gap (%d+) (%d+)$")
  if first then return "gap", math.tointeger(tonumber(first)), math.tointeger(tonumber(last)) end
  if data == "!unavailable" then return "unavailable" end
  local plain = data:match("^%- (.*)$")
  assert(plain, "a uidcast.v1 message without a header: " .. data)
  return "plain", plain, binary
end

-- Logs in on a uidcast.v1 connection ("uid" or "uid\nN"); returns the client.
function v1.login(port, uid, since, path)
  local c = v1.open(port, path)
  c:send(since and (uid .. "\n" .. since) or uid)
  local kind, text = v1.read(c)
  assert(kind == "plain" and text == "login success, your uid is " .. uid, tostring(text))
  return c
end

-- Reads n kept messages; returns {seq=..., payload=...} records.
function v1.read_kept(c, n)
  local got = {}
  for _ = 1, n do
    local kind, seq, payload, binary = v1.read(c)
    assert(kind == "kept", "expected a kept message, got " .. tostring(kind) .. " " .. tostring(seq))
    got[#got + 1] = { seq = seq, payload = payload, binary = binary }
  end
  return got
end

function v1.payloads(records)
  local out = {}
  for i, r in ipairs(records) do out[i] = r.payload end
  return out
end

-- Cuts a connection the hard way: RST, no close frame.
function v1.reset(c)
  c.sock:setoption("linger", { on = true, timeout = 0 })
  c.sock:close()
end


-- Runs spec/support/sender.lua in the background: count kept messages "<prefix><i>" to uid
-- through a push port. Returns a function that waits for it and returns its exit status.
function v1.sender(root, push_port, uid, count, opts)
  opts = opts or {}
  local status = os.tmpname()
  local cmd = ("lua5.4 %s/spec/support/sender.lua %d %s %d %s %s; echo $? > %s")
    :format(root, push_port, uid, count, opts.binary and "binary" or "text", opts.prefix or "m", status)
  os.execute("( " .. cmd .. " ) >/dev/null 2>&1 &")
  return function(server)
    return server.eventually(function()
      local f = io.open(status)
      local text = f and f:read("*l")
      if f then f:close() end
      return text
    end, 30)
  end
end

return v1
