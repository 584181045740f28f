/**
 * kv stores in DynamoDB: one table per store (PAY_PER_REQUEST, made by the template), named by
 * NITRIC_LIKE_KV_TABLES. Items are `{ _p: "k#<n>", _k: <key>, _v: <value as a map> }`: the value is
 * nested under `_v`, so no field of a user's value can collide with the key attributes. A key lives
 * in one of SHARDS partition key values, `n` = FNV-1a (32 bits, over the key's UTF-8 bytes) modulo
 * SHARDS, so a store's traffic spreads over SHARDS partitions instead of one; get, set and delete
 * address one shard. Listing keys by prefix is one `Query` with `begins_with` per shard, run in
 * parallel and merged in byte order (what DynamoDB sorts by) a page at a time, so its cost follows
 * the keys it returns, not the table, and its memory is bounded by two pages per shard.
 *
 * Stores written before sharding hold their items under `_p: "k"` (LEGACY_PARTITION). They stay
 * readable without any step by the user: each instance asks once per store whether that partition
 * holds anything (one Query with Limit 1); while it does, a get that misses its shard reads the
 * legacy item, keys() merges the legacy partition in, and a delete removes both. A set writes only
 * the shard, and a shard's item always wins over a legacy item of the same key. `migrateLegacy`
 * moves a store's legacy items into their shards, after which no fallback read is made.
 *
 * Reads are strongly consistent, so a key written is listed and read back at once, as locally.
 */

import type { JsonObject } from "@bufbuild/protobuf";
import type { KvBackend } from "@nitric-like/provider-kit";
import { Code, RpcError } from "@nitric-like/rpc";
import type { DynamoDb, Item, QueryOutput } from "../aws/dynamodb.js";
import { fromAttributes, toAttributes } from "./attributes.js";
import { LEGACY_PARTITION, mergePaged, type Page, partitionOf, SHARDS } from "./shards.js";

/** How long an instance trusts "the legacy partition holds items" before asking again. */
export const LEGACY_RECHECK_MS = 60_000;

/** Options of the kv stores; the defaults are what a deployed function uses. */
export interface KvStoreOptions {
  /** Items per Query page (DynamoDB's own limit when unset: 1 MB read). */
  pageLimit?: number;
  /** The clock, for the legacy re-check. */
  now?: () => number;
}

interface LegacyCheck {
  held: Promise<boolean>;
  at: number;
  /** Set once the partition was seen empty: nothing writes there any more, so it stays empty. */
  empty?: boolean;
}

/** The permission each operation needs, for errors that name the missing `.allow(...)`. */
type Operation = "get" | "set" | "delete";

/** Turns a DynamoDB failure into a gRPC status that says what to fix. */
export function dynamoError(store: string, table: string, operation: Operation, error: unknown): Error {
  const name = (error as { name?: string }).name ?? "";
  const message = error instanceof Error ? error.message : String(error);
  const where = `kv(${JSON.stringify(store)})`;
  if (name === "AccessDeniedException") {
    return new RpcError(
      Code.PERMISSION_DENIED,
      `${where}: AWS refused to ${operation === "get" ? "read" : operation} table "${table}" (${message}); add .allow(${JSON.stringify(operation)}) to ${where} in this service and deploy again`,
    );
  }
  if (name === "ResourceNotFoundException") {
    return new RpcError(
      Code.NOT_FOUND,
      `${where}: its table "${table}" does not exist; deploy the stack again (nitric-like up --provider aws)`,
    );
  }
  if (name === "ProvisionedThroughputExceededException" || name === "ThrottlingException") {
    return new RpcError(Code.RESOURCE_EXHAUSTED, `${where}: DynamoDB throttled the request; retry later (${message})`);
  }
  if (name === "ValidationException") {
    return new RpcError(Code.INVALID_ARGUMENT, `${where}: DynamoDB refused the request: ${message}`);
  }
  return new RpcError(Code.UNAVAILABLE, `${where}: DynamoDB ${operation} failed: ${name ? `${name}: ` : ""}${message}`);
}

/** The kv stores of one function, each in its own table. */
export class DynamoKvStores implements KvBackend {
  /** Per table: whether its legacy partition may hold items. A Map: table names are data. */
  private readonly legacyChecks = new Map<string, LegacyCheck>();
  private readonly now: () => number;

  constructor(
    private readonly client: DynamoDb,
    private readonly tables: Readonly<Record<string, string>>,
    private readonly options: KvStoreOptions = {},
  ) {
    this.now = options.now ?? Date.now;
  }

  /** The table of a store; FAILED_PRECONDITION when the deployment gave this function none. */
  table(store: string): string {
    // Own keys only: a store named "constructor" must not find Object's constructor.
    const table = Object.hasOwn(this.tables, store) ? this.tables[store] : undefined;
    if (typeof table !== "string") {
      throw new RpcError(
        Code.FAILED_PRECONDITION,
        `kv(${JSON.stringify(store)}): this function has no table for the store (NITRIC_LIKE_KV_TABLES names ${
          Object.keys(this.tables)
            .map((t) => JSON.stringify(t))
            .join(", ") || "none"
        }); build and deploy again so the template includes it`,
      );
    }
    return table;
  }

  /**
   * Whether the table's pre-sharding partition may still hold items: one Query (Limit 1) per
   * instance and table, repeated after LEGACY_RECHECK_MS while the answer is yes. A check AWS
   * refuses (a service allowed only "delete" may not Query) answers yes, so nothing is missed.
   */
  legacyHeld(table: string): Promise<boolean> {
    const known = this.legacyChecks.get(table);
    if (known && (known.empty || this.now() - known.at < LEGACY_RECHECK_MS)) return known.held;
    const check: LegacyCheck = { at: this.now(), held: Promise.resolve(true) };
    check.held = this.client
      .query({
        TableName: table,
        KeyConditionExpression: "#p = :p",
        ExpressionAttributeNames: { "#p": "_p", "#k": "_k" },
        ExpressionAttributeValues: { ":p": { S: LEGACY_PARTITION } },
        ProjectionExpression: "#k",
        ConsistentRead: true,
        Limit: 1,
      })
      .then(
        (out) => {
          const held = (out.Items?.length ?? 0) > 0 || out.LastEvaluatedKey !== undefined;
          if (!held) check.empty = true;
          return held;
        },
        (error: unknown) => {
          // Allowed only "delete": assume items, so a delete removes both. Anything else is the
          // operation's failure, asked again next time.
          if ((error as { name?: string }).name === "AccessDeniedException") return true;
          if (this.legacyChecks.get(table) === check) this.legacyChecks.delete(table);
          throw error;
        },
      );
    this.legacyChecks.set(table, check);
    return check.held;
  }

  async get(store: string, key: string): Promise<JsonObject | undefined> {
    const table = this.table(store);
    try {
      const read = (partition: string) =>
        this.client.getItem({
          TableName: table,
          Key: { _p: { S: partition }, _k: { S: key } },
          ConsistentRead: true,
        });
      // The shard's item always wins (set() writes only there); only a miss asks about the legacy.
      let item = (await read(partitionOf(key))).Item;
      if (item === undefined && (await this.legacyHeld(table))) item = (await read(LEGACY_PARTITION)).Item;
      const value = item?._v?.M;
      return value === undefined ? undefined : fromAttributes(value);
    } catch (error) {
      throw dynamoError(store, table, "get", error);
    }
  }

  async set(store: string, key: string, value: JsonObject): Promise<void> {
    const table = this.table(store);
    try {
      await this.client.putItem({
        TableName: table,
        Item: { _p: { S: partitionOf(key) }, _k: { S: key }, _v: { M: toAttributes(value) } },
      });
    } catch (error) {
      throw dynamoError(store, table, "set", error);
    }
  }

  async delete(store: string, key: string): Promise<void> {
    const table = this.table(store);
    try {
      // The legacy item first: were the shard's deleted first and this failed, the old value would
      // be read again. Once the legacy partition is known empty, the DeleteItem goes out at once,
      // with no await before it: a delete and a set of one key started together then reach
      // DynamoDB in the order they were made, as set() sends its PutItem at once and as the
      // local provider applies them.
      if (this.legacyChecks.get(table)?.empty !== true && (await this.legacyHeld(table))) {
        await this.client.deleteItem({ TableName: table, Key: { _p: { S: LEGACY_PARTITION }, _k: { S: key } } });
      }
      await this.client.deleteItem({ TableName: table, Key: { _p: { S: partitionOf(key) }, _k: { S: key } } });
    } catch (error) {
      throw dynamoError(store, table, "delete", error);
    }
  }

  /** One partition's keys that start with `prefix`, a page at a time, in DynamoDB's order. */
  private pages(store: string, table: string, partition: string, prefix: string) {
    return async (start: Item | undefined): Promise<Page<Item>> => {
      let out: QueryOutput;
      try {
        out = await this.client.query({
          TableName: table,
          KeyConditionExpression: prefix === "" ? "#p = :p" : "#p = :p AND begins_with(#k, :prefix)",
          ExpressionAttributeNames: { "#p": "_p", "#k": "_k" },
          ExpressionAttributeValues:
            prefix === "" ? { ":p": { S: partition } } : { ":p": { S: partition }, ":prefix": { S: prefix } },
          ProjectionExpression: "#k",
          ConsistentRead: true,
          ...(this.options.pageLimit !== undefined ? { Limit: this.options.pageLimit } : {}),
          ...(start ? { ExclusiveStartKey: start } : {}),
        });
      } catch (error) {
        throw dynamoError(store, table, "get", error);
      }
      const keys: string[] = [];
      for (const item of out.Items ?? []) if (item._k?.S !== undefined) keys.push(item._k.S);
      return { keys, next: out.LastEvaluatedKey };
    };
  }

  /** Every shard queried in parallel (and the legacy partition while it holds items), merged. */
  keys(store: string, prefix: string): AsyncGenerator<string> {
    const table = this.table(store);
    const readers = Array.from({ length: SHARDS }, (_, n) =>
      this.pages(store, table, `${LEGACY_PARTITION}#${n}`, prefix),
    );
    const legacy = this.pages(store, table, LEGACY_PARTITION, prefix);
    readers.push(async (start) => {
      if (start === undefined) {
        let held: boolean;
        try {
          held = await this.legacyHeld(table);
        } catch (error) {
          throw dynamoError(store, table, "get", error);
        }
        if (!held) return { keys: [], next: undefined };
      }
      return legacy(start);
    });
    return mergePaged(readers);
  }

  /**
   * Moves a store's pre-sharding items into their shards (needs get, set and delete), so that no
   * fallback read is made any more; resolves with how many were moved. A key already set since
   * keeps its newer value; an item too close to 400 KB to take its longer shard name stays. Run it once, while nothing deletes keys of the store: a key deleted
   * between its move and its legacy item's removal could come back.
   */
  async migrateLegacy(store: string): Promise<number> {
    const table = this.table(store);
    let moved = 0;
    let start: Item | undefined;
    try {
      do {
        const out = await this.client.query({
          TableName: table,
          KeyConditionExpression: "#p = :p",
          ExpressionAttributeNames: { "#p": "_p" },
          ExpressionAttributeValues: { ":p": { S: LEGACY_PARTITION } },
          ConsistentRead: true,
          ...(this.options.pageLimit !== undefined ? { Limit: this.options.pageLimit } : {}),
          ...(start ? { ExclusiveStartKey: start } : {}),
        });
        for (const item of out.Items ?? []) {
          const key = item._k?.S;
          if (key === undefined) continue;
          try {
            await this.client.putItem({
              TableName: table,
              Item: { ...item, _p: { S: partitionOf(key) } },
              ConditionExpression: "attribute_not_exists(#k)",
              ExpressionAttributeNames: { "#k": "_k" },
            });
          } catch (error) {
            const name = (error as { name?: string }).name;
            // An item within 3 bytes of 400 KB does not fit under its longer shard name: it stays
            // where it is, read through the fallback.
            if (name === "ValidationException") continue;
            if (name !== "ConditionalCheckFailedException") throw error;
          }
          await this.client.deleteItem({ TableName: table, Key: { _p: { S: LEGACY_PARTITION }, _k: { S: key } } });
          moved++;
        }
        start = out.LastEvaluatedKey;
      } while (start);
    } catch (error) {
      throw dynamoError(store, table, "set", error);
    }
    this.legacyChecks.delete(table);
    return moved;
  }
}
