-- --webhook: online/offline events and undelivered kept messages POSTed as signed JSON to a
-- real HTTP receiver (spec/support/webhook_receiver.py), retried, counted when given up.
local ws = require "ws"
local http = require "http"
local server = require "server"
local receivers = require "webhook_receiver"

local SECRET = receivers.SECRET
local start_receiver = receivers.start

local function stats(srv)
  local _, _, body = http.request1(srv.push_port, "GET", "/stats")
  return http.json(body)
end

describe("--webhook", function()
  local receiver, srv

  setup(function()
    receiver = start_receiver(1) -- the first answer is a 500
    srv = server.start { args = { "--webhook", receiver.url, "--offline-grace", "0.3" },
                         env = { UIDCAST_WEBHOOK_SECRET = SECRET } }
  end)
  teardown(function()
    assert.equals(0, srv:stop())
    receiver.stop()
  end)

  it("POSTs online and offline events, signed, retrying one the receiver failed", function()
    local c = ws.login(srv.port, "w-alice")
    c:close()
    local taken
    assert(server.eventually(function()
      taken = {}
      for _, e in ipairs(receiver.events()) do
        if e.status == 200 and e.event.uid == "w-alice" then taken[#taken + 1] = e end
      end
      return #taken == 2
    end, 10))
    -- The online event was retried, so it may come after the offline one: versions order them.
    table.sort(taken, function(x, y) return x.event.version < y.event.version end)
    assert.equals("online", taken[1].event.event)
    assert.equals("offline", taken[2].event.event)
    assert.is_true(taken[2].event.version > taken[1].event.version)
    for _, e in ipairs(receiver.events()) do assert.is_true(e.signature_ok) end
    local all = receiver.events()
    assert.equals(500, all[1].status) -- the first try of the online event
    assert.same(all[1].event, taken[1].event) -- tried again, the same event
    local s = stats(srv)
    assert.equals(2, s.webhook_sent)
    assert.equals(1, s.webhook_retried)
    assert.equals(0, s.webhook_failed)
  end)

  it("tells of a kept message that expired undelivered", function()
    local _, _, body = http.request1(srv.push_port, "POST", "/send?uid=w-nobody&keep=0.2", { body = "you missed me" })
    assert.equals(0, http.json(body).delivered)
    local got
    assert(server.eventually(function()
      for _, e in ipairs(receiver.events()) do
        if e.event.event == "undelivered" and e.status == 200 then got = e.event end
      end
      return got
    end, 10))
    assert.same({ "w-nobody", "you missed me", "expired" }, { got.uid, got.data, got.reason })
    assert.is_number(got.seq)
  end)

  it("sends a binary message that expired undelivered as base64", function()
    http.request1(srv.push_port, "POST", "/send?uid=w-bin&keep=0.2&binary=1", { body = "\0\1\255" })
    local got
    assert(server.eventually(function()
      for _, e in ipairs(receiver.events()) do
        if e.event.event == "undelivered" and e.event.uid == "w-bin" and e.status == 200 then got = e.event end
      end
      return got
    end, 10))
    assert.same({ "AAH/", true }, { got.data, got.binary })
  end)
end)

describe("--webhook with a receiver that is down", function()
  it("counts the events given up and goes on serving", function()
    local srv = server.start { args = { "--webhook", "http://127.0.0.1:9/down", "--webhook-retry-for", "1",
                                        "--offline-grace", "0.1" } }
    local c = ws.login(srv.port, "w-lost")
    c:send("w-lost:still served")
    assert.equals("still served", c:receive())
    c:close()
    assert(server.eventually(function() return stats(srv).webhook_failed == 2 end, 10))
    assert.equals(0, stats(srv).webhook_sent)
    assert.matches("webhook http://127.0.0.1:9/down: .*given up", srv:log())
    assert.equals(0, srv:stop())
  end)

  it("refuses a URL that is not http or https", function()
    local out = io.popen(("%s --webhook ftp://x/ --check %s/scripts/default.lua 2>&1; echo status=$?")
      :format(server.BIN, server.ROOT))
    local text = out:read("a")
    out:close()
    assert.matches("--webhook takes an http:// or https:// URL", text)
    assert.matches("status=2", text)
  end)
end)

describe("--webhook across a cluster", function()
  local cluster = require "cluster"
  local receiver, r, a, b, c

  setup(function()
    receiver = start_receiver(0)
    r, a, b, c = cluster.start(3, { args = { "--webhook", receiver.url, "--offline-grace", "0.5" },
                                   env = { UIDCAST_WEBHOOK_SECRET = SECRET } })
  end)
  teardown(function()
    cluster.stop(r, a, b, c)
    receiver.stop()
  end)

  local function events_of(uid)
    local out = {}
    for _, e in ipairs(receiver.events()) do
      if e.event.uid == uid then out[#out + 1] = e.event.event end
    end
    return table.concat(out, ",")
  end

  it("gets one online and one offline event for a uid on two nodes", function()
    local tab1 = assert(ws.login(a.port, "wc-alice"))
    local tab2 = assert(ws.login(b.port, "wc-alice"))
    assert(server.eventually(function() return events_of("wc-alice") == "online" end, 5), events_of("wc-alice"))
    tab1:close()
    tab2:close()
    assert(server.eventually(function() return events_of("wc-alice") == "online,offline" end, 5))
    require("socket").sleep(1)
    assert.equals("online,offline", events_of("wc-alice"))
  end)

  it("gets nothing for a reload within the grace, even onto another node", function()
    local tab = assert(ws.login(a.port, "wc-reload"))
    assert(server.eventually(function() return events_of("wc-reload") == "online" end, 5))
    tab:close()
    tab = assert(ws.login(c.port, "wc-reload"))
    require("socket").sleep(1.5)
    assert.equals("online", events_of("wc-reload"))
    tab:close()
  end)
end)
