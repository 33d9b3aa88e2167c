-- A third-party client (Debian's python3-websockets) against the real server, so that our own
-- test client is not the only judge of the protocol.
local server = require "server"

describe("interop with python3-websockets", function()
  local srv, lines = nil, {}

  setup(function()
    srv = server.start()
    local p = io.popen(("timeout %d /usr/bin/python3 spec/interop/client.py %d 2>&1")
      :format(30 * server.slowdown, srv.port))
    for line in p:lines() do
      local name, value = line:match("^(%S+) ?(.*)$")
      if name then lines[name] = value end
    end
    p:close()
  end)
  teardown(function() assert.equals(0, srv:stop()) end)

  it("logs in", function()
    assert.equals("login success, your uid is py-alice", lines.login)
  end)

  it("routes to every connection of a uid, keeping later colons", function()
    assert.equals("hello: from python | hello: from python", lines.routed)
  end)

  it("reassembles a fragmented message", function()
    assert.equals("fragmented", lines.fragmented)
  end)

  it("delivers binary as binary", function()
    assert.equals("bytes 000162696e617279", lines.binary)
  end)

  it("carries a 100 KB message", function()
    assert.equals("100000", lines.big)
  end)

  it("broadcasts to everyone, the sender included", function()
    assert.equals("to everyone | to everyone | to everyone", lines.broadcast)
  end)

  it("answers pings", function()
    assert.equals("ok", lines.pong)
  end)

  it("keeps a uid's other connection after one closes, and closes cleanly", function()
    assert.equals("after close", lines.after_close)
    assert.equals("1000 4000", lines.close_code)
  end)
end)
