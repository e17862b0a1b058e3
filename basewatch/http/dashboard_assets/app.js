// basewatch's dashboard. Plain JavaScript, no build step, no other origin.
// Everything from the daemon (task names, log lines, registry errors) reaches the page as
// text (textContent, text nodes): never as markup.
"use strict";

const state = { runs: [], tasks: [], pinned: null, following: null, logAbort: null };
let refreshing = null;
let refreshAgain = false;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

async function get(path) {
  const response = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  if (response.status === 401) {
    window.location.assign("/");  // the session ended: the sign-in form
    throw new Error("signed out");
  }
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response;
}

function ago(iso) {
  if (!iso) return "";
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

function duration(run) {
  if (!run.started_at) return "";
  // A running run's duration moves on; the daemon's figure is as of the last refresh.
  let seconds = run.finished_at ? run.duration_seconds : (Date.now() - Date.parse(run.started_at)) / 1000;
  seconds = Math.max(0, seconds);
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

function since(iso, className) {
  // "3 min ago", kept current by tick()
  return el("span", { class: className || "", "data-at": iso || "" }, ago(iso));
}

function badge(status) {
  return el("span", { class: `badge status-${(status || "none").toLowerCase()}` }, status || "none");
}

function shortRef(reference) {
  // registry/path/name:tag -> name:tag, the part a person recognises
  const slash = reference.lastIndexOf("/");
  return slash >= 0 ? reference.slice(slash + 1) : reference;
}

function triggerText(run) {
  if (run.base_change) return `base ${shortRef(run.base_change.reference)}`;
  if (run.source_commit) return `commit ${run.source_commit.commit.slice(0, 7)}`;
  return run.trigger;
}

function renderTasks() {
  const body = document.querySelector("#tasks tbody");
  const rows = state.tasks.map((task) => {
    const chips = el("div", { class: "chips" });
    const triggers = el("td", {}, chips);
    for (const trigger of task.triggers) {
      const on = trigger.state === "Enabled";
      let label = trigger.trigger.replace("_", " ");
      if (trigger.trigger === "timer") label = `timer ${trigger.name} (${trigger.schedule})`;
      if (!on && trigger.trigger !== "base_image" && trigger.trigger !== "timer") continue;
      chips.append(el("span", { class: on ? "chip" : "chip off", title: trigger.state }, label));
    }
    const last = task.last_run;
    const lastCell = last
      ? el("td", {}, badge(last.status), " ", el("span", { class: "muted" }, `${last.id} · `, since(last.queued_at)))
      : el("td", { class: "muted" }, "no run yet");
    const name = el("td", {}, el("strong", {}, task.name));
    if (task.error) name.append(el("div", { class: "error" }, task.error));
    return el("tr", { "data-task": task.name }, name, triggers, lastCell);
  });
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "3", class: "muted" }, "no tasks yet")));
  body.replaceChildren(...rows);
  const running = state.runs.filter((r) => r.status === "Running").length;
  const queued = state.runs.filter((r) => r.status === "Queued").length;
  document.getElementById("summary").textContent =
    `${state.tasks.length} tasks · ${running} running · ${queued} queued`;
}

function renderRuns() {
  const body = document.querySelector("#runs tbody");
  const rows = state.runs.map((run) => {
    const row = el("tr", { "data-run": run.id, class: run.id === state.following ? "selected" : "" },
      el("td", { class: "mono" }, run.id),
      el("td", {}, run.task || "(quick run)"),
      el("td", { title: run.base_change ? `${run.base_change.reference} @ ${run.base_change.digest}` : run.trigger },
        triggerText(run)),
      el("td", {}, badge(run.status)),
      el("td", { class: "duration" }, duration(run)),
      el("td", { class: "muted" }, since(run.queued_at)));
    if (run.error) row.title = run.error;
    row.addEventListener("click", () => { state.pinned = run.id; followLog(); });
    return row;
  });
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "6", class: "muted" }, "no runs yet")));
  body.replaceChildren(...rows);
}

function tick() {
  // Durations of running runs move on between events; nothing is fetched for it.
  for (const row of document.querySelectorAll("#runs tbody tr[data-run]")) {
    const run = state.runs.find((r) => r.id === row.dataset.run);
    if (run && !run.finished_at) row.querySelector(".duration").textContent = duration(run);
  }
  for (const span of document.querySelectorAll("[data-at]")) span.textContent = ago(span.dataset.at);
}

function renderGraph(text) {
  const doc = new DOMParser().parseFromString(text, "image/svg+xml");
  const svg = doc.documentElement;
  if (svg.nodeName !== "svg") return;
  const box = document.getElementById("graph");
  box.replaceChildren(document.importNode(svg, true));
}

function runToFollow() {
  if (state.pinned) return state.pinned;
  const current = state.runs.find((r) => r.id === state.following);
  if (current && current.status === "Running") return current.id;
  // The run building now (the oldest of them: a cascade reads in order), else the newest.
  const running = state.runs.filter((r) => r.status === "Running");
  if (running.length) return running[running.length - 1].id;
  if (state.following) return state.following;
  return state.runs.length ? state.runs[0].id : null;
}

async function followLog() {
  const runId = runToFollow();
  if (!runId || runId === state.following) { renderRuns(); return; }
  if (state.logAbort) state.logAbort.abort();
  const abort = new AbortController();
  state.logAbort = abort;
  state.following = runId;
  renderRuns();
  const run = state.runs.find((r) => r.id === runId);
  const title = document.getElementById("log-title");
  title.textContent = `${runId}${run && run.task ? ` · ${run.task}` : ""}`;
  const log = document.getElementById("log");
  log.replaceChildren();
  log.dataset.run = runId;
  try {
    const response = await fetch(`/ui/runs/${encodeURIComponent(runId)}/log`,
      { credentials: "same-origin", signal: abort.signal });
    if (!response.ok) { log.append(`(the log could not be read: HTTP ${response.status})`); return; }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 20;
      log.append(decoder.decode(value, { stream: true }));
      if (atEnd) log.scrollTop = log.scrollHeight;
    }
    log.append(decoder.decode());
    log.dataset.ended = "true";
  } catch (error) {
    if (error.name !== "AbortError") log.append(`\n(the log stream broke: ${error.message})`);
  }
}

async function refresh() {
  // One refresh at a time; events arriving meanwhile make one more, not one each.
  if (refreshing) { refreshAgain = true; return refreshing; }
  refreshing = (async () => {
    try {
      const data = await (await get("/ui/state")).json();
      state.tasks = data.tasks;
      state.runs = data.runs;
      renderTasks();
      renderRuns();
      renderGraph(data.graph_svg);
      document.body.dataset.refreshed = String(Date.now());
      followLog();
    } catch (error) {
      setLive(`not updated: ${error.message}`, "down");
    } finally {
      refreshing = null;
    }
  })();
  await refreshing;
  if (refreshAgain) { refreshAgain = false; await refresh(); }
}

function setLive(text, how) {
  const live = document.getElementById("live");
  live.textContent = text;
  live.className = `live ${how}`;
}

function listen() {
  const events = new EventSource("/ui/events");
  events.addEventListener("hello", () => { setLive("live", "up"); refresh(); });
  events.addEventListener("message", () => refresh());
  events.addEventListener("error", () => {
    if (events.readyState === EventSource.CLOSED) {
      // Refused (signed out, or every stream taken): ask again shortly; a 401 signs out.
      setLive("reconnecting…", "down");
      setTimeout(() => { refresh(); listen(); }, 5000);
    } else {
      setLive("reconnecting…", "down");
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  refresh();
  listen();
  setInterval(tick, 1000);
});
