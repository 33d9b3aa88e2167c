-- Cluster mode under faults, against real redis-server processes: every loss is counted
-- somewhere, nothing waits on a stalled Redis, memory toward Redis is bounded, a login is
-- live cluster-wide before it is acknowledged, and presence heals.
local ws = require "ws"
local http = require "http"
local server = require "server"
local redis = require "redis"
local socket = require "socket"

local cluster = require "cluster"
local wait_connected, online, stats = cluster.wait_connected, cluster.online, cluster.stats

-- Pushes n messages "<prefix><i>" to uid through node's push API on one pipelined connection.
local function push_many(node, uid, n, prefix)
  local c = http.open(node.push_port)
  local batch = {}
  for i = 1, n do
    batch[#batch + 1] = http.format("POST", "/send?uid=" .. uid, { body = prefix .. i })
    if #batch == 100 or i == n then
      c:send_raw(table.concat(batch))
      for _ = 1, #batch do assert.equals(200, (c:read())) end
      batch = {}
    end
  end
  c:close()
end

-- Reads messages until quiet for `quiet` seconds; returns them as a set and a count.
local function drain(client, quiet)
  local got, n = {}, 0
  while true do
    local m = client:receive(quiet or 0.5)
    if not m then return got, n end
    got[m] = true
    n = n + 1
  end
end

local GAP_SCRIPT = [[
local uidcast = require "uidcast"
return {
  on_message = function(conn, data)
    if not conn.uid then conn:bind(data) conn:send("login success, your uid is " .. data) return end
    local to, text = data:match("^([^:]+):(.*)$")
    uidcast.send_uid(to, text)
  end,
  on_cluster_gap = function() uidcast.log("warn", "script heard of a gap") end,
}
]]

describe("cluster under faults", function()
  it("counts a lost subscription as a gap, tells the script, and delivers again", function()
    local r = redis.start()
    local script = server.script(GAP_SCRIPT)
    local a = server.start { script = script, args = { "--redis", r.url } }
    local b = server.start { script = script, args = { "--redis", r.url } }
    wait_connected { a, b }
    local alice = ws.login(a.port, "gap-alice")
    local bob = ws.login(b.port, "gap-bob")
    r:cli("CLIENT KILL TYPE pubsub")
    assert.truthy(server.eventually(function() return stats(a).cluster_gaps >= 1 end, 5))
    assert.truthy(server.eventually(function() return a:log():find("script heard of a gap", 1, true) end, 5))
    assert.truthy(server.eventually(function()
      bob:send("gap-alice:after")
      return alice:receive(0.3) == "after"
    end, 5))
    alice:close()
    bob:close()
    assert.equals(0, a:stop())
    assert.equals(0, b:stop())
    r:stop()
  end)

  it("counts the gap of a node that froze until Redis cut its subscriber off #no_memcheck", function()
    -- a small pub/sub output limit, so that a few megabytes aimed at a stopped node overflow it
    local r = redis.start(nil, "--client-output-buffer-limit 'pubsub 1mb 256kb 1'")
    local a = server.start { args = { "--redis", r.url } }
    local b = server.start { args = { "--redis", r.url } }
    wait_connected { a, b }
    local alice = ws.login(a.port, "frozen-node-alice")
    socket.sleep(0.2)
    a:signal("STOP")
    push_many(b, "frozen-node-alice", 10000, string.rep("x", 1500) .. " ")
    socket.sleep(1.5)
    a:signal("CONT")
    assert.truthy(server.eventually(function() return stats(a).cluster_gaps >= 1 end, 5), a:log())
    local _, received = drain(alice, 1)
    assert.is_true(received < 10000, received .. " received")
    -- every message is accounted for: published by B (what A then missed falls in the gap A
    -- counted) or dropped and counted by B (a burst beyond --redis-max-pending)
    local sb = stats(b)
    assert.equals(10000, sb.cluster_published + sb.cluster_dropped)
    alice:close()
    assert.equals(0, a:stop())
    assert.equals(0, b:stop())
    r:stop()
  end)

  it("counts a publication Redis refuses (no password given) as dropped, and says why", function()
    local r = redis.start(nil, "--requirepass s3cret")
    local a = server.start { args = { "--redis", r.url } }
    assert.truthy(server.eventually(function()
      return a:log():find("refused this node: NOAUTH", 1, true)
    end, 5), a:log())
    for i = 1, 10 do
      assert.equals(200, (http.request1(a.push_port, "POST", "/send?uid=nobody", { body = "m" .. i })))
    end
    local st = stats(a)
    assert.equals(0, st.cluster_published)
    assert.equals(10, st.cluster_dropped)
    -- refused over and over, logged once per back-off step, not once per message
    socket.sleep(1)
    local _, lines = a:log():gsub("NOAUTH", "")
    assert.is_true(lines < 10, lines .. " lines")
    assert.equals(0, a:stop())
    r:stop()
  end)

  it("accounts for every message when Redis is killed mid-stream", function()
    local r = redis.start()
    local a = server.start { args = { "--redis", r.url } }
    local b = server.start { args = { "--redis", r.url } }
    wait_connected { a, b }
    local alice = ws.login(a.port, "kill-alice")
    socket.sleep(0.2)
    local sender = coroutine.wrap(function() push_many(b, "kill-alice", 3000, "k") end)
    -- kill Redis while B pushes
    local killer = socket.gettime()
    os.execute(("(sleep 0.15; kill -KILL %d) &"):format(r.pid))
    sender()
    local _, received = drain(alice, 1)
    local sb, sa = stats(b), stats(a)
    local lost = 3000 - received
    assert.is_true(socket.gettime() - killer < 30)
    assert.equals(3000, sb.cluster_published + sb.cluster_dropped)
    -- a message Redis took may still have died with it on its way to A: then A knows of the gap
    assert.is_true(lost <= sb.cluster_dropped or sa.cluster_gaps >= 1,
                   ("lost %d, dropped %d, gaps %d"):format(lost, sb.cluster_dropped, sa.cluster_gaps))
    assert.is_true(sa.cluster_gaps >= 1)
    alice:close()
    assert.equals(0, a:stop())
    assert.equals(0, b:stop())
  end)

  it("answers presence within --redis-timeout while Redis is paused, saying it is partial", function()
    local r = redis.start()
    local a = server.start { args = { "--redis", r.url, "--redis-timeout", "0.5" } }
    wait_connected { a }
    local alice = ws.login(a.port, "pause-alice")
    local carol = ws.login(a.port, "pause-carol")
    r:cli("CLIENT PAUSE 4000")
    local t0 = socket.gettime()
    local answer = online(a, "pause-alice")
    assert.is_true(socket.gettime() - t0 < 1.2 * server.slowdown, (socket.gettime() - t0) .. " s")
    assert.same({ uid = "pause-alice", online = true, connections = 1, partial = true }, answer)
    -- local delivery does not wait on Redis
    for i = 1, 20 do
      local s0 = socket.gettime()
      carol:send("pause-alice:" .. i)
      assert.equals(tostring(i), alice:receive())
      assert.is_true(socket.gettime() - s0 < 0.05 * server.slowdown)
    end
    assert.truthy(a:log():find("treating it as down", 1, true))
    -- once Redis answers again, so does presence, in full
    assert.truthy(server.eventually(function() return online(a, "pause-alice").partial == nil end, 10))
    alice:close()
    carol:close()
    assert.equals(0, a:stop())
    r:stop()
  end)

  it("bounds the memory of publications waiting for a frozen Redis #no_memcheck", function()
    local r = redis.start()
    local a = server.start { args = { "--redis", r.url, "--redis-max-pending", "1m", "--redis-timeout", "10" } }
    wait_connected { a }
    local alice = ws.login(a.port, "frozen-alice")
    local carol = ws.login(a.port, "frozen-carol")
    local function rss_kb()
      return tonumber((server.read_file("/proc/" .. a.pid .. "/status") or ""):match("VmRSS:%s*(%d+)"))
    end
    local before = rss_kb()
    r:cli("CLIENT PAUSE 8000")
    local c = http.open(a.push_port)
    local body = string.rep("f", 1024)
    local t0 = socket.gettime()
    for _ = 1, 40 do
      local batch = {}
      for _ = 1, 100 do batch[#batch + 1] = http.format("POST", "/send?uid=frozen-alice", { body = body }) end
      c:send_raw(table.concat(batch))
      for _ = 1, 100 do assert.equals(200, (c:read())) end
      assert.equals(body, alice:receive()) -- local delivery keeps flowing
      drain(alice, 0.05)
      -- and a local message is not stuck behind the backlog waiting for Redis
      local s0 = socket.gettime()
      carol:send("frozen-alice:local")
      assert.equals("local", alice:receive())
      assert.is_true(socket.gettime() - s0 < 0.05 * server.slowdown, (socket.gettime() - s0) .. " s")
    end
    c:close()
    assert.is_true(socket.gettime() - t0 < 10)
    local st = stats(a)
    assert.is_true(st.cluster_dropped > 0)
    if not server.instrumented then
      assert.is_true(rss_kb() - before < 12 * 1024, (rss_kb() - before) .. " kB more")
    end
    assert.equals(0, a:stop())
    r:stop()
  end)

  it("acknowledges a login only once the node receives that uid's messages #no_memcheck", function()
    local r = redis.start()
    local a = server.start { args = { "--redis", r.url } }
    local b = server.start { args = { "--redis", r.url } }
    wait_connected { a, b }
    local sender = ws.login(a.port, "race-sender")
    local lost = 0
    for i = 1, 10000 do
      local uid = "race-" .. i
      local c = ws.login(b.port, uid) -- returns once "login success" arrived: no sleep
      sender:send(uid .. ":hello " .. i)
      if c:receive(1) ~= "hello " .. i then lost = lost + 1 end
      c.sock:close()
    end
    assert.equals(0, lost)
    sender:close()
    assert.equals(0, a:stop())
    assert.equals(0, b:stop())
    r:stop()
  end)

  it("writes its presence again after Redis stalled past --presence-ttl", function()
    local r = redis.start()
    local a = server.start { args = { "--redis", r.url, "--presence-ttl", "1", "--redis-timeout", "0.5" } }
    wait_connected { a }
    local early = ws.login(a.port, "heal-early")
    r:cli("DEBUG SLEEP 2.5")
    local late = ws.login(a.port, "heal-late") -- logs in while Redis sleeps
    assert.truthy(server.eventually(function()
      local e, l = online(a, "heal-early"), online(a, "heal-late")
      return e.connections == 1 and l.connections == 1 and not e.partial and not l.partial
    end, 5), a:log())
    -- and it stays right past the TTL
    socket.sleep(1.5)
    assert.equals(1, online(a, "heal-late").connections)
    early:close()
    late:close()
    assert.equals(0, a:stop())
    r:stop()
  end)
end)

describe("--workers under faults", function()
  local function start(r)
    local srv = server.start { args = { "--workers", "2", "--redis", r.url } }
    wait_connected({ srv }, 2)
    return srv
  end

  it("keeps workers alive through SIGHUPs sent while they start #no_memcheck", function()
    local r = redis.start()
    local srv = server.start { args = { "--workers", "3", "--redis", r.url } }
    assert.truthy(server.eventually(function() return srv:log():find("worker 2 started", 1, true) end, 5))
    -- replace a worker, and forward SIGHUPs to its successor while it is still starting
    local victim = srv:log():match("worker 0 started %(pid (%d+)%)")
    os.execute(("kill -KILL %s; i=0; while [ $i -lt 400 ]; do kill -HUP %d; i=$((i+1)); " ..
                "case $((i %% 4)) in 0) sleep 0.001;; esac; done"):format(victim, srv.pid))
    socket.sleep(1)
    assert.falsy(srv:log():find("killed by signal 1", 1, true), srv:log())
    assert.equals(0, srv:stop())
    r:stop()
  end)

  it("brings a worker back within 0.1 s when none is left #no_memcheck", function()
    local r = redis.start()
    local srv = start(r)
    for round = 1, 6 do -- without the rule, the back-off doubles each round: 3.2 s by the sixth
      local pids = {}
      for pid in srv:log():gmatch("started %(pid (%d+)%)") do pids[#pids + 1] = pid end
      os.execute("kill -KILL " .. pids[#pids] .. " " .. pids[#pids - 1] .. " 2>/dev/null")
      local t0 = socket.gettime()
      local c = server.eventually(function()
        local ok, conn = pcall(ws.login, srv.port, "back" .. round)
        return ok and conn
      end, 3)
      assert.truthy(c)
      assert.is_true(socket.gettime() - t0 < 1 * server.slowdown, (socket.gettime() - t0) .. " s")
      c:close()
    end
    assert.equals(0, srv:stop())
    r:stop()
  end)

  it("takes its workers with it when the supervisor is killed #no_memcheck", function()
    local r = redis.start()
    local srv = start(r)
    local pids = {}
    for pid in srv:log():gmatch("started %(pid (%d+)%)") do pids[#pids + 1] = pid end
    srv:signal("KILL")
    assert.truthy(server.eventually(function()
      for _, pid in ipairs(pids) do
        if os.execute("kill -0 " .. pid .. " 2>/dev/null") then return false end
      end
      return true
    end, 5))
    r:stop()
  end)
end)
