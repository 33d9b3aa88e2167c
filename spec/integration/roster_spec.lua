-- Who is online and who is in a group, a page at a time: GET /uids and /members, and
-- uidcast.uids / uidcast.members in Lua, alone and across a cluster.
local ws = require "ws"
local http = require "http"
local server = require "server"
local cluster = require "cluster"

local function get(node, target)
  local status, _, body = http.request1(node.push_port, "GET", target)
  return status, http.json(body)
end

-- Every page of target (a path with its query, without cursor) from node, limit per page;
-- returns { uid = connections }, how many times each uid came, and the pages' answers.
local function walk(node, target, limit)
  local sep = target:find("?", 1, true) and "&" or "?"
  local seen, times, pages = {}, {}, {}
  local cursor
  repeat
    local status, page = get(node, ("%s%slimit=%d%s"):format(target, sep, limit, cursor and "&cursor=" .. cursor or ""))
    assert.equals(200, status)
    pages[#pages + 1] = page
    local list = page.uids or page.members
    assert.is_true(#list <= limit, "a page longer than its limit")
    for _, e in ipairs(list) do
      seen[e.uid] = e.connections
      times[e.uid] = (times[e.uid] or 0) + 1
    end
    cursor = page.cursor ~= http.null and page.cursor or nil
  until not cursor
  return seen, times, pages
end

local function login_many(port, prefix, n, extra)
  local conns = {}
  for i = 1, n do
    conns[#conns + 1] = ws.login(port, prefix .. i)
    if extra and i % extra == 0 then conns[#conns + 1] = ws.login(port, prefix .. i) end
  end
  return conns
end

local function close_all(conns)
  for _, c in ipairs(conns) do c:close() end
end

describe("GET /uids and GET /members", function()
  local srv

  setup(function() srv = server.start() end)
  teardown(function() assert.equals(0, srv:stop()) end)

  it("lists every online uid once, with its connections, a page at a time", function()
    local conns = login_many(srv.port, "r-u", 30, 3) -- every third uid twice
    local seen, times, pages = walk(srv, "/uids", 7)
    assert.is_true(#pages >= 5)
    for i = 1, 30 do
      assert.equals(1, times["r-u" .. i])
      assert.equals(i % 3 == 0 and 2 or 1, seen["r-u" .. i])
    end
    assert.equals(http.null, pages[#pages].cursor)
    close_all(conns)
  end)

  it("lists a group's members once each, with their connections in the group", function()
    local conns = login_many(srv.port, "r-m", 12, 4)
    for i = 1, 12, 2 do
      assert.equals(200, (http.request1(srv.push_port, "POST", "/join?uid=r-m" .. i .. "&group=r-room", { body = "" })))
    end
    local seen, times, pages = walk(srv, "/members?group=r-room", 2)
    local n = 0
    for uid, count in pairs(seen) do
      n = n + 1
      assert.equals(1, times[uid])
      local i = tonumber(uid:match("%d+$"))
      assert.equals(1, i % 2)
      assert.equals(i % 4 == 0 and 2 or 1, count)
    end
    assert.equals(6, n)
    assert.equals("r-room", pages[1].group)
    local _, empty = get(srv, "/members?group=nobody-here")
    assert.same({ members = {}, group = "nobody-here", cursor = http.null }, empty)
    close_all(conns)
  end)

  it("keeps listing each remaining uid once while others come and go between pages", function()
    local stay = login_many(srv.port, "r-stay", 20)
    local churn = login_many(srv.port, "r-go", 10)
    local status, first = get(srv, "/uids?limit=5")
    assert.equals(200, status)
    close_all(churn)
    local later = login_many(srv.port, "r-new", 10)
    local times = {}
    for _, e in ipairs(first.uids) do times[e.uid] = 1 end
    local cursor = first.cursor
    while cursor ~= http.null do
      local _, page = get(srv, "/uids?limit=5&cursor=" .. cursor)
      for _, e in ipairs(page.uids) do times[e.uid] = (times[e.uid] or 0) + 1 end
      cursor = page.cursor
    end
    for i = 1, 20 do assert.equals(1, times["r-stay" .. i]) end
    close_all(stay)
    close_all(later)
  end)

  it("answers bad input with 400 and a JSON error, and other methods with 405", function()
    local function bad(target, pattern)
      local status, _, body = http.request1(srv.push_port, "GET", target)
      assert.equals(400, status)
      assert.matches(pattern, http.json(body).error)
    end
    bad("/members", "needs %?group=")
    bad("/members?group=", "needs %?group=")
    bad("/uids?cursor=xyz", "cursor must be")
    bad("/uids?cursor=" .. string.rep("f", 17), "cursor must be")
    bad("/uids?cursor=" .. string.rep("f", 2000), "cursor must be")
    bad("/uids?limit=0", "limit must be 1 to 1000")
    bad("/uids?limit=1001", "limit must be 1 to 1000")
    bad("/uids?limit=-5", "limit must be 1 to 1000")
    bad("/uids?limit=ten", "limit must be 1 to 1000")
    bad("/members?group=g&limit=99999999999999999999", "limit must be 1 to 1000")
    assert.equals(405, (http.request1(srv.push_port, "POST", "/uids", { body = "" })))
  end)
end)

describe("uidcast.uids and uidcast.members in Lua", function()
  local srv

  setup(function()
    srv = server.start { script = server.script([[
      local uidcast = require "uidcast"
      return {
        on_open = function(conn, req) if req.query.uid then conn:bind(req.query.uid) end end,
        on_message = function(conn, data)
          local ok, err = pcall(assert(load("local uidcast, conn = ... " .. data)), uidcast, conn)
          if not ok then conn:send("err " .. tostring(err)) end
        end }
    ]]) }
  end)
  teardown(function() assert.equals(0, srv:stop()) end)

  it("hands fn each page's uids with their connections, the next cursor and partial", function()
    local conns = {}
    for i = 1, 5 do conns[i] = assert(ws.connect(srv.port, { path = "/?uid=l-u" .. i })) end
    local admin = assert(ws.connect(srv.port, { path = "/?uid=l-admin" }))
    admin:send([[
      local got, pages = {}, 0
      local function page(list, cursor, partial)
        pages = pages + 1
        for _, e in ipairs(list) do got[#got + 1] = e.uid .. "=" .. e.connections end
        if cursor then return uidcast.uids(page, { cursor = cursor, limit = 2 }) end
        table.sort(got)
        conn:send(table.concat(got, ",") .. " pages=" .. pages .. " " .. tostring(partial))
      end
      uidcast.uids(page, { limit = 2 })]])
    assert.equals("l-admin=1,l-u1=1,l-u2=1,l-u3=1,l-u4=1,l-u5=1 pages=3 false", admin:receive())
    close_all(conns)
    admin:close()
  end)

  it("lists a group's members, and raises clear errors for bad arguments", function()
    local member = assert(ws.connect(srv.port, { path = "/?uid=l-member" }))
    member:send("conn:join('l-room') uidcast.members('l-room', function(list, cursor) "
      .. "conn:send(list[1].uid .. ' ' .. list[1].connections .. ' ' .. tostring(cursor)) end)")
    assert.equals("l-member 1 nil", member:receive())
    member:send("uidcast.members('l-room')")
    assert.matches("^err .*bad argument #2 to 'members' %(function expected", (member:receive()))
    member:send("uidcast.uids(print, { cursor = 'nope' })")
    assert.matches("^err .*cursor must be a cursor a page gave", (member:receive()))
    member:send("uidcast.uids(print, { limit = 0 })")
    assert.matches("^err .*limit must be an integer from 1 to 1000", (member:receive()))
    member:send("uidcast.members('', print)")
    assert.matches("^err .*group must be 1 to 1024 bytes", (member:receive()))
    member:close()
  end)
end)

describe("GET /uids and /members across a cluster", function()
  local r, a, b, c

  setup(function() r, a, b, c = cluster.start(3) end)
  teardown(function()
    c:signal("CONT")
    cluster.stop(r, a, b, c)
  end)

  it("lists each uid once over every node, its connections summed", function()
    local on_a = login_many(a.port, "x-u", 30)
    local on_b = login_many(b.port, "x-u", 10) -- x-u1..x-u10 on two nodes
    local on_c = login_many(c.port, "x-c", 15)
    local seen, times = walk(b, "/uids", 8)
    for i = 1, 30 do
      assert.equals(1, times["x-u" .. i])
      assert.equals(i <= 10 and 2 or 1, seen["x-u" .. i])
    end
    for i = 1, 15 do assert.equals(1, times["x-c" .. i]) end
    close_all(on_a)
    close_all(on_b)
    close_all(on_c)
  end)

  it("lists a group's members over every node", function()
    local on_a, on_c = login_many(a.port, "x-m", 6), login_many(c.port, "x-m", 3)
    for i = 1, 6 do
      http.request1(a.push_port, "POST", "/join?uid=x-m" .. i .. "&group=x-room", { body = "" })
    end
    local seen
    assert(server.eventually(function()
      seen = walk(b, "/members?group=x-room", 4)
      return seen["x-m1"] == 2 and seen["x-m6"] == 1
    end))
    local n = 0
    for _ in pairs(seen) do n = n + 1 end
    assert.equals(6, n)
    close_all(on_a)
    close_all(on_c)
  end)

  it("says partial when a node does not answer in time, and lists the others", function()
    local on_a, on_c = login_many(a.port, "p-a", 3), login_many(c.port, "p-c", 3)
    assert(c:signal("STOP"))
    local status, page = get(a, "/uids?limit=1000")
    assert(c:signal("CONT"))
    assert.equals(200, status)
    assert.is_true(page.partial)
    local listed = {}
    for _, e in ipairs(page.uids) do listed[e.uid] = true end
    assert.is_true(listed["p-a1"] and listed["p-a3"])
    assert.is_nil(listed["p-c1"])
    close_all(on_a)
    close_all(on_c)
  end)
end)
