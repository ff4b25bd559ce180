// StatusHub's built-in dashboard: vanilla JS, no build step, no dependencies. Built only from the public
// protocol (docs/protocol.md) and GET /v1/catalog, so it is also a reference client.
"use strict";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

// --- State ------------------------------------------------------------------------------------------------

const view = {
  catalog: null,
  categoryOf: new Map(),          // event_type -> category
  feedOf: new Map(),              // event_type -> its catalog `feed` (the alert feed shows these types)
  ttlOf: new Map(),               // entity_type -> seconds
  finalOf: new Map(),             // entity_type -> its catalog `final` ({field: [values]}): states that end its story
  budgetOf: new Map(),            // category -> latency budget in ms (catalog latency_budget_ms)
  machines: new Map(),            // entity_id -> {event, stale, lastSeen}
  operators: new Map(),
  workorders: new Map(),
  materials: new Map(),
  kpis: new Map(),                // kpi id (`<line>.<kpi>`) -> entry: the KPI platform's latest figures (seed 004)
  allocations: new Map(),         // allocation id -> entry: a tile names the operator and order its machine is allocated to
  predictions: new Map(),         // machine id -> its newest idle-time prediction (news: by source time)
  counters: new Map(),            // counter name -> event
  feed: [],
  machineAlerts: new Map(),       // entity_id -> the newest feed event about that machine (its tile shows it while
                                  // the machine stays in the status it had when it came)
  seen: [],                       // "<entity_id> <event_id>" of the events applied, newest last (for the browser
                                  // tests; with partitions an id is unique only within its entity's partition)
  lastEventId: null,
  line: null,
  token: params.get("token") || "",
  transport: params.get("transport") === "sse" ? "sse" : "ws",
  samples: new Map(),             // category -> [ms] since the last report
};

// --- Small helpers ----------------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("data-")) el.setAttribute(key, value);
    else el[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function age(fromIso) {
  const ms = Date.now() - Date.parse(fromIso);
  if (!isFinite(ms)) return "";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.round(s / 60) + " min";
  return Math.round(s / 3600) + " h";
}

// The time of day, in the screen's zone; with the date when that is not today (`recent` brings back alerts up to the
// history's age, a day by default: yesterday's 23:40 read as tonight's).
function timeOf(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return "";
  return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
}

// Event ids are `<ms>-<seq>`: compared as two numbers, never as text.
// A hub with several partitions hands out resume tokens (`r1.…`, on each event and a snapshot's last part): the
// latest one received is where to resume, whatever the ids say (they do not order across partitions).
function isToken(position) { return typeof position === "string" && position.startsWith("r1."); }

function compareIds(a, b) {
  const [am, as] = a.split("-").map(Number), [bm, bs] = b.split("-").map(Number);
  return am !== bm ? am - bm : as - bs;
}

function authHeaders() {
  return view.token ? { Authorization: "Bearer " + view.token } : {};
}

// Close codes and HTTP refusals in words (docs/protocol.md, close codes).
const closeWords = {
  1000: "closed", 1001: "the hub node is shutting down; reconnecting to another", 1006: "the connection dropped",
  1008: "too many messages", 1009: "a message was too large", 1011: "the hub had an internal error",
  4001: "this screen fell behind (slow consumer); reconnecting", 4003: "the token expired; enter a fresh one",
  4401: "the token was refused (missing or invalid)", 4429: "too many connections from this address",
  4503: "the hub node is full; trying again",
};

function showError(text) {
  const box = $("errors");
  box.prepend(h("p", {}, new Date().toLocaleTimeString() + " — " + text));
  while (box.childElementCount > 5) box.lastElementChild.remove();
}

function clearErrors() { $("errors").replaceChildren(); }

function setConnection(state, text) {
  const el = $("conn");
  el.dataset.state = state;
  el.textContent = text;
}

// --- Catalog ----------------------------------------------------------------------------------------------

async function loadCatalog() {
  const response = await fetch("/v1/catalog", { headers: authHeaders() });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error("catalog: " + (body.error ? body.error.field + " " + body.error.reason : response.status));
  }
  const catalog = await response.json();
  view.catalog = catalog;
  for (const type of catalog.event_types) {
    view.categoryOf.set(type.name, type.category);
    if (type.feed) view.feedOf.set(type.name, type.feed);
  }
  for (const type of catalog.entity_types) {
    view.ttlOf.set(type.name, type.ttl_seconds);
    if (type.final) view.finalOf.set(type.name, type.final);
  }
  for (const category of catalog.categories) {
    if (category.latency_budget_ms) view.budgetOf.set(category.name, category.latency_budget_ms);
  }
  const machine = catalog.entity_types.find((t) => t.name === "machine");
  const legend = $("legend");
  legend.replaceChildren(...(machine && machine.status ? machine.status : []).map((status) => {
    const swatch = h("i", {});
    swatch.style.background = `var(--${status}, var(--unknown))`;
    return h("span", {}, swatch, status);
  }));
}

// The token's `patterns` claim; null without a token, or one that is not a JWT this page can read (the hub decides).
function tokenPatterns() {
  if (!view.token) return null;
  try {
    const payload = JSON.parse(atob(view.token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return Array.isArray(payload.patterns) ? payload.patterns : null;
  } catch (e) {
    return null;
  }
}

// Lines the token allows (its `patterns` claim), else the lines the hub has entities cached on (`GET /v1/lines`).
async function discoverLines() {
  const lines = new Set();
  const patterns = tokenPatterns() || [];
  for (const pattern of patterns) {
    const parts = pattern.split(":");
    if (parts[0] === "line" && parts[1] && parts[1] !== "*") lines.add(parts[1]);
  }
  const restricted = lines.size > 0 && !patterns.some((p) => p === "*" || p.startsWith("line:*"));
  if (!restricted) {
    const response = await fetch("/v1/lines", { headers: authHeaders() });
    if (response.ok) {
      const body = await response.json();
      for (const line of body.lines || []) lines.add(line);
    }
  }
  const list = $("lines");
  list.replaceChildren(...[...lines].sort().map((line) => h("option", { value: line })));
  return [...lines].sort();
}

// --- Applying events --------------------------------------------------------------------------------------

// A state is shown unless the hub marked it late, or held (its entity's state holds it until a releasing type
// comes, as a quarantine holds a lot: the hub kept the cache as it was). The hub ranks an entity's states as it writes them (by the
// publisher's `sequence` when both carry one, else by source time; afresh after a `status_stale`) and delivers each
// entity's events in ingest order, so the newest unmarked state is the cached one. Comparing timestamps here as
// well kept a tile on an older status when a device's clock jumped back under its `sequence`, or when a machine
// came back from staleness with its clock behind, and kept a counter at another node's value when the nodes'
// clocks differed.
function isCurrentState(event) {
  return event.late !== true && event.held !== true;
}

// Alerts are news, not state (never ranked nor marked late): the newest about a machine is the newest by source time.
function newerBySourceTime(current, event) {
  return !current || Date.parse(event.timestamp) >= Date.parse(current.timestamp);
}

function noteSeen(event) {
  if (event.event_id) { view.seen.push(`${event.entity_id} ${event.event_id}`); if (view.seen.length > 2000) view.seen.shift(); }
}

function apply(event, live) {
  noteSeen(event);
  if (event.event_id && (!view.lastEventId || compareIds(event.event_id, view.lastEventId) > 0)) view.lastEventId = event.event_id;
  if (live && event.received_at) {
    const category = view.categoryOf.get(event.event_type) || (event.event_type === "counter_changed" ? "counters" : null);
    const ms = Date.now() - Date.parse(event.received_at);
    if (category && isFinite(ms)) {
      const list = view.samples.get(category) || [];
      if (list.length < 500) list.push(Math.max(0, ms));
      view.samples.set(category, list);
    }
  }
  const type = event.event_type;
  if (type === "status_stale") return markStale(event);
  if (type === "counter_changed") {
    const name = event.data && event.data.name;
    if (name && isCurrentState(event)) view.counters.set(name, event);
    return render("counters");
  }
  if (type === "resource_status_changed" && event.entity_type === "machine") return setState(view.machines, event, "machines");
  if (type === "resource_status_changed" && event.entity_type === "operator") return setState(view.operators, event, "operators");
  if (type === "work_order_progress") return setState(view.workorders, event, "workorders");
  if (type === "material_inventory_changed") return setState(view.materials, event, "materials");
  if (type === "kpi_calculated") return setState(view.kpis, event, "kpis");
  // Allocations reach only tokens with the catalog's `audit` claim (or a hub without auth); without it the tiles name
  // no one.
  if (type === "allocation_changed") return setState(view.allocations, event, "machines");
  if (view.categoryOf.get(type) === "idle-time-predictions" && event.entity_type === "machine") {
    if (newerBySourceTime(view.predictions.get(event.entity_id), event)) view.predictions.set(event.entity_id, event);
    return render("machines");
  }
  if (isFeedEvent(event)) addToFeed(event);
}

// A feed event goes on top of the feed, and on its machine's tile when it is the newest alert about it by source
// time (an older one arriving later never replaces it).
function addToFeed(event) {
  view.feed.unshift(event);
  if (view.feed.length > 100) view.feed.length = 100;
  render("feed");
  if (event.entity_type === "machine" && newerBySourceTime(view.machineAlerts.get(event.entity_id), event)) {
    view.machineAlerts.set(event.entity_id, event);
    render("machines");
  }
}

// The feed events raised before this subscribe (`recent`, oldest first, so each lands on top as if it had come
// live). They are the past: the feed and the tiles' alerts only, never state — a state-carrying one (a failed
// quality report) is in the snapshot already, and applying an old copy could set a tile or a work order back. Nor
// do they move the resume position: the snapshot's last part, just before them, is where this connection stands.
function applyRecent(events) {
  for (const event of events) {
    if (!isOnLine(event) || !isFeedEvent(event)) continue;
    // Already in the feed: a state-carrying type the snapshot put there, or, after a reconnect that had no position
    // to resume from, the previous connection's answer. It moves to its place among these, shown once.
    const shown = view.feed.findIndex((e) => e.event_id === event.event_id && e.entity_id === event.entity_id);
    if (shown >= 0) view.feed.splice(shown, 1);
    else noteSeen(event);
    addToFeed(event);
  }
}

function setState(map, event, part) {
  const current = map.get(event.entity_id);
  if (!isCurrentState(event)) return;
  // How long it has been in this status. The hub stamps `status_since` when it knows (it saw the status begin, or
  // the event said it changed). Otherwise: a repeated status (a heartbeat) keeps the moment the page saw it start; a
  // status the page did not see begin (a snapshot's, or one after staleness) began at this event only if the event
  // says it changed (`previous_status`), else earlier, at a moment nobody knows: `since` is then a lower bound.
  const data = event.data || {};
  const status = data.current_status;
  const seen = current && !current.stale;
  let since = event.timestamp, sinceExact = true;
  if (event.status_since) {
    since = event.status_since;
  } else if (seen && (current.event.data || {}).current_status === status) {
    since = current.since; sinceExact = current.sinceExact;
  } else if (!seen) {
    sinceExact = data.previous_status !== undefined && data.previous_status !== status;
  }
  map.set(event.entity_id, { event, stale: false, since, sinceExact });
  render(part);
}

// "for 5 min", or "for ≥ 5 min" when the status began before the page first saw it.
function timeInStatus(entry) {
  return `for ${entry.sinceExact === false ? "≥ " : ""}${age(entry.since || entry.event.timestamp)}`;
}

function markStale(event) {
  const maps = {
    machine: ["machines", view.machines], operator: ["operators", view.operators], work_order: ["workorders", view.workorders],
    material: ["materials", view.materials], allocation: ["machines", view.allocations], kpi: ["kpis", view.kpis],
  };
  const entry = maps[event.entity_type];
  if (!entry) return;
  const [part, map] = entry;
  const current = map.get(event.entity_id);
  const last = (event.data && event.data.last_state) || (current && current.event);
  if (!last) return;
  // A state newer than the one that expired wins over the stale notice.
  if (current && !current.stale && Date.parse(current.event.timestamp) > Date.parse(last.timestamp)) return;
  map.set(event.entity_id, { event: last, stale: true, lastSeen: (event.data && event.data.last_seen) || heardAt(last) });
  render(part);
}

// Which events the feed shows, and how severe each is, come from the catalog's `feed` (docs/configuration.md): the
// field it names mapped through `values`, else that field's value when it is a level, else its fixed `severity`.
const severityLevels = ["info", "low", "medium", "high", "critical"];

function isFeedEvent(event) {
  return view.feedOf.has(event.event_type);
}

function severityOf(event) {
  const feed = view.feedOf.get(event.event_type) || {};
  if (feed.from && feed.from.startsWith("data.")) {
    const value = (event.data || {})[feed.from.slice(5)];
    if (value !== undefined && value !== null) {
      if (feed.values && Object.hasOwn(feed.values, String(value))) return feed.values[String(value)];
      const level = String(value).toLowerCase();
      if (severityLevels.includes(level)) return level;
    }
  }
  return feed.severity || "info";
}

// What the event says in words, from the first field of these it carries, with the figure it is about when it
// carries one: a KPI's value against its target (seed 004), a measurement against its nominal and tolerances (seed
// 002's MeasurementDefinition: upper_tol and lower_tol are the deviations allowed either side of nominal).
function detailOf(event) {
  const d = event.data || {};
  const words = d.message || d.description || d.label || d.kpi_name || d.reason || d.type || d.current_status || d.status || "";
  return [words, figureOf(d)].filter(Boolean).join(" ");
}

function figureOf(d) {
  const number = (value) => value.toLocaleString(undefined, { maximumFractionDigits: 4 });
  if (typeof d.value === "number" && typeof d.target === "number") return `${number(d.value)} (target ${number(d.target)})`;
  if (typeof d.value_numeric !== "number") return d.value_pass_fail || "";
  const unit = d.unit ? " " + d.unit : "";
  let spec = "";
  if (typeof d.nominal === "number") {
    const up = typeof d.upper_tol === "number" ? d.upper_tol : null, down = typeof d.lower_tol === "number" ? d.lower_tol : null;
    spec = up !== null && up === down ? ` ± ${number(up)}` : `${up !== null ? " +" + number(up) : ""}${down !== null ? " −" + number(down) : ""}`;
    spec = ` (nominal ${number(d.nominal)}${spec})`;
  }
  return `${number(d.value_numeric)}${unit}${spec}`;
}

function alertText(event) {
  return detailOf(event) || event.event_type.replace(/_/g, " ");
}

function describe(event) {
  const what = detailOf(event);
  return `${event.entity_type} ${event.entity_id}: ${event.event_type.replace(/_/g, " ")}${what ? " — " + what : ""}`;
}

// How long before its status began an alert still belongs to it. The alert and the status come from two sources on
// two clocks and paths (an MES alert, the machine's own status through the plant's Sparkplug broker), and an alert
// often announces the change it explains: with none, a breakdown's alert stamped 1 ms before the breakdown's own
// report was left off its tile.
const alertLeadMs = 3000;

// The alert a machine's tile shows: the newest about it, by source time, since its current status began (or just
// before, `alertLeadMs`). A change of status (say, to maintenance and back) is taken as the alert dealt with; the feed
// keeps it either way.
function tileAlert(entry) {
  const alert = view.machineAlerts.get(entry.event.entity_id);
  if (!alert) return null;
  // A start nobody saw ("for ≥ 5 min") is only a lower bound, from the latest heartbeat: an alert before it may well
  // be within the status, and stays until the page sees the status change.
  if (entry.sinceExact === false) return alert;
  return Date.parse(alert.timestamp) >= Date.parse(entry.since || entry.event.timestamp) - alertLeadMs ? alert : null;
}

// The allocations in force per machine: an allocation's latest state names its machine until it is released or
// completed (the catalog's `final` for allocations), as the hub's active sets count it; a reassignment moves it.
function allocationsByMachine() {
  const byMachine = new Map();
  for (const entry of present(view.allocations, "allocation")) {
    const d = entry.event.data || {};
    if (!d.machine_id || isFinal(entry.event, "allocation")) continue;
    if (!byMachine.has(d.machine_id)) byMachine.set(d.machine_id, []);
    byMachine.get(d.machine_id).push(entry.event);
  }
  return byMachine;
}

// "WO-2025-1234 · O-156" for each allocation in force on the machine: the order it runs and who runs it (a paused
// one says so).
function allocationLine(events) {
  if (!events || !events.length) return null;
  const words = events.map((e) => {
    const d = e.data || {};
    return [d.work_order_id, d.operator_id].filter(Boolean).join(" · ") + (d.change_type === "paused" ? " (paused)" : "");
  });
  const title = events.map((e) => `allocation ${e.entity_id}: ${e.data.change_type}`).join("; ");
  return h("div", { class: "meta allocation", "data-testid": "tile-allocation-" + events[0].data.machine_id, title }, words.join(", "));
}

// The ML engine's newest idle-time prediction for the machine, with its age: one every two minutes (seed 003 §4.3),
// so an old one reads as old rather than as the forecast now.
function predictionLine(event) {
  if (!event) return null;
  const d = event.data || {};
  const confidence = typeof d.confidence === "number" ? ` (${Math.round(d.confidence * 100)} %)` : "";
  return h("div", { class: "meta prediction", "data-testid": "tile-prediction-" + event.entity_id, title: `predicted ${age(event.timestamp)} ago` },
    `idle forecast ${d.predicted_idle_minutes} min${confidence}`);
}

// An operator by id, and by name when the event carries one: the catalog restricts names to tokens with the `pii`
// claim (seed 003 §12.1), so a screen without it shows ids only.
function operatorName(event) {
  const d = event.data || {};
  const name = d.name || [d.first_name, d.last_name].filter(Boolean).join(" ");
  return name ? `${event.entity_id} · ${name}` : event.entity_id;
}

// A material against the planning levels its inventory system sends (seed 003 §3.3): at or below the safety stock,
// at or below the reorder point, else ok. Without the levels it is ok: the hub has no figure of its own.
const levelWords = { safety: "below safety stock", reorder: "reorder point reached" };
function stockLevel(d) {
  const available = Number(d.available_quantity);
  if (typeof d.safety_stock_level === "number" && available <= d.safety_stock_level) return "safety";
  if (typeof d.reorder_point === "number" && available <= d.reorder_point) return "reorder";
  return "ok";
}

function quantity(value) {
  return typeof value === "number" ? value.toLocaleString(undefined, { maximumFractionDigits: 3 }) : "?";
}

// A counter's name, and whose count it is when that is not the line's: the shift's count of operators available is
// the plant's, beside the line's own.
function counterName(data) {
  const name = data.name.replace(/_/g, " ");
  return data.scope && data.scope !== "line" ? `${name} · ${data.scope}` : name;
}

// `part` of `whole` in whole percent, at most 100 (0 without a whole), and the bar that shows it (a work order's
// progress, a material's available stock). The width is set as a property: the page's Content-Security-Policy
// refuses inline style attributes.
function share(part, whole) {
  return whole > 0 ? Math.min(100, Math.round((part / whole) * 100)) : 0;
}

function shareBar(percent) {
  const bar = h("div", { class: "bar" }, h("span", {}));
  bar.firstChild.style.width = percent + "%";
  return bar;
}

// --- Rendering (coalesced to one frame) -------------------------------------------------------------------

const dirty = new Set();
let frameRequested = false;
function render(part) {
  dirty.add(part);
  if (frameRequested) return;
  frameRequested = true;
  requestAnimationFrame(() => {
    frameRequested = false;
    for (const p of dirty) renderers[p]();
    dirty.clear();
  });
}

// When the hub last heard of the entity: its TTL runs from there (ingest, `received_at`, the stale notice's
// `last_seen`), not from the source timestamp, which a device whose clock is behind dates minutes back. Counting from
// that, the page greyed a machine reporting every 30 s as stale, "last seen 6 min ago", while the hub held it fresh.
function heardAt(event) {
  return event.received_at || event.timestamp;
}

function isStale(entry, entityType) {
  if (entry.stale) return true;
  if (isFinal(entry.event, entityType)) return false;
  return pastTTL(entry, entityType);
}

function pastTTL(entry, entityType) {
  const ttl = view.ttlOf.get(entityType);
  return ttl ? Date.now() - Date.parse(heardAt(entry.event)) > ttl * 1000 : false;
}

// A final state (a completed work order: the catalog's `final`) ends its entity's story: no news follows, so its
// silence is not staleness. The hub lets it leave its cache quietly when its TTL passes; the page drops it then
// too, as a reload would, rather than greying it as if its source had gone quiet.
function isFinal(event, entityType) {
  const final = view.finalOf.get(entityType);
  if (!final) return false;
  // A boolean field's final value is written `true` in the catalog and served as "true" (a CAPA task's is_completed).
  return Object.entries(final).some(([field, values]) => {
    const value = (event.data || {})[field];
    return values.includes(typeof value === "boolean" ? String(value) : value);
  });
}

// The entries of `map` still on the hub's screen: a final state past its TTL has left.
function present(map, entityType) {
  for (const [id, entry] of map) {
    if (!entry.stale && isFinal(entry.event, entityType) && pastTTL(entry, entityType)) map.delete(id);
  }
  return [...map.values()];
}

const renderers = {
  machines() {
    const tiles = present(view.machines, "machine").sort((a, b) => a.event.entity_id.localeCompare(b.event.entity_id, undefined, { numeric: true }));
    const allocated = allocationsByMachine();
    $("machine-count").textContent = tiles.length ? `(${tiles.length})` : "";
    if (!tiles.length) return $("tiles").replaceChildren(h("p", { class: "empty" }, "No machine states on this line yet."));
    $("tiles").replaceChildren(...tiles.map((entry) => {
      const e = entry.event, d = e.data || {};
      const stale = isStale(entry, "machine");
      const alert = tileAlert(entry);
      const severity = alert ? severityOf(alert) : null;
      return h("div", { class: "tile", "data-testid": "tile-" + e.entity_id, "data-status": d.current_status, "data-stale": String(stale), "data-alert": severity },
        h("div", { class: "id" }, e.entity_id),
        h("div", { class: "status" }, d.current_status || "?"),
        h("div", { class: "meta" }, stale ? `stale · last seen ${age(entry.lastSeen || heardAt(e))} ago` : timeInStatus(entry)),
        // Rounded to a tenth: an MES computes OEE in floating point (87.123456789), and a tile has no room for it.
        typeof d.oee_percentage === "number" ? h("div", { class: "meta" }, `OEE ${Math.round(d.oee_percentage * 10) / 10} %`) : null,
        allocationLine(allocated.get(e.entity_id)),
        predictionLine(view.predictions.get(e.entity_id)),
        alert ? h("div", { class: "alert", "data-testid": "tile-alert-" + e.entity_id, title: describe(alert) },
          h("div", {}, h("b", {}, `⚠ ${severity}`), ` · ${age(alert.timestamp)} ago`), h("span", {}, alertText(alert))) : null);
    }));
  },
  operators() {
    const groups = new Map();
    for (const entry of present(view.operators, "operator")) {
      const status = (entry.event.data || {}).current_status || "unknown";
      if (!groups.has(status)) groups.set(status, []);
      groups.get(status).push(entry);
    }
    if (!groups.size) return $("operators").replaceChildren(h("p", { class: "empty" }, "No operators yet."));
    $("operators").replaceChildren(...[...groups.entries()].sort().map(([status, entries]) =>
      h("div", { class: "opgroup", "data-testid": "operators-" + status }, h("b", {}, `${status} (${entries.length})`),
        ...entries.map((entry) => h("span", { class: "chip", "data-testid": "operator-" + entry.event.entity_id, "data-stale": String(isStale(entry, "operator")), title: (entry.event.data || {}).location },
          operatorName(entry.event))))));
  },
  workorders() {
    // The orders still running first; finished ones (the catalog's `final`) below them until they leave.
    const entries = present(view.workorders, "work_order").sort((a, b) =>
      isFinal(a.event, "work_order") - isFinal(b.event, "work_order") || a.event.entity_id.localeCompare(b.event.entity_id, undefined, { numeric: true }));
    if (!entries.length) return $("workorders").replaceChildren(h("p", { class: "empty" }, "No work orders yet."));
    $("workorders").replaceChildren(...entries.map((entry) => {
      const d = entry.event.data || {};
      // Both quantities are optional: a status-only update says nothing of them, which is not "0 produced".
      const ordered = Number(d.quantity_ordered) || 0, produced = Number(d.quantity_produced) || 0;
      const counted = d.quantity_produced !== undefined && d.quantity_produced !== null;
      const percent = share(produced, ordered);
      const bar = shareBar(percent);
      const stale = isStale(entry, "work_order");
      return h("div", { class: "wo", "data-testid": "wo-" + entry.event.entity_id, "data-stale": String(stale) },
        h("div", { class: "label" }, h("span", {}, `${entry.event.entity_id} · ${d.current_status || ""}${stale ? " · stale" : ""}`),
          h("span", {}, !counted ? (ordered ? `? / ${ordered}` : "") : ordered ? `${produced} / ${ordered} (${percent} %)` : `${produced}`)), bar);
    }));
  },
  materials() {
    const entries = present(view.materials, "material").sort((a, b) => a.event.entity_id.localeCompare(b.event.entity_id, undefined, { numeric: true }));
    if (!entries.length) return $("materials").replaceChildren(h("p", { class: "empty" }, "No materials on this line yet."));
    $("materials").replaceChildren(...entries.map((entry) => {
      const d = entry.event.data || {};
      const level = stockLevel(d);
      const stale = isStale(entry, "material");
      const bar = shareBar(share(Number(d.available_quantity), Number(d.on_hand_quantity)));
      return h("div", { class: "material", "data-testid": "material-" + entry.event.entity_id, "data-level": level, "data-stale": String(stale) },
        h("div", { class: "label" },
          h("span", {}, `${entry.event.entity_id}${level !== "ok" ? " · " + levelWords[level] : ""}${stale ? " · stale" : ""}`),
          h("span", {}, `${quantity(d.available_quantity)} available${d.on_hand_quantity !== undefined ? " / " + quantity(d.on_hand_quantity) + " on hand" : ""}`)),
        bar);
    }));
  },
  kpis() {
    // Seed 004's KPI numbers first (3 efficiency, 9 performance), then by name.
    const entries = present(view.kpis, "kpi").sort((a, b) =>
      ((a.event.data || {}).kpi_number || 0) - ((b.event.data || {}).kpi_number || 0) || a.event.entity_id.localeCompare(b.event.entity_id));
    if (!entries.length) return $("kpis").replaceChildren(h("p", { class: "empty" }, "No KPIs yet."));
    $("kpis").replaceChildren(...entries.map((entry) => {
      const d = entry.event.data || {};
      const stale = isStale(entry, "kpi");
      const below = typeof d.value === "number" && typeof d.target === "number" && d.value < d.target;
      const figure = typeof d.value === "number" ? d.value.toLocaleString(undefined, { maximumFractionDigits: 1 }) : "?";
      return h("div", { class: "counter kpi", "data-testid": "kpi-" + entry.event.entity_id, "data-below": String(below), "data-stale": String(stale) },
        h("div", { class: "value" }, figure),
        h("div", { class: "name" }, `${d.kpi_name || entry.event.entity_id}${typeof d.target === "number" ? " · target " + d.target : ""}${stale ? " · stale" : ""}`));
    }));
  },
  counters() {
    if (!view.counters.size) return $("counters").replaceChildren(h("p", { class: "empty" }, "No counters yet."));
    // In the catalog's order (its `tallies`), not arrival order, which differs from one load to the next.
    const declared = (view.catalog && view.catalog.tallies || []).map((t) => t.name);
    const rank = (name) => declared.includes(name) ? declared.indexOf(name) : declared.length;
    const ordered = [...view.counters.values()].sort((a, b) =>
      rank(a.data.name) - rank(b.data.name) || a.data.name.localeCompare(b.data.name));
    $("counters").replaceChildren(...ordered.map((e) =>
      h("div", { class: "counter", "data-testid": "counter-" + e.data.name },
        h("div", { class: "value" }, String(e.data.value)), h("div", { class: "name" }, counterName(e.data)))));
  },
  feed() {
    $("feed").replaceChildren(...view.feed.map((e) =>
      h("li", { "data-severity": severityOf(e), "data-testid": "feed-item" },
        h("time", {}, timeOf(e.timestamp)), h("span", { class: "sev" }, severityOf(e)), h("span", {}, describe(e)))));
  },
};

setInterval(() => { render("machines"); render("operators"); render("workorders"); render("materials"); render("kpis"); }, 5000);  // ages and client-side staleness

// --- Connection -------------------------------------------------------------------------------------------

let socket = null, source = null, retryDelay = 500, retryTimer = null, generation = 0;

// The line's channels, and the `counters` channel for the counters of no line (the shift's) when the token allows it.
// A token for one line (`line:Line-2:*`) brings that line's counters with the line; asking it for `counters` as
// well had the hub refuse the SSE stream whole (403) and answer every socket's subscribe with an error.
function channelsFor(line) {
  const allowed = tokenPatterns();
  const counters = !allowed || allowed.some((p) => p === "*" || p === "counters");
  return counters ? ["line:" + line + ":*", "counters"] : ["line:" + line + ":*"];
}

function resetState() {
  view.machines.clear(); view.operators.clear(); view.workorders.clear(); view.counters.clear(); view.feed.length = 0;
  view.materials.clear(); view.allocations.clear(); view.predictions.clear(); view.kpis.clear();
  view.machineAlerts.clear();
  for (const part of Object.keys(renderers)) render(part);
}

function connect() {
  clearTimeout(retryTimer);
  const mine = ++generation;
  if (socket) { socket.onclose = null; socket.close(); socket = null; }
  if (source) { source.close(); source = null; }
  if (!view.line) { setConnection("idle", "pick a line"); return; }
  setConnection(view.lastEventId ? "reconnecting" : "connecting", view.lastEventId ? "reconnecting…" : "connecting…");
  if (view.transport === "sse") return connectSSE(mine);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  // The line is subscribed in the URL: the hub answers as the socket opens, so the snapshot (or, reconnecting, the
  // replay since the last event seen) comes without a subscribe round trip first.
  const query = lineQuery();
  const ws = new WebSocket(`${scheme}//${location.host}/v1/ws?${query}`);
  socket = ws;
  let opened = false;
  unanswered = false;
  ws.onopen = () => { opened = true; };
  ws.onmessage = (message) => {
    if (mine !== generation) return;
    unanswered = false;
    handle(JSON.parse(message.data));
  };
  ws.onclose = async (close) => {
    if (mine !== generation) return;
    socket = null;
    const words = closeWords[close.code] || `closed (${close.code}${close.reason ? ": " + close.reason : ""})`;
    if (close.code === 4401 || close.code === 4003) {
      setConnection("error", "token refused");
      showError(`Connection refused: ${words}${close.reason ? " (" + close.reason + ")" : ""}`);
      return;  // retrying cannot help until the token changes
    }
    if (!opened) {
      // A handshake the hub refused (a line typed with a space, say: a malformed query) reads as 1006 here.
      const refusal = await refusalOf("/v1/ws?" + query);
      if (mine !== generation) return;
      if (refusal) {
        showError("Connection refused: " + refusal.reason);
        if (refusal.final) return setConnection("error", "refused");
        return scheduleReconnect();
      }
    }
    if (close.code !== 1000) showError(`Connection lost: ${words}`);
    scheduleReconnect();
  };
}

// Browsers hide why a WebSocket handshake or an EventSource request was refused; the hub answers the same URL, asked
// again as a plain GET, with its JSON error. `final` when asking again cannot help until the user changes something
// (a malformed query, a refused token or pattern). Null when the hub now takes the request (a stream's answer, which
// never ends, is not read) or cannot be reached.
async function refusalOf(url) {
  const asking = new AbortController();
  try {
    const response = await fetch(url, { signal: asking.signal });
    if (response.ok || response.status === 426) return null;
    const body = await response.json().catch(() => null);
    return {
      reason: body && body.error ? `${body.error.field} ${body.error.reason}` : `HTTP ${response.status}`,
      status: response.status,
      final: [400, 401, 403].includes(response.status),
    };
  } catch (e) {
    return null;
  } finally {
    asking.abort();
  }
}

// A connection can die without a close (a Wi-Fi roam, a hub host that lost power): its socket then stays silent for
// as long as TCP takes to give up, many minutes, and the screen would say live meanwhile. So the page pings the hub
// every `alive_ms` (15 s) and drops the connection, to resume it with `since`, when nothing at all came back by the
// next tick. (An `EventSource` cannot do this: the hub's heartbeats are comments, which the browser keeps to itself.)
let unanswered = false;
setInterval(() => {
  if (!socket || socket.readyState !== WebSocket.OPEN) return;
  if (unanswered) {
    socket.onclose = null; socket.onmessage = null; socket.close(); socket = null;
    showError("Connection lost: the hub stopped answering");
    return scheduleReconnect();
  }
  unanswered = true;
  socket.send(JSON.stringify({ op: "ping", id: "alive" }));
}, Number(params.get("alive_ms")) || 15000);

// The line's channels with a snapshot and the newest feed events (alerts are news, in no snapshot), resuming after
// the last event seen: the same query for `/v1/ws` and `/v1/sse`. `recent` is asked for when resuming too: the hub
// leaves it out when the replay brought the page up to date, and sends it when it had to `resync` instead (the
// feed was cleared for the fresh snapshot, and would otherwise stay empty).
function lineQuery() {
  const query = new URLSearchParams({ channels: channelsFor(view.line).join(","), snapshot: "true", recent: "50" });
  if (view.lastEventId) query.set("since", view.lastEventId);
  if (view.token) query.set("token", view.token);
  return query.toString();
}

function connectSSE(mine) {
  const es = new EventSource("/v1/sse?" + lineQuery());
  source = es;
  es.onopen = () => { if (mine === generation) setConnection("live", "live (SSE)"); };
  es.onmessage = (message) => { if (mine === generation) handle(JSON.parse(message.data)); };
  es.addEventListener("close", (message) => { if (mine === generation) showError("Stream closed by the hub: " + JSON.parse(message.data).reason); });
  es.onerror = async () => {
    if (mine !== generation) return;
    if (es.readyState === EventSource.CLOSED) {
      // EventSource gives up on an HTTP error; ask the hub for the reason in words. A refused token (an expired one,
      // when the hub ended the stream at its `exp`) or query is final, as a WebSocket's 4401 and 4003 are.
      const refusal = await refusalOf(es.url);
      if (mine !== generation) return;
      showError("Stream refused: " + (refusal ? refusal.reason : "the hub is unreachable"));
      if (refusal && refusal.final) return setConnection("error", refusal.status === 401 ? "token refused" : "refused");
      scheduleReconnect();
    } else {
      setConnection("reconnecting", "reconnecting… (SSE)");  // the browser resumes with Last-Event-ID
    }
  };
}

function scheduleReconnect() {
  const delay = Math.min(30000, retryDelay) * (0.75 + Math.random() * 0.5);
  retryDelay = Math.min(30000, retryDelay * 2);
  setConnection("reconnecting", `reconnecting in ${Math.round(delay / 100) / 10} s`);
  retryTimer = setTimeout(connect, delay);
}

function handle(message) {
  switch (message.op) {
    case "subscribed":
      // The line's subscribe is the URL's, answered without an id.
      retryDelay = 500;
      setConnection("live", view.transport === "sse" ? "live (SSE)" : "live");
      break;
    case "snapshot":
      // The `counters` channel carries every line's counters, in the snapshot as live.
      for (const e of message.events) if (isOnLine(e)) apply(e, false);
      // The snapshot is complete: every panel says what the line has, "none yet" included (the machines panel kept
      // the page's "Pick a line" until the next 5 s repaint when the line had no machine states).
      if (!message.more) for (const part of Object.keys(renderers)) render(part);
      if (!message.more && message.position && (isToken(message.position) || !view.lastEventId || compareIds(message.position, view.lastEventId) > 0)) view.lastEventId = message.position;
      break;
    case "recent":
      // After the snapshot, before live.
      applyRecent(message.events);
      break;
    case "event":
      if (isOnLine(message.event)) apply(message.event, true);
      if (isToken(message.position)) view.lastEventId = message.position;
      break;
    case "resync":
      showError("Resynchronising: the hub could not replay everything missed (" + message.reason + ")");
      resetState();
      // `history_gap` and `history_unavailable` answer this connection's subscribe, and its fresh snapshot follows (we
      // always ask for one).
      // `engine_gap` is the engine's news (Redis restarted empty), answered by nothing: subscribe afresh, for the
      // snapshot and the recent alerts, or the screen stayed blank until each machine reported again.
      if (message.reason === "engine_gap") { view.lastEventId = null; connect(); }
      break;
    case "error":
      showError(`${message.code.replace(/_/g, " ")}: ${message.message}`);
      break;
    case "reported": case "pong": case "unsubscribed": case "authenticated":
      break;
  }
}

// This line's events, and the counters of no line (the shift's, the plant's), which every line's screen shows.
function isOnLine(event) {
  return event.line === view.line || event.event_type === "counter_changed" && !event.line;
}

// --- Power users: extra patterns and a filter -------------------------------------------------------------

// A stream of its own (`GET /v1/sse`), apart from the line's connection: the hub tells no subscription's events from
// another's on one connection, and subscribing a pattern again there replaces its filter. On the line's socket, a
// filter on the line's own pattern (`line:Line-2:*` with `data.severity in (high, critical)`) left the tiles
// without their status events, and the list showed the line's events the filter refused.
let customSource = null, customQuery = null, customRetry = null;

function addCustom(event) {
  const list = $("custom");
  list.prepend(h("li", {}, h("time", {}, timeOf(event.timestamp)), h("span", {}, JSON.stringify(event))));
  while (list.childElementCount > 200) list.lastElementChild.remove();
}

// The panel's Subscribe: the fields' patterns and filter, kept in the user's session too.
function subscribeCustom() {
  if (applyCustom()) saveSession();
}

// Opens the stream the fields ask for; false (and says why) when they ask for none.
function applyCustom() {
  const patterns = $("patterns").value.split(",").map((s) => s.trim()).filter(Boolean);
  const filter = $("filter").value.trim();
  if (!patterns.length) { showError("Enter at least one pattern, e.g. alerts or machine:M-203"); return false; }
  const query = new URLSearchParams({ channels: patterns.join(","), snapshot: "true" });
  if (filter) query.set("filter", filter);
  customQuery = query;
  $("custom").replaceChildren();
  openCustom();
  return true;
}

function openCustom() {
  clearTimeout(customRetry);
  if (customSource) customSource.close();
  if (!customQuery) return;
  const query = new URLSearchParams(customQuery);
  if (view.token) query.set("token", view.token);
  const es = new EventSource("/v1/sse?" + query);
  customSource = es;
  // `live` once the hub answered the subscribe (its snapshot, empty for news): from then on no event is missed.
  $("custom").dataset.state = "connecting";
  es.onmessage = (message) => {
    const answer = JSON.parse(message.data);
    if (answer.op === "event") addCustom(answer.event);
    else if (answer.op === "snapshot") { for (const event of answer.events) addCustom(event); $("custom").dataset.state = "live"; }
    else if (answer.op === "error") showError(`Patterns and filters: ${answer.code.replace(/_/g, " ")}: ${answer.message}`);
  };
  es.onerror = async () => {
    if (customSource !== es || es.readyState !== EventSource.CLOSED) return;  // else the browser resumes it
    const refusal = await refusalOf(es.url);
    if (customSource !== es) return;
    $("custom").dataset.state = "error";
    showError("Patterns and filters: " + (refusal ? refusal.reason : "the hub is unreachable"));
    if (!refusal || !refusal.final) customRetry = setTimeout(() => { if (customSource === es) openCustom(); }, 5000);
  };
}

// --- Latency reports and compliance -----------------------------------------------------------------------

setInterval(() => {
  if (!socket || socket.readyState !== WebSocket.OPEN || !view.samples.size) return;
  const samples = Object.fromEntries(view.samples);
  view.samples.clear();
  socket.send(JSON.stringify({ op: "report", id: "latency", samples_ms: samples }));
}, Number(params.get("report_ms")) || 10000);

async function refreshCompliance() {
  try {
    const response = await fetch("/v1/slo", { headers: authHeaders() });
    if (!response.ok) return;
    const slo = await response.json();
    const status = (slo.categories || []).find((c) => c.category === "resource-status");
    const el = $("compliance");
    if (!status) return;
    const figures = status.clients && status.clients.count ? status.clients : status.hub;
    if (!figures || !figures.count) { el.textContent = "no status updates measured yet"; return; }
    // Rounded down, to hundredths: rounded to the nearest tenth, 1 late update in 2,000 read "100.0 %".
    const ratio = figures.within_budget_ratio;
    const percent = ratio === 1 ? "100" : (Math.floor(ratio * 10000 + 1e-9) / 100).toFixed(2);
    el.textContent = `${percent} % of status updates under ${status.budget_ms} ms in the last ${Math.round(slo.window_seconds / 60)} min`;
    el.className = "compliance " + (ratio >= 0.999 ? "ok" : "bad");
  } catch (e) { /* shown on the next refresh */ }
}
setInterval(refreshCompliance, 10000);

// --- Start ------------------------------------------------------------------------------------------------

async function start() {
  clearErrors();
  view.token = $("token").value.trim();
  view.line = $("line").value.trim() || null;
  let saved = null;
  try {
    await loadCatalog();
    saved = await loadSession();
    if (!view.line && saved && saved.line) { view.line = saved.line; $("line").value = view.line; }
    const lines = await discoverLines();
    if (!view.line && lines.length) { view.line = lines[0]; $("line").value = view.line; }
  } catch (e) {
    setConnection("error", "refused");
    showError("Cannot load the catalog: " + e.message);
    return;
  }
  rememberLine();
  refreshCompliance();
  connect();
  if (saved && saved.patterns && !$("patterns").value) {
    $("patterns").value = saved.patterns;
    $("filter").value = saved.filter || "";
    applyCustom();  // what the session holds already: read, not written back
  } else if (customSource) {
    openCustom();  // with the token just entered
  }
}

// --- The user's session -----------------------------------------------------------------------------------

// The line and the patterns panel are kept in the user's session on the hub (GET/PUT /v1/session, seed 003 §4.2:
// 8 hours after its last use), so the supervisor's screen opens as they left it on any device. Only with a token that
// names its user (`sub`); without one the address keeps the line, as before.
async function loadSession() {
  if (!view.token) return null;
  try {
    const response = await fetch("/v1/session", { headers: authHeaders() });
    if (!response.ok) return null;  // none yet (404), or a token that names no user (403)
    return (await response.json()).session;
  } catch (e) {
    return null;  // the screen opens as the address says; the connection shows what is wrong with the hub
  }
}

async function saveSession() {
  if (!view.token) return;
  const session = { line: view.line || "", patterns: $("patterns").value.trim(), filter: $("filter").value.trim() };
  try {
    const response = await fetch("/v1/session", {
      method: "PUT", headers: { ...authHeaders(), "Content-Type": "application/json" }, body: JSON.stringify(session),
    });
    if (!response.ok && response.status !== 401 && response.status !== 403) {
      const body = await response.json().catch(() => ({}));
      showError("Cannot keep these settings: " + (body.error ? body.error.reason : "HTTP " + response.status));
    }
  } catch (e) { /* the hub is unreachable: the connection says so */ }
}

// The line shown is in the address, so a reload, a bookmark or a kiosk's restart opens the same line.
function rememberLine() {
  const url = new URL(location.href);
  if (view.line) url.searchParams.set("line", view.line);
  else url.searchParams.delete("line");
  history.replaceState(null, "", url);
}

function switchLine() {
  view.line = $("line").value.trim() || null;
  view.lastEventId = null;
  resetState();
  rememberLine();
  saveSession();
  connect();
}

$("token").value = view.token;
$("line").value = params.get("line") || "";
$("settings").addEventListener("submit", (submit) => { submit.preventDefault(); view.lastEventId = null; resetState(); start(); });
$("line").addEventListener("change", switchLine);
$("subscribe").addEventListener("click", subscribeCustom);
window.statushub = view;  // for the browser tests and the curious
start();
