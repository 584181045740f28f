// A real grpc-js server on 127.0.0.1:0 playing the provider's side of the contract, for the SDK's
// protocol tests: it records declarations and calls, keeps kv values in memory, and lets a test
// drive each HandleEvents stream (send event requests, await the answers, end or fail the stream).
import type { MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { addService, grpcError } from "@nitric-like/contracts/grpc";
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
  fail(code: grpc.status, details: string): void;
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
  refuse: ((request: ResourceDeclareRequest) => grpc.ServiceError | undefined) | undefined;
  declareDelayMs: number;
  /** An error for SendMessage, if set. */
  sendError: grpc.ServiceError | undefined;
  /** An error for every kv call, if set. */
  kvError: grpc.ServiceError | undefined;
  /** Waits for the stream registered for (socket, event type number). */
  stream(socket: string, eventType: number): Promise<FakeHandlerStream>;
  stop(): Promise<void>;
}

export async function startFakeProvider(): Promise<FakeProvider> {
  const server = new grpc.Server();
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
    async stream(socket, eventType) {
      for (;;) {
        const found = provider.streams.find(
          (s) => s.registration.socketName === socket && s.registration.eventType === eventType,
        );
        if (found) return found;
        await new Promise<void>((r) => waiters.push(r));
      }
    },
    async stop() {
      for (const s of provider.streams) s.end();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };

  addService(server, Resources, {
    declare(call, callback) {
      provider.declarations.push(call.request);
      setTimeout(() => {
        const error = provider.refuse?.(call.request);
        if (error) return callback(error);
        provider.log.push(`declare ${ResourceType[call.request.id?.type ?? 0]} ${call.request.id?.name ?? ""}`);
        callback(null, {});
      }, provider.declareDelayMs);
    },
  });

  addService(server, WebsocketHandler, {
    handleEvents(call) {
      const pending = new Map<string, (m: ClientMessage) => void>();
      let ended = false;
      let stream: FakeHandlerStream | undefined;
      call.on("data", (message: ClientMessage) => {
        if (!stream) {
          if (message.content.case !== "registrationRequest") {
            call.emit("error", grpcError(grpc.status.INVALID_ARGUMENT, "first message must register"));
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
              call.emit("error", grpcError(code, details));
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
      call.on("error", () => {});
      call.on("end", () => stream?.end());
    },
  });

  addService(server, Websocket, {
    sendMessage(call, callback) {
      provider.log.push(`sendMessage ${call.request.connectionId}`);
      if (provider.sendError) return callback(provider.sendError);
      provider.sent.push(call.request);
      callback(null, {});
    },
    closeConnection(call, callback) {
      provider.closed.push(call.request);
      callback(null, {});
    },
    socketDetails(call, callback) {
      callback(null, { url: `ws://127.0.0.1:9999/${call.request.socketName}` });
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
  addService(server, KvStore, {
    getValue(call, callback) {
      const { store = "", key = "" } = call.request.ref ?? {};
      provider.log.push(`getValue ${store} ${key}`);
      if (provider.kvError) return callback(provider.kvError);
      const value = storeOf(store).get(key);
      if (!value) return callback(grpcError(grpc.status.NOT_FOUND, `key ${key} not found`));
      callback(null, { value: { ref: { store, key }, content: value as never } });
    },
    setValue(call, callback) {
      const { store = "", key = "" } = call.request.ref ?? {};
      provider.log.push(`setValue ${store} ${key}`);
      if (provider.kvError) return callback(provider.kvError);
      storeOf(store).set(key, (call.request.content ?? {}) as JsonObject);
      callback(null, {});
    },
    deleteKey(call, callback) {
      const { store = "", key = "" } = call.request.ref ?? {};
      provider.log.push(`deleteKey ${store} ${key}`);
      storeOf(store).delete(key);
      callback(null, {});
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

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, p) =>
      error ? reject(error) : resolve(p),
    ),
  );
  return Object.assign(provider, { address: `127.0.0.1:${port}` });
}
