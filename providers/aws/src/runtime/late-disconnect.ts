/**
 * The disconnect of a connection whose connect handler answered after its client had been refused
 * (504), handed by the connect handler's function to the function of the service that handles the
 * socket's disconnect (an asynchronous Invoke; the template lets the one invoke the other, and
 * only it). API Gateway opened no connection, so no `$disconnect` comes: this event stands for it.
 *
 * Anyone the function's policy lets invoke it could send one, so the receiving runtime takes it as
 * hostile input: only exactly this shape, for a socket whose disconnect this function handles, a
 * possible connection id, a close reason of the two the runtime writes, an identity and a state
 * that are JSON. It can only ever become a disconnect event (code 1006), never anything else.
 */
import { shownId } from "@nitric-like/provider-kit";
import { connectionStateProblem } from "@nitric-like/spec";

/** The event's marker. */
export const LATE_DISCONNECT = "late-disconnect";

/** What the connect handler's function sends. */
export interface LateDisconnectEvent {
  nitricLike: typeof LATE_DISCONNECT;
  socket: string;
  connectionId: string;
  /** The disconnect's close reason (lateConnectReason, or API Gateway's integration timeout's). */
  reason: string;
  /** The authorizer's identity (JSON), when the socket has an authorizer. */
  auth?: string;
  /** The connection's state (JSON) as the connect handler left it. */
  state?: string;
}

/** The only keys the event may have. */
const KEYS = new Set(["nitricLike", "socket", "connectionId", "reason", "auth", "state"]);

/** The close reasons the runtime gives a late connect's disconnect (handler.ts connect()). */
const REASON =
  /^connect handler answered after (the handler timeout \(\d{1,5}(\.\d{1,3})? s\)|API Gateway's integration timeout); its client was refused with 504$/;

/** Longest connection id (the connections table's sort key limit, as gateway.ts). */
const MAX_ID_BYTES = 1024;

/** Longest identity: what API Gateway's authorizer context can carry is far less. */
const MAX_AUTH_BYTES = 64 * 1024;

/** True when the event says it is a late disconnect (whether it is well formed: lateDisconnectProblem). */
export function isLateDisconnectEvent(event: unknown): boolean {
  return (
    typeof event === "object" &&
    event !== null &&
    Object.hasOwn(event, "nitricLike") &&
    (event as { nitricLike?: unknown }).nitricLike === LATE_DISCONNECT
  );
}

/**
 * Why a late disconnect event is refused, or undefined when it is well formed and names one of
 * `sockets` (those whose disconnect this function handles).
 */
export function lateDisconnectProblem(event: unknown, sockets: ReadonlySet<string>): string | undefined {
  if (typeof event !== "object" || event === null || Array.isArray(event)) return "it is not an object";
  const e = event as Record<string, unknown>;
  const extra = Object.keys(e).filter((k) => !KEYS.has(k));
  if (extra.length > 0) {
    const more = extra.length > 3 ? ` and ${extra.length - 3} more` : "";
    return `it has ${extra.slice(0, 3).map(shownId).join(", ")}${more}, which it may not`;
  }
  if (e.nitricLike !== LATE_DISCONNECT) return "it is not a late disconnect";
  if (typeof e.socket !== "string" || !sockets.has(e.socket))
    return `it names socket ${typeof e.socket === "string" ? shownId(e.socket) : typeof e.socket}, whose disconnect this function does not handle`;
  const id = e.connectionId;
  if (typeof id !== "string" || id === "" || id === "." || id === ".." || Buffer.byteLength(id) > MAX_ID_BYTES)
    return "its connectionId is not a connection id";
  if (typeof e.reason !== "string" || !REASON.test(e.reason))
    return "its reason is not one the runtime gives a late connect's disconnect";
  if (
    e.auth !== undefined &&
    !(typeof e.auth === "string" && Buffer.byteLength(e.auth) <= MAX_AUTH_BYTES && isJson(e.auth))
  )
    return "its auth is not an identity (JSON text)";
  if (e.state !== undefined) {
    if (typeof e.state !== "string" || e.state === "") return "its state is not JSON text";
    const problem = connectionStateProblem("state", e.state);
    if (problem !== undefined) return `its ${problem}`;
  }
  return undefined;
}

function isJson(text: string): boolean {
  if (text === "") return true;
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
