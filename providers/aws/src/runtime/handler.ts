/**
 * The Lambda runtime: hosts the contract's services in the function's own thread (the service's
 * code, written with our SDK or with @nitric/sdk, runs unchanged and calls them in-process),
 * loads that code, waits until it has registered its handlers, then turns API Gateway WebSocket
 * events into contract events: `$connect` → connect (a refusal answers its 4xx), `$disconnect` →
 * disconnect, `$default` → message (always text from API Gateway, which closes a client that
 * sends a binary frame with 1003; a base64 body would become binary), any other route → a message
 * for the message route of that name (`socket.route(action, ...)`: API Gateway selected it by the
 * message's `action`). Sends go through the
 * Management API, kv through DynamoDB, secrets through Secrets Manager.
 */
import type { WebsocketEventResponse } from "@nitric-like/contracts/websockets";
import {
  AuthorizerRegistry,
  AWS_DELIVERY_ENVELOPE_BYTES,
  AWS_INTEGRATION_TIMEOUT_MS,
  AWS_MAX_MESSAGE_BYTES,
  awsConnectReplies,
  awsReplyTooLarge,
  BurstLog,
  type CloseRequest,
  CollectedDeclarations,
  type ConnectionInfo,
  type ConnectRefusal,
  connectEvent,
  connectRefusal,
  type Frame,
  HandlerError,
  HandlerRegistry,
  LATE_CONNECT_NOTE,
  type LateAnswer,
  lateConnectAbandoned,
  lateConnectReason,
  offeredProtocols,
  originProblem,
  Permissions,
  serviceRouter,
  unansweredStatus,
  wireQuery,
} from "@nitric-like/provider-kit";
import { createMemoryTransport, type MemoryTransport, type Transport } from "@nitric-like/rpc";
import { type Logger, registrationKey, type Spec } from "@nitric-like/spec";
import { DynamoDbClient } from "../aws/dynamodb.js";
import { type ManagementApi, ManagementApiClient } from "../aws/management.js";
import { SecretsManagerClient } from "../aws/secretsmanager.js";
import { DynamoKvStores } from "../kv/store.js";
import { SecretsManagerSecrets } from "../secrets/store.js";
import { ConnectionsTable } from "../websocket/connections-table.js";
import { type BroadcastEvent, isBroadcastEvent } from "../websocket/fanout.js";
import { ApiGateway, Opening } from "../websocket/gateway.js";
import {
  type AuthorizerEvent,
  type AuthorizerResult,
  authorizedContext,
  authorizerResult,
  isAuthorizerEvent,
} from "./authorizer.js";
import { type Bindings, EMULATED_VAR, readBindings } from "./bindings.js";
import {
  type DeliverEvent,
  isDeliverEvent,
  isWebsocketEvent,
  multiValues,
  type WebsocketApiEvent,
  type WebsocketApiResult,
} from "./events.js";
import { invokeAsync } from "./invoke.js";
import {
  isLateDisconnectEvent,
  LATE_DISCONNECT,
  type LateDisconnectEvent,
  lateDisconnectProblem,
} from "./late-disconnect.js";

/** How long the first event waits for the service to register a handler it is expected to have. */
const REGISTRATION_WAIT_MS = 10_000;
/**
 * How long before API Gateway's integration timeout (AWS_INTEGRATION_TIMEOUT_MS from the request's
 * requestTimeEpoch) a connect handler's answer must come, for the runtime to record the connection
 * and its answer to reach API Gateway: past it the client is refused (504) whatever the handler
 * says, since API Gateway opens no connection on a late answer (and sends no $disconnect).
 */
const CONNECT_ANSWER_MARGIN_MS = 1_000;
/** How long a delivery of frames sent during connect waits for the connection to open, from when they were handed over. */
const DELIVERY_WAIT_MS = 5_000;
/**
 * How long a message event of a connection waits for the delivery of what its connect handler
 * sent, so that those frames reach the client before any answer to its messages (as locally).
 * Short: a waiting event holds an execution environment, and when every one a function may run is
 * held so (a burst of new clients that each send at once, past its concurrency), the delivery
 * invocations wait for one; past this the messages go on, and those frames may come after.
 */
const MESSAGE_WAITS_FOR_DELIVERY_MS = 1_000;
/** How often a waiting message event reads the connection's record again. */
const DELIVERY_POLL_MS = 20;

/** What a page of a broadcast leaves of the invocation's time, for pruning and the log line. */
const PAGE_MARGIN_MS = 3_000;

/** Hand-overs of broadcast pages: one attempt; fanout.ts retries only what Lambda refused as throttled. */
const HAND_OVER_RETRY = { attempts: 1, baseDelayMs: 0, throttlingBaseDelayMs: 0 };

/** Lambda's context object: the part the runtime reads. */
export interface LambdaContext {
  getRemainingTimeInMillis?: () => number;
}

/** Runtime options. */
export interface RuntimeOptions {
  /** Loads the service's code (in the bundle: imports it). */
  load: () => unknown;
  /**
   * Gives the SDKs in the bundle their transport to this runtime, before the service's code loads
   * (the generated entry passes each SDK's useTransport: ours, @nitric/sdk's compat adapter).
   */
  transport: (transport: Transport) => void;
  /** The environment. @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Where to log. @default console (CloudWatch) */
  logger?: Logger;
}

/**
 * The function's service as a spec of its own, from NITRIC_LIKE_DECLARED: the resources it declared
 * and its grants on them, which CollectedDeclarations checks its declarations against.
 */
function declaredSpec(bindings: Bindings): Spec {
  const service = bindings.service;
  const resources = bindings.declared?.resources ?? [];
  const spec: Spec = {
    name: "",
    services: [{ name: service, file: bindings.declared?.file ?? "" }],
    resources: resources.map((r) =>
      r.kind === "websocket"
        ? { kind: "websocket", name: r.name, declaredBy: [service], handlers: {} }
        : { kind: r.kind as "kv" | "secret", name: r.name, declaredBy: [service] },
    ),
    policies: resources
      .filter((r) => r.permissions.length > 0)
      .map((r) => ({ service, resource: { kind: r.kind, name: r.name }, permissions: [...r.permissions] })),
  };
  // The handlers the deployment routes to this function (NITRIC_LIKE_WEBSOCKETS), which are those
  // the collect pass saw the service register: a registration beyond them is refused.
  for (const [name, socket] of Object.entries(bindings.websockets)) {
    let r = spec.resources.find((x) => x.kind === "websocket" && x.name === name);
    if (r === undefined) {
      r = { kind: "websocket", name, declaredBy: [service], handlers: {} };
      spec.resources.push(r);
    }
    if (r.kind !== "websocket") continue;
    for (const event of socket.events) r.handlers[event] = service;
    if (socket.routes.length > 0) r.routes = socket.routes.map((action) => ({ action, service }));
    if (socket.authorize === true) r.authorizer = service;
  }
  return spec;
}

const consoleLogger: Logger = {
  info: (m) => console.log(`nitric-like: ${m}`),
  warn: (m) => console.warn(`nitric-like: warning: ${m}`),
  error: (m) => console.error(`nitric-like: error: ${m}`),
};

/** The started runtime of one function. */
export class Runtime {
  private readonly registry: HandlerRegistry;
  private readonly authorizers: AuthorizerRegistry;
  private readonly permissions = new Permissions();
  private readonly gateways = new Map<string, ApiGateway>();
  /** Per socket, a Management API client that does not retry: broadcast pages retry throttled posts themselves. */
  private readonly pageClients = new Map<string, ManagementApi>();
  private readonly byApiId = new Map<string, ApiGateway>();
  private readonly origins = new Map<string, string[]>();
  private readonly declaredStores = new Set<string>();
  private readonly declaredSecrets = new Set<string>();
  private readonly table: ConnectionsTable | undefined;
  /**
   * What the collect pass saw the service declare (NITRIC_LIKE_DECLARED): a declaration beyond it,
   * made once started, is refused with the fix, as `run` refuses it on the local provider.
   */
  private readonly collected: CollectedDeclarations | undefined;
  /**
   * The handlers the collect pass saw the service register (those the deployment routes to this
   * function): one registered beyond them (in a handler) is refused with the fix, as under `run`.
   */
  private readonly registrations: CollectedDeclarations;
  /**
   * The disconnect events running for connections whose connect handler answered after the
   * handler timeout (lateConnect): the invocation in progress answers only once they have ended,
   * since Lambda freezes the function once it answers.
   */
  private readonly lateDisconnects = new Set<Promise<void>>();
  /**
   * Says, once a burst, that what a connect handler sent was dropped because its connection did not
   * open (or left): a flood of clients that leave as they connect would otherwise print a line each.
   */
  private readonly undeliveredLog: BurstLog;

  constructor(
    readonly bindings: Bindings,
    private readonly logger: Logger,
    private readonly env: NodeJS.ProcessEnv,
  ) {
    this.registry = new HandlerRegistry(logger, bindings.handlerTimeoutMs, REGISTRATION_WAIT_MS);
    this.undeliveredLog = new BurstLog(logger, "warn", (n) => ` (${n} connections so since the last report)`);
    this.authorizers = new AuthorizerRegistry(bindings.handlerTimeoutMs, REGISTRATION_WAIT_MS);
    const dynamo = new DynamoDbClient(env);
    this.table = bindings.connectionsTable ? new ConnectionsTable(dynamo, bindings.connectionsTable) : undefined;
    for (const [name, socket] of Object.entries(bindings.websockets)) {
      const management = new ManagementApiClient(socket.endpoint, env);
      const self = env.AWS_LAMBDA_FUNCTION_NAME;
      const gateway = new ApiGateway(name, socket, management, this.table, logger, {
        inlineMax: bindings.broadcastInlineMax,
        pageSize: bindings.broadcastPageSize,
        // No retry of an Invoke that may have been queued (5xx, network): a page is never queued twice.
        ...(self ? { fanout: (event: BroadcastEvent) => invokeAsync(self, event, env, HAND_OVER_RETRY) } : {}),
      });
      this.pageClients.set(
        name,
        new ManagementApiClient(socket.endpoint, env, { attempts: 1, baseDelayMs: 0, throttlingBaseDelayMs: 0 }),
      );
      this.gateways.set(name, gateway);
      this.byApiId.set(socket.apiId, gateway);
      for (const event of socket.events) this.registry.expect(name, event, bindings.service);
      for (const route of socket.routes) this.registry.expect(name, "message", bindings.service, route);
      if (socket.authorize) this.authorizers.expect(name, bindings.service);
    }
    this.stores = new DynamoKvStores(dynamo, bindings.kvTables);
    this.secrets = new SecretsManagerSecrets(new SecretsManagerClient(env), bindings.secrets);
    const spec = declaredSpec(bindings);
    this.collected = bindings.declared ? new CollectedDeclarations(spec, logger) : undefined;
    // Handlers are checked with or without NITRIC_LIKE_DECLARED: NITRIC_LIKE_WEBSOCKETS says them.
    this.registrations = this.collected ?? new CollectedDeclarations(spec, logger);
  }

  private readonly stores: DynamoKvStores;
  /** The SDKs' transport (start() makes it). */
  private transport: MemoryTransport | undefined;
  /**
   * While the service's module loads: where its last calls to the contracts were made (a call
   * opened or a request written on one: a declaration, a handler's registration), newest last,
   * their stacks captured and not yet formatted, so a load that never finishes can say after
   * which line of the service it stopped (loadStoppedAfter).
   */
  private loadCalls: { stack?: string }[] = [];
  private loading = false;
  private readonly secrets: SecretsManagerSecrets;

  /** Serves the contracts, gives the SDKs their transport, loads the service and waits for its handlers. */
  async start(load: () => unknown, give: (transport: Transport) => void): Promise<void> {
    // Both SDKs call the router in this thread (the in-memory transport): no gRPC server to bind,
    // no client to connect, no HTTP/2 framing between two parts of one process.
    const router = serviceRouter(this.bindings.service, {
      stores: this.stores,
      permissions: this.permissions,
      handlers: this.registry,
      authorizers: this.authorizers,
      logger: this.logger,
      unserved: new Set(),
      ...(this.collected
        ? {
            checkDeclaration: (caller, declaration) => this.collected?.check(caller, declaration),
            refusal: (caller, kind, name) => this.collected?.refusal(caller, kind, name),
          }
        : {}),
      checkRegistration: (caller, registration) => this.registrations.checkRegistration(caller, registration),
      checkAuthorizer: (caller, socket) => this.registrations.checkAuthorizer(caller, socket),
      declared: (store) => this.declaredStores.has(store),
      declareStore: (store) => {
        this.declaredStores.add(store);
      },
      secrets: this.secrets,
      secretDeclared: (name) => this.declaredSecrets.has(name),
      // Under run --provider aws the values are run's own, which secret put stores by default.
      ...(this.env[EMULATED_VAR] === "1" ? {} : { secretPutOptions: "--provider aws" }),
      declareSecret: (name) => {
        // Its calls fail with the fix (SecretsManagerSecrets.arn); the warning says it at once.
        if (!this.secrets.has(name)) {
          this.logger.warn(
            `service "${this.bindings.service}" declares secret "${name}", which this deployment does not give its function; ${this.env[EMULATED_VAR] === "1" ? "run deploys what a service declares as its module loads, so declare it there (at the top level, in every environment) and save" : "build and deploy again"}`,
          );
        }
        this.declaredSecrets.add(name);
      },
      declareSocket: async (socket, origins) => {
        if (!this.gateways.has(socket)) {
          this.logger.warn(
            `service "${this.bindings.service}" declares websocket "${socket}", which this deployment does not have; ${this.env[EMULATED_VAR] === "1" ? "run deploys what a service declares as its module loads, so declare it there (at the top level, in every environment) and save" : "build and deploy again"}`,
          );
        }
        this.origins.set(socket, origins);
      },
      gateway: (socket) => this.gateways.get(socket),
    });
    this.env.NITRIC_ENVIRONMENT = "cloud";
    const transport = createMemoryTransport(router);
    this.transport = transport;
    // The SDKs' calls, each noted while the module loads (a stack is only formatted if asked for).
    const noted = () => {
      if (!this.loading) return;
      this.loadCalls.push(callStack());
      if (this.loadCalls.length > LOAD_CALLS_KEPT) this.loadCalls.shift();
    };
    give({
      open: (path, kind, request, events) => {
        // Once loaded, the calls go straight through: events' calls pay no wrapper.
        if (!this.loading) return transport.open(path, kind, request, events);
        noted();
        const call = transport.open(path, kind, request, events);
        return {
          write: (bytes) => {
            noted();
            call.write(bytes);
          },
          halfClose: () => call.halfClose(),
          cancel: () => call.cancel(),
        };
      },
      close: () => transport.close(),
    });
    this.loading = true;
    try {
      await load();
    } finally {
      this.loading = false;
      this.loadCalls = [];
    }
    await this.handlersRegistered();
  }

  /**
   * While the service's module has not finished loading: the stacks of its last calls to the
   * contracts as it loaded, newest first (frames mapped to its sources, see stacks.ts), the line
   * it stopped after in the first that names one of its files; empty once it has loaded.
   */
  loadStoppedAfter(): string[] {
    return this.loading ? this.loadCalls.map((c) => c.stack ?? "").reverse() : [];
  }

  /** Resolves once every handler the deployment routes here is registered, or after the wait. */
  private handlersRegistered(): Promise<void> {
    const missing = () => {
      const live = new Set(this.registry.registrations().map(registrationKey));
      const out: string[] = [];
      for (const [name, s] of Object.entries(this.bindings.websockets)) {
        for (const e of s.events) if (!live.has(registrationKey({ socket: name, event: e }))) out.push(`${name}/${e}`);
        for (const route of s.routes)
          if (!live.has(registrationKey({ socket: name, event: "message", route })))
            out.push(`${name} route ${JSON.stringify(route)}`);
      }
      return out;
    };
    return new Promise((resolve) => {
      if (missing().length === 0) {
        resolve();
        return;
      }
      const timer = setTimeout(() => {
        this.logger.warn(
          `service "${this.bindings.service}" has not registered ${missing().join(", ")} after ${REGISTRATION_WAIT_MS / 1000} s; events for them wait, then fail`,
        );
        resolve();
      }, REGISTRATION_WAIT_MS);
      this.registry.onChange(() => {
        if (missing().length === 0) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }

  private gatewayOf(event: WebsocketApiEvent): ApiGateway {
    const apiId = event.requestContext.apiId;
    const gateway = apiId ? this.byApiId.get(apiId) : undefined;
    if (gateway) return gateway;
    if (this.gateways.size === 1) return [...this.gateways.values()][0] as ApiGateway;
    throw new Error(
      `nitric-like runtime: an event from API ${JSON.stringify(apiId)} matches no socket in NITRIC_LIKE_WEBSOCKETS (${[...this.byApiId.keys()].join(", ")}); build and deploy again`,
    );
  }

  /**
   * Handles one Lambda event, and answers once the calls its handlers started have ended too: Lambda
   * freezes the function once it has answered, so a send or kv call a handler did not await (a
   * callback's, say) would otherwise wait for the function's next event, or never happen. It waits
   * up to the handler timeout (less when the invocation has less time left), then says what it
   * leaves behind.
   */
  async handle(event: unknown, context?: LambdaContext): Promise<WebsocketApiResult | AuthorizerResult | undefined> {
    const result = await this.handleEvent(event, context);
    if (this.transport) {
      const left = context?.getRemainingTimeInMillis?.();
      const wait = Math.max(0, Math.min(this.bindings.handlerTimeoutMs, left === undefined ? Infinity : left - 1000));
      let running = await this.transport.settled(wait);
      // A connect handler of an earlier event, past its timeout, that ended meanwhile: its disconnect too.
      if (this.lateDisconnects.size > 0) {
        await within(Promise.allSettled([...this.lateDisconnects]), wait);
        running = await this.transport.settled(wait);
      }
      if (running > 0) {
        const rc = isWebsocketEvent(event) ? event.requestContext : undefined;
        this.logger.warn(
          `service "${this.bindings.service}": ${running} call${running === 1 ? "" : "s"} its handlers started (a send, a kv or secret call) ${running === 1 ? "was" : "were"} still running ${wait / 1000} s after ${rc ? `the ${rc.routeKey} event of connection ${rc.connectionId}` : "an event"} was handled; Lambda freezes the function once it answers, so ${running === 1 ? "it ends" : "they end"} at its next event, or never: await ${running === 1 ? "it" : "them"} in the handler`,
        );
      }
    }
    return result;
  }

  private async handleEvent(
    event: unknown,
    context?: LambdaContext,
  ): Promise<WebsocketApiResult | AuthorizerResult | undefined> {
    // First: whatever else it holds, an event that says it is a late disconnect is one or nothing.
    if (isLateDisconnectEvent(event)) {
      await this.lateDisconnect(event);
      return undefined;
    }
    // Then: an authorizer's event has a requestContext with a connectionId too.
    if (isAuthorizerEvent(event)) return this.authorize(event);
    if (isBroadcastEvent(event)) {
      await this.broadcastPage(event, context);
      return undefined;
    }
    if (isDeliverEvent(event)) {
      await this.deliver(event);
      return undefined;
    }
    if (!isWebsocketEvent(event)) {
      throw new Error(
        "nitric-like runtime: this function handles API Gateway WebSocket events (requestContext.routeKey and connectionId); got something else",
      );
    }
    const gateway = this.gatewayOf(event);
    switch (event.requestContext.routeKey) {
      case "$connect":
        return this.connect(gateway, event, context);
      case "$disconnect":
        return this.disconnect(gateway, event);
      case "$default":
        return this.message(gateway, event, "");
      default:
        // A message route's key is its action: its handler's stream, apart from the message handler's.
        return this.message(gateway, event, event.requestContext.routeKey);
    }
  }

  /** Logs why an event was not handled; the HTTP status that stands for it, and why. */
  private failure(error: unknown): ConnectRefusal {
    const unanswered = unansweredStatus(error);
    this.logger.error(unanswered.reason);
    return unanswered;
  }

  /** The socket's authorizer, asked as API Gateway's REQUEST authorizer on $connect. */
  private async authorize(event: AuthorizerEvent): Promise<AuthorizerResult> {
    const rc = event.requestContext;
    const gateway = this.gatewayOf(event as unknown as WebsocketApiEvent);
    const headers = multiValues(event.multiValueHeaders, event.headers, true);
    const query = multiValues(event.multiValueQueryStringParameters, event.queryStringParameters, false);
    const decision = await this.authorizers.authorize({
      socketName: gateway.name,
      connectionId: rc.connectionId,
      // Encoded again, as the connect event's (the SDKs decode what API Gateway decoded once).
      queryParams: wireQuery(query),
      headers,
      protocols: offeredProtocols(headers["sec-websocket-protocol"]?.value),
      remoteAddress: rc.identity?.sourceIp ?? "",
    });
    if (!decision.allow) {
      // API Gateway shows the client its own body, never ours: the reason goes to the log.
      const log = decision.status >= 500 ? this.logger.error : this.logger.info;
      log.call(
        this.logger,
        `websocket "${gateway.name}": refused ${rc.connectionId} (${decision.status}): ${decision.reason}`,
      );
    }
    return authorizerResult(decision, event);
  }

  private async connect(
    gateway: ApiGateway,
    event: WebsocketApiEvent,
    context?: LambdaContext,
  ): Promise<WebsocketApiResult> {
    const rc = event.requestContext;
    const authorized = authorizedContext(rc);
    const id = rc.connectionId;
    const headers = multiValues(event.multiValueHeaders, event.headers, true);
    const query = multiValues(event.multiValueQueryStringParameters, event.queryStringParameters, false);
    const info: ConnectionInfo = {
      connectionId: id,
      connectedAt: rc.connectedAt ?? rc.requestTimeEpoch ?? Date.now(),
      query,
      headers,
      remoteAddress: rc.identity?.sourceIp ?? "",
      auth: authorized.identity,
    };
    // Browsers need the accepted subprotocol echoed in the 101 (RFC 6455 section 4.1). The
    // authorizer's choice, or with none on the socket the client's first, as the local gateway (a
    // ws server) takes: API Gateway echoes only what this answer names, so a client offering
    // subprotocols to a socket without an authorizer would otherwise connect locally and fail here.
    const protocol = authorized.protocol ?? offeredProtocols(headers["sec-websocket-protocol"]?.value)[0];
    const accepted: WebsocketApiResult = protocol
      ? { statusCode: 200, headers: { "Sec-WebSocket-Protocol": protocol } }
      : { statusCode: 200 };
    const problem = originProblem(gateway.name, headers.origin?.value[0], new Set(this.origins.get(gateway.name)));
    if (problem) {
      this.logger.warn(problem);
      return { statusCode: 403, body: problem };
    }
    if (!this.registry.isExpected(gateway.name, "connect")) {
      await this.record(gateway, info);
      return accepted;
    }
    gateway.opening.set(id, new Opening(info));
    let response: WebsocketEventResponse;
    const late = this.lateConnect(gateway, id, authorized.identity);
    // API Gateway's 29 s run from the request, not from this invocation: a cold start, or an
    // invocation that waited for an execution environment, leaves the handler less than its timeout.
    const lag = rc.requestTimeEpoch === undefined ? 0 : Date.now() - rc.requestTimeEpoch;
    const apiLeft =
      rc.requestTimeEpoch === undefined
        ? Number.POSITIVE_INFINITY
        : AWS_INTEGRATION_TIMEOUT_MS - CONNECT_ANSWER_MARGIN_MS - lag;
    try {
      // API Gateway decoded the values; the contract carries them encoded, as the SDKs decode them.
      const dispatched = this.registry.dispatch(
        gateway.name,
        "connect",
        connectEvent(gateway.name, info, wireQuery(query)),
        "",
        late.hook,
      );
      const answer = apiLeft < this.bindings.handlerTimeoutMs ? await within(dispatched, apiLeft) : await dispatched;
      if (answer === undefined) {
        // Too late for API Gateway: the handler's answer, when it comes, is a late one. (Past the
        // handler timeout the registry gives it to late.hook itself.)
        late.reason =
          "connect handler answered after API Gateway's integration timeout; its client was refused with 504";
        dispatched.then(
          (response) => late.hook.answered(response),
          (error: unknown) => {
            if (!(error instanceof HandlerError && error.failure === "timeout"))
              late.hook.abandoned(error as HandlerError);
          },
        );
        throw new HandlerError(
          "timeout",
          `websocket "${gateway.name}": the connect handler of service "${this.bindings.service}" did not answer before API Gateway's integration timeout (${AWS_INTEGRATION_TIMEOUT_MS / 1000} s from the request, which reached the function ${(lag / 1000).toFixed(1)} s after it was made) (connection ${id})`,
        );
      }
      response = answer;
    } catch (error) {
      const timedOut = error instanceof HandlerError && error.failure === "timeout";
      const { status, reason } = unansweredStatus(error);
      this.logger.error(timedOut ? `${reason}${LATE_CONNECT_NOTE}` : reason);
      if (timedOut) {
        // It never opens: what it is sent meanwhile is dropped.
        gateway.opening.get(id)?.refused();
        // Its handler still runs, and Lambda would freeze it with this answer: wait for it while
        // the invocation leaves time for its disconnect (lateConnect), then refuse the client.
        const left = context?.getRemainingTimeInMillis?.() ?? this.bindings.handlerTimeoutMs + 5_000;
        const ended = await within(late.ended, left - this.bindings.handlerTimeoutMs - 1_000);
        if (ended) await late.cleaned;
      } else gateway.opening.delete(id);
      return { statusCode: status, body: reason };
    }
    const opening = gateway.opening.get(id);
    gateway.opening.delete(id);
    const refusal = connectRefusal(gateway.name, response);
    if (refusal) return { statusCode: refusal.status, body: refusal.reason };
    // The connection opens only once this answer reaches API Gateway, so what the connect handler
    // sent (its replies first, then its sends) is delivered by a second invocation of this function.
    // Until it has been, the record says so, and the connection's messages wait for it (message()).
    const replies = awsConnectReplies(
      gateway.name,
      id,
      opening?.deliveryBytes ?? AWS_DELIVERY_ENVELOPE_BYTES,
      response.replies,
    );
    for (const line of replies.dropped) this.logger.error(line);
    const frames = [...replies.kept.map((r) => ({ data: r.data, binary: r.binary })), ...(opening?.frames ?? [])];
    const delivering = frames.length > 0 || opening?.close !== undefined;
    await this.record(gateway, info, opening, delivering);
    if (delivering && !(await this.deferDelivery(gateway.name, id, frames, opening?.close)))
      await this.delivered(gateway.name, id);
    return accepted;
  }

  /**
   * What becomes of a connect handler that answers after the handler timeout, whose client the
   * runtime refuses with 504 (API Gateway opens no connection, and sends no $disconnect): `hook`
   * hears its answer; accepting, it may have stored the connection, so the disconnect handler runs
   * for it (1006), as for a client that left while its connect handler ran; refusing or failing,
   * nothing runs. `ended` resolves once it has ended or has been given up, `cleaned` once its
   * disconnect (if any) has run too. Answered in a later invocation (this one had no time
   * left), that invocation waits for the disconnect before it answers (lateDisconnects).
   */
  private lateConnect(
    gateway: ApiGateway,
    id: string,
    auth: string,
  ): { hook: LateAnswer; ended: Promise<true>; cleaned: Promise<void>; reason: string } {
    let end: (response: WebsocketEventResponse | undefined) => void = () => {};
    const answer = new Promise<WebsocketEventResponse | undefined>((resolve) => {
      end = resolve;
    });
    const hook: LateAnswer = {
      answered: (response) => end(response),
      abandoned: (error) => {
        this.logger.warn(lateConnectAbandoned(error.message, id));
        end(undefined);
      },
    };
    const cleaned = answer.then((response) => {
      const opening = gateway.opening.get(id);
      gateway.opening.delete(id);
      if (response === undefined || connectRefusal(gateway.name, response)) return;
      if (!this.registry.isExpected(gateway.name, "disconnect")) {
        // Locally every service's handlers are one registry away; here only this function's are:
        // the disconnect handler's function runs it (late-disconnect.ts), when the template says which.
        const target = this.bindings.websockets[gateway.name]?.disconnectFunction;
        // The template names to this function the function of any other service that handles the
        // socket's disconnect (build/template.ts lateDisconnectTargets, every pair, rings
        // included), and the two are built and deployed together: none named, the socket has no
        // disconnect handler, so nothing runs, as locally.
        if (target === undefined) {
          return;
        }
        const event: LateDisconnectEvent = {
          nitricLike: LATE_DISCONNECT,
          socket: gateway.name,
          connectionId: id,
          reason: late.reason,
          ...(auth ? { auth } : {}),
          ...(opening?.state ? { state: opening.state } : {}),
        };
        // Queued once: a retried Invoke that Lambda may have queued (5xx, no answer) would run the
        // disconnect twice; a throttled one (429) was not queued, and is tried again.
        const handing = handOverThrottled(() => invokeAsync(target, event, this.env, HAND_OVER_RETRY)).then(
          () => {},
          (error: unknown) => {
            this.logger.error(
              `websocket "${gateway.name}": could not hand the disconnect of connection ${id} (whose connect handler accepted it after its client had been refused with 504) to function ${target}, which runs the socket's disconnect handler: ${(error as Error).message}; what connect stored for it is not cleaned up`,
            );
          },
        );
        this.lateDisconnects.add(handing);
        return handing.finally(() => this.lateDisconnects.delete(handing));
      }
      const running = this.registry
        .dispatch(gateway.name, "disconnect", {
          socketName: gateway.name,
          connectionId: id,
          auth,
          websocketEvent: {
            case: "disconnection",
            value: { code: 1006, reason: late.reason },
          },
          ...(opening?.state ? { extras: { stateJson: opening.state } } : {}),
        })
        .then(
          () => {},
          (error: unknown) => {
            this.failure(error);
          },
        );
      this.lateDisconnects.add(running);
      return running.finally(() => this.lateDisconnects.delete(running));
    });
    const late: { hook: LateAnswer; ended: Promise<true>; cleaned: Promise<void>; reason: string } = {
      hook,
      ended: answer.then(() => true as const),
      cleaned,
      /** The disconnect event's close reason. */
      reason: lateConnectReason(this.bindings.handlerTimeoutMs),
    };
    return late;
  }

  private async record(
    gateway: ApiGateway,
    info: ConnectionInfo,
    opening?: Opening,
    delivering = false,
  ): Promise<void> {
    if (!this.table) return;
    try {
      await this.table.add(gateway.name, info, opening?.state ?? "", delivering);
      // Rooms joined during connect, now that there is a record to keep them.
      const table = this.table;
      await Promise.all([...(opening?.rooms ?? [])].map((room) => table.join(gateway.name, info.connectionId, room)));
    } catch (error) {
      this.logger.error(
        `websocket "${gateway.name}": could not record connection ${info.connectionId} in ${this.table.table}: ${(error as Error).message}`,
      );
    }
  }

  /** Hands what a connect handler sent to a delivery invocation; false when it could not. */
  private async deferDelivery(
    socket: string,
    connectionId: string,
    frames: Frame[],
    close: CloseRequest | undefined,
  ): Promise<boolean> {
    const functionName = this.env.AWS_LAMBDA_FUNCTION_NAME;
    if (!functionName) {
      this.logger.error(
        `websocket "${socket}": ${frames.length} message(s) sent during connect to ${connectionId} were dropped: AWS_LAMBDA_FUNCTION_NAME is not set, so this function cannot invoke itself to deliver them`,
      );
      return false;
    }
    const payload: DeliverEvent = {
      nitricLike: "deliver",
      socket,
      connectionId,
      frames: frames.map((f) => ({ data: Buffer.from(f.data).toString("base64"), binary: f.binary })),
      ...(close ? { close } : {}),
      at: Date.now(),
    };
    try {
      await invokeAsync(functionName, payload, this.env);
      return true;
    } catch (error) {
      this.logger.error(
        `websocket "${socket}": could not hand ${frames.length} message(s) sent during connect to ${connectionId} over for delivery: ${(error as Error).message}`,
      );
      return false;
    }
  }

  /** Marks a connection's connect-time delivery done in its record, so its messages go on. */
  private async delivered(socket: string, connectionId: string): Promise<void> {
    await this.table?.delivered(socket, connectionId).catch((error: unknown) => {
      this.logger.error(
        `websocket "${socket}": could not mark the delivery to ${connectionId} done in ${this.table?.table}: ${(error as Error).message}; its messages wait up to ${MESSAGE_WAITS_FOR_DELIVERY_MS / 1000} s`,
      );
    });
  }

  /**
   * The state a message event carries, once the delivery of what the connection's connect
   * handler sent is done (or MESSAGE_WAITS_FOR_DELIVERY_MS have passed): a client that sends as
   * soon as it opens gets those frames before any answer to its message, as locally.
   */
  private async messageState(socket: string, id: string): Promise<string> {
    if (!this.table) return "";
    const deadline = Date.now() + MESSAGE_WAITS_FOR_DELIVERY_MS;
    let context = await this.table.messageContext(socket, id);
    while (context?.delivering && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, DELIVERY_POLL_MS));
      context = await this.table.messageContext(socket, id);
    }
    return context?.state ?? "";
  }

  /** Delivers frames sent during connect, in order, retrying while the connection is not open yet. */
  private async deliver(event: DeliverEvent): Promise<void> {
    try {
      await this.deliverFrames(event);
    } finally {
      await this.delivered(event.socket, event.connectionId);
    }
  }

  private async deliverFrames(event: DeliverEvent): Promise<void> {
    const gateway = this.gateways.get(event.socket);
    if (!gateway) throw new Error(`nitric-like runtime: delivery for unknown websocket "${event.socket}"`);
    // From when the connect handler handed the frames over: a delivery that reaches the function
    // late (it waited for an execution environment, as under a flood of connections) tries once
    // and stops, instead of holding an environment 5 s for each client that has gone meanwhile.
    const now = Date.now();
    const handedAt = typeof event.at === "number" && Number.isFinite(event.at) ? Math.min(event.at, now) : now;
    const deadline = handedAt + DELIVERY_WAIT_MS;
    // A client that does not retry by itself: a frame that may have been delivered (5xx, no
    // answer) is never posted again, and the invocation never fails (nothing for Lambda to retry).
    const client = this.pageClients.get(event.socket);
    for (const frame of event.frames) {
      // None is over 128 KB: a send that size was refused when made, a reply left out (connect()).
      const data = Buffer.from(frame.data, "base64");
      let ok: boolean;
      try {
        ok = await gateway.postWhenOpen(event.connectionId, data, deadline, client);
      } catch (error) {
        this.logger.error(
          `websocket "${event.socket}": messages sent during connect to ${event.connectionId} were not all delivered: ${(error as Error).message}`,
        );
        return;
      }
      if (!ok) {
        this.undeliveredLog.note(
          `websocket "${event.socket}": connection ${event.connectionId} did not open within ${DELIVERY_WAIT_MS / 1000} s (or left); messages sent during its connect were dropped`,
        );
        return;
      }
    }
    if (event.close) {
      await gateway.close(event.connectionId, event.close.code, event.close.reason).catch((error: unknown) => {
        this.logger.error(
          `websocket "${event.socket}": could not close ${event.connectionId} as its connect handler asked: ${(error as Error).message}`,
        );
      });
    }
  }

  /**
   * Posts one page of a broadcast a function of this service handed over. Never fails the
   * invocation: what was not delivered is logged, and nothing is left for Lambda to retry.
   */
  private async broadcastPage(event: BroadcastEvent, context: LambdaContext | undefined): Promise<void> {
    const gateway = this.gateways.get(event.socket);
    const client = this.pageClients.get(event.socket);
    if (!gateway || !client) {
      this.logger.error(
        `websocket "${event.socket}": broadcast ${event.broadcast} page ${event.page} names a socket this function does not have; ${event.ids.length} frame(s) dropped; build and deploy again`,
      );
      return;
    }
    const remaining = context?.getRemainingTimeInMillis?.() ?? Math.max(30_000, this.bindings.handlerTimeoutMs + 5_000);
    try {
      if (event.start) await gateway.continueBroadcast(event);
      else await gateway.postPage(event, client, Date.now() + remaining - PAGE_MARGIN_MS);
    } catch (error) {
      this.logger.error(
        `websocket "${event.socket}": broadcast ${event.broadcast} page ${event.page} failed: ${(error as Error).message}`,
      );
    }
  }

  /**
   * The disconnect of a connection whose connect handler (another service's function) accepted it
   * after its client had been refused (late-disconnect.ts): checked as hostile input, then given
   * to the disconnect handler as that function would have (1006). Never fails the invocation.
   */
  private async lateDisconnect(event: unknown): Promise<void> {
    const handled = new Set(
      Object.entries(this.bindings.websockets)
        .filter(([, s]) => s.events.includes("disconnect"))
        .map(([name]) => name),
    );
    const refuse = (why: string) =>
      this.logger.error(
        `service "${this.bindings.service}": refused a late disconnect event (the disconnect of a connection whose connect handler, another service's function, answered after its client had been refused): ${why}; it is made by nitric-like's runtime, so build and deploy again, and check who else may invoke this function`,
      );
    const problem = lateDisconnectProblem(event, handled);
    if (problem !== undefined) {
      refuse(problem);
      return;
    }
    const e = event as LateDisconnectEvent;
    // A connection that opened has a record: its disconnect comes from API Gateway, never from here.
    if (this.table && (await this.table.messageContext(e.socket, e.connectionId).catch(() => undefined))) {
      refuse(`connection ${e.connectionId} of websocket "${e.socket}" is open, and a late connect's never opened`);
      return;
    }
    try {
      await this.registry.dispatch(e.socket, "disconnect", {
        socketName: e.socket,
        connectionId: e.connectionId,
        auth: e.auth ?? "",
        websocketEvent: { case: "disconnection", value: { code: 1006, reason: e.reason } },
        ...(e.state ? { extras: { stateJson: e.state } } : {}),
      });
    } catch (error) {
      this.failure(error);
    }
  }

  private async disconnect(gateway: ApiGateway, event: WebsocketApiEvent): Promise<WebsocketApiResult> {
    const rc = event.requestContext;
    let stateJson = "";
    if (this.table) {
      // The record goes with its memberships; its state goes to the disconnect handler.
      stateJson = await this.table.remove(gateway.name, rc.connectionId).catch((error: unknown) => {
        this.logger.warn(
          `websocket "${gateway.name}": could not forget connection ${rc.connectionId}: ${(error as Error).message}`,
        );
        return "";
      });
    }
    if (this.registry.isExpected(gateway.name, "disconnect")) {
      try {
        await this.registry.dispatch(gateway.name, "disconnect", {
          socketName: gateway.name,
          connectionId: rc.connectionId,
          auth: authorizedContext(rc).identity,
          websocketEvent: {
            case: "disconnection",
            value: { code: rc.disconnectStatusCode ?? 1005, reason: rc.disconnectReason ?? "" },
          },
          ...(stateJson ? { extras: { stateJson } } : {}),
        });
      } catch (error) {
        this.failure(error);
      }
    }
    return { statusCode: 200 };
  }

  /** A message for the socket's message handler (`route` "") or for the handler of one of its message routes. */
  private async message(gateway: ApiGateway, event: WebsocketApiEvent, route: string): Promise<WebsocketApiResult> {
    const id = event.requestContext.connectionId;
    const binary = event.isBase64Encoded === true;
    const body = event.body ?? "";
    let response: WebsocketEventResponse;
    try {
      // The state rides on the event: one consistent GetItem here (more only while what the
      // connect handler sent is being delivered), so handlers need no kv read.
      const stateJson = await this.messageState(gateway.name, id);
      // A route nobody here registered or is expected to fails as an unhandled message does,
      // naming the route (HandlerRegistry: `no service handles route "join"; add socket.route(...)`).
      response = await this.registry.dispatch(
        gateway.name,
        "message",
        {
          socketName: gateway.name,
          connectionId: id,
          auth: authorizedContext(event.requestContext).identity,
          websocketEvent: {
            case: "message",
            value: { body: binary ? Buffer.from(body, "base64") : Buffer.from(body, "utf8"), binary },
          },
          ...(stateJson ? { extras: { stateJson } } : {}),
        },
        route,
      );
    } catch (error) {
      const { status } = this.failure(error);
      return { statusCode: status };
    }
    // A reply over API Gateway's 128 KB would be refused (PostToConnection's 413, which would fail
    // the event and lose the others): left out with a log line, as under compat: aws.
    const replies = response.replies.filter((r) => {
      if (r.data.byteLength <= AWS_MAX_MESSAGE_BYTES) return true;
      this.logger.error(awsReplyTooLarge(gateway.name, id, r.data.byteLength));
      return false;
    });
    // One text reply rides back on the route response: no Management API call at all.
    const only = replies.length === 1 ? replies[0] : undefined;
    if (only && !only.binary) return { statusCode: 200, body: Buffer.from(only.data).toString("utf8") };
    for (const r of replies) await gateway.post(id, r.data);
    return { statusCode: 200 };
  }
}

/** Tries `invoke` again while Lambda answers 429 (nothing queued), at most 5 times in all. */
async function handOverThrottled(invoke: () => Promise<void>): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await invoke();
      return;
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode !== 429 || attempt >= 5) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50 * 2 ** attempt * (0.5 + Math.random() / 2)));
    }
  }
}

/** Resolves with `promise`'s value, or with undefined once `ms` have passed (at once for 0 or less). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  if (ms <= 0) return undefined;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Creates a function's handler. The runtime starts at once, during the function's init phase, and
 * every invocation waits for it to be ready.
 */
export function createHandler(options: RuntimeOptions): LambdaHandler {
  const env = options.env ?? process.env;
  const logger = options.logger ?? consoleLogger;
  let started: Runtime | undefined;
  const ready = (async () => {
    const runtime = new Runtime(readBindings(env), logger, env);
    started = runtime;
    await runtime.start(options.load, options.transport);
    return runtime;
  })();
  // An init failure surfaces on every invocation, not as an unhandled rejection.
  ready.catch(() => {});
  const handler = async (event: unknown, context?: LambdaContext) => (await ready).handle(event, context);
  const initialised = ready.then(() => undefined);
  initialised.catch(() => {});
  return Object.assign(handler, { ready: initialised, loadStoppedAfter: () => started?.loadStoppedAfter() ?? [] });
}

/**
 * A function's handler; `ready` settles when its init (endpoint, service code, handlers) is done.
 * `loadStoppedAfter`: while the service's module has not finished loading, the stacks of its last
 * calls as it loaded (Runtime.loadStoppedAfter), whose line the emulator names when that load never can.
 */
export type LambdaHandler = ((
  event: unknown,
  context?: LambdaContext,
) => Promise<WebsocketApiResult | AuthorizerResult | undefined>) & {
  ready: Promise<void>;
  loadStoppedAfter(): string[];
};

/** How many of a loading module's last calls loadStoppedAfter keeps (a call made in a microtask names no line of the service). */
const LOAD_CALLS_KEPT = 16;

/**
 * The stack here, unformatted until read: deep enough to reach the service's own line below an
 * SDK's declaration (a dozen frames of the SDK and the RPC client come first).
 */
function callStack(): { stack?: string } {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 40;
  const trace: { stack?: string } = {};
  Error.captureStackTrace(trace, callStack);
  Error.stackTraceLimit = limit;
  return trace;
}
