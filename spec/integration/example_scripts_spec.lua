-- The example policies in scripts/, each against the real server.
local ws = require "ws"
local server = require "server"
local http = require "http"

describe("scripts/rooms.lua", function()
  local srv

  setup(function() srv = server.start { script = server.ROOT .. "/scripts/rooms.lua" } end)
  teardown(function() assert.equals(0, srv:stop()) end)

  it("delivers room messages to members only, and groups survive other members' closes", function()
    local a, b, c = ws.login(srv.port, "ra"), ws.login(srv.port, "rb"), ws.login(srv.port, "rc")
    a:send("join:lobby")
    assert.equals("joined lobby (1 members)", a:receive())
    b:send("join:lobby")
    assert.equals("joined lobby (2 members)", b:receive())
    c:send("join:lobby")
    assert.equals("joined lobby (3 members)", c:receive())
    c:close()
    a:send("room:lobby:still: here")
    assert.equals("[lobby] ra: still: here", a:receive())
    assert.equals("[lobby] ra: still: here", b:receive())
    b:send("leave:lobby")
    assert.equals("left lobby", b:receive())
    a:send("room:lobby:alone")
    assert.equals("[lobby] ra: alone", a:receive())
    assert.is_true(b:silent())
    a:close()
    b:close()
  end)

  it("drops a room when its last member disconnects", function()
    local a = ws.login(srv.port, "solo")
    a:send("join:ephemeral")
    assert.equals("joined ephemeral (1 members)", a:receive())
    a:close()
    local _, _, body = http.request1(srv.push_port, "GET", "/stats")
    assert.truthy(server.eventually(function()
      _, _, body = http.request1(srv.push_port, "GET", "/stats")
      return http.json(body).groups == 0
    end))
  end)
end)

describe("scripts/auth_token.lua", function()
  local SECRET = "a-secret-of-at-least-16-bytes"
  local srv

  setup(function()
    srv = server.start { script = server.ROOT .. "/scripts/auth_token.lua",
                         env = { UIDCAST_SECRET = SECRET } }
  end)
  teardown(function() assert.equals(0, srv:stop()) end)

  -- The token a web application would mint, with PHP's hash_hmac as the reference (the
  -- script's own comment).
  local function token(uid, exp)
    exp = exp or os.time() + 3600
    local p = io.popen(("php -r %s"):format(server.shell_quote(
      ("echo %d . '.' . hash_hmac('sha256', %q . '.' . %d, %q);"):format(exp, uid, exp, SECRET))))
    local out = p:read("a")
    p:close()
    return out
  end

  it("accepts a connection whose token is the HMAC-SHA256 of its uid and expiry", function()
    local a = assert(ws.connect(srv.port, { path = "/?uid=alice&token=" .. token("alice") }))
    local b = assert(ws.connect(srv.port, { path = "/?uid=bob&token=" .. token("bob") }))
    a:send("bob:signed and delivered")
    assert.equals("signed and delivered", b:receive())
    a:close()
    b:close()
  end)

  it("refuses another uid's token with 401", function()
    local c, status, _, body = ws.connect(srv.port, { path = "/?uid=mallory&token=" .. token("alice") })
    assert.is_nil(c)
    assert.equals(401, status)
    assert.equals("bad token", body)
  end)

  it("refuses an expired token with 401", function()
    local c, status, _, body = ws.connect(srv.port, { path = "/?uid=alice&token=" .. token("alice", os.time() - 5) })
    assert.is_nil(c)
    assert.equals(401, status)
    assert.equals("token expired", body)
  end)

  it("refuses a missing uid with 400", function()
    local c, status = ws.connect(srv.port, { path = "/?token=abc" })
    assert.is_nil(c)
    assert.equals(400, status)
  end)

  it("refuses to start without UIDCAST_SECRET", function()
    local out = os.tmpname()
    local ok = os.execute(("env -u UIDCAST_SECRET %s --check %s/scripts/auth_token.lua 2>%s")
      :format(server.BIN, server.ROOT, out))
    assert.is_not_true(ok)
    assert.matches("set UIDCAST_SECRET", server.read_file(out))
    os.remove(out)
  end)
end)

describe("groups from Lua", function()
  local SCRIPT = [[
    local uidcast = require "uidcast"
    return { on_message = function(conn, data)
      local cmd, arg = data:match("^(%w+) ?(.*)$")
      if cmd == "join" then conn:join(arg) conn:send("in " .. table.concat(conn:groups(), ","))
      elseif cmd == "leave" then conn:send(tostring(conn:leave(arg)))
      elseif cmd == "count" then conn:send(tostring(uidcast.group_count(arg)))
      elseif cmd == "send" then
        local g, text = arg:match("^(%S+) (.*)$")
        conn:send("sent " .. uidcast.send_group(g, text, { except = conn }))
      elseif cmd == "bad" then
        local ok, err = pcall(function() conn:join("") end)
        conn:send(err)
      end
    end }
  ]]
  local srv

  setup(function() srv = server.start { script = server.script(SCRIPT) } end)
  teardown(function() assert.equals(0, srv:stop()) end)

  it("joins, counts, sends once per member, and forgets a closed member", function()
    local a, b, c = assert(ws.connect(srv.port)), assert(ws.connect(srv.port)), assert(ws.connect(srv.port))
    a:send("join g1")
    assert.equals("in g1", a:receive())
    a:send("join g2")
    assert.matches("^in g[12],g[12]$", (a:receive()))
    a:send("join g1")
    assert.matches("^in g[12],g[12]$", (a:receive()))
    b:send("join g1")
    assert.equals("in g1", b:receive())
    c:send("join g1")
    assert.equals("in g1", c:receive())
    a:send("count g1")
    assert.equals("3", a:receive())
    a:send("send g1 hello")
    assert.equals("sent 2", a:receive())
    assert.equals("hello", b:receive())
    assert.equals("hello", c:receive())
    c:close()
    assert.equals("2", server.eventually(function()
      a:send("count g1")
      local n = a:receive()
      return n == "2" and n
    end))
    b:send("leave g1")
    assert.equals("true", b:receive())
    b:send("leave g1")
    assert.equals("false", b:receive())
    a:send("count g1")
    assert.equals("1", a:receive())
    a:send("bad")
    assert.matches("bad argument #1 to 'join' %(group must be 1 to 1024 bytes%)", (a:receive()))
    a:close()
    b:close()
  end)
end)

describe("groups per connection", function()
  local EVAL = [[
    local uidcast = require "uidcast"
    return { on_message = function(conn, data)
      local fn = assert(load("local uidcast, conn = ... " .. data))
      conn:send(table.concat({ tostring(fn(uidcast, conn)) }, " "))
    end }
  ]]

  it("refuses a join beyond --max-groups-per-connection with false, \"limit reached\"", function()
    local srv = server.start { script = server.script(EVAL), args = { "--max-groups-per-connection", "3" } }
    local c = assert(ws.connect(srv.port))
    c:send("for i = 1, 3 do assert(conn:join('g' .. i)) end return select(2, conn:join('g4'))")
    assert.equals("limit reached", c:receive())
    c:send("return conn:join('g2') and #conn:groups()") -- a group it is in already is fine
    assert.equals("3", c:receive())
    c:send("conn:leave('g1') return conn:join('g4')")
    assert.equals("true", c:receive())
    c:close()
    assert.equals(0, srv:stop())
  end)

  it("joins, asks and leaves in constant time, however many groups the connection is in", function()
    local srv = server.start { script = server.script(EVAL),
                               args = { "--max-groups-per-connection", "100000", "--lua-budget", "100000000",
                                        "--lua-timeout", "60" } }
    local c = assert(ws.connect(srv.port))
    local socket = require "socket"
    local t0 = socket.gettime()
    -- 100,000 groups: with a list scanned per join this is 5e9 comparisons, over ten seconds
    c:send([[for i = 1, 100000 do conn:join('group-' .. i) end
      local n = 0
      for i = 1, 100000, 7 do if conn:in_group('group-' .. i) then n = n + 1 end end
      for i = 1, 100000, 2 do conn:leave('group-' .. i) end
      return n .. ' ' .. #conn:groups() .. ' ' .. uidcast.group_count('group-2')]])
    assert.equals("14286 50000 1", c:receive(30 * server.slowdown))
    assert.is_true(socket.gettime() - t0 < 3 * server.slowdown, (socket.gettime() - t0) .. " s")
    c:close()
    assert.equals(0, srv:stop())
  end)
end)

describe("scripts/json_chat.lua", function()
  local srv

  setup(function() srv = server.start { script = server.ROOT .. "/scripts/json_chat.lua" } end)
  teardown(function() assert.equals(0, srv:stop()) end)

  local function login(uid)
    local c = assert(ws.connect(srv.port))
    c:send(('{"type":"login","uid":"%s"}'):format(uid))
    assert.equals(('{"type":"welcome","uid":"%s"}'):format(uid), (c:receive()))
    return c
  end

  it("delivers a message to a uid as a JSON object and tells the sender how many got it", function()
    local alice, bob = login("j-alice"), login("j-bob")
    alice:send('{"type":"send","to":"j-bob","text":"hi \\"bob\\" \\u00e9"}')
    assert.equals('{"delivered":1,"to":"j-bob","type":"sent"}', (alice:receive()))
    assert.matches('^{"at":[%d.]+,"from":"j%-alice","text":"hi \\"bob\\" \u{e9}","to":"j%-bob","type":"message"}$',
      (bob:receive()))
    alice:close()
    bob:close()
  end)

  it("sends to everyone logged in with to = \"*\"", function()
    local a, b = login("j-a"), login("j-b")
    a:send('{"type":"send","to":"*","text":"all"}')
    local sent = a:receive()
    assert.matches('"type":"message"', sent) -- the sender is logged in too, so it hears its own
    assert.matches('^{"delivered":2,', (a:receive()))
    assert.matches('"from":"j%-a","text":"all","to":"%*"', (b:receive()))
    a:close()
    b:close()
  end)

  it("answers bad JSON and bad messages with an error object and keeps the connection", function()
    local c = assert(ws.connect(srv.port))
    c:send('{"type":"login",')
    assert.matches('^{"error":"uidcast.json.decode: .* at line 1, column %d+ %(byte %d+%)","type":"error"}$',
      (c:receive()))
    c:send('{"type":"send","to":"x","text":"early"}')
    assert.equals('{"error":"log in first","type":"error"}', (c:receive()))
    c:send('[1,2]')
    assert.equals('{"error":"type must be \\"login\\" or \\"send\\"","type":"error"}', (c:receive()))
    c:send('{"type":"login","uid":""}')
    assert.matches('"error":"uid must be a string', (c:receive()))
    c:send('{"type":"login","uid":"j-late"}')
    assert.equals('{"type":"welcome","uid":"j-late"}', (c:receive()))
    c:close()
  end)
end)
