/**
 * A project running inside the test's own process: the same `nitric-like run` the command line
 * starts (the local provider, every service under its supervisor; or, with `provider: "aws"`, the
 * AWS emulator running the built functions), on free ports of 127.0.0.1, with no dashboard and
 * no file watching.
 */
import {
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import {
  currentUid,
  type InspectedConnection,
  loadProject,
  loadProvider,
  Output,
  ownerAlive,
  type ProviderInspector,
  processMark,
  putRunSecret,
  type RunControl,
  type RunService,
  runCommand,
  type Sink,
} from "@nitric-like/cli/run";
import { type Client, type CloseInfo, type ConnectClientOptions, connectClient, waitMs, within } from "./client.js";

/** How `startApp` runs the project. */
export interface StartAppOptions {
  /**
   * The provider that runs it, as `nitric-like run --provider` takes it: "local" (the local
   * provider: gateways, lmdb kv stores, services as threads), or "aws" (the functions
   * `nitric-like build --provider aws` makes, run in the AWS emulator: API Gateway's rules,
   * Lambda, DynamoDB in dynalite), so a test meets what the app will meet once deployed. Any
   * other name loads that package from the project, as `run --provider` does.
   * @default "local"
   */
  provider?: string;
  /**
   * Which `environments.<name>` of the project file applies (and `.env.<name>`): give a test
   * environment short limits, such as `idleTimeout: 300ms`, to test them quickly.
   * @default "local"
   */
  environment?: string;
  /**
   * Run a fresh copy of the project in a temp folder (sharing its node_modules), so each start
   * has empty kv stores and tests running at once do not share files; false runs it in place,
   * with its `.nitric-like/` state.
   * @default true
   */
  copy?: boolean;
  /**
   * Start every service as a process of its own instead of a worker thread of this process
   * (the local provider; on aws the functions run in the emulator's process).
   * @default false, and true when another app of this process is running (threads share its working folder)
   */
  processes?: boolean;
  /** How long start may take. @default 30000 */
  timeoutMs?: number;
  /**
   * Values of the project's secrets, stored before its services start (as `nitric-like secret
   * put` stores them for run), so a service that reads one as it loads has it; text or bytes.
   * Each must be a secret a service declares. With `copy: false` they go into the project's own
   * store.
   */
  secrets?: Readonly<Record<string, string | Uint8Array>>;
  /**
   * How long a service may go without its event loop turning before `run` ends and restarts
   * it; shorten it to test that quickly. @default 30 s, or the handler timeout and 5 s when longer
   */
  blockedAfterMs?: number;
}

/**
 * A kv store of the running app, read and written where the app keeps it (lmdb on the local
 * provider, its DynamoDB table on aws): a test's setup and its assertions on what a handler stored.
 */
export interface AppKv<T extends Record<string, unknown> = Record<string, unknown>> {
  /** The value; undefined when the key is missing (where the SDK's get() throws not_found). A key kv get() refuses (empty, too long) is refused with its words. */
  get(key: string): Promise<T | undefined>;
  /** Writes a value, held to the rules of every kv set() (a JSON object, its size, the key's). */
  set(key: string, value: T): Promise<void>;
  /** Deletes a key; a missing one is no error. */
  delete(key: string): Promise<void>;
  /** The keys starting with `prefix`, in byte order; throws past MAX_KV_KEYS (give a longer prefix). */
  keys(prefix?: string): Promise<string[]>;
}

/** Most keys `AppKv.keys()` lists. */
export const MAX_KV_KEYS = 10000;

/**
 * An open connection as the provider sees it, for a test's assertions. `Identity` and `State` are
 * the socket's, as declared with `websocket<Identity, State>(name)` (or inferred from its
 * authorizer), given to `app.connections<Identity, State>()`; `unknown` when not given.
 */
export interface AppConnection<Identity = unknown, State = unknown> {
  socket: string;
  id: string;
  /** Every value of each query parameter, decoded. */
  query: Record<string, string[]>;
  /** The identity its socket's `authorize` gave it; undefined when none. */
  auth: Identity;
  /** Its rooms, sorted. */
  rooms: string[];
  /** Its state; undefined when none. */
  state: State | undefined;
}

/** What `App.connect` takes: the socket (when the project has several) and the request. */
export interface ConnectOptions extends ConnectClientOptions {
  /** The socket's name. @default the project's only socket */
  socket?: string;
}

const running = new Set<App>();
/**
 * The temp copies not removed yet. A test file that never stops its apps (no `afterEach(stopAll)`,
 * or a runner that ends the process first) would leave them in the temp folder: they go when the
 * process exits. A process killed by a signal, or a worker thread ended by its runner (vitest's
 * threads pool, a watch-mode rerun), removes nothing: each copy names its process in COPY_OWNER,
 * and the first start of a later process removes the copies whose process is gone.
 */
const copies = new Set<string>();
process.on("exit", () => {
  for (const copy of copies) rmSync(copy, { recursive: true, force: true });
});
/** Temp copies are named `<COPY_PREFIX><project folder's name>-<random>`. */
const COPY_PREFIX = "nitric-like-";
/** The file in a copy that names the process it belongs to (a processMark()). */
const COPY_OWNER = join(".nitric-like", "test-kit-copy");

/** How long a copy whose owner file is still empty is taken to be another process's, being made. */
const EMPTY_MARK_GRACE_MS = 60_000;
let staleCopiesRemoved = false;
/**
 * The working folder before the first running app: a run with worker threads moves this process
 * to its project's folder (threads share it), so later relative paths resolve against this one,
 * and the last app to stop moves back here.
 */
let home: string | undefined;
/** The most of the run's output `App.logs` keeps (the latest), for a service that prints a lot. */
const MAX_LOG_CHARS = 4 * 1024 * 1024;

/** A project started by `startApp`. */
export class App {
  private output = "";
  /** How many characters the run has printed in all (output keeps the latest of them). */
  private printed = 0;
  private readonly urls = new Map<string, string>();
  private services: readonly RunService[] = [];
  private inspector: ProviderInspector | undefined;
  /** @internal The services whose function's init has failed (on aws), with why (RunControl.failedInits). */
  failedInits: () => ReadonlyMap<string, string> = () => new Map();
  /** The kv stores the project's services declare. */
  private stores: string[] = [];
  /** The secrets the project's services declare. */
  private secrets: string[] = [];
  private readonly clients = new Set<Client>();
  private stopped: Promise<void> | undefined;
  private logWaiters: (() => void)[] = [];
  /** @internal */
  exit: Promise<number> = Promise.resolve(0);
  /** @internal */
  readonly abort = new AbortController();

  /** @internal */
  constructor(
    /** The folder the project runs in (a temp copy unless `copy: false`). */
    readonly dir: string,
    /** The provider that runs it ("local", "aws"). */
    readonly provider: string,
    private readonly cleanup: () => void,
  ) {}

  /** Everything the run printed so far, services' output included (each line `<service> | ...`). */
  get logs(): string {
    return this.output;
  }

  /** The names of the project's sockets. */
  get sockets(): string[] {
    return [...this.urls.keys()];
  }

  /** A socket's URL (ws://127.0.0.1:<port>; on aws with the stage's path, /live). */
  url(socket?: string): string {
    const name = socket ?? this.onlySocket();
    const url = this.urls.get(name);
    if (url === undefined)
      throw new Error(`app: no socket ${JSON.stringify(name)}; the project has ${this.describeSockets()}`);
    return url;
  }

  /** Opens a client to a socket; rejects with ConnectRefusedError (status, body) when refused. */
  async connect(options: ConnectOptions = {}): Promise<Client> {
    const { socket, ...rest } = options;
    this.live("app.connect()");
    const name = socket ?? this.onlySocket();
    const client = await connectClient(this.url(name), rest, `client of websocket "${name}"`);
    client.watchOutput({ mark: () => this.printed, since: (mark) => this.outputSince(mark) });
    this.clients.add(client);
    return client;
  }

  /**
   * Fault: restarts a service through its supervisor, as a code change does: the running copy
   * answers the events it was sent (up to 2 s; new events wait for the new copy), is stopped, and
   * a new one starts. Clients stay connected; events the old copy had not answered within those
   * 2 s go to the new one again (at least once: a handler that sent before it returned may send
   * twice).
   * On aws the service's function is built and started again, as a deploy of new code does: the
   * clients stay connected to the API, and the next event cold-starts the new copy.
   */
  async restart(service?: string): Promise<void> {
    this.live(`app.restart(${service === undefined ? "" : JSON.stringify(service)})`);
    const names = this.services.map((s) => s.name);
    const name = service ?? (names.length === 1 ? names[0] : undefined);
    const target = this.services.find((s) => s.name === name);
    if (!target)
      throw new Error(
        `app.restart(${service === undefined ? "" : JSON.stringify(service)}): ${service === undefined ? "the project has several services" : "no such service"}; name one of ${names.map((n) => JSON.stringify(n)).join(", ") || "(none: this provider starts them itself)"}`,
      );
    await target.restart();
  }

  /**
   * A kv store of the app (one its services declare), to seed data before a test or check what
   * the handlers stored.
   */
  kv<T extends Record<string, unknown> = Record<string, unknown>>(store: string): AppKv<T> {
    const inspector = (): ProviderInspector => {
      this.live(`app.kv(${JSON.stringify(store)})`);
      if (!this.stores.includes(store))
        throw undeclared(
          `app.kv(${JSON.stringify(store)})`,
          `kv store ${JSON.stringify(store)}`,
          "stores",
          this.stores,
        );
      const found = this.inspector;
      if (!found)
        throw new Error(
          `app.kv(${JSON.stringify(store)}): provider "${this.provider}" offers no access to its kv stores`,
        );
      if (found.kvUnavailable !== undefined)
        throw new Error(`app.kv(${JSON.stringify(store)}): ${found.kvUnavailable}`);
      return found;
    };
    const at = `app.kv(${JSON.stringify(store)})`;
    return {
      get: async (key) => (await inspector().kvGet(store, key).catch(this.kvError(at))) as T | undefined,
      // The provider holds it to the rules of every kv set(), and says which it broke.
      set: async (key, value) => {
        await inspector()
          .kvSet(store, key, value)
          .catch(this.kvError(`${at}.set`));
      },
      delete: async (key) => {
        await inspector().kvDelete(store, key).catch(this.kvError(at));
      },
      keys: async (prefix = "") => {
        const keys = await inspector()
          .kvKeys(store, prefix, MAX_KV_KEYS + 1)
          .catch(this.kvError(at));
        if (keys.length > MAX_KV_KEYS)
          throw new Error(`${at}.keys(${JSON.stringify(prefix)}): more than ${MAX_KV_KEYS} keys; give a longer prefix`);
        return keys;
      },
    };
  }

  /**
   * A secret of the app (one its services declare): `put(value)` stores a value as its newest
   * version, as `nitric-like secret put` does for run, and resolves with the version's id; the
   * services read it at their next `access()`.
   */
  secret(name: string): { put(value: string | Uint8Array): Promise<string> } {
    return {
      put: async (value) => {
        this.live(`app.secret(${JSON.stringify(name)}).put`);
        this.declaredSecret(`app.secret(${JSON.stringify(name)})`, name);
        return await putSecretValue(this.dir, `app.secret(${JSON.stringify(name)}).put`, name, value);
      },
    };
  }

  /** @internal Throws when no service declares the secret. */
  declaredSecret(at: string, name: string): void {
    if (!this.secrets.includes(name)) throw undeclared(at, `secret(${JSON.stringify(name)})`, "secrets", this.secrets);
  }

  /**
   * The open connections (of one socket, or of all), with their rooms, state and identity; typed
   * as the socket's with `app.connections<Identity, State>("chat")` (the types are not checked
   * against what the app holds, as with `app.kv<T>()`).
   */
  async connections<Identity = unknown, State = unknown>(socket?: string): Promise<AppConnection<Identity, State>[]> {
    this.live(`app.connections(${socket === undefined ? "" : JSON.stringify(socket)})`);
    if (socket !== undefined && !this.urls.has(socket))
      throw new Error(
        `app.connections(${JSON.stringify(socket)}): no such socket; the project has ${this.describeSockets()}`,
      );
    if (!this.inspector)
      throw new Error(`app.connections(): provider "${this.provider}" does not list its connections`);
    const listed: InspectedConnection[] = await this.inspector.connections(socket);
    return listed.map((c) => {
      if (c.rooms === undefined || c.state === undefined)
        throw new Error(
          `app.connections(): the provider cannot read connection ${c.id}'s rooms and state: ${c.unreadable ?? "no reason given"}`,
        );
      return {
        socket: c.socket,
        id: c.id,
        query: c.query,
        auth: (c.auth === "" ? undefined : JSON.parse(c.auth)) as Identity,
        rooms: [...c.rooms].sort(),
        state: (c.state === "" ? undefined : JSON.parse(c.state)) as State | undefined,
      };
    });
  }

  /** An inspector's failure, said as the kit's: `at` in front of the provider's words. */
  private kvError(at: string): (error: unknown) => never {
    return (error) => {
      throw new Error(`${at}: ${(error as Error).message}`);
    };
  }

  /** Waits until the run's output matches `pattern` (a service's console.log, a warning). */
  async waitForLog(pattern: RegExp, options: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = waitMs(`app.waitForLog(${pattern})`, "timeoutMs", options.timeoutMs, 5000);
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(this.output)) {
      if (this.stopped) throw new Error(`app: stopped before anything matched ${pattern}; the output:\n${this.output}`);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`app: nothing matched ${pattern} within ${timeoutMs} ms; the output:\n${this.output}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.logWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /**
   * Stops everything: closes client connections (1001, as Ctrl-C does), stops the services and the
   * provider, removes the temp copy. Throws, listing each, when something is left: a run that did
   * not finish cleanly, a client still open, a socket's port still taking connections.
   */
  stop(): Promise<void> {
    this.stopped ??= this.teardown();
    return this.stopped;
  }

  private async teardown(): Promise<void> {
    running.delete(this);
    for (const w of this.logWaiters.splice(0)) w();
    const problems: string[] = [];
    this.abort.abort();
    try {
      const code = await within(this.exit, 15000, "app.stop: the run did not stop");
      if (code !== 0) problems.push(`the run exited with code ${code}`);
    } catch (error) {
      problems.push((error as Error).message);
    }
    for (const client of this.clients) {
      const closed: CloseInfo | undefined = await within(client.closed, 2000, "").catch(() => undefined);
      if (!closed) {
        problems.push(`a client of ${client.raw.url} is still open`);
        client.drop();
      }
    }
    // The port check waits a few turns of the event loop: everything above can settle in promise
    // callbacks alone, and a server that binds the port again in this process (a leaked one being
    // restarted, say) would not have had its turn to be seen.
    await new Promise((resolve) => setTimeout(resolve, 20));
    for (const [name, url] of this.urls)
      if (await accepts(new URL(url))) problems.push(`websocket "${name}" still accepts connections at ${url}`);
    this.cleanup();
    if (problems.length > 0)
      throw new Error(`app.stop: left open or unclean: ${problems.join("; ")}; the output:\n${this.output}`);
  }

  /** What the run printed after `mark` (a value of `printed`), as much of it as `output` still holds. */
  private outputSince(mark: number): string {
    return this.output.slice(Math.max(0, this.output.length - (this.printed - mark)));
  }

  /** @internal */
  write(text: string): void {
    this.output += text;
    this.printed += text.length;
    if (this.output.length > MAX_LOG_CHARS) this.output = this.output.slice(-MAX_LOG_CHARS / 2);
    for (const m of text.matchAll(/^websocket (\S+) (ws:\/\/\S+)$/gm)) this.urls.set(m[1] as string, m[2] as string);
    for (const w of this.logWaiters.splice(0)) w();
  }

  /** @internal */
  control({ services, inspector, spec, failedInits }: RunControl): void {
    this.services = services;
    this.failedInits = failedInits;
    this.inspector = inspector;
    this.stores = spec.resources.filter((r) => r.kind === "kv").map((r) => r.name);
    this.secrets = spec.resources.filter((r) => r.kind === "secret").map((r) => r.name);
  }

  /** Throws, naming the call, once stop() has begun: what the app had (its folder, its ports, its stores) is going or gone. */
  private live(at: string): void {
    if (this.stopped)
      throw new Error(`${at}: the app is stopped (app.stop() or stopAll() ran); start another with startApp()`);
  }

  private onlySocket(): string {
    const names = this.sockets;
    if (names.length === 1) return names[0] as string;
    throw new Error(`app: the project has ${this.describeSockets()}; name one with { socket: "<name>" }`);
  }

  private describeSockets(): string {
    const names = this.sockets;
    return names.length === 0 ? "no sockets" : `sockets ${names.map((n) => JSON.stringify(n)).join(", ")}`;
  }
}

/**
 * Starts a project (the folder with its nitric-like.yaml, relative to the current folder) on the
 * local provider (or the one `provider` names) inside this process, with every port chosen free,
 * and resolves when it is ready (every handler the spec expects is registered). Stop it with
 * `app.stop()` or `stopAll()`. Services on @nitric-like/sdk and on @nitric/sdk both run.
 */
export async function startApp(dir: string, options: StartAppOptions = {}): Promise<App> {
  if (running.size === 0) home = process.cwd();
  const source = resolve(home ?? process.cwd(), dir);
  const at = `startApp(${JSON.stringify(dir)})`;
  // Checked before anything starts: NaN or a negative one gave a start that never timed out or
  // failed at once, a blockedAfterMs of 0 a service ended as blocked over and over.
  const timeoutMs = waitMs(at, "timeoutMs", options.timeoutMs, 30000);
  waitMs(at, "blockedAfterMs", options.blockedAfterMs, 0);
  if (!existsSync(source)) throw new Error(`${at}: no such folder; give a project's folder`);
  if (!statSync(source).isDirectory())
    throw new Error(`${at}: ${source} is a file; give the project's folder (the one with nitric-like.yaml)`);
  // The project file is read here, where the project is, so that what is wrong with it (or its
  // absence) is said with the project's own path, not the temp copy's.
  try {
    loadProject(source);
  } catch (error) {
    throw new Error(`${at}: ${(error as Error).message}`);
  }
  const provider = options.provider ?? "local";
  // A provider of the project's own is found from the project, so that a name not installed
  // (a typo, "AWS") is said with the project's folder and the option, not the temp copy's and a
  // command-line flag.
  if (provider !== "local" && provider !== "aws") {
    try {
      await loadProvider(provider, source, '{ provider: "<package>" }');
    } catch (error) {
      throw new Error(`${at}: ${(error as Error).message}`);
    }
  }
  let runDir = source;
  let cleanup = () => {};
  if (options.copy !== false) {
    if (!staleCopiesRemoved) {
      staleCopiesRemoved = true;
      removeStaleCopies();
    }
    runDir = mkdtempSync(join(tmpdir(), `${COPY_PREFIX}${basename(source)}-`));
    const copy = runDir;
    cleanup = () => {
      copies.delete(copy);
      rmSync(copy, { recursive: true, force: true });
    };
    copies.add(copy);
    try {
      // First, so that a process killed from here on leaves a copy the next one can tell is stale.
      mkdirSync(join(copy, ".nitric-like"));
      writeFileSync(join(copy, COPY_OWNER), processMark(), { flag: "wx", mode: 0o600 });
      cpSync(source, runDir, {
        recursive: true,
        filter: (path) => {
          const top = relative(source, path).split(sep)[0];
          return top !== "node_modules" && top !== ".nitric-like" && top !== ".git";
        },
      });
      // Bare imports resolve from the copy as from the project: through the nearest node_modules.
      const modules = nearestNodeModules(source);
      if (modules !== undefined) symlinkSync(modules, join(runDir, "node_modules"), "dir");
    } catch (error) {
      cleanup();
      throw new Error(`${at}: could not copy the project to ${runDir}: ${(error as Error).message}`);
    }
  }
  const app = new App(runDir, provider, () => {
    // Back home when the last app stops, or when this one's folder (about to go) is where we are.
    if (home !== undefined && process.cwd() !== home && (running.size === 0 || process.cwd() === runDir))
      process.chdir(home);
    cleanup();
  });
  // Before the services start, so one that reads a secret as it loads has it.
  for (const [name, value] of Object.entries(options.secrets ?? {})) {
    try {
      await putSecretValue(runDir, `startApp: secrets.${name}`, name, value);
    } catch (error) {
      cleanup();
      throw error;
    }
  }
  const sink: Sink = { write: (text: string) => app.write(text) };
  const processes = options.processes === true || running.size > 0;
  running.add(app);
  let ready = false;
  app.exit = runCommand(
    {
      dir: runDir,
      provider,
      randomPorts: true,
      watch: false,
      dashboard: false,
      processes,
      signal: app.abort.signal,
      control: (control) => app.control(control),
      ...(options.environment === undefined ? {} : { environment: options.environment }),
      ...(options.blockedAfterMs === undefined ? {} : { blockedAfterMs: options.blockedAfterMs }),
    },
    new Output(sink, sink, true),
  ).catch((error: unknown) => {
    app.write(`${(error as Error).message}\n`);
    return 1;
  });
  const notReady = (why: string) => new Error(`startApp(${JSON.stringify(dir)}): ${why}; the output:\n${app.logs}`);
  try {
    const readyLine = app.waitForLog(/^ready: /m, { timeoutMs }).then(() => {
      ready = true;
    });
    // Only the race's winner is awaited: a loser's rejection is no unhandled one.
    readyLine.catch(() => {});
    await Promise.race([
      readyLine,
      app.exit.then((code) => {
        if (!ready) throw notReady(`the run stopped (exit ${code}) before it was ready`);
      }),
    ]);
  } catch (error) {
    await app.stop().catch(() => {});
    throw /nothing matched/.test((error as Error).message) ? notReady(`not ready within ${timeoutMs} ms`) : error;
  }
  // A function whose init failed at start (on aws): `run` serves on, as AWS would, its next event
  // retrying the init; a test gets the cause now, as a service that fails on local stops the start,
  // not an app whose events fail.
  const failed = [...app.failedInits().keys()].map((s) => JSON.stringify(s));
  if (failed.length > 0) {
    await app.stop().catch(() => {});
    throw notReady(
      `the function of ${failed.length === 1 ? "service" : "services"} ${failed.join(", ")} failed ${failed.length === 1 ? "its" : "their"} init as the app started (its events would retry it, as on AWS)`,
    );
  }
  // A value for a secret no service declares would be read by nobody: most often a typo.
  try {
    for (const name of Object.keys(options.secrets ?? {})) app.declaredSecret(`startApp: secrets.${name}`, name);
  } catch (error) {
    await app.stop().catch(() => {});
    throw error;
  }
  return app;
}

/** A resource no service declares (most often a typo), with the ones the project declares. */
function undeclared(at: string, what: string, kinds: string, declared: readonly string[]): Error {
  const known = declared.map((d) => JSON.stringify(d)).join(", ");
  return new Error(
    `${at}: no service declares ${what}; ${declared.length > 0 ? `the project's ${kinds} are ${known}` : "the project declares none"}`,
  );
}

/** Stores a secret's value in the store of the run in `dir`; `at` starts the error. */
async function putSecretValue(dir: string, at: string, name: string, value: string | Uint8Array): Promise<string> {
  const bytes = typeof value === "string" ? new TextEncoder().encode(value) : value;
  try {
    return await putRunSecret(dir, name, bytes);
  } catch (error) {
    throw new Error(`${at}: ${(error as Error).message}`);
  }
}

/**
 * Stops every app this process started and still runs (for `afterEach`); throws the first problem.
 *
 * As vitest's `afterEach` hook it is given the test's context: while another test of the same file
 * still runs (`it.concurrent`, `describe.concurrent`), it stops nothing, since the apps it would
 * stop may be that test's, and the last test of the file to finish stops them all. Any other
 * caller (no context, another runner) stops every app at once.
 */
export async function stopAll(...hook: unknown[]): Promise<void> {
  // A rest parameter keeps the function's length 0: a runner that passes a `done` callback to a
  // hook taking one (jest, mocha) must not wait for a callback this function never calls.
  if (othersRunning(hook[0])) return;
  const results = await Promise.allSettled([...running].map((app) => app.stop()));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
}

/** The part of a vitest task `stopAll` reads: the test, its file, and each test's state. */
interface HookTask {
  file?: HookTask;
  tasks?: readonly HookTask[];
  result?: { state?: string };
}

/**
 * Whether `context` (what vitest gives an `afterEach` hook) is a test's whose file has another
 * test still running: a concurrent test that has not finished, whose apps are still in use.
 */
function othersRunning(context: unknown): boolean {
  const task = (context as { task?: HookTask } | null | undefined)?.task;
  if (typeof task !== "object" || task === null || typeof task.file !== "object" || task.file === null) return false;
  const busy = (t: HookTask): boolean =>
    t !== task && (Array.isArray(t.tasks) ? t.tasks.some(busy) : t.result?.state === "run");
  return busy(task.file);
}

/**
 * Removes the temp copies of apps whose process is gone without removing them (killed by a
 * signal; or the copies of a runner's worker thread, once the runner's process has ended). Only
 * folders of this user holding the kit's owner file are touched, never one whose process runs.
 */
function removeStaleCopies(parent = tmpdir()): void {
  const uid = currentUid();
  let entries: string[];
  try {
    entries = readdirSync(parent).filter((e) => e.startsWith(COPY_PREFIX));
  } catch {
    return;
  }
  for (const entry of entries) {
    const dir = join(parent, entry);
    try {
      const owner = join(dir, COPY_OWNER);
      const st = lstatSync(owner);
      if (!st.isFile() || (uid !== undefined && st.uid !== uid) || !lstatSync(dir).isDirectory()) continue;
      const mark = readFileSync(owner, "utf8");
      // An empty mark is another process's copy between creating its owner file and writing it
      // (writeFileSync's "wx"): kept, unless it has stayed empty for a minute (killed right then).
      if (mark.trim() === "" ? Date.now() - st.mtimeMs < EMPTY_MARK_GRACE_MS : ownerAlive(mark)) continue;
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // Not a copy of the kit's, gone meanwhile, or not ours to read: leave it.
    }
  }
}

/** The node_modules folder Node would look in first for the project's bare imports, if any. */
function nearestNodeModules(from: string): string | undefined {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules");
    if (existsSync(candidate)) return realpathSync(candidate);
    if (dirname(dir) === dir) return undefined;
  }
}

/** Whether something still accepts TCP connections at the URL's host and port. */
function accepts(url: URL): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host: url.hostname, port: Number(url.port) });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
