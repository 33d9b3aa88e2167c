-- auth_token.lua -- login at the handshake with a signed token, so nobody can claim any uid.
--
-- Clients connect to  ws://host:1234/?uid=alice&token=<hex HMAC-SHA256(secret, "alice")>
-- The web application that knows the user computes the token with the same secret, e.g. PHP:
--   $token = hash_hmac('sha256', $uid, getenv('UIDCAST_SECRET'));
-- The secret comes from the environment variable UIDCAST_SECRET; without it the script
-- refuses to load. After the upgrade the seed's routing applies: "uid:message", "all:message".
local uidcast = require "uidcast"

local SECRET = uidcast.env("UIDCAST_SECRET")
assert(SECRET and #SECRET >= 16, "set UIDCAST_SECRET (at least 16 bytes) for auth_token.lua")

local M = {}

-- Compares in time independent of where the strings differ.
local function same(a, b)
  if #a ~= #b then return false end
  local diff = 0
  for i = 1, #a do diff = diff | (a:byte(i) ~ b:byte(i)) end
  return diff == 0
end

function M.on_open(conn, req)
  local uid, token = req.query.uid, req.query.token
  if not uid or uid == "" or #uid > 128 or uid:find(":", 1, true) or uid == "all" then
    return false, 400, "give ?uid= (1 to 128 bytes, no ':', not 'all') and ?token="
  end
  if not token or not same(token:lower(), uidcast.hmac_sha256(SECRET, uid)) then
    uidcast.log("warn", "bad token for uid", uid, "from", req.remote_addr)
    return false, 401, "bad token"
  end
  conn:bind(uid)
end

function M.on_message(conn, data, is_binary)
  local colon = data:find(":", 1, true)
  if not colon then
    conn:send("error: expected target:message (a uid or 'all', then ':', then the text)")
    return
  end
  local target, payload = data:sub(1, colon - 1), data:sub(colon + 1)
  local opts = is_binary and { binary = true } or nil
  if target == "all" then
    uidcast.broadcast(payload, opts)
  else
    uidcast.send_uid(target, payload, opts)
  end
end

return M
