/** The Resources gRPC service of one service's endpoint: declarations and the grants they carry. */
import { GrpcStatus, grpcError, type ServiceImpl } from "@nitric-like/contracts/grpc";
import { Action, type Resources, ResourceType } from "@nitric-like/contracts/resources";
import { type Logger, type Permission, type ResourceKind, resourceNameProblem } from "@nitric-like/spec";
import type { Permissions } from "./permissions.js";

const PERMISSIONS: Partial<Record<Action, Permission>> = {
  [Action.KeyValueStoreRead]: "get",
  [Action.KeyValueStoreWrite]: "set",
  [Action.KeyValueStoreDelete]: "delete",
  [Action.WebsocketManage]: "manage",
};

function kindOf(type: ResourceType): ResourceKind | undefined {
  if (type === ResourceType.Websocket) return "websocket";
  if (type === ResourceType.KeyValueStore) return "kv";
  return undefined;
}

/** What the Resources service needs from the provider. */
export interface ResourcesContext {
  permissions: Permissions;
  logger: Logger;
  declareSocket(name: string, allowedOrigins: string[]): Promise<void>;
  declareStore(name: string): void;
  /** Resources of kinds not served, already warned about. */
  unserved: Set<string>;
}

/** Builds the Resources implementation for the service `service`. */
export function resourcesService(ctx: ResourcesContext, service: string): ServiceImpl<typeof Resources> {
  return {
    declare(call, callback) {
      const { id, config } = call.request;
      if (!id) {
        callback(grpcError(GrpcStatus.INVALID_ARGUMENT, "declare: the request has no resource id"));
        return;
      }
      if (id.type === ResourceType.Policy) {
        if (config.case !== "policy") {
          callback(grpcError(GrpcStatus.INVALID_ARGUMENT, "declare: a policy declaration needs its policy"));
          return;
        }
        const permissions = config.value.actions
          .map((a) => PERMISSIONS[a])
          .filter((p): p is Permission => p !== undefined);
        // A Service principal with a blank name is the caller; named principals are other services.
        const principals = config.value.principals.map((p) => (p.name === "" ? service : p.name));
        for (const r of config.value.resources) {
          const kind = kindOf(r.type);
          if (!kind || resourceNameProblem(kind, r.name)) continue;
          for (const principal of principals) ctx.permissions.grant(principal, kind, r.name, permissions);
        }
        callback(null, {});
        return;
      }
      const kind = kindOf(id.type);
      if (kind) {
        const problem = resourceNameProblem(kind, id.name);
        if (problem) {
          callback(grpcError(GrpcStatus.INVALID_ARGUMENT, problem));
          return;
        }
      }
      if (kind === "websocket") {
        const origins = config.case === "websocket" ? config.value.allowedOrigins : [];
        ctx.declareSocket(id.name, origins).then(
          () => callback(null, {}),
          (error: Error) => callback(grpcError(GrpcStatus.UNAVAILABLE, error.message)),
        );
        return;
      }
      if (kind === "kv") {
        ctx.declareStore(id.name);
        callback(null, {});
        return;
      }
      const label = `${ResourceType[id.type] ?? id.type} "${id.name}"`;
      if (!ctx.unserved.has(label)) {
        ctx.unserved.add(label);
        ctx.logger.warn(
          `service "${service}" declares ${label}: nitric-like serves websockets and kv stores, so it is recorded but not served`,
        );
      }
      callback(null, {});
    },
  };
}
