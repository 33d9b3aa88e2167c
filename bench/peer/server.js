// server.js -- the benchmark peer: a Node.js `ws` server speaking uidcast's default protocol
// (first message = uid, then "target:payload", "all:payload") plus the push API's POST /send,
// written the way a Node developer would, so both servers do the same work.
// Usage: node server.js WS_PORT PUSH_PORT
"use strict";
const http = require("http");
const { WebSocketServer } = require("ws");

const wsPort = Number(process.argv[2] || 1234);
const pushPort = Number(process.argv[3] || 1235);
const byUid = new Map(); // uid -> Set of sockets

function sendUid(uid, data, isBinary) {
  const set = byUid.get(uid);
  if (!set) return 0;
  for (const ws of set) ws.send(data, { binary: isBinary });
  return set.size;
}

const wss = new WebSocketServer({ port: wsPort, host: "127.0.0.1", perMessageDeflate: false });
wss.on("connection", (ws) => {
  ws.uid = null;
  ws.on("message", (raw, isBinary) => {
    const data = isBinary ? raw : raw.toString();
    if (ws.uid === null) {
      const uid = String(data);
      if (isBinary || uid === "" || uid.length > 128 || uid.includes(":") || uid === "all") {
        ws.send("login failed: bad uid");
        return;
      }
      ws.uid = uid;
      if (!byUid.has(uid)) byUid.set(uid, new Set());
      byUid.get(uid).add(ws);
      ws.send("login success, your uid is " + uid);
      return;
    }
    const text = isBinary ? raw.toString("latin1") : data;
    const colon = text.indexOf(":");
    if (colon < 0) {
      ws.send("error: expected target:message");
      return;
    }
    const target = text.slice(0, colon);
    const payload = isBinary ? raw.subarray(colon + 1) : text.slice(colon + 1);
    if (target === "all") {
      for (const set of byUid.values()) for (const c of set) c.send(payload, { binary: isBinary });
    } else {
      sendUid(target, payload, isBinary);
    }
  });
  ws.on("close", () => {
    if (ws.uid === null) return;
    const set = byUid.get(ws.uid);
    set.delete(ws);
    if (set.size === 0) byUid.delete(ws.uid);
  });
});

http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  if (req.method !== "POST" || url.pathname !== "/send") {
    res.writeHead(404, { "Content-Type": "application/json" });
    res.end('{"error":"not found"}');
    return;
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const n = sendUid(url.searchParams.get("uid"), Buffer.concat(chunks).toString(), false);
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ delivered: n }));
  });
}).listen(pushPort, "127.0.0.1", () => {
  console.error(`listening on ws://127.0.0.1:${wsPort}/ push on http://127.0.0.1:${pushPort}/`);
});
