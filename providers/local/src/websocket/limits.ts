/**
 * What the gateway checks before and around the ws library: the upgrade request (RFC 6455 section
 * 4.2.1) before any connect handler runs, malformed HTTP, and the close reasons for frames the ws
 * library refuses (it closes those without a reason). Kept apart from gateway.ts so the gateway
 * reads as the connection's life and these as the rules.
 */
import type { IncomingMessage } from "node:http";
import { MAX_BUFFERED_BYTES, byteSize as size, upgradeProblem } from "@nitric-like/provider-kit";
import { Code, RpcError } from "@nitric-like/rpc";
import { formatDuration, type SocketLimits } from "@nitric-like/spec";

/** Why an upgrade request is refused before its connect handler runs. */
export interface Refusal {
  status: number;
  reason: string;
  headers?: Record<string, string>;
}

/**
 * Checks an upgrade request the way the ws library would, but first, so a malformed request never
 * reaches the app's connect handler, and with a reason that says what to fix; then its path (a
 * socket has one URL).
 */
export function handshakeProblem(name: string, url: string, req: IncomingMessage): Refusal | undefined {
  const where = `websocket "${name}"`;
  const malformed = upgradeProblem(where, req);
  if (malformed) return malformed;
  const raw = req.url ?? "/";
  const at = raw.indexOf("?");
  const path = at < 0 ? raw : raw.slice(0, at);
  if (path !== "/" && path !== "") {
    return {
      status: 404,
      reason: `${where}: no such path ${JSON.stringify(path.slice(0, 100))}; connect to ${url}/ (a socket has one URL, put parameters in the query string)`,
    };
  }
  return undefined;
}

/** The close reason for a connection idle too long (API Gateway: 10 min, 1001). */
export function idleReason(limits: SocketLimits): string {
  return `idle timeout: no message for ${formatDuration(limits.idleTimeoutMs)}; send a message or ping to keep it open`;
}

/** The close reason for a connection open too long (API Gateway: 2 h, 1001). */
export function ageReason(limits: SocketLimits): string {
  return `connection age limit: open for ${formatDuration(limits.maxConnectionAgeMs)}, the longest allowed; reconnect`;
}

/**
 * The close reason when a connection sends faster than its token bucket allows (1008). The close
 * waits for the handled messages' answers, so their replies are sent before it; those that got no
 * answer (the handler failed or timed out) are counted in the reason. `routedKb`: set when the
 * connection's messages were read for their routes, which count once per that many KB too.
 */
export function rateReason(limits: SocketLimits, handled: number, unanswered = 0, routedKb?: number): string {
  const head = `rate limit: over ${limits.messagesPerSecond} messages/s (burst ${limits.messageBurst})`;
  if (routedKb !== undefined) {
    // The reason must fit a close frame's 123 bytes: the count of what was handled goes first.
    const routed = `rate limit: over ${limits.messagesPerSecond}/s (burst ${limits.messageBurst}; a routed message counts once per ${routedKb} KB too)`;
    const long = `${routed}; ${handled} handled${unanswered > 0 ? ` (${unanswered} got no reply)` : ""}, later ones dropped`;
    return Buffer.byteLength(long) <= 123 ? long : routed;
  }
  if (unanswered === 0) return `${head}; the first ${handled} were handled, later ones dropped; slow down`;
  // Without "slow down": the reason must fit a close frame's 123 bytes.
  return `${head}; the first ${handled} were handled (${unanswered} got no reply), later ones dropped`;
}

/** The 408 body when a connection did not send its upgrade request in time (a slowloris client). */
export function upgradeTimeoutReason(name: string, limits: SocketLimits): string {
  return `websocket "${name}": the upgrade request did not arrive within ${formatDuration(limits.upgradeTimeoutMs)} (limits.upgradeTimeout); send the whole request at once`;
}

/** The close reason for the client with the most waiting to be sent while all clients' total is over its bound (1008). */
export function totalQueuedReason(queued: number, totalBound: number): string {
  const mb = (n: number) => `${Math.round((n / 1024 / 1024) * 10) / 10} MB`;
  return `client not reading: ${mb(queued)} waiting, the most of any client, with over ${mb(totalBound)} waiting for all; read what you are sent`;
}

/**
 * The largest message the gateway sends to a client: the MAX_BUFFERED_BYTES it holds for one
 * client, or the project's limits.maxQueuedBytesTotal (all clients together) when that is lower.
 * A message larger than the total could close its client as not reading through the total alone,
 * though it reads: the kernel seldom takes a large message at once. A low total is taken as set
 * (refusing it in the project file would break projects that load today, and a small machine may
 * want one) and bounds each message instead, so such a message is refused, never sent to close a
 * reader.
 */
export function largestMessage(totalBound: number): number {
  return Math.min(MAX_BUFFERED_BYTES, totalBound);
}

/**
 * The most the gateway holds for a connection whose connect handler runs: largestMessage, since
 * all of it is sent at once as the connection opens and would wait there together (a total under
 * 8 MB would otherwise close a client that reads as not reading, as soon as it opened).
 */
export function largestOpeningHold(totalBound: number): number {
  return largestMessage(totalBound);
}

/**
 * The log line for a connection sent more than largestOpeningHold while its connect handler runs:
 * what was sent is dropped and it is closed with 1008 (openingOverflowReason) once it opens.
 */
export function openingOverflowLine(name: string, connectionId: string, totalBound: number): string {
  const bound = largestOpeningHold(totalBound);
  const which =
    bound < MAX_BUFFERED_BYTES
      ? `limits.maxQueuedBytesTotal, as it is under ${size(MAX_BUFFERED_BYTES)}`
      : `the ${size(MAX_BUFFERED_BYTES)} the local gateway holds for one client`;
  return `websocket "${name}": connection ${connectionId} was sent over ${size(bound)} while its connect handler ran, more than is held for a client before it opens (${which}): what it was sent is dropped and it is closed with 1008 as it opens; send less during connect, or send the rest once connected`;
}

/**
 * Why a message over largestMessage is not sent: the gateway holds at most that much for one
 * client (or for all of them), so such a message could only go out by closing a client that reads
 * as not reading. Names the setting when the project's total is the bound.
 */
function oversizeProblem(what: string, totalBound: number): string {
  const aws = "(API Gateway takes 128 KB a message: compat: aws keeps that limit)";
  if (totalBound < MAX_BUFFERED_BYTES) {
    return `${what} is over the ${size(totalBound)} limits.maxQueuedBytesTotal lets wait for all clients together (${totalBound} bytes, set in the project file); send it in parts of at most that, or raise limits.maxQueuedBytesTotal (a message may be up to ${size(MAX_BUFFERED_BYTES)}) ${aws}`;
  }
  const mb = size(MAX_BUFFERED_BYTES);
  return `${what} is over the ${mb} the local gateway holds for one client (${MAX_BUFFERED_BYTES} bytes); send it in parts of at most ${mb} ${aws}`;
}

/**
 * Refuses a send or broadcast too large to wait for a client (see largestMessage):
 * INVALID_ARGUMENT. `totalBound`: the provider's limits.maxQueuedBytesTotal.
 */
export function checkSendSize(name: string, data: Uint8Array, totalBound: number): void {
  if (data.byteLength > largestMessage(totalBound))
    throw new RpcError(
      Code.INVALID_ARGUMENT,
      oversizeProblem(`websocket "${name}": a message of ${data.byteLength} bytes`, totalBound),
    );
}

/** The log line for a handler's reply too large to wait for its client: not sent (see largestMessage). */
export function replyTooLarge(
  name: string,
  connectionId: string,
  bytes: number,
  totalBound: number,
): string | undefined {
  if (bytes <= largestMessage(totalBound)) return undefined;
  return oversizeProblem(
    `websocket "${name}": a reply of ${bytes} bytes to connection ${connectionId} was not sent: it`,
    totalBound,
  );
}

/** The 429 body when a socket has as many connections as it may. */
export function tooManyReason(name: string, limits: SocketLimits): string {
  return `websocket "${name}": ${limits.maxConnections} connections are open, the most allowed (limits.maxConnections); try again later`;
}
