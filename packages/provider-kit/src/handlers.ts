/**
 * Handler streams: each (socket, event) has at most one live HandleEvents stream, opened by the
 * service that handles it. Events go down the stream tagged with an id and the answers come back
 * in any order; this is the hot path, so it keeps one Map of pending events per stream and does
 * no per-event logging.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { LeadingEdgeBatcher } from "@nitric-like/contracts/batcher";
import {
  type ClientMessage,
  type ServerMessageSchema,
  type WebsocketEventRequestSchema,
  type WebsocketEventResponse,
  WebsocketEventType,
} from "@nitric-like/contracts/websockets";
import type { HandlerRegistration, Logger, WebsocketEvent } from "@nitric-like/spec";

type EventRequest = MessageInitShape<typeof WebsocketEventRequestSchema>;
type ServerMessageInit = MessageInitShape<typeof ServerMessageSchema>;
type HandlerCall = ServerDuplexStream<ClientMessage, MessageInitShape<typeof ServerMessageSchema>>;

/** Why an event could not be handled. */
export type HandlerFailure = "none" | "unavailable" | "timeout" | "gone";

/** An event that no handler answered. */
export class HandlerError extends Error {
  override readonly name = "HandlerError";
  constructor(
    readonly failure: HandlerFailure,
    message: string,
  ) {
    super(message);
  }
}

/** The event names, by the contract's enum. */
export const EVENT_NAMES: Record<WebsocketEventType, WebsocketEvent> = {
  [WebsocketEventType.Connect]: "connect",
  [WebsocketEventType.Disconnect]: "disconnect",
  [WebsocketEventType.Message]: "message",
};

/**
 * Who hears how an event ended. The message path passes one long-lived object (the gateway) and
 * the connection as `context`, so an event costs no promise and no closure; dispatch() wraps a
 * promise around it for everyone else.
 */
export interface AnswerSink<C = unknown> {
  answered(context: C, response: WebsocketEventResponse): void;
  failed(context: C, error: HandlerError): void;
}

/** Reports a failure a microtask later, never from inside the call that found it (as a rejection). */
function failLater<C>(sink: AnswerSink<C>, context: C, error: HandlerError): void {
  queueMicrotask(() => sink.failed(context, error));
}

/** The sink behind dispatch()'s promise. */
class PromiseSink implements AnswerSink<undefined> {
  constructor(
    readonly answered: (context: undefined, response: WebsocketEventResponse) => void,
    private readonly reject: (error: HandlerError) => void,
  ) {}
  failed(_context: undefined, error: HandlerError): void {
    this.reject(error);
  }
}

interface Pending {
  request: EventRequest;
  sink: AnswerSink<never>;
  context: unknown;
  /** When the handler's time is up (Date.now() milliseconds). */
  deadline: number;
}

/**
 * One live handler stream. A stream registered with `batch` (our SDK) gets its events batched on
 * the leading edge: alone, an event goes out at once; events that follow one another within a
 * turn of the event loop go as one EventBatch message.
 */
export class HandlerStream {
  readonly pending = new Map<string, Pending>();
  /** Our SDK's streams get their events in batches (see LeadingEdgeBatcher). */
  private readonly batcher = new LeadingEdgeBatcher<ServerMessageInit>(
    (message) => this.call.write(message),
    (events) => this.call.write({ id: "", content: { case: "eventBatch", value: { events } } }),
  );

  constructor(
    readonly service: string,
    readonly socket: string,
    readonly event: WebsocketEvent,
    readonly call: HandlerCall,
    private readonly registry: HandlerRegistry,
    readonly batch = false,
  ) {}

  private write(message: ServerMessageInit): void {
    if (this.batch) this.batcher.push(message);
    else this.call.write(message);
  }

  /** Sends an event; `sink` hears its answer, or why there is none, with `context`. */
  send<C>(request: EventRequest, sink: AnswerSink<C>, context: C): void {
    const id = this.registry.nextId();
    // No timer per event (this is the hot path): the registry sweeps expired events.
    this.pending.set(id, { request, sink, context, deadline: Date.now() + this.registry.timeoutMs });
    this.registry.sweepSoon();
    this.write({ id, content: { case: "websocketEventRequest", value: request } });
  }

  /**
   * Fails the events whose handler did not answer in time. Events are kept in the order they were
   * sent, all with the same time limit, so the first one still in time ends the search.
   */
  expire(now: number): void {
    for (const [id, p] of this.pending) {
      if (p.deadline > now) return;
      this.pending.delete(id);
      (p.sink as AnswerSink).failed(
        p.context,
        new HandlerError(
          "timeout",
          `websocket "${this.socket}": the ${this.event} handler of service "${this.service}" did not answer within ${this.registry.timeoutMs / 1000} s (connection ${p.request.connectionId})`,
        ),
      );
    }
  }

  /** Routes an answer (or a batch of them) to its pending event. */
  answer(message: ClientMessage): void {
    if (message.content.case === "answerBatch") {
      for (const a of message.content.value.answers) this.answer(a);
      return;
    }
    if (message.content.case !== "websocketEventResponse") return;
    const pending = this.pending.get(message.id);
    if (!pending) return;
    this.pending.delete(message.id);
    try {
      (pending.sink as AnswerSink).answered(pending.context, message.content.value);
    } catch (error) {
      // One answer's trouble must not cost the others of its batch.
      this.registry.reportSinkError(this, error);
    }
  }

  /**
   * The stream is gone (its service stopped, crashed or was replaced): every event it had not
   * answered goes to the next handler for the same event, waiting for it like any other event.
   * Delivery is therefore at least once: a handler that died mid-event may see it again.
   */
  redeliverAll(): void {
    this.batcher.clear();
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) this.registry.deliver(this.socket, this.event, p.request, p.sink as AnswerSink, p.context);
  }
}

/** Most events that may wait for one (socket, event) handler to come back; more fail at once. */
export const MAX_WAITING_EVENTS = 1000;

/** The live handler streams of a provider. */
export class HandlerRegistry {
  private readonly streams = new Map<string, HandlerStream>();
  /**
   * Handlers that have existed or that the spec promises, with the service that handles each
   * (undefined when unknown): while that service is not down, their absence is temporary.
   */
  private readonly expected = new Map<string, string | undefined>();
  /** Services whose process exited and that are not restarting, with how they ended. */
  private readonly down = new Map<string, string>();
  private readonly waiters = new Map<string, (() => void)[]>();
  private readonly listeners: (() => void)[] = [];
  private counter = 0;
  private stopping = false;

  constructor(
    private readonly logger: Logger,
    readonly timeoutMs: number,
    private readonly waitMs: number,
  ) {}

  private sweeper: NodeJS.Timeout | undefined;

  /** Starts the timeout sweep if it is not running; it stops itself once nothing is pending. */
  sweepSoon(): void {
    if (this.sweeper) return;
    // A tenth of the time limit (10 ms to 250 ms): timeouts fire at most that late.
    const every = Math.max(10, Math.min(250, this.timeoutMs / 10));
    this.sweeper = setInterval(() => {
      const now = Date.now();
      let left = 0;
      for (const s of this.streams.values()) {
        s.expire(now);
        left += s.pending.size;
      }
      if (left === 0) {
        clearInterval(this.sweeper);
        this.sweeper = undefined;
      }
    }, every);
    this.sweeper.unref();
  }

  /** An answer's sink threw: logged, and the stream goes on. */
  reportSinkError(stream: HandlerStream, error: unknown): void {
    this.logger.error(
      `websocket "${stream.socket}": handling an answer of service "${stream.service}" failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
    );
  }

  /** The next event id. */
  nextId(): string {
    this.counter = (this.counter + 1) % Number.MAX_SAFE_INTEGER;
    return this.counter.toString(36);
  }

  private static key(socket: string, event: WebsocketEvent): string {
    return `${socket}\u0000${event}`;
  }

  /** Marks a handler as promised (by the spec): events wait for it instead of failing. */
  expect(socket: string, event: WebsocketEvent, service?: string): void {
    this.expected.set(HandlerRegistry.key(socket, event), service);
  }

  /** True when a handler for the event is live or promised. */
  isExpected(socket: string, event: WebsocketEvent): boolean {
    const key = HandlerRegistry.key(socket, event);
    return this.streams.has(key) || this.expected.has(key);
  }

  /** Adds a stream; a stream already registered for the same event is ended with OK. */
  register(service: string, socket: string, event: WebsocketEvent, call: HandlerCall, batch = false): HandlerStream {
    const key = HandlerRegistry.key(socket, event);
    const old = this.streams.get(key);
    const stream = new HandlerStream(service, socket, event, call, this, batch);
    this.streams.set(key, stream);
    this.expected.set(key, service);
    // A registration proves the process is up, even if the CLI never said it was starting.
    this.down.delete(service);
    if (old) {
      if (old.service !== service) {
        this.logger.warn(
          `websocket "${socket}": service "${service}" now handles ${event} events instead of service "${old.service}"; a socket event has one handler, so keep socket.on("${event}", ...) in one service`,
        );
      }
      this.retire(old);
    }
    this.wake(key);
    this.changed();
    return stream;
  }

  /** Removes a stream that ended. */
  unregister(stream: HandlerStream): void {
    const key = HandlerRegistry.key(stream.socket, stream.event);
    if (this.streams.get(key) === stream) {
      this.streams.delete(key);
      this.changed();
    }
    stream.redeliverAll();
  }

  private retire(stream: HandlerStream): void {
    stream.redeliverAll();
    try {
      // OK, never an error status: an error crashes @nitric/sdk's stream handling.
      stream.call.end();
    } catch {
      // Already closed.
    }
  }

  private wake(key: string): void {
    const list = this.waiters.get(key);
    if (!list) return;
    this.waiters.delete(key);
    for (const wake of list) wake();
  }

  /** Ends the streams of a service whose process is gone; its unanswered events wait or fail. */
  private dropService(service: string): void {
    let changed = false;
    for (const [key, stream] of this.streams) {
      if (stream.service !== service) continue;
      this.streams.delete(key);
      changed = true;
      this.retire(stream);
    }
    if (changed) this.changed();
  }

  /**
   * A service's process is (re)starting: streams of its previous process are dead even if gRPC has
   * not noticed yet, and events for its handlers wait for the new process to register.
   */
  serviceStarting(service: string): void {
    this.down.delete(service);
    this.dropService(service);
  }

  /**
   * A service's process exited. Its events keep waiting (the CLI restarts crashed services, and
   * clients should survive that); when the wait runs out, the error says how the service ended.
   */
  serviceExited(service: string, how: string): void {
    this.down.set(service, how);
    this.dropService(service);
  }

  /** The live stream for an event. */
  get(socket: string, event: WebsocketEvent): HandlerStream | undefined {
    return this.streams.get(HandlerRegistry.key(socket, event));
  }

  /** Why a waited-for handler did not come back, naming its service and how it ended if it exited. */
  private absent(socket: string, event: WebsocketEvent, key: string, connection: string): HandlerError {
    const service = this.expected.get(key);
    const how = service === undefined ? undefined : this.down.get(service);
    const why =
      how === undefined
        ? "is its service crashing?"
        : `its service "${service}" ${how} and has not registered it again; fix the service and it restarts`;
    return new HandlerError(
      "unavailable",
      `websocket "${socket}": the ${event} handler did not register within ${this.waitMs / 1000} s (connection ${connection}); ${why}`,
    );
  }

  /**
   * Sends an event to its handler and resolves with the answer. A promised handler that is not
   * live (its service is starting or restarting) is waited for, up to the wait limit; an event
   * nobody handles fails at once.
   */
  dispatch(socket: string, event: WebsocketEvent, request: EventRequest): Promise<WebsocketEventResponse> {
    return new Promise((resolve, reject) => {
      this.deliver(socket, event, request, new PromiseSink((_, response) => resolve(response), reject), undefined);
    });
  }

  /**
   * dispatch() without a promise: `sink` hears the answer, or the failure, with `context`. A failure
   * is never reported from inside this call (always a microtask or more later), as a rejection would be.
   */
  deliver<C>(socket: string, event: WebsocketEvent, request: EventRequest, sink: AnswerSink<C>, context: C): void {
    const key = HandlerRegistry.key(socket, event);
    const stream = this.stopping ? undefined : this.streams.get(key);
    if (stream) {
      stream.send(request, sink, context);
      return;
    }
    // Past the hot path: an event that is not sent at once.
    const fail = (error: HandlerError) => failLater(sink, context, error);
    if (this.stopping) {
      fail(new HandlerError("unavailable", `websocket "${socket}": the provider is stopping`));
      return;
    }
    if (!this.expected.has(key)) {
      fail(
        new HandlerError(
          "none",
          `websocket "${socket}": no service handles ${event} events; add socket.on("${event}", ...)`,
        ),
      );
      return;
    }
    const list = this.waiters.get(key) ?? [];
    // Bounded: a flood of events for a handler that is not coming back must not grow memory.
    if (list.length >= MAX_WAITING_EVENTS) {
      fail(
        new HandlerError(
          "unavailable",
          `websocket "${socket}": ${MAX_WAITING_EVENTS} events already wait for the ${event} handler to register`,
        ),
      );
      return;
    }
    this.waiters.set(key, list);
    const timer = setTimeout(() => {
      const at = list.indexOf(wake);
      if (at >= 0) list.splice(at, 1);
      resume();
    }, this.waitMs);
    const wake = () => {
      clearTimeout(timer);
      // After the registration that woke it has been answered: register() wakes before it returns.
      queueMicrotask(resume);
    };
    const resume = () => {
      const live = this.streams.get(key);
      if (live && !this.stopping) live.send(request, sink, context);
      else
        fail(
          this.stopping
            ? new HandlerError("unavailable", `websocket "${socket}": the provider is stopping`)
            : this.absent(socket, event, key, request.connectionId ?? ""),
        );
    };
    list.push(wake);
  }

  /** The live registrations. */
  registrations(): HandlerRegistration[] {
    return [...this.streams.values()].map((s) => ({ service: s.service, socket: s.socket, event: s.event }));
  }

  /** Events in flight, over all streams. */
  pendingCount(): number {
    let n = 0;
    for (const s of this.streams.values()) n += s.pending.size;
    return n;
  }

  /** Calls back when registrations change. */
  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }

  /** Ends every stream with OK; events still unanswered fail as the provider is stopping. */
  endAll(): void {
    this.stopping = true;
    const streams = [...this.streams.values()];
    this.streams.clear();
    for (const s of streams) this.retire(s);
    for (const key of [...this.waiters.keys()]) this.wake(key);
  }
}
