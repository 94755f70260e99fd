// Publishing end to end with the official phoenix client: the whole dev
// stack (`make up`'s devstack: every function plus gateway-ws) on its own
// database and Redis prefix. Subscribers on user:<id> channels receive the
// committed notification with their new unread count; list-notifications
// shows it; ack lowers the count; a non-owner's publish is refused and
// changes nothing.
//
// Needs Go, PostgreSQL and Redis on loopback, and psql.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Socket } from "phoenix";
import WebSocket from "ws";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "tidings-publish-test-"));
const suffix = crypto.randomBytes(4).toString("hex");
const dbName = `tidings_test_node_${suffix}`;
const adminURL = process.env.TIDINGS_TEST_ADMIN_URL || "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable";
let stack; // the devstack child process
let gw; // gateway-ws base URL

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function api(method, fn, { token, body, query = "" } = {}) {
  const res = await fetch(`${gw}/function/${fn}${query}`, {
    method,
    headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

async function register(name) {
  const { status, body } = await api("POST", "register", {
    body: { email: `${name}-${suffix}@example.com`, password: "correct horse", name },
  });
  assert.equal(status, 201, `register ${name}: ${JSON.stringify(body)}`);
  return { id: body.user.id, token: body.token };
}

function connect(user) {
  const socket = new Socket(`${gw.replace("http", "ws")}/socket`, {
    transport: WebSocket,
    params: { token: user.token },
    timeout: 10000,
  });
  socket.connect();
  return socket;
}

function join(channel) {
  return new Promise((resolve) => {
    channel
      .join()
      .receive("ok", (resp) => resolve({ status: "ok", resp }))
      .receive("error", (resp) => resolve({ status: "error", resp }))
      .receive("timeout", () => resolve({ status: "timeout" }));
  });
}

function push(channel, event, payload) {
  return new Promise((resolve) => {
    channel
      .push(event, payload, 20000)
      .receive("ok", (resp) => resolve({ status: "ok", resp }))
      .receive("error", (resp) => resolve({ status: "error", resp }))
      .receive("timeout", () => resolve({ status: "timeout" }));
  });
}

before(async () => {
  const bin = path.join(tmp, "devstack");
  execFileSync("go", ["build", "-o", bin, "./infra/devstack"], { cwd: repoRoot, stdio: "inherit" });
  const [fnPort, gwPort] = [await freePort(), await freePort()];
  gw = `http://127.0.0.1:${gwPort}`;
  const secrets = path.join(tmp, "secrets");
  fs.mkdirSync(secrets);
  fs.writeFileSync(path.join(secrets, "tidings-jwt-secret"), crypto.randomBytes(32).toString("hex"));
  fs.writeFileSync(path.join(secrets, "tidings-internal-key"), crypto.randomBytes(16).toString("hex"));
  stack = spawn(bin, ["-db", dbName], {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH,
      FUNCTIONS_ADDR: `127.0.0.1:${fnPort}`,
      GATEWAY_ADDR: `127.0.0.1:${gwPort}`,
      REDIS_PREFIX: `tidings-test:${suffix}:`,
      SECRETS_DIR: secrets,
      LOG_LEVEL: "warn",
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const exited = new Promise((resolve) => stack.on("exit", (code) => resolve(code)));
  stack.exited = exited;
  for (let i = 0; i < 300; i++) {
    const early = await Promise.race([exited, sleep(100).then(() => undefined)]);
    if (early !== undefined) throw new Error(`devstack exited at start with ${early}`);
    try {
      if ((await fetch(`${gw}/healthz`)).ok) return;
    } catch {
      // not up yet
    }
  }
  throw new Error("the dev stack did not come up");
});

after(async () => {
  if (stack && stack.exitCode === null) {
    stack.kill("SIGINT");
    await within(20000, "devstack to stop", stack.exited);
  }
  execFileSync("psql", [adminURL, "-qc", `DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`]);
  fs.rmSync(tmp, { recursive: true, force: true });
});

test("subscribers get the committed notification with their unread count; list and ack follow", { timeout: 90000 }, async () => {
  const owner = await register("owner");
  const subs = [await register("sub1"), await register("sub2")];
  const created = await api("POST", "create-topic", { token: owner.token, body: { name: "releases" } });
  assert.equal(created.status, 201);
  const topicID = created.body.topic.id;
  for (const s of subs) {
    assert.equal((await api("POST", "subscribe", { token: s.token, body: { topic_id: topicID } })).status, 200);
  }

  const sockets = [];
  try {
    // Every subscriber listens on its own user channel.
    const received = [];
    for (const s of subs) {
      const socket = connect(s);
      sockets.push(socket);
      const ch = socket.channel(`user:${s.id}`, {});
      assert.equal((await within(10000, "user channel join", join(ch))).status, "ok");
      received.push(within(20000, `notification for user ${s.id}`, new Promise((resolve) => ch.on("notification", resolve))));
    }

    // A subscriber may join the topic but not publish on it.
    const intruder = subs[0];
    const intruderTopic = sockets[0].channel(`topic:${topicID}`, {});
    assert.equal((await within(10000, "topic join by a subscriber", join(intruderTopic))).status, "ok");
    const refused = await within(20000, "refused publish", push(intruderTopic, "publish", { title: "hijack" }));
    assert.deepEqual(refused, { status: "error", resp: { reason: "unauthorized" } });

    // The owner publishes; the reply comes after commit.
    const ownerSocket = connect(owner);
    sockets.push(ownerSocket);
    const topic = ownerSocket.channel(`topic:${topicID}`, {});
    assert.equal((await within(10000, "owner topic join", join(topic))).status, "ok");
    const reply = await within(20000, "publish reply", push(topic, "publish", { title: "v1.0", body: "out now" }));
    assert.equal(reply.status, "ok", JSON.stringify(reply));
    const id = reply.resp.notification_id;
    assert.ok(id > 0, "the reply carries the notification id");
    assert.equal(reply.resp.recipients, 2);

    for (const [i, got] of (await Promise.all(received)).entries()) {
      assert.equal(got.id, id);
      assert.equal(got.title, "v1.0");
      assert.equal(got.body, "out now");
      assert.equal(got.topic_id, topicID);
      assert.equal(got.sender_id, owner.id);
      assert.equal(got.unread, 1, `subscriber ${i + 1}'s unread count`);
    }

    // list-notifications shows it (and not the refused one); ack lowers
    // the count, once.
    const listed = await api("GET", "list-notifications", { token: intruder.token });
    assert.equal(listed.status, 200);
    assert.deepEqual(listed.body.notifications.map((n) => n.id), [id]);
    for (let i = 0; i < 2; i++) {
      const acked = await api("POST", "ack-notification", { token: intruder.token, body: { notification_id: id } });
      assert.deepEqual(acked, { status: 200, body: { unread: 0 } });
    }
    assert.deepEqual(await api("GET", "get-counter", { token: intruder.token }), { status: 200, body: { unread: 0 } });
    assert.deepEqual(await api("GET", "get-counter", { token: subs[1].token }), { status: 200, body: { unread: 1 } });
  } finally {
    for (const s of sockets) s.disconnect();
  }
});
