-- spec/support/http.lua -- a raw HTTP/1.1 client for the push API specs: keep-alive and
-- pipelining on one socket, exact bytes when a spec needs to send something odd.
local ws = require "ws"

local http = {}
http.__index = http

function http.open(port)
  return setmetatable({ sock = ws.tcp(port) }, http)
end

-- Builds a request. opts.headers: array of "Name: value"; opts.body; opts.close.
function http.format(method, target, opts)
  opts = opts or {}
  local lines = { ("%s %s HTTP/1.1"):format(method, target), "Host: 127.0.0.1" }
  for _, h in ipairs(opts.headers or {}) do lines[#lines + 1] = h end
  if opts.body then lines[#lines + 1] = "Content-Length: " .. #opts.body end
  if opts.close then lines[#lines + 1] = "Connection: close" end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (opts.body or "")
end

function http:send_raw(bytes) return self.sock:send(bytes) end

-- Returns status, headers (lower-case names), body.
function http:read() return ws.read_http_response(self.sock) end

function http:request(method, target, opts)
  self:send_raw(http.format(method, target, opts))
  return self:read()
end

function http:close() self.sock:close() end

-- One request on a fresh connection.
function http.request1(port, method, target, opts)
  local c = http.open(port)
  local status, headers, body = c:request(method, target, opts)
  c:close()
  return status, headers, body
end

-- Decodes the few JSON shapes the push API answers with (flat objects of strings, numbers,
-- booleans): enough for specs, and strict enough to fail on malformed output.
function http.json(text)
  assert(type(text) == "string" and text:match("^{.*}$"), "not a JSON object: " .. tostring(text))
  local t = {}
  local rest = text:sub(2, -2)
  local pos = 1
  while pos <= #rest do
    local key, after = rest:match('^"([^"]*)":()', pos)
    assert(key, "bad JSON near: " .. rest:sub(pos))
    pos = after
    local value
    if rest:sub(pos, pos) == '"' then
      local s, e = pos + 1, pos + 1
      while rest:sub(e, e) ~= '"' do
        if rest:sub(e, e) == "\\" then e = e + 1 end
        e = e + 1
        assert(e <= #rest, "unterminated string")
      end
      value = rest:sub(s, e - 1):gsub('\\(.)', '%1')
      pos = e + 1
    else
      local raw, after2 = rest:match("^([^,]+)()", pos)
      if raw == "true" then value = true
      elseif raw == "false" then value = false
      else value = assert(tonumber(raw), "bad JSON value " .. tostring(raw)) end
      pos = after2
    end
    t[key] = value
    if rest:sub(pos, pos) == "," then pos = pos + 1 end
  end
  return t
end

return http
