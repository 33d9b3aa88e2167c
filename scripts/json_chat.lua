-- json_chat.lua -- the default script's chat with JSON messages, on uidcast.json.
--
-- Every message, both ways, is one JSON object with a "type":
--   {"type":"login","uid":"alice"}              first message; answered {"type":"welcome","uid":"alice"}
--   {"type":"send","to":"bob","text":"hi"}      to every connection of bob; the sender hears
--                                               {"type":"sent","to":"bob","delivered":N}
--   {"type":"send","to":"*","text":"hi"}        to everyone logged in
-- Receivers get {"type":"message","from":"alice","to":"bob","text":"hi","at":<unix seconds>}
-- ("to" is "*" for everyone). Anything else is answered {"type":"error","error":"..."}; the
-- connection stays open.
local uidcast = require "uidcast"
local json = uidcast.json

local M = {}

local function reply(conn, t)
  conn:send(json.encode(t))
end

local function fail(conn, why)
  reply(conn, { type = "error", error = why })
end

local function valid_uid(uid)
  return type(uid) == "string" and uid ~= "" and #uid <= 128 and uid ~= "*"
end

local handlers = {}

function handlers.login(conn, m)
  if conn.uid then return fail(conn, "already logged in as " .. conn.uid) end
  if not valid_uid(m.uid) then return fail(conn, "uid must be a string of 1 to 128 bytes, not \"*\"") end
  conn:bind(m.uid)
  reply(conn, { type = "welcome", uid = m.uid })
end

function handlers.send(conn, m)
  if not conn.uid then return fail(conn, "log in first") end
  if type(m.text) ~= "string" then return fail(conn, "text must be a string") end
  if m.to ~= "*" and not valid_uid(m.to) then return fail(conn, "to must be a uid or \"*\"") end
  local out = json.encode { type = "message", from = conn.uid, to = m.to, text = m.text, at = uidcast.now() }
  local delivered
  if m.to == "*" then
    delivered = uidcast.broadcast(out)
  else
    delivered = uidcast.send_uid(m.to, out)
  end
  reply(conn, { type = "sent", to = m.to, delivered = delivered })
end

function M.on_message(conn, data, is_binary)
  if is_binary then return fail(conn, "messages are JSON text") end
  local ok, m = pcall(json.decode, data)
  if not ok then return fail(conn, m) end
  local handler = type(m) == "table" and handlers[m.type]
  if not handler then return fail(conn, "type must be \"login\" or \"send\"") end
  handler(conn, m)
end

return M
