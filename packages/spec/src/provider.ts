/**
 * The provider interface: what a provider implements so that the CLI can run an app with it.
 * `local` is built in; any other `--provider NAME` loads the installed package NAME and uses its
 * default export (or its export `provider`). A provider implements what it supports: `run`
 * (local development), `build` (write deployable artifacts), `up` and `down` (deploy and remove).
 * The CLI runs the collect pass and the spec checks first, so a provider only ever gets an app
 * that passed them. An error a provider throws with `userFacing: true` is shown to the user as
 * its message alone (say what went wrong and how to fix it), and the CLI exits with its `exitCode`
 * (1 when it has none); any other error is a bug, shown with its stack.
 */
import type { AppLimits } from "./limits.js";
import type { Project, ServiceEntry } from "./project.js";
import type { Spec, WebsocketEvent } from "./spec.js";

/** Where a provider writes what users read: the CLI prefixes and colours it. */
export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
  /**
   * A line for standard output: what a service printed on its own stdout under `run`, which the
   * CLI prints on its stdout as it does a local service's. A logger without it takes it as info.
   */
  result?(line: string): void;
}

/** What the CLI gives a provider to run an app. */
export interface RunOptions {
  /** The project. */
  project: Project;
  /** The spec from the collect pass, so gateways can start before the services do. */
  spec: Spec;
  /** Where to log. */
  logger: Logger;
  /** Ignore the ports pinned in the project file and use ephemeral ones (tests, parallel runs). */
  randomPorts?: boolean;
  /**
   * The address the websocket gateways listen on (`--host`). @default "127.0.0.1": only this
   * machine can connect; anything else is an explicit choice, and the provider warns about it.
   */
  host?: string;
  /** The environment whose `environments.<name>` limits apply (`--env`). @default "local" */
  environment?: string;
  /**
   * Serve each service's endpoint on 127.0.0.1 too (`--tcp`), for SDKs that read
   * NITRIC_SERVICE_HOST and NITRIC_SERVICE_PORT and cannot dial a Unix socket. Any user of the
   * machine can reach it and act as the service; the provider warns. @default false
   */
  tcp?: boolean;
  /**
   * For a provider that hosts the services (an emulated cloud): the variables a deploy would put
   * into every function's environment (`--env-from`), as BuildOptions.variables.
   */
  variables?: Readonly<Record<string, string>>;
  /**
   * Whether `run` starts a service again when its files change. With false (`--no-watch`) a
   * provider that hosts the services says to fix a failure and start `run` again, not to save.
   * @default true
   */
  watch?: boolean;
  /**
   * Fires when the run stops (Ctrl-C, the test kit's `app.stop()`): a provider that is still
   * starting (an emulated function's init) gives up at once and rejects, having stopped what it
   * started and saying what it gave up; so do a restartService or redeploy under way, so the stop
   * waits for no init that hangs (stop() then ends what they started).
   */
  signal?: AbortSignal;
}

/** One live handler registration. */
export interface HandlerRegistration {
  service: string;
  socket: string;
  event: WebsocketEvent;
  /** For a message route's handler, the route's action. */
  route?: string;
}

/** One key per handler: a socket's event, or one of its message routes. */
export function registrationKey(r: { socket: string; event: WebsocketEvent; route?: string | undefined }): string {
  return `${r.socket}\u0000${r.event}\u0000${r.route ?? ""}`;
}

/** Every handler registration a spec promises: each socket event's, and each message route's. */
export function specRegistrations(spec: Spec): HandlerRegistration[] {
  const registrations: HandlerRegistration[] = [];
  for (const r of spec.resources) {
    if (r.kind !== "websocket") continue;
    for (const [event, service] of Object.entries(r.handlers))
      if (service !== undefined) registrations.push({ service, socket: r.name, event: event as WebsocketEvent });
    for (const { action, service } of r.routes ?? [])
      registrations.push({ service, socket: r.name, event: "message", route: action });
  }
  return registrations;
}

/** A running provider. */
export interface RunningProvider {
  /**
   * True when the provider starts the services itself (an emulated cloud runs each in its own
   * function); the CLI then starts none and only reports.
   */
  readonly hostsServices?: boolean;
  /** How long a handler may take to answer an event (the project's limit, for its environment). */
  readonly handlerTimeoutMs?: number;
  /**
   * The gRPC endpoint of a service: `127.0.0.1:port` when the provider serves it on TCP, else an
   * address such as `unix:<path>`. Each service has its own endpoint, which is how the provider
   * knows which service makes a call; it stays the same across restarts.
   */
  endpoint(service: string): Promise<string>;
  /**
   * The same endpoint at an address only this user's processes reach, faster than TCP (such as
   * `unix:<private folder>/1.sock`); when there is one, a service gets it as SERVICE_ADDRESS, while
   * NITRIC_SERVICE_HOST and NITRIC_SERVICE_PORT get the TCP endpoint when it is served.
   */
  localAddress?(service: string): Promise<string | undefined>;
  /**
   * The same endpoint as a MessagePort, for a service that runs as a worker thread of the
   * provider's own process: the port carries the contract's calls without gRPC's HTTP/2 or a
   * process hop. Each call opens a new port; it closes when the worker ends.
   */
  openPort?(service: string): Promise<import("node:worker_threads").MessagePort>;
  /**
   * Serves `port` as the service's endpoint, as openPort does with a port of its own: the caller
   * made the channel and gave its other end to a worker thread that started before the provider
   * was up (calls made in the meantime wait in the port).
   */
  servePort?(service: string, port: import("node:worker_threads").MessagePort): Promise<void>;
  /**
   * The same endpoint as one end of a port whose other end the provider serves on this same
   * thread, for a service that runs on the provider's own thread (`run --single-thread`): what
   * either end posts reaches the other a microtask later, not cloned, with no thread to wake. The
   * caller hands it to the service's entry and closes it when the service stops.
   */
  openLocalPort?(service: string): Promise<{ close(): void }>;
  /** Tells the provider a service's process is (re)starting: its old handler streams are gone. */
  serviceStarting(service: string): void;
  /**
   * Tells the provider the CLI is about to stop a service on purpose (a code change restarts it,
   * or its file is gone): it sends the service no new event (they wait for its next copy), and
   * resolves once the events it was sent are answered, or after `graceMs`, so that no handler is
   * ended halfway and run again.
   */
  serviceStopping?(service: string, graceMs: number): Promise<void>;
  /**
   * Tells the provider a service's process has exited: `died` (default true) when on its own (a
   * crash, process.exit), false when the CLI stopped it (a code change, Ctrl-C). Events the
   * service had not answered are redelivered when it is back; a delivery that ended with the
   * service dying counts against the event, which is dropped after a few (a poison event). Returns
   * how many events the service had in flight when it ended, when the provider knows (0: the death
   * was not an event's doing).
   */
  serviceExited(service: string, code: number | null, signal: string | null, died?: boolean): number | undefined;
  /**
   * Tells the provider a service is gone for good (`run` stopped it: its file was deleted or
   * renamed); `why` completes "its service X ...", as "was removed: services/chat.ts is gone". Its
   * handlers' events may still wait for another service to register them (a renamed file's).
   */
  serviceRemoved?(service: string, why: string): void;
  /**
   * Tells the provider a service is not running and nothing restarts it until one of its files
   * changes (it failed to start, or crashes in a loop; `watching` false: under run --no-watch,
   * nothing does). Its events fail at once, saying so, until serviceStarting. Why it failed is
   * not given: that is for run's log, never for clients.
   */
  serviceWaiting?(service: string, watching: boolean): void;
  /**
   * Tells the provider the spec changed while it runs (a service was collected again after a
   * save): a provider that selects message routes itself follows the new routes, and stops
   * waiting for handlers a service of the spec no longer declares. `registered`: every handler
   * the services' latest collect passes saw each register, those a spec with errors leaves out
   * (two services that handle one event, midway through moving a handler) included: a provider
   * that refuses handlers registered after a service started does not refuse those.
   * `authorizing`: the same for authorizers (`websocket(name, { authorize })`).
   */
  routesChanged?(
    spec: Spec,
    registered?: readonly HandlerRegistration[],
    authorizing?: readonly { service: string; socket: string }[],
  ): void;
  /**
   * Tells the provider a service is being collected again (a save): until `done` settles, what it
   * declares is not yet in the spec, so a provider that refuses declarations the spec lacks
   * (declarations made after a service started, which a deployment would not include) waits for
   * the spec that `done` brings before it answers them.
   */
  collecting?(service: string, done: Promise<unknown>): void;
  /** The handler registrations live now. */
  registrations(): HandlerRegistration[];
  /** Calls back whenever registrations change, and when a socket starts listening (sockets() changed). */
  onRegistrationsChanged(listener: () => void): void;
  /** Each socket's name and the URL clients connect to. */
  sockets(): { name: string; url: string }[];
  /**
   * For a provider that hosts the services: builds one service again from its files and restarts
   * it (`run` calls it when the service's files change). Rejects, keeping the running version,
   * when the new code does not build or start. `onBuilt` hears how long the service's bundle took
   * (`run --verbose` says it, as it says the bundles it makes itself).
   */
  restartService?(service: ServiceEntry, onBuilt?: (ms: number) => void): Promise<void>;
  /**
   * For a provider that hosts the services: builds the whole app again from `spec` and replaces
   * the running deployment with it, as a deploy updates a stack (`run` calls it when a service is
   * added or removed, or declares something else). Client connections close; a socket keeps its
   * URL. `variables`, when given, replace RunOptions.variables from now on (an `--env-from` file
   * changed). Rejects, keeping the running deployment, when the app does not build.
   */
  redeploy?(spec: Spec, variables?: Readonly<Record<string, string>>): Promise<void>;
  /**
   * For a provider that hosts the services: the files the build copied into each service's
   * function besides its code (data its code reads from beside itself), by service, absolute.
   * `run` watches them as it watches the services' code: a change to one restarts the service
   * (restartService), which copies it again.
   */
  dataFiles?(): ReadonlyMap<string, readonly string[]>;
  /**
   * For a provider that hosts the services: the folders whose every data file the build copied
   * into each service's function (a read named the folder), by service, absolute. `run` watches
   * them and their subfolders: a file added, changed or deleted in one restarts the service.
   */
  dataFolders?(): ReadonlyMap<string, readonly string[]>;
  /**
   * For a provider that hosts the services: the files each service's own code names as data
   * beside it (a string literal such as `"./greeting.txt"`) that do not exist yet, by service,
   * absolute. `run` watches for exactly these names: one made restarts the service, whose new
   * build copies it.
   */
  awaitedFiles?(): ReadonlyMap<string, readonly string[]>;
  /**
   * For a provider that hosts the services: each service's function whose init failed, with why
   * (the dashboard shows it); a service not listed is running.
   */
  failedServices?(): ReadonlyMap<string, string>;
  /**
   * For a provider that hosts the services: a line on each service's function as it runs now (the
   * dashboard shows it under the service's state), such as how many copies of it run.
   */
  hostedServices?(): ReadonlyMap<string, string>;
  /** For a provider that hosts the services: hears each line a service prints (the dashboard shows them). */
  onServiceOutput?(listener: (service: string, stream: "stdout" | "stderr", line: string) => void): void;
  /** Closes client connections (1001, going away), ends handler streams, closes stores. */
  stop(): Promise<void>;
  /**
   * Looking inside the running app, for the local dashboard: live connections, their traffic, and
   * the kv stores. Optional: a provider without it still runs, and the dashboard shows only the spec.
   */
  readonly inspect?: ProviderInspector;
}

/** One live connection, as the inspector shows it. */
export interface InspectedConnection {
  socket: string;
  id: string;
  /** Milliseconds since the epoch. */
  connectedAt: number;
  /** Every value of each query parameter, decoded. */
  query: Record<string, string[]>;
  /** Request headers, names lower case. */
  headers: Record<string, string[]>;
  remoteAddress: string;
  /** The identity its socket's authorizer gave it, JSON-encoded; "" when none. */
  auth: string;
  /** Its rooms; undefined when the provider cannot tell (then `unreadable` says why). */
  rooms?: string[];
  /** Its state, JSON-encoded ("" for none); undefined when the provider cannot tell. */
  state?: string;
  /** Why rooms and state are missing, when they are. */
  unreadable?: string;
}

/**
 * Something that happened on a socket. `data` is the frame exactly as sent, not copied: read it
 * before the listener returns.
 */
export type TrafficEvent =
  | {
      type: "message";
      /** `in`: from the client; `out`: to it (a send, a broadcast, a reply). */
      direction: "in" | "out";
      socket: string;
      connectionId: string;
      data: Uint8Array;
      binary: boolean;
      /** Milliseconds since the epoch. */
      at: number;
    }
  | { type: "open"; socket: string; connectionId: string; at: number }
  | { type: "close"; socket: string; connectionId: string; code: number; reason: string; at: number }
  /** A connection request the gateway answered with an HTTP error (a limit, an origin, a connect handler's refusal). */
  | { type: "refused"; socket: string; status: number; reason: string; at: number }
  /**
   * An event of a connection that its handler did not handle: it threw (its service printed why),
   * timed out, was unavailable or killed its service. `message` says which, in one line.
   */
  | {
      type: "error";
      socket: string;
      connectionId: string;
      event: "connect" | "message" | "disconnect";
      message: string;
      at: number;
    };

/**
 * A provider-neutral view into a running app. Every method acts as the provider itself, not as a
 * service: no `.allow()` applies. Messages sent through it show up in the traffic like any other.
 */
export interface ProviderInspector {
  /**
   * Set when this provider cannot show or edit its kv stores: why, in a sentence the dashboard
   * shows in place of its kv browser (the kv methods then reject).
   */
  readonly kvUnavailable?: string;
  /** The open connections of one socket, or of every socket. */
  connections(socket?: string): Promise<InspectedConnection[]>;
  /** The limits each running socket applies, by socket name. */
  limits(): Promise<Record<string, AppLimits>>;
  /**
   * Sends one frame to a connection; false when it is not connected. Throws UNAVAILABLE
   * (provider-kit's closedNotReading) when this send closed it with 1008, its client not reading.
   */
  send(socket: string, connectionId: string, data: Uint8Array, binary: boolean): Promise<boolean>;
  /** Sends one frame to every connection of a socket; resolves with how many got it. */
  broadcast(socket: string, data: Uint8Array, binary: boolean): Promise<number>;
  /** Closes a connection; false when it is not connected. */
  close(socket: string, connectionId: string, code: number, reason: string): Promise<boolean>;
  /** Keys of a kv store that start with `prefix`, in byte order, at most `limit`. */
  kvKeys(store: string, prefix: string, limit: number): Promise<string[]>;
  /** A value; undefined when the key is missing. */
  kvGet(store: string, key: string): Promise<Record<string, unknown> | undefined>;
  /** Writes a value (a JSON object); resolves once it is durable. */
  kvSet(store: string, key: string, value: Record<string, unknown>): Promise<void>;
  /** Deletes a key; deleting a missing key succeeds. */
  kvDelete(store: string, key: string): Promise<void>;
  /** Each secret that has a value, with its newest version's id; never a value. */
  secretVersions?(): Promise<{ name: string; version: string }[]>;
  /**
   * Calls `listener` for every frame in or out and every connection opened or closed, until the
   * returned function is called. While nobody listens, the message path does no extra work.
   */
  onTraffic(listener: (event: TrafficEvent) => void): () => void;
}

/** What the CLI gives a provider to build an app. */
export interface BuildOptions {
  /** The project. */
  project: Project;
  /** The checked spec. */
  spec: Spec;
  /** Every service with its entry file. */
  services: ServiceEntry[];
  /** Where to write, absolute; the provider creates it. */
  outDir: string;
  /** Where to log progress. */
  logger: Logger;
  /**
   * Variables for every function's environment (`--env-from`), name → value. The provider checks
   * the names and sizes its platform takes before anything is bundled or deployed.
   */
  variables?: Readonly<Record<string, string>>;
  /**
   * Which `environments.<name>` of the project file applies (`--env`): its sockets' domains and its
   * handler timeout. @default none
   */
  environment?: string;
}

/** What a build wrote. */
export interface BuildResult {
  /** Absolute paths of the files written, the main one first. */
  files: string[];
}

/** What the CLI gives a provider to deploy an app (it builds first, into `outDir`). */
export interface DeployOptions extends BuildOptions {
  /** The stack (deployment) name. */
  stack: string;
  /** The region, when given on the command line. */
  region?: string;
  /**
   * Asked before the deploy deletes stores that hold data (a store no service declares any more,
   * or one whose storage it replaces), with those stores; false stops the deploy with nothing
   * changed. Without it the data is deleted.
   */
  confirmDataLoss?: (stores: StoredData[]) => Promise<boolean>;
}

/** A finished deployment. */
export interface DeployResult {
  /** Each socket's name and the URL clients connect to. */
  sockets: { name: string; url: string }[];
  /** False when the deployment was already up to date. */
  changed: boolean;
  /** Everything the deployment reports about itself (for aws: the stack's outputs), by name. */
  outputs?: Record<string, string>;
  /** What the user still has to do, one sentence each (for aws: the DNS record of a custom domain). */
  notes?: string[];
}

/** A deployment as it is now (`nitric-like outputs`). */
export interface DeployedOutputs {
  /** Each socket's name and the URL clients connect to. */
  sockets: { name: string; url: string }[];
  /** Everything the deployment reports about itself (for aws: the stack's outputs), by name. */
  outputs: Record<string, string>;
  /** The deployment's state in the provider's words (for aws: the stack status). */
  status?: string;
}

/** What the CLI gives a provider to remove a deployment. */
export interface DestroyOptions {
  /** The project. */
  project: Project;
  /** The stack (deployment) name. */
  stack: string;
  /** The region, when given on the command line. */
  region?: string;
  /** Where to log progress. */
  logger: Logger;
  /** (down) Keep the kv stores' data: their tables outlive the deployment. */
  keepData?: boolean;
  /**
   * (down) Asked before deleting stores that hold data, with those stores; false stops the delete
   * with nothing deleted. Without it the data is deleted.
   */
  confirmDataLoss?: (stores: StoredData[]) => Promise<boolean>;
}

/** A kv store's storage in a deployment (for aws: its DynamoDB table). */
export interface StoredData {
  /** The store's name in the app. */
  store: string;
  /** Where its data is (for aws: the table's name). */
  name: string;
}

/** What `down` did. */
export interface DestroyResult {
  /** The stores whose data was kept (`keepData`), and where. */
  kept?: StoredData[];
  /** The secrets kept (`keepData`), and where (for aws: the secret's ARN). */
  keptSecrets?: { secret: string; name: string }[];
}

/** What the CLI gives a provider to check a deploy can start, before anything is bundled. */
export interface PreflightOptions {
  /** The stack (deployment) name. */
  stack: string;
  /** The region, when given on the command line. */
  region?: string;
  /** Where to log progress. */
  logger: Logger;
  /** What is about to happen. */
  action: "up" | "down";
}

/** What the CLI gives a provider to read a deployment's logs for `nitric-like logs`. */
export interface LogsOptions {
  /** The stack (deployment) name. */
  stack: string;
  /** The region, when given on the command line. */
  region?: string;
  /** Where to log progress. */
  logger: Logger;
  /** The earliest line to read (Date.now() milliseconds). */
  since: number;
  /** Only this service's lines. */
  service?: string;
  /** Keep reading new lines until `signal` aborts. */
  follow: boolean;
  /** Ends a `follow`. */
  signal?: AbortSignal;
}

/** One line a deployed service logged. */
export interface LogLine {
  /** The service that logged it. */
  service: string;
  /** When (Date.now() milliseconds). */
  time: number;
  /** The line, without its line break. */
  message: string;
}

/** A provider package's export. */
export interface Provider {
  /** The provider's name, as given to `--provider`. */
  readonly name: string;
  /** Starts the provider for `nitric-like run`. */
  run?(options: RunOptions): Promise<RunningProvider>;
  /** Writes deployable artifacts for `nitric-like build`. */
  build?(options: BuildOptions): Promise<BuildResult>;
  /** Deploys for `nitric-like up`. */
  up?(options: DeployOptions): Promise<DeployResult>;
  /** Removes a deployment for `nitric-like down`. */
  down?(options: DestroyOptions): Promise<DestroyResult | undefined>;
  /**
   * Checks, before `up` bundles anything (and before `down`), that the deploy can start: the stack
   * name, region and credentials, and a stack stuck in a state only the user can clear. Throws an
   * Error with `userFacing` saying what to do. Resolves with the region it would use, when it has
   * regions.
   */
  preflight?(options: PreflightOptions): Promise<{ region?: string } | undefined>;
  /**
   * Why `stack` cannot name a deployment of this provider, as `<command>: ...` ending with the
   * fix; undefined when it can. The CLI asks it first, before anything is bundled or any cloud
   * is called, in every command that takes `--stack` (up, down, outputs, logs, connect, secret put).
   */
  stackNameProblem?(stack: string, command: string): string | undefined;
  /** Describes a deployment for `nitric-like outputs`: its socket URLs and outputs again. */
  outputs?(options: DestroyOptions): Promise<DeployedOutputs>;
  /**
   * A deployment's log lines for `nitric-like logs`, oldest first, from `since`; with `follow`,
   * new ones as they come until `signal` aborts. Throws an Error with `userFacing` when the
   * deployment or its logs cannot be read.
   */
  logs?(options: LogsOptions): AsyncIterable<LogLine>;
  /**
   * Stores a value as a declared secret's newest version for `nitric-like secret put`, where the
   * deployment `stack` keeps it (the local provider: the project's own store; `stack` is ignored).
   * Resolves with the new version's id, and where it is (for aws: the secret's ARN). Throws an Error
   * with `userFacing` when the secret or the deployment is not there.
   */
  putSecret?(options: SecretPutOptions): Promise<{ version: string; where?: string }>;
  /**
   * Checks, before `secret put` asks for the value at the terminal, that putSecret could store it
   * (for aws: the stack is deployed with that secret, and the credentials and region work), so a
   * value is not typed for nothing. Throws an Error with `userFacing` saying what to do.
   */
  checkSecret?(options: Omit<SecretPutOptions, "value">): Promise<void>;
}

/** What the CLI gives a provider to store a secret's value (`nitric-like secret put`). */
export interface SecretPutOptions {
  /** The project. */
  project: Project;
  /** The stack (deployment) name. */
  stack: string;
  /** The region, when given on the command line. */
  region?: string;
  /** The secret's name in the app; the CLI has checked that a service declares it. */
  secret: string;
  /** The value, checked by @nitric-like/spec's secretValueProblem. */
  value: Uint8Array;
  /** Where to log progress. */
  logger: Logger;
}
