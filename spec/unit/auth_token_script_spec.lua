-- Unit specs of scripts/auth_token.lua against the fake uidcast module.
local fake = require "fake_uidcast"

local SECRET = "0123456789abcdef-secret"

describe("auth_token script", function()
  local script, m, state

  before_each(function()
    script, m, state = fake.load_script("scripts/auth_token.lua", { UIDCAST_SECRET = SECRET })
  end)

  local function open(query)
    local c = state.connect()
    local ok, status, reason = script.on_open(c, { path = "/", query = query, headers = {},
                                                   remote_addr = "127.0.0.1:1" })
    return c, ok, status, reason
  end

  it("refuses to load without UIDCAST_SECRET", function()
    assert.has_error(function() fake.load_script("scripts/auth_token.lua", {}) end)
  end)

  it("binds the uid when the token is the HMAC of the uid", function()
    local c, ok = open { uid = "alice", token = m.hmac_sha256(SECRET, "alice") }
    assert.is_not_false(ok)
    assert.equals("alice", c.uid)
  end)

  it("refuses a wrong token with 401", function()
    local c, ok, status = open { uid = "alice", token = m.hmac_sha256(SECRET, "mallory") }
    assert.is_false(ok)
    assert.equals(401, status)
    assert.is_nil(c.uid)
  end)

  it("refuses a missing token with 401 and a missing or bad uid with 400", function()
    local _, ok, status = open { uid = "alice" }
    assert.is_false(ok)
    assert.equals(401, status)
    _, ok, status = open { token = "x" }
    assert.equals(400, status)
    _, ok, status = open { uid = "all", token = m.hmac_sha256(SECRET, "all") }
    assert.equals(400, status)
  end)

  it("routes uid:message after the handshake", function()
    local a = open { uid = "alice", token = m.hmac_sha256(SECRET, "alice") }
    local b = open { uid = "bob", token = m.hmac_sha256(SECRET, "bob") }
    script.on_message(a, "bob:hi: there", false)
    assert.equals("hi: there", b:last())
    script.on_message(a, "all:x", false)
    assert.equals("x", a:last())
    script.on_message(a, "nocolon", false)
    assert.matches("^error:", a:last())
  end)
end)
