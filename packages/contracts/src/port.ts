/**
 * Our contracts over a MessagePort, for a service that runs as a worker thread of its provider's
 * process: the same methods, the same message bytes (each message is encoded and decoded by the
 * codecs gRPC uses) and the same status codes as over gRPC, without HTTP/2 framing, a socket or a
 * process hop. A port is one service's endpoint, as a gRPC endpoint is.
 *
 * Frames are small arrays, one postMessage each:
 *   client → server  [OPEN, id, path, request?]  [MESSAGE, id, bytes]  [HALF_CLOSE, id]  [CANCEL, id]
 *   server → client  [MESSAGE, id, bytes]  [STATUS, id, code, details, response?]
 * A unary call is one OPEN and one STATUS carrying the response.
 */
import { EventEmitter } from "node:events";
import type { DescMethod } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  type CallOptions,
  type ContractClient,
  codecOf,
  type DuplexCall,
  type InInit,
  methodPath,
  type Out,
  type Route,
} from "./grpc.js";

/** The key of the port in a service worker's `workerData`. */
export const WORKER_PORT_KEY = "nitricLikeProviderPort";

/** The key of the port that a service worker's grpc-js stand-in (grpc-standin.ts) calls over. */
export const WORKER_GRPC_PORT_KEY = "nitricLikeGrpcPort";

/**
 * Where a provider that runs the service's code in its own thread (the AWS runtime, inside one
 * Lambda function) leaves the service's port on `globalThis` before loading that code.
 */
export const IN_PROCESS_PORT = Symbol.for("nitric-like.provider-port");

const OPEN = 0;
const MESSAGE = 1;
const HALF_CLOSE = 2;
const CANCEL = 3;
const STATUS = 4;

type Frame = [number, number, ...unknown[]];

/** The subset of MessagePort both ends use (a worker's MessagePort, or a test's). */
export interface PortLike {
  postMessage(value: unknown): void;
  on(event: "message", listener: (value: unknown) => void): unknown;
  on(event: "close", listener: () => void): unknown;
  ref?(): void;
  unref?(): void;
  close?(): void;
}

/**
 * A Buffer from the allocation pool is a view on a larger ArrayBuffer, which structured cloning
 * would copy whole: send exactly the message's bytes.
 */
function portable(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : new Uint8Array(bytes);
}

function asBuffer(bytes: unknown): Buffer {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(0);
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}

/** The status a thrown or passed error ends a call with, as grpc-js derives it. */
function statusOf(error: unknown): [number, string] {
  const e = error as { code?: unknown; details?: unknown; message?: unknown } | null | undefined;
  const code = typeof e?.code === "number" ? e.code : grpc.status.UNKNOWN;
  const details =
    typeof e?.details === "string" ? e.details : typeof e?.message === "string" ? e.message : String(error);
  return [code, details];
}

/** The error a client sees for a status, shaped as grpc-js's ServiceError (code, details, metadata). */
function serviceError(code: number, details: string): grpc.ServiceError {
  const error = new Error(`${code} ${grpc.status[code] ?? "UNKNOWN"}: ${details}`) as grpc.ServiceError;
  error.code = code;
  error.details = details;
  error.metadata = new grpc.Metadata();
  return error;
}

/** The server side of one call: what a grpc-js handler gets as `call`, for the members ours use. */
class ServerCall extends EventEmitter {
  cancelled = false;
  request: unknown;
  readonly metadata = new grpc.Metadata();
  private done = false;

  constructor(
    private readonly session: PortSession,
    readonly id: number,
    readonly route: Route,
  ) {
    super();
    // A handler ends a streaming call with an error by emitting it (grpc-js's convention).
    this.on("error", (error: unknown) => this.finish(...statusOf(error)));
  }

  getPeer(): string {
    return "worker-thread";
  }

  getPath(): string {
    return methodPath(this.route.method);
  }

  getDeadline(): number {
    return Number.POSITIVE_INFINITY;
  }

  sendMetadata(): void {}

  write(value: unknown): boolean {
    if (this.done) return false;
    let bytes: Buffer;
    try {
      bytes = this.route.definition.responseSerialize(value);
    } catch (error) {
      this.finish(
        grpc.status.INTERNAL,
        `${this.getPath()}: the response could not be encoded (${(error as Error).message})`,
      );
      return false;
    }
    this.session.post([MESSAGE, this.id, portable(bytes)]);
    return true;
  }

  end(): void {
    this.finish(grpc.status.OK, "");
  }

  destroy(error?: unknown): void {
    if (error === undefined) this.finish(grpc.status.CANCELLED, "cancelled by the server");
    else this.finish(...statusOf(error));
  }

  /** Ends the call with a status (once). */
  finish(code: number, details: string, response?: Uint8Array): void {
    if (this.done) return;
    this.done = true;
    this.session.calls.delete(this.id);
    this.session.post(
      response === undefined ? [STATUS, this.id, code, details] : [STATUS, this.id, code, details, response],
    );
    this.emit("finish");
    this.emit("close");
  }

  /** The client cancelled, or its port closed. */
  cancel(): void {
    if (this.done) return;
    this.done = true;
    this.cancelled = true;
    this.session.calls.delete(this.id);
    this.emit("cancelled", "cancelled");
    this.emit("close");
  }

  /** The unary callback: the response or the error ends the call. */
  readonly callback = (error: unknown, value?: unknown): void => {
    if (error) {
      this.finish(...statusOf(error));
      return;
    }
    let bytes: Buffer;
    try {
      bytes = this.route.definition.responseSerialize(value ?? {});
    } catch (e) {
      this.finish(
        grpc.status.INTERNAL,
        `${this.getPath()}: the response could not be encoded (${(e as Error).message})`,
      );
      return;
    }
    this.finish(grpc.status.OK, "", portable(bytes));
  };
}

/** The calls of one served port. */
class PortSession {
  readonly calls = new Map<number, ServerCall>();
  private closed = false;

  constructor(
    private readonly port: PortLike,
    private readonly routes: Map<string, Route>,
  ) {
    port.on("message", (frame) => this.receive(frame as Frame));
    port.on("close", () => this.close());
  }

  post(frame: Frame): void {
    if (!this.closed) this.port.postMessage(frame);
  }

  private receive(frame: Frame): void {
    if (!Array.isArray(frame) || typeof frame[1] !== "number") return;
    const [kind, id] = frame;
    if (kind === OPEN) {
      this.open(id, frame[2] as string, frame[3]);
      return;
    }
    const call = this.calls.get(id);
    if (!call) return;
    if (kind === MESSAGE) {
      call.emit("data", call.route.definition.requestDeserialize(asBuffer(frame[2])));
    } else if (kind === HALF_CLOSE) call.emit("end");
    else if (kind === CANCEL) call.cancel();
  }

  private open(id: number, path: string, request: unknown): void {
    const route = this.routes.get(path);
    if (!route) {
      this.post([STATUS, id, grpc.status.UNIMPLEMENTED, `${path}: no such method on this endpoint`]);
      return;
    }
    const call = new ServerCall(this, id, route);
    this.calls.set(id, call);
    const { requestStream, responseStream } = route.definition;
    if (!requestStream) call.request = route.definition.requestDeserialize(asBuffer(request));
    try {
      if (!requestStream && !responseStream) route.handler(call as never, call.callback as never);
      else route.handler(call as never);
    } catch (error) {
      call.finish(...statusOf(error));
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const call of [...this.calls.values()]) call.cancel();
  }
}

/** Serves routes (the same ones a grpc-js endpoint serves) on any number of ports. */
export class PortServer {
  private readonly routes = new Map<string, Route>();
  private readonly sessions = new Set<PortSession>();

  /** Adds the routes of one service. */
  add(routes: Route[]): void {
    for (const r of routes) this.routes.set(methodPath(r.method), r);
  }

  /** Serves one port until it closes or the server stops. */
  serve(port: PortLike): void {
    const session = new PortSession(port, this.routes);
    this.sessions.add(session);
    port.on("close", () => this.sessions.delete(session));
  }

  /** Cancels every call on every port and closes the ports. */
  stop(): void {
    for (const s of this.sessions) s.close();
    this.sessions.clear();
  }
}

/** What a raw call (PortClient.open) reports. */
export interface RawCallEvents {
  /** A message from the server. */
  message(bytes: Buffer): void;
  /** The call's end, once; `response` is a unary call's answer with OK. */
  status(code: number, details: string, response?: Buffer): void;
}

/** A raw call in flight. */
export interface RawCall {
  write(bytes: Uint8Array): void;
  /** No more messages from this side. */
  halfClose(): void;
  /** Ends the call with CANCELLED on both sides. */
  cancel(): void;
}

interface ClientCall {
  /** A message for this call. */
  message(bytes: Buffer): void;
  /** The call's end; `response` with a unary OK. */
  status(code: number, details: string, response?: Buffer): void;
}

/** A bidirectional call over a port, shaped as the SDK uses grpc-js's duplex calls. */
class PortDuplex<I, O> extends EventEmitter implements ClientCall {
  private ended = false;

  constructor(
    private readonly client: PortClient,
    private readonly id: number,
    private readonly encode: (value: I) => Buffer,
    private readonly decode: (bytes: Buffer) => O,
  ) {
    super();
  }

  write(message: I): boolean {
    if (this.ended) return false;
    this.client.post([MESSAGE, this.id, portable(this.encode(message))]);
    return true;
  }

  end(): void {
    if (!this.ended) this.client.post([HALF_CLOSE, this.id]);
  }

  cancel(): void {
    if (this.ended) return;
    this.client.post([CANCEL, this.id]);
    this.status(grpc.status.CANCELLED, "Cancelled on client");
  }

  message(bytes: Buffer): void {
    if (!this.ended) this.emit("data", this.decode(bytes));
  }

  status(code: number, details: string): void {
    if (this.ended) return;
    this.ended = true;
    this.client.done(this.id);
    // As grpc-js: "end" after OK, "error" otherwise, then "status" either way.
    if (code === grpc.status.OK) this.emit("end");
    else this.emit("error", serviceError(code, details));
    this.emit("status", { code, details, metadata: new grpc.Metadata() });
  }
}

/**
 * A client of our contracts over a port. The port keeps the thread alive only while calls are in
 * flight, as an idle gRPC channel does not keep a process alive; close() cancels them, and the
 * client stays usable afterwards (a port cannot be reopened).
 */
export class PortClient implements ContractClient {
  private readonly calls = new Map<number, ClientCall>();
  private next = 0;
  private closed = false;

  constructor(private readonly port: PortLike) {
    port.on("message", (frame) => this.receive(frame as Frame));
    port.on("close", () => {
      this.closed = true;
      for (const [, call] of [...this.calls]) call.status(grpc.status.UNAVAILABLE, "the provider closed the port");
    });
    port.unref?.();
  }

  /** Sends a frame. */
  post(frame: Frame): void {
    if (!this.closed) this.port.postMessage(frame);
  }

  /** Registers a call under a new id, or under `id` when the call had to know it first. */
  private start(call: ClientCall, id = ++this.next): number {
    if (this.calls.size === 0) this.port.ref?.();
    this.calls.set(id, call);
    return id;
  }

  /** A call ended: an idle port no longer keeps the thread alive. */
  done(id: number): void {
    if (this.calls.delete(id) && this.calls.size === 0) this.port.unref?.();
  }

  private receive(frame: Frame): void {
    if (!Array.isArray(frame)) return;
    const call = this.calls.get(frame[1]);
    if (!call) return;
    if (frame[0] === MESSAGE) call.message(asBuffer(frame[2]));
    else if (frame[0] === STATUS)
      call.status(frame[2] as number, frame[3] as string, frame[4] === undefined ? undefined : asBuffer(frame[4]));
  }

  private refuseClosed(): grpc.ServiceError {
    return serviceError(grpc.status.UNAVAILABLE, "the provider closed the port");
  }

  private deadline(options: CallOptions | undefined, id: () => number, fail: (e: grpc.ServiceError) => void) {
    if (options?.timeoutMs === undefined) return undefined;
    return setTimeout(() => {
      this.post([CANCEL, id()]);
      fail(serviceError(grpc.status.DEADLINE_EXCEEDED, "Deadline exceeded"));
    }, options.timeoutMs);
  }

  unary<M extends DescMethod & { methodKind: "unary" }>(
    method: M,
    request: InInit<M>,
    options?: CallOptions,
  ): Promise<Out<M>> {
    if (this.closed) return Promise.reject(this.refuseClosed());
    const input = codecOf(method.input);
    const output = codecOf(method.output);
    return new Promise((resolve, reject) => {
      let id = 0;
      const timer = this.deadline(
        options,
        () => id,
        (error) => call.status(error.code, error.details),
      );
      const call: ClientCall = {
        message: () => {},
        status: (code, details, response) => {
          if (!this.calls.has(id)) return;
          clearTimeout(timer);
          this.done(id);
          if (code !== grpc.status.OK) reject(serviceError(code, details));
          else {
            try {
              resolve(output.decode(response ?? Buffer.alloc(0)) as Out<M>);
            } catch (error) {
              reject(
                serviceError(grpc.status.INTERNAL, `the response could not be decoded (${(error as Error).message})`),
              );
            }
          }
        },
      };
      id = this.start(call);
      this.post([OPEN, id, methodPath(method), portable(input.encode(request as never))]);
    });
  }

  async *serverStream<M extends DescMethod & { methodKind: "server_streaming" }>(
    method: M,
    request: InInit<M>,
    options?: CallOptions,
  ): AsyncGenerator<Out<M>> {
    if (this.closed) throw this.refuseClosed();
    const output = codecOf(method.output);
    const queue: Out<M>[] = [];
    let end: grpc.ServiceError | null | undefined;
    let wake: (() => void) | undefined;
    let id = 0;
    const call: ClientCall = {
      message: (bytes) => {
        queue.push(output.decode(bytes) as Out<M>);
        wake?.();
      },
      status: (code, details) => {
        if (end !== undefined) return;
        clearTimeout(timer);
        this.done(id);
        end = code === grpc.status.OK ? null : serviceError(code, details);
        wake?.();
      },
    };
    const timer = this.deadline(
      options,
      () => id,
      (error) => call.status(error.code, error.details),
    );
    id = this.start(call);
    this.post([OPEN, id, methodPath(method), portable(codecOf(method.input).encode(request as never))]);
    try {
      for (;;) {
        const item = queue.shift();
        if (item !== undefined) {
          yield item;
          continue;
        }
        if (end === null) return;
        if (end) throw end;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    } finally {
      if (end === undefined) {
        this.post([CANCEL, id]);
        call.status(grpc.status.CANCELLED, "Cancelled on client");
      }
    }
  }

  bidi<M extends DescMethod & { methodKind: "bidi_streaming" }>(
    method: M,
    _options?: CallOptions,
  ): DuplexCall<InInit<M>, Out<M>> {
    const input = codecOf(method.input);
    const output = codecOf(method.output);
    const id = ++this.next;
    const call = new PortDuplex<InInit<M>, Out<M>>(
      this,
      id,
      input.encode as (value: InInit<M>) => Buffer,
      output.decode as (bytes: Buffer) => Out<M>,
    );
    this.start(call, id);
    if (this.closed) {
      queueMicrotask(() => call.status(grpc.status.UNAVAILABLE, "the provider closed the port"));
      return call;
    }
    this.post([OPEN, id, methodPath(method)]);
    return call;
  }

  /**
   * A call by path with the caller's own bytes, for a client that brings its own serializers (the
   * AWS runtime's grpc-js for @nitric/sdk): `request` is a unary or server-streaming call's one
   * message; a client- or bidi-streaming call writes its messages with `write`.
   */
  open(path: string, request: Uint8Array | undefined, events: RawCallEvents): RawCall {
    let ended = false;
    const call: ClientCall = {
      message: (bytes) => {
        if (!ended) events.message(bytes);
      },
      status: (code, details, response) => {
        if (ended) return;
        ended = true;
        this.done(id);
        events.status(code, details, response);
      },
    };
    const id = this.start(call);
    if (this.closed) queueMicrotask(() => call.status(grpc.status.UNAVAILABLE, "the provider closed the port"));
    else this.post(request === undefined ? [OPEN, id, path] : [OPEN, id, path, portable(request)]);
    return {
      write: (bytes) => {
        if (!ended) this.post([MESSAGE, id, portable(bytes)]);
      },
      halfClose: () => {
        if (!ended) this.post([HALF_CLOSE, id]);
      },
      cancel: () => {
        if (ended) return;
        this.post([CANCEL, id]);
        call.status(grpc.status.CANCELLED, "Cancelled on client");
      },
    };
  }

  close(): void {
    for (const [id, call] of [...this.calls]) {
      this.post([CANCEL, id]);
      call.status(grpc.status.CANCELLED, "Cancelled on client");
    }
    this.port.unref?.();
  }
}
