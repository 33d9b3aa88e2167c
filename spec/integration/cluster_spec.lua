-- Cluster mode: two uidcast nodes on one real redis-server. Every connection gets a message
-- exactly once, whichever node it is on; Redis going away stops only cross-node delivery.
local ws = require "ws"
local http = require "http"
local server = require "server"
local redis = require "redis"

local cluster = require "cluster"
local wait_connected, online = cluster.wait_connected, cluster.online

-- Logs in on a node: once "login success" arrived, the node receives the uid's messages from
-- every other node (the login waits for Redis to confirm the subscription).
local function login(node, uid) return ws.login(node.port, uid) end

describe("cluster over Redis", function()
  local r, a, b

  setup(function()
    r = redis.start()
    a = server.start { args = { "--redis", r.url } }
    b = server.start { args = { "--redis", r.url } }
    wait_connected { a, b }
  end)
  teardown(function()
    assert.equals(0, a:stop())
    assert.equals(0, b:stop())
    r:stop()
  end)

  it("delivers uid:message from node B to a uid on node A exactly once", function()
    local alice = login(a, "cl-alice")
    local bob = login(b, "cl-bob")
    bob:send("cl-alice:across nodes")
    assert.equals("across nodes", alice:receive())
    assert.is_true(alice:silent(0.3))
    alice:close()
    bob:close()
  end)

  it("gives a uid with connections on both nodes one copy on each", function()
    local on_a, on_b = login(a, "cl-carol"), login(b, "cl-carol")
    local sender = login(a, "cl-sender")
    sender:send("cl-carol:both of you")
    assert.equals("both of you", on_a:receive())
    assert.equals("both of you", on_b:receive())
    assert.is_true(on_a:silent(0.3))
    assert.is_true(on_b:silent(0.1))
    for _, c in ipairs { on_a, on_b, sender } do c:close() end
  end)

  it("broadcasts to every node exactly once, the sender included", function()
    local x, y = login(a, "cl-x"), login(b, "cl-y")
    x:send("all:everyone everywhere")
    assert.equals("everyone everywhere", x:receive())
    assert.equals("everyone everywhere", y:receive())
    assert.is_true(x:silent(0.3))
    assert.is_true(y:silent(0.1))
    x:close()
    y:close()
  end)

  it("keeps binary messages binary across nodes", function()
    local x, y = login(a, "cl-bx"), login(b, "cl-by")
    x:send("cl-by:\0\1\2", true)
    local data, binary = y:receive()
    assert.equals("\0\1\2", data)
    assert.is_true(binary)
    x:close()
    y:close()
  end)

  it("delivers a push to node B for a uid on node A", function()
    local dave = login(a, "cl-dave")
    local status, _, body = http.request1(b.push_port, "POST", "/send?uid=cl-dave", { body = "pushed" })
    assert.equals(200, status)
    assert.same({ delivered = 0 }, http.json(body)) -- local to node B; node A delivers its own
    assert.equals("pushed", dave:receive())
    assert.is_true(dave:silent(0.3))
    dave:close()
  end)

  it("keeps order from one sender to one uid across nodes", function()
    local s, d = login(a, "cl-seq-s"), login(b, "cl-seq-d")
    for i = 1, 300 do s:send("cl-seq-d:" .. i) end
    for i = 1, 300 do assert.equals(tostring(i), d:receive()) end
    s:close()
    d:close()
  end)
end)

describe("cluster groups", function()
  it("sends to a group's members on every node exactly once", function()
    local r = redis.start()
    local rooms = server.ROOT .. "/scripts/rooms.lua"
    local a = server.start { script = rooms, args = { "--redis", r.url } }
    local b = server.start { script = rooms, args = { "--redis", r.url } }
    wait_connected { a, b }
    local x, y, z = ws.login(a.port, "g-x"), ws.login(b.port, "g-y"), ws.login(b.port, "g-z")
    x:send("join:lobby")
    assert.matches("^joined lobby", (x:receive()))
    y:send("join:lobby")
    assert.matches("^joined lobby", (y:receive()))
    require("socket").sleep(0.1 * server.slowdown)
    x:send("room:lobby:hello both nodes")
    assert.equals("[lobby] g-x: hello both nodes", x:receive())
    assert.equals("[lobby] g-x: hello both nodes", y:receive())
    assert.is_true(x:silent(0.3))
    assert.is_true(y:silent(0.1))
    assert.is_true(z:silent(0.1))
    local status, _, body = http.request1(a.push_port, "POST", "/send?group=lobby", { body = "from push" })
    assert.equals(200, status)
    assert.same({ delivered = 1 }, http.json(body))
    assert.equals("from push", x:receive())
    assert.equals("from push", y:receive())
    assert.is_true(y:silent(0.3))
    for _, c in ipairs { x, y, z } do c:close() end
    assert.equals(0, a:stop())
    assert.equals(0, b:stop())
    r:stop()
  end)
end)

describe("cluster when Redis goes away", function()
  it("keeps delivering locally, counts what it could not publish, and resumes", function()
    local r = redis.start()
    local a = server.start { args = { "--redis", r.url } }
    local b = server.start { args = { "--redis", r.url } }
    wait_connected { a, b }
    local alice, alice2 = ws.login(a.port, "rd-alice"), ws.login(a.port, "rd-alice2")
    local bob = ws.login(b.port, "rd-bob")
    require("socket").sleep(0.2)
    r:stop()
    assert.truthy(server.eventually(function() return a:log():find("cluster: lost redis", 1, true) end))
    -- local delivery goes on
    alice:send("rd-alice2:still local")
    assert.equals("still local", alice2:receive())
    local _, _, stats = http.request1(a.push_port, "GET", "/stats")
    assert.is_true(http.json(stats).cluster_dropped >= 1)
    -- Redis comes back on the same port: cross-node delivery resumes within a few seconds
    local r2 = r:restart()
    local delivered = server.eventually(function()
      alice:send("rd-bob:back")
      local got = bob:receive(0.3)
      return got == "back"
    end, 10)
    assert.truthy(delivered)
    -- the restarted Redis knows nothing: each node wrote its presence again on reconnecting
    assert.same({ uid = "rd-alice", online = true, connections = 1 }, online(b, "rd-alice"))
    assert.same({ uid = "rd-bob", online = true, connections = 1 }, online(a, "rd-bob"))
    for _, c in ipairs { alice, alice2, bob } do c.sock:close() end
    assert.equals(0, a:stop())
    assert.equals(0, b:stop())
    r2:stop()
  end)

  it("refuses a malformed --redis URL at start", function()
    local ok = os.execute(server.BIN .. " --redis localhost:6379 --check scripts/default.lua 2>/dev/null")
    assert.is_not_true(ok)
  end)
end)

describe("cluster of three nodes", function()
  local r, nodes

  setup(function()
    r = redis.start()
    nodes = {}
    for i = 1, 3 do nodes[i] = server.start { args = { "--redis", r.url } } end
    wait_connected(nodes)
  end)
  teardown(function()
    for _, node in ipairs(nodes) do assert.equals(0, node:stop()) end
    r:stop()
  end)

  it("delivers uid:message from node A to a uid on node C exactly once", function()
    local a, c = login(nodes[1], "t3-a"), login(nodes[3], "t3-c")
    local b = login(nodes[2], "t3-b")
    a:send("t3-c:one hop over two")
    assert.equals("one hop over two", c:receive())
    assert.is_true(c:silent(0.3))
    assert.is_true(b:silent(0.1))
    for _, x in ipairs { a, b, c } do x:close() end
  end)

  it("gives a uid with connections on all three nodes one copy on each", function()
    local copies = {}
    for i = 1, 3 do copies[i] = login(nodes[i], "t3-many") end
    local sender = login(nodes[2], "t3-sender")
    sender:send("t3-many:one each")
    for i = 1, 3 do assert.equals("one each", copies[i]:receive()) end
    for i = 1, 3 do assert.is_true(copies[i]:silent(i == 1 and 0.3 or 0.05)) end
    for _, x in ipairs(copies) do x:close() end
    sender:close()
  end)

  it("broadcasts from one node to all three exactly once", function()
    local clients = {}
    for i = 1, 3 do clients[i] = login(nodes[i], "t3-all" .. i) end
    clients[2]:send("all:to the whole cluster")
    for i = 1, 3 do assert.equals("to the whole cluster", clients[i]:receive()) end
    for i = 1, 3 do assert.is_true(clients[i]:silent(i == 1 and 0.3 or 0.05)) end
    for _, x in ipairs(clients) do x:close() end
  end)

  it("answers GET /online on any node with the connections of every node", function()
    local x1, x2 = login(nodes[1], "t3-here"), login(nodes[1], "t3-here")
    local x3 = login(nodes[3], "t3-here")
    for i = 1, 3 do
      assert.same({ uid = "t3-here", online = true, connections = 3 }, online(nodes[i], "t3-here"))
    end
    assert.same({ uid = "t3-nobody", online = false, connections = 0 }, online(nodes[2], "t3-nobody"))
    x3:close()
    assert.truthy(server.eventually(function() return online(nodes[2], "t3-here").connections == 2 end))
    x1:close()
    x2:close()
    assert.truthy(server.eventually(function() return online(nodes[2], "t3-here").online == false end))
  end)

  it("answers pipelined GET /online requests in order, behind and before other requests", function()
    local x = login(nodes[3], "t3-pipe")
    local conn = http.open(nodes[1].push_port)
    conn:send_raw(http.format("GET", "/online?uid=t3-pipe") .. http.format("POST", "/send?uid=t3-pipe",
      { body = "between" }) .. http.format("GET", "/online?uid=t3-none") .. http.format("GET", "/stats"))
    local s1, _, b1 = conn:read()
    local s2, _, b2 = conn:read()
    local s3, _, b3 = conn:read()
    local s4, _, b4 = conn:read()
    assert.same({ 200, 200, 200, 200 }, { s1, s2, s3, s4 })
    assert.same({ uid = "t3-pipe", online = true, connections = 1 }, http.json(b1))
    assert.same({ delivered = 0 }, http.json(b2))
    assert.same({ uid = "t3-none", online = false, connections = 0 }, http.json(b3))
    assert.is_number(http.json(b4).push_requests)
    assert.equals("between", x:receive())
    conn:close()
    x:close()
  end)
end)

describe("cluster groups on three nodes", function()
  it("sends to a group's members on every node exactly once", function()
    local r = redis.start()
    local rooms = server.ROOT .. "/scripts/rooms.lua"
    local nodes = {}
    for i = 1, 3 do nodes[i] = server.start { script = rooms, args = { "--redis", r.url } } end
    wait_connected(nodes)
    local members = {}
    for i = 1, 3 do
      members[i] = ws.login(nodes[i].port, "g3-" .. i)
      members[i]:send("join:hall")
      assert.matches("^joined hall", (members[i]:receive()))
    end
    local outsider = ws.login(nodes[2].port, "g3-out")
    require("socket").sleep(0.1 * server.slowdown)
    members[3]:send("room:hall:hi all three")
    for i = 1, 3 do assert.equals("[hall] g3-3: hi all three", members[i]:receive()) end
    local status, _, body = http.request1(nodes[1].push_port, "POST", "/send?group=hall", { body = "pushed" })
    assert.equals(200, status)
    assert.same({ delivered = 1 }, http.json(body))
    for i = 1, 3 do assert.equals("pushed", members[i]:receive()) end
    for i = 1, 3 do assert.is_true(members[i]:silent(i == 1 and 0.3 or 0.05)) end
    assert.is_true(outsider:silent(0.05))
    for _, c in ipairs(members) do c:close() end
    outsider:close()
    for _, node in ipairs(nodes) do assert.equals(0, node:stop()) end
    r:stop()
  end)
end)

describe("cluster presence", function()
  -- A script that logs in like the default one and answers "who:<uid>" through the
  -- cluster-wide is_online(uid, fn).
  local WHO = [[
local uidcast = require "uidcast"
return {
  on_message = function(conn, data)
    if not conn.uid then conn:bind(data) return conn:send("hi " .. data) end
    local uid = data:match("^who:(.+)$")
    if uid then
      local now = uidcast.is_online(uid)
      uidcast.is_online(uid, function(online, n)
        conn:send(("%s here=%s cluster=%s %d"):format(uid, tostring(now), tostring(online), n))
      end)
    end
  end,
}
]]

  it("answers is_online(uid, fn) with the count over every node; plain is_online is local", function()
    local r = redis.start()
    local script = server.script(WHO)
    local a = server.start { script = script, args = { "--redis", r.url } }
    local b = server.start { script = script, args = { "--redis", r.url } }
    wait_connected { a, b }
    local asker = ws.connect(a.port)
    asker:send("asker")
    assert.equals("hi asker", asker:receive())
    local far1, far2 = ws.connect(b.port), ws.connect(b.port)
    for _, c in ipairs { far1, far2 } do
      c:send("far")
      assert.equals("hi far", c:receive())
    end
    assert.truthy(server.eventually(function()
      asker:send("who:far")
      return asker:receive() == "far here=false cluster=true 2"
    end))
    asker:send("who:asker")
    assert.equals("asker here=true cluster=true 1", asker:receive())
    asker:send("who:ghost")
    assert.equals("ghost here=false cluster=false 0", asker:receive())
    for _, c in ipairs { asker, far1, far2 } do c:close() end
    assert.equals(0, a:stop())
    assert.equals(0, b:stop())
    r:stop()
  end)

  it("drops a waiting is_online callback when a reload replaces its Lua state", function()
    local r = redis.start()
    local a = server.start { script = server.script(WHO), args = { "--redis", r.url } }
    wait_connected { a }
    local asker = ws.connect(a.port)
    asker:send("asker")
    assert.equals("hi asker", asker:receive())
    -- Redis holds every command for a while: the presence query waits across the reload
    r:cli("CLIENT PAUSE 1500 ALL")
    asker:send("who:asker")
    require("socket").sleep(0.2)
    assert.truthy(a:signal("HUP"))
    assert.truthy(server.eventually(function() return a:log():find("reloaded ", 1, true) end))
    -- the old state's callback is never called once Redis answers...
    assert.is_true(asker:silent(2))
    -- ...and the new state asks and hears as usual, the connection's uid kept
    asker:send("who:asker")
    assert.equals("asker here=true cluster=true 1", asker:receive())
    asker:close()
    assert.equals(0, a:stop())
    r:stop()
  end)

  it("forgets a node that stops at once, and one that is killed after --presence-ttl #no_memcheck", function()
    local r = redis.start()
    local args = { "--redis", r.url, "--presence-ttl", "2" }
    local a, b, c = server.start { args = args }, server.start { args = args }, server.start { args = args }
    wait_connected { a, b, c }
    local on_b, on_c = ws.login(b.port, "gone"), ws.login(c.port, "gone")
    assert.truthy(server.eventually(function() return online(a, "gone").connections == 2 end))
    -- a graceful stop withdraws the node's presence before it exits
    assert.equals(0, b:stop())
    on_b.sock:close()
    assert.equals(1, online(a, "gone").connections)
    -- a killed node says nothing: its presence lapses after the TTL
    c:signal("KILL")
    on_c.sock:close()
    assert.equals(1, online(a, "gone").connections)
    assert.truthy(server.eventually(function() return online(a, "gone").online == false end, 5))
    assert.equals(0, a:stop())
    r:stop()
  end)

  it("answers from the local node while Redis is down, saying the answer is partial", function()
    local r = redis.start()
    local a = server.start { args = { "--redis", r.url } }
    wait_connected { a }
    local x = ws.login(a.port, "lonely")
    r:stop()
    assert.truthy(server.eventually(function() return a:log():find("cluster: lost redis", 1, true) end))
    assert.same({ uid = "lonely", online = true, connections = 1, partial = true }, online(a, "lonely"))
    assert.same({ uid = "other", online = false, connections = 0, partial = true }, online(a, "other"))
    x:close()
    assert.equals(0, a:stop())
  end)
end)

describe("cluster with Redis authentication", function()
  it("logs in as an ACL user, uses the URL's database, and says so when refused", function()
    -- alice has what the README's ACL SETUSER line gives, not more
    local r = redis.start(nil, "--requirepass default-secret " ..
      "--user alice on '>alice-secret' '~uidcast:*' '&uidcast:*' +@pubsub +@hash +@set +@sortedset " ..
      "+@string +@stream +@keyspace +@scripting +ping +select +role +time")
    local url = ("redis://alice:alice-secret@127.0.0.1:%d/3"):format(r.port)
    local a = server.start { args = { "--redis", url } }
    local b = server.start { args = { "--redis", url } }
    wait_connected { a, b }
    local x, y = ws.login(a.port, "acl-x"), ws.login(b.port, "acl-y")
    require("socket").sleep(0.1 * server.slowdown)
    x:send("acl-y:through an ACL user")
    assert.equals("through an ACL user", y:receive())
    -- presence lives in database 3, not 0
    local auth = "--user alice --pass alice-secret --no-auth-warning"
    local held = ""
    for key in r:cli(auth .. " -n 3 --raw keys 'uidcast:n:*'"):gmatch("%S+") do
      held = held .. r:cli(auth .. " -n 3 --raw hkeys " .. key)
    end
    assert.matches("acl%-x", held)
    assert.matches("acl%-y", held)
    assert.equals("", (r:cli(auth .. " -n 0 --raw keys 'uidcast:n:*'"):gsub("%s", "")))
    -- kept messages and online events run scripts whose every call the ACL checks
    local status, _, answer = http.request1(b.push_port, "POST", "/send?uid=acl-y&keep=60", { body = "kept" })
    assert.equals(200, status, answer)
    assert.equals("kept", y:receive())
    for _, node in ipairs { a, b } do assert.is_nil(node:log():find("can't run this command", 1, true), node:log()) end
    -- the old form redis://:PASSWORD@ authenticates the default user
    local c = server.start { args = { "--redis", ("redis://:default-secret@127.0.0.1:%d"):format(r.port) } }
    wait_connected { c }
    -- a wrong password is a loud error; the node keeps serving its own clients
    local bad = server.start { args = { "--redis", ("redis://alice:wrong@127.0.0.1:%d"):format(r.port) } }
    assert.truthy(server.eventually(function()
      return bad:log():find("refused the set%-up: WRONGPASS")
    end, 5), bad:log())
    local p, q = ws.login(bad.port, "bad-p"), ws.login(bad.port, "bad-q")
    p:send("bad-q:still served")
    assert.equals("still served", q:receive())
    for _, s in ipairs { x, y, p, q } do s:close() end
    for _, node in ipairs { a, b, c, bad } do assert.equals(0, node:stop()) end
    r:stop()
  end)

  it("refuses a URL it cannot use, naming what is wrong", function()
    local cases = {
      { "redis://127.0.0.1:0", "the port must be 1 to 65535" },
      { "redis://user@127.0.0.1", "credentials need a ':'" },
      { "redis://127.0.0.1/x", "the database must be a number" },
      { "redis://:pw@", "no host" },
      { ("redis://127.0.0.1:1 "):rep(17), "at most 16 shards" },
      { "sentinel://127.0.0.1:26379", "no master name" },
      { "redis://127.0.0.1:6379 http://x", "a URL such as redis://" },
    }
    for _, case in ipairs(cases) do
      local out = os.tmpname()
      local ok = os.execute(("%s --redis %s --listen 127.0.0.1:0 --push off 2>%s")
        :format(server.BIN, server.shell_quote(case[1]), out))
      assert.is_not_true(ok)
      assert.matches(case[2], server.read_file(out), 1, true)
      os.remove(out)
    end
  end)
end)
