/**
 * Test helpers: a real local provider in a temp folder, and a real client playing a service
 * (declarations and handler streams) over gRPC or a port, so provider tests need no SDK and mock nothing.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Action, Resources, ResourceType } from "@nitric-like/contracts/resources";
import {
  type ClientMessageSchema,
  type ServerMessage,
  type WebsocketEventRequest,
  type WebsocketEventResponseSchema,
  WebsocketEventType,
  WebsocketHandler,
} from "@nitric-like/contracts/websockets";
import { Client, createPortTransport, type DuplexCall } from "@nitric-like/rpc";
import { createGrpcTransport } from "@nitric-like/rpc/grpc";
import type { Spec } from "@nitric-like/spec";
import WebSocket from "ws";
import { createLocalProvider, type LocalProvider, type LocalProviderOptions } from "../src/index.js";

const cleanups: (() => Promise<void> | void)[] = [];

/** Listening servers (TCPServerWrap handles) that are not ours: what the process had before any test. */
const baselineServers = listeningServers();

function listeningServers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === "TCPServerWrap").length;
}

/**
 * Stops every provider and client made by these helpers and removes their folders, then fails the
 * test if a server (gateway or gRPC endpoint) is still listening: stop() must close everything.
 */
export async function cleanup(): Promise<void> {
  transport = "grpc";
  for (const c of cleanups.splice(0).reverse()) await c();
  // A closed server's handle goes away on the next turn of the event loop.
  for (let i = 0; i < 50 && listeningServers() > baselineServers; i++) await new Promise((r) => setTimeout(r, 10));
  const left = listeningServers() - baselineServers;
  if (left > 0) throw new Error(`cleanup: ${left} server(s) still listening after stop(); stop() must close them`);
}

/** Log lines a provider wrote. */
export interface Logs {
  info: string[];
  warn: string[];
  error: string[];
}

/** Starts a provider on a temp folder (or `dataDir`) with ephemeral ports. */
export async function startProvider(
  options: Partial<LocalProviderOptions> & { spec?: Spec } = {},
): Promise<{ provider: LocalProvider; logs: Logs; dir: string }> {
  const dir = options.project?.dir ?? mkdtempSync(join(tmpdir(), "nitric-like-local-"));
  const logs: Logs = { info: [], warn: [], error: [] };
  const provider = await createLocalProvider({
    project: { name: "test", dir, file: join(dir, "nitric-like.yaml"), services: [], websockets: {} },
    spec: { name: "test", services: [], resources: [], policies: [] },
    logger: { info: (m) => logs.info.push(m), warn: (m) => logs.warn.push(m), error: (m) => logs.error.push(m) },
    randomPorts: true,
    // TCP too, unlike `run`'s default: the raw-bytes tests reach an endpoint by its port.
    tcp: true,
    ...options,
  });
  cleanups.push(async () => {
    await provider.stop();
    if (!options.project) rmSync(dir, { recursive: true, force: true });
  });
  return { provider, logs, dir };
}

/** How a test's service reaches its endpoint: gRPC (a service process) or a port (a service thread). */
export type Transport = "grpc" | "port";
/** Both transports, for describe.each: the tests that play a service run over each. */
export const TRANSPORTS: Transport[] = ["grpc", "port"];
let transport: Transport = "grpc";

/** The transport serviceClient() uses until cleanup() (which goes back to gRPC). */
export function useTransport(t: Transport): void {
  transport = t;
}

/** A client for one service's endpoint, over the transport in use. */
export async function serviceClient(provider: LocalProvider, service: string): Promise<Client> {
  if (transport === "port") {
    const port = await provider.openPort(service);
    const client = new Client(createPortTransport(port));
    cleanups.push(() => {
      client.close();
      port.close();
    });
    return client;
  }
  const client = new Client(createGrpcTransport(await provider.endpoint(service)));
  cleanups.push(() => client.close());
  return client;
}

/** Grants the calling service (a blank Service principal) `actions` on a resource, as the SDKs do. */
async function declarePolicy(client: Client, type: ResourceType, name: string, actions: Action[]): Promise<void> {
  await client.unary(Resources.method.declare, {
    id: { type: ResourceType.Policy, name: "" },
    config: {
      case: "policy",
      value: { principals: [{ type: ResourceType.Service, name: "" }], actions, resources: [{ type, name }] },
    },
  });
}

/** Declares a websocket (and its manage policy) as the SDKs do. */
export async function declareSocket(client: Client, name: string): Promise<void> {
  await client.unary(Resources.method.declare, { id: { type: ResourceType.Websocket, name } });
  await declarePolicy(client, ResourceType.Websocket, name, [Action.WebsocketManage]);
}

/** Declares a kv store with some permissions. */
export async function declareStore(client: Client, name: string, actions: Action[]): Promise<void> {
  await client.unary(Resources.method.declare, {
    id: { type: ResourceType.KeyValueStore, name },
    config: { case: "keyValueStore", value: {} },
  });
  await declarePolicy(client, ResourceType.KeyValueStore, name, actions);
}

type Answer = MessageInitShape<typeof WebsocketEventResponseSchema> | undefined;

/**
 * A handler stream (of a message route when `route` is given): registers, then answers each event
 * with `answer` (undefined: no answer now; a later one goes on `call` with the event's `id`).
 */
export async function handle(
  client: Client,
  socket: string,
  event: "connect" | "disconnect" | "message",
  answer: (request: WebsocketEventRequest, id: string) => Answer,
  route = "",
): Promise<{
  events: WebsocketEventRequest[];
  call: DuplexCall<MessageInitShape<typeof ClientMessageSchema>, ServerMessage>;
  status: Promise<number>;
}> {
  const call = client.bidi(WebsocketHandler.method.handleEvents);
  const events: WebsocketEventRequest[] = [];
  const status = new Promise<number>((resolve) => call.on("status", (s: { code: number }) => resolve(s.code)));
  call.on("error", () => {});
  const registered = new Promise<void>((resolve) => {
    call.on("data", (message: ServerMessage) => {
      if (message.content.case === "registrationResponse") resolve();
      if (message.content.case !== "websocketEventRequest") return;
      events.push(message.content.value);
      const value = answer(message.content.value, message.id);
      if (value) call.write({ id: message.id, content: { case: "websocketEventResponse", value } });
    });
  });
  const eventType = {
    connect: WebsocketEventType.Connect,
    disconnect: WebsocketEventType.Disconnect,
    message: WebsocketEventType.Message,
  }[event];
  call.write({ id: "", content: { case: "registrationRequest", value: { socketName: socket, eventType, route } } });
  await registered;
  cleanups.push(() => {
    call.end();
  });
  return { events, call, status };
}

/** Accepts every connect. */
export const accept = (): Answer => ({ websocketResponse: { case: "connectionResponse", value: { reject: false } } });

/** Opens a ws client; resolves once open. */
export function open(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    cleanups.push(() => ws.terminate());
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

/** Resolves with the close code and reason of a client. */
export function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() })));
}

/** Resolves with the next message of a client. */
export function nextMessage(ws: WebSocket): Promise<{ data: Buffer; binary: boolean }> {
  return new Promise((resolve) => ws.once("message", (data: Buffer, binary: boolean) => resolve({ data, binary })));
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until `check()` holds, looking every `everyMs` for `timeoutMs`; fails naming `what` it waited for. */
export async function until(check: () => boolean, what: string, timeoutMs = 2000, everyMs = 5): Promise<void> {
  for (let i = 0; i < timeoutMs / everyMs; i++) {
    if (check()) return;
    await sleep(everyMs);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The URL of a socket. */
export function urlOf(provider: LocalProvider, socket: string): string {
  const found = provider.sockets().find((s) => s.name === socket);
  if (!found) throw new Error(`no socket ${socket}`);
  return found.url;
}
