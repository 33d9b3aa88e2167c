-- auth_token.lua -- login at the handshake with a signed, expiring token, so nobody can claim
-- any uid, and a token that leaked stops working.
--
-- Clients connect to  ws://host:1234/?uid=alice&token=<EXP>.<hex HMAC-SHA256(secret, "alice.<EXP>")>
-- where EXP is when the token expires, in Unix seconds. The web application that knows the
-- user mints it with the same secret; in PHP:
--   $exp = time() + 3600;
--   $token = $exp . '.' . hash_hmac('sha256', $uid . '.' . $exp, getenv('UIDCAST_SECRET'));
-- in Python:
--   exp = int(time.time()) + 3600
--   token = f"{exp}." + hmac.new(secret, f"{uid}.{exp}".encode(), hashlib.sha256).hexdigest()
-- A token is checked when the connection opens: an open connection outlives its token (mint
-- one that lasts as long as a page may stay open between reconnects). The secret comes from
-- the environment variable UIDCAST_SECRET; without it the script refuses to load. After the
-- upgrade the seed's routing applies: "uid:message", "all:message".
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
  local exp, mac = (token or ""):match("^(%d+)%.(%x+)$")
  if not exp or not same(mac:lower(), uidcast.hmac_sha256(SECRET, uid .. "." .. exp)) then
    uidcast.log("warn", "bad token for uid", uid, "from", req.remote_addr)
    return false, 401, "bad token"
  end
  if tonumber(exp) < os.time() then
    return false, 401, "token expired"
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
