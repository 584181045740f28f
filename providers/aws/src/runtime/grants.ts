/**
 * NITRIC_LIKE_DECLARED's grants (build/template.ts writes them, runtime/bindings.ts reads them):
 * a service's permissions on one resource as one digit, the bits of the permissions its kind
 * takes (kv: get 1, set 2, delete 4; secret: access 1, put 2; websocket: manage 1), so the
 * variable says each store, secret and socket NITRIC_LIKE_KV_TABLES, NITRIC_LIKE_SECRETS and
 * NITRIC_LIKE_WEBSOCKETS already name in one character rather than again by name.
 */
import { KV_PERMISSIONS, type Permission, SECRET_PERMISSIONS } from "@nitric-like/spec";

/** The kinds with grants, each with the permissions it takes, in the order of their bits. */
export const GRANTABLE: Readonly<Record<"kv" | "secret" | "websocket", readonly Permission[]>> = {
  kv: KV_PERMISSIONS,
  secret: SECRET_PERMISSIONS,
  websocket: ["manage"],
};

export type GrantableKind = keyof typeof GRANTABLE;

/** `permissions` on a resource of `kind` as one digit (permissions the kind does not take are left out). */
export function grantDigit(kind: GrantableKind, permissions: readonly Permission[]): string {
  let bits = 0;
  GRANTABLE[kind].forEach((p, i) => {
    if (permissions.includes(p)) bits |= 1 << i;
  });
  return bits.toString(16);
}

/**
 * The permissions a digit stands for on a resource of `kind`, sorted as the spec sorts a policy's
 * permissions; undefined for a character that is no grant of the kind.
 */
export function grantOfDigit(kind: GrantableKind, digit: string): Permission[] | undefined {
  const takes = GRANTABLE[kind];
  if (!/^[0-9a-f]$/.test(digit)) return undefined;
  const bits = Number.parseInt(digit, 16);
  if (bits >= 1 << takes.length) return undefined;
  return takes.filter((_, i) => (bits & (1 << i)) !== 0).sort();
}
