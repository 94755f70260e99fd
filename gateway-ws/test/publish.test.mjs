// Publishing end to end with the official phoenix client: the whole dev
// stack (`make up`'s devstack: every function plus gateway-ws) on its own
// database and Redis prefix. Subscribers on user:<id> channels receive the
// committed notification with their new unread count; list-notifications
// shows it; ack lowers the count; a non-owner's publish is refused and
// changes nothing. Unsubscribing closes an open topic channel.
//
// Needs Go, PostgreSQL and Redis on loopback, and psql.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join, push, stackClient, startDevstack, within } from "./devstack.mjs";

let stack; // the running dev stack
let api, register, connect; // stackClient's

before(async () => {
  stack = await startDevstack();
  ({ api, register, connect } = stackClient(stack));
});

after(async () => {
  if (stack) await stack.stop();
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

test("unsubscribing closes the open topic channel (phx_close) and phoenix.js does not rejoin it", { timeout: 60000 }, async () => {
  const owner = await register("owner-u");
  const sub = await register("leaver");
  const created = await api("POST", "create-topic", { token: owner.token, body: { name: "ephemeral" } });
  assert.equal(created.status, 201);
  const topicID = created.body.topic.id;
  assert.equal((await api("POST", "subscribe", { token: sub.token, body: { topic_id: topicID } })).status, 200);

  const socket = connect(sub);
  try {
    const mine = socket.channel(`user:${sub.id}`, {});
    assert.equal((await within(10000, "user channel join", join(mine))).status, "ok");
    const topic = socket.channel(`topic:${topicID}`, {});
    assert.equal((await within(10000, "topic join", join(topic))).status, "ok");
    const closed = within(10000, "phx_close of the topic", new Promise((resolve) => topic.onClose(resolve)));
    let errored = false;
    topic.onError(() => (errored = true));

    assert.equal((await api("POST", "unsubscribe", { token: sub.token, body: { topic_id: topicID } })).status, 200);
    await closed;
    assert.equal(topic.state, "closed");
    assert.equal(errored, false, "the channel errored (and would rejoin) instead of closing");
    // The socket and the user's own channel are untouched.
    assert.ok(socket.isConnected());
    assert.equal(mine.state, "joined");
    // A new join is refused.
    const again = socket.channel(`topic:${topicID}`, {});
    assert.deepEqual(await within(10000, "join after unsubscribing", join(again)), {
      status: "error",
      resp: { reason: "unauthorized" },
    });
  } finally {
    socket.disconnect();
  }
});
