-- SIGHUP reloads the script into a fresh Lua state; connections and bindings stay in C.
local ws = require "ws"
local server = require "server"

local write = server.write_file

local function version(tag)
  return ([[
local uidcast = require "uidcast"
local M = {}
function M.on_message(conn, data)
  if not conn.uid then conn:bind(data) conn:send("%s bound " .. data) return end
  conn.data.n = (conn.data.n or 0) + 1
  uidcast.send_uid(conn.uid, "%s " .. data .. " n=" .. conn.data.n)
end
function M.on_reload() uidcast.log("info", "reloaded to %s") end
return M
]]):format(tag, tag, tag)
end

describe("SIGHUP", function()
  it("swaps in the new script and keeps every connection and binding", function()
    local path = server.script(version("v1"))
    local srv = server.start { script = path }
    local c = assert(ws.connect(srv.port))
    c:send("alice")
    assert.equals("v1 bound alice", c:receive())
    c:send("x")
    assert.equals("v1 x n=1", c:receive())

    write(path, version("v2"))
    srv:signal("HUP")
    assert.truthy(server.eventually(function() return srv:log():find("reloaded to v2") end))
    c:send("y")
    -- the binding survived; conn.data is per state and starts empty
    assert.equals("v2 y n=1", c:receive())

    write(path, "local M = {}\nfunction M.on_message(\n  broken broken\nend\nreturn M\n")
    srv:signal("HUP")
    assert.truthy(server.eventually(function()
      return srv:log():find("reload failed, the running script stays: " .. path:gsub("%p", "%%%0") .. ":3:")
    end))
    c:send("z")
    assert.equals("v2 z n=2", c:receive())
    c:close()
    assert.equals(0, srv:stop())
  end)

  it("keeps the old script when the new one's on_reload fails", function()
    local path = server.script(version("v1"))
    local srv = server.start { script = path }
    local c = assert(ws.connect(srv.port))
    c:send("bob")
    assert.equals("v1 bound bob", c:receive())
    write(path, "return { on_reload = function() error('not today') end }\n")
    srv:signal("HUP")
    assert.truthy(server.eventually(function() return srv:log():find("reload failed in on_reload") end))
    c:send("still")
    assert.equals("v1 still n=1", c:receive())
    c:close()
    assert.equals(0, srv:stop())
  end)
end)
