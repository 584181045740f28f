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
 * - for up to LOAD_TIMER_LIMIT_MS at a stretch, a connection (or a child process's pipe) the
 *   work opened that has sent something and not been answered since: `fetch(url)` waiting for
 *   its answer. An idle keep-alive connection has nothing unanswered, so it is not waited for.
 * Servers, intervals, timers due later and promises nothing but a signal settles are not waited
 * for; they keep nothing from ending. Each sign of life carries where the timers still waited for
 * were started (their callers' stack frames), so a pass that stops the service because a timer's
 * callback blocks its event loop can say where to look.
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
 * Async resources that may stay open for good (a keep-alive connection, a child process's pipe):
 * waited for only while they have sent more than has been answered.
 */
const CONNECTIONS = new Set(["TCPWRAP", "TLSWRAP", "PIPEWRAP"]);

/** What a stream handle counts (Node's StreamBase). */
interface StreamHandle {
  bytesRead?: unknown;
  bytesWritten?: unknown;
  fd?: unknown;
}

/**
 * A connection the work opened: its handle, what it had sent when it last heard back, and whether
 * it is TLS's: its callbacks run for the handshake's messages too (the session tickets a TLS 1.3
 * server sends once the client has written its request), so only what it has read (the clear
 * text of the answer, which its count says) is hearing back.
 */
interface Connection {
  handle: StreamHandle;
  readAt: number;
  writtenAtRead: number;
  tls: boolean;
}

interface TimeoutResource {
  _repeat?: unknown;
  _idleTimeout?: unknown;
}

/** A resource the module's work started: how many timers deep it is. */
interface Work {
  depth: number;
}

const count = (value: unknown) => (typeof value === "number" ? value : 0);

/** How many frames of the code that started a timer a sign of life says (the nearest first). */
const CALLER_FRAMES = 5;

/**
 * The frames of the code that started a timer, from a stack captured as it was made: those after
 * this hook's and Node's own that lead to it (`setTimeout` in node:timers), at most CALLER_FRAMES.
 */
function callerFrames(trace: { stack?: string }): string[] {
  const frames = (trace.stack ?? "").split("\n").filter((l) => /^\s+at /.test(l));
  const isNode = (frame: string) => /\(node:|^\s+at node:/.test(frame);
  // This hook's frame, then Node's (emitInit..., new Timeout, setTimeout), then the caller's.
  let at = frames.findIndex(isNode);
  if (at < 0) return [];
  while (at < frames.length && isNode(frames[at] as string)) at++;
  return frames.slice(at, at + CALLER_FRAMES).map((f) => f.trim());
}

/**
 * Starts watching the work the module starts as it loads. `loaded` says whether it has finished;
 * `signOfLife` makes a call the collector counts as one, given where each timer still waited for
 * was started (callerFrames). Returns what to call once it has loaded.
 */
export function watchLoadWork(
  loaded: () => boolean,
  signOfLife: (callers: string[][]) => Promise<unknown>,
): () => void {
  // Every resource of the module's work still alive, by id: 0 timers deep for one started during
  // load, or as deep as the one whose callback started it (its trigger), one more for a timer.
  const work = new Map<number, Work>();
  // What is waited for: pending timers and requests, connections with something unanswered.
  // A pending timer's stack where it was started (V8 makes the text only when it is read: only a
  // sign of life reads it).
  const timers = new Map<number, { stack?: string }>();
  const requests = new Set<number>();
  const connections = new Map<number, Connection>();
  // Since when a connection alone has been waited for.
  let connectionsSince: number | undefined;
  let loadedAt: number | undefined;
  // Heard back: what it had sent by then has been answered.
  const heard = (connection: Connection) => {
    connection.readAt = count(connection.handle.bytesRead);
    connection.writtenAtRead = count(connection.handle.bytesWritten);
  };
  const hook = createHook({
    init(id, type, trigger, resource) {
      let depth = 0;
      if (loaded()) {
        // After load, only what the callbacks of the module's work start, and connections opened
        // where Node gives no trigger (fetch's are).
        const parent = work.get(trigger);
        if (parent !== undefined) depth = parent.depth;
        else if (trigger !== 0 || !CONNECTIONS.has(type)) return;
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
        const trace: { stack?: string } = {};
        const limit = Error.stackTraceLimit;
        // Node's frames of setTimeout come first (about 6): room for the caller's after them.
        Error.stackTraceLimit = 6 + CALLER_FRAMES;
        Error.captureStackTrace(trace);
        Error.stackTraceLimit = limit;
        timers.set(id, trace);
      } else if (REQUESTS.has(type)) requests.add(id);
      else if (CONNECTIONS.has(type))
        connections.set(id, { handle: resource as StreamHandle, readAt: 0, writtenAtRead: 0, tls: type === "TLSWRAP" });
      work.set(id, { depth });
    },
    before(id) {
      // A connection's callback runs when it has read something (a TLS one's, for its handshake too).
      const connection = connections.get(id);
      if (connection && !connection.tls) heard(connection);
    },
    after(id) {
      // A timer has fired (its callback may start more, counted before this).
      timers.delete(id);
    },
    destroy(id) {
      work.delete(id);
      timers.delete(id);
      requests.delete(id);
      connections.delete(id);
    },
  });
  hook.enable();
  // Whether a connection has sent more than has been answered (a read C++ takes, as TLS's socket
  // beneath, is seen from its count).
  const unanswered = () => {
    let waiting = false;
    for (const connection of connections.values()) {
      // The service's own output, when it is a pipe, is written and never answered.
      const fd = connection.handle.fd;
      if (fd === 0 || fd === 1 || fd === 2) continue;
      if (count(connection.handle.bytesRead) !== connection.readAt) heard(connection);
      if (count(connection.handle.bytesWritten) > connection.writtenAtRead) waiting = true;
    }
    return waiting;
  };
  const underWay = () => {
    const now = Date.now();
    if (now >= (loadedAt ?? now) + LOAD_WORK_TOTAL_MS) return false;
    if (timers.size > 0 || requests.size > 0) {
      connectionsSince = undefined;
      return true;
    }
    if (!unanswered()) {
      connectionsSince = undefined;
      return false;
    }
    connectionsSince ??= now;
    return now < connectionsSince + LOAD_TIMER_LIMIT_MS;
  };
  const done = () => {
    hook.disable();
    work.clear();
    timers.clear();
    requests.clear();
    connections.clear();
  };
  return () => {
    loadedAt ??= Date.now();
    // The work may open a connection a moment later (fetch does): unless it started nothing at
    // all, the first check is after a beat.
    if (work.size === 0) return done();
    const beat = setInterval(() => {
      if (!underWay()) {
        clearInterval(beat);
        return done();
      }
      // Only a sign of life: what it is answered does not matter.
      signOfLife([...timers.values()].map(callerFrames)).catch(() => {});
    }, SIGN_OF_LIFE_MS);
    // It never keeps the service alive itself: the work it waits for does.
    beat.unref();
  };
}
