/**
 * The connection to the provider: one client per process, made on first use, and the bookkeeping
 * that lets a service exit when the provider ends all of its handler streams (the collect pass, or
 * `nitric-like run` stopping). A service started as a worker thread of its provider (`nitric-like
 * run` does this for services using this SDK) finds a MessagePort in its workerData, and one run
 * by a provider in its own thread (the AWS runtime) finds one on globalThis; it calls the provider
 * over that port. Anywhere else the client is gRPC, to SERVICE_ADDRESS.
 */
import { workerData } from "node:worker_threads";
import { type ContractClient, GrpcClient } from "@nitric-like/contracts/grpc";
import { IN_PROCESS_PORT, PortClient, type PortLike, WORKER_PORT_KEY } from "@nitric-like/contracts/port";

let client: ContractClient | undefined;
/** The port client, kept once made: a port cannot be opened again once closed. */
let portClient: PortClient | undefined;

/** The provider's port: in a worker thread's workerData, or left on globalThis by an in-process runtime. */
function providerPort(): PortLike | undefined {
  const data = workerData as Record<string, unknown> | null | undefined;
  const port =
    (typeof data === "object" && data !== null ? data[WORKER_PORT_KEY] : undefined) ??
    (globalThis as Record<symbol, unknown>)[IN_PROCESS_PORT];
  return port && typeof (port as PortLike).postMessage === "function" ? (port as PortLike) : undefined;
}
let openStreams = 0;
// True once every handler stream this process opened has been ended by the provider.
let streamsEnded = false;
// Calls in flight (declarations, kv and socket operations): the client stays open for them.
let pending = 0;

/** The provider's address: SERVICE_ADDRESS, read when the client is made. @default "127.0.0.1:50051" */
export function serviceAddress(): string {
  return process.env.SERVICE_ADDRESS || "127.0.0.1:50051";
}

/** `run` (local), `build` (collect pass) or `cloud` (deployed): NITRIC_ENVIRONMENT. @default "run" */
export function environment(): "run" | "build" | "cloud" {
  const value = process.env.NITRIC_ENVIRONMENT;
  return value === "build" || value === "cloud" ? value : "run";
}

/** The client, created on first use. */
export function runtime(): ContractClient {
  if (!client) {
    const port = providerPort();
    if (port) {
      portClient ??= new PortClient(port);
      client = portClient;
    } else client = new GrpcClient(serviceAddress());
  }
  return client;
}

function closeIfIdle(): void {
  if (streamsEnded && openStreams === 0 && pending === 0 && client) {
    client.close();
    client = undefined;
  }
}

/** Keeps the client open while `operation` is in flight, and resolves as it does. */
export async function tracked<T>(operation: Promise<T>): Promise<T> {
  const release = hold();
  try {
    return await operation;
  } finally {
    release();
  }
}

/** Keeps the client open until the returned function is called (for streams read over time). */
export function hold(): () => void {
  pending++;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    pending--;
    closeIfIdle();
  };
}

/** Counts an open handler stream. */
export function streamOpened(): void {
  openStreams++;
  streamsEnded = false;
}

/**
 * Counts a closed handler stream. When the last one has closed and no call is in flight, the
 * client is closed so the process can exit by itself; a later call makes a new client.
 */
export function streamClosed(): void {
  openStreams--;
  if (openStreams === 0) streamsEnded = true;
  closeIfIdle();
}

/** A declaration the provider refused, or a lost provider: the service cannot work, so it stops. */
export function fatal(message: string): never {
  process.stderr.write(`nitric-like: ${message}\n`);
  process.exit(1);
}

/**
 * Unary and server-streaming calls on the process's client that keep it open while in flight.
 * SDK operations go through these; only handler streams use runtime().bidi() directly.
 */
export const rpc = {
  unary: ((method, request, options) => tracked(runtime().unary(method, request, options))) as ContractClient["unary"],
  serverStream: async function* (method, request, options) {
    const release = hold();
    try {
      yield* runtime().serverStream(method, request, options);
    } finally {
      release();
    }
  } as ContractClient["serverStream"],
};
