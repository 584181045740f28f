/**
 * The API Gateway WebSocket events a function receives (Lambda proxy integration), as AWS documents
 * them, and the pieces of them the contract needs.
 */
import { addValues, dict } from "@nitric-like/provider-kit";

/** An API Gateway WebSocket event. Fields the runtime does not read are left out. */
export interface WebsocketApiEvent {
  requestContext: {
    routeKey: string;
    eventType?: "CONNECT" | "DISCONNECT" | "MESSAGE";
    connectionId: string;
    apiId?: string;
    domainName?: string;
    stage?: string;
    /** Milliseconds since the epoch. */
    connectedAt?: number;
    requestTimeEpoch?: number;
    identity?: { sourceIp?: string; userAgent?: string };
    disconnectStatusCode?: number;
    disconnectReason?: string;
  };
  headers?: Record<string, string | undefined>;
  multiValueHeaders?: Record<string, string[] | undefined>;
  queryStringParameters?: Record<string, string | undefined> | null;
  multiValueQueryStringParameters?: Record<string, string[] | undefined> | null;
  body?: string | null;
  isBase64Encoded?: boolean;
}

/** What the function answers API Gateway. */
export interface WebsocketApiResult {
  statusCode: number;
  body?: string;
  headers?: Record<string, string>;
}

/** A request from the runtime to itself: frames sent during connect, delivered once the connection is open. */
export interface DeliverEvent {
  nitricLike: "deliver";
  socket: string;
  connectionId: string;
  frames: { data: string; binary: boolean }[];
  close?: { code: number; reason: string };
  /**
   * When the connect handler handed the frames over (epoch ms): the delivery waits for the
   * connection to open until DELIVERY_WAIT_MS after it, not after the delivery starts, so one that
   * waited for an execution environment does not poll on for a client long gone.
   */
  at?: number;
}

/** True when the event is a runtime's request to itself. */
export function isDeliverEvent(event: unknown): event is DeliverEvent {
  return (event as { nitricLike?: unknown } | null)?.nitricLike === "deliver";
}

/** True when the event looks like an API Gateway WebSocket event. */
export function isWebsocketEvent(event: unknown): event is WebsocketApiEvent {
  const rc = (event as { requestContext?: { routeKey?: unknown; connectionId?: unknown } } | null)?.requestContext;
  return typeof rc?.routeKey === "string" && typeof rc.connectionId === "string";
}

/** Every value of each name: the multi-valued map when given, else the single-valued one. */
export function multiValues(
  multi: Record<string, string[] | undefined> | null | undefined,
  single: Record<string, string | undefined> | null | undefined,
  lowerCase: boolean,
): Record<string, { value: string[] }> {
  // The names are a client's ("?__proto__=1", a "constructor" header): a record that inherits nothing (dict()).
  const out = dict<{ value: string[] }>();
  const add = (name: string, values: string[]) => addValues(out, lowerCase ? name.toLowerCase() : name, values);
  if (multi) {
    for (const [name, values] of Object.entries(multi)) if (values) add(name, values);
  } else if (single) {
    for (const [name, value] of Object.entries(single)) if (value !== undefined) add(name, [value]);
  }
  return out;
}
