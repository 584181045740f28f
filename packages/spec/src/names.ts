/**
 * Resource names, checked the same way by the SDK (at declaration time), the providers (on every
 * request) and the CLI (in the collect pass).
 */

/** Lower kebab case: what Nitric accepts and what every cloud resource name can carry. */
export const RESOURCE_NAME_PATTERN = /^[a-z0-9]+(-[a-z0-9]+)*$/;

/** Longest accepted name; leaves room for stack prefixes in AWS names (API Gateway, DynamoDB, IAM). */
export const MAX_RESOURCE_NAME_LENGTH = 64;

/** The kinds of resource nitric-like serves, as users write them in code. */
export type ResourceKind = "websocket" | "kv" | "secret";

/**
 * The words of a name as lower-case ASCII, for a lower-kebab-case suggestion: camelCase split,
 * accents dropped (`Café` → `cafe`, `ńame` → `name`), anything else not a letter or digit a break.
 */
export function kebabWords(name: string): string[] {
  return name
    .normalize("NFKD")
    .replace(/\p{M}/gu, "")
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w.length > 0);
}

/** Turns any string into the nearest lower-kebab-case name, to suggest in errors. */
export function suggestName(name: string): string {
  const suggestion = kebabWords(name).join("-").slice(0, MAX_RESOURCE_NAME_LENGTH).replace(/-+$/, "");
  return suggestion.length > 0 ? suggestion : "my-resource";
}

/**
 * Returns why a name is invalid, as a full message with the fix, or undefined when it is valid.
 * The message reads `kv("My Store"): invalid resource name "My Store", use lower-kebab-case such as "my-store"`.
 */
export function resourceNameProblem(kind: string, name: string): string | undefined {
  // Every socket.send checks its socket's name here: nothing is built for a valid one.
  if (typeof name !== "string" || name.length === 0) {
    const example = `"my-${kind === "kv" ? "store" : kind === "websocket" ? "socket" : kind}"`;
    // A JavaScript caller's number or undefined is named as what it is, not shown as "".
    if (typeof name !== "string") {
      const got = name === null ? "null" : typeof name;
      const shown = typeof name === "number" || typeof name === "boolean" ? String(name) : got;
      return `${kind}(${shown}): a resource name must be a string, got ${got}; use lower-kebab-case such as ${example}`;
    }
    return `${kind}(""): a resource name is required, use lower-kebab-case such as ${example}`;
  }
  if (name.length > MAX_RESOURCE_NAME_LENGTH) {
    // Its start only: a name can be any length (a client's), and the message goes into logs and gRPC trailers.
    const shown = `${JSON.stringify(name.slice(0, MAX_RESOURCE_NAME_LENGTH))}...`;
    return `${kind}(${shown}): invalid resource name, it is ${name.length} characters long and at most ${MAX_RESOURCE_NAME_LENGTH} are allowed, use a shorter lower-kebab-case name such as ${JSON.stringify(suggestName(name))}`;
  }
  if (!RESOURCE_NAME_PATTERN.test(name)) {
    return `${kind}(${JSON.stringify(name)}): invalid resource name ${JSON.stringify(name)}, use lower-kebab-case such as ${JSON.stringify(suggestName(name))}`;
  }
  return undefined;
}

/** True when a name is a valid resource name. */
export function isValidResourceName(name: string): boolean {
  return (
    typeof name === "string" &&
    name.length > 0 &&
    name.length <= MAX_RESOURCE_NAME_LENGTH &&
    RESOURCE_NAME_PATTERN.test(name)
  );
}

/**
 * Orders names by their UTF-16 code units, for every sorted list nitric-like prints or deploys
 * (the spec's resources and policies, templates, tables, outputs). Not `localeCompare`: its order
 * follows the machine's locale, so one project's spec and template could differ from machine to
 * machine, and its first call loads ICU's collation data, 8-20 ms on `run`'s way to ready here.
 */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
