// The operator's console (control-plane/src/http/console.rs serves it).
// Polls /console/state every two seconds and draws it; its buttons call the
// admin API's own actions. No framework and no build step: elements are
// made with `el` and filled with text, never HTML, since tool names and
// descriptions come from upstream servers.
"use strict";

const POLL_MS = 2000;
const KEY = "mcp-gateway-admin-key";
const open = new Set(); // servers whose details are shown
let timer = null;
let busy = false;
let again = false; // a refresh was asked for while one was under way
let unread = false; // the status line says the state could not be read

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const $ = (id) => document.getElementById(id);
const slug = (s) => String(s).replace(/[^A-Za-z0-9_-]/g, (c) => "_" + c.charCodeAt(0).toString(16));
const ms = (v) => (v === null || v === undefined ? "—" : `${v} ms`);
const dash = (v) => (v === null || v === undefined || v === "" ? "—" : String(v));

function headers() {
  const key = sessionStorage.getItem(KEY);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function say(text, kind) {
  const s = $("status");
  s.textContent = text;
  s.className = kind || "";
  unread = false;
}

// The key given is not (or no longer) an admin key: forget it and ask again.
function askForKey() {
  sessionStorage.removeItem(KEY);
  $("key-form").hidden = false;
}

// The error an answer of the admin API gives, as text.
async function reason(r) {
  const body = await r.json().catch(() => ({}));
  return typeof body.error === "string" ? body.error : (body.error && body.error.message) || `HTTP ${r.status}`;
}

async function refresh() {
  if (busy) {
    again = true;
    return;
  }
  busy = true;
  try {
    const query = open.size ? `?open=${encodeURIComponent([...open].join(","))}` : "";
    const r = await fetch(`/console/state${query}`, { headers: headers(), cache: "no-store" });
    // 401: no key, or a wrong one. 403: a key that is not an admin's (ask
    // for another), or, with none given, a refusal a key cannot lift (the
    // server's reason says which).
    if (r.status === 401 || (r.status === 403 && sessionStorage.getItem(KEY))) {
      askForKey();
      $("config").textContent = "An admin API key is needed.";
      return;
    }
    if (r.status === 403) throw new Error(await reason(r));
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    draw(await r.json());
    if (unread) say("");
  } catch (e) {
    say(`Could not read the gateway's state: ${e.message}. Retrying.`, "error");
    unread = true;
  } finally {
    busy = false;
    if (again) {
      again = false;
      refresh();
    }
  }
}

function schedule() {
  clearInterval(timer);
  timer = $("live").checked ? setInterval(refresh, POLL_MS) : null;
}

// Redraws a container, keeping keyboard focus on the element that had it.
function replace(container, ...children) {
  const focused = document.activeElement && container.contains(document.activeElement) ? document.activeElement.id : null;
  container.replaceChildren(...children.flat());
  if (focused && $(focused)) $(focused).focus();
}

function draw(s) {
  $("key-form").hidden = !s.needs_key || Boolean(sessionStorage.getItem(KEY));
  const ok = s.last_error ? ` Last reload failed: ${s.last_error}` : "";
  $("config").textContent = `Configuration ${dash(s.version)} served.${ok}`;
  $("config").className = s.last_error ? "error" : "";
  drawEnvoys(s);
  drawServers(s);
  drawAudit(s);
}

function drawEnvoys(s) {
  const items = s.envoys.map((e) => {
    let state, kind;
    // A rejection counts until the Envoy accepts the version served (a
    // fresh Envoy rejects the filter until it has fetched its module).
    if (!e.connected) [state, kind] = ["disconnected", "bad"];
    else if (e.current) [state, kind] = [`accepted ${e.acked}`, "good"];
    else if (e.nack) [state, kind] = [`rejected ${e.nack.version} (${e.nack.type}): ${e.nack.error}`, "bad"];
    else [state, kind] = [`behind (${e.behind.join(", ") || "nothing asked yet"})`, "warn"];
    return el("li", { class: `envoy ${kind}`, "data-node": e.node }, el("strong", {}, e.node), " ", el("span", { class: "badge" }, state));
  });
  replace($("envoys"), items.length ? items : [el("li", {}, "No Envoy has connected yet.")]);
}

// Mean and 95th percentile (a histogram's bound: "≤"), of a server's
// requests or of a tool's calls.
function latency(f) {
  if (f.mean_ms === null || f.mean_ms === undefined) return "—";
  const p95 = f.p95_over_ms ? `> ${f.p95_over_ms} ms` : `≤ ${f.p95_ms} ms`;
  return `${f.mean_ms} ms, p95 ${p95}`;
}

function actionButton(server, action) {
  const label = action[0].toUpperCase() + action.slice(1);
  return el("button", {
    type: "button",
    id: `act-${action}-${slug(server)}`,
    "aria-label": `${label} ${server}`,
    onclick: () => act(`/servers/${encodeURIComponent(server)}/${action}`, `${label} ${server}`),
  }, label);
}

function drawServers(s) {
  const head = el("thead", {}, el("tr", {}, ["Server", "Runtime", "State", "PID", "Restarts", "Requests", "Errors", "Latency (mean, p95)", "Last error", "Actions"].map((h) => el("th", { scope: "col" }, h))));
  const body = el("tbody");
  for (const srv of s.servers) {
    const p = srv.process;
    const shown = open.has(srv.name);
    const details = `details-${slug(srv.name)}`;
    const state = p ? `${srv.state} · ${p.state}` : srv.state;
    const error = (p && p.last_error) || srv.last_error;
    body.append(el("tr", { "data-server": srv.name },
      el("th", { scope: "row", "data-label": "Server" },
        el("button", {
          type: "button", class: "link", id: `toggle-${slug(srv.name)}`, "aria-expanded": String(shown), "aria-controls": details,
          onclick: () => { shown ? open.delete(srv.name) : open.add(srv.name); refresh(); },
        }, srv.name)),
      el("td", { "data-label": "Runtime" }, srv.runtime),
      el("td", { "data-label": "State" }, el("span", { class: `badge ${srv.state}`, "data-state": p ? p.state : srv.state }, state)),
      el("td", { "data-label": "PID", class: "num", "data-pid": "" }, dash(p && p.pid)),
      el("td", { "data-label": "Restarts", class: "num" }, dash(p && p.restarts)),
      el("td", { "data-label": "Requests", class: "num" }, srv.figures.requests),
      el("td", { "data-label": "Errors", class: "num" }, srv.figures.errors),
      el("td", { "data-label": "Latency", class: "num" }, latency(srv.figures)),
      el("td", { "data-label": "Last error", class: "err" }, dash(error)),
      el("td", { "data-label": "Actions", class: "actions" }, p ? ["start", "stop", "restart"].map((a) => actionButton(srv.name, a)) : "—"),
    ));
    if (shown) body.append(el("tr", { class: "details", id: details }, el("td", { colspan: 10 }, drawItems(srv))));
  }
  replace($("servers"), el("table", { class: "servers" }, el("caption", { class: "sr-only" }, "Servers, their state and traffic"), head, body));
}

function drawItems(srv) {
  const items = srv.items;
  if (!items) return el("p", {}, "Loading…");
  const tools = el("table", { class: "tools" },
    el("caption", {}, `Tools of ${srv.name} (${items.tools.length})`),
    el("thead", {}, el("tr", {}, ["Tool", "Description", "Requests", "Errors", "Latency (mean, p95)"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, items.tools.map((t) => el("tr", { "data-tool": t.name },
      el("th", { scope: "row", "data-label": "Tool" }, t.name),
      el("td", { "data-label": "Description" }, dash(t.description)),
      el("td", { "data-label": "Requests", class: "num" }, t.figures.requests),
      el("td", { "data-label": "Errors", class: "num" }, t.figures.errors),
      el("td", { "data-label": "Latency", class: "num" }, latency(t.figures)),
    ))));
  const list = (title, entries) => el("div", { class: "list" }, el("h3", {}, `${title} (${entries.length})`),
    entries.length ? el("ul", {}, entries.map((e) => el("li", {}, e))) : el("p", {}, "None."));
  return el("div", { class: "items" },
    items.tools.length ? tools : el("p", {}, "No tools."),
    list("Prompts", items.prompts.map((p) => p.name)),
    list("Resources", items.resources.map((r) => (r.name ? `${r.name} — ${r.uri}` : r.uri))));
}

function drawAudit(s) {
  if (!s.audit.length) {
    replace($("audit"), el("p", {}, "No decisions yet: the audit log records authorization and rate-limit decisions once gateway.auth, authorization or rate limits are on."));
    return;
  }
  const rows = s.audit.slice(0, 50).map((a) => el("tr", { class: a.decision },
    el("td", { "data-label": "Time" }, new Date(a.time_ms).toLocaleTimeString()),
    el("td", { "data-label": "Principal" }, dash(a.principal)),
    el("td", { "data-label": "Method" }, dash(a.method)),
    el("td", { "data-label": "Target" }, dash(a.target || a.server)),
    el("td", { "data-label": "Decision" }, el("span", { class: `badge ${a.decision}` }, a.decision)),
    el("td", { "data-label": "Reason" }, dash(a.reason)),
    el("td", { "data-label": "Status", class: "num" }, a.status)));
  replace($("audit"), el("table", { class: "audit" },
    el("caption", { class: "sr-only" }, "The audit log's latest decisions, newest first"),
    el("thead", {}, el("tr", {}, ["Time", "Principal", "Method", "Target", "Decision", "Reason", "Status"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows)));
}

async function act(path, what) {
  say(`${what}…`);
  try {
    const r = await fetch(path, { method: "POST", headers: headers() });
    if (r.ok) {
      const body = await r.json().catch(() => ({}));
      say(`${what}: done${body.version ? ` (configuration ${body.version})` : ""}.`, "good");
    } else {
      // Only a 401 is about the key; a 403 says why (another origin, a
      // key that is not an admin's) and keeps it.
      if (r.status === 401) askForKey();
      say(`${what} failed (HTTP ${r.status}): ${await reason(r)}`, "error");
    }
  } catch (e) {
    say(`${what} failed: ${e.message}`, "error");
  }
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  $("reload").addEventListener("click", () => act("/admin/reload", "Reload of the catalog"));
  $("live").addEventListener("change", schedule);
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, $("key").value.trim());
    $("key").value = "";
    say("Key set for this tab.", "good");
    refresh();
  });
  refresh();
  schedule();
});
