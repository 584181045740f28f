/**
 * The WebSocket gateway of one socket: an HTTP server on 127.0.0.1 that upgrades connections once
 * the connect handler accepts them, turns frames into message events, and reports every way a
 * connection ends (client close, server close, dropped TCP) as a disconnect event.
 */
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { WebsocketEventResponse } from "@nitric-like/contracts/websockets";
import {
  type AnswerSink,
  type AuthorizerRegistry,
  AWS_DELIVERY_ENVELOPE_BYTES,
  AWS_MAX_MESSAGE_BYTES,
  addRoom,
  awsConnectReplies,
  awsOpeningSendProblem,
  awsReplyTooLarge,
  BurstLog,
  boundaryMessage,
  type ConnectionInfo,
  clientErrorRefusal,
  connectEvent,
  connectRefusal,
  dict,
  guard,
  HandlerError,
  type HandlerRegistry,
  keptQuery,
  LATE_CONNECT_NOTE,
  lateConnectAbandoned,
  lateConnectReason,
  MAX_BUFFERED_BYTES,
  MAX_KEPT_QUERY_VALUES,
  MAX_PENDING_PONGS,
  notReadingReason,
  Opening,
  offeredProtocols,
  openFilesProblem,
  originProblem,
  parseQuery,
  pingFloodReason,
  poisonCloseReason,
  protocolCloseReason,
  refuseRequest,
  type SocketBackend,
  unansweredStatus,
  WS_PIECE_BOUNDS,
  wireQuery,
} from "@nitric-like/provider-kit";
import {
  DEFAULT_LIMITS,
  type Logger,
  ROUTE_PROPERTY,
  routeByKey,
  type SocketLimits,
  selectRoute,
  type TrafficEvent,
} from "@nitric-like/spec";
import * as wsLib from "ws";
import { WebSocket, WebSocketServer } from "ws";
import { checkAwsSend, keepAwsFrameRules } from "./aws-rules.js";
import { FlowBudget, type FlowConnection, type FlowGateway } from "./flow.js";
import {
  ageReason,
  checkSendSize,
  handshakeProblem,
  idleReason,
  largestOpeningHold,
  openingOverflowLine,
  rateReason,
  replyTooLarge,
  tooManyReason,
  totalQueuedReason,
  upgradeTimeoutReason,
} from "./limits.js";

/** The longest header of a frame the gateway sends (unmasked, with a 64-bit length: RFC 6455 5.2). */
const MAX_FRAME_HEADER_BYTES = 10;

/** Pings every connection this often and drops the ones that did not answer the last ping. */
const HEARTBEAT_MS = 30_000;
/** How long stop() waits for clients to answer the 1001 close before cutting them off. */
const CLOSE_GRACE_MS = 500;
/**
 * How long a client has to answer a close the gateway sends (the app's close(), a limit's) before
 * it is cut off, instead of ws's 30 s: meanwhile it is gone to the app (see open()), its disconnect
 * event waits and it holds its place under maxConnections. API Gateway ends a connection at once
 * when it is deleted.
 */
export const CLOSE_ANSWER_MS = 1000;

/** A JSON escape's start (`\u`): a key written with escapes may still name a route's property. */
const ESCAPE = Buffer.from("\\u");

/**
 * A message the gateway reads for its route counts against the rate limit once per this many
 * bytes, on top of once as a message: reading costs the gateway's thread up to about 0.7 ms per
 * 128 KB (json-scan.ts), so at the default 1,000 messages/s one client could take most of it with
 * 128 KB messages; counted so, it gets 111 of them a second, under a tenth of the thread.
 */
export const ROUTE_READ_BYTES = 16 * 1024;

/** Gateway settings. */
export interface GatewayOptions {
  /** The port to listen on; 0 picks a free one. */
  port: number;
  /** The address to listen on. @default "127.0.0.1" */
  host?: string;
  /** Message size, idle time, age, connection count and message rate (see @nitric-like/spec's limits). */
  limits: SocketLimits;
  /** The provider's totals, shared by its gateways. @default a budget of this gateway's own, with the default totals */
  flow?: FlowBudget;
  /** Keep API Gateway's rules (`compat: aws`, see aws-rules.ts). @default false */
  awsRules?: boolean;
  /** The sockets' authorizers, asked before the connect handler. @default none */
  authorizers?: AuthorizerRegistry;
}

/** The subprotocol an authorizer accepted, kept on the upgrade request for handleProtocols. */
const ACCEPTED_PROTOCOL = Symbol("acceptedProtocol");
type AuthorizedRequest = IncomingMessage & { [ACCEPTED_PROTOCOL]?: string };

/**
 * What the gateway keeps of an open connection besides its socket. A class rather than an object
 * literal: every connection has the same fields from the start, so they share one shape.
 */
class Connection implements FlowConnection {
  /** When the client last sent a message or ping (Date.now()), for the idle timeout. */
  lastActive: number;
  /** The token bucket of the message rate limit: tokens left, and when it was last refilled. */
  tokens: number;
  refilledAt: number;
  alive = true;
  /** Messages handed to the handler, for the rate limit's close reason. */
  handled = 0;
  /** Set once a limit closed the connection: later frames are dropped and nothing is logged again. */
  limited = false;
  /**
   * Under compat: aws, messages the client sent ahead of a frame that broke API Gateway's rules,
   * which ws delivers after that frame's header was read (they came in the same chunk): handled
   * still, as API Gateway routes them.
   */
  owed = 0;
  /** Set once one of its listeners threw (see connectionFailed): logged once, closed with 1011. */
  failed = false;
  /** Messages given to the handler and not yet answered, and their bytes (inbound backpressure). */
  pendingMessages = 0;
  pendingBytes = 0;
  /** True while the gateway does not read this connection (its bounds or the total are reached). */
  paused = false;
  /** Handled messages whose handler failed or did not answer, for the rate limit's close reason. */
  unanswered = 0;
  /** Set when the rate limit closes it: the close waits until every handled message is answered. */
  rateLimited = false;
  /** Set once a message of it was read for its route (counted per ROUTE_READ_BYTES too), for the rate limit's reason. */
  routeRead = false;
  /** True while its TCP connection counts against maxConnections (given back when it closes). */
  counted = false;
  queued = 0;

  constructor(
    readonly gateway: Gateway,
    readonly ws: WebSocket,
    readonly info: ConnectionInfo,
    burst: number,
    now: number,
  ) {
    this.lastActive = now;
    this.tokens = burst;
    this.refilledAt = now;
  }

  get flow(): FlowGateway {
    return this.gateway;
  }
}

/** A message waiting for its handler: the context its answer comes back with. */
class InFlight {
  constructor(
    readonly c: Connection,
    readonly bytes: number,
  ) {}
}

/** Where a gateway keeps what it knows of a TCP connection before (and after) it is upgraded. */
const ARRIVAL = Symbol("arrival");
interface Arrival {
  gateway: Gateway;
  /** False for a connection accepted when the socket already had maxConnections: its upgrade gets 429. */
  counted: boolean;
  /** Set once a plain HTTP request on it was answered (426): its timeout ends it without a log line. */
  answered: boolean;
}
type ArrivingSocket = Socket & { [ARRIVAL]?: Arrival | undefined };

/** A TCP connection closed: it no longer counts. One function for all (no closure per socket). */
function socketGone(this: ArrivingSocket): void {
  const arrival = this[ARRIVAL];
  if (arrival) arrival.gateway.departed(this, arrival);
}

/** A close reason cut to the 123 bytes a close frame allows (RFC 6455 section 5.5). */
function clip(reason: string): string {
  return Buffer.byteLength(reason) <= 123
    ? reason
    : Buffer.from(reason)
        .subarray(0, 123)
        .toString("utf8")
        .replace(/\uFFFD$/, "");
}

/**
 * Sends a client a close frame and cuts it off if it has not answered within CLOSE_ANSWER_MS
 * (terminate() does nothing to a connection that closed meanwhile).
 */
function closeClient(ws: WebSocket, code: number, reason: string): void {
  ws.close(code, reason);
  setTimeout(() => ws.terminate(), CLOSE_ANSWER_MS).unref();
}

/** Wraps protobuf bytes as a Buffer without copying, so ws sends them as they are. */
function view(data: Uint8Array): Buffer {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

interface FrameOptions {
  fin: boolean;
  opcode: number;
  mask: boolean;
  readOnly: boolean;
  rsv1: boolean;
}
/** ws's framing: the ws package exports its Sender, which @types/ws does not declare. */
const { Sender } = wsLib as unknown as { Sender: { frame(data: Buffer, options: FrameOptions): Buffer[] } };

/**
 * A whole frame in one Buffer, built with ws's own framing (Sender.frame: FIN, the opcode, the
 * payload length; unmasked, as a server's frames are; permessage-deflate is off on this gateway's
 * server): header and payload together, so a client costs one socket write. A broadcast builds it
 * once for all its clients; a send or reply to one client builds it when the payload is small
 * (see sendOne).
 */
export function frameOf(data: Uint8Array, binary: boolean): Buffer {
  const list = Sender.frame(data instanceof Buffer ? data : view(data), {
    fin: true,
    opcode: binary ? 2 : 1,
    mask: false,
    readOnly: false,
    rsv1: false,
  });
  return list.length === 1 ? (list[0] as Buffer) : Buffer.concat(list);
}

/** What ws keeps of a connection that the gateway writes frames through: its socket and its Sender. */
interface WsInternals {
  _socket: Duplex;
  _sender: { _state: number; _firstFragment: boolean; _extensions: Record<string, unknown> };
  /** Pongs ws has queued in answer to pings and not yet written (see MAX_PENDING_PONGS). */
  _pendingAutoPongs: number;
}

/**
 * True when a frame of frameOf() may be written straight to the socket ws owns, where ws itself
 * would write it (Sender.sendFrame): the connection is open and ws's Sender is idle (no send of
 * its own waits in its queue, no fragmented message is under way) with no extension negotiated.
 * Written there, the frame counts in ws.bufferedAmount and keeps its place among ws's own writes.
 * ws 8's internals: the broadcast tests check that clients get exactly what ws.send() gives them.
 */
function writable(ws: WebSocket): boolean {
  const { _sender } = ws as unknown as WsInternals;
  return (
    ws.readyState === WebSocket.OPEN &&
    _sender._state === 0 &&
    _sender._firstFragment &&
    _sender._extensions["permessage-deflate"] === undefined
  );
}

/**
 * Sends a frame built by frameOf() to one client of a broadcast, or, when the socket is not
 * writable(), goes through ws.send() with the payload, in ws's order. Why: ws.send() frames and
 * writes per client (a header, cork, two writes, uncork, writev), 2-3 µs of JavaScript a client
 * before the kernel's write; this is about 0.6 µs (--cpu-prof, broadcasts to 10,000).
 */
function sendFrame(ws: WebSocket, frame: Buffer, data: Uint8Array, binary: boolean): void {
  if (writable(ws)) (ws as unknown as WsInternals)._socket.write(frame);
  else ws.send(data, { binary });
}

/**
 * The largest payload a send or reply copies into one frame Buffer (frameOf) to write it once: the
 * frame then fits in half of Node's 8 KB Buffer pool, so it is a slice of the pool, not an
 * allocation of its own. Larger payloads go through ws.send(), which writes header and payload
 * without copying.
 */
const ONE_WRITE_MAX = 4000;

/**
 * Sends one message to one client: a small payload as one write of a whole frame (frameOf), not
 * ws.send()'s cork, two writes and writev. Measured on a raw ws echo server, 50 clients: 0.7 µs of
 * its 10.7 µs of CPU per echo (8 alternating pairs).
 */
function sendOne(ws: WebSocket, data: Uint8Array, binary: boolean): void {
  if (data.byteLength <= ONE_WRITE_MAX && writable(ws))
    (ws as unknown as WsInternals)._socket.write(frameOf(data, binary));
  else ws.send(data instanceof Buffer ? data : view(data), { binary });
}

/** Random bytes for connection ids, drawn 256 ids at a time: a randomBytes call costs ~15 µs, a tenth of an upgrade. */
let idBytes = Buffer.alloc(0);
let idAt = 0;

function connectionId(): string {
  // 9 random bytes: 12 base64url characters, like API Gateway's connection ids.
  if (idAt + 9 > idBytes.length) {
    idBytes = randomBytes(9 * 256);
    idAt = 0;
  }
  const id = idBytes.toString("base64url", idAt, idAt + 9);
  idAt += 9;
  return id;
}

/**
 * Query parameters with every value of each, as the contract carries them: decoded once, as API
 * Gateway decodes them (parseQuery: `+` a space, a malformed escape kept as sent), then
 * percent-encoded again (wireQuery), so an SDK's decoding gives exactly that value and never fails.
 */
export function rawQuery(url: string): Record<string, { value: string[] }> {
  return wireQuery(parseQuery(url));
}

/** Request headers from Node's flat [name, value, ...] list: names lower-cased, every value kept in order. */
export function headerValues(rawHeaders: readonly string[]): Record<string, { value: string[] }> {
  // The names are the client's (a "__proto__" header): a record that inherits nothing (dict()).
  const out = dict<{ value: string[] }>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase();
    const entry = out[name];
    if (entry) entry.value.push(rawHeaders[i + 1] as string);
    else out[name] = { value: [rawHeaders[i + 1] as string] };
  }
  return out;
}

/**
 * The URL a connection's record keeps: the request's, or, when its query has more than
 * MAX_KEPT_QUERY_VALUES values, one with the values keptQuery() keeps (the connect handler and
 * the authorizer get them all, from the request). Names and values are encoded again (values as the contract carries them).
 */
function keptUrl(url: string): string {
  const at = url.indexOf("?");
  if (at < 0) return url;
  let parts = 1;
  for (let i = url.indexOf("&", at); i >= 0 && parts <= MAX_KEPT_QUERY_VALUES; i = url.indexOf("&", i + 1)) parts++;
  if (parts <= MAX_KEPT_QUERY_VALUES) return url;
  const kept = keptQuery(rawQuery(url));
  const pairs: string[] = [];
  for (const name of Object.keys(kept)) {
    for (const value of kept[name]?.value ?? []) pairs.push(`${encodeURIComponent(name)}=${value}`);
  }
  return `/?${pairs.join("&")}`;
}

/** The most header lines a connection's record keeps (the connect handler and the authorizer get every one). */
export const MAX_KEPT_HEADER_LINES = 100;

/** Where a gateway's socket keeps its connection, for the listeners below. */
const CONNECTION = Symbol("connection");
type Tagged = WebSocket & { [CONNECTION]: Connection };

/** Header names, and the values of these headers, are shared between connections (see intern()). */
const SHARED_VALUES = new Set([
  "host",
  "upgrade",
  "connection",
  "origin",
  "user-agent",
  "sec-websocket-version",
  "sec-websocket-extensions",
  "sec-websocket-protocol",
  "accept-encoding",
  "accept-language",
  "cache-control",
  "pragma",
]);
const interned = new Map<string, string>();
const MAX_INTERNED = 4096;

/**
 * One copy of a string that most connections repeat ("Upgrade", "websocket", the Host...): 10,000
 * connections kept some 120,000 header strings, about 4.5 MB, nearly all of them alike. Bounded:
 * past MAX_INTERNED distinct strings, new ones are kept as they are.
 */
function intern(value: string): string {
  const found = interned.get(value);
  if (found !== undefined) return found;
  if (interned.size < MAX_INTERNED) interned.set(value, value);
  return value;
}

/** A request's flat header list, its first MAX_KEPT_HEADER_LINES lines, with their repeated strings shared. */
function sharedHeaders(rawHeaders: readonly string[]): string[] {
  const length = Math.min(rawHeaders.length - (rawHeaders.length % 2), 2 * MAX_KEPT_HEADER_LINES);
  const out = new Array<string>(length);
  for (let i = 0; i + 1 < length; i += 2) {
    const name = rawHeaders[i] as string;
    const value = rawHeaders[i + 1] as string;
    out[i] = intern(name);
    out[i + 1] = value.length <= 256 && SHARED_VALUES.has(name.toLowerCase()) ? intern(value) : value;
  }
  return out;
}

/**
 * What the gateway keeps of an open connection: its request's URL and Node's flat header list,
 * parsed into query and headers only when asked (a listing, a lookup by id). Keeping them parsed
 * would cost about 1 KB per connection, 10 MB for 10,000 idle ones.
 */
class ConnectionRecord implements ConnectionInfo {
  constructor(
    readonly connectionId: string,
    readonly connectedAt: number,
    private readonly url: string,
    private readonly rawHeaders: readonly string[],
    readonly remoteAddress: string,
  ) {}
  /** The identity the socket's authorizer gave it, JSON-encoded; empty when none. */
  auth = "";
  get query(): Record<string, { value: string[] }> {
    return parseQuery(this.url);
  }
  get headers(): Record<string, { value: string[] }> {
    return headerValues(this.rawHeaders);
  }
}

/**
 * A socket's errors end it (ws and the refusals handle the rest). Defined out here, not as an
 * arrow inside upgrade(): the socket keeps this listener for as long as it is open, and a closure
 * made there would keep upgrade()'s whole scope alive with it, the request and the buffer its bytes
 * were read into included (about 2.5 KB per open connection, measured with heap snapshots).
 */
function ignoreSocketError(): void {}

/**
 * The client's address. Node caches it on the socket as an {address, family, port} object with a
 * string of its own, which an open connection would keep for nothing (about 80 bytes each, the
 * record keeps the interned address): the cache is dropped, and Node asks the handle again if
 * anything reads remoteAddress later.
 */
function remoteAddressOf(socket: Socket): string {
  const address = intern(socket.remoteAddress ?? "");
  (socket as Socket & { _peername?: unknown })._peername = undefined;
  return address;
}

/** What the gateway keeps for a connection beyond its socket: its rooms and its state. */
interface Extras {
  rooms: Set<string> | undefined;
  /** JSON text; "" when none. */
  state: string;
}

/** The gateway of one socket. */
export class Gateway implements SocketBackend, FlowGateway {
  private readonly server: Server;
  private readonly wss: WebSocketServer;
  private readonly connections = new Map<string, Connection>();
  /**
   * Rooms, room name to the ids in it, and each connection's rooms and state: held here in the
   * provider, so they outlive a restart of the service, and end with the connection (forget()).
   */
  private readonly rooms = new Map<string, Set<string>>();
  private readonly extras = new Map<string, Extras>();
  /**
   * Connections whose authorizer or connect handler is still running. To the app they are already
   * connected (they can be sent to, looked up, closed); what they are sent waits, bounded by what
   * may wait for a client at once (largestOpeningHold: all of it is sent as the connection opens).
   */
  private readonly opening = new Map<string, Opening>();
  /** Connections whose authorizer is running: not connected yet (see authorize()), their ids taken. */
  private readonly authorizing = new Set<string>();
  private heartbeat: NodeJS.Timeout | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private draining = false;
  /** The provider's inbound and outbound totals. */
  readonly flow: FlowBudget;
  /** TCP connections that count against maxConnections (from accept to close). */
  private counted = 0;
  /** Connections still to send their upgrade request, with when they were accepted (in that order). */
  private readonly arriving = new Map<ArrivingSocket, number>();
  private arrivalSweeper: NodeJS.Timeout | undefined;
  private readonly tooManyLog: BurstLog;
  private readonly lateLog: BurstLog;
  private readonly timeoutLog: BurstLog;
  /** Connections refused because too many wait for the socket's authorizer. */
  private readonly busyLog: BurstLog;
  /** Events failed because their service waits for a file change (each client's would say the same). */
  private readonly waitingLog: BurstLog;
  /** The token bucket refills this many tokens per millisecond. */
  private readonly tokensPerMs: number;
  private warnedNoConnect = false;
  private warnedNoProtocol = false;
  private readonly origins = new Set<string>();
  /** The socket's message routes, from the spec (socket.route(action, ...)); see message(). */
  private routes: ReadonlySet<string> = new Set();
  /** The JSON property (or dotted path of them) that selects a message's route (the socket's routeBy). */
  private routeBy = ROUTE_PROPERTY;
  /**
   * `"<key>"` as bytes, the last name of routeBy (`"type"` for `meta.type`): a message without
   * them (or an escape) selects no route, unread.
   */
  private routeKey = Buffer.from(`"${ROUTE_PROPERTY}"`);
  private port = 0;
  /**
   * Sees every frame in and out and every open and close (the dashboard). Undefined while nobody
   * looks, and then the message path costs one comparison: no event object, no decoding.
   */
  observer: ((event: TrafficEvent) => void) | undefined = undefined;

  constructor(
    readonly name: string,
    private readonly options: GatewayOptions,
    private readonly handlers: HandlerRegistry,
    private readonly logger: Logger,
  ) {
    this.tokensPerMs = options.limits.messagesPerSecond / 1000;
    const { limits } = options;
    this.flow = options.flow ?? new FlowBudget(DEFAULT_LIMITS.maxPendingBytesTotal, DEFAULT_LIMITS.maxQueuedBytesTotal);
    const since = (n: number) => ` (${n} refused since the last report)`;
    this.tooManyLog = new BurstLog(logger, "warn", since);
    this.lateLog = new BurstLog(logger, "warn", since);
    this.timeoutLog = new BurstLog(logger, "error", (n) => ` (${n} timed out since the last report)`);
    this.busyLog = new BurstLog(logger, "error", since);
    this.waitingLog = new BurstLog(logger, "error", (n) => ` (${n} events failed so since the last report)`);
    // The ws library closes a connection whose frames it refuses (too big, bad UTF-8, broken
    // framing) without a reason: its sockets here give a close the reason its code stands for.
    class GatewaySocket extends WebSocket {
      override close(code?: number, reason?: string | Buffer): void {
        super.close(code, reason ?? protocolCloseReason(code, limits.maxMessageBytes));
        // A connection paused for backpressure must read its client's close frame to finish.
        if (this.isPaused) this.resume();
      }

      // The gateway's events reach its connection straight from emit(), with no listener per
      // socket and event: five listeners on each socket would cost about 0.5 KB per connection (a
      // closure each, and an events object with five keys), 5 MB for 10,000 idle ones.
      override emit(event: string | symbol, ...args: unknown[]): boolean {
        const c = (this as unknown as Partial<Tagged>)[CONNECTION];
        if (c !== undefined) {
          switch (event) {
            case "message":
              c.gateway.message(c, args[0] as Buffer, args[1] as boolean);
              return true;
            case "pong":
              c.alive = true;
              return true;
            case "ping":
              c.lastActive = Date.now();
              // ws has queued this ping's pong already.
              if ((this as unknown as WsInternals)._pendingAutoPongs >= MAX_PENDING_PONGS) c.gateway.pingFlood(c);
              return true;
            case "error":
              c.gateway.failed(c, args[0] as Error);
              // An "error" nobody listens to would throw.
              if (this.listenerCount("error") > 0) super.emit(event, ...args);
              return true;
            case "close":
              c.gateway.closed(c, args[0] as number, args[1] as Buffer);
              break;
          }
        }
        return super.emit(event, ...args);
      }
    }
    // The boundary of a connection's listeners: what GatewaySocket.emit calls (message, close...)
    // and throws would escape through ws's parser into the socket's "data" event and end the
    // process. Here it closes that one connection with 1011 instead (see connectionFailed).
    class BoundedSocket extends GatewaySocket {
      override emit(event: string | symbol, ...args: unknown[]): boolean {
        try {
          return super.emit(event, ...args);
        } catch (error) {
          const c = (this as unknown as Partial<Tagged>)[CONNECTION];
          if (c === undefined) throw error;
          c.gateway.connectionFailed(c, String(event), error);
          // A close still reaches the socket's own listeners.
          return event === "close" ? WebSocket.prototype.emit.call(this, event, ...args) : true;
        }
      }
    }
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: options.limits.maxMessageBytes,
      ...WS_PIECE_BOUNDS,
      perMessageDeflate: false,
      // The gateway keeps its own map of connections.
      clientTracking: false,
      WebSocket: BoundedSocket,
      // The subprotocol echoed in the 101: the one the authorizer accepted, none when it accepted
      // none; without an authorizer, the client's first (the ws library's default).
      handleProtocols: (protocols: Set<string>, req: IncomingMessage) => {
        const accepted = (req as AuthorizedRequest)[ACCEPTED_PROTOCOL];
        if (accepted === "") this.acceptedNoProtocol(protocols);
        if (accepted !== undefined) return accepted === "" ? false : accepted;
        const first = protocols.values().next();
        return first.done ? false : first.value;
      },
    });
    this.server = createServer((req, res) => this.plainRequest(req, res));
    this.server.on("connection", (socket: Socket) => this.connectionListener(socket));
    this.server.on("request", (req: IncomingMessage) => this.answeredPlain(req.socket));
    this.server.on("upgrade", (req, socket, head) => this.upgradeListener(req, socket, head));
    this.server.on("clientError", (error: NodeJS.ErrnoException, socket) => this.clientErrorListener(error, socket));
  }

  /** A TCP connection accepted: it counts against maxConnections from now (see arrived). */
  private connectionListener(socket: Socket): void {
    guard(
      () => this.arrived(socket),
      (error) => {
        this.logger.error(this.failure("accepting a connection", error, "closed it"));
        socket.destroy();
      },
    );
  }

  // The boundaries of the listeners that serve a client. Whatever one of them throws ends that one
  // request (500) or connection (1011) with one log line; escaping, it would end the process, every
  // socket, service and the dashboard with it (a "?__proto__=1" once did).

  /** A request that is not an upgrade: 426 and how to connect. */
  private plainRequest(_req: IncomingMessage, res: ServerResponse): void {
    guard(
      () => {
        const body = `this is the websocket "${this.name}"; connect with a WebSocket client, such as: npx wscat -c ${this.url}\n`;
        res.writeHead(426, {
          "Content-Type": "text/plain; charset=utf-8",
          Upgrade: "websocket",
          Connection: "Upgrade",
        });
        res.end(body);
      },
      (error) => {
        this.logger.error(this.failure("answering a plain HTTP request", error, "answered it with 500"));
        if (!res.headersSent) res.writeHead(500, { "Content-Type": "text/plain; charset=utf-8" });
        res.end();
      },
    );
  }

  /** An upgrade request: until the 101 is sent, a failure answers it with 500. */
  private upgradeListener(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    guard(
      () => this.upgrade(req, socket, head),
      (error) => {
        const message = this.failure("handling an upgrade request", error, "refused it with 500");
        this.logger.error(message);
        refuseRequest(
          socket,
          500,
          `websocket "${this.name}": internal error; try again, and report it if it persists\n`,
        );
      },
    );
  }

  /** Bytes Node could not parse as HTTP: refused with the status their error stands for. */
  private clientErrorListener(error: NodeJS.ErrnoException, socket: Duplex): void {
    guard(
      () => {
        const { status, reason } = clientErrorRefusal(`websocket "${this.name}"`, error);
        this.refuse(socket, status, `${reason}\n`);
      },
      (failure) => {
        this.logger.error(this.failure("refusing a malformed request", failure, "closed its socket"));
        socket.destroy();
      },
    );
  }

  /** One of an open connection's listeners threw: that connection is closed with 1011, logged once. */
  connectionFailed(c: Connection, event: string, error: unknown): void {
    const id = c.info.connectionId;
    if (event === "close") {
      this.logger.error(this.failure(`handling the close of connection ${id}`, error, "forgot the connection"));
      return;
    }
    const first = !c.failed;
    c.failed = true;
    c.limited = true;
    if (first) this.logger.error(this.failure(`handling a ${event} of connection ${id}`, error, "closed it with 1011"));
    if (c.ws.readyState === WebSocket.OPEN) c.ws.close(1011, "internal error; connect again");
  }

  private failure(serving: string, error: unknown, outcome: string): string {
    return boundaryMessage(`websocket "${this.name}"`, serving, error, outcome);
  }

  /** Refuses an upgrade, and shows the refusal to the observer (the dashboard's log). */
  private refuse(socket: Duplex, status: number, reason: string, headers?: Record<string, string>): void {
    refuseRequest(socket, status, reason, undefined, headers);
    if (this.observer !== undefined)
      this.observer({ type: "refused", socket: this.name, status, reason: reason.trim(), at: Date.now() });
  }

  /** The limits this gateway applies. */
  get limits(): Readonly<SocketLimits> {
    return this.options.limits;
  }

  /** The URL clients connect to. */
  get url(): string {
    const host = this.options.host ?? "127.0.0.1";
    // Bound to every interface: this machine is still reached at 127.0.0.1.
    const shown = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
    return `ws://${shown}:${this.port}`;
  }

  /** Starts listening, on 127.0.0.1 unless `host` says otherwise. */
  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.options.port, this.options.host ?? "127.0.0.1", () => {
        this.server.off("error", reject);
        resolve();
      });
    }).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "EADDRINUSE") {
        throw Object.assign(
          new Error(
            `websocket "${this.name}": port ${this.options.port} is already in use; pick another under websockets.${this.name}.port in the project file, or run with --random-ports`,
            { cause: error },
          ),
          { userFacing: true },
        );
      }
      throw error;
    });
    const address = this.server.address();
    this.port = typeof address === "object" && address ? address.port : this.options.port;
    const openFiles = openFilesProblem(this.name, this.options.limits);
    if (openFiles !== undefined) this.logger.warn(openFiles);
    this.heartbeat = setInterval(() => this.beat(), HEARTBEAT_MS);
    this.heartbeat.unref();
    // One sweep for every connection's idle and age limits, a tenth of the shorter one (10 ms to 1 s):
    // no timer per connection.
    const { idleTimeoutMs, maxConnectionAgeMs } = this.options.limits;
    const every = Math.max(10, Math.min(1000, Math.min(idleTimeoutMs, maxConnectionAgeMs) / 10));
    this.sweeper = setInterval(() => this.sweepLimits(), every);
    this.sweeper.unref();
    const { upgradeTimeoutMs } = this.options.limits;
    this.arrivalSweeper = setInterval(() => this.sweepArrivals(), Math.max(10, Math.min(1000, upgradeTimeoutMs / 10)));
    this.arrivalSweeper.unref();
  }

  /**
   * A TCP connection was accepted: it counts against maxConnections from now, whatever it sends
   * (or does not), and has upgradeTimeout to send its upgrade request. One accepted when the socket
   * is full is not counted; its upgrade request is answered 429.
   */
  private arrived(socket: ArrivingSocket): void {
    const counted = this.counted < this.options.limits.maxConnections;
    if (counted) this.counted++;
    socket[ARRIVAL] = { gateway: this, counted, answered: false };
    socket.on("close", socketGone);
    this.arriving.set(socket, Date.now());
  }

  /** A TCP connection closed. For socketGone only. */
  departed(socket: ArrivingSocket, arrival: Arrival): void {
    if (arrival.counted) this.counted--;
    arrival.counted = false;
    this.arriving.delete(socket);
  }

  /**
   * The 101 is sent and ws has the socket, with error and close listeners of its own: the two the
   * upgrade needed come off, and the count against maxConnections moves to the connection, given
   * back when ws reports the close (closed()). Per open connection that is two listener arrays
   * and an arrival record fewer, about 180 bytes (heap snapshots of 10,000 idle connections).
   */
  private adopt(socket: ArrivingSocket, c: Connection): void {
    socket.off("error", ignoreSocketError);
    const arrival = socket[ARRIVAL];
    if (arrival === undefined) return;
    socket.off("close", socketGone);
    socket[ARRIVAL] = undefined;
    c.counted = arrival.counted;
  }

  /** A plain HTTP request was answered (426): the connection is no longer suspect, only idle. */
  private answeredPlain(socket: ArrivingSocket): void {
    const arrival = socket[ARRIVAL];
    if (arrival) arrival.answered = true;
  }

  /**
   * Ends the connections that did not send their upgrade request in time (a slowloris client holds
   * a connection by sending it a byte at a time): 408, logged once per burst.
   */
  private sweepArrivals(): void {
    if (this.arriving.size === 0) return;
    const deadline = Date.now() - this.options.limits.upgradeTimeoutMs;
    for (const [socket, at] of this.arriving) {
      // In the order they came: the first one still in time ends the search.
      if (at > deadline) return;
      this.arriving.delete(socket);
      if (socket[ARRIVAL]?.answered) {
        socket.destroy();
        continue;
      }
      const reason = upgradeTimeoutReason(this.name, this.options.limits);
      this.lateLog.note(`${reason}: refused a connection with 408`);
      this.refuse(socket, 408, reason);
    }
  }

  /**
   * The upgrade request arrived: the connection is no longer timed. False when it was accepted over
   * maxConnections, refused here with 429 (logged once per burst).
   */
  private admitted(socket: Duplex): boolean {
    const s = socket as ArrivingSocket;
    this.arriving.delete(s);
    if (s[ARRIVAL]?.counted !== false) return true;
    const reason = tooManyReason(this.name, this.options.limits);
    this.tooManyLog.note(`${reason}: refused a connection with 429`);
    this.refuse(socket, 429, reason, { "Retry-After": "1" });
    return false;
  }

  private sweepLimits(): void {
    const now = Date.now();
    const { idleTimeoutMs, maxConnectionAgeMs } = this.options.limits;
    for (const c of this.connections.values()) {
      if (c.limited) continue;
      if (now - c.info.connectedAt >= maxConnectionAgeMs) this.limitClose(c, 1001, ageReason(this.options.limits));
      // A connection the gateway does not read (backpressure) is not idle: what it sends waits unread.
      else if (c.paused) c.lastActive = now;
      else if (now - c.lastActive >= idleTimeoutMs) this.limitClose(c, 1001, idleReason(this.options.limits));
    }
  }

  /** Closes a connection for a limit it hit, logging it once. */
  private limitClose(c: Connection, code: number, reason: string): void {
    c.limited = true;
    this.logger.warn(`websocket "${this.name}": closed connection ${c.info.connectionId} (${code}): ${reason}`);
    closeClient(c.ws, code, clip(reason));
  }

  /** Refuses new connections with 503 from now on (stop() drains in-flight handlers meanwhile). */
  drain(): void {
    this.draining = true;
  }

  private beat(): void {
    for (const c of this.connections.values()) {
      // Its pong cannot be read while the gateway does not read it (backpressure): judged once read again.
      if (c.paused) {
        c.alive = true;
        continue;
      }
      if (!c.alive) {
        c.ws.terminate();
        continue;
      }
      c.alive = false;
      c.ws.ping();
    }
  }

  /**
   * The message routes the spec gives this socket, and the property that selects them: a text
   * message that selects one (selectRoute, as API Gateway selects on `$request.body.<routeBy>`)
   * goes to that route's handler.
   */
  setRoutes(routes: Iterable<string>, routeBy = ROUTE_PROPERTY): void {
    this.routes = new Set(routes);
    this.routeBy = routeBy;
    this.routeKey = Buffer.from(`"${routeByKey(routeBy)}"`);
  }

  /** Adds browser origins allowed to connect ("*" for any); with none, any origin may. */
  allowOrigins(origins: Iterable<string>): void {
    for (const o of origins) this.origins.add(o);
  }

  /**
   * Refuses an upgrade request, or asks the socket's authorizer (if it has one) and the connect
   * handler, and then upgrades it or refuses it.
   */
  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> | undefined {
    socket.on("error", ignoreSocketError);
    if (this.refusedAtOnce(req, socket)) return;
    const info = this.newRecord(req);
    const authorizers = this.options.authorizers;
    if (authorizers?.isExpected(this.name)) return this.authorize(authorizers, req, socket, head, info);
    return this.connect(req, socket, head, info);
  }

  /**
   * Refuses, before any handler runs, a request that is not a proper upgrade, one that comes while
   * the gateway drains, one over maxConnections and one from an origin not allowed; true when it did.
   */
  private refusedAtOnce(req: IncomingMessage, socket: Duplex): boolean {
    const bad = handshakeProblem(this.name, this.url, req);
    if (bad) {
      this.refuse(socket, bad.status, bad.reason, bad.headers);
      return true;
    }
    if (this.draining) {
      this.refuse(socket, 503, `websocket "${this.name}": the server is shutting down; connect again once it is back`, {
        "Retry-After": "1",
      });
      return true;
    }
    if (!this.admitted(socket)) return true;
    const problem = originProblem(this.name, req.headers.origin, this.origins);
    if (problem) {
      this.logger.warn(problem);
      this.refuse(socket, 403, problem);
      return true;
    }
    return false;
  }

  /** The record of a new connection, under an id no live connection has. */
  private newRecord(req: IncomingMessage): ConnectionRecord {
    let id = connectionId();
    // 72 random bits make a clash unheard of, but an id must never name two live connections.
    while (this.connections.has(id) || this.opening.has(id) || this.authorizing.has(id)) id = connectionId();
    return new ConnectionRecord(
      id,
      Date.now(),
      intern(keptUrl(req.url ?? "/")),
      sharedHeaders(req.rawHeaders),
      remoteAddressOf(req.socket),
    );
  }

  /**
   * An authorizer let in a client that offered subprotocols and accepted none: the 101 names none,
   * so the client fails the connection (RFC 6455 section 4.1; browsers and ws do) while the app
   * sees it connect and drop. Said once per socket, with the fix; not naming them, as a
   * subprotocol may carry a token.
   */
  private acceptedNoProtocol(offered: Set<string>): void {
    if (offered.size === 0 || this.warnedNoProtocol) return;
    this.warnedNoProtocol = true;
    this.logger.warn(
      `websocket "${this.name}": accepted a client that offered subprotocols without choosing one of them, so the client fails the connection (browsers do); have authorize return one of req.protocols as protocol (said once)`,
    );
  }

  /** Asks the socket's authorizer: refuses the request with its status, or goes on to connect with its identity. */
  private authorize(
    authorizers: AuthorizerRegistry,
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    info: ConnectionRecord,
  ): Promise<void> {
    const id = info.connectionId;
    const protocols = offeredProtocols(req.headers["sec-websocket-protocol"]);
    // Not connected until its authorizer lets it in: on AWS API Gateway has no connection before
    // $connect, so a send, join or setState naming the id the authorizer was given is not_found
    // there, and is here (nothing of it is kept, so nothing outlives a refusal). Its id stays
    // taken meanwhile (newRecord).
    this.authorizing.add(id);
    // A client that hangs up meanwhile is noticed at once (see connect() on reading before the
    // 101): its request is not sent if it still waits for the authorizer's service, and its
    // connect handler does not run whatever the authorizer answers, as nothing of it was stored
    // and nobody is there to let in. API Gateway documents no more than that a connection exists
    // once $connect succeeds; running the handler would only have the app store an id and then
    // delete it at the disconnect, twice the work a flood of hang-ups makes it do.
    const left = new AbortController();
    const onGone = () => left.abort();
    socket.once("end", onGone);
    socket.once("close", onGone);
    socket.resume();
    return authorizers
      .authorize(
        {
          socketName: this.name,
          connectionId: id,
          queryParams: rawQuery(req.url ?? "/"),
          headers: headerValues(req.rawHeaders),
          protocols,
          remoteAddress: info.remoteAddress,
        },
        left.signal,
      )
      .then((decision) => {
        this.authorizing.delete(id);
        socket.off("end", onGone);
        socket.off("close", onGone);
        if (left.signal.aborted || socket.destroyed || !socket.readable) {
          socket.destroy();
          return;
        }
        if (!decision.allow) {
          if (decision.busy) {
            // A flood's refusals: one line a burst, and the client may try again in a moment.
            this.busyLog.note(`${decision.reason}: refused a connection with 503`);
            this.refuse(socket, decision.status, decision.reason, { "Retry-After": "1" });
            return;
          }
          // Its service waits for a file change: every client's refusal would say the same.
          if (decision.serviceWaiting) this.waitingLog.note(`${decision.reason}; refused a connection with 503`);
          // Said with the socket and the connection: an SDK's reason is only "authorizer failed"
          // (its own line above says why), which alone names neither.
          else if (decision.status >= 500)
            this.logger.error(
              `websocket "${this.name}" refused connection ${id} with ${decision.status}: ${decision.reason.replace(`websocket "${this.name}": `, "")}`,
            );
          this.refuse(socket, decision.status, decision.reason);
          return;
        }
        info.auth = decision.identityJson;
        (req as AuthorizedRequest)[ACCEPTED_PROTOCOL] = decision.protocol;
        return this.connect(req, socket, head, info);
      });
  }

  /** Runs the connect handler, if a service handles connect, then upgrades the request or refuses it. */
  private connect(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    info: ConnectionRecord,
  ): Promise<void> | undefined {
    const id = info.connectionId;
    if (!this.handlers.isExpected(this.name, "connect")) {
      if (!this.warnedNoConnect) {
        this.warnedNoConnect = true;
        this.logger.warn(`websocket "${this.name}": no service handles connect events; accepting every connection`);
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(info, ws, socket, undefined));
      return;
    }
    const opening = new Opening(info, largestOpeningHold(this.flow.maxQueuedBytesTotal));
    let gone = false;
    const onGone = () => {
      gone = true;
    };
    // A client sends nothing before the 101 (RFC 6455 section 4.1), so reading now loses nothing
    // and is the only way to notice its FIN: the upgrade left the socket paused, and HTTP servers
    // are half-open, so a client that gives up would otherwise look connected until the upgrade.
    socket.once("end", onGone);
    socket.once("close", onGone);
    socket.resume();
    this.opening.set(id, opening);
    // Every header for the connect handler: the connection's record keeps fewer (MAX_KEPT_HEADER_LINES).
    const event = connectEvent(this.name, info, rawQuery(req.url ?? "/"), headerValues(req.rawHeaders));
    // A handler past the handler timeout still runs, and may store the connection as it ends:
    // its client is refused with 504 at once, as one that left while it ran (below).
    const late = {
      answered: (response: WebsocketEventResponse) => this.connectEnded(id, info, response),
      abandoned: (error: HandlerError) => {
        this.logger.warn(lateConnectAbandoned(error.message, id));
        this.connectEnded(id, info, undefined);
      },
    };
    return this.handlers.dispatch(this.name, "connect", event, "", late).then(
      (response) => {
        socket.off("end", onGone);
        socket.off("close", onGone);
        this.opening.delete(id);
        const refusal = connectRefusal(this.name, response);
        if (refusal) {
          this.forget(id);
          this.refuse(socket, refusal.status, refusal.reason);
          return;
        }
        if (gone || socket.destroyed || !socket.readable) {
          // The client left while its connect handler ran: tell the app, which may have stored it.
          socket.destroy();
          this.disconnected(id, 1006, "", info.auth);
          return;
        }
        this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(info, ws, socket, response, opening));
      },
      (error: unknown) => {
        socket.off("end", onGone);
        socket.off("close", onGone);
        const timedOut = error instanceof HandlerError && error.failure === "timeout";
        // Timed out, the connection stays opening to the app until its handler ends (connectEnded),
        // and what it is sent meanwhile is dropped: it will never open.
        if (timedOut) opening.refused();
        else {
          this.opening.delete(id);
          this.forget(id);
        }
        const { status, reason } = unansweredStatus(error);
        if (error instanceof HandlerError && error.serviceWaiting)
          this.waitingLog.note(`${reason}; refused it with ${status}`);
        else this.logger.error(timedOut ? `${reason}${LATE_CONNECT_NOTE}` : reason);
        this.observeError(id, "connect", reason);
        this.refuse(socket, status, `${reason}\n`);
      },
    );
  }

  /**
   * The connect handler of a connection refused for its timeout (504) has ended: it answered late
   * (`response`), or the wait for it was abandoned. Accepting, it may have stored the connection,
   * so the disconnect handler runs for it (1006), as for a client that left while its connect
   * handler ran; refusing or failing, nothing runs, as for a refusal in time.
   */
  private connectEnded(id: string, info: ConnectionInfo, response: WebsocketEventResponse | undefined): void {
    this.opening.delete(id);
    if (response === undefined || connectRefusal(this.name, response)) {
      this.forget(id);
      return;
    }
    this.disconnected(id, 1006, lateConnectReason(this.handlers.timeoutMs), info.auth ?? "");
  }

  /** The 101 is sent: the connection opens. A failure from here on closes it with 1011. */
  private accept(
    info: ConnectionInfo,
    ws: WebSocket,
    socket: Duplex,
    response: WebsocketEventResponse | undefined,
    opening?: Opening,
  ): void {
    guard(
      () => this.opened(info, ws, socket, response, opening),
      (error) => {
        const c = this.connections.get(info.connectionId);
        if (c) this.connectionFailed(c, "open", error);
        else {
          this.logger.error(this.failure(`opening connection ${info.connectionId}`, error, "closed it with 1011"));
          ws.close(1011, "internal error; connect again");
        }
      },
    );
  }

  private opened(
    info: ConnectionInfo,
    ws: WebSocket,
    socket: Duplex,
    response: WebsocketEventResponse | undefined,
    opening?: Opening,
  ): void {
    const id = info.connectionId;
    const connection = new Connection(this, ws, info, this.options.limits.messageBurst, Date.now());
    this.connections.set(id, connection);
    // From here on the socket's events go to this connection (see GatewaySocket.emit): before
    // anything below may throw, so that a connection closed for it (1011) is forgotten and
    // gives back its place under maxConnections.
    (ws as Tagged)[CONNECTION] = connection;
    this.adopt(socket as ArrivingSocket, connection);
    if (this.observer !== undefined)
      this.observer({ type: "open", socket: this.name, connectionId: id, at: Date.now() });
    if (this.options.awsRules)
      keepAwsFrameRules(ws, (code, reason, before) => {
        if (connection.limited) return; // closed for another limit already: nothing more is owed
        this.limitClose(connection, code, reason);
        connection.owed = before;
      });
    // The connect handler's replies are the connection's first frames (the contract's reply path),
    // then what it sent with SendMessage while it ran, before any frame a later event causes.
    let last = 0;
    if (response) {
      // On AWS a connect reply goes out through PostToConnection, which refuses one over 128 KB,
      // in the one event that delivers what was sent during connect, which holds at most 1 MB.
      const replies = this.options.awsRules
        ? awsConnectReplies(this.name, id, opening?.deliveryBytes ?? AWS_DELIVERY_ENVELOPE_BYTES, response.replies)
        : { kept: response.replies, dropped: [] };
      for (const line of replies.dropped) this.logger.error(line);
      for (const r of replies.kept) {
        const tooLarge = replyTooLarge(this.name, id, r.data.byteLength, this.flow.maxQueuedBytesTotal);
        if (tooLarge) this.logger.error(tooLarge);
        else {
          this.reply(id, ws, r.data, r.binary);
          last = r.data.byteLength;
        }
      }
    }
    if (opening) {
      for (const f of opening.frames) {
        ws.send(view(f.data), { binary: f.binary });
        last = f.data.byteLength;
      }
      if (opening.close) closeClient(ws, opening.close.code, opening.close.reason);
    }
    this.sent(connection, last);
  }

  private reply(id: string, ws: WebSocket, data: Uint8Array, binary: boolean): void {
    // The fast decoder's replies are Buffers already (views on the answer's bytes).
    sendOne(ws, data, binary);
    if (this.observer !== undefined) this.observe("out", id, data, binary);
  }

  /**
   * Something was sent to a connection, `last` bytes of payload the last of it: what waits for it
   * counts toward its own bound (8 MB) and the provider's total; over either, the client is closed
   * as not reading. A message alone (nothing else waits, none is over 8 MB or the total:
   * largestMessage) never trips either, however little of it the kernel took: its client has not
   * yet had a chance to read it.
   */
  private sent(c: Connection, last = 0): void {
    const queued = c.ws.bufferedAmount;
    if (queued > MAX_BUFFERED_BYTES && queued > last + MAX_FRAME_HEADER_BYTES) this.notReading(c);
    this.flow.track(c, queued);
  }

  private observe(direction: "in" | "out", connectionId: string, data: Uint8Array, binary: boolean): void {
    this.observer?.({ type: "message", direction, socket: this.name, connectionId, data, binary, at: Date.now() });
  }

  /** Shows the observer (the dashboard's log) that a connection's event was not handled. */
  private observeError(connectionId: string, event: "connect" | "message" | "disconnect", message: string): void {
    this.observer?.({ type: "error", socket: this.name, connectionId, event, message, at: Date.now() });
  }

  /** A socket error (ws closes the connection): logged once. For GatewaySocket only. */
  failed(c: Connection, error: Error): void {
    if (c.limited) return;
    c.limited = true;
    this.logger.warn(`websocket "${this.name}": closed connection ${c.info.connectionId}: ${error.message}`);
  }

  /** A connection closed: the disconnect event. For GatewaySocket only. */
  closed(c: Connection, code: number, reason: Buffer): void {
    if (c.counted) {
      c.counted = false;
      this.counted--;
    }
    const id = c.info.connectionId;
    this.connections.delete(id);
    this.flow.forget(c);
    const text = reason.toString("utf8");
    if (this.observer !== undefined)
      this.observer({ type: "close", socket: this.name, connectionId: id, code, reason: text, at: Date.now() });
    this.disconnected(id, code, text, c.info.auth ?? "");
  }

  /** A message from a client: the rate limit, then the message event. For GatewaySocket only. */
  message(c: Connection, data: Buffer, binary: boolean): void {
    if (c.limited) {
      if (c.owed === 0) return;
      c.owed--;
    }
    // A socket with routes reads a text message that may be a JSON object with the property (its
    // first byte "{" or JSON's white space, and the property's quoted name or an escape among its
    // bytes) for its route; other sockets, and other messages, pay a comparison or a byte search.
    let read = false;
    if (this.routes.size > 0 && !binary) {
      const first = data[0];
      read =
        (first === 0x7b || first === 0x20 || first === 0x0a || first === 0x0d || first === 0x09) &&
        (data.includes(this.routeKey) || data.includes(ESCAPE));
    }
    // The rate limit, a token bucket: a few arithmetic operations, no timer and no allocation. A
    // message read for its route counts once more per ROUTE_READ_BYTES it has: reading is the
    // gateway's own work, on its one thread, and grows with the size a client chooses.
    const now = Date.now();
    const tokens = c.tokens + (now - c.refilledAt) * this.tokensPerMs;
    const burst = this.options.limits.messageBurst;
    const extra = read ? Math.floor(data.byteLength / ROUTE_READ_BYTES) : 0;
    if (extra > 0) c.routeRead = true;
    c.tokens = Math.min(tokens, burst) - 1 - extra;
    c.refilledAt = now;
    c.lastActive = now;
    if (c.tokens < 0) {
      this.rateLimit(c);
      return;
    }
    c.handled++;
    const id = c.info.connectionId;
    if (this.observer !== undefined) this.observe("in", id, data, binary);
    this.pending(c, data.byteLength);
    const route = read ? (selectRoute(data.toString("utf8"), this.routes, this.routeBy) ?? "") : "";
    this.handlers.deliver(
      this.name,
      "message",
      {
        socketName: this.name,
        connectionId: id,
        auth: c.info.auth ?? "",
        websocketEvent: { case: "message", value: { body: data, binary } },
        extras: this.stateFor(id),
      },
      this.messageSink,
      new InFlight(c, data.byteLength),
      route,
    );
  }

  /**
   * Inbound backpressure: a message goes to its handler, and while a connection has
   * maxPendingMessages or maxPendingBytes unanswered, or the provider's total is reached, the
   * gateway stops reading it: its bytes wait in TCP buffers, and then in its client.
   */
  private pending(c: Connection, bytes: number): void {
    c.pendingMessages++;
    c.pendingBytes += bytes;
    this.flow.take(bytes);
    if (c.paused) return;
    if (this.overOwnBounds(c)) this.pause(c);
    else if (this.flow.inboundFull) {
      this.pause(c);
      this.flow.wait(c);
    }
  }

  private overOwnBounds(c: Connection): boolean {
    const { maxPendingMessages, maxPendingBytes } = this.options.limits;
    return c.pendingMessages >= maxPendingMessages || c.pendingBytes >= maxPendingBytes;
  }

  private pause(c: Connection): void {
    c.paused = true;
    c.ws.pause();
  }

  /** A message's handler answered or failed: its bytes come back, and its connection may be read again. */
  private settled(f: InFlight): void {
    const { c, bytes } = f;
    c.pendingMessages--;
    c.pendingBytes -= bytes;
    this.flow.release(bytes);
    if (c.rateLimited) {
      if (c.pendingMessages === 0) this.rateLimitClose(c);
      return;
    }
    if (c.paused && !this.resumeIfUnder(c) && !this.overOwnBounds(c) && c.ws.readyState === WebSocket.OPEN)
      this.flow.wait(c);
  }

  /** Reads a paused connection again if neither its bounds nor the total are reached. For FlowBudget. */
  resumeIfUnder(c: FlowConnection): boolean {
    const conn = c as Connection;
    if (!conn.paused || conn.rateLimited) return true;
    if (this.overOwnBounds(conn) || this.flow.inboundFull) return false;
    conn.paused = false;
    conn.ws.resume();
    return true;
  }

  /** Bytes waiting to be sent to a connection. For FlowBudget. */
  queuedNow(c: FlowConnection): number {
    const { ws } = c as Connection;
    return ws.readyState === WebSocket.CLOSED ? 0 : ws.bufferedAmount;
  }

  /** Closes the client with the most waiting while the provider's total is over. For FlowBudget. */
  shedSlowest(c: FlowConnection, totalBound: number): void {
    // Cut off at once, not a second later: the total is over now, and its bytes go with it.
    this.cutOff(c as Connection, totalQueuedReason(c.queued, totalBound), 0);
  }

  /**
   * A client over its message rate: nothing more is read or handled from it, and it is closed once
   * the messages already handled are answered, so the close reason's count is true: their replies
   * go out before the close frame (or the reason says how many got none).
   */
  private rateLimit(c: Connection): void {
    c.limited = true;
    c.rateLimited = true;
    if (!c.paused) this.pause(c);
    if (c.pendingMessages === 0) this.rateLimitClose(c);
  }

  /**
   * A client that pings faster than it takes its pongs: closed with the reason (1008). Once closing,
   * ws answers no more pings, so nothing more piles up for it.
   */
  pingFlood(c: Connection): void {
    if (c.limited || c.ws.readyState !== WebSocket.OPEN) return;
    this.limitClose(c, 1008, pingFloodReason());
  }

  private rateLimitClose(c: Connection): void {
    if (c.ws.readyState !== WebSocket.OPEN) return;
    this.limitClose(
      c,
      1008,
      rateReason(this.options.limits, c.handled, c.unanswered, c.routeRead ? ROUTE_READ_BYTES / 1024 : undefined),
    );
  }

  /** Hears the message events' answers, for every connection of this gateway (no closure per message). */
  private readonly messageSink: AnswerSink<InFlight> = {
    answered: (f, response) => {
      const { c } = f;
      const { ws } = c;
      let last = 0;
      for (const r of response.replies) {
        // On AWS a reply over API Gateway's 128 KB is not sent (the runtime logs it), so here too.
        if (this.options.awsRules && r.data.byteLength > AWS_MAX_MESSAGE_BYTES) {
          this.logger.error(awsReplyTooLarge(this.name, c.info.connectionId, r.data.byteLength));
          continue;
        }
        // One that could not wait for its client within its bound is not sent either, and logged.
        const tooLarge = replyTooLarge(
          this.name,
          c.info.connectionId,
          r.data.byteLength,
          this.flow.maxQueuedBytesTotal,
        );
        if (tooLarge) {
          this.logger.error(tooLarge);
          continue;
        }
        this.reply(c.info.connectionId, ws, r.data, r.binary);
        last = r.data.byteLength;
      }
      // A handler that threw answers "rejected" (its SDK printed why on the service's stderr).
      if (
        this.observer !== undefined &&
        response.websocketResponse.case === "connectionResponse" &&
        response.websocketResponse.value.reject
      )
        this.observeError(c.info.connectionId, "message", `the message handler of websocket "${this.name}" failed`);
      if (response.replies.length > 0) this.sent(c, last);
      this.settled(f);
    },
    failed: (f, error) => {
      const { c } = f;
      const id = c.info.connectionId;
      const { failure, message } = error;
      c.unanswered++;
      this.observeError(id, "message", message);
      if ((failure === "none" || failure === "unavailable") && c.ws.readyState !== WebSocket.OPEN) {
        // Its first such failure closed it (below), said once: the messages that waited with it
        // fail for the same reason and would only repeat the line, one per message.
      } else if (failure === "none") {
        this.logger.error(`${message}; closed connection ${id}`);
        c.ws.close(1011, `no message handler for websocket "${this.name}"`.slice(0, 123));
      } else if (failure === "unavailable") {
        if (error.serviceWaiting) this.waitingLog.note(`${message}; closed it with 1013`);
        else this.logger.error(`${message}; closed connection ${id}`);
        c.ws.close(1013, "message handler unavailable, try again later");
      } else if (failure === "poison") {
        // Its service died each time it got this message: the client that sent it goes, nobody else.
        this.logger.error(`${message}; closed the connection with 1011`);
        c.ws.close(1011, poisonCloseReason(error.service ?? "", error.route));
      } else if (failure === "timeout") {
        // A handler that is stuck times out every message it was sent: one line per burst.
        this.timeoutLog.note(message);
      } else {
        this.logger.error(message);
      }
      this.settled(f);
    },
  };

  private disconnected(id: string, code: number, reason: string, auth: string): void {
    const extras = this.stateFor(id);
    this.forget(id);
    if (!this.handlers.isExpected(this.name, "disconnect")) return;
    this.handlers
      .dispatch(this.name, "disconnect", {
        socketName: this.name,
        connectionId: id,
        auth,
        websocketEvent: { case: "disconnection", value: { code, reason } },
        extras,
      })
      .then(
        (response) => {
          if (response.websocketResponse.case === "connectionResponse" && response.websocketResponse.value.reject)
            this.observeError(id, "disconnect", `the disconnect handler of websocket "${this.name}" failed`);
        },
        (error: unknown) => {
          const message = error instanceof Error ? error.message : String(error);
          if (error instanceof HandlerError && error.serviceWaiting) this.waitingLog.note(message);
          else this.logger.error(message);
          this.observeError(id, "disconnect", message);
        },
      );
  }

  /**
   * An open connection: one whose close has begun (the client's, the app's or a limit's) is gone
   * to the app from then on, as send() already found it, though its disconnect event waits for
   * the close to finish. Otherwise a lookup, a listing, a room's members, join and setState would
   * go on finding a connection that send() calls not_found (for up to CLOSE_ANSWER_MS when its
   * client does not answer the close).
   */
  private open(id: string): Connection | undefined {
    const c = this.connections.get(id);
    return c !== undefined && c.ws.readyState === WebSocket.OPEN ? c : undefined;
  }

  /** True when the connection is open, or opening (its connect handler is running). */
  has(id: string): boolean {
    return this.open(id) !== undefined || this.opening.has(id);
  }

  /**
   * Sends one frame; returns false when the connection is neither open nor opening, and when this
   * send closed it with 1008, its client not reading (too much waited to be sent to it): the frame
   * may never reach it and the connection is gone, which a service's send is told as the next
   * send would be (not connected), as API Gateway answers 410 to a post to a closing connection.
   */
  send(id: string, data: Uint8Array, binary: boolean): boolean {
    if (this.options.awsRules) checkAwsSend(this.name, data);
    checkSendSize(this.name, data, this.flow.maxQueuedBytesTotal);
    const opening = this.opening.get(id);
    if (opening) {
      // On AWS what an opening connection is sent travels in one asynchronous invocation's event.
      if (this.options.awsRules) {
        const problem = awsOpeningSendProblem(this.name, id, opening.deliveryBytes, data);
        if (problem) throw problem;
      }
      this.keep(opening, data, binary);
      return true;
    }
    const c = this.connections.get(id);
    if (!c || c.ws.readyState !== WebSocket.OPEN) return false;
    sendOne(c.ws, data, binary);
    if (this.observer !== undefined) this.observe("out", id, data, binary);
    this.sent(c, data.byteLength);
    return c.ws.readyState === WebSocket.OPEN;
  }

  /**
   * Keeps a frame for a connection whose connect handler is still running: past largestOpeningHold,
   * what was kept is dropped and the connection is closed with 1008 as soon as it
   * opens, logged once.
   */
  private keep(opening: Opening, data: Uint8Array, binary: boolean): void {
    const id = opening.info.connectionId;
    const outcome = opening.keep(data, binary);
    if (outcome === "kept") {
      if (this.observer !== undefined) this.observe("out", id, data, binary);
    } else if (outcome === "overflowed") {
      this.logger.warn(openingOverflowLine(this.name, id, this.flow.maxQueuedBytesTotal));
    }
  }

  /** Closes a connection whose client does not read what it is sent, and cuts it off if it does not answer. */
  private notReading(c: Connection): void {
    this.cutOff(c, notReadingReason());
  }

  private cutOff(c: Connection, reason: string, graceMs = 1000): void {
    // A client closed for its rate still waits, open, for its replies: it can still be cut off.
    if (c.limited && !(c.rateLimited && c.ws.readyState === WebSocket.OPEN)) return;
    this.limitClose(c, 1008, reason);
    // Its close frame waits behind what it does not read: give it a second, then drop it.
    if (graceMs === 0) c.ws.terminate();
    else setTimeout(() => c.ws.terminate(), graceMs).unref();
  }

  /**
   * Closes one connection; returns false when it is neither open nor opening, nor closing already
   * (a close of a closing connection is the close under way).
   */
  close(id: string, code: number, reason: string): boolean {
    const opening = this.opening.get(id);
    if (opening) {
      opening.requestClose(code, reason);
      return true;
    }
    const c = this.connections.get(id);
    if (!c) return false;
    closeClient(c.ws, code, reason);
    return true;
  }

  /** What is known about an open connection. */
  info(id: string): ConnectionInfo | undefined {
    return this.open(id)?.info ?? this.opening.get(id)?.info;
  }

  /** Every open connection. */
  list(): ConnectionInfo[] {
    const out: ConnectionInfo[] = [];
    for (const c of this.connections.values()) if (c.ws.readyState === WebSocket.OPEN) out.push(c.info);
    return out;
  }

  /** Sends one frame to every open connection but the excepted ones; returns how many got it. */
  broadcast(data: Uint8Array, binary: boolean, except: ReadonlySet<string>): number {
    if (this.options.awsRules) checkAwsSend(this.name, data);
    checkSendSize(this.name, data, this.flow.maxQueuedBytesTotal);
    let sent = 0;
    // The frame is built once; each client costs one write of the same Buffer (see sendFrame).
    const frame = frameOf(data, binary);
    const excepting = except.size > 0;
    for (const c of this.connections.values()) {
      const { ws } = c;
      if (ws.readyState !== WebSocket.OPEN) continue;
      const id = c.info.connectionId;
      if (excepting && except.has(id)) continue;
      sendFrame(ws, frame, data, binary);
      if (this.observer !== undefined) this.observe("out", id, data, binary);
      this.sent(c, data.byteLength);
      sent++;
    }
    return sent;
  }

  /** The state an event carries: undefined (nothing on the wire) when the connection has none. */
  private stateFor(id: string): { stateJson: string } | undefined {
    const state = this.extras.get(id)?.state;
    return state ? { stateJson: state } : undefined;
  }

  /** A connection ended (or was refused): it leaves its rooms, and its state goes. */
  private forget(id: string): void {
    const extras = this.extras.get(id);
    if (!extras) return;
    this.extras.delete(id);
    for (const room of extras.rooms ?? []) {
      const members = this.rooms.get(room);
      members?.delete(id);
      if (members?.size === 0) this.rooms.delete(room);
    }
  }

  /** Adds a connection (open, or opening) to a room; undefined when it is neither. */
  join(id: string, room: string): boolean | undefined {
    if (!this.has(id)) return undefined;
    let extras = this.extras.get(id);
    if (!extras) {
      extras = { rooms: undefined, state: "" };
      this.extras.set(id, extras);
    }
    extras.rooms ??= new Set();
    if (!addRoom(extras.rooms, this.name, id, room)) return false;
    let members = this.rooms.get(room);
    if (!members) {
      members = new Set();
      this.rooms.set(room, members);
    }
    members.add(id);
    return true;
  }

  /** Removes a connection from a room; true when it was in it. */
  leave(id: string, room: string): boolean {
    const extras = this.extras.get(id);
    if (!extras?.rooms?.delete(room)) return false;
    const members = this.rooms.get(room);
    members?.delete(id);
    if (members?.size === 0) this.rooms.delete(room);
    return true;
  }

  /**
   * The open connections in a room. One whose connect handler joined it and still runs is left
   * out until it opens, as a room broadcast leaves it out, and as on AWS, where its membership is
   * written once the handler has answered.
   */
  members(room: string): string[] {
    const out: string[] = [];
    for (const id of this.rooms.get(room) ?? []) if (this.open(id) !== undefined) out.push(id);
    return out;
  }

  /** A connection's rooms (none once it is neither open nor opening). */
  roomsOf(id: string): string[] {
    if (!this.has(id)) return [];
    return [...(this.extras.get(id)?.rooms ?? [])];
  }

  /** Sends one frame to every open connection in a room but the excepted ones; how many got it. */
  broadcastToRoom(room: string, data: Uint8Array, binary: boolean, except: ReadonlySet<string>): number {
    if (this.options.awsRules) checkAwsSend(this.name, data);
    checkSendSize(this.name, data, this.flow.maxQueuedBytesTotal);
    const members = this.rooms.get(room);
    if (!members) return 0;
    let sent = 0;
    const frame = frameOf(data, binary);
    for (const id of members) {
      if (except.has(id)) continue;
      const c = this.connections.get(id);
      if (!c || c.ws.readyState !== WebSocket.OPEN) continue;
      sendFrame(c.ws, frame, data, binary);
      if (this.observer !== undefined) this.observe("out", id, data, binary);
      this.sent(c, data.byteLength);
      sent++;
    }
    return sent;
  }

  /** Replaces a connection's state; false when it is neither open nor opening. */
  setState(id: string, json: string): boolean {
    if (!this.has(id)) return false;
    const extras = this.extras.get(id);
    if (extras) extras.state = json;
    else if (json !== "") this.extras.set(id, { rooms: undefined, state: json });
    return true;
  }

  /** A connection's state; undefined when it is neither open nor opening. */
  getState(id: string): string | undefined {
    if (!this.has(id)) return undefined;
    return this.extras.get(id)?.state ?? "";
  }

  /** The number of open connections. */
  get size(): number {
    return this.connections.size;
  }

  /** Closes every connection with 1001 (going away); the disconnect events follow. */
  async closeAll(): Promise<void> {
    const all = [...this.connections.values()];
    for (const c of all) c.ws.close(1001, "server shutting down");
    const deadline = Date.now() + CLOSE_GRACE_MS;
    while (this.connections.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    for (const c of this.connections.values()) c.ws.terminate();
  }

  /** Stops listening. Call closeAll() first. */
  async stop(): Promise<void> {
    clearInterval(this.heartbeat);
    clearInterval(this.sweeper);
    clearInterval(this.arrivalSweeper);
    this.wss.close();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
