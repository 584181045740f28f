/**
 * Handler streams: each (socket, event) has at most one live HandleEvents stream, opened by the
 * service that handles it (earlier streams a newer registration displaced stand by: see
 * HandlerRegistry.register). Events go down the stream tagged with an id and the answers come back
 * in any order; this is the hot path, so it keeps one Map of pending events per stream and does
 * no per-event logging.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { LeadingEdgeBatcher } from "@nitric-like/contracts/batcher";
import {
  type ClientMessage,
  type ServerMessageSchema,
  type WebsocketEventRequestSchema,
  type WebsocketEventResponse,
  WebsocketEventType,
} from "@nitric-like/contracts/websockets";
import type { ServerStream } from "@nitric-like/rpc";
import type { HandlerRegistration, Logger, WebsocketEvent } from "@nitric-like/spec";
import { MAX_STANDBY, takeStandby } from "./standby.js";

type EventRequest = MessageInitShape<typeof WebsocketEventRequestSchema>;
type ServerMessageInit = MessageInitShape<typeof ServerMessageSchema>;
/** The provider's side of a handler stream: what the registry writes events to. */
type HandlerCall = ServerStream<ServerMessageInit>;

/** Why an event could not be handled ("poison": its service died each time it was delivered). */
export type HandlerFailure = "none" | "unavailable" | "timeout" | "gone" | "poison";

/** An event that no handler answered. */
export class HandlerError extends Error {
  override readonly name = "HandlerError";
  constructor(
    readonly failure: HandlerFailure,
    message: string,
    /** The service whose handler the event was for, when known (always for "poison"). */
    readonly service?: string,
    /** The message route whose handler the event was for ("" or undefined: none). */
    readonly route?: string,
    /**
     * True when it failed because its service waits for a file change (serviceWaiting): every
     * event of the service fails so until then, so a gateway logs them once per burst.
     */
    readonly serviceWaiting = false,
  ) {
    super(message);
  }
}

/**
 * How many deliveries of one event may end with its service dying (its process or thread exiting
 * on its own while the event was unanswered) before the event is dropped as a poison event and
 * fails with "poison". The first such delivery may have been shared with other events; every
 * later one is alone, on every stream of its service (see Quarantine), so the last death is the
 * event's own doing. A later one that had to go beside a handler still running past twice its
 * timeout does not count as the last (once per event; see Quarantine), so such an event gets one
 * delivery more at most.
 */
export const MAX_FATAL_DELIVERIES = 2;

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

/**
 * Who hears the answer of an event that was failed as timed out (see dispatch's `late`): its
 * handler is still running, and what it does (a connect handler storing its connection) outlives
 * the timeout. `answered` gets the answer once it comes; `abandoned` says it never will: the
 * registry stopped waiting (the provider is stopping, or MAX_LATE_EVENTS wait for a stream
 * already). Exactly one of them is called, once.
 */
export interface LateAnswer {
  answered(response: WebsocketEventResponse): void;
  abandoned(error: HandlerError): void;
}

/** Most timed-out events (see LateAnswer) one stream waits for; past it the oldest is abandoned. */
export const MAX_LATE_EVENTS = 1000;

/**
 * The sink of an event once it has timed out: its answer, or the end of the wait, goes to its
 * LateAnswer. A redelivery (its stream ended) keeps it, so the handler's copy in the next stream
 * (the restarted service) answers for it.
 */
class LateSink implements AnswerSink<undefined> {
  private done = false;
  constructor(private readonly late: LateAnswer) {}
  answered(_context: undefined, response: WebsocketEventResponse): void {
    if (this.done) return;
    this.done = true;
    this.late.answered(response);
  }
  failed(_context: undefined, error: HandlerError): void {
    if (this.done) return;
    this.done = true;
    this.late.abandoned(error);
  }
}

/**
 * The close reason for a client whose message was dropped as a poison event (at most 123 bytes, as
 * RFC 6455 section 5.5 allows): whose handler it was for (the message handler's or a route's) and
 * the service that died with it.
 */
export function poisonCloseReason(service: string, route = ""): string {
  const whose = route === "" ? "message handler's" : `route ${JSON.stringify(route)}'s`;
  const reason = `${whose} service "${service}" exited ${times(MAX_FATAL_DELIVERIES)} while handling this message`;
  if (Buffer.byteLength(reason) <= 123) return reason;
  return `${route === "" ? "message handler's" : "route's"} service exited while handling this message`;
}

/** One event on its way to a handler; the same object follows the event through redeliveries. */
interface Pending {
  request: EventRequest;
  sink: AnswerSink<never>;
  context: unknown;
  /** When the handler's time is up (Date.now() milliseconds), once sent. */
  deadline: number;
  /** How many of its deliveries ended with the service dying (see MAX_FATAL_DELIVERIES). */
  deaths: number;
  /** Who hears its answer should it come after its timeout (dispatch's `late`); once it has timed out, its sink is a LateSink. */
  late?: LateAnswer;
  /**
   * Its latest delivery, as a suspect, went while handlers of its service past their timeout still
   * ran (see Quarantine): which ones, as "the connect handler of connection …" ("" or unset: none).
   * It was not alone, so a death then is not held against it as its last.
   */
  shared?: string;
  /** A death was not held against it once already (see `shared`): the next one counts, whatever ran beside it. */
  excused?: boolean;
}

/**
 * What a client whose event fails because its service waits for a file change is told: "its
 * service X ..." and this. Never the service's failure, which run's log says: a thrown message
 * may name a file and line of the code, or hold a connection string with its password, and under
 * `run --host 0.0.0.0` clients are on the network.
 */
export function waitingForChange(watching: boolean): string {
  return watching
    ? "is not running until one of its files changes (run's output says why)"
    : "is not running, and run --no-watch does not start it again (run's output says why)";
}

/** An event waiting for its handler to register (again). */
interface Waiter {
  socket: string;
  event: WebsocketEvent;
  /** The message route it selected ("" for none). */
  route: string;
  key: string;
  pending: Pending;
  timer: NodeJS.Timeout | undefined;
  /** Set once it has been sent on or failed: a waiter is settled once. */
  done: boolean;
  /** The service it is an orphan of (see HandlerRegistry.orphans), if any. */
  orphanOf?: string;
}

/** "the message handler", "the handler of route \"join\"": whose handler, in messages. */
export function handlerName(event: WebsocketEvent, route = ""): string {
  return route === "" ? `the ${event} handler` : `the handler of route ${JSON.stringify(route)}`;
}

/** "a 26-byte message", "a connect event": what a poison event was, for its error. */
function describeEvent(event: WebsocketEvent, request: EventRequest): string {
  const body = request.websocketEvent?.case === "message" ? request.websocketEvent.value.body : undefined;
  return event === "message" ? `a ${body?.length ?? 0}-byte message` : `a ${event} event`;
}

/** "a", "a and b", "a, b and c". */
function listed(names: readonly string[]): string {
  return names.length < 2 ? (names[0] ?? "") : `${names.slice(0, -1).join(", ")} and ${names.at(-1)}`;
}

/** "twice", "3 times". */
function times(n: number): string {
  return n === 1 ? "once" : n === 2 ? "twice" : `${n} times`;
}

/**
 * One live handler stream. A stream registered with `batch` (our SDK) gets its events batched on
 * the leading edge: alone, an event goes out at once; events that follow one another within a
 * turn of the event loop go as one EventBatch message.
 *
 * An event whose earlier delivery ended with its service dying (a suspect) is sent alone, over
 * every stream of its service (see Quarantine): if the service dies again, the event was the
 * cause, and nothing else was in flight to die with it.
 */
export class HandlerStream {
  readonly pending = new Map<string, Pending>();
  /**
   * Events that timed out and whose late answer someone waits for (Pending.late), by id, oldest
   * first: their handlers are still running.
   */
  readonly late = new Map<string, Pending>();
  /**
   * Events that timed out with nobody waiting for their answer (a message's), by id, oldest first,
   * with the time (Date.now() milliseconds) a suspect stops waiting for them and their connection:
   * their handlers may still run, and could kill the service beside a suspect (see Quarantine).
   * Until their answer comes or the stream ends; MAX_LATE_EVENTS at most.
   */
  readonly overdue = new Map<string, { until: number; connection: string }>();
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
    /** The message route it handles ("" for the socket's events themselves). */
    readonly route = "",
  ) {}

  private write(message: ServerMessageInit): void {
    if (this.batch) this.batcher.push(message);
    else this.call.write(message);
  }

  /** Sends an event; `sink` hears its answer, or why there is none, with `context`. */
  send<C>(request: EventRequest, sink: AnswerSink<C>, context: C): void {
    this.post({ request, sink, context, deadline: 0, deaths: 0 });
  }

  /**
   * Sends an event now, or holds it while a suspect is tried alone; fails it when the stream's
   * transport holds all it will of events its service has not read (see notReading).
   */
  post(p: Pending): void {
    if (!this.call.writable) this.notReading(p);
    else if (p.deaths === 0 && this.registry.quarantines.size === 0) this.transmit(p);
    else this.registry.isolate(this, p);
  }

  /**
   * Fails an event because the service does not read its stream: over gRPC, more of the events
   * already sent wait in this process than the transport holds for a client that does not read
   * (an SDK whose receive loop a handler blocks). Queueing more would grow the provider's memory
   * for as long as the service stays stuck.
   */
  private notReading(p: Pending): void {
    failLater(
      p.sink as AnswerSink,
      p.context,
      new HandlerError(
        "unavailable",
        `websocket "${this.socket}": service "${this.service}" is not reading the events of ${handlerName(this.event, this.route)}: the provider holds all it will of events sent to it and not yet taken; does a handler block the loop of its SDK that receives them?`,
      ),
    );
  }

  /** Sends an event now; returns its id. */
  transmit(p: Pending): string {
    const id = this.registry.nextId();
    // No timer per event (this is the hot path): the registry sweeps expired events.
    p.deadline = Date.now() + this.registry.timeoutMs;
    this.pending.set(id, p);
    this.registry.sweepSoon();
    this.write({ id, content: { case: "websocketEventRequest", value: p.request } });
    return id;
  }

  /** How many events are held back behind a suspect of its service. */
  heldCount(): number {
    return this.registry.heldFor(this);
  }

  /**
   * Fails the events whose handler did not answer in time. Events are kept in the order they were
   * sent, all with the same time limit, so the first one still in time ends the search.
   */
  expire(now: number): void {
    let expired = false;
    for (const [id, p] of this.pending) {
      if (p.deadline > now) break;
      this.pending.delete(id);
      expired = true;
      if (p.late !== undefined) {
        this.keepLate(id, p);
        // A redelivered late event timed out before: its caller has been told.
        if (p.sink instanceof LateSink) continue;
      } else this.keepOverdue(id, p.deadline + this.registry.timeoutMs, p.request.connectionId ?? "");
      const error = new HandlerError(
        "timeout",
        `websocket "${this.socket}": ${handlerName(this.event, this.route)} of service "${this.service}" did not answer within ${this.registry.timeoutMs / 1000} s (connection ${p.request.connectionId})`,
      );
      const { sink, context } = p;
      if (p.late !== undefined) {
        p.sink = new LateSink(p.late);
        p.context = undefined;
      }
      (sink as AnswerSink).failed(context, error);
    }
    if (expired && this.registry.quarantines.size !== 0) this.registry.settled(this);
  }

  /**
   * Waits for the answer of a timed-out event (MAX_LATE_EVENTS at most: a handler that never
   * answers must not grow the provider's memory with every client it times out).
   */
  private keepLate(id: string, p: Pending): void {
    this.late.set(id, p);
    if (this.late.size <= MAX_LATE_EVENTS) return;
    const [oldestId, oldest] = this.late.entries().next().value as [string, Pending];
    this.late.delete(oldestId);
    failLater(
      oldest.sink as AnswerSink,
      oldest.context,
      new HandlerError(
        "unavailable",
        `websocket "${this.socket}": ${MAX_LATE_EVENTS} events of ${handlerName(this.event, this.route)} of service "${this.service}" are past the handler timeout and unanswered; stopped waiting for the oldest (connection ${oldest.request.connectionId})`,
        this.service,
        this.route,
      ),
    );
  }

  /** Remembers that the handler of a timed-out event nobody waits for may still run (see `overdue`). */
  private keepOverdue(id: string, until: number, connection: string): void {
    this.overdue.set(id, { until, connection });
    // Forgetting the oldest only lets a suspect go sooner beside it, as past its wait anyway.
    if (this.overdue.size > MAX_LATE_EVENTS) this.overdue.delete(this.overdue.keys().next().value as string);
  }

  /**
   * The time (Date.now() milliseconds) until which a suspect of this stream's service waits for
   * the handlers of this stream still running past their timeout: the handler timeout once more
   * after theirs ran out (the latest of them); `now` or earlier when none is left to wait for.
   * Each of them, waited for or not, is counted in `beside`, and named there while it names fewer
   * than BESIDE_NAMED.
   */
  runningLate(now: number, beside: { names: string[]; count: number }): number {
    let until = now;
    const name = (connection: string) => {
      if (beside.count++ < BESIDE_NAMED)
        beside.names.push(`${handlerName(this.event, this.route)} of connection ${connection}`);
    };
    for (const p of this.late.values()) {
      until = Math.max(until, p.deadline + this.registry.timeoutMs);
      name(p.request.connectionId ?? "");
    }
    for (const o of this.overdue.values()) {
      until = Math.max(until, o.until);
      name(o.connection);
    }
    return until;
  }

  /** Routes an answer (or a batch of them) to its pending event. */
  answer(message: ClientMessage): void {
    if (message.content.case === "answerBatch") {
      for (const a of message.content.value.answers) this.answer(a);
      return;
    }
    if (message.content.case !== "websocketEventResponse") return;
    const pending = this.pending.get(message.id);
    if (!pending) {
      this.lateAnswer(message.id, message.content.value);
      return;
    }
    this.pending.delete(message.id);
    if (this.registry.quarantines.size !== 0) this.registry.settled(this);
    try {
      (pending.sink as AnswerSink).answered(pending.context, message.content.value);
    } catch (error) {
      // One answer's trouble must not cost the others of its batch.
      this.registry.reportSinkError(this, error);
    }
  }

  /** The answer of an event that had timed out, for whoever waits for it (else it is dropped). */
  private lateAnswer(id: string, response: WebsocketEventResponse): void {
    const p = this.late.get(id);
    if (p === undefined) {
      // A timed-out event's handler has ended: a suspect may no longer have to wait for it.
      if (this.overdue.delete(id) && this.registry.quarantines.size !== 0) this.registry.settled(this);
      return;
    }
    this.late.delete(id);
    if (this.registry.quarantines.size !== 0) this.registry.settled(this);
    try {
      (p.sink as AnswerSink).answered(p.context, response);
    } catch (error) {
      this.registry.reportSinkError(this, error);
    }
  }

  /**
   * The stream is gone: takes the events it had sent and not had answered (in the order they were
   * sent, those past their timeout whose answer is awaited first), and those it held back,
   * leaving it empty.
   */
  takeAll(): { unanswered: Pending[]; held: Pending[] } {
    this.batcher.clear();
    const unanswered = [...this.late.values(), ...this.pending.values()];
    this.late.clear();
    this.overdue.clear();
    this.pending.clear();
    return { unanswered, held: this.registry.withdraw(this) };
  }
}

/** An event held back by a Quarantine, with the stream it is for. */
interface Entry {
  stream: HandlerStream;
  p: Pending;
}

/**
 * The suspects of one service (events whose delivery ended with it dying) and the events held
 * back while one of them is tried. A suspect is sent alone: once nothing else of its service is
 * in flight on any of its streams (its connect stream beside its message stream, another
 * socket's), and events that come meanwhile are held until it is answered. A suspect tried beside
 * an event of another stream could die of that event's doing and be dropped as a poison event.
 * Suspects and the other events take turns: once a suspect is answered, the events held meanwhile
 * go out together before the next suspect waits for quiet, so an event that had no part in the
 * crash waits for one retry at most, not for every one.
 *
 * Quiet includes handlers that timed out and still run (HandlerStream.late and .overdue): one can
 * kill the service as surely as an event in flight. A suspect waits for each of them for the
 * handler timeout once more (twice the timeout since it was sent), then goes anyway, so a handler
 * that never ends cannot stop the quarantine; a suspect that went while one still ran is `shared`,
 * and a death on that delivery is not its last (once: the next one counts, so a poison event is
 * still dropped, after one more delivery at most).
 */
class Quarantine {
  suspects: Entry[] = [];
  held: Entry[] = [];
  /** The suspect in flight alone: its id, on `probeStream`. */
  probe: string | undefined;
  probeStream: HandlerStream | undefined;
  /** A suspect was just answered: the events held meanwhile go before the next suspect. */
  heldTurn = false;
  /** A pump is due in a microtask (see HandlerRegistry.withdraw). */
  pumpDue = false;
  /** Pumps once the handlers past their timeout that the next suspect waits for are no longer waited for. */
  wake: NodeJS.Timeout | undefined;
}

/** How many of the handlers past their timeout that ran beside a suspect its warning names (see HandlerRegistry.fatal). */
const BESIDE_NAMED = 3;

/** Most events that may wait for one (socket, event) handler to come back; more fail at once. */
export const MAX_WAITING_EVENTS = 1000;

/** The live handler streams of a provider. */
export class HandlerRegistry {
  private readonly streams = new Map<string, HandlerStream>();
  /**
   * Streams a newer registration of the same handler displaced while they were still open, by
   * key, oldest first: the newest of them takes the handler's events again when the live stream
   * goes (see register). They take no new event meanwhile, and answer those they were sent.
   */
  private readonly standby = new Map<string, HandlerStream[]>();
  /**
   * Handlers (by key) whose live stream was ended by its client while its service ran, with no
   * stream standing by to take over, and the service it was: for absent()'s message. Cleared when
   * the handler registers again, or its service starts again.
   */
  private readonly endedBy = new Map<string, string>();
  /**
   * Handlers that have existed or that the spec promises, with the service that handles each
   * (undefined when unknown): while that service is not down, their absence is temporary.
   */
  private readonly expected = new Map<string, string | undefined>();
  /** Services whose process exited and that are not restarting, with how they ended. */
  private readonly down = new Map<string, string>();
  /** Services run removed (their file is gone), with why: their handlers wait only for another service. */
  private readonly removed = new Map<string, string>();
  /**
   * Services that wait for a file change (they failed to start, or crash in a loop), with why:
   * nothing restarts them until a save, so their events fail at once, saying so, instead of
   * waiting for a copy that is not coming.
   */
  private readonly waiting = new Map<string, string>();
  /** Handlers (by key) whose service no longer declares them (expectOnly): the service it was. */
  private readonly undeclared = new Map<string, string>();
  private readonly waiters = new Map<string, Waiter[]>();
  /**
   * Events whose stream ended before its service said whether it died (a gRPC stream or a port
   * can close before the CLI sees the process or thread exit), by service, until they are sent
   * again or the service's exit is known: if it died, their delivery counts as fatal.
   */
  private readonly orphans = new Map<string, Set<Waiter>>();
  private readonly listeners: (() => void)[] = [];
  /**
   * Streams of a service being stopped on purpose (drainService): they take no new event, and
   * answer the ones they were sent until their service's copy ends.
   */
  private readonly draining = new Set<HandlerStream>();
  private counter = 0;
  private stopping = false;
  /** Services with suspects to try alone, or events held behind one (see Quarantine). */
  readonly quarantines = new Map<string, Quarantine>();

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
      for (const s of this.draining) {
        s.expire(now);
        left += s.pending.size;
      }
      for (const list of this.standby.values())
        for (const s of list) {
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

  /**
   * Sends an event of a service with suspects (see Quarantine), or holds it; a suspect starts its
   * service's quarantine.
   */
  isolate(stream: HandlerStream, p: Pending): void {
    let q = this.quarantines.get(stream.service);
    if (q === undefined) {
      if (p.deaths === 0) {
        stream.transmit(p);
        return;
      }
      q = new Quarantine();
      this.quarantines.set(stream.service, q);
    }
    // Bounded like the events that wait for a handler to register.
    if (q.suspects.length + q.held.length >= MAX_WAITING_EVENTS) {
      failLater(
        p.sink as AnswerSink,
        p.context,
        new HandlerError(
          "unavailable",
          `websocket "${stream.socket}": ${MAX_WAITING_EVENTS} events already wait for service "${stream.service}" to handle, one at a time, the events it died on; this one, for ${handlerName(stream.event, stream.route)}, is not sent`,
        ),
      );
      return;
    }
    (p.deaths > 0 ? q.suspects : q.held).push({ stream, p });
    this.pump(stream.service, q);
  }

  /** Sends what a quarantine holds: the events held while no suspect is in flight or due, a suspect once nothing is in flight. */
  private pump(service: string, q: Quarantine): void {
    while (q.probe === undefined) {
      if (q.held.length > 0 && (q.heldTurn || q.suspects.length === 0)) {
        const held = q.held;
        q.held = [];
        q.heldTurn = false;
        for (const e of held) e.stream.transmit(e.p);
        continue;
      }
      const next = q.suspects[0];
      if (next === undefined) {
        clearTimeout(q.wake);
        this.quarantines.delete(service);
        return;
      }
      const beside = this.busy(service, q);
      if (beside === undefined) return;
      q.suspects.shift();
      next.p.shared = beside;
      q.probe = next.stream.transmit(next.p);
      q.probeStream = next.stream;
      q.heldTurn = true;
    }
  }

  /**
   * Whether a suspect of `service` may go: undefined while an event of it is in flight on any of
   * its streams, or a handler past its timeout still runs and is still waited for (see Quarantine;
   * `q` is then pumped again when that wait ends); else the handlers past their timeout that still
   * run beside ("the connect handler of connection …, …", "" for none).
   * Runs only for a service with suspects, once per suspect and per event of it that ends.
   */
  private busy(service: string, q: Quarantine): string | undefined {
    const now = Date.now();
    let until = now;
    const beside = { names: [] as string[], count: 0 };
    for (const streams of [this.streams.values(), this.draining.values(), this.standbyStreams()])
      for (const s of streams) {
        if (s.service !== service) continue;
        if (s.pending.size > 0) return undefined;
        until = Math.max(until, s.runningLate(now, beside));
      }
    if (until <= now) {
      const more = beside.count - beside.names.length;
      return more > 0 ? `${beside.names.join(", ")} and ${more} more` : listed(beside.names);
    }
    clearTimeout(q.wake);
    q.wake = setTimeout(() => {
      q.wake = undefined;
      if (this.quarantines.get(service) === q) this.pump(service, q);
    }, until - now);
    q.wake.unref();
    return undefined;
  }

  /** An event of `stream` left it (answered or expired): the suspect it was may be done, the next may go. */
  settled(stream: HandlerStream): void {
    const q = this.quarantines.get(stream.service);
    if (q === undefined) return;
    if (q.probe !== undefined && q.probeStream?.pending.has(q.probe) !== true) {
      q.probe = undefined;
      q.probeStream = undefined;
    }
    this.pump(stream.service, q);
  }

  /** How many events of `stream` a quarantine holds. */
  heldFor(stream: HandlerStream): number {
    const q = this.quarantines.get(stream.service);
    if (q === undefined) return 0;
    let n = 0;
    for (const e of q.suspects) if (e.stream === stream) n++;
    for (const e of q.held) if (e.stream === stream) n++;
    return n;
  }

  /**
   * A stream is gone: takes its events out of its service's quarantine (never sent, so nothing
   * counts against them). What is left is pumped a microtask later, once the caller has retired
   * the service's other streams too: a suspect sent now to a stream of a dying service would be
   * counted as dying with it.
   */
  withdraw(stream: HandlerStream): Pending[] {
    const q = this.quarantines.get(stream.service);
    if (q === undefined) return [];
    const taken: Pending[] = [];
    const keep = (e: Entry) => {
      if (e.stream !== stream) return true;
      taken.push(e.p);
      return false;
    };
    q.suspects = q.suspects.filter(keep);
    q.held = q.held.filter(keep);
    if (q.probeStream === stream) {
      q.probe = undefined;
      q.probeStream = undefined;
    }
    if (!q.pumpDue) {
      q.pumpDue = true;
      queueMicrotask(() => {
        q.pumpDue = false;
        if (this.quarantines.get(stream.service) === q) this.pump(stream.service, q);
      });
    }
    return taken;
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

  /** A (socket, event) handler's key, or a message route's (`route` set; never a socket's event name). */
  private static key(socket: string, event: WebsocketEvent, route = ""): string {
    return route === "" ? `${socket}\u0000${event}` : `${socket}\u0000${event}\u0000${route}`;
  }

  /** Marks a handler as promised (by the spec): events wait for it instead of failing. */
  expect(socket: string, event: WebsocketEvent, service?: string, route = ""): void {
    const key = HandlerRegistry.key(socket, event, route);
    this.expected.set(key, service);
    this.undeclared.delete(key);
  }

  /**
   * What `service` now declares (its latest collect pass, after a save): a handler it was expected
   * to register and no longer declares (the save renamed its socket, or removed an on() or a
   * route()) is no longer waited for. Events waiting for it fail at once, saying so, and later
   * ones as events nobody handles; a stream its running copy still has serves until it ends.
   */
  expectOnly(service: string, handlers: readonly { socket: string; event: WebsocketEvent; route?: string }[]): void {
    const keep = new Set(handlers.map((h) => HandlerRegistry.key(h.socket, h.event, h.route ?? "")));
    for (const [key, expectedOf] of [...this.expected]) {
      if (expectedOf !== service || keep.has(key)) continue;
      this.expected.delete(key);
      this.undeclared.set(key, service);
      if (!this.streams.has(key)) this.wake(key);
    }
  }

  /** True when a handler for the event (or message route) is live or promised. */
  isExpected(socket: string, event: WebsocketEvent, route = ""): boolean {
    const key = HandlerRegistry.key(socket, event, route);
    return this.streams.has(key) || this.expected.has(key);
  }

  /**
   * Adds a stream (for a message route when `route` is set). A stream already registered for the
   * same event or route stands by (see `standby`): it is not ended, and takes the events again
   * when the new one goes.
   *
   * Why not end it, or refuse the newcomer: the provider cannot tell a hand-started second copy of
   * a service from the service itself (both reach the service's endpoint; the SDKs send no
   * identity), and our SDK and @nitric/sdk both take an OK end as "stop", never registering again.
   * Ending the old stream would leave the running service without its handler for good once the
   * second copy stopped: every later event would wait and fail. Refusing the newcomer would refuse a
   * handler moved from one service to another (see the warning). The newest registration is what
   * the user started last, so it gets the events. A supervised restart is unaffected: the old
   * copy's streams are drained and ended with its process (drainService, serviceExited) before
   * the new copy starts.
   */
  register(
    service: string,
    socket: string,
    event: WebsocketEvent,
    call: HandlerCall,
    batch = false,
    route = "",
  ): HandlerStream {
    const key = HandlerRegistry.key(socket, event, route);
    const old = this.streams.get(key);
    const stream = new HandlerStream(service, socket, event, call, this, batch, route);
    this.streams.set(key, stream);
    this.expected.set(key, service);
    this.undeclared.delete(key);
    // A registration proves the process is up, even if the CLI never said it was starting.
    this.down.delete(service);
    this.endedBy.delete(key);
    if (old) {
      if (old.service !== service) {
        this.logger.warn(
          route === ""
            ? `websocket "${socket}": service "${service}" now handles ${event} events instead of service "${old.service}"; a socket event has one handler, so keep socket.on("${event}", ...) in one service`
            : `websocket "${socket}": service "${service}" now handles route ${JSON.stringify(route)} instead of service "${old.service}"; a route has one handler, so keep socket.route(${JSON.stringify(route)}, ...) in one service`,
        );
      } else {
        this.logger.info(
          `websocket "${socket}": another stream of service "${service}" registered ${handlerName(event, route)} (a second copy of the service on its endpoint?); it gets its events from now on, and the earlier stream takes them again when it ends`,
        );
      }
      this.standBy(key, old);
    }
    this.wake(key);
    this.changed();
    return stream;
  }

  /**
   * Removes a stream that ended: every event it had not answered goes to the next handler for the
   * same event, waiting for it like any other event. Delivery is therefore at least once: a
   * handler that died mid-event may see it again.
   */
  unregister(stream: HandlerStream): void {
    this.draining.delete(stream);
    const key = HandlerRegistry.key(stream.socket, stream.event, stream.route);
    const list = this.standby.get(key);
    const at = list?.indexOf(stream) ?? -1;
    if (list !== undefined && at >= 0) {
      list.splice(at, 1);
      if (list.length === 0) this.standby.delete(key);
    } else if (this.streams.get(key) === stream) {
      this.streams.delete(key);
      // Its client ended it (the provider's own ends take it out first): unless a stream standing
      // by takes over, a running service's handler is gone until it registers again; absent() says so.
      if (!this.promote(key, stream) && !this.down.has(stream.service)) this.endedBy.set(key, stream.service);
      this.changed();
    }
    this.requeue(stream, undefined);
  }

  /**
   * Keeps a stream a newer registration displaced (see register), its events held behind a
   * suspect going to the new one. Past MAX_STANDBY the oldest standing by is ended with OK.
   */
  private standBy(key: string, stream: HandlerStream): void {
    const list = this.standby.get(key) ?? [];
    this.standby.set(key, list);
    list.push(stream);
    for (const p of this.withdraw(stream)) this.route(stream.socket, stream.event, p, stream.route);
    if (list.length > MAX_STANDBY) this.retire(list.shift() as HandlerStream, undefined);
  }

  /**
   * The live stream of `key` (`gone`) went: the newest stream standing by, if any, becomes live,
   * saying so, and the events waiting for the handler go to it. True when one did.
   */
  private promote(key: string, gone: HandlerStream): boolean {
    // A stopping provider promotes none: each stream standing by is left where stop() retires it.
    if (this.stopping) return false;
    const list = this.standby.get(key);
    const next = list?.pop();
    if (list !== undefined && list.length === 0) this.standby.delete(key);
    if (next === undefined) return false;
    this.streams.set(key, next);
    this.logger.info(
      `websocket "${gone.socket}": the stream of service "${gone.service}" with ${handlerName(gone.event, gone.route)} went; the earlier stream of service "${next.service}", which registered it before, handles its events again`,
    );
    this.wake(key);
    return true;
  }

  /** Every stream standing by. */
  private *standbyStreams(): Iterable<HandlerStream> {
    for (const list of this.standby.values()) yield* list;
  }

  /**
   * Ends a stream with OK and passes its events on. `died`: true when its service died (each
   * unanswered event's delivery was fatal), false when it was stopped on purpose, undefined when
   * not known yet (the events become orphans until the service's exit is reported).
   */
  private retire(stream: HandlerStream, died: boolean | undefined): void {
    this.requeue(stream, died);
    try {
      // OK, never an error status: an error crashes @nitric/sdk's stream handling.
      stream.call.end();
    } catch {
      // Already closed.
    }
  }

  private requeue(stream: HandlerStream, died: boolean | undefined): void {
    const { unanswered, held } = stream.takeAll();
    for (const p of unanswered) {
      if (died === true && this.fatal(stream.service, stream.socket, stream.event, stream.route, p)) continue;
      const waiter = this.route(stream.socket, stream.event, p, stream.route);
      if (waiter !== undefined && died === undefined) {
        const set = this.orphans.get(stream.service) ?? new Set<Waiter>();
        this.orphans.set(stream.service, set);
        set.add(waiter);
        waiter.orphanOf = stream.service;
      }
    }
    // Held events were never sent: nothing to count against them.
    for (const p of held) this.route(stream.socket, stream.event, p, stream.route);
  }

  /**
   * Counts a delivery of `p` that ended with `service` dying; true when that was its last allowed
   * one, and it has been failed as a poison event.
   */
  private fatal(service: string, socket: string, event: WebsocketEvent, route: string, p: Pending): boolean {
    if (p.shared && p.excused !== true && p.deaths + 1 >= MAX_FATAL_DELIVERIES) {
      // Tried beside a handler past its timeout, which may have been the killer: not alone, not last.
      this.logger.warn(
        `websocket "${socket}": service "${service}" exited again with ${describeEvent(event, p.request)}${route === "" ? "" : ` for route ${JSON.stringify(route)}`} of connection ${p.request.connectionId ?? ""} in flight, but handlers past the handler timeout still ran beside it and may have caused that (${p.shared}); so that event is tried once more, alone, and dropped if the service dies again`,
      );
      p.shared = "";
      p.excused = true;
      return false;
    }
    p.deaths++;
    if (p.deaths < MAX_FATAL_DELIVERIES) return false;
    failLater(
      p.sink as AnswerSink,
      p.context,
      new HandlerError(
        "poison",
        `websocket "${socket}": service "${service}" exited ${times(p.deaths)} while handling ${describeEvent(event, p.request)}${route === "" ? "" : ` for route ${JSON.stringify(route)}`} of connection ${p.request.connectionId ?? ""}, so that event is dropped`,
        service,
        route,
      ),
    );
    return true;
  }

  private wake(key: string): void {
    const list = this.waiters.get(key);
    if (!list) return;
    this.waiters.delete(key);
    for (const w of list) {
      clearTimeout(w.timer);
      // After the registration that woke it has been answered: register() wakes before it returns.
      queueMicrotask(() => this.resume(w));
    }
  }

  /**
   * Ends the streams of a service whose process is gone (`died`: on its own) and passes their
   * unanswered events on; returns how many events it had in flight.
   */
  private dropService(service: string, died: boolean): number {
    let changed = false;
    let inFlight = 0;
    // Its streams standing by go first, so none of them takes over from its live ones below.
    const standing = takeStandby(this.standby, service);
    for (const [key, stream] of this.streams) {
      if (stream.service !== service) continue;
      this.streams.delete(key);
      changed = true;
      inFlight += stream.pending.size;
      this.promote(key, stream);
      this.retire(stream, died);
    }
    for (const stream of standing) {
      inFlight += stream.pending.size;
      this.retire(stream, died);
    }
    // Streams of its copy that was draining (drainService) end with it.
    for (const stream of [...this.draining]) {
      if (stream.service !== service) continue;
      this.draining.delete(stream);
      inFlight += stream.pending.size;
      this.retire(stream, died);
    }
    if (changed) this.changed();
    return inFlight;
  }

  /**
   * A service's process is (re)starting: streams of its previous process are dead even if gRPC has
   * not noticed yet, and events for its handlers wait for the new process to register.
   */
  serviceStarting(service: string): void {
    this.down.delete(service);
    this.removed.delete(service);
    this.waiting.delete(service);
    // Whatever its previous process left behind goes to this one; a death of this one is not theirs.
    this.orphans.delete(service);
    for (const [key, of] of [...this.endedBy]) if (of === service) this.endedBy.delete(key);
    this.dropService(service, false);
  }

  /**
   * A service is about to be stopped on purpose (a code change restarts it, or its file is gone):
   * its streams, those standing by too, take no new event (new ones wait for its next copy, as
   * while it restarts, or go to another service's stream standing by for the handler), and
   * the events they were sent may still be answered. Resolves once none is left unanswered, or
   * after `graceMs`. A save would otherwise end a handler halfway and run it again in the new
   * copy: a connect handler that had stored its connection, a message that had been broadcast.
   * What is still unanswered when the copy ends is delivered again (unregister, serviceStarting).
   */
  async drainService(service: string, graceMs: number): Promise<void> {
    const streams: HandlerStream[] = takeStandby(this.standby, service);
    for (const stream of streams) this.draining.add(stream);
    for (const [key, stream] of this.streams) {
      if (stream.service !== service) continue;
      this.streams.delete(key);
      this.draining.add(stream);
      streams.push(stream);
      // Another service's stream standing by serves meanwhile (its next copy displaces it again).
      this.promote(key, stream);
    }
    if (streams.length === 0) return;
    this.changed();
    const deadline = Date.now() + graceMs;
    const busy = () => streams.some((s) => this.draining.has(s) && s.pending.size + s.heldCount() + s.late.size > 0);
    while (busy() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  }

  /**
   * A service's process exited: `died` when on its own (a crash, process.exit), false when it was
   * stopped (a code change, Ctrl-C). Its events keep waiting (the CLI restarts crashed services,
   * and clients should survive that); when the wait runs out, the error says how the service
   * ended. When it died, each event it had not answered has had a fatal delivery: an event's
   * MAX_FATAL_DELIVERIES-th fails with "poison" at once instead of waiting. Returns how many
   * events were in flight when it ended (0: the death was not an event's doing).
   */
  serviceExited(service: string, how: string, died = true): number {
    this.down.set(service, how);
    let inFlight = 0;
    const orphans = this.orphans.get(service);
    this.orphans.delete(service);
    for (const w of orphans ?? []) {
      if (w.done) continue;
      inFlight++;
      if (died && this.fatal(service, w.socket, w.event, w.route, w.pending)) this.cancel(w);
    }
    return inFlight + this.dropService(service, died);
  }

  /**
   * A service is gone for good (`run` stopped it because its file is gone; `why` says so, as
   * "was removed: services/chat.ts is gone"). Its handlers' events still wait, for a service that
   * registers them (a renamed file's), and their error then names why instead of how it exited.
   */
  serviceRemoved(service: string, why: string): void {
    this.removed.set(service, why);
  }

  /**
   * A service is not running and nothing restarts it until one of its files changes (it failed to
   * start, or crashes in a loop; `watching` false: nothing restarts it, under run --no-watch). The
   * events that wait for its handlers, and those that come until it starts again
   * (serviceStarting), fail at once, saying so (waitingForChange) but not its failure: that is for
   * run's log, not for clients (a thrown message may hold a connection string's password).
   */
  serviceWaiting(service: string, watching: boolean): void {
    this.waiting.set(service, waitingForChange(watching));
    for (const [key, list] of [...this.waiters]) {
      if (this.expected.get(key) !== service || this.streams.has(key)) continue;
      this.waiters.delete(key);
      for (const w of list) {
        clearTimeout(w.timer);
        this.resume(w);
      }
    }
  }

  /** The live stream for an event (or a message route). */
  get(socket: string, event: WebsocketEvent, route = ""): HandlerStream | undefined {
    return this.streams.get(HandlerRegistry.key(socket, event, route));
  }

  /** Why a waited-for handler did not come back, naming its service and how it ended if it exited. */
  private absent(socket: string, event: WebsocketEvent, route: string, key: string, connection: string): HandlerError {
    const undeclaredBy = this.undeclared.get(key);
    if (undeclaredBy !== undefined && !this.expected.has(key))
      return new HandlerError(
        "none",
        `websocket "${socket}": service "${undeclaredBy}" no longer declares ${handlerName(event, route)} (since its last save), and no other service does (connection ${connection}); ${route === "" ? `add socket.on("${event}", ...)` : `add socket.route(${JSON.stringify(route)}, ...)`} to a service, or reconnect to the socket it declares now`,
      );
    const service = this.expected.get(key);
    const removed = service === undefined ? undefined : this.removed.get(service);
    const waiting = service === undefined ? undefined : this.waiting.get(service);
    const how = service === undefined ? undefined : this.down.get(service);
    const endedBy = this.endedBy.get(key);
    if (waiting !== undefined && removed === undefined)
      return new HandlerError(
        "unavailable",
        `websocket "${socket}": ${handlerName(event, route)} is not registered (connection ${connection}): its service "${service}" ${waiting}`,
        service,
        route,
        true,
      );
    const why =
      removed !== undefined
        ? `its service "${service}" ${removed}, and no other service has registered it; declare the handler in a service`
        : how !== undefined
          ? `its service "${service}" ${how} and has not registered it again; fix the service and it restarts`
          : endedBy !== undefined
            ? `the stream of service "${endedBy}" that registered it was ended by its client while the service ran (a copy of the service started by hand on its endpoint that stopped, or an SDK that ended its handler), and nothing has registered it since; restart the service (save one of its files) to register it again`
            : service === undefined
              ? "is its service crashing?"
              : `its service "${service}" is running and has not registered it since it started; is it still loading, or does it no longer declare it?`;
    return new HandlerError(
      "unavailable",
      `websocket "${socket}": ${handlerName(event, route)} did not register within ${this.waitMs / 1000} s (connection ${connection}); ${why}`,
    );
  }

  /**
   * Sends an event to its handler and resolves with the answer. A promised handler that is not
   * live (its service is starting or restarting) is waited for, up to the wait limit; an event
   * nobody handles fails at once. With `late`, an event that times out (the promise rejects with
   * "timeout") is still waited for: `late` hears its answer when its handler finishes, or that it
   * never will (LateAnswer); its stream ending meanwhile sends it to the handler's next stream,
   * as any unanswered event (at least once).
   */
  dispatch(
    socket: string,
    event: WebsocketEvent,
    request: EventRequest,
    route = "",
    late?: LateAnswer,
  ): Promise<WebsocketEventResponse> {
    return new Promise((resolve, reject) => {
      const sink = new PromiseSink((_, response) => resolve(response), reject);
      if (late === undefined) {
        this.deliver(socket, event, request, sink, undefined, route);
        return;
      }
      this.route(socket, event, { request, sink, context: undefined, deadline: 0, deaths: 0, late }, route);
    });
  }

  /**
   * dispatch() without a promise: `sink` hears the answer, or the failure, with `context`. A failure
   * is never reported from inside this call (always a microtask or more later), as a rejection would be.
   */
  deliver<C>(
    socket: string,
    event: WebsocketEvent,
    request: EventRequest,
    sink: AnswerSink<C>,
    context: C,
    route = "",
  ): void {
    const stream = this.stopping ? undefined : this.streams.get(HandlerRegistry.key(socket, event, route));
    if (stream) {
      stream.send(request, sink, context);
      return;
    }
    // Past the hot path: an event that is not sent at once.
    this.route(socket, event, { request, sink, context, deadline: 0, deaths: 0 }, route);
  }

  /**
   * Sends an event to its live handler (a message route's when `route` is set), or makes it wait
   * for one (returning its waiter), or fails it.
   */
  private route(socket: string, event: WebsocketEvent, p: Pending, route = ""): Waiter | undefined {
    const key = HandlerRegistry.key(socket, event, route);
    const stream = this.stopping ? undefined : this.streams.get(key);
    if (stream) {
      stream.post(p);
      return undefined;
    }
    const fail = (error: HandlerError) => failLater(p.sink as AnswerSink, p.context, error);
    if (this.stopping) {
      fail(new HandlerError("unavailable", `websocket "${socket}": the provider is stopping`));
      return undefined;
    }
    if (!this.expected.has(key)) {
      const connection = p.request.connectionId ?? "";
      fail(
        this.undeclared.has(key)
          ? this.absent(socket, event, route, key, connection)
          : new HandlerError(
              "none",
              route === ""
                ? `websocket "${socket}": no service handles ${event} events; add socket.on("${event}", ...)`
                : `websocket "${socket}": no service handles route ${JSON.stringify(route)}; add socket.route(${JSON.stringify(route)}, ...)`,
            ),
      );
      return undefined;
    }
    const waitingFor = this.expected.get(key);
    if (waitingFor !== undefined && this.waiting.has(waitingFor) && !this.removed.has(waitingFor)) {
      fail(this.absent(socket, event, route, key, p.request.connectionId ?? ""));
      return undefined;
    }
    const list = this.waiters.get(key) ?? [];
    // Bounded: a flood of events for a handler that is not coming back must not grow memory.
    if (list.length >= MAX_WAITING_EVENTS) {
      fail(
        new HandlerError(
          "unavailable",
          `websocket "${socket}": ${MAX_WAITING_EVENTS} events already wait for ${handlerName(event, route)} to register`,
        ),
      );
      return undefined;
    }
    this.waiters.set(key, list);
    const waiter: Waiter = { socket, event, route, key, pending: p, timer: undefined, done: false };
    waiter.timer = setTimeout(() => {
      const at = list.indexOf(waiter);
      if (at >= 0) list.splice(at, 1);
      this.resume(waiter);
    }, this.waitMs);
    list.push(waiter);
    return waiter;
  }

  /** A waiting event's handler registered, or its wait ran out: it is sent, or it fails. */
  private resume(w: Waiter): void {
    if (w.done) return;
    w.done = true;
    if (w.orphanOf !== undefined) this.orphans.get(w.orphanOf)?.delete(w);
    const { socket, event, route, key, pending: p } = w;
    const live = this.streams.get(key);
    if (live && !this.stopping) live.post(p);
    else
      failLater(
        p.sink as AnswerSink,
        p.context,
        this.stopping
          ? new HandlerError("unavailable", `websocket "${socket}": the provider is stopping`)
          : this.absent(socket, event, route, key, p.request.connectionId ?? ""),
      );
  }

  /** Takes a waiting event out of its wait (it has been failed). */
  private cancel(w: Waiter): void {
    w.done = true;
    clearTimeout(w.timer);
    const list = this.waiters.get(w.key);
    const at = list?.indexOf(w) ?? -1;
    if (list && at >= 0) list.splice(at, 1);
  }

  /** The live registrations. */
  registrations(): HandlerRegistration[] {
    return [...this.streams.values()].map((s) =>
      s.route === ""
        ? { service: s.service, socket: s.socket, event: s.event }
        : { service: s.service, socket: s.socket, event: s.event, route: s.route },
    );
  }

  /**
   * Events in flight, over all streams (those held behind a suspect, and those past their timeout
   * whose late answer is awaited, included).
   */
  pendingCount(): number {
    let n = 0;
    for (const s of this.streams.values()) n += s.pending.size + s.heldCount() + s.late.size;
    for (const s of this.draining) n += s.pending.size + s.heldCount() + s.late.size;
    for (const s of this.standbyStreams()) n += s.pending.size + s.heldCount() + s.late.size;
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
    const streams = [...this.streams.values(), ...this.draining, ...this.standbyStreams()];
    this.streams.clear();
    this.draining.clear();
    this.standby.clear();
    for (const s of streams) this.retire(s, false);
    for (const key of [...this.waiters.keys()]) this.wake(key);
  }
}
