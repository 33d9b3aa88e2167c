-- default.lua -- the seed protocol of the Workerman recipe "send data to a specific client".
--
-- 1. Until a connection is logged in, its first text message is its uid:
--    the reply is "login success, your uid is <uid>".
-- 2. After that a message is "target:payload", split at the first colon only:
--    "all:payload" goes to every logged-in connection (the sender too),
--    "<uid>:payload" to every connection of that uid; an offline uid drops it.
-- 3. Closing a connection removes only that connection's binding (the core does it).
-- 4. Binary messages follow the same rule and are delivered as binary.
--
-- A client that speaks uidcast.v1 (README, "Kept messages") gets numbered messages and
-- resumes: its login may be "<uid>\n<last number seen>", or it gives ?since=N at the
-- handshake; then what it missed is replayed first. Its "uid:message" sends are kept for the
-- uid for UIDCAST_KEEP seconds (default 300; 0: not kept), so a receiver that reconnects
-- gets them too. Clients of the seed protocol see exactly the seed behaviour.
local uidcast = require "uidcast"

-- Locals, not table lookups, on the path every message takes.
local send_uid, broadcast, split = uidcast.send_uid, uidcast.broadcast, uidcast.split
local BINARY = { binary = true }

local KEEP = tonumber(uidcast.env("UIDCAST_KEEP") or "300")
if not KEEP or KEEP < 0 or KEEP > 2592000 then
  error("UIDCAST_KEEP must be seconds from 0 to 2592000, not " .. tostring(uidcast.env("UIDCAST_KEEP")))
end
local KEPT = KEEP > 0 and { keep = KEEP } or nil
local KEPT_BINARY = KEEP > 0 and { keep = KEEP, binary = true } or BINARY

local MAX_UID = 128

local M = {}

-- Returns nil when uid is acceptable, else why not.
local function refuse_uid(uid)
  if uid == "" then return "uid is empty" end
  if #uid > MAX_UID then return "uid is longer than " .. MAX_UID .. " bytes" end
  if uid:find(":", 1, true) then return "uid must not contain ':'" end
  if uid == "all" then return "uid 'all' is reserved" end
  return nil
end

local function login(conn, data, is_binary, protocol)
  if is_binary then
    conn:send("login failed: send your uid as a text message")
    return
  end
  local uid, since = data, nil
  if protocol then
    since = conn.since
    local u, n = data:match("^(.-)\n(%d+)$")
    if u then
      uid, since = u, math.tointeger(tonumber(n))
      if not since or since >= 1 << 53 then
        conn:send("login failed: the number after the uid must be below 2^53")
        return
      end
    end
  end
  local why = refuse_uid(uid)
  if why then
    conn:send("login failed: " .. why)
    return
  end
  if since then
    conn:bind(uid, { since = since })
  else
    conn:bind(uid)
  end
  conn:send("login success, your uid is " .. uid)
end

function M.on_message(conn, data, is_binary, uid, protocol) -- conn.uid, conn.protocol
  if not uid then
    return login(conn, data, is_binary, protocol)
  end
  local target, payload = split(data, ":")
  if not target then
    conn:send("error: expected target:message (a uid or 'all', then ':', then the text)")
    return
  end
  if target == "all" then
    broadcast(payload, is_binary and BINARY or nil)
  elseif protocol then -- uidcast.v1: kept, numbered
    send_uid(target, payload, is_binary and KEPT_BINARY or KEPT)
  else
    send_uid(target, payload, is_binary and BINARY or nil)
  end
end

return M
