/**
 * Connect authorization: `websocket(name, { authorize })`. The authorizer runs before the connect
 * handler, sees the connection request (query, headers, offered subprotocols, address) and returns
 * an identity or a refusal. The identity is `ctx.auth` on every later event of the connection and
 * `auth` in `socket.connection(id)` and `socket.connections()`.
 *
 * Locally the gateway asks it before the connect handler; on AWS it is a Lambda REQUEST authorizer
 * on `$connect`, and the identity travels as the authorizer's context (see providers/aws/README.md).
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  type AuthorizationRequest,
  Authorizer,
  type HandleAuthorizationsRequestSchema,
  type HandleAuthorizationsResponse,
} from "@nitric-like/contracts/authorize";
import { MAX_IDENTITY_BYTES } from "@nitric-like/spec";
import { describeError, NitricLikeError } from "../errors.js";
import { decodeSafely } from "../internal/data.js";
import {
  environment,
  eventHandled,
  eventStarted,
  fatal,
  runtime,
  streamClosed,
  streamOpened,
} from "../internal/runtime.js";

/** A connection request, as the authorizer sees it. */
export interface AuthorizeRequest {
  /** The socket's name. */
  readonly socket: string;
  /** The id the connection gets if it is allowed. */
  readonly connectionId: string;
  /** Every value of each query parameter, decoded. */
  readonly query: Record<string, string[]>;
  /** Every value of each request header; names are lower case. */
  readonly headers: Record<string, string[]>;
  /**
   * The subprotocols the client offered (`new WebSocket(url, ["token.abc", "chat"])`), in its
   * order. Browsers cannot set headers on a WebSocket: a token travels here or in the query.
   */
  readonly protocols: string[];
  /** The client's address. */
  readonly remoteAddress: string;
}

/**
 * Lets a client connect: `identity` becomes `ctx.auth` on every later event of the connection.
 * `Identity` is its type, which websocket() infers from the authorizer (or takes as declared).
 */
export interface AuthorizeAllow<Identity = unknown> {
  /** Any JSON value, at most 8 KB encoded (API Gateway's authorizer context limit). */
  identity: Identity;
  /**
   * The subprotocol to accept, one of `request.protocols`: the 101 echoes it in
   * `Sec-WebSocket-Protocol`, as browsers require when they offered any. @default none
   */
  protocol?: string;
}

/** Refuses a client: its upgrade is answered `status` with `reason` as the body. */
export interface AuthorizeDeny {
  /** 401 when the client did not prove who it is, 403 when it may not connect. */
  status: 401 | 403;
  /** What the client reads. @default "" */
  reason?: string;
}

/** What an authorizer returns: an identity of type `Identity`, or a refusal. */
export type AuthorizeResult<Identity = unknown> = AuthorizeAllow<Identity> | AuthorizeDeny;

/**
 * Decides who may connect. May be async. Throwing refuses the client with 500 (the error is
 * logged here, not shown to the client). `Identity` is the type of the identity it gives, which
 * every handler of the socket then reads as `ctx.auth`.
 */
export type AuthorizeFn<Identity = unknown> = (
  request: AuthorizeRequest,
) => AuthorizeResult<Identity> | Promise<AuthorizeResult<Identity>>;

type Answer = MessageInitShape<typeof HandleAuthorizationsRequestSchema>;
type AnswerContent = NonNullable<Answer["content"]>;

function names(map: Record<string, { value: string[] }>, decode: boolean): Record<string, string[]> {
  const out = Object.create(null) as Record<string, string[]>;
  for (const [k, v] of Object.entries(map)) out[k] = decode ? v.value.map(decodeSafely) : v.value;
  return out;
}

/** The identity JSON of an event or a connection, parsed; undefined when there is none. */
export function parseIdentity(json: string): unknown {
  if (json === "") return undefined;
  try {
    return JSON.parse(json) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * The identity an authorizer returned, JSON-encoded and checked: at most 8 KB. Throws
 * NitricLikeError `invalid_argument` with the fix.
 */
export function encodeIdentity(socket: string, identity: unknown): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(identity);
  } catch (error) {
    throw new NitricLikeError(
      "invalid_argument",
      `websocket("${socket}") authorize: the identity is not JSON (${(error as Error).message}); return plain data`,
      { cause: error },
    );
  }
  if (json === undefined) {
    throw new NitricLikeError(
      "invalid_argument",
      `websocket("${socket}") authorize: the identity is undefined; return { identity: <JSON> } or { status, reason }`,
    );
  }
  const size = Buffer.byteLength(json, "utf8");
  if (size > MAX_IDENTITY_BYTES) {
    throw new NitricLikeError(
      "invalid_argument",
      `websocket("${socket}") authorize: the identity is ${size} bytes of JSON, over ${MAX_IDENTITY_BYTES} (API Gateway's authorizer context limit); return less, such as a user id, and look the rest up`,
    );
  }
  return json;
}

/** The authorizer's answer on the wire. */
function answerOf(socket: string, request: AuthorizationRequest, result: unknown): AnswerContent {
  if (typeof result === "object" && result !== null && "status" in result) {
    const { status, reason } = result as { status: unknown; reason?: unknown };
    if (status !== 401 && status !== 403) {
      throw new NitricLikeError(
        "invalid_argument",
        `websocket("${socket}") authorize: refusal status ${JSON.stringify(status)}; use 401 or 403`,
      );
    }
    return {
      case: "response",
      value: { result: { case: "deny", value: { status, reason: typeof reason === "string" ? reason : "" } } },
    };
  }
  if (typeof result !== "object" || result === null || !("identity" in result)) {
    throw new NitricLikeError(
      "invalid_argument",
      `websocket("${socket}") authorize: returned ${JSON.stringify(result) ?? String(result)}; return { identity } to allow or { status: 401 | 403, reason } to refuse`,
    );
  }
  const { identity, protocol } = result as AuthorizeAllow;
  const identityJson = encodeIdentity(socket, identity);
  if (protocol !== undefined && !request.protocols.includes(protocol)) {
    throw new NitricLikeError(
      "invalid_argument",
      `websocket("${socket}") authorize: protocol ${JSON.stringify(protocol)} was not offered by the client (it offered ${JSON.stringify(request.protocols)}); return one of request.protocols`,
    );
  }
  return { case: "response", value: { result: { case: "allow", value: { identityJson, protocol: protocol ?? "" } } } };
}

/** The stream that answers a socket's connection requests with its authorizer. */
export class AuthorizerStream {
  private readonly call = runtime().bidi(Authorizer.method.handleAuthorizations);

  constructor(
    private readonly socket: string,
    private readonly authorize: AuthorizeFn,
  ) {
    streamOpened();
    this.call.on("data", (message: HandleAuthorizationsResponse) => {
      if (message.content.case === "request") this.handle(message.id, message.content.value);
    });
    this.call.on("error", () => {});
    this.call.on("status", (status: { code: number; details: string }) => {
      streamClosed();
      if (status.code !== 0 && status.code !== 1 && environment() !== "build") {
        fatal(`websocket("${socket}") authorize: ${status.details || `status ${status.code}`}`);
      }
    });
    this.call.on("end", () => this.call.end());
    this.call.write({ id: "", content: { case: "registration", value: { socketName: socket } } });
  }

  private handle(id: string, request: AuthorizationRequest): void {
    const view: AuthorizeRequest = {
      socket: this.socket,
      connectionId: request.connectionId,
      query: names(request.queryParams, true),
      headers: names(request.headers, false),
      protocols: [...request.protocols],
      remoteAddress: request.remoteAddress,
    };
    eventStarted();
    const fail = (error: unknown) => {
      eventHandled();
      process.stderr.write(
        `websocket("${this.socket}") authorize failed for connection ${request.connectionId}: ${describeError(error)}\n`,
      );
      // The client learns only that the authorizer failed, unless it was the identity's size:
      // the one failure the app's author must see from the client side too.
      const tooBig = error instanceof NitricLikeError && error.message.includes("authorizer context limit");
      const reason = tooBig ? error.message : "authorizer failed";
      this.call.write({
        id,
        content: { case: "response", value: { result: { case: "deny", value: { status: 500, reason } } } },
      });
    };
    let pending: unknown;
    try {
      pending = this.authorize(view);
    } catch (error) {
      fail(error ?? new Error("authorize threw undefined"));
      return;
    }
    Promise.resolve(pending).then(
      (result) => {
        let content: AnswerContent;
        try {
          content = answerOf(this.socket, request, result);
        } catch (error) {
          fail(error);
          return;
        }
        eventHandled();
        this.call.write({ id, content });
      },
      (error: unknown) => fail(error ?? new Error("authorize rejected")),
    );
  }
}
