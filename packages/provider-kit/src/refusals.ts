/**
 * Refusing an HTTP request on a socket's port, before or instead of its WebSocket upgrade, as both
 * gateways (the local provider's and the AWS emulator's) answer it.
 */
import { type IncomingMessage, STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";

/** How long a refused request's socket is kept for its client to read the answer and close. */
export const REFUSED_GRACE_MS = 1000;

/**
 * Answers `status` with `body` and ends the socket, which is destroyed REFUSED_GRACE_MS later:
 * an HTTP server keeps its sockets half-open, so a client that never closes its side would hold
 * the socket (a file of `run`'s) for as long as `run` runs. Once per socket: a socket already
 * answered or gone is left alone (a listener that threw after its refusal).
 */
export function refuseRequest(
  socket: Duplex,
  status: number,
  body: string,
  contentType = "text/plain; charset=utf-8",
  headers: Record<string, string> = {},
): void {
  if (socket.destroyed || socket.writableEnded) return;
  const length = Buffer.byteLength(body, "utf8");
  const extra = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Error"}\r\nContent-Type: ${contentType}\r\nContent-Length: ${length}\r\n${extra}Connection: close\r\n\r\n${body}`,
  );
  setTimeout(() => socket.destroy(), REFUSED_GRACE_MS).unref();
}

/** The answer to an HTTP request Node could not parse (a server's `clientError` event). */
export function clientErrorRefusal(where: string, error: NodeJS.ErrnoException): { status: number; reason: string } {
  if (error.code === "HPE_HEADER_OVERFLOW") {
    return {
      status: 431,
      reason: `${where}: the request line and headers are over 16 KiB (query string included); send less in the URL and headers`,
    };
  }
  if (error.code === "ERR_HTTP_REQUEST_TIMEOUT" || error.code === "HPE_HEADERS_TIMEOUT") {
    return { status: 408, reason: `${where}: the request took too long to arrive; send the whole request at once` };
  }
  return {
    status: 400,
    reason: `${where}: not a valid HTTP request (${error.code ?? "parse error"}); connect with a WebSocket client`,
  };
}

/** A Sec-WebSocket-Key is 16 random bytes in base64 (RFC 6455 section 4.1). */
const KEY = /^[+/0-9A-Za-z]{22}==$/;

/** An HTTP token (RFC 9110 section 5.6.2), what each subprotocol of Sec-WebSocket-Protocol is. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Why a Sec-WebSocket-Protocol header (its lines joined with ", ", as Node joins them) is not a
 * list of distinct subprotocols (RFC 6455 section 4.1: tokens, separated by commas), which the ws
 * library refuses; undefined when it is one.
 */
function protocolsProblem(header: string): string | undefined {
  const seen = new Set<string>();
  for (const part of header.split(",")) {
    const protocol = part.replace(/^[ \t]+|[ \t]+$/g, "");
    if (!TOKEN.test(protocol)) {
      return protocol === ""
        ? "an empty subprotocol (two commas, or one at an end)"
        : `subprotocol ${JSON.stringify(protocol.slice(0, 40))}, which is not a token (letters, digits and !#$%&'*+-.^_\`|~)`;
    }
    if (seen.has(protocol)) return `subprotocol ${JSON.stringify(protocol.slice(0, 40))} twice`;
    seen.add(protocol);
  }
  return undefined;
}

/**
 * Checks an upgrade request as the ws library would (RFC 6455 section 4.2.1), but before any
 * authorizer or connect handler runs, and with a reason that says what to fix: a malformed
 * request never reaches the app (whose connect handler would otherwise run, and keep what it
 * stored, for a connection ws then refuses). `where` names the socket in the reason.
 */
export function upgradeProblem(
  where: string,
  req: IncomingMessage,
): { status: number; reason: string; headers?: Record<string, string> } | undefined {
  if (req.method !== "GET") {
    return {
      status: 405,
      reason: `${where}: a WebSocket upgrade must be a GET request, got ${req.method}; connect with a WebSocket client`,
      headers: { Allow: "GET" },
    };
  }
  if ((req.headers.upgrade ?? "").toLowerCase() !== "websocket") {
    return { status: 400, reason: `${where}: the Upgrade header must be "websocket"; connect with a WebSocket client` };
  }
  const key = req.headers["sec-websocket-key"];
  if (typeof key !== "string" || !KEY.test(key.trim())) {
    return {
      status: 400,
      reason: `${where}: Sec-WebSocket-Key must be 16 bytes in base64 (RFC 6455 section 4.1); connect with a WebSocket client`,
    };
  }
  // RFC 6455 section 4.1: the version MUST be 13. The ws library also takes 8 (hybi-08, a draft
  // before the RFC), which both gateways refuse as any other version, with the one they speak.
  const version = req.headers["sec-websocket-version"];
  if (version !== "13") {
    return {
      status: 400,
      reason: `${where}: Sec-WebSocket-Version ${JSON.stringify(version ?? "")} is not supported; use 13`,
      headers: { "Sec-WebSocket-Version": "13" },
    };
  }
  const protocols = req.headers["sec-websocket-protocol"];
  const problem = protocols === undefined ? undefined : protocolsProblem(protocols);
  if (problem) {
    return {
      status: 400,
      reason: `${where}: Sec-WebSocket-Protocol has ${problem}; offer distinct subprotocols separated by commas, such as "chat, token.abc"`,
    };
  }
  return undefined;
}
