/**
 * kv stores in DynamoDB: one table per store (PAY_PER_REQUEST, made by the template), named by
 * NITRIC_LIKE_KV_TABLES. Items are `{ _p: "k", _k: <key>, _v: <value as a map> }`: the value is
 * nested under `_v`, so no field of a user's value can collide with the key attributes, and every
 * key shares the partition `_p = "k"` with the key as sort key, so listing keys by prefix is a
 * Query with `begins_with` whose cost follows the keys it returns, not the table (Nitric scans).
 * Reads are strongly consistent, so a key written is listed and read back at once, as locally.
 */

import type { JsonObject } from "@bufbuild/protobuf";
import { GrpcStatus, grpcError } from "@nitric-like/contracts/grpc";
import type { KvBackend } from "@nitric-like/provider-kit";
import type { DynamoDb, Item, QueryOutput } from "../aws/dynamodb.js";
import { fromAttributes, toAttributes } from "./attributes.js";

/** The partition every key lives in. */
export const PARTITION = "k";

/** The permission each operation needs, for errors that name the missing `.allow(...)`. */
type Operation = "get" | "set" | "delete";

/** Turns a DynamoDB failure into a gRPC status that says what to fix. */
export function dynamoError(store: string, table: string, operation: Operation, error: unknown): Error {
  const name = (error as { name?: string }).name ?? "";
  const message = error instanceof Error ? error.message : String(error);
  const where = `kv(${JSON.stringify(store)})`;
  if (name === "AccessDeniedException") {
    return grpcError(
      GrpcStatus.PERMISSION_DENIED,
      `${where}: AWS refused to ${operation === "get" ? "read" : operation} table "${table}" (${message}); add .allow(${JSON.stringify(operation)}) to ${where} in this service and deploy again`,
    );
  }
  if (name === "ResourceNotFoundException") {
    return grpcError(
      GrpcStatus.NOT_FOUND,
      `${where}: its table "${table}" does not exist; deploy the stack again (nitric-like up --provider aws)`,
    );
  }
  if (name === "ProvisionedThroughputExceededException" || name === "ThrottlingException") {
    return grpcError(
      GrpcStatus.RESOURCE_EXHAUSTED,
      `${where}: DynamoDB throttled the request; retry later (${message})`,
    );
  }
  if (name === "ValidationException") {
    return grpcError(GrpcStatus.INVALID_ARGUMENT, `${where}: DynamoDB refused the request: ${message}`);
  }
  return grpcError(
    GrpcStatus.UNAVAILABLE,
    `${where}: DynamoDB ${operation} failed: ${name ? `${name}: ` : ""}${message}`,
  );
}

/** The kv stores of one function, each in its own table. */
export class DynamoKvStores implements KvBackend {
  constructor(
    private readonly client: DynamoDb,
    private readonly tables: Readonly<Record<string, string>>,
  ) {}

  /** The table of a store; FAILED_PRECONDITION when the deployment gave this function none. */
  table(store: string): string {
    // Own keys only: a store named "constructor" must not find Object's constructor.
    const table = Object.hasOwn(this.tables, store) ? this.tables[store] : undefined;
    if (typeof table !== "string") {
      throw grpcError(
        GrpcStatus.FAILED_PRECONDITION,
        `kv(${JSON.stringify(store)}): this function has no table for the store (NITRIC_LIKE_KV_TABLES names ${
          Object.keys(this.tables)
            .map((t) => JSON.stringify(t))
            .join(", ") || "none"
        }); build and deploy again so the template includes it`,
      );
    }
    return table;
  }

  async get(store: string, key: string): Promise<JsonObject | undefined> {
    const table = this.table(store);
    try {
      const out = await this.client.getItem({
        TableName: table,
        Key: { _p: { S: PARTITION }, _k: { S: key } },
        ConsistentRead: true,
      });
      const value = out.Item?._v?.M;
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
        Item: { _p: { S: PARTITION }, _k: { S: key }, _v: { M: toAttributes(value) } },
      });
    } catch (error) {
      throw dynamoError(store, table, "set", error);
    }
  }

  async delete(store: string, key: string): Promise<void> {
    const table = this.table(store);
    try {
      await this.client.deleteItem({ TableName: table, Key: { _p: { S: PARTITION }, _k: { S: key } } });
    } catch (error) {
      throw dynamoError(store, table, "delete", error);
    }
  }

  async *keys(store: string, prefix: string): AsyncGenerator<string> {
    const table = this.table(store);
    let start: Item | undefined;
    do {
      let out: QueryOutput;
      try {
        out = await this.client.query({
          TableName: table,
          KeyConditionExpression: prefix === "" ? "#p = :p" : "#p = :p AND begins_with(#k, :prefix)",
          ExpressionAttributeNames: { "#p": "_p", "#k": "_k" },
          ExpressionAttributeValues:
            prefix === "" ? { ":p": { S: PARTITION } } : { ":p": { S: PARTITION }, ":prefix": { S: prefix } },
          ProjectionExpression: "#k",
          ConsistentRead: true,
          ...(start ? { ExclusiveStartKey: start } : {}),
        });
      } catch (error) {
        throw dynamoError(store, table, "get", error);
      }
      for (const item of out.Items ?? []) if (item._k?.S !== undefined) yield item._k.S;
      start = out.LastEvaluatedKey;
    } while (start);
  }
}
