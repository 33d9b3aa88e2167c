-- rooms.lua -- a chat with rooms, built on groups.
--
-- The first text message is the uid (as in the default script). Then:
--   join:<room>           join a room; the reply says how many are in it
--   leave:<room>          leave it
--   room:<room>:<text>    say text to everyone in the room (you must be in it);
--                         members get "[<room>] <uid>: <text>"
-- Room names are 1 to 64 bytes without ':'. Rooms vanish with their last member, and a member
-- that disconnects leaves every room it was in.
local uidcast = require "uidcast"

local M = {}

local function valid_name(s, max)
  return s ~= "" and #s <= max and not s:find(":", 1, true)
end

local commands = {}

function commands.join(conn, room)
  if not valid_name(room, 64) then return conn:send("error: room names are 1 to 64 bytes, no ':'") end
  conn:join(room)
  conn:send(("joined %s (%d members)"):format(room, uidcast.group_count(room)))
end

function commands.leave(conn, room)
  if conn:leave(room) then
    conn:send("left " .. room)
  else
    conn:send("error: you are not in " .. room)
  end
end

function commands.room(conn, rest)
  local room, text = rest:match("^([^:]+):(.*)$")
  if not room then return conn:send("error: expected room:<room>:<text>") end
  if not conn:in_group(room) then
    return conn:send("error: join " .. room .. " first")
  end
  uidcast.send_group(room, ("[%s] %s: %s"):format(room, conn.uid, text))
end

function M.on_message(conn, data, is_binary)
  if not conn.uid then
    if is_binary or not valid_name(data, 128) or data == "all" then
      return conn:send("login failed: the first message is your uid (1 to 128 bytes, no ':')")
    end
    conn:bind(data)
    return conn:send("login success, your uid is " .. data)
  end
  local verb, rest = data:match("^(%a+):(.*)$")
  local command = verb and commands[verb]
  if not command then
    return conn:send("error: expected join:<room>, leave:<room> or room:<room>:<text>")
  end
  command(conn, rest)
end

return M
