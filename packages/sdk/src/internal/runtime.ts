/**
 * The connection to the provider: one gRPC client per process, made on first use from
 * SERVICE_ADDRESS, and the bookkeeping that lets a service process exit when the provider ends
 * all of its handler streams (the collect pass, or `nitric-like run` stopping).
 */
import { GrpcClient } from "@nitric-like/contracts/grpc";

let client: GrpcClient | undefined;
let openStreams = 0;

/** The provider's address. */
export function serviceAddress(): string {
  return process.env.SERVICE_ADDRESS ?? "127.0.0.1:50051";
}

/** `run`, `build` (collect pass) or `cloud`. */
export function environment(): string {
  return process.env.NITRIC_ENVIRONMENT ?? "run";
}

/** The client, created on first use. */
export function runtime(): GrpcClient {
  client ??= new GrpcClient(serviceAddress());
  return client;
}

/** Counts an open handler stream. */
export function streamOpened(): void {
  openStreams++;
}

/** Counts a closed handler stream; the last one closes the client so the process can exit. */
export function streamClosed(): void {
  openStreams--;
  if (openStreams === 0 && client) {
    client.close();
    client = undefined;
  }
}

/** A declaration the provider refused: the service cannot work, so it stops with the reason. */
export function fatal(message: string): never {
  process.stderr.write(`nitric-like: ${message}\n`);
  process.exit(1);
}
