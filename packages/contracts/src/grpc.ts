/**
 * The bridge between protobuf-es descriptors and grpc-js: one generic function turns any generated
 * service into a grpc-js service definition, and a small typed client calls it. Everything that
 * speaks our contracts (SDK, providers, CLI, tests) goes through these, so serialisation lives in
 * exactly one place.
 */
import {
  create,
  type DescMessage,
  type DescMethod,
  type DescService,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import type { GenService } from "@bufbuild/protobuf/codegenv2";
import * as grpc from "@grpc/grpc-js";
import { fastCodecs as kvCodecs } from "./gen/nitric/proto/kvstore/v1/kvstore_fast.js";
import { fastCodecs as websocketCodecs } from "./gen/nitric/proto/websockets/v1/websockets_fast.js";

// biome-ignore lint/suspicious/noExplicitAny: generic over every generated service shape
type AnyGenService = GenService<any>;
type MethodsOf<S extends AnyGenService> = S["method"];

/** The gRPC path of a method: `/<package>.<Service>/<Method>`. */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

// The hot messages (the handler stream's events and answers, the kv calls that carry values) have
// direct codecs generated from proto/ by scripts/protoc-gen-fastcodec.mjs (the root= options of
// proto/buf.gen.yaml choose them); every other message goes through protobuf-es.
const FAST_ENCODE = new Map<string, (value: never) => Buffer>();
const FAST_DECODE = new Map<string, (bytes: Buffer) => unknown>();
for (const codec of [...websocketCodecs, ...kvCodecs]) {
  FAST_ENCODE.set(codec.typeName, codec.encode);
  FAST_DECODE.set(codec.typeName, codec.decode);
}

function serializer<D extends DescMessage>(schema: D) {
  const fast = FAST_ENCODE.get(schema.typeName);
  if (fast) return fast as unknown as (value: MessageInitShape<D>) => Buffer;
  // create() returns its argument unchanged when it already is a message of this type, so callers
  // may pass plain init objects. Buffer.from(ArrayBuffer, ...) wraps the bytes without copying.
  return (value: MessageInitShape<D>): Buffer => {
    const bytes = toBinary(schema, create(schema, value));
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer<D extends DescMessage>(schema: D) {
  const fast = FAST_DECODE.get(schema.typeName);
  if (fast) return fast as (bytes: Buffer) => MessageShape<D>;
  return (bytes: Buffer): MessageShape<D> => fromBinary(schema, bytes);
}

function isClientStreaming(method: DescMethod): boolean {
  return method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming";
}

function isServerStreaming(method: DescMethod): boolean {
  return method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming";
}

/** Builds the grpc-js service definition of a generated service, keyed by each method's local name. */
export function serviceDefinition(service: DescService): grpc.ServiceDefinition {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    definition[method.localName] = {
      path: methodPath(method),
      requestStream: isClientStreaming(method),
      responseStream: isServerStreaming(method),
      requestSerialize: serializer(method.input),
      requestDeserialize: deserializer(method.input),
      responseSerialize: serializer(method.output),
      responseDeserialize: deserializer(method.output),
      originalName: method.name,
    } as grpc.MethodDefinition<unknown, unknown>;
  }
  return definition;
}

type In<M> = M extends { input: infer I extends DescMessage } ? MessageShape<I> : never;
type OutInit<M> = M extends { output: infer O extends DescMessage } ? MessageInitShape<O> : never;
type Out<M> = M extends { output: infer O extends DescMessage } ? MessageShape<O> : never;
type InInit<M> = M extends { input: infer I extends DescMessage } ? MessageInitShape<I> : never;

/** The grpc-js handler type for one generated method. */
export type MethodHandler<M> = M extends { methodKind: "unary" }
  ? grpc.handleUnaryCall<In<M>, OutInit<M>>
  : M extends { methodKind: "server_streaming" }
    ? grpc.handleServerStreamingCall<In<M>, OutInit<M>>
    : M extends { methodKind: "client_streaming" }
      ? grpc.handleClientStreamingCall<In<M>, OutInit<M>>
      : grpc.handleBidiStreamingCall<In<M>, OutInit<M>>;

/** A full implementation of a generated service for grpc-js, one handler per method. */
export type ServiceImpl<S extends AnyGenService> = {
  [K in keyof MethodsOf<S>]: MethodHandler<MethodsOf<S>[K]>;
};

/** A request that did not decode: what the server's handler gets instead, to answer with a clear status. */
class Undecodable {
  constructor(readonly details: string) {}
}

/** One method of a service implementation, ready to serve: its definition and its guarded handler. */
export interface Route {
  method: DescMethod;
  definition: grpc.MethodDefinition<unknown, unknown>;
  /** The implementation's handler, behind the guard that refuses undecodable requests. */
  handler: (call: never, callback?: never) => void;
}

/**
 * The routes of a typed implementation of a generated service. A request whose bytes are not a
 * valid message of the method's input type never reaches `impl`: the call ends with
 * INVALID_ARGUMENT naming the method, the type and the decode error (grpc-js alone would answer
 * INTERNAL "Error deserializing request", which says neither what nor where). grpc-js servers and
 * port servers (port.ts) serve the same routes.
 */
export function routes<S extends AnyGenService>(service: S, impl: ServiceImpl<S>): Route[] {
  const definition = serviceDefinition(service);
  const handlers = impl as unknown as Record<string, (call: never, callback?: never) => void>;
  const list: Route[] = [];
  for (const method of service.methods) {
    const def = definition[method.localName] as grpc.MethodDefinition<unknown, unknown>;
    const decode = def.requestDeserialize;
    const path = methodPath(method);
    def.requestDeserialize = (bytes: Buffer) => {
      try {
        return decode(bytes);
      } catch (error) {
        return new Undecodable(
          `${path}: the request is not a valid ${method.input.typeName} message (${(error as Error).message}); encode it with the contract in proto/`,
        );
      }
    };
    const handler = handlers[method.localName] as (call: grpc.ServerUnaryCall<unknown, unknown>, cb?: unknown) => void;
    const refuse = (details: string) => grpcError(grpc.status.INVALID_ARGUMENT, details);
    let guarded: (call: never, callback?: never) => void;
    if (isClientStreaming(method)) {
      guarded = ((call: grpc.ServerDuplexStream<unknown, unknown>, callback?: unknown) => {
        // The handler's own "data" listeners see only decoded messages: an undecodable one ends the call.
        const emit = call.emit.bind(call);
        call.emit = ((event: string, ...args: unknown[]) => {
          const first = args[0];
          if (event === "data" && first instanceof Undecodable) return emit("error", refuse(first.details));
          return emit(event, ...args);
        }) as typeof call.emit;
        handler(call as never, callback as never);
      }) as never;
    } else {
      guarded = ((call: grpc.ServerUnaryCall<unknown, unknown>, callback?: unknown) => {
        if (call.request instanceof Undecodable) {
          const error = refuse(call.request.details);
          if (typeof callback === "function") (callback as (e: Error) => void)(error);
          else (call as unknown as grpc.ServerWritableStream<unknown, unknown>).emit("error", error);
          return;
        }
        handler(call, callback);
      }) as never;
    }
    list.push({ method, definition: def, handler: guarded });
  }
  return list;
}

/** Adds a typed implementation of a generated service to a grpc-js server (see routes()). */
export function addService<S extends AnyGenService>(server: grpc.Server, service: S, impl: ServiceImpl<S>): void {
  addRoutes(server, routes(service, impl));
}

/** Adds the routes of one service to a grpc-js server. */
export function addRoutes(server: grpc.Server, list: Route[]): void {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const wrapped: grpc.UntypedServiceImplementation = {};
  for (const route of list) {
    definition[route.method.localName] = route.definition;
    wrapped[route.method.localName] = route.handler as grpc.UntypedHandleCall;
  }
  server.addService(definition as grpc.ServiceDefinition, wrapped);
}

/** A grpc error with a status code, as the server side should raise it. */
export function grpcError(code: grpc.status, details: string): grpc.ServiceError {
  const error = new Error(details) as grpc.ServiceError;
  error.code = code;
  error.details = details;
  error.metadata = new grpc.Metadata();
  return error;
}

/** Options for one client call. */
export interface CallOptions {
  /** Milliseconds until the call fails with DEADLINE_EXCEEDED. @default none */
  timeoutMs?: number;
}

function callOptions(options: CallOptions | undefined): grpc.CallOptions {
  return options?.timeoutMs === undefined ? {} : { deadline: Date.now() + options.timeoutMs };
}

type Unary = DescMethod & { methodKind: "unary" };
type ServerStreaming = DescMethod & { methodKind: "server_streaming" };
type Bidi = DescMethod & { methodKind: "bidi_streaming" };

/** A bidirectional call as the SDK uses it, over gRPC or over a port. */
export interface DuplexCall<I, O> {
  write(message: I): boolean;
  /** Half-closes: no more messages from this side. */
  end(): void;
  cancel(): void;
  on(event: "data", listener: (message: O) => void): this;
  on(event: "status", listener: (status: { code: number; details: string }) => void): this;
  on(event: "error", listener: (error: Error) => void): this;
  on(event: "end", listener: () => void): this;
}

/** A client of our contracts: GrpcClient over HTTP/2, PortClient (port.ts) over a MessagePort. */
export interface ContractClient {
  unary<M extends Unary>(method: M, request: InInit<M>, options?: CallOptions): Promise<Out<M>>;
  serverStream<M extends ServerStreaming>(method: M, request: InInit<M>, options?: CallOptions): AsyncGenerator<Out<M>>;
  bidi<M extends Bidi>(method: M, options?: CallOptions): DuplexCall<InInit<M>, Out<M>>;
  /** Ends the calls in flight with CANCELLED and lets the process exit when nothing else keeps it. */
  close(): void;
}

/** The serializer and deserializer of a message type, as both transports use them. */
export function codecOf<D extends DescMessage>(
  schema: D,
): { encode: (value: MessageInitShape<D>) => Buffer; decode: (bytes: Buffer) => MessageShape<D> } {
  return { encode: serializer(schema), decode: deserializer(schema) };
}

export type { In, InInit, Out, OutInit };

/**
 * A typed gRPC client over one channel. Every service of ours is served on the same endpoint, so
 * one client (one HTTP/2 connection) serves every call a process makes.
 */
export class GrpcClient implements ContractClient {
  readonly raw: grpc.Client;

  constructor(address: string) {
    this.raw = new grpc.Client(address, grpc.credentials.createInsecure(), {
      // Large kv values and messages: allow what the provider allows.
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
      "grpc.max_send_message_length": 64 * 1024 * 1024,
    });
  }

  /** Calls a unary method. */
  unary<M extends DescMethod & { methodKind: "unary" }>(
    method: M,
    request: InInit<M>,
    options?: CallOptions,
  ): Promise<Out<M>> {
    return new Promise((resolve, reject) => {
      this.raw.makeUnaryRequest(
        methodPath(method),
        serializer(method.input) as (v: InInit<M>) => Buffer,
        deserializer(method.output) as (b: Buffer) => Out<M>,
        request,
        new grpc.Metadata(),
        callOptions(options),
        (error, response) => {
          if (error) reject(error);
          else resolve(response as Out<M>);
        },
      );
    });
  }

  /** Calls a server-streaming method and yields each response. */
  async *serverStream<M extends DescMethod & { methodKind: "server_streaming" }>(
    method: M,
    request: InInit<M>,
    options?: CallOptions,
  ): AsyncGenerator<Out<M>> {
    const call = this.raw.makeServerStreamRequest(
      methodPath(method),
      serializer(method.input) as (v: InInit<M>) => Buffer,
      deserializer(method.output) as (b: Buffer) => Out<M>,
      request,
      new grpc.Metadata(),
      callOptions(options),
    );
    try {
      for await (const item of call) yield item as Out<M>;
    } finally {
      call.cancel();
    }
  }

  /** Opens a bidirectional stream. */
  bidi<M extends DescMethod & { methodKind: "bidi_streaming" }>(
    method: M,
    options?: CallOptions,
  ): grpc.ClientDuplexStream<InInit<M>, Out<M>> {
    return this.raw.makeBidiStreamRequest(
      methodPath(method),
      serializer(method.input) as (v: InInit<M>) => Buffer,
      deserializer(method.output) as (b: Buffer) => Out<M>,
      new grpc.Metadata(),
      callOptions(options),
    );
  }

  /** Closes the channel; calls in flight fail with CANCELLED. */
  close(): void {
    this.raw.close();
  }
}

export { status as GrpcStatus } from "@grpc/grpc-js";
