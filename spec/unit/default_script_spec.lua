-- scripts/default.lua, the seed protocol, in the real server (spec/support/policy.lua).
local policy = require "policy"

describe("default script", function()
  local h

  before_each(function() h = policy.start("scripts/default.lua") end)
  after_each(function() h:stop() end)

  local function login(uid) return policy.login(h, uid) end

  describe("login", function()
    it("binds the first text message as the uid and replies with the seed's text", function()
      local c = login("alice")
      local other = login("other")
      other:send("alice:for alice")
      assert.equals("for alice", c:receive())
    end)

    for _, case in ipairs {
      { "", "an empty uid" },
      { string.rep("x", 129), "a uid over 128 bytes" },
      { "a:b", "a uid with ':'" },
      { "all", "the uid 'all'" },
    } do
      it("refuses " .. case[2] .. " and leaves the connection open and unbound", function()
        local c = assert(h:connect())
        c:send(case[1])
        assert.matches("^login failed: ", (c:receive()))
        local other = login("other")
        other:send("all:to everyone logged in")
        assert.equals("to everyone logged in", other:receive())
        assert.is_true(policy.silent(c)) -- unbound: no broadcasts
        c:send("again")
        assert.equals("login success, your uid is again", c:receive()) -- and still open
      end)
    end

    it("accepts a uid of exactly 128 bytes", function()
      login(string.rep("u", 128))
    end)

    it("lets a refused connection try again", function()
      local c = assert(h:connect())
      c:send("all")
      assert.matches("^login failed: ", (c:receive()))
      c:send("bob")
      assert.equals("login success, your uid is bob", c:receive())
    end)

    it("refuses a binary message before login", function()
      local c = assert(h:connect())
      c:send("alice", true)
      assert.matches("^login failed: ", (c:receive()))
    end)
  end)

  describe("routing", function()
    it("routes uid:message to every connection of that uid", function()
      local a = login("alice")
      local b1, b2 = login("bob"), login("bob")
      a:send("bob:hello")
      assert.equals("hello", b1:receive())
      assert.equals("hello", b2:receive())
      assert.is_true(policy.silent(a))
    end)

    it("splits at the first colon only, keeping later colons in the payload", function()
      local a, b = login("alice"), login("bob")
      a:send("bob:12:30: lunch?")
      assert.equals("12:30: lunch?", b:receive())
    end)

    it("sends all:message to every logged-in connection, the sender included", function()
      local a, b = login("alice"), login("bob")
      local stranger = assert(h:connect())
      a:send("all:hi")
      assert.equals("hi", a:receive())
      assert.equals("hi", b:receive())
      assert.is_true(policy.silent(stranger))
    end)

    it("drops a message to an offline uid silently", function()
      local a = login("alice")
      a:send("nobody:hello")
      assert.is_true(policy.silent(a))
    end)

    it("answers a message without a colon with an error reply", function()
      local a = login("alice")
      a:send("hello")
      assert.matches("^error:", (a:receive()))
    end)

    it("delivers an empty payload", function()
      local a, b = login("alice"), login("bob")
      a:send("bob:")
      assert.equals("", b:receive())
    end)

    it("delivers a binary message as binary, split the same way", function()
      local a, b = login("alice"), login("bob")
      a:send("bob:\0\1\2:x", true)
      local data, binary = b:receive()
      assert.equals("\0\1\2:x", data)
      assert.is_true(binary)
    end)

    it("delivers a text message as text", function()
      local a, b = login("alice"), login("bob")
      a:send("all:t")
      local data, binary = b:receive()
      assert.equals("t", data)
      assert.is_false(binary)
    end)
  end)

  describe("close", function()
    it("keeps the other connections of a uid reachable when one closes", function()
      local a = login("alice")
      local b1, b2 = login("bob"), login("bob")
      b1:close()
      a:send("bob:still there")
      assert.equals("still there", b2:receive())
    end)

    it("keeps a uid reachable when a stale connection of it drops without a close frame", function()
      local a = login("alice")
      local old = login("bob")
      local new = login("bob")
      old:drop()
      a:send("bob:after the drop")
      assert.equals("after the drop", new:receive())
    end)
  end)
end)
