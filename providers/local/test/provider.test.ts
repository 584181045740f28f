// The local provider on its own: real gRPC calls as a service would make them, real ws clients,
// real lmdb files.
import { existsSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { Health, HealthCheckResponse_ServingStatus } from "@nitric-like/contracts/health";
import { KvStore } from "@nitric-like/contracts/kvstore";
import { Action, Resources, ResourceType } from "@nitric-like/contracts/resources";
import { Websocket } from "@nitric-like/contracts/websockets";
import { Client, Code } from "@nitric-like/rpc";
import { createGrpcTransport } from "@nitric-like/rpc/grpc";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { rawQuery } from "../src/websocket/gateway.js";
import {
  accept,
  cleanup,
  closed,
  declareSocket,
  declareStore,
  handle,
  nextMessage,
  open,
  serviceClient,
  startProvider,
  urlOf,
} from "./helpers.js";

afterEach(cleanup);

const spec = (socket: string, handlers: Record<string, string>) => ({
  name: "test",
  services: [],
  resources: [{ kind: "websocket" as const, name: socket, declaredBy: ["svc"], handlers }],
  policies: [],
});

describe("declarations", () => {
  it("refuses an invalid name with the fix", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await expect(
      client.unary(Resources.method.declare, { id: { type: ResourceType.Websocket, name: "Chat Room" } }),
    ).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
      details: 'websocket("Chat Room"): invalid resource name "Chat Room", use lower-kebab-case such as "chat-room"',
    });
  });

  it("starts a gateway for a socket declared at run time", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "late");
    expect(urlOf(provider, "late")).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
  });

  it("records kinds it does not serve with one warning", async () => {
    const { provider, logs } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await client.unary(Resources.method.declare, { id: { type: ResourceType.Bucket, name: "files" } });
    await client.unary(Resources.method.declare, { id: { type: ResourceType.Bucket, name: "files" } });
    expect(logs.warn).toEqual([
      'service "svc" declares bucket "files", a kind of resource nitric-like does not serve: it is recorded but not served; nitric-like serves websocket(), kv() and secret() (said once per service and kind)',
    ]);
  });

  it("says unserved declarations once per service and kind, however many names come, showing a long name's start", async () => {
    const { provider, logs } = await startProvider();
    const client = await serviceClient(provider, "svc");
    const other = await serviceClient(provider, "other");
    // A flood of made-up names, each long, over gRPC: one line for the kind, not one per name.
    const long = "b".repeat(100_000);
    await Promise.all(
      Array.from({ length: 500 }, (_, i) =>
        client.unary(Resources.method.declare, { id: { type: ResourceType.Bucket, name: `${long}-${i}` } }),
      ),
    );
    await client.unary(Resources.method.declare, { id: { type: ResourceType.Topic, name: "news" } });
    await other.unary(Resources.method.declare, { id: { type: ResourceType.Bucket, name: "files" } });
    expect(logs.warn).toEqual([
      // Whichever name came first: its start, and its length (100,000 b's, a dash and its number).
      expect.stringMatching(
        /^service "svc" declares bucket "b{64}"\.\.\. \(10000[2-4] characters\), a kind of resource nitric-like does not serve: it is recorded but not served; nitric-like serves websocket\(\), kv\(\) and secret\(\) \(said once per service and kind\)$/,
      ),
      'service "svc" declares topic "news", a kind of resource nitric-like does not serve: it is recorded but not served; nitric-like serves websocket(), kv() and secret() (said once per service and kind)',
      'service "other" declares bucket "files", a kind of resource nitric-like does not serve: it is recorded but not served; nitric-like serves websocket(), kv() and secret() (said once per service and kind)',
    ]);
  });
});

describe("health", () => {
  it("answers the standard health check for the endpoint and each contract service, and NOT_FOUND for others", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    for (const service of ["", "nitric.proto.kvstore.v1.KvStore", "nitriclike.websockets.v1.Connections"]) {
      expect(await client.unary(Health.method.check, { service })).toMatchObject({
        status: HealthCheckResponse_ServingStatus.SERVING,
      });
    }
    await expect(client.unary(Health.method.check, { service: "acme.Billing" })).rejects.toMatchObject({
      code: Code.NOT_FOUND,
      details: expect.stringContaining('service "acme.Billing" is not served here'),
    });
  });
});

describe("endpoints on Unix sockets", () => {
  it("serves each service's endpoint on its own Unix socket too, as the same service, owner-only, removed on stop", async () => {
    const { provider } = await startProvider();
    const local = await provider.localAddress("svc");
    expect(local).toMatch(/^unix:\/.+\.sock$/);
    const path = (local ?? "").slice("unix:".length);
    expect(statSync(path).isSocket()).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(await provider.localAddress("other")).not.toBe(local);

    // Declared and granted over TCP, used over the socket: one endpoint, one identity.
    const tcp = await serviceClient(provider, "svc");
    await declareStore(tcp, "notes", [Action.KeyValueStoreRead, Action.KeyValueStoreWrite]);
    const viaSocket = new Client(createGrpcTransport(local ?? ""));
    try {
      await viaSocket.unary(KvStore.method.setValue, { ref: { store: "notes", key: "k" }, content: { a: 1 } });
      expect(await tcp.unary(KvStore.method.getValue, { ref: { store: "notes", key: "k" } })).toMatchObject({
        value: { content: { a: 1 } },
      });
    } finally {
      viaSocket.close();
    }
    // Another service's socket does not carry svc's grants.
    const other = new Client(createGrpcTransport((await provider.localAddress("other")) ?? ""));
    try {
      await expect(
        other.unary(KvStore.method.setValue, { ref: { store: "notes", key: "k" }, content: { a: 2 } }),
      ).rejects.toMatchObject({ code: Code.PERMISSION_DENIED });
    } finally {
      other.close();
    }
    await provider.stop();
    expect(existsSync(path)).toBe(false);
  });
});

describe("kv", () => {
  it("checks keys and stores, and keeps services' permissions apart", async () => {
    const { provider } = await startProvider();
    const writer = await serviceClient(provider, "writer");
    const reader = await serviceClient(provider, "reader");
    await declareStore(writer, "items", [Action.KeyValueStoreWrite]);
    await declareStore(reader, "items", [Action.KeyValueStoreRead]);
    await writer.unary(KvStore.method.setValue, { ref: { store: "items", key: "a" }, content: { x: 1 } });
    expect((await reader.unary(KvStore.method.getValue, { ref: { store: "items", key: "a" } })).value?.content).toEqual(
      { x: 1 },
    );
    // The reader declared only "get": its endpoint may not write, whatever the writer may do.
    await expect(
      reader.unary(KvStore.method.setValue, { ref: { store: "items", key: "a" }, content: {} }),
    ).rejects.toMatchObject({
      code: Code.PERMISSION_DENIED,
      details: 'kv("items"): service "reader" may not set keys; add .allow("set") to kv("items") in that service',
    });
    await expect(writer.unary(KvStore.method.getValue, { ref: { store: "items", key: "a" } })).rejects.toMatchObject({
      code: Code.PERMISSION_DENIED,
    });
    await expect(
      writer.unary(KvStore.method.setValue, { ref: { store: "items", key: "" }, content: {} }),
    ).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
      details: 'kv("items").set(""): the key is empty; use a non-empty string',
    });
    await expect(
      writer.unary(KvStore.method.setValue, { ref: { store: "items", key: "k".repeat(10_000) }, content: {} }),
    ).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
      details: 'kv("items").set(): the key is 10000 bytes long and at most 1024 are allowed; use a shorter key',
    });
    await expect(reader.unary(KvStore.method.getValue, { ref: { store: "other", key: "a" } })).rejects.toMatchObject({
      code: Code.NOT_FOUND,
      details: 'kv("other"): no such store; declare it with kv("other").allow(...)',
    });
    await expect(writer.unary(KvStore.method.setValue, { ref: { store: "items", key: "b" } })).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
    });
  });

  it("lists keys by prefix in byte order, stopping at the prefix's end", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareStore(client, "items", [Action.KeyValueStoreRead, Action.KeyValueStoreWrite]);
    for (const key of ["b:2", "a:1", "b:10", "b", "c:1", "b:1", "bz"]) {
      await client.unary(KvStore.method.setValue, { ref: { store: "items", key }, content: { key } });
    }
    const keys = async (prefix: string) => {
      const out: string[] = [];
      for await (const k of client.serverStream(KvStore.method.scanKeys, { store: { name: "items" }, prefix }))
        out.push(k.key);
      return out;
    };
    expect(await keys("b:")).toEqual(["b:1", "b:10", "b:2"]);
    expect(await keys("")).toEqual(["a:1", "b", "b:1", "b:10", "b:2", "bz", "c:1"]);
    expect(await keys("zzz")).toEqual([]);
  });

  it("keeps values in lmdb across a restart of the provider", async () => {
    const first = await startProvider();
    const a = await serviceClient(first.provider, "svc");
    await declareStore(a, "items", [Action.KeyValueStoreWrite]);
    await a.unary(KvStore.method.setValue, {
      ref: { store: "items", key: "kept" },
      content: { v: [1, "two", { three: true }] },
    });
    await first.provider.stop();
    const second = await startProvider({
      project: { name: "test", dir: first.dir, file: "", services: [], websockets: {} },
    });
    const b = await serviceClient(second.provider, "svc");
    await declareStore(b, "items", [Action.KeyValueStoreRead]);
    expect((await b.unary(KvStore.method.getValue, { ref: { store: "items", key: "kept" } })).value?.content).toEqual({
      v: [1, "two", { three: true }],
    });
  });
});

describe("gateway", () => {
  it("closes a connection with 1011 and a reason when nobody handles messages", async () => {
    const { provider, logs } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "half");
    const ws = await open(urlOf(provider, "half"));
    const done = closed(ws);
    ws.send("anyone?");
    expect(await done).toEqual({ code: 1011, reason: 'no message handler for websocket "half"' });
    expect(logs.error[0]).toMatch(
      /websocket "half": no service handles message events; add socket\.on\("message", \.\.\.\); closed connection \S+/,
    );
  });

  it("answers a plain HTTP request with 426 and how to connect", async () => {
    const { provider } = await startProvider();
    await declareSocket(await serviceClient(provider, "svc"), "s");
    const url = urlOf(provider, "s");
    const res = await fetch(url.replace("ws://", "http://"));
    expect(res.status).toBe(426);
    expect(await res.text()).toContain(`npx wscat -c ${url}`);
  });

  it("listens on the port pinned in the project file, and says what to do when it is taken", async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const dir = (await startProvider()).dir;
    const project = { name: "t", dir, file: "", services: [], websockets: { pinned: { port } } };
    const { provider } = await startProvider({
      project,
      randomPorts: false,
      dataDir: `${dir}/kv2`,
      spec: spec("pinned", {}),
    });
    expect(urlOf(provider, "pinned")).toBe(`ws://127.0.0.1:${port}`);
    await expect(
      startProvider({ project, randomPorts: false, dataDir: `${dir}/kv3`, spec: spec("pinned", {}) }),
    ).rejects.toThrow(
      `websocket "pinned": port ${port} is already in use; pick another under websockets.pinned.port in the project file, or run with --random-ports`,
    );
  });

  it("refuses a connect whose handler does not answer in time with 504", async () => {
    const { provider, logs } = await startProvider({ handlerTimeoutMs: 200 });
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "slow");
    await handle(client, "slow", "connect", () => undefined);
    const status = await new Promise<number | undefined>((resolve) => {
      const ws = new WebSocket(urlOf(provider, "slow"));
      ws.on("unexpected-response", (_req, res) => resolve(res.statusCode));
      ws.on("error", () => resolve(undefined));
    });
    expect(status).toBe(504);
    expect(logs.error[0]).toMatch(/the connect handler of service "svc" did not answer within 0\.2 s/);
  });

  it("closes a connection that sends more than the message limit with 1009", async () => {
    const { provider } = await startProvider({ maxMessageBytes: 1024 });
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "s");
    await handle(client, "s", "message", () => ({}));
    const ws = await open(urlOf(provider, "s"));
    const done = closed(ws);
    ws.send(Buffer.alloc(2048));
    expect((await done).code).toBe(1009);
  });

  it("sends what the service asks, keeping the frame kind, and refuses bad frames and codes", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "s");
    const connects = await handle(client, "s", "connect", accept);
    const ws = await open(urlOf(provider, "s"));
    const id = connects.events[0]?.connectionId ?? "";
    const got = nextMessage(ws);
    await client.unary(Websocket.method.sendMessage, {
      socketName: "s",
      connectionId: id,
      data: new Uint8Array([0xff, 0]),
      binary: true,
    });
    expect(await got).toMatchObject({ binary: true });
    // Nitric's SDKs leave `binary` unset: UTF-8 goes as text.
    const text = nextMessage(ws);
    await client.unary(Websocket.method.sendMessage, {
      socketName: "s",
      connectionId: id,
      data: new TextEncoder().encode("héllo"),
    });
    expect((await text).binary).toBe(false);
    await expect(
      client.unary(Websocket.method.sendMessage, {
        socketName: "s",
        connectionId: id,
        data: new Uint8Array([0xff]),
        binary: false,
      }),
    ).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
    });
    await expect(
      client.unary(Websocket.method.closeConnection, { socketName: "s", connectionId: id, code: 1005 }),
    ).rejects.toMatchObject({
      details: 'websocket "s": close code 1005 is not allowed; use 1000 or 3000-4999',
    });
    await expect(
      client.unary(Websocket.method.sendMessage, { socketName: "nope", connectionId: id }),
    ).rejects.toMatchObject({ code: Code.NOT_FOUND });
    const done = closed(ws);
    await client.unary(Websocket.method.closeConnection, {
      socketName: "s",
      connectionId: id,
      code: 4000,
      reason: "bye",
    });
    expect(await done).toEqual({ code: 4000, reason: "bye" });
  });

  it("lets only services that declared a socket send on it", async () => {
    const { provider } = await startProvider();
    const owner = await serviceClient(provider, "owner");
    const other = await serviceClient(provider, "other");
    await declareSocket(owner, "s");
    await expect(
      other.unary(Websocket.method.sendMessage, { socketName: "s", connectionId: "x" }),
    ).rejects.toMatchObject({
      code: Code.PERMISSION_DENIED,
      details: 'websocket("s"): service "other" may not manage it; declare websocket("s") in that service',
    });
  });

  it("hands events to the newest registration, and the replaced stream, standing by, takes them again once it ends", async () => {
    const { provider, logs } = await startProvider();
    const a = await serviceClient(provider, "a");
    const b = await serviceClient(provider, "b");
    await declareSocket(a, "s");
    const first = await handle(a, "s", "message", () => ({ replies: [{ data: new TextEncoder().encode("first") }] }));
    const second = await handle(b, "s", "message", () => ({ replies: [{ data: new TextEncoder().encode("second") }] }));
    expect(logs.warn[0]).toContain('service "b" now handles message events instead of service "a"');
    const ws = await open(urlOf(provider, "s"));
    const got = nextMessage(ws);
    ws.send("hi");
    expect((await got).data.toString()).toBe("second");
    expect(first.events).toHaveLength(0);
    // The newer stream ends: the one it displaced, still open, handles the socket's messages again.
    second.call.end();
    await second.status;
    let answer = "";
    for (let i = 0; i < 100 && answer !== "first"; i++) {
      const again = nextMessage(ws);
      ws.send("again");
      answer = (await again).data.toString();
      if (answer !== "first") await new Promise((r) => setTimeout(r, 20));
    }
    expect(answer).toBe("first");
  });

  it("on stop closes clients with 1001 and ends handler streams with OK", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "s");
    const disconnects = await handle(client, "s", "disconnect", () => ({}));
    const ws = await open(urlOf(provider, "s"));
    const done = closed(ws);
    await provider.stop();
    expect(await done).toEqual({ code: 1001, reason: "server shutting down" });
    expect(await disconnects.status).toBe(Code.OK);
    expect(disconnects.events.map((e) => e.websocketEvent.value)).toEqual([expect.objectContaining({ code: 1001 })]);
  });

  it("delivers events a dying handler never answered to its replacement", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "s");
    const dying = await handle(client, "s", "message", () => undefined);
    const ws = await open(urlOf(provider, "s"));
    const got = nextMessage(ws);
    ws.send("in flight");
    while (dying.events.length === 0) await new Promise((r) => setTimeout(r, 5));
    // The service's process goes away with the event unanswered...
    dying.call.end();
    await new Promise((r) => setTimeout(r, 50));
    // ...and its restarted process answers it.
    await handle(client, "s", "message", (e) => ({
      replies: [{ data: e.websocketEvent.case === "message" ? e.websocketEvent.value.body : new Uint8Array() }],
    }));
    expect((await got).data.toString()).toBe("in flight");
  });

  it("holds a message for a handler that is expected but not registered yet", async () => {
    const { provider } = await startProvider({ spec: spec("s", { message: "svc" }) });
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "s");
    const ws = await open(urlOf(provider, "s"));
    const got = nextMessage(ws);
    ws.send("early");
    await new Promise((r) => setTimeout(r, 100));
    await handle(client, "s", "message", (e) => ({
      replies: [{ data: e.websocketEvent.case === "message" ? e.websocketEvent.value.body : new Uint8Array() }],
    }));
    expect((await got).data.toString()).toBe("early");
  });
});

describe("rawQuery", () => {
  it("keeps every value, percent-encoded, with + as %20", () => {
    expect(rawQuery("/?a=1&a=x%26y&b=c+d&flag&%C3%A9=%C3%A9")).toEqual({
      a: { value: ["1", "x%26y"] },
      b: { value: ["c%20d"] },
      flag: { value: [""] },
      é: { value: ["%C3%A9"] },
    });
    expect(rawQuery("/")).toEqual({});
  });
});
