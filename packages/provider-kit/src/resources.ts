/** The Resources gRPC service of one service's endpoint: declarations and the grants they carry. */

import { Action, type Resources, ResourceType } from "@nitric-like/contracts/resources";
import { Code, RpcError, type ServiceImpl } from "@nitric-like/rpc";
import {
  type Logger,
  type Permission,
  type ResourceKind,
  resourceNameProblem,
  routeByProblem,
} from "@nitric-like/spec";
import type { Permissions } from "./permissions.js";

const PERMISSIONS: Partial<Record<Action, Permission>> = {
  [Action.KeyValueStoreRead]: "get",
  [Action.KeyValueStoreWrite]: "set",
  [Action.KeyValueStoreDelete]: "delete",
  [Action.WebsocketManage]: "manage",
  [Action.SecretAccess]: "access",
  [Action.SecretPut]: "put",
};

/** The permissions a policy's actions grant (actions on resources we do not serve grant none). */
export function permissionsOf(actions: readonly Action[]): Permission[] {
  return actions.map((a) => PERMISSIONS[a]).filter((p): p is Permission => p !== undefined);
}

function kindOf(type: ResourceType): ResourceKind | undefined {
  if (type === ResourceType.Websocket) return "websocket";
  if (type === ResourceType.KeyValueStore) return "kv";
  if (type === ResourceType.Secret) return "secret";
  return undefined;
}

/**
 * The kind of a declared resource: "websocket", "kv" and "secret" are served; any other is named as the
 * @nitric/sdk call that declares it (`api`, `topic`, `bucket`, ...), so the spec can refuse it by
 * the name the user wrote.
 */
export function resourceKindOf(type: ResourceType): string {
  switch (type) {
    case ResourceType.Websocket:
      return "websocket";
    case ResourceType.KeyValueStore:
      return "kv";
    case ResourceType.Secret:
      return "secret";
    case ResourceType.Subscription:
      return "topic";
    case ResourceType.BucketListener:
      return "bucket";
    case ResourceType.SqlDatabase:
      return "sql";
    case ResourceType.ApiSecurityDefinition:
      return "oidcRule";
    default: {
      const name = ResourceType[type];
      return name ? name[0]?.toLowerCase() + name.slice(1) : `resource type ${type}`;
    }
  }
}

/** What the Resources service needs from the provider. */
export interface ResourcesContext {
  permissions: Permissions;
  logger: Logger;
  declareSocket(name: string, allowedOrigins: string[]): Promise<void>;
  declareStore(name: string): void;
  declareSecret(name: string): void;
  /** Resources of kinds not served, already warned about. */
  unserved: Set<string>;
}

/** Builds the Resources implementation for the service `service`. */
export function resourcesService(ctx: ResourcesContext, service: string): ServiceImpl<typeof Resources> {
  return {
    declare(call, callback) {
      const { id, config } = call.request;
      if (!id) {
        callback(new RpcError(Code.INVALID_ARGUMENT, "declare: the request has no resource id"));
        return;
      }
      if (id.type === ResourceType.Policy) {
        if (config.case !== "policy") {
          callback(new RpcError(Code.INVALID_ARGUMENT, "declare: a policy declaration needs its policy"));
          return;
        }
        const permissions = permissionsOf(config.value.actions);
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
          callback(new RpcError(Code.INVALID_ARGUMENT, problem));
          return;
        }
      }
      if (kind === "websocket") {
        const origins = config.case === "websocket" ? config.value.allowedOrigins : [];
        // The routes themselves come from the spec; a routeBy no provider could select by is refused here too.
        const routeBy = config.case === "websocket" ? config.value.routeBy : "";
        const refused = routeBy === "" ? undefined : routeByProblem(id.name, routeBy);
        if (refused) {
          callback(new RpcError(Code.INVALID_ARGUMENT, refused));
          return;
        }
        ctx.declareSocket(id.name, origins).then(
          () => callback(null, {}),
          (error: Error) => callback(new RpcError(Code.UNAVAILABLE, error.message)),
        );
        return;
      }
      if (kind === "kv") {
        ctx.declareStore(id.name);
        callback(null, {});
        return;
      }
      if (kind === "secret") {
        try {
          ctx.declareSecret(id.name);
        } catch (error) {
          callback(new RpcError(Code.UNAVAILABLE, (error as Error).message));
          return;
        }
        callback(null, {});
        return;
      }
      // Recorded and answered OK, never an error: @nitric/sdk treats a failed declaration as fatal,
      // and the collect pass has already refused these before anything runs.
      const declared = `${resourceKindOf(id.type)} ${JSON.stringify(id.name)}`;
      const label = `${service}\u0000${declared}`;
      if (!ctx.unserved.has(label)) {
        ctx.unserved.add(label);
        ctx.logger.warn(
          `service "${service}" declares ${declared}, a kind of resource nitric-like does not serve: it is recorded but not served; nitric-like serves websocket(), kv() and secret()`,
        );
      }
      callback(null, {});
    },
  };
}
