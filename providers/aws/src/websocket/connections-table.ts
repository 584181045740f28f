/**
 * Managed connections on AWS: the provider, not the app, keeps a DynamoDB table of live
 * connections (made by the template, named by NITRIC_LIKE_CONNECTIONS_TABLE). The runtime adds a
 * connection once its connect handler accepted it, removes it on disconnect, and prunes it when the
 * Management API answers 410 Gone; `expiresAt` (DynamoDB TTL) drops what a lost disconnect left,
 * just after API Gateway's two-hour limit on a connection's life.
 *
 * Rooms and state live in the same table, so the grant stays one table: a connection's record
 * holds its state (`state`, JSON text) and its rooms (`rooms`, a string set: what a disconnect
 * must clean up), and each membership is an item of its own under the partition `<socket>#<room>`
 * (socket names are kebab-case and room names have no `#`, so no partition is two things), sort
 * key the connection id: a room's members are one Query, paged as a socket's ids are, which is
 * what lets a room broadcast reuse the socket broadcast's fan-out. A membership item carries its
 * connection's `expiresAt`, so what a lost disconnect leaves expires with the record, and a room
 * broadcast that meets a 410 deletes that membership too.
 *
 * The record's set and the membership item are two writes, and a connection's joins and leaves
 * run side by side (each message is an invocation of its own), so their writes can land out of
 * order: a join's membership after a later leave's delete, or a leave's delete after a later
 * join's write. Each join and leave therefore takes a number from the record (`roomSeq`, raised
 * by the same conditional UpdateItem that changes the set), a membership item carries its join's,
 * and a write to it is conditional on that number being older; a join whose item may have landed
 * after a later leave (or its connection's disconnect) reads the record again and takes back its
 * item when the room is no longer there. The item then ends as the set says, however they landed.
 */

import { type ConnectionInfo, keptQuery } from "@nitric-like/provider-kit";
import { Code, RpcError } from "@nitric-like/rpc";
import { MAX_ROOMS_PER_CONNECTION, tooManyRoomsProblem } from "@nitric-like/spec";
import type { ConnectionsDynamoDb, Item, QueryOutput } from "../aws/dynamodb.js";

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
    private readonly client: ConnectionsDynamoDb,
    readonly table: string,
  ) {}

  /** The partition of a room's membership items. */
  static roomPartition(socket: string, room: string): string {
    return `${socket}#${room}`;
  }

  /**
   * Records an accepted connection: its query's first MAX_KEPT_QUERY_VALUES values (the app reads
   * it back through `connection(id).query` and `connections()`), only the KEPT_HEADERS of its
   * headers, and the state its connect handler set.
   */
  async add(socket: string, info: ConnectionInfo, state = "", delivering = false): Promise<void> {
    await this.client.putItem({
      TableName: this.table,
      Item: {
        socket: { S: socket },
        id: { S: info.connectionId },
        connectedAt: { N: String(info.connectedAt) },
        query: { S: JSON.stringify(keptQuery(info.query)) },
        headers: { S: JSON.stringify(keptHeaders(info.headers)) },
        remoteAddress: { S: info.remoteAddress },
        // The authorizer's identity, for connection(id) and listings (at most 8 KB: API Gateway's limit).
        ...(info.auth ? { auth: { S: info.auth } } : {}),
        expiresAt: { N: String(Math.floor(info.connectedAt / 1000) + RECORD_TTL_SECONDS) },
        ...(state === "" ? {} : { state: { S: state } }),
        // What its connect handler sent waits for a delivery invocation (see messageContext).
        ...(delivering ? { delivering: { BOOL: true } } : {}),
      },
    });
  }

  /** Marks the delivery of what a connection's connect handler sent as done (or given up). */
  async delivered(socket: string, id: string): Promise<void> {
    try {
      await this.client.updateItem({
        TableName: this.table,
        Key: { socket: { S: socket }, id: { S: id } },
        UpdateExpression: "REMOVE delivering",
        ConditionExpression: "attribute_exists(id)",
      });
    } catch (error) {
      if ((error as { name?: string }).name !== "ConditionalCheckFailedException") throw error;
    }
  }

  /**
   * Forgets a connection (disconnected, or gone) and its memberships; resolves with the state it
   * had ("" when none), for its disconnect event.
   */
  async remove(socket: string, id: string): Promise<string> {
    return (await this.deleteRecord(socket, id))?.state?.S ?? "";
  }

  /**
   * Deletes a connection's record (when `condition` holds, with its values) and then its
   * memberships; resolves with what the record held.
   */
  private async deleteRecord(
    socket: string,
    id: string,
    condition?: { expression: string; values: Item },
  ): Promise<Item | undefined> {
    const out = await this.client.deleteItem({
      TableName: this.table,
      Key: { socket: { S: socket }, id: { S: id } },
      ...(condition ? { ConditionExpression: condition.expression, ExpressionAttributeValues: condition.values } : {}),
      ReturnValues: "ALL_OLD",
    });
    const rooms = out.Attributes?.rooms?.SS ?? [];
    await Promise.all(rooms.map((room) => this.deleteMembership(socket, room, id)));
    return out.Attributes;
  }

  /**
   * Forgets a connection a post found gone (410), unless it connected at or after `connectedBefore`
   * (Date.now()): a connection whose $connect has recorded it is gone to the Management API until
   * API Gateway has opened it, and a broadcast then must not take its record, state and rooms
   * away for good. One that never opens gets its $disconnect, which removes it. True when
   * forgotten (or not recorded), false when kept as possibly opening.
   */
  async forgetGone(socket: string, id: string, connectedBefore: number): Promise<boolean> {
    try {
      await this.deleteRecord(socket, id, {
        expression: "attribute_not_exists(id) OR connectedAt < :before",
        values: { ":before": { N: String(connectedBefore) } },
      });
      return true;
    } catch (error) {
      if ((error as { name?: string }).name === "ConditionalCheckFailedException") return false;
      throw error;
    }
  }

  /**
   * Deletes one membership item: a 410 during a room broadcast prunes it even when the record is
   * gone already (a join whose invocation ended between its write and its check can leave one).
   */
  async deleteMembership(socket: string, room: string, id: string): Promise<void> {
    await this.client.deleteItem({
      TableName: this.table,
      Key: this.membershipKey(socket, room, id),
    });
  }

  /** The key of a room's membership item for a connection. */
  private membershipKey(socket: string, room: string, id: string): Item {
    return { socket: { S: ConnectionsTable.roomPartition(socket, room) }, id: { S: id } };
  }

  /**
   * Writes (or deletes) a membership item unless a later join or leave (a higher `roomSeq`)
   * wrote it already; true when it did.
   */
  private async writeMembership(
    socket: string,
    room: string,
    id: string,
    seq: number,
    expiresAt: string | undefined,
  ): Promise<boolean> {
    const condition = "attribute_not_exists(#q) OR #q < :q";
    try {
      if (expiresAt === undefined) {
        await this.client.deleteItem({
          TableName: this.table,
          Key: this.membershipKey(socket, room, id),
          ConditionExpression: condition,
          ExpressionAttributeNames: { "#q": "roomSeq" },
          ExpressionAttributeValues: { ":q": { N: String(seq) } },
        });
      } else {
        await this.client.putItem({
          TableName: this.table,
          Item: { ...this.membershipKey(socket, room, id), expiresAt: { N: expiresAt }, roomSeq: { N: String(seq) } },
          ConditionExpression: condition,
          ExpressionAttributeNames: { "#q": "roomSeq" },
          ExpressionAttributeValues: { ":q": { N: String(seq) } },
        });
      }
      return true;
    } catch (error) {
      if ((error as { name?: string }).name === "ConditionalCheckFailedException") return false;
      throw error;
    }
  }

  /**
   * Adds a recorded connection to a room: true when it was not in it, false when it was,
   * undefined when there is no record (not connected). One conditional UpdateItem keeps the
   * record's set of rooms (and its bound) and takes the join's number, then the membership item
   * is written; if a later join or leave, or the disconnect, changed the record meanwhile, it is
   * read again, and the item taken back when the room is no longer in the set.
   */
  async join(socket: string, id: string, room: string): Promise<boolean | undefined> {
    let old: Item | undefined;
    try {
      old = (
        await this.client.updateItem({
          TableName: this.table,
          Key: { socket: { S: socket }, id: { S: id } },
          UpdateExpression: "ADD #r :set, #q :one",
          ConditionExpression:
            "attribute_exists(id) AND (attribute_not_exists(#r) OR size(#r) < :max OR contains(#r, :room))",
          ExpressionAttributeNames: { "#r": "rooms", "#q": "roomSeq" },
          ExpressionAttributeValues: {
            ":set": { SS: [room] },
            ":room": { S: room },
            ":max": { N: String(MAX_ROOMS_PER_CONNECTION) },
            ":one": { N: "1" },
          },
          ReturnValues: "ALL_OLD",
        })
      ).Attributes;
    } catch (error) {
      if ((error as { name?: string }).name !== "ConditionalCheckFailedException") throw error;
      const record = await this.client.getItem({
        TableName: this.table,
        Key: { socket: { S: socket }, id: { S: id } },
        ConsistentRead: true,
        ProjectionExpression: "id",
      });
      if (!record.Item) return undefined;
      throw new RpcError(Code.RESOURCE_EXHAUSTED, tooManyRoomsProblem(`websocket "${socket}"`, id));
    }
    const seq = Number(old?.roomSeq?.N ?? 0) + 1;
    const expiresAt = old?.expiresAt?.N ?? String(Math.floor(Date.now() / 1000) + RECORD_TTL_SECONDS);
    if (await this.writeMembership(socket, room, id, seq, expiresAt)) {
      // Written: a leave (or the disconnect) that came after this join may have run before the write.
      const now = await this.client.getItem({
        TableName: this.table,
        Key: { socket: { S: socket }, id: { S: id } },
        ConsistentRead: true,
        ProjectionExpression: "#r, #q",
        ExpressionAttributeNames: { "#r": "rooms", "#q": "roomSeq" },
      });
      const changed = Number(now.Item?.roomSeq?.N ?? Number.POSITIVE_INFINITY) !== seq;
      if (changed && !(now.Item?.rooms?.SS ?? []).includes(room)) await this.takeBack(socket, room, id, seq);
    }
    return !(old?.rooms?.SS ?? []).includes(room);
  }

  /** Deletes the membership item a join wrote, unless a later join wrote it since. */
  private async takeBack(socket: string, room: string, id: string, seq: number): Promise<void> {
    try {
      await this.client.deleteItem({
        TableName: this.table,
        Key: this.membershipKey(socket, room, id),
        ConditionExpression: "#q = :q",
        ExpressionAttributeNames: { "#q": "roomSeq" },
        ExpressionAttributeValues: { ":q": { N: String(seq) } },
      });
    } catch (error) {
      if ((error as { name?: string }).name !== "ConditionalCheckFailedException") throw error;
    }
  }

  /**
   * Removes a connection from a room; true when it was in it. The membership item goes unless a
   * later join wrote it; without a record (the connection is gone) it goes anyway.
   */
  async leave(socket: string, id: string, room: string): Promise<boolean> {
    let old: Item | undefined;
    try {
      old = (
        await this.client.updateItem({
          TableName: this.table,
          Key: { socket: { S: socket }, id: { S: id } },
          UpdateExpression: "ADD #q :one DELETE #r :set",
          ConditionExpression: "attribute_exists(id)",
          ExpressionAttributeNames: { "#r": "rooms", "#q": "roomSeq" },
          ExpressionAttributeValues: { ":set": { SS: [room] }, ":one": { N: "1" } },
          ReturnValues: "ALL_OLD",
        })
      ).Attributes;
    } catch (error) {
      if ((error as { name?: string }).name !== "ConditionalCheckFailedException") throw error;
      await this.deleteMembership(socket, room, id);
      return false;
    }
    await this.writeMembership(socket, room, id, Number(old?.roomSeq?.N ?? 0) + 1, undefined);
    return (old?.rooms?.SS ?? []).includes(room);
  }

  /** The rooms of a recorded connection. */
  async roomsOf(socket: string, id: string): Promise<string[]> {
    const out = await this.client.getItem({
      TableName: this.table,
      Key: { socket: { S: socket }, id: { S: id } },
      ConsistentRead: true,
      ProjectionExpression: "#r",
      ExpressionAttributeNames: { "#r": "rooms" },
    });
    return out.Item?.rooms?.SS ?? [];
  }

  /** The ids in a room, expired memberships left out. */
  async members(socket: string, room: string): Promise<string[]> {
    const out: string[] = [];
    let start: Item | undefined;
    do {
      const page = await this.idPage(ConnectionsTable.roomPartition(socket, room), 1000, start);
      out.push(...page.ids);
      start = page.next;
    } while (start);
    return out;
  }

  /** Replaces a recorded connection's state ("" removes it); false when there is no record. */
  async setState(socket: string, id: string, json: string): Promise<boolean> {
    try {
      await this.client.updateItem({
        TableName: this.table,
        Key: { socket: { S: socket }, id: { S: id } },
        UpdateExpression: json === "" ? "REMOVE #st" : "SET #st = :st",
        ConditionExpression: "attribute_exists(id)",
        ExpressionAttributeNames: { "#st": "state" },
        ...(json === "" ? {} : { ExpressionAttributeValues: { ":st": { S: json } } }),
      });
      return true;
    } catch (error) {
      if ((error as { name?: string }).name === "ConditionalCheckFailedException") return false;
      throw error;
    }
  }

  /** A recorded connection's state ("" when none); undefined when there is no record. */
  /**
   * What a message event of a recorded connection carries: its state, and whether what its connect
   * handler sent is still waiting for its delivery invocation. One consistent GetItem; undefined
   * when there is no record.
   */
  async messageContext(socket: string, id: string): Promise<{ state: string; delivering: boolean } | undefined> {
    const out = await this.client.getItem({
      TableName: this.table,
      Key: { socket: { S: socket }, id: { S: id } },
      ConsistentRead: true,
      ProjectionExpression: "id, #st, delivering",
      ExpressionAttributeNames: { "#st": "state" },
    });
    if (!out.Item) return undefined;
    return { state: out.Item.state?.S ?? "", delivering: out.Item.delivering?.BOOL === true };
  }

  /** A recorded connection's state ("" when none); undefined when there is no record. */
  async getState(socket: string, id: string): Promise<string | undefined> {
    return (await this.messageContext(socket, id))?.state;
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
    ...(item.auth?.S ? { auth: item.auth.S } : {}),
  };
}
