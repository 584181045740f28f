/** The Websocket and WebsocketHandler services of one service's router. */
import { isUtf8 } from "node:buffer";
import type { ClientMessage, Websocket, WebsocketHandler } from "@nitric-like/contracts/websockets";
import { Code, RpcError, type ServiceImpl } from "@nitric-like/rpc";
import { resourceNameProblem, routeNameProblem } from "@nitric-like/spec";
import type { AuthorizerRegistry } from "./authorizer.js";
import type { MaybePromise, SocketBackend } from "./backends.js";
import { EVENT_NAMES, type HandlerRegistry, type HandlerStream } from "./handlers.js";
import type { LateRegistration } from "./late-declarations.js";
import type { Permissions } from "./permissions.js";

/**
 * How many pieces the ws library may hold for one client of a gateway (the local one, and the AWS
 * emulator's): the fragments of one message, and the socket chunks of a frame that is not whole
 * yet (its options maxFragments and maxBufferedChunks). Its own bounds (16,384 and 262,144) let a
 * client that sends a 120 KB frame a byte at a time make the gateway hold about 18 MB (ten such
 * clients took `run` from 76 to 258 MB). Browsers send whole frames, and a 128 KB message arrives
 * in about a hundred TCP segments, so no client that means well comes near 1,024.
 */
export const MAX_MESSAGE_PIECES = 1024;

/**
 * Most bytes that may wait to be sent to one client of a gateway (the local one, and the AWS
 * emulator's). A client that stops reading (a stalled tab, a broken peer, a hostile client) would
 * otherwise make `run` hold everything sent to it; over this it is closed with 1008
 * (notReadingReason) and cut off a second later.
 */
export const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;

/** The close reason for a client over MAX_BUFFERED_BYTES. */
export function notReadingReason(): string {
  return `client not reading: over ${MAX_BUFFERED_BYTES / 1024 / 1024} MB waiting to be sent to it; read the messages you are sent`;
}

/**
 * The reason to send with a close the ws library starts on its own (it sends none), for a gateway
 * whose messages may be up to `maxMessageBytes`: the code says what was wrong with the client's
 * frames, so the client can tell.
 */
export function protocolCloseReason(code: number | undefined, maxMessageBytes: number): string | undefined {
  switch (code) {
    case 1009:
      return `message too big: at most ${maxMessageBytes} bytes`;
    case 1007:
      return "invalid UTF-8 in a text frame or close reason; send bytes as a binary frame";
    case 1002:
      return "protocol error: a frame breaks RFC 6455 (unmasked, bad opcode, bad fragment or close code)";
    case 1008:
      // ws closes with 1008 only for MAX_MESSAGE_PIECES (its errors WS_ERR_TOO_MANY_BUFFERED_PARTS).
      return `too many pieces: over ${MAX_MESSAGE_PIECES} fragments in a message, or chunks of a frame; send whole frames`;
    default:
      return undefined;
  }
}

/**
 * How many pongs may wait to be written to a client before it is closed for flooding pings. The ws
 * library answers every ping with a pong and cuts a client off, with no close frame and so no
 * reason, once 60 of them wait (its maxPendingAutoPongs): a gateway (the local one, and the AWS
 * emulator's) closes it first, with one.
 */
export const MAX_PENDING_PONGS = 50;

/** The close reason for a client that pings faster than it takes its pongs (1008). */
export function pingFloodReason(): string {
  return `ping flood: ${MAX_PENDING_PONGS} pongs wait to be written to you; read them, and wait for a pong before the next ping`;
}

/** MAX_MESSAGE_PIECES as ws 8's server options, to spread into them (@types/ws does not declare these). */
export const WS_PIECE_BOUNDS: object = { maxFragments: MAX_MESSAGE_PIECES, maxBufferedChunks: MAX_MESSAGE_PIECES };

/** What the websocket services need from the provider. */
export interface WebsocketContext {
  handlers: HandlerRegistry;
  /** The sockets' authorizers; a provider without them refuses authorizer streams. */
  authorizers?: AuthorizerRegistry;
  permissions: Permissions;
  gateway(name: string): SocketBackend | undefined;
  /**
   * The refusal of a handler registration the deployment would not route to the service (one the
   * collect pass never saw: late-declarations.ts), or undefined to register it. A provider
   * without it registers every one.
   */
  checkRegistration?(service: string, registration: LateRegistration): MaybePromise<string | undefined>;
  /** As checkRegistration, for an authorizer (`websocket(socket, { authorize })`). */
  checkAuthorizer?(service: string, socket: string): MaybePromise<string | undefined>;
}

/** The gateway of a socket the calling service may manage; otherwise the status that says why not. */
export function gatewayFor(ctx: WebsocketContext, service: string, socket: string): SocketBackend {
  const problem = resourceNameProblem("websocket", socket);
  if (problem) throw new RpcError(Code.INVALID_ARGUMENT, problem);
  const gateway = ctx.gateway(socket);
  if (!gateway) {
    throw new RpcError(
      Code.NOT_FOUND,
      `websocket(${JSON.stringify(socket)}): no such socket; declare it with websocket(${JSON.stringify(socket)})`,
    );
  }
  ctx.permissions.check(service, "websocket", socket, "manage");
  return gateway;
}

/**
 * Calls `ok` with a backend's answer, at once when it is not a promise (the local hot path), and
 * `fail` with the error when it rejects or `ok` throws.
 */
export function settle<T>(value: MaybePromise<T>, ok: (value: T) => void, fail: (error: Error) => void): void {
  if (value instanceof Promise) {
    value.then(ok).catch((error: unknown) => fail(asGrpcError(error)));
    return;
  }
  try {
    ok(value);
  } catch (error) {
    fail(asGrpcError(error));
  }
}

/** A backend's failure as a gRPC error: errors that carry a gRPC code pass; others become INTERNAL. */
export function asGrpcError(error: unknown): Error {
  if (error instanceof Error && typeof (error as { code?: unknown }).code === "number") return error;
  return new RpcError(Code.INTERNAL, error instanceof Error ? error.message : String(error));
}

/** Characters of a connection id (or other name from outside) an error message shows. */
const SHOWN_ID_CHARS = 64;

/**
 * A connection id, or any other name from outside (a key or socket name in an event), as an error
 * message or log line shows it: quoted, and cut after SHOWN_ID_CHARS characters with its length
 * said. An id a service took from a client may be any length (up to a call's size), and the
 * message goes back to the service and often on to its log or its client.
 */
export function shownId(id: string): string {
  if (id.length <= SHOWN_ID_CHARS) return JSON.stringify(id);
  return `${JSON.stringify(id.slice(0, SHOWN_ID_CHARS))}... (${id.length} characters)`;
}

/**
 * UNAVAILABLE for a send that closed its connection with 1008 because its client was not reading
 * (too much waited to be sent to it): a dashboard's send says so (503), on every provider alike,
 * rather than that the connection is not open.
 */
export function closedNotReading(socket: string, id: string) {
  return new RpcError(
    Code.UNAVAILABLE,
    `websocket "${socket}": connection ${shownId(id)} was closed with 1008 because it was not reading (too much waited to be sent to it), so this message may not reach it; its client must read what it is sent, then connect again`,
  );
}

/** NOT_FOUND for a connection that is not open. */
export function notConnected(socket: string, id: string) {
  return new RpcError(
    Code.NOT_FOUND,
    `websocket "${socket}": connection ${shownId(id)} is not connected (it closed, or never existed)`,
  );
}

/** Checks a close code and reason a service gives (RFC 6455 section 7.4); returns the code to send. */
export function checkClose(socket: string, code: number, reason: string): number {
  const closeCode = code === 0 ? 1000 : code;
  if (closeCode !== 1000 && (closeCode < 3000 || closeCode > 4999)) {
    throw new RpcError(
      Code.INVALID_ARGUMENT,
      `websocket "${socket}": close code ${code} is not allowed; use 1000 or 3000-4999`,
    );
  }
  if (Buffer.byteLength(reason, "utf8") > 123) {
    throw new RpcError(
      Code.INVALID_ARGUMENT,
      `websocket "${socket}": a close reason is at most 123 bytes (RFC 6455); shorten it`,
    );
  }
  return closeCode;
}

/** Builds the Websocket implementation for the service `service`. */
export function websocketService(ctx: WebsocketContext, service: string): ServiceImpl<typeof Websocket> {
  return {
    sendMessage(call, callback) {
      try {
        const { socketName, connectionId, data, binary } = call.request;
        const gateway = gatewayFor(ctx, service, socketName);
        // Nitric's SDKs leave `binary` unset: text when the bytes are UTF-8, as they almost always are.
        const asBinary = binary ?? !isUtf8(data);
        if (binary === false && !isUtf8(data)) {
          throw new RpcError(
            Code.INVALID_ARGUMENT,
            `websocket "${socketName}": a text frame must be UTF-8; send these bytes as binary`,
          );
        }
        settle(
          gateway.send(connectionId, data, asBinary),
          (sent) => callback(sent ? null : notConnected(socketName, connectionId), {}),
          callback,
        );
      } catch (error) {
        callback(error as Error);
      }
    },
    closeConnection(call, callback) {
      try {
        const { socketName, connectionId, code, reason } = call.request;
        const gateway = gatewayFor(ctx, service, socketName);
        const closeCode = checkClose(socketName, code, reason);
        settle(
          gateway.close(connectionId, closeCode, reason),
          (closed) => callback(closed ? null : notConnected(socketName, connectionId), {}),
          callback,
        );
      } catch (error) {
        callback(error as Error);
      }
    },
    socketDetails(call, callback) {
      try {
        const gateway = gatewayFor(ctx, service, call.request.socketName);
        callback(null, { url: gateway.url });
      } catch (error) {
        callback(error as Error);
      }
    },
  };
}

/** Builds the WebsocketHandler implementation for the service `service`. */
export function websocketHandlerService(ctx: WebsocketContext, service: string): ServiceImpl<typeof WebsocketHandler> {
  return {
    handleEvents(call) {
      let stream: HandlerStream | undefined;
      /** Set while its registration waits for checkRegistration; set once the call is closed. */
      let checking = false;
      let closed = false;
      /** Set once its registration was refused and the call ended: what follows is not read. */
      let refused = false;
      call.onMessage((message: ClientMessage) => {
        if (refused) return;
        if (checking) {
          // Nothing but its registration is due before it is answered.
          call.fail(
            new RpcError(
              Code.INVALID_ARGUMENT,
              "websocket handler: a message came before the stream's registration was answered; wait for its registration_response",
            ),
          );
          return;
        }
        if (stream) {
          if (message.content.case === "registrationRequest") {
            // Left unanswered, a client waiting for its registration_response would wait forever.
            const again = message.content.value;
            const what = (route: string, event: string | undefined, type: number) =>
              route === "" ? `${event ?? `event type ${type}`} events` : `route ${JSON.stringify(route)}`;
            call.fail(
              new RpcError(
                Code.INVALID_ARGUMENT,
                `websocket handler: this stream already handles ${what(stream.route, stream.event, 0)} of websocket ${JSON.stringify(stream.socket)}, and a stream registers once; open another HandleEvents stream for ${what(again.route, EVENT_NAMES[again.eventType], again.eventType)} of websocket ${JSON.stringify(again.socketName)}`,
              ),
            );
            return;
          }
          stream.answer(message);
          return;
        }
        if (message.content.case !== "registrationRequest") {
          call.fail(
            new RpcError(
              Code.INVALID_ARGUMENT,
              "websocket handler: the first message on a handler stream must be a registration",
            ),
          );
          return;
        }
        const { socketName, eventType, batch, route } = message.content.value;
        const event = EVENT_NAMES[eventType];
        const problem =
          resourceNameProblem("websocket", socketName) ??
          (event === undefined ? `websocket handler: unknown event type ${eventType}` : undefined) ??
          (route === ""
            ? undefined
            : event !== "message"
              ? `websocket "${socketName}": a route is registered for message events, not ${event} events`
              : routeNameProblem(socketName, route));
        if (problem !== undefined || event === undefined) {
          call.fail(new RpcError(Code.INVALID_ARGUMENT, problem ?? "unreachable"));
          return;
        }
        const register = (refusal: string | undefined) => {
          checking = false;
          if (closed) return;
          if (refusal !== undefined) {
            refused = true;
            // Answered, so neither SDK waits for it, then ended with OK (an error status would end
            // the service's process): its events go where a deployment sends them. The provider
            // has said why, with the fix (checkRegistration).
            call.write({ id: "", content: { case: "registrationResponse", value: { batch: false } } });
            call.end();
            return;
          }
          stream = ctx.handlers.register(service, socketName, event, call, batch, route);
          call.write({ id: "", content: { case: "registrationResponse", value: { batch } } });
        };
        const refusal = ctx.checkRegistration?.(service, { socket: socketName, event, route });
        if (!(refusal instanceof Promise)) {
          register(refusal);
          return;
        }
        // A collect pass of the service is under way (a saved service restarted before it ends).
        checking = true;
        refusal.then(register, (error: unknown) => {
          checking = false;
          if (!closed) call.fail(asGrpcError(error));
        });
      });
      // The service half-closed: its handler is gone; the call ends with OK.
      call.onEnd(() => call.end());
      call.onClose(() => {
        closed = true;
        if (stream) ctx.handlers.unregister(stream);
      });
    },
  };
}
