// The official phoenix client (with ws as its transport) against a real
// gateway-ws process: connect, joins, heartbeats past the idle timeout, a
// broadcast, leave, and reconnect + rejoin after the gateway restarts.
//
// A second test runs two gateway processes on one Redis and proves that a
// client on one receives what is published through the other.
//
// Needs Go, and Redis on loopback (TIDINGS_TEST_REDIS_URL overrides it).
// Run: node --test gateway-ws/test/
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Socket } from "phoenix";
import WebSocket from "ws";
import { freePort, join, sleep, within } from "./devstack.mjs";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const secret = crypto.randomBytes(32).toString("hex");
const internalKey = crypto.randomBytes(16).toString("hex");
const prefix = `tidings-test:${crypto.randomBytes(6).toString("hex")}:`;
const idleTimeoutMs = 2000;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gateway-ws-test-"));
const bin = path.join(tmp, "gateway-ws");
let port;
let gateway; // the running child process

// token mints what lib/auth issues: HS256, sub = user id, iss = tidings,
// a jti and the issue time in microseconds (iat_us); it expires in ttl
// seconds.
function token(userID, ttl = 3600) {
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: String(userID), iss: "tidings", iat: now, exp: now + ttl, jti: crypto.randomUUID(), iat_us: Date.now() * 1000 };
  const unsigned = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  const sig = crypto.createHmac("sha256", secret).update(unsigned).digest("base64url");
  return `${unsigned}.${sig}`;
}




async function startGateway(listenPort = port) {
  const child = spawn(bin, [], {
    env: {
      PATH: process.env.PATH,
      GATEWAY_ADDR: `127.0.0.1:${listenPort}`,
      REDIS_URL: process.env.TIDINGS_TEST_REDIS_URL || "redis://127.0.0.1:6379/0",
      REDIS_PREFIX: prefix,
      // Only user channels are joined here, which need no database.
      DATABASE_URL: process.env.TIDINGS_TEST_ADMIN_URL || "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
      SECRETS_DIR: tmp,
      JWT_SECRET: secret,
      INTERNAL_KEY: internalKey,
      WS_IDLE_TIMEOUT: `${idleTimeoutMs}ms`,
      SHUTDOWN_TIMEOUT: "5s",
      LOG_LEVEL: "warn",
    },
    stdio: ["ignore", "inherit", "inherit"],
  });
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  child.exited = exited;
  for (let i = 0; i < 100; i++) {
    const early = await Promise.race([exited, sleep(100).then(() => null)]);
    if (early) throw new Error(`gateway-ws exited at start: ${JSON.stringify(early)}`);
    try {
      const res = await fetch(`http://127.0.0.1:${listenPort}/healthz`);
      if (res.ok) return child;
    } catch {
      // not listening yet
    }
  }
  child.kill("SIGKILL");
  throw new Error("gateway-ws did not become healthy");
}

async function stopGateway(child) {
  child.kill("SIGTERM");
  const { code, signal } = await within(15000, "gateway-ws to exit", child.exited);
  return { code, signal };
}

async function broadcast(topic, event, payload, throughPort = port) {
  const res = await fetch(`http://127.0.0.1:${throughPort}/internal/broadcast`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Internal-Key": internalKey },
    body: JSON.stringify({ topic, event, payload }),
  });
  assert.equal(res.status, 202, `internal broadcast answered ${res.status}: ${await res.text()}`);
}

before(async () => {
  execFileSync("go", ["build", "-o", bin, "./gateway-ws"], { cwd: repoRoot, stdio: "inherit" });
  port = await freePort();
  gateway = await startGateway();
});

after(async () => {
  if (gateway && gateway.exitCode === null) await stopGateway(gateway);
  fs.rmSync(tmp, { recursive: true, force: true });
});

test("the official phoenix client joins, heartbeats, receives, leaves and survives a gateway restart", { timeout: 90000 }, async () => {
  const userID = 4242;
  let opens = 0;
  let closes = 0;
  const socket = new Socket(`ws://127.0.0.1:${port}/socket`, {
    transport: WebSocket,
    params: { token: token(userID) },
    heartbeatIntervalMs: idleTimeoutMs / 4,
    reconnectAfterMs: () => 100,
    rejoinAfterMs: () => 100,
    timeout: 5000,
  });
  socket.onOpen(() => opens++);
  socket.onClose(() => closes++);
  socket.connect();
  try {
    // Join our own channel; another user's is refused as Phoenix refuses.
    const mine = socket.channel(`user:${userID}`, {});
    assert.deepEqual(await within(10000, "join of own channel", join(mine)), { status: "ok", resp: {} });
    const theirs = socket.channel(`user:${userID + 1}`, {});
    assert.deepEqual(await within(10000, "join of another user's channel", join(theirs)), {
      status: "error",
      resp: { reason: "unauthorized" },
    });
    theirs.leave();

    // Heartbeats keep the socket open past twice the idle timeout.
    await sleep(idleTimeoutMs * 2.5);
    assert.equal(closes, 0, "the socket closed although the client sent heartbeats");
    assert.equal(opens, 1, "the socket reconnected although the client sent heartbeats");
    const rtt = await within(5000, "a ping over the live socket", new Promise((resolve) => socket.ping(resolve)));
    assert.ok(rtt >= 0);

    // A broadcast reaches the channel.
    const got = within(10000, "a notification", new Promise((resolve) => mine.on("notification", resolve)));
    await broadcast(`user:${userID}`, "notification", { id: 1, title: "hello", body: "world" });
    assert.deepEqual(await got, { id: 1, title: "hello", body: "world" });

    // Leave.
    const left = await within(10000, "leave", new Promise((resolve) => mine.leave().receive("ok", () => resolve("ok"))));
    assert.equal(left, "ok");
    assert.equal(mine.state, "closed");

    // Join again and count every (re)join the client makes by itself.
    const again = socket.channel(`user:${userID}`, {});
    let joins = 0;
    let rejoined;
    const rejoinedOnce = new Promise((resolve) => (rejoined = resolve));
    const received = [];
    again.on("notification", (p) => received.push(p));
    again.join().receive("ok", () => {
      joins++;
      if (joins === 2) rejoined();
    });
    for (let i = 0; i < 100 && joins < 1; i++) await sleep(50);
    assert.equal(joins, 1, "the second join of the channel did not succeed");

    // Restart the gateway on the same port: the client must reconnect and
    // rejoin with nothing but its own retry logic.
    const stopped = await stopGateway(gateway);
    assert.equal(stopped.code, 0, `gateway-ws did not exit cleanly: ${JSON.stringify(stopped)}`);
    gateway = await startGateway();
    await within(20000, "the client to rejoin after the restart", rejoinedOnce);
    assert.ok(opens >= 2, `the socket opened ${opens} times, want a reconnect`);

    await broadcast(`user:${userID}`, "notification", { id: 2, title: "after restart" });
    for (let i = 0; i < 200 && received.length === 0; i++) await sleep(50);
    assert.deepEqual(received, [{ id: 2, title: "after restart" }]);
  } finally {
    socket.disconnect();
  }
});

test("a phoenix client on one gateway process receives what is published through another", { timeout: 60000 }, async () => {
  const portB = await freePort();
  const gatewayB = await startGateway(portB);
  const userID = 5151;
  const socket = new Socket(`ws://127.0.0.1:${port}/socket`, {
    transport: WebSocket,
    params: { token: token(userID) },
    reconnectAfterMs: () => 100,
    timeout: 5000,
  });
  socket.connect();
  try {
    const channel = socket.channel(`user:${userID}`, {});
    const got = within(10000, "the notification published through B", new Promise((resolve) => channel.on("counter", resolve)));
    assert.deepEqual(await within(10000, "join on A", join(channel)), { status: "ok", resp: {} });
    await broadcast(`user:${userID}`, "counter", { unread: 7 }, portB);
    assert.deepEqual(await got, { unread: 7 });
  } finally {
    socket.disconnect();
    await stopGateway(gatewayB);
  }
});

test("at its token's expiry the socket closes with 4001, and phoenix.js reconnects with the token its params function gives", { timeout: 60000 }, async () => {
  const userID = 6161;
  let current = token(userID, 2); // the first connect's token expires within 2 s
  const asked = [];
  const socket = new Socket(`ws://127.0.0.1:${port}/socket`, {
    transport: WebSocket,
    params: () => {
      asked.push(current);
      return { token: current };
    },
    reconnectAfterMs: () => 100,
    rejoinAfterMs: () => 100,
    timeout: 5000,
  });
  let closed;
  const closedOnce = new Promise((resolve) => (closed = resolve));
  socket.onClose((event) => closed(event));
  socket.connect();
  try {
    const channel = socket.channel(`user:${userID}`, {});
    let joins = 0;
    let rejoined;
    const rejoinedOnce = new Promise((resolve) => (rejoined = resolve));
    channel.join().receive("ok", () => {
      joins++;
      if (joins === 2) rejoined();
    });
    for (let i = 0; i < 100 && joins < 1; i++) await sleep(50);
    assert.equal(joins, 1, "the first join did not succeed");
    const renewed = token(userID); // what the application would get by logging in again
    current = renewed;

    const event = await within(15000, "the close at the token's expiry", closedOnce);
    assert.equal(event.code, 4001);
    assert.equal(event.reason, "token expired");
    await within(20000, "the client to reconnect and rejoin", rejoinedOnce);
    assert.equal(asked.length, 2, `params was asked ${asked.length} times, want once per connect`);
    assert.equal(asked[1], renewed, "the reconnect did not use the renewed token");

    const got = within(10000, "a notification after the reconnect", new Promise((resolve) => channel.on("counter", resolve)));
    await broadcast(`user:${userID}`, "counter", { unread: 1 });
    assert.deepEqual(await got, { unread: 1 });
  } finally {
    socket.disconnect();
  }
});
