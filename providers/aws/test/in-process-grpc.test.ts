// The grpc-js a function's bundle gives @nitric/sdk and our packages (@nitric-like/contracts/grpc-standin),
// against a real PortServer serving real routes of our contracts: what grpc-js's clients do
// (callbacks, streams, their events and their order, ServiceError's shape, deadlines), over the
// in-process port. The conformance suite runs @nitric/sdk itself through it, bundled, on aws.
import { GrpcStatus, grpcError, routes, serviceDefinition } from "@nitric-like/contracts/grpc";
import * as grpc from "@nitric-like/contracts/grpc-standin";
import { Health } from "@nitric-like/contracts/health";
import { KvStore } from "@nitric-like/contracts/kvstore";
import { PortServer } from "@nitric-like/contracts/port";
import { WebsocketHandler } from "@nitric-like/contracts/websockets";
import { describe, expect, it } from "vitest";
import { inProcessClient, openInProcessPort, serveInProcess } from "../src/runtime/in-process.js";

// As the runtime does before it loads a service's code.
(globalThis as Record<symbol, unknown>)[grpc.STAND_IN_CLIENT] = inProcessClient;

// Before any endpoint is served: a clear error, not a hang.
const early = (() => {
  try {
    openInProcessPort();
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
})();

const server = new PortServer();
const seen: string[] = [];
server.add(
  routes(Health, {
    check(call, callback) {
      if (call.request.service === "missing") callback(grpcError(GrpcStatus.NOT_FOUND, "no service called missing"));
      else if (call.request.service === "slow") {
        call.on("cancelled", () => seen.push("slow call cancelled"));
        setTimeout(() => callback(null, { status: 1 }), 2_000).unref();
      } else callback(null, { status: 1 });
    },
  }),
);
server.add(
  routes(KvStore, {
    getValue: (_call, callback) => callback(grpcError(GrpcStatus.UNIMPLEMENTED, "not here")),
    setValue: (_call, callback) => callback(grpcError(GrpcStatus.UNIMPLEMENTED, "not here")),
    deleteKey: (_call, callback) => callback(grpcError(GrpcStatus.UNIMPLEMENTED, "not here")),
    scanKeys(call) {
      const prefix = call.request.prefix;
      if (prefix === "denied") {
        call.emit("error", grpcError(GrpcStatus.PERMISSION_DENIED, "scan refused"));
        return;
      }
      for (const key of ["a", "b", "c"]) call.write({ key: `${prefix}${key}` });
      call.end();
    },
  }),
);
server.add(
  routes(WebsocketHandler, {
    handleEvents(call) {
      call.on("data", (message) => {
        // Echo each registration back as an event response, with its id.
        call.write({ id: message.id, content: { case: "registrationResponse", value: {} } });
      });
      call.on("end", () => {
        seen.push("bidi half-closed");
        call.end();
      });
      call.on("cancelled", () => seen.push("bidi cancelled"));
    },
  }),
);
serveInProcess(server);

/** Clients made as grpc-tools' generated code makes them. */
const HealthClient = grpc.makeGenericClientConstructor(serviceDefinition(Health) as never, "Health");
const KvClient = grpc.makeGenericClientConstructor(serviceDefinition(KvStore) as never, "KvStore");
const HandlerClient = grpc.makeGenericClientConstructor(serviceDefinition(WebsocketHandler) as never);
type Call = (...args: unknown[]) => unknown;
const health = new HealthClient("127.0.0.1:50051", grpc.ChannelCredentials.createInsecure()) as unknown as {
  check: Call;
};
const kv = new KvClient("ignored", grpc.credentials.createInsecure()) as unknown as { scanKeys: Call };
const handler = new HandlerClient("ignored", grpc.credentials.createInsecure()) as unknown as { handleEvents: Call };

function check(service: string, ...args: unknown[]) {
  return new Promise<{ error: grpc.ServiceError | null; value: unknown; status: unknown }>((resolve) => {
    let result: { error: grpc.ServiceError | null; value: unknown } | undefined;
    const call = health.check({ service }, ...args, (error: grpc.ServiceError | null, value: unknown) => {
      result = { error, value };
    }) as NodeJS.EventEmitter;
    call.on("status", (status) => resolve({ ...(result as { error: null; value: unknown }), status }));
  });
}

function events(stream: NodeJS.EventEmitter): Promise<string[]> {
  const log: string[] = [];
  return new Promise((resolve) => {
    stream.on("data", (m: { key?: string; id?: string }) => log.push(`data ${m.key ?? m.id}`));
    stream.on("end", () => log.push("end"));
    stream.on("error", (e: grpc.ServiceError) => log.push(`error ${e.code} ${e.details}`));
    stream.on("status", (s: { code: number }) => {
      log.push(`status ${s.code}`);
      // "end" follows the readable side's last read; let it arrive.
      setImmediate(() => resolve(log));
    });
  });
}

describe("the in-process grpc-js", () => {
  it("refuses a call made before the runtime serves an endpoint, saying why", () => {
    expect(early).toMatch(/called the provider before the runtime started/);
  });

  it("answers a unary call through the callback, then emits its status", async () => {
    const { error, value, status } = await check("");
    expect(error).toBeNull();
    expect(value).toMatchObject({ status: 1 });
    expect(status).toMatchObject({ code: 0, details: "" });
  });

  it("fails a unary call with grpc-js's ServiceError: code, details, message and empty metadata", async () => {
    const { error, value } = await check("missing");
    expect(value).toBeUndefined();
    expect(error?.code).toBe(GrpcStatus.NOT_FOUND);
    expect(error?.details).toBe("no service called missing");
    expect(error?.message).toBe("5 NOT_FOUND: no service called missing");
    // @nitric/grpc-error-status reads getMap(): no grpc-status-details-bin, no rich details.
    expect(error?.metadata.getMap()).toEqual({});
  });

  it("takes grpc-js's optional metadata and options arguments, and honours a deadline", async () => {
    const withMetadata = await check("", new grpc.Metadata());
    expect(withMetadata.error).toBeNull();
    const started = Date.now();
    const late = await check("slow", new grpc.Metadata(), { deadline: Date.now() + 50 });
    expect(late.error?.code).toBe(GrpcStatus.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeLessThan(1_500);
    await new Promise((r) => setTimeout(r, 20));
    expect(seen).toContain("slow call cancelled");
  });

  it("fails a request its serializer refuses with INTERNAL, before it leaves", async () => {
    // grpc-tools' generated serializers throw for an argument of the wrong class.
    const Strict = grpc.makeGenericClientConstructor({
      check: {
        path: "/grpc.health.v1.Health/Check",
        requestStream: false,
        responseStream: false,
        requestSerialize: () => {
          throw new Error("Expected argument of type grpc.health.v1.HealthCheckRequest");
        },
        responseDeserialize: (b: Buffer) => b,
      },
    });
    const client = new Strict() as unknown as { check: Call };
    const error = await new Promise<grpc.ServiceError>((resolve) =>
      client.check({}, (e: grpc.ServiceError) => resolve(e)),
    );
    expect(error.code).toBe(GrpcStatus.INTERNAL);
    expect(error.details).toBe(
      "Request message serialization failure: Expected argument of type grpc.health.v1.HealthCheckRequest",
    );
  });

  it("fails a response its deserializer refuses with INTERNAL", async () => {
    const Picky = grpc.makeGenericClientConstructor({
      check: {
        path: "/grpc.health.v1.Health/Check",
        requestStream: false,
        responseStream: false,
        requestSerialize: () => Buffer.alloc(0),
        responseDeserialize: () => {
          throw new Error("truncated");
        },
      },
    });
    const client = new Picky() as unknown as { check: Call };
    const error = await new Promise<grpc.ServiceError>((resolve) =>
      client.check({}, (e: grpc.ServiceError) => resolve(e)),
    );
    expect(error.code).toBe(GrpcStatus.INTERNAL);
    expect(error.details).toBe("Response message parsing error: truncated");
  });

  it("ends a stream whose message does not parse with INTERNAL, and cancels it on the server", async () => {
    const Picky = grpc.makeGenericClientConstructor({
      scanKeys: {
        ...(serviceDefinition(KvStore).scanKeys as unknown as {
          path: string;
          requestStream: boolean;
          responseStream: boolean;
          requestSerialize: (v: unknown) => Buffer;
        }),
        responseDeserialize: () => {
          throw new Error("bad key");
        },
      },
    });
    const client = new Picky() as unknown as { scanKeys: Call };
    const log = await events(client.scanKeys({ store: { name: "items" }, prefix: "p/" }) as NodeJS.EventEmitter);
    expect(log).toEqual([
      `error ${GrpcStatus.INTERNAL} Response message parsing error: bad key`,
      `status ${GrpcStatus.INTERNAL}`,
      "end",
    ]);
  });

  it("ends a bidi stream with INTERNAL when a message it writes does not serialize", async () => {
    const Strict = grpc.makeGenericClientConstructor({
      handleEvents: {
        ...(serviceDefinition(WebsocketHandler).handleEvents as unknown as {
          path: string;
          requestStream: boolean;
          responseStream: boolean;
          responseDeserialize: (b: Buffer) => unknown;
        }),
        requestSerialize: () => {
          throw new Error("Expected argument of type nitric.proto.websockets.v1.ClientMessage");
        },
      },
    });
    const client = new Strict() as unknown as { handleEvents: Call };
    const stream = client.handleEvents() as NodeJS.EventEmitter & { write(m: unknown): boolean };
    const log = events(stream);
    stream.write({ id: "x" });
    expect(await log).toEqual([
      `error ${GrpcStatus.INTERNAL} Request message serialization failure: Expected argument of type nitric.proto.websockets.v1.ClientMessage`,
      `status ${GrpcStatus.INTERNAL}`,
      "end",
    ]);
  });

  it("ends a call to a method the endpoint does not have with UNIMPLEMENTED", async () => {
    const Missing = grpc.makeGenericClientConstructor({
      nothing: {
        path: "/nitric.proto.nothing.v1.Nothing/Nothing",
        requestStream: false,
        responseStream: false,
        requestSerialize: (v: unknown) => v as Buffer,
        responseDeserialize: (b: Buffer) => b,
      },
    });
    const client = new Missing() as unknown as { nothing: Call };
    const error = await new Promise<grpc.ServiceError>((resolve) =>
      client.nothing(Buffer.alloc(0), (e: grpc.ServiceError) => resolve(e)),
    );
    expect(error.code).toBe(GrpcStatus.UNIMPLEMENTED);
    expect(error.details).toContain("/nitric.proto.nothing.v1.Nothing/Nothing");
  });

  it("streams a server-streaming call's messages, then its end and OK status", async () => {
    const log = await events(kv.scanKeys({ store: { name: "items" }, prefix: "k/" }) as NodeJS.EventEmitter);
    expect(log).toEqual(["data k/a", "data k/b", "data k/c", "status 0", "end"]);
  });

  it("reports a failed server stream as grpc-js does: an error, the status, then the end", async () => {
    const log = await events(kv.scanKeys({ store: { name: "items" }, prefix: "denied" }) as NodeJS.EventEmitter);
    expect(log).toEqual([
      `error ${GrpcStatus.PERMISSION_DENIED} scan refused`,
      `status ${GrpcStatus.PERMISSION_DENIED}`,
      "end",
    ]);
  });

  it("pipes a server stream into a transform, as @nitric/sdk's kv keys() does", async () => {
    const { Transform } = await import("node:stream");
    const keys = (kv.scanKeys({ store: { name: "items" }, prefix: "" }) as NodeJS.ReadableStream).pipe(
      new Transform({ objectMode: true, transform: (m: { key: string }, _e, cb) => cb(null, m.key) }),
    );
    const out: string[] = [];
    for await (const k of keys) out.push(k as string);
    expect(out).toEqual(["a", "b", "c"]);
  });

  it("carries a bidi stream both ways; end() half-closes and the server's end ends it", async () => {
    const stream = handler.handleEvents() as NodeJS.ReadWriteStream & { write(m: unknown): boolean };
    const log = events(stream);
    stream.write({ id: "one", content: { case: "registrationRequest", value: { socketName: "s", eventType: 0 } } });
    stream.write({ id: "two", content: { case: "registrationRequest", value: { socketName: "s", eventType: 2 } } });
    await new Promise((r) => setTimeout(r, 20));
    stream.end();
    expect(await log).toEqual(["data one", "data two", "status 0", "end"]);
    expect(seen).toContain("bidi half-closed");
  });

  it("cancels a bidi stream on both sides: CANCELLED for the client, cancelled for the server", async () => {
    const stream = handler.handleEvents() as NodeJS.EventEmitter & { cancel(): void; write(m: unknown): boolean };
    const log = events(stream);
    stream.write({ id: "x", content: { case: "registrationRequest", value: { socketName: "s", eventType: 0 } } });
    await new Promise((r) => setTimeout(r, 20));
    stream.cancel();
    expect(await log).toEqual(["data x", `error ${GrpcStatus.CANCELLED} Cancelled on client`, "status 1", "end"]);
    await new Promise((r) => setTimeout(r, 20));
    expect(seen).toContain("bidi cancelled");
  });

  it("serves grpc-js's Client.make*Request, which our GrpcClient is built on", async () => {
    const client = new grpc.Client("ignored", grpc.credentials.createInsecure(), {});
    const def = serviceDefinition(Health).check as unknown as {
      path: string;
      requestSerialize: (v: unknown) => Buffer;
      responseDeserialize: (b: Buffer) => unknown;
    };
    const value = await new Promise((resolve, reject) =>
      client.makeUnaryRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        { service: "" },
        new grpc.Metadata(),
        {},
        (e: Error | null, v: unknown) => (e ? reject(e) : resolve(v)),
      ),
    );
    expect(value).toMatchObject({ status: 1 });
  });

  it("ends a client-streaming call with UNIMPLEMENTED: no contract has one", async () => {
    const client = new grpc.Client();
    const error = await new Promise<grpc.ServiceError>((resolve) =>
      client.makeClientStreamRequest(
        "/x.Y/Z",
        (v: unknown) => v as Buffer,
        (b: Buffer) => b,
        (e: grpc.ServiceError) => resolve(e),
      ),
    );
    expect(error.code).toBe(GrpcStatus.UNIMPLEMENTED);
    expect(error.details).toMatch(/client-streaming calls are not served inside a nitric-like function/);
  });

  it("has no server: constructing one says how the runtime serves instead", () => {
    expect(() => new grpc.Server()).toThrow(/serves its endpoint in-process and has no gRPC server/);
    expect(() => grpc.ServerCredentials.createInsecure()).toThrow(/grpc: false/);
  });

  it("keeps metadata as grpc-js does: keys case-insensitive, many values, getMap the first", () => {
    const m = new grpc.Metadata();
    m.add("X-Thing", "a");
    m.add("x-thing", "b");
    m.set("Other", "c");
    expect(m.get("x-THING")).toEqual(["a", "b"]);
    expect(m.getMap()).toEqual({ "x-thing": "a", other: "c" });
    expect(m.clone().toJSON()).toEqual({ "x-thing": ["a", "b"], other: ["c"] });
    m.remove("OTHER");
    expect(m.get("other")).toEqual([]);
    expect(grpc.status.UNAVAILABLE).toBe(14);
    expect(grpc.status[14]).toBe("UNAVAILABLE");
  });
});
