// The client and the demo page in a real browser: Debian's chromium, headless, driven by
// playwright-core, against the real server (and a real redis-server) started here.
// Screenshots of the demo page go to build/browser-*.png for a person to look at.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import net from "node:net";
import { chromium } from "playwright-core";

const ROOT = new URL("../..", import.meta.url).pathname;
const BIN = process.env.UIDCAST_BIN || `${ROOT}build/uidcast`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function freePort() {
  const s = net.createServer().listen(0, "127.0.0.1");
  await new Promise((r) => s.once("listening", r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

async function until(fn, ms = 10000, what = "condition") {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

// Starts uidcast on the given ports with --www www; resolves once it listens.
async function startServer(port, pushPort, extra = []) {
  const p = spawn(BIN, ["--listen", `127.0.0.1:${port}`, "--push", `127.0.0.1:${pushPort}`,
    "--www", `${ROOT}www`, ...extra, `${ROOT}scripts/default.lua`], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  p.stderr.on("data", (d) => (log += d));
  p.log = () => log;
  await until(() => log.includes("listening on") && (!extra.includes("--redis") || log.includes("connected to redis")),
    10000, "uidcast to start");
  return p;
}

async function stop(p) {
  if (p.exitCode !== null || p.signalCode) return;
  p.kill("SIGTERM");
  await Promise.race([new Promise((r) => p.once("exit", r)), sleep(5000)]);
  if (p.exitCode === null && !p.signalCode) p.kill("SIGKILL");
}

// One POST through the push API; resolves to the answer's JSON, or null when it failed.
async function push(pushPort, uid, body, keep) {
  try {
    const r = await fetch(`http://127.0.0.1:${pushPort}/send?uid=${uid}${keep ? `&keep=${keep}` : ""}`,
      { method: "POST", body });
    return r.ok ? await r.json() : null;
  } catch {
    return null;
  }
}

let browser, srv, port, pushPort;

before(async () => {
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: ["--no-sandbox"] });
  port = await freePort();
  pushPort = await freePort();
  srv = await startServer(port, pushPort);
});

after(async () => {
  await browser?.close();
  if (srv) await stop(srv);
});

// The demo page, logged in as uid, in its own browser context.
async function demo(context, uid, at = port) {
  const page = await context.newPage();
  await page.goto(`http://127.0.0.1:${at}/`);
  await page.fill("#uid", uid);
  await page.click("#login button");
  await until(() => page.textContent("#state").then((s) => s === "open"), 5000, `${uid} to connect`);
  await until(() => page.textContent("#log").then((t) => t.includes(`your uid is ${uid}`)), 5000, `${uid} to log in`);
  return page;
}

const logText = (page) => page.$$eval("#log li", (lis) => lis.map((li) => li.textContent));

test("the README's console snippet, pasted as one block, prints the three promised lines", async () => {
  const readme = readFileSync(`${ROOT}README.md`, "utf8");
  const snippet = readme.slice(readme.indexOf("Then, in a browser console")).match(/```js\n([\s\S]*?)```/)[1]
    .replace("127.0.0.1:1234", `127.0.0.1:${port}`);
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${port}/uidcast.js`); // any page of the server: same origin
  const lines = [];
  page.on("console", (m) => m.type() === "log" && lines.push(m.text()));
  await page.evaluate(snippet);
  await until(() => lines.length >= 3, 5000, "three console lines");
  assert.deepEqual(lines.slice(0, 3), ["login success, your uid is alice", "hi me", "hello"]);
  await page.close();
});

test("uidcast.js works as a plain <script>: classic scripts after it use Uidcast", async () => {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${port}/uidcast.js`); // same origin as the server
  await page.setContent(`<!doctype html><ul id="got"></ul>
    <script src="http://127.0.0.1:${port}/uidcast.js"></script>
    <script>
      const client = new Uidcast("ws://127.0.0.1:${port}/", { uid: "classic" });
      client.on("message", (text) => {
        const li = document.createElement("li");
        li.textContent = text;
        document.getElementById("got").append(li);
      });
      client.send("classic:from a plain script");
    </script>`);
  await until(async () => (await page.$$eval("#got li", (l) => l.map((x) => x.textContent)))
    .includes("from a plain script"), 5000, "the message to itself");
  assert.equal(await page.evaluate(() => typeof HEADER_MAX), "undefined");
  await page.close();
});

test("the demo page chats both ways, and a reload keeps the uid and shows what came meanwhile", async () => {
  const ctxA = await browser.newContext(), ctxB = await browser.newContext();
  const alice = await demo(ctxA, "alice");
  const bob = await demo(ctxB, "bob");
  await alice.fill("#to", "bob");
  await alice.fill("#text", "hi bob");
  await alice.click("#send button");
  await until(async () => (await logText(bob)).some((t) => t.endsWith("hi bob")), 5000, "bob to get it");
  await bob.fill("#to", "alice");
  await bob.fill("#text", "hi alice");
  await bob.click("#send button");
  await until(async () => (await logText(alice)).some((t) => t.endsWith("hi alice")), 5000, "alice to get it");
  // Bob's page goes away (as during a reload) while alice writes; then it loads again.
  await bob.evaluate(() => window.uidcastClient.close());
  await alice.fill("#text", "sent while you reloaded");
  await alice.fill("#to", "bob");
  await alice.click("#send button");
  await sleep(200);
  await bob.reload();
  await until(() => bob.textContent("#me").then((t) => t === "bob"), 5000, "bob logged in again by himself");
  await until(async () => (await logText(bob)).some((t) => t.endsWith("sent while you reloaded")), 5000,
    "the message sent during the reload");
  const got = (await logText(bob)).filter((t) => t.endsWith("sent while you reloaded"));
  assert.equal(got.length, 1);
  assert.match(got[0], /^#\d+sent while you reloaded$/);
  await alice.screenshot({ path: `${ROOT}build/browser-demo-alice.png`, fullPage: true });
  await bob.screenshot({ path: `${ROOT}build/browser-demo-bob.png`, fullPage: true });
  await ctxA.close();
  await ctxB.close();
});

test("a page gets all of 500 kept messages, in order, once each, across a server kill and restart", async () => {
  const redisPort = await freePort();
  const redis = spawn("redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "",
    "--appendonly", "no"], { stdio: "ignore" });
  // The page is on node 1, which is killed and restarted; the messages go in through node 2,
  // which stays up (a push answered by a node killed right after Redis took it would be sent
  // again by a retrying sender: a second message, not a duplicate delivery).
  const p2 = await freePort(), push2 = await freePort(), p3 = await freePort(), push3 = await freePort();
  const args = ["--redis", `redis://127.0.0.1:${redisPort}`];
  let node, other;
  try {
    await until(async () => new Promise((r) => {
      const c = net.connect(redisPort, "127.0.0.1", () => { c.end(); r(true); }).on("error", () => r(false));
    }), 5000, "redis-server");
    node = await startServer(p2, push2, args);
    other = await startServer(p3, push3, args);
    const ctx = await browser.newContext();
    const page = await demo(ctx, "carol", p2); // the demo page, from the node about to be killed
    await sleep(200);
    let sent = 0;
    const sender = (async () => {
      while (sent < 500) {
        if (await push(push3, "carol", `m${sent + 1}`, 60)) sent++;
        else throw new Error(`node 2 refused m${sent + 1}`);
        if (sent % 25 === 0) await sleep(10);
      }
    })();
    await until(() => sent >= 150, 20000, "150 sent");
    node.kill("SIGKILL");
    await new Promise((r) => node.once("exit", r));
    await sleep(300);
    node = await startServer(p2, push2, args);
    await sender;
    const kept = () => page.$$eval("#log li.kept", (lis) => lis.map((li) => [
      Number(li.querySelector(".seq").textContent.slice(1)), li.lastChild.textContent]));
    await until(async () => (await kept()).length >= 500, 30000, "500 messages in the page");
    await sleep(300);
    const final = await kept();
    assert.equal(final.length, 500, "none twice");
    for (let i = 0; i < 500; i++) {
      assert.equal(final[i][1], `m${i + 1}`);
      if (i) assert.equal(final[i][0], final[i - 1][0] + 1);
    }
    assert.ok((await logText(page)).some((t) => t.startsWith("reconnecting in")), "it showed reconnecting");
    await page.screenshot({ path: `${ROOT}build/browser-demo-restart.png`, fullPage: false });
    await ctx.close();
    await stop(node);
    await stop(other);
  } finally {
    for (const n of [node, other]) if (n && n.exitCode === null && !n.signalCode) n.kill("SIGKILL");
    redis.kill("SIGKILL");
  }
});

test("uidcast.js works in Node with Node's own WebSocket against the real server", async () => {
  assert.ok(globalThis.WebSocket, "run with node --experimental-websocket (Node 20) or Node 22+");
  const { Uidcast } = await import("../../www/uidcast.mjs");
  const opened = (c) => new Promise((r) => c.on("open", r));
  const inbox = (c) => {
    const got = [];
    c.on("message", (text, meta) => got.push([text, meta.seq]));
    return got;
  };
  const alice = new Uidcast(`ws://127.0.0.1:${port}/`, { uid: "node-alice" });
  let bob = new Uidcast(`ws://127.0.0.1:${port}/`, { uid: "node-bob" });
  const aliceGot = inbox(alice);
  let bobGot = inbox(bob);
  await Promise.all([opened(alice), opened(bob)]);
  await until(() => aliceGot.length && bobGot.length, 5000, "both logged in");
  alice.send("node-bob:first");
  await until(() => bobGot.some(([t]) => t === "first"), 5000, "bob to get it");
  const last = bob.lastSeq;
  assert.ok(last > 0, "a kept message carries its number");
  bob.close();
  alice.send("node-bob:while away");
  await sleep(200);
  bob = new Uidcast(`ws://127.0.0.1:${port}/`, { uid: "node-bob", since: last });
  bobGot = inbox(bob);
  await until(() => bobGot.some(([t]) => t === "while away"), 5000, "bob to resume");
  assert.deepEqual(bobGot.filter(([, seq]) => seq).map(([t, seq]) => [t, seq - last]), [["while away", 1]]);
  alice.close();
  bob.close();
});
