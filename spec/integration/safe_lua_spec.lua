-- The Lua sandbox and its limits: a buggy or hostile script never takes the server down.
local ws = require "ws"
local server = require "server"
local socket = require "socket"

-- Runs the client's message as Lua inside on_message and replies with what it returned.
local EVAL = [[
local uidcast = require "uidcast"
return {
  on_message = function(conn, data)
    local fn = assert(load(data, "=eval"))
    conn:send("ok " .. tostring(fn(conn, uidcast)))
  end,
}
]]

describe("instruction budget", function()
  local srv

  setup(function()
    srv = server.start { script = server.script(EVAL), args = { "--lua-budget", "2000000" } }
  end)
  teardown(function() assert.equals(0, srv:stop()) end)

  local function expect_abort(code)
    local c = assert(ws.connect(srv.port))
    local t0 = socket.gettime()
    c:send(code)
    assert.equals(1011, (c:expect_close(10 * server.slowdown)))
    -- the next client is served at once
    local d = assert(ws.connect(srv.port))
    d:send("return 'next'")
    assert.equals("ok next", d:receive())
    assert.is_true(socket.gettime() - t0 < 1 * server.slowdown + 0.5)
    d:close()
  end

  it("aborts a runaway handler, closes its connection with 1011 and logs why", function()
    expect_abort("while true do end")
    assert.truthy(srv:log():find("lua error in on_message: instruction budget exceeded", 1, true))
  end)

  it("cannot be caught by pcall inside the script", function()
    expect_abort("while true do pcall(function() while true do end end) end")
  end)

  it("cannot be caught by xpcall or error handlers", function()
    expect_abort("while true do xpcall(function() while true do end end, function(e) return e end) end")
  end)

  it("stops a loop inside a C function's callback, where a yield is impossible", function()
    expect_abort("table.sort({3, 2, 1}, function(a, b) while true do pcall(error, 'x') end end)")
  end)

  it("cannot be caught by coroutines the script makes", function()
    expect_abort([[while true do
      coroutine.resume(coroutine.create(function() while true do end end))
    end]])
    expect_abort("coroutine.wrap(function() while true do end end)()")
  end)

  it("still stops a runaway handler after an abort inside a C function's callback", function()
    expect_abort("table.sort({3, 2, 1}, function(a, b) while true do end end)")
    expect_abort("string.gsub('abc', '%w', function() while true do end end)")
    expect_abort("while true do end")
  end)

  it("stops a pattern that backtracks for seconds inside string.match", function()
    -- the trim idiom on a long run of spaces is quadratic in Lua's matcher
    expect_abort("return ('x' .. string.rep(' ', 60000) .. 'x'):match('^%s*(.-)%s*$')")
    expect_abort("return string.rep('a', 200000):find(string.rep('a', 100000) .. 'b')")
  end)

  it("keeps the message handler of an aborted xpcall out of later errors", function()
    -- a server of its own: the errors of the specs above could fill this second's log lines
    -- (a deep recursion takes a while under valgrind: keep the time limit out of the way)
    local own = server.start { script = server.script(EVAL),
                               args = { "--lua-timeout", tostring(5 * server.slowdown) } }
    local c = assert(ws.connect(own.port))
    c:send("xpcall(function() while true do end end, function(e) return e end)")
    assert.equals(1011, (c:expect_close(10 * server.slowdown)))
    c = assert(ws.connect(own.port))
    c:send("local function f() return f() + 1 end return f()")
    c:send("return 'after'")
    assert.equals("ok after", c:receive())
    c:close()
    assert.truthy(own:log():find("lua error in on_message: eval:1: stack overflow", 1, true))
    assert.falsy(own:log():find("error in error handling", 1, true))
    assert.equals(0, own:stop())
  end)

  it("lets a handler run plenty of ordinary work within the budget", function()
    local c = assert(ws.connect(srv.port))
    c:send("local s = 0 for i = 1, 100000 do s = s + i end return s")
    assert.equals("ok 5000050000", c:receive())
    c:close()
  end)
end)

describe("time limit", function()
  it("stops a handler after --lua-timeout even when its instruction budget is far away", function()
    local srv = server.start { script = server.script(EVAL),
                               args = { "--lua-budget", "100000000", "--lua-timeout", "0.2" } }
    local c = assert(ws.connect(srv.port))
    local t0 = socket.gettime()
    -- a slow loop: each VM instruction here costs far more than one in an empty loop
    c:send("while true do local s = tostring(12345.678) .. tostring(0.5) end")
    assert.equals(1011, (c:expect_close(10 * server.slowdown)))
    assert.is_true(socket.gettime() - t0 < 1.5 * server.slowdown)
    assert.truthy(srv:log():find("lua error in on_message: time limit exceeded", 1, true))
    assert.equals(0, srv:stop())
  end)

  it("refuses __gc metamethods, whose finalizers would run outside the budget", function()
    local srv = server.start { script = server.script(EVAL) }
    local c = assert(ws.connect(srv.port))
    c:send("return select(2, pcall(setmetatable, {}, { __gc = function() while true do end end }))")
    assert.matches("__gc metamethods are not allowed", (c:receive()))
    c:send("local t = setmetatable({}, { __index = { x = 1 } }) collectgarbage() return t.x")
    assert.equals("ok 1", c:receive())
    c:close()
    assert.equals(0, srv:stop())
  end)
end)

describe("memory cap", function()
  it("fails the handler that goes over --lua-memory, not the process", function()
    local srv = server.start { script = server.script(EVAL),
                               args = { "--lua-memory", "16m", "--lua-timeout", tostring(5 * server.slowdown) } }
    local c = assert(ws.connect(srv.port))
    c:send("local t = {} for i = 1, 1e7 do t[i] = string.rep('x', 100) .. i end return #t")
    c:send("collectgarbage() return 'alive'")
    assert.equals("ok alive", c:receive(10 * server.slowdown))
    assert.truthy(srv:log():find("lua error in on_message: not enough memory", 1, true))
    c:send("local _, uidcast = ... return uidcast.stats().lua_memory < 16 * 1024 * 1024")
    assert.equals("ok true", c:receive())
    c:close()
    assert.equals(0, srv:stop())
  end)
end)

describe("memory cap on what the API holds in C", function()
  it("counts waiting is_online callbacks against --lua-memory", function()
    local srv = server.start { script = server.script(EVAL), args = { "--lua-memory", "8m" } }
    local c = assert(ws.connect(srv.port))
    c:send([[local _, uidcast = ...
      local n = 0
      local ok, err = pcall(function()
        for i = 1, 200000 do uidcast.is_online("u" .. i, function() end) n = n + 1 end
      end)
      return tostring(ok) .. " " .. n .. " " .. tostring(err)]])
    local reply = c:receive(10 * server.slowdown)
    local n = tonumber(reply:match("^ok false (%d+) .*not enough memory"))
    assert.truthy(n, reply)
    assert.is_true(n < 200000 and n > 1000, reply)
    -- once answered, the callbacks give their share back
    assert.equals("ok true", server.eventually(function()
      c:send("local _, uidcast = ... return uidcast.stats().lua_memory < 4 * 1024 * 1024")
      local r = c:receive()
      return r == "ok true" and r
    end, 5))
    c:close()
    assert.equals(0, srv:stop())
  end)
end)

describe("sandbox", function()
  local srv

  setup(function()
    srv = server.start { script = server.script(EVAL),
                         args = { "--lua-path", server.ROOT .. "/spec/fixtures/lua_path" } }
  end)
  teardown(function() assert.equals(0, srv:stop()) end)

  local function eval(code)
    local c = assert(ws.connect(srv.port))
    c:send(code)
    local reply = c:receive()
    c:close()
    return reply
  end

  for _, name in ipairs { "io", "os.execute", "os.getenv", "os.exit", "os.remove", "loadfile",
                          "dofile", "debug", "package.loadlib", "require('io')" } do
    it("gives scripts no " .. name, function()
      local expr = name:find("require") and ("select(2, pcall(function() return " .. name .. " end)) and nil")
                   or name
      assert.equals("ok nil", eval("return " .. expr))
    end)
  end

  it("keeps os.time, os.clock and os.date", function()
    assert.equals("ok true", eval("return type(os.time()) == 'number' and type(os.clock()) == 'number' " ..
                                  "and type(os.date()) == 'string'"))
  end)

  it("refuses to load bytecode", function()
    assert.matches("^ok attempt to load a binary chunk",
      eval("local f, err = load(string.dump(function() return 1 end)) return err"))
  end)

  it("loads modules from --lua-path only, as text", function()
    assert.equals("ok hello lua", eval("return require('greeting').hello('lua')"))
    assert.equals("ok deep", eval("return require('sub.deep').value"))
    assert.matches("may not leave %-%-lua%-path", eval("return select(2, pcall(require, '..secret'))"))
    assert.matches("module 'nope' not found", eval("return select(2, pcall(require, 'nope'))"))
  end)
end)

describe("timers and lifecycle hooks", function()
  local SCRIPT = [[
local uidcast = require "uidcast"
local M = {}
local ticks = 0
function M.on_start()
  uidcast.log("info", "on_start ran")
  uidcast.timer(0.1, function() uidcast.log("info", "one-shot fired") end)
  uidcast.every(0.1, function()
    ticks = ticks + 1
    if ticks == 2 then error("tick boom") end
  end)
end
function M.on_message(conn, data)
  if data == "ticks" then return conn:send(tostring(ticks)) end
  if data == "stopper" then
    local n = 0
    local h
    h = uidcast.every(0.05, function() n = n + 1 if n == 3 then h:stop() end end)
    uidcast.timer(0.5, function() conn:send("stopped at " .. n .. " " .. tostring(h:stop())) end)
  end
  if data == "bad" then
    local ok, err = pcall(uidcast.timer, -1, function() end)
    conn:send(err)
  end
end
function M.on_stop() uidcast.log("info", "on_stop ran") end
return M
]]

  it("runs on_start, one-shot and repeating timers, :stop(), and on_stop", function()
    local srv = server.start { script = server.script(SCRIPT) }
    assert.truthy(server.eventually(function() return srv:log():find("on_start ran", 1, true) end))
    assert.truthy(server.eventually(function() return srv:log():find("one-shot fired", 1, true) end))
    local _, fired = srv:log():gsub("one%-shot fired", "")
    local c = assert(ws.connect(srv.port))
    socket.sleep(0.5 * server.slowdown)
    c:send("ticks")
    local ticks = tonumber((c:receive()))
    assert.is_true(ticks >= 3, "ticks " .. ticks)
    assert.truthy(srv:log():find("lua error in a timer callback: .-tick boom"))
    c:send("stopper")
    assert.equals("stopped at 3 false", c:receive(5 * server.slowdown))
    c:send("bad")
    assert.matches("bad argument #1 to '[%w.]*timer' %(seconds must be from 0%.001", (c:receive()))
    local _, fired_again = srv:log():gsub("one%-shot fired", "")
    assert.equals(fired, fired_again)
    c:close()
    assert.equals(0, srv:stop())
    assert.truthy(srv:log():find("on_stop ran", 1, true))
  end)

  it("logs at most five errors a second per handler and says how many it left out", function()
    local srv = server.start { script = server.script([[
      local uidcast = require "uidcast"
      return { on_start = function()
        for i = 1, 100 do uidcast.every(0.001, function() error("tick " .. i) end) end
      end }]]) }
    socket.sleep(1.5)
    local lines = select(2, srv:log():gsub("lua error in a timer callback: [^\n]*tick", ""))
    assert.is_true(lines >= 5 and lines <= 15, lines .. " lines")
    assert.truthy(server.eventually(function()
      return srv:log():find("lua error in a timer callback: %d+ more errors there were not logged")
    end))
    assert.equals(0, srv:stop())
  end)

  it("refuses timers in the main chunk with a clear error", function()
    local out = os.tmpname()
    local code = os.execute(("%s --check %s 2>%s"):format(server.BIN,
      server.script("require('uidcast').timer(1, print) return {}"), out))
    assert.is_not_true(code)
    assert.matches(":1: timers start once the server runs: create them in on_start",
                   server.read_file(out))
    os.remove(out)
  end)

  it("logs errors in on_start and on_stop and keeps running", function()
    local srv = server.start { script = server.script([[
      return { on_start = function() error("start boom") end,
               on_stop = function() error("stop boom") end,
               on_message = function(c, d) c:send(d) end }]]) }
    local c = assert(ws.connect(srv.port))
    c:send("echo")
    assert.equals("echo", c:receive())
    c:close()
    assert.equals(0, srv:stop())
    assert.truthy(srv:log():find("lua error in on_start: .-start boom"))
    assert.truthy(srv:log():find("lua error in on_stop: .-stop boom"))
  end)
end)
