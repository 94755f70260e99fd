// The tidings web client: account, topics, publishing and live
// notifications. Every call goes to the same origin: the functions through
// gateway-ws's /function/<name> pass-through, live events over the Phoenix
// socket at /socket with the official phoenix client. Data from the server
// is only ever placed with textContent, never parsed as HTML.
import { LongPoll, Presence, Socket } from "/assets/phoenix.mjs";
import { initKeys } from "/assets/keys.js";

const TOKEN_KEY = "tidings.token";
const USER_KEY = "tidings.user";

const $ = (sel, root = document) => root.querySelector(sel);

// session is what localStorage keeps between visits: the token and the
// user it belongs to (as register or login returned it).
let session = null;
let socket = null;
let userChannel = null;
// lastSeen is the highest notification id shown: a rejoin asks the
// gateway to replay from it.
let lastSeen = 0;
const topicChannels = new Map(); // topic id -> joined channel, for publishing and presence
const topicPresence = new Map(); // topic id -> its channel's Presence: who is here now
const topicNames = new Map(); // topic id -> name, for labelling notifications
// The mail jobs of the last publish with email: job id -> status, shown
// under that publish's form as the `job` events of user:<id> come in.
const mailJobs = new Map();
let mailLine = null;

// ---- API ----

class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function call(method, name, { body, query = "" } = {}) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (session) headers.Authorization = `Bearer ${session.token}`;
  let res;
  try {
    res = await fetch(`/function/${name}${query}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new APIError(0, "network", "tidings is not reachable; check your connection");
  }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const e = data.error || {};
    if (res.status === 401 && session && name !== "login") signOut("Your session ended; please log in again.");
    throw new APIError(res.status, e.code || "error", e.message || `${name} answered ${res.status}`);
  }
  return data;
}

// ---- feedback ----

let flashTimer;
function flash(text, kind = "info") {
  const el = $("#flash");
  el.textContent = text;
  el.dataset.kind = kind;
  el.hidden = false;
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => (el.hidden = true), kind === "error" ? 8000 : 4000);
}

function setBadge(unread) {
  const n = Math.max(0, Number(unread) || 0);
  const badge = $("#badge");
  badge.textContent = n > 99 ? "99+" : String(n);
  badge.dataset.count = String(n);
  $("#unread-text").textContent = n === 0 ? "all read" : `${n} unread`;
  $("#ack-all").hidden = n === 0;
  document.title = n > 0 ? `(${n}) tidings` : "tidings";
}

function setLive(state) {
  const el = $("#live");
  el.dataset.state = state;
  el.textContent = state;
  // Which transport carries it: the WebSocket, or long-poll (forced, or
  // phoenix.js's fallback when WebSockets fail).
  el.dataset.transport = socket && socket.transport === LongPoll ? "longpoll" : "websocket";
  el.title = `live connection (${el.dataset.transport})`;
}

// ---- session ----

function tokenExpired(token) {
  try {
    const claims = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return typeof claims.exp === "number" && claims.exp * 1000 <= Date.now();
  } catch {
    return true;
  }
}

function loadSession() {
  const token = localStorage.getItem(TOKEN_KEY);
  let user = null;
  try {
    user = JSON.parse(localStorage.getItem(USER_KEY) || "null");
  } catch {
    user = null;
  }
  if (!token || !user || tokenExpired(token)) return null;
  return { token, user };
}

function signIn(token, user) {
  localStorage.setItem(TOKEN_KEY, token);
  localStorage.setItem(USER_KEY, JSON.stringify(user));
  session = { token, user };
  showSignedIn();
}

function signOut(message) {
  localStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(USER_KEY);
  session = null;
  if (socket) socket.disconnect();
  socket = null;
  userChannel = null;
  topicChannels.clear();
  topicPresence.clear();
  showSignedOut();
  if (message) flash(message, "error");
}

function showSignedOut() {
  $("#me").hidden = true;
  $("#signed-in").hidden = true;
  $("#signed-out").hidden = false;
  document.title = "tidings";
}

async function showSignedIn() {
  const { user } = session;
  $("#me").hidden = false;
  $("#signed-out").hidden = true;
  $("#signed-in").hidden = false;
  $("#me-name").textContent = user.name;
  const avatar = $("#avatar");
  avatar.src = user.avatar_url || `/function/gen-avatar?seed=${encodeURIComponent(String(user.id))}`;
  avatar.alt = `${user.name}'s avatar`;
  $("#topics").replaceChildren();
  $("#notifications").replaceChildren();
  keys.reset();
  setBadge(0);
  connect();
  // Topics first: notifications are labelled with their topic names.
  loading = Promise.all([loadCounter(), loadTopics().then(loadNotifications), keys.load()]).catch((err) => flash(err.message, "error"));
  await loading;
}

// ---- live connection ----

function connect() {
  socket = new Socket("/socket", {
    // Asked at every (re)connect, so a reconnect uses the current token;
    // sent as a subprotocol (a header over long-poll), it stays out of
    // URLs and logs.
    authToken: () => session && session.token,
    reconnectAfterMs: (tries) => [500, 1000, 2000, 5000][tries - 1] || 10000,
    // Behind a proxy that blocks WebSockets: long-poll after 2.5 s.
    longPollFallbackMs: 2500,
    // ?transport=longpoll forces long-poll from the start.
    ...(new URLSearchParams(location.search).get("transport") === "longpoll" ? { transport: LongPoll } : {}),
  });
  // "live" means joined to user:<id> (set below), not merely connected:
  // the gateway replies to a join only once the subscription is in place,
  // so from then on no notification can slip by.
  socket.onOpen(() => setLive("connecting"));
  socket.onError(() => {
    setLive("offline");
    if (session && tokenExpired(session.token)) signOut("Your session ended; please log in again.");
  });
  socket.onClose((event) => {
    setLive("offline");
    // 4001: the gateway closed the socket at the token's expiry; 4003: the
    // token was revoked (signed out here or elsewhere, password changed).
    if (event && event.code === 4001 && session) signOut("Your session ended; please log in again.");
    if (event && event.code === 4003 && session) signOut("You were signed out; please log in again.");
  });
  socket.connect();

  // The join's params are asked at every (re)join: after a drop the
  // gateway replays, in order, every notification after the last one
  // shown (since), then live ones.
  lastSeen = 0;
  userChannel = socket.channel(`user:${session.user.id}`, () => (lastSeen > 0 ? { since: lastSeen } : {}));
  userChannel.on("notification", (n) => {
    addNotification(n, { live: true });
    setBadge(n.unread);
    flash(`New: ${n.title}`);
  });
  // The counter applied an ack (this tab's, once it answered 202
  // pending, or another device's).
  userChannel.on("counter", ({ unread }) => setBadge(unread));
  userChannel.on("job", (job) => {
    if (job.function !== "send-mail" || !mailLine) return;
    mailJobs.set(job.id, job.status);
    renderMail();
  });
  userChannel.onError(() => setLive("offline"));
  userChannel
    .join()
    .receive("ok", (resp) => {
      setLive("live");
      loadCounter().catch(() => {});
      // More were missed than the gateway replays (REPLAY_MAX): show the
      // newest page instead.
      if (resp && resp.truncated) loadNotifications().catch(() => {});
    })
    .receive("error", ({ reason }) => flash(`Live updates unavailable: ${reason}`, "error"));
}

// topicChannel joins topic:<id> once: owners publish through it, and its
// Presence (phoenix.js's, fed by the gateway's presence_state and
// presence_diff) says who else has the topic open now. A channel the
// gateway closes (an unsubscribe) is forgotten.
function topicChannel(id) {
  let ch = topicChannels.get(id);
  if (!ch) {
    ch = socket.channel(`topic:${id}`, {});
    const presence = new Presence(ch);
    presence.onSync(() => {
      const li = document.querySelector(`#topics li.topic[data-topic-id="${id}"]`);
      if (li) showHere(li, presence);
    });
    ch.onClose(() => {
      topicChannels.delete(id);
      topicPresence.delete(id);
    });
    ch.join();
    topicChannels.set(id, ch);
    topicPresence.set(id, presence);
  }
  return ch;
}

// showHere lists a topic's present users by name, one entry per user
// however many tabs or devices they have it open in.
function showHere(li, presence) {
  const names = presence.list((id, { metas }) => metas[0].name || `user ${id}`).sort();
  $(".here-names", li).textContent = names.join(", ");
  li.dataset.here = String(names.length);
  $(".here", li).hidden = names.length === 0;
}

// ---- data ----

async function loadCounter() {
  const { unread } = await call("GET", "get-counter");
  setBadge(unread);
}

async function loadTopics() {
  const { topics } = await call("GET", "list-topics");
  const list = $("#topics");
  list.replaceChildren(...topics.map(renderTopic));
  $("#no-topics").hidden = topics.length > 0;
}

async function loadNotifications() {
  const { notifications } = await call("GET", "list-notifications", { query: "?limit=50" });
  const list = $("#notifications");
  list.replaceChildren();
  for (const n of notifications) addNotification(n, { live: false, append: true });
  $("#no-notifications").hidden = notifications.length > 0;
}

function renderTopic(t) {
  topicNames.set(t.id, t.name);
  const li = $("#topic-template").content.firstElementChild.cloneNode(true);
  li.dataset.topicId = String(t.id);
  li.dataset.name = t.name;
  const mine = t.owner_id === session.user.id;
  $(".topic-name", li).textContent = t.name;
  $(".topic-desc", li).textContent = t.description || "";
  $(".topic-desc", li).hidden = !t.description;
  $(".subscribers", li).textContent = `${t.subscribers} subscriber${t.subscribers === 1 ? "" : "s"}`;
  $(".owner-tag", li).hidden = !mine;
  $(".sub-tag", li).hidden = !t.subscribed;
  $(".subscribe", li).hidden = t.subscribed;
  $(".sub-email", li).closest("label").hidden = t.subscribed;
  $(".unsubscribe", li).hidden = !t.subscribed;
  $(".subscribe", li).addEventListener("click", () => subscribe(t, $(".sub-email", li).checked));
  $(".unsubscribe", li).addEventListener("click", () => unsubscribe(t));
  if (mine || t.subscribed) {
    topicChannel(t.id);
    showHere(li, topicPresence.get(t.id));
  }
  const form = $(".publish-form", li);
  form.hidden = !mine;
  if (mine) form.addEventListener("submit", (e) => publish(e, t, form));
  return li;
}

async function subscribe(t, email) {
  try {
    await call("POST", "subscribe", { body: { topic_id: t.id, email } });
    flash(`Subscribed to ${t.name}${email ? ", with email" : ""}.`);
    await loadTopics();
  } catch (err) {
    flash(err.message, "error");
  }
}

async function unsubscribe(t) {
  try {
    await call("POST", "unsubscribe", { body: { topic_id: t.id } });
    flash(`Unsubscribed from ${t.name}.`);
    await loadTopics();
  } catch (err) {
    flash(err.message, "error");
  }
}

// publish sends the `publish` push on topic:<id>; the gateway replies once
// the two-phase commit has committed (or tells why not).
function publish(e, t, form) {
  e.preventDefault();
  const data = new FormData(form);
  const payload = { title: data.get("title").trim(), body: data.get("body").trim(), email: data.get("email") === "on" };
  const result = $(".publish-result", form);
  const button = $("button[type=submit]", form);
  button.disabled = true;
  result.textContent = "publishing…";
  result.dataset.state = "pending";
  const done = (text, state) => {
    result.textContent = text;
    result.dataset.state = state;
    button.disabled = false;
  };
  topicChannel(t.id)
    .push("publish", payload, 20000)
    .receive("ok", ({ recipients }) => {
      done(`Published to ${recipients} subscriber${recipients === 1 ? "" : "s"}.`, "ok");
      form.reset();
      if (payload.email) {
        if (mailLine) mailLine.hidden = true;
        mailJobs.clear();
        mailLine = $(".mail-result", form);
        renderMail();
      }
    })
    .receive("error", ({ reason }) => done(`Not published: ${reason}`, "error"))
    .receive("timeout", () => done("No answer in time; it may still be published.", "error"));
}

// renderMail counts the last publish's mail jobs by outcome.
function renderMail() {
  const by = { sent: 0, failed: 0, queued: 0 };
  for (const status of mailJobs.values()) {
    if (status === "worked") by.sent++;
    else if (status === "failed") by.failed++;
    else by.queued++;
  }
  mailLine.hidden = false;
  mailLine.dataset.sent = String(by.sent);
  mailLine.dataset.failed = String(by.failed);
  mailLine.textContent =
    mailJobs.size === 0
      ? "Mail: none yet (only subscribers who asked for email get one)."
      : `Mail: ${by.sent} sent, ${by.queued} on the way, ${by.failed} failed.`;
}

function addNotification(n, { live, append = false }) {
  lastSeen = Math.max(lastSeen, Number(n.id));
  const list = $("#notifications");
  if (list.querySelector(`[data-id="${Number(n.id)}"]`)) return;
  const li = $("#notification-template").content.firstElementChild.cloneNode(true);
  li.dataset.id = String(n.id);
  $(".n-title", li).textContent = n.title;
  $(".n-body", li).textContent = n.body || "";
  $(".n-body", li).hidden = !n.body;
  const name = topicNames.get(n.topic_id);
  $(".n-topic", li).textContent = name ? `in ${name}` : `in topic ${n.topic_id}`;
  const when = new Date(n.created_at);
  $(".n-time", li).dateTime = when.toISOString();
  $(".n-time", li).textContent = when.toLocaleString();
  markRead(li, Boolean(n.acked_at));
  if (live) li.classList.add("fresh");
  $(".ack", li).addEventListener("click", () => ack(n.id, li));
  if (append) list.append(li);
  else list.prepend(li);
  $("#no-notifications").hidden = true;
}

function markRead(li, read) {
  li.classList.toggle("unread", !read);
  li.dataset.read = String(read);
  $(".ack", li).hidden = read;
  $(".read-tag", li).hidden = !read;
  if (read) li.classList.remove("fresh");
}

async function ack(id, li) {
  const button = $(".ack", li);
  button.disabled = true;
  try {
    const { unread } = await call("POST", "ack-notification", { body: { notification_id: id } });
    markRead(li, true);
    setBadge(unread);
  } catch (err) {
    flash(err.message, "error");
  } finally {
    button.disabled = false;
  }
}

// Mark all read: one ack-all, then the list as the server has it (a
// notification that arrived meanwhile stays unread) and the badge as
// ack-all answered it.
$("#ack-all").addEventListener("click", async (e) => {
  const button = e.currentTarget;
  button.disabled = true;
  try {
    const { unread } = await call("POST", "ack-all", { body: {} });
    await loadNotifications();
    setBadge(unread);
  } catch (err) {
    flash(err.message, "error");
  } finally {
    button.disabled = false;
  }
});

// ---- forms ----

function formJSON(form) {
  return Object.fromEntries(new FormData(form).entries());
}

$("#login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    const { token, user } = await call("POST", "login", { body: formJSON(e.target) });
    e.target.reset();
    signIn(token, user);
  } catch (err) {
    flash(err.status === 401 ? "Wrong email or password." : err.message, "error");
  }
});

$("#register-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    const { token, user } = await call("POST", "register", { body: formJSON(e.target) });
    e.target.reset();
    signIn(token, user);
    flash(`Welcome, ${user.name}.`);
  } catch (err) {
    flash(err.status === 409 ? "That email already has an account: log in instead." : err.message, "error");
  }
});

$("#topic-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const { name, description } = formJSON(e.target);
  try {
    const { topic } = await call("POST", "create-topic", { body: { name: name.trim(), description: description.trim() } });
    e.target.reset();
    flash(`Topic ${topic.name} created.`);
    await loadTopics();
  } catch (err) {
    flash(err.status === 409 ? "You already have a topic of that name." : err.message, "error");
  }
});

$("#refresh-topics").addEventListener("click", () => loadTopics().catch((err) => flash(err.message, "error")));
// Log out revokes the token on the server (every replica closes its
// sockets), then forgets it here; forgetting it happens even when the
// server cannot be reached.
$("#logout").addEventListener("click", async () => {
  // The first loads go out with this token: revoking it under them would
  // fail them with 401.
  await loading;
  try {
    await call("POST", "logout", { body: {} });
  } catch (err) {
    if (err.status !== 401) flash(`Signed out here, but the server did not confirm: ${err.message}`, "error");
  }
  signOut();
});

// Another tab logged in or out: follow it.
window.addEventListener("storage", (e) => {
  if (e.key !== TOKEN_KEY) return;
  const next = loadSession();
  if (!next && session) signOut();
  else if (next && (!session || next.token !== session.token)) {
    if (socket) socket.disconnect();
    session = next;
    showSignedIn();
  }
});

const keys = initKeys({ call, flash });
let loading = Promise.resolve(); // showSignedIn's first loads
session = loadSession();
if (session) showSignedIn();
else showSignedOut();
