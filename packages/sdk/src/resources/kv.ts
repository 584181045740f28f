/**
 * Key-value stores of JSON objects.
 *
 * Locally each store is an lmdb database under the project's `.nitric-like/kv`, surviving restarts;
 * on AWS it is a DynamoDB table. `keys(prefix)` costs in proportion to the keys it returns on both.
 * Both keep a value exactly or refuse it by the same rules (DynamoDB's limits included), checked
 * here at `set()` and again by the provider: see @nitric-like/spec's kv-values.
 */
import { KvStore as KvStoreService } from "@nitric-like/contracts/kvstore";
import { Action, ResourceType } from "@nitric-like/contracts/resources";
import {
  checkKvValue,
  KV_PERMISSIONS,
  type KvPermission,
  kvKeyProblem,
  kvPrefixProblem,
  withoutUndefined,
} from "@nitric-like/spec";
import { NitricLikeError } from "../errors.js";
import type { JsonObject, JsonObjectOf } from "../internal/data.js";
import { declaredAfterLoad, lateGrant, quotedList, rpc } from "../internal/runtime.js";
import { declare, declaredOnce, declarePolicy } from "./declare.js";

/** A permission `.allow()` takes: "get" (get, keys), "set" or "delete". */
export type { KvPermission };

/** Reading: `.allow("get")`. */
export interface KvReader<T extends object> {
  /** The value at `key`. A missing key throws NitricLikeError `not_found` naming key and store. */
  get(key: string): Promise<T>;
  /** The keys starting with `prefix` (all keys when omitted), in byte order. */
  keys(prefix?: string): AsyncIterable<string>;
}

/** Writing: `.allow("set")`. */
export interface KvWriter<T extends object> {
  /**
   * Stores `value` (a JSON object) at `key`, replacing what was there. Resolves once durable. A
   * value is kept exactly or refused here, before any network, with `invalid_argument` naming the
   * store, the key, the place in the value and the fix: BigInt, Date, Map, Set, functions, symbols,
   * class instances, cycles, `undefined` or holes in arrays, NaN and Infinity, numbers outside
   * DynamoDB's range, lone surrogates, more than 31 nested objects and arrays, and more than 400 KB
   * as a DynamoDB item are refused on every provider. A property whose value is `undefined` is left
   * out, as JSON.stringify does.
   */
  set(key: string, value: T): Promise<void>;
}

/** Deleting: `.allow("delete")`. */
export interface KvDeleter {
  /** Deletes `key`; deleting a missing key succeeds. */
  delete(key: string): Promise<void>;
}

// biome-ignore lint/complexity/noBannedTypes: an empty capability when a permission is absent
type Nothing = {};

/** A store reference whose type has exactly the methods its permissions allow. */
export type KvRef<T extends object, P extends KvPermission> = { readonly name: string } & ("get" extends P
  ? KvReader<T>
  : Nothing) &
  ("set" extends P ? KvWriter<T> : Nothing) &
  ("delete" extends P ? KvDeleter : Nothing);

const ACTIONS: Record<KvPermission, Action> = {
  get: Action.KeyValueStoreRead,
  set: Action.KeyValueStoreWrite,
  delete: Action.KeyValueStoreDelete,
};

class KvRefImpl<T extends object> implements KvReader<T>, KvWriter<T>, KvDeleter {
  constructor(
    readonly name: string,
    private readonly ready: Promise<unknown>,
  ) {}

  private fail(error: unknown, key?: string): NitricLikeError {
    const e = NitricLikeError.from(error, key === undefined ? { store: this.name } : { store: this.name, key });
    if (e.code === "not_found" && key !== undefined) {
      return new NitricLikeError(
        "not_found",
        `kv(${JSON.stringify(this.name)}): key ${JSON.stringify(key)} not found`,
        {
          cause: e,
          details: { store: this.name, key },
        },
      );
    }
    return e;
  }

  /** Refuses a key no provider would keep apart from others, before any network. */
  private checkKey(operation: string, key: string): void {
    const problem = kvKeyProblem(this.name, operation, key);
    if (problem !== undefined) {
      throw new NitricLikeError("invalid_argument", problem, {
        details: typeof key === "string" ? { store: this.name, key } : { store: this.name },
      });
    }
  }

  async get(key: string): Promise<T> {
    this.checkKey("get", key);
    await this.ready;
    try {
      const { value } = await rpc.unary(KvStoreService.method.getValue, { ref: { store: this.name, key } });
      return (value?.content ?? {}) as T;
    } catch (error) {
      throw this.fail(error, key);
    }
  }

  async set(key: string, value: T): Promise<void> {
    this.checkKey("set", key);
    const check = checkKvValue(this.name, key, value);
    if (check.problem !== undefined) {
      throw new NitricLikeError("invalid_argument", check.problem, { details: { store: this.name, key } });
    }
    // The contract's Struct has no undefined: leave such properties out rather than send null.
    // T passed kv()'s JsonObjectOf check (an interface has no index signature to say so here).
    const content = (check.hasUndefined ? withoutUndefined(value) : value) as JsonObject;
    await this.ready;
    try {
      await rpc.unary(KvStoreService.method.setValue, { ref: { store: this.name, key }, content });
    } catch (error) {
      throw this.fail(error, key);
    }
  }

  async delete(key: string): Promise<void> {
    this.checkKey("delete", key);
    await this.ready;
    try {
      await rpc.unary(KvStoreService.method.deleteKey, { ref: { store: this.name, key } });
    } catch (error) {
      throw this.fail(error, key);
    }
  }

  async *keys(prefix = ""): AsyncGenerator<string> {
    const problem = kvPrefixProblem(this.name, prefix);
    if (problem !== undefined)
      throw new NitricLikeError("invalid_argument", problem, { details: { store: this.name } });
    await this.ready;
    try {
      for await (const item of rpc.serverStream(KvStoreService.method.scanKeys, {
        store: { name: this.name },
        prefix,
      })) {
        yield item.key;
      }
    } catch (error) {
      throw this.fail(error);
    }
  }
}

/** A declared kv store; `.allow()` says what this service may do with it. */
export class KvStore<T extends object = JsonObject> {
  private ready: Promise<unknown>;
  /** What `.allow()` granted before the service's module finished loading: all a later one may ask for. */
  private readonly grantedAtLoad = new Set<KvPermission>();

  /** @internal use kv(name). */
  constructor(readonly name: string) {
    this.ready = declare(ResourceType.KeyValueStore, name, []);
  }

  /**
   * Grants this service permissions on the store and returns a reference whose type has only the
   * allowed methods: "get" (get, keys), "set" (set), "delete" (delete). Locally they are enforced
   * by the provider; on AWS they become the service's IAM policy. Once the service's module has
   * loaded (in a timer, a callback or a handler), a permission it did not grant as it loaded throws
   * `failed_precondition`: a deployment would not have it. One it granted is granted again as before.
   */
  allow<P extends KvPermission[]>(...permissions: P): KvRef<T, P[number]> {
    for (const p of permissions) {
      if (!KV_PERMISSIONS.includes(p)) {
        throw new NitricLikeError(
          "invalid_argument",
          `kv(${JSON.stringify(this.name)}).allow(${JSON.stringify(p)}): unknown permission; use "get", "set" or "delete"`,
        );
      }
    }
    const late = this.lateGrant(permissions);
    if (late !== undefined) {
      const store = `kv(${JSON.stringify(this.name)})`;
      const refused = declaredAfterLoad(
        `${store}.allow(${quotedList(late.asked)})`,
        `${store}.allow(${quotedList(late.all)})`,
        late,
      );
      if (refused !== undefined) throw new NitricLikeError("failed_precondition", refused);
    }
    for (const p of permissions) this.grantedAtLoad.add(p);
    const previous = this.ready;
    this.ready = previous.then(() =>
      declarePolicy(
        ResourceType.KeyValueStore,
        this.name,
        permissions.map((p) => ACTIONS[p]),
      ),
    );
    return new KvRefImpl<T>(this.name, this.ready) as unknown as KvRef<T, P[number]>;
  }

  /**
   * @internal Once the service's module has loaded: the permissions of `permissions` it did not
   * grant as it loaded (`asked`), those it did (`granted`) and both (`all`); undefined when none is new.
   */
  lateGrant(
    permissions: readonly KvPermission[],
  ): { asked: KvPermission[]; granted: KvPermission[]; all: KvPermission[] } | undefined {
    return lateGrant(KV_PERMISSIONS, this.grantedAtLoad, permissions);
  }
}

const stores = new Map<string, KvStore<JsonObject>>();

/**
 * Declares a key-value store of JSON objects. Declaring the same name again returns the same
 * store. An invalid name throws at once with the fix. Declare it at module load: a new name once
 * the service's module has loaded (in a timer, a callback or a handler) throws `failed_precondition`.
 */
export function kv<T extends JsonObjectOf<T> = JsonObject>(name: string): KvStore<T> {
  return declaredOnce("kv", name, stores, () => new KvStore(name)) as unknown as KvStore<T>;
}
