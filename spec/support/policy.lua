-- spec/support/policy.lua -- a script under test in the real server, in this process: the real
-- sandbox, limits and `uidcast` module, clients over socketpairs (spec/harness/harness.c, built
-- by `make spec-harness`). What a spec sees is what the server would do.
local ROOT = os.getenv("UIDCAST_ROOT") or "."
package.cpath = ROOT .. "/build/spec/?.so;" .. package.cpath
local harness = require "uidcast_harness"

local policy = {}

-- Starts a script: policy.start(path [, cli_args [, env]]) -> harness (h:connect, h:run, h:log,
-- h:stop). One at a time; starting another stops the previous one.
function policy.start(script, args, env) return harness.start(script, args or {}, env) end

-- Connects and logs in by first message (the default protocol); returns the client.
function policy.login(h, uid)
  local c = assert(h:connect())
  c:send(uid)
  local reply = c:receive()
  assert(reply == "login success, your uid is " .. uid, "login failed: " .. tostring(reply))
  return c
end

-- True when nothing arrives at c within t seconds (default 0.05).
function policy.silent(c, t)
  local data, err = c:receive(t or 0.05)
  return data == nil and err == "timeout"
end

-- HMAC-SHA256(key, data) as lower-case hex, computed by openssl, not by the code under test.
function policy.hmac(key, data)
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "wb"))
  f:write(data)
  f:close()
  local p = assert(io.popen(("openssl dgst -sha256 -hmac '%s' -r < %s"):format(key:gsub("'", "'\\''"), tmp)))
  local out = p:read("a")
  p:close()
  os.remove(tmp)
  return assert(out:match("^(%x+)"))
end

return policy
