/**
 * The Ampt-style WebSocket interface (`import { ws } from "@nitric-like/sdk/ampt"`), so code
 * written from Ampt's documentation runs: `ws.on("connected" | "disconnected" | "message")` with a
 * SocketConnection, `ws.send`, `ws.close`, `ws.isConnected`. A thin layer over `websocket("ws")`;
 * importing it declares that socket, so a service that only sends or closes through `ws` (no
 * handlers) is granted the socket too, on every provider.
 */
import { NitricLikeError } from "./errors.js";
import type { JsonValue, Payload } from "./internal/data.js";
import { type SendOptions, type Websocket, websocket } from "./resources/websocket.js";

/** The name of the app's one Ampt-style socket. */
export const AMPT_SOCKET_NAME = "ws";

/** What is known about a connection when it connects (empty for other events, as in Ampt). */
export interface SocketConnectionMeta {
  /** When the gateway accepted the connection, in milliseconds since the epoch. */
  connectedAt?: number;
  /** The first value of each query parameter, decoded. */
  queryStringParams?: Record<string, string>;
  /** Every value of each query parameter, decoded. */
  multiValueQueryStringParams?: Record<string, string[]>;
  /** Request headers, names lower case, first value of each. */
  headers?: Record<string, string>;
}

/** A connection, as Ampt hands it to every handler. */
export interface SocketConnection {
  /** The connection's id. */
  readonly connectionId: string;
  /** Metadata: filled in for "connected". */
  readonly meta: SocketConnectionMeta;
  /** Sends to this connection (allowed during "connected": it arrives once the connection is open). */
  send(data: Payload): Promise<void>;
  /** Closes this connection (nothing happens when it is already gone). */
  close(): Promise<void>;
}

/** A message as it arrived, beside the parsed value Ampt-style handlers get. */
export interface RawMessage {
  /** The frame's bytes, exactly as sent. */
  readonly bytes: Uint8Array;
  /** True for a binary frame. */
  readonly binary: boolean;
  /** The bytes as UTF-8 text: the JSON before it was parsed. */
  text(): string;
}

/** The Ampt-style socket interface. */
export interface AmptWs {
  on(event: "connected", handler: (connection: SocketConnection) => unknown): void;
  on(event: "disconnected", handler: (connection: SocketConnection, reason?: string) => unknown): void;
  /**
   * JSON messages arrive parsed; other text as a string; binary frames as bytes (so `data` is
   * `JsonValue | Uint8Array` unless typed: `ws.on<LatLong>("message", ...)`, a type the handler
   * expects, not a check). The third argument (ours, not Ampt's) is the message as it arrived, for
   * the text before parsing.
   */
  on<T = JsonValue | Uint8Array>(
    event: "message",
    handler: (connection: SocketConnection, data: T, raw: RawMessage) => unknown,
  ): void;
  /** Sends a string (text) or an object (JSON); throws when the connection is gone unless told not to. */
  send(connectionId: string, data: Payload, options?: SendOptions): Promise<void>;
  /** Closes one connection, or every open one of a list; ids that are already gone are skipped. */
  close(connectionId: string | string[]): Promise<void>;
  /** True while the connection is open. */
  isConnected(connectionId: string): Promise<boolean>;
}

const firstValues = (map: Record<string, string[]>) => {
  // The names are a client's: no prototype, so "__proto__" stays an own key.
  const out = Object.create(null) as Record<string, string>;
  for (const [k, v] of Object.entries(map)) if (v[0] !== undefined) out[k] = v[0];
  return out;
};

function connection(socket: Websocket, connectionId: string, meta: SocketConnectionMeta): SocketConnection {
  return {
    connectionId,
    meta,
    send: (data) => socket.send(connectionId, data),
    close: () => socket.close([connectionId]),
  };
}

const socket: Websocket = websocket(AMPT_SOCKET_NAME);
const get = () => socket;

function on(event: "connected" | "disconnected" | "message", handler: (...args: never[]) => unknown): void {
  // From JavaScript anything can come here: say so at the call, not as a TypeError at the first event.
  if (event !== "connected" && event !== "disconnected" && event !== "message") {
    throw new NitricLikeError(
      "invalid_argument",
      `ws.on(${JSON.stringify(event)}): unknown event; use "connected", "disconnected" or "message"`,
    );
  }
  if (typeof handler !== "function") {
    throw new NitricLikeError(
      "invalid_argument",
      `ws.on("${event}"): a handler must be a function, got ${handler === null ? "null" : typeof handler}`,
    );
  }
  try {
    register(get(), event, handler as (...args: unknown[]) => unknown);
  } catch (error) {
    // Made in a handler: said as the user wrote it, ws.on("message"), not as the socket under it.
    if (error instanceof NitricLikeError && error.code === "failed_precondition") {
      const why = error.message.slice(error.message.indexOf(":"));
      throw new NitricLikeError("failed_precondition", `ws.on(${JSON.stringify(event)})${why}`);
    }
    throw error;
  }
}

/** Registers an Ampt-style handler on the socket under `ws`. */
function register(
  s: Websocket,
  event: "connected" | "disconnected" | "message",
  call: (...args: unknown[]) => unknown,
): void {
  // Handlers' results are awaited but never replied: Ampt handlers return nothing meaningful.
  if (event === "connected") {
    s.on("connect", async (ctx) => {
      const meta: SocketConnectionMeta = {
        connectedAt: ctx.connectedAt.getTime(),
        queryStringParams: firstValues(ctx.query),
        multiValueQueryStringParams: ctx.query,
        headers: firstValues(ctx.headers),
      };
      await call(connection(s, ctx.connectionId, meta));
    });
  } else if (event === "disconnected") {
    s.on("disconnect", async (ctx) => {
      await call(connection(s, ctx.connectionId, {}), ctx.reason || undefined);
    });
  } else {
    s.on("message", async (ctx) => {
      let data: unknown;
      if (ctx.binary) data = ctx.data;
      else {
        const text = ctx.text();
        try {
          data = JSON.parse(text);
        } catch {
          data = text;
        }
      }
      const raw: RawMessage = { bytes: ctx.data, binary: ctx.binary, text: () => ctx.text() };
      await call(connection(s, ctx.connectionId, {}), data, raw);
    });
  }
}

/** The app's Ampt-style socket. */
export const ws: AmptWs = {
  on: on as AmptWs["on"],
  send: (connectionId, data, options) => get().send(connectionId, data, options),
  close: (connectionId) => get().close(Array.isArray(connectionId) ? connectionId : [connectionId]),
  isConnected: (connectionId) => get().isConnected(connectionId),
};
