-- spec/support/redis.lua -- real redis-server processes on free loopback ports, for the cluster
-- specs: one, or several shards of one cluster. With UIDCAST_SPEC_SHARDS=N in the environment,
-- every plain redis.start() gives N shards instead (the cluster suites run again that way).
local socket = require "socket"
local server = require "server"

local redis = {}
redis.__index = redis
local shards = {}
shards.__index = shards

-- Starts redis-server with no persistence; returns it once it answers. extra: more
-- command-line words (each already quoted for the shell), e.g. ACL users.
function redis.start(port, extra)
  local n = tonumber(os.getenv("UIDCAST_SPEC_SHARDS") or "")
  if not port and not extra and n and n > 1 then return redis.shards(n) end
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

-- A stopped redis-server started again, empty, on its port.
function redis:restart() return redis.start(self.port) end

-- n redis-servers, the shards of one cluster: url lists them all, for one --redis.
function redis.shards(n, extra)
  local self = setmetatable({}, shards)
  local urls = {}
  for i = 1, n do
    self[i] = redis.start(nil, extra or "") -- a string, even empty: one server each
    urls[i] = self[i].url
  end
  self.url = table.concat(urls, " ")
  return self
end

-- redis-cli on every shard; their outputs one after the other.
function shards:cli(args)
  local out = {}
  for _, r in ipairs(self) do out[#out + 1] = r:cli(args) end
  return table.concat(out)
end

function shards:stop() for _, r in ipairs(self) do r:stop() end end

function shards:restart()
  local again = setmetatable({ url = self.url }, shards)
  for i, r in ipairs(self) do again[i] = r:restart() end
  return again
end

-- A redis-sentinel watching master (a started redis) under the name `name`, with quorum 1 and
-- short timeouts so that a failover takes a second or two; returns it once it knows the master.
function redis.sentinel(master, name)
  local probe = assert(socket.bind("127.0.0.1", 0))
  local port = select(2, probe:getsockname())
  probe:close()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  local conf = assert(io.open(dir .. "/sentinel.conf", "w"))
  conf:write(("port %d\nbind 127.0.0.1\ndir %s\n"):format(port, dir),
    ("sentinel monitor %s 127.0.0.1 %d 1\n"):format(name, master.port),
    ("sentinel down-after-milliseconds %s 500\n"):format(name),
    ("sentinel failover-timeout %s 3000\n"):format(name))
  conf:close()
  local self = setmetatable({ port = tonumber(port), dir = dir, name = name }, redis)
  assert(os.execute(("redis-sentinel %s/sentinel.conf --daemonize yes --pidfile %s/pid --logfile %s/log")
    :format(dir, dir, dir)))
  self.pid = server.eventually(function() return tonumber(server.read_file(dir .. "/pid") or "") end)
  assert(self.pid, "redis-sentinel wrote no pid file")
  server.record_pid(self.pid)
  assert(server.eventually(function() return self:master() == master.port end, 5),
    "redis-sentinel does not know the master")
  self.url = ("sentinel://127.0.0.1:%d/%s"):format(self.port, name)
  return self
end

-- The port of the master the sentinel names now (nil while it knows none).
function redis:master()
  return tonumber(self:cli("--raw SENTINEL get-master-addr-by-name " .. self.name):match("\n(%d+)"))
end

-- The shard a key lives on, of n: FNV-1a (64 bits) then jump consistent hash, as the README
-- says; written apart from the server's C so that each checks the other.
function redis.shard_of(key, n)
  local h = -3750763034362895579 -- 14695981039346656037 as a signed 64-bit integer
  for i = 1, #key do h = (h ~ key:byte(i)) * 1099511628211 end
  local b, j = -1, 0
  while j < n do
    b = j
    h = h * 2862933555777941757 + 1
    j = math.floor((b + 1) * ((1 << 31) / ((h >> 33) + 1)))
  end
  return b + 1 -- 1-based, as the shards' list
end

return redis
