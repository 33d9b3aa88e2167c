-- --workers N: processes sharing one port, a supervisor that replaces the dead, Redis between.
local ws = require "ws"
local server = require "server"
local redis = require "redis"
local cluster = require "cluster"

-- How many worker processes upgraded a connection (from the debug log).
local function workers_serving(srv)
  local pids, n = {}, 0
  for pid in srv:log():gmatch("%[(%d+)%] debug conn %d+ %([^)]*%): upgraded") do pids[pid] = true end
  for _ in pairs(pids) do n = n + 1 end
  return n
end

describe("--workers", function()
  it("is refused without --redis, with a clear message", function()
    local out = os.tmpname()
    local ok, _, code = os.execute(("%s --workers 2 2>%s"):format(server.BIN, out))
    assert.is_not_true(ok)
    assert.equals(2, code)
    assert.matches("%-%-workers 2 needs %-%-redis", server.read_file(out))
    os.remove(out)
  end)

  it("routes between clients that landed on different workers, replaces a killed worker, " ..
     "and stops them all on SIGTERM #no_memcheck", function()
    local r = redis.start()
    local srv = server.start { args = { "--workers", "2", "--redis", r.url, "--log-level", "debug" } }
    cluster.wait_connected({ srv }, 2)
    local clients = {}
    for i = 1, 16 do clients[i] = ws.login(srv.port, "wk" .. i) end
    require("socket").sleep(0.2)
    for i = 1, 16 do clients[i]:send(("wk%d:from %d"):format(i % 16 + 1, i)) end
    for i = 1, 16 do
      assert.equals(("from %d"):format((i - 2) % 16 + 1), clients[i]:receive())
    end
    -- the connections really were spread over both workers
    assert.equals(2, workers_serving(srv))
    for _, c in ipairs(clients) do c.sock:close() end

    -- kill one worker outright: the supervisor starts another, which serves new clients
    local victim = srv:log():match("worker 0 started %(pid (%d+)%)")
    assert.truthy(os.execute("kill -KILL " .. victim))
    assert.truthy(server.eventually(function()
      return srv:log():find("worker 0 %(pid " .. victim .. "%) killed by signal 9")
    end, 5))
    assert.truthy(server.eventually(function()
      local _, starts = srv:log():gsub("worker 0 started", "")
      return starts == 2
    end, 5))
    for i = 1, 8 do
      local c = ws.login(srv.port, "after" .. i)
      c:close()
    end
    assert.equals(0, srv:stop())
    assert.truthy(srv:log():find("supervisor: every worker stopped", 1, true))
    r:stop()
  end)

  it("answers /stats and /metrics for every worker, and counters never go down when one is replaced " ..
     "#no_memcheck", function()
    local http = require "http"
    local r = redis.start()
    local srv = server.start { args = { "--workers", "3", "--redis", r.url, "--log-level", "debug" } }
    cluster.wait_connected({ srv }, 3)
    local clients = {}
    for i = 1, 15 do clients[i] = ws.login(srv.port, "st" .. i) end
    local function stats() return cluster.stats(srv) end
    -- every scrape, whichever worker answers it, counts all 15 (the workers republish their
    -- counters every liveness tick, at most half a second)
    assert.truthy(server.eventually(function() return stats().connections == 15 end, 3))
    local last = 0
    for _ = 1, 12 do
      local st = stats()
      assert.equals(15, st.connections)
      assert.equals(3, st.workers)
      assert.is_true(st.accepted >= last)
      last = st.accepted
    end
    local _, _, metrics = http.request1(srv.push_port, "GET", "/metrics")
    assert.matches("\nuidcast_connections 15\n", metrics)
    assert.matches("\nprocess_resident_memory_bytes %d+\n", metrics)
    assert.matches("\nprocess_open_fds %d+\n", metrics)
    assert.matches("\nuidcast_workers 3\n", metrics)
    -- a killed worker's counters stay in the totals
    for _, c in ipairs(clients) do c.sock:close() end
    assert.truthy(server.eventually(function() return stats().connections == 0 end, 3))
    local before = stats().accepted
    local victim = srv:log():match("worker 1 started %(pid (%d+)%)")
    assert.truthy(os.execute("kill -KILL " .. victim))
    assert.truthy(server.eventually(function()
      local _, starts = srv:log():gsub("worker 1 started", "")
      return starts == 2
    end, 5))
    for _ = 1, 6 do assert.is_true(stats().accepted >= before) end
    assert.equals(0, srv:stop())
    r:stop()
  end)

  it("reloads every worker on SIGHUP to the supervisor, keeping their connections #no_memcheck", function()
    local r = redis.start()
    local path = server.script([[return { on_message = function(c, d)
      if not c.uid then c:bind(d) end
      c:send("v1") end }]])
    local srv = server.start { script = path, args = { "--workers", "2", "--redis", r.url, "--log-level", "debug" } }
    cluster.wait_connected({ srv }, 2)
    local clients = {}
    for i = 1, 12 do
      clients[i] = ws.connect(srv.port)
      clients[i]:send("hup" .. i)
      assert.equals("v1", clients[i]:receive())
    end
    local f = assert(io.open(path, "w"))
    f:write([[return { on_message = function(c, d) c:send("v2 " .. c.uid) end }]])
    f:close()
    assert.truthy(srv:signal("HUP"))
    assert.truthy(server.eventually(function()
      local _, n = srv:log():gsub("reloaded ", "")
      return n == 2
    end, 5), srv:log())
    -- the same connections, on both workers, now run the new script with their uids kept
    for i = 1, 12 do
      clients[i]:send("again")
      assert.equals("v2 hup" .. i, clients[i]:receive())
    end
    assert.equals(2, workers_serving(srv))
    for _, c in ipairs(clients) do c:close() end
    assert.equals(0, srv:stop())
    r:stop()
  end)
end)
