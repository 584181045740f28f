/**
 * kv stores on disk: one lmdb environment under the project's `.nitric-like/kv`, one named
 * database per store. Values are JSON objects, keys strings (at most MAX_KEY_BYTES of UTF-8).
 *
 * Durability: lmdb-js commits writes in batches on a worker thread. We keep `noSync: false` (each
 * commit is fsynced) and leave `separateFlushed` off, so a put()/remove() promise resolves only once
 * its commit is flushed (with the default `overlappingSync` the flush runs outside the write lock,
 * so batching stays fast). The provider answers SetValue and DeleteKey only after that promise: an
 * acknowledged write survives kill -9 of the provider (a committed page is in the OS page cache)
 * and, thanks to the fsync, a power cut as well.
 *
 * Encoding: a value is stored as a byte 0xC1 then its JSON text. JSON keeps a `__proto__` property
 * (msgpackr, lmdb's default encoder, renames it `__proto_` when it reads it back) and every double
 * exactly; 0xC1 is never the first byte of a msgpack value, so a value an older version wrote with
 * lmdb's msgpack encoding is still read (through a second handle on the same database).
 */
import { mkdirSync } from "node:fs";
import type { JsonObject } from "@bufbuild/protobuf";
import { checkLmdbFile, type KvBackend } from "@nitric-like/provider-kit";
import { type Database, open, type RootDatabase } from "lmdb";

/** The first byte of a value stored as JSON text (never the first byte of a msgpack value). */
const JSON_TAG = 0xc1;

/** A value as stored: JSON_TAG, then its JSON text in UTF-8. */
function encode(value: JsonObject): Buffer {
  const json = JSON.stringify(value);
  const out = Buffer.allocUnsafe(1 + Buffer.byteLength(json, "utf8"));
  out[0] = JSON_TAG;
  out.write(json, 1, "utf8");
  return out;
}

/** The kv stores of one project. */
export class KvStores implements KvBackend {
  private readonly root: RootDatabase;
  private readonly dbs = new Map<string, Database<Buffer, string>>();
  /** Handles that read values older versions wrote with lmdb's msgpack encoding, opened on first need. */
  private readonly legacy = new Map<string, Database<JsonObject, string>>();

  constructor(readonly path: string) {
    mkdirSync(path, { recursive: true });
    // A damaged file would crash the process inside lmdb, with no word of why.
    checkLmdbFile(path, "kv: the stores");
    this.root = open({ path, maxDbs: 1000, noSync: false, separateFlushed: false });
  }

  /** Opens (or creates) a store. */
  store(name: string): Database<Buffer, string> {
    let db = this.dbs.get(name);
    if (!db) {
      db = this.root.openDB<Buffer, string>({ name, encoding: "binary" });
      this.dbs.set(name, db);
    }
    return db;
  }

  /** True when a store was opened in this process. */
  has(name: string): boolean {
    return this.dbs.has(name);
  }

  /** Reads a value; undefined when the key is missing. */
  get(store: string, key: string): JsonObject | undefined {
    const bytes = this.store(store).getBinaryFast(key);
    if (bytes === undefined) return undefined;
    if (bytes[0] === JSON_TAG) return JSON.parse(bytes.toString("utf8", 1)) as JsonObject;
    let old = this.legacy.get(store);
    if (!old) {
      old = this.root.openDB<JsonObject, string>({ name: store, encoding: "msgpack" });
      this.legacy.set(store, old);
    }
    return old.get(key);
  }

  /** Writes a value; resolves once the write is durable. */
  async set(store: string, key: string, value: JsonObject): Promise<void> {
    await this.store(store).put(key, encode(value));
  }

  /** Deletes a key; resolves once durable. Deleting a missing key succeeds. */
  async delete(store: string, key: string): Promise<void> {
    await this.store(store).remove(key);
  }

  /** The keys starting with `prefix`, in byte order: a range scan that stops at the first key past it. */
  *keys(store: string, prefix: string): Generator<string> {
    for (const key of this.store(store).getKeys({ start: prefix })) {
      if (typeof key !== "string" || !key.startsWith(prefix)) break;
      yield key;
    }
  }

  /** Closes the environment. */
  async close(): Promise<void> {
    await this.root.close();
  }
}
