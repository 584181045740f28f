/**
 * Flow control shared by every gateway of a provider: how many bytes of client messages wait for
 * their handlers (inbound), and how many wait to be sent to clients (outbound), across all
 * connections of all sockets. Each connection has its own bounds too (the gateway applies them);
 * these totals keep many connections, each within its own bound, from adding up to too much.
 *
 * Inbound, past the total the gateways stop reading the connections that send (TCP backpressure)
 * and read them again once the total is back under it. Outbound, past the total the client with
 * the most waiting is closed as not reading, as one over its own 8 MiB is.
 */

/** What a message costs beyond its payload while it waits (the event, its request, its bookkeeping). */
export const PER_MESSAGE_BYTES = 512;

/** A connection as the budget sees it; the gateway's connections are these. */
export interface FlowConnection {
  /** Bytes waiting to be sent to it, as last seen (ws's bufferedAmount). */
  queued: number;
  /** Set once a limit closed the connection. */
  limited: boolean;
  /** Its gateway, which reads it again or closes it. */
  readonly flow: FlowGateway;
}

/** What the budget asks of a gateway. */
export interface FlowGateway {
  /** Reads the connection again if its own bounds allow; false when they do not (yet). */
  resumeIfUnder(c: FlowConnection): boolean;
  /** Bytes waiting to be sent to the connection now. */
  queuedNow(c: FlowConnection): number;
  /** Closes a connection as not reading: it has the most waiting while the total is over its bound. */
  shedSlowest(c: FlowConnection, totalBound: number): void;
}

/** The provider-wide totals. */
export class FlowBudget {
  /** Bytes of messages waiting for their handlers, over every connection (payload + PER_MESSAGE_BYTES each). */
  pending = 0;
  /** Bytes waiting to be sent to clients, as last seen per connection (never less than the truth by much: see track()). */
  queued = 0;
  /** Connections that stopped being read for the total alone: read again once it is back under. */
  private readonly waiting = new Set<FlowConnection>();
  /** Connections with bytes waiting to be sent to them. */
  private readonly backlogged = new Set<FlowConnection>();

  constructor(
    /** Bound on `pending`. */
    readonly maxPendingBytesTotal: number,
    /** Bound on `queued`. */
    readonly maxQueuedBytesTotal: number,
  ) {}

  /** True while the inbound total is at or over its bound. */
  get inboundFull(): boolean {
    return this.pending >= this.maxPendingBytesTotal;
  }

  /** A message was given to its handler. */
  take(bytes: number): void {
    this.pending += bytes + PER_MESSAGE_BYTES;
  }

  /** A message's handler answered (or failed): its bytes come back, and waiting connections are read again. */
  release(bytes: number): void {
    this.pending -= bytes + PER_MESSAGE_BYTES;
    if (this.waiting.size === 0 || this.inboundFull) return;
    for (const c of this.waiting) {
      if (this.inboundFull) return;
      this.waiting.delete(c);
      c.flow.resumeIfUnder(c);
    }
  }

  /** A connection stopped being read for the inbound total: it is read again once there is room. */
  wait(c: FlowConnection): void {
    this.waiting.add(c);
  }

  /**
   * What waits to be sent to a connection, right after something was sent to it. The total only
   * learns of drained bytes when it looks again, so it can overstate: past its bound it looks at
   * every backlogged connection again before closing any.
   */
  track(c: FlowConnection, queued: number): void {
    const before = c.queued;
    if (queued === before) return;
    this.queued += queued - before;
    c.queued = queued;
    if (queued === 0) this.backlogged.delete(c);
    else if (before === 0) this.backlogged.add(c);
    if (this.queued > this.maxQueuedBytesTotal) this.shed();
  }

  /**
   * Refreshes the outbound total and closes the slowest clients until it is under its bound. What
   * waits for a client already closed by a limit counts (it is held until that client is cut off),
   * but such a client is not closed again.
   */
  private shed(): void {
    const candidates: FlowConnection[] = [];
    for (const c of this.backlogged) {
      const now = c.flow.queuedNow(c);
      this.queued += now - c.queued;
      c.queued = now;
      if (now === 0) this.backlogged.delete(c);
      else if (!c.limited) candidates.push(c);
    }
    if (this.queued <= this.maxQueuedBytesTotal) return;
    candidates.sort((a, b) => b.queued - a.queued);
    for (const c of candidates) {
      if (this.queued <= this.maxQueuedBytesTotal) return;
      // Cut off at once: its bytes go with it.
      c.flow.shedSlowest(c, this.maxQueuedBytesTotal);
      this.forget(c);
    }
  }

  /** A connection closed: what it had waiting is gone. */
  forget(c: FlowConnection): void {
    this.waiting.delete(c);
    if (this.backlogged.delete(c)) this.queued -= c.queued;
    c.queued = 0;
  }
}
