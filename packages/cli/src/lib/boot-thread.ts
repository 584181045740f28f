/**
 * Worker threads booted ahead of their service: Node's start of a thread (some 25 ms here) then
 * overlaps what comes before it (loading the CLI, the collect pass). A booted thread loads nothing
 * of a service until it is given one (takeBooted), keeps nothing alive until then (unref), and one
 * never used ends with this process or with dropBootedThreads.
 *
 * A booted thread is used only for a service whose environment equals the one it was booted with,
 * less the variables each service gets of its own (SERVICE_VARIABLES): those Node does not read
 * while a thread starts, and the thread gets them before the service loads. This module imports
 * nothing but Node's, so bin/nitric-like.js can boot a thread for `run` before it loads the CLI;
 * the threads are kept on globalThis, shared with the copy of this module inside the CLI's bundle.
 */
import { createRequire } from "node:module";
import { type MessagePort, Worker, type WorkerOptions } from "node:worker_threads";

/**
 * Node's exit code for a module whose top-level await never settled, nothing being left that could
 * settle it: Node 20 says nothing more, so the collect pass says what it means, and a booted
 * thread ends with it as Node would (BOOT).
 */
export const UNSETTLED_AWAIT_EXIT_CODE = 13;

/** Preloaded into every Node service: see provider-kit's preload/grpc-reset.cjs (a fix for @nitric/sdk's grpc-js). */
export const GRPC_RESET_PRELOAD = createRequire(import.meta.url).resolve(
  "@nitric-like/provider-kit/preload/grpc-reset.cjs",
);

/** What NODE_OPTIONS is for a service, from NODE_OPTIONS where it starts (and `extra`, such as --inspect). */
export function serviceNodeOptions(nodeOptions: string | undefined, extra = ""): string {
  const preload = `--require ${JSON.stringify(GRPC_RESET_PRELOAD)}${extra}`;
  return nodeOptions ? `${nodeOptions} ${preload}` : preload;
}

/**
 * For bin/nitric-like.js: boots one thread for `run` before the CLI loads, with the environment
 * a service without `.env` files gets (serviceEnv), when `args` run threads on the local provider.
 */
export function bootForRun(args: readonly string[]): void {
  if (args[0] !== "run" || args.some((a) => /^(--processes|--inspect|--single-thread|--help|-h)$/.test(a))) return;
  const provider = args.findIndex((a) => a === "--provider" || a.startsWith("--provider="));
  if (provider >= 0) {
    const name = args[provider]?.includes("=") ? args[provider]?.split("=")[1] : args[provider + 1];
    if (name !== "local") return;
  }
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: serviceNodeOptions(process.env.NODE_OPTIONS) };
  delete env.NITRIC_SERVICE_HOST;
  delete env.NITRIC_SERVICE_PORT;
  bootThread(env);
}

/** What every service thread gets: its environment, Node flags, no arguments, piped output. */
export function threadOptions(env: NodeJS.ProcessEnv) {
  return {
    env,
    // NITRIC_LIKE_SERVICE_NODE_ARGS (e.g. --cpu-prof) reaches threads as it reaches processes.
    execArgv: [
      "--enable-source-maps",
      ...(process.env.NITRIC_LIKE_SERVICE_NODE_ARGS?.split(" ").filter(Boolean) ?? []),
    ],
    argv: [],
    stdout: true,
    stderr: true,
  };
}

/**
 * Starts a service thread. Node refuses a worker the flags of a whole process (V8's heap sizes,
 * --max-old-space-size...): from NITRIC_LIKE_SERVICE_NODE_ARGS that is the user's mistake, said
 * as one (userFacing, as the CLI prints a UserError) with the flags and what to do instead.
 */
export function startWorker(file: string | URL, options: WorkerOptions): Worker {
  try {
    return new Worker(file, options);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ERR_WORKER_INVALID_EXEC_ARGV") throw error;
    // Node's own words for a NODE_OPTIONS flag a thread does not take ("--title= is not allowed
    // in NODE_OPTIONS") say the opposite of the truth for a process, which takes it.
    const option = /NODE_OPTIONS env variable: (\S+?)=? is not allowed/.exec((error as Error).message)?.[1];
    if (option !== undefined) {
      const where =
        process.env.NODE_OPTIONS === undefined
          ? "the NODE_OPTIONS your .env files set"
          : "the NODE_OPTIONS run started with";
      throw Object.assign(
        new Error(
          `Node does not take ${option} in a service thread (a flag of a whole process), and ${where} holds it; remove it there, or run with --processes to give it to each service process`,
          { cause: error },
        ),
        { userFacing: true },
      );
    }
    const flags = /flags: (.*)$/.exec((error as Error).message)?.[1] ?? "";
    throw Object.assign(
      new Error(
        `NITRIC_LIKE_SERVICE_NODE_ARGS: Node does not take ${flags || "these flags"} in a service thread (a flag of the whole process); put it in NODE_OPTIONS for run itself and its threads, or run with --processes to give it to each service process`,
        { cause: error },
      ),
      { userFacing: true },
    );
  }
}

/**
 * The first module of a booted thread: it waits for its service, then makes the thread what
 * `new Worker(file)` would have made it (environment, argv[1], workerData.port) before it loads
 * the service's thread bundle. A bundle that fails to load is an uncaught error, and one stuck at a
 * top-level await nothing is left to settle ends with code 13, as for a Worker started on it.
 */
const BOOT = `import { parentPort, workerData } from "node:worker_threads";
import { pathToFileURL } from "node:url";
parentPort.once("message", ({ file, env, port }) => {
  for (const name of Object.keys(process.env)) if (!Object.hasOwn(env, name)) delete process.env[name];
  Object.assign(process.env, env);
  process.argv[1] = file;
  workerData.port = port;
  // Node ends a thread whose entry is stuck at a top-level await nothing is left to settle with
  // code 13; the service's bundle is imported here, not the entry, so it would end with 0, as a
  // service that ran and ended: while the import is pending, the thread's end is Node's code 13,
  // unless the service called process.exit (with no code, it ends with 0, as a thread started
  // on it does). The call is seen through a proxy of process.exit, let go once the import settles.
  const exit = process.exit;
  let exitCalled = false;
  const seen = new Proxy(exit, {
    apply(target, self, args) {
      exitCalled = true;
      return Reflect.apply(target, self, args);
    },
  });
  process.exit = seen;
  const unsettled = () => {
    if (!exitCalled) process.exitCode ??= ${UNSETTLED_AWAIT_EXIT_CODE};
  };
  process.on("exit", unsettled);
  import(pathToFileURL(file).href).finally(() => {
    process.off("exit", unsettled);
    if (process.exit === seen) process.exit = exit;
  });
});
`;

/** The variables each service gets of its own (serviceEnv): not part of a booted thread's environment. */
const SERVICE_VARIABLES = [
  "SERVICE_ADDRESS",
  "NITRIC_SERVICE_HOST",
  "NITRIC_SERVICE_PORT",
  "NITRIC_ENVIRONMENT",
  "NITRIC_LIKE_SERVICE",
  "NITRIC_LIKE_PROJECT",
  "SERVICE_PATH",
  // provider-kit's LINEAGE_VAR (this module imports nothing of ours): a mark of each thread's own.
  "NITRIC_LIKE_LINEAGE",
];

/** A booted thread's environment for a service's: the service's, less SERVICE_VARIABLES, as a key. */
export function bootKey(env: NodeJS.ProcessEnv): string {
  const booted: NodeJS.ProcessEnv = { ...env };
  for (const name of SERVICE_VARIABLES) delete booted[name];
  return JSON.stringify(booted, Object.keys(booted).sort());
}

interface Booted {
  worker: Worker;
  key: string;
}

const REGISTRY = Symbol.for("nitric-like.booted-threads");

/** The booted threads not yet taken, shared by every copy of this module in the process. */
function booted(): Booted[] {
  const global = globalThis as { [REGISTRY]?: Booted[] };
  global[REGISTRY] ??= [];
  return global[REGISTRY];
}

/** How many booted threads wait for a service with the environment `env`. */
export function bootedFor(env: NodeJS.ProcessEnv): number {
  const key = bootKey(env);
  return booted().filter((b) => b.key === key).length;
}

/** Boots a thread for a service whose environment will be `env` (less SERVICE_VARIABLES). */
export function bootThread(env: NodeJS.ProcessEnv): void {
  const key = bootKey(env);
  const bootEnv = JSON.parse(key) as NodeJS.ProcessEnv;
  const worker = startWorker(new URL(`data:text/javascript,${encodeURIComponent(BOOT)}`), {
    ...threadOptions(bootEnv),
    workerData: {},
  });
  worker.unref();
  const entry = { worker, key };
  // One that fails to boot is simply not used.
  const drop = () => {
    const list = booted();
    const at = list.indexOf(entry);
    if (at >= 0) list.splice(at, 1);
  };
  worker.once("error", drop);
  worker.once("exit", drop);
  booted().push(entry);
}

/**
 * A booted thread, now running `file` with `env` and `port`, if one was booted with the same
 * environment (less SERVICE_VARIABLES, which it gets now): undefined otherwise.
 */
export function takeBooted(env: NodeJS.ProcessEnv, file: string, port: MessagePort): Worker | undefined {
  const key = bootKey(env);
  const list = booted();
  const at = list.findIndex((b) => b.key === key);
  if (at < 0) return undefined;
  const [{ worker }] = list.splice(at, 1) as [Booted];
  worker.ref();
  worker.postMessage({ file, env, port }, [port]);
  return worker;
}

/** Ends the booted threads no service has taken (their services run otherwise, or not at all). */
export function dropBootedThreads(): void {
  for (const { worker } of booted().splice(0)) void worker.terminate();
}
