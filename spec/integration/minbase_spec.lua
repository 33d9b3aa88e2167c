-- The README's first command, copied as written, on a minimal Debian 12 (debootstrap
-- --variant=minbase, nothing else installed) in a chroot: it installs what running needs,
-- builds, and serves the seed protocol on 127.0.0.1:1234.
local ws = require "ws"
local server = require "server"
local socket = require "socket"

local sh = server.sh

-- The processes whose root is the chroot: the ones this spec started there.
local function pids_in(root)
  local pids = {}
  local _, list = sh("ls /proc")
  for pid in list:gmatch("%d+") do
    local _, link = sh("readlink /proc/" .. pid .. "/root")
    if link:match("^(.-)%s*$") == root then pids[#pids + 1] = pid end
  end
  return pids
end

describe("the README's first command on a minimal Debian #no_memcheck", function()
  local root, mounted

  setup(function()
    if not os.execute("command -v debootstrap >/dev/null 2>&1") then return end
    root = os.tmpname()
    os.remove(root)
  end)

  teardown(function()
    if not root then return end
    for _, pid in ipairs(pids_in(root)) do os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
    if mounted then os.execute("umount " .. root .. "/proc") end
    os.execute("rm -rf " .. root)
  end)

  it("installs, builds and serves the seed protocol in a debootstrap minbase chroot", function()
    if not root then
      pending("debootstrap is not installed (make test-deps installs it): the minbase proof is skipped")
      return
    end
    local probe = socket.tcp()
    probe:settimeout(0.2)
    local busy = probe:connect("127.0.0.1", 1234)
    probe:close()
    if busy then
      pending("127.0.0.1:1234 is in use on this machine: the minbase proof needs it")
      return
    end
    local readme = server.read_file(server.ROOT .. "/README.md")
    local block = readme:match("## The two commands.-```sh\n(.-)```")
    local command = block:match("^([^\n#]-)%s*#")
    assert.matches("make run$", command)
    local ok, out = sh(("debootstrap --variant=minbase bookworm %s http://deb.debian.org/debian"):format(root))
    assert(ok, out:sub(-2000))
    assert.is_nil(server.read_file(root .. "/usr/bin/make"), "minbase has no make: the command must bring it")
    ok, out = sh(("mkdir -p %s/root/uidcast && cd %s && git ls-files -z | xargs -0 cp --parents -t %s/root/uidcast")
      :format(root, server.ROOT, root))
    assert(ok, out)
    assert(os.execute("mount -t proc proc " .. root .. "/proc"))
    mounted = true
    local log = root .. "/run.log"
    assert(os.execute(("chroot %s /bin/sh -c %s >%s 2>&1 </dev/null &")
      :format(root, server.shell_quote("cd /root/uidcast && " .. command), log)))
    local listening = server.eventually(function()
      return (server.read_file(log) or ""):find("listening on ws://127.0.0.1:1234/", 1, true)
    end, 600)
    assert(listening, (server.read_file(log) or ""):sub(-3000))
    local c = ws.login(1234, "alice")
    c:send("alice:hi me")
    assert.equals("hi me", c:receive())
    c:send("all:hello")
    assert.equals("hello", c:receive())
    c:close()
    -- What running needs and no more: curl for the push examples, no Redis, no test tools.
    ok = sh("chroot " .. root .. " sh -c 'command -v curl'")
    assert.truthy(ok, "curl, which the push examples use, is not installed")
    for _, tool in ipairs { "redis-server", "valgrind", "clang", "busted" } do
      assert.is_not_true((sh(("chroot %s sh -c 'command -v %s'"):format(root, tool))), tool .. " came with make run")
    end
    local _, count = sh("chroot " .. root .. " dpkg-query -W -f='.'")
    io.stderr:write(("\n  minbase + make run: %d packages\n"):format(#count))
    for _, pid in ipairs(pids_in(root)) do os.execute("kill " .. pid .. " 2>/dev/null") end
    socket.sleep(0.2)
  end)
end)
