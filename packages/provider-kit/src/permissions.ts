/**
 * Who may do what: the grants each service declared through Policy resources. The endpoint a call
 * arrives on names the service, so a service can use only the permissions it declared itself.
 */
import { Code, RpcError } from "@nitric-like/rpc";
import type { Permission, ResourceKind } from "@nitric-like/spec";

const VERB: Record<Permission, string> = {
  get: "get keys",
  set: "set keys",
  delete: "delete keys",
  manage: "manage it",
};

/** The grants of every service. */
export class Permissions {
  private readonly grants = new Map<string, Set<Permission>>();

  private static key(service: string, kind: ResourceKind, name: string): string {
    return `${service}\u0000${kind}\u0000${name}`;
  }

  /** Records that `service` may do `permissions` on a resource. */
  grant(service: string, kind: ResourceKind, name: string, permissions: Iterable<Permission>): void {
    const key = Permissions.key(service, kind, name);
    const set = this.grants.get(key) ?? new Set();
    for (const p of permissions) set.add(p);
    this.grants.set(key, set);
  }

  /** True when `service` holds `permission` on the resource. */
  has(service: string, kind: ResourceKind, name: string, permission: Permission): boolean {
    return this.grants.get(Permissions.key(service, kind, name))?.has(permission) === true;
  }

  /** Throws PERMISSION_DENIED naming the resource and the `.allow()` that is missing. */
  check(service: string, kind: ResourceKind, name: string, permission: Permission): void {
    if (this.has(service, kind, name, permission)) return;
    const resource = `${kind}(${JSON.stringify(name)})`;
    const fix =
      kind === "kv"
        ? `add .allow(${JSON.stringify(permission)}) to ${resource} in that service`
        : `declare ${resource} in that service`;
    throw new RpcError(
      Code.PERMISSION_DENIED,
      `${resource}: service ${JSON.stringify(service)} may not ${VERB[permission]}; ${fix}`,
    );
  }
}
