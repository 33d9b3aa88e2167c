-- Kept messages: numbered per uid, replayed to a client that resumes (uidcast.v1), told when
-- something is gone, bounded in memory; clients of the seed protocol see none of it.
local ws = require "ws"
local http = require "http"
local server = require "server"
local socket = require "socket"

local v1 = require "v1"
local V1, read_v1, login_v1, read_kept, payloads, reset =
  v1.HEADER, v1.read, v1.login, v1.read_kept, v1.payloads, v1.reset

describe("kept messages", function()
  local srv

  setup(function()
    srv = server.start { args = { "--mailbox-max-messages", "5", "--max-send-buffer", "65536" } }
  end)
  teardown(function() assert.equals(0, srv:stop()) end)

  local function keep(uid, body, seconds, extra)
    local status, _, answer = http.request1(srv.push_port, "POST",
      ("/send?uid=%s&keep=%s%s"):format(uid, seconds or 60, extra or ""), { body = body })
    assert.equals(200, status, answer)
    return http.json(answer)
  end

  describe("negotiation", function()
    it("answers Sec-WebSocket-Protocol: uidcast.v1 when the client offers it", function()
      local s = ws.tcp(srv.port)
      s:send(ws.handshake_request { headers = { "Sec-WebSocket-Protocol: chat, uidcast.v1" } })
      local status, headers = ws.read_http_response(s)
      assert.equals(101, status)
      assert.equals("uidcast.v1", headers["sec-websocket-protocol"])
      s:close()
    end)

    it("answers no subprotocol to a client that offers none", function()
      local s = ws.tcp(srv.port)
      s:send(ws.handshake_request())
      local status, headers = ws.read_http_response(s)
      assert.equals(101, status)
      assert.is_nil(headers["sec-websocket-protocol"])
      s:close()
    end)

    it("refuses a since that is not a number with 400", function()
      local c, status = ws.connect(srv.port, { path = "/?since=12abc", headers = { V1 } })
      assert.is_nil(c)
      assert.equals(400, status)
    end)
  end)

  describe("POST /send?uid=&keep=", function()
    it("answers the number it is kept under, one above the last for that uid", function()
      local first = keep("n-counter", "a")
      local second = keep("n-counter", "b")
      assert.equals(0, first.delivered)
      assert.is_true(math.type(first.seq) == "integer" and first.seq > 0)
      assert.equals(first.seq + 1, second.seq)
    end)

    it("numbers each uid on its own", function()
      local a1, b1 = keep("n-own-a", "x"), keep("n-own-b", "x")
      local a2 = keep("n-own-a", "y")
      assert.equals(a1.seq + 1, a2.seq)
      assert.is_number(b1.seq)
    end)

    it("refuses a keep that is not seconds in range", function()
      for _, bad in ipairs { "0", "-1", "abc", "2592001", "" } do
        local status, _, answer = http.request1(srv.push_port, "POST", "/send?uid=x&keep=" .. bad, { body = "m" })
        assert.equals(400, status, bad)
        assert.matches("keep must be seconds", http.json(answer).error)
      end
    end)

    it("refuses keep on a group or a broadcast", function()
      local status = http.request1(srv.push_port, "POST", "/send?group=g&keep=5", { body = "m" })
      assert.equals(400, status)
      status = http.request1(srv.push_port, "POST", "/broadcast?keep=5", { body = "m" })
      assert.equals(400, status)
    end)
  end)

  describe("on a uidcast.v1 connection", function()
    it("puts its number in front of a kept message and '- ' in front of any other", function()
      local c = login_v1(srv.port, "v1-live")
      local answer = keep("v1-live", "hello")
      assert.equals(1, answer.delivered)
      local kind, seq, payload = read_v1(c)
      assert.same({ "kept", answer.seq, "hello" }, { kind, seq, payload })
      http.request1(srv.push_port, "POST", "/send?uid=v1-live", { body = "not kept" })
      assert.same({ "plain", "not kept", false }, { read_v1(c) })
      c:close()
    end)

    it("keeps a binary message binary, its number in front", function()
      local c = login_v1(srv.port, "v1-bin")
      local answer = keep("v1-bin", "\0\255", 60, "&binary=1")
      local kind, seq, payload, binary = read_v1(c)
      assert.same({ "kept", answer.seq, "\0\255", true }, { kind, seq, payload, binary })
      c:close()
    end)
  end)

  describe("for a client of the seed protocol", function()
    it("delivers a kept message exactly as any other, without a number", function()
      local c = ws.login(srv.port, "seed-kept")
      keep("seed-kept", "plain text")
      assert.equals("plain text", c:receive())
      c:close()
    end)
  end)

  describe("resume", function()
    it("replays what was kept after the number given at login, in order, then goes on live", function()
      local first = keep("r-login", "one").seq
      keep("r-login", "two")
      keep("r-login", "three")
      local c = login_v1(srv.port, "r-login", first)
      local got = read_kept(c, 2)
      assert.same({ "two", "three" }, payloads(got))
      assert.same({ first + 1, first + 2 }, { got[1].seq, got[2].seq })
      keep("r-login", "four")
      assert.same({ "four" }, payloads(read_kept(c, 1)))
      assert.is_true(c:silent())
      c:close()
    end)

    it("replays from the number given at the handshake (?since=N)", function()
      local first = keep("r-hs", "one").seq
      keep("r-hs", "two")
      local c = login_v1(srv.port, "r-hs", nil, "/?since=" .. first)
      assert.same({ "two" }, payloads(read_kept(c, 1)))
      assert.is_true(c:silent())
      c:close()
    end)

    it("replays everything still kept from 0, without announcing a gap", function()
      keep("r-zero", "one")
      keep("r-zero", "two")
      local c = login_v1(srv.port, "r-zero", 0)
      assert.same({ "one", "two" }, payloads(read_kept(c, 2)))
      assert.is_true(c:silent())
      c:close()
    end)

    it("replays nothing to a client that has seen the last number", function()
      local last = keep("r-none", "one").seq
      local c = login_v1(srv.port, "r-none", last)
      assert.is_true(c:silent())
      keep("r-none", "two")
      assert.same({ "two" }, payloads(read_kept(c, 1)))
      c:close()
    end)

    it("says which numbers are gone when a cap dropped them (--mailbox-max-messages 5)", function()
      local first = keep("r-gap", "m1").seq
      for i = 2, 8 do keep("r-gap", "m" .. i) end
      local c = login_v1(srv.port, "r-gap", first)
      assert.same({ "gap", first + 1, first + 2 }, { read_v1(c) })
      assert.same({ "m4", "m5", "m6", "m7", "m8" }, payloads(read_kept(c, 5)))
      c:close()
    end)

    it("refuses since on a connection of the seed protocol", function()
      local script = server.script([[
        local M = {}
        function M.on_message(conn, data)
          local ok, err = pcall(conn.bind, conn, data, { since = 1 })
          conn:send(tostring(ok) .. " " .. tostring(err))
        end
        return M
      ]])
      local s = server.start { script = script }
      local c = assert(ws.connect(s.port))
      c:send("x")
      assert.matches("^false .*uidcast%.v1", (c:receive()))
      c:close()
      assert.equals(0, s:stop())
    end)
  end)

  describe("counters", function()
    it("counts kept, held, replayed and evicted messages in /stats", function()
      local _, _, body = http.request1(srv.push_port, "GET", "/stats")
      local stats = http.json(body)
      assert.is_true(stats.mailbox_kept > 0)
      assert.is_true(stats.mailbox_messages > 0)
      assert.is_true(stats.mailbox_memory > 0)
      assert.is_true(stats.mailbox_replayed > 0)
      assert.is_true(stats.mailbox_evicted > 0)
      assert.is_true(stats.mailbox_gaps > 0)
    end)
  end)
end)

describe("a replay longer than the send buffer", function()
  local srv

  setup(function()
    srv = server.start { args = { "--mailbox-max-messages", "10000", "--mailbox-max-bytes", "16m",
                                  "--max-send-buffer", "65536" } }
  end)
  teardown(function() assert.equals(0, srv:stop()) end)

  it("is paced by the reader, and a message kept meanwhile comes once, after it", function()
    -- 4,000 messages of 1 kB: 60 times the send buffer, and more than the socket buffers hold
    -- while the client does not read. A server that queued it all at once would cut the
    -- client off as a slow reader.
    local push = http.open(srv.push_port)
    local first
    for i = 1, 4000 do
      local _, _, answer = push:request("POST", "/send?uid=pace&keep=60",
        { body = ("m%d "):format(i) .. ("x"):rep(1000) })
      first = first or http.json(answer).seq
    end
    local c = login_v1(srv.port, "pace", 0)
    socket.sleep(0.2) -- the replay fills the socket and waits
    local _, _, answer = push:request("POST", "/send?uid=pace&keep=60", { body = "live" })
    assert.equals(first + 4000, http.json(answer).seq)
    push:close()
    local got = read_kept(c, 4001)
    for i = 1, 4001 do assert.equals(first + i - 1, got[i].seq) end
    assert.equals("live", got[4001].payload)
    assert.is_true(c:silent())
    c:close()
    local _, _, body = http.request1(srv.push_port, "GET", "/stats")
    assert.equals(0, http.json(body).slow_readers_closed)
  end)
end)

describe("kept messages from Lua", function()
  local srv

  -- on_message runs the Lua the client sends and answers with the results; on_undelivered
  -- reports to the uid "watcher".
  local EVAL = [[
    local uidcast = require "uidcast"
    local M = {}
    function M.on_open(conn, req) if req.query.uid then conn:bind(req.query.uid) end end
    function M.on_message(conn, data)
      local ok, a, b, c = pcall(assert(load("local uidcast, conn = ... " .. data)), uidcast, conn)
      conn:send(table.concat({ tostring(ok), tostring(a), tostring(b), tostring(c) }, " "))
    end
    function M.on_undelivered(uid, seq, data, reason, binary)
      uidcast.send_uid("watcher", ("undelivered %s %d %s %s %s"):format(uid, seq, data, reason, tostring(binary)))
    end
    return M
  ]]

  setup(function()
    srv = server.start { script = server.script(EVAL), args = { "--mailbox-max-messages", "2" } }
  end)
  teardown(function() assert.equals(0, srv:stop()) end)

  local function eval(c, code)
    c:send(code)
    local reply = c:receive()
    if c.numbered then reply = reply:match("^%- (.*)$") end
    return reply
  end

  it("send_uid with keep returns the count and the number", function()
    local c = assert(ws.connect(srv.port))
    local reply = eval(c, "return uidcast.send_uid('lua-k', 'x', { keep = 30 })")
    local seq = math.tointeger(tonumber(reply:match("^true 0 (%d+) nil$")))
    assert.equals("integer", math.type(seq))
    assert.equals("true 0 " .. (seq + 1) .. " nil", eval(c, "return uidcast.send_uid('lua-k', 'y', { keep = 30 })"))
    c:close()
  end)

  it("calls opts.kept with the number and the count, inside the call", function()
    local c = assert(ws.connect(srv.port))
    local reply = eval(c, "local got; local n, seq = uidcast.send_uid('lua-cb', 'x', { keep = 30, " ..
      "kept = function(s, d) got = s .. '/' .. d end }); return got, seq")
    local seq = reply:match("^true (%d+)/0 (%d+) nil$")
    assert.is_truthy(seq, reply)
    assert.matches("opts.kept must be a function, with opts.keep",
      eval(c, "return uidcast.send_uid('u', 'x', { kept = print })"))
    c:close()
  end)

  it("raises a clear error for a bad keep, keep with except, or keep outside send_uid", function()
    local c = assert(ws.connect(srv.port))
    assert.matches("opts.keep must be seconds", eval(c, "return uidcast.send_uid('u', 'x', { keep = 0 })"))
    assert.matches("opts.keep must be seconds", eval(c, "return uidcast.send_uid('u', 'x', { keep = 'soon' })"))
    assert.matches("cannot be combined", eval(c, "return uidcast.send_uid('u', 'x', { keep = 5, except = conn })"))
    assert.matches("send_uid only", eval(c, "return uidcast.broadcast('x', { keep = 5 })"))
    assert.matches("send_uid only", eval(c, "return uidcast.send_group('g', 'x', { keep = 5 })"))
    c:close()
  end)

  it("answers nil and a reason for a message too large to keep, and sends nothing", function()
    local c = assert(ws.connect(srv.port, { path = "/?uid=lua-big" }))
    local reply = eval(c, "return uidcast.send_uid('lua-big', ('x'):rep(2 * 1024 * 1024), { keep = 5 })")
    assert.matches("^true 0 nil cannot be kept", reply)
    assert.is_true(c:silent())
    c:close()
  end)

  it("shows the subprotocol and the handshake's since as conn.protocol and conn.since", function()
    local c = assert(ws.connect(srv.port, { path = "/?since=42", headers = { V1 } }))
    c.numbered = true
    assert.equals("true uidcast.v1 42 nil", eval(c, "return conn.protocol, conn.since"))
    c:close()
    c = assert(ws.connect(srv.port))
    assert.equals("true nil nil nil", eval(c, "return conn.protocol, conn.since"))
    c:close()
  end)

  it("refuses a since that is not a whole number", function()
    local c = assert(ws.connect(srv.port, { headers = { V1 } }))
    c.numbered = true
    assert.matches("opts.since must be a whole number", eval(c, "return conn:bind('u', { since = 1.5 })"))
    assert.matches("opts.since must be a whole number", eval(c, "return conn:bind('u', { since = -1 })"))
    c:close()
  end)

  it("calls on_undelivered for a kept message nobody was handed when it expires", function()
    local watcher = assert(ws.connect(srv.port, { path = "/?uid=watcher" }))
    local c = assert(ws.connect(srv.port))
    local seq = eval(c, "return uidcast.send_uid('lua-gone', 'bye', { keep = 0.3 })"):match("^true 0 (%d+)")
    assert.equals(("undelivered lua-gone %s bye expired false"):format(seq), watcher:receive(5))
    c:close()
    watcher:close()
  end)

  it("does not call on_undelivered for a kept message a connection was handed", function()
    local watcher = assert(ws.connect(srv.port, { path = "/?uid=watcher" }))
    local online = assert(ws.connect(srv.port, { path = "/?uid=lua-here" }))
    local c = assert(ws.connect(srv.port))
    assert.matches("^true 1 %d+", eval(c, "return uidcast.send_uid('lua-here', 'hi', { keep = 0.3 })"))
    assert.equals("hi", online:receive())
    assert.is_true(watcher:silent(2))
    c:close()
    online:close()
    watcher:close()
  end)

  it("calls on_undelivered with reason evicted when a cap drops a message nobody had", function()
    local watcher = assert(ws.connect(srv.port, { path = "/?uid=watcher" }))
    local c = assert(ws.connect(srv.port))
    local seq = eval(c, "return uidcast.send_uid('lua-cap', 'a', { keep = 30, binary = true })"):match("^true 0 (%d+)")
    eval(c, "return uidcast.send_uid('lua-cap', 'b', { keep = 30 })")
    eval(c, "return uidcast.send_uid('lua-cap', 'c', { keep = 30 })")
    assert.equals(("undelivered lua-cap %s a evicted true"):format(seq), watcher:receive(5))
    c:close()
    watcher:close()
  end)

  it("tells a client that resumes after its messages expired that it missed them", function()
    local c = assert(ws.connect(srv.port))
    local seq = math.tointeger(tonumber(
      eval(c, "return uidcast.send_uid('lua-exp', 'old', { keep = 0.2 })"):match("^true 0 (%d+)")))
    eval(c, "return uidcast.send_uid('lua-exp', 'older', { keep = 0.2 })")
    c:close()
    socket.sleep(1.5) -- expired, and swept
    local r = assert(ws.connect(srv.port, { headers = { V1 } }))
    r.numbered = true
    eval(r, "return conn:bind('lua-exp', { since = " .. (seq - 1) .. " })")
    assert.same({ "gap", seq, seq + 1 }, { read_v1(r) })
    r:close()
  end)
end)

describe("the store's memory #no_memcheck", function()
  local srv
  local CAP = 4 * 1024 * 1024

  setup(function()
    srv = server.start { args = { "--mailbox-memory", tostring(CAP), "--mailbox-max-messages", "10000",
                                  "--lua-budget", "100000000", "--lua-timeout", "120" },
                         script = server.script([[
      local uidcast = require "uidcast"
      return { on_message = function(conn, data)
        local from, to = data:match("^(%d+) (%d+)$")
        local send_uid, opts = uidcast.send_uid, { keep = 600 }
        for u = tonumber(from), tonumber(to) do
          local uid = "mem-" .. u
          for i = 1, 10000 do send_uid(uid, "message number " .. i, opts) end
        end
        conn:send("done")
      end }
    ]]) }
  end)
  teardown(function() assert.equals(0, srv:stop()) end)

  it("stays under --mailbox-memory while 1,000 uids each get 10,000 kept messages nobody reads", function()
    local function stats() return http.json(select(3, http.request1(srv.push_port, "GET", "/stats"))) end
    local rss_before = stats().process_resident_memory_bytes
    local c = assert(ws.connect(srv.port))
    for from = 1, 1000, 100 do
      c:send(from .. " " .. (from + 99))
      assert.equals("done", c:receive(120))
      assert.is_true(stats().mailbox_memory <= CAP)
    end
    c:close()
    local s = stats()
    assert.equals(10000000, s.mailbox_kept)
    assert.is_true(s.mailbox_memory <= CAP and s.mailbox_memory > CAP / 2, "mailbox_memory " .. s.mailbox_memory)
    assert.equals(s.mailbox_kept - s.mailbox_messages, s.mailbox_evicted)
    -- Unbounded, 10,000,000 messages would take about a gigabyte. Bounded: the kept ones, the
    -- dropped ones waiting for on_undelivered (at most CAP more), and the script's garbage.
    if not server.instrumented then
      assert.is_true(s.process_resident_memory_bytes - rss_before < 2 * CAP + 16 * 1024 * 1024,
        "RSS grew by " .. (s.process_resident_memory_bytes - rss_before))
    end
  end)
end)

describe("kept messages with the default script", function()
  local srv

  setup(function() srv = server.start() end)
  teardown(function() assert.equals(0, srv:stop()) end)

  it("keeps a uid:message sent from a uidcast.v1 connection for a receiver that comes later", function()
    local sender = login_v1(srv.port, "d-sender")
    sender:send("d-late:are you there?")
    socket.sleep(0.1)
    local late = login_v1(srv.port, "d-late", 0)
    local got = read_kept(late, 1)
    assert.equals("are you there?", got[1].payload)
    sender:close()
    late:close()
  end)

  it("still keeps what a uidcast.v1 connection sends after a reload, and not a seed client's", function()
    local sender = login_v1(srv.port, "d-reload-sender")
    local seed = ws.login(srv.port, "d-reload-seed")
    sender:send("d-reload-late:before")
    socket.sleep(0.1)
    srv:signal("HUP")
    assert.truthy(server.eventually(function() return srv:log():find("reloaded", 1, true) end))
    sender:send("d-reload-late:after")
    seed:send("d-reload-late:from seed")
    socket.sleep(0.1)
    local late = login_v1(srv.port, "d-reload-late", 0)
    local got = read_kept(late, 2)
    assert.equals("before", got[1].payload)
    assert.equals("after", got[2].payload)
    assert.is_true(late:silent())
    sender:close()
    seed:close()
    late:close()
  end)

  it("does not keep a uid:message sent by a client of the seed protocol", function()
    local sender = ws.login(srv.port, "d-seed")
    sender:send("d-seed-late:gone")
    socket.sleep(0.1)
    local late = login_v1(srv.port, "d-seed-late", 0)
    assert.is_true(late:silent())
    sender:close()
    late:close()
  end)
end)

describe("a client cut off 50 times while messages keep coming", function()
  local srv

  setup(function() srv = server.start() end)
  teardown(function() assert.equals(0, srv:stop()) end)

  -- The sender pushes 2,000 kept messages from its own process; the client reads a few, is
  -- cut (RST, clean close, or in the middle of a frame), reconnects with the last number it
  -- saw, and so on. At the end it must hold every message once, in order, with no gap.
  local function run(uid, binary)
    local sender = v1.sender(server.ROOT, srv.push_port, uid, 2000, { binary = binary })
    local got, last, cuts = {}, 0, 0
    local deadline = socket.gettime() + 60 * server.slowdown
    while #got < 2000 and socket.gettime() < deadline do
      local c = login_v1(srv.port, uid, last)
      local want = cuts < 50 and math.random(1, 60) or math.huge
      local n = 0
      while n < want and #got < 2000 do
        local kind, seq, payload, is_binary = read_v1(c, 5)
        if not kind then break end
        assert.equals("kept", kind, "no gap may be announced")
        if last > 0 then assert.equals(last + 1, seq, "a message was skipped or sent twice") end
        assert.equals(binary, is_binary)
        last = seq
        got[#got + 1] = payload
        n = n + 1
      end
      if cuts < 50 then
        cuts = cuts + 1
        local how = cuts % 3
        if how == 0 then
          reset(c)
        elseif how == 1 then
          c:close()
        else
          c.sock:settimeout(0.05)
          c.sock:receive(1) -- into the next frame, if one is on its way
          reset(c)
        end
      else
        c:close()
      end
    end
    assert.equals(50, cuts)
    assert.equals(2000, #got)
    local prefix = binary and "\0\255" or ""
    for i = 1, 2000 do
      if got[i] ~= prefix .. "m" .. i then
        error(("message %d is %q"):format(i, got[i]))
      end
    end
    assert.equals("0", sender(server))
  end

  it("ends up with every text message exactly once, in order", function() run("chaos-text", false) end)
  it("ends up with every binary message exactly once, in order", function() run("chaos-bin", true) end)
end)
