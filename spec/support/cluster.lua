-- spec/support/cluster.lua -- what the cluster and workers specs ask of their nodes: connected
-- to Redis yet, and what a node's push API says of presence and counters.
local http = require "http"
local server = require "server"

local cluster = {}

-- The Redis servers a node was started with: one per URL of its --redis values.
local function shards_of(node)
  local n = 0
  for i, a in ipairs(node.args or {}) do
    if node.args[i - 1] == "--redis" then n = n + select(2, a:gsub("%S+", "")) end
  end
  return math.max(n, 1)
end

-- Waits until every node logged its connection to each of its Redis servers (a --workers
-- server: `workers` times).
function cluster.wait_connected(nodes, workers)
  for _, node in ipairs(nodes) do
    assert(server.eventually(function()
      local _, n = node:log():gsub("cluster: connected to redis", "")
      return n >= (workers or 1) * shards_of(node)
    end, 5), node:log())
  end
end

-- Starts a redis-server and n uidcast nodes on it (opts.args: more words for every node;
-- opts.script, opts.env), waits until they are connected; returns redis and the nodes.
function cluster.start(n, opts)
  opts = opts or {}
  local redis = require "redis"
  local r = redis.start()
  local nodes = {}
  for i = 1, n do
    local args = { "--redis", r.url }
    for _, a in ipairs(opts.args or {}) do args[#args + 1] = a end
    nodes[i] = server.start { args = args, script = opts.script, env = opts.env }
  end
  cluster.wait_connected(nodes)
  return r, table.unpack(nodes)
end

-- Stops the nodes (each must exit 0: under valgrind, leak-free) and then redis.
function cluster.stop(redis, ...)
  for _, node in ipairs { ... } do assert(node:stop() == 0, "a node did not stop cleanly") end
  redis:stop()
end

-- GET /online?uid= on a node's push API, decoded.
function cluster.online(node, uid)
  local status, _, body = http.request1(node.push_port, "GET", "/online?uid=" .. uid)
  assert(status == 200, "push API answered " .. tostring(status))
  return http.json(body)
end

-- GET /stats on a node's push API, decoded.
function cluster.stats(node)
  local status, _, body = http.request1(node.push_port, "GET", "/stats")
  assert(status == 200, "push API answered " .. tostring(status))
  return http.json(body)
end

return cluster
