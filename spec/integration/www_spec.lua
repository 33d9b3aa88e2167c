-- --www DIR: plain GETs on the WebSocket port get DIR's files (the client library, the demo
-- page); nothing outside DIR, whatever the path says.
local ws = require "ws"
local http = require "http"
local server = require "server"

local write = server.write_file

describe("--www", function()
  local srv, dir, outside

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    outside = os.tmpname() -- a file next to the directory, not in it
    write(outside, "secret outside")
    assert(os.execute("mkdir -p " .. dir .. "/sub"))
    write(dir .. "/index.html", "<!doctype html><title>demo</title>")
    write(dir .. "/app.js", "export const x = 1;\n")
    write(dir .. "/app.mjs", "export const y = 2;\n")
    write(dir .. "/sub/data.json", "{}")
    write(dir .. "/.env", "TOKEN=1")
    assert(os.execute(("ln -s %s %s/link-out"):format(outside, dir)))
    assert(os.execute(("ln -s /etc %s/etc-link"):format(dir)))
    srv = server.start { args = { "--www", dir } }
  end)
  teardown(function()
    assert.equals(0, srv:stop())
    os.execute("rm -rf " .. dir .. " " .. outside)
  end)

  local function get(target, headers, method)
    return http.request1(srv.port, method or "GET", target, { headers = headers })
  end

  it("serves index.html at / with its type, an ETag and Last-Modified", function()
    local status, headers, body = get("/")
    assert.equals(200, status)
    assert.equals("<!doctype html><title>demo</title>", body)
    assert.equals("text/html; charset=utf-8", headers["content-type"])
    assert.matches('^"%x+%-%x+"$', headers.etag)
    assert.matches("GMT$", headers["last-modified"])
  end)

  it("serves JavaScript (.js and .mjs) and JSON with their types, in subdirectories too", function()
    local status, headers = get("/app.js")
    assert.equals(200, status)
    assert.equals("text/javascript; charset=utf-8", headers["content-type"])
    status, headers = get("/app.mjs")
    assert.equals(200, status)
    assert.equals("text/javascript; charset=utf-8", headers["content-type"])
    status, headers = get("/sub/data.json")
    assert.equals(200, status)
    assert.equals("application/json", headers["content-type"])
  end)

  it("answers 304 when If-None-Match holds the ETag", function()
    local _, headers = get("/app.js")
    local status, _, body = get("/app.js", { "If-None-Match: " .. headers.etag })
    assert.equals(304, status)
    assert.equals("", body)
  end)

  it("answers HEAD with the length and no body", function()
    local c = http.open(srv.port)
    c:send_raw(http.format("HEAD", "/app.js"))
    local status_line = c.sock:receive("*l")
    assert.equals("HTTP/1.1 200 OK", status_line)
    local rest = c.sock:receive("*a")
    c:close()
    assert.matches("Content%-Length: 20\r\n", rest)
    assert.matches("\r\n\r\n$", rest)
  end)

  it("refuses other methods with 405 and Allow", function()
    local status, headers = get("/app.js", nil, "POST")
    assert.equals(405, status)
    assert.equals("GET, HEAD", headers.allow)
  end)

  it("answers 404 for what is missing or must not be served", function()
    for _, target in ipairs {
      "/missing.html", "/../" .. outside:match("[^/]+$"), "/%2e%2e/%2e%2e/etc/passwd", "/sub/../../etc/passwd",
      "/sub/%2E%2E/%2E%2E/etc/passwd", "/.env", "/%2eenv", "/link-out", "/etc-link/passwd",
      "/app.js%00.html", "/sub", "/sub/",
    } do
      local status, _, body = get(target)
      assert.equals(404, status, target)
      assert.is_nil(body:find("secret", 1, true), target)
      assert.is_nil(body:find("root:", 1, true), target)
    end
  end)

  it("still upgrades WebSocket requests", function()
    local c = ws.login(srv.port, "www-user")
    c:close()
  end)

  it("refuses to start on a directory that does not exist", function()
    local path = os.tmpname()
    os.remove(path)
    local p = io.popen(("%s --www %s %s/scripts/default.lua 2>&1; echo \"exit $?\"")
      :format(server.BIN, path, server.ROOT))
    local out = p:read("a")
    p:close()
    assert.matches("%-%-www '" .. path:gsub("%p", "%%%0") .. "'", out)
    assert.matches("exit 1", out)
  end)
end)

describe("without --www", function()
  it("answers a plain GET with 426, as before", function()
    local srv = server.start()
    local status, headers = http.request1(srv.port, "GET", "/uidcast.js")
    assert.equals(426, status)
    assert.equals("websocket", headers.upgrade:lower())
    assert.equals(0, srv:stop())
  end)
end)
