-- Unit specs of scripts/rooms.lua against the fake uidcast module.
local fake = require "fake_uidcast"

describe("rooms script", function()
  local script, state

  before_each(function()
    script, _, state = fake.load_script("scripts/rooms.lua")
  end)

  local function login(uid)
    local c = state.connect()
    script.on_message(c, uid, false)
    return c
  end

  it("logs in with the first message, like the default script", function()
    local c = login("alice")
    assert.equals("alice", c.uid)
    assert.equals("login success, your uid is alice", c:last())
  end)

  it("refuses an invalid uid", function()
    local c = login("a:b")
    assert.is_nil(c.uid)
    assert.matches("^login failed", c:last())
  end)

  it("join:<room> joins the group and reports the member count", function()
    local a, b = login("alice"), login("bob")
    script.on_message(a, "join:lobby", false)
    assert.is_true(a:in_group("lobby"))
    assert.equals("joined lobby (1 members)", a:last())
    script.on_message(b, "join:lobby", false)
    assert.equals("joined lobby (2 members)", b:last())
  end)

  it("room:<room>:<text> reaches every member with room and sender, keeping colons", function()
    local a, b, c = login("alice"), login("bob"), login("carol")
    script.on_message(a, "join:lobby", false)
    script.on_message(b, "join:lobby", false)
    script.on_message(a, "room:lobby:meet at 12:30", false)
    assert.equals("[lobby] alice: meet at 12:30", a:last())
    assert.equals("[lobby] alice: meet at 12:30", b:last())
    assert.equals("login success, your uid is carol", c:last())
  end)

  it("refuses to send to a room the sender is not in", function()
    local a = login("alice")
    script.on_message(a, "room:lobby:hi", false)
    assert.equals("error: join lobby first", a:last())
    assert.equals(0, #state.sent)
  end)

  it("leave:<room> stops delivery to the leaver", function()
    local a, b = login("alice"), login("bob")
    script.on_message(a, "join:r", false)
    script.on_message(b, "join:r", false)
    script.on_message(b, "leave:r", false)
    assert.equals("left r", b:last())
    script.on_message(a, "room:r:x", false)
    assert.equals("left r", b:last())
    assert.equals(1, state.sent[1].count)
  end)

  it("answers leaving a room it is not in with an error", function()
    local a = login("alice")
    script.on_message(a, "leave:nowhere", false)
    assert.equals("error: you are not in nowhere", a:last())
  end)

  it("refuses bad room names and unknown commands", function()
    local a = login("alice")
    script.on_message(a, "join:", false)
    assert.matches("^error: room names", a:last())
    script.on_message(a, "dance:now", false)
    assert.matches("^error: expected join", a:last())
    script.on_message(a, "room:nocolon", false)
    assert.matches("^error: expected room:", a:last())
  end)
end)
