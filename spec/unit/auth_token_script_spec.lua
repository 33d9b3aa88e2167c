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

  it("binds the uid when the token is the HMAC of the uid", function()
    local alice = assert(open("alice", policy.hmac(SECRET, "alice")))
    local bob = assert(open("bob", policy.hmac(SECRET, "bob")))
    bob:send("alice:hi")
    assert.equals("hi", alice:receive())
  end)

  it("takes the token in upper case too", function()
    assert(open("alice", policy.hmac(SECRET, "alice"):upper()))
  end)

  it("refuses a wrong token with 401 and logs it", function()
    local c, status, body = open("alice", policy.hmac(SECRET, "mallory"))
    assert.is_nil(c)
    assert.equals(401, status)
    assert.equals("bad token", body)
    assert.truthy(h:log():find("bad token for uid alice", 1, true))
  end)

  it("refuses a missing token with 401 and a missing or bad uid with 400", function()
    local _, status = open("alice")
    assert.equals(401, status)
    _, status = open(nil, "x")
    assert.equals(400, status)
    _, status = open("all", policy.hmac(SECRET, "all"))
    assert.equals(400, status)
  end)

  it("routes uid:message after the handshake", function()
    local a = assert(open("alice", policy.hmac(SECRET, "alice")))
    local b = assert(open("bob", policy.hmac(SECRET, "bob")))
    a:send("bob:hi: there")
    assert.equals("hi: there", b:receive())
    a:send("all:x")
    assert.equals("x", a:receive())
    assert.equals("x", b:receive())
    a:send("nocolon")
    assert.matches("^error:", (a:receive()))
  end)
end)
