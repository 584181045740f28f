// The dashboard page: plain browser JavaScript, no build step. It reads /api/state, keeps a live
// event stream (/api/events) open for traffic and changes, and calls the JSON API for actions.
// Everything the app sent is put in the page as text (textContent), never as HTML.

const MAX_LOG_ROWS = 500;
/** Most lines of service output the log keeps (a row of output holds many): a chatty service costs bounded memory. */
const MAX_OUTPUT_LINES = 5000;
const $ = (id) => document.getElementById(id);

let state;
let connections = [];
let logCount = 0;
/** Lines of service output in the log now. */
let outputLines = 0;

/** Drops the oldest rows while the log holds too many, or too much service output. */
function trimLog() {
  const body = $("log-table").tBodies[0];
  while (body.rows.length > MAX_LOG_ROWS || outputLines > MAX_OUTPUT_LINES) {
    const row = body.lastElementChild;
    if (!row) break;
    outputLines -= Number(row.dataset.lines ?? 0);
    row.remove();
  }
}

/**
 * The characters that reorder text around them (bidi controls and marks). In a client's message,
 * query, close reason, a kv key or a line of output they would make it, and what follows it in its
 * row, read otherwise than it is ("\u202Egnp.exe" shows as "exe.png"; a key "\u202Eevil" as
 * "live"): the page shows them as their code point instead, such as [U+202E].
 */
const REORDERING = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
function visible(text) {
  return String(text ?? "").replace(
    REORDERING,
    (c) => `[U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}]`,
  );
}

/** Makes an element: el("td", { class: "x" }, "text", otherElement). Text shows as visible() makes it. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, name === "title" ? visible(value) : value);
  }
  for (const child of children) node.append(child instanceof Node ? child : visible(child));
  return node;
}

function time(ms) {
  const d = new Date(ms);
  return `${d.toLocaleTimeString([], { hour12: false })}.${String(d.getMilliseconds()).padStart(3, "0")}`;
}

/**
 * This run's key, from the address run printed (…/#key=<key>): every API request carries it, since
 * every user of the machine can reach 127.0.0.1. A fragment, so the browser never sends it itself.
 */
const KEY = new URLSearchParams(location.hash.slice(1)).get("key") ?? "";
// An address with another key pasted into this tab changes only the fragment: start over with it.
window.addEventListener("hashchange", () => location.reload());

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { "X-Dashboard-Key": KEY, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const result = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(result.error || `${response.status} ${response.statusText}`);
  return result;
}

function status(id, text, error = false) {
  const node = $(id);
  node.textContent = visible(text);
  node.classList.toggle("error", error);
}

// ---- resources

function bytes(n) {
  return n % 1024 === 0 ? (n % (1024 * 1024) === 0 ? `${n / 1024 / 1024} MB` : `${n / 1024} KB`) : `${n} B`;
}

function duration(ms) {
  for (const [unit, size] of [
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
  ])
    if (ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

function renderState() {
  $("project").textContent = state.project;
  $("provider").textContent = `provider: ${state.provider}`;
  document.title = `${state.project} · nitric-like dashboard`;
  const urls = new Map(state.sockets.map((s) => [s.name, s.url]));
  // One key per handler: a socket's event, or one of its message routes (r.route).
  const live = new Set(state.registrations.map((r) => `${r.socket}/${r.event}/${r.route ?? ""}`));
  const mark = (up) => el("span", { class: up ? "ok" : "missing" }, up ? "● " : "○ ");
  const handler = (socket, event) => {
    const service = socket.handlers[event];
    if (!service) return el("td", { class: "missing" }, "none");
    const up = live.has(`${socket.name}/${event}/`);
    const cell = el("td", { title: up ? "registered" : "not registered yet" }, mark(up), service);
    // A socket's message routes, under its message handler: the property that selects them
    // (routeBy, "action" by default), the route's name, and the service that handles it.
    if (event === "message") {
      for (const r of socket.routes ?? []) {
        const routeUp = live.has(`${socket.name}/message/${r.action}`);
        cell.append(
          el(
            "div",
            { class: "route", "data-route": r.action, title: routeUp ? "registered" : "not registered yet" },
            mark(routeUp),
            el("code", {}, `${socket.routeBy ?? "action"}: ${r.action}`),
            ` ${r.service}`,
          ),
        );
      }
    }
    return cell;
  };
  // Where each service is: its state, and why it waits (as run printed it).
  const serviceState = {
    started: ["ok", "● running"],
    starting: ["pending", "○ starting"],
    restarting: ["pending", "↻ restarting after a crash"],
    waiting: ["bad", "✕ waiting for a fix"],
    crashLoop: ["bad", "✕ crash loop: waiting for a fix"],
    hosted: ["ok", "● in its function"],
    unknown: ["pending", "?"],
  };
  $("services").tBodies[0].replaceChildren(
    ...(state.services ?? []).map((s) => {
      const [kind, text] = (s.crashLoop ? serviceState.crashLoop : serviceState[s.state]) ?? serviceState.unknown;
      return el(
        "tr",
        { "data-service": s.name, "data-state": s.state },
        el("td", {}, el("strong", {}, s.name)),
        el("td", {}, el("code", {}, s.file)),
        el(
          "td",
          {},
          el("span", { class: kind }, text),
          typeof s.restartAt === "number" ? el("div", { class: "restart-at" }, `new copy at ${time(s.restartAt)}`) : "",
          s.reason ? el("div", { class: "reason" }, s.reason) : "",
          s.detail ? el("div", { class: "detail" }, s.detail) : "",
        ),
      );
    }),
  );
  const sockets = state.spec.resources.filter((r) => r.kind === "websocket");
  $("sockets").tBodies[0].replaceChildren(
    ...sockets.map((s) =>
      el(
        "tr",
        { "data-socket": s.name },
        el("td", {}, el("strong", {}, s.name)),
        el("td", {}, el("code", {}, urls.get(s.name) ?? "not running")),
        handler(s, "connect"),
        handler(s, "message"),
        handler(s, "disconnect"),
        el("td", { class: "open-count" }, connections.filter((c) => c.socket === s.name).length),
      ),
    ),
  );
  $("limits").tBodies[0].replaceChildren(
    ...Object.entries(state.limits ?? {}).map(([name, l]) =>
      el(
        "tr",
        { "data-socket": name },
        el("td", {}, el("strong", {}, name)),
        el("td", {}, bytes(l.maxMessageBytes)),
        el("td", {}, duration(l.idleTimeoutMs)),
        el("td", {}, duration(l.maxConnectionAgeMs)),
        el("td", {}, l.maxConnections.toLocaleString("en")),
        el("td", {}, `${l.messagesPerSecond.toLocaleString("en")}/s (${l.messageBurst.toLocaleString("en")})`),
        el("td", {}, duration(l.handlerTimeoutMs)),
      ),
    ),
  );
  // A provider that reports no limits (the aws emulator: API Gateway's own apply) shows no empty table.
  const noLimits = Object.keys(state.limits ?? {}).length === 0;
  $("limits").hidden = noLimits;
  $("limits-title").hidden = noLimits;
  const stores = state.spec.resources.filter((r) => r.kind === "kv");
  $("stores").tBodies[0].replaceChildren(
    ...stores.map((s) => el("tr", {}, el("td", {}, el("strong", {}, s.name)), el("td", {}, s.declaredBy.join(", ")))),
  );
  // Each secret's newest version, or how to give it one: the server never sends values.
  const versions = new Map((state.secretVersions ?? []).map((v) => [v.name, v.version]));
  const secrets = state.spec.resources.filter((r) => r.kind === "secret");
  $("secrets").tBodies[0].replaceChildren(
    ...secrets.map((s) => {
      const version = versions.get(s.name);
      return el(
        "tr",
        { "data-secret": s.name },
        el("td", {}, el("strong", {}, s.name)),
        el("td", {}, s.declaredBy.join(", ")),
        el(
          "td",
          {},
          version === undefined
            ? el("span", { class: "muted" }, `no value yet: nitric-like secret put ${s.name}`)
            : el("code", {}, version),
        ),
      );
    }),
  );
  // The .env files and the names they set: the server never sends values.
  const env = state.env ?? { files: [], names: [] };
  $("env").textContent =
    env.files.length === 0
      ? "no .env files"
      : `${env.files.join(", ")}: ${env.names.join(", ") || "no variables"} (values not shown)`;
  $("policies").tBodies[0].replaceChildren(
    ...state.spec.policies.map((p) =>
      el(
        "tr",
        {},
        el("td", {}, p.service),
        el("td", {}, `${p.resource.kind} ${p.resource.name}`),
        el("td", {}, p.permissions.join(", ")),
      ),
    ),
  );
  fillSelect(
    $("send-socket"),
    sockets.map((s) => s.name),
  );
  fillSelect(
    $("client-socket"),
    state.sockets.filter((s) => s.url).map((s) => s.name),
  );
  clientControls();
  const storeSelect = $("kv-store");
  const hadStores = storeSelect.options.length > 0;
  fillSelect(
    storeSelect,
    stores.map((s) => s.name),
  );
  if (!hadStores && stores.length > 0 && state.inspect && !state.kvUnavailable) listKeys();
  for (const id of ["send-form", "kv-form", "kv-editor"]) {
    for (const node of $(id).elements) node.disabled = !state.inspect || (id !== "send-form" && !!state.kvUnavailable);
  }
  if (!state.inspect) status("send-status", `provider "${state.provider}" offers no live inspection`, true);
  if (state.kvUnavailable) status("kv-status", state.kvUnavailable, true);
}

function fillSelect(select, values) {
  const current = select.value;
  select.replaceChildren(...values.map((v) => el("option", { value: v }, v)));
  if (values.includes(current)) select.value = current;
}

// ---- connections

/**
 * Lists the connections again. One listing is asked for at a time: a slow one (thousands of
 * connections) that answered after a newer one would put back connections that have closed, and
 * nothing would correct it until the next connect or disconnect. Asked while one is on its way,
 * it asks once more when that one is in, so the last listing shown is never older than the ask.
 */
async function refreshConnections() {
  if (!state?.inspect) return;
  if (listing) {
    listAgain = true;
    return listing;
  }
  listing = (async () => {
    try {
      do {
        listAgain = false;
        const listed = await api("GET", "/api/connections");
        // The run stopped while this was on its way: the page shows no connections now.
        if (!state?.inspect) return;
        // Unchanged (most refreshes after a message): the rows stay, with what the user opened or points at.
        const text = JSON.stringify(listed);
        if (text === listedText) continue;
        listedText = text;
        connections = listed;
        renderConnections();
      } while (listAgain);
    } finally {
      listing = undefined;
    }
  })();
  return listing;
}
/** The last listing as received, to tell whether a refresh changed anything. */
let listedText = "";
/** The listing on its way, if any, and whether it was asked for again meanwhile. */
let listing;
let listAgain = false;

/** How much of an identity or a state a row shows before "more" (both can be kilobytes). */
const PREVIEW_CHARS = 80;
/** How much of one the expanded view shows: a state is at most 16 KB, an identity 8 KB. */
const FULL_CHARS = 20000;

/** JSON text as the app sent it, indented when it parses; at most FULL_CHARS of it. */
function pretty(json) {
  let text = json;
  try {
    text = JSON.stringify(JSON.parse(json), null, 2);
  } catch {
    // Shown as it is.
  }
  return text.length > FULL_CHARS
    ? `${text.slice(0, FULL_CHARS)}\n… (${text.length - FULL_CHARS} more characters)`
    : text;
}

/** The values open in the list being replaced, as `<connection id>\u0000<class>`. */
let openExtras = new Set();

/** One labelled value: short ones inline, long ones as a preview that opens to the whole. */
function jsonLine(id, label, json, cls) {
  if (json.length <= PREVIEW_CHARS) {
    return el("div", { class: `extra ${cls}` }, el("span", { class: "label" }, label), " ", el("code", {}, json));
  }
  const details = el(
    "details",
    { class: `extra ${cls}` },
    el(
      "summary",
      {},
      el("span", { class: "label" }, label),
      " ",
      el("code", {}, `${json.slice(0, PREVIEW_CHARS)}…`),
      el("span", { class: "muted" }, ` ${json.length.toLocaleString("en")} chars`),
    ),
    el("pre", {}, pretty(json)),
  );
  details.open = openExtras.has(`${id}\u0000${details.className}`);
  return details;
}

/** A connection's identity, rooms and state: all the app's (or its client's) data, so all text. */
function extrasCell(c) {
  const cell = el("td", { class: "extras" });
  if (c.auth) cell.append(jsonLine(c.id, "identity", c.auth, "auth"));
  if (c.rooms?.length) {
    const sorted = [...c.rooms].sort();
    const rooms = sorted.join(", ");
    if (rooms.length <= PREVIEW_CHARS) {
      cell.append(el("div", { class: "extra rooms" }, el("span", { class: "label" }, "rooms"), " ", rooms));
    } else {
      const details = el(
        "details",
        { class: "extra rooms" },
        el(
          "summary",
          {},
          el("span", { class: "label" }, `${sorted.length} rooms`),
          " ",
          `${rooms.slice(0, PREVIEW_CHARS)}…`,
        ),
        el("pre", {}, sorted.join("\n")),
      );
      details.open = openExtras.has(`${c.id}\u0000${details.className}`);
      cell.append(details);
    }
  }
  if (c.state) cell.append(jsonLine(c.id, "state", c.state, "state"));
  if (c.unreadable) {
    cell.append(el("div", { class: "extra unreadable muted" }, `rooms and state not shown: ${c.unreadable}`));
  }
  if (!cell.firstChild) cell.append(el("span", { class: "muted" }, "none"));
  return cell;
}

/** Rooms and state change on messages too: the list follows, at most twice a second. */
let refreshTimer;
function refreshConnectionsSoon() {
  if (refreshTimer !== undefined) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = undefined;
    refreshConnections().catch(() => {});
  }, 500);
}

/**
 * Most rows the connection table draws (the newest of those the filter matches): a load test may
 * hold thousands of connections open, and drawing every one on each listing stalls the page.
 */
const MAX_CONNECTION_ROWS = 200;

/** The text a connection is filtered by, lower case. */
function connectionText(c) {
  const query = Object.entries(c.query)
    .map(([k, v]) => `${k}=${v.join(",")}`)
    .join(" ");
  return `${c.socket} ${c.id} ${c.remoteAddress} ${query} ${(c.headers["user-agent"] ?? [""])[0]}`.toLowerCase();
}

function renderConnections() {
  // A value the user opened stays open when the list is drawn again.
  openExtras = new Set(
    [...$("connection-table").querySelectorAll("details.extra[open]")].map(
      (d) => `${d.closest("tr")?.dataset.id}\u0000${d.className}`,
    ),
  );
  $("connection-count").textContent = connections.length;
  $("no-connections").hidden = connections.length > 0;
  const chosen = $("send-to").value;
  const filter = $("connection-filter").value.trim().toLowerCase();
  const matching = filter === "" ? connections : connections.filter((c) => connectionText(c).includes(filter));
  const shown = matching.slice(-MAX_CONNECTION_ROWS);
  const more = $("connections-more");
  more.hidden = shown.length === connections.length;
  more.textContent =
    matching.length > shown.length
      ? `showing the newest ${shown.length} of ${matching.length}${filter === "" ? "" : " matching"}: filter to find the others`
      : `${matching.length} of ${connections.length} match the filter`;
  $("connection-table").tBodies[0].replaceChildren(
    ...shown.map((c) => {
      const query = Object.entries(c.query)
        .map(([k, v]) => `${k}=${v.join(",")}`)
        .join(" ");
      return el(
        "tr",
        { "data-id": c.id, class: c.id === chosen ? "selected" : "" },
        el("td", {}, c.socket),
        el("td", {}, el("code", {}, c.id)),
        el("td", { title: new Date(c.connectedAt).toISOString() }, time(c.connectedAt)),
        el("td", {}, c.remoteAddress),
        el("td", { class: "mono", title: query }, query),
        el("td", { class: "muted", title: (c.headers["user-agent"] ?? [""])[0] }, (c.headers["user-agent"] ?? [""])[0]),
        extrasCell(c),
        el(
          "td",
          { class: "actions" },
          el("button", { type: "button", class: "small", onclick: () => chooseConnection(c) }, "message"),
          el("button", { type: "button", class: "small danger", onclick: () => closeConnection(c) }, "close"),
        ),
      );
    }),
  );
  const to = $("send-to");
  to.replaceChildren(
    el("option", { value: "" }, "everyone (broadcast)"),
    // The rows drawn, and the connection chosen even when the filter hides it: a choice that
    // vanished from the list would turn the next send into a broadcast.
    ...connections
      .filter((c) => c.socket === $("send-socket").value && (shown.includes(c) || c.id === chosen))
      .map((c) => el("option", { value: c.id }, c.id)),
  );
  if ([...to.options].some((o) => o.value === chosen)) to.value = chosen;
  for (const row of $("sockets").tBodies[0].rows) {
    row.querySelector(".open-count").textContent = connections.filter((c) => c.socket === row.dataset.socket).length;
  }
}

function chooseConnection(c) {
  $("send-socket").value = c.socket;
  renderConnections();
  $("send-to").value = c.id;
  renderConnections();
  $("send-text").focus();
}

async function closeConnection(c) {
  try {
    await api("POST", "/api/close", {
      socket: c.socket,
      connectionId: c.id,
      code: 1000,
      reason: "closed from the dashboard",
    });
  } catch (error) {
    status("send-status", error.message, true);
  }
}

// ---- send

$("send-socket").addEventListener("change", renderConnections);
$("connection-filter").addEventListener("input", renderConnections);
$("send-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const to = $("send-to").value;
  try {
    const { sent } = await api("POST", "/api/send", {
      socket: $("send-socket").value,
      connectionId: to,
      text: $("send-text").value,
      binary: $("send-binary").checked,
    });
    status("send-status", to ? `sent to ${to}` : `broadcast to ${sent} connection${sent === 1 ? "" : "s"}`);
  } catch (error) {
    status("send-status", error.message, true);
  }
});

// ---- message log

function logRow(e) {
  if (e.type === "message") {
    const arrow = e.direction === "in" ? "→" : "←";
    const title = e.direction === "in" ? "from the client" : "to the client";
    const data = e.binary ? `binary ${e.size} bytes: ${e.text}` : e.size > e.text.length * 4 ? `${e.text}…` : e.text;
    return el(
      "tr",
      { "data-direction": e.direction, "data-id": e.connectionId },
      el("td", {}, time(e.at)),
      el("td", {}, e.socket),
      el("td", { class: `dir-${e.direction}`, title }, `${arrow} ${e.direction}`),
      el("td", {}, el("code", {}, e.connectionId)),
      el("td", { class: "data" }, data),
    );
  }
  if (e.type === "error") {
    return el(
      "tr",
      { "data-id": e.connectionId, "data-error": e.event, class: "caused" },
      el("td", {}, time(e.at)),
      el("td", {}, e.socket),
      el("td", { class: "event failed" }, `${e.event} failed`),
      el("td", {}, el("code", {}, e.connectionId)),
      el("td", { class: "failed" }, e.message),
    );
  }
  if (e.type === "refused") {
    return el(
      "tr",
      { "data-id": "", "data-refused": String(e.status) },
      el("td", {}, time(e.at)),
      el("td", {}, e.socket),
      el("td", { class: "event refused" }, "refused"),
      el("td", {}, ""),
      el("td", { class: "event" }, `HTTP ${e.status}: ${e.reason}`),
    );
  }
  const what = e.type === "open" ? "connected" : `disconnected ${e.code}${e.reason ? ` ${e.reason}` : ""}`;
  return el(
    "tr",
    { "data-id": e.connectionId, "data-event": e.type },
    el("td", {}, time(e.at)),
    el("td", {}, e.socket),
    el("td", { class: "event" }, e.type),
    el("td", {}, el("code", {}, e.connectionId)),
    el("td", { class: "event" }, what),
  );
}

/**
 * Where a row caused by a connection's event goes: just above (the log is newest first) the newest
 * row of that event (the message that failed, or the close), so the cause and the effect sit
 * together; undefined when that row is not in the log (then it goes on top, by time).
 */
function causeRow(connectionId, event) {
  const body = $("log-table").tBodies[0];
  const id = CSS.escape(connectionId);
  if (event === "message") return body.querySelector(`tr[data-direction="in"][data-id="${id}"]`) ?? undefined;
  if (event === "disconnect") return body.querySelector(`tr[data-event="close"][data-id="${id}"]`) ?? undefined;
  return undefined;
}

/** Puts a row in the log: above the row that caused it when given, else on top. */
function placeRow(row, cause) {
  applyFilter(row);
  if (cause) {
    // Other rows it caused already sit above it: go above those too, in the order they came.
    let above = cause;
    while (above.previousElementSibling?.classList.contains("caused")) above = above.previousElementSibling;
    above.before(row);
  } else $("log-table").tBodies[0].prepend(row);
  logCount++;
}

function applyFilter(row) {
  const filter = $("log-filter").value.trim().toLowerCase();
  row.hidden = filter !== "" && !row.textContent.toLowerCase().includes(filter);
}

function onTraffic({ events, dropped }) {
  let connectionsChanged = false;
  const body = $("log-table").tBodies[0];
  const paused = $("log-pause").checked;
  for (const e of events) {
    if (e.type === "open" || e.type === "close") connectionsChanged = true;
    else if (e.type === "message") refreshConnectionsSoon();
    if (paused) continue;
    placeRow(logRow(e), e.type === "error" ? causeRow(e.connectionId, e.event) : undefined);
  }
  if (dropped > 0 && !paused)
    body.prepend(
      el("tr", {}, el("td", { colspan: 5, class: "event" }, `${dropped} events not shown (too many at once)`)),
    );
  trimLog();
  $("log-count").textContent = logCount;
  if (connectionsChanged) refreshConnections().catch(() => {});
  refreshKeysSoon();
}

/**
 * Lines a service printed. Lines that name a connection whose message is in the log (our SDK's
 * "handler failed for connection <id>", or an app's own) go beside that message; the rest on top,
 * in the order they came.
 */
function onLog({ entries, dropped }) {
  if ($("log-pause").checked) return;
  const body = $("log-table").tBodies[0];
  const recent = new Set();
  for (const row of body.querySelectorAll('tr[data-direction="in"]')) {
    recent.add(row.dataset.id);
    if (recent.size >= 50) break;
  }
  for (const e of entries) {
    const text = e.lines.join("\n");
    // Only a line that names its connection is put with a message: by time alone, a line could be
    // pinned on the wrong one when messages overlap.
    const id = [...recent].find((c) => text.includes(c));
    const row = el(
      "tr",
      { "data-log": e.service, "data-id": id ?? "", "data-lines": e.lines.length, class: id ? "caused" : "" },
      el("td", {}, time(e.at)),
      el("td", {}, e.service),
      el("td", { class: `event log-${e.stream}`, title: `the service's ${e.stream}` }, e.stream),
      el("td", {}, id ? el("code", {}, id) : ""),
      el("td", { class: "data" }, el("pre", { class: `log-${e.stream}` }, text)),
    );
    outputLines += e.lines.length;
    placeRow(row, id ? causeRow(id, "message") : undefined);
  }
  if (dropped > 0)
    body.prepend(
      el(
        "tr",
        {},
        el("td", { colspan: 5, class: "event" }, `${dropped} lines of service output not shown (too many at once)`),
      ),
    );
  trimLog();
  $("log-count").textContent = logCount;
}

// Traffic often changes kv values (the app stores what it sees): list the keys again, at most once a second.
let keysTimer;
function refreshKeysSoon() {
  if (keysTimer !== undefined) return;
  keysTimer = setTimeout(() => {
    keysTimer = undefined;
    listKeys();
  }, 1000);
}

$("log-filter").addEventListener("input", () => {
  for (const row of $("log-table").tBodies[0].rows) applyFilter(row);
});
$("log-clear").addEventListener("click", () => {
  $("log-table").tBodies[0].replaceChildren();
  outputLines = 0;
  logCount = 0;
  $("log-count").textContent = 0;
});

// ---- kv browser

async function listKeys() {
  const store = $("kv-store").value;
  if (!store || !state?.inspect || state.kvUnavailable) return;
  try {
    const { keys, limit } = await api(
      "GET",
      `/api/kv/keys?store=${encodeURIComponent(store)}&prefix=${encodeURIComponent($("kv-prefix").value)}`,
    );
    const chosen = $("kv-key").value;
    $("kv-keys").replaceChildren(
      ...keys.map((k) =>
        el("li", { class: k === chosen ? "selected" : "", "data-key": k, onclick: () => openKey(k) }, k),
      ),
    );
    $("kv-more").textContent =
      keys.length === 0
        ? "no keys"
        : keys.length >= limit
          ? `first ${limit} keys shown: narrow the prefix`
          : `${keys.length} key${keys.length === 1 ? "" : "s"}`;
  } catch (error) {
    status("kv-status", error.message, true);
  }
}

async function openKey(key) {
  const store = $("kv-store").value;
  try {
    const { value } = await api(
      "GET",
      `/api/kv/value?store=${encodeURIComponent(store)}&key=${encodeURIComponent(key)}`,
    );
    $("kv-key").value = key;
    $("kv-value").value = JSON.stringify(value, null, 2);
    status("kv-status", "");
    for (const li of $("kv-keys").children) li.classList.toggle("selected", li.dataset.key === key);
  } catch (error) {
    status("kv-status", error.message, true);
  }
}

$("kv-form").addEventListener("submit", (event) => {
  event.preventDefault();
  listKeys();
});
$("kv-store").addEventListener("change", () => {
  $("kv-key").value = "";
  $("kv-value").value = "";
  listKeys();
});
$("kv-editor").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = $("kv-key").value;
  let value;
  try {
    value = JSON.parse($("kv-value").value);
  } catch (error) {
    status("kv-status", `not JSON: ${error.message}`, true);
    return;
  }
  try {
    await api("PUT", "/api/kv/value", { store: $("kv-store").value, key, value });
    status("kv-status", `saved ${key}`);
    await listKeys();
  } catch (error) {
    status("kv-status", error.message, true);
  }
});
$("kv-delete").addEventListener("click", async () => {
  const key = $("kv-key").value;
  if (!key) return;
  try {
    await api(
      "DELETE",
      `/api/kv/value?store=${encodeURIComponent($("kv-store").value)}&key=${encodeURIComponent(key)}`,
    );
    status("kv-status", `deleted ${key}`);
    $("kv-value").value = "";
    await listKeys();
  } catch (error) {
    status("kv-status", error.message, true);
  }
});

// ---- a client of the page's own ("Try a socket")
//
// A WebSocket this page opens to a socket's URL, as any browser client would: it goes through the
// socket's rules (its authorize and connect handler, allowedOrigins, limits) and shows up in the
// connections and the log like any other client. What arrives is shown as text, bounded.

/** Most messages the client's list keeps (the newest). */
const MAX_CLIENT_MESSAGES = 200;
/** Most characters of one message the list shows. */
const MAX_CLIENT_CHARS = 2000;
let client;

function clientLine(direction, data) {
  let text;
  if (typeof data === "string") text = data;
  else {
    const view = new Uint8Array(data);
    let binary = "";
    for (const b of view.subarray(0, MAX_CLIENT_CHARS)) binary += String.fromCharCode(b);
    text = `(binary, ${view.length} bytes) ${btoa(binary)}`;
  }
  if (text.length > MAX_CLIENT_CHARS) text = `${text.slice(0, MAX_CLIENT_CHARS)}… (${text.length} characters)`;
  const list = $("client-messages");
  list.append(
    el(
      "li",
      { class: direction === "in" ? "in" : "out" },
      `${time(Date.now())} ${direction === "in" ? "←" : "→"} ${text}`,
    ),
  );
  while (list.children.length > MAX_CLIENT_MESSAGES) list.firstElementChild.remove();
  list.scrollTop = list.scrollHeight;
}

function clientControls() {
  const open = client !== undefined;
  const live = !document.body.classList.contains("stopped") && $("client-socket").options.length > 0;
  for (const id of ["client-socket", "client-query", "client-protocol", "client-open"]) $(id).disabled = open || !live;
  $("client-close").disabled = !open;
  $("client-submit").disabled = !open || client.readyState !== WebSocket.OPEN;
}

$("client-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const socket = state?.sockets.find((s) => s.name === $("client-socket").value);
  if (!socket?.url) return status("client-status", "no socket to connect to", true);
  const url = new URL(socket.url);
  url.search = $("client-query").value.trim().replace(/^\?/, "");
  const protocol = $("client-protocol").value.trim();
  let ws;
  try {
    ws = new WebSocket(url, protocol === "" ? [] : [protocol]);
  } catch (error) {
    // An invalid subprotocol token or URL: the browser refuses before connecting.
    return status("client-status", `cannot connect: ${error.message}`, true);
  }
  ws.binaryType = "arraybuffer";
  client = ws;
  $("client-messages").replaceChildren();
  status("client-status", `connecting to ${url}`);
  ws.addEventListener("open", () => {
    status("client-status", `open: ${url}${ws.protocol ? ` (subprotocol ${ws.protocol})` : ""}`);
    clientControls();
  });
  ws.addEventListener("message", (e) => clientLine("in", e.data));
  ws.addEventListener("close", (e) => {
    if (client === ws) client = undefined;
    const why = e.reason ? `: ${e.reason}` : "";
    const hint =
      e.code === 1006
        ? " (no close frame: the upgrade was refused or the connection dropped; the log below shows a refusal's status and reason)"
        : "";
    status("client-status", `closed ${e.code}${why}${hint}`, e.code !== 1000 && e.code !== 1001);
    clientControls();
  });
  clientControls();
});

$("client-close").addEventListener("click", () => client?.close(1000, "closed from the dashboard"));

$("client-send").addEventListener("submit", (event) => {
  event.preventDefault();
  if (client?.readyState !== WebSocket.OPEN) return;
  const text = $("client-text").value;
  const data = $("client-binary").checked ? new TextEncoder().encode(text) : text;
  client.send(data);
  clientLine("out", typeof data === "string" ? data : data.buffer);
});

// ---- live updates

function connect() {
  const source = new EventSource(`/api/events?key=${encodeURIComponent(KEY)}`);
  source.addEventListener("open", () => {
    $("live").textContent = "live";
    $("live").className = "badge on";
    document.body.classList.remove("stopped");
    status("send-status", "");
    refreshConnections().catch(() => {});
  });
  source.addEventListener("error", () => {
    // Lost without a word (run was killed): the browser retries; until then nothing is live.
    stopped("disconnected: is nitric-like run still running?");
    // Refused (no key, or an earlier run's): the browser gives up; the API says why.
    if (source.readyState === EventSource.CLOSED) api("GET", "/api/state").catch((error) => stopped(error.message));
  });
  source.addEventListener("state", (event) => {
    state = JSON.parse(event.data);
    renderState();
    refreshConnections().catch(() => {});
  });
  source.addEventListener("traffic", (event) => onTraffic(JSON.parse(event.data)));
  source.addEventListener("log", (event) => onLog(JSON.parse(event.data)));
  source.addEventListener("stopped", () => {
    // The browser would reconnect to a run that is gone; a page opened on a new run starts fresh.
    source.close();
    stopped("run stopped");
  });
}

/** The run is gone: nothing on the page is live any more, so nothing may look live or clickable. */
function stopped(why) {
  $("live").textContent = why;
  $("live").className = "badge off";
  document.body.classList.add("stopped");
  connections = [];
  listedText = "";
  if (state) {
    state = { ...state, inspect: false, sockets: [], registrations: [] };
    renderState();
  }
  renderConnections();
  status("send-status", `${why}: start nitric-like run again and reload this page`, true);
  for (const id of ["send-form", "kv-form", "kv-editor"]) {
    for (const node of $(id).elements) node.disabled = true;
  }
  clientControls();
}

connect();
