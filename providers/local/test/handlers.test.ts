// Handler streams (HandleEvents) and the provider's lifecycle: registration, replacement, service
// restarts, timeouts and stop, over real gRPC.
import { createServer } from "node:net";
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { Resources, ResourceType } from "@nitric-like/contracts/resources";
import {
  ClientMessageSchema,
  type ServerMessage,
  ServerMessageSchema,
  WebsocketEventType,
  WebsocketHandler,
} from "@nitric-like/contracts/websockets";
import { MAX_STANDBY } from "@nitric-like/provider-kit";
import { Code } from "@nitric-like/rpc";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import {
  accept,
  cleanup,
  closed,
  declareSocket,
  handle,
  open,
  serviceClient,
  sleep,
  startProvider,
  TRANSPORTS,
  until,
  urlOf,
  useTransport,
} from "./helpers.js";

afterEach(cleanup);

describe.each(TRANSPORTS)("handler streams over %s", (transport) => {
  beforeEach(() => useTransport(transport));
  it("ends a stream whose first message is not a registration with INVALID_ARGUMENT", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    const call = client.bidi(WebsocketHandler.method.handleEvents);
    call.on("error", () => {});
    const status = new Promise<{ code: number; details: string }>((resolve) => call.on("status", resolve));
    call.write({ id: "7", content: { case: "websocketEventResponse", value: {} } });
    expect(await status).toMatchObject({
      code: Code.INVALID_ARGUMENT,
      details: "websocket handler: the first message on a handler stream must be a registration",
    });
  });

  it("refuses a registration for an invalid socket name with the naming rule", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    const call = client.bidi(WebsocketHandler.method.handleEvents);
    call.on("error", () => {});
    const status = new Promise<{ code: number; details: string }>((resolve) => call.on("status", resolve));
    call.write({
      id: "",
      content: { case: "registrationRequest", value: { socketName: "Chat", eventType: WebsocketEventType.Message } },
    });
    expect(await status).toMatchObject({
      code: Code.INVALID_ARGUMENT,
      details: 'websocket("Chat"): invalid resource name "Chat", use lower-kebab-case such as "chat"',
    });
  });

  it("answers a registration with an empty id and a registration response", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    const call = client.bidi(WebsocketHandler.method.handleEvents);
    call.on("error", () => {});
    const first = new Promise<ServerMessage>((resolve) => call.on("data", resolve));
    call.write({
      id: "",
      content: { case: "registrationRequest", value: { socketName: "s", eventType: WebsocketEventType.Connect } },
    });
    const message = await first;
    expect(message.id).toBe("");
    expect(message.content.case).toBe("registrationResponse");
    call.end();
  });

  it("lists live registrations and calls back when they change, dropping a stream that ends", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "chat");
    let changes = 0;
    provider.onRegistrationsChanged(() => {
      changes++;
    });
    const messages = await handle(client, "room", "message", () => ({}));
    await handle(client, "room", "connect", accept);
    expect(changes).toBe(2);
    expect(provider.registrations().sort((a, b) => a.event.localeCompare(b.event))).toEqual([
      { service: "chat", socket: "room", event: "connect" },
      { service: "chat", socket: "room", event: "message" },
    ]);
    messages.call.end();
    for (let i = 0; i < 100 && provider.registrations().length > 1; i++) await sleep(5);
    expect(provider.registrations()).toEqual([{ service: "chat", socket: "room", event: "connect" }]);
    expect(changes).toBe(3);
  });

  it("calls back when a socket declared after its handlers registered starts listening, so its URL can be told", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "late");
    // As @nitric/sdk does: its handler streams open without waiting for the socket's declaration.
    await handle(client, "added", "connect", accept);
    await handle(client, "added", "message", () => ({}));
    expect(provider.sockets()).toEqual([]);
    const seen: string[][] = [];
    provider.onRegistrationsChanged(() => seen.push(provider.sockets().map((s) => s.name)));
    await declareSocket(client, "added");
    expect(seen).toContainEqual(["added"]);
  });

  it("keeps the stream a second registration of the same handler displaced standing by: events go to the newest, then to the first again once the newest ends, saying so", async () => {
    const { provider, logs } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "s");
    await handle(client, "s", "connect", accept);
    const first = await handle(client, "s", "message", () => ({}));
    let firstEnded = false;
    void first.status.then(() => {
      firstEnded = true;
    });
    // A second copy of the service on its endpoint, say one started by hand.
    const second = await handle(client, "s", "message", () => ({}));
    expect(provider.registrations()).toContainEqual({ service: "svc", socket: "s", event: "message" });
    expect(provider.registrations()).toHaveLength(2);
    const ws = await open(urlOf(provider, "s"));
    ws.send("to the newest");
    await until(() => second.events.length === 1, "the second stream gets the message");
    expect(first.events).toEqual([]);
    second.call.end();
    await second.status;
    ws.send("to the first again");
    await until(() => first.events.length === 1, "the first stream gets the message again", 5000);
    expect(second.events).toHaveLength(1);
    // Both SDKs take an OK end as "stop": the first stream must not have been ended.
    expect(firstEnded).toBe(false);
    expect(provider.registrations()).toHaveLength(2);
    expect(logs.info).toContain(
      'websocket "s": another stream of service "svc" registered the message handler (a second copy of the service on its endpoint?); it gets its events from now on, and the earlier stream takes them again when it ends',
    );
    expect(logs.info).toContain(
      'websocket "s": the stream of service "svc" with the message handler went; the earlier stream of service "svc", which registered it before, handles its events again',
    );
    expect(logs.warn).toEqual([]);
    expect(logs.error).toEqual([]);
  });

  it("lets the first stream answer the events it was sent after a second registration displaced it", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "s");
    await handle(client, "s", "message", () => ({}));
    const answers: (() => void)[] = [];
    const first = await handle(client, "s", "connect", (_request, id) => {
      const value = { websocketResponse: { case: "connectionResponse" as const, value: { reject: false } } };
      answers.push(() => first.call.write({ id, content: { case: "websocketEventResponse", value } }));
      return undefined;
    });
    const opening = open(urlOf(provider, "s"));
    await until(() => answers.length === 1, "the first stream gets the connect");
    const second = await handle(client, "s", "connect", accept);
    // Answered by the stream it was sent to, not run again by the second.
    answers[0]?.();
    const ws = await opening;
    expect(ws.readyState).toBe(ws.OPEN);
    expect(second.events).toEqual([]);
  });

  it("ends the oldest stream standing by with OK once more than MAX_STANDBY stand by", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    const streams = [];
    for (let i = 0; i < MAX_STANDBY + 2; i++) streams.push(await handle(client, "s", "message", () => ({})));
    expect(await streams[0]?.status).toBe(Code.OK);
    let secondEnded = false;
    void streams[1]?.status.then(() => {
      secondEnded = true;
    });
    await sleep(50);
    expect(secondEnded).toBe(false);
  });

  it("logs an error naming socket, event, connection and timeout when a message handler does not answer", async () => {
    const { provider, logs } = await startProvider({ handlerTimeoutMs: 100 });
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "slow");
    const messages = await handle(client, "slow", "message", () => undefined);
    const ws = await open(urlOf(provider, "slow"));
    ws.send("hello?");
    for (let i = 0; i < 100 && logs.error.length === 0; i++) await sleep(5);
    const id = messages.events[0]?.connectionId;
    expect(logs.error).toEqual([
      `websocket "slow": the message handler of service "svc" did not answer within 0.1 s (connection ${id})`,
    ]);
    // A slow handler does not cost the client its connection.
    expect(ws.readyState).toBe(ws.OPEN);
  });

  it("sends a connect event that timed out to the handler's next stream when its stream ends, and runs the disconnect once that one accepts", async () => {
    const { provider } = await startProvider({ handlerTimeoutMs: 150 });
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "slow");
    const disconnects = await handle(client, "slow", "disconnect", () => ({}));
    const stuck = await handle(client, "slow", "connect", () => undefined);
    const status = await new Promise<number | undefined>((resolve) => {
      const ws = new WebSocket(urlOf(provider, "slow"));
      ws.on("unexpected-response", (_req, res) => resolve(res.statusCode));
      ws.on("error", () => resolve(undefined));
    });
    expect(status).toBe(504);
    const id = stuck.events[0]?.connectionId;
    // Its handler may have stored the connection before its stream ended (a save, a crash): the
    // event goes to the next copy's handler, as any unanswered event, and its answer counts.
    stuck.call.end();
    const next = await handle(client, "slow", "connect", accept);
    for (let i = 0; i < 200 && disconnects.events.length === 0; i++) await sleep(10);
    expect(next.events.map((e) => e.connectionId)).toEqual([id]);
    expect(disconnects.events).toHaveLength(1);
    expect(disconnects.events[0]).toMatchObject({
      connectionId: id,
      websocketEvent: {
        case: "disconnection",
        value: {
          code: 1006,
          reason: "connect handler answered after the handler timeout (0.15 s); its client was refused with 504",
        },
      },
    });
  });
});

describe("a second client on a service's gRPC endpoint", () => {
  /** A HandleEvents stream of @grpc/grpc-js (a client of another make), answering every event. */
  async function rawHandler(address: string, socket: string, eventType: WebsocketEventType) {
    const { Client: GrpcClient, credentials } = await import("@grpc/grpc-js");
    const raw = new GrpcClient(address, credentials.createInsecure());
    const call = raw.makeBidiStreamRequest(
      "/nitric.proto.websockets.v1.WebsocketHandler/HandleEvents",
      (b: Buffer) => b,
      (b: Buffer) => b,
    );
    call.on("error", () => {});
    const events: string[] = [];
    const status = new Promise<number>((resolve) => call.on("status", (s: { code: number }) => resolve(s.code)));
    const send = (message: MessageInitShape<typeof ClientMessageSchema>) =>
      call.write(Buffer.from(toBinary(ClientMessageSchema, create(ClientMessageSchema, message))));
    let registered = false;
    call.on("data", (bytes: Buffer) => {
      const message = fromBinary(ServerMessageSchema, bytes);
      if (message.content.case === "registrationResponse") registered = true;
      if (message.content.case !== "websocketEventRequest") return;
      events.push(message.content.value.connectionId);
      send({ id: message.id, content: { case: "websocketEventResponse", value: {} } });
    });
    send({ id: "", content: { case: "registrationRequest", value: { socketName: socket, eventType } } });
    await until(() => registered, "the raw registration is answered");
    return {
      events,
      status,
      leave: () => {
        call.end();
        return status.finally(() => raw.close());
      },
    };
  }

  it("gives a socket event back to the service once a raw @grpc/grpc-js client that took it leaves", async () => {
    const { provider, logs } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "s");
    const service = await handle(client, "s", "message", () => ({}));
    let serviceEnded = false;
    void service.status.then(() => {
      serviceEnded = true;
    });
    const intruder = await rawHandler(await provider.endpoint("svc"), "s", WebsocketEventType.Message);
    const ws = await open(urlOf(provider, "s"));
    ws.send("one");
    await until(() => intruder.events.length === 1, "the raw client gets the message");
    expect(await intruder.leave()).toBe(Code.OK);
    ws.send("two");
    await until(() => service.events.length === 1, "the service gets the message again", 5000);
    expect(serviceEnded).toBe(false);
    expect(logs.info).toContain(
      'websocket "s": the stream of service "svc" with the message handler went; the earlier stream of service "svc", which registered it before, handles its events again',
    );
    expect(logs.error).toEqual([]);
  });

  it("says a handler whose stream its client ended while the service ran was ended so, not that it never registered", async () => {
    const { provider, logs } = await startProvider({ handlerWaitMs: 100 });
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "s");
    const service = await handle(client, "s", "message", () => ({}));
    service.call.end();
    await service.status;
    await until(() => provider.registrations().length === 0, "the stream is gone");
    const ws = await open(urlOf(provider, "s"));
    ws.send("anyone?");
    await until(() => logs.error.some((l) => l.includes("did not register within")), "the event fails");
    const line = logs.error.find((l) => l.includes("did not register within"));
    expect(line).toContain(
      'the stream of service "svc" that registered it was ended by its client while the service ran (a copy of the service started by hand on its endpoint that stopped, or an SDK that ended its handler), and nothing has registered it since; restart the service (save one of its files) to register it again',
    );
    expect(line).not.toContain("since it started");
  });
});

describe.each(TRANSPORTS)("stop over %s", (transport) => {
  beforeEach(() => useTransport(transport));
  it("waits for a connect handler past its timeout as it stops, then says no disconnect runs for its connection", async () => {
    const { provider, logs } = await startProvider({ handlerTimeoutMs: 100 });
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "slow");
    await handle(client, "slow", "disconnect", () => ({}));
    const stuck = await handle(client, "slow", "connect", () => undefined);
    const status = await new Promise<number | undefined>((resolve) => {
      const ws = new WebSocket(urlOf(provider, "slow"));
      ws.on("unexpected-response", (_req, res) => resolve(res.statusCode));
      ws.on("error", () => resolve(undefined));
    });
    expect(status).toBe(504);
    await provider.stop();
    expect(logs.warn).toContain(
      `websocket "slow": the provider is stopping; no disconnect runs for connection ${stuck.events[0]?.connectionId}, whose connect handler passed the handler timeout and had not ended`,
    );
  });

  it("delivers the disconnect of every client before ending the handler streams, and can be called twice", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "s");
    const disconnects = await handle(client, "s", "disconnect", () => ({}));
    const a = await open(urlOf(provider, "s"));
    const b = await open(urlOf(provider, "s"));
    const closes = Promise.all([closed(a), closed(b)]);
    await Promise.all([provider.stop(), provider.stop()]);
    expect(await closes).toEqual([
      { code: 1001, reason: "server shutting down" },
      { code: 1001, reason: "server shutting down" },
    ]);
    expect(disconnects.events).toHaveLength(2);
    expect(await disconnects.status).toBe(Code.OK);
  });
});

describe.each(TRANSPORTS)("declarations over %s", (transport) => {
  beforeEach(() => useTransport(transport));
  it("answers every declaration with an empty response, including kinds it does not serve", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    const responses = await Promise.all([
      client.unary(Resources.method.declare, { id: { type: ResourceType.Websocket, name: "s" } }),
      client.unary(Resources.method.declare, {
        id: { type: ResourceType.KeyValueStore, name: "k" },
        config: { case: "keyValueStore", value: {} },
      }),
      client.unary(Resources.method.declare, { id: { type: ResourceType.Topic, name: "t" } }),
    ]);
    for (const r of responses) expect(Object.keys(r).filter((k) => k !== "$typeName")).toEqual([]);
  });

  it("starts the gateways of the spec's sockets before any service runs", async () => {
    const { provider } = await startProvider({
      spec: {
        name: "t",
        services: [],
        resources: [
          { kind: "websocket", name: "b", declaredBy: ["svc"], handlers: {} },
          { kind: "websocket", name: "a", declaredBy: ["svc"], handlers: {} },
          { kind: "kv", name: "k", declaredBy: ["svc"] },
        ],
        policies: [],
      },
    });
    expect(provider.sockets().map((s) => s.name)).toEqual(["a", "b"]);
    const res = await fetch(urlOf(provider, "a").replace("ws://", "http://"));
    expect(res.status).toBe(426);
  });

  it("gives a service the same endpoint every time it asks", async () => {
    const { provider } = await startProvider();
    const first = await provider.endpoint("svc");
    expect(first).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(await provider.endpoint("svc")).toBe(first);
    expect(await provider.endpoint("other")).not.toBe(first);
  });
});

describe.each(TRANSPORTS)("start failures over %s", (transport) => {
  beforeEach(() => useTransport(transport));
  it("closes the gateways it had started when another socket's pinned port is taken", async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      const dir = (await startProvider()).dir;
      const failing = startProvider({
        project: { name: "t", dir, file: "", services: [], websockets: { busy: { port } } },
        randomPorts: false,
        dataDir: `${dir}/kv2`,
        spec: {
          name: "t",
          services: [],
          resources: [
            { kind: "websocket", name: "busy", declaredBy: ["svc"], handlers: {} },
            { kind: "websocket", name: "free", declaredBy: ["svc"], handlers: {} },
          ],
          policies: [],
        },
      });
      await expect(failing).rejects.toThrow(`websocket "busy": port ${port} is already in use`);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
    // cleanup() (afterEach) fails if the "free" gateway were still listening.
  });
});

describe("test cleanup", () => {
  it("fails when a server is left listening", async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      await expect(cleanup()).rejects.toThrow(
        "cleanup: 1 server(s) still listening after stop(); stop() must close them",
      );
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
