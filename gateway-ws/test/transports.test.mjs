// The transports and serializers Phoenix serves, with the official phoenix
// client against the whole dev stack (real publishes through the two-phase
// commit): the LongPoll transport, the V1 JSON serializer (vsn 1.0.0 with a
// V1 encode/decode), and a V2 binary (ArrayBuffer) push.
//
// Needs Go, PostgreSQL and Redis on loopback, and psql.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { LongPoll, Socket } from "phoenix";
import WebSocket from "ws";
import { join, push, stackClient, startDevstack, within } from "./devstack.mjs";

let stack; // the running dev stack
let api, register;

before(async () => {
  stack = await startDevstack();
  ({ api, register } = stackClient(stack));
});

after(async () => {
  if (stack) await stack.stop();
});

// publisherAndSubscriber makes an owner with a topic and a subscriber of it.
async function publisherAndSubscriber(name) {
  const owner = await register(`${name}-owner`);
  const sub = await register(`${name}-sub`);
  const created = await api("POST", "create-topic", { token: owner.token, body: { name } });
  assert.equal(created.status, 201);
  const topicID = created.body.topic.id;
  assert.equal((await api("POST", "subscribe", { token: sub.token, body: { topic_id: topicID } })).status, 200);
  return { owner, sub, topicID };
}

// publish publishes through the HTTP twin of the publish push.
async function publish(owner, topicID, title) {
  const res = await fetch(`${stack.gw}/api/topics/${topicID}/notifications`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${owner.token}` },
    body: JSON.stringify({ title }),
  });
  const body = await res.json();
  assert.equal(res.status, 201, JSON.stringify(body));
  return body.notification_id;
}

const wsURL = () => `${stack.gw.replace("http", "ws")}/socket`;

test("the LongPoll transport joins user:<id> and receives a published notification", { timeout: 60000 }, async () => {
  const { owner, sub, topicID } = await publisherAndSubscriber("longpoll");
  const socket = new Socket(wsURL(), { transport: LongPoll, params: { token: sub.token }, timeout: 10000 });
  socket.connect();
  try {
    const ch = socket.channel(`user:${sub.id}`, {});
    const got = within(20000, "the notification over long-poll", new Promise((resolve) => ch.on("notification", resolve)));
    assert.deepEqual(await within(10000, "join over long-poll", join(ch)), { status: "ok", resp: {} });
    assert.equal(socket.transport, LongPoll);
    const id = await publish(owner, topicID, "by long-poll");
    const n = await got;
    assert.equal(n.id, id);
    assert.equal(n.title, "by long-poll");
    assert.equal(n.unread, 1);
    // Pushes go through POST batches: another user's channel is refused.
    const theirs = socket.channel(`user:${owner.id}`, {});
    assert.deepEqual(await within(10000, "refused join", join(theirs)), { status: "error", resp: { reason: "unauthorized" } });
    theirs.leave();
  } finally {
    socket.disconnect();
  }
});

test("a client with vsn 1.0.0 and a V1 encode/decode joins and receives", { timeout: 60000 }, async () => {
  const { owner, sub, topicID } = await publisherAndSubscriber("v1");
  const frames = [];
  const socket = new Socket(wsURL(), {
    transport: WebSocket,
    params: { token: sub.token },
    vsn: "1.0.0",
    // Phoenix 1.2's client: JSON objects both ways.
    encode: (msg, callback) => callback(JSON.stringify(msg)),
    decode: (raw, callback) => {
      frames.push(JSON.parse(raw));
      callback(JSON.parse(raw));
    },
    timeout: 10000,
  });
  socket.connect();
  try {
    const ch = socket.channel(`user:${sub.id}`, {});
    const got = within(20000, "the notification over V1", new Promise((resolve) => ch.on("notification", resolve)));
    assert.deepEqual(await within(10000, "V1 join", join(ch)), { status: "ok", resp: {} });
    const id = await publish(owner, topicID, "by V1");
    const n = await got;
    assert.equal(n.id, id);
    assert.equal(n.title, "by V1");
    // The server spoke V1: objects, without join_ref.
    assert.ok(frames.length >= 2);
    for (const f of frames) {
      assert.deepEqual(Object.keys(f).sort(), ["event", "payload", "ref", "topic"], JSON.stringify(f));
    }
  } finally {
    socket.disconnect();
  }
});

test("an ArrayBuffer push gets an error reply and the socket stays open", { timeout: 60000 }, async () => {
  const { owner, sub, topicID } = await publisherAndSubscriber("binary");
  let closes = 0;
  const socket = new Socket(wsURL(), { transport: WebSocket, params: { token: owner.token }, timeout: 10000 });
  socket.onClose(() => closes++);
  socket.connect();
  const subSocket = new Socket(wsURL(), { transport: WebSocket, params: { token: sub.token }, timeout: 10000 });
  subSocket.connect();
  try {
    const topic = socket.channel(`topic:${topicID}`, {});
    assert.equal((await within(10000, "topic join", join(topic))).status, "ok");
    const bytes = new Uint8Array([1, 2, 3, 250]).buffer;
    const refused = await within(10000, "reply to the binary push", push(topic, "publish", bytes));
    assert.deepEqual(refused, { status: "error", resp: { reason: "binary payload not supported" } });

    // The socket and the channel are still there: a JSON publish on it
    // commits and reaches the subscriber.
    const mine = subSocket.channel(`user:${sub.id}`, {});
    const got = within(20000, "the notification after the binary push", new Promise((resolve) => mine.on("notification", resolve)));
    assert.equal((await within(10000, "subscriber join", join(mine))).status, "ok");
    const ok = await within(20000, "JSON publish", push(topic, "publish", { title: "after binary" }));
    assert.equal(ok.status, "ok", JSON.stringify(ok));
    assert.equal((await got).id, ok.resp.notification_id);
    assert.equal(closes, 0, "the socket closed after the binary push");
    assert.equal(topic.state, "joined");
  } finally {
    socket.disconnect();
    subSocket.disconnect();
  }
});
