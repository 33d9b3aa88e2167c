-- spec/support/sender.lua -- a separate process that keeps pushing while a spec's client comes
-- and goes: lua5.4 sender.lua PUSH_PORT UID COUNT [binary]. It POSTs COUNT kept messages
-- "m1".."mCOUNT" (binary ones "\0\255m<i>") to /send?uid=UID&keep=300 on one keep-alive
-- connection, a little at a time, and exits 0 when every answer was 200 with a seq. A fifth
-- argument replaces the "m" prefix (text|binary must then be given).
package.path = arg[0]:gsub("[^/]+$", "") .. "?.lua;" .. package.path
local http = require "http"
local socket = require "socket"

local port, uid, count, binary = tonumber(arg[1]), arg[2], tonumber(arg[3]), arg[4] == "binary"
local prefix = arg[5] or "m"
local c = http.open(port)
local target = "/send?uid=" .. uid .. "&keep=300" .. (binary and "&binary=1" or "")
for i = 1, count do
  local body = (binary and "\0\255" or "") .. prefix .. i
  local status, _, answer = c:request("POST", target, { body = body })
  if status ~= 200 or not answer:match('"seq":%d+') then
    io.stderr:write("sender: message ", i, " answered ", tostring(status), " ", tostring(answer), "\n")
    os.exit(1)
  end
  if i % 20 == 0 then socket.sleep(0.002) end
end
c:close()
os.exit(0)
