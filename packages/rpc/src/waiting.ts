/**
 * The cap on unary calls a client keeps open on one transport, shared by the transports that
 * cross to another thread or process (port.ts, grpc.ts). Neither a MessagePort nor grpc-js holds a
 * caller back: without the cap, a handler that fires kv calls without awaiting them has both its
 * own side and the provider hold every one (measured in `run`: about 10 KB each on the provider's
 * side; 100,000 over gRPC took the service past 2.7 GB and `run` past 1 GB, unfinished after
 * 120 s). Calls past the cap wait in the opener's process, as their request bytes, and open in
 * the order they were made as calls end. Streaming calls (the handler streams, a few per service)
 * are never held, though they count toward the calls open.
 */
import type { WireCall, WireEvents } from "./wire.js";

/** Calls a client transport keeps open at once before it holds unary calls back (grpc.ts's server takes as many). */
export const MAX_UNARY_IN_FLIGHT = 1024;

/** A unary call waiting for one of the calls open to end. */
class WaitingCall implements WireCall {
  /** The call once opened. */
  opened: WireCall | undefined = undefined;
  /** Cancelled while waiting: it never opens. */
  cancelled = false;

  constructor(
    readonly path: string,
    readonly request: Uint8Array,
    readonly events: WireEvents,
  ) {}

  // A unary call's one request went with open(): nothing to write or half-close.
  write(): void {}

  halfClose(): void {}

  cancel(): void {
    if (this.opened) this.opened.cancel();
    else this.cancelled = true;
  }
}

/** How a transport opens a unary call now. */
export type OpenUnary = (path: string, request: Uint8Array, events: WireEvents) => WireCall;

/** The unary calls one transport holds back, first in first out. */
export class WaitingCalls {
  private queue: (WaitingCall | undefined)[] = [];
  /** The next to open. */
  private head = 0;

  /** How many wait (a cancelled one still counts until its turn comes). */
  get size(): number {
    return this.queue.length - this.head;
  }

  /** Holds a call back; it opens on a later release() unless cancelled first. */
  hold(path: string, request: Uint8Array, events: WireEvents): WireCall {
    const call = new WaitingCall(path, request, events);
    this.queue.push(call);
    return call;
  }

  /** Opens waiting calls, in order, while `room()` says one more may open. */
  release(room: () => boolean, open: OpenUnary): void {
    while (this.head < this.queue.length && room()) {
      const next = this.queue[this.head] as WaitingCall;
      this.queue[this.head++] = undefined;
      if (!next.cancelled) next.opened = open(next.path, next.request, next.events);
    }
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      // Drop the opened part of a long queue, so it does not grow for as long as calls keep coming.
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }

  /** Ends every waiting call with `code` (the transport was closed, or its other end went away). */
  endAll(code: number, details: string): void {
    const ended = this.queue.slice(this.head);
    this.queue = [];
    this.head = 0;
    for (const call of ended) if (call && !call.cancelled) call.events.status(code, details);
  }
}
