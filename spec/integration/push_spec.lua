-- The HTTP push API: other systems deliver to users, and read presence and counters.
local ws = require "ws"
local http = require "http"
local server = require "server"
local socket = require "socket"

describe("push API", function()
  local srv

  setup(function()
    srv = server.start { args = { "--max-message", "65536", "--push-timeout", "1" } }
  end)
  teardown(function() assert.equals(0, srv:stop()) end)

  local function push(method, target, opts) return http.request1(srv.push_port, method, target, opts) end

  describe("POST /send?uid=", function()
    it("delivers the body to every connection of the uid and says how many", function()
      local a1, a2 = ws.login(srv.port, "p-alice"), ws.login(srv.port, "p-alice")
      local status, headers, body = push("POST", "/send?uid=p-alice", { body = "from php" })
      assert.equals(200, status)
      assert.equals("application/json", headers["content-type"])
      assert.same({ delivered = 2 }, http.json(body))
      assert.equals("from php", a1:receive())
      assert.equals("from php", a2:receive())
      a1:close()
      a2:close()
    end)

    it("answers delivered 0 for an offline uid", function()
      local status, _, body = push("POST", "/send?uid=p-nobody", { body = "x" })
      assert.equals(200, status)
      assert.same({ delivered = 0 }, http.json(body))
    end)

    it("decodes %-escapes in the uid", function()
      local c = ws.login(srv.port, "ü b")
      local _, _, body = push("POST", "/send?uid=%C3%BC%20b", { body = "hi" })
      assert.same({ delivered = 1 }, http.json(body))
      assert.equals("hi", c:receive())
      c:close()
    end)

    it("sends a binary frame with &binary=1", function()
      local c = ws.login(srv.port, "p-bin")
      local _, _, body = push("POST", "/send?uid=p-bin&binary=1", { body = "\0\255" })
      assert.same({ delivered = 1 }, http.json(body))
      local data, binary = c:receive()
      assert.equals("\0\255", data)
      assert.is_true(binary)
      c:close()
    end)

    it("refuses a text body that is not UTF-8 with 400", function()
      local status, _, body = push("POST", "/send?uid=x", { body = "bad \255" })
      assert.equals(400, status)
      assert.matches("UTF%-8", http.json(body).error)
    end)

    it("takes a chunked body", function()
      local c = ws.login(srv.port, "p-chunked")
      local conn = http.open(srv.push_port)
      conn:send_raw("POST /send?uid=p-chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" ..
                    "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n")
      local status, _, body = conn:read()
      assert.equals(200, status)
      assert.same({ delivered = 1 }, http.json(body))
      assert.equals("hello, world", c:receive())
      conn:close()
      c:close()
    end)
  end)

  it("POST /send?group= delivers to the group's members", function()
    local rooms = server.start { script = server.ROOT .. "/scripts/rooms.lua" }
    local a, b = ws.login(rooms.port, "g-a"), ws.login(rooms.port, "g-b")
    a:send("join:news")
    assert.matches("^joined news", (a:receive()))
    local status, _, body = http.request1(rooms.push_port, "POST", "/send?group=news", { body = "extra!" })
    assert.equals(200, status)
    assert.same({ delivered = 1 }, http.json(body))
    assert.equals("extra!", a:receive())
    assert.is_true(b:silent())
    a:close()
    b:close()
    assert.equals(0, rooms:stop())
  end)

  it("POST /broadcast reaches bound connections only", function()
    local a, b = ws.login(srv.port, "bc-1"), ws.login(srv.port, "bc-2")
    local unbound = assert(ws.connect(srv.port))
    local status, _, body = push("POST", "/broadcast", { body = "to all" })
    assert.equals(200, status)
    assert.is_true(http.json(body).delivered >= 2)
    assert.equals("to all", a:receive())
    assert.equals("to all", b:receive())
    assert.is_true(unbound:silent())
    for _, c in ipairs { a, b, unbound } do c:close() end
  end)

  it("GET /online tells whether a uid is online and on how many connections", function()
    local a1, a2 = ws.login(srv.port, "on-a"), ws.login(srv.port, "on-a")
    local status, _, body = push("GET", "/online?uid=on-a")
    assert.equals(200, status)
    assert.same({ uid = "on-a", online = true, connections = 2 }, http.json(body))
    a1:close()
    a2:close()
    local gone = server.eventually(function()
      local _, _, b = push("GET", "/online?uid=on-a")
      return http.json(b).online == false and http.json(b)
    end)
    assert.same({ uid = "on-a", online = false, connections = 0 }, gone)
  end)

  it("GET /online escapes the uid as JSON", function()
    local _, _, body = push("GET", "/online?uid=a%22b%5C")
    assert.equals('{"uid":"a\\"b\\\\","online":false,"connections":0}', body)
    -- A uid that is not UTF-8 is echoed byte by byte as U+0000..U+00FF: still valid JSON.
    _, _, body = push("GET", "/online?uid=%FFz")
    assert.equals('{"uid":"\195\191z","online":false,"connections":0}', body)
  end)

  it("GET /stats counts traffic as it flows", function()
    local _, _, before = push("GET", "/stats")
    before = http.json(before)
    local a, b = ws.login(srv.port, "st-a"), ws.login(srv.port, "st-b")
    a:send("st-b:x")
    assert.equals("x", b:receive())
    local _, headers, after = push("GET", "/stats")
    assert.equals("application/json", headers["content-type"])
    after = http.json(after)
    for _, k in ipairs { "connections", "bound_connections", "uids", "groups", "accepted",
                         "messages_in", "messages_out", "bytes_in", "bytes_out",
                         "slow_readers_closed", "handshakes_refused", "lua_errors",
                         "protocol_errors", "push_requests", "uptime" } do
      assert.is_number(after[k], k)
    end
    assert.is_true(after.messages_in >= before.messages_in + 3)
    assert.is_true(after.messages_out >= before.messages_out + 3)
    assert.is_true(after.accepted >= before.accepted + 2)
    assert.is_true(after.push_requests >= before.push_requests + 1)
    a:close()
    b:close()
  end)

  it("GET /metrics speaks the Prometheus text format", function()
    local c = ws.login(srv.port, "metrics-u")
    local status, headers, body = push("GET", "/metrics")
    assert.equals(200, status)
    assert.matches("^text/plain; version=0%.0%.4", headers["content-type"])
    assert.matches("# HELP uidcast_connections [^\n]+\n# TYPE uidcast_connections gauge\n" ..
                   "uidcast_connections %d+\n", body)
    assert.matches("# TYPE uidcast_messages_in_total counter\nuidcast_messages_in_total %d+\n", body)
    for line in body:gmatch("[^\n]+") do
      assert.truthy(line:match("^# HELP [a-z_]+ .+$") or line:match("^# TYPE [a-z_]+ [a-z]+$")
                    or line:match("^[a-z_]+ [%d.]+$"), line)
      assert.truthy(line:match("^[# A-Z]*uidcast_") or line:match("^[# A-Z]*process_"), line)
    end
    -- the standard process metrics exporters give, so dashboards work unchanged
    for _, name in ipairs { "process_cpu_seconds_total", "process_resident_memory_bytes",
                            "process_open_fds", "process_max_fds", "process_start_time_seconds" } do
      assert.matches("\n" .. name .. " [%d.]+\n", body)
    end
    assert.is_true(tonumber(body:match("\nprocess_resident_memory_bytes (%d+)")) > 1000000)
    assert.matches('"lua_memory":%d+', (select(3, push("GET", "/stats"))))
    local n = tonumber(body:match("\nuidcast_connections (%d+)"))
    assert.is_true(n >= 1)
    c:close()
  end)

  it("keeps an HTTP/1.0 client's connection when it asks, and tells it so", function()
    local conn = http.open(srv.push_port)
    for _ = 1, 3 do
      conn:send_raw("POST /send?uid=nobody HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx")
      local status, headers = conn:read()
      assert.equals(200, status)
      assert.equals("keep-alive", headers["connection"])
    end
    conn:send_raw("POST /send?uid=nobody HTTP/1.0\r\nContent-Length: 1\r\n\r\nx")
    local status, headers = conn:read()
    assert.equals(200, status)
    assert.equals("close", headers["connection"])
    conn:close()
  end)

  it("serves many requests over one keep-alive connection, pipelined too", function()
    local c = ws.login(srv.port, "ka")
    local conn = http.open(srv.push_port)
    for i = 1, 100 do
      local status, _, body = conn:request("POST", "/send?uid=ka", { body = "m" .. i })
      assert.equals(200, status)
      assert.same({ delivered = 1 }, http.json(body))
    end
    local batch = {}
    for i = 101, 150 do batch[#batch + 1] = http.format("POST", "/send?uid=ka", { body = "m" .. i }) end
    conn:send_raw(table.concat(batch))
    for _ = 101, 150 do assert.equals(200, (conn:read())) end
    for i = 1, 150 do assert.equals("m" .. i, c:receive()) end
    conn:close()
    c:close()
  end)

  it("keeps pipelined answers in order when GET /online is among them", function()
    local c = ws.login(srv.port, "pl-on")
    local conn = http.open(srv.push_port)
    local batch = {}
    for i = 1, 20 do
      batch[#batch + 1] = http.format("GET", "/online?uid=" .. (i % 2 == 0 and "pl-on" or "pl-off"))
      batch[#batch + 1] = http.format("POST", "/send?uid=pl-on", { body = "n" .. i })
    end
    batch[#batch + 1] = http.format("GET", "/online?uid=pl-on", { headers = { "Connection: close" } })
    conn:send_raw(table.concat(batch))
    for i = 1, 20 do
      local status, _, body = conn:read()
      assert.equals(200, status)
      assert.same({ uid = i % 2 == 0 and "pl-on" or "pl-off", online = i % 2 == 0,
                    connections = i % 2 == 0 and 1 or 0 }, http.json(body))
      status, _, body = conn:read()
      assert.equals(200, status)
      assert.same({ delivered = 1 }, http.json(body))
    end
    local status, headers, body = conn:read()
    assert.equals(200, status)
    assert.equals("close", headers["connection"])
    assert.same({ uid = "pl-on", online = true, connections = 1 }, http.json(body))
    assert.is_nil(conn.sock:receive(1)) -- closed after the last answer
    for i = 1, 20 do assert.equals("n" .. i, c:receive()) end
    conn:close()
    c:close()
  end)

  describe("errors", function()
    local function expect_error(status, method, target, opts)
      local got, headers, body = push(method, target, opts)
      assert.equals(status, got)
      assert.equals("application/json", headers["content-type"])
      assert.is_string(http.json(body).error)
      return headers, http.json(body).error
    end

    it("400 for a missing uid, an empty uid, or both uid and group", function()
      expect_error(400, "POST", "/send", { body = "x" })
      expect_error(400, "POST", "/send?uid=", { body = "x" })
      expect_error(400, "POST", "/send?uid=a&group=b", { body = "x" })
      expect_error(400, "POST", "/send?uid=%zz", { body = "x" })
      expect_error(400, "GET", "/online")
    end)

    it("400 for bytes that are not HTTP, and the connection closes", function()
      local conn = http.open(srv.push_port)
      conn:send_raw("HELLO?\r\n\r\n")
      local status, headers, body = conn:read()
      assert.equals(400, status)
      assert.equals("close", headers["connection"])
      assert.matches("malformed HTTP request", http.json(body).error)
      conn:close()
    end)

    it("404 for an unknown path", function()
      expect_error(404, "GET", "/nope")
    end)

    it("405 with Allow for a wrong method", function()
      local headers = expect_error(405, "GET", "/send?uid=a")
      assert.equals("POST", headers["allow"])
      headers = expect_error(405, "POST", "/stats", { body = "" })
      assert.equals("GET", headers["allow"])
    end)

    it("413 for a body over --max-message, before reading it", function()
      local conn = http.open(srv.push_port)
      conn:send_raw("POST /send?uid=a HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
      local status, _, body = conn:read()
      assert.equals(413, status)
      assert.matches("larger than", http.json(body).error)
      conn:close()
    end)

    it("413 reaches a client still sending its body: the server drains instead of resetting", function()
      local conn = http.open(srv.push_port)
      local body = string.rep("z", 3 * 1024 * 1024)
      -- the whole request in one blocking send: the 413 is written after its head, while the
      -- body is still on its way; a close at that point would reset the connection
      assert(conn:send_raw("POST /send?uid=a HTTP/1.1\r\nHost: x\r\nContent-Length: " .. #body ..
                           "\r\n\r\n" .. body))
      local status, _, answer = conn:read()
      assert.equals(413, status)
      assert.matches("larger than", http.json(answer).error)
      conn:close()
    end)

    it("413 for a chunked body that grows past --max-message", function()
      local conn = http.open(srv.push_port)
      local chunk = string.rep("a", 40000)
      conn:send_raw(("POST /send?uid=a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" ..
                     "%x\r\n%s\r\n%x\r\n%s\r\n")
        :format(#chunk, chunk, #chunk, chunk))
      assert.equals(413, (conn:read()))
      conn:close()
    end)

    it("414 URI Too Long for a request target over 4 KiB", function()
      local conn = http.open(srv.push_port)
      conn:send_raw("GET /online?uid=" .. string.rep("u", 5000) .. " HTTP/1.1\r\nHost: x\r\n\r\n")
      conn.sock:settimeout(5)
      local line = conn.sock:receive("*l")
      assert.equals("HTTP/1.1 414 URI Too Long", line)
      conn:close()
    end)

    it("431 for a request head over 8 KiB", function()
      expect_error(431, "GET", "/stats", { headers = { "X-Big: " .. string.rep("b", 9000) } })
    end)
  end)

  it("stops reading a client that pipelines requests and never reads the answers", function()
    -- a server of its own, with the default --push-timeout: reading 20,000 answers back under
    -- valgrind takes a while, and this spec is about memory, not idleness
    local own = server.start()
    local function rss_kb()
      local status = server.read_file("/proc/" .. own.pid .. "/status") or ""
      return tonumber(status:match("VmRSS:%s*(%d+)"))
    end
    local conn = http.open(own.push_port)
    conn.sock:settimeout(0.2)
    local before = rss_kb()
    local request = http.format("GET", "/metrics")
    local batch = string.rep(request, 500)
    local sent = 0
    for _ = 1, 40 do -- 20,000 requests, about 50 MB of answers, while reading none
      local ok = conn.sock:send(batch)
      if not ok then break end
      sent = sent + 500
    end
    socket.sleep(0.3)
    if not server.instrumented then
      assert.is_true(rss_kb() - before < 8 * 1024, (rss_kb() - before) .. " kB more")
    end
    -- every request that got in is answered, in order, once the client reads
    conn.sock:settimeout(5 * server.slowdown)
    local answered = 0
    while answered < sent do
      local status = conn:read()
      if not status then break end
      assert.equals(200, status)
      answered = answered + 1
    end
    assert.is_true(sent >= 500)
    assert.equals(sent, answered)
    conn:close()
    assert.equals(0, own:stop())
  end)

  it("closes a push connection that stays idle past --push-timeout", function()
    local conn = http.open(srv.push_port)
    conn.sock:settimeout(5 * server.slowdown)
    local t0 = socket.gettime()
    local data, err = conn.sock:receive(1)
    assert.is_nil(data)
    assert.equals("closed", err)
    assert.is_true(socket.gettime() - t0 < 3 * server.slowdown)
    conn:close()
  end)
end)

describe("push API with a token", function()
  local TOKEN = "s3cret-token-for-specs"

  local function check(srv)
    local c = ws.login(srv.port, "tok")
    local status, headers = http.request1(srv.push_port, "POST", "/send?uid=tok", { body = "x" })
    assert.equals(401, status)
    assert.equals("Bearer", headers["www-authenticate"])
    status = http.request1(srv.push_port, "POST", "/send?uid=tok",
                           { body = "x", headers = { "Authorization: Bearer wrong" } })
    assert.equals(401, status)
    status = http.request1(srv.push_port, "GET", "/stats",
                           { headers = { "Authorization: Bearer " .. TOKEN .. "x" } })
    assert.equals(401, status)
    local _, body
    status, _, body = http.request1(srv.push_port, "POST", "/send?uid=tok",
                                    { body = "authorized", headers = { "Authorization: Bearer " .. TOKEN } })
    assert.equals(200, status)
    assert.same({ delivered = 1 }, http.json(body))
    assert.equals("authorized", c:receive())
    c:close()
    assert.equals(0, srv:stop())
  end

  it("requires Authorization: Bearer TOKEN with --push-token", function()
    check(server.start { args = { "--push-token", TOKEN } })
  end)

  it("takes the token from UIDCAST_PUSH_TOKEN", function()
    check(server.start { env = { UIDCAST_PUSH_TOKEN = TOKEN } })
  end)

  it("warns loudly when bound beyond loopback without a token", function()
    local srv = server.start { args = { "--push", "0.0.0.0:0" } }
    assert.matches("WARNING: the push API on 0%.0%.0%.0:%d+ has no %-%-push%-token", srv:log())
    assert.equals(0, srv:stop())
  end)

  it("is off with --push off", function()
    local srv = server.start { args = { "--push", "off" } }
    assert.is_nil(srv.push_port)
    assert.is_nil(srv:log():find("push API on", 1, true))
    assert.equals(0, srv:stop())
  end)
end)
