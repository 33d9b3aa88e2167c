-- Kept messages in cluster mode: Redis Streams hold them, so a client resumes on any node, and
-- after its node was killed, with nothing lost; numbers are the uid's across the cluster.
local ws = require "ws"
local http = require "http"
local server = require "server"
local redis = require "redis"
local socket = require "socket"
local cluster = require "cluster"
local v1 = require "v1"

-- How many times the node logged that it connected to Redis.
local function connects(node)
  local _, n = node:log():gsub("cluster: connected to redis", "")
  return n
end

-- Stops Redis (every shard) and waits until the node noticed; returns a function that starts
-- it again on the same ports and waits until the node is back on each.
local function redis_down(r, node)
  local before = connects(node)
  r:stop()
  assert(server.eventually(function() return node:log():find("lost redis", 1, true) end, 5))
  return function()
    local again = r:restart()
    local shards = math.max(#r, 1)
    assert(server.eventually(function() return connects(node) >= before + shards end, 10), node:log())
    return again
  end
end

local function keep(node, uid, body)
  local status, _, answer = http.request1(node.push_port, "POST", "/send?uid=" .. uid .. "&keep=60",
    { body = body })
  assert.equals(200, status, answer)
  return http.json(answer)
end

describe("kept messages across a cluster", function()
  local r, a, b

  setup(function() r, a, b = cluster.start(2) end)
  teardown(function() cluster.stop(r, a, b) end)

  it("numbers a uid's messages once for the whole cluster, whichever node keeps them", function()
    local first = keep(a, "c-num", "1").seq
    assert.equals(first + 1, keep(b, "c-num", "2").seq)
    assert.equals(first + 2, keep(a, "c-num", "3").seq)
  end)

  it("delivers a kept message once to the uid's connections on every node, numbered", function()
    local on_a, on_b = v1.login(a.port, "c-both"), v1.login(b.port, "c-both")
    local seed = ws.login(b.port, "c-both")
    local answer = keep(a, "c-both", "hello")
    assert.same({ "kept", answer.seq, "hello", false }, { v1.read(on_a) })
    assert.same({ "kept", answer.seq, "hello", false }, { v1.read(on_b) })
    assert.equals("hello", seed:receive())
    for _, c in ipairs { on_a, on_b, seed } do
      assert.is_true(c:silent(0.3))
      c:close()
    end
  end)

  it("replays on node B what was kept through node A while the client was away", function()
    local first = keep(a, "c-away", "one").seq
    keep(a, "c-away", "two")
    keep(b, "c-away", "three")
    local c = v1.login(b.port, "c-away", first)
    assert.same({ "two", "three" }, v1.payloads(v1.read_kept(c, 2)))
    assert.is_true(c:silent(0.3))
    c:close()
  end)

  it("hands every message once, in order, to a client that moves between the nodes while both push",
    function()
      -- 500 kept messages through each node's push API, from two processes; the client reads a
      -- few, drops its connection, and resumes on the other node, 30 times.
      local wait_a = v1.sender(server.ROOT, a.push_port, "c-move", 500, { prefix = "a" })
      local wait_b = v1.sender(server.ROOT, b.push_port, "c-move", 500, { prefix = "b" })
      local nodes, got, last, moves = { a, b }, {}, 0, 0
      local deadline = socket.gettime() + 60 * server.slowdown
      while #got < 1000 and socket.gettime() < deadline do
        moves = moves + 1
        local c = v1.login(nodes[moves % 2 + 1].port, "c-move", last)
        local want = moves <= 30 and math.random(5, 60) or math.huge
        local n = 0
        while n < want and #got < 1000 do
          local kind, seq, payload = v1.read(c, 5)
          if not kind then break end
          assert.equals("kept", kind, "no gap may be announced")
          if last > 0 then assert.equals(last + 1, seq, "a message was skipped or sent twice") end
          last = seq
          got[#got + 1] = payload
          n = n + 1
        end
        if moves % 2 == 0 then v1.reset(c) else c:close() end
      end
      assert.equals(1000, #got)
      local next_of = { a = 1, b = 1 }
      for _, p in ipairs(got) do
        local from, i = p:match("^([ab])(%d+)$")
        assert.equals(next_of[from], tonumber(i), "out of order from " .. tostring(from))
        next_of[from] = next_of[from] + 1
      end
      assert.equals("0", wait_a(server))
      assert.equals("0", wait_b(server))
    end)
end)

describe("a uid's mailbox in Redis", function()
  local r, a

  setup(function()
    r, a = cluster.start(1, { args = { "--mailbox-max-bytes", "16", "--mailbox-max-messages", "3" } })
  end)
  teardown(function() cluster.stop(r, a) end)

  it("drops the oldest past --mailbox-max-bytes, and a resume is told", function()
    local first = keep(a, "c-bytes", "aaaaaa").seq
    keep(a, "c-bytes", "bbbbbb")
    keep(a, "c-bytes", "cccccc") -- 18 bytes: "aaaaaa" goes
    local c = v1.login(a.port, "c-bytes", first - 1)
    assert.same({ "gap", first, first }, { v1.read(c) })
    assert.same({ "bbbbbb", "cccccc" }, v1.payloads(v1.read_kept(c, 2)))
    c:close()
  end)

  it("drops the oldest past --mailbox-max-messages", function()
    local first = keep(a, "c-count", "1").seq
    for i = 2, 5 do keep(a, "c-count", tostring(i)) end
    local c = v1.login(a.port, "c-count", first)
    assert.same({ "gap", first + 1, first + 1 }, { v1.read(c) })
    assert.same({ "3", "4", "5" }, v1.payloads(v1.read_kept(c, 3)))
    c:close()
  end)

  it("refuses with 413 a message larger than a mailbox may hold, sending nothing", function()
    local c = ws.login(a.port, "c-big")
    local status = http.request1(a.push_port, "POST", "/send?uid=c-big&keep=60", { body = ("x"):rep(17) })
    assert.equals(413, status)
    assert.is_true(c:silent())
    c:close()
  end)
end)

describe("kept messages from Lua in a cluster", function()
  local r, a

  setup(function()
    r = redis.start()
    a = server.start { args = { "--redis", r.url }, script = server.script([[
      local uidcast = require "uidcast"
      return { on_message = function(conn, data)
        local n = uidcast.send_uid(data, "kept from lua", { keep = 30, kept = function(seq, delivered)
          conn:send(("kept %s %d"):format(tostring(seq), delivered))
        end })
        conn:send("returned " .. n)
      end }
    ]]) }
    cluster.wait_connected { a }
  end)
  teardown(function() cluster.stop(r, a) end)

  it("returns the count at once and calls opts.kept with the number Redis gave", function()
    local c = assert(ws.connect(a.port))
    c:send("c-lua")
    assert.equals("returned 0", c:receive())
    local seq = c:receive():match("^kept (%d+) 0$")
    assert.is_truthy(seq)
    assert.equals(tonumber(seq) + 1, keep(a, "c-lua", "next").seq)
    c:close()
  end)
end)

describe("undelivered kept messages in a cluster", function()
  local r, a, b
  -- Connections bind to ?uid=; each node reports on_undelivered to the uid "watcher", naming
  -- itself.
  local function script(name)
    return server.script(([[
      local uidcast = require "uidcast"
      return {
        on_open = function(conn, req) if req.query.uid then conn:bind(req.query.uid) end end,
        on_undelivered = function(uid, seq, data, reason)
          uidcast.send_uid("watcher", ("%s %%s %%d %%s %%s"):format(uid, seq, data, reason))
        end }
    ]]):format(name))
  end

  setup(function()
    r = redis.start()
    a = server.start { args = { "--redis", r.url }, script = script("A") }
    b = server.start { args = { "--redis", r.url }, script = script("B") }
    cluster.wait_connected { a, b }
  end)
  teardown(function() cluster.stop(r, a, b) end)

  local function keep_for(node, uid, body, seconds)
    local _, _, answer = http.request1(node.push_port, "POST",
      ("/send?uid=%s&keep=%s"):format(uid, seconds), { body = body })
    return http.json(answer).seq
  end

  it("runs on_undelivered once in the whole cluster for a message nobody was handed", function()
    local watch = assert(ws.connect(a.port, { path = "/?uid=watcher" }))
    local seq = keep_for(b, "c-undelivered", "lost", 0.3)
    assert.matches(("^[AB] c%%-undelivered %d lost expired$"):format(seq), (watch:receive(5)))
    assert.is_true(watch:silent(2.5)) -- once, not once per node
    watch:close()
  end)

  it("does not run it for a message a connection on any node was handed", function()
    local watch = assert(ws.connect(a.port, { path = "/?uid=watcher" }))
    local client = assert(ws.connect(b.port, { path = "/?uid=c-handed" }))
    socket.sleep(0.1) -- node B subscribed
    keep_for(a, "c-handed", "got it", 0.3)
    assert.equals("got it", client:receive())
    assert.is_true(watch:silent(2.5))
    client:close()
    watch:close()
  end)
end)

describe("kept messages when a node is killed #no_memcheck", function()
  local r, a, b

  setup(function() r, a, b = cluster.start(2) end)
  teardown(function()
    a:stop()
    assert.equals(0, b:stop())
    r:stop()
  end)

  it("lets its clients resume on the other node with nothing lost, and on it once it is back", function()
    local wait = v1.sender(server.ROOT, b.push_port, "c-kill", 600)
    local got, last = {}, 0
    local function read_some(c, n)
      for _ = 1, n do
        local kind, seq, payload = v1.read(c, 5)
        if not kind then return end
        assert.equals("kept", kind)
        if last > 0 then assert.equals(last + 1, seq) end
        last = seq
        got[#got + 1] = payload
      end
    end
    local c = v1.login(a.port, "c-kill", 0)
    read_some(c, 100)
    a:signal("KILL")
    a:wait(5)
    c.sock:close()
    c = v1.login(b.port, "c-kill", last)
    read_some(c, 200)
    c:close()
    a = server.start { args = { "--redis", r.url } }
    cluster.wait_connected { a }
    c = v1.login(a.port, "c-kill", last)
    read_some(c, 600 - #got)
    c:close()
    assert.equals(600, #got)
    for i = 1, 600 do assert.equals("m" .. i, got[i]) end
    assert.equals("0", wait(server))
  end)
end)

describe("kept messages while Redis is down", function()
  local r, a

  setup(function()
    r = redis.start()
    a = server.start { args = { "--redis", r.url, "--redis-timeout", "0.2" } }
    cluster.wait_connected { a }
  end)
  teardown(function() cluster.stop(r, a) end)

  it("sends to this node's connections unkept, counts it, and makes a later resume report the gap", function()
    local before = keep(a, "c-down", "before").seq
    local live = v1.login(a.port, "c-down") -- no resume: nothing asked of Redis
    local restart = redis_down(r, a)
    local status, _, answer = http.request1(a.push_port, "POST", "/send?uid=c-down&keep=60",
      { body = "while down" })
    assert.equals(200, status)
    assert.equals('{"delivered":1,"seq":null}', answer)
    assert.same({ "plain", "while down", false }, { v1.read(live) })
    live:close()
    assert.is_true(cluster.stats(a).mailbox_unkept >= 1)
    r = restart()
    local c = v1.login(a.port, "c-down", before)
    local kind, first = v1.read(c)
    assert.equals("gap", kind)
    assert.equals(before + 1, first)
    c:close()
  end)

  it("tells a client that resumes while Redis is down that the replay is unavailable", function()
    local restart = redis_down(r, a)
    local c = v1.login(a.port, "c-unavail", 5)
    assert.equals("unavailable", (v1.read(c)))
    c:close()
    r = restart()
  end)
end)
