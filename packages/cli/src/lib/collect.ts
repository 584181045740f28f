/**
 * The collect pass: each service runs once with NITRIC_ENVIRONMENT=build against a collector that
 * records every declaration and handler registration, acknowledges them, and ends each handler
 * stream with OK so the service can exit. It never hangs: a service that goes quiet without exiting
 * is stopped, and one that crashes is reported with its output.
 *
 * A service on either SDK runs there as a worker thread when the caller allows it (`run`, which
 * runs it as a thread next): its thread bundle reaches the same collector over a MessagePort
 * (@nitric/sdk's through the compat adapter, its streams for kinds we do not serve included).
 * Starting a thread skips a Node process's start, about half of the pass (bench/startup.mjs). The
 * collector is the same, so is what counts as a failure: an uncaught error or a non-zero exit
 * code, nothing declared in time, a thread that does not end. A service whose native addon cannot
 * load in a thread is collected again as a process.
 */
import { createHash } from "node:crypto";
import { chmodSync, existsSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MessageChannel } from "node:worker_threads";
import { Authorizer, type HandleAuthorizationsRequest } from "@nitric-like/contracts/authorize";
import { Connections } from "@nitric-like/contracts/connections";
import { KvStore } from "@nitric-like/contracts/kvstore";
import { Resources, ResourceType } from "@nitric-like/contracts/resources";
import { SecretManager } from "@nitric-like/contracts/secrets";
import { type ClientMessage, Websocket, WebsocketHandler } from "@nitric-like/contracts/websockets";
import {
  createRunDir,
  currentUid,
  EVENT_NAMES,
  forEachLine,
  permissionsOf,
  type RunDir,
  resourceKindOf,
} from "@nitric-like/provider-kit";
import { Code, PortServer, Router, RpcError } from "@nitric-like/rpc";
import type { GrpcServer } from "@nitric-like/rpc/grpc";
import {
  type CollectedService,
  LOAD_PENDING_SIGN,
  LOAD_TIMERS_SIGN,
  LOAD_WORK_EACH_MS,
  LOAD_WORK_TOTAL_MS,
  type LoadWaiting,
  type Project,
  type ResourceRef,
  type ServiceEntry,
} from "@nitric-like/spec";
import { UNSETTLED_AWAIT_EXIT_CODE } from "./boot-thread.js";
import { type Bundle, bundleService } from "./bundle.js";
import { withDotEnv } from "./dotenv.js";
import { exitCodeMeaning, projectLocation, RecentOutput } from "./failure.js";
import {
  processHandle,
  type ServiceHandle,
  type ServiceLaunch,
  spawnService,
  startServiceThread,
} from "./service-process.js";

/** Limits of the collect pass. */
export interface CollectOptions {
  /** How long a service may take to make its first declaration, and to let its event loop turn once it has gone quiet. @default 15000 */
  startTimeoutMs?: number;
  /** How long a service may stay quiet after its last declaration before it is stopped. @default 1500 */
  quietMs?: number;
  /**
   * How long a service whose module our SDK says has not finished loading (at a top-level await)
   * is waited for once it has gone quiet, from when the SDK said so. @default 10000
   */
  loadingMs?: number;
  /** Variables from the project's `.env` files, as the service gets them under `run`. */
  dotenv?: ReadonlyMap<string, string>;
  /**
   * Run a service that has a thread bundle (one on either SDK) as a worker thread of this process,
   * which must be in the project's folder (a thread shares its working directory). @default false
   */
  threads?: boolean;
  /** Called as each service has been started (its thread or process exists), before it is waited for. */
  onLaunched?: () => void;
  /**
   * What the last passes found and are still good for, by service (keptCollections): those
   * services are given these instead of running, and what this pass finds for the others is kept
   * for next time. `run` gives it; `spec`, `build` and `up` always collect anew.
   */
  reuse?: ReadonlyMap<string, CollectedService>;
  /**
   * Says a line of progress, such as what a service's pass has waited for a while (once per
   * service). @default a line on stderr
   */
  onNote?: (line: string) => void;
}

/**
 * Nitric's handler streams for what we do not serve (nitric.proto.<domain>.v1): @nitric/sdk opens
 * one per `api().get()`, `topic().subscribe()`, `bucket().on()`, `schedule().every()` and `http()`,
 * and crashes on UNIMPLEMENTED (its streams have no error listener). The collector answers them as
 * it does websocket streams: it reads the registration, records the resource and ends with OK. Each
 * registration is `ClientMessage { registration_request = 2 { <name> = 1 } }` (http:
 * `ClientMessage { request = 1 { host = 1 } }`, no name).
 */
const UNSERVED_STREAMS: { path: string; kind: string; field: number }[] = [
  { path: "/nitric.proto.apis.v1.Api/Serve", kind: "api", field: 2 },
  { path: "/nitric.proto.topics.v1.Subscriber/Subscribe", kind: "topic", field: 2 },
  { path: "/nitric.proto.storage.v1.StorageListener/Listen", kind: "bucket", field: 2 },
  { path: "/nitric.proto.schedules.v1.Schedules/Schedule", kind: "schedule", field: 2 },
  { path: "/nitric.proto.http.v1.Http/Proxy", kind: "http", field: 0 },
  { path: "/nitric.proto.batch.v1.JobHandler/HandleJob", kind: "job", field: 2 },
];

/** The bytes of length-delimited field `field` of a protobuf message, or undefined (never throws). */
export function protoField(message: Uint8Array, field: number): Uint8Array | undefined {
  let i = 0;
  const varint = (): number | undefined => {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const b = message[i++];
      if (b === undefined) return undefined;
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return value;
    }
    return undefined;
  };
  while (i < message.length) {
    const key = varint();
    if (key === undefined) return undefined;
    const wire = key % 8;
    if (wire === 0) {
      if (varint() === undefined) return undefined;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else if (wire === 2) {
      const length = varint();
      if (length === undefined || i + length > message.length) return undefined;
      if (Math.floor(key / 8) === field) return message.subarray(i, i + length);
      i += length;
    } else return undefined;
  }
  return undefined;
}

/**
 * Whether a resource of a kind we do not serve (UNSERVED_STREAMS) is recorded already: @nitric/sdk
 * both declares an api (a topic...) and opens its stream, in either order over gRPC, and the
 * resource is recorded once.
 */
function recordedUnserved(result: CollectedService, kind: string, name: string): boolean {
  return (
    UNSERVED_STREAMS.some((s) => s.kind === kind) && result.declared.some((d) => d.kind === kind && d.name === name)
  );
}

/** The resource name in one of UNSERVED_STREAMS' registrations ("" when it has none). */
function registeredName(message: Uint8Array, field: number): string {
  if (field === 0) return "";
  const registration = protoField(message, field);
  const name = registration && protoField(registration, 1);
  return name ? new TextDecoder().decode(name) : "";
}

const UNAVAILABLE = (what: string) =>
  new RpcError(
    Code.UNAVAILABLE,
    `${what} is not available while nitric-like collects the spec (NITRIC_ENVIRONMENT=build); call it from a handler, not at the top level of a service`,
  );

/** Runs the collect pass over every service, in parallel. */
export async function collect(
  project: Project,
  services: { entry: ServiceEntry; bundle?: Bundle }[],
  options: CollectOptions = {},
): Promise<CollectedService[]> {
  return Promise.all(
    services.map(async (s) => {
      if (!options.reuse) return collectOne(project, s.entry, s.bundle, options);
      const kept = options.reuse.get(s.entry.name);
      if (kept) return kept;
      const result = await collectOne(project, s.entry, s.bundle, options);
      keepCollection(s.entry, s.bundle, options.dotenv, result);
      return result;
    }),
  );
}

/**
 * What a service's collect pass found, kept beside its bundle (`<bundle>.collected.json`) for the
 * next `run`. The service's code is all in its bundle, so while the bundle file and the
 * environment the service is collected with (this process's, its .env files') are the same, so is
 * what it declares; a service that reads other files at its top level to decide its resources is
 * collected anew by `spec`, `up` and by `run` after any change to its code. Only a pass that
 * succeeded is kept, and a service with a start command is always collected.
 */
function collectionKey(
  entry: ServiceEntry,
  bundle: Bundle | undefined,
  dotenv: ReadonlyMap<string, string> | undefined,
) {
  if (entry.start !== undefined || bundle === undefined) return undefined;
  const stamp = (file: string | undefined) => {
    const s = file === undefined ? undefined : statSync(file, { throwIfNoEntry: false });
    return s ? [s.mtimeMs, s.size] : null;
  };
  const env = withDotEnv(dotenv);
  const hash = createHash("sha256");
  hash.update(
    JSON.stringify([COLLECTION_FORMAT, entry.name, entry.file, stamp(bundle.outfile), stamp(bundle.threadOutfile)]),
  );
  hash.update(JSON.stringify(env, Object.keys(env).sort()));
  return { file: `${bundle.outfile}.collected.json`, key: hash.digest("hex") };
}

/** Changes when CollectedService or this cache's file does: older files are then not read. */
const COLLECTION_FORMAT = 1;

/** The kept collections of `services` whose bundle and environment are unchanged since, by service. */
export function keptCollections(
  services: readonly { entry: ServiceEntry; bundle?: Bundle | undefined }[],
  dotenv: ReadonlyMap<string, string> | undefined,
): Map<string, CollectedService> {
  const kept = new Map<string, CollectedService>();
  for (const s of services) {
    const result = keptCollection(s.entry, s.bundle, dotenv);
    if (result) kept.set(s.entry.name, result);
  }
  return kept;
}

/** The kept collection of a service, if its bundle and environment are unchanged since it was kept. */
function keptCollection(
  entry: ServiceEntry,
  bundle: Bundle | undefined,
  dotenv: ReadonlyMap<string, string> | undefined,
): CollectedService | undefined {
  const at = collectionKey(entry, bundle, dotenv);
  if (at === undefined) return undefined;
  try {
    const kept = JSON.parse(readFileSync(at.file, "utf8")) as { key?: unknown; result?: CollectedService };
    const result = kept.key === at.key ? kept.result : undefined;
    // The same shape as a pass gives, or the service is collected.
    const whole =
      result?.name === entry.name &&
      Array.isArray(result.declared) &&
      Array.isArray(result.grants) &&
      Array.isArray(result.handlers) &&
      result.failure === undefined;
    return whole ? result : undefined;
  } catch {
    // None kept yet, or unreadable: the service is collected.
    return undefined;
  }
}

function keepCollection(
  entry: ServiceEntry,
  bundle: Bundle | undefined,
  dotenv: ReadonlyMap<string, string> | undefined,
  result: CollectedService,
): void {
  const at = collectionKey(entry, bundle, dotenv);
  if (at === undefined || result.failure !== undefined) return;
  try {
    // Written whole, then renamed: a run that stops half-way leaves no half file.
    const temp = `${at.file}.${process.pid}.tmp`;
    writeFileSync(temp, JSON.stringify({ key: at.key, result }));
    renameSync(temp, at.file);
  } catch {
    // Only a shortcut for the next run.
  }
}

/** Collects one service: serves it a collector, runs it, and records what it declared and how it ended. */
async function collectOne(
  project: Project,
  entry: ServiceEntry,
  bundle: Bundle | undefined,
  options: CollectOptions,
): Promise<CollectedService> {
  const result: CollectedService = { name: entry.name, file: entry.file, declared: [], grants: [], handlers: [] };
  // Each call the service makes re-arms its quiet timer, from the moment it runs (see watchdog).
  let touch: (waiting?: LoadWaiting) => void = () => {};
  let loading: (frames: string[] | null) => void = () => {};
  const router = collectorRouter(
    result,
    (waiting) => touch(waiting),
    (frames) => loading(frames),
  );
  const threaded = options.threads === true && entry.start === undefined && !!bundle?.threadOutfile;
  let ports: PortServer | undefined;
  let server: GrpcServer | undefined;
  let runDir: RunDir | undefined;
  let child: ServiceHandle;
  if (threaded && bundle) {
    // A thread reaches the collector over a port alone (no gRPC server, no grpc-js loaded).
    const { port1, port2 } = new MessageChannel();
    ports = new PortServer(router);
    ports.serve(port1);
    const launch: ServiceLaunch = { ...collectLaunch(project, entry, options), endpoint: "" };
    child = startServiceThread({ ...launch, bundle }, port2);
  } else {
    server = new (await import("@nitric-like/rpc/grpc")).GrpcServer(router);
    const served = await serveCollector(server, project, entry, options);
    runDir = served.runDir;
    child = processHandle(
      spawnService(bundle ? { ...served.launch, bundle } : served.launch),
      served.launch.service.start !== undefined,
    );
  }
  options.onLaunched?.();
  const output = new RecentOutput(200);
  const keep = (line: string) => output.push(line);
  const streams = [child.stdout, child.stderr].filter((s) => s !== null).map((s) => ended(s));
  if (child.stdout) forEachLine(child.stdout, keep);
  if (child.stderr) forEachLine(child.stderr, keep);
  const startTimeoutMs = options.startTimeoutMs ?? 15000;
  const note = options.onNote ?? ((line: string) => process.stderr.write(`${line}\n`));
  const dog = watchdog(child, result, options.quietMs ?? 1500, startTimeoutMs, options.loadingMs ?? 10_000, {
    dir: project.dir,
    file: entry.file,
    name: entry.name,
    note,
  });
  touch = dog.heard;
  loading = dog.loading;
  dog.arm(startTimeoutMs);
  const exit = await new Promise<ServiceExit>((resolve) => {
    child.onError((error) => resolve({ code: null, signal: null, error }));
    child.onExit((code, signal) => resolve({ code, signal }));
  });
  dog.clear();
  server?.forceStop();
  ports?.stop();
  runDir?.remove();
  // A thread's last lines may still be on their way to this thread: its streams end with it,
  // after all it wrote (its last words after 8 MB of output included, see boundOutput), so they
  // are waited for (up to 30 s, which only a bug would reach).
  if (threaded) {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(streams), new Promise((r) => (timer = setTimeout(r, 30_000)))]);
    clearTimeout(timer);
  }
  if (threaded && bundle && child.threadUnsupported?.()) {
    // A thread-only build (run's, BundleOptions.threadOnly) left no bundle for a process: made now.
    const whole = existsSync(bundle.outfile) ? bundle : await bundleService(project.dir, entry);
    return collectOne(project, entry, whole, { ...options, threads: false });
  }
  recordExit(result, exit, dog.stoppedByUs(), output.text(), {
    file: entry.file,
    loading: dog.isLoading(),
    at: dog.loadingAt(),
  });
  return result;
}

/** Resolves once a stream has ended. */
function ended(stream: NodeJS.ReadableStream): Promise<void> {
  return new Promise((resolve) => {
    stream.once("end", resolve);
    stream.once("close", resolve);
  });
}

/**
 * The collector's services: Resources and the handler and authorizer streams record into `result`
 * and acknowledge; the streams of kinds nobody serves record their resource; every call that
 * would need a running provider fails with UNAVAILABLE, saying to make it from a handler.
 * `touch` is called on each sign of life, with what the service waits for when our SDK's sign of
 * life says so (LOAD_TIMERS_SIGN); `loading` with where our SDK's last call was made as the
 * service's module loaded while it has not finished loading, null once it has (LOAD_PENDING_SIGN).
 */
function collectorRouter(
  result: CollectedService,
  touch: (waiting?: LoadWaiting) => void,
  loading: (frames: string[] | null) => void,
): Router {
  const router = new Router();
  router.service(Resources, {
    declare(call, callback) {
      const { id, config } = call.request;
      const pending = id?.type === ResourceType.Policy ? loadPending(id.name) : undefined;
      if (pending !== undefined) {
        // A note of the SDK's, no sign of life: a module stuck at a top-level await sends one.
        loading(pending);
        callback(null, {});
        return;
      }
      touch(id?.type === ResourceType.Policy ? loadWaiting(id.name) : undefined);
      if (id?.type === ResourceType.Policy && config.case === "policy") {
        const permissions = permissionsOf(config.value.actions);
        for (const r of config.value.resources) {
          const kind =
            r.type === ResourceType.Websocket
              ? "websocket"
              : r.type === ResourceType.KeyValueStore
                ? "kv"
                : r.type === ResourceType.Secret
                  ? "secret"
                  : undefined;
          if (kind === undefined) continue;
          const resource: ResourceRef = { kind, name: r.name };
          result.grants.push({ resource, permissions });
        }
      } else if (id && !recordedUnserved(result, resourceKindOf(id.type), id.name)) {
        const origins = config.case === "websocket" ? config.value.allowedOrigins : [];
        const routeBy = config.case === "websocket" ? config.value.routeBy : "";
        result.declared.push({
          kind: resourceKindOf(id.type),
          name: id.name,
          ...(origins.length > 0 ? { allowedOrigins: origins } : {}),
          ...(routeBy !== "" ? { routeBy } : {}),
        });
      }
      callback(null, {});
    },
  });
  router.service(WebsocketHandler, {
    handleEvents(call) {
      touch();
      call.onMessage((message: ClientMessage) => {
        if (message.content.case !== "registrationRequest") return;
        const { socketName, eventType, route } = message.content.value;
        const event = EVENT_NAMES[eventType] ?? "message";
        result.handlers.push(route === "" ? { socket: socketName, event } : { socket: socketName, event, route });
        call.write({ id: "", content: { case: "registrationResponse", value: {} } });
        // Ending with OK (never an error status: it crashes @nitric/sdk) lets the service exit.
        call.end();
        touch();
      });
    },
  });
  router.service(Authorizer, {
    handleAuthorizations(call) {
      touch();
      call.onMessage((message: HandleAuthorizationsRequest) => {
        if (message.content.case !== "registration") return;
        const { socketName } = message.content.value;
        result.authorizes ??= [];
        if (!result.authorizes.includes(socketName)) result.authorizes.push(socketName);
        call.write({ id: "", content: { case: "registration", value: { socketName } } });
        // Ending with OK lets the service exit, as for handler streams.
        call.end();
        touch();
      });
    },
  });
  for (const stream of UNSERVED_STREAMS) {
    router.raw(stream.path, (call) => {
      touch();
      call.onMessage((message) => {
        const name = registeredName(message, stream.field);
        if (!recordedUnserved(result, stream.kind, name)) result.declared.push({ kind: stream.kind, name });
        // Ending with OK, as for websocket streams, lets the service exit.
        call.end();
        touch();
      });
    });
  }
  router.service(Websocket, {
    sendMessage: (_call, cb) => cb(UNAVAILABLE("websocket send")),
    closeConnection: (_call, cb) => cb(UNAVAILABLE("websocket close")),
    socketDetails: (_call, cb) => cb(UNAVAILABLE("websocket url")),
  });
  router.service(Connections, {
    isConnected: (_call, cb) => cb(UNAVAILABLE("websocket isConnected")),
    getConnection: (_call, cb) => cb(UNAVAILABLE("websocket connection")),
    listConnections: (call) => call.fail(UNAVAILABLE("websocket connections")),
    broadcast: (_call, cb) => cb(UNAVAILABLE("websocket broadcast")),
    closeConnections: (_call, cb) => cb(UNAVAILABLE("websocket close")),
  });
  router.service(KvStore, {
    getValue: (_call, cb) => cb(UNAVAILABLE("kv get")),
    setValue: (_call, cb) => cb(UNAVAILABLE("kv set")),
    deleteKey: (_call, cb) => cb(UNAVAILABLE("kv delete")),
    scanKeys: (call) => call.fail(UNAVAILABLE("kv keys")),
  });
  router.service(SecretManager, {
    put: (_call, cb) => cb(UNAVAILABLE("secret put")),
    access: (_call, cb) => cb(UNAVAILABLE("secret access")),
  });
  return router;
}

/** How a service is started for its collect pass, less where it reaches the collector. */
function collectLaunch(
  project: Project,
  entry: ServiceEntry,
  options: CollectOptions,
): Omit<ServiceLaunch, "endpoint"> {
  return {
    project,
    service: entry,
    environment: "build" as const,
    ...(options.dotenv ? { dotenv: options.dotenv } : {}),
  };
}

/** Says, on stderr, that another user's process tried the collector of `service` (once per pass). */
function refusedCollectCall(service: string, uid: number | undefined, cut: { said: boolean }): void {
  if (cut.said) return;
  cut.said = true;
  const who = uid === undefined ? "a process whose user the kernel did not show" : `another user (uid ${uid})`;
  process.stderr.write(
    `warning: service "${service}": cut a connection to its collect pass on 127.0.0.1 from ${who}; only processes of your user (uid ${process.getuid?.()}) may declare your services' resources\n`,
  );
}

/**
 * Binds the collector and says how the service reaches it. Whoever reaches the collector can add
 * to the spec (and so to what `up` grants), so it is an owner-only Unix socket, as the endpoints
 * under `run` are. A service with a start command may use an SDK that reads only
 * NITRIC_SERVICE_HOST/PORT: it gets 127.0.0.1 too, for these seconds, serving this user's
 * processes only where the kernel says whose a connection is (Linux).
 */
async function serveCollector(
  server: GrpcServer,
  project: Project,
  entry: ServiceEntry,
  options: CollectOptions,
): Promise<{ launch: ServiceLaunch; runDir: RunDir | undefined }> {
  const bind = (address: string) => server.bind(address);
  const runDir = currentUid() === undefined ? undefined : createRunDir();
  try {
    const local = runDir ? join(runDir.path, "collect.sock") : undefined;
    if (local) {
      await bind(`unix:${local}`);
      chmodSync(local, 0o600);
    }
    const cut = { said: false };
    // Only this user's processes are served there where the kernel says whose a connection is
    // (GrpcServer.bindLoopback): another user's could add to the spec in these seconds.
    const tcp =
      entry.start !== undefined || !local
        ? `127.0.0.1:${(await server.bindLoopback(0, (uid) => refusedCollectCall(entry.name, uid, cut))).port}`
        : undefined;
    const launch: ServiceLaunch = {
      ...collectLaunch(project, entry, options),
      endpoint: tcp ?? `unix:${local}`,
      ...(tcp && local ? { address: `unix:${local}` } : {}),
    };
    return { launch, runDir };
  } catch (error) {
    server.forceStop();
    runDir?.remove();
    throw error;
  }
}

const isFrames = (frames: unknown): frames is string[] =>
  Array.isArray(frames) && frames.every((f) => typeof f === "string");

/**
 * What a sign of life of our SDK says the service waits for (LOAD_TIMERS_SIGN), or undefined for
 * any other policy's name (a grant). An older SDK's sign says its timers alone.
 */
function loadWaiting(name: string): LoadWaiting | undefined {
  if (!name.startsWith(LOAD_TIMERS_SIGN)) return undefined;
  try {
    const said: unknown = JSON.parse(name.slice(LOAD_TIMERS_SIGN.length));
    if (Array.isArray(said)) return { timers: said.filter(isFrames), requests: [], connections: [] };
    if (typeof said !== "object" || said === null) return undefined;
    const { timers, requests, connections, processes, workers, ports } = said as Record<string, unknown>;
    return {
      timers: Array.isArray(timers) ? timers.filter(isFrames) : [],
      requests: Array.isArray(requests) ? requests.filter((r): r is string => typeof r === "string") : [],
      connections: (Array.isArray(connections) ? connections : []).flatMap((c: unknown) => {
        if (typeof c !== "object" || c === null) return [];
        const { frames, peer } = c as Record<string, unknown>;
        return [{ frames: isFrames(frames) ? frames : [], ...(typeof peer === "string" ? { peer } : {}) }];
      }),
      processes: (Array.isArray(processes) ? processes : []).flatMap((p: unknown) => {
        if (typeof p !== "object" || p === null) return [];
        const { frames, command, pid } = p as Record<string, unknown>;
        return [
          {
            frames: isFrames(frames) ? frames : [],
            ...(typeof command === "string" ? { command } : {}),
            ...(Number.isSafeInteger(pid) ? { pid: pid as number } : {}),
          },
        ];
      }),
      workers: framesOf(workers),
      ports: framesOf(ports),
    };
  } catch {
    return undefined;
  }
}

/** Each entry of a sign's list of things known by where they were started (workers, ports): its frames. */
function framesOf(list: unknown): { frames: string[] }[] {
  return (Array.isArray(list) ? list : []).flatMap((w: unknown) => {
    if (typeof w !== "object" || w === null) return [];
    const { frames } = w as Record<string, unknown>;
    return [{ frames: isFrames(frames) ? frames : [] }];
  });
}

/**
 * Where our SDK says the service's module made its last call as it loaded, while it has not
 * finished loading (LOAD_PENDING_SIGN): the stack frames, or null once it has; undefined for any
 * other policy's name.
 */
function loadPending(name: string): string[] | null | undefined {
  if (!name.startsWith(LOAD_PENDING_SIGN)) return undefined;
  try {
    const said: unknown = JSON.parse(name.slice(LOAD_PENDING_SIGN.length));
    return said === null ? null : isFrames(said) ? said : undefined;
  } catch {
    return undefined;
  }
}

/** The first frame of `frames` (as the SDK sends them, trimmed) in the project's own files. */
function locationOf(frames: string[], dir: string): string | undefined {
  return projectLocation(
    frames.map((f) => `    ${f}`),
    dir,
  );
}

/**
 * What a service's collect pass waits for, as a sign of life said it (`waiting`), in words: each
 * timer with where it was set, each connection with an unanswered request, each child process
 * with its program and pid, each worker thread with where it was started, each MessagePort with
 * where it was made, each kind of request.
 */
export function waitingSaid(waiting: LoadWaiting, dir: string): string {
  const said = new Set<string>();
  for (const frames of waiting.timers) {
    const at = locationOf(frames, dir);
    said.add(at === undefined ? "a timer" : `a timer set at ${at}`);
  }
  for (const c of waiting.connections) {
    const at = locationOf(c.frames, dir);
    said.add(
      `a connection${c.peer === undefined ? "" : ` to ${c.peer}`} with an unanswered request${at === undefined ? "" : ` (opened at ${at})`}`,
    );
  }
  for (const p of waiting.processes ?? []) {
    const at = locationOf(p.frames, dir);
    const about = [p.pid === undefined ? undefined : `pid ${p.pid}`, at === undefined ? undefined : `started at ${at}`];
    const paren = about.filter((a) => a !== undefined).join(", ");
    said.add(
      `a child process${p.command === undefined ? "" : ` \`${p.command}\``}${paren === "" ? "" : ` (${paren})`}`,
    );
  }
  for (const w of waiting.workers ?? []) {
    const at = locationOf(w.frames, dir);
    said.add(`a worker thread${at === undefined ? "" : ` (started at ${at})`}`);
  }
  for (const p of waiting.ports ?? []) {
    const at = locationOf(p.frames, dir);
    said.add(`a MessagePort${at === undefined ? "" : ` (made at ${at})`}`);
  }
  for (const r of waiting.requests) said.add(r);
  if (said.size === 0) return "work it started";
  // One line: a service with many timers pending is said by its first few.
  const all = [...said];
  const shown = all.slice(0, WAITING_SAID);
  return `${shown.join(", ")}${all.length > shown.length ? ` and ${all.length - shown.length} more` : ""}`;
}

/** How many things a service's pass waits for its note names, at most. */
const WAITING_SAID = 4;

/** How long the collect pass waits on a service's load work before it says what for (once). */
export const WAITING_NOTE_MS = 2000;

/**
 * What the collect pass says, once, of a service whose load work it has waited on for a while:
 * what for, and that registrations must happen at module load.
 */
export function waitingMessage(service: string, file: string, waiting: LoadWaiting, dir: string): string {
  return `service ${JSON.stringify(service)} (${file}): its collect pass is waiting for work it started as it loaded (up to ${LOAD_WORK_EACH_MS / 1000} s for each, ${LOAD_WORK_TOTAL_MS / 1000} s in all): ${waitingSaid(waiting, dir)}; handlers must be registered at module load, so one registered when that work ends is refused`;
}

/** Where a service's module stopped as it loaded, as our SDK said (LOAD_PENDING_SIGN): after which line. */
function awaitWhere(file: string, at: string | undefined): string {
  return at === undefined ? `in ${file}, after its last declaration or registration` : `after ${at}`;
}

/**
 * What the collect pass says, once, of a service whose module it has waited on for a while to
 * finish loading (our SDK said it had not, at a top-level await after `at`).
 */
export function loadingMessage(service: string, file: string, at: string | undefined, limitMs: number): string {
  return `service ${JSON.stringify(service)} (${file}): its collect pass is waiting (up to ${limitMs / 1000} s) for its module to finish loading: a top-level await ${awaitWhere(file, at)} has not settled; handlers must be registered at module load, and those after that await are collected once it settles`;
}

/**
 * What the collect pass says of a service whose module had not finished loading (our SDK said so)
 * when the pass ended: it is stuck at a top-level await after its last call at load (`at`, when a
 * frame of it is in the project's files), so the handlers after that await never came. `how`:
 * how long the await was waited for, or how it ended.
 */
export function unfinishedLoadMessage(file: string, at: string | undefined, how: string): string {
  return `its module never finished loading: a top-level await ${awaitWhere(file, at)} ${how} (a connection that never opens, a promise nothing resolves), so the handlers it registers after that await were never collected; register handlers at module load, before any await that may not settle, or make sure it settles`;
}

/**
 * What the collect pass says of a service whose event loop stopped turning: where it was
 * started, when a sign of life said a timer of its load was pending (`timers`, callers' frames):
 * the blocking loop is most likely that timer's callback; else what to look for in its file.
 */
export function blockedMessage(seconds: number, service: { dir: string; file: string }, timers: string[][]): string {
  const at = [
    ...new Set(timers.map((frames) => locationOf(frames, service.dir)).filter((l): l is string => l !== undefined)),
  ];
  const after = `its event loop was not turning ${seconds.toFixed(1)} s after it started`;
  if (at.length > 0) {
    const one = at.length === 1;
    return `${after}, while ${one ? "the timer" : "the timers"} it set as it loaded at ${at.join(", ")} ${one ? "was" : "were"} pending: ${one ? "its callback" : "their callbacks"} (or what ${one ? "it calls" : "they call"}) most likely ${one ? "loops" : "loop"} without yielding or ${one ? "waits" : "wait"} synchronously, so its handlers could not be collected`;
  }
  return `${after} (a loop at its top level that never yields, or a synchronous wait), so its handlers could not be collected; look in ${service.file}, and what it imports, for a loop with no await in it or a synchronous wait (Atomics.wait, execSync) that runs as it loads`;
}

/** What the collect pass says of a service that declared nothing within `ms` and did not exit. */
export function silentMessage(ms: number, file: string): string {
  return `declared nothing within ${ms / 1000} s and did not exit; a service must declare its resources when it starts: look in ${file} for a top-level await that never settles before its first declaration (a connection that never opens, a promise nothing resolves), or a declaration its code skips (one under a condition)`;
}

/** How often the collect pass looks again at a service waited for at a top-level await. */
const LOADING_STEP_MS = 500;

/** How long the collect pass waits for a service's event loop to answer a check before it calls it busy. */
const BUSY_PROBE_MS = 250;

/**
 * Stops a service that does not finish: one that declares nothing within the first `arm`, or goes
 * quiet for `quietMs` after its last sign of life (`heard`) without exiting. One stopped before it
 * declared anything gets a failure saying so. A service whose event loop does not answer a check
 * when it has gone quiet is still running its top level (its handlers register once it yields):
 * it is waited for up to `limitMs` from its start, then stopped with a failure saying it blocks,
 * rather than taken for one that declared everything (its handlers would be reported missing).
 * A service our SDK says has not finished loading when it has gone quiet is at a top-level await:
 * it is waited for up to `loadingMs` from when the SDK said so, then stopped with a failure saying
 * that its module never finished loading, not taken for one whose handlers are missing.
 * `service`: the project's folder and the service's file, which its failures name, its name, and
 * where to say what it has been waited on for (once, after WAITING_NOTE_MS).
 */
function watchdog(
  child: ServiceHandle,
  result: CollectedService,
  quietMs: number,
  limitMs: number,
  loadingMs: number,
  service: { dir: string; file: string; name: string; note: (line: string) => void },
) {
  const startedAt = Date.now();
  // Where the timers of its load it waits for were started, as the last sign of life said.
  let timers: string[][] = [];
  // Since when its load work has been waited on (its first sign of life saying what), and whether
  // that has been said.
  let waitingSince: number | undefined;
  let saidWaiting = false;
  // Where its module made its last call as it loaded, while our SDK says it has not finished, and
  // since when it has said so.
  let loadingAfter: string[] | undefined;
  let loadingSince = 0;
  const loadingAt = () => (loadingAfter === undefined ? undefined : locationOf(loadingAfter, service.dir));
  let stoppedByUs = false;
  let timer: NodeJS.Timeout | undefined;
  let heardFrom = false;
  // Which arm() is current: a check that ends after a later arm() or clear() decides nothing.
  let armed = 0;
  const stop = (failure?: string) => {
    stoppedByUs = true;
    if (failure !== undefined) result.failure = { message: failure, output: "", stopped: true };
    void child.stop(1000);
  };
  // Whether a check found its event loop busy since the last sign of life.
  let wasBusy = false;
  const expire = async (which: number, ms: number) => {
    const busy = child.turns !== undefined && !(await child.turns(BUSY_PROBE_MS));
    if (which !== armed) return;
    const elapsed = Date.now() - startedAt;
    if (busy && elapsed < limitMs) {
      wasBusy = true;
      return arm(Math.min(BUSY_PROBE_MS, limitMs - elapsed), ms);
    }
    // Its loop has just turned again: what it declared as it ended the busy stretch may still be
    // on its way (the check's answer takes another channel), so it gets a quiet spell of its own.
    if (!busy && wasBusy) {
      wasBusy = false;
      return arm(quietMs, ms);
    }
    if (busy) return stop(blockedMessage(elapsed / 1000, service, timers));
    if (!heardFrom) return stop(silentMessage(ms, service.file));
    if (loadingAfter === undefined) return stop();
    // At a top-level await: waited for, in short steps, up to loadingMs since the SDK said so.
    const waited = Date.now() - loadingSince;
    if (waited < loadingMs) {
      if (!saidWaiting && waited >= WAITING_NOTE_MS) {
        saidWaiting = true;
        service.note(loadingMessage(service.name, service.file, loadingAt(), loadingMs));
      }
      return arm(Math.min(LOADING_STEP_MS, loadingMs - waited), ms);
    }
    stop(unfinishedLoadMessage(service.file, loadingAt(), `had not settled ${(waited / 1000).toFixed(1)} s later`));
  };
  // `said`: the limit a failure names (the first arm's, through the checks that follow it).
  const arm = (ms: number, said = ms) => {
    clearTimeout(timer);
    const which = ++armed;
    timer = setTimeout(() => void expire(which, said), ms);
  };
  return {
    arm,
    heard: (waiting?: LoadWaiting) => {
      if (waiting !== undefined) {
        timers = waiting.timers;
        const now = Date.now();
        waitingSince ??= now;
        if (!saidWaiting && now - waitingSince >= WAITING_NOTE_MS) {
          saidWaiting = true;
          service.note(waitingMessage(service.name, service.file, waiting, service.dir));
        }
      }
      heardFrom = true;
      wasBusy = false;
      arm(quietMs);
    },
    loading: (frames: string[] | null) => {
      if (frames !== null && loadingAfter === undefined) loadingSince = Date.now();
      loadingAfter = frames ?? undefined;
      // Loaded: what it does next (registrations, its load work's signs of life) gets a quiet spell.
      if (frames === null) arm(quietMs);
    },
    loadingAt,
    isLoading: () => loadingAfter !== undefined,
    clear: () => {
      armed++;
      clearTimeout(timer);
    },
    stoppedByUs: () => stoppedByUs,
  };
}

/** How a service process ended. */
interface ServiceExit {
  code: number | null;
  signal: string | null;
  error?: Error;
}

/**
 * Records a service that could not start or failed on its own, with its last lines of output.
 * `service`: its file, which the meaning of an exit code names, and where its module stopped
 * loading when our SDK said it had not finished (a top-level await after that line).
 */
function recordExit(
  result: CollectedService,
  exit: ServiceExit,
  stoppedByUs: boolean,
  output: string,
  service: { file: string; loading: boolean; at: string | undefined },
): void {
  if (exit.error) {
    result.failure = { message: `could not start: ${exit.error.message}`, output };
  } else if (!stoppedByUs && exit.code !== 0) {
    const how = exit.code === null ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
    const meaning =
      exit.code !== UNSETTLED_AWAIT_EXIT_CODE
        ? ""
        : service.loading
          ? `: ${unfinishedLoadMessage(service.file, service.at, "never settled, nothing being left that could settle it")}`
          : `: ${exitCodeMeaning(exit.code, service.file)}`;
    result.failure = { message: `${how} while its resources were being collected${meaning}`, output };
  } else if (result.failure && result.failure.output === "") {
    result.failure.output = output;
  }
}
