/**
 * The connection to the provider: one client per process over the transport its runner chose,
 * and the bookkeeping that lets a service exit when the provider ends all of its handler streams
 * (the collect pass, or `nitric-like run` stopping).
 *
 * The runner passes the transport before the service's code loads (useTransport, from
 * `@nitric-like/sdk/runtime`): `nitric-like run` a MessagePort for a service it runs as a worker
 * thread, the AWS runtime an in-memory transport to its own router. With none given (a process:
 * `run --processes`, the collect pass, a `start` command), it is gRPC to SERVICE_ADDRESS, Nitric's
 * convention for a service process, loaded on first use.
 */
import { Socket } from "node:net";
import { Resources, ResourceType } from "@nitric-like/contracts/resources";
import { Client, createLazyTransport, type Transport } from "@nitric-like/rpc";
import {
  ALIVE_FD_VAR,
  answerAliveChecks,
  LOAD_PENDING_SIGN,
  LOAD_SAID_SYMBOL,
  LOAD_TIMERS_SIGN,
} from "@nitric-like/spec";
import { traceHere, watchLoadWork } from "./load-work.js";

let transport: Transport | undefined;
let client: Client | undefined;

/**
 * Gives the SDK the transport to its provider. A runner calls this once, before the service's code
 * makes its first call; calls already made keep the transport they were made on.
 */
export function useTransport(chosen: Transport): void {
  transport = chosen;
  client = undefined;
}

/** The fallback: gRPC to SERVICE_ADDRESS, with grpc-js loaded only if it is used. */
function grpcFallback(): Transport {
  // A process run's bundles did not start (a `start` command) answers run's liveness check from
  // here, its first call, and says so at once (see answerAliveChecks).
  answerAliveChecks(process.env, ALIVE_FD_VAR, Socket);
  const address = serviceAddress();
  return createLazyTransport(async () => (await import("@nitric-like/rpc/grpc")).createGrpcTransport(address));
}

let openStreams = 0;
// True once every handler stream this process opened has been ended by the provider.
let streamsEnded = false;
// Calls in flight (declarations, kv and socket operations): the client stays open for them.
let pending = 0;

/** The provider's address: SERVICE_ADDRESS, read when the client is made. @default "127.0.0.1:50051" */
export function serviceAddress(): string {
  return process.env.SERVICE_ADDRESS || "127.0.0.1:50051";
}

/** `run` (local), `build` (collect pass) or `cloud` (deployed): NITRIC_ENVIRONMENT. @default "run" */
export function environment(): "run" | "build" | "cloud" {
  const value = process.env.NITRIC_ENVIRONMENT;
  return value === "build" || value === "cloud" ? value : "run";
}

/** The client, created on first use. */
export function runtime(): Client {
  transport ??= grpcFallback();
  client ??= new Client(transport);
  return client;
}

function closeIfIdle(): void {
  // Closing cancels nothing here (nothing is in flight) and lets the process exit; the transport
  // takes new calls later if the service makes any.
  if (streamsEnded && openStreams === 0 && pending === 0 && client) client.close();
}

/**
 * Keeps the client open while `operation` is in flight, and settles as it does. Every SDK call
 * (each `socket.send`) passes here, so it is one `then` with two functions made once, not an
 * async function and a release closure per call.
 */
export function tracked<T>(operation: Promise<T>): Promise<T> {
  pending++;
  return operation.then(releasedWith, releasedThrowing) as Promise<T>;
}

function releasedWith<T>(value: T): T {
  pending--;
  closeIfIdle();
  return value;
}

function releasedThrowing(error: unknown): never {
  pending--;
  closeIfIdle();
  throw error;
}

/** Keeps the client open until the returned function is called (for streams read over time). */
export function hold(): () => void {
  pending++;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    pending--;
    closeIfIdle();
  };
}

/** Counts an open handler stream. */
export function streamOpened(): void {
  openStreams++;
  streamsEnded = false;
}

/**
 * Counts a closed handler stream. When the last one has closed and no call is in flight, the
 * client is closed so the process can exit by itself; a later call makes a new client.
 */
export function streamClosed(): void {
  openStreams--;
  if (openStreams === 0) streamsEnded = true;
  closeIfIdle();
}

/** Events (and authorizations) this process's handlers are running: from their delivery to their answer. */
let handling = 0;

/** Counts an event a handler (or an authorizer) starts on; eventHandled() when it is answered. */
export function eventStarted(): void {
  handling++;
}

/** Counts an event answered. */
export function eventHandled(): void {
  handling--;
}

/**
 * The refusal of a second handler for an event or route the service already handles, made while
 * a handler runs, or undefined. It would only add to this process's chain, once more on every
 * event, where no provider sees it. A first registration made in a handler goes to the provider,
 * which checks it against what the collect pass saw (a registration after a top-level `await`
 * is one it saw, even if an event is being handled meanwhile). `what` is the call as written, such
 * as `websocket("chat").on("message")`.
 */
export function lateRegistration(what: string): string | undefined {
  if (handling === 0) return undefined;
  const who = serviceSaid();
  return `${what}: ${who} registered it again after it started (in a handler, or in a module a handler imports): it would add one more handler to the chain on every call, each running on every event, and spec, build and up never see it; register each handler once, at the top level of the service's entry file`;
}

/** Set once the runner has seen the service's module finish loading (serviceLoaded). */
let loaded = false;
/** The service the runner said had loaded, when it said which. */
let loadedService: string | undefined;

/**
 * Called by the runner once the service's entry has finished loading: once `await import(entry)`
 * has resolved (a top-level `await` included), or at the end of a process bundle. A handler
 * registered after it (in a timer, a callback, a handler) is refused: the collect pass, which
 * spec, build and up deploy from, may have ended before it was made. `service` names it where
 * services share one process.env (`run --single-thread`: NITRIC_LIKE_SERVICE is the last one
 * started's); elsewhere NITRIC_LIKE_SERVICE does.
 */
export function serviceLoaded(service?: string): void {
  if (loaded) return;
  loaded = true;
  if (typeof service === "string" && service !== "") loadedService = service;
  loadWorkDone?.();
  loadPendingDone();
}

/** The service as the SDK's refusals name it: `service "chat"`, or "the service" when unknown. */
function serviceSaid(): string {
  const service = loadedService ?? process.env.NITRIC_LIKE_SERVICE;
  return service === undefined || service === "" ? "the service" : `service ${JSON.stringify(service)}`;
}

/** A note to the collect pass: a grant of nothing, which the collector records as nothing, named `name`. */
function noteToCollector(name: string): Promise<unknown> {
  return rpc.unary(Resources.method.declare, {
    id: { type: ResourceType.Policy, name },
    config: { case: "policy", value: { principals: [], actions: [], resources: [] } },
  });
}

// In the collect pass, the work started during load (timers, I/O) is waited for (see load-work.ts).
// The sign of life's name says what is waited for (LOAD_TIMERS_SIGN): the collector names where a
// timer was set when its callback blocks the service's event loop, and what it waits for when it
// waits long.
const loadWorkDone =
  environment() === "build"
    ? watchLoadWork(
        () => loaded,
        (waiting) => noteToCollector(`${LOAD_TIMERS_SIGN}${JSON.stringify(waiting)}`),
      )
    : undefined;

/**
 * How long after a declaration or registration at load, in the collect pass, the SDK looks whether
 * the module is still loading (it has stopped at a top-level await): a moment, so that a process
 * whose await nothing can settle (Node ends it, code 13) still tells the collector first.
 */
const LOAD_PENDING_CHECK_MS = 20;
// In the collect pass, the stack of the module's last declaration or registration as it loaded (a
// service that awaits at its top level stops after it), whether the collector has been told of
// it, and whether it has been told of any.
let lastLoadCall: { stack?: string } | undefined;
let lastLoadCallTold = true;
let toldLoadPending = false;
let loadPendingCheck: NodeJS.Timeout | undefined;

/**
 * Notes a declaration or registration the module makes as it loads, in the collect pass. When the
 * module is still loading a moment later (at a top-level await), the collector is told where its
 * last call was (LOAD_PENDING_SIGN): it waits for the await, and a pass that ends while it has not
 * settled says so, and where to look, rather than that the handlers after it are missing.
 */
function noteLoadCall(): void {
  if (loaded || environment() !== "build") return;
  // Only where a runner will say the module has loaded (run's bundles): else it never would.
  if ((globalThis as unknown as Record<symbol, unknown>)[Symbol.for(LOAD_SAID_SYMBOL)] !== true) return;
  lastLoadCall = traceHere(12, noteLoadCall);
  lastLoadCallTold = false;
  loadPendingCheck ??= setTimeout(tellLoadPending, LOAD_PENDING_CHECK_MS);
}

function tellLoadPending(): void {
  loadPendingCheck = undefined;
  if (loaded || lastLoadCallTold || lastLoadCall === undefined) return;
  lastLoadCallTold = true;
  toldLoadPending = true;
  // Every frame: the collector names the first in the project's own files (the SDK's are not).
  const frames = (lastLoadCall.stack ?? "").split("\n").filter((l) => /^\s+at /.test(l));
  noteToCollector(`${LOAD_PENDING_SIGN}${JSON.stringify(frames.map((f) => f.trim()))}`).catch(() => {});
}

/** Once the module has loaded: a collector told it was loading is told it has. */
function loadPendingDone(): void {
  clearTimeout(loadPendingCheck);
  loadPendingCheck = undefined;
  lastLoadCall = undefined;
  if (toldLoadPending) noteToCollector(`${LOAD_PENDING_SIGN}null`).catch(() => {});
}

// A process bundle marks the end of its load from its last line (the CLI's bundle footer), where
// nothing of ours can be imported: every copy of the SDK in the process is told through this list.
const LOADED_HOOKS = Symbol.for("nitric-like.service-loaded");
{
  const hooks = globalThis as unknown as Record<symbol, (() => void)[] | undefined>;
  const list = hooks[LOADED_HOOKS] ?? [];
  hooks[LOADED_HOOKS] = list;
  list.push(serviceLoaded);
}

/**
 * The refusal of a handler registration made after the service's module finished loading, or
 * undefined before then. `what` is the call as written, such as `websocket("chat").route("join")`.
 */
export function registeredAfterLoad(what: string): string | undefined {
  if (!loaded) {
    noteLoadCall();
    return undefined;
  }
  const who = serviceSaid();
  return `${what}: ${who} registered it after its module finished loading (in a timer, a callback or a handler), so spec, build and up may never see it and a deployment would not route to it; register handlers at module load: at top level or during import, not in a timer/callback`;
}

/**
 * The refusal of a resource declaration (`kv("x")`, `secret("x")`, `websocket("x")`) or of a
 * grant beyond what the module granted as it loaded (`kv("x").allow("set")`), made after the
 * service's module finished loading, or undefined before then: the collect pass that spec, build
 * and up deploy from may have ended before it, so a deployment would lack the resource or its
 * permission. `what` is the call as written; `asked` says a grant's permissions, `granted` those
 * the module's load gave on the resource; `fix` is the declaration to make at load instead.
 */
export function declaredAfterLoad(
  what: string,
  fix: string,
  grant?: { asked: readonly string[]; granted: readonly string[] },
): string | undefined {
  if (!loaded) {
    noteLoadCall();
    return undefined;
  }
  const who = serviceSaid();
  const did =
    grant === undefined
      ? "declared it after its module finished loading"
      : `asked for ${quotedList(grant.asked)} after its module finished loading${grant.granted.length > 0 ? `, beyond the ${quotedList(grant.granted)} it granted as it loaded` : ""}`;
  return `${what}: ${who} ${did} (in a timer, a callback or a handler), so spec, build and up may never see it and a deployment would not include it; declare resources at module load: at top level or during import, not in a timer/callback, as ${fix}, and use that handle later`;
}

/** Permissions (or any names) as a call writes its arguments: `"get", "set"`. */
export function quotedList(list: readonly string[]): string {
  return list.map((p) => JSON.stringify(p)).join(", ");
}

/**
 * Once the service's module has loaded: the permissions of `permissions` it did not grant as it
 * loaded (`asked`, in the order asked), those it did (`granted`) and both (`all`), in the order of
 * `known`, every permission of the resource; undefined before then or when none is new.
 */
export function lateGrant<P extends string>(
  known: readonly P[],
  grantedAtLoad: ReadonlySet<P>,
  permissions: readonly P[],
): { asked: P[]; granted: P[]; all: P[] } | undefined {
  if (!loaded) return undefined;
  const asked = [...new Set(permissions.filter((p) => !grantedAtLoad.has(p)))];
  if (asked.length === 0) return undefined;
  const granted = known.filter((p) => grantedAtLoad.has(p));
  return { asked, granted, all: known.filter((p) => grantedAtLoad.has(p) || asked.includes(p)) };
}

/** A declaration the provider refused, or a lost provider: the service cannot work, so it stops. */
export function fatal(message: string): never {
  process.stderr.write(`nitric-like: ${message}\n`);
  process.exit(1);
}

/**
 * Unary and server-streaming calls on the process's client that keep it open while in flight.
 * SDK operations go through these; only handler streams use runtime().bidi() directly.
 */
export const rpc = {
  unary: ((method, request, options) => tracked(runtime().unary(method, request, options))) as Client["unary"],
  serverStream: async function* (method, request, options) {
    const release = hold();
    try {
      yield* runtime().serverStream(method, request, options);
    } finally {
      release();
    }
  } as Client["serverStream"],
};
