// The grpc-js look-alike that @nitric/sdk runs on inside a function (compat/grpc-js.ts), tested
// against real @grpc/grpc-js as the oracle. One Router serves our contracts twice: over HTTP/2 by
// a real grpc-js server (GrpcServer), and in memory to the adapter (useTransport). Every scenario
// makes the same calls through a real grpc-js client and through the adapter's, made the way
// grpc-tools' generated code makes them, with the same serializers, and compares what each caller
// sees: values, ServiceError's code, details and message, the order of a stream's
// data/error/status/end events, cancellation (both sides), deadlines, and serializers that throw.
// Where the two differ on purpose the test asserts the difference and says why.
import { Transform } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import { codecOf, type Service } from "@nitric-like/contracts/codec";
import { Health, HealthCheckResponse_ServingStatus } from "@nitric-like/contracts/health";
import { KvStore } from "@nitric-like/contracts/kvstore";
import { ServerMessageSchema, WebsocketEventType, WebsocketHandler } from "@nitric-like/contracts/websockets";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { GrpcServer } from "../grpc.js";
import { createMemoryTransport } from "../memory.js";
import { methodPath, Router } from "../router.js";
import { Code, RpcError } from "../status.js";
import * as compat from "./grpc-js.js";

// Before any transport is given: a clear error at the call, not a hang.
const early = (() => {
  try {
    new compat.Client().makeUnaryRequest(
      "/grpc.health.v1.Health/Check",
      () => Buffer.alloc(0),
      (b: Buffer) => b,
      {},
      () => {},
    );
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
})();

// ---- The one router both clients reach ------------------------------------------------------

/** What the handlers saw, by the tag each request carries (the side that made it). */
const seen = new Map<string, string[]>();
const note = (tag: string, what: string) => seen.set(tag, [...(seen.get(tag) ?? []), what]);
const seenBy = (tag: string) => seen.get(tag) ?? [];

/** A request names a behaviour and the caller's tag: `<behaviour>@<tag>`. */
function parse(name: string): [behaviour: string, tag: string] {
  const at = name.lastIndexOf("@");
  return [name.slice(0, at), name.slice(at + 1)];
}

/** Details with characters gRPC must percent-encode in its grpc-message trailer. */
const AWKWARD = 'kv("items"): key "ключ/100%" not found; 50% of keys — try get("k/a")\tthen retry';

const router = new Router()
  .service(Health, {
    check(call, respond) {
      const [behaviour, tag] = parse(call.request.service);
      note(tag, `check ${behaviour}`);
      if (behaviour === "") respond(null, { status: HealthCheckResponse_ServingStatus.SERVING });
      else if (behaviour === "never") {
        // Never answers: the caller's deadline or cancel ends the call.
      } else if (behaviour === "throw") throw new Error("the handler threw");
      else if (behaviour === "awkward") respond(new RpcError(Code.NOT_FOUND, AWKWARD));
      else if (behaviour.startsWith("fail-")) {
        const code = Number(behaviour.slice("fail-".length));
        respond(new RpcError(code, `failed with ${Code[code]}`));
      } else respond(new RpcError(Code.INVALID_ARGUMENT, `unknown behaviour "${behaviour}"`));
    },
  })
  .service(KvStore, {
    getValue: (_call, respond) => respond(new RpcError(Code.UNIMPLEMENTED, "not here")),
    setValue: (_call, respond) => respond(new RpcError(Code.UNIMPLEMENTED, "not here")),
    deleteKey: (_call, respond) => respond(new RpcError(Code.UNIMPLEMENTED, "not here")),
    scanKeys(call) {
      const [behaviour, tag] = parse(call.request.store?.name ?? "");
      const prefix = call.request.prefix;
      note(tag, `scan ${behaviour}`);
      call.onClose(() => note(tag, `scan closed, cancelled: ${call.cancelled}`));
      if (behaviour === "denied") {
        call.fail(new RpcError(Code.PERMISSION_DENIED, "scan refused"));
        return;
      }
      if (behaviour === "throw") throw new Error("the scan threw");
      call.write({ key: `${prefix}a` });
      if (behaviour === "never") return; // one key, then nothing: the caller's deadline or cancel ends it
      if (behaviour === "partial") {
        call.fail(new RpcError(Code.UNAVAILABLE, "the table went away"));
        return;
      }
      call.write({ key: `${prefix}b` });
      call.write({ key: `${prefix}c` });
      call.end();
    },
  })
  .service(WebsocketHandler, {
    handleEvents(call) {
      let tag = "";
      let stayOpen = false;
      call.onMessage((message) => {
        if (message.content.case === "registrationRequest") {
          tag = message.content.value.socketName;
          stayOpen = message.content.value.eventType === WebsocketEventType.Message;
        }
        note(tag, `message ${message.id}`);
        if (message.id === "fail") call.fail(new RpcError(Code.ABORTED, "the handler gave up"));
        else if (message.id === "end") call.end();
        // Echo each message back as a registration response, with its id.
        else call.write({ id: message.id, content: { case: "registrationResponse", value: {} } });
      });
      call.onEnd(() => {
        note(tag, "half-closed");
        // A registration for message events keeps the call open after a half-close, so that a
        // cancel that comes with one (see cancelledLog) is what ends it.
        if (!stayOpen) call.end();
      });
      call.onClose(() => note(tag, `closed, cancelled: ${call.cancelled}`));
    },
  })
  // A handler that answers bytes no ServerMessage decodes: field 1 (a string) says 255 bytes follow, none do.
  .raw("/nitric.proto.websockets.v1.WebsocketHandler/Garbage", (call) => {
    let tag = "";
    call.onMessage((bytes) => {
      tag = Buffer.from(bytes).toString();
      note(tag, "garbage asked");
      call.write(new Uint8Array([0x0a, 0xff]));
    });
    call.onClose(() => note(tag, `garbage closed, cancelled: ${call.cancelled}`));
  });

// ---- The two clients --------------------------------------------------------------------------

/** A method as grpc-tools' generated `*_grpc_pb.js` describes it (and both modules take it). */
interface MethodDef {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize: (value: unknown) => Buffer;
  requestDeserialize: (bytes: Buffer) => unknown;
  responseSerialize: (value: unknown) => Buffer;
  responseDeserialize: (bytes: Buffer) => unknown;
  originalName?: string;
}

/** A service's methods, with the serializers made from our codecs (the same for both clients). */
function definitionOf(service: Service): Record<string, MethodDef> {
  const methods: Record<string, MethodDef> = {};
  for (const m of service.methods) {
    const input = m.input;
    const output = m.output;
    methods[m.localName] = {
      path: methodPath(m),
      requestStream: m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming",
      responseStream: m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming",
      requestSerialize: (v) => Buffer.from(input.encode(v as never)),
      requestDeserialize: (b) => input.decode(b),
      responseSerialize: (v) => Buffer.from(output.encode(v as never)),
      responseDeserialize: (b) => output.decode(b),
      originalName: m.name,
    };
  }
  return methods;
}

type Callback = (error: ServiceError | null, value?: unknown) => void;
interface ServiceError extends Error {
  code: number;
  details: string;
  metadata: { getMap(): Record<string, unknown> };
}
interface UnaryCall extends NodeJS.EventEmitter {
  cancel(): void;
}
interface StreamCall extends NodeJS.ReadWriteStream {
  cancel(): void;
  write(message: unknown): boolean;
}
type Method = (...args: unknown[]) => unknown;
interface ClientLike {
  makeUnaryRequest(path: string, ser: Method, de: Method, request: unknown, ...rest: unknown[]): UnaryCall;
  makeServerStreamRequest(path: string, ser: Method, de: Method, request: unknown, ...rest: unknown[]): StreamCall;
  makeBidiStreamRequest(path: string, ser: Method, de: Method, ...rest: unknown[]): StreamCall;
  makeClientStreamRequest(path: string, ser: Method, de: Method, ...rest: unknown[]): UnaryCall;
  close(): void;
}
interface MetadataLike {
  add(key: string, value: string): void;
  set(key: string, value: string): void;
  get(key: string): unknown[];
  remove(key: string): void;
  getMap(): Record<string, unknown>;
  clone(): MetadataLike;
  toJSON(): Record<string, unknown[]>;
}
/** The part of grpc-js @nitric/sdk and grpc-tools' generated code use: both modules have it. */
interface GrpcLike {
  Client: new (address: string, credentials: unknown, options?: object) => ClientLike;
  makeGenericClientConstructor(
    methods: Record<string, Partial<MethodDef>>,
    serviceName?: string,
  ): new (
    address: string,
    credentials: unknown,
  ) => ClientLike;
  Metadata: new () => MetadataLike;
  credentials: { createInsecure(): unknown };
  ChannelCredentials: { createInsecure(): unknown };
  status: Record<string | number, string | number>;
}

type SideName = "grpc-js" | "compat";
interface Side {
  name: SideName;
  grpc: GrpcLike;
  address: string;
}

const server = new GrpcServer(router);
const sides: Side[] = [];
const clients: ClientLike[] = [];

beforeAll(async () => {
  const port = await server.bind("127.0.0.1:0");
  compat.useTransport(createMemoryTransport(router));
  sides.push(
    { name: "grpc-js", grpc: grpc as unknown as GrpcLike, address: `127.0.0.1:${port}` },
    // The adapter ignores the address: its calls take the transport.
    { name: "compat", grpc: compat as unknown as GrpcLike, address: "127.0.0.1:1" },
  );
});

afterAll(async () => {
  for (const c of clients) c.close();
  await server.stop();
});

/** A client of `methods`, made as generated code makes one; methods are called by their local names. */
function clientOf(side: Side, methods: Record<string, Partial<MethodDef>>, name?: string) {
  const Ctor = side.grpc.makeGenericClientConstructor(methods, name);
  const client = new Ctor(side.address, side.grpc.ChannelCredentials.createInsecure());
  clients.push(client);
  return client as unknown as Record<string, Method>;
}

/**
 * Runs `scenario` through real grpc-js, then through the adapter, expects both to see the same,
 * and returns what they saw (the caller asserts it is what grpc-js is known to do).
 */
async function same<T>(scenario: (side: Side) => Promise<T>): Promise<T> {
  const [real, adapter] = sides as [Side, Side];
  const expected = await scenario(real);
  const actual = await scenario(adapter);
  expect(actual, "the adapter saw something else than grpc-js").toEqual(expected);
  return expected;
}

/** A ServiceError as a caller reads it. */
function errorOf(error: ServiceError | null | undefined) {
  if (!error) return error;
  return {
    isError: error instanceof Error,
    code: error.code,
    details: error.details,
    message: error.message,
    // @nitric/grpc-error-status reads getMap(): no grpc-status-details-bin, no rich details.
    metadata: callerMetadata(error.metadata.getMap()),
  };
}

/**
 * An error's metadata without the HTTP/2 response headers grpc-js merges into it when the server
 * answers with trailers only. Deliberate: the adapter has no HTTP/2 response, so no headers; no
 * caller of ours or of @nitric/sdk reads them (they read grpc-status-details-bin, which neither sends).
 */
function callerMetadata(map: Record<string, unknown>) {
  const { "content-type": _type, date: _date, ...rest } = map;
  return rest;
}

/** A unary call's callback result, then its "status" event (grpc-js calls back first). */
function unary(call: (callback: Callback) => UnaryCall) {
  return new Promise<{ order: string[]; error: ReturnType<typeof errorOf>; value: unknown; status: unknown }>(
    (resolve) => {
      const order: string[] = [];
      let error: ReturnType<typeof errorOf>;
      let value: unknown;
      const emitter = call((e, v) => {
        order.push("callback");
        error = errorOf(e);
        value = v;
      });
      emitter.on("status", (s: { code: number; details: string }) => {
        order.push("status");
        resolve({ order, error, value, status: { code: s.code, details: s.details } });
      });
    },
  );
}

const check = (side: Side, service: string, ...rest: unknown[]) => {
  const health = clientOf(side, definitionOf(Health), "Health");
  return unary((callback) => health.check?.({ service: `${service}@${side.name}` }, ...rest, callback) as UnaryCall);
};

/** A stream's events in order; resolves once it has its status and its end (or the end did not follow). */
function events(stream: NodeJS.EventEmitter): Promise<string[]> {
  const log: string[] = [];
  return new Promise((resolve) => {
    let statusHeard = false;
    let ended = false;
    stream.on("data", (m: { key?: string; id?: string }) => log.push(`data ${m.key ?? m.id}`));
    stream.on("end", () => {
      log.push("end");
      ended = true;
      if (statusHeard) resolve(log);
    });
    stream.on("error", (e: ServiceError) => log.push(`error ${e.code} ${e.details}`));
    stream.on("status", (s: { code: number; details: string }) => {
      log.push(`status ${s.code} ${s.details}`);
      statusHeard = true;
      if (ended) resolve(log);
      // A stream that ends its readable side at its status has done so within a few turns.
      else setTimeout(() => resolve(log), 100);
    });
  });
}

const scan = (side: Side, behaviour: string, prefix: string, ...rest: unknown[]) =>
  clientOf(side, definitionOf(KvStore), "KvStore").scanKeys?.(
    { store: { name: `${behaviour}@${side.name}` }, prefix },
    ...rest,
  ) as StreamCall;

const register = (id: string, socketName: string, eventType = WebsocketEventType.Connect) => ({
  id,
  content: { case: "registrationRequest", value: { socketName, eventType } },
});

/** Waits until the handlers of `tag` have seen `what` (server-side events cross a socket on one side). */
async function until(tag: string, what: string) {
  await vi.waitFor(() => expect(seenBy(tag)).toContain(what), { timeout: 5_000, interval: 5 });
}

/** The server-side log of one side's calls, once it holds `last`. */
async function serverSaw(side: Side, last: string) {
  await until(side.name, last);
  const log = seenBy(side.name);
  seen.delete(side.name);
  return log;
}

/**
 * The server's log of a bidi call that the client cancelled (or that grpc-js cancelled for it).
 * Deliberate: grpc-js's server ends the request stream ("end", which GrpcServer passes on as a
 * half-close) just before it reports the cancel; in memory the router hears the cancel alone.
 * Either way the handler's call ends cancelled.
 */
function cancelledLog(side: Side, log: string[]) {
  return side.name === "grpc-js" ? log.filter((e) => e !== "half-closed") : log;
}

const turn = () => new Promise((r) => setTimeout(r, 20));

describe("the grpc-js adapter, against real grpc-js", () => {
  it("refuses a call made before it has a transport, saying how to get one", () => {
    // Deliberate: grpc-js would wait for a server; a function bundle with no transport is a build
    // error to report at once, not a call to retry.
    expect(early).toMatch(/none gave it a transport; start the service with nitric-like run/);
  });

  it("answers a unary call through the callback, then emits its status", async () => {
    const r = await same((side) => check(side, ""));
    expect(r).toEqual({
      order: ["callback", "status"],
      error: null,
      value: expect.objectContaining({ status: HealthCheckResponse_ServingStatus.SERVING }),
      status: { code: Code.OK, details: "OK" },
    });
  });

  it.each([Code.NOT_FOUND, Code.PERMISSION_DENIED, Code.INVALID_ARGUMENT, Code.UNAVAILABLE, Code.INTERNAL])(
    "fails a unary call with grpc-js's ServiceError for status %i: code, details, message, empty metadata",
    async (code) => {
      const r = await same((side) => check(side, `fail-${code}`));
      expect(r).toEqual({
        order: ["callback", "status"],
        error: {
          isError: true,
          code,
          details: `failed with ${Code[code]}`,
          message: `${code} ${Code[code]}: failed with ${Code[code]}`,
          metadata: {},
        },
        value: undefined,
        status: { code, details: `failed with ${Code[code]}` },
      });
    },
  );

  it("carries details with characters gRPC percent-encodes unchanged", async () => {
    const r = await same((side) => check(side, "awkward"));
    expect(r.error?.details).toBe(AWKWARD);
  });

  it("fails a call whose handler throws with UNKNOWN and the error's message", async () => {
    const r = await same((side) => check(side, "throw"));
    expect(r.error).toMatchObject({ code: Code.UNKNOWN, details: "the handler threw" });
  });

  it("takes grpc-js's optional metadata and options arguments", async () => {
    const r = await same(async (side) => [
      await check(side, "", new side.grpc.Metadata()),
      await check(side, "", new side.grpc.Metadata(), {}),
      await check(side, "", { deadline: Number.POSITIVE_INFINITY }),
      await check(side, "", new side.grpc.Metadata(), { deadline: new Date(Date.now() + 60_000) }),
    ]);
    for (const each of r) expect(each.error).toBeNull();
  });

  it("ends a unary call at its deadline with DEADLINE_EXCEEDED", async () => {
    const seenBoth: Record<string, unknown> = {};
    for (const side of sides) {
      const r = await check(side, "never", new side.grpc.Metadata(), { deadline: Date.now() + 50 });
      expect(r.order).toEqual(["callback", "status"]);
      expect(r.error?.code).toBe(Code.DEADLINE_EXCEEDED);
      // Deliberate: grpc-js adds how long each stage of its channel took ("Deadline exceeded after
      // 0.051s,LB pick: 0.001s,remote_addr=..."); the adapter has no channel, and says only the first words.
      expect(r.error?.details).toMatch(/^Deadline exceeded/);
      expect(r.error?.message).toMatch(/^4 DEADLINE_EXCEEDED: Deadline exceeded/);
      seenBoth[side.name] = await serverSaw(side, "check never");
    }
    expect(seenBoth.compat).toEqual(seenBoth["grpc-js"]);
  });

  it("ends a unary call whose deadline has passed with DEADLINE_EXCEEDED, without waiting", async () => {
    for (const side of sides) {
      const r = await check(side, "never", { deadline: Date.now() - 1_000 });
      expect(r.error?.code).toBe(Code.DEADLINE_EXCEEDED);
      seen.delete(side.name);
    }
  });

  it("cancels a unary call: the callback hears CANCELLED", async () => {
    const r = await same(async (side) => {
      const health = clientOf(side, definitionOf(Health), "Health");
      let call: UnaryCall | undefined;
      const result = unary((callback) => {
        call = health.check?.({ service: `never@${side.name}` }, callback) as UnaryCall;
        return call;
      });
      await until(side.name, "check never");
      call?.cancel();
      seen.delete(side.name);
      return result;
    });
    expect(r.error).toMatchObject({ code: Code.CANCELLED, details: "Cancelled on client" });
    expect(r.status).toEqual({ code: Code.CANCELLED, details: "Cancelled on client" });
  });

  it("fails a request its serializer refuses with INTERNAL, before it leaves", async () => {
    // grpc-tools' generated serializers throw for an argument of the wrong class.
    const r = await same((side) => {
      const client = clientOf(side, {
        check: {
          ...definitionOf(Health).check,
          requestSerialize: () => {
            throw new Error("Expected argument of type grpc.health.v1.HealthCheckRequest");
          },
        },
      });
      return unary((callback) => client.check?.({}, callback) as UnaryCall);
    });
    expect(r.error).toMatchObject({
      code: Code.INTERNAL,
      details: "Request message serialization failure: Expected argument of type grpc.health.v1.HealthCheckRequest",
    });
    expect(r.status).toEqual({
      code: Code.INTERNAL,
      details: "Request message serialization failure: Expected argument of type grpc.health.v1.HealthCheckRequest",
    });
  });

  it("fails a request the server cannot decode with INVALID_ARGUMENT, saying what it expected", async () => {
    const r = await same((side) => {
      const client = clientOf(side, {
        check: { ...definitionOf(Health).check, requestSerialize: () => Buffer.from([0x0a, 0xff]) },
      });
      return unary((callback) => client.check?.({}, callback) as UnaryCall);
    });
    expect(r.error?.code).toBe(Code.INVALID_ARGUMENT);
    expect(r.error?.details).toMatch(/^\/grpc.health.v1.Health\/Check: the request is not a valid/);
  });

  it("fails a response its deserializer refuses with INTERNAL", async () => {
    const r = await same((side) => {
      const client = clientOf(side, {
        check: {
          ...definitionOf(Health).check,
          responseDeserialize: () => {
            throw new Error("truncated");
          },
        },
      });
      return unary((callback) => client.check?.({ service: `@${side.name}` }, callback) as UnaryCall);
    });
    expect(r.error).toMatchObject({ code: Code.INTERNAL, details: "Response message parsing error: truncated" });
    for (const side of sides) seen.delete(side.name);
  });

  it("ends a call to a method the endpoint does not have with UNIMPLEMENTED, naming the method", async () => {
    for (const side of sides) {
      const client = clientOf(side, {
        nothing: {
          path: "/nitric.proto.nothing.v1.Nothing/Nothing",
          requestStream: false,
          responseStream: false,
          requestSerialize: (v: unknown) => v as Buffer,
          responseDeserialize: (b: Buffer) => b,
        },
      });
      const r = await unary((callback) => client.nothing?.(Buffer.alloc(0), callback) as UnaryCall);
      expect(r.error?.code).toBe(Code.UNIMPLEMENTED);
      // Deliberate: grpc-js's server writes "The server does not implement the method <path>"
      // itself; in memory the router answers with its own words. Both name the method.
      expect(r.error?.details).toContain("/nitric.proto.nothing.v1.Nothing/Nothing");
    }
  });

  it("streams a server-streaming call's messages, then its OK status and end", async () => {
    const log = await same((side) => events(scan(side, "items", "k/")));
    expect(log).toEqual(["data k/a", "data k/b", "data k/c", "status 0 OK", "end"]);
    for (const side of sides) seen.delete(side.name);
  });

  it("reports a failed server stream as grpc-js does: an error, the status, then the end", async () => {
    const log = await same((side) => events(scan(side, "denied", "")));
    expect(log).toEqual([
      `error ${Code.PERMISSION_DENIED} scan refused`,
      `status ${Code.PERMISSION_DENIED} scan refused`,
      "end",
    ]);
    for (const side of sides) seen.delete(side.name);
  });

  it("delivers a server stream's messages before the error that ends it", async () => {
    const log = await same((side) => events(scan(side, "partial", "p/")));
    expect(log).toEqual([
      "data p/a",
      `error ${Code.UNAVAILABLE} the table went away`,
      `status ${Code.UNAVAILABLE} the table went away`,
      "end",
    ]);
    for (const side of sides) seen.delete(side.name);
  });

  it("fails a server stream whose handler throws with UNKNOWN", async () => {
    const log = await same((side) => events(scan(side, "throw", "")));
    expect(log).toEqual([`error ${Code.UNKNOWN} the scan threw`, `status ${Code.UNKNOWN} the scan threw`, "end"]);
    for (const side of sides) seen.delete(side.name);
  });

  it("ends a server stream at its deadline with DEADLINE_EXCEEDED, and the server hears it", async () => {
    const logs: Record<string, unknown> = {};
    for (const side of sides) {
      const log = await events(scan(side, "never", "d/", new side.grpc.Metadata(), { deadline: Date.now() + 100 }));
      // Deliberate, as for unary calls: grpc-js's details go on with its channel's timings.
      logs[side.name] = log.map((e) => e.replace(/Deadline exceeded.*/, "Deadline exceeded"));
      expect(await serverSaw(side, "scan closed, cancelled: true")).toEqual([
        "scan never",
        "scan closed, cancelled: true",
      ]);
    }
    expect(logs.compat).toEqual(logs["grpc-js"]);
    expect(logs["grpc-js"]).toEqual([
      "data d/a",
      `error ${Code.DEADLINE_EXCEEDED} Deadline exceeded`,
      `status ${Code.DEADLINE_EXCEEDED} Deadline exceeded`,
      "end",
    ]);
  });

  it("cancels a server stream on both sides: CANCELLED for the client, cancelled for the server", async () => {
    const r = await same(async (side) => {
      const stream = scan(side, "never", "c/");
      const log = events(stream);
      await until(side.name, "scan never");
      await turn();
      stream.cancel();
      return { log: await log, server: await serverSaw(side, "scan closed, cancelled: true") };
    });
    expect(r).toEqual({
      log: [
        "data c/a",
        `error ${Code.CANCELLED} Cancelled on client`,
        `status ${Code.CANCELLED} Cancelled on client`,
        "end",
      ],
      server: ["scan never", "scan closed, cancelled: true"],
    });
  });

  it("ends a stream whose message does not parse with INTERNAL, and cancels it on the server", async () => {
    const r = await same(async (side) => {
      const client = clientOf(side, {
        scanKeys: {
          ...definitionOf(KvStore).scanKeys,
          responseDeserialize: () => {
            throw new Error("bad key");
          },
        },
      });
      const log = await events(
        client.scanKeys?.({ store: { name: `never@${side.name}` }, prefix: "p/" }) as StreamCall,
      );
      return { log, server: await serverSaw(side, "scan closed, cancelled: true") };
    });
    expect(r).toEqual({
      log: [
        `error ${Code.INTERNAL} Response message parsing error: bad key`,
        `status ${Code.INTERNAL} Response message parsing error: bad key`,
        "end",
      ],
      server: ["scan never", "scan closed, cancelled: true"],
    });
  });

  it("ends a stream whose server answers undecodable bytes with INTERNAL, and cancels it on the server", async () => {
    const r = await same(async (side) => {
      const client = clientOf(side, {
        garbage: {
          ...definitionOf(WebsocketHandler).handleEvents,
          path: "/nitric.proto.websockets.v1.WebsocketHandler/Garbage",
          requestSerialize: (v) => Buffer.from(v as string),
        },
      });
      const stream = client.garbage?.() as StreamCall;
      const log = events(stream);
      stream.write(side.name);
      return { log: await log, server: await serverSaw(side, "garbage closed, cancelled: true") };
    });
    let decodeError = "";
    try {
      codecOf(ServerMessageSchema).decode(new Uint8Array([0x0a, 0xff]));
    } catch (error) {
      decodeError = (error as Error).message;
    }
    expect(decodeError).not.toBe("");
    expect(r).toEqual({
      log: [
        `error ${Code.INTERNAL} Response message parsing error: ${decodeError}`,
        `status ${Code.INTERNAL} Response message parsing error: ${decodeError}`,
        "end",
      ],
      server: ["garbage asked", "garbage closed, cancelled: true"],
    });
  });

  it("pipes a server stream into a transform, as @nitric/sdk's kv keys() does", async () => {
    const keys = await same(async (side) => {
      const stream = scan(side, "items", "") as unknown as NodeJS.ReadableStream;
      const piped = stream.pipe(
        new Transform({ objectMode: true, transform: (m: { key: string }, _e, cb) => cb(null, m.key) }),
      );
      const out: string[] = [];
      for await (const k of piped) out.push(k as string);
      seen.delete(side.name);
      return out;
    });
    expect(keys).toEqual(["a", "b", "c"]);
  });

  it("reads a server stream as an async iterator, which throws the stream's error after its messages", async () => {
    const r = await same(async (side) => {
      const read = async (behaviour: string) => {
        const out: string[] = [];
        try {
          for await (const m of scan(side, behaviour, "i/") as unknown as AsyncIterable<{ key: string }>)
            out.push(m.key);
        } catch (error) {
          out.push(`threw ${(error as ServiceError).code} ${(error as ServiceError).details}`);
        }
        return out;
      };
      const result = { items: await read("items"), partial: await read("partial") };
      seen.delete(side.name);
      return result;
    });
    expect(r).toEqual({
      items: ["i/a", "i/b", "i/c"],
      partial: ["i/a", `threw ${Code.UNAVAILABLE} the table went away`],
    });
  });

  it("carries a bidi stream both ways; end() half-closes and the server's end ends it", async () => {
    const r = await same(async (side) => {
      const stream = clientOf(side, definitionOf(WebsocketHandler)).handleEvents?.() as StreamCall;
      const log = events(stream);
      stream.write(register("one", side.name));
      stream.write(register("two", side.name));
      await until(side.name, "message two");
      await turn();
      stream.end();
      return { log: await log, server: await serverSaw(side, "closed, cancelled: false") };
    });
    expect(r).toEqual({
      log: ["data one", "data two", "status 0 OK", "end"],
      server: ["message one", "message two", "half-closed", "closed, cancelled: false"],
    });
  });

  it("ends a bidi stream when the server ends it, with the client still open", async () => {
    const r = await same(async (side) => {
      const stream = clientOf(side, definitionOf(WebsocketHandler)).handleEvents?.() as StreamCall;
      const log = events(stream);
      stream.write(register("one", side.name));
      stream.write(register("end", side.name));
      return { log: await log, server: await serverSaw(side, "closed, cancelled: false") };
    });
    expect(r).toEqual({
      log: ["data one", "status 0 OK", "end"],
      server: ["message one", "message end", "closed, cancelled: false"],
    });
  });

  it("reports a bidi stream the server fails: an error, the status, then the end", async () => {
    const r = await same(async (side) => {
      const stream = clientOf(side, definitionOf(WebsocketHandler)).handleEvents?.() as StreamCall;
      const log = events(stream);
      stream.write(register("one", side.name));
      stream.write(register("fail", side.name));
      return { log: await log, server: await serverSaw(side, "closed, cancelled: false") };
    });
    expect(r).toEqual({
      log: [
        "data one",
        `error ${Code.ABORTED} the handler gave up`,
        `status ${Code.ABORTED} the handler gave up`,
        "end",
      ],
      server: ["message one", "message fail", "closed, cancelled: false"],
    });
  });

  it("cancels a bidi stream on both sides: CANCELLED for the client, cancelled for the server", async () => {
    const r = await same(async (side) => {
      const stream = clientOf(side, definitionOf(WebsocketHandler)).handleEvents?.() as StreamCall;
      const log = events(stream);
      stream.write(register("x", side.name, WebsocketEventType.Message));
      await until(side.name, "message x");
      await turn();
      stream.cancel();
      return { log: await log, server: cancelledLog(side, await serverSaw(side, "closed, cancelled: true")) };
    });
    expect(r).toEqual({
      log: [
        "data x",
        `error ${Code.CANCELLED} Cancelled on client`,
        `status ${Code.CANCELLED} Cancelled on client`,
        "end",
      ],
      server: ["message x", "closed, cancelled: true"],
    });
  });

  it("ends a bidi stream at its deadline with DEADLINE_EXCEEDED, and the server hears it", async () => {
    const logs: Record<string, unknown> = {};
    for (const side of sides) {
      const stream = clientOf(side, definitionOf(WebsocketHandler)).handleEvents?.(new side.grpc.Metadata(), {
        deadline: Date.now() + 100,
      }) as StreamCall;
      const log = events(stream);
      stream.write(register("x", side.name, WebsocketEventType.Message));
      logs[side.name] = (await log).map((e) => e.replace(/Deadline exceeded.*/, "Deadline exceeded"));
      expect(cancelledLog(side, await serverSaw(side, "closed, cancelled: true"))).toEqual([
        "message x",
        "closed, cancelled: true",
      ]);
    }
    expect(logs.compat).toEqual(logs["grpc-js"]);
    expect(logs["grpc-js"]).toEqual([
      "data x",
      `error ${Code.DEADLINE_EXCEEDED} Deadline exceeded`,
      `status ${Code.DEADLINE_EXCEEDED} Deadline exceeded`,
      "end",
    ]);
  });

  it("ends a bidi stream with INTERNAL when a message it writes does not serialize", async () => {
    const r = await same(async (side) => {
      const client = clientOf(side, {
        handleEvents: {
          ...definitionOf(WebsocketHandler).handleEvents,
          requestSerialize: (v) => {
            if ((v as { id: string }).id === "bad")
              throw new Error("Expected argument of type nitric.proto.websockets.v1.ClientMessage");
            return definitionOf(WebsocketHandler).handleEvents?.requestSerialize(v) as Buffer;
          },
        },
      });
      const stream = client.handleEvents?.() as StreamCall;
      const log = events(stream);
      stream.write(register("x", side.name, WebsocketEventType.Message));
      await until(side.name, "message x");
      await turn();
      stream.write({ id: "bad" });
      return { log: await log, server: cancelledLog(side, await serverSaw(side, "closed, cancelled: true")) };
    });
    expect(r).toEqual({
      log: [
        "data x",
        `error ${Code.INTERNAL} Request message serialization failure: Expected argument of type nitric.proto.websockets.v1.ClientMessage`,
        `status ${Code.INTERNAL} Request message serialization failure: Expected argument of type nitric.proto.websockets.v1.ClientMessage`,
        "end",
      ],
      server: ["message x", "closed, cancelled: true"],
    });
  });

  it("serves grpc-js's Client.make*Request, which generated clients are built on", async () => {
    const def = definitionOf(Health).check as MethodDef;
    const scanDef = definitionOf(KvStore).scanKeys as MethodDef;
    const r = await same(async (side) => {
      const client = new side.grpc.Client(side.address, side.grpc.credentials.createInsecure(), {});
      clients.push(client);
      const value = await new Promise((resolve, reject) =>
        client.makeUnaryRequest(
          def.path,
          def.requestSerialize as Method,
          def.responseDeserialize as Method,
          { service: `@${side.name}` },
          new side.grpc.Metadata(),
          {},
          (e: Error | null, v: unknown) => (e ? reject(e) : resolve(v)),
        ),
      );
      const log = await events(
        client.makeServerStreamRequest(
          scanDef.path,
          scanDef.requestSerialize as Method,
          scanDef.responseDeserialize as Method,
          { store: { name: `items@${side.name}` }, prefix: "m/" },
          new side.grpc.Metadata(),
          {},
        ),
      );
      seen.delete(side.name);
      return { value, log };
    });
    expect(r).toEqual({
      value: expect.objectContaining({ status: HealthCheckResponse_ServingStatus.SERVING }),
      log: ["data m/a", "data m/b", "data m/c", "status 0 OK", "end"],
    });
  });

  it("ends a client-streaming call with UNIMPLEMENTED: no contract has one", async () => {
    const r: Record<string, Awaited<ReturnType<typeof unary>>> = {};
    for (const side of sides) {
      const client = new side.grpc.Client(side.address, side.grpc.credentials.createInsecure());
      clients.push(client);
      r[side.name] = await unary((callback) => {
        const call = client.makeClientStreamRequest(
          "/x.Y/Z",
          (v: unknown) => v as Buffer,
          (b: unknown) => b,
          callback,
        ) as UnaryCall & { end?: () => void };
        // grpc-js sends the call once the caller half-closes; the adapter answers at once.
        call.end?.();
        return call;
      });
    }
    const real = r["grpc-js"];
    const adapter = r.compat;
    expect(real?.error).toMatchObject({
      code: Code.UNIMPLEMENTED,
      details: "The server does not implement the method /x.Y/Z",
    });
    // Deliberate: grpc-js carries the call to a server that has no such method; the adapter never
    // opens one (no transport of ours carries client streams) and says so. Same code, same order.
    expect(adapter).toEqual({
      ...real,
      error: {
        ...real?.error,
        details: "/x.Y/Z: client-streaming calls are not served inside a nitric-like function",
        message: "12 UNIMPLEMENTED: /x.Y/Z: client-streaming calls are not served inside a nitric-like function",
      },
      status: {
        code: Code.UNIMPLEMENTED,
        details: "/x.Y/Z: client-streaming calls are not served inside a nitric-like function",
      },
    });
  });

  it("has no server: constructing one says what serves instead", () => {
    // Deliberate: the adapter is a client only; functions serve nothing over gRPC.
    expect(() => new compat.Server()).toThrow(/has no gRPC server; serve a Router with @nitric-like\/rpc\/grpc/);
    expect(() => compat.ServerCredentials.createInsecure()).toThrow(/has no gRPC server/);
  });

  it("keeps metadata as grpc-js does: keys case-insensitive, many values, getMap the first", async () => {
    const r = await same(async (side) => {
      const m = new side.grpc.Metadata();
      m.add("X-Thing", "a");
      m.add("x-thing", "b");
      m.set("Other", "c");
      const before = { get: m.get("x-THING"), map: m.getMap(), json: m.clone().toJSON() };
      m.remove("OTHER");
      return { ...before, removed: m.get("other") };
    });
    expect(r).toEqual({
      get: ["a", "b"],
      map: { "x-thing": "a", other: "c" },
      json: { "x-thing": ["a", "b"], other: ["c"] },
      removed: [],
    });
  });

  it("numbers status codes as grpc-js does, both ways", () => {
    const real = grpc.status as unknown as Record<string | number, string | number>;
    for (const [key, value] of Object.entries(real)) expect(compat.status[key as never], key).toBe(value);
    expect(compat.status.UNAVAILABLE).toBe(14);
    expect(compat.status[14]).toBe("UNAVAILABLE");
  });
});
