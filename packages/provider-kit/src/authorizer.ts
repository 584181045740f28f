/**
 * Connect authorization: the Authorizer service's streams (one per authorized socket, opened by
 * the service that declared `websocket(name, { authorize })`) and the registry a gateway asks
 * before it runs the connect handler. A socket the spec says is authorized never connects without
 * an answer from its authorizer: with no stream (its service is starting or gone) the request waits
 * for one, then is refused with 503. What a flood of handshakes can make it hold is bounded (see
 * MAX_PENDING_AUTHORIZATIONS, and the 8 MB a gRPC stream holds for a service that does not read).
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type {
  AuthorizationRequestSchema,
  Authorizer,
  HandleAuthorizationsRequest,
  HandleAuthorizationsResponseSchema,
} from "@nitric-like/contracts/authorize";
import { Code, RpcError, type ServerStream, type ServiceImpl } from "@nitric-like/rpc";
import { MAX_IDENTITY_BYTES, resourceNameProblem } from "@nitric-like/spec";
import type { MaybePromise } from "./backends.js";
import { waitingForChange } from "./handlers.js";
import { MAX_STANDBY, takeStandby } from "./standby.js";

/** The provider's side of an authorizer stream. */
type Call = ServerStream<MessageInitShape<typeof HandleAuthorizationsResponseSchema>>;

/** A connection request, as the authorizer gets it. */
export type AuthorizationInput = MessageInitShape<typeof AuthorizationRequestSchema> & {
  socketName: string;
  protocols: string[];
};

/**
 * What the authorizer decided, checked: an identity of at most 8 KB and an offered subprotocol, or
 * a refusal. `busy` marks a refusal for a bound (see MAX_PENDING_AUTHORIZATIONS): the client may
 * connect again in a moment (Retry-After), and a flood of them is logged once a burst; so is a
 * refusal marked `serviceWaiting` (the authorizer's service waits for a file change). A request
 * whose client hung up is answered with a refusal the gateway never sends (see authorize's `left`).
 */
export type AuthorizeDecision =
  | { allow: true; identityJson: string; protocol: string }
  | { allow: false; status: number; reason: string; busy?: true; serviceWaiting?: true };

/**
 * Most connection requests that may wait for one socket's authorizer: sent to it and not yet
 * answered, or waiting for its stream while its service starts. Each holds a client's socket
 * and its request, and a client that hangs up does not take its request back, so a flood of
 * handshakes to a socket whose authorizer is slow (or not running) would otherwise pile them up
 * for as long as the authorizer takes. More are refused at once with 503 and Retry-After.
 */
export const MAX_PENDING_AUTHORIZATIONS = 1000;

/**
 * The subprotocols a client offered, in its order: `Sec-WebSocket-Protocol` is a comma-separated
 * list (RFC 6455 section 4.1), possibly split over several header lines.
 */
export function offeredProtocols(header: string | readonly string[] | undefined): string[] {
  if (header === undefined) return [];
  const lines = typeof header === "string" ? [header] : header;
  return lines
    .flatMap((line) => line.split(","))
    .map((p) => p.trim())
    .filter((p) => p !== "");
}

/** The longest refusal reason sent to a client; longer ones are cut. */
const MAX_REASON_CHARS = 1024;

interface Pending {
  resolve(decision: AuthorizeDecision): void;
  /** What checkDecision needs of the request (the rest is not kept). */
  request: { protocols: readonly string[] };
  timer: NodeJS.Timeout;
}

/** A request whose client hung up: the gateway stops waiting for its answer. */
function leftDecision(socket: string): AuthorizeDecision {
  return { allow: false, status: 499, reason: `websocket "${socket}": the client left` };
}

/** One service's authorizer stream for one socket. */
export class AuthorizerStream {
  readonly pending = new Map<string, Pending>();
  constructor(
    readonly service: string,
    readonly socket: string,
    readonly call: Call,
  ) {}
}

/** Checks an authorizer's answer against its request: what a gateway may act on. */
export function checkDecision(
  socket: string,
  request: { protocols: readonly string[] },
  answer: HandleAuthorizationsRequest,
): AuthorizeDecision {
  const content = answer.content;
  const result = content.case === "response" ? content.value.result : undefined;
  if (result?.case === "deny") {
    const { status, reason } = result.value;
    return {
      allow: false,
      // API Gateway answers 401 (Unauthorized) or 403 (a Deny policy); nothing else is an authorizer's refusal.
      // 500 is an SDK saying its authorizer failed.
      status: status === 401 ? 401 : status === 500 ? 500 : 403,
      reason: (reason || `connection refused by the authorizer of websocket "${socket}"`).slice(0, MAX_REASON_CHARS),
    };
  }
  if (result?.case !== "allow") {
    return { allow: false, status: 500, reason: `websocket "${socket}": the authorizer gave no answer` };
  }
  const { identityJson, protocol } = result.value;
  const size = Buffer.byteLength(identityJson, "utf8");
  if (size > MAX_IDENTITY_BYTES) {
    return {
      allow: false,
      status: 500,
      reason: `websocket "${socket}": the authorizer's identity is ${size} bytes, over ${MAX_IDENTITY_BYTES} (API Gateway's authorizer context limit); return less, such as a user id, and look the rest up`,
    };
  }
  if (identityJson !== "") {
    try {
      JSON.parse(identityJson);
    } catch {
      return { allow: false, status: 500, reason: `websocket "${socket}": the authorizer's identity is not JSON` };
    }
  }
  if (protocol !== "" && !request.protocols.includes(protocol)) {
    return {
      allow: false,
      status: 500,
      reason: `websocket "${socket}": the authorizer accepted subprotocol ${JSON.stringify(protocol)}, which the client did not offer; return one of its protocols`,
    };
  }
  return { allow: true, identityJson, protocol };
}

/** The authorizer streams of a provider, by socket. */
export class AuthorizerRegistry {
  private readonly streams = new Map<string, AuthorizerStream>();
  /**
   * Streams of the same service a newer registration displaced while still open, by socket,
   * oldest first (see register): the newest takes the socket's requests again when the live one
   * goes. They take no new request meanwhile, and answer those they were sent.
   */
  private readonly standby = new Map<string, AuthorizerStream[]>();
  private readonly expected = new Map<string, string>();
  /** Requests waiting for a socket's stream (its service is starting), by socket: each wakes its own. */
  private readonly waiters = new Map<string, Set<() => void>>();
  private counter = 0;

  constructor(
    /** How long an authorizer may take to answer. */
    readonly timeoutMs = 10_000,
    /** How long a request waits for the stream of an authorizer the spec names. */
    readonly waitMs = 10_000,
  ) {}

  /** The spec says `service` authorizes `socket`: its connections wait for that authorizer. */
  expect(socket: string, service: string): void {
    this.expected.set(socket, service);
  }

  /** Services `run` removed (their file is gone), with why, for the refusal of a connect that waited for one in vain. */
  private readonly removed = new Map<string, string>();

  /** A service is gone for good (see HandlerRegistry.serviceRemoved); it comes back when it registers again. */
  serviceRemoved(service: string, why: string): void {
    this.removed.set(service, why);
  }

  /**
   * Services that wait for a file change (see HandlerRegistry.serviceWaiting), with why: a connect
   * to a socket they authorize is refused at once, saying so, instead of after waiting for them.
   */
  private readonly waiting = new Map<string, string>();

  /**
   * A service is not running and nothing restarts it until one of its files changes (`watching`
   * false: under run --no-watch, nothing restarts it), or, with `watching` undefined, it is
   * starting again. While it waits, the connects that wait for its authorizer, and those that
   * come, are refused at once, saying so (waitingForChange), never with its failure.
   */
  serviceWaiting(service: string, watching: boolean | undefined): void {
    if (watching === undefined) {
      this.waiting.delete(service);
      return;
    }
    this.waiting.set(service, waitingForChange(watching));
    for (const [socket, of] of this.expected) if (of === service && !this.streams.has(socket)) this.wake(socket);
  }

  /** Why a connect to `socket` is refused at once: its authorizer's service waits for a file change. */
  private waitingRefusal(socket: string): AuthorizeDecision | undefined {
    const service = this.expected.get(socket);
    const why = service === undefined || this.removed.has(service) ? undefined : this.waiting.get(service);
    if (why === undefined) return undefined;
    return {
      allow: false,
      status: 503,
      reason: `websocket "${socket}": its authorizer's service "${service}" ${why}`,
      serviceWaiting: true,
    };
  }

  /** True when connections to `socket` must be authorized. */
  isExpected(socket: string): boolean {
    return this.expected.has(socket) || this.streams.has(socket);
  }

  /**
   * A service opened an authorizer stream; another service's live one for the socket is an error.
   * Its own live one stands by (see `standby`), not dropped: as for handler streams
   * (HandlerRegistry.register), a second copy of the service on its endpoint, started by hand,
   * cannot be told from the service, and dropping the service's stream would leave the socket with
   * no authorizer once that copy stopped, every connection waiting and refused with 503.
   */
  register(service: string, socket: string, call: Call): AuthorizerStream {
    const current = this.streams.get(socket);
    if (current && current.service !== service) {
      throw new RpcError(
        Code.FAILED_PRECONDITION,
        `websocket("${socket}"): already authorized by service "${current.service}"; give authorize in one service only`,
      );
    }
    if (current) {
      const list = this.standby.get(socket) ?? [];
      this.standby.set(socket, list);
      list.push(current);
      // Bounded as handler streams are: past it the oldest is dropped and ended with OK.
      if (list.length > MAX_STANDBY) {
        const oldest = list.shift() as AuthorizerStream;
        this.unregister(oldest);
        try {
          oldest.call.end();
        } catch {
          // Already closed.
        }
      }
    }
    const stream = new AuthorizerStream(service, socket, call);
    this.streams.set(socket, stream);
    this.removed.delete(service);
    this.wake(socket);
    return stream;
  }

  /** Lets the requests waiting for the socket's stream go to it. */
  private wake(socket: string): void {
    const waiting = this.waiters.get(socket);
    this.waiters.delete(socket);
    for (const wake of waiting ?? []) wake();
  }

  /**
   * A service is about to be stopped on purpose (see HandlerRegistry.drainService): its streams
   * take no new request (those wait for its next copy to register), and the requests they were
   * sent may still be answered. Resolves once none is left unanswered, or after `graceMs`; a save
   * would otherwise refuse the clients being authorized at that moment with 503.
   */
  async drainService(service: string, graceMs: number): Promise<void> {
    const streams: AuthorizerStream[] = takeStandby(this.standby, service);
    for (const [socket, stream] of this.streams) {
      if (stream.service !== service) continue;
      this.streams.delete(socket);
      // Its sockets' connections keep waiting for an authorizer, never go in without one.
      this.expected.set(socket, service);
      streams.push(stream);
    }
    const deadline = Date.now() + graceMs;
    while (streams.some((s) => s.pending.size > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  }

  /**
   * A stream ended: its unanswered requests are refused with 503. When it was the live one, the
   * newest stream standing by for its socket, if any, takes the socket's requests again.
   */
  unregister(stream: AuthorizerStream): void {
    const list = this.standby.get(stream.socket);
    const at = list?.indexOf(stream) ?? -1;
    if (list !== undefined && at >= 0) {
      list.splice(at, 1);
      if (list.length === 0) this.standby.delete(stream.socket);
    } else if (this.streams.get(stream.socket) === stream) {
      this.streams.delete(stream.socket);
      const next = list?.pop();
      if (list !== undefined && list.length === 0) this.standby.delete(stream.socket);
      if (next !== undefined) {
        this.streams.set(stream.socket, next);
        this.wake(stream.socket);
      }
    }
    for (const [id, p] of stream.pending) {
      clearTimeout(p.timer);
      stream.pending.delete(id);
      p.resolve({
        allow: false,
        status: 503,
        reason: `websocket "${stream.socket}": the authorizer's service "${stream.service}" stopped; connect again`,
      });
    }
  }

  /** An answer on a stream. */
  answer(stream: AuthorizerStream, message: HandleAuthorizationsRequest): void {
    const p = stream.pending.get(message.id);
    if (!p) return;
    stream.pending.delete(message.id);
    clearTimeout(p.timer);
    p.resolve(checkDecision(stream.socket, p.request, message));
  }

  /**
   * Asks the socket's authorizer about a connection request. Never rejects. `left` aborts when
   * the client hangs up: a request still waiting for its authorizer's stream leaves the waiting
   * list and is never sent, and one already sent is answered `left` at once (the gateway lets go
   * of its socket) while it keeps its place under MAX_PENDING_AUTHORIZATIONS until the authorizer
   * answers or times out, as the authorizer's service is still working on it: a flood of
   * handshakes that hang up must not pile up work at a slow authorizer past that bound either.
   */
  async authorize(request: AuthorizationInput, left?: AbortSignal): Promise<AuthorizeDecision> {
    const socket = request.socketName;
    if (left?.aborted) return leftDecision(socket);
    let stream = this.streams.get(socket);
    if (!stream) {
      const refusal = this.waitingRefusal(socket);
      if (refusal) return refusal;
      const waiting = this.waiters.get(socket) ?? new Set<() => void>();
      if (waiting.size >= MAX_PENDING_AUTHORIZATIONS) {
        const service = this.expected.get(socket);
        return busy(
          `websocket "${socket}": ${MAX_PENDING_AUTHORIZATIONS} connection requests already wait for its authorizer${service ? ` (service "${service}")` : ""} to start; connect again in a moment`,
        );
      }
      this.waiters.set(socket, waiting);
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          // Out of the list when its wait runs out too: a socket whose authorizer never comes would keep every one.
          waiting.delete(done);
          if (waiting.size === 0 && this.waiters.get(socket) === waiting) this.waiters.delete(socket);
          resolve();
        };
        const timer = setTimeout(done, this.waitMs);
        waiting.add(done);
        left?.addEventListener("abort", done, { once: true });
      });
      // Its client hung up while it waited: it is never sent.
      if (left?.aborted) return leftDecision(socket);
      stream = this.streams.get(socket);
      if (!stream) {
        const refusal = this.waitingRefusal(socket);
        if (refusal) return refusal;
        const service = this.expected.get(socket);
        const removed = service === undefined ? undefined : this.removed.get(service);
        return {
          allow: false,
          status: 503,
          reason:
            removed !== undefined
              ? `websocket "${socket}": its authorizer's service "${service}" ${removed}, and no other service authorizes it; give websocket("${socket}", { authorize }) in a service`
              : `websocket "${socket}": its authorizer${service ? ` (service "${service}")` : ""} is not running; connect again once it is`,
        };
      }
    }
    const live = stream;
    if (live.pending.size >= MAX_PENDING_AUTHORIZATIONS) {
      return busy(
        `websocket "${socket}": ${MAX_PENDING_AUTHORIZATIONS} connection requests already wait for its authorizer (service "${live.service}") to answer; connect again in a moment, and if this goes on, make the authorizer answer sooner`,
      );
    }
    if (!live.call.writable) {
      return busy(
        `websocket "${socket}": its authorizer's service "${live.service}" is not reading the connection requests sent to it (the provider holds all it will of them); connect again in a moment, and if this goes on, does a handler block the service's event loop?`,
      );
    }
    const id = String(++this.counter);
    return new Promise<AuthorizeDecision>((resolve) => {
      const timer = setTimeout(() => {
        live.pending.delete(id);
        resolve({
          allow: false,
          status: 504,
          reason: `websocket "${socket}": the authorizer did not answer within ${this.timeoutMs / 1000} s`,
        });
      }, this.timeoutMs);
      const pending: Pending = { resolve, request: { protocols: request.protocols }, timer };
      live.pending.set(id, pending);
      try {
        live.call.write({ id, content: { case: "request", value: request } });
      } catch (error) {
        clearTimeout(timer);
        live.pending.delete(id);
        resolve({ allow: false, status: 503, reason: `websocket "${socket}": ${(error as Error).message}` });
        return;
      }
      if (!left) return;
      // Its answer, when it comes, frees its place and goes nowhere (a promise settles once).
      left.addEventListener("abort", () => resolve(leftDecision(socket)), { once: true });
    });
  }

  /** Ends every stream with OK (the provider stops). */
  endAll(): void {
    const standing = [...this.standby.values()].flat();
    this.standby.clear();
    for (const stream of [...this.streams.values(), ...standing]) {
      this.unregister(stream);
      stream.call.end();
    }
  }
}

/** A refusal for a bound: 503, and the client may connect again in a moment. */
function busy(reason: string): AuthorizeDecision {
  return { allow: false, status: 503, reason, busy: true };
}

/** Builds the Authorizer implementation for the service `service`. */
export function authorizerService(
  ctx: {
    authorizers?: AuthorizerRegistry | undefined;
    /**
     * The refusal of an authorizer the deployment would not run (given after the service started:
     * late-declarations.ts), or undefined to register it. A provider without it registers every one.
     */
    checkAuthorizer?(service: string, socket: string): MaybePromise<string | undefined>;
  },
  service: string,
): ServiceImpl<typeof Authorizer> {
  return {
    handleAuthorizations(call) {
      let stream: AuthorizerStream | undefined;
      // A refused call has ended: the router drops whatever the service sends after.
      const refuse = (error: Error) => call.fail(error);
      /** Set while its registration waits for checkAuthorizer; once the call closed; once it was ignored. */
      let checking = false;
      let closed = false;
      let ignored = false;
      call.onMessage((message: HandleAuthorizationsRequest) => {
        if (ignored) return;
        if (checking) {
          refuse(
            new RpcError(
              Code.INVALID_ARGUMENT,
              "websocket authorizer: a message came before the stream's registration was answered; wait for it",
            ),
          );
          return;
        }
        if (stream) {
          ctx.authorizers?.answer(stream, message);
          return;
        }
        if (message.content.case !== "registration") {
          refuse(
            new RpcError(
              Code.INVALID_ARGUMENT,
              "websocket authorizer: the first message on an authorizer stream must be a registration",
            ),
          );
          return;
        }
        const { socketName } = message.content.value;
        const problem = resourceNameProblem("websocket", socketName);
        if (problem) {
          refuse(new RpcError(Code.INVALID_ARGUMENT, problem));
          return;
        }
        if (!ctx.authorizers) {
          refuse(
            new RpcError(Code.UNIMPLEMENTED, `websocket("${socketName}"): this provider does not run authorizers`),
          );
          return;
        }
        const authorizers = ctx.authorizers;
        const register = (refusal: string | undefined) => {
          checking = false;
          if (closed) return;
          if (refusal !== undefined) {
            // Answered and ended with OK (an error status would end the service's process); the
            // provider has said why, with the fix (checkAuthorizer).
            ignored = true;
            call.write({ id: "", content: { case: "registration", value: { socketName } } });
            call.end();
            return;
          }
          try {
            stream = authorizers.register(service, socketName, call);
          } catch (error) {
            refuse(error as Error);
            return;
          }
          call.write({ id: "", content: { case: "registration", value: { socketName } } });
        };
        const refusal = ctx.checkAuthorizer?.(service, socketName);
        if (!(refusal instanceof Promise)) {
          register(refusal);
          return;
        }
        // A collect pass of the service is under way (a saved service restarted before it ends).
        checking = true;
        refusal.then(register, (error: unknown) => {
          checking = false;
          if (!closed) refuse(error instanceof Error ? error : new Error(String(error)));
        });
      });
      // The service half-closed: its authorizer is gone; the call ends with OK.
      call.onEnd(() => call.end());
      call.onClose(() => {
        closed = true;
        if (stream) ctx.authorizers?.unregister(stream);
      });
    },
  };
}
