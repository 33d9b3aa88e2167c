-- Bounded resources: slow readers are cut off, connections beyond the limit get 503.
local ws = require "ws"
local server = require "server"

describe("limits", function()
  it("cuts off a reader that lets its send buffer overflow, while others keep flowing", function()
    local srv = server.start { args = { "--max-send-buffer", "65536", "--max-message", "70000" } }
    local slow = ws.login(srv.port, "slow")
    local a, b = ws.login(srv.port, "fast-a"), ws.login(srv.port, "fast-b")
    local sender = ws.login(srv.port, "sender")
    local function rss_kb()
      local status = server.read_file("/proc/" .. srv.pid .. "/status") or ""
      return tonumber(status:match("VmRSS:%s*(%d+) kB"))
    end
    local rss_before = rss_kb()
    local blob = string.rep("z", 60000)
    -- 24 MB towards a client that never reads: far beyond any loopback socket buffer.
    for i = 1, 400 do
      sender:send("slow:" .. blob)
      if i % 50 == 0 then
        a:send("fast-b:" .. i)
        assert.equals(tostring(i), b:receive())
      end
    end
    assert.truthy(server.eventually(function() return srv:log():find("closing slow reader") end))
    -- 24 MB were sent at it; the server held on to little more than the 64 KiB cap
    -- (valgrind's bookkeeping and ASan's quarantine make RSS meaningless under them)
    if not server.instrumented then
      assert.is_true(rss_kb() - rss_before < 8 * 1024, "RSS grew by " .. (rss_kb() - rss_before) .. " kB")
    end
    a:send("fast-b:after")
    assert.equals("after", b:receive())
    -- the slow client finds its connection gone once it finally reads
    local got_eof = server.eventually(function()
      local payload, err = slow:receive(0.5)
      return payload == nil and err ~= "timeout"
    end, 10)
    assert.truthy(got_eof)
    for _, c in ipairs { a, b, sender } do c:close() end
    assert.equals(0, srv:stop())
  end)

  it("delivers everything, in order, to a reader that falls behind and then catches up", function()
    local srv = server.start { args = { "--max-send-buffer", "64m", "--max-message", "70000" } }
    local reader = ws.login(srv.port, "behind")
    local sender = ws.login(srv.port, "writer")
    local blob = string.rep("w", 60000)
    -- 24 MB before the reader reads a byte: beyond both sockets' buffers, so the server's
    -- writes stop and must start again once there is room
    for i = 1, 400 do assert(sender:send("behind:" .. i .. ":" .. blob)) end
    for i = 1, 400 do assert.equals(i .. ":" .. blob, reader:receive()) end
    reader:close()
    sender:close()
    assert.equals(0, srv:stop())
  end)

  it("cuts off a slow reader of broadcasts, while the others get every one of them", function()
    local http = require "http"
    local srv = server.start { args = { "--max-send-buffer", "65536", "--max-message", "70000" } }
    local slow = ws.login(srv.port, "bslow")
    local fast = ws.login(srv.port, "bfast")
    local pusher = http.open(srv.push_port)
    local blob = string.rep("y", 60000)
    for i = 1, 400 do
      local status = pusher:request("POST", "/broadcast", { body = i .. ":" .. blob })
      assert.equals(200, status)
      if i % 25 == 0 then
        for j = i - 24, i do assert.equals(j .. ":" .. blob, fast:receive()) end
      end
    end
    assert.truthy(server.eventually(function() return srv:log():find("closing slow reader") end))
    local got_eof = server.eventually(function()
      local payload, err = slow:receive(0.5)
      return payload == nil and err ~= "timeout"
    end, 10)
    assert.truthy(got_eof)
    pusher:close()
    fast:close()
    assert.equals(0, srv:stop())
  end)

  it("counts the memory of queued pongs, so a ping flood from a non-reader is cut off early", function()
    local srv = server.start { args = { "--max-send-buffer", "1m" } }
    local function hwm_kb()
      local status = server.read_file("/proc/" .. srv.pid .. "/status") or ""
      return tonumber(status:match("VmHWM:%s*(%d+) kB"))
    end
    local before = hwm_kb()
    local flooder = ws.login(srv.port, "pinger")
    flooder.sock:settimeout(2 * server.slowdown)
    local batch = string.rep(ws.frame { opcode = ws.OP.ping }, 10000)
    -- up to 5 million pings (30 MB), reading nothing: 2-byte pongs pile up on the server
    for _ = 1, 500 do
      if not flooder.sock:send(batch) then break end
    end
    assert.truthy(server.eventually(function() return srv:log():find("closing slow reader") end, 10))
    if not server.instrumented then
      -- counted by wire bytes, 1 MiB of pongs held over 30 MB of heap before the cut
      assert.is_true(hwm_kb() - before < 12 * 1024, "peak RSS grew by " .. (hwm_kb() - before) .. " kB")
    end
    flooder.sock:close()
    local other = ws.login(srv.port, "after-flood")
    other:close()
    assert.equals(0, srv:stop())
  end)

  it("answers connections beyond --max-connections with 503", function()
    local srv = server.start { args = { "--max-connections", "2" } }
    local a, b = ws.login(srv.port, "m1"), ws.login(srv.port, "m2")
    local c, status, _, body = ws.connect(srv.port)
    assert.is_nil(c)
    assert.equals(503, status)
    assert.matches("too many connections", body)
    a:close()
    local d = server.eventually(function() return ws.connect(srv.port) end)
    assert.truthy(d)
    d:close()
    b:close()
    assert.equals(0, srv:stop())
  end)
end)

describe("out of file descriptors", function()
  -- Under valgrind the process needs descriptors of its own, so this one runs natively only.
  it("sheds connections beyond the file limit, logs once, and serves again after #no_memcheck", function()
    local srv = server.start { prefix = "prlimit --nofile=32:32" }
    local keep = { ws.login(srv.port, "fd-0") }
    local extra = {}
    for _ = 1, 60 do
      local s = require("socket").tcp()
      s:settimeout(1)
      if s:connect("127.0.0.1", srv.port) then extra[#extra + 1] = s end
    end
    -- the server is not spinning and still routes for the connection it holds
    keep[1]:send("fd-0:alive")
    assert.equals("alive", keep[1]:receive())
    local log = srv:log()
    local _, warnings = log:gsub("out of file descriptors", "")
    assert.is_true(warnings >= 1 and warnings <= 3)
    for _, s in ipairs(extra) do s:close() end
    local again = server.eventually(function()
      local ok, c = pcall(ws.login, srv.port, "fd-1")
      return ok and c
    end)
    assert.truthy(again)
    again:close()
    keep[1]:close()
    assert.equals(0, srv:stop())
  end)
end)

describe("idle memory", function()
  -- make bench measures this at 19,000 connections; this keeps it from regressing.
  it("holds an idle logged-in connection in under 2 KiB of server memory #no_memcheck", function()
    if server.instrumented then
      pending("RSS says more about valgrind or ASan than about uidcast")
      return
    end
    local srv = server.start()
    local function rss_kb()
      local status = server.read_file("/proc/" .. srv.pid .. "/status") or ""
      return tonumber(status:match("VmRSS:%s*(%d+) kB"))
    end
    -- warm up allocator pools and Lua's tables with a first batch
    local warm = {}
    for i = 1, 200 do warm[i] = ws.login(srv.port, "warm" .. i) end
    local before = rss_kb()
    local clients = {}
    for i = 1, 1500 do clients[i] = ws.login(srv.port, "idle" .. i) end
    -- a connection at rest gives back its frame-parsing context half a second after its last bytes
    require("socket").sleep(1.5)
    local per_conn = (rss_kb() - before) * 1024 / 1500
    assert.is_true(per_conn < 2048, ("%.0f bytes per idle connection"):format(per_conn))
    for _, c in ipairs(clients) do c.sock:close() end
    for _, c in ipairs(warm) do c.sock:close() end
    assert.equals(0, srv:stop())
  end)
end)
