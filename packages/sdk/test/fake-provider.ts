// The provider's side of the contract for the SDK's protocol tests, as a Router served by a real
// gRPC server on 127.0.0.1:0 (the SDK reaches it through SERVICE_ADDRESS, its fallback for a
// process): it records declarations and calls, keeps kv values in memory, and lets a test drive
// each HandleEvents stream (send event requests, await the answers, end or fail the stream).
import type { MessageInitShape } from "@bufbuild/protobuf";
import { KvStore } from "@nitric-like/contracts/kvstore";
import { type ResourceDeclareRequest, Resources, ResourceType } from "@nitric-like/contracts/resources";
import {
  type ClientMessage,
  type RegistrationRequest,
  Websocket,
  type WebsocketCloseConnectionRequest,
  type WebsocketEventRequestSchema,
  type WebsocketEventResponse,
  WebsocketHandler,
  type WebsocketSendRequest,
} from "@nitric-like/contracts/websockets";
import { Code, Router, RpcError } from "@nitric-like/rpc";
import { GrpcServer } from "@nitric-like/rpc/grpc";

type EventInit = Omit<MessageInitShape<typeof WebsocketEventRequestSchema>, "$typeName">;
type JsonObject = { [key: string]: unknown };

/** One HandleEvents stream as the provider sees it. */
export interface FakeHandlerStream {
  readonly registration: RegistrationRequest;
  /** Every message after the registration, in arrival order. */
  readonly answers: ClientMessage[];
  /** Sends an event request with a fresh id and resolves with the answer carrying that id. */
  request(event: EventInit): Promise<{ id: string; response: WebsocketEventResponse }>;
  /** Ends the call with status OK (how a provider stops a worker). */
  end(): void;
  /** Ends the call with an error status. */
  fail(code: Code, details: string): void;
}

export interface FakeProvider {
  readonly address: string;
  /** What happened, in order: "declare <type> <name>" (when acknowledged), "register <socket> <event>", "<method> ...". */
  readonly log: string[];
  readonly declarations: ResourceDeclareRequest[];
  readonly sent: WebsocketSendRequest[];
  readonly closed: WebsocketCloseConnectionRequest[];
  readonly streams: FakeHandlerStream[];
  /** Refuse Declare calls for which this returns an error; delay acknowledging them by `declareDelayMs`. */
  refuse: ((request: ResourceDeclareRequest) => RpcError | undefined) | undefined;
  declareDelayMs: number;
  /** An error for SendMessage, if set. */
  sendError: RpcError | undefined;
  /** An error for every kv call, if set. */
  kvError: RpcError | undefined;
  /** Waits for the stream registered for (socket, event type number). */
  /** The stream registered for a socket's event (or, with `route`, for one of its message routes). */
  stream(socket: string, eventType: number, route?: string): Promise<FakeHandlerStream>;
  stop(): Promise<void>;
}

export async function startFakeProvider(): Promise<FakeProvider> {
  const router = new Router();
  const kv = new Map<string, Map<string, JsonObject>>();
  const waiters: (() => void)[] = [];
  const changed = () => {
    for (const w of waiters.splice(0)) w();
  };
  let nextId = 0;

  const provider: FakeProvider = {
    address: "",
    log: [],
    declarations: [],
    sent: [],
    closed: [],
    streams: [],
    refuse: undefined,
    declareDelayMs: 0,
    sendError: undefined,
    kvError: undefined,
    async stream(socket, eventType, route = "") {
      for (;;) {
        const found = provider.streams.find(
          (s) =>
            s.registration.socketName === socket &&
            s.registration.eventType === eventType &&
            s.registration.route === route,
        );
        if (found) return found;
        await new Promise<void>((r) => waiters.push(r));
      }
    },
    async stop() {
      for (const s of provider.streams) s.end();
      await server.stop(2000);
    },
  };

  router.service(Resources, {
    declare(call, respond) {
      provider.declarations.push(call.request);
      setTimeout(() => {
        const error = provider.refuse?.(call.request);
        if (error) return respond(error);
        provider.log.push(`declare ${ResourceType[call.request.id?.type ?? 0]} ${call.request.id?.name ?? ""}`);
        respond(null, {});
      }, provider.declareDelayMs);
    },
  });

  router.service(WebsocketHandler, {
    handleEvents(call) {
      const pending = new Map<string, (m: ClientMessage) => void>();
      let ended = false;
      let stream: FakeHandlerStream | undefined;
      call.onMessage((message) => {
        if (!stream) {
          if (message.content.case !== "registrationRequest") {
            call.fail(new RpcError(Code.INVALID_ARGUMENT, "first message must register"));
            return;
          }
          const registration = message.content.value;
          provider.log.push(`register ${registration.socketName} ${registration.eventType} id="${message.id}"`);
          stream = {
            registration,
            answers: [],
            request(event) {
              const id = `ev-${++nextId}`;
              return new Promise((resolve) => {
                pending.set(id, (m) => {
                  if (m.content.case === "websocketEventResponse") resolve({ id: m.id, response: m.content.value });
                });
                call.write({ id, content: { case: "websocketEventRequest", value: event } });
              });
            },
            end() {
              if (ended) return;
              ended = true;
              call.end();
            },
            fail(code, details) {
              if (ended) return;
              ended = true;
              call.fail(new RpcError(code, details));
            },
          };
          provider.streams.push(stream);
          call.write({ id: "", content: { case: "registrationResponse", value: {} } });
          changed();
          return;
        }
        stream.answers.push(message);
        pending.get(message.id)?.(message);
        pending.delete(message.id);
      });
      call.onEnd(() => stream?.end());
    },
  });

  router.service(Websocket, {
    sendMessage(call, respond) {
      provider.log.push(`sendMessage ${call.request.connectionId}`);
      if (provider.sendError) return respond(provider.sendError);
      provider.sent.push(call.request);
      respond(null, {});
    },
    closeConnection(call, respond) {
      provider.closed.push(call.request);
      respond(null, {});
    },
    socketDetails(call, respond) {
      respond(null, { url: `ws://127.0.0.1:9999/${call.request.socketName}` });
    },
  });

  const storeOf = (name: string) => {
    let store = kv.get(name);
    if (!store) {
      store = new Map();
      kv.set(name, store);
    }
    return store;
  };
  router.service(KvStore, {
    getValue(call, respond) {
      const { store = "", key = "" } = call.request.ref ?? {};
      provider.log.push(`getValue ${store} ${key}`);
      if (provider.kvError) return respond(provider.kvError);
      const value = storeOf(store).get(key);
      if (!value) return respond(new RpcError(Code.NOT_FOUND, `key ${key} not found`));
      respond(null, { value: { ref: { store, key }, content: value as never } });
    },
    setValue(call, respond) {
      const { store = "", key = "" } = call.request.ref ?? {};
      provider.log.push(`setValue ${store} ${key}`);
      if (provider.kvError) return respond(provider.kvError);
      storeOf(store).set(key, (call.request.content ?? {}) as JsonObject);
      respond(null, {});
    },
    deleteKey(call, respond) {
      const { store = "", key = "" } = call.request.ref ?? {};
      provider.log.push(`deleteKey ${store} ${key}`);
      storeOf(store).delete(key);
      respond(null, {});
    },
    scanKeys(call) {
      const name = call.request.store?.name ?? "";
      provider.log.push(`scanKeys ${name} ${call.request.prefix}`);
      for (const key of [...storeOf(name).keys()].sort()) {
        if (key.startsWith(call.request.prefix)) call.write({ key });
      }
      call.end();
    },
  });

  // A GrpcServer registers the router's methods when it is made: after every service.
  const server = new GrpcServer(router);
  const port = await server.bind("127.0.0.1:0");
  return Object.assign(provider, { address: `127.0.0.1:${port}` });
}
