/**
 * The local provider: WebSocket gateways (ws), kv stores and secrets (lmdb) on this machine, served to each
 * service over its own endpoint (endpoint.ts): MessagePorts for a service running as a worker
 * thread of this process; gRPC for a service process, on a Unix socket in this run's private
 * folder, and on 127.0.0.1 only when asked (`tcp`).
 */

import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { MessageChannel, type MessagePort } from "node:worker_threads";
import {
  AuthorizerRegistry,
  AWS_MAX_HANDLER_TIMEOUT_MS,
  AWS_MAX_MESSAGE_BYTES,
  CollectedDeclarations,
  createRunDir,
  currentUid,
  HandlerRegistry,
  noValueYet,
  Permissions,
  type RunDir,
  removeStaleRunDirs,
} from "@nitric-like/provider-kit";
import { SecretStore, secretsDirOf } from "@nitric-like/provider-kit/secret-store";
import { LocalPort } from "@nitric-like/rpc";
import {
  type AppLimits,
  compareNames,
  DEFAULT_LIMITS,
  DEFAULT_RUN_ENVIRONMENT,
  formatDuration,
  type HandlerRegistration,
  LATEST_VERSION,
  type Logger,
  type Provider,
  type RunningProvider,
  type RunOptions,
  resolveLimits,
  type SecretPutOptions,
  type Spec,
  socketLimitsOf,
  specRegistrations,
} from "@nitric-like/spec";
import {
  createEndpoint,
  type Endpoint,
  type GrpcEndpoint,
  type GrpcOptions,
  serveGrpc,
  stopEndpoint,
} from "./endpoint.js";
import { LocalInspector } from "./inspect.js";
import { KvStores } from "./kv/store.js";
import { FlowBudget } from "./websocket/flow.js";
import { Gateway } from "./websocket/gateway.js";

/** Options of the local provider beyond what every provider gets. */
export interface LocalProviderOptions extends RunOptions {
  /** Where kv stores live. @default `<project>/.nitric-like/kv` */
  dataDir?: string;
  /** Where secrets live, opened when a service declares one. @default `<project>/.nitric-like/secrets` */
  secretsDir?: string;
  /** How long a handler may take to answer an event. @default the project's limits.handlerTimeout, else 5000 (as Ampt) */
  handlerTimeoutMs?: number;
  /** How long an event waits for a handler that is restarting. @default 10000 */
  handlerWaitMs?: number;
  /** Largest message a client may send, in bytes. @default the project's limits, else 131072 (128 KiB, as API Gateway) */
  maxMessageBytes?: number;
  /** Limits over the project file's, for every socket (tests). */
  limits?: Partial<AppLimits>;
  /** Internal, for tests: bounds of every service's gRPC endpoint below their defaults. */
  grpcLimits?: GrpcOptions["limits"];
}

/** True for addresses only this machine can reach. */
function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\./.test(host);
}

/** A running local provider. */
export class LocalProvider implements RunningProvider {
  private readonly stores: KvStores;
  private readonly permissions = new Permissions();
  private readonly handlers: HandlerRegistry;
  private readonly authorizers: AuthorizerRegistry;
  private readonly gateways = new Map<string, Gateway>();
  private readonly starting = new Map<string, Promise<Gateway>>();
  /**
   * Told when a gateway starts listening (sockets() changed). A socket declared while the provider
   * runs (a service file added or saved) may start after its service's handlers registered, as
   * @nitric/sdk opens its handler streams without waiting for its declaration's answer.
   */
  private readonly socketListeners: (() => void)[] = [];
  private readonly endpoints = new Map<string, Endpoint>();
  private readonly declaredStores = new Set<string>();
  private readonly declaredSecrets = new Set<string>();
  /** The project's secrets, opened with the first secret declared. */
  private secretStore: SecretStore | undefined;
  private readonly unserved = new Set<string>();
  /** What the collect pass found, which declarations made after a service started are checked against. */
  private readonly collected: CollectedDeclarations;
  /** Each socket's message routes and the property that selects them, from the spec (routesChanged). */
  private readonly routes = new Map<string, { actions: string[]; routeBy: string | undefined }>();
  private stopped: Promise<void> | undefined;
  private readonly logger: Logger;
  readonly handlerTimeoutMs: number;
  /** Serve the endpoints on 127.0.0.1 too (always where there are no Unix users). */
  private readonly tcp: boolean;
  private readonly grpcLimits: GrpcOptions["limits"];
  /** The private folder of the endpoints' Unix sockets, made with the first endpoint. */
  private runDir: RunDir | undefined;
  /** Why a socket's gateway failed to start, by socket, until one starts. */
  private readonly gatewayFailures = new Map<string, string>();
  private socketCount = 0;
  /** Bytes waiting for handlers and for slow clients, over every gateway. */
  private readonly flow: FlowBudget;
  /** Connections, traffic and kv values, for the dashboard. */
  readonly inspect: LocalInspector;

  constructor(private readonly options: LocalProviderOptions) {
    this.logger = options.logger;
    this.collected = new CollectedDeclarations(options.spec, options.logger);
    const dataDir = options.dataDir ?? join(options.project.dir, ".nitric-like", "kv");
    try {
      this.stores = new KvStores(dataDir);
    } catch (error) {
      // lmdb says "Permission denied: Attempting to setup locks" and nothing of where.
      const e = error as NodeJS.ErrnoException & { userFacing?: boolean };
      if ((e.code !== undefined && e.path !== undefined) || e.userFacing === true) throw error;
      throw Object.assign(
        new Error(
          `kv: cannot open the stores in ${JSON.stringify(dataDir)} (${e.message}); make that folder writable by this user, or remove it if its data can go`,
          { cause: error },
        ),
        { userFacing: true },
      );
    }
    const asked =
      options.handlerTimeoutMs ??
      options.project.environments?.[options.environment ?? DEFAULT_RUN_ENVIRONMENT]?.limits?.handlerTimeoutMs ??
      options.project.limits?.handlerTimeoutMs ??
      DEFAULT_LIMITS.handlerTimeoutMs;
    // compat: aws keeps API Gateway's rules, what it waits for a function among them.
    const handlerTimeoutMs = options.project.compat === "aws" ? Math.min(asked, AWS_MAX_HANDLER_TIMEOUT_MS) : asked;
    this.handlerTimeoutMs = handlerTimeoutMs;
    this.inspect = new LocalInspector(
      this.gateways,
      this.stores,
      handlerTimeoutMs,
      () => this.secretStore,
      (name) => this.whyNotRunning(name),
    );
    // The totals are top-level limits: the project's, its environment's, then the options'.
    const env = options.project.environments?.[options.environment ?? DEFAULT_RUN_ENVIRONMENT];
    const totals = resolveLimits(options.project.limits, env?.limits, options.limits);
    this.flow = new FlowBudget(totals.maxPendingBytesTotal, totals.maxQueuedBytesTotal);
    if (options.host !== undefined && !isLoopback(options.host)) {
      options.logger.warn(
        `--host ${options.host}: the websocket gateways accept connections from other machines; anyone who can reach this one can connect (the services' endpoints stay on this machine)`,
      );
    }
    if (options.project.compat === "aws") {
      options.logger.info(
        `compat: aws: the websocket gateways keep API Gateway's rules (a client's binary frame closes with 1003, frames over 32 KB and messages over 128 KB with 1009, sends over 128 KB are refused, handlers time out at ${formatDuration(AWS_MAX_HANDLER_TIMEOUT_MS)} at most)`,
      );
    }
    this.handlers = new HandlerRegistry(options.logger, handlerTimeoutMs, options.handlerWaitMs ?? 10000);
    this.authorizers = new AuthorizerRegistry(handlerTimeoutMs, options.handlerWaitMs ?? 10000);
    this.tcp = options.tcp === true || currentUid() === undefined;
    this.grpcLimits = options.grpcLimits;
  }

  /**
   * Starts the gateways of every socket in the spec, so their URLs are known before services start,
   * and opens the spec's kv stores with the grants each service declared in the collect pass: a
   * service whose handlers register before its own declarations arrive (the published
   * @nitric/sdk sends them in parallel) is not refused its first kv calls. Its declarations at run
   * time add to these, as they always did.
   */
  async start(): Promise<void> {
    // Sockets of runs killed with SIGKILL: only this user's, only of dead runs.
    removeStaleRunDirs();
    for (const r of this.options.spec.resources) {
      if (r.kind === "kv") {
        this.stores.store(r.name);
        this.declaredStores.add(r.name);
      }
      if (r.kind === "secret") this.openSecretsAtStart(r.name);
    }
    for (const r of this.options.spec.resources) {
      if (r.kind === "secret" && (await this.secrets().access(r.name, LATEST_VERSION)) === undefined) {
        this.logger.warn(noValueYet(r.name));
      }
    }
    for (const p of this.options.spec.policies) {
      this.permissions.grant(p.service, p.resource.kind, p.resource.name, p.permissions);
    }
    for (const r of specRegistrations(this.options.spec))
      if (r.route === undefined) this.handlers.expect(r.socket, r.event, r.service);
    for (const r of this.options.spec.resources)
      if (r.kind === "websocket" && r.authorizer) this.authorizers.expect(r.name, r.authorizer);
    await Promise.all(
      this.options.spec.resources.map(async (r) => {
        if (r.kind === "websocket") (await this.gateway(r.name)).allowOrigins(r.allowedOrigins ?? []);
      }),
    );
    this.routesChanged(this.options.spec);
  }

  /**
   * Each socket's message routes, from the spec: its gateway selects them, and the handlers of
   * routes are expected (a message for one waits while its service starts or restarts). A socket
   * not started yet gets its routes when it starts (gateway()). A handler a service of the spec no
   * longer declares is no longer waited for.
   */
  routesChanged(
    spec: Spec,
    registered?: readonly HandlerRegistration[],
    authorizing?: readonly { service: string; socket: string }[],
  ): void {
    this.collected.setSpec(spec, registered, authorizing);
    this.routes.clear();
    for (const r of spec.resources)
      if (r.kind === "websocket" && r.routes !== undefined)
        this.routes.set(r.name, { actions: r.routes.map((route) => route.action), routeBy: r.routeBy });
    const registrations = specRegistrations(spec);
    for (const r of registrations)
      if (r.route !== undefined) this.handlers.expect(r.socket, r.event, r.service, r.route);
    // A saved service that no longer declares a handler (a renamed socket): its events stop
    // waiting for it. A service gone from the spec (its file removed) keeps its handlers expected,
    // so a renamed file's service can take them over.
    for (const { name } of spec.services)
      this.handlers.expectOnly(
        name,
        registrations.filter((r) => r.service === name),
      );
    for (const [name, gateway] of this.gateways) this.giveRoutes(name, gateway);
  }

  collecting(service: string, done: Promise<unknown>): void {
    this.collected.collecting(service, done);
  }

  private giveRoutes(name: string, gateway: Gateway): void {
    const routes = this.routes.get(name);
    gateway.setRoutes(routes?.actions ?? [], routes?.routeBy);
  }

  /** Why socket `name` has no running gateway, with what to do: for the dashboard's 503. */
  private whyNotRunning(name: string): string {
    if (this.stopped) return "the local provider is stopping";
    const failure = this.gatewayFailures.get(name);
    // The failure names the socket already ('websocket "x": port 8080 is already in use; ...').
    if (failure !== undefined) return `its gateway failed to start: ${failure.replace(/^websocket "[^"]*": /, "")}`;
    if (this.starting.has(name)) return "its gateway is starting; try again in a moment";
    return "no running service has declared it yet (its gateway starts when one does); try again once its service has started";
  }

  private gateway(name: string): Promise<Gateway> {
    let pending = this.starting.get(name);
    if (!pending && this.stopped) {
      return Promise.reject(
        new Error(`websocket "${name}": the local provider is stopping; declare it after it restarts`),
      );
    }
    if (!pending) {
      const pinned = this.options.randomPorts ? undefined : this.options.project.websockets[name]?.port;
      const { project, maxMessageBytes } = this.options;
      const limits = socketLimitsOf(
        project,
        name,
        this.options.environment ?? DEFAULT_RUN_ENVIRONMENT,
        this.options.limits,
        maxMessageBytes === undefined ? undefined : { maxMessageBytes },
      );
      // compat: aws keeps API Gateway's rules, its 128 KB message limit among them.
      const aws = project.compat === "aws";
      if (aws) limits.maxMessageBytes = Math.min(limits.maxMessageBytes, AWS_MAX_MESSAGE_BYTES);
      const gateway = new Gateway(
        name,
        {
          port: pinned ?? 0,
          limits,
          flow: this.flow,
          authorizers: this.authorizers,
          ...(aws ? { awsRules: true } : {}),
          ...(this.options.host === undefined ? {} : { host: this.options.host }),
        },
        this.handlers,
        this.logger,
      );
      pending = gateway.start().then(() => {
        this.giveRoutes(name, gateway);
        this.gateways.set(name, gateway);
        this.gatewayFailures.delete(name);
        this.inspect.attach(gateway);
        for (const listener of this.socketListeners) listener();
        return gateway;
      });
      pending.catch((error: unknown) => {
        this.starting.delete(name);
        this.gatewayFailures.set(name, error instanceof Error ? error.message : String(error));
      });
      this.starting.set(name, pending);
    }
    return pending;
  }

  /**
   * The service's own gRPC endpoint, started on first use and kept across its restarts:
   * `127.0.0.1:port` when the provider serves TCP (`tcp`), else its Unix socket, `unix:<path>`.
   */
  async endpoint(service: string): Promise<string> {
    const e = await this.grpcEndpoint(service);
    return e.address || (e.localAddress ?? "");
  }

  /** The service's endpoint on its Unix socket (`unix:<path>` in this run's private folder), which services are given. */
  async localAddress(service: string): Promise<string | undefined> {
    return (await this.grpcEndpoint(service)).localAddress;
  }

  /** This run's private folder of sockets (tests); none before the first gRPC endpoint or where there are no Unix users. */
  get socketDir(): string | undefined {
    return this.runDir?.path;
  }

  /** A port served as the service's endpoint, for a service running as a worker thread of this process. */
  async openPort(service: string): Promise<MessagePort> {
    const { port1, port2 } = new MessageChannel();
    await this.servePort(service, port1);
    return port2;
  }

  /** One end of a same-thread port served as the service's endpoint, for a service on this thread (run --single-thread). */
  async openLocalPort(service: string): Promise<LocalPort> {
    const [served, given] = LocalPort.pair();
    this.serviceEndpoint(service).ports.serve(served);
    return given;
  }

  /** Serves a port the caller made as the service's endpoint (a thread started before this provider). */
  async servePort(service: string, port: MessagePort): Promise<void> {
    this.serviceEndpoint(service).ports.serve(port);
  }

  /** The service's endpoint (its router and its ports), made on first use; gRPC is started apart (grpcEndpoint). */
  private serviceEndpoint(service: string): Endpoint {
    if (this.stopped)
      throw new Error(`local provider: endpoint("${service}") asked after stop(); start a new provider`);
    let endpoint = this.endpoints.get(service);
    if (!endpoint) {
      endpoint = createEndpoint(service, {
        stores: this.stores,
        permissions: this.permissions,
        handlers: this.handlers,
        authorizers: this.authorizers,
        logger: this.logger,
        unserved: this.unserved,
        checkDeclaration: (caller, declaration) => this.collected.check(caller, declaration),
        checkRegistration: (caller, registration) => this.collected.checkRegistration(caller, registration),
        checkAuthorizer: (caller, socket) => this.collected.checkAuthorizer(caller, socket),
        refusal: (caller, kind, name) => this.collected.refusal(caller, kind, name),
        declared: (store) => this.declaredStores.has(store),
        secretDeclared: (name) => this.declaredSecrets.has(name),
        declareSecret: (name) => this.declareSecret(name),
        secrets: {
          put: (name, version, value) => this.secrets().put(name, version, value),
          access: (name, version) => this.secrets().access(name, version),
        },
        declareStore: (store) => {
          this.stores.store(store);
          this.declaredStores.add(store);
        },
        declareSocket: async (socket, origins) => {
          (await this.gateway(socket)).allowOrigins(origins);
        },
        gateway: (socket) => this.gateways.get(socket),
      });
      this.endpoints.set(service, endpoint);
    }
    return endpoint;
  }

  /**
   * declareSecret as the provider starts: a system error under the secrets' folder (a file where
   * the folder goes, a folder not this user's) is thrown as it is, for the CLI to explain with the
   * path and the fix, as the kv stores' are; while running, a declaration gets the wrapped error.
   */
  private openSecretsAtStart(name: string): void {
    try {
      this.declareSecret(name);
    } catch (error) {
      const cause = (error as { cause?: NodeJS.ErrnoException }).cause;
      if (cause?.code !== undefined && cause.path !== undefined) throw cause;
      throw error;
    }
  }

  /** Records a declared secret, opening the project's secrets with the first. */
  private declareSecret(name: string): void {
    this.secrets();
    this.declaredSecrets.add(name);
  }

  /** The project's secrets, opened on first use. */
  private secrets(): SecretStore {
    if (this.secretStore === undefined) {
      const dir = this.options.secretsDir ?? secretsDirOf(this.options.project.dir);
      try {
        this.secretStore = new SecretStore(dir);
      } catch (error) {
        if ((error as { userFacing?: unknown }).userFacing === true) throw error;
        throw Object.assign(
          new Error(
            `secrets: cannot open ${JSON.stringify(dir)} (${(error as Error).message}); make that folder this user's and writable, or remove it if its secrets can go`,
            { cause: error },
          ),
          { userFacing: true },
        );
      }
    }
    return this.secretStore;
  }

  /** The service's endpoint served over gRPC (for service processes), started on first use. */
  private async grpcEndpoint(service: string): Promise<GrpcEndpoint> {
    const endpoint = this.serviceEndpoint(service);
    return serveGrpc(endpoint, this.logger, () => {
      // Each gRPC endpoint's Unix socket is in this run's private folder, made with the first one.
      const limits = this.grpcLimits;
      if (currentUid() === undefined) return { tcp: this.tcp, limits };
      this.runDir ??= createRunDir();
      return { tcp: this.tcp, socketPath: join(this.runDir.path, `${++this.socketCount}.sock`), limits };
    });
  }

  /** Ends the handler streams of the service's previous process; its events wait for it to register again. */
  serviceStarting(service: string): void {
    this.handlers.serviceStarting(service);
    this.authorizers.serviceWaiting(service, undefined);
  }

  /**
   * Sends the service no new event or authorization (they wait for its next copy) and resolves
   * once what it was sent is answered, or after `graceMs` (see HandlerRegistry.drainService).
   */
  async serviceStopping(service: string, graceMs: number): Promise<void> {
    await Promise.all([this.handlers.drainService(service, graceMs), this.authorizers.drainService(service, graceMs)]);
  }

  /**
   * Ends the service's handler streams and remembers how it ended, for the errors of events that
   * wait for it in vain; when it died on its own, counts a fatal delivery against each event it had
   * not answered (see HandlerRegistry.serviceExited). Returns how many it had in flight.
   */
  serviceRemoved(service: string, why: string): void {
    this.handlers.serviceRemoved(service, why);
    this.authorizers.serviceRemoved(service, why);
  }

  serviceWaiting(service: string, watching: boolean): void {
    this.handlers.serviceWaiting(service, watching);
    this.authorizers.serviceWaiting(service, watching);
  }

  serviceExited(service: string, code: number | null, signal: string | null, died = true): number {
    return this.handlers.serviceExited(
      service,
      signal ? `was killed by ${signal}` : `exited with code ${code ?? "unknown"}`,
      died,
    );
  }

  /** The live handler streams, one per (socket, event). */
  registrations(): HandlerRegistration[] {
    return this.handlers.registrations();
  }

  /**
   * Calls `listener` after every registration, replacement and unregistration, and when a socket's
   * gateway starts listening (so a socket declared after its handlers registered is told too).
   */
  onRegistrationsChanged(listener: () => void): void {
    this.handlers.onChange(listener);
    this.socketListeners.push(listener);
  }

  /** Every running gateway's socket name and URL, sorted by name. */
  sockets(): { name: string; url: string }[] {
    return [...this.gateways.values()]
      .map((g) => ({ name: g.name, url: g.url }))
      .sort((a, b) => compareNames(a.name, b.name));
  }

  /** Open connections of a socket (tests, dashboard). */
  connectionCount(socket: string): number {
    return this.gateways.get(socket)?.size ?? 0;
  }

  /**
   * Drains, then stops: refuses new connections (503), waits for the handlers of events already
   * sent to answer (up to the handler timeout) so their replies reach the clients, closes clients
   * with 1001, lets their disconnect events reach the handlers (up to 1 s), ends the handler
   * streams with OK, then shuts the endpoints, gateways and lmdb. Idempotent.
   */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      // A gateway still starting (declared a moment ago) must be listening before it can be closed.
      await Promise.allSettled(this.starting.values());
      for (const g of this.gateways.values()) g.drain();
      const drainUntil = Date.now() + this.handlers.timeoutMs;
      while (this.handlers.pendingCount() > 0 && Date.now() < drainUntil) await new Promise((r) => setTimeout(r, 10));
      await Promise.all([...this.gateways.values()].map((g) => g.closeAll()));
      // Let the disconnect events of those closes reach their handlers.
      const deadline = Date.now() + 1000;
      while (this.handlers.pendingCount() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      this.handlers.endAll();
      this.authorizers.endAll();
      await Promise.all([...this.gateways.values()].map((g) => g.stop()));
      await Promise.all([...this.endpoints.values()].map((e) => stopEndpoint(e)));
      this.runDir?.remove();
      await this.stores.close();
      await this.secretStore?.close();
    })();
    return this.stopped;
  }
}

/** Starts a local provider. */
export async function createLocalProvider(options: LocalProviderOptions): Promise<LocalProvider> {
  const provider = new LocalProvider(options);
  try {
    await provider.start();
  } catch (error) {
    // One gateway failing (a pinned port in use) must not leave the others listening or lmdb open.
    await provider.stop();
    throw error;
  }
  return provider;
}

/**
 * Stores a secret's new version in the project's store for `nitric-like secret put`; a `run` of the
 * project serves it at the next access(), under either provider (lmdb lets both processes open the
 * store at once).
 */
async function putSecret(options: SecretPutOptions): Promise<{ version: string }> {
  const store = new SecretStore(secretsDirOf(options.project.dir));
  try {
    const version = randomUUID();
    await store.put(options.secret, version, options.value);
    return { version };
  } finally {
    await store.close();
  }
}

/** The local provider, as `--provider local` loads it. */
export const provider: Provider = {
  name: "local",
  run: (options) => createLocalProvider(options),
  putSecret,
};
