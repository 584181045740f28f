/** The Rooms gRPC service (our own contract): rooms and per-connection state, kept by the provider. */
import { isUtf8 } from "node:buffer";
import type { Rooms } from "@nitric-like/contracts/rooms";
import { Code, RpcError, type ServiceImpl } from "@nitric-like/rpc";
import { connectionStateProblem, roomNameProblem } from "@nitric-like/spec";
import { gatewayFor, notConnected, settle, type WebsocketContext } from "./websocket.js";

function checkRoom(socket: string, room: string): void {
  const problem = roomNameProblem(`websocket "${socket}"`, room);
  if (problem) throw new RpcError(Code.INVALID_ARGUMENT, problem);
}

/** Builds the Rooms implementation for the service `service`. */
export function roomsService(ctx: WebsocketContext, service: string): ServiceImpl<typeof Rooms> {
  return {
    join(call, callback) {
      try {
        const { socketName, connectionId, room } = call.request;
        const gateway = gatewayFor(ctx, service, socketName);
        checkRoom(socketName, room);
        settle(
          gateway.join(connectionId, room),
          (joined) =>
            callback(joined === undefined ? notConnected(socketName, connectionId) : null, { joined: joined === true }),
          callback,
        );
      } catch (error) {
        callback(error as Error);
      }
    },
    leave(call, callback) {
      try {
        const { socketName, connectionId, room } = call.request;
        const gateway = gatewayFor(ctx, service, socketName);
        checkRoom(socketName, room);
        settle(gateway.leave(connectionId, room), (left) => callback(null, { left }), callback);
      } catch (error) {
        callback(error as Error);
      }
    },
    listMembers(call, callback) {
      try {
        const { socketName, room } = call.request;
        const gateway = gatewayFor(ctx, service, socketName);
        checkRoom(socketName, room);
        settle(gateway.members(room), (connectionIds) => callback(null, { connectionIds }), callback);
      } catch (error) {
        callback(error as Error);
      }
    },
    listRooms(call, callback) {
      try {
        const { socketName, connectionId } = call.request;
        const gateway = gatewayFor(ctx, service, socketName);
        settle(gateway.roomsOf(connectionId), (rooms) => callback(null, { rooms }), callback);
      } catch (error) {
        callback(error as Error);
      }
    },
    broadcastToRoom(call, callback) {
      try {
        const { socketName, room, data, binary, except } = call.request;
        const gateway = gatewayFor(ctx, service, socketName);
        checkRoom(socketName, room);
        if (!binary && !isUtf8(data)) {
          throw new RpcError(
            Code.INVALID_ARGUMENT,
            `websocket "${socketName}": a text frame must be UTF-8; broadcast these bytes as binary`,
          );
        }
        settle(
          gateway.broadcastToRoom(room, data, binary, new Set(except)),
          (sent) => callback(null, { sent }),
          callback,
        );
      } catch (error) {
        callback(error as Error);
      }
    },
    setState(call, callback) {
      try {
        const { socketName, connectionId, stateJson } = call.request;
        const gateway = gatewayFor(ctx, service, socketName);
        const problem = connectionStateProblem(`websocket "${socketName}"`, stateJson);
        if (problem) throw new RpcError(Code.INVALID_ARGUMENT, problem);
        settle(
          gateway.setState(connectionId, stateJson),
          (ok) => callback(ok ? null : notConnected(socketName, connectionId), {}),
          callback,
        );
      } catch (error) {
        callback(error as Error);
      }
    },
    getState(call, callback) {
      try {
        const { socketName, connectionId } = call.request;
        const gateway = gatewayFor(ctx, service, socketName);
        settle(
          gateway.getState(connectionId),
          (json) =>
            callback(json === undefined ? notConnected(socketName, connectionId) : null, { stateJson: json ?? "" }),
          callback,
        );
      } catch (error) {
        callback(error as Error);
      }
    },
  };
}
