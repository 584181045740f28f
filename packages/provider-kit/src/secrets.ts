/**
 * The SecretManager gRPC service of one service's endpoint: checks names, permissions, values and
 * versions (by @nitric-like/spec's secret rules, the same the SDK applies, so every client gets the
 * same refusals on every provider), then the provider's backend. Each Put makes a new version whose
 * id is a random UUID, made here so that both providers answer ids of one form.
 */
import { randomUUID } from "node:crypto";
import type { SecretManager } from "@nitric-like/contracts/secrets";
import { Code, RpcError, type ServiceImpl } from "@nitric-like/rpc";
import { LATEST_VERSION, resourceNameProblem, secretValueProblem, secretVersionProblem } from "@nitric-like/spec";
import type { SecretsBackend } from "./backends.js";
import type { Permissions } from "./permissions.js";

/** What the secrets service needs from the provider. */
export interface SecretsContext {
  secrets: SecretsBackend;
  permissions: Permissions;
  /** True when some service declared the secret. */
  secretDeclared(name: string): boolean;
  /** The refusal a service was given for declaring this resource late (late-declarations.ts), if any. */
  refusal?(service: string, kind: "kv" | "secret", name: string): string | undefined;
  /**
   * The options `nitric-like secret put <name>` needs to reach where this provider keeps values
   * (a deployed function's: `--provider aws`), named when a secret has none yet. @default none: run's store
   */
  secretPutOptions?: string;
}

function checkSecret(ctx: SecretsContext, service: string, name: string, permission: "access" | "put"): void {
  const problem = resourceNameProblem("secret", name);
  if (problem) throw new RpcError(Code.INVALID_ARGUMENT, problem);
  if (!ctx.secretDeclared(name) || !ctx.permissions.has(service, "secret", name, permission)) {
    // Declared, but only in a handler: say so, not that the declaration is missing.
    const refused = ctx.refusal?.(service, "secret", name);
    if (refused !== undefined) throw new RpcError(Code.FAILED_PRECONDITION, refused);
  }
  if (!ctx.secretDeclared(name)) {
    throw new RpcError(
      Code.NOT_FOUND,
      `secret(${JSON.stringify(name)}): no such secret; declare it with secret(${JSON.stringify(name)}).allow(...)`,
    );
  }
  ctx.permissions.check(service, "secret", name, permission);
}

/** How a backend's failure reaches the caller: its own status, or INTERNAL saying what failed. */
function failure(error: unknown, what: string): Error {
  if (typeof (error as { code?: unknown }).code === "number") return error as Error;
  return new RpcError(Code.INTERNAL, `${what}: ${(error as Error).message}`);
}

/** What `run` says at start of a declared secret that has no value yet. */
export function noValueYet(name: string): string {
  return `secret "${name}" has no value yet: its access() fails with not_found until you store one with nitric-like secret put ${name}`;
}

/** What is said when a secret has no such version: how to give it one. */
function missingVersion(name: string, version: string, putOptions?: string): string {
  const command = `nitric-like secret put ${name}${putOptions ? ` ${putOptions}` : ""}`;
  return version === LATEST_VERSION
    ? `secret(${JSON.stringify(name)}) has no value yet; put one with secret(${JSON.stringify(name)}).put(value) in a service that has .allow("put"), or with \`${command}\``
    : `secret(${JSON.stringify(name)}) has no version ${JSON.stringify(version)}; use "latest", or an id put() returned for this secret among its last 100 puts (older versions are dropped, as Secrets Manager drops them)`;
}

/** Builds the SecretManager implementation for the service `service`. */
export function secretsService(ctx: SecretsContext, service: string): ServiceImpl<typeof SecretManager> {
  return {
    put(call, callback) {
      try {
        const name = call.request.secret?.name ?? "";
        checkSecret(ctx, service, name, "put");
        const value = call.request.value ?? new Uint8Array();
        const problem = secretValueProblem(name, value);
        if (problem !== undefined) throw new RpcError(Code.INVALID_ARGUMENT, problem);
        const version = randomUUID();
        ctx.secrets.put(name, version, value).then(
          () => callback(null, { secretVersion: { secret: { name }, version } }),
          (error: unknown) => callback(failure(error, `secret(${JSON.stringify(name)}): put failed`)),
        );
      } catch (error) {
        callback(error as Error);
      }
    },
    access(call, callback) {
      try {
        const name = call.request.secretVersion?.secret?.name ?? "";
        checkSecret(ctx, service, name, "access");
        // Nitric's SDKs send "latest" for secret.latest(); an empty version means the same.
        const version = call.request.secretVersion?.version || LATEST_VERSION;
        const problem = secretVersionProblem(name, version);
        if (problem !== undefined) throw new RpcError(Code.INVALID_ARGUMENT, problem);
        ctx.secrets.access(name, version).then(
          (found) => {
            if (found === undefined) {
              callback(new RpcError(Code.NOT_FOUND, missingVersion(name, version, ctx.secretPutOptions)));
              return;
            }
            callback(null, { secretVersion: { secret: { name }, version: found.version }, value: found.value });
          },
          (error: unknown) => callback(failure(error, `secret(${JSON.stringify(name)}): access failed`)),
        );
      } catch (error) {
        callback(error as Error);
      }
    },
  };
}
