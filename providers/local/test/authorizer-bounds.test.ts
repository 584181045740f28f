// What a socket's authorizer can make the provider hold is bounded: a flood of handshakes to a
// socket whose authorizer is slow, does not read its stream or is not running is refused with 503,
// Retry-After and a reason, logged once a burst, and nothing else is lost. Real ws clients; the
// authorizer is played by the test over real gRPC (or a raw HTTP/2 call that stops reading). And a
// second copy of the authorizer's service on its endpoint does not take the socket from it for good.
import type { IncomingMessage } from "node:http";
import { Authorizer, type HandleAuthorizationsResponse } from "@nitric-like/contracts/authorize";
import { MAX_PENDING_AUTHORIZATIONS } from "@nitric-like/provider-kit";
import type { Client } from "@nitric-like/rpc";
import { methodPath } from "@nitric-like/rpc";
import type { Spec } from "@nitric-like/spec";
import { afterEach, expect, it } from "vitest";
import WebSocket from "ws";
import type { LocalProvider } from "../src/index.js";
import {
  accept,
  cleanup,
  declareSocket,
  handle,
  serviceClient,
  sleep,
  startProvider,
  until,
  urlOf,
} from "./helpers.js";
import { destroyRaw, portOf, stalledGrpcCall, tcp, upgradeRequest } from "./raw.js";

afterEach(async () => {
  destroyRaw();
  await cleanup();
});

/** Socket "chat", authorized by service "svc"; no connect handler, so an allowed client opens at once. */
const spec: Spec = {
  name: "test",
  services: [],
  resources: [{ kind: "websocket", name: "chat", declaredBy: ["svc"], handlers: {}, authorizer: "svc" }],
  policies: [],
};

/** Service "svc"'s authorizer for "chat": records the requests, and allows one when the test says (each at once with `auto`). */
async function playedAuthorizer(provider: LocalProvider, auto = false) {
  const client: Client = await serviceClient(provider, "svc");
  await declareSocket(client, "chat");
  const call = client.bidi(Authorizer.method.handleAuthorizations);
  call.on("error", () => {});
  const requests: string[] = [];
  const allow = (id: string) =>
    call.write({
      id,
      content: { case: "response", value: { result: { case: "allow", value: { identityJson: "", protocol: "" } } } },
    });
  await new Promise<void>((registered) => {
    call.on("data", (m: HandleAuthorizationsResponse) => {
      if (m.content.case === "registration") registered();
      if (m.content.case === "request") {
        requests.push(m.id);
        if (auto) allow(m.id);
      }
    });
    call.write({ id: "", content: { case: "registration", value: { socketName: "chat" } } });
  });
  return { requests, allow, call };
}

interface Outcome {
  ws: WebSocket;
  /** Resolves once the client opened (status 101) or was refused (its status, Retry-After and reason). */
  done: Promise<{ status: number; retryAfter?: string | undefined; body: string }>;
}

/** A ws client to `url`, its handshake's outcome awaited apart. */
function client(url: string, headers: Record<string, string> = {}): Outcome {
  const ws = new WebSocket(url, { headers });
  ws.on("error", () => {});
  const done = new Promise<{ status: number; retryAfter?: string | undefined; body: string }>((resolve) => {
    ws.on("open", () => resolve({ status: 101, body: "" }));
    ws.on("unexpected-response", (_req, res: IncomingMessage) => {
      let body = "";
      res.on("data", (c: Buffer) => {
        body += c.toString();
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers["retry-after"], body }));
    });
  });
  return { ws, done };
}

/** Resolves with `promise`, or rejects after `ms` saying what did not happen. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms)),
  ]);
}

const opened: Outcome[] = [];
afterEach(() => {
  for (const c of opened.splice(0)) c.ws.terminate();
});

/** `n` clients of "chat", kept for afterEach to end. */
function flood(provider: LocalProvider, n: number, headers: Record<string, string> = {}): Outcome[] {
  const clients = Array.from({ length: n }, () => client(urlOf(provider, "chat"), headers));
  opened.push(...clients);
  return clients;
}

it("refuses a handshake with 503, Retry-After and the reason once 1000 wait for a slow authorizer, and lets every waiting one in once it answers", async () => {
  expect(MAX_PENDING_AUTHORIZATIONS).toBe(1000);
  const { provider, logs } = await startProvider({ spec });
  const authorizer = await playedAuthorizer(provider);
  const waiting = flood(provider, MAX_PENDING_AUTHORIZATIONS);
  await until(
    () => authorizer.requests.length === MAX_PENDING_AUTHORIZATIONS,
    "every request at the authorizer",
    20_000,
  );
  const [late] = flood(provider, 1) as [Outcome];
  expect(await within(late.done, 5000, "answer to the client over the bound")).toEqual({
    status: 503,
    retryAfter: "1",
    body: `websocket "chat": ${MAX_PENDING_AUTHORIZATIONS} connection requests already wait for its authorizer (service "svc") to answer; connect again in a moment, and if this goes on, make the authorizer answer sooner`,
  });
  // Once a burst in the log, not once a client.
  flood(provider, 5);
  await sleep(200);
  expect(logs.error).toEqual([
    expect.stringMatching(/already wait for its authorizer .*: refused a connection with 503$/),
  ]);
  // Nothing the bound refused was lost: every client that waited is let in.
  for (const id of authorizer.requests) authorizer.allow(id);
  const outcomes = await within(Promise.all(waiting.map((c) => c.done)), 20_000, "answer to every waiting client");
  expect(outcomes.filter((o) => o.status !== 101)).toEqual([]);
  const next = client(urlOf(provider, "chat"));
  opened.push(next);
  await until(() => authorizer.requests.length > MAX_PENDING_AUTHORIZATIONS, "the next request");
  authorizer.allow(authorizer.requests.at(-1) as string);
  expect((await next.done).status).toBe(101);
}, 60_000);

it("refuses a handshake with 503 and the reason once 8 MB of requests wait for an authorizer's service that does not read its stream", async () => {
  const { provider, logs } = await startProvider({ spec });
  // The authorizer: a raw HTTP/2 call that registers and then reads nothing more (its SDK's loop is blocked).
  const register = Authorizer.method.handleAuthorizations.input.encode({
    id: "",
    content: { case: "registration", value: { socketName: "chat" } },
  });
  const stalled = await stalledGrpcCall(
    portOf(await provider.endpoint("svc")),
    methodPath(Authorizer.method.handleAuthorizations),
    register,
  );
  await sleep(200);
  // 10 KB of headers a handshake: 8 MB is reached well before the count bound.
  const clients = flood(provider, 900, { "x-pad": "p".repeat(10 * 1024) });
  const refused = await within(
    Promise.race(clients.map((c) => c.done.then((o) => (o.status === 503 ? o : new Promise<never>(() => {}))))),
    10_000,
    "refusal",
  );
  expect(refused).toEqual({
    status: 503,
    retryAfter: "1",
    body: `websocket "chat": its authorizer's service "svc" is not reading the connection requests sent to it (the provider holds all it will of them); connect again in a moment, and if this goes on, does a handler block the service's event loop?`,
  });
  await until(() => logs.error.length > 0, "the log line");
  expect(logs.error).toEqual([
    expect.stringMatching(/is not reading the connection requests .*: refused a connection with 503/),
  ]);
  // The stuck service goes; its next copy's authorizer serves a new client.
  stalled.destroy();
  await playedAuthorizer(provider, true);
  const next = client(urlOf(provider, "chat"));
  opened.push(next);
  expect((await next.done).status).toBe(101);
}, 60_000);

it("refuses a handshake with 503 once 1000 wait for an authorizer whose service is not running, and forgets those whose wait ran out", async () => {
  const { provider } = await startProvider({ spec, handlerWaitMs: 4000 });
  const waiting = flood(provider, MAX_PENDING_AUTHORIZATIONS);
  await sleep(2000);
  const [late] = flood(provider, 1) as [Outcome];
  expect(await within(late.done, 1000, "answer to the client over the bound")).toEqual({
    status: 503,
    retryAfter: "1",
    body: `websocket "chat": ${MAX_PENDING_AUTHORIZATIONS} connection requests already wait for its authorizer (service "svc") to start; connect again in a moment`,
  });
  // Those that waited are refused once the wait runs out, saying why.
  for (const o of await within(Promise.all(waiting.map((c) => c.done)), 10_000, "end of every wait"))
    expect(o).toMatchObject({ status: 503, body: expect.stringContaining("is not running; connect again once it is") });
  // Their waits are over: a new client waits again, and is let in once the authorizer starts.
  const next = client(urlOf(provider, "chat"));
  opened.push(next);
  await sleep(200);
  const authorizer = await playedAuthorizer(provider);
  await until(() => authorizer.requests.length > 0, "the next request");
  authorizer.allow(authorizer.requests[0] as string);
  expect((await next.done).status).toBe(101);
}, 60_000);

/** Raw clients that send a handshake to "chat" each, to hang up when the test says. */
async function handshakes(provider: LocalProvider, n: number) {
  const port = Number(new URL(urlOf(provider, "chat")).port);
  const sockets = await Promise.all(Array.from({ length: n }, () => tcp(port)));
  for (const s of sockets) {
    s.on("error", () => {});
    s.write(upgradeRequest());
  }
  return {
    hangUp: () => {
      for (const s of sockets) s.destroy();
    },
  };
}

it("runs no connect handler for a flood of handshakes that hang up while a slow authorizer decides, whose requests keep their places until it answers", async () => {
  const withHandlers: Spec = {
    ...spec,
    resources: [
      {
        kind: "websocket",
        name: "chat",
        declaredBy: ["svc"],
        handlers: { connect: "svc", disconnect: "svc" },
        authorizer: "svc",
      },
    ],
  };
  const { provider } = await startProvider({ spec: withHandlers });
  const authorizer = await playedAuthorizer(provider);
  const service = await serviceClient(provider, "svc");
  const connects = await handle(service, "chat", "connect", accept);
  const disconnects = await handle(service, "chat", "disconnect", () => ({}));
  const flooding = await handshakes(provider, MAX_PENDING_AUTHORIZATIONS);
  await until(
    () => authorizer.requests.length === MAX_PENDING_AUTHORIZATIONS,
    "every request at the authorizer",
    20_000,
  );
  flooding.hangUp();
  await sleep(200);
  // The authorizer's service still works on what it was sent: those places stay taken until it
  // answers, so hang-ups cannot pile up more work at a slow authorizer than clients that stay.
  const [late] = flood(provider, 1) as [Outcome];
  expect((await within(late.done, 5000, "answer to the client over the bound")).status).toBe(503);
  for (const id of authorizer.requests) authorizer.allow(id);
  await sleep(500);
  // Nobody was there to let in: no connect handler ran, so there is no disconnect to run either.
  expect(connects.events.length).toBe(0);
  expect(disconnects.events.length).toBe(0);
  const next = client(urlOf(provider, "chat"));
  opened.push(next);
  await until(() => authorizer.requests.length > MAX_PENDING_AUTHORIZATIONS, "the next request");
  authorizer.allow(authorizer.requests.at(-1) as string);
  expect((await next.done).status).toBe(101);
  expect(connects.events.length).toBe(1);
}, 60_000);

it("does not send the authorizer the request of a client that hung up while the authorizer's service was starting", async () => {
  const { provider } = await startProvider({ spec, handlerWaitMs: 4000 });
  const gone = await handshakes(provider, 3);
  await sleep(200);
  gone.hangUp();
  await sleep(100);
  const authorizer = await playedAuthorizer(provider, true);
  const next = client(urlOf(provider, "chat"));
  opened.push(next);
  expect((await next.done).status).toBe(101);
  expect(authorizer.requests.length).toBe(1);
}, 30_000);

it("gives a socket's connections back to its service's authorizer once a second copy's authorizer that took them leaves", async () => {
  const { provider } = await startProvider({ spec, handlerWaitMs: 3000 });
  const first = await playedAuthorizer(provider, true);
  let firstEnded = false;
  first.call.on("status", () => {
    firstEnded = true;
  });
  // A second copy of the service on its endpoint (say one started by hand) registers it too.
  const second = await playedAuthorizer(provider, true);
  const [one] = flood(provider, 1);
  expect((await within(one?.done ?? Promise.reject(), 2000, "answer")).status).toBe(101);
  expect(second.requests).toHaveLength(1);
  expect(first.requests).toEqual([]);
  second.call.end();
  await sleep(50);
  // Straight back to the service's own stream, which was never ended.
  const [two] = flood(provider, 1);
  expect((await within(two?.done ?? Promise.reject(), 2000, "answer")).status).toBe(101);
  expect(first.requests).toHaveLength(1);
  expect(firstEnded).toBe(false);
});
