/**
 * The compatibility adapter that lets the published @nitric/sdk run in a worker thread of `run`
 * or inside a Lambda function without a gRPC connection: a module with the client side of
 * grpc-js's API that @nitric/sdk uses (Client and its make*Request methods,
 * makeGenericClientConstructor for its generated clients, credentials, Metadata, status), whose
 * calls go over one of our transports instead. The bundlers resolve `@grpc/grpc-js` to this
 * module for @nitric/* packages only (never for ours, which take a transport explicitly), and the
 * bundle's generated entry gives it its transport with useTransport() before the service's code
 * loads. Messages are serialised and parsed by the callers' own functions, as over gRPC: the
 * paths, bytes and status codes are the same, and compat.test.ts runs the same calls through real
 * grpc-js and through this module and compares what each caller sees.
 *
 * Not carried: call metadata (the providers' services read none and send none), client-streaming
 * calls (no contract has one; such a call ends with UNIMPLEMENTED) and servers (constructing one
 * throws).
 */
import { EventEmitter } from "node:events";
import { Duplex } from "node:stream";
import { Code } from "../status.js";
import type { MethodKind, Transport, WireCall, WireEvents } from "../wire.js";

let transport: Transport | undefined;

/** grpc-js's deserializers read Buffers: a view on the same bytes. */
const asBuffer = (bytes: Uint8Array): Buffer =>
  Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/** Gives every client of this module the transport its calls take (the bundle's entry calls this). */
export function useTransport(chosen: Transport): void {
  transport = chosen;
}

function current(): Transport {
  if (transport) return transport;
  throw new Error(
    "nitric-like: this bundle's grpc-js calls its provider through nitric-like's runtime, and none gave it a transport; " +
      "start the service with nitric-like run, or deploy the function nitric-like build made",
  );
}

/** gRPC status codes, both ways, as grpc-js's `status` enum. */
export const status = Code;
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

/** The status a caller reads: grpc-js's server sends "OK" as the details of an OK status, and so does ours over gRPC. */
const detailsOf = (code: number, details: string) => (code === OK && details === "" ? "OK" : details);

/** What a call's owner hears of it: the server's messages and status, or its own side's ending. */
interface CallEvents {
  message(bytes: Uint8Array): void;
  /** The server's status (a unary call's response still encoded). */
  status(code: number, details: string, response?: Uint8Array): void;
  /** The caller's side ended the call (a deadline, a cancel, a message that does not parse). */
  ended(code: number, details: string): void;
}

/**
 * A call started on the transport, with its deadline: it passes the server's messages and status
 * on to its owner until the call is over, and end() is how the caller's side ends it, as grpc-js
 * does with cancelWithStatus. A class, not closures: a service thread's bundle keeps function names
 * (keepNames), which costs a call of esbuild's __name helper for every named closure made per call.
 */
class CompatWire implements WireEvents {
  private over = false;
  private timer: NodeJS.Timeout | undefined;
  readonly raw: WireCall;

  constructor(
    def: MethodDefinition,
    request: Buffer | undefined,
    options: CallOptions,
    private readonly events: CallEvents,
  ) {
    const kind: MethodKind = def.requestStream
      ? def.responseStream
        ? "bidi_streaming"
        : "client_streaming"
      : def.responseStream
        ? "server_streaming"
        : "unary";
    this.raw = current().open(def.path, kind, request, this);
    const deadline = options.deadline instanceof Date ? options.deadline.getTime() : options.deadline;
    if (deadline !== undefined && Number.isFinite(deadline)) {
      this.timer = setTimeout(
        () => this.end(DEADLINE_EXCEEDED, "Deadline exceeded"),
        Math.max(0, deadline - Date.now()),
      );
    }
  }

  message(bytes: Uint8Array): void {
    if (!this.over) this.events.message(bytes);
  }

  status(code: number, details: string, response?: Uint8Array): void {
    if (this.over) return;
    this.over = true;
    clearTimeout(this.timer);
    this.events.status(code, details, response);
  }

  /** Cancels the call on the transport and ends it for the caller with this status. */
  end(code: number, details: string): void {
    if (this.over) return;
    this.over = true;
    clearTimeout(this.timer);
    this.raw.cancel();
    this.events.ended(code, details);
  }
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
  /** The call on the transport (set when it starts). */
  wire: CompatWire | undefined;

  cancel(): void {
    this.wire?.end(CANCELLED, "Cancelled on client");
  }

  getPeer(): string {
    return "in-process";
  }
}

type Serialize = (value: unknown) => Buffer;
type Deserialize = (bytes: Buffer) => unknown;

/** What a unary call hears (CallEvents): the response, parsed for the callback, or how it ended. */
class UnaryAnswer implements CallEvents {
  private finished = false;

  constructor(
    private readonly def: MethodDefinition,
    private readonly call: UnaryCall,
    private readonly callback: Callback | undefined,
  ) {}

  finish(code: number, details: string, response?: unknown): void {
    if (this.finished) return;
    this.finished = true;
    if (code === OK) this.callback?.(null, response);
    else this.callback?.(callError(code, details));
    this.call.emit("status", { code, details: detailsOf(code, details), metadata: new Metadata() });
  }

  message(): void {}

  status(code: number, details: string, response?: Uint8Array): void {
    if (code !== OK) this.finish(code, details);
    else if (response === undefined) this.finish(UNIMPLEMENTED, "No message received");
    else {
      let value: unknown;
      try {
        value = this.def.responseDeserialize(asBuffer(response));
      } catch (error) {
        this.finish(INTERNAL, `Response message parsing error: ${(error as Error).message}`);
        return;
      }
      this.finish(OK, details, value);
    }
  }

  ended(code: number, details: string): void {
    this.finish(code, details);
  }
}

function unary(def: MethodDefinition, request: unknown, args: unknown[]): UnaryCall {
  const { options, callback } = callArguments(args);
  const call = new UnaryCall();
  const answer = new UnaryAnswer(def, call, callback);
  const bytes = serialize(def, request);
  if (bytes instanceof Error) {
    queueMicrotask(() => answer.finish(bytes.code, bytes.details));
    return call;
  }
  call.wire = new CompatWire(def, bytes, options, answer);
  return call;
}

/**
 * A streaming call, as grpc-js's ClientDuplexStream (a server-streaming call is one that is never
 * written to): messages are read in object mode; `end()` half-closes; the status ends the readable
 * side, after an "error" when it is not OK, then "status".
 *
 * As in grpc-js, messages are parsed and pushed one at a time as the reader asks for them, and the
 * server's status waits until every message before it has been pushed: over a socket the caller
 * reads each message before the status arrives; in memory they all come at once, before the reader
 * has started, and would otherwise overtake its first read. The caller's own endings (cancel, a
 * deadline, a message that does not parse or serialize) end the call at once, dropping unread messages.
 */
class StreamCall extends Duplex implements CallEvents {
  private raw: WireCall | undefined;
  private wire: CompatWire | undefined;
  private done = false;
  /** Messages the reader has not asked for yet, still encoded. */
  private readonly inbox: Uint8Array[] = [];
  /** The server's status, waiting for the messages before it. */
  private held: { code: number; details: string } | undefined;
  /** The reader asked for a message (grpc-js's startRead). */
  private wanted = false;

  constructor(private readonly def: MethodDefinition) {
    super({ objectMode: true });
  }

  start(request: Buffer | undefined, options: CallOptions): void {
    this.wire = new CompatWire(this.def, request, options, this);
    this.raw = this.wire.raw;
  }

  /** CallEvents: a message from the server, parsed when the reader asks for it. */
  message(bytes: Uint8Array): void {
    this.inbox.push(bytes);
    this.deliver();
  }

  /** CallEvents: the server's status, held until the messages before it are read. */
  status(code: number, details: string): void {
    this.held = { code, details };
    this.deliver();
  }

  /** CallEvents: the caller's side ended the call; unread messages are dropped. */
  ended(code: number, details: string): void {
    this.inbox.length = 0;
    this.finish(code, details);
  }

  private deliver(): void {
    while (this.wanted && !this.done) {
      const bytes = this.inbox.shift();
      if (bytes === undefined) break;
      let value: unknown;
      try {
        value = this.def.responseDeserialize(asBuffer(bytes));
      } catch (error) {
        this.wire?.end(INTERNAL, `Response message parsing error: ${(error as Error).message}`);
        return;
      }
      // The readable side calls _read again when it wants the next one.
      this.wanted = false;
      this.push(value);
    }
    const held = this.held;
    if (held && this.inbox.length === 0) {
      this.held = undefined;
      this.finish(held.code, held.details);
    }
  }

  /** Ends the call for the caller: the readable side, an "error" unless OK, then "status". */
  finish(code: number, details: string): void {
    if (this.done) return;
    this.done = true;
    this.push(null);
    if (code !== OK) this.emit("error", callError(code, details));
    this.emit("status", { code, details: detailsOf(code, details), metadata: new Metadata() });
  }

  override _read(): void {
    this.wanted = true;
    // Pushed after _read returns, as grpc-js pushes what its startRead() asked for: a message pushed
    // inside _read waits in the readable's buffer, where the status would overtake it.
    queueMicrotask(() => this.deliver());
  }

  override _write(chunk: unknown, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const bytes = serialize(this.def, chunk);
    if (bytes instanceof Error) this.wire?.end(bytes.code, bytes.details);
    else this.raw?.write(bytes);
    callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.raw?.halfClose();
    callback();
  }

  cancel(): void {
    this.wire?.end(CANCELLED, "Cancelled on client");
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

  /** Calls in flight go on; the transport is shared by every client in the thread. */
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
  "nitric-like: this grpc-js is nitric-like's adapter for @nitric/sdk, which has no gRPC server; " +
  "serve a Router with @nitric-like/rpc/grpc instead";

/** The adapter has no gRPC server: constructing one says so. */
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
