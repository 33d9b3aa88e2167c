-- A cluster over several Redis servers (shards) and behind Redis Sentinel, against real
-- redis-server and redis-sentinel processes: a uid's traffic, presence and kept messages go
-- through its shard only; a shard that dies costs only its own uids, counted; a failover is
-- followed, losing nothing it does not count and duplicating nothing.
local ws = require "ws"
local http = require "http"
local server = require "server"
local redis = require "redis"
local socket = require "socket"
local cluster = require "cluster"

-- count uids named prefix-N that live on shard k of n.
local function uids_on(k, n, count, prefix)
  local out, i = {}, 0
  while #out < count do
    i = i + 1
    local uid = prefix .. i
    if redis.shard_of(uid, n) == k then out[#out + 1] = uid end
  end
  return out
end

-- The set of names one redis-cli command lists, one per line.
local function listed(r, args)
  local set = {}
  for name in r:cli("--raw " .. args):gmatch("[^\n]+") do set[name] = true end
  return set
end

local function push(node, uid, body, query)
  local status, _, answer = http.request1(node.push_port, "POST",
    "/send?uid=" .. uid .. (query or ""), { body = body })
  assert.equals(200, status, answer)
  return answer
end

describe("a cluster on three Redis shards", function()
  local r, nodes

  setup(function()
    r = redis.shards(3)
    nodes = {}
    for i = 1, 3 do nodes[i] = server.start { args = { "--redis", r.url } } end
    cluster.wait_connected(nodes)
  end)
  teardown(function() cluster.stop(r, table.unpack(nodes)) end)

  it("puts each uid's channel, presence and kept messages on its shard only", function()
    local clients, uids = {}, {}
    for k = 1, 3 do
      for j, uid in ipairs(uids_on(k, 3, 3, "sh-")) do
        uids[#uids + 1] = { uid = uid, shard = k }
        clients[uid] = ws.login(nodes[j].port, uid)
      end
    end
    -- every uid reached from another node, exactly once, through its shard
    for j, u in ipairs(uids) do
      local from = nodes[(j % 3) + 1]
      push(from, u.uid, "to " .. u.uid, "&keep=60")
      assert.equals("to " .. u.uid, (clients[u.uid]:receive()))
    end
    for _, u in ipairs(uids) do assert.is_true(clients[u.uid]:silent(0.05)) end
    for k = 1, 3 do
      local channels = listed(r[k], "PUBSUB CHANNELS 'uidcast:u:*'")
      local held = {}
      for key in pairs(listed(r[k], "KEYS 'uidcast:n:*'")) do
        for uid in pairs(listed(r[k], "HKEYS " .. key)) do held[uid] = true end
      end
      for _, u in ipairs(uids) do
        local here = u.shard == k
        assert.equals(here, channels["uidcast:u:" .. u.uid] == true, u.uid .. " channel, shard " .. k)
        assert.equals(here, held[u.uid] == true, u.uid .. " presence, shard " .. k)
        assert.equals(here and "1" or "0", r[k]:cli("--raw EXISTS uidcast:k:" .. u.uid):match("%d"),
          u.uid .. " kept messages, shard " .. k)
      end
      -- broadcasts and roster questions go through the first shard
      assert.equals(k == 1, listed(r[k], "PUBSUB CHANNELS uidcast:a")["uidcast:a"] == true)
    end
    for _, c in pairs(clients) do c:close() end
  end)

  it("broadcasts to every node once, and answers presence and rosters over all shards", function()
    local clients = {}
    for k = 1, 3 do
      local uid = uids_on(k, 3, 1, "shb-")[1]
      clients[k] = ws.login(nodes[k].port, uid)
      clients[k].uid = uid
    end
    clients[1]:send("all:to every shard's uids")
    for k = 1, 3 do
      assert.equals("to every shard's uids", clients[k]:receive())
      assert.is_true(clients[k]:silent(0.05))
      assert.same({ uid = clients[k].uid, online = true, connections = 1 },
        cluster.online(nodes[(k % 3) + 1], clients[k].uid))
    end
    local status, _, body = http.request1(nodes[2].push_port, "GET", "/uids?limit=100")
    assert.equals(200, status)
    local page, seen = http.json(body), {}
    assert.is_not_true(page.partial)
    for _, entry in ipairs(page.uids) do seen[entry.uid] = true end
    for k = 1, 3 do assert.is_true(seen[clients[k].uid], clients[k].uid) end
    for _, c in ipairs(clients) do c:close() end
  end)
end)

describe("a cluster with one shard down", function()
  it("serves the uids of the other shards, delivers locally and counts the rest, then resumes",
    function()
      local r = redis.shards(3)
      local a = server.start { args = { "--redis", r.url } }
      local b = server.start { args = { "--redis", r.url } }
      cluster.wait_connected { a, b }
      local uid = {}
      local far = {}
      for k = 1, 3 do
        uid[k] = uids_on(k, 3, 1, "down-")[1]
        far[k] = ws.login(a.port, uid[k])
      end
      local near = ws.login(b.port, uid[2]) -- shard 2's uid on the sending node too
      local dropped = cluster.stats(b).cluster_dropped
      -- 300 messages to each uid, pipelined, while shard 2 is killed under them
      local pusher = http.open(b.push_port)
      os.execute(("(sleep 0.1; kill -KILL %d) &"):format(r[2].pid))
      local N = 300
      for i = 1, N do
        local batch = {}
        for k = 1, 3 do batch[k] = http.format("POST", "/send?uid=" .. uid[k], { body = "m" .. i }) end
        pusher:send_raw(table.concat(batch))
        for _ = 1, 3 do assert.equals(200, (pusher:read())) end
        if i % 50 == 0 then socket.sleep(0.05) end
      end
      pusher:close()
      assert(server.eventually(function()
        return a:log():find("lost redis", 1, true) and b:log():find("lost redis", 1, true)
      end, 5))
      for k = 1, 3, 2 do -- the other shards' uids lose nothing, in order
        for i = 1, N do assert.equals("m" .. i, (far[k]:receive())) end
        assert.is_true(far[k]:silent(0.1))
      end
      for i = 1, N do assert.equals("m" .. i, (near:receive())) end -- local delivery goes on
      local crossed = 0
      while far[2]:receive(0.3) do crossed = crossed + 1 end
      assert.is_true(crossed < N, "shard 2 was killed after the traffic")
      local counted = cluster.stats(b).cluster_dropped - dropped
      assert.is_true(crossed + counted >= N,
        ("shard 2's uid: %d crossed, %d counted as dropped, of %d"):format(crossed, counted, N))
      -- the shard comes back (empty): both nodes reconnect and subscribe again
      r[2] = r[2]:restart()
      assert(server.eventually(function()
        push(b, uid[2], "again")
        assert.equals("again", near:receive())
        return far[2]:receive(0.2) == "again"
      end, 10), "shard 2 did not come back")
      push(b, uid[2], "once")
      assert.equals("once", far[2]:receive())
      assert.is_true(far[2]:silent(0.2))
      for _, c in ipairs { far[1], far[2], far[3], near } do c:close() end
      cluster.stop(r, a, b)
    end)
end)

-- A master, its replica (extra: more of its options) and a sentinel; nodes a and b behind the
-- sentinel, a uid logged in on a, pushes through b: send() pushes one numbered message and
-- reads what arrived, drain() waits for the rest, tally() counts losses and duplicates.
local function failover_rig(replica_extra)
  -- Redis waits 5 s for more replicas before a diskless sync by default: none will come
  local master = redis.start(nil, "--repl-diskless-sync-delay 0")
  local replica = redis.start(nil, "--replicaof 127.0.0.1 " .. master.port .. " " .. (replica_extra or ""))
  assert(server.eventually(function()
    return replica:cli("--raw INFO replication"):find("master_link_status:up", 1, true)
  end, 5))
  local sentinel = redis.sentinel(master, "uc-master")
  assert(server.eventually(function() -- it learns of the replica from the master's INFO
    return sentinel:cli("SENTINEL replicas uc-master"):find(tostring(replica.port), 1, true)
  end, 15), "the sentinel never saw the replica")
  local rig = { master = master, replica = replica, sentinel = sentinel, sent = 0, got = {}, dup = 0 }
  rig.a = server.start { args = { "--redis", sentinel.url, "--redis-timeout", "0.5" } }
  rig.b = server.start { args = { "--redis", sentinel.url, "--redis-timeout", "0.5" } }
  cluster.wait_connected { rig.a, rig.b }
  rig.receiver = ws.login(rig.a.port, "fo-recv")
  rig.pusher = http.open(rig.b.push_port)
  local function take(m)
    if rig.got[m] then rig.dup = rig.dup + 1 end
    rig.got[m] = true
  end
  function rig.send()
    rig.sent = rig.sent + 1
    assert.equals(200, (rig.pusher:request("POST", "/send?uid=fo-recv", { body = "f" .. rig.sent })))
    while true do
      local m = rig.receiver:receive(0.002)
      if not m then break end
      take(m)
    end
    return rig.got["f" .. rig.sent]
  end
  function rig.drain()
    local m = rig.receiver:receive(0.5)
    while m do
      take(m)
      m = rig.receiver:receive(0.3)
    end
  end
  function rig.lost()
    local received = 0
    for _ in pairs(rig.got) do received = received + 1 end
    return rig.sent - received
  end
  -- Killed with nothing in flight: a publication Redis answered an instant before dying may
  -- yet die on its way to the subscriber, a loss that node counts as a gap, not a drop.
  -- meanwhile(), when given, runs just before the kill.
  function rig.kill_master(meanwhile)
    for _ = 1, 100 do rig.send() end
    assert(server.eventually(rig.send, 5))
    if meanwhile then meanwhile() end
    os.execute(("kill -KILL %d"):format(master.pid)) -- not master:stop(): keep sending meanwhile
    rig.killed = socket.gettime()
  end
  -- Sends until the sentinel names the replica (returns when), then for `after` seconds more.
  function rig.until_promoted(after)
    while socket.gettime() - rig.killed < 20 do
      rig.send()
      rig.promoted = rig.promoted or (sentinel:master() == replica.port and socket.gettime())
      if rig.promoted and socket.gettime() - rig.promoted >= after then return end
    end
    error("sentinel did not promote the replica")
  end
  function rig.stop()
    rig.receiver:close()
    rig.pusher:close()
    assert.equals(0, rig.a:stop())
    assert.equals(0, rig.b:stop())
    sentinel:stop()
    replica:stop()
  end
  return rig
end

describe("a cluster behind Redis Sentinel #no_memcheck", function()
  it("follows a failover to the promoted replica, counting every loss and duplicating nothing",
    function()
      local rig = failover_rig()
      rig.kill_master()
      rig.until_promoted(0)
      -- keep sending through the switch until the new master carries messages again
      assert(server.eventually(rig.send, 3), "the nodes did not follow the new master:\n" .. rig.b:log())
      for _ = 1, 150 do rig.send() end
      rig.drain()
      assert.equals(0, rig.dup)
      assert.is_true(cluster.stats(rig.a).cluster_gaps >= 1, "the receiving node did not count its gap")
      assert.is_true(rig.lost() > 0, "the switch lost nothing: was it a failover?")
      assert.equals(rig.lost(), cluster.stats(rig.b).cluster_dropped)
      local new_master = "says master uc%-master is 127%.0%.0%.1:" .. rig.replica.port
      assert.matches(new_master, rig.b:log())
      assert.matches(new_master, rig.a:log())
      rig.stop()
    end)

  it("waits for every node it saw before the failover, even one the promoted replica never heard of",
    function()
      -- replication is asynchronous: a replica promoted a moment after the nodes registered
      -- may not have their registrations. Emulated by wiping the replica (made writable).
      local rig = failover_rig("--replica-read-only no")
      assert(server.eventually(function() return rig.replica:cli("DBSIZE"):match("%d+") ~= "0" end, 5))
      assert.matches("OK", rig.replica:cli("FLUSHALL"))
      -- the receiving node comes back a second after the publishing one
      rig.kill_master(function() rig.a:signal("STOP") end)
      rig.until_promoted(1)
      rig.a:signal("CONT")
      assert(server.eventually(rig.send, 5), "the nodes did not follow the new master:\n" .. rig.b:log())
      for _ = 1, 100 do rig.send() end
      rig.drain()
      assert.equals(0, rig.dup)
      assert.is_true(rig.lost() > 100, "a second's pushes went by while the receiver was away")
      assert.equals(rig.lost(), cluster.stats(rig.b).cluster_dropped)
      assert.matches("every node is subscribed again on redis 127%.0%.0%.1:" .. rig.replica.port, rig.b:log())
      rig.stop()
    end)
end)
