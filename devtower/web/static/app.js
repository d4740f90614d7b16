/* The DevTower page. A client of the DevTower's own /v1 API, signed in with the page
   session cookie; every change sends the session's CSRF token. The page is built from text
   nodes only (h() below): names, tags and errors from the server are never markup.
   Views: #/ (my OverClouds), #/new (a request document), #/oc/NAME (one OverCloud),
   #/operator (the UnderCloud). One event stream (/v1/events) keeps whichever is shown live. */
"use strict";

const S = { me: null, csrf: "", view: null, stream: null, timers: [] };

// --- small tools ----------------------------------------------------------------------------

function h(tag, props, ...children) {
  const el = tag === "svg" || (props && props.svg)
    ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "svg" || v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function s(tag, props, ...children) { return h(tag, { ...props, svg: true }, ...children); }

async function api(path, opts = {}) {
  const headers = {};
  const method = opts.method || "GET";
  if (method !== "GET") headers["X-CSRF-Token"] = S.csrf;
  if (opts.body !== undefined) headers["Content-Type"] = opts.ctype || "application/yaml";
  let r;
  try {
    r = await fetch(path, { method, headers, body: opts.body, credentials: "same-origin" });
  } catch (e) {
    return { status: 0, json: { error: { message: "the DevTower does not answer" } } };
  }
  let json = {};
  try { json = await r.json(); } catch (e) { json = {}; }
  if (r.status === 401 && S.me) { location.reload(); }
  return { status: r.status, json };
}

/* The first reads of a page load start as soon as this script runs, side by side (who am I,
   and what the address asks for), instead of one after another: each view takes its first
   answer from here, and reads afresh after that. */
const early = new Map();
function prefetch(path) { if (!early.has(path)) early.set(path, api(path)); }
function take(path) {
  const p = early.get(path);
  if (p) { early.delete(path); return p; }
  return api(path);
}
function prefetchRoute() {
  prefetch("/v1/whoami");
  const m = /^#\/oc\/(.+)$/.exec(location.hash);
  if (m) {
    const q = encodeURIComponent(decodeURIComponent(m[1]));
    for (const tail of ["", "/charts?window=15m", "/webhooks"]) prefetch(`/v1/overclouds/${q}${tail}`);
  } else if (!location.hash || location.hash === "#/") {
    prefetch("/v1/overclouds");
  }
}

function errorOf(res) {
  return (res.json && res.json.error && res.json.error.message) || `HTTP ${res.status}`;
}

function safeUrl(u) { return /^https?:\/\/[^\s"'<>]+$/.test(u || "") ? u : null; }

function badge(text) {
  const t = String(text || "?");
  return h("span", { class: `badge ${t.replace(/[^a-z]/g, "")}` }, t);
}

function age(seconds) {
  const x = Math.max(0, Math.round(seconds));
  if (x < 90) return `${x}s`;
  if (x < 5400) return `${Math.round(x / 60)}m`;
  if (x < 172800) return `${Math.round(x / 3600)}h`;
  return `${Math.round(x / 86400)}d`;
}

function clock(t) { return new Date(t * 1000).toLocaleTimeString([], { hour12: false }); }

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const u = ["B", "kB", "MB", "GB"];
  let i = 0; let v = Number(n);
  while (Math.abs(v) >= 1000 && i < u.length - 1) { v /= 1000; i += 1; }
  return `${v.toFixed(v < 10 && i ? 1 : 0)} ${u[i]}`;
}

function debounce(fn, ms) {
  let t = null;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}

function every(fn, ms) { S.timers.push(setInterval(fn, ms)); }

function say(text) { document.getElementById("live").textContent = text; }

function table(headers, rows, label) {
  // each cell knows its column's name: on a phone the rows stack as labelled cards
  for (const r of rows) [...r.children].forEach((td, i) => td.setAttribute("data-label", headers[i] || ""));
  return h("div", { class: "scroll" }, h("table", { "aria-label": label, class: "stack" },
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows)));
}

// --- sign-in, navigation and the event stream ------------------------------------------------

async function boot() {
  const who = await take("/v1/whoami");
  if (who.status !== 200) {
    document.getElementById("signin").hidden = false;
    const err = new URLSearchParams(location.search).get("error");
    if (err === "token") {
      const p = document.getElementById("signin-error");
      p.textContent = "That token is not valid: mistyped, expired or revoked.";
      p.hidden = false;
    }
    document.getElementById("token").focus();
    return;
  }
  S.me = who.json;
  S.csrf = who.json.csrf || "";
  if (location.search) history.replaceState(null, "", "/" + location.hash);
  document.getElementById("signout-csrf").value = S.csrf;
  document.getElementById("who-name").textContent = `${S.me.owner} · ${S.me.role}`;
  document.getElementById("who").hidden = false;
  document.getElementById("nav").hidden = false;
  document.getElementById("nav-operator").hidden = S.me.role !== "operator";
  openStream();
  window.addEventListener("hashchange", route);
  route();
}

function openStream() {
  const es = new EventSource("/v1/events");
  S.stream = es;
  let reconnect = false;  // after an outage, read everything again: events may have been missed
  es.addEventListener("hello", () => {
    say("live");
    if (reconnect && S.view && S.view.refresh) S.view.refresh();
    reconnect = true;
  });
  es.onmessage = (m) => {
    let e;
    try { e = JSON.parse(m.data); } catch (x) { return; }
    say(`live · ${clock(Date.now() / 1000)}`);
    if (S.view && S.view.onEntry) S.view.onEntry(e);
  };
  es.onerror = () => say("reconnecting…");
}

function route() {
  for (const t of S.timers) clearInterval(t);
  S.timers = [];
  if (S.view && S.view.close) S.view.close();
  const hash = location.hash || "#/";
  const root = document.getElementById("view");
  root.replaceChildren();
  root.removeAttribute("data-live");
  let which = "list";
  if (hash.startsWith("#/oc/")) {
    which = "oc";
    S.view = overcloudView(root, decodeURIComponent(hash.slice(5)));
  } else if (hash === "#/new") {
    which = "new";
    S.view = newView(root);
  } else if (hash === "#/operator") {
    which = "operator";
    S.view = operatorView(root);
  } else {
    S.view = listView(root);
  }
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.view === which) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.getElementById("main").focus({ preventScroll: true });
}

// --- My OverClouds --------------------------------------------------------------------------

function overcloudRows(list) {
  return list.map((o) => {
    const url = safeUrl(o.url);
    const nodes = Object.entries(o.nodes || {}).map(([n, host]) => `${n}@${host}`).join(", ");
    const created = Number(o.created) || (Date.now() / 1000 - (o.age_s || 0));
    return h("tr", { "data-name": o.name },
      h("td", {}, h("a", { href: `#/oc/${encodeURIComponent(o.name)}` }, o.name)),
      h("td", {}, badge(o.state)),
      h("td", {}, url ? h("a", { href: url, rel: "noopener noreferrer", target: "_blank" }, url) : "–"),
      h("td", {}, o.owner),
      h("td", { class: "wrap" }, nodes || "–"),
      h("td", { "data-created": created }, age(Date.now() / 1000 - created)));
  });
}

function listView(root) {
  const body = h("div", { id: "list" });
  root.append(h("section", { class: "card" },
    h("h1", {}, S.me.role === "operator" ? "All OverClouds" : "My OverClouds"), body));
  const refresh = async () => {
    const r = await take("/v1/overclouds");
    if (r.status !== 200) { body.replaceChildren(h("p", { class: "error" }, errorOf(r))); return; }
    const list = r.json.overclouds || [];
    if (!list.length) {
      body.replaceChildren(h("p", { class: "dim" }, "No OverCloud yet. ",
        h("a", { href: "#/new" }, "Request one.")));
    } else {
      body.replaceChildren(table(["Name", "State", "URL", "Owner", "Nodes@hosts", "Age"],
        overcloudRows(list), "OverClouds"));
    }
    root.setAttribute("data-live", "1");
  };
  const later = debounce(refresh, 150);
  every(() => {
    for (const td of body.querySelectorAll("td[data-created]")) {
      td.textContent = age(Date.now() / 1000 - Number(td.dataset.created));
    }
  }, 5000);
  refresh();
  return { refresh, onEntry: later };
}

// --- New OverCloud --------------------------------------------------------------------------

function template() {
  const local = (S.me.owner.split("@")[0] || "dev").toLowerCase().replace(/[^a-z0-9]/g, "");
  return `apiVersion: overcloud/v1
kind: OverCloud
name: ${(local || "dev").slice(0, 12)}-site
owner: ${S.me.owner}
cluster: {nodes: 1, cpu: 1, memory: 1GiB}
saas:
  stack: wordpress
`;
}

function newView(root) {
  const area = h("textarea", { id: "doc", spellcheck: "false", "aria-describedby": "problems",
    "aria-label": "Request document (YAML)", wrap: "off" });
  area.value = sessionStorage.getItem("oc-doc") || template();
  const gutter = h("pre", { class: "gutter", "aria-hidden": "true" });
  const problems = h("ul", { class: "problems", id: "problems", "aria-live": "polite" });
  const upload = h("input", { type: "file", id: "upload", accept: ".yaml,.yml,.json,text/yaml" });
  const apply = h("button", { type: "button", id: "apply", disabled: true }, "Apply");
  const follow = h("div", { id: "follow" });
  let bad = new Set();

  const drawGutter = () => {
    const n = area.value.split("\n").length;
    const lines = [];
    for (let i = 1; i <= n; i += 1) {
      lines.push(bad.has(i) ? h("span", { class: "bad", title: "a problem on this line" }, String(i)) : String(i));
      lines.push("\n");
    }
    gutter.replaceChildren(...lines);
    gutter.scrollTop = area.scrollTop;
  };

  const check = async () => {
    sessionStorage.setItem("oc-doc", area.value);
    if (!area.value.trim()) {
      bad = new Set(); drawGutter(); problems.replaceChildren(); apply.disabled = true; return;
    }
    const r = await api("/v1/validate", { method: "POST", body: area.value });
    if (r.status === 200) {
      bad = new Set();
      problems.replaceChildren(h("li", { class: "okmsg" }, "Valid: ",
        (r.json.summary || [r.json.name]).join(" · ")));
      apply.disabled = false;
    } else {
      const list = r.json.problems || [{ line: null, path: "", message: errorOf(r) }];
      bad = new Set(list.filter((p) => p.line).map((p) => Number(p.line)));
      problems.replaceChildren(...list.map((p) => h("li", { "data-line": p.line || "" },
        p.line ? h("strong", {}, `line ${p.line}`) : h("strong", {}, "document"),
        p.path ? ` · ${p.path}` : "", `: ${p.message}`)));
      apply.disabled = true;
    }
    drawGutter();
  };
  const later = debounce(check, 300);
  area.addEventListener("input", () => { drawGutter(); later(); });
  area.addEventListener("scroll", () => { gutter.scrollTop = area.scrollTop; });
  upload.addEventListener("change", async () => {
    const f = upload.files[0];
    if (!f) return;
    if (f.size > 1024 * 1024) { problems.replaceChildren(h("li", {}, "that file is over 1 MiB")); return; }
    area.value = await f.text();
    drawGutter(); check();
  });

  let following = null;
  apply.addEventListener("click", async () => {
    apply.disabled = true;
    const r = await api("/v1/overclouds", { method: "POST", body: area.value });
    if (r.status !== 200 && r.status !== 202) {
      follow.replaceChildren(h("p", { class: "error", role: "alert" }, errorOf(r)));
      apply.disabled = false;
      if (r.json.problems) check();
      return;
    }
    sessionStorage.removeItem("oc-doc");
    following = r.json.name;
    const lines = r.json.changes ? h("ul", {}, r.json.changes.map((c) => h("li", {}, c))) : null;
    follow.replaceChildren(h("h2", {}, `${r.json.name}: ${r.json.state}`), lines,
      r.json.webhook_secret ? h("p", {}, "Webhook secret (shown once): ",
        h("code", {}, r.json.webhook_secret)) : null, h("div", { id: "workflow" }));
    follow.scrollIntoView({ block: "start" });
    await track();
  });

  const track = async () => {
    if (!following) return;
    const box = document.getElementById("workflow");
    const r = await api(`/v1/overclouds/${encodeURIComponent(following)}`);
    if (!box) return;
    if (r.status === 404) {
      box.replaceChildren(h("p", { class: "dim" }, "Waiting for the orchestrator to take the request…"));
      return;
    }
    if (r.status !== 200) { box.replaceChildren(h("p", { class: "error" }, errorOf(r))); return; }
    const oc = r.json;
    const wfs = oc.workflows || [];
    const wf = wfs[wfs.length - 1];
    const tasks = wf ? wf.tasks.map((t) => h("tr", { "data-task": t.name },
      h("td", {}, t.name), h("td", {}, badge(t.state)),
      h("td", {}, t.seconds === null ? "–" : `${t.seconds.toFixed(1)} s`),
      h("td", { class: "wrap" }, t.error || t.progress || ""))) : [];
    const url = safeUrl(oc.url);
    box.replaceChildren(
      h("p", {}, "State: ", h("span", { id: "follow-state" }, badge(oc.state)),
        wf ? ` · workflow ${wf.kind} ${wf.state}` : ""),
      tasks.length ? table(["Task", "State", "Took", ""], tasks, "Workflow tasks") : null,
      oc.state === "ready" && url ? h("p", { id: "follow-done" }, "Ready at ",
        h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, url), " · ",
        h("a", { href: `#/oc/${encodeURIComponent(oc.name)}` }, "open its page")) : null,
      oc.error ? h("p", { class: "error" }, oc.error) : null);
  };
  const trackLater = debounce(track, 150);

  root.append(h("section", { class: "card" },
    h("h1", {}, "New OverCloud"),
    h("p", { class: "dim" }, "Paste or upload a request document; it is checked as you type. ",
      "Applying the document of one of yours that exists changes it (the plan is shown)."),
    h("label", { for: "upload" }, "Upload a document"), upload,
    h("label", { for: "doc" }, "Request document"),
    h("div", { class: "editor" }, gutter, area), problems,
    h("div", { class: "row" }, apply)),
  h("section", { class: "card", "aria-label": "Workflow" }, follow));
  drawGutter();
  check();
  return {
    refresh: track,
    onEntry: (e) => { if (following && e.overcloud === following) trackLater(); },
  };
}

// --- One OverCloud --------------------------------------------------------------------------

const PALETTE = ["#2458c6", "#d9480f", "#1f7a3a", "#7b3fc4", "#b3261e", "#0b7285", "#a05a00", "#5c5f66"];

/* series: [{label, points: [[t, v]...]}] → uPlot's aligned columns */
function aligned(series) {
  const times = [...new Set(series.flatMap((x) => x.points.map((p) => p[0])))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const cols = series.map((x) => {
    const col = new Array(times.length).fill(null);
    for (const [t, v] of x.points) col[index.get(t)] = v;
    return col;
  });
  return [times, ...cols];
}

function markerPlugin(markers) {
  return {
    hooks: {
      draw: [(u) => {
        const { ctx } = u;
        const top = u.bbox.top; const height = u.bbox.height;
        for (const m of markers) {
          const x = u.valToPos(m.time, "x", true);
          if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
          ctx.save();
          ctx.strokeStyle = m.type.startsWith("Migration") ? "#7b3fc4" : "#b3261e";
          ctx.lineWidth = 2 * devicePixelRatio;
          ctx.setLineDash([6, 4]);
          ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
          ctx.restore();
        }
      }],
    },
  };
}

function chart(box, title, series, markers, fmt) {
  box.replaceChildren(h("h2", {}, title));
  const data = series.filter((x) => x.points.length);
  if (!data.length) { box.append(h("p", { class: "dim empty" }, "no data in this window yet")); return 0; }
  const holder = h("div", { class: "chart", role: "img", "aria-label": `${title}: ${data.map((x) => x.label).join(", ")}` });
  box.append(holder);
  const width = Math.max(280, box.clientWidth - 32);
  const opts = {
    width, height: 200, plugins: [markerPlugin(markers)],
    // markers out of the data's span (a move after the last bucket) widen the time axis
    scales: { x: { time: true, range: (u, lo, hi) => [Math.min(lo, ...markers.map((m) => m.time)), Math.max(hi, ...markers.map((m) => m.time))] } },
    axes: [{}, { values: (u, vals) => vals.map((v) => fmt(v)), size: 60 }],
    series: [{}, ...data.map((x, i) => ({ label: x.label, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: true }))],
  };
  // eslint-disable-next-line no-undef
  new uPlot(opts, aligned(data), holder);
  return data.reduce((n, x) => n + x.points.length, 0);
}

function seriesOf(section, column, labelOf) {
  return (section || []).map((x) => {
    const ti = x.columns.indexOf("time"); const vi = x.columns.indexOf(column);
    return { label: labelOf(x.tags || {}), points: vi < 0 ? [] : x.values.filter((r) => r[vi] !== null && typeof r[vi] === "number").map((r) => [r[ti], r[vi]]) };
  });
}

function latestOf(x, column) {
  const vi = x.columns.indexOf(column);
  for (let i = x.values.length - 1; i >= 0; i -= 1) if (vi >= 0 && x.values[i][vi] !== null) return x.values[i][vi];
  return null;
}

function flowMap(box, flows, nodes) {
  box.replaceChildren(h("h2", {}, "Flow: who talks to whom"));
  const names = new Set(nodes.map((n) => n.node));
  // one edge per pair: n1→n2 and n2→n1 are the same traffic seen from each end
  const pairs = new Map();
  for (const x of flows || []) {
    const from = x.tags.node || "?"; const to = x.tags.peer || "?";
    if (from === to) continue;
    const key = [from, to].sort().join("\u0000");
    const rate = (latestOf(x, "sent") || 0) + (latestOf(x, "received") || 0);
    const e = pairs.get(key);
    if (!e) pairs.set(key, { from, to, rate });
    else e.rate = Math.max(e.rate, rate);
  }
  const edges = [...pairs.values()];
  for (const e of edges) { names.add(e.from); names.add(e.to); }
  const all = [...names];
  if (!all.length) { box.append(h("p", { class: "dim empty" }, "no flows yet")); return 0; }
  const W = 520; const H = 300; const R = Math.min(W, H) / 2 - 50;
  const pos = new Map(all.map((n, i) => {
    const a = (2 * Math.PI * i) / all.length - Math.PI / 2;
    return [n, [W / 2 + R * Math.cos(a), H / 2 + R * Math.sin(a)]];
  }));
  const own = new Set(nodes.map((n) => n.node));
  const max = Math.max(1, ...edges.map((e) => e.rate));
  const svg = s("svg", { class: "flowmap", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `flow map: ${edges.map((e) => `${e.from} to ${e.to} ${bytes(e.rate)}/s`).join("; ") || "no traffic"}` });
  for (const e of edges) {
    const [x1, y1] = pos.get(e.from); const [x2, y2] = pos.get(e.to);
    svg.append(s("line", { class: "edge", x1, y1, x2, y2, "stroke-width": 1 + 5 * Math.sqrt(e.rate / max) }));
    svg.append(s("text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 4, "text-anchor": "middle", class: "rate" }, `${bytes(e.rate)}/s`));
  }
  for (const n of all) {
    const [x, y] = pos.get(n);
    svg.append(s("g", { class: own.has(n) ? "node" : "peer" }, s("circle", { cx: x, cy: y, r: 20 }),
      s("text", { x, y: y + 36, "text-anchor": "middle" }, n)));
  }
  box.append(svg);
  return edges.length;
}

function markerText(m) {
  const d = m.data || {};
  if (m.type.startsWith("Migration")) {
    const how = m.type === "MigrationFinished" ? (d.ok === false ? "failed" : `done, ${Number(d.downtime_s || 0).toFixed(2)} s down`) : "started";
    return `${clock(m.time)} migration ${how}: ${d.node} ${d.source} → ${d.target}${d.reason ? ` (${d.reason})` : ""}`;
  }
  const labels = Object.entries(d.labels || {}).map(([k, v]) => `${k}=${v}`).join(" ");
  return `${clock(m.time)} ${m.type === "AlertFiring" ? "alert firing" : "alert resolved"}: ${d.rule} ${labels}${d.summary ? ` – ${d.summary}` : ""}`;
}

function overcloudView(root, name) {
  const q = encodeURIComponent(name);
  const head = h("section", { class: "card", id: "oc-head" }, h("h1", {}, name));
  const win = h("select", { id: "window", "aria-label": "Chart window" },
    ["15m", "1h", "6h", "24h"].map((w) => h("option", { value: w }, w)));
  const boxes = {};
  for (const k of ["cpu", "mem", "flow", "latency", "status", "containers", "marks", "hooks", "nodes"]) {
    boxes[k] = h("section", { class: "card", id: `box-${k}` });
  }
  const controls = h("div", { class: "row" }, h("label", { for: "window" }, "Chart window"), win,
    h("span", { class: "dim" }, "dashed lines: alerts (red), migrations (purple)"));
  root.append(head, h("div", { class: "grid" }, boxes.cpu, boxes.mem, boxes.latency, boxes.status,
    boxes.flow, boxes.marks, boxes.nodes, boxes.containers), boxes.hooks);
  let detail = null;

  // the confirmation is built once, beside the head: a live redraw of the head (events keep
  // coming while a node moves) must not replace a dialog the user is typing into
  const dialog = h("dialog", { id: "confirm-delete", "aria-labelledby": "confirm-title" });
  const typed = h("input", { type: "text", id: "confirm-name", autocomplete: "off" });
  const yes = h("button", { class: "danger", type: "button", id: "confirm-yes", disabled: true }, "Delete it");
  typed.addEventListener("input", () => { yes.disabled = typed.value !== name; });
  const refused = h("p", { class: "error", role: "alert", id: "confirm-error" });
  yes.addEventListener("click", async () => {
    yes.disabled = true;
    const r = await api(`/v1/overclouds/${q}`, { method: "DELETE" });
    if (r.status === 202) {  // on to the list, where it shows "deleting" until it is gone
      dialog.close();
      location.hash = "#/";
      return;
    }
    refused.textContent = errorOf(r);
    yes.disabled = false;
  });
  dialog.append(h("h2", { id: "confirm-title" }, `Delete ${name}?`),
    h("p", {}, "Its nodes, its site and its DevLake go. Type its name to confirm."),
    h("label", { for: "confirm-name" }, "Name"), typed, refused,
    h("div", { class: "row" }, yes, h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Cancel")));
  root.append(dialog);

  const drawHead = () => {
    const o = detail;
    const url = safeUrl(o.url);
    const grafana = S.me.grafana ? `${S.me.grafana}/d/overcloud-overcloud/overcloud?var-overcloud=${q}` : null;
    const canWrite = S.me.role !== "viewer";
    head.replaceChildren(h("h1", {}, o.name, " ", badge(o.state)),
      h("dl", { class: "kv" },
        h("dt", {}, "URL"), h("dd", {}, url ? h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, url) : "–"),
        h("dt", {}, "Owner"), h("dd", {}, o.owner),
        h("dt", {}, "Age"), h("dd", {}, age(Date.now() / 1000 - o.created)),
        o.error ? h("dt", {}, "Error") : null, o.error ? h("dd", { class: "error" }, o.error) : null),
      h("div", { class: "row" },
        grafana ? h("a", { href: grafana, target: "_blank", rel: "noopener noreferrer", id: "grafana" }, "Open in Grafana") : null,
        canWrite ? h("button", { class: "danger", type: "button", id: "delete", onclick: () => { typed.value = ""; yes.disabled = true; dialog.showModal(); typed.focus(); } }, "Delete…") : null),
      controls);
    boxes.nodes.replaceChildren(h("h2", {}, "Nodes on hosts"), table(["Node", "Host", "Address", "Tiers"],
      (o.nodes || []).map((n) => h("tr", { "data-node": n.node }, h("td", {}, n.node), h("td", {}, n.host),
        h("td", {}, n.address || "–"), h("td", {}, (n.tiers || []).join(", ")))), "Nodes"));
  };

  const chartsData = () => take(`/v1/overclouds/${q}/charts?window=${encodeURIComponent(win.value)}`);
  const drawCharts = async (pending) => {
    const r = await (pending instanceof Promise ? pending : chartsData());
    if (r.status !== 200) { boxes.cpu.replaceChildren(h("p", { class: "error" }, errorOf(r))); return; }
    const sec = r.json.sections || {};
    const marks = r.json.markers || [];
    const byNode = (t) => `${t.node || "?"}@${t.host || "?"}`;  // a moved node: one series per host
    let n = 0;
    n += chart(boxes.cpu, "Resource: CPU % per node", seriesOf(sec.nodes, "cpu", byNode), marks, (v) => `${v.toFixed(0)}%`);
    n += chart(boxes.mem, "Resource: memory per node", seriesOf(sec.nodes, "mem", byNode), marks, bytes);
    n += chart(boxes.latency, "Service: HTTP latency (ms)", seriesOf(sec.http, "latency", (t) => t.target || "?"), marks, (v) => `${v.toFixed(0)}`);
    n += chart(boxes.status, "Service: HTTP status", seriesOf(sec.http, "status", (t) => t.target || "?"), marks, (v) => `${v.toFixed(0)}`);
    flowMap(boxes.flow, sec.flows, detail ? detail.nodes || [] : []);
    boxes.containers.replaceChildren(h("h2", {}, "Service: stack containers"),
      table(["Node", "Service", "State", "Health", "Restarts"], (sec.containers || []).map((x) => h("tr", {},
        h("td", {}, x.tags.node || "?"), h("td", {}, x.tags.service || "?"), h("td", {}, badge(latestOf(x, "state"))),
        h("td", {}, badge(latestOf(x, "health") || "–")), h("td", {}, latestOf(x, "restarts") ?? "–"))), "Containers"));
    boxes.marks.replaceChildren(h("h2", {}, "Alerts and migrations"),
      marks.length ? h("ul", { class: "legend-marks", id: "markers" }, marks.map((m) =>
        h("li", { class: m.type.startsWith("Migration") ? "migration" : "alert", "data-type": m.type }, markerText(m))))
        : h("p", { class: "dim" }, "none in this window (drawn as dashed lines on the charts)"));
    if (n > 0 && !root.hasAttribute("data-live")) {
      root.setAttribute("data-live", "1");
      performance.mark("oc-live-data");
    }
  };

  const drawHooks = async (pending) => {
    const r = await pending;
    if (r.status !== 200) return;
    const w = r.json;
    boxes.hooks.replaceChildren(h("h2", {}, "Webhooks"),
      w.urls.length ? h("ul", {}, w.urls.map((u) => h("li", {}, u))) : h("p", { class: "dim" }, "none (devtower.notify in the request)"),
      w.deliveries.length ? table(["Event", "URL", "State", "Attempts", "HTTP", "When"], w.deliveries.slice(0, 10).map((d) =>
        h("tr", {}, h("td", {}, d.event), h("td", { class: "wrap" }, d.url), h("td", {}, badge(d.state)),
          h("td", {}, d.attempts), h("td", {}, d.status || d.error || "–"), h("td", {}, clock(d.finished || d.created)))), "Deliveries") : null);
  };

  const refresh = async () => {
    const charts = chartsData();  // in parallel with the OverCloud itself: the page's slowest read
    const hooks = take(`/v1/overclouds/${q}/webhooks`);
    const r = await take(`/v1/overclouds/${q}`);
    if (r.status !== 200) {
      head.replaceChildren(h("h1", {}, name), h("p", { class: "error", role: "alert" }, errorOf(r)));
      for (const b of Object.values(boxes)) b.replaceChildren();
      return;
    }
    detail = r.json;
    drawHead();
    if (!performance.getEntriesByName("oc-head").length) performance.mark("oc-head");
    await Promise.all([drawCharts(charts), drawHooks(hooks)]);
  };
  win.addEventListener("change", () => drawCharts());
  every(() => drawCharts(), 10000);
  const later = debounce(refresh, 500);
  refresh();
  return { refresh, onEntry: (e) => { if (e.overcloud === name) later(); } };
}

// --- Operator -------------------------------------------------------------------------------

function operatorView(root) {
  const hosts = h("section", { class: "card", id: "hosts" });
  const alerts = h("section", { class: "card", id: "alerts" });
  const all = h("section", { class: "card", id: "all" });
  root.append(hosts, alerts, all);
  const act = async (host, what) => {
    const r = await api(`/v1/undercloud/${encodeURIComponent(host)}/${what}`, { method: "POST" });
    say(r.status === 200 ? `${host}: ${what} done` : errorOf(r));
    refresh();
  };
  const refresh = async () => {
    const [u, a, l] = await Promise.all([api("/v1/undercloud"), api("/v1/alerts"), api("/v1/overclouds")]);
    if (u.status !== 200) { hosts.replaceChildren(h("p", { class: "error" }, errorOf(u))); return; }
    hosts.replaceChildren(h("h1", {}, "UnderCloud hosts"), table(
      ["Host", "Site", "State", "CPU", "Memory", "Allocated", "Nodes", ""],
      u.json.hosts.map((x) => h("tr", { "data-host": x.host }, h("td", {}, x.host), h("td", {}, x.site),
        h("td", {}, badge(x.state)),
        h("td", {}, x.load.cpu_percent === null || x.load.cpu_percent === undefined ? "–" : `${Number(x.load.cpu_percent).toFixed(0)}%`),
        h("td", {}, x.load.mem_percent === null || x.load.mem_percent === undefined ? "–" : `${Number(x.load.mem_percent).toFixed(0)}%`),
        h("td", {}, `${x.allocated.cpu}/${x.capacity.cpu} cpu`),
        h("td", { class: "wrap" }, x.allocated.nodes.join(", ") || "–"),
        h("td", {}, x.state === "draining"
          ? h("button", { type: "button", class: "secondary", onclick: () => act(x.host, "undrain") }, `Undrain ${x.host}`)
          : h("button", { type: "button", class: "secondary", onclick: () => act(x.host, "drain") }, `Drain ${x.host}`)))),
      "Hosts"));
    const firing = a.status === 200 ? a.json.firing : [];
    alerts.replaceChildren(h("h2", {}, "Alerts firing"), firing.length ? table(["Rule", "Labels", "Value", "Since"],
      firing.map((f) => h("tr", {}, h("td", {}, f.rule), h("td", { class: "wrap" }, Object.entries(f.labels || {}).map(([k, v]) => `${k}=${v}`).join(" ")),
        h("td", {}, Number(f.value).toFixed(2)), h("td", {}, clock(f.time)))), "Alerts firing") : h("p", { class: "dim" }, "none"));
    all.replaceChildren(h("h2", {}, "All OverClouds"), table(["Name", "State", "URL", "Owner", "Nodes@hosts", "Age"],
      overcloudRows(l.status === 200 ? l.json.overclouds : []), "All OverClouds"));
    root.setAttribute("data-live", "1");
  };
  every(refresh, 10000);
  refresh();
  return { refresh, onEntry: debounce(refresh, 300) };
}

prefetchRoute();
document.addEventListener("DOMContentLoaded", boot);
