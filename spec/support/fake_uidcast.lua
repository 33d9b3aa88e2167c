-- spec/support/fake_uidcast.lua -- a fake `uidcast` module, so scripts are unit-tested without
-- the server. It keeps its own uid -> connections map with the real module's rules and records
-- every delivery.
local fake = {}

-- Returns a fresh module table (put it in package.loaded.uidcast) and its inspector.
function fake.new()
  local state = { next_id = 0, conns = {}, sent = {}, env = {}, logs = {} }
  local m = {}

  local Conn = {}
  Conn.__index = Conn

  function Conn:bind(uid)
    assert(type(uid) == "string" and #uid > 0, "bind needs a non-empty uid")
    if self.closed then return false, "closed" end
    self.uid = uid
    return true
  end
  function Conn:unbind() self.uid = nil end
  function Conn:join(group)
    assert(type(group) == "string" and #group > 0, "join needs a non-empty group")
    if self.closed then return false, "closed" end
    self.joined[group] = true
    return true
  end
  function Conn:leave(group)
    local was = self.joined[group] == true
    self.joined[group] = nil
    return was
  end
  function Conn:in_group(group) return self.joined[group] == true end
  function Conn:groups()
    local t = {}
    for g in pairs(self.joined) do t[#t + 1] = g end
    table.sort(t)
    return t
  end
  function Conn:send(data, binary)
    if self.closed then return false, "closed" end
    self.inbox[#self.inbox + 1] = { data = data, binary = binary and true or false }
    return true
  end
  function Conn:close(code, reason)
    if self.closed then return false, "closed" end
    self.closed = true
    self.close_code, self.close_reason = code or 1000, reason
    return true
  end
  -- Test helpers: the messages it received, and the last one.
  function Conn:last() local m = self.inbox[#self.inbox]; return m and m.data end
  function Conn:last_binary() local m = self.inbox[#self.inbox]; return m and m.binary end

  function state.connect(remote_addr)
    state.next_id = state.next_id + 1
    local c = setmetatable({ id = state.next_id, remote_addr = remote_addr or "127.0.0.1:5000",
                             data = {}, inbox = {}, joined = {} }, Conn)
    state.conns[#state.conns + 1] = c
    return c
  end

  -- What the core does when a connection goes away: it leaves the map.
  function state.disconnect(c)
    c.closed = true
    for i, x in ipairs(state.conns) do
      if x == c then table.remove(state.conns, i) break end
    end
  end

  local function deliver(filter, data, opts)
    opts = opts or {}
    local n = 0
    for _, c in ipairs(state.conns) do
      if not c.closed and c ~= opts.except and filter(c) then
        c:send(data, opts.binary)
        n = n + 1
      end
    end
    state.sent[#state.sent + 1] = { data = data, opts = opts, count = n }
    return n
  end

  function m.send_uid(uid, data, opts)
    assert(type(uid) == "string" and #uid > 0, "bad argument #1 to 'send_uid'")
    assert(type(data) == "string", "bad argument #2 to 'send_uid'")
    return deliver(function(c) return c.uid == uid end, data, opts)
  end
  function m.broadcast(data, opts)
    assert(type(data) == "string", "bad argument #1 to 'broadcast'")
    return deliver(function(c) return c.uid ~= nil end, data, opts)
  end
  function m.send_group(group, data, opts)
    assert(type(group) == "string" and #group > 0, "bad argument #1 to 'send_group'")
    return deliver(function(c) return c.joined[group] end, data, opts)
  end
  function m.group_count(group)
    local n = 0
    for _, c in ipairs(state.conns) do if c.joined[group] then n = n + 1 end end
    return n
  end
  function m.env(name)
    assert(name:sub(1, 8) == "UIDCAST_", "only variables named UIDCAST_* are readable")
    return state.env[name]
  end
  -- Not the real digest: a stand-in that is deterministic and depends on both inputs.
  function m.hmac_sha256(key, data) return ("hmac(%s,%s)"):format(key, data) end
  function m.is_online(uid)
    for _, c in ipairs(state.conns) do if c.uid == uid then return true end end
    return false
  end
  function m.connections(uid)
    local t = {}
    for _, c in ipairs(state.conns) do if c.uid == uid then t[#t + 1] = c end end
    return t
  end
  function m.log(level, ...) state.logs[#state.logs + 1] = { level, ... } end
  function m.now() return os.time() end
  function m.stats() return { connections = #state.conns } end

  return m, state
end

-- Loads a script with a fresh fake module; returns handlers, fake module, inspector.
-- env: the environment variables uidcast.env() sees.
function fake.load_script(path, env)
  local m, state = fake.new()
  state.env = env or {}
  package.loaded.uidcast = m
  local handlers = dofile(path)
  return handlers, m, state
end

return fake
