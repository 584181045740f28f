/**
 * The Ampt-style data interface (`import { data } from "@nitric-like/sdk/ampt/data"`), so code
 * written from Ampt's documentation (which keeps its connections in `@ampt/data`) runs:
 * `data.get(key)`, `data.get("prefix:*")`, `data.set(key, value)`, `data.remove(key)`.
 *
 * Importing this module declares one kv store, `ampt-data`, with get, set and delete granted to
 * the importing service. Values may be any JSON value (the kv contract stores objects, so other
 * values are kept wrapped and unwrapped on the way out), kept exactly or refused by kv's rules.
 */
import { checkKvValue, kvKeyProblem, kvPrefixProblem, withoutUndefined } from "@nitric-like/spec";
import { NitricLikeError } from "./errors.js";
import type { JsonObject, JsonValue } from "./internal/data.js";
import { kv } from "./resources/kv.js";

/** The name of the kv store behind `data`. */
export const AMPT_DATA_STORE = "ampt-data";

/** One entry of a pattern read. */
export interface DataItem<T = JsonValue> {
  key: string;
  value: T;
}

/**
 * What a pattern read (`data.get("prefix:*")`) resolves with: the matching entries in key order.
 * It is an array (Ampt's WebSocket page maps over it) that also has Ampt's `items` and `lastKey`.
 */
export type DataItems<T = JsonValue> = DataItem<T>[] & { items: DataItem<T>[]; lastKey?: string };

/** Options of a pattern read. */
export interface GetOptions {
  /** At most this many entries (all when omitted). */
  limit?: number;
  /** Start after this key (the `lastKey` of the previous page). */
  start?: string;
}

/** The Ampt-style data interface. */
export interface AmptData {
  /** Every entry whose key starts with the pattern's text before its final `*`, in key order. */
  get<T = JsonValue>(pattern: `${string}*`, options?: GetOptions): Promise<DataItems<T>>;
  /** The value at `key`, undefined when missing. */
  get<T = JsonValue>(key: string): Promise<T | undefined>;
  /**
   * Stores `value` at `key`, replacing what was there; resolves with the value once durable. The
   * value is kept exactly or refused before any network, by the rules of kv's `set()`: BigInt,
   * Date, Map, Set, functions, class instances, cycles, NaN, numbers outside DynamoDB's range,
   * lone surrogates, deep nesting and more than 400 KB are refused with `invalid_argument` naming
   * the key, the place in the value and the fix. Properties whose value is `undefined` are left
   * out, as JSON.stringify does.
   */
  set<T>(key: string, value: T): Promise<T>;
  /** Deletes `key`; resolves true (removing a missing key succeeds too, as in Ampt). */
  remove(key: string): Promise<boolean>;
}

// The kv contract stores JSON objects; other values travel inside this one-field wrapper.
const WRAP = "@nitric-like/value";

const store = kv<JsonObject>(AMPT_DATA_STORE).allow("get", "set", "delete");

function unwrap(value: JsonObject): JsonValue {
  const keys = Object.keys(value);
  return keys.length === 1 && keys[0] === WRAP ? (value[WRAP] as JsonValue) : value;
}

async function getOne(key: string): Promise<JsonValue | undefined> {
  try {
    return unwrap(await store.get(key));
  } catch (error) {
    if ((error as NitricLikeError).code === "not_found") return undefined;
    throw error;
  }
}

async function getMany(prefix: string, options: GetOptions): Promise<DataItems> {
  const pattern = `${prefix}*`;
  const call = pattern.length <= 64 ? `data.get(${JSON.stringify(pattern)})` : "data.get()";
  // Refused in the words the code used, not those of the kv store's keys() under it.
  const problem = kvPrefixProblem(AMPT_DATA_STORE, prefix, call);
  if (problem !== undefined) {
    throw new NitricLikeError("invalid_argument", problem, { details: { store: AMPT_DATA_STORE, key: pattern } });
  }
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  if (!(limit > 0)) {
    throw new NitricLikeError("invalid_argument", `${call}: limit must be a positive number`);
  }
  const items: DataItem[] = [];
  let lastKey: string | undefined;
  for await (const key of store.keys(prefix)) {
    if (options.start !== undefined && key <= options.start) continue;
    if (items.length >= limit) {
      lastKey = items[items.length - 1]?.key;
      break;
    }
    const value = await getOne(key);
    if (value !== undefined) items.push({ key, value });
  }
  const result = items as DataItems;
  Object.defineProperty(result, "items", { value: items, enumerable: false });
  if (lastKey !== undefined) Object.defineProperty(result, "lastKey", { value: lastKey, enumerable: false });
  return result;
}

/**
 * Refuses a key kv cannot hold, in the words the code used (`data.remove("")`), not those of the
 * kv store under it, which the code never names.
 */
function checkKey(operation: "get" | "remove", key: unknown): void {
  const where =
    typeof key === "string" && key.length <= 64 ? `data.${operation}(${JSON.stringify(key)})` : `data.${operation}()`;
  const problem = kvKeyProblem(AMPT_DATA_STORE, operation, key, where);
  if (problem === undefined) return;
  const details = typeof key === "string" ? { store: AMPT_DATA_STORE, key } : { store: AMPT_DATA_STORE };
  throw new NitricLikeError("invalid_argument", problem, { details });
}

/** The app's Ampt-style data store. */
export const data: AmptData = {
  get: ((key: string, options: GetOptions = {}) => {
    if (typeof key !== "string" || key === "") {
      return Promise.reject(
        new NitricLikeError("invalid_argument", "data.get(key): the key must be a non-empty string"),
      );
    }
    if (key.endsWith("*")) return getMany(key.slice(0, -1), options);
    try {
      checkKey("get", key);
    } catch (error) {
      return Promise.reject(error);
    }
    return getOne(key);
  }) as AmptData["get"],
  async set(key, value) {
    const where = `data.set(${JSON.stringify(key)})`;
    const details = typeof key === "string" ? { store: AMPT_DATA_STORE, key } : { store: AMPT_DATA_STORE };
    const keyProblem = kvKeyProblem(AMPT_DATA_STORE, "set", key, where);
    if (keyProblem !== undefined) throw new NitricLikeError("invalid_argument", keyProblem, { details });
    if (value === undefined) {
      throw new NitricLikeError("invalid_argument", `${where}: the value is undefined; pass a value JSON can hold`, {
        details,
      });
    }
    // Plain objects are stored as they are; anything else inside the one-field wrapper.
    const proto = typeof value === "object" && value !== null ? Object.getPrototypeOf(value) : undefined;
    const plain = (proto === Object.prototype || proto === null) && !(WRAP in (value as object));
    const stored = (plain ? value : { [WRAP]: value }) as JsonObject;
    const check = checkKvValue(AMPT_DATA_STORE, key, stored, { where, unwrap: WRAP });
    if (check.problem !== undefined) throw new NitricLikeError("invalid_argument", check.problem, { details });
    await store.set(key, check.hasUndefined ? withoutUndefined(stored) : stored);
    return value;
  },
  async remove(key) {
    checkKey("remove", key);
    await store.delete(key);
    return true;
  },
};
