-- default.lua -- the seed protocol of the Workerman recipe "send data to a specific client".
--
-- 1. Until a connection is logged in, its first text message is its uid:
--    the reply is "login success, your uid is <uid>".
-- 2. After that a message is "target:payload", split at the first colon only:
--    "all:payload" goes to every logged-in connection (the sender too),
--    "<uid>:payload" to every connection of that uid; an offline uid drops it.
-- 3. Closing a connection removes only that connection's binding (the core does it).
-- 4. Binary messages follow the same rule and are delivered as binary.
local uidcast = require "uidcast"

-- Locals, not table lookups, on the path every message takes.
local send_uid, broadcast = uidcast.send_uid, uidcast.broadcast
local find, sub = string.find, string.sub
local BINARY = { binary = true }

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

local function login(conn, data, is_binary)
  if is_binary then
    conn:send("login failed: send your uid as a text message")
    return
  end
  local why = refuse_uid(data)
  if why then
    conn:send("login failed: " .. why)
    return
  end
  conn:bind(data)
  conn:send("login success, your uid is " .. data)
end

function M.on_message(conn, data, is_binary)
  if not conn.uid then
    return login(conn, data, is_binary)
  end
  local colon = find(data, ":", 1, true)
  if not colon then
    conn:send("error: expected target:message (a uid or 'all', then ':', then the text)")
    return
  end
  local target, payload = sub(data, 1, colon - 1), sub(data, colon + 1)
  local opts = is_binary and BINARY or nil
  if target == "all" then
    broadcast(payload, opts)
  else
    send_uid(target, payload, opts)
  end
end

return M
