/**
 * `nitric-like run --provider aws`: the app as it will run on AWS, on this machine. The project is
 * built exactly as for a deploy (`.nitric-like/aws-run`), then the emulator runs the template:
 * each service in its own function process with the Lambda runtime, the sockets behind emulated
 * API Gateway WebSocket APIs, the tables in dynalite (kept under `.nitric-like/aws-dynamodb`).
 */
import {
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { BatchGetItemCommand, DynamoDBClient } from "@aws-sdk/client-dynamodb";
import type { JsonObject } from "@bufbuild/protobuf";
import {
  AWS_MAX_MESSAGE_BYTES,
  awsPayloadTooLarge,
  closedNotReading,
  dict,
  noValueYet,
} from "@nitric-like/provider-kit";
import { SecretStore, secretsDirOf } from "@nitric-like/provider-kit/secret-store";
import type {
  HandlerRegistration,
  InspectedConnection,
  Logger,
  ProviderInspector,
  RunningProvider,
  RunOptions,
  ServiceEntry,
  Spec,
  TrafficEvent,
} from "@nitric-like/spec";
import {
  DEFAULT_RUN_ENVIRONMENT,
  findServices,
  kvKeyProblem,
  kvPrefixProblem,
  kvValueProblem,
  LATEST_VERSION,
  socketLimitsOf,
  specRegistrations,
} from "@nitric-like/spec";
import { DynamoDbClient } from "../aws/dynamodb.js";
import { type AwsBuild, besideFolders, buildAws, copyBeside } from "../build/build.js";
import { bundleFunction } from "../build/bundle.js";
import { DynamoKvStores } from "../kv/store.js";
import { IDENTITY_KEY } from "../runtime/authorizer.js";
import { runCredentials } from "./auth.js";
import { startDynaliteThread } from "./dynalite.js";
import { type Emulator, startEmulator } from "./emulator.js";

/** Where `run --provider aws` keeps its build and its tables. */
export function emulatedDirs(projectDir: string): { build: string; data: string } {
  return {
    build: join(projectDir, ".nitric-like", "aws-run"),
    data: join(projectDir, ".nitric-like", "aws-dynamodb"),
  };
}

/** The file that says which process runs the project's emulator (`.nitric-like/aws-run.pid`). */
export function emulatorPidFile(projectDir: string): string {
  return join(projectDir, ".nitric-like", "aws-run.pid");
}

/** Whether process `pid` exists (one of another user's too). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Takes the project's emulator for this process, or refuses with what to do: two `run --provider
 * aws` of one project would share its build folder (each rewriting the other's functions and
 * credentials file) and its DynamoDB store, which LevelDB lets one process open (the second run's
 * every DynamoDB call failed). The pid file names the run that has it; one left by a run that
 * ended (killed, crashed) is taken over. Returns what lets it go.
 */
export function claimEmulator(projectDir: string): () => void {
  const file = emulatorPidFile(projectDir);
  mkdirSync(join(projectDir, ".nitric-like"), { recursive: true });
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(file, "wx", 0o600);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      let holder = Number.NaN;
      try {
        holder = Number.parseInt(readFileSync(file, "utf8"), 10);
      } catch {
        // Gone meanwhile: take it on the next attempt.
      }
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && alive(holder)) {
        throw Object.assign(
          new Error(
            `another "nitric-like run --provider aws" of this project is running (process ${holder}): one at a time can use its emulator (.nitric-like/aws-run and its DynamoDB data); stop that one first, or run this one on the local provider. If no such run is going, delete ${relative(process.cwd(), file) || file}`,
          ),
          { userFacing: true },
        );
      }
      rmSync(file, { force: true });
      continue;
    }
    writeSync(fd, `${process.pid}\n`);
    closeSync(fd);
    return () => {
      try {
        if (Number.parseInt(readFileSync(file, "utf8"), 10) === process.pid) rmSync(file, { force: true });
      } catch {
        // Already gone.
      }
    };
  }
  throw new Error(`could not take ${file}: other processes keep making it; try again`);
}

/**
 * The dashboard's view of the emulator: its connections and their traffic, sending and closing as
 * the Management API would, and its kv stores, read and written in their DynamoDB tables through
 * the runtime's own store (its sharded keys), as a function with every permission would.
 */
class EmulatorInspector implements ProviderInspector {
  private readonly listeners = new Set<(event: TrafficEvent) => void>();

  /** Reads rooms and state from the emulated connections table, where the functions keep them. */
  private dynamo: DynamoDBClient | undefined;
  /** The kv stores, in the tables the template gives the functions. */
  private stores!: DynamoKvStores;
  private emulator!: Emulator;

  constructor(
    emulator: Emulator,
    private readonly dynamodbEndpoint: string,
    /** run's secret store, once a deployment had a secret. */
    private readonly secrets: () => SecretStore | undefined,
  ) {
    this.attach(emulator);
  }

  async secretVersions(): Promise<{ name: string; version: string }[]> {
    return [...(this.secrets()?.list() ?? [])];
  }

  /** Inspects `emulator` from now on (a redeploy started a new one): its tables, its traffic. */
  attach(emulator: Emulator): void {
    this.dynamo?.destroy();
    this.emulator = emulator;
    const { dynamodbEndpoint } = this;
    this.dynamo = emulator.connectionsTable
      ? new DynamoDBClient({ endpoint: dynamodbEndpoint, region: "us-east-1", credentials: emulator.credentials })
      : undefined;
    // Every function's NITRIC_LIKE_KV_TABLES: each names the stores its service declared.
    const tables: Record<string, string> = dict();
    for (const fn of emulator.functions) {
      const named = JSON.parse(fn.env.NITRIC_LIKE_KV_TABLES ?? "{}") as Record<string, string>;
      for (const [store, table] of Object.entries(named)) tables[store] = table;
    }
    const env = {
      AWS_REGION: "us-east-1",
      AWS_ACCESS_KEY_ID: emulator.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: emulator.credentials.secretAccessKey,
      AWS_ENDPOINT_URL_DYNAMODB: dynamodbEndpoint,
    };
    this.stores = new DynamoKvStores(new DynamoDbClient(env), tables);
    if (this.listeners.size > 0) for (const api of emulator.apis.values()) api.observer = this.fanOut;
  }

  destroy(): void {
    this.dynamo?.destroy();
  }

  /**
   * Each listed connection's record (rooms and state) from the connections table, as the
   * functions wrote it: by `<socket>\u0000<id>`. Throws what DynamoDB says.
   */
  private async records(list: InspectedConnection[]): Promise<Map<string, { rooms: string[]; state: string }>> {
    const found = new Map<string, { rooms: string[]; state: string }>();
    const table = this.emulator.connectionsTable;
    if (!this.dynamo || !table) return found;
    // BatchGetItem takes at most 100 keys; the unprocessed ones are asked again.
    for (let i = 0; i < list.length; i += 100) {
      let keys: { socket: { S: string }; id: { S: string } }[] | undefined = list
        .slice(i, i + 100)
        .map((c) => ({ socket: { S: c.socket }, id: { S: c.id } }));
      for (let round = 0; keys && keys.length > 0 && round < 5; round++) {
        const out = await this.dynamo.send(
          new BatchGetItemCommand({
            RequestItems: {
              [table]: {
                Keys: keys,
                ProjectionExpression: "#s, id, #r, #st",
                ExpressionAttributeNames: { "#s": "socket", "#r": "rooms", "#st": "state" },
              },
            },
          }),
        );
        for (const item of out.Responses?.[table] ?? []) {
          const socket = item.socket?.S;
          const id = item.id?.S;
          if (socket === undefined || id === undefined) continue;
          found.set(`${socket}\u0000${id}`, { rooms: [...(item.rooms?.SS ?? [])].sort(), state: item.state?.S ?? "" });
        }
        keys = out.UnprocessedKeys?.[table]?.Keys as typeof keys;
      }
    }
    return found;
  }

  private api(socket: string) {
    return [...this.emulator.apis.values()].find((a) => a.socketName === socket);
  }

  private open(socket: string, id: string) {
    const c = this.api(socket)?.connections.get(id);
    return c && c.ws.readyState === c.ws.OPEN ? c : undefined;
  }

  async connections(socket?: string): Promise<InspectedConnection[]> {
    const list: InspectedConnection[] = [];
    for (const api of this.emulator.apis.values()) {
      if (socket !== undefined && api.socketName !== socket) continue;
      for (const [id, c] of api.connections)
        list.push({
          socket: api.socketName,
          id,
          connectedAt: c.connectedAt,
          query: c.query,
          headers: c.headers,
          remoteAddress: c.sourceIp,
          auth: typeof c.authorizer?.[IDENTITY_KEY] === "string" ? (c.authorizer[IDENTITY_KEY] as string) : "",
        });
    }
    if (list.length === 0) return list;
    if (!this.dynamo) {
      const unreadable = "this app keeps no connections table: no socket of it has rooms or state";
      return list.map((c) => ({ ...c, unreadable }));
    }
    let records: Map<string, { rooms: string[]; state: string }>;
    try {
      records = await this.records(list);
    } catch (error) {
      const unreadable = `the emulated connections table could not be read: ${(error as Error).message}`;
      return list.map((c) => ({ ...c, unreadable }));
    }
    return list.map((c) => {
      const record = records.get(`${c.socket}\u0000${c.id}`);
      // No record yet: its $connect has not finished (API Gateway lists it only once it has).
      return record ? { ...c, ...record } : { ...c, unreadable: "its record is not written yet" };
    });
  }
  async limits(): Promise<Record<string, never>> {
    return {};
  }
  /**
   * Posts as the Management API does for a function's send: over 128 KB refused with the words a
   * service's send gets (INVALID_ARGUMENT, the dashboard's 400), in frames of at most 32 KB, text
   * when the data is UTF-8 (API Gateway chooses the kind by the data, so `binary` cannot change
   * it), a client that does not read closed (closedNotReading, as the local provider says it).
   * False when the connection is not open.
   */
  async send(socket: string, connectionId: string, data: Uint8Array, _binary: boolean): Promise<boolean> {
    if (data.byteLength > AWS_MAX_MESSAGE_BYTES) throw awsPayloadTooLarge(socket);
    const sent = this.post(socket, connectionId, data);
    if (sent === "closed") throw closedNotReading(socket, connectionId);
    return sent;
  }
  async broadcast(socket: string, data: Uint8Array, _binary: boolean): Promise<number> {
    // Refused before any connection is sent it.
    if (data.byteLength > AWS_MAX_MESSAGE_BYTES) throw awsPayloadTooLarge(socket);
    let sent = 0;
    for (const id of this.api(socket)?.connections.keys() ?? []) if (this.post(socket, id, data) === true) sent++;
    return sent;
  }
  /** Posts to one connection: false when it is not open, "closed" when the post closed it (not reading). */
  private post(socket: string, connectionId: string, data: Uint8Array): boolean | "closed" {
    const api = this.api(socket);
    const c = this.open(socket, connectionId);
    if (!api || !c) return false;
    return api.post(connectionId, c, Buffer.from(data)) || "closed";
  }
  async close(socket: string, connectionId: string, code: number, reason: string): Promise<boolean> {
    const c = this.open(socket, connectionId);
    if (!c) return false;
    c.ws.close(code, reason);
    return true;
  }
  async kvKeys(store: string, prefix: string, limit: number): Promise<string[]> {
    refuse(kvPrefixProblem(store, prefix));
    const keys: string[] = [];
    if (limit <= 0) return keys;
    // Stopping the listing early stops asking DynamoDB for pages.
    for await (const key of this.stores.keys(store, prefix)) {
      keys.push(key);
      if (keys.length >= limit) break;
    }
    return keys;
  }
  async kvGet(store: string, key: string): Promise<Record<string, unknown> | undefined> {
    // A key no kv get() takes (over DynamoDB's key size, say) is refused with the words get() has.
    refuse(kvKeyProblem(store, "get", key));
    return this.stores.get(store, key);
  }
  async kvSet(store: string, key: string, value: Record<string, unknown>): Promise<void> {
    // Held to the rules of every kv set(): nothing DynamoDB would refuse or change.
    const problem = kvValueProblem(store, key, value);
    if (problem !== undefined) throw new Error(problem);
    await this.stores.set(store, key, value as JsonObject);
  }
  async kvDelete(store: string, key: string): Promise<void> {
    refuse(kvKeyProblem(store, "delete", key));
    return this.stores.delete(store, key);
  }
  private readonly fanOut = (event: TrafficEvent): void => {
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        // A broken listener must not break the API that reported the event.
      }
    }
  };

  onTraffic(listener: (event: TrafficEvent) => void): () => void {
    this.listeners.add(listener);
    for (const api of this.emulator.apis.values()) api.observer = this.fanOut;
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) for (const api of this.emulator.apis.values()) api.observer = undefined;
    };
  }
}

/** How an emulated run builds its app and starts an emulator on the build (startEmulated). */
interface Deployer {
  /** Builds the app from `spec` into the build folder, as for a deploy. */
  build(spec: Spec, variables: Readonly<Record<string, string>> | undefined): Promise<AwsBuild>;
  /** Starts an emulator on the build; a socket not pinned in the project file listens on `ports`' port for it. */
  start(ports?: ReadonlyMap<string, number>): Promise<Emulator>;
  /** Writes the credentials file for `emulator` (its endpoints). */
  describe(emulator: Emulator): void;
  /** Fires when the run stops (RunOptions.signal): a start or restart under way is given up. */
  signal: AbortSignal | undefined;
}

/** The emulated app, as the CLI sees a running provider. */
class EmulatedRun implements RunningProvider {
  readonly hostsServices = true;
  readonly inspect: EmulatorInspector;
  private expected: HandlerRegistration[];
  private outputListener: ((service: string, stream: "stdout" | "stderr", line: string) => void) | undefined;
  private readonly registrationListeners: (() => void)[] = [];
  /** The port each socket listened on, by name. */
  private readonly ports = new Map<string, number>();
  /** What every function gets from `--env-from` (RunOptions.variables, then a redeploy's). */
  private variables: Readonly<Record<string, string>> | undefined;
  /** The spec of the last deployment asked for. */
  private spec: Spec;
  /** Why no emulator runs, while none does: a redeploy built the app but could not start it. */
  private down: string | undefined;
  /** The files each service's function was given a copy of (its data read from beside its code). */
  private readonly data = new Map<string, readonly string[]>();
  /** The folders each service's function was given every data file of (dataFolders). */
  private readonly folders = new Map<string, readonly string[]>();
  /** The data files each service's code names that do not exist yet (awaitedFiles). */
  private readonly awaited = new Map<string, readonly string[]>();
  /** Where those copies are, in each service's function folder: a restart removes those it no longer copies. */
  private readonly copies = new Map<string, readonly string[]>();

  constructor(
    private emulator: Emulator,
    spec: Spec,
    private readonly deployer: Deployer,
    private readonly db: { close(): Promise<void> },
    private readonly projectDir: string,
    private readonly buildDir: string,
    dynamodbEndpoint: string,
    /** The credentials file, removed at stop (its credentials die with the run). */
    private readonly credentialsFile: string,
    /** Lets go of the project's emulator (claimEmulator), at stop. */
    private readonly release: () => void,
    variables: Readonly<Record<string, string>> | undefined,
    /** Closes run's secret store, if a deployment opened it, at stop. */
    private readonly closeSecrets: () => Promise<void>,
    /** run's secret store, once a deployment had a secret. */
    secrets: () => SecretStore | undefined,
    built: AwsBuild,
  ) {
    this.built(built);
    this.expected = specRegistrations(spec);
    this.spec = spec;
    this.variables = variables;
    this.inspect = new EmulatorInspector(emulator, dynamodbEndpoint, secrets);
  }

  /**
   * Bundles the service again into the build folder, as a deploy would, and restarts its function
   * worker on the new bundle. A bundle that fails leaves the running worker alone.
   */
  async restartService(service: ServiceEntry, onBuilt?: (ms: number) => void): Promise<void> {
    // No emulator since a redeploy failed to start one: the change deploys the app again instead.
    if (this.down !== undefined) return await this.redeploy(this.spec);
    try {
      const started = performance.now();
      const bundle = await bundleFunction(this.projectDir, service, this.buildDir);
      onBuilt?.(Math.round(performance.now() - started));
      // As the build copies them: the data its code reads from beside itself, maybe changed.
      const copied = copyBeside(bundle);
      const dir = dirname(bundle.file);
      // The worker scripts' bundles are written there by bundleFunction, as the build writes them.
      const now = [
        ...copied.map((f) => join(dir, ...f.name.split("/"))),
        ...bundle.workers.flatMap((w) => [w.file, w.map]),
      ];
      // A data file deleted (or no longer read) leaves the function, as it is not in a new build's,
      // and so does a worker's bundle no longer started (or now .mjs for .cjs): the function would
      // otherwise read the copy it was given before.
      for (const stale of (this.copies.get(service.name) ?? []).filter((path) => !now.includes(path)))
        removeCopy(stale, dir);
      this.data.set(service.name, [
        ...copied.map((f) => f.from),
        ...new Set(bundle.workers.flatMap((w) => w.ownSources)),
      ]);
      this.folders.set(service.name, besideFolders(copied));
      this.awaited.set(service.name, bundle.beside.awaited);
      this.copies.set(service.name, now);
    } finally {
      rmSync(join(this.buildDir, "entries"), { recursive: true, force: true });
    }
    await this.emulator.restartService(service.name, this.deployer.signal);
  }

  dataFiles(): ReadonlyMap<string, readonly string[]> {
    return this.data;
  }

  dataFolders(): ReadonlyMap<string, readonly string[]> {
    return this.folders;
  }

  awaitedFiles(): ReadonlyMap<string, readonly string[]> {
    return this.awaited;
  }

  /** Takes what `build` copied into each function, for dataFiles and dataFolders, and what it waits for (awaitedFiles). */
  private built(build: AwsBuild): void {
    this.data.clear();
    this.folders.clear();
    this.awaited.clear();
    this.copies.clear();
    for (const a of build.artifacts) {
      // A worker script's own files too: the function holds their bundle, as it holds a copy.
      this.data.set(a.service, [...a.sources, ...a.workerSources]);
      this.folders.set(a.service, a.sourceFolders);
      this.awaited.set(a.service, a.awaited);
      this.copies.set(a.service, [...a.beside, ...a.workers]);
    }
  }

  /**
   * Builds the app from `spec` and puts a new emulated deployment in place of the running one, as
   * `up` updates the stack when what the services declare changed: the running one's events in
   * flight get up to 2 s to answer, then its connections close (1001, going away; their
   * $disconnect events run), every socket this run served keeps its
   * port (when the port is taken meanwhile, a free one), the tables and their items stay, and so do the
   * credentials. A build that fails leaves the running deployment as it is.
   */
  async redeploy(spec: Spec, variables?: Readonly<Record<string, string>>): Promise<void> {
    if (variables !== undefined) this.variables = variables;
    this.spec = spec;
    this.built(await this.deployer.build(spec, this.variables));
    // Every socket this run has served, so a socket gone and back (a renamed service's) keeps its URL too.
    if (this.down === undefined) {
      for (const socket of this.emulator.sockets) this.ports.set(socket.name, Number(new URL(socket.url).port));
      // The events in flight get up to 2 s, as a function's restart on a save gives them.
      await this.emulator.stop(2000);
    }
    try {
      this.emulator = await this.deployer.start(this.ports);
    } catch (error) {
      // The old one is stopped: until a change deploys again (restartService, redeploy), none runs.
      this.down = `the emulated app is not running: ${(error as Error).message}`;
      // The run stops: the deploy is given up, and said so (which function's init it waited for).
      if (this.deployer.signal?.aborted)
        throw Object.assign(new Error(`deploying the emulated app again was given up: ${(error as Error).message}`), {
          userFacing: true,
        });
      throw Object.assign(
        new Error(
          `${(error as Error).message}\nthe emulated app is not running: fix that and save a service's file to deploy it again`,
        ),
        { userFacing: true },
      );
    }
    this.down = undefined;
    this.inspect.attach(this.emulator);
    if (this.outputListener) this.emulator.onServiceOutput(this.outputListener);
    this.expected = specRegistrations(spec);
    this.deployer.describe(this.emulator);
    for (const listener of this.registrationListeners) listener();
  }

  endpoint(service: string): Promise<string> {
    return Promise.reject(new Error(`provider aws: service "${service}" runs inside its emulated function`));
  }
  serviceStarting(): void {}
  serviceExited(): undefined {
    return undefined;
  }
  /** Every function finished its init, which waits for its handlers: the spec's registrations are live. */
  registrations(): HandlerRegistration[] {
    return this.expected;
  }
  /**
   * Registrations change only with a redeploy. So do message routes: a service saved with other
   * routes declares something else, and run deploys the emulated app again from the new spec (the
   * template's routes), so no routesChanged here.
   */
  onRegistrationsChanged(listener: () => void): void {
    this.registrationListeners.push(listener);
  }
  sockets(): { name: string; url: string }[] {
    return this.emulator.sockets;
  }
  failedServices(): ReadonlyMap<string, string> {
    const failed = new Map<string, string>();
    for (const fn of this.emulator.functions) {
      const why = this.down ?? fn.initError;
      if (why !== undefined) failed.set(fn.service, why);
    }
    return failed;
  }
  hostedServices(): ReadonlyMap<string, string> {
    const lines = new Map<string, string>();
    for (const fn of this.emulator.functions) {
      const [n, busy] = [fn.instanceCount, fn.busyCount];
      lines.set(
        fn.service,
        `${n} execution environment${n === 1 ? "" : "s"}, ${busy === 0 ? "idle" : `${busy} running an event`}`,
      );
    }
    return lines;
  }
  onServiceOutput(listener: (service: string, stream: "stdout" | "stderr", line: string) => void): void {
    this.outputListener = listener;
    this.emulator.onServiceOutput(listener);
  }
  async stop(): Promise<void> {
    if (this.down === undefined) await this.emulator.stop();
    this.inspect.destroy();
    await this.db.close();
    await this.closeSecrets();
    rmSync(this.credentialsFile, { force: true });
    this.release();
  }
}

/** The file in the build folder that holds a run's credentials and endpoints, in `.env` form. */
export const CREDENTIALS_FILE = "emulator.env";

/**
 * Writes the run's credentials and endpoints where only the user can read them (mode 0600; a file
 * left by an earlier run is replaced, not rewritten, so it cannot keep wider permissions).
 */
function writeCredentials(file: string, emulator: Emulator, dynamodbEndpoint: string): void {
  const lines = [
    "# `nitric-like run --provider aws`: this run's emulated endpoints and the credentials they take,",
    "# valid until the run stops. In a shell: set -a; . <this file>; set +a; then the AWS CLI or SDK.",
    `AWS_ACCESS_KEY_ID=${emulator.credentials.accessKeyId}`,
    `AWS_SECRET_ACCESS_KEY=${emulator.credentials.secretAccessKey}`,
    "AWS_REGION=us-east-1",
    "AWS_DEFAULT_REGION=us-east-1",
    `AWS_ENDPOINT_URL_DYNAMODB=${dynamodbEndpoint}`,
    `AWS_ENDPOINT_URL_LAMBDA=${emulator.managementUrl}`,
    `AWS_ENDPOINT_URL_SECRETS_MANAGER=${emulator.managementUrl}`,
    ...emulator.functions.map((fn) => `# the function of service "${fn.service}": ${fn.name}`),
    ...[...emulator.apis.values()].map(
      (api) =>
        `# the Management API of websocket "${api.socketName}": ${emulator.managementUrl}/${api.apiId}/${api.stage}`,
    ),
  ];
  rmSync(file, { force: true });
  writeFileSync(file, `${lines.join("\n")}\n`, { mode: 0o600 });
}

/** Builds the project and runs it in the emulator. */
/** What asks for errors with every stack frame (`run --verbose` sets it; the SDK's VERBOSE_ENV). */
const VERBOSE_VAR = "NITRIC_LIKE_VERBOSE";

export async function runEmulated(options: RunOptions): Promise<RunningProvider> {
  const { project } = options;
  const dirs = emulatedDirs(project.dir);
  const release = claimEmulator(project.dir);
  try {
    return await startEmulated(options, dirs, release);
  } catch (error) {
    release();
    throw error;
  }
}

/**
 * `logger`, no entry breaking into lines that read as entries of their own, as `run` prints every
 * line of a service's output as a line of its own: a line break in a message (a handler's error,
 * thrown with several lines) is written as `\n`, unless the line after it is indented, as the
 * emulator shows a failed init's message of several lines (indentedMessage, as `run` shows a local
 * service's), which no line at the start of a line of output can be taken for.
 */
function oneLineLogger(logger: Logger): Logger {
  const flat = (message: string) => message.replace(/\r?\n(?![ \t])/g, "\\n");
  return {
    info: (message) => logger.info(flat(message)),
    warn: (message) => logger.warn(flat(message)),
    error: (message) => logger.error(flat(message)),
    ...(logger.result === undefined ? {} : { result: (line: string) => logger.result?.(flat(line)) }),
  };
}

async function startEmulated(
  options: RunOptions,
  dirs: { build: string; data: string },
  release: () => void,
): Promise<RunningProvider> {
  const { project, spec } = options;
  const logger = oneLineLogger(options.logger);
  // One set of credentials for the run: the functions sign with them, the endpoints take no other.
  const credentials = runCredentials();
  const file = join(dirs.build, CREDENTIALS_FILE);
  const relativePath = relative(process.cwd(), file) || file;
  // As a shell takes it: quoted when it holds anything but a path's usual characters.
  const shown = /^[\w./-]+$/.test(relativePath) ? relativePath : `'${relativePath.replaceAll("'", `'\\''`)}'`;
  const hint = `sign it (SigV4) with this run's credentials: your functions' AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, also in ${shown}`;
  const build = (spec: Spec, variables: Readonly<Record<string, string>> | undefined) =>
    buildAws({
      project,
      spec,
      services: findServices(project),
      outDir: dirs.build,
      logger,
      // Its handler timeout, as the local provider takes it: the environment's over the file's.
      environment: options.environment ?? DEFAULT_RUN_ENVIRONMENT,
      ...(variables === undefined ? {} : { variables }),
    });
  // dynalite's thread (some 120 ms to start) starts while the functions are built.
  const [built, started] = await Promise.allSettled([
    build(spec, options.variables),
    startDynaliteThread(dirs.data, { credentials, hint, logger }),
  ]);
  if (built.status === "rejected") {
    if (started.status === "fulfilled") await started.value.close();
    throw built.reason;
  }
  if (started.status === "rejected") throw started.reason;
  const db = started.value;
  let secretStore: SecretStore | undefined;
  const deployer: Deployer = {
    build,
    start: (ports) =>
      startEmulator({
        buildDir: dirs.build,
        // A function's stack frames name the project's files, as the local provider's do.
        sourceDir: project.dir,
        // `run --verbose` (or NITRIC_LIKE_VERBOSE=1 given to run): errors with every frame, as a
        // local service, which inherits run's environment, prints them; a function gets only its own.
        ...(process.env[VERBOSE_VAR] ? { env: { [VERBOSE_VAR]: process.env[VERBOSE_VAR] } } : {}),
        dynamodbEndpoint: db.endpoint,
        // run's own secrets, as the local provider serves them: opened with the first template
        // that has a secret, kept across redeploys, closed at stop.
        secretStore: () => {
          secretStore ??= new SecretStore(secretsDirOf(project.dir));
          return secretStore;
        },
        credentials,
        credentialsHint: hint,
        // A socket pinned to a port in the project file listens there, as under the local
        // provider; on a redeploy, every other socket where it listened before, if that is free.
        port: (socket) => (options.randomPorts ? undefined : project.websockets[socket]?.port),
        formerPort: (socket) => ports?.get(socket),
        logger,
        ...(options.watch === false ? { restartsOnChange: false } : {}),
        ...(options.signal === undefined ? {} : { signal: options.signal }),
        // The project file's idle timeout and age limit (API Gateway's unless it shortens them), and
        // its upgrade timeout.
        limits: (socket) => socketLimitsOf(project, socket, options.environment ?? DEFAULT_RUN_ENVIRONMENT),
      }),
    describe: (emulator) => writeCredentials(file, emulator, db.endpoint),
    signal: options.signal,
  };
  let emulator: Emulator | undefined;
  try {
    emulator = await deployer.start();
    deployer.describe(emulator);
    // As the local provider says it: the declared secrets run's store has no value for yet.
    for (const r of spec.resources) {
      if (r.kind !== "secret" || secretStore === undefined) continue;
      if ((await secretStore.access(r.name, LATEST_VERSION)) === undefined) logger.warn(noValueYet(r.name));
    }
    logger.info(
      `the emulator's Lambda Invoke, Management and Secrets Manager APIs and its DynamoDB take only requests signed with this run's credentials; ${shown} has them and the endpoints, for the AWS CLI or SDK (set -a; . ${shown}; set +a)`,
    );
    return new EmulatedRun(
      emulator,
      spec,
      deployer,
      db,
      project.dir,
      dirs.build,
      db.endpoint,
      file,
      release,
      options.variables,
      async () => secretStore?.close(),
      () => secretStore,
      built.value,
    );
  } catch (error) {
    await emulator?.stop();
    await db.close();
    await secretStore?.close();
    throw error;
  }
}

/** Removes a copied data file from function folder `dir`, and the folders it leaves empty there. */
function removeCopy(path: string, dir: string): void {
  rmSync(path, { force: true });
  for (let at = dirname(path); at.startsWith(dir + sep); at = dirname(at)) {
    try {
      if (readdirSync(at).length > 0) return;
      rmdirSync(at);
    } catch {
      return;
    }
  }
}

/** Throws a kv rule's refusal (@nitric-like/spec), if there is one. */
function refuse(problem: string | undefined): void {
  if (problem !== undefined) throw new Error(problem);
}
