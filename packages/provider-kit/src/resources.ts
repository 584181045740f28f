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
import type { MaybePromise } from "./backends.js";
import type { Declaration } from "./late-declarations.js";
import type { Permissions } from "./permissions.js";
import { shownId } from "./websocket.js";

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
  /**
   * The refusal of a declaration the deployment would not include (late-declarations.ts), or
   * undefined to accept it; a refused one is answered OK and not applied (the provider says why,
   * and the resource's calls fail with it). Absent: every declaration is accepted.
   */
  checkDeclaration?(service: string, declaration: Declaration): MaybePromise<string | undefined>;
}

/** The first refusal among `declarations` (checked in turn), or undefined. */
async function firstRefusal(
  ctx: ResourcesContext,
  declarations: { service: string; declaration: Declaration }[],
): Promise<string | undefined> {
  for (const { service, declaration } of declarations) {
    const refused = await ctx.checkDeclaration?.(service, declaration);
    if (refused !== undefined) return refused;
  }
  return undefined;
}

/** Builds the Resources implementation for the service `service`. */
export function resourcesService(ctx: ResourcesContext, service: string): ServiceImpl<typeof Resources> {
  const impl = declareImpl(ctx, service);
  if (ctx.checkDeclaration === undefined) return { declare: impl };
  return {
    declare(call, callback) {
      const { id, config } = call.request;
      const kind = id ? kindOf(id.type) : undefined;
      const checks: { service: string; declaration: Declaration }[] = [];
      if (id?.type === ResourceType.Policy && config.case === "policy") {
        const permissions = permissionsOf(config.value.actions);
        for (const r of config.value.resources) {
          const k = kindOf(r.type);
          if (!k || resourceNameProblem(k, r.name)) continue;
          for (const p of config.value.principals)
            checks.push({
              service: p.name === "" ? service : p.name,
              declaration: { kind: k, name: r.name, permissions },
            });
        }
      } else if (id && kind && !resourceNameProblem(kind, id.name)) {
        checks.push({ service, declaration: { kind, name: id.name } });
      }
      if (checks.length === 0) {
        impl(call, callback);
        return;
      }
      firstRefusal(ctx, checks).then(
        (refused) => {
          if (refused === undefined) {
            impl(call, callback);
            return;
          }
          // Answered OK but not applied: both SDKs end the process on a refused declaration
          // (@nitric/sdk through an unhandled rejection), which from a handler would end every
          // other connection's events too. The resource's calls fail with the refusal instead.
          callback(null, {});
        },
        (error: Error) => callback(new RpcError(Code.INTERNAL, `declare: ${error.message}`)),
      );
    },
  };
}

/** The Resources service's declare, as it is once a declaration is accepted. */
function declareImpl(ctx: ResourcesContext, service: string): ServiceImpl<typeof Resources>["declare"] {
  return (call, callback) => {
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
    // Said once per service and kind, the first name shown (its start when long): a service, or
    // anyone at its endpoint, declaring a bucket per client would otherwise write a line per name
    // and grow this set without bound.
    const unservedKind = resourceKindOf(id.type);
    const declared = `${unservedKind} ${shownId(id.name)}`;
    const label = `${service}\u0000${unservedKind}`;
    if (!ctx.unserved.has(label)) {
      ctx.unserved.add(label);
      ctx.logger.warn(
        `service "${service}" declares ${declared}, a kind of resource nitric-like does not serve: it is recorded but not served; nitric-like serves websocket(), kv() and secret() (said once per service and kind)`,
      );
    }
    callback(null, {});
  };
}
