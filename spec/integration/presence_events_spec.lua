-- Online and offline events: on_online(uid, version) with a uid's first connection,
-- on_offline(uid, version) once its last one is gone for --offline-grace.
local ws = require "ws"
local server = require "server"
local socket = require "socket"

-- Records every event; a connection to /?events=1 is answered the list so far (and it is
-- cleared). Others bind to ?uid=.
local RECORDER = [[
local uidcast = require "uidcast"
local events = {}
local function record(kind, uid, version)
  events[#events + 1] = kind .. " " .. uid .. " " .. version
  uidcast.log("info", "event " .. kind .. " " .. uid)
end
return {
  on_online = function(uid, version) record("online", uid, version) end,
  on_offline = function(uid, version) record("offline", uid, version) end,
  on_open = function(conn, req)
    if req.query.uid then conn:bind(req.query.uid) end
    if req.query.events then conn.data.reader = true end
  end,
  on_message = function(conn)
    conn:send(table.concat(events, ","))
    events = {}
  end,
}
]]

local function parse(list)
  local out = {}
  for kind, uid, version in list:gmatch("(%a+) (%S+) (%d+)") do
    out[#out + 1] = { kind = kind, uid = uid, version = tonumber(version) }
  end
  return out
end

describe("online and offline events on one node", function()
  local srv, reader

  setup(function()
    srv = server.start { script = server.script(RECORDER), args = { "--offline-grace", "0.4" } }
    reader = assert(ws.connect(srv.port, { path = "/?events=1" }))
  end)
  teardown(function()
    reader:close()
    assert.equals(0, srv:stop())
  end)

  local function events()
    reader:send("?")
    return parse(reader:receive())
  end

  it("says online once at a uid's first connection, and offline once after its last", function()
    local first = assert(ws.connect(srv.port, { path = "/?uid=e-alice" }))
    local second = assert(ws.connect(srv.port, { path = "/?uid=e-alice" }))
    local got
    assert(server.eventually(function() got = events() return #got > 0 end))
    assert.equals(1, #got)
    assert.same({ "online", "e-alice" }, { got[1].kind, got[1].uid })
    first:close()
    socket.sleep(0.6)
    assert.same({}, events()) -- one connection is left: still online
    second:close()
    socket.sleep(0.1)
    assert.same({}, events()) -- within the grace
    local off
    assert(server.eventually(function() off = events() return #off > 0 end))
    assert.same({ "offline", "e-alice" }, { off[1].kind, off[1].uid })
    assert.is_true(off[1].version > got[1].version)
    assert.equals(1, #off)
  end)

  it("makes no event when a uid comes back within the grace (a page reload)", function()
    local c = assert(ws.connect(srv.port, { path = "/?uid=e-reload" }))
    assert(server.eventually(function() return #events() == 1 end))
    c:close()
    socket.sleep(0.1)
    c = assert(ws.connect(srv.port, { path = "/?uid=e-reload" }))
    socket.sleep(0.6)
    assert.same({}, events())
    c:close()
    assert(server.eventually(function() return #events() == 1 end))
  end)

  it("gives each uid's events growing versions, strictly alternating", function()
    local seen = {}
    for _ = 1, 3 do
      local c = assert(ws.connect(srv.port, { path = "/?uid=e-flap" }))
      assert(server.eventually(function()
        for _, e in ipairs(events()) do seen[#seen + 1] = e end
        return #seen % 2 == 1
      end))
      c:close()
      assert(server.eventually(function()
        for _, e in ipairs(events()) do seen[#seen + 1] = e end
        return #seen % 2 == 0
      end))
    end
    assert.equals(6, #seen)
    for i, e in ipairs(seen) do
      assert.equals(i % 2 == 1 and "online" or "offline", e.kind)
      if i > 1 then assert.is_true(e.version > seen[i - 1].version) end
    end
  end)

  it("says offline at once for the uids still connected or in their grace when it stops", function()
    local other = server.start { script = server.script(RECORDER), args = { "--offline-grace", "30" } }
    local c = assert(ws.connect(other.port, { path = "/?uid=e-stay" }))
    local gone = assert(ws.connect(other.port, { path = "/?uid=e-grace" }))
    gone:close()
    assert(server.eventually(function() return other:log():find("event online e-grace", 1, true) end))
    assert.equals(0, other:stop())
    assert.truthy(other:log():find("event offline e-stay", 1, true))
    assert.truthy(other:log():find("event offline e-grace", 1, true))
    c:close()
  end)
end)

describe("online and offline events across a cluster", function()
  local cluster = require "cluster"
  local receivers = require "webhook_receiver"
  local r, nodes, receiver

  local LOGGER = [[
local uidcast = require "uidcast"
return {
  on_online = function(uid, version) uidcast.log("info", "event online " .. uid .. " " .. version) end,
  on_offline = function(uid, version) uidcast.log("info", "event offline " .. uid .. " " .. version) end,
  on_open = function(conn, req) if req.query.uid then conn:bind(req.query.uid) end end,
  on_message = function() end,
}
]]

  setup(function()
    local a, b, c
    receiver = receivers.start(0)
    r, a, b, c = cluster.start(3, { script = server.script(LOGGER),
                                    args = { "--offline-grace", "0.5", "--presence-ttl", "1",
                                             "--webhook", receiver.url },
                                    env = { UIDCAST_WEBHOOK_SECRET = receivers.SECRET } })
    nodes = { a, b, c }
  end)
  teardown(function()
    local alive = {}
    for _, n in ipairs(nodes) do if n:running() then alive[#alive + 1] = n end end
    cluster.stop(r, table.unpack(alive))
    receiver.stop()
  end)

  -- Every event of uid (prefix match when pattern) logged by any node, in version order.
  local function events_of(uid)
    local out = {}
    for _, n in ipairs(nodes) do
      for kind, who, v in n:log():gmatch("event (%a+) (%S+) (%d+)") do
        if who == uid then out[#out + 1] = { kind = kind, version = tonumber(v) } end
      end
    end
    table.sort(out, function(x, y) return x.version < y.version end)
    return out
  end

  local function kinds(list)
    local k = {}
    for _, e in ipairs(list) do k[#k + 1] = e.kind end
    return table.concat(k, ",")
  end

  local function open(node, uid) return assert(ws.connect(node.port, { path = "/?uid=" .. uid })) end

  it("makes one online and one offline event for a uid on two nodes, on one node each", function()
    local tab1 = open(nodes[1], "c-alice")
    local tab2 = open(nodes[2], "c-alice")
    assert(server.eventually(function() return #events_of("c-alice") == 1 end))
    tab1:close()
    tab2:close()
    assert(server.eventually(function() return #events_of("c-alice") == 2 end, 5))
    socket.sleep(1)
    assert.equals("online,offline", kinds(events_of("c-alice")))
  end)

  it("makes no event when the uid comes back on another node within the grace", function()
    local c = open(nodes[1], "c-reload")
    assert(server.eventually(function() return #events_of("c-reload") == 1 end))
    c:close()
    socket.sleep(0.1)
    c = open(nodes[3], "c-reload")
    socket.sleep(1.2)
    assert.equals("online", kinds(events_of("c-reload")))
    c:close()
    assert(server.eventually(function() return #events_of("c-reload") == 2 end, 5))
  end)

  it("makes the uids of a killed node offline once, after its presence expires", function()
    local victim = nodes[3]
    local c = open(victim, "c-victim")
    local kept = open(nodes[1], "c-shared")
    local shared = open(victim, "c-shared")
    assert(server.eventually(function()
      return #events_of("c-victim") == 1 and #events_of("c-shared") == 1
    end))
    assert(victim:signal("KILL"))
    victim:wait(5)
    assert(server.eventually(function() return #events_of("c-victim") == 2 end, 6))
    socket.sleep(1)
    assert.equals("online,offline", kinds(events_of("c-victim")))
    assert.equals("online", kinds(events_of("c-shared"))) -- still on node 1
    c:close()
    shared:close()
    kept:close()
  end)

  it("keeps each flapping uid's events alternating with growing versions, ending as /online says", function()
    local live = { nodes[1], nodes[2] }
    local conns = {}
    local N = 1000
    for round = 1, 4 do
      for i = 1, N do
        local uid = "flap" .. i
        if conns[uid] then
          conns[uid]:close()
          conns[uid] = nil
        end
        if (i + round) % 3 ~= 0 then conns[uid] = open(live[(i + round) % 2 + 1], uid) end
      end
      socket.sleep(0.3)
    end
    socket.sleep(2) -- every grace over, every sweep done
    for i = 1, N do
      local uid = "flap" .. i
      local list = events_of(uid)
      for j, e in ipairs(list) do
        assert.equals(j % 2 == 1 and "online" or "offline", e.kind, uid .. ": " .. kinds(list))
        if j > 1 then assert.is_true(e.version > list[j - 1].version) end
      end
      local online = cluster.online(live[1], uid).online
      assert.equals(online, #list % 2 == 1, uid .. ": " .. kinds(list))
      assert.equals(conns[uid] ~= nil, online, uid)
    end
    -- The webhook got the same events, each signed, none twice.
    local hooked = {}
    for _, e in ipairs(receiver.events()) do
      assert.is_true(e.signature_ok)
      local key = e.event.uid .. " " .. e.event.event .. " " .. string.format("%d", e.event.version)
      assert.is_nil(hooked[key], key)
      hooked[key] = true
    end
    for i = 1, N do
      for _, e in ipairs(events_of("flap" .. i)) do
        assert.is_true(hooked[("flap%d %s %d"):format(i, e.kind, e.version)])
      end
    end
    for _, c in pairs(conns) do c:close() end
  end)
end)
