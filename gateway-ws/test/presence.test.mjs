// Phoenix Presence with the official phoenix client, unchanged, across two
// gateway-ws replicas: the dev stack (every function plus one gateway-ws)
// and a second gateway-ws process on the same Redis prefix and databases.
// Both users show in each one's Presence onSync; one that leaves drops
// out, and so does one whose replica is killed with SIGKILL, within
// PRESENCE_TIMEOUT.
//
// Needs Go, PostgreSQL and Redis on loopback, and psql.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Presence, Socket } from "phoenix";
import WebSocket from "ws";
import { join, sleep, stackClient, startDevstack, startReplica, within } from "./devstack.mjs";

// A dead replica's record expires 1 s after its last heartbeat and the
// survivors look for dead ones every second: its members leave within 2 s.
const presenceTimeoutMs = 2000;
const settings = { NODE_HEARTBEAT: "250ms", NODE_TTL: "1s", PRESENCE_TIMEOUT: `${presenceTimeoutMs}ms` };

let stack; // the dev stack, with replica A
let replicaB;

let api, register; // stackClient's

function connect(gw, user) {
  const socket = new Socket(`${gw.replace("http", "ws")}/socket`, {
    transport: WebSocket,
    params: { token: user.token },
    timeout: 10000,
    reconnectAfterMs: () => 500,
  });
  socket.connect();
  return socket;
}

// watch follows a channel's Presence: seen() is the latest onSync list,
// as "id:name" strings, sorted; until(want) waits for it to equal want.
function watch(channel) {
  const presence = new Presence(channel);
  let list = [];
  const waiters = [];
  presence.onSync(() => {
    list = presence.list((id, { metas }) => `${id}:${metas[0].name}`).sort();
    for (const w of waiters.splice(0)) w();
  });
  const seen = () => list;
  const until = async (want, ms, what) => {
    const target = want.map((u) => `${u.id}:${u.name}`).sort();
    await within(ms, `${what} (Presence lists ${JSON.stringify(list)}, want ${JSON.stringify(target)})`, (async () => {
      while (JSON.stringify(list) !== JSON.stringify(target)) await new Promise((r) => waiters.push(r));
    })());
  };
  return { seen, until };
}

before(async () => {
  stack = await startDevstack(settings);
  ({ api, register } = stackClient(stack));
  replicaB = await startReplica(stack);
});

after(async () => {
  if (replicaB) await replicaB.stop();
  if (stack) await stack.stop();
});

test("Presence onSync lists both users joined through two replicas, and drops one after it leaves and after its replica is SIGKILLed", { timeout: 120000 }, async () => {
  const owner = await register("owner");
  const sub = await register("sub");
  const created = await api("POST", "create-topic", { token: owner.token, body: { name: "who is here" } });
  assert.equal(created.status, 201);
  const topic = `topic:${created.body.topic.id}`;
  assert.equal((await api("POST", "subscribe", { token: sub.token, body: { topic_id: created.body.topic.id } })).status, 200);

  const onA = connect(stack.gw, owner);
  const onB = connect(replicaB.gw, sub);
  try {
    const chA = onA.channel(topic, {});
    const viewA = watch(chA);
    assert.equal((await within(10000, "join on replica A", join(chA))).status, "ok");
    await viewA.until([owner], 10000, "the owner's own presence");

    let chB = onB.channel(topic, {});
    let viewB = watch(chB);
    assert.equal((await within(10000, "join on replica B", join(chB))).status, "ok");
    await viewB.until([owner, sub], 10000, "both users, seen from replica B");
    await viewA.until([owner, sub], 10000, "both users, seen from replica A");

    // A leave drops the user at once (a diff, no sweep involved).
    await within(10000, "leave", new Promise((resolve) => chB.leave().receive("ok", resolve)));
    await viewA.until([owner], 10000, "the subscriber gone after its leave");

    chB = onB.channel(topic, {});
    viewB = watch(chB);
    assert.equal((await within(10000, "rejoin on replica B", join(chB))).status, "ok");
    await viewA.until([owner, sub], 10000, "the subscriber back after its rejoin");

    // Replica B dies without a word: its member leaves within the bound.
    const killedAt = Date.now();
    replicaB.child.kill("SIGKILL");
    await within(10000, "replica B to die", replicaB.exited);
    await viewA.until([owner], presenceTimeoutMs + 3000, "the subscriber gone after its replica was killed");
    const tookMs = Date.now() - killedAt;
    console.log(`presence: a SIGKILLed replica's member left after ${tookMs} ms (PRESENCE_TIMEOUT ${presenceTimeoutMs} ms)`);
    // The owner is still present, on a replica that lives.
    await sleep(presenceTimeoutMs);
    assert.deepEqual(viewA.seen(), [`${owner.id}:${owner.name}`]);
  } finally {
    onA.disconnect();
    onB.disconnect();
  }
});
