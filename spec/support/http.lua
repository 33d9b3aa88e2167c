-- spec/support/http.lua -- a raw HTTP/1.1 client for the push API specs: keep-alive and
-- pipelining on one socket, exact bytes when a spec needs to send something odd.
local ws = require "ws"
local dkjson = require "dkjson"

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

-- Decodes a JSON object (the push API's answers) with dkjson, a decoder independent of the
-- server's own; null becomes http.null, so that a field that is there but null can be told
-- from one that is missing.
http.null = dkjson.null
function http.json(text)
  assert(type(text) == "string", "not a JSON text: " .. tostring(text))
  local value, _, err = dkjson.decode(text, 1, dkjson.null)
  assert(type(value) == "table", "not a JSON object: " .. tostring(err or text))
  return value
end

return http
