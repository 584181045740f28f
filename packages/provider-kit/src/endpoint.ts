/**
 * One gRPC server per service on 127.0.0.1: the endpoint a call arrives on is how the provider
 * knows which service makes it (the SDKs send no identity), and so which grants apply.
 */
import * as grpc from "@grpc/grpc-js";
import { Connections } from "@nitric-like/contracts/connections";
import { addService } from "@nitric-like/contracts/grpc";
import { Health } from "@nitric-like/contracts/health";
import { KvStore } from "@nitric-like/contracts/kvstore";
import { Resources } from "@nitric-like/contracts/resources";
import { Websocket, WebsocketHandler } from "@nitric-like/contracts/websockets";
import { connectionsService } from "./connections.js";
import { healthService } from "./health.js";
import { type KvContext, kvService } from "./kv.js";
import { type ResourcesContext, resourcesService } from "./resources.js";
import { type WebsocketContext, websocketHandlerService, websocketService } from "./websocket.js";

/** Messages up to this size cross the endpoint (kv values; frames are limited by the gateway). */
const MAX_GRPC_MESSAGE_BYTES = 64 * 1024 * 1024;

/** What an endpoint needs from its provider. */
export type EndpointContext = KvContext & ResourcesContext & WebsocketContext;

/** A running endpoint. */
export interface Endpoint {
  address: string;
  server: grpc.Server;
}

/** Starts the endpoint of one service. */
export async function startEndpoint(service: string, ctx: EndpointContext): Promise<Endpoint> {
  const server = new grpc.Server({
    "grpc.max_receive_message_length": MAX_GRPC_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_GRPC_MESSAGE_BYTES,
  });
  addService(server, Resources, resourcesService(ctx, service));
  addService(server, Websocket, websocketService(ctx, service));
  addService(server, WebsocketHandler, websocketHandlerService(ctx, service));
  addService(server, KvStore, kvService(ctx, service));
  addService(server, Connections, connectionsService(ctx, service));
  const served = new Set([Resources, Websocket, WebsocketHandler, KvStore, Connections].map((s) => s.typeName));
  addService(server, Health, healthService(served));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, p) =>
      error ? reject(error) : resolve(p),
    ),
  );
  return { address: `127.0.0.1:${port}`, server };
}

/** Stops an endpoint: lets calls finish for up to `graceMs`, then cuts them. */
export function stopEndpoint(endpoint: Endpoint, graceMs = 1000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      endpoint.server.forceShutdown();
      resolve();
    }, graceMs);
    endpoint.server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
