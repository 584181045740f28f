/**
 * `nitric-like run [dir]`: collects the spec, starts the provider (local by default), starts every
 * service against its own endpoint, and prints `websocket <name> <url>` for each socket once every
 * service has started (see ServiceSupervisor for what that means and what a failure does).
 * Restarts a service when its files change or when it crashes. Ctrl-C drains running handlers,
 * closes client connections with 1001 and exits 0.
 */

import { type Dirent, existsSync, readdirSync } from "node:fs";
import { createServer } from "node:net";
import { join, relative, resolve, sep } from "node:path";
import { isMainThread } from "node:worker_threads";
import { endLineageOfThisProcess, followedBy } from "@nitric-like/provider-kit";
import { canCheckTcpPeers } from "@nitric-like/rpc";
import {
  buildSpec,
  type CollectedService,
  checkEnvironment,
  DEFAULT_RUN_ENVIRONMENT,
  type HandlerRegistration,
  importedServiceConflict,
  ProjectError,
  type Provider,
  type ProviderInspector,
  type RunningProvider,
  registrationKey,
  SERVED_KINDS,
  type ServiceEntry,
  type Spec,
  specRegistrations,
  type WebsocketEvent,
} from "@nitric-like/spec";
import { bootedFor, bootKey, bootThread, dropBootedThreads } from "../lib/boot-thread.js";
import { BuiltFrom, backLine, ownFiles, savedLine } from "../lib/built-from.js";
import { type BundleOptions, bundleService } from "../lib/bundle.js";
import { collect, keptCollections } from "../lib/collect.js";
import { type Dashboard, DEFAULT_DASHBOARD_PORT, type ServiceStatus, startDashboard } from "../lib/dashboard.js";
import { checkNodeOptions, type DotEnv, envLine, functionVariables, loadDotEnv, loadEnvFiles } from "../lib/dotenv.js";
import { formatFailure } from "../lib/failure.js";
import { type Output, onOutputClosed, UserError } from "../lib/log.js";
import {
  importedServices,
  loadProjectFile,
  type PreparedProject,
  type PreparedService,
  prepareProject,
  workerScriptServices,
} from "../lib/prepare.js";
import { projectChangeNotices } from "../lib/project-change.js";
import { loadProvider } from "../lib/providers.js";
import {
  cannotBeReady,
  collectFailure,
  declarationRefusals,
  expectedOf,
  failCollected,
  type HandlerOwner,
  recollectAndStart,
  refuseConflicts,
  stopWhenAllWait,
  warnedErrors,
  whenAllStarted,
} from "../lib/readiness.js";
import { readRunSockets, removeRunSockets, runSocketsFile, writeRunSockets } from "../lib/run-sockets.js";
import {
  type EarlyThread,
  endEarlyThread,
  endServiceGroups,
  serviceEnv,
  startEarlyThread,
} from "../lib/service-process.js";
import { ServiceSupervisor } from "../lib/supervisor.js";
import { type Watcher, watchFiles } from "../lib/watch.js";
import { collectSpec } from "./spec.js";

/** Help for `run`. */
export const RUN_HELP = `Usage: nitric-like run [dir] [options]

Runs the project in dir (default: the current folder) on your machine: a WebSocket
gateway per socket and kv stores on disk (.nitric-like/ in the project), every service
started with its own endpoint. TypeScript services run without a build step.

A service process reaches its endpoint at SERVICE_ADDRESS, a Unix socket in a private
folder of this run: only your user can connect, and whoever connects acts as the
service.

At start it prints the local dashboard's address (resources, live connections and
messages, sending, a kv browser; open it as printed: its key, new each run, keeps the
machine's other users out), then, once every service has registered the handlers
the spec expects of it, one line per socket on stdout, and "ready" on stderr:
  dashboard http://127.0.0.1:<port>/#key=<key>
  websocket <name> ws://127.0.0.1:<port>

Services restart when their files change (with --provider aws too), and with backoff
when they crash. A change to the project file is checked at once and applies at the
next run. A new file a service's match takes starts as a new service, and a service
whose file is gone (deleted, renamed) stops; its sockets' events wait up to 10 s for
another service to handle them, as a renamed file's does. With --provider aws, each
of these, and a saved service that declares something else, deploys the emulated app
again (its clients reconnect; sockets keep their URLs). A service that fails before it
has started (collecting its resources, or at start) is not restarted: its cause is
printed once (file:line, message, the fix; for a missing package, the install command)
and it waits for a change to its files, package.json or a lockfile; the other services
keep running. With --provider aws, a function whose init fails is named in a warning
before "ready", and, as on Lambda, its next event retries the init. A service that
started, then crashed 5 times in 30 s with no event in flight waits for a file change
too. A started service whose event loop has not turned for 30 s (a loop that never
yields; or the handler timeout and 5 seconds, when longer), as a Lambda function times
out, is ended and restarted, saying why (not while a debugger may hold it, nor one run
by its own start command whose program does not answer run's check; our SDK answers
it). Two services handling the same socket event: exits 1, as "nitric-like spec" does.
Ctrl-C lets running handlers answer, closes client connections (1001, going away) and
exits; while run is still starting, it ends what has started and exits 130.

It stops with exit 1 before starting anything when the project file has a problem
(every one is listed, unknown keys too) or when a service declares a resource
nitric-like does not serve (api, http, topic, queue, bucket, schedule, sql, job,
...). A service changed while running to declare one is not restarted: its
running version stays, and the next change that removes it restarts it.

What a service declares is read once per change: while its code (its bundle) and its
environment are unchanged, run reuses what the last run collected ("resources of 1
service: unchanged since the last run"); spec, build and up always collect anew.

.env and .env.<env> in the project folder (see --env) are loaded into every
service and its collect pass: a variable set where run starts wins, then .env.<env>,
then .env. Their values are never printed: run and the dashboard show the names
only. Changing either file restarts the services. (Local provider only: under
--provider aws, and in what build and up deploy, functions do not get them.)

Options:
  --provider <name>   Provider to run on (default: local). "aws" builds the app as
                      for a deploy and runs it in an emulator of API Gateway, Lambda
                      and DynamoDB, whose endpoints on 127.0.0.1 take only requests
                      signed with credentials made for the run (in
                      .nitric-like/aws-run/emulator.env, readable by you alone).
  --random-ports      Ignore ports pinned in the project file (and the dashboard's
                      default); use free ones.
  --dashboard-port <n>
                      Serve the dashboard on port n (default: ${DEFAULT_DASHBOARD_PORT}, or a free port
                      when that one is taken).
  --no-dashboard      Do not serve the dashboard.
  --env <name>        Apply environments.<name> of the project file and load
                      .env.<name> (default: local).
  --env-from <path>   Load this file of NAME=value lines too, over the .env files
                      (repeat it for more, each over the one before). With
                      --provider aws it goes, alone, into every function's
                      environment, as "up --env-from" deploys it.
  --host <address>    Where the gateways listen (default: 127.0.0.1, this machine only);
                      0.0.0.0 lets other machines connect, with a warning.
  --processes         Start every service as a process of its own. By default a
                      service runs as a worker thread of this process and reaches
                      the provider over a MessagePort (two process hops fewer per
                      message), whether it uses @nitric-like/sdk or @nitric/sdk;
                      services with a start command always get processes.
  --single-thread     Run every service on run's own thread, beside the gateways: no
                      worker thread, so no message waits for another thread to
                      wake up (the fastest path, and less memory). Nothing is
                      isolated: a service that blocks its event loop stalls every
                      connection, an error it throws outside its handlers or its
                      process.exit() ends run, it shares run's environment and
                      writes to run's output unprefixed (not to the dashboard's
                      log). Implies --no-watch (a loaded module cannot be
                      unloaded: restart run to load a change). Services that
                      cannot run as threads (a start command) get processes.
  --inspect           Open Node's inspector in every service, each on its own port
                      of 127.0.0.1, printed on stdout at each start as
                        service <name> inspector ws://127.0.0.1:<port>/<id>
                      Attach Chrome (chrome://inspect, add 127.0.0.1:<port>) or VS Code
                      ("attach" to that port). Implies --processes: worker threads
                      share this process's inspector.
  --tcp               Also serve each service process's endpoint on 127.0.0.1 and set
                      NITRIC_SERVICE_HOST/PORT, for SDKs that cannot dial a Unix socket
                      (Nitric's Go and JVM SDKs). On Linux only your user's processes
                      are served there (the kernel says whose each connection is);
                      elsewhere any user of this machine could act as your services,
                      and run warns.
  --verbose           Print services' errors with every stack frame. By default an
                      SDK error a handler throws or nobody catches prints as its
                      message and the line of your code it came from, and other
                      errors a handler throws keep only the frames in your files.
                      (NITRIC_LIKE_VERBOSE=1 in the environment does the same.)
                      It also prints each bundle run makes (at start, on a save,
                      for a new service file), and its time.
  --no-watch          Do not restart services when their files change.
                      A service that fails to start then ends run (exit 1).
  --plain             No colours (also when NO_COLOR is set or output is not a
                      terminal).
  -h, --help          Show this help.
`;

/** Options of `run`. */
export interface RunCommandOptions {
  dir: string;
  provider: string;
  randomPorts: boolean;
  watch: boolean;
  /** Start every service as a process, never as a worker thread. @default false */
  processes?: boolean;
  /** Open Node's inspector in every service on a port of its own (implies processes). @default false */
  inspect?: boolean;
  /** Run the services that would be threads on this process's own thread (implies no watching). @default false */
  singleThread?: boolean;
  /** Serve the dashboard. @default true */
  dashboard?: boolean;
  /** The dashboard's port; given, a taken port is an error. @default 4040, or a free one when taken */
  dashboardPort?: number;
  /** Where the gateways listen. @default "127.0.0.1" */
  host?: string;
  /** Whose `environments.<name>` limits apply. @default "local" */
  environment?: string;
  /** Serve the services' endpoints on 127.0.0.1 too (NITRIC_SERVICE_HOST/PORT). @default false */
  tcp?: boolean;
  /** How long to wait for the expected handlers before warning that they are not there yet. @default 15000 */
  readyTimeoutMs?: number;
  /** Services print errors with every frame (NITRIC_LIKE_VERBOSE=1 in their environment). @default false */
  verbose?: boolean;
  /** `--env-from`: more variables, for the local provider's services or a hosting provider's functions. */
  envFiles?: string[];
  /** Resolves to stop the run (tests); SIGINT and SIGTERM stop it too. */
  signal?: AbortSignal;
  /** How long a started service may go without its event loop turning before it is restarted (tests). @default 30 s, or the handler timeout and 5 s when longer */
  blockedAfterMs?: number;
  /** Receives the run's hold on what it started once it is set up (the test kit's). */
  control?: (control: RunControl) => void;
}

/** What `RunCommandOptions.control` receives. */
export interface RunControl {
  /** The run's services, each to restart through its supervisor (none when the provider hosts them). */
  readonly services: readonly RunService[];
  /** The provider's inspector, when it has one: connections, kv stores. */
  readonly inspector: ProviderInspector | undefined;
  /** What the services declared. */
  readonly spec: Spec;
  /**
   * The services whose function's init has failed, with why, until one succeeds (a provider that
   * hosts them, the AWS emulator; none elsewhere, where a service that fails holds back `ready`).
   */
  failedInits(): ReadonlyMap<string, string>;
}

/** A service of a run, as `RunCommandOptions.control` receives it. */
export interface RunService {
  readonly name: string;
  /** Stops the service (waiting up to 2 s for its handlers) and starts it again, as a code change does. */
  restart(): Promise<void>;
}

/** True once run ends its own process before its stop is done (a second Ctrl-C). */
let endingItself = false;

/** Runs the project until Ctrl-C. Resolves with the exit code. */
export async function runCommand(given: RunCommandOptions, output: Output): Promise<number> {
  const options = singleThreadOptions(given, output);
  if (options.singleThread !== true) return await runProject(options, output);
  // An error a service on this thread throws outside its handlers, or its process.exit(), ends
  // run: say so, unless run ended itself.
  let uncaught = false;
  const onUncaught = (error: Error, origin: string) => {
    uncaught = true;
    output.error(
      `an uncaught ${origin === "unhandledRejection" ? "rejection" : "error"} ends run: with --single-thread, services share run's thread, so one that throws outside its handlers ends it (without --single-thread, that service alone restarts): ${error instanceof Error ? error.message : String(error)}`,
    );
  };
  const onExit = (code: number) => {
    if (!uncaught && !endingItself)
      output.error(
        `a service called process.exit(${code}), which ends run: with --single-thread, services share run's process (without --single-thread, that service alone ends and restarts)`,
      );
  };
  process.on("uncaughtExceptionMonitor", onUncaught);
  process.on("exit", onExit);
  try {
    return await runProject(options, output);
  } finally {
    // What the services started (run's children, or in sessions of their own: they carry run's
    // lineage) ends before run does, as a service thread's or process's does when it stops.
    await endLineageOfThisProcess();
    process.off("exit", onExit);
    process.off("uncaughtExceptionMonitor", onUncaught);
  }
}

/** The signals that stop a run (and, before its stop is set up, stop its start). */
const STOP_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

let startingOutput: Output | undefined;

/**
 * A signal before the run's own stop is set up (bundling, the collect pass, the provider
 * starting): Node's default would end this process and leave the collect pass's service
 * processes running, in process groups of their own that a terminal's Ctrl-C does not reach. So
 * they are ended with it, said in one line, with the signal's usual exit code.
 */
function stopWhileStarting(signal: NodeJS.Signals): void {
  endWhileStarting(signal, signal === "SIGINT" ? 130 : signal === "SIGTERM" ? 143 : 129);
}

/** Ends what had started (the collect pass's service processes) and this process, with `code`. */
function endWhileStarting(why: string, code: number): void {
  startingOutput?.info(`stopped while starting (${why}): ending what had started`);
  endServiceGroups();
  endingItself = true;
  process.exit(code);
}

/** Stops listening for a closed stdout or stderr while starting. */
let unwatchStartingOutput: (() => void) | undefined;

function watchStartingSignals(output: Output): void {
  startingOutput = output;
  for (const s of STOP_SIGNALS) process.on(s, stopWhileStarting);
  // A closed stdout or stderr (run 2>&1 | head -1, whose first line is a start-up line) stops a
  // run that is starting as it stops one that runs: what had started ends, exit 0.
  unwatchStartingOutput = onOutputClosed(() => endWhileStarting("its output was closed", 0));
}

/** The run's own stop takes over (Run.listenForStop), or the run ends before it did. */
function unwatchStartingSignals(): void {
  for (const s of STOP_SIGNALS) process.off(s, stopWhileStarting);
  unwatchStartingOutput?.();
  unwatchStartingOutput = undefined;
}

async function runProject(given: RunCommandOptions, output: Output): Promise<number> {
  // run moves into the project's folder when services or their collect pass run as threads (which
  // share its working directory): an --env-from file given from elsewhere is read again later (a
  // save of it, of .env), from where it was given, so it is named by its absolute path from here on.
  const envFiles = process.cwd() === resolve(given.dir) ? undefined : given.envFiles;
  const options = envFiles === undefined ? given : { ...given, envFiles: envFiles.map((f) => resolve(f)) };
  // A caller that stops the run with its own signal (the test kit, in its own process) keeps its
  // process's signals to itself.
  if (options.signal !== undefined) return await startAndServe(options, output);
  watchStartingSignals(output);
  try {
    return await startAndServe(options, output);
  } finally {
    unwatchStartingSignals();
  }
}

async function startAndServe(options: RunCommandOptions, output: Output): Promise<number> {
  // Services get a copy of this process's environment, the collect pass included.
  if (options.verbose) process.env.NITRIC_LIKE_VERBOSE = "1";
  // A missing or malformed --env-from file is said before anything is bundled (it is read again below).
  if (options.envFiles !== undefined && options.envFiles.length > 0) loadEnvFiles(options.envFiles, "run");
  // Another run of this project (a terminal forgotten in the background, say): both would rebuild
  // the same bundles and restart their services on every save. Said before anything is bundled.
  const other = readRunSockets(resolve(options.dir))?.pid;
  if (other !== undefined && other !== process.pid)
    output.warn(
      `another nitric-like run (process ${other}) is running this project: both rebuild its bundles in .nitric-like and restart its services on every save, they share its kv store, and "nitric-like connect" keeps reaching that one's sockets; stop one of them (Ctrl-C in its terminal) unless you mean to run both`,
    );
  // The environment and the .env files are checked before anything is bundled: a mistake in
  // either (a misspelt --env, a .env line Node's parser would drop) costs no bundle.
  const projectFile = loadProjectFile(options.dir, output);
  try {
    checkEnvironment(projectFile, options.environment);
  } catch (error) {
    if (error instanceof ProjectError) throw new UserError(error.message);
    throw error;
  }
  const environment = options.environment ?? DEFAULT_RUN_ENVIRONMENT;
  // --env-from: into the local provider's services with the .env files; into the functions of a
  // provider that hosts them, as a deploy puts them there (the .env files stay local).
  const envFiles = options.envFiles ?? [];
  const onLocal = options.provider === "local";
  const dotenv = loadDotEnv(projectFile.dir, environment, onLocal ? envFiles : []);
  if (onLocal) checkNodeOptions(dotenv, "run");
  // Services that run as threads need only their thread bundles (BundleOptions.threadOnly), and
  // so do those a provider hosts (the AWS emulator runs their function bundles): both are
  // collected in threads. --verbose says each bundle made at start, as it says each a save makes.
  const prepared = await prepareProject(
    options.dir,
    output,
    { threadOnly: threadsAllowed(options, resolve(options.dir)) },
    options.verbose ? bundledLine(output) : undefined,
  );
  const { project } = prepared;
  describeDotEnv(dotenv, output);
  const variables = onLocal ? undefined : functionVariables(envFiles, "run", output);
  // Services on either SDK are collected as worker threads when they will run as threads on the
  // local provider, or as functions of a provider that hosts them: a thread shares this process's
  // working directory, the project's folder then (under a hosting provider, from now on: a service
  // saved or added later is collected in a thread too).
  const threads = collectInThreads(options, prepared);
  if ((threads || (!onLocal && threadsAllowed(options, project.dir))) && process.cwd() !== project.dir)
    process.chdir(project.dir);
  // The threads the services will run in boot while their resources are collected, and the local
  // provider (lmdb, the gateways) loads meanwhile; a provider of the project's is loaded only after.
  // A service whose bundle and environment are unchanged since the last run is not collected again
  // (collect.ts, keptCollections): it needs no thread for a collect pass.
  const kept = keptCollections(prepared.services, dotenv.values);
  if (threads) bootServiceThreads(prepared, dotenv.values, kept, onLocal && options.singleThread !== true);
  let local: Promise<Provider> | undefined;
  const loadLocal = () => {
    if (options.provider !== "local" || local) return;
    local = loadProvider("local", project.dir);
    local.catch(() => {});
  };
  // Loading it first would hold back the collect pass's start on this thread.
  if (kept.size === prepared.services.length) loadLocal();
  const collected = await collectSpec(prepared, output, {
    dotenv: dotenv.values,
    threads,
    reuse: kept,
    onLaunched: loadLocal,
  });
  // Two services handling one event: only one could get the events, so run refuses as spec does.
  refuseConflicts(collected.spec, collected.conflicts, output);

  // The services' threads load their bundles while this thread loads the provider (lmdb, the
  // gateways): about 40 ms of a warm start that would otherwise come one after the other.
  const early = startEarlyThreads(options, prepared, collected, dotenv.values);
  const stopEarly = () => {
    for (const e of early.values()) void endEarlyThread(e);
    early.clear();
  };
  // Fires when the run stops (Ctrl-C, or the caller's signal): the provider gives up what it is
  // starting then (an emulated function's init, a redeploy), not waiting for an init that hangs.
  const ending = new AbortController();
  if (options.signal?.aborted) ending.abort();
  else options.signal?.addEventListener("abort", () => ending.abort(), { once: true });
  try {
    const provider = await (local ?? loadProvider(options.provider, project.dir));
    if (!provider.run) {
      output.error(
        `provider "${provider.name}" cannot run projects locally; use "nitric-like up --provider ${provider.name}"`,
      );
      return 1;
    }
    let running: RunningProvider;
    try {
      running = await provider.run({
        project,
        spec: collected.spec,
        logger: output,
        randomPorts: options.randomPorts,
        ...(options.watch ? {} : { watch: false }),
        ...(options.tcp === true ? { tcp: true } : {}),
        ...(options.host === undefined ? {} : { host: options.host }),
        ...(options.environment === undefined ? {} : { environment: options.environment }),
        ...(variables === undefined ? {} : { variables }),
        signal: ending.signal,
      });
    } catch (error) {
      // Stopped while the provider was starting: it stopped what it had started, as asked, and
      // says what it gave up (a function whose init had not finished).
      if (ending.signal.aborted) {
        output.info((error as Error).message);
        return 0;
      }
      throw error;
    }
    const run = new Run(
      options,
      output,
      prepared,
      { environment, dotenv, ...(variables === undefined ? {} : { variables }) },
      collected,
      provider.name,
      running,
      early,
      ending,
    );
    return await run.serve();
  } finally {
    // Those no supervisor took: the provider did not start, or the run ended before its services did.
    stopEarly();
  }
}

/**
 * Starts, before the provider, the thread of each service that will run as one on the local
 * provider (the supervisor then serves its port: ServiceSupervisor.early), less those that failed
 * in the collect pass, which wait for a fix.
 */
function startEarlyThreads(
  options: RunCommandOptions,
  prepared: PreparedProject,
  collected: Collected,
  dotenv: ReadonlyMap<string, string>,
): Map<string, EarlyThread> {
  const early = new Map<string, EarlyThread>();
  if (!localThreadsAllowed(options, prepared.project.dir) || options.singleThread === true) return early;
  const failed = new Set(collected.failures.map((f) => f.service));
  for (const s of prepared.services) {
    if (!s.bundle?.threadOutfile || failed.has(s.entry.name)) continue;
    // A thread shares this process's working directory: the project's folder, as for a process.
    if (process.cwd() !== prepared.project.dir) process.chdir(prepared.project.dir);
    const launch = { project: prepared.project, service: s.entry, endpoint: "", environment: "run" as const, dotenv };
    early.set(s.entry.name, startEarlyThread({ ...launch, bundle: s.bundle }));
  }
  return early;
}

/** What the collect pass found (see collectSpec). */
type Collected = Awaited<ReturnType<typeof collectSpec>>;

/** One run once its provider runs: the dashboard, the services, their watching, and the stop. */
class Run {
  private readonly project: PreparedProject["project"];
  /** What the services declare: the collect pass at start, then each service started or removed since. */
  private spec: Spec;
  private readonly declared: Map<string, CollectedService>;
  private readonly environment: string;
  /** The `.env` files as last read (a change reloads them). */
  private dotenv: DotEnv;
  /** Under a provider that hosts the services: the names --env-from gives every function (a change of the file renews them). */
  private variableNames: string[];
  private dashboard: Dashboard | undefined;
  private supervisors: ServiceSupervisor[] = [];
  /** Whether a service of our bundle runs as a worker thread (createSupervisors decides once). */
  private threads = false;
  /** Services that failed their collect pass and have not started since: a save collects them again. */
  private readonly failedCollect = new Set<string>();
  /** What each local service's running code was built from: a save that leaves it so restarts nothing. */
  private readonly builtFrom = new BuiltFrom();
  /** Checks readiness again after a service was added or removed (whenAllStarted). */
  private recheckReady: (added?: ServiceSupervisor) => void = () => {};
  /** Services being added or removed, one after another (a rename removes one, then adds one). */
  private topology: Promise<void> = Promise.resolve();
  /** The files of new services on their way in. */
  private readonly adding = new Set<string>();
  private watcher: Watcher | undefined;
  private stopping = false;
  private resolveStopped: (code: number) => void = () => {};
  private readonly stopped = new Promise<number>((resolve) => {
    this.resolveStopped = resolve;
  });

  constructor(
    private readonly options: RunCommandOptions,
    private readonly output: Output,
    private readonly prepared: PreparedProject,
    env: { environment: string; dotenv: DotEnv; variables?: Readonly<Record<string, string>> },
    private readonly collected: Collected,
    private readonly providerName: string,
    private readonly running: RunningProvider,
    /** Threads started before the provider, by service (startEarlyThreads): each supervisor takes its own. */
    private readonly early: Map<string, EarlyThread> = new Map(),
    /** Aborted as the run stops: what the provider is starting meanwhile is given up (RunOptions.signal). */
    private readonly ending = new AbortController(),
  ) {
    this.project = prepared.project;
    this.spec = collected.spec;
    this.declared = new Map(collected.collected.map((c) => [c.name, c]));
    this.environment = env.environment;
    this.dotenv = env.dotenv;
    this.variableNames = Object.keys(env.variables ?? {});
  }

  /**
   * A collect-pass failure of a service the provider hosts, said as the local provider's supervisor
   * says it. The provider's deployment was made from what the other services declared: what this
   * one declares comes with the redeploy its fix brings (watchHosted).
   */
  private reportHostedFailures(): void {
    for (const failure of this.collected.failures) {
      const service = this.prepared.services.find((s) => s.entry.name === failure.service);
      const inputs = service?.bundle?.inputs ?? (service ? [service.entry.path] : []);
      this.sayHostedFailure(
        failure.service,
        failure.file,
        failure,
        inputs,
        !this.options.watch
          ? "fix it, then start run again (--no-watch: it does not watch files)"
          : this.running.redeploy
            ? "fix it and save: run then deploys the emulated app again with what it declares"
            : `fix it, then stop run (Ctrl-C) and run again: with --provider ${this.providerName} the deployment is made from what the services declare as run starts`,
      );
    }
  }

  /** A hosted service's collect-pass failure, said as a supervisor says one, then `fix`. */
  private sayHostedFailure(
    name: string,
    file: string,
    failure: { message: string; output: string },
    inputs: Iterable<string>,
    fix: string,
  ): void {
    const { when, cause } = collectFailure(failure, this.project.dir, inputs);
    this.output.error(formatFailure(name, file, when, cause)[0]);
    this.output.info(`  ${fix}`);
  }

  /** Starts everything and resolves with the exit code once the run stops. */
  async serve(): Promise<number> {
    const { running, output, options } = this;
    const { errors, conflicts, failures } = this.collected;
    // `run` is for trying things: it warns about what `up` would refuse instead of stopping. A
    // service that failed is reported by its supervisor, once; where the provider hosts the
    // services (the emulator), here, and the provider says whether its function starts.
    for (const e of warnedErrors(errors, conflicts, failures)) output.warn(e);
    if (running.hostsServices) this.reportHostedFailures();
    if (options.dashboard !== false) await this.startDashboard();
    await this.createSupervisors();
    this.noteEndpointAccess();
    options.control?.({
      services: this.restartable(),
      inspector: running.inspect,
      spec: this.spec,
      failedInits: () => (running.hostsServices ? (running.failedServices?.() ?? new Map()) : new Map()),
    });
    this.listenForStop();
    const readyTimeoutMs = options.readyTimeoutMs ?? 15000;
    if (running.hostsServices) {
      if (options.watch && running.restartService) this.watchHosted();
      // As under the local provider: with nothing watching, no service starts again, so a run in
      // which every service failed (in the collect pass, or its function's init) has nothing to
      // run (the test kit's start rejects with this), and one in which a service failed its
      // collect pass can never be ready: what it declares is deployed only by the redeploy a
      // saved fix brings. (A function whose init failed after its service loaded for the collect
      // pass is deployed: its next event retries the init, as on Lambda, so ready says so instead.)
      const failed = new Set([...failures.map((f) => f.service), ...(running.failedServices?.().keys() ?? [])]);
      const services = this.prepared.services;
      const notCollected = services.map((s) => s.entry.name).filter((n) => failures.some((f) => f.service === n));
      if (!options.watch && services.length > 0 && services.every((s) => failed.has(s.entry.name))) {
        output.error(
          "no service is running, and with --no-watch none starts again: fix the problems above and start run again",
        );
        await this.stop(1);
      } else if (!options.watch && notCollected.length > 0) {
        output.error(cannotBeReady(notCollected));
        await this.stop(1);
      } else {
        await waitForHandlers(running, specRegistrations(this.spec), readyTimeoutMs, output);
        this.printReady();
      }
    } else {
      await this.startServices(readyTimeoutMs);
    }
    const code = await this.stopped;
    this.unwatchOutput?.();
    process.removeListener("SIGINT", this.onSignal);
    process.removeListener("SIGTERM", this.onSignal);
    process.removeListener("SIGHUP", this.onSignal);
    return code;
  }

  /**
   * The services as the test kit restarts them: through their supervisors, or, where the provider
   * hosts them (the emulator), by building and restarting the service's function as a saved file
   * does (clients stay connected; the next event starts a new copy).
   */
  private restartable(): RunService[] {
    const { running } = this;
    if (!running.hostsServices)
      return this.supervisors.map((s) => ({ name: s.name, restart: () => s.restart(s.service) }));
    const restart = running.restartService?.bind(running);
    if (restart === undefined) return [];
    return this.prepared.services.map(({ entry }) => ({ name: entry.name, restart: () => restart(entry) }));
  }

  /** Starts the dashboard and prints its address; a dashboard that cannot start stops the provider. */
  private async startDashboard(): Promise<void> {
    const { options, output, running } = this;
    let dashboard: Dashboard;
    try {
      dashboard = await startDashboard({
        port: options.dashboardPort ?? (options.randomPorts ? 0 : DEFAULT_DASHBOARD_PORT),
        fallback: options.dashboardPort === undefined,
        provider: this.providerName,
        spec: this.spec,
        running,
        logger: output,
        // What the services get: the .env files locally; --env-from's variables in hosted functions.
        env: () =>
          running.hostsServices
            ? { files: this.variableNames.length > 0 ? (options.envFiles ?? []) : [], names: this.variableNames }
            : { files: this.dotenv.files, names: [...this.dotenv.values.keys()] },
        services: () => this.serviceStatuses(),
      });
    } catch (error) {
      await running.stop();
      throw error;
    }
    this.dashboard = dashboard;
    if (
      !options.randomPorts &&
      options.dashboardPort === undefined &&
      !dashboard.url.endsWith(`:${DEFAULT_DASHBOARD_PORT}`)
    )
      output.info(output.paint("dim", `dashboard: port ${DEFAULT_DASHBOARD_PORT} is taken, so it uses a free one`));
    output.result(`dashboard ${dashboard.pageUrl}`);
    running.onServiceOutput?.((service, stream, line) => dashboard.serviceLine(service, stream, line));
  }

  /** Each service and where it is, for the dashboard: the supervisors', or, hosted, the provider's. */
  private serviceStatuses(): ServiceStatus[] {
    if (this.running.hostsServices) {
      const failed = this.running.failedServices?.() ?? new Map<string, string>();
      const hosted = this.running.hostedServices?.() ?? new Map<string, string>();
      return this.prepared.services.map((s) => {
        const reason = failed.get(s.entry.name);
        const detail = hosted.get(s.entry.name);
        return reason === undefined
          ? { name: s.entry.name, file: s.entry.file, state: "hosted", ...(detail === undefined ? {} : { detail }) }
          : { name: s.entry.name, file: s.entry.file, state: "waiting", reason };
      });
    }
    return this.supervisors.map((s) => ({
      name: s.name,
      file: s.service.entry.file,
      state: s.state,
      ...(s.reason === undefined ? {} : { reason: s.reason }),
      ...(s.restartAt === undefined ? {} : { restartAt: s.restartAt }),
      ...(s.inCrashLoop ? { crashLoop: true as const } : {}),
    }));
  }

  /** Says who can reach the services' endpoints (--tcp), and how a service with a start command reaches its own. */
  private noteEndpointAccess(): void {
    const { options, output, running } = this;
    if (options.tcp === true && !running.hostsServices && this.supervisors.every((s) => s.runsAsThread)) {
      output.info(
        `--tcp: every service runs ${options.singleThread === true ? "on run's own thread and reaches it over a port within that thread" : "as a thread of run and reaches it over a MessagePort"}, so no endpoint listens on 127.0.0.1; --tcp is for service processes (--processes, a start command)`,
      );
    } else if (options.tcp === true && !running.hostsServices && canCheckTcpPeers()) {
      output.info(
        `--tcp: every service's endpoint also listens on 127.0.0.1 (NITRIC_SERVICE_HOST/PORT), where only processes of your user (uid ${process.getuid?.()}) are served: the kernel's table of connections says whose each one is, and another user's is cut`,
      );
    } else if (options.tcp === true && !running.hostsServices) {
      output.warn(
        "--tcp: every service's endpoint also listens on 127.0.0.1 (NITRIC_SERVICE_HOST/PORT) with no credential, so any user of this machine can act as a service there (read its kv stores, send to its clients); use it only on a machine you do not share",
      );
    } else if (!running.hostsServices) {
      for (const s of this.prepared.services.filter((s) => s.entry.start !== undefined)) {
        output.info(
          output.paint(
            "dim",
            `service "${s.entry.name}" has a start command: its endpoint is the Unix socket in SERVICE_ADDRESS; if its SDK reads NITRIC_SERVICE_HOST/PORT instead, run with --tcp`,
          ),
        );
      }
    }
  }

  /**
   * A supervisor per service, as a thread or a process (with an inspector port under --inspect);
   * none when the provider hosts the services (an emulated cloud starts them itself).
   */
  private async createSupervisors(): Promise<void> {
    const { options, output, running, prepared, project } = this;
    const width = Math.max(...prepared.services.map((s) => s.entry.name.length));
    const inspect = options.inspect === true && !running.hostsServices;
    if (options.inspect === true && running.hostsServices)
      output.warn(`--inspect: provider "${this.providerName}" starts the services itself, so they get no inspector`);
    // Both shape how run starts its own service processes, which such a provider has none of.
    if (options.tcp === true && running.hostsServices)
      output.warn(
        `--tcp: provider "${this.providerName}" starts the services itself, so no endpoint of run's listens for them on 127.0.0.1 and they get no NITRIC_SERVICE_HOST/PORT; drop --tcp, or use --provider local`,
      );
    if (options.processes === true && options.inspect !== true && running.hostsServices)
      output.warn(
        `--processes: provider "${this.providerName}" starts the services itself (as it would in the cloud), so --processes changes nothing for them and only keeps the collect pass in processes (for a NODE_OPTIONS a worker thread refuses); drop it otherwise`,
      );
    if (this.dotenv.files.length > 0 && running.hostsServices)
      output.warn(
        `${this.dotenv.files.join(", ")}: provider "${this.providerName}" starts the services itself, without these variables, as a deploy does; to give its functions a file's variables, as "up --env-from" deploys them, run with --env-from <file>`,
      );
    // A worker thread has no inspector port of its own (it shares this process's): --inspect means processes.
    const threads = options.processes !== true && !inspect && threadsPossible(prepared, running);
    this.threads = threads;
    if (threads && process.cwd() !== project.dir) process.chdir(project.dir);
    this.supervisors = running.hostsServices ? [] : prepared.services.map((s) => this.supervisor(s, width));
    for (const supervisor of this.supervisors) {
      const early = threads ? this.early.get(supervisor.name) : undefined;
      if (early) {
        supervisor.early = early;
        this.early.delete(supervisor.name);
      }
      await this.configure(supervisor);
    }
  }

  /** A supervisor for a service (its output prefixed with its name, `width` wide); the dashboard follows its state. */
  private supervisor(service: PreparedService, width: number): ServiceSupervisor {
    const supervisor = new ServiceSupervisor(
      this.project,
      service,
      this.running,
      this.output,
      width,
      this.threads,
      (name, stream, line) => this.dashboard?.serviceLine(name, stream, line),
    );
    supervisor.onStateChange(() => this.dashboard?.servicesChanged());
    return supervisor;
  }

  /** What every supervisor gets: the test's time limit, the `.env` values, an inspector port. */
  private async configure(supervisor: ServiceSupervisor): Promise<void> {
    const { options } = this;
    if (options.blockedAfterMs !== undefined) supervisor.blockedAfterMs = options.blockedAfterMs;
    supervisor.watching = options.watch;
    supervisor.singleThread = options.singleThread === true;
    supervisor.launchExtras = {
      dotenv: this.dotenv.values,
      ...(options.inspect === true ? { inspectPort: await freePort() } : {}),
    };
  }

  /** Ctrl-C, SIGTERM, SIGHUP and the caller's signal stop the run. */
  private listenForStop(): void {
    unwatchStartingSignals();
    process.on("SIGINT", this.onSignal);
    process.on("SIGTERM", this.onSignal);
    // Services have process groups of their own, so a closed terminal's SIGHUP reaches only us: stop them.
    process.on("SIGHUP", this.onSignal);
    // So does a closed stdout or stderr (run | head -1), once something is written there.
    this.unwatchOutput = onOutputClosed(() => void this.stop());
    // A signal that fired while the run was still starting (bundling, collecting, the provider
    // starting) fires no event now: that run stops as soon as it gets here.
    const { signal } = this.options;
    if (signal?.aborted) void this.stop();
    else signal?.addEventListener("abort", () => void this.stop(), { once: true });
  }

  /** Stops listening for a closed stdout or stderr (listenForStop). */
  private unwatchOutput: (() => void) | undefined;

  private readonly onSignal = (): void => {
    // A second Ctrl-C while stopping gives up on a clean stop.
    if (this.stopping) {
      endingItself = true;
      process.exit(130);
    }
    void this.stop();
  };

  /** Stops watching, the dashboard, the provider (closing connections) and the services, once. */
  private async stop(code = 0): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.output.info(this.output.paint("dim", "stopping: closing connections and services..."));
    // A restart or redeploy under way gives up at once (an init that hangs is not waited for).
    this.ending.abort();
    this.watcher?.close();
    await this.dashboard?.close();
    // A service being added or removed, or a redeploy, finishes first (the chain skips what is
    // queued behind it), so nothing starts after the provider stopped; a stuck one is not waited for.
    await Promise.race([this.topology, new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
    removeRunSockets(this.project.dir);
    for (const s of this.supervisors) s.stopComes();
    await this.running.stop();
    await Promise.all(this.supervisors.map((s) => s.stop(2000)));
    this.resolveStopped(code);
  }

  /**
   * The socket lines on stdout, then "ready"; a socket declared later gets its line when it comes,
   * and one whose URL changed (a redeploy that found its port taken) its new line.
   */
  private printReady(): void {
    if (this.stopping) return;
    const { running, output } = this;
    const printed = new Map<string, string>();
    let first = true;
    const printSockets = () => {
      let changed = false;
      // A socket declared later is told once it listens and the handlers its services' collect
      // passes saw (of connect, disconnect and message) have registered, whichever comes last
      // (@nitric/sdk registers its handlers before its socket's declaration is answered; our SDK
      // after), so a client that connects at once is served. A socket with a handler missing (run
      // warns of it) is told once those it has are registered, as at start.
      const handled = new Set(
        running
          .registrations()
          .filter((r) => r.route === undefined)
          .map((r) => `${r.socket}\u0000${r.event}`),
      );
      const served = (socket: string) => {
        const expected = new Set<string>();
        for (const c of this.declared.values())
          for (const h of c.failure ? [] : c.handlers)
            if (h.socket === socket && h.route === undefined) expected.add(h.event);
        if (expected.size === 0) return [...handled].some((k) => k.startsWith(`${socket}\u0000`));
        return [...expected].every((e) => handled.has(`${socket}\u0000${e}`));
      };
      for (const s of running.sockets()) {
        if (printed.get(s.name) === s.url) continue;
        if (!first && !printed.has(s.name) && !served(s.name)) continue;
        printed.set(s.name, s.url);
        changed = true;
        output.result(`websocket ${s.name} ${s.url}`);
      }
      // For `nitric-like connect`, which finds a socket of this run by its name; not over the file
      // of another run of the project that still runs (said at start): connect keeps finding that one.
      const owner = readRunSockets(this.project.dir)?.pid;
      if (changed && !this.stopping && (owner === undefined || owner === process.pid)) {
        try {
          writeRunSockets(
            this.project.dir,
            [...printed].map(([name, url]) => ({ name, url })),
          );
        } catch (error) {
          output.warn(`could not write ${runSocketsFile(this.project.dir)} for nitric-like connect: ${String(error)}`);
        }
      }
    };
    printSockets();
    first = false;
    // A socket declared later (after a code change) gets its line when its handlers register.
    running.onRegistrationsChanged(printSockets);
    const n = this.prepared.services.length;
    const services = `${this.project.name}, ${n} service${n === 1 ? "" : "s"}`;
    // A hosted service whose function failed its init is deployed and serving, as on AWS, and its
    // next event retries the init; but a user reading "ready" must not connect into it unwarned.
    const failed = running.hostsServices ? [...(running.failedServices?.() ?? new Map<string, string>())] : [];
    if (failed.length === 0) {
      output.info(output.paint("green", `ready: ${services}. Ctrl-C to stop.`));
      return;
    }
    for (const [service, why] of failed)
      output.warn(
        // A thrown message of several lines as the emulator says it: bounded, indented below.
        followedBy(
          `service "${service}" is not serving yet: ${why}`,
          "each event retries its init (as Lambda does) and fails while it fails",
        ),
      );
    const names = failed.map(([service]) => JSON.stringify(service)).join(", ");
    output.info(
      output.paint(
        "yellow",
        `ready: ${services}, but ${failed.length === 1 ? "the function of" : "the functions of"} ${names} failed ${failed.length === 1 ? "its" : "their"} init (above). Ctrl-C to stop.`,
      ),
    );
  }

  /** Watches the services' files, then starts every service that was collected (the others wait for a fix). */
  private async startServices(readyTimeoutMs: number): Promise<void> {
    const { options, output, supervisors, spec, prepared } = this;
    const { failures } = this.collected;
    // Watching first: a change saved while services start (or wait after a failure) must not be missed.
    for (const f of failures) this.failedCollect.add(f.service);
    if (options.watch)
      this.watcher = watchServices(prepared, supervisors, this.failedCollect, output, {
        dotenvPaths: this.dotenv.paths,
        onDotEnv: () => this.reloadDotEnv(),
        dotenv: () => this.dotenv.values,
        owner: (socket, event, except, route) => this.handlerOwner(socket, event, except, route),
        known: () => [...supervisors.map((s) => s.service.entry.path), ...this.adding],
        onNew: (entry) => this.addService(entry),
        onGone: (supervisor) => this.removeService(supervisor),
        onCollected: (collected) => this.declare(collected),
        collecting: (service, done) => this.running.collecting?.(service, done),
        builtFrom: this.builtFrom,
        ...(options.verbose ? { bundled: bundledLine(output), saved: true } : {}),
      });
    // Ready (the socket lines, then "ready") only once every service has started; a service
    // that failed waits for a file change and so holds "ready" back until it is fixed.
    this.recheckReady = whenAllStarted(supervisors, readyTimeoutMs, output, () => this.printReady());
    if (!options.watch) stopWhenAllWait(supervisors, output, () => void this.stop(1));
    await Promise.all(
      supervisors.map((s) => {
        s.expected = expectedOf(spec, s.name);
        const failure = failures.find((f) => f.service === s.name);
        if (!failure) return s.start();
        failCollected(s, failure, this.project.dir);
        return undefined;
      }),
    );
    dropBootedThreads();
  }

  /**
   * Who handles a socket event now, other than the service `except`: the service of its live
   * registration, or one that is expected to register it (starting, restarting, or waiting for a
   * fix of its collect pass).
   */
  private handlerOwner(socket: string, event: WebsocketEvent, except: string, route?: string): string | undefined {
    const key = registrationKey({ socket, event, route });
    const live = this.running.registrations().find((r) => registrationKey(r) === key);
    if (live) return live.service === except ? undefined : live.service;
    return this.supervisors.find((s) => s.name !== except && s.expected.some((e) => registrationKey(e) === key))?.name;
  }

  /** What a service declares now (it started, or was removed: undefined): the spec follows, and the dashboard. */
  private declare(collected: CollectedService | undefined, removed?: string): void {
    if (collected) this.declared.set(collected.name, collected);
    if (removed !== undefined) this.declared.delete(removed);
    this.spec = buildSpec(this.project.name, [...this.declared.values()]).spec;
    this.running.routesChanged?.(
      this.spec,
      [...this.declared.values()].flatMap((c) => c.handlers.map((h) => ({ ...h, service: c.name }))),
      [...this.declared.values()].flatMap((c) => (c.authorizes ?? []).map((socket) => ({ service: c.name, socket }))),
    );
    this.dashboard?.setSpec(this.spec);
  }

  /**
   * A file a service's `match` takes appeared while run runs: it is bundled, collected and started
   * as at start, after any service being removed (a renamed file's old service is gone by then, so
   * its events are no conflict). What fails waits for a save, as at start.
   */
  private addService(entry: ServiceEntry): void {
    if (this.stopping || this.adding.has(entry.path)) return;
    this.adding.add(entry.path);
    this.topology = this.topology
      .then(() => this.startNewService(entry))
      .catch((error: unknown) => this.output.error((error as Error).message))
      .finally(() => this.adding.delete(entry.path));
  }

  private async startNewService(entry: ServiceEntry): Promise<void> {
    const { output, project, prepared } = this;
    if (this.stopping || !existsSync(entry.path)) return;
    // A rename (an editor's, git mv) may be seen as the new file before the old one is gone: the
    // services whose file is gone stop first, so the renamed one takes their events, no conflict.
    await this.removeGone();
    if (this.stopping || !existsSync(entry.path)) return;
    const same = this.supervisors.find((s) => s.name === entry.name);
    if (same) {
      output.error(nameTaken(entry, same.service.entry));
      return;
    }
    output.info(`${entry.file} is a new service ("${entry.name}"): starting it`);
    // When the run's services are threads, it runs as one and is collected in one, as at start and
    // after a save: its thread bundle alone is made (both, for a service on neither SDK, which then
    // runs and is collected as a process). A bundle that fails (a compile error) is said, and the
    // file's next save tries again.
    const onBuilt = this.options.verbose ? bundledLine(output)(entry.name) : undefined;
    const bundle =
      entry.start === undefined
        ? await bundleService(project.dir, entry, { threadOnly: this.threads, ...(onBuilt ? { onBuilt } : {}) })
        : undefined;
    if (this.stopping) return;
    // Read once it is bundled (its inputs known then): a save from now on is told from a touch.
    this.builtFrom.read(entry.name, ownFiles(bundle?.inputs ?? [entry.path]));
    const service: PreparedService = bundle ? { entry, bundle } : { entry };
    const width = Math.max(...this.supervisors.map((s) => s.name.length), entry.name.length);
    const supervisor = this.supervisor(service, width);
    await this.configure(supervisor);
    // Pushed before any await from here, so a stop that comes later stops it too.
    if (this.stopping) return;
    prepared.services.push(service);
    for (const warning of workerScriptServices(project.dir, prepared.services, entry.name)) output.warn(warning);
    this.supervisors.push(supervisor);
    this.failedCollect.add(entry.name);
    this.watcher?.add(bundle?.inputs ?? [entry.path]);
    this.recheckReady(supervisor);
    this.dashboard?.servicesChanged();
    const collected = await recollectAndStart(
      prepared,
      (socket, event, except) => this.handlerOwner(socket, event, except),
      supervisor,
      service,
      output,
      this.dotenv.values,
      supervisor.runsAsThread,
    );
    if (!collected) return;
    this.failedCollect.delete(entry.name);
    this.declare(collected);
  }

  /**
   * A service's file is gone (deleted, renamed): once it has stayed gone a moment (an editor may
   * delete before it writes), the service is stopped and forgotten. Its sockets' events wait for a
   * handler as during a restart (a renamed service registers them again).
   */
  private removeService(supervisor: ServiceSupervisor): void {
    this.topology = this.topology
      .then(async () => {
        await new Promise((resolve) => setTimeout(resolve, GONE_AFTER_MS));
        await this.removeNow(supervisor);
      })
      .catch((error: unknown) => this.output.error((error as Error).message));
  }

  /** Stops the services whose file is gone, once it has stayed gone a moment (see removeService). */
  private async removeGone(): Promise<void> {
    const gone = this.supervisors.filter((s) => !existsSync(s.service.entry.path));
    if (gone.length === 0) return;
    await new Promise((resolve) => setTimeout(resolve, GONE_AFTER_MS));
    for (const supervisor of gone) await this.removeNow(supervisor);
  }

  /** Stops and forgets a service whose file is gone (unless it is back, or already forgotten). */
  private async removeNow(supervisor: ServiceSupervisor): Promise<void> {
    const { entry } = supervisor.service;
    if (this.stopping || existsSync(entry.path) || !this.supervisors.includes(supervisor)) return;
    this.output.warn(`${entry.file} is gone: stopping service "${entry.name}"`);
    await supervisor.end();
    this.running.serviceRemoved?.(entry.name, `was removed: ${entry.file} is gone`);
    // Another removal of it may have finished while it ended.
    if (!this.supervisors.includes(supervisor)) return;
    this.supervisors.splice(this.supervisors.indexOf(supervisor), 1);
    const at = this.prepared.services.findIndex((s) => s.entry.path === entry.path);
    if (at >= 0) this.prepared.services.splice(at, 1);
    this.failedCollect.delete(entry.name);
    this.builtFrom.forget(entry.name);
    this.declare(undefined, entry.name);
    this.recheckReady();
    this.dashboard?.servicesChanged();
  }

  /**
   * Watches the services of a provider that hosts them (`--provider aws`). A saved change is
   * bundled (a compile error keeps the running version) and collected: when the service declares
   * what it declared before, the provider restarts its function alone; when it declares something
   * else, or a service file is added or gone, the provider deploys the app again from the new spec
   * (without `redeploy`, both are only named). One change at a time, in the order saved.
   */
  private watchHosted(): void {
    const { prepared, output, running } = this;
    const inputs = new Map(prepared.services.map((s) => [s.entry.name, s.bundle?.inputs ?? new Set([s.entry.path])]));
    const redeploys = running.redeploy !== undefined;
    const notices = projectChangeNotices(
      prepared.project,
      () => [...prepared.services.map((s) => s.entry.path), ...this.adding],
      output,
      redeploys
        ? (entry) =>
            this.hosted(entry.path, async () => {
              await this.hostedChange(entry, inputs, "new");
            })
        : undefined,
      (dirs) => this.watcher?.addFolders(dirs),
    );
    // An --env-from file saved: every function gets its variables anew, as an up with it would.
    const envFiles = (this.options.envFiles ?? []).map((f) => resolve(f));
    // The data the build copied into each function (read from beside its code): the function
    // holds a copy, so a change deploys the service again, as a change to its code does.
    const data = () => running.dataFiles?.() ?? new Map<string, readonly string[]>();
    const dataOf = (service: string) => data().get(service) ?? [];
    // The folders the build copied whole: a file added to one (or deleted) is a change too.
    const folders = () => running.dataFolders?.() ?? new Map<string, readonly string[]>();
    const inFolderOf = (service: string, path: string) =>
      (folders().get(service) ?? []).some((dir) => path === dir || path.startsWith(dir + sep));
    const watchFolders = () => this.watcher?.addFolders([...folders().values()].flat().flatMap(foldersUnder));
    // The data files a service's code names that are not there yet: one made is copied into its
    // function by the restart it causes (their folders are watched, for exactly these names).
    const awaited = () => running.awaitedFiles?.() ?? new Map<string, readonly string[]>();
    const awaitedBy = (service: string) => awaited().get(service) ?? [];
    const watched = [
      ...[...inputs.values()].flatMap((i) => [...i]),
      ...[...data().values()].flat(),
      ...[...awaited().values()].flat(),
      prepared.project.file,
      ...envFiles,
    ];
    /** How many saves each service has seen: of those that wait behind a change under way, only the last builds. */
    const saves = new Map<string, number>();
    // Each service's files (its code's inputs and the data copied into its function) as its running
    // function was built from them: a save that leaves them as they were (an editor's save of an
    // unchanged buffer, a touch, a checkout) cannot change its bundle, so its function keeps running.
    const builtFrom = new BuiltFrom();
    const filesOf = (service: string) => [...ownFiles(inputs.get(service) ?? []), ...dataOf(service)];
    for (const { entry } of prepared.services) builtFrom.read(entry.name, filesOf(entry.name));
    const watcher = watchFiles(watched, (changed) => {
      /** What this save rebuilds, and which services saw their files saved as they were built from. */
      const rebuilds: string[] = [];
      const unchanged: string[] = [];
      if (redeploys && envFiles.some((f) => changed.has(f))) {
        this.hosted("--env-from", async () => {
          const variables = functionVariables(this.options.envFiles ?? [], "run", output) ?? {};
          this.variableNames = Object.keys(variables);
          output.info("--env-from changed: deploying the emulated app again (its clients reconnect)");
          await this.hostedRedeploy(variables);
        });
      }
      for (const { entry } of [...prepared.services]) {
        // A data file the build copied is an input of the service's own bundle too (own-place.ts
        // names it, so local run restarts on its save): said as a copy, which "is gone" when deleted.
        const code = [...changed].some((p) => inputs.get(entry.name)?.has(p) && !dataOf(entry.name).includes(p));
        const copied = code
          ? undefined
          : (dataOf(entry.name).find((p) => changed.has(p)) ??
            [...changed].find((p) => inFolderOf(entry.name, p) && !inputs.get(entry.name)?.has(p)) ??
            awaitedBy(entry.name).find((p) => changed.has(p) && existsSync(p)));
        if (!code && copied === undefined) continue;
        // Only files whose contents it knows (its inputs, its copies): a file new in a folder copied
        // whole, or an awaited one made, is a change.
        const saved = [...changed].filter((p) => inputs.get(entry.name)?.has(p) || dataOf(entry.name).includes(p));
        if ((copied === undefined || dataOf(entry.name).includes(copied)) && builtFrom.unchanged(entry.name, saved)) {
          unchanged.push(entry.name);
          if (builtFrom.backAfterFailure(entry.name)) output.info(backLine(prepared.project.dir, saved, entry.name));
          continue;
        }
        rebuilds.push(entry.name);
        // The file saved, as said: a helper module two services import is named, not their own files.
        const what =
          copied === undefined
            ? (changedInput(prepared.project.dir, entry, changed, inputs.get(entry.name) ?? new Set()) ?? entry.file)
            : relative(prepared.project.dir, copied).split(sep).join("/");
        // A copied file deleted, or one added to a folder copied whole: the restart's copy follows.
        // A file the bundle reads as an input (a data file its own code names beside itself, under
        // run's own-place rule) may be gone too, as a copied one may.
        const happened =
          copied === undefined
            ? existsSync(join(prepared.project.dir, what))
              ? "changed"
              : "is gone"
            : !existsSync(copied)
              ? "is gone"
              : dataOf(entry.name).includes(copied)
                ? "changed"
                : "is new";
        const save = (saves.get(entry.path) ?? 0) + 1;
        saves.set(entry.path, save);
        this.hosted(entry.path, async () => {
          // A later save of this service waits behind this one (saves during a build): it builds,
          // once, from the last save; two builds would each bundle, collect and restart it.
          if (saves.get(entry.path) !== save) return;
          if (!existsSync(entry.path)) return await this.hostedGone(entry, inputs);
          // Read before the build, as it reads them: a save during the build differs, and builds again.
          const undo = builtFrom.read(entry.name, filesOf(entry.name));
          let applied = false;
          try {
            applied = await this.hostedChange(entry, inputs, "changed", what, happened);
          } finally {
            // Not running from this save (it failed to build or collect): saving it as it is tries again.
            if (!applied) undo();
          }
          // What the new build copied into the functions (and waits for): watched from now on.
          this.watcher?.add([...data().values(), ...awaited().values()].flat());
          watchFolders();
        });
      }
      if (this.options.verbose && rebuilds.length + unchanged.length > 0) {
        const others = prepared.services
          .map((s) => s.entry.name)
          .filter((n) => !rebuilds.includes(n) && !unchanged.includes(n));
        output.info(
          output.paint("dim", savedLine(prepared.project.dir, changed, rebuilds, unchanged, others, "function")),
        );
      }
      notices(changed);
    });
    this.watcher = watcher;
    watchFolders();
  }

  /** Runs one hosted change after those before it; what it throws is said, and the run goes on. */
  private hosted(path: string, change: () => Promise<void>): void {
    this.adding.add(path);
    this.topology = this.topology
      .then(() => (this.stopping ? undefined : change()))
      // Given up because the run stops: said, as what the stop did, not as a failure.
      .catch((error: unknown) =>
        this.stopping ? this.output.info((error as Error).message) : this.output.error((error as Error).message),
      )
      .finally(() => this.adding.delete(path));
  }

  /**
   * A hosted service saved (or new): restarted alone, or the app deployed again when its
   * declarations changed. Whether it now runs from the files as saved (false: it failed to build,
   * collect or be taken, and its running version stays).
   */
  private async hostedChange(
    entry: ServiceEntry,
    inputs: Map<string, Set<string>>,
    how: "new" | "changed",
    /** What changed, as said: the service's file, or a data file copied into its function. */
    what = entry.file,
    /** How, as said: a data file copied into its function can also be gone, or new in a folder copied whole. */
    happened: "changed" | "is gone" | "is new" = "changed",
  ): Promise<boolean> {
    const { output, running, prepared } = this;
    if (!existsSync(entry.path)) return false;
    const known = prepared.services.find((s) => s.entry.path === entry.path);
    if (how === "new" && known) return false;
    const same = prepared.services.find((s) => s.entry.name === entry.name);
    if (how === "new" && same) {
      output.error(nameTaken(entry, same.entry));
      return false;
    }
    // Our own bundle first: its inputs are what to watch from now on, and a compile error shows here.
    // The function runs its own bundle (restartService, redeploy): ours is only collected, in a
    // thread as at start, so its thread bundle alone is made (its own bundle carries grpc-js).
    const onBuilt = this.options.verbose ? bundledLine(output)(entry.name) : undefined;
    const threads = threadsAllowed(this.options, prepared.project.dir);
    const bundle = await bundleService(prepared.project.dir, entry, {
      threadOnly: threads,
      ...(onBuilt ? { onBuilt } : {}),
    });
    inputs.set(entry.name, bundle.inputs);
    this.watcher?.add(bundle.inputs);
    const service: PreparedService = { entry, bundle };
    if (how === "new") {
      prepared.services.push(service);
      for (const warning of workerScriptServices(prepared.project.dir, prepared.services, entry.name))
        output.warn(warning);
    }
    const [found] = await collect(prepared.project, [service], { threads });
    if (!found) return false;
    const imports = importedServices(prepared.services, service);
    const collected: CollectedService = imports.length > 0 ? { ...found, imports } : found;
    if (collected.failure) {
      const then = how === "new" ? "it is deployed" : "its running version stays";
      this.sayHostedFailure(
        entry.name,
        entry.file,
        collected.failure,
        bundle.inputs,
        `fix it and save: ${then} once it collects`,
      );
      return false;
    }
    // Another service's handler: one of those deployed (the declarations of the last collect passes).
    const owner: HandlerOwner = (socket, event, except, route) => {
      const key = registrationKey({ socket, event, route });
      return [...this.declared.values()].find(
        (c) => c.name !== except && !c.failure && c.handlers.some((h) => registrationKey(h) === key),
      )?.name;
    };
    const { unsupported, conflicts } = declarationRefusals(this.project.name, collected, owner);
    const refused = [...unsupported, ...conflicts];
    if (refused.length > 0) {
      for (const line of refused) output.error(line);
      output.info(
        `  service "${entry.name}" is ${how === "new" ? "not deployed" : "not restarted (its running version stays)"} until you save a fix`,
      );
      return false;
    }
    const before = this.declared.get(entry.name);
    if (how === "changed" && before && !before.failure && sameDeclarations(before, collected)) {
      output.info(output.paint("dim", `${what} ${happened}: restarting service "${entry.name}"`));
      try {
        await running.restartService?.(entry, onBuilt && ((ms) => onBuilt("function", ms)));
      } finally {
        // Its function's init may have failed or come right: the dashboard shows which.
        this.dashboard?.servicesChanged();
      }
      output.info(output.paint("dim", `service "${entry.name}" restarted`));
      return true;
    }
    output.info(
      how === "new"
        ? `${entry.file} is a new service ("${entry.name}"): deploying the emulated app again (its clients reconnect)`
        : `${what === entry.file ? `${entry.file} changed what it declares` : `${what} changed what ${entry.file} declares`}: deploying the emulated app again (its clients reconnect)`,
    );
    this.declare(collected);
    await this.hostedRedeploy();
    return true;
  }

  /** A hosted service's file is gone: once it stays gone a moment, the app is deployed again without it. */
  private async hostedGone(entry: ServiceEntry, inputs: Map<string, Set<string>>): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, GONE_AFTER_MS));
    const at = this.prepared.services.findIndex((s) => s.entry.path === entry.path);
    if (existsSync(entry.path) || at < 0) return;
    this.prepared.services.splice(at, 1);
    inputs.delete(entry.name);
    this.output.warn(`${entry.file} is gone: deploying the emulated app again without service "${entry.name}"`);
    this.declare(undefined, entry.name);
    await this.hostedRedeploy();
  }

  private async hostedRedeploy(variables?: Readonly<Record<string, string>>): Promise<void> {
    const started = Date.now();
    try {
      await this.running.redeploy?.(this.spec, variables);
    } finally {
      // Deployed, or not running: the dashboard shows which.
      this.dashboard?.servicesChanged();
      // The data the new build copied into the functions (and waits for): watched from now on.
      this.watcher?.add([...(this.running.dataFiles?.().values() ?? [])].flat());
      this.watcher?.add([...(this.running.awaitedFiles?.().values() ?? [])].flat());
      this.watcher?.addFolders([...(this.running.dataFolders?.().values() ?? [])].flat().flatMap(foldersUnder));
    }
    this.output.info(this.output.paint("dim", `deployed again in ${((Date.now() - started) / 1000).toFixed(1)} s`));
  }

  /** A changed .env restarts every service with the new values. */
  private reloadDotEnv(): void {
    const { output } = this;
    try {
      const dotenv = loadDotEnv(this.project.dir, this.environment, this.options.envFiles ?? []);
      if (this.providerName === "local") checkNodeOptions(dotenv, "run");
      this.dotenv = dotenv;
    } catch (error) {
      // Nothing is restarted: a service would lose the values it runs with.
      output.error(`${(error as Error).message}; the services keep the values they have until the file is fixed`);
      return;
    }
    describeDotEnv(this.dotenv, output);
    output.info(output.paint("dim", ".env changed: restarting every service"));
    for (const supervisor of this.supervisors) {
      supervisor.launchExtras = { ...supervisor.launchExtras, dotenv: this.dotenv.values };
      void supervisor.restart(supervisor.service);
    }
  }
}

/**
 * `--single-thread` checked against the other options: only on the local provider, not with
 * --processes or --inspect (each says where services run), and with no watching (a module loaded
 * into this thread cannot be unloaded).
 */
function singleThreadOptions(options: RunCommandOptions, output: Output): RunCommandOptions {
  if (options.singleThread !== true) return options;
  if (options.provider !== "local")
    throw new UserError(
      `--single-thread runs services on run's own thread, which only the local provider does; drop it or use --provider local`,
    );
  const other = options.processes === true ? "--processes" : options.inspect === true ? "--inspect" : undefined;
  if (other !== undefined)
    throw new UserError(
      `--single-thread and ${other} both say where services run (run's own thread, or a process each); choose one`,
    );
  if (options.watch)
    output.info(
      output.paint(
        "dim",
        "--single-thread: services are loaded once into run's thread and files are not watched; restart run to load a change",
      ),
    );
  return { ...options, watch: false };
}

/**
 * Whether services may run as worker threads: the provider must offer ports, and a thread shares
 * this process's working directory, which must be the project's folder as a service process's is.
 * The CLI can move there (its own paths are absolute by now) unless it runs in a worker itself.
 * Otherwise, processes.
 */
function threadsPossible(prepared: PreparedProject, running: RunningProvider): boolean {
  if (!running.openPort || running.hostsServices) return false;
  if (!prepared.services.some((s) => s.bundle?.threadOutfile)) return false;
  return isMainThread || process.cwd() === prepared.project.dir;
}

/**
 * Whether the collect pass may run services as worker threads: as `run` would run them on the
 * local provider (see threadsPossible), and under a provider that hosts the services (the AWS
 * emulator), whose functions have bundles of their own; never in a worker.
 */
function collectInThreads(options: RunCommandOptions, prepared: PreparedProject): boolean {
  return threadsAllowed(options, prepared.project.dir) && prepared.services.some((s) => s.bundle?.threadOutfile);
}

/**
 * Whether services may run as worker threads of this process on the local provider: not with
 * --processes or --inspect, and in a worker only when it already works in the project's folder.
 */
function localThreadsAllowed(options: RunCommandOptions, projectDir: string): boolean {
  return options.provider === "local" && threadsAllowed(options, projectDir);
}

/**
 * Whether this process may run services' code in worker threads (the local provider's services,
 * or any provider's collect pass, which then needs only their thread bundles): not with
 * --processes or --inspect, and in a worker only when it already works in the project's folder.
 */
function threadsAllowed(options: RunCommandOptions, projectDir: string): boolean {
  if (options.processes === true || options.inspect === true) return false;
  return isMainThread || process.cwd() === projectDir;
}

/**
 * Boots a thread (bootThread) for each service the collect pass runs as one, and for each service
 * that will run as one, less those already booted (bin/nitric-like.js boots one before it loads
 * the CLI); startServiceThread takes them. The run's threads boot while the collect pass runs.
 */
function bootServiceThreads(
  prepared: PreparedProject,
  dotenv: ReadonlyMap<string, string>,
  kept: ReadonlyMap<string, unknown>,
  /** False under --single-thread: the services run on this thread, and only the collect pass needs threads. */
  runThreads: boolean,
): void {
  const wanted = new Map<string, { env: NodeJS.ProcessEnv; count: number }>();
  for (const s of prepared.services) {
    const launch = { project: prepared.project, service: s.entry, endpoint: "", dotenv };
    const collectPass = s.bundle?.threadOutfile !== undefined && !kept.has(s.entry.name);
    const envs = [
      ...(collectPass ? [serviceEnv({ ...launch, environment: "build" })] : []),
      ...(runThreads && s.bundle?.threadOutfile ? [serviceEnv({ ...launch, environment: "run" })] : []),
    ];
    for (const env of envs) {
      const key = bootKey(env);
      const w = wanted.get(key) ?? { env, count: 0 };
      w.count++;
      wanted.set(key, w);
    }
  }
  for (const { env, count } of wanted.values()) {
    for (let i = bootedFor(env); i < count; i++) bootThread(env);
  }
}

function waitForHandlers(
  running: RunningProvider,
  expected: HandlerRegistration[],
  timeoutMs: number,
  output: Output,
): Promise<void> {
  const missing = () => {
    const live = new Set(running.registrations().map(registrationKey));
    return expected.filter((e) => !live.has(registrationKey(e)));
  };
  return new Promise((resolve) => {
    let done = false;
    const check = () => {
      if (done || missing().length > 0) return;
      done = true;
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      const list = missing().map(
        (m) =>
          `${m.route === undefined ? m.event : `route ${JSON.stringify(m.route)}`} on websocket ${m.socket} (service "${m.service}")`,
      );
      output.warn(`still waiting after ${timeoutMs / 1000} s for handlers: ${list.join(", ")}; starting anyway`);
      resolve();
    }, timeoutMs);
    running.onRegistrationsChanged(check);
    check();
  });
}

/** Prints which `.env` files were loaded and the names they set, never the values. */
function describeDotEnv(dotenv: DotEnv, output: Output): void {
  if (dotenv.files.length === 0) return;
  output.info(output.paint("dim", envLine(dotenv.files, [...dotenv.values.keys()])));
}

/** A port of 127.0.0.1 free right now (for an inspector, which takes no port 0 we could read back). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * What a changed service declares (the collect pass again, for that service only, as at start)
 * and the resources of kinds nobody serves among them, as messages (empty when none). No
 * `collected` when the pass failed: the restart then says why.
 */
async function collectChanged(
  prepared: PreparedProject,
  service: PreparedService,
  dotenv: ReadonlyMap<string, string>,
  /** As a worker thread, as at start, when the service runs as one. */
  threads: boolean,
): Promise<{ collected?: CollectedService; unsupported: string[] }> {
  const [collected] = await collect(prepared.project, [service], { dotenv, threads });
  if (!collected || collected.failure) return { unsupported: [] };
  return { collected, unsupported: buildSpec(prepared.project.name, [collected]).unsupported };
}

/** The project's package manifest and lockfiles: installing a package retries the services that wait. */
function packageFiles(dir: string): string[] {
  return ["package.json", "package-lock.json", "pnpm-lock.yaml", "yarn.lock", "bun.lock", "bun.lockb"].map((f) =>
    join(dir, f),
  );
}

/** A new service file named as a service run has (in a folder `findServices` did not see both in at once). */
function nameTaken(entry: ServiceEntry, other: ServiceEntry): string {
  return `${entry.file} is a new service named "${entry.name}", as ${other.file} is: a service's name is its file's name, so rename one of them`;
}

/** How long a service's file must stay gone before its service is stopped (an editor may delete, then write). */
const GONE_AFTER_MS = 300;

/** What watchServices hears from and tells the run. */
interface ServiceWatch {
  dotenvPaths: string[];
  onDotEnv: () => void;
  dotenv: () => ReadonlyMap<string, string>;
  /** Who else handles a socket event, for a service collected again. */
  owner: HandlerOwner;
  /** The files of the run's services, and of those on their way in. */
  known: () => Iterable<string>;
  /** A new file a service's `match` takes. */
  onNew: (entry: ServiceEntry) => void;
  /** A service's file is gone. */
  onGone: (supervisor: ServiceSupervisor) => void;
  /** What a service declares now (collected after a change): the spec follows. */
  onCollected: (collected: CollectedService) => void;
  /** A service is being collected again until `done` settles (RunningProvider.collecting). */
  collecting: (service: string, done: Promise<void>) => void;
  /** Hears each bundle a save makes (`--verbose`: bundledLine, which says those made at start too). */
  bundled?: (service: string) => BundleOptions["onBuilt"];
  /** What each service's running code was built from (read here for the services watched from the start). */
  builtFrom: BuiltFrom;
  /** `--verbose`: say per save which services it rebuilds and which it leaves (savedLine). */
  saved?: boolean;
}

/** `run --verbose`: a line for each bundle run makes (at start, on a save, for a new file), which and how long it took. */
function bundledLine(output: Output): (service: string) => BundledLine {
  const said = { service: "own bundle", thread: "thread bundle", function: "function bundle" } as const;
  return (service) => (which, ms) =>
    output.info(output.paint("dim", `bundled service "${service}" (${said[which]}) in ${ms} ms`));
}

/** Says one bundle made: our own two (BundleOptions.onBuilt), or a hosted service's function's. */
type BundledLine = (which: "service" | "thread" | "function", ms: number) => void;

/**
 * Restarts a service when its files change (collecting it again when its collect pass had
 * failed); hands new service files and gone ones to the run. `supervisors` is the run's own list:
 * services it adds later are watched too.
 */
function watchServices(
  prepared: PreparedProject,
  supervisors: ServiceSupervisor[],
  failedCollect: Set<string>,
  output: Output,
  env: ServiceWatch,
) {
  const inputsOf = (s: ServiceSupervisor) => s.service.bundle?.inputs ?? new Set([s.service.entry.path]);
  const packages = new Set(packageFiles(prepared.project.dir));
  /** How many changes each service has seen: only the latest one restarts it. */
  const changes = new Map<ServiceSupervisor, number>();
  /** Each service's latest build (settled once its bundle is made or failed): the next one waits for it. */
  const builds = new Map<ServiceSupervisor, Promise<void>>();
  const project = prepared.project;
  const notices = projectChangeNotices(project, env.known, output, env.onNew, (dirs) => watcher.addFolders(dirs));
  const watched = [...supervisors.flatMap((s) => [...inputsOf(s)]), ...packages, ...env.dotenvPaths, project.file];
  const { builtFrom } = env;
  for (const s of supervisors) builtFrom.read(s.name, ownFiles(inputsOf(s)));
  const watcher = watchFiles(watched, (changed) => {
    if (env.dotenvPaths.some((p) => changed.has(p))) {
      notices(changed);
      env.onDotEnv();
      return;
    }
    const installed = [...changed].some((p) => packages.has(p));
    /** What this save rebuilds, which services saw their files saved as they were built from, which are gone. */
    const rebuilds: string[] = [];
    const unchanged: string[] = [];
    const gone: string[] = [];
    for (const supervisor of supervisors) {
      const inputs = inputsOf(supervisor);
      const retry = installed && supervisor.state === "waiting";
      const saved = [...changed].filter((p) => inputs.has(p));
      if (!retry && saved.length === 0) continue;
      // Its files saved as its running code was built from them (an editor's save of an unchanged
      // buffer, a touch, a checkout): its bundle could not differ, so it runs on, its memory and
      // its clients kept. One not running (it waits for a file change, or failed its collect
      // pass) has nothing to keep: any save of its files starts it again.
      if (
        !retry &&
        supervisor.state !== "waiting" &&
        !failedCollect.has(supervisor.name) &&
        builtFrom.unchanged(supervisor.name, saved)
      ) {
        unchanged.push(supervisor.name);
        if (builtFrom.backAfterFailure(supervisor.name)) output.info(backLine(project.dir, saved, supervisor.name));
        continue;
      }
      const change = (changes.get(supervisor) ?? 0) + 1;
      changes.set(supervisor, change);
      // Its file renamed or deleted: told to the run now, not after a build under way, so that a
      // renamed service's old name is removed before notices (below) add its new one. A build
      // waiting for its turn gives way (this change is the latest).
      if (!existsSync(supervisor.service.entry.path)) {
        gone.push(supervisor.name);
        env.onGone(supervisor);
        continue;
      }
      rebuilds.push(supervisor.name);
      // Until this change is collected (after the restart, for a service on our SDK alone), what
      // the new copy declares is not in the spec: the provider waits for it before refusing any.
      let collected!: () => void;
      env.collecting(
        supervisor.name,
        new Promise<void>((resolve) => {
          collected = resolve;
        }),
      );
      const previous = builds.get(supervisor);
      let built!: () => void;
      builds.set(
        supervisor,
        new Promise<void>((resolve) => {
          built = resolve;
        }),
      );
      void (async () => {
        // A save during a build of the service waits for it, and of the saves that waited only the
        // last builds: two builds at once write the same bundle, and the one that ends last wins,
        // whichever save it read.
        await previous;
        if (changes.get(supervisor) !== change) return;
        const entry = supervisor.service.entry;
        // Its file renamed or deleted while it waited: nothing to build, which is no compile error of the user's.
        if (!existsSync(entry.path)) {
          env.onGone(supervisor);
          return;
        }
        // Read before the build, as it reads them: a save during the build differs, and builds again.
        const undo = builtFrom.read(entry.name, ownFiles(inputs));
        /** Whether it now runs from this save: else (a compile error, a failed collect) the same save again retries. */
        let applied = false;
        try {
          // A service that runs as a thread needs only its thread bundle made again: it runs and
          // is collected from it (a collect pass that failed runs again in a thread too, as at start).
          const threadOnly = supervisor.runsAsThread;
          const onBuilt = env.bundled?.(entry.name);
          const bundle =
            entry.start === undefined
              ? await bundleService(prepared.project.dir, entry, {
                  threadOnly,
                  ...(onBuilt ? { onBuilt } : {}),
                }).finally(built)
              : undefined;
          built();
          if (bundle) watcher.add(bundle.inputs);
          const service: PreparedService = bundle ? { entry, bundle } : { entry };
          const what = changedInput(prepared.project.dir, entry, changed, inputs) ?? "the project's packages";
          // A later save is already on its way (its check may finish first): it decides.
          if (changes.get(supervisor) !== change) return;
          // Importing another service's entry file registers that service's handlers here too:
          // refused before a restart, as at start, and its running version stays.
          const imported = importedServices(prepared.services, service).flatMap((i) => {
            const registrations = supervisors.find((s) => s.name === i.service)?.expected ?? [];
            return registrations.length > 0
              ? [importedServiceConflict(entry, { name: i.service, file: i.file }, registrations)]
              : [];
          });
          if (imported.length > 0) {
            for (const line of imported) output.error(line);
            output.info(`  service "${entry.name}" is not restarted (its running version stays) until you save a fix`);
            return;
          }
          if (failedCollect.has(entry.name)) {
            output.info(output.paint("dim", `${what} changed: collecting service "${entry.name}" again`));
            const collected = await recollectAndStart(
              prepared,
              env.owner,
              supervisor,
              service,
              output,
              env.dotenv(),
              threadOnly,
            );
            if (collected) {
              applied = true;
              failedCollect.delete(entry.name);
              env.onCollected(collected);
            }
            return;
          }
          // A declaration nobody serves would only fail at run time (UNIMPLEMENTED): refuse the
          // change as at start, once, and keep the running version until the next save. Our SDK
          // declares only what is served, so a service on it alone (threadable) restarts first
          // and is collected after, for the spec the dashboard shows (about 0.3 s per save for a
          // @nitric/sdk service, which waits for it: bench/restart.mjs).
          const threads = supervisor.runsAsThread;
          if (bundle?.threadable) {
            output.info(output.paint("dim", `${what} changed: restarting service "${entry.name}"`));
            await supervisor.restart(service);
            applied = true;
            const { collected } = await collectChanged(prepared, service, env.dotenv(), threads);
            if (collected && changes.get(supervisor) === change) env.onCollected(collected);
            return;
          }
          const { collected, unsupported } = await collectChanged(prepared, service, env.dotenv(), threads);
          if (changes.get(supervisor) !== change) return;
          if (unsupported.length > 0) {
            for (const u of unsupported) output.error(u);
            output.error(
              `service "${entry.name}" is not restarted: it declares what nitric-like does not serve (listed above), it serves ${SERVED_KINDS}; its running version stays until you save a fix`,
            );
            return;
          }
          output.info(output.paint("dim", `${what} changed: restarting service "${entry.name}"`));
          await supervisor.restart(service);
          applied = true;
          if (collected) env.onCollected(collected);
        } catch (error) {
          // A change that does not compile keeps the running version; the next save retries.
          output.error((error as Error).message);
        } finally {
          if (!applied) undo();
        }
      })().finally(() => {
        built();
        collected();
      });
    }
    if (env.saved && rebuilds.length + unchanged.length > 0) {
      const others = supervisors
        .map((s) => s.name)
        .filter((n) => !rebuilds.includes(n) && !unchanged.includes(n) && !gone.includes(n));
      output.info(output.paint("dim", savedLine(project.dir, changed, rebuilds, unchanged, others, "service")));
    }
    // After the gone files above: a renamed service's old name is removed before its new one is added.
    notices(changed);
  });
  return watcher;
}

/**
 * The file of a service's that a change touched, as said: its own file when it changed, else the
 * first of the other files it is built from that did (a helper module it imports), not its own
 * file, which the user did not touch.
 */
function changedInput(
  projectDir: string,
  entry: ServiceEntry,
  changed: ReadonlySet<string>,
  inputs: ReadonlySet<string>,
): string | undefined {
  if (changed.has(entry.path)) return entry.file;
  const path = [...changed].find((p) => inputs.has(p));
  return path === undefined ? undefined : relative(projectDir, path).split(sep).join("/");
}

/** Whether two collect passes of a service declared the same (in any order): then a restart of its function will do. */
function sameDeclarations(a: CollectedService, b: CollectedService): boolean {
  const shape = (c: CollectedService) =>
    JSON.stringify([
      c.declared.map((d) => JSON.stringify(d)).sort(),
      c.grants.map((g) => JSON.stringify({ ...g, permissions: [...g.permissions].sort() })).sort(),
      c.handlers.map(registrationKey).sort(),
      [...(c.authorizes ?? [])].sort(),
    ]);
  return shape(a) === shape(b);
}

/** `dir` and every folder under it (none when it is gone), for a watcher that watches one folder at a time. */
function foldersUnder(dir: string): string[] {
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return [dir, ...entries.filter((e) => e.isDirectory()).flatMap((e) => foldersUnder(join(dir, e.name)))];
}
