/**
 * The server side of our contracts, written once for every transport: a Router holds the
 * implementations of generated services (one handler per method), decodes each request with the
 * method's codec, and encodes each response. A transport hands it calls by path (`open`, the same
 * signature as Transport.open on the client side) and carries the bytes and statuses it produces.
 *
 * Handler shapes, none of them a transport's:
 * - unary: `(call, respond)`; `call.request` is the decoded request, `respond(error)` or
 *   `respond(null, response)` ends the call. A callback, not a promise: the send path is hot and
 *   a handler can answer it without allocating one.
 * - server streaming: `(call)`, with `call.request`; `write`, then `end()` or `fail(error)`.
 * - bidi streaming: `(call)`; `onMessage`, `onEnd` (the client half-closed), `write`, `end`, `fail`.
 * A handler throws, or answers with, an RpcError to choose the status; any other error ends the
 * call with UNKNOWN and its message. A request that does not decode never reaches a handler.
 */
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { MessageCodec, Method, Service } from "@nitric-like/contracts/codec";
import { Code, statusOf } from "./status.js";
import type { MethodKind, WireCall, WireEvents } from "./wire.js";

// biome-ignore lint/suspicious/noExplicitAny: generic over every generated service shape
export type AnyService = Service<any>;

export type In<M> = M extends { input: MessageCodec<infer I extends DescMessage> } ? MessageShape<I> : never;
export type InInit<M> = M extends { input: MessageCodec<infer I extends DescMessage> } ? MessageInitShape<I> : never;
export type Out<M> = M extends { output: MessageCodec<infer O extends DescMessage> } ? MessageShape<O> : never;
export type OutInit<M> = M extends { output: MessageCodec<infer O extends DescMessage> } ? MessageInitShape<O> : never;

/** The gRPC path of a method, `/<package>.<Service>/<Method>`: how every transport names it. */
export function methodPath(method: Method): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/** What every call tells its handler about itself. */
export interface CallInfo {
  /** The method's path. */
  readonly path: string;
  /** Who called, as the transport names it ("thread", "in-memory", a gRPC peer address). */
  readonly peer: string;
}

/** A unary call. */
export interface UnaryCall<I> extends CallInfo {
  readonly request: I;
}

/** How a unary handler answers: an error, or null and the response. Only the first answer counts. */
export type Respond<O> = (error: unknown, response?: O) => void;

/** The server's side of a streaming call. */
export interface ServerStream<O> extends CallInfo {
  /** True once the client cancelled or its transport went away. */
  readonly cancelled: boolean;
  /** True once the call has ended, any way. */
  readonly ended: boolean;
  /** Sends a message; false (and nothing sent) once the call has ended. */
  write(message: O): boolean;
  /** Ends the call with OK. */
  end(): void;
  /** Ends the call with the error's status (see statusOf). */
  fail(error: unknown): void;
  /** Calls back once when the call ends, any way: ended, failed, cancelled or lost. */
  onClose(listener: () => void): void;
  /**
   * False while more of this call's messages wait to be sent than its transport will hold (over
   * gRPC, a client that does not read); a handler stops writing then, or awaits flushed().
   */
  readonly writable: boolean;
  /**
   * Resolves once the client can take more messages: when the transport has flow control and
   * what was written waits for a slow client, once that has been sent; otherwise a turn of the
   * event loop later (so a handler that writes many messages lets other calls and I/O run between
   * batches). Resolves at once when the call has ended. A handler that writes without bound
   * awaits this every so many messages.
   */
  flushed(): Promise<void>;
}

/** A server-streaming call. */
export interface ServerStreamingCall<I, O> extends ServerStream<O> {
  readonly request: I;
}

/** A bidirectional call. */
export interface BidiCall<I, O> extends ServerStream<O> {
  /** Each message from the client, decoded (one listener; a later call replaces it). */
  onMessage(listener: (message: I) => void): void;
  /** The client will send no more (one listener). */
  onEnd(listener: () => void): void;
}

/** The handler of one generated method. */
export type MethodHandler<M> = M extends { methodKind: "unary" }
  ? (call: UnaryCall<In<M>>, respond: Respond<OutInit<M>>) => void
  : M extends { methodKind: "server_streaming" }
    ? (call: ServerStreamingCall<In<M>, OutInit<M>>) => void
    : M extends { methodKind: "bidi_streaming" }
      ? (call: BidiCall<In<M>, OutInit<M>>) => void
      : never;

/** An implementation of a generated service: one handler per method. */
export type ServiceImpl<S extends AnyService> = { [K in keyof S["method"]]: MethodHandler<S["method"][K]> };

/** One served method. */
interface Route {
  readonly kind: MethodKind;
  open(request: Uint8Array | undefined, events: WireEvents, peer: string): WireCall;
}

/** The call object every handler gets; the transport drives its WireCall side. */
class ServerCall<I, O> implements UnaryCall<I>, ServerStreamingCall<I, O>, BidiCall<I, O> {
  request!: I;
  cancelled = false;
  ended = false;
  private messageListener: ((message: I) => void) | undefined;
  /** What flushed() waits to resolve: once the transport drains, or the call ends. */
  private flushWaiters: (() => void)[] | undefined;
  private endListener: (() => void) | undefined;
  private closeListeners: (() => void)[] | undefined;

  constructor(
    readonly path: string,
    readonly peer: string,
    private readonly events: WireEvents,
    private readonly encode: (value: O) => Uint8Array,
    private readonly decode: (bytes: Uint8Array) => I,
    private readonly inputType: string,
  ) {}

  /** Decodes a request message; an undecodable one ends the call with INVALID_ARGUMENT and gives undefined. */
  decoded(bytes: Uint8Array): I | undefined {
    try {
      return this.decode(bytes);
    } catch (error) {
      // A codec's error may say what the sender can change (fastcodec's CodecError.fix); else the
      // bytes are no such message, and the encoding is what to fix.
      const fix = (error as { fix?: unknown }).fix;
      this.finish(
        Code.INVALID_ARGUMENT,
        `${this.path}: the request is not a valid ${this.inputType} message (${(error as Error).message}); ${typeof fix === "string" ? fix : "encode it with the contract in proto/"}`,
      );
      return undefined;
    }
  }

  private encoded(message: O): Uint8Array | undefined {
    try {
      return this.encode(message);
    } catch (error) {
      this.finish(Code.INTERNAL, `${this.path}: the response could not be encoded (${(error as Error).message})`);
      return undefined;
    }
  }

  write(message: O): boolean {
    if (this.ended) return false;
    const bytes = this.encoded(message);
    if (bytes === undefined) return false;
    this.events.message(bytes);
    return true;
  }

  end(): void {
    this.finish(Code.OK, "");
  }

  fail(error: unknown): void {
    this.finish(...statusOf(error));
  }

  readonly respond: Respond<O> = (error, response) => {
    if (this.ended) return;
    if (error) {
      this.fail(error);
      return;
    }
    const bytes = this.encoded((response ?? {}) as O);
    if (bytes !== undefined) this.finish(Code.OK, "", bytes);
  };

  get writable(): boolean {
    return this.events.writable?.() !== false;
  }

  flushed(): Promise<void> {
    if (this.ended) return Promise.resolve();
    return new Promise((resolve) => {
      const events = this.events;
      if (events.writable?.() !== false || events.onDrain === undefined) {
        setImmediate(resolve);
        return;
      }
      if (this.flushWaiters) {
        this.flushWaiters.push(resolve);
        return;
      }
      this.flushWaiters = [resolve];
      events.onDrain(() => this.releaseFlushWaiters());
    });
  }

  private releaseFlushWaiters(): void {
    const waiters = this.flushWaiters;
    this.flushWaiters = undefined;
    if (waiters) for (const resolve of waiters) resolve();
  }

  onMessage(listener: (message: I) => void): void {
    this.messageListener = listener;
  }

  onEnd(listener: () => void): void {
    this.endListener = listener;
  }

  onClose(listener: () => void): void {
    if (this.ended) queueMicrotask(() => this.closeListener(listener));
    else if (this.closeListeners) this.closeListeners.push(listener);
    else this.closeListeners = [listener];
  }

  private finish(code: number, details: string, response?: Uint8Array): void {
    if (this.ended) return;
    this.ended = true;
    this.events.status(code, details, response);
    this.closed();
  }

  private closed(): void {
    this.releaseFlushWaiters();
    const listeners = this.closeListeners;
    this.closeListeners = undefined;
    if (listeners) for (const listener of listeners) this.closeListener(listener);
  }

  /**
   * Runs an onClose listener. The call has ended, so one that throws has no call to end: it is
   * reported as a process warning, and the transport (which is what runs a client's cancel) and
   * the other listeners go on.
   */
  private closeListener(listener: () => void): void {
    try {
      listener();
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      process.emitWarning(
        `${this.path}: an onClose listener threw (${JSON.stringify(reason)}); catch errors in onClose listeners`,
        "RpcListenerWarning",
      );
    }
  }

  /** A handler's listener that throws ends its call, with the error's status: the transport goes on. */
  private guard(run: () => void): void {
    try {
      run();
    } catch (error) {
      this.fail(error);
    }
  }

  // The transport's side (see wire()).

  /** A message from the client. */
  receive(bytes: Uint8Array): void {
    if (this.ended) return;
    const message = this.decoded(bytes);
    const listener = this.messageListener;
    if (message === undefined || listener === undefined) return;
    try {
      listener(message);
    } catch (error) {
      this.fail(error);
    }
  }

  clientEnded(): void {
    const listener = this.endListener;
    if (!this.ended && listener) this.guard(listener);
  }

  clientCancelled(): void {
    if (this.ended) return;
    this.ended = true;
    this.cancelled = true;
    this.closed();
  }

  /** The call as its transport drives it. */
  wire(): WireCall {
    return {
      write: (bytes) => this.receive(bytes),
      halfClose: () => this.clientEnded(),
      cancel: () => this.clientCancelled(),
    };
  }

  /** A call whose one request came with its opening: only a cancel reaches it. */
  wireOneRequest(): WireCall {
    return { write: () => {}, halfClose: () => {}, cancel: () => this.clientCancelled() };
  }
}

/** The WireCall of a call that ended before it started (no such method, an undecodable request). */
const ENDED: WireCall = { write: () => {}, halfClose: () => {}, cancel: () => {} };

/** Calls served by path. Paths come from clients: they are looked up in a Map, never on an object. */
export class Router {
  private readonly routes = new Map<string, Route>();
  private readonly services = new Set<string>();

  /** Serves a generated service with `impl`. */
  service<S extends AnyService>(service: S, impl: ServiceImpl<S>): this {
    const handlers = impl as unknown as Record<string, (call: unknown, respond?: unknown) => void>;
    for (const method of service.methods) {
      const handler = handlers[method.localName];
      if (typeof handler !== "function") throw new Error(`${methodPath(method)}: the implementation has no handler`);
      const path = methodPath(method);
      this.add(path, method.methodKind, method.input.typeName, method.input, method.output, handler);
    }
    this.services.add(service.typeName);
    return this;
  }

  /**
   * Serves a bidi-streaming method of a contract we have no types for, with raw message bytes (the
   * collector reads registrations of Nitric resources we do not serve this way).
   */
  raw(path: string, handler: (call: BidiCall<Uint8Array, Uint8Array>) => void): this {
    const same = { encode: (b: Uint8Array) => b, decode: (b: Uint8Array) => b };
    this.add(path, "bidi_streaming", "bytes", same, same, handler as (call: unknown) => void);
    return this;
  }

  /**
   * Answers every call of a method we do not implement with `code` and `message` (a contract's
   * method served only to say what it is and what to do instead of a bare UNIMPLEMENTED). The
   * method is listed by methods() with its kind, so a gRPC server registers it like any other.
   */
  refuse(path: string, kind: MethodKind, code: Code, message: string): this {
    this.routes.set(path, {
      kind,
      open: (_request, events) => {
        events.status(code, message);
        return ENDED;
      },
    });
    return this;
  }

  private add(
    path: string,
    kind: MethodKind,
    inputType: string,
    input: { decode: (bytes: Uint8Array) => unknown; encode?: unknown },
    output: { encode: (value: never) => Uint8Array },
    handler: (call: unknown, respond?: unknown) => void,
  ): void {
    if (kind === "client_streaming") throw new Error(`${path}: client-streaming methods are not served`);
    const decode = input.decode;
    const encode = output.encode as (value: unknown) => Uint8Array;
    this.routes.set(path, {
      kind,
      open: (request, events, peer) => {
        const call = new ServerCall<unknown, unknown>(path, peer, events, encode, decode, inputType);
        if (kind !== "bidi_streaming") {
          const message = call.decoded(request ?? new Uint8Array(0));
          if (message === undefined) return ENDED;
          call.request = message;
        }
        try {
          if (kind === "unary") handler(call, call.respond);
          else handler(call);
        } catch (error) {
          call.fail(error);
        }
        // A unary or server-streaming call has had its one request: a peer that writes more (a
        // hostile one; our clients do not) must not end it with a decoding error.
        return kind === "bidi_streaming" ? call.wire() : call.wireOneRequest();
      },
    });
  }

  /** The services served, by full name (for the health service). */
  serviceNames(): ReadonlySet<string> {
    return this.services;
  }

  /** The methods served: what a gRPC server registers. */
  methods(): { path: string; kind: MethodKind }[] {
    return [...this.routes].map(([path, route]) => ({ path, kind: route.kind }));
  }

  /**
   * Opens a call (a transport calls this for each call it receives). `events` hears the call's
   * messages and its one status, synchronously; the transport carries them to the client.
   */
  open(path: string, request: Uint8Array | undefined, events: WireEvents, peer: string): WireCall {
    const route = this.routes.get(path);
    if (!route) {
      events.status(Code.UNIMPLEMENTED, `${path}: no such method on this endpoint`);
      return ENDED;
    }
    return route.open(request, events, peer);
  }
}
