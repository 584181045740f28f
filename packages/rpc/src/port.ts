/**
 * The MessagePort transport, for a service that runs as a worker thread of its provider's process:
 * the same calls, message bytes and statuses as gRPC, without HTTP/2 framing, a socket or a
 * process hop. A port is one service's endpoint, as a gRPC endpoint is.
 *
 * Frames are small arrays:
 *   client → server  [OPEN, id, path, request?]  [MESSAGE, id, bytes]  [HALF_CLOSE, id]  [CANCEL, id]
 *   server → client  [MESSAGE, id, bytes]  [STATUS, id, code, details, response?]
 * A unary call is one OPEN and one STATUS carrying the response. Each side posts its frames on
 * the leading edge (LeadingEdgeBatcher): a frame with none before it in this turn of the event
 * loop goes at once, the frames that follow it in the same turn as one [BATCH, 0, frames]. Under
 * load that is one postMessage (one structured clone and one wake-up of the other thread) for
 * many frames, of every call on the port: events, sends and their statuses, answers.
 */
import { LeadingEdgeBatcher } from "@nitric-like/contracts/batcher";
import { CallTable } from "./call-table.js";
import type { Router } from "./router.js";
import { Code } from "./status.js";
import { MAX_UNARY_IN_FLIGHT, WaitingCalls } from "./waiting.js";
import type { MethodKind, Transport, WireCall, WireEvents } from "./wire.js";

const OPEN = 0;
const MESSAGE = 1;
const HALF_CLOSE = 2;
const CANCEL = 3;
const STATUS = 4;
const BATCH = 5;

type Frame = [number, number, ...unknown[]];

/** A call that ended as it opened. */
const NO_CALL: WireCall = { write: () => {}, halfClose: () => {}, cancel: () => {} };

/** The part of a MessagePort both ends use (a worker's, or a MessageChannel's). */
export interface PortLike {
  postMessage(value: unknown): void;
  on(event: "message", listener: (value: unknown) => void): unknown;
  on(event: "close", listener: () => void): unknown;
  ref?(): void;
  unref?(): void;
  close?(): void;
  /**
   * True when what is posted reaches the other end as it is, not cloned (a LocalPort): the bytes
   * in frames need not be copies of exactly their own length.
   */
  readonly local?: boolean;
}

/**
 * A Buffer from the allocation pool (the generated codecs encode into one) is a view on a larger
 * ArrayBuffer, which structured cloning would copy whole: send exactly the message's bytes.
 */
function portable(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : new Uint8Array(bytes);
}

/**
 * On a local port the bytes go as they are: nothing is cloned, and the other side decodes the
 * codec's Buffer without wrapping a copy in one (in threads.mjs, 1–3 µs less CPU per
 * `socket.send` or `@nitric/sdk` echo under --single-thread).
 */
const same = (bytes: Uint8Array): Uint8Array => bytes;

/** How the bytes in frames posted on `port` are prepared: as they are on a local port, copied otherwise. */
const preparerFor = (port: PortLike): ((bytes: Uint8Array) => Uint8Array) => (port.local ? same : portable);

/**
 * One end of a port within one thread (LocalPort.pair()). What it posts reaches the other end's
 * listeners a microtask later, as it was posted: both ends are in the same thread, so there is
 * nothing to clone and no thread to wake, and the transports never reuse what they post. Nothing
 * keeps the process alive (ref and unref do nothing): its thread is kept alive by its other work.
 */
export class LocalPort implements PortLike {
  private readonly messageListeners: ((value: unknown) => void)[] = [];
  private readonly closeListeners: (() => void)[] = [];
  private peer: LocalPort | undefined;
  private closed = false;
  readonly local = true;

  static pair(): [LocalPort, LocalPort] {
    const a = new LocalPort();
    const b = new LocalPort();
    a.peer = b;
    b.peer = a;
    return [a, b];
  }

  postMessage(value: unknown): void {
    const peer = this.peer;
    if (this.closed || !peer) return;
    queueMicrotask(() => peer.deliver(value));
  }

  private deliver(value: unknown): void {
    if (this.closed) return;
    for (const listener of this.messageListeners) listener(value);
  }

  on(event: "message", listener: (value: unknown) => void): this;
  on(event: "close", listener: () => void): this;
  on(event: "message" | "close", listener: (value: unknown) => void): this {
    if (event === "message") this.messageListeners.push(listener);
    else this.closeListeners.push(listener as () => void);
    return this;
  }

  /** Closes both ends, as a MessagePort's close() does: each hears "close" a microtask later. */
  close(): void {
    if (this.closed) return;
    for (const end of [this, this.peer]) {
      if (!end || end.closed) continue;
      end.closed = true;
      queueMicrotask(() => {
        for (const listener of end.closeListeners) listener();
      });
    }
  }

  ref(): void {}
  unref(): void {}
}

const isId = (value: unknown): value is number => Number.isSafeInteger(value);
const isBytes = (value: unknown): value is Uint8Array => value instanceof Uint8Array;

/** The calls of one served port. Frames come from another thread's code: anything malformed is ignored. */
class PortSession {
  private readonly calls = new Map<number, WireCall>();
  private closed = false;
  /** What the router writes is posted as it is on a local port, a copy of its own otherwise. */
  private readonly prepare: (bytes: Uint8Array) => Uint8Array;

  constructor(
    private readonly port: PortLike,
    private readonly router: Router,
    private readonly peer: string,
  ) {
    this.prepare = preparerFor(port);
    port.on("message", (frame) => this.receiveAny(frame));
    port.on("close", () => this.close());
  }

  private readonly out = new LeadingEdgeBatcher<Frame>(
    (frame) => {
      if (!this.closed) this.port.postMessage(frame);
    },
    (frames) => {
      if (!this.closed) this.port.postMessage([BATCH, 0, frames]);
    },
  );

  private post(frame: Frame): void {
    if (!this.closed) this.out.push(frame);
  }

  /** A frame, or a batch of them (one level: a batch inside a batch is ignored). */
  private receiveAny(value: unknown): void {
    if (Array.isArray(value) && value[0] === BATCH) {
      const frames = value[2];
      if (Array.isArray(frames)) for (const frame of frames) this.receive(frame);
      return;
    }
    this.receive(value);
  }

  private receive(value: unknown): void {
    if (!Array.isArray(value) || !isId(value[1])) return;
    const frame = value as Frame;
    const [kind, id] = frame;
    if (kind === OPEN) {
      const [, , path, request] = frame;
      if (typeof path !== "string" || !(request === undefined || isBytes(request)) || this.calls.has(id)) return;
      this.open(id, path, request);
      return;
    }
    const call = this.calls.get(id);
    if (!call) return;
    if (kind === MESSAGE) {
      if (isBytes(frame[2])) call.write(frame[2]);
    } else if (kind === HALF_CLOSE) call.halfClose();
    else if (kind === CANCEL) {
      this.calls.delete(id);
      call.cancel();
    }
  }

  private open(id: number, path: string, request: Uint8Array | undefined): void {
    const served = new ServedCall(this, id);
    const call = this.router.open(path, request, served, this.peer);
    if (!served.ended) this.calls.set(id, call);
  }

  /** What the router writes on call `id`. */
  message(id: number, bytes: Uint8Array): void {
    this.post([MESSAGE, id, this.prepare(bytes)]);
  }

  /** The router ended call `id`. */
  status(id: number, code: number, details: string, response: Uint8Array | undefined): void {
    this.calls.delete(id);
    this.post(
      response === undefined ? [STATUS, id, code, details] : [STATUS, id, code, details, this.prepare(response)],
    );
  }

  close(): void {
    if (this.closed) return;
    // What the router wrote this turn still goes out: the statuses of streams it ended (the
    // provider's stop ends each handler stream with OK just before it closes the ports).
    this.out.drain();
    this.closed = true;
    for (const call of [...this.calls.values()]) call.cancel();
    this.calls.clear();
  }
}

/**
 * A call the router serves for a port's peer: its events go back over the port. A class rather
 * than closures made for each call, as the opener's PortCall: every `socket.send` opens one.
 */
class ServedCall implements WireEvents {
  /** The router ended the call (it may, within open()). */
  ended = false;

  constructor(
    private readonly session: PortSession,
    private readonly id: number,
  ) {}

  message(bytes: Uint8Array): void {
    this.session.message(this.id, bytes);
  }

  status(code: number, details: string, response?: Uint8Array): void {
    this.ended = true;
    this.session.status(this.id, code, details, response);
  }
}

/** Serves a router on any number of ports. */
export class PortServer {
  private readonly sessions = new Set<PortSession>();

  constructor(
    private readonly router: Router,
    private readonly peer = "thread",
  ) {}

  /** Serves one port until it closes or the server stops. */
  serve(port: PortLike): void {
    const session = new PortSession(port, this.router, this.peer);
    this.sessions.add(session);
    port.on("close", () => this.sessions.delete(session));
  }

  /** Cancels every call on every port. */
  stop(): void {
    for (const session of this.sessions) session.close();
    this.sessions.clear();
  }
}

/** What a port transport's calls share. */
interface PortLink {
  calls: CallTable<WireEvents>;
  prepare(bytes: Uint8Array): Uint8Array;
  post(frame: Frame): void;
  done(id: number): void;
}

/**
 * A call opened on a port transport, as its opener drives it. A class rather than closures made
 * for each call: a service's bundle keeps function names (esbuild's keepNames), which costs a call
 * of its __name helper for every named closure, and every `socket.send` opens a call.
 */
class PortCall implements WireCall {
  constructor(
    private readonly link: PortLink,
    private readonly id: number,
  ) {}

  write(bytes: Uint8Array): void {
    if (this.link.calls.has(this.id)) this.link.post([MESSAGE, this.id, this.link.prepare(bytes)]);
  }

  halfClose(): void {
    if (this.link.calls.has(this.id)) this.link.post([HALF_CLOSE, this.id]);
  }

  cancel(): void {
    if (!this.link.calls.has(this.id)) return;
    this.link.post([CANCEL, this.id]);
    this.link.done(this.id);
  }
}

/** A port transport also says how many of its calls are in flight (run waits for them to end before it closes one). */
export interface PortTransport extends Transport {
  readonly inFlight: number;
}

/**
 * A transport over a port. The port keeps the thread alive only while calls are in flight, as an
 * idle gRPC channel does not keep a process alive; close() cancels them, and the transport stays
 * usable afterwards. Past MAX_UNARY_IN_FLIGHT calls open, unary calls wait in this thread
 * (waiting.ts); a call opened while `maxCalls` are in flight ends with RESOURCE_EXHAUSTED.
 */
export function createPortTransport(port: PortLike, maxCalls = 2 ** 20): PortTransport {
  const calls = new CallTable<WireEvents>(maxCalls);
  let closed = false;
  const out = new LeadingEdgeBatcher<Frame>(
    (frame) => {
      if (!closed) port.postMessage(frame);
    },
    (frames) => {
      if (!closed) port.postMessage([BATCH, 0, frames]);
    },
  );
  const post = (frame: Frame) => {
    if (!closed) out.push(frame);
  };
  // Unary calls past MAX_UNARY_IN_FLIGHT (waiting.ts).
  const waiting = new WaitingCalls();
  const room = () => calls.size < MAX_UNARY_IN_FLIGHT;
  const done = (id: number) => {
    if (!calls.delete(id)) return;
    if (waiting.size > 0) waiting.release(room, openNow);
    else if (calls.size === 0) port.unref?.();
  };
  const prepare = preparerFor(port);
  const link: PortLink = { calls, prepare, post, done };
  // The provider's frames: trusted more than a service's, and still checked, as anything that
  // crosses a thread is.
  const receive = (value: unknown) => {
    if (!Array.isArray(value)) return;
    const [kind, id, a, b, c] = value as unknown[];
    if (!isId(id)) return;
    const events = calls.get(id);
    if (!events) return;
    if (kind === MESSAGE) {
      if (isBytes(a)) events.message(a);
    } else if (kind === STATUS && isId(a) && typeof b === "string" && (c === undefined || isBytes(c))) {
      done(id);
      events.status(a, b, c);
    }
  };
  port.on("message", (value) => {
    if (Array.isArray(value) && value[0] === BATCH) {
      const frames = value[2];
      if (Array.isArray(frames)) for (const frame of frames) receive(frame);
    } else receive(value);
  });
  port.on("close", () => {
    closed = true;
    waiting.endAll(Code.UNAVAILABLE, "the provider closed the port");
    for (const [id, events] of calls.entries()) {
      done(id);
      events.status(Code.UNAVAILABLE, "the provider closed the port");
    }
  });
  function openNow(path: string, request: Uint8Array | undefined, events: WireEvents): WireCall {
    const id = calls.add(events);
    if (id === undefined) {
      queueMicrotask(() =>
        events.status(Code.RESOURCE_EXHAUSTED, `more than ${calls.capacity} calls in flight on one port`),
      );
      return NO_CALL;
    }
    if (calls.size === 1) port.ref?.();
    if (closed) {
      queueMicrotask(() => {
        if (!calls.has(id)) return;
        done(id);
        events.status(Code.UNAVAILABLE, "the provider closed the port");
      });
    } else post(request === undefined ? [OPEN, id, path] : [OPEN, id, path, prepare(request)]);
    return new PortCall(link, id);
  }
  port.unref?.();
  return {
    get inFlight() {
      return calls.size + waiting.size;
    },
    open(path: string, kind: MethodKind, request: Uint8Array | undefined, events: WireEvents): WireCall {
      if (kind === "unary" && request !== undefined && !room() && !closed) return waiting.hold(path, request, events);
      return openNow(path, request, events);
    },
    close() {
      waiting.endAll(Code.CANCELLED, "Cancelled on client");
      for (const [id, events] of calls.entries()) {
        post([CANCEL, id]);
        done(id);
        events.status(Code.CANCELLED, "Cancelled on client");
      }
      port.unref?.();
    },
  };
}
