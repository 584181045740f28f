/** The Connections gRPC service (our own contract): live connections, kept by the gateway. */
import { isUtf8 } from "node:buffer";
import type { Connections } from "@nitric-like/contracts/connections";
import { Code, RpcError, type ServiceImpl } from "@nitric-like/rpc";
import { checkClose, gatewayFor, notConnected, settle, type WebsocketContext } from "./websocket.js";

/** Builds the Connections implementation for the service `service`. */
export function connectionsService(ctx: WebsocketContext, service: string): ServiceImpl<typeof Connections> {
  return {
    isConnected(call, callback) {
      try {
        const gateway = gatewayFor(ctx, service, call.request.socketName);
        settle(gateway.has(call.request.connectionId), (connected) => callback(null, { connected }), callback);
      } catch (error) {
        callback(error as Error);
      }
    },
    getConnection(call, callback) {
      try {
        const { socketName, connectionId } = call.request;
        settle(
          gatewayFor(ctx, service, socketName).info(connectionId),
          (info) => callback(info ? null : notConnected(socketName, connectionId), { connection: info }),
          callback,
        );
      } catch (error) {
        callback(error as Error);
      }
    },
    listConnections(call) {
      try {
        settle(
          gatewayFor(ctx, service, call.request.socketName).list(),
          (list) => {
            for (const info of list) call.write({ connection: info });
            call.end();
          },
          (error) => call.fail(error),
        );
      } catch (error) {
        // grpc-js sends an "error" event's status to the client; destroy() would drop the call without one.
        call.fail(error as Error);
      }
    },
    broadcast(call, callback) {
      try {
        const { socketName, data, binary, except } = call.request;
        const gateway = gatewayFor(ctx, service, socketName);
        if (!binary && !isUtf8(data)) {
          throw new RpcError(
            Code.INVALID_ARGUMENT,
            `websocket "${socketName}": a text frame must be UTF-8; broadcast these bytes as binary`,
          );
        }
        settle(gateway.broadcast(data, binary, new Set(except)), (sent) => callback(null, { sent }), callback);
      } catch (error) {
        callback(error as Error);
      }
    },
    closeConnections(call, callback) {
      try {
        const { socketName, connectionIds, code, reason } = call.request;
        const gateway = gatewayFor(ctx, service, socketName);
        const closeCode = checkClose(socketName, code, reason);
        const ids = [...new Set(connectionIds)];
        settle(
          Promise.all(ids.map((id) => gateway.close(id, closeCode, reason))),
          (results) => {
            const closed = ids.filter((_, i) => results[i]);
            const notOpen = ids.filter((_, i) => !results[i]);
            callback(null, { closed, notConnected: notOpen });
          },
          callback,
        );
      } catch (error) {
        callback(error as Error);
      }
    },
  };
}
