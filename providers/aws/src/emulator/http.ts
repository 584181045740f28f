/**
 * What the emulator's HTTP servers (the Management and Invoke APIs, dynalite's) share: Node's limits
 * on a request's arrival, and the 500 a listener that threw answers with.
 */
import type { ServerResponse } from "node:http";
import { boundaryMessage } from "@nitric-like/provider-kit/boundary";
import type { Logger } from "@nitric-like/spec";

/** How long a client of the Management and Invoke APIs, or of dynalite, may take to send its headers. */
export const HEADERS_TIMEOUT_MS = 10_000;
/** ... and its whole request (a 6 MB body over loopback takes milliseconds). */
export const REQUEST_TIMEOUT_MS = 60_000;

/**
 * Node's limits on a request's arrival, for the emulator's servers: its headers within `headersMs`
 * and the whole request within `requestMs`, checked every tenth of `headersMs` (10 ms to 1 s); a
 * client past them gets 408 and its connection is closed. Node's own defaults (60 s and 300 s,
 * checked every 30 s) let a client that sends a byte at a time hold a connection for 90 s.
 */
export function requestTimeouts(
  headersMs: number,
  requestMs: number,
): { headersTimeout: number; requestTimeout: number; connectionsCheckingInterval: number } {
  return {
    headersTimeout: headersMs,
    requestTimeout: requestMs,
    connectionsCheckingInterval: Math.max(10, Math.min(1000, headersMs / 10)),
  };
}

/** Ends a request whose listener threw with 500, logging one line. */
export function answerFailure(
  res: ServerResponse,
  logger: Logger,
  where: string,
  serving: string,
  error: unknown,
): void {
  logger.error(boundaryMessage(where, serving, error, "answered it with 500"));
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(500, { "content-type": "application/json" }).end(JSON.stringify({ message: "Internal server error" }));
}
