/**
 * Managed connections on AWS: the provider, not the app, keeps a DynamoDB table of live
 * connections (made by the template, named by NITRIC_LIKE_CONNECTIONS_TABLE). The runtime adds a
 * connection once its connect handler accepted it, removes it on disconnect, and prunes it when the
 * Management API answers 410 Gone; `expiresAt` (DynamoDB TTL) drops what a lost disconnect left,
 * just after API Gateway's two-hour limit on a connection's life.
 */

import type { ConnectionInfo } from "@nitric-like/provider-kit";
import type { DynamoDb, Item, QueryOutput } from "../aws/dynamodb.js";

/** API Gateway closes every connection after two hours; records outlive that by five minutes. */
export const RECORD_TTL_SECONDS = 2 * 60 * 60 + 5 * 60;

/**
 * The request headers a connection record keeps; every other header (`cookie`, `authorization`,
 * API keys, tokens, forwarding chains) is dropped before the record is written, since every
 * later event, `connections()` and `connection(id)` would hand it out again, and a broadcast
 * would read it. `user-agent` is `c.userAgent`; `origin` says which site opened the connection;
 * `sec-websocket-protocol` the subprotocols the client offered. The source address is kept on its
 * own (`remoteAddress`). The connect handler itself still sees every header.
 */
export const KEPT_HEADERS: readonly string[] = ["origin", "sec-websocket-protocol", "user-agent"];

/** At most this many values of a kept header, each at most this many characters. */
const KEPT_VALUES = 4;
const KEPT_VALUE_CHARS = 1024;

/** The headers of `headers` a record keeps (see KEPT_HEADERS). */
export function keptHeaders(headers: ConnectionInfo["headers"]): ConnectionInfo["headers"] {
  const kept: ConnectionInfo["headers"] = {};
  for (const name of KEPT_HEADERS) {
    if (!Object.hasOwn(headers, name)) continue;
    const values = headers[name]?.value;
    if (!Array.isArray(values)) continue;
    kept[name] = { value: values.slice(0, KEPT_VALUES).map((v) => String(v).slice(0, KEPT_VALUE_CHARS)) };
  }
  return kept;
}

/** The table of live connections of every socket of a stack. */
export class ConnectionsTable {
  constructor(
    private readonly client: DynamoDb,
    readonly table: string,
  ) {}

  /**
   * Records an accepted connection: its query whole (the app reads it back through
   * `connection(id).query` and `connections()`), only the KEPT_HEADERS of its headers.
   */
  async add(socket: string, info: ConnectionInfo): Promise<void> {
    await this.client.putItem({
      TableName: this.table,
      Item: {
        socket: { S: socket },
        id: { S: info.connectionId },
        connectedAt: { N: String(info.connectedAt) },
        query: { S: JSON.stringify(info.query) },
        headers: { S: JSON.stringify(keptHeaders(info.headers)) },
        remoteAddress: { S: info.remoteAddress },
        expiresAt: { N: String(Math.floor(info.connectedAt / 1000) + RECORD_TTL_SECONDS) },
      },
    });
  }

  /** Forgets a connection (disconnected, or gone). */
  async remove(socket: string, id: string): Promise<void> {
    await this.client.deleteItem({ TableName: this.table, Key: { socket: { S: socket }, id: { S: id } } });
  }

  /** A recorded connection; undefined when there is none. */
  async get(socket: string, id: string): Promise<ConnectionInfo | undefined> {
    const out = await this.client.getItem({
      TableName: this.table,
      Key: { socket: { S: socket }, id: { S: id } },
      ConsistentRead: true,
    });
    return out.Item ? infoOf(out.Item) : undefined;
  }

  /**
   * One page of the ids of a socket's recorded connections, expired records left out: one Query
   * of at most `pageSize` records from `start` (projected to `id` and `expiresAt`: what a broadcast
   * needs; DynamoDB still counts read units on whole items). `next` is where the next page starts;
   * undefined after the last.
   */
  async idPage(socket: string, pageSize: number, start?: Item): Promise<{ ids: string[]; next: Item | undefined }> {
    const now = Math.floor(Date.now() / 1000);
    const page: QueryOutput = await this.client.query({
      TableName: this.table,
      KeyConditionExpression: "#s = :s",
      ProjectionExpression: "id, expiresAt",
      ExpressionAttributeNames: { "#s": "socket" },
      ExpressionAttributeValues: { ":s": { S: socket } },
      ConsistentRead: true,
      Limit: pageSize,
      ...(start ? { ExclusiveStartKey: start } : {}),
    });
    const ids: string[] = [];
    for (const item of page.Items ?? []) {
      const id = item.id?.S;
      if (id && Number(item.expiresAt?.N ?? Number.POSITIVE_INFINITY) >= now) ids.push(id);
    }
    return { ids, next: page.LastEvaluatedKey };
  }

  /** Every recorded connection of a socket, expired records left out. */
  async list(socket: string): Promise<ConnectionInfo[]> {
    const now = Math.floor(Date.now() / 1000);
    const out: ConnectionInfo[] = [];
    let start: Item | undefined;
    do {
      const page: QueryOutput = await this.client.query({
        TableName: this.table,
        KeyConditionExpression: "#s = :s",
        ExpressionAttributeNames: { "#s": "socket" },
        ExpressionAttributeValues: { ":s": { S: socket } },
        ConsistentRead: true,
        ...(start ? { ExclusiveStartKey: start } : {}),
      });
      for (const item of page.Items ?? []) {
        if (Number(item.expiresAt?.N ?? Number.POSITIVE_INFINITY) >= now) out.push(infoOf(item));
      }
      start = page.LastEvaluatedKey;
    } while (start);
    return out;
  }
}

function infoOf(item: Item): ConnectionInfo {
  return {
    connectionId: item.id?.S ?? "",
    connectedAt: Number(item.connectedAt?.N ?? 0),
    query: JSON.parse(item.query?.S ?? "{}") as ConnectionInfo["query"],
    headers: JSON.parse(item.headers?.S ?? "{}") as ConnectionInfo["headers"],
    remoteAddress: item.remoteAddress?.S ?? "",
  };
}
