// The ws gateway end to end: real ws clients on one side, real handler streams over gRPC on the
// other, playing the service.
import type { IncomingMessage } from "node:http";
import { Connections } from "@nitric-like/contracts/connections";
import { Rooms } from "@nitric-like/contracts/rooms";
import { Websocket, type WebsocketEventRequest } from "@nitric-like/contracts/websockets";
import { Code } from "@nitric-like/rpc";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { CLOSE_ANSWER_MS } from "../src/websocket/gateway.js";
import {
  accept,
  cleanup,
  closed,
  declareSocket,
  handle,
  nextMessage,
  open,
  serviceClient,
  sleep,
  startProvider,
  until,
  urlOf,
} from "./helpers.js";

afterEach(cleanup);

const text = (s: string) => new TextEncoder().encode(s);
/** What the client got instead of a connection: status and body. */
function refusal(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.on("open", () => reject(new Error("connected, expected a refusal")));
    ws.on("error", () => {});
    ws.on("unexpected-response", (_req, res: IncomingMessage) => {
      let body = "";
      res.on("data", (c: Buffer) => {
        body += c.toString();
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
  });
}

/** Every message a client gets, from the moment it is created. */
function collecting(url: string): { ws: WebSocket; got: { data: string; binary: boolean }[] } {
  const ws = new WebSocket(url);
  const got: { data: string; binary: boolean }[] = [];
  ws.on("message", (data: Buffer, binary: boolean) => got.push({ data: data.toString(), binary }));
  ws.on("error", () => {});
  return { ws, got };
}

const body = (e: WebsocketEventRequest | undefined) =>
  e?.websocketEvent.case === "message" ? e.websocketEvent.value : undefined;
const disconnection = (e: WebsocketEventRequest | undefined) =>
  e?.websocketEvent.case === "disconnection"
    ? { id: e.connectionId, code: e.websocketEvent.value.code, reason: e.websocketEvent.value.reason }
    : undefined;

describe("connect", () => {
  it("delivers every query value percent-encoded as sent, every header lower-cased, the address and the time", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "chat");
    const connects = await handle(client, "chat", "connect", accept);
    const before = Date.now();
    const ws = new WebSocket(`${urlOf(provider, "chat")}/?room=a&room=b%26c&name=x+y&flag`, {
      headers: { "X-Team": "blue", Authorization: "Bearer t" },
    });
    await new Promise((resolve) => ws.once("open", resolve));
    ws.terminate();
    const event = connects.events[0];
    expect(event?.socketName).toBe("chat");
    expect(event?.connectionId).toMatch(/^[A-Za-z0-9_-]{12}$/);
    if (event?.websocketEvent.case !== "connection") throw new Error("expected a connection event");
    const c = event.websocketEvent.value;
    const query = Object.fromEntries(Object.entries(c.queryParams).map(([k, v]) => [k, v.value]));
    expect(query).toEqual({ room: ["a", "b%26c"], name: ["x%20y"], flag: [""] });
    expect(c.headers["x-team"]?.value).toEqual(["blue"]);
    expect(c.headers.authorization?.value).toEqual(["Bearer t"]);
    expect(c.headers.upgrade?.value).toEqual(["websocket"]);
    expect(c.remoteAddress).toMatch(/127\.0\.0\.1/);
    expect(c.connectedAt).toBeGreaterThanOrEqual(before);
    expect(c.connectedAt).toBeLessThanOrEqual(Date.now());
  });

  it("keeps a connection's first 100 query values and 100 header lines for connection(id) and listings, and gives the connect handler every one", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "chat");
    const connects = await handle(client, "chat", "connect", accept);
    // Short names make some 16 KB of request thousands of entries; a listing of many such
    // connections would build them all again for each call.
    const names = Array.from({ length: 300 }, (_, i) => `k${i}`);
    const query = `${names.slice(0, 150).join("&")}&k0=again&${names.slice(150).join("&")}&sp%20ace=a+b`;
    const headers = Object.fromEntries(names.map((n) => [`x-${n}`, "v"]));
    const ws = new WebSocket(`${urlOf(provider, "chat")}/?${query}`, { headers });
    await new Promise((resolve) => ws.once("open", resolve));
    const event = connects.events[0];
    if (event?.websocketEvent.case !== "connection") throw new Error("expected a connection event");
    const connected = event.websocketEvent.value;
    expect(Object.keys(connected.queryParams)).toHaveLength(301);
    expect(connected.queryParams.k0?.value).toEqual(["", "again"]);
    expect(Object.keys(connected.headers).filter((h) => h.startsWith("x-k"))).toHaveLength(300);

    const kept = (
      await client.unary(Connections.method.getConnection, { socketName: "chat", connectionId: event.connectionId })
    ).connection;
    // The first 100 values, by name in order of first appearance: k0's two, then k1 to k98.
    expect(Object.keys(kept?.query ?? {})).toEqual(names.slice(0, 99));
    expect(kept?.query.k0?.value).toEqual(["", "again"]);
    expect(Object.keys(kept?.headers ?? {})).toHaveLength(100);
    for await (const { connection } of client.serverStream(Connections.method.listConnections, { socketName: "chat" }))
      expect(connection?.query).toEqual(kept?.query);
    ws.terminate();
  });

  it("gives every connection its own id, past the 256 ids one draw of random bytes makes", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "chat");
    const connects = await handle(client, "chat", "connect", accept);
    for (let batch = 0; batch < 6; batch++) {
      const clients = await Promise.all(Array.from({ length: 50 }, () => open(urlOf(provider, "chat"))));
      for (const ws of clients) ws.terminate();
    }
    const ids = connects.events.map((e) => e.connectionId);
    expect(ids).toHaveLength(300);
    expect(new Set(ids).size).toBe(300);
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_-]{12}$/);
  });

  it("refuses a rejected client with 403 and the handler's reason", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "chat");
    await handle(client, "chat", "connect", () => ({
      websocketResponse: { case: "connectionResponse", value: { reject: true, reason: "no token" } },
    }));
    expect(await refusal(urlOf(provider, "chat"))).toEqual({ status: 403, body: "no token" });
  });

  it("refuses with the handler's 4xx status, and without a reason says which socket's handler refused", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "chat");
    await handle(client, "chat", "connect", () => ({
      websocketResponse: { case: "connectionResponse", value: { reject: true, status: 401 } },
    }));
    expect(await refusal(urlOf(provider, "chat"))).toEqual({
      status: 401,
      body: 'connection refused by the connect handler of websocket "chat"',
    });
  });

  it("delivers the connect replies first, then frames sent during connect, before anything else", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "chat");
    const connects = await handle(client, "chat", "connect", () => undefined);
    connects.call.on("data", async (m) => {
      if (m.content.case !== "websocketEventRequest") return;
      const { connectionId } = m.content.value;
      await client.unary(Websocket.method.sendMessage, { socketName: "chat", connectionId, data: text("sent") });
      connects.call.write({
        id: m.id,
        content: {
          case: "websocketEventResponse",
          value: {
            websocketResponse: { case: "connectionResponse", value: { reject: false } },
            replies: [{ data: text("replied") }, { data: new Uint8Array([1, 2]), binary: true }],
          },
        },
      });
    });
    const { ws, got } = collecting(urlOf(provider, "chat"));
    await until(() => got.length === 3, "three frames");
    expect(got).toEqual([
      { data: "replied", binary: false },
      { data: "\u0001\u0002", binary: true },
      { data: "sent", binary: false },
    ]);
    ws.terminate();
  });

  it("does not upgrade a client that left while its connect handler ran, and reports its disconnect with 1006", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "chat");
    const connects = await handle(client, "chat", "connect", () => undefined);
    let eventId = "";
    connects.call.on("data", (m) => {
      eventId = m.id;
    });
    const disconnects = await handle(client, "chat", "disconnect", () => ({}));
    const ws = new WebSocket(urlOf(provider, "chat"));
    ws.on("error", () => {});
    await until(() => connects.events.length === 1, "the connect event");
    ws.terminate();
    await sleep(50);
    const request = connects.events[0];
    connects.call.write({ id: eventId, content: { case: "websocketEventResponse", value: accept() ?? {} } });
    await until(() => disconnects.events.length === 1, "the disconnect event");
    expect(disconnection(disconnects.events[0])).toMatchObject({ id: request?.connectionId, code: 1006 });
  });

  it("accepts every client when no service handles connect, warning once", async () => {
    const { provider, logs } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "open-door");
    (await open(urlOf(provider, "open-door"))).terminate();
    (await open(urlOf(provider, "open-door"))).terminate();
    expect(logs.warn).toEqual(['websocket "open-door": no service handles connect events; accepting every connection']);
  });

  it("answers 503 saying how the service ended when the connect handler's service exits and does not come back", async () => {
    const { provider, logs } = await startProvider({ handlerWaitMs: 100 });
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "chat");
    const connects = await handle(client, "chat", "connect", () => undefined);
    const refused = refusal(urlOf(provider, "chat"));
    await until(() => connects.events.length === 1, "the connect event");
    provider.serviceExited("svc", 1, null);
    const { status, body } = await refused;
    expect(status).toBe(503);
    expect(body).toMatch(
      /^websocket "chat": the connect handler did not register within 0\.1 s \(connection \S+\); its service "svc" exited with code 1 and has not registered it again; fix the service and it restarts\n$/,
    );
    expect(logs.error).toEqual([body.trim()]);
  });

  it("answers 503 saying the service was removed when run removed it and no other service registers its handler", async () => {
    const { provider, logs } = await startProvider({ handlerWaitMs: 100 });
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "chat");
    const connects = await handle(client, "chat", "connect", () => undefined);
    const refused = refusal(urlOf(provider, "chat"));
    await until(() => connects.events.length === 1, "the connect event");
    provider.serviceExited("svc", 1, null, false);
    provider.serviceRemoved("svc", "was removed: services/svc.ts is gone");
    const { status, body } = await refused;
    expect(status).toBe(503);
    expect(body).toMatch(
      /^websocket "chat": the connect handler did not register within 0\.1 s \(connection \S+\); its service "svc" was removed: services\/svc\.ts is gone, and no other service has registered it; declare the handler in a service\n$/,
    );
    expect(logs.error).toEqual([body.trim()]);
  });

  it("hands a removed service's waiting connect event to the service that registers the handler next (a renamed file's)", async () => {
    const { provider } = await startProvider({ handlerWaitMs: 5000 });
    const client = await serviceClient(provider, "old");
    await declareSocket(client, "chat");
    const connects = await handle(client, "chat", "connect", () => undefined);
    const ws = new WebSocket(urlOf(provider, "chat"));
    ws.on("error", () => {});
    await until(() => connects.events.length === 1, "the connect event");
    provider.serviceExited("old", 1, null, false);
    provider.serviceRemoved("old", "was removed: services/old.ts is gone");
    const renamed = await serviceClient(provider, "renamed");
    await declareSocket(renamed, "chat");
    const again = await handle(renamed, "chat", "connect", accept);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("close", (code) => reject(new Error(`closed with ${code}`)));
    });
    expect(again.events).toHaveLength(1);
    ws.terminate();
  });
});

describe("messages", () => {
  it("round-trips text and binary frames through replies, keeping each frame's kind", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "echo");
    const messages = await handle(client, "echo", "message", (e) => {
      const m = body(e);
      return { replies: [{ data: m?.body ?? new Uint8Array(), binary: m?.binary ?? false }] };
    });
    const ws = await open(urlOf(provider, "echo"));
    let got = nextMessage(ws);
    ws.send("héllo");
    expect(await got).toEqual({ data: Buffer.from("héllo"), binary: false });
    got = nextMessage(ws);
    ws.send(Buffer.from([0, 255, 1]));
    expect(await got).toEqual({ data: Buffer.from([0, 255, 1]), binary: true });
    // Either side of the largest payload the gateway writes as one frame of its own (ONE_WRITE_MAX).
    for (const [size, binary] of [
      [4000, false],
      [4001, true],
      [70000, false],
    ] as const) {
      const data = Buffer.alloc(size, (size % 26) + 97);
      got = nextMessage(ws);
      ws.send(data, { binary });
      expect(await got).toEqual({ data, binary });
    }
    expect(messages.events.map((e) => body(e)?.binary)).toEqual([false, true, false, true, false]);
  });

  it("round-trips text and binary frames through SendMessage, keeping each frame's kind", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "echo");
    await handle(client, "echo", "message", (e) => {
      const m = body(e);
      // Not awaited by the handler: the test may end (closing the client) while its answer is on the way.
      client
        .unary(Websocket.method.sendMessage, {
          socketName: "echo",
          connectionId: e.connectionId,
          data: m?.body ?? new Uint8Array(),
          binary: m?.binary ?? false,
        })
        .catch(() => {});
      return {};
    });
    const ws = await open(urlOf(provider, "echo"));
    let got = nextMessage(ws);
    ws.send("text, not binary");
    expect(await got).toEqual({ data: Buffer.from("text, not binary"), binary: false });
    got = nextMessage(ws);
    // Valid UTF-8 sent as binary stays binary: the kind comes from the flag, not the bytes.
    ws.send(Buffer.from("abc"), { binary: true });
    expect(await got).toEqual({ data: Buffer.from("abc"), binary: true });
  });

  it("closes with 1013 after waiting when the expected message handler never registers", async () => {
    const spec = {
      name: "t",
      services: [],
      resources: [{ kind: "websocket" as const, name: "late", declaredBy: ["svc"], handlers: { message: "svc" } }],
      policies: [],
    };
    const { provider, logs } = await startProvider({ spec, handlerWaitMs: 100 });
    const ws = await open(urlOf(provider, "late"));
    const done = closed(ws);
    ws.send("anyone?");
    const { code, reason } = await done;
    expect(code).toBe(1013);
    expect(reason).toBe("message handler unavailable, try again later");
    expect(logs.error[0]).toMatch(/websocket "late": the message handler did not register within 0\.1 s/);
  });

  it("fails a waiting message (1013) and a connect (503, saying it waits, not its failure) at once while run says the service waits for a file change, logged once a burst", async () => {
    const spec = {
      name: "t",
      services: [],
      resources: [
        {
          kind: "websocket" as const,
          name: "late",
          declaredBy: ["svc"],
          handlers: { connect: "svc", message: "svc" },
        },
      ],
      policies: [],
    };
    // A 10 s wait: an answer that comes at once is not the wait running out.
    const { provider, logs } = await startProvider({ spec, handlerWaitMs: 10_000 });
    // What a client is told: never the service's failure (run's log says it), which may name the
    // code's file and line, or hold a connection string with its password.
    const why = "is not running until one of its files changes (run's output says why)";
    const waited = refusal(urlOf(provider, "late"));
    await sleep(100);
    provider.serviceWaiting("svc", true);
    const asked = Date.now();
    const first = await waited;
    expect(first.status).toBe(503);
    expect(first.body).toMatch(
      /^websocket "late": the connect handler is not registered \(connection \S+\): its service "svc" is not running until one of its files changes \(run's output says why\)\n$/,
    );
    expect((await refusal(urlOf(provider, "late"))).body).toContain(`its service "svc" ${why}`);
    expect(Date.now() - asked).toBeLessThan(2000);
    // Every client's failure says the same: one line a burst, not one per client and event.
    expect(logs.error.filter((l) => l.includes(why))).toEqual([`${first.body.trim()}; refused it with 503`]);
    // Starting again: its events wait for it, as while it restarts.
    provider.serviceStarting("svc");
    const client = await serviceClient(provider, "svc");
    await handle(client, "late", "connect", accept);
    const ws = await open(urlOf(provider, "late"));
    const done = closed(ws);
    ws.send("anyone?");
    await sleep(100);
    provider.serviceWaiting("svc", true);
    expect(await done).toEqual({ code: 1013, reason: "message handler unavailable, try again later" });
    expect(Date.now() - asked).toBeLessThan(4000);
    await sleep(100);
    expect(logs.error.filter((l) => l.includes(why))).toHaveLength(1);
  });

  it("logs a client closed because its message handler never registered once, however many of its messages waited", async () => {
    const spec = {
      name: "t",
      services: [],
      resources: [{ kind: "websocket" as const, name: "late", declaredBy: ["svc"], handlers: { message: "svc" } }],
      policies: [],
    };
    const { provider, logs } = await startProvider({ spec, handlerWaitMs: 100 });
    const ws = await open(urlOf(provider, "late"));
    const done = closed(ws);
    for (const n of [1, 2, 3]) {
      ws.send(`anyone? ${n}`);
      await sleep(20);
    }
    expect((await done).code).toBe(1013);
    // The later messages' waits run out after the close: they add nothing to say.
    await sleep(300);
    expect(logs.error).toHaveLength(1);
    expect(logs.error[0]).toMatch(/the message handler did not register within 0\.1 s .*; closed connection/);
  });

  it("stops waiting for a message handler its saved service no longer declares (a renamed socket): 1011 at once, and why", async () => {
    const specOf = (socket: string) => ({
      name: "t",
      services: [{ name: "svc", file: "services/svc.ts" }],
      resources: [{ kind: "websocket" as const, name: socket, declaredBy: ["svc"], handlers: { message: "svc" } }],
      policies: [],
    });
    const { provider, logs } = await startProvider({ spec: specOf("socket"), handlerWaitMs: 5000 });
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "socket");
    const messages = await handle(client, "socket", "message", () => undefined);
    const ws = await open(urlOf(provider, "socket"));
    // The save restarts the service: its old copy is stopped, and the message waits for the new one.
    provider.serviceStarting("svc");
    provider.serviceExited("svc", null, "SIGTERM", false);
    messages.call.end();
    const done = closed(ws);
    ws.send("anyone?");
    await sleep(100);
    const started = Date.now();
    // Its collect pass: it now declares "chat-socket" instead.
    provider.routesChanged(specOf("chat-socket"));
    const { code, reason } = await done;
    expect(Date.now() - started).toBeLessThan(1000);
    expect(code).toBe(1011);
    expect(reason).toBe('no message handler for websocket "socket"');
    expect(logs.error).toHaveLength(1);
    expect(logs.error[0]).toMatch(
      /^websocket "socket": service "svc" no longer declares the message handler \(since its last save\), and no other service does \(connection \S+\); add socket\.on\("message", \.\.\.\) to a service, or reconnect to the socket it declares now; closed connection \S+$/,
    );
    // A client that connects now is closed at once too, told the same.
    const late = await open(urlOf(provider, "socket"));
    const lateDone = closed(late);
    late.send("still?");
    expect((await lateDone).code).toBe(1011);
    expect(logs.error).toHaveLength(2);
    expect(logs.error[1]).toMatch(/^websocket "socket": service "svc" no longer declares the message handler/);
  });

  it("keeps a client connected while the message handler's service restarts, and hands its message to the new process", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "s");
    const old = await handle(client, "s", "message", () => undefined);
    const ws = await open(urlOf(provider, "s"));
    provider.serviceExited("svc", null, "SIGKILL");
    provider.serviceStarting("svc");
    // The old process's stream is ended with OK: an error status would crash @nitric/sdk.
    expect(await old.status).toBe(Code.OK);
    expect(provider.registrations()).toEqual([]);
    const got = nextMessage(ws);
    ws.send("while restarting");
    await sleep(50);
    await handle(client, "s", "message", (e) => ({ replies: [{ data: body(e)?.body ?? new Uint8Array() }] }));
    expect((await got).data.toString()).toBe("while restarting");
  });
});

describe("sending and closing", () => {
  it("answers NOT_FOUND naming the socket and connection for an unknown connection", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "socket");
    await expect(
      client.unary(Websocket.method.sendMessage, { socketName: "socket", connectionId: "abc", data: text("x") }),
    ).rejects.toMatchObject({
      code: Code.NOT_FOUND,
      details: 'websocket "socket": connection "abc" is not connected (it closed, or never existed)',
    });
    await expect(
      client.unary(Websocket.method.closeConnection, { socketName: "socket", connectionId: "abc" }),
    ).rejects.toMatchObject({ code: Code.NOT_FOUND });
  });

  it("answers NOT_FOUND saying to declare a socket nobody declared", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await expect(client.unary(Websocket.method.socketDetails, { socketName: "ghost" })).rejects.toMatchObject({
      code: Code.NOT_FOUND,
      details: 'websocket("ghost"): no such socket; declare it with websocket("ghost")',
    });
  });

  it("tells a service the URL of its socket", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "chat");
    const { url } = await client.unary(Websocket.method.socketDetails, { socketName: "chat" });
    expect(url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
    expect(provider.sockets()).toEqual([{ name: "chat", url }]);
  });

  it("refuses a text frame that is not UTF-8, saying to send it as binary", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "s");
    const connects = await handle(client, "s", "connect", accept);
    await open(urlOf(provider, "s"));
    await expect(
      client.unary(Websocket.method.sendMessage, {
        socketName: "s",
        connectionId: connects.events[0]?.connectionId ?? "",
        data: new Uint8Array([0xc3]),
        binary: false,
      }),
    ).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
      details: 'websocket "s": a text frame must be UTF-8; send these bytes as binary',
    });
  });

  it("sends bytes that are not UTF-8 as binary when the caller does not say (as Nitric's SDKs)", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "s");
    const connects = await handle(client, "s", "connect", accept);
    const ws = await open(urlOf(provider, "s"));
    const got = nextMessage(ws);
    await client.unary(Websocket.method.sendMessage, {
      socketName: "s",
      connectionId: connects.events[0]?.connectionId ?? "",
      data: new Uint8Array([0xc3]),
    });
    expect(await got).toEqual({ data: Buffer.from([0xc3]), binary: true });
  });
});

describe("disconnect", () => {
  async function setup() {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "s");
    const connects = await handle(client, "s", "connect", accept);
    const disconnects = await handle(client, "s", "disconnect", () => ({}));
    const ws = await open(urlOf(provider, "s"));
    const id = connects.events[0]?.connectionId ?? "";
    return { client, disconnects, ws, id };
  }

  it("reports a client's close with its code and reason", async () => {
    const { disconnects, ws, id } = await setup();
    ws.close(4001, "bye now");
    await until(() => disconnects.events.length === 1, "the disconnect event");
    expect(disconnection(disconnects.events[0])).toEqual({ id, code: 4001, reason: "bye now" });
  });

  it("reports a close the service asked for with CloseConnection, 1000 by default", async () => {
    const { client, disconnects, ws, id } = await setup();
    const done = closed(ws);
    await client.unary(Websocket.method.closeConnection, { socketName: "s", connectionId: id });
    expect(await done).toEqual({ code: 1000, reason: "" });
    await until(() => disconnects.events.length === 1, "the disconnect event");
    expect(disconnection(disconnects.events[0])).toMatchObject({ id, code: 1000 });
    await expect(
      client.unary(Websocket.method.sendMessage, { socketName: "s", connectionId: id, data: text("late") }),
    ).rejects.toMatchObject({ code: Code.NOT_FOUND });
  });

  it("treats a connection whose close has begun as gone, and cuts off a client that does not answer the close, whose disconnect follows", async () => {
    const { client, disconnects, ws, id } = await setup();
    const s = { socketName: "s", connectionId: id };
    expect(await client.unary(Rooms.method.join, { ...s, room: "hall" })).toMatchObject({ joined: true });
    // The client stops reading, so it never answers the close frame.
    (ws as unknown as { _socket: { pause(): void } })._socket.pause();
    await client.unary(Websocket.method.closeConnection, { ...s, code: 4002 });
    expect((await client.unary(Connections.method.isConnected, s)).connected).toBe(false);
    await expect(client.unary(Connections.method.getConnection, s)).rejects.toMatchObject({ code: Code.NOT_FOUND });
    const listed: string[] = [];
    for await (const r of client.serverStream(Connections.method.listConnections, { socketName: "s" }))
      listed.push(r.connection?.connectionId ?? "");
    expect(listed).not.toContain(id);
    expect((await client.unary(Rooms.method.listMembers, { socketName: "s", room: "hall" })).connectionIds).toEqual([]);
    for (const call of [
      client.unary(Websocket.method.sendMessage, { ...s, data: text("late") }),
      client.unary(Rooms.method.join, { ...s, room: "lobby" }),
      client.unary(Rooms.method.setState, { ...s, stateJson: "{}" }),
    ])
      await expect(call).rejects.toMatchObject({ code: Code.NOT_FOUND });
    // A second close is the close under way, not an error.
    await client.unary(Websocket.method.closeConnection, s);
    expect(disconnects.events).toHaveLength(0);
    // Not ws's 30 s: cut off once CLOSE_ANSWER_MS has passed without its answer.
    await until(() => disconnects.events.length === 1, "the disconnect event", CLOSE_ANSWER_MS + 2000);
    expect(disconnection(disconnects.events[0])).toMatchObject({ id, code: 1006 });
  });

  it("reports a dropped TCP connection with 1006", async () => {
    const { disconnects, ws, id } = await setup();
    ws.terminate();
    await until(() => disconnects.events.length === 1, "the disconnect event");
    expect(disconnection(disconnects.events[0])).toMatchObject({ id, code: 1006 });
  });
});
