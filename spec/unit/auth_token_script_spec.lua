-- scripts/auth_token.lua in the real server (spec/support/policy.lua): tokens are computed by
-- openssl, not by the API under test.
local policy = require "policy"

local SECRET = "0123456789abcdef-secret"

describe("auth_token script", function()
  local h

  before_each(function()
    h = policy.start("scripts/auth_token.lua", {}, { UIDCAST_SECRET = SECRET })
  end)
  after_each(function() h:stop() end)

  -- A token for uid that expires at exp (default: in an hour), as the web application mints it.
  local function mint(uid, exp)
    exp = exp or os.time() + 3600
    return exp .. "." .. policy.hmac(SECRET, uid .. "." .. exp)
  end

  local function open(uid, token)
    local q = {}
    if uid then q[#q + 1] = "uid=" .. uid end
    if token then q[#q + 1] = "token=" .. token end
    return h:connect("/?" .. table.concat(q, "&"))
  end

  it("refuses to load without a UIDCAST_SECRET of 16 bytes or more", function()
    h:stop()
    assert.has_error(function() policy.start("scripts/auth_token.lua", {}, { UIDCAST_SECRET = "short" }) end)
  end)

  it("binds the uid when the token is the HMAC of the uid and its expiry, not yet passed", function()
    local alice = assert(open("alice", mint("alice")))
    local bob = assert(open("bob", mint("bob")))
    bob:send("alice:hi")
    assert.equals("hi", alice:receive())
  end)

  it("takes the token in upper case too", function()
    assert(open("alice", mint("alice"):upper()))
  end)

  it("refuses a wrong token with 401 and logs it", function()
    local c, status, body = open("alice", mint("mallory"))
    assert.is_nil(c)
    assert.equals(401, status)
    assert.equals("bad token", body)
    assert.truthy(h:log():find("bad token for uid alice", 1, true))
  end)

  it("refuses an expired token with 401, and one whose expiry was changed", function()
    local c, status, body = open("alice", mint("alice", os.time() - 1))
    assert.is_nil(c)
    assert.equals(401, status)
    assert.equals("token expired", body)
    local forged = mint("alice", os.time() - 1):gsub("^%d+", tostring(os.time() + 86400))
    c, status, body = open("alice", forged)
    assert.is_nil(c)
    assert.equals(401, status)
    assert.equals("bad token", body)
    for _, bad in ipairs { policy.hmac(SECRET, "alice"), "x.y", ".abc", "12." } do
      assert.equals(401, select(2, open("alice", bad)))
    end
  end)

  it("refuses a missing token with 401 and a missing or bad uid with 400", function()
    local _, status = open("alice")
    assert.equals(401, status)
    _, status = open(nil, "x")
    assert.equals(400, status)
    _, status = open("all", mint("all"))
    assert.equals(400, status)
  end)

  it("routes uid:message after the handshake", function()
    local a = assert(open("alice", mint("alice")))
    local b = assert(open("bob", mint("bob")))
    a:send("bob:hi: there")
    assert.equals("hi: there", b:receive())
    a:send("all:x")
    assert.equals("x", a:receive())
    assert.equals("x", b:receive())
    a:send("nocolon")
    assert.matches("^error:", (a:receive()))
  end)
end)
