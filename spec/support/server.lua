-- spec/support/server.lua -- starts build/uidcast on a free port for one spec file.
--
-- The server runs under a small sh wrapper that records its exit status, so a spec can
-- check how it ended. UIDCAST_WRAPPER (e.g. "valgrind --error-exitcode=99 ...") is put in
-- front of the binary: the memcheck run reuses every integration spec this way.
local socket = require "socket"

local server = {}
server.__index = server

local ROOT = os.getenv("UIDCAST_ROOT") or "."
server.ROOT = ROOT
server.BIN = os.getenv("UIDCAST_BIN") or (ROOT .. "/build/uidcast")
server.wrapped = (os.getenv("UIDCAST_WRAPPER") or "") ~= ""
-- Under valgrind or ASan, memory figures (RSS) say more about the tool than about uidcast.
server.instrumented = server.wrapped or os.getenv("UIDCAST_BIN") ~= nil
-- Valgrind slows everything by an order of magnitude; specs scale their waits with this.
server.slowdown = server.wrapped and 10 or 1

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
server.read_file = read_file

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
server.shell_quote = shell_quote

local counter = 0

-- Starts the server. opts.script (path), opts.args (array of extra CLI words), opts.env
-- (a table of environment variables), opts.prefix (a command put in front, e.g. prlimit).
-- Returns the server object once it is listening.
function server.start(opts)
  opts = opts or {}
  counter = counter + 1
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  local self = setmetatable({ dir = dir, log_path = dir .. "/log", args = opts.args or {} }, server)
  local words = { opts.prefix or "", os.getenv("UIDCAST_WRAPPER") or "", shell_quote(server.BIN),
                  "--listen", "127.0.0.1:0", "--push", "127.0.0.1:0" }
  for _, a in ipairs(opts.args or {}) do words[#words + 1] = shell_quote(a) end
  words[#words + 1] = shell_quote(opts.script or (ROOT .. "/scripts/default.lua"))
  local env = ""
  for k, v in pairs(opts.env or {}) do env = env .. k .. "=" .. shell_quote(v) .. " " end
  local cmd = ("%s %s 2>%s & pid=$!; echo $pid > %s/pid; wait $pid; echo $? > %s/status")
      :format(env, table.concat(words, " "), self.log_path, dir, dir)
  assert(os.execute("( " .. cmd .. " ) >/dev/null 2>&1 &"))
  local deadline = socket.gettime() + 10 * server.slowdown
  while socket.gettime() < deadline do
    local log = read_file(self.log_path) or ""
    local port = log:match("listening on ws://%S-:(%d+)/")
    if port then
      self.port = tonumber(port)
      self.push_port = tonumber(log:match("push API on http://%S-:(%d+)/"))
      self.pid = server.eventually(function() return tonumber(read_file(dir .. "/pid") or "") end, 1)
      server.record_pid(self.pid)
      return self
    end
    if read_file(dir .. "/status") then break end
    socket.sleep(0.02)
  end
  error("uidcast did not start:\n" .. (read_file(self.log_path) or "(no log)"))
end

function server:log() return read_file(self.log_path) or "" end

-- Keeps the log of a server that failed a spec (for CI output).
function server:dump_log() io.stderr:write("---- uidcast log ----\n", self:log(), "\n") end

function server:signal(name) return os.execute(("kill -%s %d 2>/dev/null"):format(name, self.pid)) end

-- Waits for the process to end; returns its exit status, or nil on timeout.
function server:wait(timeout)
  local deadline = socket.gettime() + (timeout or 10) * server.slowdown
  while socket.gettime() < deadline do
    -- the wrapper creates the file before it writes the number: wait for the number
    local status = tonumber(read_file(self.dir .. "/status") or "")
    if status then return status end
    socket.sleep(0.02)
  end
  return nil
end

function server:running() return read_file(self.dir .. "/status") == nil end

-- SIGTERM and wait; returns the exit status (0 for a clean, leak-free stop under valgrind).
-- Any other status prints the server's log, which holds valgrind's report.
function server:stop()
  local status
  if not self:running() then
    status = self:wait(0)
  else
    self:signal("TERM")
    status = self:wait(10)
    if not status then
      self:signal("KILL")
      status = self:wait(5)
    end
  end
  if status ~= 0 then self:dump_log() end
  return status
end

-- Runs a shell command; returns whether it succeeded and what it printed (stdout and stderr).
function server.sh(cmd)
  local out = os.tmpname()
  local ok = os.execute(cmd .. " >" .. out .. " 2>&1")
  local text = read_file(out) or ""
  os.remove(out)
  return ok, text
end

-- Polls fn until it returns a truthy value or the timeout passes; returns that value.
function server.eventually(fn, timeout)
  local deadline = socket.gettime() + (timeout or 3) * server.slowdown
  repeat
    local v = fn()
    if v then return v end
    socket.sleep(0.02)
  until socket.gettime() > deadline
  return fn()
end

-- Records pid in the file UIDCAST_PID_FILE names (spec/run-all.sh sets it), so that the runner
-- can end what a failed spec left running: these pids and no other process.
function server.record_pid(pid)
  local file = os.getenv("UIDCAST_PID_FILE")
  if not file or not pid then return end
  local f = io.open(file, "a")
  if f then
    f:write(pid, "\n")
    f:close()
  end
end

-- Writes text to path (replacing it).
function server.write_file(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- Writes a temporary Lua script and returns its path.
function server.script(source)
  local path = os.tmpname() .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write(source)
  f:close()
  return path
end

return server
