// Node tests of www/uidcast.js (node --test www/test/): the client against a scripted fake
// WebSocket, so each behaviour is checked exactly, without a server or timing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Uidcast } from "../uidcast.mjs";

// A fake WebSocket: records what the client did; the test plays the server.
class FakeSocket {
  static made = [];
  constructor(url, protocol) {
    this.url = url;
    this.protocol = protocol;
    this.sent = [];
    this.readyState = 0;
    FakeSocket.made.push(this);
  }
  send(data) { this.sent.push(data); }
  close(code) { this.closedWith = code; this.serverClose(code ?? 1005); }
  // the server's side
  accept() { this.readyState = 1; this.onopen?.(); }
  push(data) { this.onmessage?.({ data }); }
  serverClose(code = 1006) { this.readyState = 3; this.onclose?.({ code, reason: "" }); }
}

function client(opts = {}) {
  FakeSocket.made = [];
  const events = [];
  const c = new Uidcast("ws://h/", { WebSocket: FakeSocket, random: () => 0.5, minDelay: 1, maxDelay: 8, ...opts });
  for (const e of ["open", "message", "gap", "close", "reconnecting", "unavailable"])
    c.on(e, (...args) => events.push([e, ...args]));
  return { c, events, sock: () => FakeSocket.made.at(-1) };
}

test("asks for uidcast.v1 and logs in by first message with the last number seen", () => {
  const { sock } = client({ uid: "alice", since: 41 });
  assert.equal(sock().protocol, "uidcast.v1");
  sock().accept();
  assert.deepEqual(sock().sent, ["alice\n41"]);
});

test("logs in by token at the handshake, sending no login message", () => {
  const { sock } = client({ uid: "al ice", token: "t0k", since: 7 });
  assert.equal(sock().url, "ws://h/?uid=al+ice&token=t0k&since=7");
  sock().accept();
  assert.deepEqual(sock().sent, []);
});

test("keeps its back-off between half and all of min * 2^attempt, capped at maxDelay", () => {
  for (const random of [0, 0.999]) {
    const { c } = client({ uid: "u", minDelay: 100, maxDelay: 1000, random: () => random });
    for (let attempt = 0; attempt < 40; attempt++) {
      const full = Math.min(1000, 100 * 2 ** attempt);
      const d = c.delay(attempt);
      assert.ok(d >= full / 2 && d <= full, `attempt ${attempt}: ${d}`);
    }
    c.close();
  }
});

test("reconnects after a drop and resumes from the last number it got", async () => {
  const { c, events, sock } = client({ uid: "bob" });
  sock().accept();
  sock().push("- login success, your uid is bob");
  sock().push("17 hello");
  sock().serverClose(1006);
  assert.deepEqual(events.at(-1), ["reconnecting", 1, 1]);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(FakeSocket.made.length, 2);
  sock().accept();
  assert.deepEqual(sock().sent, ["bob\n17"]);
  c.close();
});

test("drops a kept message it already had", () => {
  const { c, events, sock } = client({ uid: "u" });
  sock().accept();
  sock().push("5 one");
  sock().push("5 one");
  sock().push("4 older");
  sock().push("6 two");
  const got = events.filter((e) => e[0] === "message").map((e) => [e[1], e[2].seq]);
  assert.deepEqual(got, [["one", 5], ["two", 6]]);
  assert.equal(c.lastSeq, 6);
  c.close();
});

test("reports a gap and moves past it", () => {
  const { c, events, sock } = client({ uid: "u", since: 4 });
  sock().accept();
  sock().push("!gap 5 7");
  sock().push("8 next");
  assert.deepEqual(events.filter((e) => e[0] === "gap"), [["gap", 5, 7]]);
  assert.equal(c.lastSeq, 8);
  c.close();
});

test("hands binary payloads over without their header, as ArrayBuffers", () => {
  const { c, events, sock } = client({ uid: "u" });
  sock().accept();
  const frame = new Uint8Array([...new TextEncoder().encode("9 "), 0, 255]).buffer;
  sock().push(frame);
  const [, body, meta] = events.find((e) => e[0] === "message");
  assert.deepEqual([...new Uint8Array(body)], [0, 255]);
  assert.deepEqual(meta, { seq: 9, binary: true });
  c.close();
});

test("queues sends while disconnected, up to its bound, and sends them in order on open", () => {
  const { c, sock } = client({ uid: "u", queue: 2 });
  assert.equal(c.send("a"), false);
  assert.equal(c.send("b"), false);
  assert.throws(() => c.send("c"), /send queue is full/);
  sock().accept();
  assert.deepEqual(sock().sent, ["u\n0", "a", "b"]);
  assert.equal(c.send("d"), true);
  assert.deepEqual(sock().sent.at(-1), "d");
  c.close();
});

test("rejects sends while disconnected when queue is 0", () => {
  const { c } = client({ uid: "u", queue: 0 });
  assert.throws(() => c.send("x"), /not connected/);
  c.close();
});

test("does not reconnect after close()", async () => {
  const { c, events, sock } = client({ uid: "u" });
  sock().accept();
  c.close();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(FakeSocket.made.length, 1);
  assert.equal(events.filter((e) => e[0] === "reconnecting").length, 0);
});

test("uidcast.js defines the global Uidcast that uidcast.mjs exports, and nothing else", async () => {
  await import("../uidcast.js");
  assert.equal(globalThis.Uidcast, Uidcast);
  assert.equal(globalThis.HEADER_MAX, undefined);
});
