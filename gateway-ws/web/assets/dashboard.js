// The live dashboard: polls GET /api/status every 2 s (one request at a
// time) and redraws. The replica that answers reports the registry's nodes,
// its own view of the functions' health and breakers, the coordinator's
// transaction counters and the job queue.
const POLL_MS = 2000;
const $ = (sel) => document.querySelector(sel);

function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (className) e.className = className;
  return e;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.append(c instanceof Node ? c : el("td", c));
  return tr;
}

function num(v) {
  return el("td", v, "num");
}

function state(text, kind) {
  return el("td", text, `state state-${kind}`);
}

// duration renders milliseconds as "3s", "4m 10s", "2h 5m", "3d 1h".
function duration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

function renderNodes(st, now) {
  const nodes = st.nodes || [];
  $("#nodes").replaceChildren(
    ...nodes.map((n) =>
      row([
        el("td", n.id + (n.id === st.self.id ? " (this)" : "")),
        n.addr,
        n.version,
        duration(now - Date.parse(n.started_at)),
        num(n.connections),
        num(n.topics),
        num(`${duration(now - Date.parse(n.seen_at))} ago`),
      ]),
    ),
  );
  $("#t-nodes").textContent = st.nodes ? nodes.length : "?";
  // Without the registry, at least this replica's own sockets are known.
  const conns = st.nodes ? nodes.reduce((sum, n) => sum + n.connections, 0) : st.self.connections;
  $("#t-connections").textContent = conns;
  $("#self").textContent = `answered by ${st.self.id} (${st.self.addr || "?"}), version ${st.self.version}`;
}

function renderFunctions(st) {
  const fns = st.functions || [];
  $("#functions").replaceChildren(
    ...fns.map((f) =>
      row([
        el("td", f.name),
        state(f.up ? "up" : "down", f.up ? "up" : "down"),
        state(f.breaker, f.breaker),
        num(f.inflight),
      ]),
    ),
  );
  $("#no-functions").hidden = fns.length > 0;
  $("#t-functions").textContent = `${fns.filter((f) => f.up && f.breaker !== "open").length}/${fns.length}`;
}

function renderTransactions(st) {
  const tx = st.transactions;
  for (const k of ["published", "committed", "aborted", "recovered", "open"]) {
    const v = tx ? tx[k] : "?";
    $(`#tx-${k}`).textContent = v;
    const tile = $(`#t-${k}`);
    if (tile) tile.textContent = v;
  }
}

function renderJobs(st) {
  const box = $("#jobs");
  if (!st.jobs_configured) {
    box.replaceChildren(el("p", "jobs: not configured", "muted"));
    return;
  }
  const jobs = st.jobs;
  if (!jobs) {
    box.replaceChildren(el("p", "jobs: unavailable", "muted"));
    return;
  }
  const parts = [];
  if (Array.isArray(jobs.functions)) {
    const table = el("table");
    const head = row([el("th", "function"), el("th", "waiting", "num"), el("th", "running", "num"), el("th", "oldest", "num")]);
    const body = document.createElement("tbody");
    for (const f of jobs.functions) {
      body.append(row([f.function, num(f.waiting), num(f.running), num(f.oldest_age_ns ? duration(f.oldest_age_ns / 1e6) : "–")]));
    }
    table.append(el("thead"), body);
    table.tHead.append(head);
    parts.push(table);
    if (jobs.functions.length === 0) parts.push(el("p", "No job queued yet.", "muted"));
  }
  const extra = Object.entries(jobs).filter(([k, v]) => k !== "functions" && typeof v !== "object");
  if (extra.length) {
    const table = el("table");
    const body = document.createElement("tbody");
    for (const [k, v] of extra) body.append(row([el("th", k.replace(/_/g, " ")), num(v)]));
    table.append(body);
    parts.push(table);
  }
  box.replaceChildren(...parts);
}

function renderProblems(st) {
  const errs = Object.entries(st.errors || {});
  const box = $("#problems");
  box.hidden = errs.length === 0;
  box.textContent = errs.map(([part, why]) => `${part}: ${why}`).join(" · ");
}

async function poll() {
  const updated = $("#updated");
  try {
    const res = await fetch("/api/status", { cache: "no-store" });
    if (!res.ok) throw new Error(`status answered ${res.status}`);
    const st = await res.json();
    const now = Date.parse(st.time) || Date.now();
    renderNodes(st, now);
    renderFunctions(st);
    renderTransactions(st);
    renderJobs(st);
    renderProblems(st);
    updated.dataset.state = "ok";
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    updated.dataset.state = "error";
    updated.textContent = `gateway not answering (${err.message}); retrying`;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
