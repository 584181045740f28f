/**
 * A connection between its client's request and its opening, the same on every provider: the
 * connect event its handler gets, what the app sends it while the handler runs (it is already
 * connected as far as the app can tell), and the HTTP status its client gets when it is refused.
 * The providers keep only their I/O: locally the upgrade is held until the handler answers and
 * the 101 carries the connection open; on AWS the answer to `$connect` opens it, after which the
 * runtime delivers what was kept by invoking itself.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { WebsocketEventRequestSchema, WebsocketEventResponse } from "@nitric-like/contracts/websockets";
import { Code, RpcError } from "@nitric-like/rpc";
import { MAX_ROOMS_PER_CONNECTION, tooManyRoomsProblem } from "@nitric-like/spec";
import { AWS_DELIVERY_ENVELOPE_BYTES, awsDeliveryCost } from "./aws-rules.js";
import type { ConnectionInfo } from "./backends.js";
import { HandlerError } from "./handlers.js";

/** One frame sent to a connection. */
export interface Frame {
  data: Uint8Array;
  binary: boolean;
}

/** A close the app asked for. */
export interface CloseRequest {
  code: number;
  reason: string;
}

/** What became of a frame sent to an opening connection (see Opening.keep). */
export type KeepOutcome = "kept" | "overflowed" | "dropped";

/** A size in bytes as "8 MB", "512 KB" or "10 bytes", to one decimal. */
export function byteSize(bytes: number): string {
  const round = (n: number) => Math.round(n * 10) / 10;
  if (bytes >= 1024 * 1024) return `${round(bytes / 1024 / 1024)} MB`;
  if (bytes >= 1024) return `${round(bytes / 1024)} KB`;
  return `${bytes} byte${bytes === 1 ? "" : "s"}`;
}

/**
 * The close reason of an opening connection sent more than `maxBytes` before it opened (local:
 * the lower of 8 MB and limits.maxQueuedBytesTotal). Short enough for a close frame's 123 bytes.
 */
export function openingOverflowReason(maxBytes: number): string {
  return `over ${byteSize(maxBytes)} sent to it before it opened; send less while the connect handler runs`;
}

/**
 * A connection whose connect handler (or authorizer) is still running. What the app sends it waits
 * here, in order, and goes out right after the connection opens, after the connect handler's own
 * replies; a close the app asks for follows them. Refused, the connection drops it all.
 */
export class Opening {
  /** The frames kept, in the order they were sent. */
  frames: Frame[] = [];
  /** The bytes of `frames` and of what they dropped: at most `maxBytes` are kept. */
  bytes = 0;
  /** The close to make once open: the app's (a later one replaces it), or 1008 past `maxBytes`. */
  close: CloseRequest | undefined = undefined;
  /** The size of the event that delivers the frames kept on AWS (aws-rules' awsOpeningSendProblem). */
  deliveryBytes = AWS_DELIVERY_ENVELOPE_BYTES;
  /** Set once its client was refused while its connect handler runs on (see refused()). */
  private clientRefused = false;

  constructor(
    readonly info: ConnectionInfo,
    /** The most bytes kept; past it the frames are dropped and the connection closes with 1008 once open. */
    readonly maxBytes = Number.POSITIVE_INFINITY,
  ) {}

  /**
   * Keeps a frame to send once the connection opens: "kept"; "overflowed" when this frame takes
   * what was sent past `maxBytes`: everything kept is dropped and the close becomes 1008 with
   * openingOverflowReason (the caller logs it, once); "dropped" for every frame after that.
   */
  keep(data: Uint8Array, binary: boolean): KeepOutcome {
    if (this.clientRefused || this.bytes > this.maxBytes) return "dropped";
    this.bytes += data.byteLength;
    if (this.bytes > this.maxBytes) {
      this.frames = [];
      this.close = { code: 1008, reason: openingOverflowReason(this.maxBytes) };
      return "overflowed";
    }
    this.frames.push({ data, binary });
    this.deliveryBytes += awsDeliveryCost(data.byteLength);
    return "kept";
  }

  /**
   * Its client was refused (504: its connect handler passed the handler timeout) while the handler
   * runs on, for as long as it takes: it will never open, so what was kept and what it is sent
   * from now on is dropped at once rather than held (up to `maxBytes` for every such connection).
   */
  refused(): void {
    this.clientRefused = true;
    this.frames = [];
    this.close = undefined;
  }

  /** The app closed it: it is closed as soon as it opens, after the frames it was sent. */
  requestClose(code: number, reason: string): void {
    this.close = { code, reason };
  }
}

/**
 * Adds a room to a connection's rooms: true when it was not in it, false when it was. Throws
 * RESOURCE_EXHAUSTED for a connection in MAX_ROOMS_PER_CONNECTION rooms already.
 */
export function addRoom(rooms: Set<string>, socket: string, connectionId: string, room: string): boolean {
  if (rooms.has(room)) return false;
  if (rooms.size >= MAX_ROOMS_PER_CONNECTION) {
    throw new RpcError(Code.RESOURCE_EXHAUSTED, tooManyRoomsProblem(`websocket "${socket}"`, connectionId));
  }
  rooms.add(room);
  return true;
}

/**
 * The connect event of a connection. `queryParams` are the query as the contract carries it:
 * decoded once and encoded again (wireQuery), as Nitric's SDKs decode them;
 * `headers` every request header, where the connection's record keeps fewer (the local gateway's).
 */
export function connectEvent(
  socket: string,
  info: ConnectionInfo,
  queryParams: Record<string, { value: string[] }>,
  headers: Record<string, { value: string[] }> = info.headers,
): MessageInitShape<typeof WebsocketEventRequestSchema> {
  return {
    socketName: socket,
    connectionId: info.connectionId,
    auth: info.auth ?? "",
    websocketEvent: {
      case: "connection",
      value: { queryParams, headers, remoteAddress: info.remoteAddress, connectedAt: info.connectedAt },
    },
  };
}

/** A refused connection: the HTTP status its client gets, and why (the body). */
export interface ConnectRefusal {
  status: number;
  reason: string;
}

/**
 * What the connect handler's answer means for its client: undefined when it accepts, else the
 * refusal. The handler's HTTP error status is kept (SDKs answer 500 when the handler throws);
 * any other, 0 included, means 403. Without a reason, the reason says who refused.
 */
export function connectRefusal(socket: string, response: WebsocketEventResponse): ConnectRefusal | undefined {
  const answer =
    response.websocketResponse.case === "connectionResponse" ? response.websocketResponse.value : undefined;
  if (!answer?.reject) return undefined;
  return {
    status: answer.status >= 400 && answer.status <= 599 ? answer.status : 403,
    reason: answer.reason || `connection refused by the connect handler of websocket "${socket}"`,
  };
}

/**
 * The close reason of the disconnect event of a connection whose connect handler answered after
 * the handler timeout (`timeoutMs`), accepting it: its client had been refused with 504 (on AWS,
 * by the runtime), so it never opened, but the handler may have stored it.
 */
export function lateConnectReason(timeoutMs: number): string {
  return `connect handler answered after the handler timeout (${timeoutMs / 1000} s); its client was refused with 504`;
}

/**
 * The warning for a connect handler past its timeout that is no longer waited for (the provider
 * stops, or too many wait): `why` is the registry's reason.
 */
export function lateConnectAbandoned(why: string, connectionId: string): string {
  return `${why}; no disconnect runs for connection ${connectionId}, whose connect handler passed the handler timeout and had not ended`;
}

/**
 * What the log adds to a connect handler's timeout: the handler runs on, and what follows it.
 */
export const LATE_CONNECT_NOTE =
  "; its client is refused with 504, and the handler runs on: if it ends accepting, the disconnect handler runs for the connection, so clean up there what connect stored";

/**
 * The HTTP status for an event no handler answered, and why: 504 when its handler timed out, 503
 * when none was there to take it, 500 for anything else (its service went away, no handler).
 */
export function unansweredStatus(error: unknown): ConnectRefusal {
  const failure = error instanceof HandlerError ? error.failure : "gone";
  return {
    status: failure === "timeout" ? 504 : failure === "unavailable" ? 503 : 500,
    reason: error instanceof Error ? error.message : String(error),
  };
}
