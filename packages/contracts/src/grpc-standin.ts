/**
 * A grpc-js for code that calls its provider in-process. The AWS bundler resolves `@grpc/grpc-js`
 * to this module for @nitric/sdk and for our own packages, so that inside a function every call to
 * the runtime stays in the function's thread (over the in-process port the runtime leaves at
 * STAND_IN_CLIENT) and no grpc-js is loaded at a cold start: no server to bind, no channel to
 * connect, ~270 KB less to compile. `nitric-like run` does the same for a @nitric/sdk service it
 * starts as a worker thread, whose port is in its workerData (WORKER_GRPC_PORT_KEY).
 * It has the client side of grpc-js's API that those packages use (Client and its make*Request
 * methods, makeGenericClientConstructor for @nitric/sdk's generated clients, credentials,
 * Metadata, status). Messages are serialised and parsed by the callers' own functions, as they
 * are for gRPC: the method paths, the bytes and the status codes are the same. The service's own
 * code, and any other package, still gets the real grpc-js.
 *
 * Not carried: call metadata (the runtime's services read none and send none), client-streaming
 * calls (no contract has one; such a call ends with UNIMPLEMENTED) and servers (a function serves
 * in-process only; constructing one throws).
 */
import { EventEmitter } from "node:events";
import { Duplex } from "node:stream";
import { workerData } from "node:worker_threads";
import { PortClient, type PortLike, type RawCall, WORKER_GRPC_PORT_KEY } from "./port.js";

/**
 * Where a provider that runs the service's code in its own thread (the AWS runtime) leaves the
 * function that gives the stand-in its client, before it loads that code.
 */
export const STAND_IN_CLIENT = Symbol.for("nitric-like.grpc-stand-in-client");

let threadClient: PortClient | undefined;

/** The client every call goes to: the in-process runtime's, or a service thread's own port. */
function standInClient(): PortClient {
  const hook = (globalThis as Record<symbol, unknown>)[STAND_IN_CLIENT];
  if (typeof hook === "function") return (hook as () => PortClient)();
  const data = workerData as Record<string, unknown> | null | undefined;
  const port = typeof data === "object" && data !== null ? data[WORKER_GRPC_PORT_KEY] : undefined;
  if (port && typeof (port as PortLike).postMessage === "function") {
    threadClient ??= new PortClient(port as PortLike);
    return threadClient;
  }
  throw new Error(
    "nitric-like: this bundle's grpc-js calls its provider in-process, and no provider set that up; " +
      "start the service with nitric-like run, or deploy the function nitric-like build made",
  );
}

/** gRPC status codes, both ways, as grpc-js's `status` enum. */
const STATUS_NAMES = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
] as const;
export const status: Record<string, number> & Record<number, string> = {};
STATUS_NAMES.forEach((name, code) => {
  status[name] = code;
  status[code] = name;
});
const OK = 0;
const CANCELLED = 1;
const DEADLINE_EXCEEDED = 4;
const UNIMPLEMENTED = 12;
const INTERNAL = 13;

type MetadataValue = string | Buffer;

/** Call metadata, as grpc-js's Metadata (keys are case-insensitive; one key, many values). */
export class Metadata {
  private readonly map = new Map<string, MetadataValue[]>();

  set(key: string, value: MetadataValue): void {
    this.map.set(key.toLowerCase(), [value]);
  }

  add(key: string, value: MetadataValue): void {
    const k = key.toLowerCase();
    this.map.set(k, [...(this.map.get(k) ?? []), value]);
  }

  remove(key: string): void {
    this.map.delete(key.toLowerCase());
  }

  get(key: string): MetadataValue[] {
    return this.map.get(key.toLowerCase()) ?? [];
  }

  /** Each key's first value. */
  getMap(): Record<string, MetadataValue> {
    const out: Record<string, MetadataValue> = {};
    for (const [k, values] of this.map) if (values.length > 0) out[k] = values[0] as MetadataValue;
    return out;
  }

  clone(): Metadata {
    const copy = new Metadata();
    for (const [k, values] of this.map) for (const v of values) copy.add(k, v);
    return copy;
  }

  toJSON(): Record<string, MetadataValue[]> {
    return Object.fromEntries(this.map);
  }
}

/** Credentials are accepted and ignored: the call never leaves the thread. */
const insecure = Object.freeze({ _isSecure: () => false });
export const ChannelCredentials = { createInsecure: () => insecure };
export const credentials = { createInsecure: () => insecure };

/** A failed call, as grpc-js reports it: `<code> <NAME>: <details>` with code, details and metadata. */
export interface ServiceError extends Error {
  code: number;
  details: string;
  metadata: Metadata;
}

function callError(code: number, details: string): ServiceError {
  const error = new Error(`${code} ${status[code] ?? "UNKNOWN"}: ${details}`) as ServiceError;
  error.code = code;
  error.details = details;
  error.metadata = new Metadata();
  return error;
}

/** One method: its path and the caller's serializers (as in grpc-tools' generated `*_grpc_pb.js`). */
interface MethodDefinition {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize: (value: unknown) => Buffer;
  responseDeserialize: (bytes: Buffer) => unknown;
  originalName?: string;
}

interface CallOptions {
  /** A Date or milliseconds since the epoch; Infinity for none. */
  deadline?: Date | number;
}

type Callback = (error: ServiceError | null, value?: unknown) => void;

interface CallEvents {
  message(value: unknown): void;
  status(code: number, details: string, response?: unknown): void;
}

/**
 * Starts a call on the in-process port: the deadline, and the parsing of what comes back with the
 * method's own deserializer (a message that does not parse ends the call with INTERNAL, as in grpc-js).
 */
function startCall(
  def: MethodDefinition,
  request: Buffer | undefined,
  options: CallOptions,
  events: CallEvents,
): RawCall {
  let expired = false;
  let ended = false;
  let timer: NodeJS.Timeout | undefined;
  const end = (code: number, details: string, response?: unknown) => {
    if (ended) return;
    ended = true;
    clearTimeout(timer);
    events.status(code, details, response);
  };
  const raw = standInClient().open(def.path, request, {
    message: (bytes) => {
      let value: unknown;
      try {
        value = def.responseDeserialize(bytes);
      } catch (error) {
        // The status first: cancelling reports CANCELLED, which the ended call then ignores.
        end(INTERNAL, `Response message parsing error: ${(error as Error).message}`);
        raw.cancel();
        return;
      }
      events.message(value);
    },
    status: (code, details, response) => {
      if (expired) {
        end(DEADLINE_EXCEEDED, "Deadline exceeded");
        return;
      }
      if (code !== OK || def.responseStream) {
        end(code, details);
        return;
      }
      if (response === undefined) {
        end(UNIMPLEMENTED, "No message received");
        return;
      }
      try {
        end(OK, "", def.responseDeserialize(response));
      } catch (error) {
        end(INTERNAL, `Response message parsing error: ${(error as Error).message}`);
      }
    },
  });
  const deadline = options.deadline instanceof Date ? options.deadline.getTime() : options.deadline;
  if (deadline !== undefined && Number.isFinite(deadline)) {
    timer = setTimeout(
      () => {
        expired = true;
        raw.cancel();
      },
      Math.max(0, deadline - Date.now()),
    );
  }
  return raw;
}

function serialize(def: MethodDefinition, value: unknown): Buffer | ServiceError {
  try {
    return def.requestSerialize(value);
  } catch (error) {
    return callError(INTERNAL, `Request message serialization failure: ${(error as Error).message}`);
  }
}

/** grpc-js's optional (metadata, options, callback) arguments of a call. */
function callArguments(args: unknown[]): { options: CallOptions; callback?: Callback } {
  const callback = typeof args.at(-1) === "function" ? (args.pop() as Callback) : undefined;
  const options = args.find((a) => a !== null && typeof a === "object" && !(a instanceof Metadata)) as
    | CallOptions
    | undefined;
  return { options: options ?? {}, ...(callback ? { callback } : {}) };
}

/** A unary call in flight: what grpc-js returns (the answer goes to the callback). */
class UnaryCall extends EventEmitter {
  raw: RawCall | undefined;

  cancel(): void {
    this.raw?.cancel();
  }

  getPeer(): string {
    return "in-process";
  }
}

type Serialize = (value: unknown) => Buffer;
type Deserialize = (bytes: Buffer) => unknown;

function unary(def: MethodDefinition, request: unknown, args: unknown[]): UnaryCall {
  const { options, callback } = callArguments(args);
  const call = new UnaryCall();
  const finish = (code: number, details: string, response?: unknown) => {
    if (code === OK) callback?.(null, response);
    else callback?.(callError(code, details));
    call.emit("status", { code, details, metadata: new Metadata() });
  };
  const bytes = serialize(def, request);
  if (bytes instanceof Error) {
    queueMicrotask(() => finish(bytes.code, bytes.details));
    return call;
  }
  call.raw = startCall(def, bytes, options, { message: () => {}, status: finish });
  return call;
}

/**
 * A streaming call, as grpc-js's ClientDuplexStream (a server-streaming call is one that is never
 * written to): messages are read in object mode; `end()` half-closes; the status ends the readable
 * side, after an "error" when it is not OK, then "status".
 */
class StreamCall extends Duplex {
  private raw: RawCall | undefined;
  private done = false;

  constructor(private readonly def: MethodDefinition) {
    super({ objectMode: true });
  }

  start(request: Buffer | undefined, options: CallOptions): void {
    this.raw = startCall(this.def, request, options, {
      message: (value) => {
        if (!this.done) this.push(value);
      },
      status: (code, details) => this.finish(code, details),
    });
  }

  finish(code: number, details: string): void {
    if (this.done) return;
    this.done = true;
    this.push(null);
    if (code !== OK) this.emit("error", callError(code, details));
    this.emit("status", { code, details, metadata: new Metadata() });
  }

  override _read(): void {}

  override _write(chunk: unknown, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const bytes = serialize(this.def, chunk);
    if (bytes instanceof Error) {
      // The status first: cancelling reports CANCELLED, which the finished call then ignores.
      this.finish(bytes.code, bytes.details);
      this.raw?.cancel();
    } else this.raw?.write(bytes);
    callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.raw?.halfClose();
    callback();
  }

  cancel(): void {
    if (this.raw) this.raw.cancel();
    else this.finish(CANCELLED, "Cancelled on client");
  }

  getPeer(): string {
    return "in-process";
  }
}

function serverStream(def: MethodDefinition, request: unknown, args: unknown[]): StreamCall {
  const call = new StreamCall(def);
  const bytes = serialize(def, request);
  if (bytes instanceof Error) queueMicrotask(() => call.finish(bytes.code, bytes.details));
  else call.start(bytes, callArguments(args).options);
  return call;
}

function bidi(def: MethodDefinition, args: unknown[]): StreamCall {
  const call = new StreamCall(def);
  call.start(undefined, callArguments(args).options);
  return call;
}

function clientStream(def: MethodDefinition, args: unknown[]): UnaryCall {
  const { callback } = callArguments(args);
  const call = new UnaryCall();
  queueMicrotask(() => {
    const details = `${def.path}: client-streaming calls are not served inside a nitric-like function`;
    callback?.(callError(UNIMPLEMENTED, details));
    call.emit("status", { code: UNIMPLEMENTED, details, metadata: new Metadata() });
  });
  return call;
}

function definition(
  path: string,
  requestStream: boolean,
  responseStream: boolean,
  requestSerialize: Serialize,
  responseDeserialize: Deserialize,
): MethodDefinition {
  return { path, requestStream, responseStream, requestSerialize, responseDeserialize };
}

/** A client of the provider's endpoint, in-process; the address, credentials and channel options are ignored. */
export class Client {
  constructor(_address?: string, _credentials?: unknown, _options?: object) {}

  makeUnaryRequest(
    path: string,
    serialize: Serialize,
    deserialize: Deserialize,
    request: unknown,
    ...args: unknown[]
  ): UnaryCall {
    return unary(definition(path, false, false, serialize, deserialize), request, args);
  }

  makeServerStreamRequest(
    path: string,
    serialize: Serialize,
    deserialize: Deserialize,
    request: unknown,
    ...args: unknown[]
  ): StreamCall {
    return serverStream(definition(path, false, true, serialize, deserialize), request, args);
  }

  makeBidiStreamRequest(path: string, serialize: Serialize, deserialize: Deserialize, ...args: unknown[]): StreamCall {
    return bidi(definition(path, true, true, serialize, deserialize), args);
  }

  makeClientStreamRequest(path: string, serialize: Serialize, deserialize: Deserialize, ...args: unknown[]): UnaryCall {
    return clientStream(definition(path, true, false, serialize, deserialize), args);
  }

  /** Calls in flight go on; the port is shared by every client in the thread. */
  close(): void {}

  waitForReady(_deadline: Date | number, callback: (error?: Error) => void): void {
    queueMicrotask(() => callback());
  }
}

type ClientConstructor = (new (
  address?: string,
  credentials?: unknown,
  options?: object,
) => Client) & {
  service: Record<string, MethodDefinition>;
  serviceName: string;
};

/** A client class with one method per entry of `methods` (grpc-tools' generated clients use it). */
export function makeGenericClientConstructor(
  methods: Record<string, MethodDefinition>,
  serviceName = "",
): ClientConstructor {
  class ServiceClient extends Client {
    static service = methods;
    static serviceName = serviceName;
  }
  const prototype = ServiceClient.prototype as unknown as Record<string, unknown>;
  for (const [name, def] of Object.entries(methods)) {
    const method = def.requestStream
      ? def.responseStream
        ? (...args: unknown[]) => bidi(def, args)
        : (...args: unknown[]) => clientStream(def, args)
      : def.responseStream
        ? (request: unknown, ...args: unknown[]) => serverStream(def, request, args)
        : (request: unknown, ...args: unknown[]) => unary(def, request, args);
    prototype[name] = method;
    if (def.originalName && !(def.originalName in prototype)) prototype[def.originalName] = method;
  }
  return ServiceClient as ClientConstructor;
}

export const makeClientConstructor = makeGenericClientConstructor;

const NO_SERVER =
  "nitric-like runtime: a function serves its endpoint in-process and has no gRPC server; " +
  "start it with startEndpoint(..., { grpc: false })";

/** There is no gRPC server inside a function: constructing one says so. */
export class Server {
  constructor() {
    throw new Error(NO_SERVER);
  }
}

export const ServerCredentials = {
  createInsecure(): never {
    throw new Error(NO_SERVER);
  },
};
