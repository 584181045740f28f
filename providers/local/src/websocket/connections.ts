/** The Connections gRPC service (our own contract): live connections, kept by the gateway. */
import { isUtf8 } from "node:buffer";
import type { Connections } from "@nitric-like/contracts/connections";
import { GrpcStatus, grpcError, type ServiceImpl } from "@nitric-like/contracts/grpc";
import { checkClose, gatewayFor, notConnected, type WebsocketContext } from "./service.js";

/** Builds the Connections implementation for the service `service`. */
export function connectionsService(ctx: WebsocketContext, service: string): ServiceImpl<typeof Connections> {
  return {
    isConnected(call, callback) {
      try {
        const gateway = gatewayFor(ctx, service, call.request.socketName);
        callback(null, { connected: gateway.has(call.request.connectionId) });
      } catch (error) {
        callback(error as Error);
      }
    },
    getConnection(call, callback) {
      try {
        const { socketName, connectionId } = call.request;
        const info = gatewayFor(ctx, service, socketName).info(connectionId);
        if (!info) throw notConnected(socketName, connectionId);
        callback(null, { connection: info });
      } catch (error) {
        callback(error as Error);
      }
    },
    listConnections(call) {
      try {
        for (const info of gatewayFor(ctx, service, call.request.socketName).list()) {
          call.write({ connection: info });
        }
        call.end();
      } catch (error) {
        // grpc-js sends an "error" event's status to the client; destroy() would drop the call without one.
        call.emit("error", error as Error);
      }
    },
    broadcast(call, callback) {
      try {
        const { socketName, data, binary, except } = call.request;
        const gateway = gatewayFor(ctx, service, socketName);
        if (!binary && !isUtf8(data)) {
          throw grpcError(
            GrpcStatus.INVALID_ARGUMENT,
            `websocket "${socketName}": a text frame must be UTF-8; broadcast these bytes as binary`,
          );
        }
        callback(null, { sent: gateway.broadcast(data, binary, new Set(except)) });
      } catch (error) {
        callback(error as Error);
      }
    },
    closeConnections(call, callback) {
      try {
        const { socketName, connectionIds, code, reason } = call.request;
        const gateway = gatewayFor(ctx, service, socketName);
        const closeCode = checkClose(socketName, code, reason);
        const closed: string[] = [];
        const notOpen: string[] = [];
        for (const id of new Set(connectionIds)) (gateway.close(id, closeCode, reason) ? closed : notOpen).push(id);
        callback(null, { closed, notConnected: notOpen });
      } catch (error) {
        callback(error as Error);
      }
    },
  };
}
