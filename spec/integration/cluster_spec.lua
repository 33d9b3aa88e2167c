-- Cluster mode: two uidcast nodes on one real redis-server. Every connection gets a message
-- exactly once, whichever node it is on; Redis going away stops only cross-node delivery.
local ws = require "ws"
local http = require "http"
local server = require "server"
local redis = require "redis"

describe("cluster over Redis", function()
  local r, a, b

  setup(function()
    r = redis.start()
    a = server.start { args = { "--redis", r.url } }
    b = server.start { args = { "--redis", r.url } }
    for _, node in ipairs { a, b } do
      assert.truthy(server.eventually(function()
        return node:log():find("cluster: connected to redis", 1, true)
      end), node:log())
    end
  end)
  teardown(function()
    assert.equals(0, a:stop())
    assert.equals(0, b:stop())
    r:stop()
  end)

  -- Logs in on a node and waits until that node's subscription is live.
  local function login(node, uid)
    local c = ws.login(node.port, uid)
    require("socket").sleep(0.1 * server.slowdown)
    return c
  end

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
    for _, node in ipairs { a, b } do
      assert.truthy(server.eventually(function() return node:log():find("cluster: connected", 1, true) end))
    end
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
    for _, node in ipairs { a, b } do
      assert.truthy(server.eventually(function() return node:log():find("cluster: connected", 1, true) end))
    end
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
    local r2 = redis.start(r.port)
    local delivered = server.eventually(function()
      alice:send("rd-bob:back")
      local got = bob:receive(0.3)
      return got == "back"
    end, 10)
    assert.truthy(delivered)
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
