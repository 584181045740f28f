/** A log line per burst of one kind of refusal or failure (the local gateway, the AWS emulator). */
import type { Logger } from "@nitric-like/spec";

/**
 * Logs a kind of refusal or failure once per burst, not once per client: a flood must not flood
 * the log. The first goes out at once; later ones within `everyMs` are counted and the count goes
 * with the next line.
 */
export class BurstLog {
  private since = 0;
  private last = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly logger: Logger,
    private readonly level: "warn" | "error",
    /** Says what happened `n` times since the last line, as a suffix (empty for 1). */
    private readonly more: (n: number) => string,
    private readonly everyMs = 5000,
  ) {}

  /** Counts one, and logs `line` (with the count since the last line) unless one went out recently. */
  note(line: string): void {
    this.since++;
    const now = Date.now();
    if (now - this.last < this.everyMs) return;
    this.logger[this.level](`${line}${this.since > 1 ? this.more(this.since) : ""}`);
    this.last = now;
    this.since = 0;
  }
}
