/**
 * The KvStore gRPC service of one service's endpoint: checks names, permissions, keys and values
 * (by @nitric-like/spec's kv rules, the same the SDK applies at set(), so every client gets the
 * same refusals on every provider), then the provider's backend.
 */

import type { KvStore } from "@nitric-like/contracts/kvstore";
import { Code, RpcError, type ServiceImpl } from "@nitric-like/rpc";
import { checkKvValue, kvKeyProblem, resourceNameProblem } from "@nitric-like/spec";
import type { KvBackend } from "./backends.js";
import type { Permissions } from "./permissions.js";
import { asGrpcError, settle } from "./websocket.js";

/** What the kv service needs from the provider. */
export interface KvContext {
  stores: KvBackend;
  permissions: Permissions;
  /** True when some service declared the store. */
  declared(store: string): boolean;
  /** The refusal a service was given for declaring this resource late (late-declarations.ts), if any. */
  refusal?(service: string, kind: "kv" | "secret", name: string): string | undefined;
}

function checkStore(ctx: KvContext, service: string, store: string, permission: "get" | "set" | "delete"): void {
  const problem = resourceNameProblem("kv", store);
  if (problem) throw new RpcError(Code.INVALID_ARGUMENT, problem);
  if (!ctx.declared(store) || !ctx.permissions.has(service, "kv", store, permission)) {
    // Declared, but only in a handler: say so, not that the declaration is missing.
    const refused = ctx.refusal?.(service, "kv", store);
    if (refused !== undefined) throw new RpcError(Code.FAILED_PRECONDITION, refused);
  }
  if (!ctx.declared(store)) {
    throw new RpcError(
      Code.NOT_FOUND,
      `kv(${JSON.stringify(store)}): no such store; declare it with kv(${JSON.stringify(store)}).allow(...)`,
    );
  }
  ctx.permissions.check(service, "kv", store, permission);
}

function checkKey(store: string, operation: "get" | "set" | "delete", key: string): void {
  const problem = kvKeyProblem(store, operation, key);
  if (problem !== undefined) throw new RpcError(Code.INVALID_ARGUMENT, problem);
}

/** Answers once a write is durable, or with INTERNAL saying what failed. */
function acknowledge(
  write: Promise<void>,
  callback: (error: Error | null, value?: object) => void,
  what: string,
): void {
  write.then(
    () => callback(null, {}),
    (error: Error) =>
      callback(
        typeof (error as { code?: unknown }).code === "number"
          ? error
          : new RpcError(Code.INTERNAL, `${what}: ${error.message}`),
      ),
  );
}

/** Keys a scan sends before it waits for the client to take them (ServerStream.flushed). */
export const KEYS_PER_TURN = 256;

function fail(callback: (e: unknown) => void, error: unknown): void {
  callback(error);
}

/** Builds the KvStore implementation for the service `service`. */
export function kvService(ctx: KvContext, service: string): ServiceImpl<typeof KvStore> {
  return {
    getValue(call, callback) {
      try {
        const { store = "", key = "" } = call.request.ref ?? {};
        checkStore(ctx, service, store, "get");
        checkKey(store, "get", key);
        settle(
          ctx.stores.get(store, key),
          (content) => {
            if (content === undefined) {
              callback(
                new RpcError(Code.NOT_FOUND, `kv(${JSON.stringify(store)}): key ${JSON.stringify(key)} not found`),
              );
              return;
            }
            callback(null, { value: { ref: { store, key }, content } });
          },
          callback,
        );
      } catch (error) {
        fail(callback as (e: unknown) => void, error);
      }
    },
    setValue(call, callback) {
      try {
        const { store = "", key = "" } = call.request.ref ?? {};
        checkStore(ctx, service, store, "set");
        checkKey(store, "set", key);
        const content = call.request.content;
        if (content === undefined) {
          throw new RpcError(
            Code.INVALID_ARGUMENT,
            `kv(${JSON.stringify(store)}): set(${JSON.stringify(key)}) has no value; pass a JSON object`,
          );
        }
        const problem = checkKvValue(store, key, content).problem;
        if (problem !== undefined) throw new RpcError(Code.INVALID_ARGUMENT, problem);
        acknowledge(ctx.stores.set(store, key, content), callback, `kv(${JSON.stringify(store)}): write failed`);
      } catch (error) {
        fail(callback as (e: unknown) => void, error);
      }
    },
    deleteKey(call, callback) {
      try {
        const { store = "", key = "" } = call.request.ref ?? {};
        checkStore(ctx, service, store, "delete");
        checkKey(store, "delete", key);
        acknowledge(ctx.stores.delete(store, key), callback, `kv(${JSON.stringify(store)}): delete failed`);
      } catch (error) {
        fail(callback as (e: unknown) => void, error);
      }
    },
    scanKeys(call) {
      try {
        const store = call.request.store?.name ?? "";
        checkStore(ctx, service, store, "get");
        const keys = ctx.stores.keys(store, call.request.prefix);
        // A store may hold millions of keys: they go KEYS_PER_TURN at a time, each batch once the
        // client has taken the last (flushed), so a scan neither stalls the provider's other
        // calls and clients nor piles the store up for a client that reads slowly or not at all,
        // and one the client leaves early stops there (leaving the loop closes the iterator).
        (async () => {
          let n = 0;
          for await (const key of keys) {
            if (call.ended) return;
            call.write({ key });
            if (++n % KEYS_PER_TURN === 0) await call.flushed();
          }
          call.end();
        })().catch((error: unknown) => call.fail(asGrpcError(error)));
      } catch (error) {
        // grpc-js sends an "error" event's status to the client; destroy() would drop the call without one.
        call.fail(error as Error);
      }
    },
  };
}
