/**
 * The runtime's endpoint inside the function's own thread. The runtime hands it over before it
 * loads the service's code; the SDKs in the bundle (ours, and @nitric/sdk through the grpc-js
 * stand-in, @nitric-like/contracts/grpc-standin) call it over a MessageChannel: the same routes
 * and message bytes as gRPC, without a server, a socket or an HTTP/2 connection to set up at every
 * cold start.
 */
import { MessageChannel, type MessagePort } from "node:worker_threads";
import { PortClient, type PortServer } from "@nitric-like/contracts/port";

let server: PortServer | undefined;
let client: PortClient | undefined;

/** Makes `ports` the endpoint in-process clients call. */
export function serveInProcess(ports: PortServer): void {
  server = ports;
  client = undefined;
}

/** A new port on the endpoint (its far end is served; neither end keeps the process alive). */
export function openInProcessPort(): MessagePort {
  if (!server) {
    throw new Error(
      "nitric-like runtime: the service's code called the provider before the runtime started; " +
        "load it through the function's generated entry (nitric-like build), not on its own",
    );
  }
  const { port1, port2 } = new MessageChannel();
  server.serve(port1);
  port1.unref();
  return port2;
}

/** The one client every in-process caller shares. */
export function inProcessClient(): PortClient {
  client ??= new PortClient(openInProcessPort());
  return client;
}
