// The dashboard's boundary, against a provider whose inspector has a bug (a third-party provider
// implements RunningProvider too): the request that met the bug gets a 500 and one log line; the
// dashboard, and every other request, carry on.
import { connect } from "node:net";
import type { InspectedConnection, ProviderInspector, RunningProvider, Spec } from "@nitric-like/spec";
import { afterEach, expect, it } from "vitest";
import { boundedListing, type Dashboard, LISTING_EXTRAS_CHARS, socketSources, startDashboard } from "./dashboard.js";

let dashboard: Dashboard | undefined;
afterEach(async () => {
  await dashboard?.close();
  dashboard = undefined;
});

const spec: Spec = {
  name: "app",
  services: [],
  resources: [{ kind: "websocket", name: "chat" }],
  policies: [],
} as never;

/** A provider whose connection listing throws, as a bug in one would. */
function brokenProvider(): RunningProvider {
  const inspect = {
    connections: async (): Promise<InspectedConnection[]> => {
      const rows = undefined as unknown as InspectedConnection[];
      return rows.map((c) => c);
    },
    limits: async () => ({}),
    onTraffic: () => () => {},
  } as unknown as ProviderInspector;
  return {
    endpoint: () => Promise.reject(new Error("none")),
    serviceStarting: () => {},
    serviceExited: () => {},
    registrations: () => [],
    onRegistrationsChanged: () => {},
    sockets: () => [{ name: "chat", url: "ws://127.0.0.1:1" }],
    stop: async () => {},
    inspect,
  };
}

/** Starts the dashboard over `running` (a broken provider by default), logging errors to `errors`. */
async function start(running = brokenProvider(), provider = "broken", errors: string[] = []): Promise<Dashboard> {
  dashboard = await startDashboard({
    port: 0,
    fallback: false,
    provider,
    spec,
    running,
    logger: { info: () => {}, warn: () => {}, error: (m) => errors.push(m) },
  });
  return dashboard;
}

/** A request to the API of `d` at `path`, with the run's key, as the page makes it. */
function api(d: Dashboard, path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set("x-dashboard-key", d.key);
  return fetch(`${d.url}${path}`, { ...init, headers });
}

it("answers a request that met a bug with 500 and one log line, and goes on serving", async () => {
  const errors: string[] = [];
  const d = await start(brokenProvider(), "broken", errors);
  const failed = await api(d, "/api/connections");
  expect(failed.status).toBe(500);
  expect(await failed.json()).toEqual({ error: expect.stringMatching(/^Cannot read properties of undefined/) });
  expect(errors).toEqual([
    expect.stringMatching(
      /^dashboard: internal error while serving GET \/api\/connections: TypeError: Cannot read properties of undefined .*; answered it with 500 and serves everyone else; please report this line as a bug$/,
    ),
  ]);
  // The client's own mistakes are answered with their status, and not logged as bugs.
  expect((await fetch(`${d.url}/constructor`)).status).toBe(404);
  expect((await api(d, "/api/kv/keys?store=__proto__")).status).toBe(404);
  expect((await api(d, "/api/state")).status).toBe(200);
  expect(errors).toHaveLength(1);
});

it("answers HEAD for the page's files as GET does, without the body", async () => {
  const d = await start();
  for (const path of ["/", "/app.js", "/style.css"]) {
    const got = await fetch(`${d.url}${path}`);
    const head = await fetch(`${d.url}${path}`, { method: "HEAD" });
    expect(head.status, path).toBe(200);
    expect(head.headers.get("content-type")).toBe(got.headers.get("content-type"));
    expect(head.headers.get("content-security-policy")).toBe(got.headers.get("content-security-policy"));
    expect(await head.text()).toBe("");
  }
  expect((await fetch(`${d.url}/nope`, { method: "HEAD" })).status).toBe(404);
});

it("refuses a close code that is not a whole number in the ranges a service may give, before closing anything", async () => {
  const d = await start();
  for (const code of [3000.5, 999, 1001, 5000, -1]) {
    const closed = await api(d, "/api/close", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ socket: "chat", connectionId: "c1", code }),
    });
    expect(closed.status).toBe(400);
    expect(await closed.json()).toEqual({ error: "a close code is 1000 or between 3000 and 4999" });
  }
});

it("says, for a provider that cannot show its kv stores, why: the kv API answers 501 with its sentence", async () => {
  const why = 'provider "remote" keeps its stores elsewhere; browse them there';
  const running = brokenProvider();
  Object.assign(running.inspect as object, { kvUnavailable: why });
  const d = await start(running, "remote");
  const state = (await (await api(d, "/api/state")).json()) as { kvUnavailable?: string };
  expect(state.kvUnavailable).toBe(why);
  const keys = await api(d, "/api/kv/keys?store=history");
  expect(keys.status).toBe(501);
  expect(await keys.json()).toEqual({ error: why });
});

it("keeps a connection listing's identities and states within its budget, cutting the rest to a preview", () => {
  const big = (n: number) => JSON.stringify({ pad: "x".repeat(n) });
  const list: InspectedConnection[] = Array.from({ length: 400 }, (_, i) => ({
    socket: "chat",
    id: `c${i}`,
    connectedAt: 0,
    query: {},
    headers: {},
    remoteAddress: "127.0.0.1",
    auth: big(8_000),
    rooms: [],
    state: big(16_000),
  }));
  const shown = boundedListing(list);
  const chars = shown.reduce((n, c) => n + c.auth.length + (c.state?.length ?? 0), 0);
  expect(chars).toBeLessThanOrEqual(LISTING_EXTRAS_CHARS + 400 * 162);
  // The first connections are whole, the ones past the budget cut to a preview ending in "…".
  expect(shown[0]).toEqual(list[0]);
  expect(shown[399]?.state).toHaveLength(81);
  expect(shown[399]?.state?.endsWith("…")).toBe(true);
  expect(shown.map((c) => c.id)).toEqual(list.map((c) => c.id));
  // A small listing is untouched.
  expect(boundedListing(list.slice(0, 3))).toEqual(list.slice(0, 3));
});

it("keeps a connection listing's queries and headers within the same budget, cutting the rest to a preview", () => {
  // As many connections as a socket takes by default, each with a 16 KB request (query and headers).
  const pad = "q".repeat(7_900);
  const list: InspectedConnection[] = Array.from({ length: 10_000 }, (_, i) => ({
    socket: "chat",
    id: `c${i}`,
    connectedAt: 0,
    query: Object.fromEntries([
      ["__proto__", [pad]],
      [`${pad}a`, ["1"]],
      [`${pad}b`, ["2"]],
    ]),
    headers: { "user-agent": ["agent"], "x-pad": [pad] },
    remoteAddress: "127.0.0.1",
    auth: "",
    rooms: [],
    state: "",
  }));
  const shown = boundedListing(list);
  const chars = JSON.stringify(shown).length;
  expect(chars).toBeLessThanOrEqual(LISTING_EXTRAS_CHARS + 10_000 * 800);
  expect(shown[0]).toEqual(list[0]);
  const last = shown[9_999];
  // Cut, names included; names that read alike once cut keep every value; __proto__ is a name like any.
  expect(Object.getOwnPropertyDescriptor(last?.query ?? {}, "__proto__")?.value).toEqual([`${"q".repeat(80)}…`]);
  expect(last?.query[`${"q".repeat(80)}…`]).toEqual(["1", "2"]);
  expect(last?.headers["user-agent"]).toEqual(["agent"]);
  expect(last?.headers["x-pad"]).toEqual([`${"q".repeat(80)}…`]);
});

it("lets the page open WebSockets to the sockets' hosts only, on any port (its CSP's connect-src)", () => {
  expect(
    socketSources([
      { url: "ws://127.0.0.1:4000" },
      { url: "ws://127.0.0.1:4001/live" },
      { url: "wss://[::1]:8443/x" },
      { url: "http://127.0.0.1:80" },
      { url: "not a url" },
    ]),
  ).toBe("ws://127.0.0.1:* wss://[::1]:*");
  expect(socketSources([])).toBe("ws://127.0.0.1:*");
});

/** The data of a chunked HTTP body. */
function dechunked(raw: string): string {
  let out = "";
  for (let at = 0; at < raw.length; ) {
    const end = raw.indexOf("\r\n", at);
    const size = Number.parseInt(raw.slice(at, end), 16);
    if (!(size > 0)) break;
    out += raw.slice(end + 2, end + 2 + size);
    at = end + 2 + size + 2;
  }
  return out;
}

/**
 * Sends `total` bytes of JSON body to `path` of `d` on a raw socket, in `pieces` writes (each once
 * the last drained), and resolves, once the connection closes, with the answer's status line and
 * body and how much of the body went out. `readAfter`: read nothing until the whole body is
 * written, as a browser that uploads first does; otherwise read as it comes.
 */
function rawPost(
  d: Dashboard,
  method: string,
  path: string,
  total: number,
  pieces: number,
  readAfter: boolean,
  chunked = false,
): Promise<{ status: string; body: string; written: number; error?: string }> {
  const { hostname, port } = new URL(d.url);
  const chunk = Buffer.alloc(Math.ceil(total / pieces), 32);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname);
    let got = "";
    let written = 0;
    let error: string | undefined;
    socket.setEncoding("latin1");
    socket.on("data", (t: string) => {
      got += t;
    });
    socket.on("error", (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
    });
    socket.on("close", () => {
      const at = got.indexOf("\r\n\r\n");
      const status = got.slice(0, got.indexOf("\r\n"));
      let body = at < 0 ? "" : got.slice(at + 4);
      if (/\r\ntransfer-encoding: chunked\r\n/i.test(got.slice(0, at + 2))) body = dechunked(body);
      resolve({ status, body, written, ...(error ? { error } : {}) });
    });
    if (readAfter) socket.pause();
    socket.write(
      `${method} ${path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nContent-Type: application/json\r\nx-dashboard-key: ${d.key}\r\n${chunked ? "Transfer-Encoding: chunked" : `Content-Length: ${total}`}\r\n\r\n`,
    );
    void (async () => {
      while (written < total && !socket.destroyed) {
        const piece = chunk.subarray(0, Math.min(chunk.length, total - written));
        written += piece.length;
        if (chunked) socket.write(`${piece.length.toString(16)}\r\n`);
        if (!socket.write(piece)) await new Promise((r) => socket.once("drain", r));
        if (chunked) socket.write("\r\n");
      }
      if (chunked) socket.write("0\r\n\r\n");
      socket.resume();
      socket.end();
    })();
  });
}

it("answers a request body over 1 MiB with 413 and why, which the client reads however it sends the body", async () => {
  const d = await start();
  const refused = {
    status: "HTTP/1.1 413 Payload Too Large",
    body: JSON.stringify({ error: "request body over 1 MiB (1048576 bytes); send a smaller value or message" }),
  };
  const MB9 = 9 * 1024 * 1024;
  for (let round = 0; round < 3; round++) {
    // In one write and in many (with its length, or chunked: no length to refuse it by), read as
    // the answer comes or only once the whole body is out (a browser's order): the answer is sent
    // before the body ends, and must not be lost to a reset.
    for (const readAfter of [false, true]) {
      for (const [method, path] of [
        ["POST", "/api/send"],
        ["PUT", "/api/kv/value"],
      ] as const) {
        for (const [pieces, chunked] of [
          [1, false],
          [144, false],
          [144, true],
        ] as const) {
          const got = await rawPost(d, method, path, MB9, pieces, readAfter, chunked);
          const how = `${method} ${path} in ${pieces} ${chunked ? "chunks" : "writes"}${readAfter ? ", read after" : ""}`;
          expect(got, how).toMatchObject({ ...refused, written: MB9 });
        }
      }
    }
    // As the page sends it: fetch.
    const fetched = await api(d, "/api/send", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: Buffer.alloc(MB9, 32),
    }).then(
      async (r) => ({ status: r.status, body: await r.text() }),
      (e: Error) => ({ error: String(e.cause ?? e) }),
    );
    expect(fetched).toEqual({ status: 413, body: refused.body });
  }
  // A body far over the bound is not read to its end: the connection is cut once 16 MiB of it
  // were dropped, after the client that reads as it goes has its answer.
  const endless = await rawPost(d, "POST", "/api/send", 256 * 1024 * 1024, 1024, false);
  expect(endless).toMatchObject(refused);
  expect(endless.written).toBeLessThan(256 * 1024 * 1024);
  expect((await api(d, "/api/state")).status).toBe(200);
});
