// Replay on rejoin with the official phoenix client, against the whole dev
// stack: a subscriber that saw n1 disconnects, n2..n50 are published (the
// last ten while it rejoins), it rejoins user:<id> with {since: n1} and
// receives n2..n50 in order, each once, with the unread count each had
// when it committed, then a live n51.
//
// Needs Go, PostgreSQL and Redis on loopback, and psql.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join, sleep, stackClient, startDevstack, within } from "./devstack.mjs";

let stack;
let request, register, connect; // stackClient's

before(async () => {
  stack = await startDevstack();
  ({ request, register, connect } = stackClient(stack));
});

after(async () => {
  if (stack) await stack.stop();
});

test("a rejoin with since replays n2..n50 in order, once each, with their unread counts, then a live n51", { timeout: 120000 }, async () => {
  const owner = await register("replay-owner");
  const sub = await register("replay-sub");
  const created = await request("POST", "/function/create-topic", { token: owner.token, body: { name: "replayed" } });
  assert.equal(created.status, 201);
  const topicID = created.body.topic.id;
  assert.equal((await request("POST", "/function/subscribe", { token: sub.token, body: { topic_id: topicID } })).status, 200);
  const publish = async (title) => {
    const res = await request("POST", `/api/topics/${topicID}/notifications`, { token: owner.token, body: { title } });
    assert.equal(res.status, 201, `publish ${title}: ${JSON.stringify(res.body)}`);
    return res.body.notification_id;
  };

  // n1, live.
  const first = connect(sub);
  const ch1 = first.channel(`user:${sub.id}`, {});
  assert.equal((await within(10000, "first join", join(ch1))).status, "ok");
  const live1 = within(20000, "live n1", new Promise((resolve) => ch1.on("notification", resolve)));
  const n1 = await publish("n1");
  assert.equal((await live1).id, n1);
  first.disconnect();

  // n2..n40 while it is away; n41..n50 while it rejoins.
  const ids = [];
  for (let i = 2; i <= 40; i++) ids.push(await publish(`n${i}`));
  const during = (async () => {
    for (let i = 41; i <= 50; i++) {
      ids.push(await publish(`n${i}`));
      await sleep(20);
    }
  })();

  const second = connect(sub);
  try {
    const ch2 = second.channel(`user:${sub.id}`, { since: n1 });
    const got = [];
    ch2.on("notification", (n) => got.push(n));
    const reply = await within(10000, "rejoin with since", join(ch2));
    assert.equal(reply.status, "ok", JSON.stringify(reply));
    assert.ok(reply.resp.replayed >= 39 && reply.resp.truncated === undefined, `reply ${JSON.stringify(reply.resp)}`);
    await during;
    for (let i = 0; i < 200 && got.length < 49; i++) await sleep(100);
    assert.deepEqual(got.map((n) => n.id), ids, "n2..n50 in order, each once");
    for (const [k, n] of got.entries()) {
      assert.equal(n.title, `n${k + 2}`);
      assert.equal(n.unread, k + 2, `n${k + 2} carries the unread count it had when it committed`);
    }

    const n51 = await publish("n51");
    for (let i = 0; i < 200 && got.length < 50; i++) await sleep(100);
    assert.deepEqual(got.slice(49).map((n) => [n.id, n.unread]), [[n51, 51]], "then the live n51, once");
  } finally {
    second.disconnect();
  }
});

test("a rejoin with an invalid since is refused and the channel is not joined", { timeout: 60000 }, async () => {
  const user = await register("replay-bad");
  const socket = connect(user);
  try {
    const ch = socket.channel(`user:${user.id}`, { since: "yesterday" });
    const reply = await within(10000, "join with a bad since", join(ch));
    assert.deepEqual(reply, { status: "error", resp: { reason: "invalid since" } });
  } finally {
    socket.disconnect();
  }
});
