// One suite, run over each transport: a client must not be able to tell the gRPC, MessagePort and
// in-memory transports apart by anything it observes (results, statuses, stream order, cancels,
// deadlines, close), with the same Router behind each.
import { MessageChannel } from "node:worker_threads";
import { codecOf } from "@nitric-like/contracts/codec";
import { Health, HealthCheckResponse_ServingStatus } from "@nitric-like/contracts/health";
import { KvStore, KvStoreScanKeysRequestSchema, KvStoreScanKeysResponseSchema } from "@nitric-like/contracts/kvstore";
import { type ServerMessage, WebsocketHandler } from "@nitric-like/contracts/websockets";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Client, type DuplexCall } from "./client.js";
import { createGrpcTransport, GrpcServer } from "./grpc.js";
import { createMemoryTransport } from "./memory.js";
import { createPortTransport, PortServer } from "./port.js";
import { Router } from "./router.js";
import { Code, RpcError } from "./status.js";
import type { Transport } from "./wire.js";

const CHECK = "/grpc.health.v1.Health/Check";
const SCAN = "/nitric.proto.kvstore.v1.KvStore/ScanKeys";
const EVENTS = "/nitric.proto.websockets.v1.WebsocketHandler/HandleEvents";
/** A length-delimited field 1 of five bytes with only one there: no message of any type. */
const GARBAGE = Uint8Array.of(0x0a, 0x05, 0x01);

/** What the server saw of the calls it served, by a tag the test chose. */
class Seen {
  private readonly waiting = new Map<string, (cancelled: boolean) => void>();
  private readonly closed = new Map<string, boolean>();
  readonly log: string[] = [];

  /** The server's call tagged `tag` closed; cancelled or not. */
  close(tag: string, cancelled: boolean): void {
    this.closed.set(tag, cancelled);
    this.waiting.get(tag)?.(cancelled);
  }

  /** Resolves with `cancelled` once the server's call tagged `tag` has closed. */
  closing(tag: string): Promise<boolean> {
    const done = this.closed.get(tag);
    if (done !== undefined) return Promise.resolve(done);
    return new Promise((resolve) => this.waiting.set(tag, resolve));
  }
}

/** The router every transport serves: a little of each handler shape, and each way to fail. */
function makeRouter(seen: Seen): Router {
  return new Router()
    .service(Health, {
      check(call, respond) {
        const service = call.request.service;
        seen.log.push(`check ${service}`);
        if (service === "fail") respond(new RpcError(Code.NOT_FOUND, 'health: no service "fail"'));
        else if (service === "plain") respond(new Error("health: a plain error"));
        else if (service === "bad-response") respond(null, { status: "serving" as unknown as number });
        else if (service === "code-zero") respond(Object.assign(new Error("health: coded 0"), { code: 0 }));
        else if (service === "throw") throw new RpcError(Code.PERMISSION_DENIED, "health: thrown");
        else if (service === "throw-plain") throw new TypeError("health: a plain throw");
        else if (service !== "hang") respond(null, { status: HealthCheckResponse_ServingStatus.SERVING });
      },
    })
    .service(KvStore, {
      getValue: (_call, respond) => respond(new RpcError(Code.UNIMPLEMENTED, "kv: not in this test")),
      setValue: (_call, respond) => respond(new RpcError(Code.UNIMPLEMENTED, "kv: not in this test")),
      deleteKey: (_call, respond) => respond(new RpcError(Code.UNIMPLEMENTED, "kv: not in this test")),
      scanKeys(call) {
        const { prefix } = call.request;
        const tag = call.request.store?.name ?? "";
        call.onClose(() => seen.close(tag, call.cancelled));
        if (prefix === "throw") throw new RpcError(Code.FAILED_PRECONDITION, "kv: thrown");
        if (prefix === "bad") {
          call.write({ key: "bad/0" });
          const unwritable = {
            toString() {
              throw new Error("no text");
            },
          };
          const written = call.write({ key: unwritable as unknown as string });
          seen.log.push(`bad write ${written} ended ${call.ended}`);
          return;
        }
        if (prefix === "hang") {
          call.write({ key: "hang/0" });
          return;
        }
        for (let i = 0; i < 5; i++) call.write({ key: `${prefix}/${i}` });
        if (prefix === "fail") call.fail(new RpcError(Code.ABORTED, "kv: failed after five"));
        else call.end();
      },
    })
    .service(WebsocketHandler, {
      // Echoes each message's id back; "boom" throws from the listener; the client's half-close
      // is answered with "bye" and the end of the call. The first message's id tags the call.
      handleEvents(call) {
        let tag: string | undefined;
        call.onClose(() => seen.close(tag ?? "", call.cancelled));
        call.onMessage((message) => {
          tag ??= message.id;
          seen.log.push(`message ${message.id}`);
          if (message.id === "boom") throw new RpcError(Code.RESOURCE_EXHAUSTED, "socket: boom");
          if (message.id === "hold-close-throws") {
            call.onClose(() => {
              throw new Error("socket: onClose threw");
            });
          }
          call.write({ id: message.id, content: { case: "registrationResponse", value: {} } });
        });
        call.onEnd(() => {
          seen.log.push(`end ${tag}`);
          // A call tagged "hold-…" has more to say after the client's half-close, so it stays
          // open: over gRPC a Node client's cancel reaches the server as a half-close first (see
          // grpc.ts), and these calls are the ones whose cancel the tests watch for.
          if (tag?.startsWith("hold-")) return;
          call.write({ id: "bye" });
          call.end();
        });
      },
    })
    .raw("/test.Raw/Throw", () => {
      throw new RpcError(Code.OUT_OF_RANGE, "raw: thrown");
    });
}

interface Served {
  transport: Transport;
  stop(): Promise<void> | void;
}

const transports: { name: string; serve(router: Router): Promise<Served> | Served }[] = [
  {
    name: "gRPC",
    async serve(router) {
      const server = new GrpcServer(router);
      const port = await server.bind("127.0.0.1:0");
      const transport = createGrpcTransport(`127.0.0.1:${port}`);
      return {
        transport,
        stop: () => {
          transport.close();
          server.forceStop();
        },
      };
    },
  },
  {
    name: "MessagePort",
    serve(router) {
      const { port1, port2 } = new MessageChannel();
      const server = new PortServer(router);
      server.serve(port1);
      const transport = createPortTransport(port2);
      return {
        transport,
        stop: () => {
          transport.close();
          server.stop();
          port1.close();
        },
      };
    },
  },
  {
    name: "in-memory",
    serve(router) {
      const transport = createMemoryTransport(router);
      return { transport, stop: () => transport.close() };
    },
  },
];

/** What a bidi client heard, in order. */
function listen(call: DuplexCall<never, ServerMessage>): { heard: string[]; done: Promise<number> } {
  const heard: string[] = [];
  const done = new Promise<number>((resolve) => {
    call.on("data", (m: ServerMessage) => heard.push(`data ${m.id}`));
    call.on("end", () => heard.push("end"));
    call.on("error", (e: RpcError) => heard.push(`error ${e.code}`));
    call.on("status", (s) => {
      heard.push(`status ${s.code}`);
      resolve(s.code);
    });
  });
  return { heard, done };
}

/** The status of a call opened directly on the transport, with the bytes given. */
function rawStatus(
  transport: Transport,
  path: string,
  kind: "unary" | "server_streaming" | "bidi_streaming",
  request: Uint8Array | undefined,
  write?: Uint8Array,
): Promise<{ code: number; details: string }> {
  return new Promise((resolve) => {
    const call = transport.open(path, kind, request, {
      message: () => {},
      status: (code, details) => resolve({ code, details }),
    });
    if (write) call.write(write);
  });
}

const next = () => new Promise((resolve) => setImmediate(resolve));

/** A deadline long enough for a first message to arrive on a busy machine, on a connected transport. */
const SLOW_MS = 500;

describe.each(transports)("the $name transport", ({ serve }) => {
  let seen: Seen;
  let served: Served;
  let client: Client;

  beforeEach(async () => {
    seen = new Seen();
    served = await serve(makeRouter(seen));
    client = new Client(served.transport);
  });

  afterEach(async () => {
    await served.stop();
  });

  it("answers a unary call", async () => {
    expect(await client.unary(Health.method.check, { service: "" })).toMatchObject({
      status: HealthCheckResponse_ServingStatus.SERVING,
    });
  });

  it("fails a unary call with the handler's RpcError, its code and details intact", async () => {
    const error = await client.unary(Health.method.check, { service: "fail" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RpcError);
    expect(error).toMatchObject({
      code: Code.NOT_FOUND,
      details: 'health: no service "fail"',
      message: '5 NOT_FOUND: health: no service "fail"',
    });
  });

  it("fails a unary call answered with a plain error with UNKNOWN and its message", async () => {
    await expect(client.unary(Health.method.check, { service: "plain" })).rejects.toMatchObject({
      code: Code.UNKNOWN,
      details: "health: a plain error",
    });
  });

  it("fails a unary call answered with an error whose code is 0 (OK) with UNKNOWN, never as a success", async () => {
    await expect(client.unary(Health.method.check, { service: "code-zero" })).rejects.toMatchObject({
      code: Code.UNKNOWN,
      details: "health: coded 0",
    });
  });

  it("ends a call whose response cannot be encoded with INTERNAL naming the method", async () => {
    const error = await client.unary(Health.method.check, { service: "bad-response" }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: Code.INTERNAL });
    expect((error as RpcError).details).toMatch(
      /^\/grpc\.health\.v1\.Health\/Check: the response could not be encoded \(.+\)$/,
    );

    const keys: string[] = [];
    const scan = (async () => {
      for await (const { key } of client.serverStream(KvStore.method.scanKeys, {
        store: { name: "b" },
        prefix: "bad",
      })) {
        keys.push(key);
      }
    })();
    await expect(scan).rejects.toMatchObject({ code: Code.INTERNAL });
    expect(keys).toEqual(["bad/0"]);
    expect(seen.log).toContain("bad write false ended true");
  });

  it("ends a call whose handler throws synchronously with the thrown status", async () => {
    await expect(client.unary(Health.method.check, { service: "throw" })).rejects.toMatchObject({
      code: Code.PERMISSION_DENIED,
      details: "health: thrown",
    });
    await expect(client.unary(Health.method.check, { service: "throw-plain" })).rejects.toMatchObject({
      code: Code.UNKNOWN,
      details: "health: a plain throw",
    });
    const scan = client.serverStream(KvStore.method.scanKeys, { store: { name: "t" }, prefix: "throw" });
    await expect(scan.next()).rejects.toMatchObject({ code: Code.FAILED_PRECONDITION, details: "kv: thrown" });
    expect(await rawStatus(served.transport, "/test.Raw/Throw", "bidi_streaming", undefined)).toEqual({
      code: Code.OUT_OF_RANGE,
      details: "raw: thrown",
    });
    // The router still serves.
    await expect(client.unary(Health.method.check, { service: "" })).resolves.toBeDefined();
  });

  it("answers a path nobody serves with UNIMPLEMENTED naming the path", async () => {
    for (const kind of ["unary", "server_streaming", "bidi_streaming"] as const) {
      const status = await rawStatus(served.transport, "/no.Such/Method", kind, new Uint8Array(0));
      expect(status.code).toBe(Code.UNIMPLEMENTED);
      expect(status.details).toContain("/no.Such/Method");
    }
  });

  it("refuses request bytes that do not decode with INVALID_ARGUMENT naming the method and the message type", async () => {
    const unary = await rawStatus(served.transport, CHECK, "unary", GARBAGE);
    expect(unary.code).toBe(Code.INVALID_ARGUMENT);
    expect(unary.details).toContain(CHECK);
    expect(unary.details).toContain("grpc.health.v1.HealthCheckRequest");
    const stream = await rawStatus(served.transport, SCAN, "server_streaming", GARBAGE);
    expect(stream.code).toBe(Code.INVALID_ARGUMENT);
    expect(stream.details).toContain(SCAN);
    expect(stream.details).toContain("nitric.proto.kvstore.v1.KvStoreScanKeysRequest");
    const bidi = await rawStatus(served.transport, EVENTS, "bidi_streaming", undefined, GARBAGE);
    expect(bidi.code).toBe(Code.INVALID_ARGUMENT);
    expect(bidi.details).toContain(EVENTS);
    expect(bidi.details).toContain("nitric.proto.websockets.v1.ClientMessage");
    // None of them reached a handler.
    expect(seen.log).toEqual([]);
  });

  it("streams a server stream's messages in order, then ends it", async () => {
    const keys: string[] = [];
    for await (const { key } of client.serverStream(KvStore.method.scanKeys, { store: { name: "t" }, prefix: "k" })) {
      keys.push(key);
    }
    expect(keys).toEqual(["k/0", "k/1", "k/2", "k/3", "k/4"]);
    expect(await seen.closing("t")).toBe(false);
  });

  it("delivers a server stream's messages before the error that ends it", async () => {
    const keys: string[] = [];
    const error = await (async () => {
      for await (const { key } of client.serverStream(KvStore.method.scanKeys, {
        store: { name: "t" },
        prefix: "fail",
      })) {
        keys.push(key);
      }
    })().catch((e: unknown) => e);
    expect(keys).toEqual(["fail/0", "fail/1", "fail/2", "fail/3", "fail/4"]);
    expect(error).toMatchObject({ code: Code.ABORTED, details: "kv: failed after five" });
  });

  it("carries bidi messages both ways; a half-close reaches onEnd; the server's end is heard as end, then status", async () => {
    const call = client.bidi(WebsocketHandler.method.handleEvents);
    const { heard, done } = listen(call);
    call.write({ id: "a", content: { case: "registrationRequest", value: { socketName: "s" } } });
    call.write({ id: "b" });
    call.write({ id: "c" });
    call.end();
    expect(await done).toBe(Code.OK);
    expect(heard).toEqual(["data a", "data b", "data c", "data bye", "end", "status 0"]);
    expect(seen.log).toEqual(["message a", "message b", "message c", "end a"]);
    expect(await seen.closing("a")).toBe(false);
  });

  it("tells the server when the client cancels a call: onClose with cancelled set", async () => {
    const call = client.bidi(WebsocketHandler.method.handleEvents);
    const { heard, done } = listen(call);
    call.on("data", () => call.cancel());
    call.write({ id: "hold-cancel" });
    expect(await done).toBe(Code.CANCELLED);
    expect(heard).toEqual(["data hold-cancel", "error 1", "status 1"]);
    expect(await seen.closing("hold-cancel")).toBe(true);

    // Leaving a server stream early cancels it too.
    for await (const { key } of client.serverStream(KvStore.method.scanKeys, {
      store: { name: "s" },
      prefix: "hang",
    })) {
      expect(key).toBe("hang/0");
      break;
    }
    expect(await seen.closing("s")).toBe(true);
  });

  it("hears no status after it cancels a call itself", async () => {
    const statuses: number[] = [];
    const call = served.transport.open(CHECK, "unary", new Uint8Array(0), {
      message: () => {},
      status: (code) => statuses.push(code),
    });
    call.cancel();
    const stream = served.transport.open(SCAN, "server_streaming", new Uint8Array(0), {
      message: () => {},
      status: (code) => statuses.push(code),
    });
    stream.cancel();
    // A whole call later, and a turn of the event loop, nothing came.
    await client.unary(Health.method.check, { service: "" });
    await next();
    expect(statuses).toEqual([]);
  });

  it("ignores messages and half-closes sent on a call whose one request came as it opened", async () => {
    const request = codecOf(KvStoreScanKeysRequestSchema).encode({ store: { name: "w" }, prefix: "hang" });
    const heard: string[] = [];
    let first: () => void = () => {};
    const started = new Promise<void>((resolve) => {
      first = resolve;
    });
    const call = served.transport.open(SCAN, "server_streaming", request, {
      message: (bytes) => {
        heard.push(codecOf(KvStoreScanKeysResponseSchema).decode(bytes).key);
        first();
      },
      status: (code) => heard.push(`status ${code}`),
    });
    await started;
    call.write(GARBAGE);
    call.halfClose();
    // The call goes on: a round trip later it has heard no status, and the server still holds it.
    await client.unary(Health.method.check, { service: "" });
    await next();
    expect(heard).toEqual(["hang/0"]);
    call.cancel();
    expect(await seen.closing("w")).toBe(true);
  });

  it("fails a call past its deadline with DEADLINE_EXCEEDED, and the server sees the cancel", async () => {
    // Connected first, so that a deadline is all that ends these calls.
    await client.unary(Health.method.check, { service: "" });
    await expect(client.unary(Health.method.check, { service: "hang" }, { timeoutMs: 30 })).rejects.toMatchObject({
      code: Code.DEADLINE_EXCEEDED,
    });

    const keys: string[] = [];
    const scan = (async () => {
      for await (const { key } of client.serverStream(
        KvStore.method.scanKeys,
        { store: { name: "d" }, prefix: "hang" },
        { timeoutMs: SLOW_MS },
      )) {
        keys.push(key);
      }
    })();
    await expect(scan).rejects.toMatchObject({ code: Code.DEADLINE_EXCEEDED });
    expect(keys).toEqual(["hang/0"]);
    expect(await seen.closing("d")).toBe(true);

    const call = client.bidi(WebsocketHandler.method.handleEvents, { timeoutMs: SLOW_MS });
    const { heard, done } = listen(call);
    call.write({ id: "hold-late" });
    expect(await done).toBe(Code.DEADLINE_EXCEEDED);
    expect(heard).toEqual(["data hold-late", "error 4", "status 4"]);
    expect(await seen.closing("hold-late")).toBe(true);
  });

  it("ends every call in flight with CANCELLED on close(), tells the server, and serves new calls afterwards", async () => {
    const unary = client.unary(Health.method.check, { service: "hang" });
    const keys: string[] = [];
    const scan = (async () => {
      for await (const { key } of client.serverStream(KvStore.method.scanKeys, {
        store: { name: "c" },
        prefix: "hang",
      })) {
        keys.push(key);
      }
    })();
    const call = client.bidi(WebsocketHandler.method.handleEvents);
    const { heard, done } = listen(call);
    call.write({ id: "hold-closing" });
    // Every call has reached the server.
    while (keys.length === 0 || heard.length === 0 || !seen.log.includes("check hang")) await next();

    served.transport.close();
    await expect(unary).rejects.toMatchObject({ code: Code.CANCELLED });
    await expect(scan).rejects.toMatchObject({ code: Code.CANCELLED });
    expect(await done).toBe(Code.CANCELLED);
    expect(heard).toEqual(["data hold-closing", "error 1", "status 1"]);
    expect(await seen.closing("c")).toBe(true);
    expect(await seen.closing("hold-closing")).toBe(true);

    await expect(client.unary(Health.method.check, { service: "again" })).resolves.toMatchObject({
      status: HealthCheckResponse_ServingStatus.SERVING,
    });
  });

  it("ends only the call whose onMessage listener throws; the router goes on serving the others", async () => {
    const other = client.bidi(WebsocketHandler.method.handleEvents);
    const otherHeard = listen(other);
    other.write({ id: "other" });

    const call = client.bidi(WebsocketHandler.method.handleEvents);
    const { heard, done } = listen(call);
    call.write({ id: "boom" });
    expect(await done).toBe(Code.RESOURCE_EXHAUSTED);
    expect(heard).toEqual(["error 8", "status 8"]);
    expect(await seen.closing("boom")).toBe(false);

    other.write({ id: "still" });
    other.end();
    expect(await otherHeard.done).toBe(Code.OK);
    expect(otherHeard.heard).toEqual(["data other", "data still", "data bye", "end", "status 0"]);
    await expect(client.unary(Health.method.check, { service: "" })).resolves.toBeDefined();
  });

  it("survives an onClose listener that throws when the client cancels: a warning, and the router goes on serving", async () => {
    const warned = new Promise<Error>((resolve) => process.once("warning", resolve));
    const call = client.bidi(WebsocketHandler.method.handleEvents);
    const { done } = listen(call);
    call.on("data", () => call.cancel());
    call.write({ id: "hold-close-throws" });
    expect(await done).toBe(Code.CANCELLED);
    expect(await seen.closing("hold-close-throws")).toBe(true);
    const warning = await warned;
    expect(warning.name).toBe("RpcListenerWarning");
    expect(warning.message).toBe(
      `${EVENTS}: an onClose listener threw ("socket: onClose threw"); catch errors in onClose listeners`,
    );
    await expect(client.unary(Health.method.check, { service: "" })).resolves.toBeDefined();
  });
});
