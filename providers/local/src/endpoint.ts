/**
 * One endpoint per service: its router (provider-kit) served over gRPC, for service processes and
 * other languages, and over MessagePorts, for services that run as worker threads of this process.
 * Whoever can reach an endpoint acts as its service, so where it listens decides who that can be:
 * a Unix socket in a private folder (this user only), and TCP on 127.0.0.1 (every user of this
 * machine) only when asked.
 */
import { chmodSync, rmSync } from "node:fs";
import { type EndpointContext, serviceRouter } from "@nitric-like/provider-kit";
import { PortServer, type Router } from "@nitric-like/rpc";
import { GrpcServer } from "@nitric-like/rpc/grpc";

/** A running endpoint. */
export interface Endpoint {
  router: Router;
  /** `127.0.0.1:port`; empty when the endpoint does not serve TCP. */
  address: string;
  /** `unix:<path>` when it also listens on a Unix socket. */
  localAddress?: string;
  server: GrpcServer;
  /** The same router for services that run as worker threads of this process. */
  ports: PortServer;
  socketPath?: string;
}

/** Options of an endpoint. */
export interface EndpointOptions {
  /**
   * Serve gRPC on TCP, 127.0.0.1, for SDKs that cannot dial a Unix socket. Any user of this machine
   * can connect there and act as the service: the gRPC protocol of Nitric's SDKs carries no
   * credential. @default true when there is no socketPath, else false
   */
  tcp?: boolean;
  /**
   * Serve gRPC on a Unix socket at this path, which must be in a folder only this user can enter
   * (see the provider's run folder): a gRPC round trip over it takes ~41–50 µs here against
   * ~48–68 µs over TCP on 127.0.0.1. The socket is also made readable and writable by its owner
   * only, and removed when the endpoint stops.
   */
  socketPath?: string;
}

/** Starts the endpoint of one service. */
export async function startEndpoint(
  service: string,
  ctx: EndpointContext,
  options: EndpointOptions = {},
): Promise<Endpoint> {
  const router = serviceRouter(service, ctx);
  const server = new GrpcServer(router);
  const endpoint: Endpoint = { router, address: "", server, ports: new PortServer(router) };
  const { socketPath } = options;
  const tcp = options.tcp ?? socketPath === undefined;
  if (tcp) endpoint.address = `127.0.0.1:${await server.bind("127.0.0.1:0")}`;
  if (socketPath !== undefined) {
    try {
      await server.bind(`unix:${socketPath}`);
      chmodSync(socketPath, 0o600);
      endpoint.localAddress = `unix:${socketPath}`;
      endpoint.socketPath = socketPath;
    } catch (error) {
      const why = `service "${service}": cannot listen on the Unix socket ${JSON.stringify(socketPath)} (${(error as Error).message})`;
      if (!tcp) {
        server.forceStop();
        throw Object.assign(
          new Error(`${why}; set TMPDIR to a short local folder you own, or run with --tcp to serve it on 127.0.0.1`),
          { userFacing: true },
        );
      }
      // TCP alone still serves; say why the faster path is missing.
      ctx.logger.warn(`${why}; it talks to the provider over TCP`);
    }
  }
  return endpoint;
}

/** Stops an endpoint: lets calls finish for up to `graceMs`, then cuts them. */
export async function stopEndpoint(endpoint: Endpoint, graceMs = 1000): Promise<void> {
  await endpoint.server.stop(graceMs);
  endpoint.ports.stop();
  if (endpoint.socketPath !== undefined) rmSync(endpoint.socketPath, { force: true });
}
