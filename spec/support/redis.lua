-- spec/support/redis.lua -- a real redis-server on a free loopback port, for the cluster specs.
local socket = require "socket"
local server = require "server"

local redis = {}
redis.__index = redis

-- Starts redis-server with no persistence; returns it once it answers. extra: more
-- command-line words (each already quoted for the shell), e.g. ACL users.
function redis.start(port, extra)
  if not port then
    local probe = assert(socket.bind("127.0.0.1", 0))
    port = select(2, probe:getsockname())
    probe:close()
  end
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  local self = setmetatable({ port = tonumber(port), dir = dir }, redis)
  assert(os.execute(("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no " ..
    "--daemonize yes --pidfile %s/pid --logfile %s/log --dir %s %s"):format(self.port, dir, dir, dir,
    extra or "")))
  assert(server.eventually(function()
    local c = socket.tcp()
    c:settimeout(0.2)
    local ok = c:connect("127.0.0.1", self.port)
    c:close()
    return ok
  end, 5), "redis-server did not start")
  -- redis-server creates its pid file before it writes the number: wait for the number
  self.pid = server.eventually(function() return tonumber(server.read_file(dir .. "/pid") or "") end)
  assert(self.pid, "redis-server wrote no pid file")
  server.record_pid(self.pid)
  self.url = "redis://127.0.0.1:" .. self.port
  return self
end

-- Runs redis-cli with args (quoted for the shell) and returns its output.
function redis:cli(args)
  local p = assert(io.popen(("redis-cli -p %d %s 2>&1"):format(self.port, args)))
  local out = p:read("a")
  p:close()
  return out
end

function redis:stop()
  os.execute(("kill -KILL %d 2>/dev/null"):format(self.pid))
  server.eventually(function() return not os.execute(("kill -0 %d 2>/dev/null"):format(self.pid)) end)
end

return redis
