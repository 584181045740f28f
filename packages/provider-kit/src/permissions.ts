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
  access: "access its values",
  put: "put values",
};

/** The grants of every service. */
export class Permissions {
  /** Service, then resource kind, then resource name: a check (every socket.send makes one) builds no key. */
  private readonly grants = new Map<string, Map<ResourceKind, Map<string, Set<Permission>>>>();

  /** Records that `service` may do `permissions` on a resource. */
  grant(service: string, kind: ResourceKind, name: string, permissions: Iterable<Permission>): void {
    let kinds = this.grants.get(service);
    if (kinds === undefined) {
      kinds = new Map();
      this.grants.set(service, kinds);
    }
    let names = kinds.get(kind);
    if (names === undefined) {
      names = new Map();
      kinds.set(kind, names);
    }
    let set = names.get(name);
    if (set === undefined) {
      set = new Set();
      names.set(name, set);
    }
    for (const p of permissions) set.add(p);
  }

  /** True when `service` holds `permission` on the resource. */
  has(service: string, kind: ResourceKind, name: string, permission: Permission): boolean {
    return this.grants.get(service)?.get(kind)?.get(name)?.has(permission) === true;
  }

  /** Throws PERMISSION_DENIED naming the resource and the `.allow()` that is missing. */
  check(service: string, kind: ResourceKind, name: string, permission: Permission): void {
    if (this.has(service, kind, name, permission)) return;
    const resource = `${kind}(${JSON.stringify(name)})`;
    const fix =
      kind === "kv" || kind === "secret"
        ? `add .allow(${JSON.stringify(permission)}) to ${resource} in that service`
        : `declare ${resource} in that service`;
    throw new RpcError(
      Code.PERMISSION_DENIED,
      `${resource}: service ${JSON.stringify(service)} may not ${VERB[permission]}; ${fix}`,
    );
  }
}
