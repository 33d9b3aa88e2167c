-- spec/support/webhook_receiver.lua -- a real HTTP receiver for webhooks
-- (webhook_receiver.py): started per spec, its events read back as decoded JSON.
local server = require "server"
local dkjson = require "dkjson"

local receivers = { SECRET = "s3cret-hook" }

-- Starts a receiver that answers 500 to its first `fail` requests; returns it.
function receivers.start(fail)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  local r = { log = dir .. "/events", port_file = dir .. "/port" }
  assert(os.execute(("python3 %s/spec/support/webhook_receiver.py %s %s %s %d >/dev/null 2>&1 & echo $! > %s/pid")
    :format(server.ROOT, receivers.SECRET, r.log, r.port_file, fail or 0, dir)))
  r.pid = tonumber((assert(server.eventually(function()
    local f = io.open(dir .. "/pid")
    return f and f:read("a")
  end))))
  server.record_pid(r.pid)
  r.port = tonumber((assert(server.eventually(function()
    local f = io.open(r.port_file)
    return f and f:read("a")
  end, 5), "the receiver did not start")))
  r.url = ("http://127.0.0.1:%d/hook"):format(r.port)
  function r.events()
    local out = {}
    local f = io.open(r.log)
    if not f then return out end
    for line in f:lines() do out[#out + 1] = dkjson.decode(line) end
    f:close()
    return out
  end
  function r.stop() os.execute("kill " .. r.pid) end
  return r
end

return receivers
