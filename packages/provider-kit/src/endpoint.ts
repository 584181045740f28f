/**
 * One gRPC server per service: the endpoint a call arrives on is how the provider knows which
 * service makes it (the SDKs send no identity), and so which grants apply. Whoever can reach an
 * endpoint acts as its service, so where it listens decides who that can be: a Unix socket in a
 * private folder (this user only), and TCP on 127.0.0.1 (every user of this machine) only when asked.
 */
import { chmodSync, rmSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { Authorizer } from "@nitric-like/contracts/authorize";
import { Connections } from "@nitric-like/contracts/connections";
import { addRoutes, type Route, routes } from "@nitric-like/contracts/grpc";
import { Health } from "@nitric-like/contracts/health";
import { KvStore } from "@nitric-like/contracts/kvstore";
import { PortServer } from "@nitric-like/contracts/port";
import { Resources } from "@nitric-like/contracts/resources";
import { Rooms } from "@nitric-like/contracts/rooms";
import { Websocket, WebsocketHandler } from "@nitric-like/contracts/websockets";
import { authorizerService } from "./authorizer.js";
import { connectionsService } from "./connections.js";
import { healthService } from "./health.js";
import { type KvContext, kvService } from "./kv.js";
import { type ResourcesContext, resourcesService } from "./resources.js";
import { roomsService } from "./rooms.js";
import { type WebsocketContext, websocketHandlerService, websocketService } from "./websocket.js";

/** Messages up to this size cross the endpoint (kv values; frames are limited by the gateway). */
const MAX_GRPC_MESSAGE_BYTES = 64 * 1024 * 1024;

/** What an endpoint needs from its provider. */
export type EndpointContext = KvContext & ResourcesContext & WebsocketContext;

/** A running endpoint. */
export interface Endpoint {
  /** `127.0.0.1:port`; empty when the endpoint does not serve TCP. */
  address: string;
  /** `unix:<path>` when it also listens on a Unix socket. */
  localAddress?: string;
  /** The gRPC server; none when the endpoint serves ports only. */
  server?: grpc.Server;
  /**
   * The same endpoint for services that run as worker threads of this process: a port served here
   * answers exactly the calls the gRPC server answers.
   */
  ports: PortServer;
  socketPath?: string;
}

/** Options of an endpoint. */
export interface EndpointOptions {
  /**
   * Serve gRPC. Without it the endpoint serves only ports, for a runtime whose service's code runs
   * in its own thread (the AWS runtime). @default true
   */
  grpc?: boolean;
  /**
   * Serve gRPC on TCP, 127.0.0.1, for SDKs that cannot dial a Unix socket. Any user of this machine
   * can connect there and act as the service: the gRPC protocol of Nitric's SDKs carries no
   * credential. @default true when there is no socketPath, else false
   */
  tcp?: boolean;
  /**
   * Serve gRPC on a Unix socket at this path, which must be in a folder only this user can enter
   * (see the local provider's run folder): a gRPC round trip over it takes ~41–50 µs here against
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
  const ports = new PortServer();
  const server =
    options.grpc === false
      ? undefined
      : new grpc.Server({
          "grpc.max_receive_message_length": MAX_GRPC_MESSAGE_BYTES,
          "grpc.max_send_message_length": MAX_GRPC_MESSAGE_BYTES,
        });
  const serve = (list: Route[]) => {
    if (server) addRoutes(server, list);
    ports.add(list);
  };
  serve(routes(Resources, resourcesService(ctx, service)));
  serve(routes(Websocket, websocketService(ctx, service)));
  serve(routes(WebsocketHandler, websocketHandlerService(ctx, service)));
  serve(routes(KvStore, kvService(ctx, service)));
  serve(routes(Connections, connectionsService(ctx, service)));
  serve(routes(Authorizer, authorizerService(ctx, service)));
  serve(routes(Rooms, roomsService(ctx, service)));
  const served = new Set(
    [Resources, Websocket, WebsocketHandler, KvStore, Connections, Authorizer, Rooms].map((s) => s.typeName),
  );
  serve(routes(Health, healthService(served)));
  if (!server) return { address: "", ports };
  const { socketPath } = options;
  const endpoint: Endpoint = { address: "", server, ports };
  const bind = (address: string) =>
    new Promise<number>((resolve, reject) =>
      server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error, p) =>
        error ? reject(error) : resolve(p),
      ),
    );
  const tcp = options.tcp ?? socketPath === undefined;
  if (tcp) endpoint.address = `127.0.0.1:${await bind("127.0.0.1:0")}`;
  if (socketPath !== undefined) {
    try {
      await bind(`unix:${socketPath}`);
      chmodSync(socketPath, 0o600);
      endpoint.localAddress = `unix:${socketPath}`;
      endpoint.socketPath = socketPath;
    } catch (error) {
      const why = `service "${service}": cannot listen on the Unix socket ${JSON.stringify(socketPath)} (${(error as Error).message})`;
      if (!tcp) {
        server.forceShutdown();
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
export function stopEndpoint(endpoint: Endpoint, graceMs = 1000): Promise<void> {
  const server = endpoint.server;
  return new Promise<void>((resolve) => {
    if (!server) {
      resolve();
      return;
    }
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  }).then(() => {
    endpoint.ports.stop();
    if (endpoint.socketPath !== undefined) rmSync(endpoint.socketPath, { force: true });
  });
}
