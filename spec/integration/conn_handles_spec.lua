-- Connection handles: one Lua value per connection however long ago it was last used, and
-- conn.data kept for the connection's life, while the handles of connections gone quiet are left
-- to the collector. Thousands of other connections (bench/loadgen) come and go in between.
local ws = require "ws"
local server = require "server"

local SCRIPT = [[
local kept
local M = {}
function M.on_message(conn, data)
  if data == "keep" then kept = conn
  elseif data == "same?" then conn:send(tostring(rawequal(kept, conn))) return
  elseif data == "remember" then conn.data.note = "remembered"
  elseif data == "note?" then conn:send(tostring(conn.data.note)) return
  elseif data == "collect" then collectgarbage("collect")
  elseif data == "kept closed?" then conn:send(tostring(kept.closed)) return
  else conn:send("login success, your uid is " .. data) return -- what loadgen waits for
  end
  conn:send("ok")
end
return M
]]

describe("connection handles", function()
  local srv

  setup(function() srv = server.start { script = server.script(SCRIPT) } end)
  teardown(function() assert.equals(0, srv:stop()) end)

  local function say(c, text, expected)
    c:send(text)
    assert.equals(expected or "ok", (c:receive()))
  end

  -- More connections than the handles held as recently used (2,048), each handled once, then
  -- a full collection.
  local function churn()
    local ok, out = server.sh(("build/loadgen hold --conns 3000 --port %d"):format(srv.port))
    assert(ok, out)
    local c = assert(ws.connect(srv.port))
    say(c, "collect")
    c:close()
  end

  it("is the same value for a connection the script keeps, after thousands of others", function()
    local a = assert(ws.connect(srv.port))
    say(a, "keep")
    churn()
    say(a, "same?", "true")
    a:close()
    local b = assert(ws.connect(srv.port))
    assert.equals("true", server.eventually(function()
      b:send("kept closed?")
      local answer = b:receive()
      return answer == "true" and answer
    end))
    b:close()
  end)

  it("keeps conn.data for the connection's life, after thousands of others", function()
    local a = assert(ws.connect(srv.port))
    say(a, "remember")
    churn()
    say(a, "note?", "remembered")
    a:close()
  end)
end)
