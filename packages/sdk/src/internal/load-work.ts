/**
 * The collect pass (NITRIC_ENVIRONMENT=build) ends a service that has gone quiet for a moment, so
 * a handler registered from work the module started as it loaded and did not await (a timer,
 * `readFile(...).then(register)`, `fetch(url).then(register)`) would be lost from the spec without
 * a word, and so from what build and up deploy. In the collect pass the SDK keeps track, with
 * Node's async hooks, of that work and of what its callbacks start in turn, and while some of it
 * is under way it shows the collector signs of life, so the pass sees what it does: a
 * registration there is refused (registeredAfterLoad) and the pass fails with its message.
 *
 * What is waited for, once the module has loaded, up to LOAD_WORK_TOTAL_MS after load (both
 * bounds are @nitric-like/spec's, which the collector's note says):
 * - a one-shot timer (a Timeout whose `_repeat` is null) the service's code started (not Node's
 *   own nor undici's: startedByCode), due within LOAD_WORK_EACH_MS, no more than
 *   LOAD_TIMER_NESTING timers deep (each started in the callback of the one before);
 * - a request that ends by itself: a file system call, a DNS lookup, a connect, a crypto job;
 * - for up to LOAD_WORK_EACH_MS at a stretch, a connection (or a child process's pipe) the
 *   work opened that has sent something and not been answered since: `fetch(url)` waiting for
 *   its answer. An idle keep-alive connection has nothing unanswered, so it is not waited for.
 *   And an HTTP answer whose body is still arriving, on the same clock: fetch's (undici's
 *   diagnostics channels say when its last byte came) and node:http's (its response's
 *   `complete`), so `fetch(url).then((r) => r.json()).then(register)` is waited for when the
 *   body comes slowly after the first bytes.
 * - for up to LOAD_WORK_EACH_MS from its start, a child process the work started and listens
 *   to (`exec("git rev-parse HEAD", callback)`, `spawn(...)` with an 'exit' or 'close' listener,
 *   or one on what it prints) until it has exited and its pipes have closed (when its 'close'
 *   comes). One left alone (a sidecar) or unref()'d (a daemon) is not waited for.
 * - for up to LOAD_WORK_EACH_MS from its start, a worker thread the work started and listens to
 *   (`new Worker(file).once("message", (m) => socket.route(m.room, ...))`, or a listener of its
 *   'messageerror', 'exit', 'error' or 'online') until its first message comes or it exits. One
 *   nobody listens to, or unref()'d, is not waited for.
 * - for up to LOAD_WORK_EACH_MS from its making, a MessagePort the work made (a MessageChannel's
 *   end, not a worker's own) and listens to for messages (`port1.on("message", (m) =>
 *   socket.route(m, ...))`) while one can still come from elsewhere: its other end was given to
 *   another thread (a worker, through postMessage's or workerData's transferList), until its first
 *   message comes or it is closed. One nobody listens to, or unref()'d, is not waited for, nor one
 *   whose other end stays in this thread (an event bus): once nothing else is waited for, the pass
 *   takes one more check for it, by which a message already posted to it (or its other end given
 *   away in the same turn of the event loop) has landed.
 * Servers, intervals, timers due later, the keep-alive timer fetch sets once its answer has come
 * and promises nothing but a signal settles are not waited for; they keep nothing from ending.
 * Each sign of life says what is waited for (LoadWaiting): where the timers were started (their
 * callers' stack frames), so a pass that stops the service because a timer's callback blocks its
 * event loop can say where to look, the kinds of pending requests, the connections with a
 * request unanswered (where opened, to whom), the child processes (their program, pid and
 * where started), the worker threads (where started) and the MessagePorts (where made), so a pass
 * that waits long can say what for.
 */
import { createHook, executionAsyncId, triggerAsyncId } from "node:async_hooks";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { LOAD_WORK_EACH_MS, LOAD_WORK_TOTAL_MS, type LoadWaiting, programOf } from "@nitric-like/spec";

/** How many timers deep, each started in the callback of the one before, a timer is still waited for. */
export const LOAD_TIMER_NESTING = 3;

/** How often the collector is shown a sign of life while such work is under way (its quiet spell is 1.5 s). */
const SIGN_OF_LIFE_MS = 500;

const FILE = "a file system call";
const DNS = "a DNS lookup";
const CRYPTO = "a crypto job";

/**
 * Async resources that end by themselves: while one started by the module's work is pending, it is
 * waited for. Each with how a sign of life says it.
 */
const REQUESTS = new Map([
  ["FSREQCALLBACK", FILE],
  ["FSREQPROMISE", FILE],
  ["FILEHANDLECLOSEREQ", FILE],
  ["GETADDRINFOREQWRAP", DNS],
  ["GETNAMEINFOREQWRAP", DNS],
  ["QUERYWRAP", DNS],
  ["TCPCONNECTWRAP", "a connection being opened"],
  ["PIPECONNECTWRAP", "a connection being opened"],
  ["SHUTDOWNWRAP", "a connection being closed"],
  ["UDPSENDWRAP", "a UDP send"],
  ...[
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
  ].map((type): [string, string] => [type, CRYPTO]),
]);

/**
 * Async resources that may stay open for good (a keep-alive connection, a child process's pipe):
 * waited for only while they have sent more than has been answered.
 */
const CONNECTIONS = new Set(["TCPWRAP", "TLSWRAP", "PIPEWRAP"]);

/** How a sign of life says an HTTP answer whose body is still arriving. */
const ANSWER = "an HTTP answer still arriving";

/**
 * The diagnostics channels that say when an HTTP request starts and ends: undici's (fetch's, and
 * the npm package's) from its creation (whose work it is) and its answer's headers (before them,
 * its connection is waited for as unanswered) to its last byte (trailers) or its error;
 * node:http's client from its response's headers (its end is the response's `complete`).
 */
const UNDICI_CREATE = "undici:request:create";
const UNDICI_HEADERS = "undici:request:headers";
const UNDICI_ENDS = ["undici:request:trailers", "undici:request:error"];
const HTTP_RESPONSE = "http.client.response.finish";

/** What of an IncomingMessage is read here: whether it has all come, or has been destroyed. */
interface ResponseLike {
  complete?: unknown;
  destroyed?: unknown;
}

/** The async resource of a child process (child_process's spawn, exec, execFile, fork). */
const PROCESS = "PROCESSWRAP";

/** What of a ChildProcess is read here (public fields of Node's). */
interface ChildLike {
  pid?: unknown;
  exitCode?: unknown;
  signalCode?: unknown;
  spawnargs?: unknown;
  stdio?: unknown;
}

/** A child process's handle (Node's Process): its pid, whether it keeps the loop alive, and its ChildProcess (under Node's owner symbol). */
interface ProcessHandle {
  pid?: unknown;
  hasRef?: unknown;
}

/** A child process the work started: its handle, when, where (as a timer's trace) and its ChildProcess once found. */
interface ChildRecord {
  handle: ProcessHandle;
  since: number;
  trace: { stack?: string };
  child?: ChildLike | undefined;
}

/** The ChildProcess a Process handle belongs to (Node keeps it under a symbol of its own, set once the handle is made). */
function ownerOf(handle: ProcessHandle): ChildLike | undefined {
  for (const symbol of Object.getOwnPropertySymbols(handle)) {
    if (symbol.description !== "owner_symbol") continue;
    const owner = (handle as Record<symbol, unknown>)[symbol];
    if (typeof owner === "object" && owner !== null) return owner as ChildLike;
  }
  return undefined;
}

/** Whether a child process has ended as its 'close' event says: exited, and each of its pipes closed. */
function childEnded(child: ChildLike): boolean {
  if (child.exitCode == null && child.signalCode == null) return false;
  const stdio = Array.isArray(child.stdio) ? child.stdio : [];
  return stdio.every(
    (s: unknown) => typeof s !== "object" || s === null || (s as { closed?: unknown }).closed !== false,
  );
}

/** The async resource of a worker thread's handle (worker_threads' Worker), made as the Worker is. */
const WORKER = "WORKER";

/**
 * The async resource of a MessagePort: a worker's public one, or a MessageChannel's end, runs its
 * callback as a message comes.
 */
const MESSAGE_PORT = "MESSAGEPORT";

/**
 * The diagnostics channel on which Node gives each Worker as it is made (`{ worker }`), at the end
 * of its constructor, after its handle and ports (their async resources) were made.
 */
const WORKER_CHANNEL = "worker_threads";

/** The events of a Worker a listener of which says the service's code waits for it. */
const WORKER_EVENTS = ["message", "messageerror", "exit", "error", "online"];

/** A worker thread's handle: whether it keeps the loop alive (Worker#unref() says it does not). */
interface WorkerHandle {
  hasRef?: unknown;
}

/**
 * A worker thread the work started: its handle (and its id), when, where (as a timer's trace), the ports made
 * with it (by id) until its Worker is known, its Worker and the id of its public port (whose
 * callback runs as a message from the thread comes), and whether a message has come.
 */
interface WorkerRecord {
  id: number;
  handle: WorkerHandle;
  since: number;
  trace: { stack?: string };
  ports: Map<number, unknown>;
  worker?: object;
  port?: number;
  heard: boolean;
}

/**
 * A MessagePort the work made that is no worker's own (a MessageChannel's end): the port, when,
 * where (as a timer's trace), and whether a message has come.
 */
interface PortRecord {
  port: { hasRef?: unknown };
  since: number;
  trace: { stack?: string };
  heard: boolean;
  /** Its other end's id while that end is in this thread (made with it, and not ended nor given away). */
  peer?: number;
}

/** A field of a Node object kept under a symbol of its own (`kHandle`, `kPublicPort`), by its description. */
function bySymbol(object: object, description: string): unknown {
  for (const symbol of Object.getOwnPropertySymbols(object)) {
    if (symbol.description === description) return (object as Record<symbol, unknown>)[symbol];
  }
  return undefined;
}

/** What an EventEmitter says of its listeners. */
interface Emitter {
  listenerCount?: unknown;
}

const listens = (emitter: unknown, events: string[]) => {
  const count = (emitter as Emitter | null | undefined)?.listenerCount;
  return typeof count === "function" && events.some((e) => count.call(emitter, e) > 0);
};

/**
 * Whether the service's code waits for a child process: it listens for its end ('exit', 'close':
 * exec's and execFile's callbacks do) or for what it prints. One started and left alone (a
 * sidecar) is not waited for. (Node itself listens for 'close' on each of its pipes.)
 */
function awaited(child: ChildLike): boolean {
  if (listens(child, ["exit", "close"])) return true;
  const { stdout, stderr } = child as { stdout?: unknown; stderr?: unknown };
  return [stdout, stderr].some((s) => listens(s, ["data", "readable", "end"]));
}

/**
 * The program a child process runs, as a sign of life names it: for a shell's command line
 * (exec()'s, `{ shell: true }`) its first word, else the program's file name. Never its
 * arguments: they may hold a token or a password (`curl -H "Authorization: ..."`), and the
 * note goes to a terminal or a CI log; the pid and the file:line that started it tell which.
 */
function childProgram(child: ChildLike | undefined): string | undefined {
  const args = Array.isArray(child?.spawnargs) ? child.spawnargs.map(String) : [];
  if (args.length === 0) return undefined;
  // exec() and { shell: true } run `/bin/sh -c <command>` (cmd.exe `/d /s /c "<command>"` on Windows).
  const flag = args.findIndex((a, i) => i > 0 && (a === "-c" || a.toLowerCase() === "/c"));
  if (flag > 0 && flag < args.length - 1) return programOf(args.slice(flag + 1).join(" "));
  const name = (args[0] ?? "").split(/[\\/]/).pop() ?? "";
  return name === "" ? undefined : name.slice(0, 60);
}

/** What a stream handle counts (Node's StreamBase), and whom a TCP one is connected to (a TLS one's beneath it). */
interface StreamHandle {
  bytesRead?: unknown;
  bytesWritten?: unknown;
  fd?: unknown;
  getpeername?: unknown;
  _parent?: unknown;
}

/** The address a connection's handle is connected to (`127.0.0.1:443`, `[::1]:443`), if it says. */
function peerOf(handle: StreamHandle): string | undefined {
  for (const h of [handle, handle._parent as StreamHandle | undefined]) {
    if (typeof h?.getpeername !== "function") continue;
    const out: { address?: unknown; port?: unknown } = {};
    try {
      if ((h.getpeername as (o: object) => number).call(h, out) !== 0) continue;
    } catch {
      continue;
    }
    if (typeof out.address !== "string" || typeof out.port !== "number") continue;
    return out.address.includes(":") ? `[${out.address}]:${out.port}` : `${out.address}:${out.port}`;
  }
  return undefined;
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
  /** Its stack where it was opened, read only by a sign of life (as a timer's). */
  trace: { stack?: string };
}

/** A timer the work started, pending: its stack where it was started, and whether the service's code started it (startedByCode, once asked). */
interface PendingTimer {
  trace: { stack?: string };
  byCode?: boolean;
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

/** A frame in Node's own code (`node:net`, `node:internal/deps/undici/undici`...). */
const NODE_FRAME = /\(node:|^\s*at node:/;

/** A frame in Node's code that makes a timer and tells this hook of it (setTimeout, new Timeout, emitInit...). */
const TIMER_MAKING_FRAME = /(?:\(|^\s*at )node:(?:internal\/async_hooks|internal\/timers|timers)[:/]/;

/** A frame in undici, the package (Node's own fetch is undici too, in NODE_FRAME). */
const UNDICI_FRAME = /[\\/]node_modules[\\/]undici[\\/]/;

/**
 * The frames of a stack captured as a resource was made (traceHere) that follow this hook's and,
 * after them, the run of frames `skipped` matches (Node's that led to the hook), trimmed.
 */
function framesAfter(trace: { stack?: string }, skipped: RegExp): string[] {
  const frames = (trace.stack ?? "").split("\n").filter((l) => /^\s+at /.test(l));
  // This hook's frames come first, then Node's (emitInit..., new Timeout, setTimeout), then the caller's.
  let at = frames.findIndex((f) => skipped.test(f));
  if (at < 0) return [];
  while (at < frames.length && skipped.test(frames[at] as string)) at++;
  return frames.slice(at).map((f) => f.trim());
}

/** The frames of the code that started a resource, past all of Node's, at most CALLER_FRAMES (for signs of life). */
function callerFrames(trace: { stack?: string }): string[] {
  return framesAfter(trace, NODE_FRAME).slice(0, CALLER_FRAMES);
}

/**
 * Whether a timer was started by the service's code (its own, or a package's it uses), and so is
 * waited for: the frame that called setTimeout is neither Node's own (an http agent's, a socket's)
 * nor undici's (fetch's keep-alive timer, set once an answer has come, and its 0.5 s tick). Those
 * only close connections or time out what is waited for already; they register nothing.
 */
function startedByCode(trace: { stack?: string }): boolean {
  const caller = framesAfter(trace, TIMER_MAKING_FRAME)[0];
  return caller !== undefined && !NODE_FRAME.test(caller) && !UNDICI_FRAME.test(caller);
}

/**
 * The stack here, of at most `frames` frames from the caller of `below` (traceHere's own caller
 * when left out): Error.stackTraceLimit, which the service may have lowered (or Node's 10 may cut
 * short), is set for this capture alone.
 */
export function traceHere(frames: number, below: (...args: never[]) => unknown = traceHere): { stack?: string } {
  const trace: { stack?: string } = {};
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = frames;
  Error.captureStackTrace(trace, below);
  Error.stackTraceLimit = limit;
  return trace;
}

/** Frames of a resource's stack: Node's own that made it (about 6), then the code's that did. */
const RESOURCE_FRAMES = 6 + CALLER_FRAMES;

/** How many connections a sign of life names, at most. */
const CONNECTIONS_SAID = 3;

/**
 * Starts watching the work the module starts as it loads. `loaded` says whether it has finished;
 * `signOfLife` makes a call the collector counts as one, given what is still waited for. Returns
 * what to call once it has loaded.
 */
export function watchLoadWork(
  loaded: () => boolean,
  signOfLife: (waiting: LoadWaiting) => Promise<unknown>,
): () => void {
  // Every resource of the module's work still alive, by id: 0 timers deep for one started during
  // load, or as deep as the one whose callback started it (its trigger), one more for a timer.
  const work = new Map<number, Work>();
  // What is waited for: pending timers and requests, connections with something unanswered.
  // A pending timer's stack where it was started, and whether the service's code started it (V8
  // makes the stack's text only when it is read: the first check that finds the timer pending
  // reads it, to say that, and a sign of life reads it).
  const timers = new Map<number, PendingTimer>();
  const requests = new Map<number, string>();
  const connections = new Map<number, Connection>();
  // Child processes, by their handle's id: kept past the handle's end (its exit) until their
  // pipes have closed too.
  const processes = new Map<number, ChildRecord>();
  // Worker threads, by their handle's id (until it ends, at the thread's exit), and the public
  // port of each whose Worker is known, to its handle's id.
  const workers = new Map<number, WorkerRecord>();
  const workerPorts = new Map<number, number>();
  // The worker whose handle was made last, while its ports are being made (its constructor runs).
  let newWorker: WorkerRecord | undefined;
  // The MessagePorts made by the work that are no worker's (MessageChannels' ends), by id, until
  // they end (closed, or given to another thread).
  const channelPorts = new Map<number, PortRecord>();
  // Each MessageChannel end in this thread, by id, to the record of its other end: when it ends
  // (closed, or given to another thread), a message to that other end can only come from elsewhere.
  const otherEnd = new Map<number, PortRecord>();
  // The resource made last, and in what: a MessageChannel makes its two ends one after the other.
  let lastMade: { id: number; within: number } | undefined;
  // HTTP answers under way, started by the work: undici's requests (until its channels say they
  // ended) and node:http's responses (until `complete`).
  const answers = new Map<object, { response?: ResponseLike; arriving: boolean }>();
  // Since when connections and answers alone have been waited for.
  let connectionsSince: number | undefined;
  let loadedAt: number | undefined;
  // Heard back: what it had sent by then has been answered.
  const heard = (connection: Connection) => {
    connection.readAt = count(connection.handle.bytesRead);
    connection.writtenAtRead = count(connection.handle.bytesWritten);
  };
  const hook = createHook({
    init(id, type, trigger, resource) {
      const made = lastMade;
      lastMade = { id, within: executionAsyncId() };
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
        if (timer._repeat != null || typeof due !== "number" || due > LOAD_WORK_EACH_MS) return;
        if (loaded()) {
          if (depth >= LOAD_TIMER_NESTING) return;
          depth++;
          loadedAt ??= Date.now();
          if (Date.now() + due > loadedAt + LOAD_WORK_TOTAL_MS) return;
        }
        timers.set(id, { trace: traceHere(RESOURCE_FRAMES) });
      } else if (REQUESTS.has(type)) requests.set(id, REQUESTS.get(type) as string);
      else if (type === PROCESS)
        processes.set(id, { handle: resource as ProcessHandle, since: Date.now(), trace: traceHere(RESOURCE_FRAMES) });
      else if (type === WORKER) {
        newWorker = {
          id,
          handle: resource as WorkerHandle,
          since: Date.now(),
          trace: traceHere(RESOURCE_FRAMES),
          ports: new Map(),
          heard: false,
        };
        workers.set(id, newWorker);
      } else if (type === MESSAGE_PORT) {
        // Made while a Worker is being made: one of its own; otherwise a MessageChannel's end.
        if (newWorker !== undefined) newWorker.ports.set(id, resource);
        else {
          const record: PortRecord = {
            port: resource as PortRecord["port"],
            since: Date.now(),
            trace: traceHere(RESOURCE_FRAMES),
            heard: false,
          };
          channelPorts.set(id, record);
          // Made right after another end, in the same call: the two ends of one MessageChannel.
          const first = made === undefined ? undefined : channelPorts.get(made.id);
          if (
            made !== undefined &&
            first !== undefined &&
            first.peer === undefined &&
            made.within === executionAsyncId()
          ) {
            first.peer = id;
            record.peer = made.id;
            otherEnd.set(id, first);
            otherEnd.set(made.id, record);
          }
        }
      } else if (CONNECTIONS.has(type))
        connections.set(id, {
          handle: resource as StreamHandle,
          readAt: 0,
          writtenAtRead: 0,
          tls: type === "TLSWRAP",
          trace: traceHere(RESOURCE_FRAMES),
        });
      work.set(id, { depth });
    },
    before(id) {
      // A connection's callback runs when it has read something (a TLS one's, for its handshake too).
      const connection = connections.get(id);
      if (connection && !connection.tls) heard(connection);
      // A worker's public port's, when a message from its thread has come (its listeners run in it).
      const worker = workerPorts.get(id);
      if (worker !== undefined) {
        const record = workers.get(worker);
        if (record !== undefined) record.heard = true;
      }
      // A MessageChannel's end's, when a message has come (its listeners run in it).
      const port = channelPorts.get(id);
      if (port !== undefined) port.heard = true;
    },
    after(id) {
      // A timer has fired (its callback may start more, counted before this).
      timers.delete(id);
    },
    destroy(id) {
      // A child process's handle ends at its exit: its pipes may still be open (running() says).
      const record = processes.get(id);
      if (record !== undefined) record.child ??= ownerOf(record.handle);
      work.delete(id);
      timers.delete(id);
      requests.delete(id);
      connections.delete(id);
      channelPorts.delete(id);
      // A MessageChannel's end closed or given to another thread: its other end's messages come from elsewhere.
      const other = otherEnd.get(id);
      if (other !== undefined) {
        if (other.peer === id) delete other.peer;
        otherEnd.delete(id);
      }
      // A worker's handle ends once its thread has exited and its 'exit' listeners have run.
      const worker = workers.get(id);
      if (worker !== undefined) {
        workers.delete(id);
        if (worker.port !== undefined) workerPorts.delete(worker.port);
        if (newWorker === worker) newWorker = undefined;
      }
    },
  });
  hook.enable();
  // Whether what runs now is the module's work: its load, or a callback of what it started.
  const ours = () => !loaded() || work.has(executionAsyncId()) || work.has(triggerAsyncId());
  const onCreate = (message: unknown) => {
    const request = (message as { request?: unknown } | null)?.request;
    if (typeof request === "object" && request !== null && ours()) answers.set(request, { arriving: false });
  };
  const onHeaders = (message: unknown) => {
    const request = (message as { request?: unknown } | null)?.request;
    const answer = typeof request === "object" && request !== null ? answers.get(request) : undefined;
    if (answer !== undefined) answer.arriving = true;
  };
  const onEnd = (message: unknown) => {
    const request = (message as { request?: unknown } | null)?.request;
    if (typeof request === "object" && request !== null) answers.delete(request);
  };
  const onResponse = (message: unknown) => {
    const response = (message as { response?: unknown } | null)?.response;
    if (typeof response === "object" && response !== null && ours())
      answers.set(response, { response: response as ResponseLike, arriving: true });
  };
  subscribe(UNDICI_CREATE, onCreate);
  subscribe(UNDICI_HEADERS, onHeaders);
  for (const name of UNDICI_ENDS) subscribe(name, onEnd);
  subscribe(HTTP_RESPONSE, onResponse);
  // Node gives a Worker here as its constructor ends: the record its handle made (if it is the
  // module's work's) learns it, and which of the ports made meanwhile is its public one.
  const onWorker = (message: unknown) => {
    const worker = (message as { worker?: unknown } | null)?.worker;
    const record = newWorker;
    newWorker = undefined;
    if (typeof worker !== "object" || worker === null || record === undefined) return;
    if (bySymbol(worker, "kHandle") !== record.handle) return;
    record.worker = worker;
    const publicPort = bySymbol(worker, "kPublicPort");
    for (const [id, port] of record.ports) {
      if (port !== publicPort) continue;
      record.port = id;
      workerPorts.set(id, record.id);
    }
    record.ports.clear();
  };
  subscribe(WORKER_CHANNEL, onWorker);
  // The answers still arriving; those that have all come are forgotten.
  const arriving = () => {
    let said = 0;
    for (const [key, { response, arriving }] of answers) {
      if (response !== undefined && (response.complete === true || response.destroyed === true)) answers.delete(key);
      else if (arriving) said++;
    }
    return said;
  };
  // The connections that have sent more than has been answered (a read C++ takes, as TLS's socket
  // beneath, is seen from its count).
  const unanswered = () => {
    const waiting: Connection[] = [];
    for (const connection of connections.values()) {
      // The service's own output, when it is a pipe, is written and never answered.
      const fd = connection.handle.fd;
      if (fd === 0 || fd === 1 || fd === 2) continue;
      if (count(connection.handle.bytesRead) !== connection.readAt) heard(connection);
      if (count(connection.handle.bytesWritten) > connection.writtenAtRead) waiting.push(connection);
    }
    return waiting;
  };
  // The child processes that have not ended (nor been waited for LOAD_WORK_EACH_MS); the others
  // are forgotten.
  const running = (now: number) => {
    const waiting: ChildRecord[] = [];
    for (const [id, record] of processes) {
      record.child ??= ownerOf(record.handle);
      const { child } = record;
      const exited = child === undefined || child.exitCode != null || child.signalCode != null;
      // A child unref()'d while it runs is one the service does not wait for: a daemon.
      const unrefd = !exited && typeof record.handle.hasRef === "function" && record.handle.hasRef() === false;
      if (child === undefined || childEnded(child) || unrefd || now >= record.since + LOAD_WORK_EACH_MS)
        processes.delete(id);
      else if (awaited(child)) waiting.push(record);
    }
    return waiting;
  };
  // The worker threads the service's code listens to that have neither sent a message nor exited
  // (nor been waited for LOAD_WORK_EACH_MS); the others, and those unref()'d, are forgotten.
  const threads = (now: number) => {
    const waiting: WorkerRecord[] = [];
    for (const [id, record] of workers) {
      const { worker, handle } = record;
      // Its Worker unknown (Node did not give it), there is no telling whether it is listened to.
      const unrefd = typeof handle.hasRef === "function" && handle.hasRef() === false;
      const exited = worker !== undefined && bySymbol(worker, "kHandle") === null;
      if (worker === undefined || record.heard || exited || unrefd || now >= record.since + LOAD_WORK_EACH_MS) {
        workers.delete(id);
        if (record.port !== undefined) workerPorts.delete(record.port);
        if (newWorker === record) newWorker = undefined;
      } else if (listens(worker, WORKER_EVENTS)) waiting.push(record);
    }
    return waiting;
  };
  // The MessageChannels' ends the service's code listens to for messages that have had none
  // (nor been waited for LOAD_WORK_EACH_MS): those a message can come to from another thread (their
  // other end given away, or one received from elsewhere), waited for, and how many have their
  // other end in this thread; the others, and those unref()'d, are forgotten.
  let quietPorts = 0;
  const portsListened = (now: number) => {
    const waiting: PortRecord[] = [];
    quietPorts = 0;
    for (const [id, record] of channelPorts) {
      const { port } = record;
      const unrefd = typeof port.hasRef === "function" && port.hasRef() === false;
      if (record.heard || unrefd || now >= record.since + LOAD_WORK_EACH_MS) channelPorts.delete(id);
      else if (!listens(port, ["message", "messageerror"])) continue;
      else if (record.peer === undefined) waiting.push(record);
      else quietPorts++;
    }
    return waiting;
  };
  // The pending timers the service's code started.
  const codeTimers = () => {
    const waiting: { stack?: string }[] = [];
    for (const timer of timers.values()) {
      timer.byCode ??= startedByCode(timer.trace);
      if (timer.byCode) waiting.push(timer.trace);
    }
    return waiting;
  };
  // The timers and connections waited for at the last check.
  let timersOn: { stack?: string }[] = [];
  let waitingOn: Connection[] = [];
  let childrenOn: ChildRecord[] = [];
  let threadsOn: WorkerRecord[] = [];
  let portsOn: PortRecord[] = [];
  // Whether the check after this one is the last, taken only for the ports of quietPorts.
  let graced = false;
  let answersOn = 0;
  const underWay = () => {
    const now = Date.now();
    if (now >= (loadedAt ?? now) + LOAD_WORK_TOTAL_MS) return false;
    timersOn = codeTimers();
    waitingOn = unanswered();
    childrenOn = running(now);
    threadsOn = threads(now);
    portsOn = portsListened(now);
    answersOn = arriving();
    let going: boolean;
    if (
      timersOn.length > 0 ||
      requests.size > 0 ||
      childrenOn.length > 0 ||
      threadsOn.length > 0 ||
      portsOn.length > 0
    ) {
      connectionsSince = undefined;
      going = true;
    } else if (waitingOn.length === 0 && answersOn === 0) {
      connectionsSince = undefined;
      going = false;
    } else {
      connectionsSince ??= now;
      going = now < connectionsSince + LOAD_WORK_EACH_MS;
    }
    if (going) {
      graced = false;
      return true;
    }
    // Ports whose other end is in this thread: a message posted to one in this turn of the event
    // loop (a timer's callback just before this check), or its other end given to a worker in it
    // (seen once that end is gone here), is known by the next check. One more, then done.
    if (quietPorts > 0 && !graced) {
      graced = true;
      return true;
    }
    return false;
  };
  const done = () => {
    hook.disable();
    unsubscribe(UNDICI_CREATE, onCreate);
    unsubscribe(UNDICI_HEADERS, onHeaders);
    for (const name of UNDICI_ENDS) unsubscribe(name, onEnd);
    unsubscribe(HTTP_RESPONSE, onResponse);
    unsubscribe(WORKER_CHANNEL, onWorker);
    answers.clear();
    work.clear();
    timers.clear();
    requests.clear();
    connections.clear();
    processes.clear();
    workers.clear();
    workerPorts.clear();
    channelPorts.clear();
    otherEnd.clear();
    lastMade = undefined;
    newWorker = undefined;
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
      signOfLife({
        timers: timersOn.map(callerFrames),
        requests: [...new Set(requests.values()), ...(answersOn > 0 ? [ANSWER] : [])],
        connections: waitingOn.slice(0, CONNECTIONS_SAID).map((c) => {
          const peer = peerOf(c.handle);
          return { frames: callerFrames(c.trace), ...(peer === undefined ? {} : { peer }) };
        }),
        processes: childrenOn.slice(0, CONNECTIONS_SAID).map((p) => {
          const command = childProgram(p.child);
          const pid = p.child?.pid ?? p.handle.pid;
          return {
            frames: callerFrames(p.trace),
            ...(command === undefined ? {} : { command }),
            ...(typeof pid === "number" ? { pid } : {}),
          };
        }),
        workers: threadsOn.slice(0, CONNECTIONS_SAID).map((w) => ({ frames: callerFrames(w.trace) })),
        ports: portsOn.slice(0, CONNECTIONS_SAID).map((p) => ({ frames: callerFrames(p.trace) })),
      }).catch(() => {});
    }, SIGN_OF_LIFE_MS);
    // It never keeps the service alive itself: the work it waits for does.
    beat.unref();
  };
}
