// The web client and the dashboard in a real browser: Debian's chromium
// (/usr/bin/chromium, never a downloaded one) driven by playwright-core,
// against the whole dev stack (infra/devstack: every function plus
// gateway-ws) on its own database and Redis prefix.
//
// Two users in two browser contexts: Ada creates a topic, Bob subscribes,
// Ada publishes, Bob sees it arrive live with his unread badge at 1, acks
// it and the badge drops to 0; the topic's presence list shows both while
// both have it open, and Ada alone once Bob's tab closes. Then /dashboard
// shows live data. Screenshots
// go to test-artifacts/web/ at the repository root.
//
// Needs Go, PostgreSQL and Redis on loopback, psql and chromium.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { repoRoot, stackClient, startDevstack } from "../../test/devstack.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const artifacts = path.join(repoRoot, "test-artifacts", "web");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
// Every wait below is bounded by this; a run takes a few seconds.
const WAIT = 15000;

let stack; // the running dev stack
let suffix; // unique to this run
let gw; // gateway-ws base URL
let fnHost; // the functions host, which also lists the mails its SMTP sink got
let browser;

before(async () => {
  fs.mkdirSync(artifacts, { recursive: true });
  stack = await startDevstack();
  ({ gw, fnHost, suffix } = stack);

  // Playwright gives the browser a fresh profile directory of its own
  // (a temporary user-data-dir) and removes it on close.
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    timeout: 30000,
  });
});

after(async () => {
  if (browser) await browser.close();
  if (stack) await stack.stop();
});

// newPage is a page in a browser context of its own (its own localStorage,
// so its own session), failing the test on any script error or console
// error (a CSP violation shows up there).
async function newPage(name, problems) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.on("pageerror", (err) => problems.push(`${name}: page error: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`${name}: console error: ${msg.text()}`);
  });
  return page;
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });
}

const badge = (page) => page.locator("#badge");

async function waitBadge(page, want) {
  await page.waitForFunction((n) => document.querySelector("#badge")?.dataset.count === String(n), want, { timeout: WAIT });
}

async function register(page, name, email, at = "/") {
  await page.goto(`${gw}${at}`);
  const form = page.locator("#register-form");
  await form.locator("input[name=name]").fill(name);
  await form.locator("input[name=email]").fill(email);
  await form.locator("input[name=password]").fill("correct horse battery");
  await form.locator("button[type=submit]").click();
  await page.locator("#me-name", { hasText: name }).waitFor();
  await page.locator("#live[data-state=live]").waitFor();
}

test("two users: create, subscribe, publish, live notification with badge, ack, mark all read", { timeout: 90000 }, async () => {
  const problems = [];
  const ada = await newPage("ada", problems);
  const bob = await newPage("bob", problems);
  const adaEmail = `ada-${suffix}@example.com`;

  await ada.goto(`${gw}/`);
  await ada.locator("#register-form").waitFor();
  await shot(ada, "0-signed-out");

  // Ada registers, logs out, and logs in again with her password.
  await register(ada, "Ada", adaEmail);
  await ada.locator("#logout").click();
  await ada.locator("#login-form").waitFor();
  await ada.locator("#login-form input[name=email]").fill(adaEmail);
  await ada.locator("#login-form input[name=password]").fill("correct horse battery");
  await ada.locator("#login-form button[type=submit]").click();
  await ada.locator("#me-name", { hasText: "Ada" }).waitFor();
  await ada.locator("#live[data-state=live]").waitFor();

  // Her avatar is gen-avatar's PNG, loaded through the gateway.
  const avatar = await ada.locator("#avatar").evaluate(async (img) => {
    await img.decode();
    return { src: img.getAttribute("src"), width: img.naturalWidth };
  });
  assert.match(avatar.src, /^\/function\/gen-avatar\?seed=/);
  assert.ok(avatar.width > 0, "the avatar image decoded");

  const bobEmail = `bob-${suffix}@example.com`;
  await register(bob, "Bob", bobEmail);
  assert.equal(await badge(bob).textContent(), "0");

  // Ada creates a topic; it is listed as hers.
  await ada.locator("#topic-form input[name=name]").fill("Release notes");
  await ada.locator("#topic-form input[name=description]").fill("What shipped, when it shipped");
  await ada.locator("#topic-form button[type=submit]").click();
  const adaTopic = ada.locator("li.topic[data-name='Release notes']");
  await adaTopic.locator(".owner-tag").waitFor();

  // Bob sees it after a refresh and subscribes, by email too.
  await bob.locator("#refresh-topics").click();
  const bobTopic = bob.locator("li.topic[data-name='Release notes']");
  await bobTopic.locator(".sub-email").check();
  await bobTopic.locator("button.subscribe").click();
  await bobTopic.locator(".sub-tag").waitFor();
  await bobTopic.locator("text=1 subscriber").waitFor();
  await shot(bob, "1-bob-subscribed");

  // The session survives a reload (the token is in localStorage) and the
  // socket reconnects.
  await bob.reload();
  await bob.locator("#me-name", { hasText: "Bob" }).waitFor();
  await bob.locator("#live[data-state=live]").waitFor();

  // Ada publishes over the topic channel; the reply comes after commit.
  await ada.locator("#refresh-topics").click();
  await adaTopic.locator("text=1 subscriber").waitFor();
  // Both have the topic open: its presence list names them both (phoenix.js
  // Presence over the gateway's presence_state and presence_diff).
  await ada.locator("li.topic[data-name='Release notes'][data-here='2']").waitFor();
  assert.equal(await adaTopic.locator(".here-names").textContent(), "Ada, Bob");
  await bob.locator("li.topic[data-name='Release notes'][data-here='2']").waitFor();
  await adaTopic.locator("input[name=title]").fill("v2.0 is out");
  await adaTopic.locator("textarea[name=body]").fill("Faster, smaller, and with avatars.");
  await adaTopic.locator("input[name=email]").check();
  await adaTopic.locator("button[type=submit]").click();
  await adaTopic.locator(".publish-result[data-state=ok]", { hasText: "Published to 1 subscriber" }).waitFor();
  // Bob asked for email: one send-mail job, whose progress Ada (its owner)
  // follows through `job` events, and one mail at the dev stack's SMTP sink.
  await adaTopic.locator(".mail-result[data-sent='1']").waitFor();
  await shot(ada, "2-ada-published");
  const { mails } = await (await fetch(`${fnHost}/dev/mails`)).json();
  const toBob = mails.filter((m) => m.envelope_to.includes(bobEmail));
  assert.equal(toBob.length, 1, `mails to Bob: ${JSON.stringify(mails.map((m) => [m.envelope_to, m.subject]))}`);
  assert.match(toBob[0].subject, /v2\.0 is out/);

  // Bob gets it live: no reload, the badge counts it.
  const note = bob.locator("#notifications li.notification", { hasText: "v2.0 is out" });
  await note.waitFor();
  await waitBadge(bob, 1);
  assert.equal(await badge(bob).textContent(), "1");
  assert.equal(await note.getAttribute("data-read"), "false");
  assert.match(await note.locator(".n-body").textContent(), /Faster, smaller/);
  assert.match(await note.locator(".n-topic").textContent(), /Release notes/);
  await shot(bob, "3-bob-notified");

  // Bob acks it: the badge drops and the item is read.
  await note.locator("button.ack").click();
  await waitBadge(bob, 0);
  assert.equal(await note.getAttribute("data-read"), "true");
  await shot(bob, "4-bob-acked");

  // The server agrees.
  const token = await bob.evaluate(() => localStorage.getItem("tidings.token"));
  const counter = await (await fetch(`${gw}/function/get-counter`, { headers: { Authorization: `Bearer ${token}` } })).json();
  assert.deepEqual(counter, { unread: 0 });

  // Two more; "mark all read" reads both at once (ack-all).
  for (const title of ["v2.1 is out", "v2.2 is out"]) {
    await adaTopic.locator("input[name=title]").fill(title);
    await adaTopic.locator("input[name=email]").uncheck();
    await adaTopic.locator("button[type=submit]").click();
    await bob.locator("#notifications li.notification", { hasText: title }).waitFor();
  }
  await waitBadge(bob, 2);
  await bob.locator("#ack-all").click();
  await waitBadge(bob, 0);
  await bob.locator("#notifications li.notification[data-read=false]").first().waitFor({ state: "detached" });
  assert.equal(await bob.locator("#notifications li.notification[data-read=true]").count(), 3);
  await shot(bob, "5-bob-all-read");
  // The counter agrees once the relay applied it (at once when ack-all
  // answered 200; soon after a 202).
  let after;
  for (let i = 0; i < 100; i++) {
    after = await (await fetch(`${gw}/function/get-counter`, { headers: { Authorization: `Bearer ${token}` } })).json();
    if (after.unread === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(after, { unread: 0 });

  // Bob closes his tab: Ada's presence list drops him.
  await bob.context().close();
  await ada.locator("li.topic[data-name='Release notes'][data-here='1']").waitFor();
  assert.equal(await adaTopic.locator(".here-names").textContent(), "Ada");
  await shot(ada, "6-ada-alone-here");

  assert.deepEqual(problems, [], "no script or console errors");
});

test("after a network drop the web client rejoins with since and shows what arrived meanwhile, without a reload", { timeout: 60000 }, async () => {
  const problems = [];
  // Every socket to the gateway goes through this route, which can drop
  // them all and refuse new ones: the network drop.
  let down = false;
  const sockets = [];
  const carol = await newPage("carol", problems);
  await carol.routeWebSocket(/\/socket\/websocket/, (ws) => {
    if (down) {
      ws.close();
      return;
    }
    ws.connectToServer();
    sockets.push(ws);
  });
  await register(carol, "Carol", `carol-${suffix}@example.com`);
  const carolToken = await carol.evaluate(() => localStorage.getItem("tidings.token"));

  const api = async (fn, token, body) => {
    const res = await fetch(`${gw}/function/${fn}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });
    return res.json();
  };
  const owner = await api("register", null, { email: `dan-${suffix}@example.com`, password: "correct horse battery", name: "Dan" });
  const { topic } = await api("create-topic", owner.token, { name: "Outages" });
  await api("subscribe", carolToken, { topic_id: topic.id });
  const publish = async (title) => {
    const res = await fetch(`${gw}/api/topics/${topic.id}/notifications`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${owner.token}` },
      body: JSON.stringify({ title }),
    });
    assert.equal(res.status, 201, `publish ${title}`);
  };

  await publish("before the drop");
  await carol.locator("#notifications li.notification", { hasText: "before the drop" }).waitFor();
  await waitBadge(carol, 1);

  down = true;
  for (const ws of sockets.splice(0)) await ws.close();
  await carol.locator("#live[data-state=offline]").waitFor();
  await publish("while away 1");
  await publish("while away 2");
  down = false;

  // phoenix.js reconnects; the rejoin replays the two, no reload.
  await carol.locator("#live[data-state=live]").waitFor();
  for (const title of ["while away 1", "while away 2"]) {
    await carol.locator("#notifications li.notification", { hasText: title }).waitFor();
  }
  await waitBadge(carol, 3);
  const titles = await carol.locator("#notifications li.notification .n-title").allTextContents();
  assert.deepEqual(titles, ["while away 2", "while away 1", "before the drop"], "each once, newest first");
  await shot(carol, "5-carol-replayed");
  assert.deepEqual(problems, [], "no script or console errors");
});

// pollStatus calls fetch until it answers want, at most WAIT.
async function pollStatus(url, init, want) {
  const deadline = Date.now() + WAIT;
  let got;
  while (Date.now() < deadline) {
    got = (await fetch(url, init)).status;
    if (got === want) return got;
    await new Promise((r) => setTimeout(r, 100));
  }
  return got;
}

test("API keys: created and shown once, listed, working, revoked; log out revokes the token", { timeout: 60000 }, async () => {
  const problems = [];
  const carol = await newPage("carol", problems);
  await register(carol, "Carol", `carol-keys-${suffix}@example.com`);

  const form = carol.locator("#api-key-form");
  await form.locator("input[name=name]").fill("shop backend");
  await form.locator("input[name=scopes][value=manage]").check();
  await form.locator("button[type=submit]").click();
  await carol.locator("#new-api-key-box").waitFor({ state: "visible" });
  const key = await carol.locator("#new-api-key").textContent();
  assert.match(key, /^tdk_/);
  await carol.locator(".api-key .k-name", { hasText: "shop backend" }).waitFor();
  await shot(carol, "4-api-key-created");
  await carol.locator("#hide-api-key").click();
  assert.equal(await carol.locator("#new-api-key").textContent(), "", "the key is not shown again");

  const withKey = { headers: { Authorization: `Bearer ${key}` } };
  assert.equal((await fetch(`${gw}/function/list-topics`, withKey)).status, 200, "a manage key lists topics");
  assert.equal((await fetch(`${gw}/function/list-notifications`, withKey)).status, 403, "a manage key does not read");

  await carol.locator(".api-key .k-revoke").click();
  await carol.locator(".api-key .k-revoked").waitFor();
  assert.equal(await pollStatus(`${gw}/function/list-topics`, withKey, 401), 401, "the revoked key is refused");

  const token = await carol.evaluate(() => localStorage.getItem("tidings.token"));
  await carol.locator("#logout").click();
  await carol.locator("#login-form").waitFor();
  const withToken = { headers: { Authorization: `Bearer ${token}` } };
  assert.equal((await fetch(`${gw}/function/list-topics`, withToken)).status, 401, "the signed-out token is refused");
  assert.deepEqual(problems, []);
});

test("the dashboard shows live nodes, functions and transactions", { timeout: 30000 }, async () => {
  const problems = [];
  const page = await newPage("dashboard", problems);
  await page.goto(`${gw}/dashboard`);
  await page.locator("#updated[data-state=ok]").waitFor();
  await page.waitForFunction(() => Number(document.querySelector("#t-nodes").textContent) >= 1, null, { timeout: WAIT });
  // The health checks list every function; register and the 2PC
  // participants are among them.
  for (const fn of ["register", "notify-prepare", "counter-commit"]) {
    await page.locator("#functions tr", { hasText: fn }).waitFor();
  }
  // The publish of the first test is counted.
  await page.waitForFunction(() => Number(document.querySelector("#tx-committed").textContent) >= 1, null, { timeout: WAIT });
  assert.match(await page.locator("#nodes tr").first().textContent(), /\(this\)/);
  await shot(page, "5-dashboard");
  assert.deepEqual(problems, [], "no script or console errors");
});

// liveOverLongPoll signs a new user in on page (at `at`), checks that the
// live connection runs over long-poll, and has that user receive a
// notification published meanwhile, live, with the badge counting it.
async function liveOverLongPoll(page, name, at) {
  const { api, register: registerUser } = stackClient(stack);
  const owner = await registerUser(`${name}-owner`);
  const created = await api("POST", "create-topic", { token: owner.token, body: { name: `${name} news` } });
  assert.equal(created.status, 201);
  const topicID = created.body.topic.id;

  await register(page, name, `${name}-${suffix}@example.com`, at);
  await page.locator("#live[data-state=live][data-transport=longpoll]").waitFor();
  const token = await page.evaluate(() => localStorage.getItem("tidings.token"));
  assert.equal((await api("POST", "subscribe", { token, body: { topic_id: topicID } })).status, 200);

  const res = await fetch(`${gw}/api/topics/${topicID}/notifications`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${owner.token}` },
    body: JSON.stringify({ title: `${name}: delivered by long-poll` }),
  });
  assert.equal(res.status, 201, await res.text());
  await page.locator("#notifications li.notification", { hasText: `${name}: delivered by long-poll` }).waitFor();
  await waitBadge(page, 1);
}

test("the web client forced to LongPoll receives a live notification", { timeout: 60000 }, async () => {
  const problems = [];
  const page = await newPage("longpoll", problems);
  const sockets = [];
  page.on("websocket", (ws) => sockets.push(ws.url()));
  await liveOverLongPoll(page, "erin", "/?transport=longpoll");
  await shot(page, "6-longpoll");
  assert.deepEqual(sockets, [], "no WebSocket was opened");
  assert.deepEqual(problems, [], "no script or console errors");
});

test("with WebSockets blocked, phoenix.js falls back to long-poll and the notification arrives", { timeout: 60000 }, async () => {
  const problems = [];
  const page = await newPage("fallback", problems);
  // A proxy that refuses WebSockets: every attempt is closed at once,
  // before it opens, and never reaches the gateway.
  let refused = 0;
  await page.routeWebSocket(/\/socket\/websocket/, (ws) => {
    refused++;
    ws.close({ code: 1011, reason: "blocked" });
  });
  await liveOverLongPoll(page, "dave", "/");
  assert.ok(refused >= 1, "the page never tried the WebSocket");
  await shot(page, "7-fallback");
  // The browser reports the refused WebSocket on the console; nothing else
  // may go wrong.
  assert.deepEqual(problems.filter((p) => !/WebSocket/.test(p)), [], "no script or console errors");
});

test("the served phoenix client is the npm package's file", async () => {
  const served = await (await fetch(`${gw}/assets/phoenix.mjs`)).text();
  const original = fs.readFileSync(path.join(here, "node_modules/phoenix/priv/static/phoenix.mjs"), "utf8");
  const cut = served.indexOf("\n */\n");
  assert.ok(cut > 0, "the copy has its header");
  assert.equal(served.slice(cut + "\n */\n".length), original);
});
