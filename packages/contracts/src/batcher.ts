/**
 * Batching on the leading edge, for the messages of a handler stream (events one way, answers the
 * other): a message with none before it in this turn of the event loop is written at once, so a
 * lone message waits for nothing; the messages that follow it until the turn's I/O is done
 * (setImmediate) are written together, and the window stays open while turns keep bringing more.
 * Under load that is one write (one gRPC message and HTTP/2 frame, or one postMessage) and one
 * decode on the other side for many messages.
 */
export class LeadingEdgeBatcher<T> {
  private outbox: T[] = [];
  /** True from a message written at once until a turn goes by with nothing to batch. */
  private open = false;

  constructor(
    /** Writes one message. */
    private readonly one: (message: T) => void,
    /** Writes several as one batch message. */
    private readonly many: (messages: T[]) => void,
  ) {}

  private readonly flush = (): void => {
    if (this.outbox.length === 0) {
      this.open = false;
      return;
    }
    this.drain();
    setImmediate(this.flush);
  };

  /** Writes `message` now, or with the others of this turn. */
  push(message: T): void {
    if (this.open) {
      this.outbox.push(message);
      return;
    }
    this.open = true;
    this.one(message);
    setImmediate(this.flush);
  }

  /** Writes what waits now, instead of at the end of the turn (the writer is about to close). */
  drain(): void {
    const out = this.outbox;
    if (out.length === 0) return;
    this.outbox = [];
    if (out.length === 1) this.one(out[0] as T);
    else this.many(out);
  }

  /** Drops what waits to be written (the stream is gone). */
  clear(): void {
    this.outbox = [];
  }
}
