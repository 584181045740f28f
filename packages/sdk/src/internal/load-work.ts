/**
 * The collect pass (NITRIC_ENVIRONMENT=build) ends a service that has gone quiet for a moment, so
 * a handler registered from work the module started as it loaded and did not await (a timer,
 * `readFile(...).then(register)`, `fetch(url).then(register)`) would be lost from the spec without
 * a word, and so from what build and up deploy. In the collect pass the SDK keeps track, with
 * Node's async hooks, of that work and of what its callbacks start in turn, and while some of it
 * is under way it shows the collector signs of life, so the pass sees what it does: a
 * registration there is refused (registeredAfterLoad) and the pass fails with its message.
 *
 * What is waited for, once the module has loaded, up to LOAD_WORK_TOTAL_MS after load:
 * - a one-shot timer (a Timeout whose `_repeat` is null) due within LOAD_TIMER_LIMIT_MS, no more
 *   than LOAD_TIMER_NESTING timers deep (each started in the callback of the one before);
 * - a request that ends by itself: a file system call, a DNS lookup, a connect, a crypto job;
 * - for up to LOAD_TIMER_LIMIT_MS at a stretch, an HTTP request (node:http) waiting for its
 *   answer, and a promise someone waits on (a `.then()` or an `await`) while a connection or a
 *   child process the work started is open: `fetch(url)` waiting for its answer is a socket read,
 *   as an idle keep-alive connection is, and only the promise tells them apart; one that never
 *   settles (`for await` over a subscription) is waited for that long, no more.
 * Servers, intervals, timers due later and connections nothing waits on are not waited for.
 */
import { createHook } from "node:async_hooks";

/** The longest a timer started during load may take to fire and still be waited for. */
export const LOAD_TIMER_LIMIT_MS = 10_000;

/** How many timers deep, each started in the callback of the one before, a timer is still waited for. */
export const LOAD_TIMER_NESTING = 3;

/** How long after load work the module started is waited for, at most. */
export const LOAD_WORK_TOTAL_MS = 30_000;

/** How often the collector is shown a sign of life while such work is under way (its quiet spell is 1.5 s). */
const SIGN_OF_LIFE_MS = 500;

/** Async resources that end by themselves: while one started by the module's work is pending, it is waited for. */
const REQUESTS = new Set([
  "FSREQCALLBACK",
  "FSREQPROMISE",
  "FILEHANDLECLOSEREQ",
  "GETADDRINFOREQWRAP",
  "GETNAMEINFOREQWRAP",
  "QUERYWRAP",
  "TCPCONNECTWRAP",
  "PIPECONNECTWRAP",
  "SHUTDOWNWRAP",
  "UDPSENDWRAP",
  "CHECKPRIMEREQUEST",
  "PBKDF2REQUEST",
  "KEYPAIRGENREQUEST",
  "KEYGENREQUEST",
  "KEYEXPORTREQUEST",
  "CIPHERREQUEST",
  "DERIVEBITSREQUEST",
  "HASHREQUEST",
  "RANDOMBYTESREQUEST",
  "RANDOMPRIMEREQUEST",
  "SCRYPTREQUEST",
  "SIGNREQUEST",
  "VERIFYREQUEST",
]);

/**
 * Async resources that may stay open for good (a keep-alive connection, a child process that
 * serves): waited for only while a promise the work started is pending and waited on.
 */
const CONNECTIONS = new Set(["TCPWRAP", "TLSWRAP", "PIPEWRAP", "PROCESSWRAP"]);

/** A node:http request: open until its answer has been read, which may be never (a stream of events). */
const HTTP_REQUEST = "HTTPCLIENTREQUEST";

interface TimeoutResource {
  _repeat?: unknown;
  _idleTimeout?: unknown;
}

/** A resource the module's work started: how many timers deep it is, and for a promise, its state. */
interface Work {
  depth: number;
  promise?: { settled: boolean; awaited: boolean };
}

/**
 * Starts watching the work the module starts as it loads. `loaded` says whether it has finished;
 * `signOfLife` makes a call the collector counts as one. Returns what to call once it has loaded.
 */
export function watchLoadWork(loaded: () => boolean, signOfLife: () => Promise<unknown>): () => void {
  // Every resource of the module's work still alive, by id: 0 timers deep for one started during
  // load, or as deep as the one whose callback started it (its trigger), one more for a timer.
  const work = new Map<number, Work>();
  // What is waited for: pending timers and requests, open connections, waited-on promises.
  const timers = new Set<number>();
  const requests = new Set<number>();
  const connections = new Set<number>();
  const httpRequests = new Set<number>();
  const awaited = new Set<number>();
  // Since when open-ended work (an HTTP request, a promise waited on over a connection) alone has
  // been under way.
  let openEndedSince: number | undefined;
  let loadedAt: number | undefined;
  const hook = createHook({
    init(id, type, trigger, resource) {
      let depth = 0;
      if (loaded()) {
        // After load, only what the callback of the module's work starts, or what a socket that
        // work opens does (undici's start with no trigger).
        const parent = work.get(trigger);
        if (parent === undefined) {
          if (trigger !== 0 || !CONNECTIONS.has(type) || awaited.size === 0) return;
        } else depth = parent.depth;
      }
      if (type === "PROMISE") {
        const parent = work.get(trigger)?.promise;
        // A promise made by `.then()` or `await` on one: that one is waited on.
        if (parent && !parent.settled && !parent.awaited) {
          parent.awaited = true;
          awaited.add(trigger);
        }
        work.set(id, { depth, promise: { settled: false, awaited: false } });
        return;
      }
      if (type === "Timeout") {
        const timer = resource as TimeoutResource;
        const due = timer._idleTimeout;
        if (timer._repeat != null || typeof due !== "number" || due > LOAD_TIMER_LIMIT_MS) return;
        if (loaded()) {
          if (depth >= LOAD_TIMER_NESTING) return;
          depth++;
          loadedAt ??= Date.now();
          if (Date.now() + due > loadedAt + LOAD_WORK_TOTAL_MS) return;
        }
        timers.add(id);
      } else if (REQUESTS.has(type)) requests.add(id);
      else if (CONNECTIONS.has(type)) connections.add(id);
      else if (type === HTTP_REQUEST) httpRequests.add(id);
      work.set(id, { depth });
    },
    after(id) {
      // A timer has fired (its callback may start more, counted before this).
      timers.delete(id);
    },
    promiseResolve(id) {
      const promise = work.get(id)?.promise;
      if (promise === undefined) return;
      promise.settled = true;
      awaited.delete(id);
    },
    destroy(id) {
      work.delete(id);
      timers.delete(id);
      requests.delete(id);
      connections.delete(id);
      httpRequests.delete(id);
      awaited.delete(id);
    },
  });
  hook.enable();
  const underWay = () => {
    const now = Date.now();
    if (now >= (loadedAt ?? now) + LOAD_WORK_TOTAL_MS) return false;
    if (timers.size > 0 || requests.size > 0) {
      openEndedSince = undefined;
      return true;
    }
    if (httpRequests.size === 0 && (awaited.size === 0 || connections.size === 0)) {
      openEndedSince = undefined;
      return false;
    }
    openEndedSince ??= now;
    return now < openEndedSince + LOAD_TIMER_LIMIT_MS;
  };
  const done = () => {
    hook.disable();
    for (const set of [work, timers, requests, connections, httpRequests, awaited]) set.clear();
  };
  return () => {
    loadedAt ??= Date.now();
    // A promise waited on may be waiting for a connection not yet open (fetch opens its socket a
    // moment later): the first check is after a beat.
    if (!underWay() && awaited.size === 0) return done();
    const beat = setInterval(() => {
      if (!underWay()) {
        clearInterval(beat);
        return done();
      }
      // Only a sign of life: what it is answered does not matter.
      signOfLife().catch(() => {});
    }, SIGN_OF_LIFE_MS);
    // It never keeps the service alive itself: the work it waits for does.
    beat.unref();
  };
}
