/**
 * Starting one service process: the built-in TypeScript runner (node on the esbuild bundle) or the
 * project's own `start` command, with the environment both @nitric/sdk and our SDK read.
 */
import { type ChildProcess, type SpawnOptions, spawn } from "node:child_process";
import { type Duplex, PassThrough } from "node:stream";
import { pathToFileURL } from "node:url";
import { MessageChannel, type MessagePort } from "node:worker_threads";
import {
  endLineageWithThisProcess,
  endWithThisProcess,
  lineageOfThisProcess,
  newLineage,
  startReaper,
  withLineage,
} from "@nitric-like/provider-kit";
import { ALIVE_FD_VAR, type Project, type ServiceEntry } from "@nitric-like/spec";
import { serviceNodeOptions, startWorker, takeBooted, threadOptions } from "./boot-thread.js";
import { ALIVE_PING, ALIVE_PONG, type Bundle } from "./bundle.js";
import { withDotEnv } from "./dotenv.js";

/** How to start a service. */
export interface ServiceLaunch {
  project: Project;
  service: ServiceEntry;
  /** The bundle, when the service has no `start` command. */
  bundle?: Bundle;
  /** Its gRPC endpoint: `127.0.0.1:port` when served on TCP, else `unix:<path>`. */
  endpoint: string;
  /** What SERVICE_ADDRESS gets when not the endpoint: the same endpoint on a Unix socket. */
  address?: string;
  /** `run` locally, `build` for the collect pass. */
  environment: "run" | "build";
  /** Variables from the project's `.env` files; the environment `run` started in wins over them. */
  dotenv?: ReadonlyMap<string, string>;
  /** Open Node's inspector on 127.0.0.1 at this port (`run --inspect`; processes only). */
  inspectPort?: number;
}

/**
 * The variables a service process gets, for every SDK: Node reads SERVICE_ADDRESS, Go and JVM SDKs
 * host and port, which are set only when the endpoint is served on TCP (`run --tcp`); inherited
 * ones are removed, so such an SDK fails to connect instead of reaching some other endpoint.
 */
export function serviceEnv(launch: ServiceLaunch): NodeJS.ProcessEnv {
  const tcp = /^127\.0\.0\.1:(\d+)$/.exec(launch.endpoint);
  // A `start` command may run node itself: NODE_OPTIONS carries the preload there.
  // With --inspect, the node a start command runs opens the inspector too.
  const inspect = launch.inspectPort !== undefined && launch.service.start !== undefined;

  const env = withDotEnv(launch.dotenv);
  delete env[ALIVE_FD_VAR];
  delete env.SERVICE_ADDRESS;
  delete env.NITRIC_SERVICE_HOST;
  delete env.NITRIC_SERVICE_PORT;
  const address = launch.address ?? launch.endpoint;
  return {
    ...env,
    NODE_OPTIONS: serviceNodeOptions(env.NODE_OPTIONS, inspect ? ` --inspect=127.0.0.1:${launch.inspectPort}` : ""),
    // None for a thread (endpoint ""), which reaches its provider over its port only.
    ...(address ? { SERVICE_ADDRESS: address } : {}),
    ...(tcp ? { NITRIC_SERVICE_HOST: "127.0.0.1", NITRIC_SERVICE_PORT: tcp[1] } : {}),
    NITRIC_ENVIRONMENT: launch.environment,
    NITRIC_LIKE_SERVICE: launch.service.name,
    NITRIC_LIKE_PROJECT: launch.project.name,
    SERVICE_PATH: launch.service.path,
  };
}

/**
 * The process groups of the service processes this process has started and that have not exited.
 * Each has a group of its own, which a terminal's Ctrl-C does not reach: a run stopped before its
 * own stop is set up (during the collect pass) ends them with endServiceGroups().
 */
const liveGroups = new Set<number>();

/** Sends SIGTERM to every live service process group (and their children): a run that ends while starting. */
export function endServiceGroups(): void {
  for (const pid of liveGroups) {
    try {
      process.kill(-pid, "SIGTERM");
    } catch {
      // Already gone.
    }
  }
}

/**
 * Spawns the service with piped output. Its process group ends with this process however this
 * process ends (endWithThisProcess): a group of its own gets no terminal signal, and a service
 * busy in a loop could not notice that its parent is gone. What is left of the group once the
 * service has exited (a process it started), however it exited, is ended too.
 */
export function spawnService(launch: ServiceLaunch): ChildProcess {
  startReaper();
  // What it starts in a session of its own (detached, setsid, a daemon) carries this lineage.
  const lineage = newLineage();
  const child = spawnGroup(launch, lineage);
  const pid = child.pid;
  endWithThisProcess(child, true, lineage);
  if (pid !== undefined) {
    liveGroups.add(pid);
    child.once("exit", () => liveGroups.delete(pid));
  }
  return child;
}

function spawnGroup(launch: ServiceLaunch, lineage: string): ChildProcess {
  const env = withLineage(serviceEnv(launch), lineage);
  const options = { cwd: launch.project.dir, env, stdio: ["ignore", "pipe", "pipe"] as ["ignore", "pipe", "pipe"] };
  // Our bundle answers run's liveness check on a pipe at fd 3 (bundle.ts, ALIVE_FD_VAR), and so
  // does our SDK in a process a `start` command runs (watched once it has answered); not under
  // --inspect, where a debugger may hold the process at a breakpoint for as long as it likes.
  const alive = launch.inspectPort === undefined;
  const watched: SpawnOptions = alive
    ? { env: { ...env, [ALIVE_FD_VAR]: "3" }, stdio: ["ignore", "pipe", "pipe", "pipe"] }
    : {};
  if (launch.service.start !== undefined) {
    return spawn("/bin/sh", ["-c", launch.service.start], { ...options, ...watched, detached: true });
  }
  if (!launch.bundle) throw new Error(`service "${launch.service.name}" has neither a bundle nor a start command`);
  // A process group of its own (as for start commands): a terminal's Ctrl-C then reaches only the
  // CLI, which drains in-flight handlers before it stops the services, instead of killing them mid-event.
  // NITRIC_LIKE_SERVICE_NODE_ARGS: extra Node flags for the services only (e.g. --cpu-prof, which
  // NODE_OPTIONS does not accept), for profiling.
  const extra = process.env.NITRIC_LIKE_SERVICE_NODE_ARGS?.split(" ").filter(Boolean) ?? [];
  if (launch.inspectPort !== undefined) extra.push(`--inspect=127.0.0.1:${launch.inspectPort}`);
  return spawn(process.execPath, ["--enable-source-maps", ...extra, launch.bundle.outfile], {
    ...options,
    ...watched,
    detached: true,
  });
}

/** Stops a process: SIGTERM, then SIGKILL after `graceMs`. Resolves when it has exited. */
export function stopProcess(child: ChildProcess, graceMs = 2000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => signal(child, "SIGKILL"), graceMs);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    signal(child, "SIGTERM");
  });
}

function signal(child: ChildProcess, sig: NodeJS.Signals): void {
  try {
    // Every service runs in its own process group (a `start` command under sh too): signal the whole group.
    if (child.pid !== undefined) process.kill(-child.pid, sig);
    else child.kill(sig);
  } catch {
    // Already gone.
  }
}

/** A running service, as a process or as a worker thread: what the supervisor needs of either. */
export interface ServiceHandle {
  readonly stdout: NodeJS.ReadableStream | null;
  readonly stderr: NodeJS.ReadableStream | null;
  /** A process, a worker thread, or run's own thread (`run --single-thread`). */
  readonly kind: "process" | "thread" | "main-thread";
  /** Calls back once when it has ended: a code, or the signal that killed it. */
  onExit(listener: (code: number | null, signal: NodeJS.Signals | null) => void): void;
  /** Calls back when it could not start at all. */
  onError(listener: (error: Error) => void): void;
  /** True once it has ended. */
  exited(): boolean;
  /**
   * Ends it now: SIGTERM to a process (SIGKILL after `graceMs`), terminate() to a thread.
   * Resolves once it has ended.
   */
  stop(graceMs: number): Promise<void>;
  /** A thread only: true when it ended on a native addon that cannot load in a worker thread. */
  threadUnsupported?(): boolean;
  /**
   * A worker thread, or a process (of run's bundle, or of a start command once its program has
   * answered, as our SDK does): checks that its event loop turns, and ends it
   * (terminate(), SIGKILL: its own exit) once it has not answered for `blockedAfterMs`, calling
   * `onBlocked` first with how long.
   */
  watchAlive?(blockedAfterMs: number, onBlocked: (silentMs: number) => void): void;
  /**
   * A thread, or a process of run's bundle: resolves true when its event loop answers a check
   * within `withinMs`, false when it does not (its code runs without yielding) or it has ended.
   */
  turns?(withinMs: number): Promise<boolean>;
}

/** Resolves true once `answered` is called back (see `listen`), false after `withinMs`. */
function answerWithin(
  withinMs: number,
  ask: () => void,
  listen: (answered: () => void) => () => void,
): Promise<boolean> {
  return new Promise((resolve) => {
    const stop = listen(() => {
      clearTimeout(timer);
      stop();
      resolve(true);
    });
    const timer = setTimeout(() => {
      stop();
      resolve(false);
    }, withinMs);
    ask();
  });
}

/**
 * True for Node's errors for a native addon that is not built to load in worker threads (any
 * dlopen failure is ERR_DLOPEN_FAILED; only these messages say it is the thread).
 */
function cannotLoadInThread(error: unknown): boolean {
  const message = (error as { message?: unknown } | undefined)?.message;
  return (
    typeof message === "string" &&
    (message.includes("did not self-register") ||
      message.includes("not context-aware") ||
      message.includes("cannot be loaded in a worker"))
  );
}

/**
 * A process as a ServiceHandle. `startCommand`: started by the service's own command, whose
 * program may not answer liveness pings at all (another language, @nitric/sdk): it is watched only
 * once it has answered one.
 */
export function processHandle(child: ChildProcess, startCommand = false): ServiceHandle {
  // The pipe our bundles and our SDK answer liveness pings on (spawnService), when there is one.
  const alivePipe = child.stdio[3] as Duplex | null | undefined;
  alivePipe?.on("error", () => {});
  // Watched once: from its start, and asked again once it has started.
  let watched = false;
  // Who waits for its next answer (turns). Read from the start, so the answer it gives as it
  // loads is not taken later for an answer to a check.
  const answers = new Set<() => void>();
  alivePipe?.on("data", (data: Buffer) => {
    if (data.includes(0x21)) for (const answered of [...answers]) answered();
  });
  return {
    stdout: child.stdout,
    stderr: child.stderr,
    kind: "process",
    onExit: (listener) => void child.once("exit", listener),
    onError: (listener) => void child.once("error", listener),
    exited: () => child.exitCode !== null || child.signalCode !== null,
    stop: (graceMs) => stopProcess(child, graceMs),
    ...(alivePipe
      ? {
          watchAlive: (blockedAfterMs: number, onBlocked: (silentMs: number) => void) => {
            if (watched || child.exitCode !== null || child.signalCode !== null) return;
            watched = true;
            const alive = aliveWatch(
              blockedAfterMs,
              () => alivePipe.write("?"),
              (silentMs) => {
                onBlocked(silentMs);
                signal(child, "SIGKILL");
              },
              !startCommand,
            );
            // An answer is "!"; anything else a program writes there is not one.
            alivePipe.on("data", (data: Buffer) => {
              if (data.includes(0x21)) alive.answered();
            });
            child.once("exit", () => clearInterval(alive.timer));
          },
          ...(startCommand
            ? {}
            : {
                turns: (withinMs: number) =>
                  child.exitCode !== null || child.signalCode !== null
                    ? Promise.resolve(false)
                    : answerWithin(
                        withinMs,
                        () => alivePipe.write("?"),
                        (answered) => {
                          answers.add(answered);
                          return () => answers.delete(answered);
                        },
                      ),
              }),
        }
      : {}),
  };
}

/**
 * Starts a service that uses our SDK as a worker thread of this process, calling the provider over
 * `port` (@nitric-like/rpc's MessagePort transport): its messages then cross no process boundary and no
 * HTTP/2 framing, two process hops fewer per message than a service process. It gets the same
 * environment a process would (its own copy), its output is piped, and an uncaught error is
 * printed to its stderr before it ends with code 1, as a process would print it.
 *
 * What a thread does not isolate: it shares the CLI's working directory (the CLI moves to the
 * project's folder), its memory counts in the CLI's, and code that blocks its own event loop
 * does not block the gateways (they run on the main thread). `--processes` gives every service a
 * process of its own instead.
 *
 * A thread reaches its provider over `port` alone: it gets no SERVICE_ADDRESS (nor
 * NITRIC_SERVICE_HOST/PORT), which are for processes, so it can start before its endpoint exists.
 */
export function startServiceThread(launch: ServiceLaunch & { bundle: Bundle }, port: MessagePort): ServiceHandle {
  const file = launch.bundle.threadOutfile;
  if (file === undefined) throw new Error(`service "${launch.service.name}" has no thread bundle`);
  const { address: _address, ...rest } = launch;
  // The processes it starts are children of this process, in its group or in sessions of their
  // own: they carry the thread's lineage, and end once the thread has ended, or with this process.
  const lineage = newLineage();
  const env = withLineage(serviceEnv({ ...rest, endpoint: "" }), lineage);
  const endStarted = endLineageWithThisProcess(lineage);
  // The thread bundle's generated entry (bundle.ts, threadEntry) gives the SDKs this port.
  const worker =
    takeBooted(env, file, port) ??
    startWorker(file, { ...threadOptions(env), workerData: { port }, transferList: [port] });
  // The thread's stderr, plus what a process would print for an uncaught error.
  const stderr = new PassThrough();
  worker.stderr.pipe(stderr);
  let ended = false;
  let unsupported = false;
  worker.on("error", (error) => {
    if (cannotLoadInThread(error)) unsupported = true;
    if (stderr.writableEnded) return;
    stderr.write(`Uncaught ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    if (cannotLoadInThread(error)) {
      stderr.write(
        `nitric-like: service "${launch.service.name}" loads a native addon that cannot run in a worker thread; start it with "nitric-like run --processes"\n`,
      );
    }
  });
  let watch: NodeJS.Timeout | undefined;
  const exit = new Promise<number>((resolve) => {
    worker.once("exit", (code) => {
      ended = true;
      clearInterval(watch);
      void endStarted();
      resolve(code);
    });
  });
  return {
    stdout: worker.stdout,
    stderr,
    kind: "thread",
    onExit: (listener) => void exit.then((code) => listener(code, null)),
    // A file that does not load is an uncaught error too: it is printed, and the thread ends with 1.
    onError: () => {},
    exited: () => ended,
    threadUnsupported: () => unsupported,
    stop: async () => {
      if (ended) return;
      await worker.terminate();
      await exit;
    },
    watchAlive: (blockedAfterMs, onBlocked) => {
      if (ended || watch !== undefined) return;
      const alive = aliveWatch(
        blockedAfterMs,
        () => worker.postMessage(ALIVE_PING),
        (silentMs) => {
          onBlocked(silentMs);
          void worker.terminate();
        },
      );
      watch = alive.timer;
      worker.on("message", (message) => {
        if (message === ALIVE_PONG) alive.answered();
      });
    },
    turns: (withinMs) =>
      ended
        ? Promise.resolve(false)
        : answerWithin(
            withinMs,
            () => worker.postMessage(ALIVE_PING),
            (answered) => {
              const onMessage = (message: unknown) => {
                if (message === ALIVE_PONG) answered();
              };
              worker.on("message", onMessage);
              return () => worker.off("message", onMessage);
            },
          ),
  };
}

/**
 * run's liveness check of a service: a ping (`ask`) whenever none is out, checked up to four times
 * as often as `blockedAfterMs` (at most once a second); once one has gone unanswered that long,
 * `blocked` is called, once. `answered()` is for the service's answer. Not `armed`: nothing is
 * called blocked until a first answer has come. The timer keeps nothing alive.
 */
function aliveWatch(
  blockedAfterMs: number,
  ask: () => void,
  blocked: (silentMs: number) => void,
  armed = true,
): { timer: NodeJS.Timeout; answered(): void } {
  // When the unanswered ping went out; undefined while none is out.
  let askedAt: number | undefined;
  const timer = setInterval(
    () => {
      const now = Date.now();
      if (askedAt === undefined) {
        askedAt = now;
        ask();
      } else if (armed && now - askedAt >= blockedAfterMs) {
        clearInterval(timer);
        blocked(now - askedAt);
      }
    },
    Math.min(1000, Math.max(10, blockedAfterMs / 4)),
  );
  timer.unref();
  return {
    timer,
    answered: () => {
      askedAt = undefined;
      armed = true;
    },
  };
}

/** How long the calls of a service on this thread that failed to load have to end before its port is left open. */
const FAILED_GRACE_MS = 5000;

/**
 * Runs a service on this process's own thread (`run --single-thread`): its thread bundle is
 * imported here and its entry's `start(port)` gives the SDKs a transport over `port`, one end of a
 * port whose other end the provider serves on this same thread (RunningProvider.openLocalPort,
 * @nitric-like/rpc's LocalPort): a frame reaches the other side a microtask later, not cloned, and
 * no thread is woken: the fastest path, with nothing isolated. The service
 * shares this process's environment (its variables are set in process.env; with several services,
 * the last one's NITRIC_LIKE_SERVICE and SERVICE_PATH stay), writes straight to this process's
 * output (unprefixed), blocks every connection while it blocks the event loop, and an error it
 * throws outside its handlers ends the process. The processes it starts carry this process's own
 * lineage (lineageOfThisProcess), which run ends as it ends. A module cannot be unloaded, so it is loaded once:
 * run does not watch files in this mode, and stop() waits for the service's calls to end (the
 * provider's stop ends its handler streams) and closes the port; its module stays loaded, and its
 * timers run until run ends the process.
 *
 * A service that fails to load is reported as a thread's is: "Uncaught" and its error on the
 * handle's stderr, then an exit with code 1, so the supervisor prints its cause.
 */
export function startServiceHere(launch: ServiceLaunch & { bundle: Bundle }, port: { close(): void }): ServiceHandle {
  const file = launch.bundle.threadOutfile;
  if (file === undefined) throw new Error(`service "${launch.service.name}" has no thread bundle`);
  const { address: _address, ...rest } = launch;
  // What it starts is this process's child, or in a session of its own: it carries this process's
  // lineage (one for every service here, as they share process.env), and run ends them as it ends
  // (endLineageOfThisProcess), or the reaper once this process has ended however it ended.
  lineageOfThisProcess();
  // NODE_OPTIONS is for the Node a service starts; this one has started.
  const { NODE_OPTIONS: _nodeOptions, ...env } = serviceEnv({ ...rest, endpoint: "" });
  Object.assign(process.env, env);
  // Stack traces name the service's own files and lines, as a thread's (--enable-source-maps) do.
  process.setSourceMapsEnabled(true);
  const stderr = new PassThrough();
  const exits: ((code: number | null, signal: NodeJS.Signals | null) => void)[] = [];
  let ended: number | undefined;
  const end = (code: number) => {
    if (ended !== undefined) return;
    ended = code;
    stderr.end();
    for (const listener of exits.splice(0)) listener(code, null);
  };
  // The transport start() gave the SDKs: its calls in flight say when the port can close.
  let transport: { readonly inFlight: number } | undefined;
  let closing = false;
  // The provider's last frames (each handler stream's OK as it stops, or as the service is said to
  // have exited) arrive on a later turn: the calls they end are waited for, up to graceMs, and the
  // port closes once none is left. Calls still open then are left as they are: cancelling them
  // would be fatal to the SDKs (process.exit, which here is run's), and run ends this process
  // once it has stopped (main.ts), as terminate() ends a thread.
  const closePort = async (graceMs: number) => {
    if (closing) return;
    closing = true;
    const until = Date.now() + graceMs;
    while (transport && transport.inFlight > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    if (!transport || transport.inFlight === 0) port.close();
  };
  type Entry = {
    start(port: unknown, service: string): { transport: NonNullable<typeof transport>; loaded: Promise<unknown> };
  };
  import(pathToFileURL(file).href)
    .then((entry: Entry) => {
      // Named: process.env's NITRIC_LIKE_SERVICE is the last service started here by the time it loads.
      const started = entry.start(port, launch.service.name);
      transport = started.transport;
      return started.loaded;
    })
    .catch((error: unknown) => {
      stderr.write(`Uncaught ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      end(1);
      void closePort(FAILED_GRACE_MS);
    });
  return {
    stdout: null,
    stderr,
    kind: "main-thread",
    onExit: (listener) => {
      if (ended === undefined) exits.push(listener);
      else listener(ended, null);
    },
    onError: () => {},
    exited: () => ended !== undefined,
    stop: async (graceMs) => {
      await closePort(graceMs);
      end(0);
    },
  };
}

/** A service's thread started before its provider was up (startEarlyThread). */
export interface EarlyThread {
  handle: ServiceHandle;
  /** The channel's other end, for the provider to serve (RunningProvider.servePort). */
  port: MessagePort;
}

/**
 * Starts a service's thread before its provider is up: the thread loads its bundle meanwhile, and
 * the calls it makes wait in its port until the provider serves the other end.
 */
export function startEarlyThread(launch: ServiceLaunch & { bundle: Bundle }): EarlyThread {
  const { port1, port2 } = new MessageChannel();
  return { handle: startServiceThread(launch, port2), port: port1 };
}

/** Ends a thread started early that nothing took: its port closes, and it stops. */
export async function endEarlyThread(early: EarlyThread): Promise<void> {
  early.port.close();
  await early.handle.stop(0);
}
