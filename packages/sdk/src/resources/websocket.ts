/**
 * WebSockets: declare a socket, handle its connect, disconnect and message events, and send to or
 * close its connections.
 *
 * Locally (`nitric-like run`) each socket is a gateway on ws://127.0.0.1:<port>; on AWS it is an
 * API Gateway WebSocket API. Handlers, sending and closing behave the same on both.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { LeadingEdgeBatcher } from "@nitric-like/contracts/batcher";
import { type Connection as ConnectionMessage, Connections } from "@nitric-like/contracts/connections";
import { Action, ResourceType } from "@nitric-like/contracts/resources";
import { Rooms } from "@nitric-like/contracts/rooms";
import {
  type ClientMessageSchema,
  type ServerMessage,
  type WebsocketEventRequest,
  WebsocketEventType,
  WebsocketHandler,
  type WebsocketReplySchema,
  Websocket as WebsocketService,
} from "@nitric-like/contracts/websockets";
import {
  allowedOriginsProblem,
  connectionStateProblem,
  roomNameProblem,
  routeByProblem,
  routeNameProblem,
  type WebsocketEvent,
} from "@nitric-like/spec";
import { describeError, NitricLikeError } from "../errors.js";
import {
  decodeSafely,
  encodePayload,
  type IdentityOf,
  markText,
  type Payload,
  type StateOf,
} from "../internal/data.js";
import {
  environment,
  eventHandled,
  eventStarted,
  fatal,
  lateRegistration,
  registeredAfterLoad,
  rpc,
  runtime,
  streamClosed,
  streamOpened,
} from "../internal/runtime.js";
import { type AuthorizeFn, AuthorizerStream, parseIdentity } from "./authorize.js";
import { declare, declaredOnce } from "./declare.js";

/** An event `on()` takes: "connect", "message" or "disconnect". */
export type { WebsocketEvent };

const decoder = new TextDecoder();
const EMPTY = new Uint8Array(0);

/** The Nitric-style request view of an event (`ctx.req`), so Nitric code ports unchanged. */
export interface WebsocketRequest {
  readonly connectionId: string;
  /** The message payload (empty for connect and disconnect); forwarded as it is, a text message stays text. */
  readonly data: Uint8Array;
  /** The query parameters of the connection request (connect only; empty otherwise). */
  readonly query: Record<string, string[]>;
  /** The payload as UTF-8 text. */
  text(): string;
  /** The payload parsed as JSON. */
  json<T = unknown>(): T;
}

/**
 * An open connection and what was known when it connected. `Identity` is the type of `auth`, the
 * socket's (see websocket()).
 */
export interface ConnectionInfo<Identity = unknown> {
  /** The connection's id. */
  readonly id: string;
  /** When the gateway accepted it. */
  readonly connectedAt: Date;
  /** Every value of each query parameter of its connection request, decoded. */
  readonly query: Record<string, string[]>;
  /** Its request headers, names lower case. */
  readonly headers: Record<string, string[]>;
  /** The client's address. */
  readonly remoteAddress: string;
  /** Its User-Agent header, if it sent one. */
  readonly userAgent: string | undefined;
  /** The identity the socket's authorizer gave it; undefined when the socket has none. */
  readonly auth: Identity;
}

/**
 * A connection to act on from a handler: `ctx.connection`. `State` is the type of its state, the
 * socket's (see websocket()).
 */
export interface ConnectionHandle<State = unknown> {
  /** The connection's id. */
  readonly id: string;
  /** Sends to this connection, as socket.send() does. */
  send(data: Payload, options?: SendOptions): Promise<void>;
  /** Closes this connection; a string is the close reason. */
  close(options?: CloseOptions | string): Promise<void>;
  /**
   * The connection's state (any JSON value; undefined when none) as it was when this event was
   * sent, or as this handler last set it: it arrives with every event, no kv read needed.
   */
  readonly state: State | undefined;
  /** Replaces the connection's state, as socket.setState() does; later events carry it. */
  setState(value: State | undefined): Promise<void>;
  /** Adds this connection to a room, as socket.join() does. */
  join(room: string): Promise<boolean>;
  /** Removes this connection from a room, as socket.leave() does. */
  leave(room: string): Promise<boolean>;
  /** The rooms this connection is in, as socket.rooms() does. */
  rooms(): Promise<string[]>;
}

/**
 * What every handler context has. `Identity` is the type of `ctx.auth` and `State` that of
 * `ctx.connection.state`, the socket's (see websocket()).
 */
export interface WebsocketContextBase<Identity = unknown, State = unknown> {
  /** The socket's name. */
  readonly socket: string;
  /** The connection the event is about. */
  readonly connectionId: string;
  /** Nitric-style request view. */
  readonly req: WebsocketRequest;
  /** Nitric-style response: `res.success = false` rejects a connect. */
  readonly res: { success: boolean };
  /** The connection the event is about, to send to or close. */
  readonly connection: ConnectionHandle<State>;
  /**
   * The identity the socket's authorizer gave this connection (`websocket(name, { authorize })`),
   * on every event of it, typed as the authorizer returns it; undefined when the socket has none
   * (typed `unknown` unless declared: `websocket<Identity>(name)`).
   */
  readonly auth: Identity;
}

/** The context of a connect event. */
export interface ConnectContext<Identity = unknown, State = unknown> extends WebsocketContextBase<Identity, State> {
  /** Every value of each query parameter, decoded. */
  readonly query: Record<string, string[]>;
  /** Every value of each request header; names are lower case. */
  readonly headers: Record<string, string[]>;
  /** The client's address. */
  readonly remoteAddress: string;
  /** When the gateway accepted the connection request. */
  readonly connectedAt: Date;
  /** Refuses the connection: the client's upgrade is answered `status` (default 403) with `reason`. */
  reject(reason?: string, status?: number): void;
  /** Queues a message that arrives as the first message once the connection is open. */
  reply(data: Payload): void;
  /** Same as reply(): sending during connect is allowed, unlike Nitric. */
  send(data: Payload): void;
}

/** The context of a message event. */
export interface MessageContext<Identity = unknown, State = unknown> extends WebsocketContextBase<Identity, State> {
  /**
   * The payload, unchanged. The bytes of a text message remember it: passed as they are to
   * send(), reply() or broadcast() they go out as text (a copy or a slice goes out as binary).
   */
  readonly data: Uint8Array;
  /** True when the client sent a binary frame. */
  readonly binary: boolean;
  /** The payload as UTF-8 text. */
  text(): string;
  /** The payload parsed as JSON; throws NitricLikeError `invalid_argument` when it is not JSON. */
  json<T = unknown>(): T;
  /**
   * Answers the sender without a separate send round trip: the frame rides on the event's answer.
   * Returning a value from the handler does the same.
   */
  reply(data: Payload): void;
  /** The route that took the message (`socket.route(action, ...)`); undefined in on("message"). */
  readonly route: string | undefined;
}

/**
 * The context of a message a route took: `json()` is the message object, typed as the route's
 * `T` (`socket.route<{ room: string }>("join", (ctx) => ctx.json().room)`; the type is what the
 * handler expects, not a check), and `route` its action.
 */
export interface RouteContext<T = unknown, Identity = unknown, State = unknown>
  extends Omit<MessageContext<Identity, State>, "json" | "route"> {
  json<U = T>(): U;
  readonly route: string;
}

/** A route's handler: may be async; what it returns (or resolves to) is the reply, as for a message handler. */
export type RouteHandlerFn<T = unknown, Identity = unknown, State = unknown> = (
  ctx: RouteContext<T, Identity, State>,
) => unknown;

/** The context of a disconnect event. */
export interface DisconnectContext<Identity = unknown, State = unknown> extends WebsocketContextBase<Identity, State> {
  /** The close code (1006 when the connection dropped). */
  readonly code: number;
  /** The close reason, if any. */
  readonly reason: string;
}

/** The context type of each event, on a socket whose identity and state are `Identity` and `State`. */
export type WebsocketContext<E extends WebsocketEvent, Identity = unknown, State = unknown> = E extends "connect"
  ? ConnectContext<Identity, State>
  : E extends "message"
    ? MessageContext<Identity, State>
    : DisconnectContext<Identity, State>;

/**
 * A handler: may be async. What a message handler returns (or resolves to), other than
 * `undefined` or the context itself, is replied to the sender as reply() would (a Lambda proxy
 * answer `{ statusCode, body? }` its body alone, as API Gateway sends it); disconnect
 * handlers' return values are ignored, and so are connect handlers' but API Gateway's
 * `{ statusCode }` answer: 400-599 refuses the client as ctx.reject() would (a string `body` the
 * reason), so code written for Lambda refuses whom it refused there.
 */
export type WebsocketHandlerFn<E extends WebsocketEvent, Identity = unknown, State = unknown> = (
  ctx: WebsocketContext<E, Identity, State>,
) => unknown;

/** Options of websocket(); `Identity` is the type of the identity `authorize` gives. */
export interface WebsocketOptions<Identity = unknown> {
  /**
   * Browser origins allowed to connect, such as `["https://app.example.com"]`; `"*"` allows any.
   * A connection request from any other origin is refused with 403 before a handler runs. Requests
   * without an Origin header (not from a browser: wscat, servers) are not checked.
   * Locally the gateway checks; on AWS the $connect handler does. @default any origin
   */
  allowedOrigins?: string[];
  /**
   * Decides who may connect, before the connect handler runs: returns `{ identity, protocol? }`
   * (the identity becomes `ctx.auth` on every later event, at most 8 KB of JSON) or
   * `{ status: 401 | 403, reason }`, which the client gets as its upgrade's answer. One service
   * per socket gives it. Locally the gateway asks it; on AWS it is a Lambda REQUEST authorizer on
   * `$connect`. The identity's type becomes `ctx.auth`'s on every handler of the socket.
   * @default everyone may connect
   */
  authorize?: AuthorizeFn<Identity>;
  /**
   * The JSON property whose string value selects a text message's route
   * (`socket.route(name, ...)`): a top-level one, such as `"type"` for `{"type":"join"}`, or a
   * dotted path into the message, such as `"meta.type"` for `{"meta":{"type":"join"}}` (as the
   * Serverless Framework and SST write it). 1 to 4 names joined by `.`, each a letter or `_` then
   * letters, digits or `_`, at most 64 characters in all; each name is an own property of the
   * object before it (an array, a string or any other value on the way selects no route). API
   * Gateway's route selection expression `$request.body.<routeBy>` on AWS; the local provider
   * selects alike. Services that declare the socket without it agree with the one that gives it;
   * two services giving different ones is an error of `spec`. @default "action"
   */
  routeBy?: string;
}

/** Options of send(). */
export interface SendOptions {
  /**
   * Throw NitricLikeError `not_found` when the connection is gone; false resolves quietly instead
   * (the frame is dropped, as the client is not there to get it). @default true
   */
  throwIfNotConnected?: boolean;
}

/** Options of broadcast(). */
export interface BroadcastOptions {
  /** Connections that do not get the message, such as the sender. @default none */
  except?: string | string[];
  /** Only the connections in this room get it (see join()). @default every connection of the socket */
  room?: string;
}

/** A room of a socket: `socket.room(name)`. Rooms are kept by the provider; see join(). */
export interface Room {
  /** The room's name. */
  readonly name: string;
  /** Adds a connection: socket.join(id, name). */
  join(connectionId: string): Promise<boolean>;
  /** Removes a connection: socket.leave(id, name). */
  leave(connectionId: string): Promise<boolean>;
  /** The ids of the open connections in it. */
  members(): Promise<string[]>;
  /** Sends to every connection in it but `except`: socket.broadcast(data, { room: name, except }). */
  broadcast(data: Payload, options?: { except?: string | string[] }): Promise<number>;
}

/** Options of close(). */
export interface CloseOptions {
  /** The close code sent to the client: 1000 or 3000-4999. @default 1000 */
  code?: number;
  /** The close reason, at most 123 bytes. @default "" */
  reason?: string;
}

const EVENT_TYPES: Record<WebsocketEvent, WebsocketEventType> = {
  connect: WebsocketEventType.Connect,
  disconnect: WebsocketEventType.Disconnect,
  message: WebsocketEventType.Message,
};

type Reply = MessageInitShape<typeof WebsocketReplySchema>;

/**
 * A record for names a client chose (query keys, header names): no prototype, so `?__proto__=1`
 * is `query.__proto__`, an own key like any other, and an absent name reads as undefined.
 */
function clientNames(): Record<string, string[]> {
  return Object.create(null) as Record<string, string[]>;
}

class EventContext implements ConnectContext, MessageContext, DisconnectContext {
  readonly res = { success: true };
  private _connection: ConnectionHandle | undefined;
  replies: Reply[] | undefined;
  rejectReason = "";
  rejectStatus = 0;
  private _query: Record<string, string[]> | undefined;
  private _headers: Record<string, string[]> | undefined;
  private _emptyText: Uint8Array | undefined;
  private _auth: { value: unknown } | undefined;

  constructor(
    private readonly owner: Websocket,
    private readonly event: WebsocketEventRequest,
    /** The route that took a message event, if any. */
    readonly route: string | undefined = undefined,
  ) {}

  get socket(): string {
    return this.owner.name;
  }
  get connection(): ConnectionHandle {
    if (!this._connection) {
      const owner = this.owner;
      const id = this.event.connectionId;
      const extras = this.event.extras;
      let state: unknown;
      let parsed = false;
      this._connection = {
        id,
        send: (data, options) => owner.send(id, data, options),
        close: (options) => owner.close(id, typeof options === "string" ? { reason: options } : options),
        get state() {
          if (!parsed) {
            parsed = true;
            state = extras?.stateJson ? JSON.parse(extras.stateJson) : undefined;
          }
          return state;
        },
        setState: async (value) => {
          await owner.setState(id, value);
          // Kept as JSON gives it back, so this handler reads what the next event will.
          state = value === undefined ? undefined : JSON.parse(JSON.stringify(value));
          parsed = true;
        },
        join: (room) => owner.join(id, room),
        leave: (room) => owner.leave(id, room),
        rooms: () => owner.rooms(id),
      };
    }
    return this._connection;
  }
  get connectionId(): string {
    return this.event.connectionId;
  }
  get auth(): unknown {
    this._auth ??= { value: parseIdentity(this.event.auth) };
    return this._auth.value;
  }
  get req(): WebsocketRequest {
    return this;
  }
  get data(): Uint8Array {
    const event = this.event.websocketEvent;
    if (event.case !== "message") return EMPTY;
    if (event.value.binary) return event.value.body;
    // A text message's bytes remember they were text, so forwarding them sends text (see markText);
    // an empty body may be the decoder's shared default, so it gets bytes of its own.
    const body = event.value.body;
    if (body.length > 0) return markText(body);
    this._emptyText ??= markText(new Uint8Array(0));
    return this._emptyText;
  }
  get binary(): boolean {
    return this.event.websocketEvent.case === "message" && this.event.websocketEvent.value.binary;
  }
  get query(): Record<string, string[]> {
    if (!this._query) {
      this._query = clientNames();
      if (this.event.websocketEvent.case === "connection") {
        for (const [k, v] of Object.entries(this.event.websocketEvent.value.queryParams))
          this._query[k] = v.value.map(decodeSafely);
      }
    }
    return this._query;
  }
  get headers(): Record<string, string[]> {
    if (!this._headers) {
      this._headers = clientNames();
      if (this.event.websocketEvent.case === "connection") {
        for (const [k, v] of Object.entries(this.event.websocketEvent.value.headers)) this._headers[k] = v.value;
      }
    }
    return this._headers;
  }
  get remoteAddress(): string {
    return this.event.websocketEvent.case === "connection" ? this.event.websocketEvent.value.remoteAddress : "";
  }
  get connectedAt(): Date {
    return new Date(this.event.websocketEvent.case === "connection" ? this.event.websocketEvent.value.connectedAt : 0);
  }
  get code(): number {
    return this.event.websocketEvent.case === "disconnection" ? this.event.websocketEvent.value.code : 0;
  }
  get reason(): string {
    return this.event.websocketEvent.case === "disconnection" ? this.event.websocketEvent.value.reason : "";
  }
  text(): string {
    // The body itself, not this.data: text needs no mark (markText) saying it was text.
    const event = this.event.websocketEvent;
    return event.case === "message" ? decoder.decode(event.value.body) : "";
  }
  json<T = unknown>(): T {
    try {
      return JSON.parse(this.text()) as T;
    } catch (error) {
      throw new NitricLikeError(
        "invalid_argument",
        `websocket("${this.socket}"): the message from connection "${this.connectionId}" is not JSON (${(error as Error).message}); use text() for plain text`,
        { cause: error, details: { socket: this.socket, connectionId: this.connectionId } },
      );
    }
  }
  reject(reason = "", status = 403): void {
    // From JavaScript anything can come here; what the answer's encoder would refuse later, on the
    // service's stream, ended the whole service (every connection's events with it).
    const problem =
      typeof reason !== "string"
        ? `the reason is ${reason === null ? "null" : typeof reason}; give a string, the body the client reads`
        : typeof status !== "number" || !Number.isInteger(status) || status < 400 || status > 599
          ? `the status is ${typeof status === "number" ? status : `${typeof status} ${JSON.stringify(status)}`}; give a number from 400 to 599, such as 401 or 403`
          : undefined;
    if (problem)
      throw new NitricLikeError("invalid_argument", `websocket("${this.socket}") ctx.reject(): ${problem}`, {
        details: { socket: this.socket, connectionId: this.connectionId },
      });
    this.res.success = false;
    this.rejectReason = reason;
    this.rejectStatus = status;
  }
  reply(data: Payload, call = " ctx.reply()"): void {
    // A disconnect context has no reply() (DisconnectContext): its connection is closed, and what
    // an untyped call queued would go nowhere, silently.
    if (this.event.websocketEvent.case === "disconnection") throw this.noSend(call.trim());
    const encoded = encodePayload(data, this.owner.name, call);
    if (!this.replies) this.replies = [];
    this.replies.push(encoded);
  }
  /**
   * A connect context's only (ConnectContext.send). This one class serves every event, so a message
   * or disconnect handler's untyped call lands here too: refused with what to use instead, rather
   * than taken as a reply the README never promised (and a disconnect's could not deliver).
   */
  send(data: Payload): void {
    if (this.event.websocketEvent.case !== "connection") throw this.noSend("ctx.send()");
    this.reply(data, " ctx.send()");
  }

  /** The refusal of `call` (ctx.send(), ctx.reply()) in a context that has no such method. */
  private noSend(call: string): NitricLikeError {
    const message = this.event.websocketEvent.case === "message";
    const instead = message
      ? "reply to the sender with ctx.reply() or by returning the reply, or send with ctx.connection.send()"
      : "the connection is closed, so nothing can be sent to it";
    return new NitricLikeError(
      "invalid_argument",
      `websocket("${this.socket}") ${call}: a ${message ? "message" : "disconnect"} handler's context has no ${call.slice(4)}, only a ${call === "ctx.send()" ? "connect" : "connect or message"} handler's; ${instead}`,
      { details: { socket: this.socket, connectionId: this.connectionId } },
    );
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === "object" && value !== null && typeof (value as { then?: unknown }).then === "function";
}

type Answer = MessageInitShape<typeof ClientMessageSchema>;

/**
 * One handler stream: registers (socket, event), or a message route, with the provider and answers its events. It asks
 * for batches; when the provider agrees, answers that follow one another within a turn of the
 * event loop go back as one AnswerBatch message.
 */
class HandlerStream {
  private readonly call = runtime().bidi(WebsocketHandler.method.handleEvents);
  private readonly socket: string;
  private batch = false;
  /** Answers in batches, when the provider agreed to them (see LeadingEdgeBatcher). */
  private readonly batcher = new LeadingEdgeBatcher<Answer>(
    (answer) => this.call.write(answer),
    (answers) => this.call.write({ id: "", content: { case: "answerBatch", value: { answers } } }),
  );

  constructor(
    private readonly owner: Websocket,
    private readonly event: WebsocketEvent,
    private readonly chain: WebsocketHandlerFn<WebsocketEvent>[],
    /** The message route it handles ("" for the socket's event itself). */
    private readonly route = "",
  ) {
    this.socket = owner.name;
    const socket = owner.name;
    streamOpened();
    this.call.on("data", (message: ServerMessage) => {
      switch (message.content.case) {
        case "websocketEventRequest":
          this.handle(message.id, message.content.value);
          break;
        case "eventBatch":
          for (const m of message.content.value.events) {
            if (m.content.case === "websocketEventRequest") this.handle(m.id, m.content.value);
          }
          break;
        case "registrationResponse":
          this.batch = message.content.value.batch;
          break;
      }
    });
    this.call.on("error", () => {});
    this.call.on("status", (status: { code: number; details: string }) => {
      streamClosed();
      // OK: the provider stopped this handler. CANCELLED: this process closed the channel.
      if (status.code !== 0 && status.code !== 1 && environment() !== "build") {
        fatal(`lost the connection to the provider (${status.details || `status ${status.code}`})`);
      }
    });
    this.call.on("end", () => this.call.end());
    this.call.write({
      id: "",
      content: {
        case: "registrationRequest",
        value: { socketName: socket, eventType: EVENT_TYPES[event], batch: true, route },
      },
    });
  }

  private send(answer: Answer): void {
    if (this.batch) this.batcher.push(answer);
    else this.call.write(answer);
  }

  // handle, step and finish are methods, not closures made per event: the service's bundle keeps
  // function names (esbuild's keepNames), which costs a call of its __name helper for each named
  // closure made.
  private handle(id: string, request: WebsocketEventRequest): void {
    eventStarted();
    this.step(id, new EventContext(this.owner, request, this.route === "" ? undefined : this.route), 0);
  }

  /** Runs the chain from handler `i`, awaiting only handlers that return promises (the hot path stays synchronous). */
  private step(id: string, ctx: EventContext, i: number): void {
    for (; i < this.chain.length; i++) {
      if (!ctx.res.success) break;
      let result: unknown;
      try {
        result = (this.chain[i] as (c: EventContext) => unknown)(ctx);
      } catch (error) {
        this.finish(id, ctx, error ?? new Error("handler threw undefined"));
        return;
      }
      if (isThenable(result)) {
        const next = i + 1;
        result.then(
          (value) => {
            try {
              this.replyWith(ctx, value);
            } catch (error) {
              this.finish(id, ctx, error ?? new Error("handler threw undefined"));
              return;
            }
            this.step(id, ctx, next);
          },
          (error: unknown) => this.finish(id, ctx, error ?? new Error("handler rejected")),
        );
        return;
      }
      try {
        this.replyWith(ctx, result);
      } catch (error) {
        this.finish(id, ctx, error ?? new Error("handler threw undefined"));
        return;
      }
    }
    this.finish(id, ctx);
  }

  /** Answers the event `id`: its replies, or the handler's failure. */
  private finish(id: string, ctx: EventContext, error?: unknown): void {
    eventHandled();
    if (error !== undefined) {
      process.stderr.write(
        `websocket("${this.socket}") ${this.route === "" ? this.event : `route ${JSON.stringify(this.route)}`} handler failed for connection ${ctx.connectionId}: ${describeError(error)}\n`,
      );
      ctx.res.success = false;
      if (this.event === "connect") {
        ctx.rejectStatus = 500;
        ctx.rejectReason = "connect handler failed";
      }
    }
    const answer: Answer = {
      id,
      content: {
        case: "websocketEventResponse",
        value: {
          // Nitric's protocol: every answer carries a connection response.
          websocketResponse: {
            case: "connectionResponse",
            value: ctx.res.success
              ? { reject: false }
              : { reject: true, reason: ctx.rejectReason, status: ctx.rejectStatus || 403 },
          },
          replies: ctx.replies ?? [],
        },
      },
    };
    this.send(answer);
  }

  // Only message handlers reply with what they return: connect handlers often return whatever
  // their last call did (Set.add, a kv write), which must not become the client's first frame.
  private replyWith(ctx: EventContext, value: unknown): void {
    if (value === undefined || value === ctx) return;
    if (this.event === "connect") refuseOnStatus(this.socket, ctx, value);
    if (this.event !== "message") return;
    const proxy = proxyAnswer(this.socket, ctx, value);
    if (proxy === undefined) ctx.reply(value as Payload, " message handler's return value (replied to the sender)");
    else if (proxy.body !== undefined)
      ctx.reply(proxy.body, " message handler's return value's body (replied to the sender)");
  }
}

/** The properties of a Lambda proxy integration's answer (API Gateway's "Lambda proxy" format). */
const PROXY_ANSWER_KEYS = new Set(["statusCode", "body", "headers", "multiValueHeaders", "isBase64Encoded", "cookies"]);

/** A Lambda answer's fields, as a handler may return them (lambdaAnswer). */
interface LambdaAnswer {
  statusCode: unknown;
  body?: unknown;
  isBase64Encoded?: unknown;
}

/**
 * `value` when it has the shape of a Lambda proxy integration's answer: a plain object (not an
 * instance of a class, such as an HTTP response that also has a statusCode) holding a statusCode
 * and nothing but a proxy answer's properties; else undefined.
 */
function lambdaAnswer(value: unknown): LambdaAnswer | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return undefined;
  const keys = Object.keys(value);
  if (!keys.includes("statusCode") || keys.some((k) => !PROXY_ANSWER_KEYS.has(k))) return undefined;
  return value as LambdaAnswer;
}

/**
 * A message handler's answer in API Gateway's Lambda proxy form, `{ statusCode, body? }`, as
 * Architect's ws-default and a raw Lambda function return it. On a route with a route response
 * (which nitric-like makes for every message route) API Gateway sends the client the `body` alone,
 * and nothing when there is none; so here too, rather than the whole object as JSON. Only a plain
 * object holding nothing but a proxy answer's properties, an integer statusCode and a string body
 * (if any) is taken for one; any other value is replied as it is. A base64 body is refused,
 * naming the fix, since nitric-like would have to guess what API Gateway makes of it.
 */
function proxyAnswer(socket: string, ctx: EventContext, value: unknown): { body?: string } | undefined {
  const answer = lambdaAnswer(value);
  if (answer === undefined) return undefined;
  const { statusCode, body, isBase64Encoded } = answer;
  if (typeof statusCode !== "number" || !Number.isInteger(statusCode)) return undefined;
  if (body !== undefined && typeof body !== "string") return undefined;
  if (isBase64Encoded === true) {
    throw new NitricLikeError(
      "invalid_argument",
      `websocket("${socket}") message handler returned { statusCode, body, isBase64Encoded: true }; return the bytes instead (return Buffer.from(body, "base64")), which are sent as a binary message`,
      { details: { socket, connectionId: ctx.connectionId } },
    );
  }
  return body === undefined ? {} : { body };
}

/**
 * A connect handler's answer in API Gateway's Lambda form, `{ statusCode, body? }`, as Architect's,
 * SST's and the Serverless Framework's $connect handlers return it: there a status other than 2xx
 * refuses the client, so code ported from them that refuses a client by returning one (an Origin
 * check, say) must refuse it here too, not let it in. A status of 400-599 refuses as ctx.reject()
 * does, with a string `body` as the reason; a 2xx accepts; any other status throws (the handler
 * fails and its client is refused with 500), naming the statuses to use. Other values (an
 * instance of a class, an object with other properties: see lambdaAnswer), and a statusCode that
 * is null or undefined, are ignored.
 */
function refuseOnStatus(socket: string, ctx: EventContext, value: unknown): void {
  const answer = lambdaAnswer(value);
  if (answer === undefined) return;
  const { statusCode, body } = answer;
  // Not an answer (an object that merely has the property, such as a response not yet received).
  if (statusCode === undefined || statusCode === null) return;
  if (typeof statusCode === "number" && Number.isInteger(statusCode) && statusCode >= 200 && statusCode <= 299) return;
  if (typeof statusCode !== "number" || !Number.isInteger(statusCode) || statusCode < 400 || statusCode > 599) {
    throw new NitricLikeError(
      "invalid_argument",
      `websocket("${socket}") connect handler returned { statusCode: ${JSON.stringify(statusCode) ?? String(statusCode)} }, which neither accepts nor refuses the client; return { statusCode: 200 } (or nothing) to accept, { statusCode: 403 } (400 to 599) or ctx.reject(reason, 403) to refuse`,
      { details: { socket, connectionId: ctx.connectionId } },
    );
  }
  ctx.reject(typeof body === "string" ? body : "", statusCode);
}

/**
 * A declared websocket. `Identity` is the type of its connections' identity (`ctx.auth`, `auth` in
 * connection(id) and connections()) and `State` that of their state (`ctx.connection.state`,
 * state(id)); both are `unknown` unless websocket() inferred or was told them.
 */
export class Websocket<Identity = unknown, State = unknown> {
  private readonly ready: Promise<void>;
  /** Set once `ready` has resolved: send() then calls at once, without awaiting it. */
  private declared = false;
  private readonly chains = new Map<WebsocketEvent, WebsocketHandlerFn<WebsocketEvent>[]>();
  /** Message routes' chains, by action (a Map: actions are names, never object keys). */
  private readonly routeChains = new Map<string, WebsocketHandlerFn<WebsocketEvent>[]>();

  /** @internal use websocket(name). */
  constructor(
    readonly name: string,
    /** @internal the options it was declared with. */
    readonly options: WebsocketOptions = {},
  ) {
    const routeByRefused = options.routeBy === undefined ? undefined : routeByProblem(name, options.routeBy);
    if (routeByRefused) throw new NitricLikeError("invalid_argument", routeByRefused);
    const originsRefused = allowedOriginsProblem(`websocket("${name}")`, options.allowedOrigins);
    if (originsRefused) throw new NitricLikeError("invalid_argument", originsRefused);
    this.ready = declare(ResourceType.Websocket, name, [Action.WebsocketManage], {
      allowedOrigins: options.allowedOrigins ?? [],
      routeBy: options.routeBy ?? "",
    });
    void this.ready.then(() => {
      this.declared = true;
    });
    const { authorize } = options;
    if (authorize !== undefined) {
      if (typeof authorize !== "function") {
        throw new NitricLikeError(
          "invalid_argument",
          `websocket("${name}"): authorize must be a function (request) => { identity } | { status, reason }`,
        );
      }
      void this.ready.then(() => new AuthorizerStream(name, authorize));
    }
  }

  /**
   * Handles an event. Handlers run in order for each event; more `on()` calls for one event add to
   * its chain. Register at module load (the top level, or during import): once the service's module has
   * finished loading, `on()` and `route()` throw `failed_precondition` (in a timer, a callback or a handler), as the collect pass that spec, build and up deploy from may not see them. A connect handler can refuse the connection with `ctx.reject(reason, status)`.
   */
  on<E extends WebsocketEvent>(event: E, ...handlers: WebsocketHandlerFn<E, Identity, State>[]): this {
    if (!Object.hasOwn(EVENT_TYPES, event)) {
      throw new NitricLikeError(
        "invalid_argument",
        `websocket("${this.name}").on(${JSON.stringify(event)}): unknown event; use "connect", "disconnect" or "message"`,
      );
    }
    for (const h of handlers) {
      if (typeof h !== "function")
        throw new NitricLikeError(
          "invalid_argument",
          `websocket("${this.name}").on("${event}"): a handler must be a function`,
        );
    }
    let chain = this.chains.get(event);
    const call = `websocket(${JSON.stringify(this.name)}).on(${JSON.stringify(event)})`;
    const late = (chain === undefined ? undefined : lateRegistration(call)) ?? registeredAfterLoad(call);
    if (late !== undefined) throw new NitricLikeError("failed_precondition", late);
    if (chain) {
      chain.push(...(handlers as WebsocketHandlerFn<WebsocketEvent>[]));
      return this;
    }
    chain = [...(handlers as WebsocketHandlerFn<WebsocketEvent>[])];
    this.chains.set(event, chain);
    const registered = chain;
    void this.ready.then(() => new HandlerStream(this, event, registered));
    return this;
  }

  /**
   * Handles the messages of one route: text messages that are JSON objects whose `action` property
   * (or the socket's `routeBy` property or path, such as `meta.type`) is `action`
   * (`{"action": "join", "room": "lobby"}`), as API
   * Gateway's route selection `$request.body.action` picks them on AWS. Every other message (not
   * JSON, no `action`, an action no route has, binary) goes to `on("message", ...)`, which a
   * socket still needs. A route's
   * handlers get the message context (`ctx.json()` is the whole object) and reply as a message
   * handler does; on AWS each route is a route of the API, to the function of its service, so one
   * service can handle a socket's routes and another its other messages. More `route()` calls for
   * one action add to its chain; one action is handled by one service.
   */
  route<T = unknown>(action: string, ...handlers: RouteHandlerFn<T, Identity, State>[]): this {
    const problem = routeNameProblem(this.name, action, this.options.routeBy);
    if (problem) throw new NitricLikeError("invalid_argument", problem);
    for (const h of handlers) {
      if (typeof h !== "function")
        throw new NitricLikeError(
          "invalid_argument",
          `websocket("${this.name}").route(${JSON.stringify(action)}): a handler must be a function`,
        );
    }
    const chain = this.routeChains.get(action);
    const call = `websocket(${JSON.stringify(this.name)}).route(${JSON.stringify(action)})`;
    const late = (chain === undefined ? undefined : lateRegistration(call)) ?? registeredAfterLoad(call);
    if (late !== undefined) throw new NitricLikeError("failed_precondition", late);
    if (chain) {
      chain.push(...(handlers as WebsocketHandlerFn<WebsocketEvent>[]));
      return this;
    }
    const registered = [...(handlers as WebsocketHandlerFn<WebsocketEvent>[])];
    this.routeChains.set(action, registered);
    void this.ready.then(() => new HandlerStream(this, "message", registered, action));
    return this;
  }

  /**
   * Sends to one connection: a string as a text frame, bytes as a binary frame (but the `ctx.data`
   * of a text message, passed on as it came, as text), anything else as JSON text. A connection that is gone throws NitricLikeError `not_found` naming it.
   */
  async send(connectionId: string, data: Payload, options?: SendOptions): Promise<void> {
    this.checkId("send", connectionId);
    const { data: bytes, binary } = encodePayload(data, this.name, ".send()");
    // Every message a Nitric-style app answers comes here: no await (a microtask) once declared.
    if (!this.declared) await this.ready;
    try {
      await rpc.unary(WebsocketService.method.sendMessage, {
        socketName: this.name,
        connectionId,
        data: bytes,
        binary,
      });
    } catch (error) {
      const e = NitricLikeError.from(error, { socket: this.name, connectionId });
      if (e.code === "not_found" && options?.throwIfNotConnected === false) return;
      throw e;
    }
  }

  /**
   * Sends one message to every open connection of this socket (with `room`: of that room) but
   * `except`, inside the provider: one call however many connections. Resolves with how many it
   * was sent to (on AWS, beyond 100 connections: how many were handed over for delivery; see
   * providers/aws/README.md).
   */
  async broadcast(data: Payload, options: BroadcastOptions = {}): Promise<number> {
    const { data: bytes, binary } = encodePayload(data, this.name, ".broadcast()");
    const except =
      options.except === undefined ? [] : typeof options.except === "string" ? [options.except] : options.except;
    if (!Array.isArray(except)) this.checkId("broadcast", except, "except: ");
    for (const id of except) this.checkId("broadcast", id, "except: ");
    if (options.room !== undefined) {
      const room = this.checkRoom("broadcast", options.room);
      await this.ready;
      try {
        return (
          await rpc.unary(Rooms.method.broadcastToRoom, { socketName: this.name, room, data: bytes, binary, except })
        ).sent;
      } catch (error) {
        throw NitricLikeError.from(error, { socket: this.name, room });
      }
    }
    await this.ready;
    try {
      return (await rpc.unary(Connections.method.broadcast, { socketName: this.name, data: bytes, binary, except }))
        .sent;
    } catch (error) {
      throw NitricLikeError.from(error, { socket: this.name });
    }
  }

  /** True when the connection is open. */
  async isConnected(connectionId: string): Promise<boolean> {
    this.checkId("isConnected", connectionId);
    await this.ready;
    try {
      return (await rpc.unary(Connections.method.isConnected, { socketName: this.name, connectionId })).connected;
    } catch (error) {
      throw NitricLikeError.from(error, { socket: this.name, connectionId });
    }
  }

  /** An open connection with its metadata; a gone one throws `not_found`. */
  async connection(connectionId: string): Promise<ConnectionInfo<Identity>> {
    this.checkId("connection", connectionId);
    await this.ready;
    try {
      const { connection } = await rpc.unary(Connections.method.getConnection, {
        socketName: this.name,
        connectionId,
      });
      return connectionInfo(connection) as ConnectionInfo<Identity>;
    } catch (error) {
      throw NitricLikeError.from(error, { socket: this.name, connectionId });
    }
  }

  /**
   * Every open connection of this socket with its metadata, kept by the provider: the app stores
   * nothing and never sees a stale id.
   */
  async *connections(): AsyncGenerator<ConnectionInfo<Identity>> {
    await this.ready;
    try {
      for await (const item of rpc.serverStream(Connections.method.listConnections, { socketName: this.name })) {
        yield connectionInfo(item.connection) as ConnectionInfo<Identity>;
      }
    } catch (error) {
      throw NitricLikeError.from(error, { socket: this.name });
    }
  }

  /**
   * Closes a connection (its disconnect handler then runs); a connection that is gone throws
   * `not_found`. Given several ids, closes those that are open and skips the others.
   */
  async close(connectionId: string | string[], options: CloseOptions = {}): Promise<void> {
    for (const id of Array.isArray(connectionId) ? connectionId : [connectionId]) this.checkId("close", id);
    this.checkCloseOptions(options);
    await this.ready;
    if (Array.isArray(connectionId)) {
      try {
        await rpc.unary(Connections.method.closeConnections, {
          socketName: this.name,
          connectionIds: connectionId,
          code: options.code ?? 0,
          reason: options.reason ?? "",
        });
      } catch (error) {
        throw NitricLikeError.from(error, { socket: this.name });
      }
      return;
    }
    try {
      await rpc.unary(WebsocketService.method.closeConnection, {
        socketName: this.name,
        connectionId,
        code: options.code ?? 0,
        reason: options.reason ?? "",
      });
    } catch (error) {
      throw NitricLikeError.from(error, { socket: this.name, connectionId });
    }
  }

  /**
   * An id that is not a string (JavaScript callers, ids read from a message) is refused here with
   * the call's name, rather than by the encoder as an internal error of the RPC.
   */
  private checkId(method: string, connectionId: unknown, what = ""): void {
    if (typeof connectionId === "string") return;
    const got = connectionId === null ? "null" : Array.isArray(connectionId) ? "an array" : typeof connectionId;
    throw new NitricLikeError(
      "invalid_argument",
      `websocket("${this.name}").${method}(): ${what}a connection id must be a string, got ${got}; use ctx.connectionId or an id from connections()`,
      { details: { socket: this.name } },
    );
  }

  private checkCloseOptions(options: CloseOptions): void {
    const { code, reason } = options ?? {};
    const problem =
      code !== undefined && !Number.isInteger(code)
        ? `a close code must be an integer (1000 or 3000-4999), got ${typeof code === "number" ? code : typeof code}`
        : reason !== undefined && typeof reason !== "string"
          ? `a close reason must be a string, got ${reason === null ? "null" : typeof reason}`
          : undefined;
    if (problem)
      throw new NitricLikeError("invalid_argument", `websocket("${this.name}").close(): ${problem}`, {
        details: { socket: this.name },
      });
  }

  private checkRoom(method: string, room: string): string {
    const problem = roomNameProblem(`websocket("${this.name}").${method}()`, room);
    if (problem) throw new NitricLikeError("invalid_argument", problem, { details: { socket: this.name } });
    return room;
  }

  /**
   * Adds a connection to a room (kept by the provider: it outlives a restart of this service, and
   * ends when the connection does). Resolves true when it was not in the room, false when it was.
   * A connection that is gone throws `not_found`; a 101st room throws `resource_exhausted`. Room
   * names are 1-128 characters of A-Z a-z 0-9 and `_ - . : @`.
   */
  async join(connectionId: string, room: string): Promise<boolean> {
    this.checkId("join", connectionId);
    this.checkRoom("join", room);
    await this.ready;
    try {
      return (await rpc.unary(Rooms.method.join, { socketName: this.name, connectionId, room })).joined;
    } catch (error) {
      throw NitricLikeError.from(error, { socket: this.name, connectionId, room });
    }
  }

  /** Removes a connection from a room; resolves true when it was in it (a gone one is in none). */
  async leave(connectionId: string, room: string): Promise<boolean> {
    this.checkId("leave", connectionId);
    this.checkRoom("leave", room);
    await this.ready;
    try {
      return (await rpc.unary(Rooms.method.leave, { socketName: this.name, connectionId, room })).left;
    } catch (error) {
      throw NitricLikeError.from(error, { socket: this.name, connectionId, room });
    }
  }

  /** The ids of the open connections in a room. */
  async members(room: string): Promise<string[]> {
    this.checkRoom("members", room);
    await this.ready;
    try {
      return (await rpc.unary(Rooms.method.listMembers, { socketName: this.name, room })).connectionIds;
    } catch (error) {
      throw NitricLikeError.from(error, { socket: this.name, room });
    }
  }

  /** The rooms a connection is in (none once it is gone). */
  async rooms(connectionId: string): Promise<string[]> {
    this.checkId("rooms", connectionId);
    await this.ready;
    try {
      return (await rpc.unary(Rooms.method.listRooms, { socketName: this.name, connectionId })).rooms;
    } catch (error) {
      throw NitricLikeError.from(error, { socket: this.name, connectionId });
    }
  }

  /** A room of this socket, to join, leave, list and broadcast to by its name. */
  room(name: string): Room {
    this.checkRoom("room", name);
    return {
      name,
      join: (id) => this.join(id, name),
      leave: (id) => this.leave(id, name),
      members: () => this.members(name),
      broadcast: (data, options = {}) =>
        this.broadcast(data, { room: name, ...(options.except === undefined ? {} : { except: options.except }) }),
    };
  }

  /**
   * Replaces a connection's state: any JSON value, at most 16 KB as JSON (16,384 bytes; more
   * throws `invalid_argument` naming the limit); undefined clears it. Every later event of the
   * connection carries it as `ctx.connection.state`. A connection that is gone throws `not_found`.
   */
  async setState(connectionId: string, value: State | undefined): Promise<void> {
    this.checkId("setState", connectionId);
    let json = "";
    if (value !== undefined) {
      try {
        json = JSON.stringify(value) ?? "";
      } catch (error) {
        throw new NitricLikeError(
          "invalid_argument",
          `websocket("${this.name}").setState(): the state is not JSON (${(error as Error).message}); give a value JSON.stringify accepts`,
          { cause: error, details: { socket: this.name, connectionId } },
        );
      }
      if (json === "") {
        throw new NitricLikeError(
          "invalid_argument",
          `websocket("${this.name}").setState(): a ${typeof value} is not JSON; give an object, array, string, number, boolean or null`,
          { details: { socket: this.name, connectionId } },
        );
      }
    }
    const problem = connectionStateProblem(`websocket("${this.name}").setState()`, json);
    if (problem)
      throw new NitricLikeError("invalid_argument", problem, { details: { socket: this.name, connectionId } });
    await this.ready;
    try {
      await rpc.unary(Rooms.method.setState, { socketName: this.name, connectionId, stateJson: json });
    } catch (error) {
      throw NitricLikeError.from(error, { socket: this.name, connectionId });
    }
  }

  /** A connection's state (undefined when none); a connection that is gone throws `not_found`. */
  async state(connectionId: string): Promise<State | undefined> {
    this.checkId("state", connectionId);
    await this.ready;
    try {
      const { stateJson } = await rpc.unary(Rooms.method.getState, { socketName: this.name, connectionId });
      return stateJson ? (JSON.parse(stateJson) as State) : undefined;
    } catch (error) {
      throw NitricLikeError.from(error, { socket: this.name, connectionId });
    }
  }

  /** The URL clients connect to: ws://127.0.0.1:<port> locally, wss://... on AWS. */
  async url(): Promise<string> {
    await this.ready;
    try {
      return (await rpc.unary(WebsocketService.method.socketDetails, { socketName: this.name })).url;
    } catch (error) {
      throw NitricLikeError.from(error, { socket: this.name });
    }
  }
}

function connectionInfo(message: ConnectionMessage | undefined): ConnectionInfo {
  const values = (map: Record<string, { value: string[] }> | undefined) => {
    const out = clientNames();
    for (const [k, v] of Object.entries(map ?? {})) out[k] = v.value;
    return out;
  };
  const headers = values(message?.headers);
  return {
    id: message?.connectionId ?? "",
    connectedAt: new Date(message?.connectedAt ?? 0),
    query: values(message?.query),
    headers,
    remoteAddress: message?.remoteAddress ?? "",
    userAgent: headers["user-agent"]?.[0],
    auth: parseIdentity(message?.auth ?? ""),
  };
}

const sockets = new Map<string, Websocket>();

/**
 * Declares a websocket. Declaring the same name again returns the same socket; an invalid name
 * throws at once with the fix. Declare it at module load: a new name once the service's module has
 * loaded (in a timer, a callback or a handler) throws `failed_precondition`.
 *
 * Types: `ctx.auth` is typed as what `authorize` returns as its identity, on every handler and in
 * connection(id) and connections(). In a service that handles the socket but does not authorize
 * it, or to check the authorizer against a type, declare it: `websocket<Identity>(name)`; with
 * neither, it is `unknown` (another service may authorize the socket; undefined when none does).
 * `State` types the connection state (`ctx.connection.state`, setState(), state(id)):
 * `websocket<Identity, State>(name, options)`, with `unknown` as the Identity of a socket nobody
 * authorizes. Both must be JSON: a Date or a Map in them is a type error naming the fix. An
 * identity is never undefined (an authorizer that gives undefined refuses the client with 500), so
 * `ctx.auth` leaves undefined out of the identity's type.
 */
export function websocket<Identity extends IdentityOf<Identity> = unknown, State extends StateOf<State> = unknown>(
  name: string,
  options: WebsocketOptions<Identity> = {},
): Websocket<Exclude<Identity, undefined>, State> {
  const socket = declaredOnce(
    "websocket",
    name,
    sockets,
    () => new Websocket(name, options as WebsocketOptions),
    `websocket(${JSON.stringify(name)}${options.authorize === undefined ? "" : ", { authorize }"})`,
  ) as Websocket<Exclude<Identity, undefined>, State>;
  const same = JSON.stringify(socket.options.allowedOrigins ?? []) === JSON.stringify(options.allowedOrigins ?? []);
  if (options.authorize !== undefined && socket.options.authorize !== options.authorize) {
    throw new NitricLikeError(
      "invalid_argument",
      `websocket("${name}"): declared again with another authorize; give it where the socket is first declared`,
    );
  }
  if (options.routeBy !== undefined && options.routeBy !== socket.options.routeBy) {
    throw new NitricLikeError(
      "invalid_argument",
      `websocket("${name}"): declared again with another routeBy; give the options where it is first declared`,
    );
  }
  if (options.allowedOrigins !== undefined && !same) {
    throw new NitricLikeError(
      "invalid_argument",
      `websocket("${name}"): declared again with other allowedOrigins; give the options where it is first declared`,
    );
  }
  return socket;
}
