/**
 * The collect pass: each service runs once with NITRIC_ENVIRONMENT=build against a collector that
 * records every declaration and handler registration, acknowledges them, and ends each handler
 * stream with OK so the service can exit. It never hangs: a service that goes quiet without exiting
 * is stopped, and one that crashes is reported with its output.
 */
import type { ChildProcess } from "node:child_process";
import { chmodSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { Connections } from "@nitric-like/contracts/connections";
import { addService, GrpcStatus, grpcError } from "@nitric-like/contracts/grpc";
import { KvStore } from "@nitric-like/contracts/kvstore";
import { Action, Resources, ResourceType } from "@nitric-like/contracts/resources";
import { type ClientMessage, Websocket, WebsocketEventType, WebsocketHandler } from "@nitric-like/contracts/websockets";
import { createRunDir, currentUid } from "@nitric-like/provider-kit";
import type {
  CollectedService,
  Permission,
  Project,
  ResourceRef,
  ServiceEntry,
  WebsocketEvent,
} from "@nitric-like/spec";
import type { Bundle } from "./bundle.js";
import { forEachLine, type ServiceLaunch, spawnService, stopProcess } from "./service-process.js";

/** Limits of the collect pass. */
export interface CollectOptions {
  /** How long a service may take to make its first declaration. @default 15000 */
  startTimeoutMs?: number;
  /** How long a service may stay quiet after its last declaration before it is stopped. @default 1500 */
  quietMs?: number;
}

const EVENT_NAMES: Record<WebsocketEventType, WebsocketEvent> = {
  [WebsocketEventType.Connect]: "connect",
  [WebsocketEventType.Disconnect]: "disconnect",
  [WebsocketEventType.Message]: "message",
};

const PERMISSIONS: Partial<Record<Action, Permission>> = {
  [Action.KeyValueStoreRead]: "get",
  [Action.KeyValueStoreWrite]: "set",
  [Action.KeyValueStoreDelete]: "delete",
  [Action.WebsocketManage]: "manage",
};

function kindOf(type: ResourceType): string {
  if (type === ResourceType.Websocket) return "websocket";
  if (type === ResourceType.KeyValueStore) return "kv";
  return ResourceType[type] ?? `type ${type}`;
}

const UNAVAILABLE = (what: string) =>
  grpcError(
    GrpcStatus.UNAVAILABLE,
    `${what} is not available while nitric-like collects the spec (NITRIC_ENVIRONMENT=build); call it from a handler, not at the top level of a service`,
  );

/** Runs the collect pass over every service, in parallel. */
export async function collect(
  project: Project,
  services: { entry: ServiceEntry; bundle?: Bundle }[],
  options: CollectOptions = {},
): Promise<CollectedService[]> {
  return Promise.all(services.map((s) => collectOne(project, s.entry, s.bundle, options)));
}

async function collectOne(
  project: Project,
  entry: ServiceEntry,
  bundle: Bundle | undefined,
  options: CollectOptions,
): Promise<CollectedService> {
  const result: CollectedService = { name: entry.name, file: entry.file, declared: [], grants: [], handlers: [] };
  const startTimeoutMs = options.startTimeoutMs ?? 15000;
  const quietMs = options.quietMs ?? 1500;
  let touch = () => {};

  const server = new grpc.Server();
  addService(server, Resources, {
    declare(call, callback) {
      touch();
      const { id, config } = call.request;
      if (id?.type === ResourceType.Policy && config.case === "policy") {
        const permissions = config.value.actions
          .map((a) => PERMISSIONS[a])
          .filter((p): p is Permission => p !== undefined);
        for (const r of config.value.resources) {
          if (r.type !== ResourceType.Websocket && r.type !== ResourceType.KeyValueStore) continue;
          const resource: ResourceRef = { kind: r.type === ResourceType.Websocket ? "websocket" : "kv", name: r.name };
          result.grants.push({ resource, permissions });
        }
      } else if (id) {
        const origins = config.case === "websocket" ? config.value.allowedOrigins : [];
        result.declared.push(
          origins.length > 0
            ? { kind: kindOf(id.type), name: id.name, allowedOrigins: origins }
            : { kind: kindOf(id.type), name: id.name },
        );
      }
      callback(null, {});
    },
  });
  addService(server, WebsocketHandler, {
    handleEvents(call) {
      touch();
      call.on("data", (message: ClientMessage) => {
        if (message.content.case !== "registrationRequest") return;
        const { socketName, eventType } = message.content.value;
        result.handlers.push({ socket: socketName, event: EVENT_NAMES[eventType] ?? "message" });
        call.write({ id: "", content: { case: "registrationResponse", value: {} } });
        // Ending with OK (never an error status: it crashes @nitric/sdk) lets the service exit.
        call.end();
        touch();
      });
      call.on("error", () => {});
    },
  });
  addService(server, Websocket, {
    sendMessage: (_call, cb) => cb(UNAVAILABLE("websocket send")),
    closeConnection: (_call, cb) => cb(UNAVAILABLE("websocket close")),
    socketDetails: (_call, cb) => cb(UNAVAILABLE("websocket url")),
  });
  addService(server, Connections, {
    isConnected: (_call, cb) => cb(UNAVAILABLE("websocket isConnected")),
    getConnection: (_call, cb) => cb(UNAVAILABLE("websocket connection")),
    listConnections: (call) => call.destroy(UNAVAILABLE("websocket connections")),
    broadcast: (_call, cb) => cb(UNAVAILABLE("websocket broadcast")),
    closeConnections: (_call, cb) => cb(UNAVAILABLE("websocket close")),
  });
  addService(server, KvStore, {
    getValue: (_call, cb) => cb(UNAVAILABLE("kv get")),
    setValue: (_call, cb) => cb(UNAVAILABLE("kv set")),
    deleteKey: (_call, cb) => cb(UNAVAILABLE("kv delete")),
    scanKeys: (call) => call.destroy(UNAVAILABLE("kv keys")),
  });
  const bind = (address: string) =>
    new Promise<number>((resolve, reject) =>
      server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
  // Whoever reaches the collector can add to the spec (and so to what `up` grants), so it is an
  // owner-only Unix socket, as the endpoints under `run` are. A service with a start command may
  // use an SDK that reads only NITRIC_SERVICE_HOST/PORT: it gets 127.0.0.1 too, for these seconds.
  const runDir = currentUid() === undefined ? undefined : createRunDir();
  let launch: ServiceLaunch;
  try {
    const local = runDir ? join(runDir.path, "collect.sock") : undefined;
    if (local) {
      await bind(`unix:${local}`);
      chmodSync(local, 0o600);
    }
    const tcp = entry.start !== undefined || !local ? `127.0.0.1:${await bind("127.0.0.1:0")}` : undefined;
    launch = {
      project,
      service: entry,
      endpoint: tcp ?? `unix:${local}`,
      ...(tcp && local ? { address: `unix:${local}` } : {}),
      environment: "build" as const,
    };
  } catch (error) {
    server.forceShutdown();
    runDir?.remove();
    throw error;
  }
  const child: ChildProcess = spawnService(bundle ? { ...launch, bundle } : launch);
  const output: string[] = [];
  const keep = (line: string) => {
    output.push(line);
    if (output.length > 200) output.shift();
  };
  if (child.stdout) forEachLine(child.stdout, keep);
  if (child.stderr) forEachLine(child.stderr, keep);

  let stoppedByUs = false;
  let timer: NodeJS.Timeout | undefined;
  let heardFrom = false;
  const arm = (ms: number) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      stoppedByUs = true;
      if (!heardFrom) {
        result.failure = {
          message: `declared nothing within ${ms / 1000} s and did not exit; a service must declare its resources when it starts`,
          output: "",
        };
      }
      void stopProcess(child, 1000);
    }, ms);
  };
  touch = () => {
    heardFrom = true;
    arm(quietMs);
  };
  arm(startTimeoutMs);

  const exit = await new Promise<{ code: number | null; signal: string | null; error?: Error }>((resolve) => {
    child.once("error", (error) => resolve({ code: null, signal: null, error }));
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
  clearTimeout(timer);
  server.forceShutdown();
  runDir?.remove();
  if (exit.error) {
    result.failure = { message: `could not start: ${exit.error.message}`, output: output.join("\n") };
  } else if (!stoppedByUs && exit.code !== 0) {
    const how = exit.code === null ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
    result.failure = { message: `${how} while its resources were being collected`, output: output.join("\n") };
  } else if (result.failure && result.failure.output === "") {
    result.failure.output = output.join("\n");
  }
  return result;
}
