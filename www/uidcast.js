// uidcast.js -- the uidcast client: connects, logs in, reconnects with back-off and jitter,
// resumes after the last kept message it saw (the uidcast.v1 subprotocol, README "Kept
// messages"), drops duplicates and says when messages were missed. No dependencies, no build.
//
// One file for both ways in: a plain <script src="/uidcast.js"> defines Uidcast (as would
// import "/uidcast.js"); as an ES module, import { Uidcast } from "/uidcast.mjs", which imports
// this file. Its own names stay inside the function below.
//
//   const chat = new Uidcast("ws://127.0.0.1:1234/", { uid: "alice" });
//   chat.on("message", (text, { seq }) => console.log(seq, text));
//   chat.send("bob:hello");
//
// Options: uid (log in by first message, as scripts/default.lua expects) or uid + token (log in
// at the handshake, ?uid=&token=&since=, as scripts/auth_token.lua expects); since (the last
// number seen before, e.g. kept in localStorage; default 0: everything still kept); queue (how
// many sends wait while disconnected, default 100; 0: send() throws instead); minDelay,
// maxDelay (reconnect back-off in ms, default 500 and 30000); WebSocket (a constructor, for
// Node without a global one: the "ws" package).
//
// Events (on(name, fn)): "open" (connected and logged in as far as the client can tell),
// "message" (payload: a string, or an ArrayBuffer for binary; { seq, binary }: seq is the kept
// number or null), "gap" (first, last: kept messages that are lost to this client),
// "unavailable" (the server could not replay now; live messages go on), "close" (code, reason),
// "reconnecting" (delay in ms, attempt).

(() => {
  const HEADER_MAX = 24; // "<16 digits> " fits; a longer header is no header

  class Uidcast {
    constructor(url, opts = {}) {
      this.url = url;
      this.uid = opts.uid;
      this.token = opts.token;
      this.lastSeq = opts.since ?? 0;
      this.queueLimit = opts.queue ?? 100;
      this.minDelay = opts.minDelay ?? 500;
      this.maxDelay = opts.maxDelay ?? 30000;
      this.WebSocket = opts.WebSocket ?? globalThis.WebSocket;
      this.random = opts.random ?? Math.random;
      this.handlers = {};
      this.queue = [];
      this.attempt = 0;
      this.stopped = false;
      this.ws = null;
      this.open = false;
      this.connect();
    }

    on(event, fn) {
      (this.handlers[event] ||= []).push(fn);
      return this;
    }

    emit(event, ...args) {
      for (const fn of this.handlers[event] || []) fn(...args);
    }

    // The reconnect delay after `attempt` failures: exponential, capped, with jitter (between
    // half and all of it), so that clients cut off together do not come back together.
    delay(attempt) {
      const full = Math.min(this.maxDelay, this.minDelay * 2 ** Math.min(attempt, 30));
      return Math.round(full / 2 + (full / 2) * this.random());
    }

    connect() {
      let url = this.url;
      if (this.token !== undefined) {
        const q = new URLSearchParams({ uid: this.uid, token: this.token, since: String(this.lastSeq) });
        url += (url.includes("?") ? "&" : "?") + q;
      }
      const ws = new this.WebSocket(url, "uidcast.v1");
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      ws.onopen = () => {
        this.attempt = 0;
        if (this.token === undefined && this.uid !== undefined) ws.send(`${this.uid}\n${this.lastSeq}`);
        this.open = true;
        this.emit("open");
        const waiting = this.queue;
        this.queue = [];
        for (const data of waiting) ws.send(data);
      };
      ws.onmessage = (e) => this.receive(e.data);
      ws.onerror = () => {}; // onclose follows, and says more
      ws.onclose = (e) => {
        if (this.ws !== ws) return;
        this.ws = null;
        this.open = false;
        this.emit("close", e.code, e.reason);
        if (!this.stopped) {
          const delay = this.delay(this.attempt++);
          this.emit("reconnecting", delay, this.attempt);
          this.timer = setTimeout(() => this.connect(), delay);
        }
      };
    }

    receive(data) {
      const binary = typeof data !== "string";
      let head, body;
      if (!binary) {
        if (data === "!unavailable") return this.emit("unavailable");
        const sp = data.indexOf(" ");
        head = sp < 0 ? data : data.slice(0, sp);
        body = sp < 0 ? "" : data.slice(sp + 1);
      } else {
        const bytes = new Uint8Array(data);
        const sp = bytes.subarray(0, HEADER_MAX).indexOf(32);
        if (sp < 0) return; // not uidcast.v1: ignore rather than guess
        head = String.fromCharCode(...bytes.subarray(0, sp));
        body = data.slice(sp + 1);
      }
      if (head === "!gap") {
        const [first, last] = body.split(" ").map(Number);
        if (last > this.lastSeq) this.lastSeq = last;
        return this.emit("gap", first, last);
      }
      if (head === "-") return this.emit("message", body, { seq: null, binary });
      const seq = Number(head);
      if (!Number.isSafeInteger(seq) || seq <= 0) return;
      if (seq <= this.lastSeq) return; // had it already
      this.lastSeq = seq;
      this.emit("message", body, { seq, binary });
    }

    // Sends now, or queues while disconnected (returns false); throws when it cannot queue.
    send(data) {
      if (this.open && this.ws) {
        this.ws.send(data);
        return true;
      }
      if (this.queue.length >= this.queueLimit)
        throw new Error("uidcast: not connected, and the send queue is full");
      this.queue.push(data);
      return false;
    }

    close() {
      this.stopped = true;
      clearTimeout(this.timer);
      if (this.ws) this.ws.close(1000);
    }
  }

  globalThis.Uidcast = Uidcast;
})();
