/**
 * The server side of the contracts for one service, written once for every provider and every
 * transport: a Router with each contract service's implementation. The endpoint a call arrives
 * on (a router per service) is how a provider knows which service makes it, and so which grants
 * apply: the SDKs send no identity. The local provider serves it over gRPC and MessagePorts, the
 * AWS runtime in memory, in the function's own thread. Nitric's methods for what nitric-like does
 * not serve answer UNIMPLEMENTED with what was used and what is served (unserved.ts).
 */
import { Authorizer } from "@nitric-like/contracts/authorize";
import { Connections } from "@nitric-like/contracts/connections";
import { Health } from "@nitric-like/contracts/health";
import { KvStore } from "@nitric-like/contracts/kvstore";
import { Resources } from "@nitric-like/contracts/resources";
import { Rooms } from "@nitric-like/contracts/rooms";
import { SecretManager } from "@nitric-like/contracts/secrets";
import { Websocket, WebsocketHandler } from "@nitric-like/contracts/websockets";
import { Code, Router } from "@nitric-like/rpc";
import { authorizerService } from "./authorizer.js";
import { connectionsService } from "./connections.js";
import { healthService } from "./health.js";
import { type KvContext, kvService } from "./kv.js";
import { type ResourcesContext, resourcesService } from "./resources.js";
import { roomsService } from "./rooms.js";
import { type SecretsContext, secretsService } from "./secrets.js";
import { unservedMethods } from "./unserved.js";
import { type WebsocketContext, websocketHandlerService, websocketService } from "./websocket.js";

/** What a service's router needs from its provider. */
export type EndpointContext = KvContext & SecretsContext & ResourcesContext & WebsocketContext;

/** The router of one service's endpoint. */
export function serviceRouter(service: string, ctx: EndpointContext): Router {
  const router = new Router()
    .service(Resources, resourcesService(ctx, service))
    .service(Websocket, websocketService(ctx, service))
    .service(WebsocketHandler, websocketHandlerService(ctx, service))
    .service(KvStore, kvService(ctx, service))
    .service(SecretManager, secretsService(ctx, service))
    .service(Connections, connectionsService(ctx, service))
    .service(Authorizer, authorizerService(ctx, service))
    .service(Rooms, roomsService(ctx, service));
  for (const m of unservedMethods(service)) router.refuse(m.path, m.kind, Code.UNIMPLEMENTED, m.message);
  return router.service(Health, healthService(new Set(router.serviceNames())));
}
