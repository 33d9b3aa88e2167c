-- Unit specs of scripts/default.lua against the fake uidcast module.
local fake = require "fake_uidcast"

describe("default script", function()
  local script, state

  before_each(function()
    script, _, state = fake.load_script("scripts/default.lua")
  end)

  local function login(uid)
    local c = state.connect()
    script.on_message(c, uid, false)
    return c
  end

  describe("login", function()
    it("binds the first text message as the uid and replies with the seed's text", function()
      local c = login("alice")
      assert.equals("alice", c.uid)
      assert.equals("login success, your uid is alice", c:last())
    end)

    for _, case in ipairs {
      { "", "an empty uid" },
      { string.rep("x", 129), "a uid over 128 bytes" },
      { "a:b", "a uid with ':'" },
      { "all", "the uid 'all'" },
    } do
      it("refuses " .. case[2] .. " and leaves the connection unbound", function()
        local c = login(case[1])
        assert.is_nil(c.uid)
        assert.matches("^login failed: ", c:last())
        assert.is_falsy(c.closed)
      end)
    end

    it("accepts a uid of exactly 128 bytes", function()
      local c = login(string.rep("u", 128))
      assert.equals(string.rep("u", 128), c.uid)
    end)

    it("lets a refused connection try again", function()
      local c = login("all")
      script.on_message(c, "bob", false)
      assert.equals("bob", c.uid)
      assert.equals("login success, your uid is bob", c:last())
    end)

    it("refuses a binary message before login", function()
      local c = state.connect()
      script.on_message(c, "alice", true)
      assert.is_nil(c.uid)
      assert.matches("^login failed: ", c:last())
    end)
  end)

  describe("routing", function()
    it("routes uid:message to every connection of that uid", function()
      local a = login("alice")
      local b1, b2 = login("bob"), login("bob")
      script.on_message(a, "bob:hello", false)
      assert.equals("hello", b1:last())
      assert.equals("hello", b2:last())
      assert.equals(1, #state.sent)
      assert.equals(2, state.sent[1].count)
    end)

    it("splits at the first colon only, keeping later colons in the payload", function()
      local a, b = login("alice"), login("bob")
      script.on_message(a, "bob:12:30: lunch?", false)
      assert.equals("12:30: lunch?", b:last())
    end)

    it("sends all:message to every logged-in connection, the sender included", function()
      local a, b = login("alice"), login("bob")
      local stranger = state.connect()
      script.on_message(a, "all:hi", false)
      assert.equals("hi", a:last())
      assert.equals("hi", b:last())
      assert.equals(0, #stranger.inbox)
    end)

    it("drops a message to an offline uid silently", function()
      local a = login("alice")
      local before = #a.inbox
      script.on_message(a, "nobody:hello", false)
      assert.equals(before, #a.inbox)
      assert.equals(0, state.sent[1].count)
    end)

    it("answers a message without a colon with an error reply", function()
      local a = login("alice")
      script.on_message(a, "hello", false)
      assert.matches("^error:", a:last())
    end)

    it("delivers an empty payload", function()
      local a, b = login("alice"), login("bob")
      script.on_message(a, "bob:", false)
      assert.equals("", b:last())
    end)

    it("delivers a binary message as binary, split the same way", function()
      local a, b = login("alice"), login("bob")
      script.on_message(a, "bob:\0\1\2:x", true)
      assert.equals("\0\1\2:x", b:last())
      assert.is_true(b:last_binary())
    end)

    it("delivers a text message as text", function()
      local a, b = login("alice"), login("bob")
      script.on_message(a, "all:t", false)
      assert.is_false(b:last_binary())
    end)
  end)

  describe("close", function()
    it("keeps the other connections of a uid reachable when one closes", function()
      local a = login("alice")
      local b1, b2 = login("bob"), login("bob")
      state.disconnect(b1)
      if script.on_close then script.on_close(b1, 1000, "") end
      script.on_message(a, "bob:still there", false)
      assert.equals("still there", b2:last())
      assert.equals(1, state.sent[#state.sent].count)
    end)
  end)
end)
