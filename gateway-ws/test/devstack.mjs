// Helpers the Node tests share: bounded waits, free ports, and a whole dev
// stack (`make up`'s devstack: every function plus gateway-ws) of its own,
// on its own databases (the directory and each participant's, created on
// the PostgreSQL at 127.0.0.1:5432 and dropped at the end) and Redis prefix.
import { spawn, execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Socket } from "phoenix";
import WebSocket from "ws";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const adminURL = process.env.TIDINGS_TEST_ADMIN_URL || "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable";

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// within fails a wait that would otherwise hang the test.
export function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// join resolves with the reply of a channel's (first) join: ok, error or
// timeout.
export function join(channel) {
  return new Promise((resolve) => {
    channel
      .join()
      .receive("ok", (resp) => resolve({ status: "ok", resp }))
      .receive("error", (resp) => resolve({ status: "error", resp }))
      .receive("timeout", () => resolve({ status: "timeout" }));
  });
}

// request sends a JSON request to path of gateway-ws at gw (its base URL)
// and resolves with the status and the decoded body.
export async function request(gw, method, path, { token, body } = {}) {
  const res = await fetch(`${gw}${path}`, {
    method,
    headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

// callFunction calls a function through gateway-ws's pass-through.
export function callFunction(gw, method, fn, { query = "", ...rest } = {}) {
  return request(gw, method, `/function/${fn}${query}`, rest);
}

// push resolves with the reply to a channel push: ok, error or timeout.
export function push(channel, event, payload) {
  return new Promise((resolve) => {
    channel
      .push(event, payload, 20000)
      .receive("ok", (resp) => resolve({ status: "ok", resp }))
      .receive("error", (resp) => resolve({ status: "error", resp }))
      .receive("timeout", () => resolve({ status: "timeout" }));
  });
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// startDevstack builds and starts the dev stack and resolves once
// gateway-ws answers: { gw, fnHost, suffix, stop, replicaEnv }. env is
// added to the stack's environment (gateway settings, say); replicaEnv is
// what another gateway-ws replica of the same stack runs with
// (startReplica).
export async function startDevstack(env = {}) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "tidings-node-test-"));
  const suffix = crypto.randomBytes(4).toString("hex");
  const dbName = `tidings_test_node_${suffix}`;
  const bin = path.join(tmp, "devstack");
  execFileSync("go", ["build", "-o", bin, "./infra/devstack"], { cwd: repoRoot, stdio: "inherit" });
  const [fnPort, gwPort] = [await freePort(), await freePort()];
  const secrets = path.join(tmp, "secrets");
  fs.mkdirSync(secrets);
  fs.writeFileSync(path.join(secrets, "tidings-jwt-secret"), crypto.randomBytes(32).toString("hex"));
  fs.writeFileSync(path.join(secrets, "tidings-internal-key"), crypto.randomBytes(16).toString("hex"));
  const child = spawn(bin, ["-db", dbName], {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      FUNCTIONS_ADDR: `127.0.0.1:${fnPort}`,
      GATEWAY_ADDR: `127.0.0.1:${gwPort}`,
      REDIS_PREFIX: `tidings-test:${suffix}:`,
      SECRETS_DIR: secrets,
      DEV_STATE_DIR: path.join(tmp, "dev"),
      DEV_SMTP_PORT: "0",
      LOG_LEVEL: "warn",
      ...env,
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
  const stop = async () => {
    if (child.exitCode === null) {
      child.kill("SIGINT");
      await within(20000, "devstack to stop", exited);
    }
    // The directory and the participants' two (devstack names them).
    for (const db of [dbName, `${dbName}_persist`, `${dbName}_counter`]) {
      execFileSync("psql", [adminURL, "-qc", `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`]);
    }
    fs.rmSync(tmp, { recursive: true, force: true });
  };
  const gw = `http://127.0.0.1:${gwPort}`;
  await awaitHealthy(gw, "devstack", exited, stop);
  const dbURL = (db) => adminURL.replace(/\/[^/?]*(\?|$)/, `/${db}$1`);
  const replicaEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    FAAS_URL: `http://127.0.0.1:${fnPort}`,
    REDIS_URL: process.env.TIDINGS_TEST_REDIS_URL || "redis://127.0.0.1:6379/0",
    REDIS_PREFIX: `tidings-test:${suffix}:`,
    DATABASE_URL: dbURL(dbName),
    PERSIST_DATABASE_URL: dbURL(`${dbName}_persist`),
    COUNTER_DATABASE_URL: dbURL(`${dbName}_counter`),
    SECRETS_DIR: secrets,
    LOG_LEVEL: "warn",
    ...env,
  };
  return { gw, fnHost: `http://127.0.0.1:${fnPort}`, suffix, stop, replicaEnv };
}

// awaitHealthy resolves once gw/healthz answers 200; when the process
// (exited) ends first or 30 s pass, it stops what was started and throws.
async function awaitHealthy(gw, what, exited, stop) {
  for (let i = 0; i < 300; i++) {
    const early = await Promise.race([exited, sleep(100).then(() => undefined)]);
    if (early !== undefined) {
      await stop();
      throw new Error(`${what} exited at start with ${JSON.stringify(early)}`);
    }
    try {
      if ((await fetch(`${gw}/healthz`)).ok) return;
    } catch {
      // not up yet
    }
  }
  await stop();
  throw new Error(`${what} did not come up`);
}

// startReplica builds gateway-ws and starts it as another replica of stack
// (same Redis prefix, databases, secrets and functions), resolving once it
// answers: { gw, child, exited, stop }. stop ends it with SIGTERM; a test
// may SIGKILL child itself.
export async function startReplica(stack) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "tidings-replica-"));
  const bin = path.join(tmp, "gateway-ws");
  execFileSync("go", ["build", "-o", bin, "./gateway-ws"], { cwd: repoRoot, stdio: "inherit" });
  const port = await freePort();
  const child = spawn(bin, [], {
    env: { ...stack.replicaEnv, GATEWAY_ADDR: `127.0.0.1:${port}` },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      await within(20000, "the replica to stop", exited);
    }
    fs.rmSync(tmp, { recursive: true, force: true });
  };
  const gw = `http://127.0.0.1:${port}`;
  await awaitHealthy(gw, "the replica", exited, stop);
  return { gw, child, exited, stop };
}

// stackClient is what the tests do against a running dev stack: request
// (any path of the gateway), api (a function through the gateway),
// register (a fresh user: {id, token}) and connect (an official phoenix
// socket as that user).
export function stackClient({ gw, suffix }) {
  const api = (method, fn, opts) => callFunction(gw, method, fn, opts);
  const register = async (name) => {
    const { status, body } = await api("POST", "register", {
      body: { email: `${name}-${suffix}@example.com`, password: "correct horse", name },
    });
    if (status !== 201) throw new Error(`register ${name}: ${status} ${JSON.stringify(body)}`);
    return { id: body.user.id, token: body.token, name };
  };
  const connect = (user) => {
    const socket = new Socket(`${gw.replace("http", "ws")}/socket`, {
      transport: WebSocket,
      params: { token: user.token },
      timeout: 10000,
    });
    socket.connect();
    return socket;
  };
  return { request: (method, path, opts) => request(gw, method, path, opts), api, register, connect };
}
