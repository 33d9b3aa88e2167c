-- sd_notify: under systemd (Type=notify) the server says when it is ready and when it stops,
-- on the socket $NOTIFY_SOCKET names.
local server = require "server"
local unix = require "socket.unix"

describe("sd_notify", function()
  it("sends READY=1 once it listens, RELOADING=1 and READY=1 around a reload, STOPPING=1 at a stop", function()
    local path = os.tmpname()
    os.remove(path)
    local sock = assert(unix.dgram())
    assert(sock:bind(path))
    sock:settimeout(5 * server.slowdown)
    local srv = server.start { env = { NOTIFY_SOCKET = path } }
    assert.equals("READY=1", sock:receive())
    srv:signal("HUP")
    assert.equals("RELOADING=1", sock:receive())
    assert.equals("READY=1", sock:receive())
    srv:signal("TERM")
    assert.equals("STOPPING=1", sock:receive())
    assert.equals(0, srv:wait(10))
    sock:close()
    os.remove(path)
  end)

  it("starts as before without NOTIFY_SOCKET, or with one nobody listens on", function()
    local srv = server.start { env = { NOTIFY_SOCKET = "/nonexistent/notify" } }
    assert.equals(0, srv:stop())
  end)
end)
