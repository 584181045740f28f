/**
 * What a provider plugs into the shared gRPC services: a socket backend per websocket (local: a ws
 * gateway; AWS: the API Gateway Management API), one kv backend (local: lmdb; AWS: DynamoDB) and one
 * secrets backend (local: lmdb; AWS: Secrets Manager).
 * Methods may answer synchronously, so the local provider's hot path stays free of promises.
 */
import type { JsonObject } from "@bufbuild/protobuf";
import { KV_MAX_KEY_BYTES } from "@nitric-like/spec";

/** A value or a promise of it. */
export type MaybePromise<T> = T | Promise<T>;

/** What is known about an open connection. */
export interface ConnectionInfo {
  connectionId: string;
  /** Milliseconds since the epoch. */
  connectedAt: number;
  /** Every value of each query parameter, decoded. */
  query: Record<string, { value: string[] }>;
  headers: Record<string, { value: string[] }>;
  remoteAddress: string;
  /** The identity its socket's authorizer gave it, JSON-encoded; empty or absent when none. */
  auth?: string;
}

/** The connections of one websocket. */
export interface SocketBackend {
  /** The URL clients connect to. */
  readonly url: string;
  /** True when the connection is open (or opening: its connect handler is running). */
  has(id: string): MaybePromise<boolean>;
  /**
   * Sends one frame; false when the connection is not open, and when this send closed it (1008,
   * its client not reading): the service is told not connected, as on AWS (PostToConnection's 410).
   */
  send(id: string, data: Uint8Array, binary: boolean): MaybePromise<boolean>;
  /** Closes one connection; false when it is not open. */
  close(id: string, code: number, reason: string): MaybePromise<boolean>;
  /** What is known about an open connection; undefined when it is not open. */
  info(id: string): MaybePromise<ConnectionInfo | undefined>;
  /** Every open connection. */
  list(): MaybePromise<ConnectionInfo[]>;
  /** Sends one frame to every open connection but the excepted ones; resolves with how many got it. */
  broadcast(data: Uint8Array, binary: boolean, except: ReadonlySet<string>): MaybePromise<number>;
  /**
   * Adds a connection to a room (names checked by the caller): true when it was not in it, false
   * when it was, undefined when the connection is not open. Throws RESOURCE_EXHAUSTED for a
   * connection in MAX_ROOMS_PER_CONNECTION rooms already.
   */
  join(id: string, room: string): MaybePromise<boolean | undefined>;
  /** Removes a connection from a room: true when it was in it. */
  leave(id: string, room: string): MaybePromise<boolean>;
  /** The open connections in a room. */
  members(room: string): MaybePromise<string[]>;
  /** The rooms of a connection (none when it is not open). */
  roomsOf(id: string): MaybePromise<string[]>;
  /** Sends one frame to every connection in a room but the excepted ones; resolves with how many got it. */
  broadcastToRoom(room: string, data: Uint8Array, binary: boolean, except: ReadonlySet<string>): MaybePromise<number>;
  /** Replaces a connection's state (JSON text, checked by the caller; "" clears it); false when it is not open. */
  setState(id: string, json: string): MaybePromise<boolean>;
  /** A connection's state ("" when none); undefined when it is not open. */
  getState(id: string): MaybePromise<string | undefined>;
}

/** Longest key accepted, in UTF-8 bytes: DynamoDB's sort key limit (lmdb's own is 1978); see @nitric-like/spec's kv rules. */
export const MAX_KEY_BYTES = KV_MAX_KEY_BYTES;

/**
 * Where kv stores keep their values: JSON objects under string keys. The kv service gives `set`
 * only values that passed @nitric-like/spec's checkKvValue, and a backend keeps them exactly
 * (`__proto__` properties as own properties; property order aside).
 */
export interface KvBackend {
  /** Reads a value; undefined when the key is missing. */
  get(store: string, key: string): MaybePromise<JsonObject | undefined>;
  /** Writes a value; resolves once the write is durable. */
  set(store: string, key: string, value: JsonObject): Promise<void>;
  /** Deletes a key; resolves once durable. Deleting a missing key succeeds. */
  delete(store: string, key: string): Promise<void>;
  /** The keys starting with `prefix`, in byte order. */
  keys(store: string, prefix: string): Iterable<string> | AsyncIterable<string>;
}

/** One version of a secret, as a backend reads it. */
export interface SecretVersionValue {
  /** The version's id (never "latest"). */
  version: string;
  value: Uint8Array;
}

/**
 * Where secrets keep their versions (local: lmdb; AWS: Secrets Manager). The secrets service gives
 * `put` only values that passed @nitric-like/spec's secretValueProblem, and `access` only versions
 * that passed secretVersionProblem.
 */
export interface SecretsBackend {
  /** Stores `value` as the newest version of `secret` under the id `version` (a random UUID the caller made); resolves once durable. */
  put(secret: string, version: string, value: Uint8Array): Promise<void>;
  /** Reads a version ("latest" for the newest); undefined when the secret has no such version. */
  access(secret: string, version: string): Promise<SecretVersionValue | undefined>;
}
