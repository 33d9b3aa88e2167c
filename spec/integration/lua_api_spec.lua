-- The uidcast module and connection handles, driven by small scripts through the real server.
local ws = require "ws"
local server = require "server"

-- A script whose on_message runs the Lua code the client sends and replies with the result:
-- the spec can then call any API function from inside a real handler.
local EVAL = [[
local uidcast = require "uidcast"
local M = {}
function M.on_open(conn, req)
  if req.query.deny then return false, tonumber(req.query.deny), "denied by script" end
  if req.query.uid then conn:bind(req.query.uid) end
  conn.data.path = req.path
  conn.data.query = req.query
  conn.data.headers = req.headers
  conn.data.remote = req.remote_addr
end
function M.on_message(conn, data, is_binary, uid, protocol)
  local fn = assert(load("local uidcast, conn, uid, protocol = ... " .. data))
  local ok, a, b = pcall(fn, uidcast, conn, uid, protocol)
  if ok then conn:send("ok " .. tostring(a) .. " " .. tostring(b))
  else conn:send("err " .. tostring(a)) end
end
function M.on_close(conn, code, reason)
  uidcast.send_uid("observer", ("closed %s %s %d %s [%s] %s"):format(conn.id, tostring(conn.uid), code,
    reason, table.concat(conn:groups(), ","), tostring(conn:in_group("room-b"))))
end
return M
]]

describe("Lua API", function()
  local srv

  setup(function() srv = server.start { script = server.script(EVAL) } end)
  teardown(function() assert.equals(0, srv:stop()) end)

  local function open(path)
    return assert(ws.connect(srv.port, { path = path or "/", headers = { "X-Token: t0k" } }))
  end
  local function eval(c, code)
    c:send(code)
    return (c:receive())
  end

  describe("on_open", function()
    it("refuses the upgrade with the status and reason the script returns", function()
      local c, status, _, body = ws.connect(srv.port, { path = "/?deny=401" })
      assert.is_nil(c)
      assert.equals(401, status)
      assert.equals("denied by script", body)
    end)

    it("gets the path, the decoded query, lower-cased headers and the remote address", function()
      local c = open("/chat/room?uid=x%20y&empty=&plus=a+b")
      assert.equals("ok /chat/room nil", eval(c, "return conn.data.path"))
      assert.equals("ok x y ", eval(c, "return conn.data.query.uid, conn.data.query.empty"))
      assert.equals("ok a b nil", eval(c, "return conn.data.query.plus"))
      assert.equals("ok t0k 127.0.0.1", eval(c, "return conn.data.headers['x-token'], '127.0.0.1'"))
      assert.matches("^ok 127%.0%.0%.1:%d+", eval(c, "return conn.data.remote"))
      c:close()
    end)

    it("may bind the connection before the upgrade completes", function()
      local c = open("/?uid=early")
      assert.equals("ok early nil", eval(c, "return conn.uid"))
      c:close()
    end)
  end)

  describe("connection handle", function()
    it("has an id, a remote address and a uid that is nil until bound", function()
      local c = open()
      assert.matches("^ok %d+ nil$", eval(c, "return conn.id, conn.uid"))
      assert.matches("^ok 127%.0%.0%.1:%d+ nil$", eval(c, "return conn.remote_addr"))
      assert.equals("ok true nil", eval(c, "return conn:bind('h1')"))
      assert.equals("ok h1 nil", eval(c, "return conn.uid"))
      assert.equals("ok nil nil", eval(c, "conn:unbind() return conn.uid"))
      c:close()
    end)

    it("hands on_message the connection's uid as its fourth argument", function()
      local c = open()
      assert.equals("ok nil nil", eval(c, "return uid"))
      eval(c, "conn:bind('h2')")
      assert.equals("ok h2 true", eval(c, "return uid, rawequal(uid, conn.uid)"))
      eval(c, "conn:bind('h3')")
      assert.equals("ok h3 nil", eval(c, "return uid"))
      c:close()
    end)

    it("hands on_message the connection's subprotocol as its fifth argument", function()
      local c = open()
      assert.equals("ok nil true", eval(c, "return protocol, protocol == conn.protocol"))
      c:close()
      c = assert(ws.connect(srv.port, { headers = { "Sec-WebSocket-Protocol: uidcast.v1" } }))
      assert.equals("- ok uidcast.v1 true", eval(c, "return protocol, protocol == conn.protocol")) -- "- ": unnumbered
      c:close()
    end)

    it("is the same value for the same connection and keeps conn.data between messages", function()
      local c = open()
      eval(c, "conn.data.n = 41")
      assert.equals("ok 42 nil", eval(c, "conn.data.n = conn.data.n + 1 return conn.data.n"))
      c:close()
    end)

    it("refuses writes to its fields with a clear error", function()
      local c = open()
      assert.matches("read%-only", eval(c, "conn.uid = 'x'"))
      c:close()
    end)

    it("sends text and binary frames with conn:send", function()
      local c = open()
      c:send("return conn:send('bin\\0', true)")
      local data, binary = c:receive()
      assert.equals("bin\0", data)
      assert.is_true(binary)
      assert.equals("ok true nil", c:receive())
      c:close()
    end)

    it("closes with the code and reason given to conn:close", function()
      local c = open()
      c:send("conn:close(4000, 'bye')")
      local code, reason = c:expect_close()
      assert.equals(4000, code)
      assert.equals("bye", reason)
    end)

    it("returns false, 'closed' from send on a closed connection, without raising", function()
      local c = open()
      c:send("conn:close() return conn:send('late')")
      -- the reply is not sent (the connection is closing); the observer sees the close instead
      assert.equals(1000, (c:expect_close()))
      local watcher = open("/?uid=observer")
      local k = open()
      k:send("_G.kept = conn return true")
      assert.equals("ok true nil", k:receive())
      k:close()
      assert.matches("^closed %d+ nil 1000", (watcher:receive()))
      assert.equals("ok false closed", eval(watcher, "return _G.kept:send('x')"))
      assert.equals("ok false closed", eval(watcher, "return _G.kept:bind('x')"))
      assert.equals("ok false closed", eval(watcher, "return _G.kept:close()"))
      watcher:close()
    end)

    it("raises argument errors for a bad uid or close code", function()
      local c = open()
      assert.matches("bad argument #1 to 'bind' %(uid must be 1 to 1024 bytes%)",
                     eval(c, "conn:bind('')"))
      assert.matches("bad argument #1 to 'bind' %(string expected, got table%)",
                     eval(c, "conn:bind({})"))
      assert.matches("close code", eval(c, "conn:close(999)"))
      assert.matches("at most 123 bytes", eval(c, "conn:close(1000, string.rep('r', 124))"))
      c:close()
    end)
  end)

  describe("delivery", function()
    it("send_uid returns how many connections the message was queued to", function()
      local a1, a2 = open("/?uid=d-alice"), open("/?uid=d-alice")
      local s = open()
      assert.equals("ok 2 nil", eval(s, "return uidcast.send_uid('d-alice', 'hi')"))
      assert.equals("hi", a1:receive())
      assert.equals("hi", a2:receive())
      assert.equals("ok 0 nil", eval(s, "return uidcast.send_uid('d-nobody', 'hi')"))
      for _, c in ipairs { a1, a2, s } do c:close() end
    end)

    it("send_uid honours opts.except and opts.binary", function()
      local a1, a2 = open("/?uid=x-alice"), open("/?uid=x-alice")
      assert.equals("ok 1 nil",
        eval(a1, "return uidcast.send_uid('x-alice', 'b', {except = conn, binary = true})"))
      local data, binary = a2:receive()
      assert.equals("b", data)
      assert.is_true(binary)
      assert.is_true(a1:silent())
      a1:close()
      a2:close()
    end)

    it("broadcast reaches bound connections only and skips opts.except", function()
      local a, b = open("/?uid=bc-a"), open("/?uid=bc-b")
      local unbound = open()
      local n = eval(a, "return uidcast.broadcast('news', {except = conn})")
      assert.equals("news", b:receive())
      assert.is_true(unbound:silent())
      assert.is_true(a:silent())
      -- every bound connection at this moment but the sender (other tests' may be closing)
      assert.matches("^ok %d+ nil$", n)
      for _, c in ipairs { a, b, unbound } do c:close() end
    end)

    it("keeps each connection's order between broadcasts and its own messages", function()
      local a, b = open("/?uid=ord-a"), open("/?uid=ord-b")
      a:send([[
        conn:send('1'); uidcast.broadcast('2'); conn:send('3')
        uidcast.broadcast('4', {except = conn}); conn:send('5'); uidcast.broadcast('6')]])
      for _, want in ipairs { "1", "2", "3", "5", "6", "ok nil nil" } do assert.equals(want, a:receive()) end
      for _, want in ipairs { "2", "4", "6" } do assert.equals(want, b:receive()) end
      assert.is_true(a:silent(0.1))
      assert.is_true(b:silent(0.05))
      a:close()
      b:close()
    end)

    it("gives a broadcast to the connections bound when it was sent, not after", function()
      local late, leaving, closing = open(), open("/?uid=bb-leave"), open("/?uid=bb-close")
      local ctl = open("/?uid=bb-ctl")
      -- late binds after the broadcast, leaving unbinds and closing closes after it: all in
      -- one handler, so nothing has been written yet when the membership changes
      ctl:send([[
        local all = {}
        for _, uid in ipairs {'bb-leave', 'bb-close'} do all[uid] = uidcast.connections(uid)[1] end
        uidcast.broadcast('news')
        all['bb-leave']:unbind()
        all['bb-close']:close(4000, 'bye')
        uidcast.broadcast('later')]])
      assert.equals("news", ctl:receive())
      assert.equals("later", ctl:receive())
      assert.equals("ok nil nil", ctl:receive())
      assert.equals("news", leaving:receive())
      assert.is_true(leaving:silent(0.1))
      assert.equals("news", closing:receive())
      local code = closing:expect_close()
      assert.equals(4000, code)
      assert.is_true(late:silent(0.05))
      for _, c in ipairs { late, leaving, ctl } do c:close() end
    end)

    it("is_online and connections follow binds and closes", function()
      local a = open("/?uid=p-alice")
      local s = open()
      assert.equals("ok true false", eval(s, "return uidcast.is_online('p-alice'), uidcast.is_online('p-bob')"))
      assert.equals("ok 1 true", eval(s, [[
        local t = uidcast.connections('p-alice') return #t, t[1].uid == 'p-alice']]))
      a:close()
      assert.equals("ok false 0", server.eventually(function()
        local r = eval(s, "return uidcast.is_online('p-alice'), #uidcast.connections('p-alice')")
        return r == "ok false 0" and r
      end))
      s:close()
    end)

    it("is_online(uid, fn) answers later, never inside the call, with the count", function()
      local a1, a2 = open("/?uid=p-carol"), open("/?uid=p-carol")
      local s = open()
      assert.equals("ok true nil", eval(s, [[
        local inside = true
        local r = uidcast.is_online('p-carol', function(online, n)
          conn:send(('answer %s %d %s'):format(tostring(online), n, tostring(inside)))
        end)
        inside = false
        return r]]))
      assert.equals("answer true 2 false", s:receive())
      assert.equals("ok true nil", eval(s, [[
        return uidcast.is_online('p-nobody', function(online, n)
          conn:send(('answer %s %d'):format(tostring(online), n))
        end)]]))
      assert.equals("answer false 0", s:receive())
      assert.matches("bad argument #2 to 'is_online' %(function expected",
                     eval(s, "uidcast.is_online('p-carol', 5)"))
      -- an error in the callback is logged and counted like any handler's
      assert.equals("ok true nil", eval(s, "return uidcast.is_online('p-carol', function() error('boom') end)"))
      assert.truthy(server.eventually(function()
        return srv:log():find("lua error in an is_online callback: .*boom")
      end))
      for _, c in ipairs { a1, a2, s } do c:close() end
    end)

    it("raises argument errors for a bad uid, data or opts", function()
      local c = open()
      assert.matches("bad argument #1 to 'send_uid' %(uid must be 1 to 1024 bytes%)",
                     eval(c, "uidcast.send_uid('', 'x')"))
      assert.matches("bad argument #2 to 'send_uid'", eval(c, "uidcast.send_uid('u', nil)"))
      assert.matches("bad argument #2 to 'broadcast'", eval(c, "uidcast.broadcast('x', 5)"))
      assert.matches("opts.except must be a connection",
                     eval(c, "uidcast.broadcast('x', {except = 1})"))
      c:close()
    end)

    it("stats counts connections, uids and messages", function()
      local c = open("/?uid=stats-u")
      local r = eval(c, [[local s = uidcast.stats()
        return s.connections >= 1 and s.uids >= 1 and s.messages_in >= 1, type(s.uptime)]])
      assert.equals("ok true number", r)
      c:close()
    end)

    it("hmac_sha256 returns the hex digest of RFC 4231 test case 2", function()
      local c = open()
      assert.equals("ok 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843 nil",
        eval(c, "return uidcast.hmac_sha256('Jefe', 'what do ya want for nothing?')"))
      c:close()
    end)

    it("split cuts at the first separator, plain, and says nil when there is none", function()
      local c = open()
      local function parts(s, sep)
        return eval(c, ("return table.concat({uidcast.split(%q, %q)}, ' ')"):format(s, sep))
      end
      assert.equals("ok bob hi:there:x nil", parts("bob:hi:there:x", ":"))
      assert.equals("ok  tail nil", parts(".%tail", ".%"))
      assert.equals("ok a  nil", parts("a::", "::"))
      assert.equals("ok \0\1 \2 nil", parts("\0\1:\2", ":"))
      assert.equals("ok true 1", eval(c, "local a, b = uidcast.split('no separator', ':') " ..
        "return a == nil and b == nil, select('#', uidcast.split('x', ':'))"))
      assert.matches("bad argument #2 to 'split' %(the separator is empty%)", eval(c, "return uidcast.split('a', '')"))
      assert.matches("bad argument #1 to 'split'", eval(c, "return uidcast.split(nil, ':')"))
      c:close()
    end)

    it("now returns the wall clock in seconds", function()
      local c = open()
      assert.equals("ok true nil", eval(c, "return math.abs(uidcast.now() - os.time()) < 5"))
      c:close()
    end)
  end)

  describe("uidcast.json", function()
    local c
    before_each(function() c = open() end)
    after_each(function() c:close() end)

    it("encodes compactly with sorted keys, arrays for 1..n tables and null for json.null", function()
      assert.equals([[ok {"a":[1,2,"x"],"b":{"c":true},"d":null,"e":0.5,"f":{}} nil]], eval(c,
        [[return uidcast.json.encode({ e = 0.5, a = { 1, 2, "x" }, b = { c = true }, d = uidcast.json.null,
          f = {} })]]))
    end)

    it("encodes an empty table as [] when it carries json.array_mt", function()
      assert.equals("ok [] nil", eval(c, "return uidcast.json.encode(setmetatable({}, uidcast.json.array_mt))"))
    end)

    it("decodes objects, arrays, exact 64-bit integers, floats and null", function()
      assert.equals("ok 9007199254740993 integer", eval(c,
        [[local v = uidcast.json.decode('{"n":9007199254740993}') return v.n, math.type(v.n)]]))
      assert.equals("ok 2.5 true", eval(c,
        [[local v = uidcast.json.decode('[2.5,null,"s"]') return v[1], v[2] == uidcast.json.null and v[3] == "s"]]))
    end)

    it("round-trips what it decodes, empty arrays and NUL bytes included", function()
      local text = [[{"a":[],"b":{},"c":"x\u0000y","d":[1,{"e":-3}]}]]
      local code = ("return uidcast.json.encode(uidcast.json.decode(%q))"):format(text)
      assert.equals("ok " .. text .. " nil", eval(c, code))
    end)

    it("raises an error that says where a text is wrong", function()
      assert.matches("^err .*uidcast%.json%.decode: .* at line 2, column 6 %(byte %d+%)",
        eval(c, [[return uidcast.json.decode('{"a":1,\n "b" 2}')]]))
    end)

    it("raises clear errors for values JSON cannot hold", function()
      assert.matches("cannot encode a function value", eval(c, "return uidcast.json.encode({ f = print })"))
      assert.matches("not valid UTF%-8", eval(c, [[return uidcast.json.encode("\255")]]))
      assert.matches("JSON has no inf or nan", eval(c, "return uidcast.json.encode(1/0)"))
      assert.matches("a key must be a string or an integer", eval(c, "return uidcast.json.encode({ [1.5] = 1 })"))
      assert.matches("bad argument #1 to 'decode' %(string expected", eval(c, "return uidcast.json.decode()"))
    end)

    it("bounds nesting both ways, a table that contains itself included", function()
      assert.matches("nested deeper than 128", eval(c, "local t = {} t.t = t return uidcast.json.encode(t)"))
      assert.matches("nested deeper than 128",
        eval(c, [[return uidcast.json.decode(string.rep("[", 200) .. string.rep("]", 200))]]))
      assert.equals("ok 100 nil", eval(c, [[local v = uidcast.json.decode(string.rep("[", 100) .. string.rep("]", 100))
        local d = 0 while v do d = d + 1 v = v[1] end return d]]))
    end)

    it("bounds the text it decodes", function()
      assert.matches("more than the 16777216 allowed",
        eval(c, [[return uidcast.json.decode(string.rep(" ", 16 * 1024 * 1024 + 1))]]))
    end)
  end)

  describe("on_close", function()
    it("runs once per closed connection with the code, reason and last uid", function()
      local watcher = open("/?uid=observer")
      local c = open("/?uid=leaving")
      c:close(4002)
      assert.matches("^closed %d+ leaving 4002", (watcher:receive()))
      local extra = watcher:receive(0.2)
      assert.is_nil(extra, extra)
      watcher:close()
    end)

    it("still tells which groups the connection was in", function()
      local watcher = open("/?uid=observer")
      local c = open("/?uid=roomer")
      assert.equals("ok true nil", eval(c, "conn:join('room-a') return conn:join('room-b')"))
      c:close(1000)
      assert.matches("^closed %d+ roomer 1000 +%[room%-a,room%-b%] true$", (watcher:receive()))
      watcher:close()
    end)
  end)
end)

describe("Lua errors", function()
  local srv
  local SCRIPT = [[
    local M = {}
    function M.on_open(conn, req) if req.query.boom then error("open boom") end end
    function M.on_message(conn, data)
      if data == "boom" then error("message boom") end
      if data == "nil-index" then local t = nil; return t.x end
      conn:send("echo " .. data)
    end
    function M.on_close(conn) error("close boom") end
    return M
  ]]

  setup(function() srv = server.start { script = server.script(SCRIPT) } end)
  teardown(function() assert.equals(0, srv:stop()) end)

  it("logs an error in on_message with a traceback and keeps the connection", function()
    local c = assert(ws.connect(srv.port))
    c:send("boom")
    c:send("nil-index")
    c:send("after")
    assert.equals("echo after", c:receive())
    assert.truthy(server.eventually(function()
      local log = srv:log()
      return log:find("lua error in on_message: .-message boom") and
             log:find("stack traceback") and log:find("attempt to index a nil value")
    end))
    c:close()
  end)

  it("refuses the upgrade with 500 when on_open raises, failing closed", function()
    local c, status = ws.connect(srv.port, { path = "/?boom=1" })
    assert.is_nil(c)
    assert.equals(500, status)
    assert.truthy(srv:log():find("lua error in on_open: .-open boom"))
  end)

  it("survives an error in on_close", function()
    local c = assert(ws.connect(srv.port))
    c:close()
    assert.truthy(server.eventually(function() return srv:log():find("lua error in on_close") end))
    local d = assert(ws.connect(srv.port))
    d:send("still")
    assert.equals("echo still", d:receive())
    d:close()
  end)
end)
