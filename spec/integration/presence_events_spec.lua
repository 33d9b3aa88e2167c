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
