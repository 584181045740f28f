/**
 * What a secret accepts, checked the same way by the SDK (before any network) and by every
 * provider (on each Put and Access, so `@nitric/sdk` and any other client get the same answer).
 * AWS Secrets Manager's limits hold everywhere, so a value the local provider keeps is one AWS
 * keeps too:
 *
 * - a value: 1 to 65,536 bytes (Secrets Manager's SecretBinary holds at most 64 KiB, and no empty
 *   value);
 * - a version: `latest` (the newest), or a version id as Put answered it: 32 to 64 letters, digits
 *   and `-` (Secrets Manager's VersionId; the providers make each a random UUID).
 */

/** Permissions on a secret, as `.allow()` takes them. */
export const SECRET_PERMISSIONS = ["access", "put"] as const;
/** One secret permission. */
export type SecretPermission = (typeof SECRET_PERMISSIONS)[number];

/** Largest value, in bytes (Secrets Manager's SecretBinary limit). */
export const SECRET_MAX_VALUE_BYTES = 65_536;

/** The version that names a secret's newest value. */
export const LATEST_VERSION = "latest";

const VERSION_ID = /^[A-Za-z0-9-]{32,64}$/;

/** Why a value cannot be a secret's version, as a full message with the fix; undefined when it can. */
export function secretValueProblem(secret: string, value: Uint8Array): string | undefined {
  if (value.length === 0) {
    return `secret(${JSON.stringify(secret)}): the value is empty; a secret holds 1 to ${SECRET_MAX_VALUE_BYTES} bytes`;
  }
  if (value.length > SECRET_MAX_VALUE_BYTES) {
    return `secret(${JSON.stringify(secret)}): the value is ${value.length} bytes, over the ${SECRET_MAX_VALUE_BYTES} a secret holds (AWS Secrets Manager's limit); keep a large value in a kv store and what protects it (a key) in the secret`;
  }
  return undefined;
}

/** Why a version cannot be read, as a full message with the fix; undefined when it can. */
export function secretVersionProblem(secret: string, version: string): string | undefined {
  if (version === LATEST_VERSION || VERSION_ID.test(version)) return undefined;
  // A caller's string, shown cut to what a message needs.
  const shown =
    version.length > 80
      ? `${JSON.stringify(version.slice(0, 80))}... (${version.length} characters)`
      : JSON.stringify(version);
  return `secret(${JSON.stringify(secret)}): version ${shown} is not a version id; use "latest" for the newest value, or an id put() returned (32 to 64 letters, digits and -)`;
}

/** True when `version` is a version id a provider could have made (not "latest"). */
export function isSecretVersionId(version: string): boolean {
  return VERSION_ID.test(version);
}
