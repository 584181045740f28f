/**
 * `run`'s secrets: one lmdb environment under the project's `.nitric-like/secrets`, shared by the
 * local provider, `run --provider aws`'s emulated Secrets Manager and `nitric-like secret put`, so
 * a value stored once is served whichever provider `run` uses. Apart from the kv stores (removing
 * `.nitric-like/kv` to start afresh keeps them), in a folder only this user can enter (0700).
 *
 * Four databases: `values` holds each version under `<secret>/<version id>` (a byte saying whether
 * it was put as text or bytes, its creation time, then the value), `latest` the id of each secret's
 * newest version and `previous` the one before it (Secrets Manager's AWSCURRENT and AWSPREVIOUS),
 * `history` each secret's versions in the order they were put. A put writes them in one
 * transaction and resolves once it is flushed, as kv writes do. The last MAX_SECRET_VERSIONS
 * versions of a secret are kept, as Secrets Manager keeps about as many: a service that puts in a
 * loop cannot fill the disk, and an id a service kept reads the value it named while it is among
 * them.
 * Several processes may open the folder at once: lmdb serializes their writes, and a read sees
 * every commit made before it.
 *
 * Imported on its own (`@nitric-like/provider-kit/secret-store`): lmdb is native code, which no
 * function bundle may carry.
 */
import { chmodSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { LATEST_VERSION } from "@nitric-like/spec";
import { type Database, open, type RootDatabase } from "lmdb";
import type { SecretsBackend, SecretVersionValue } from "./backends.js";
import { checkLmdbFile } from "./lmdb-file.js";

/** A stored version, with what the emulated Secrets Manager answers about it. */
export interface StoredSecretVersion extends SecretVersionValue {
  /** True when it was put as text (Secrets Manager's SecretString), false for bytes. */
  text: boolean;
  /** When it was put, in milliseconds since the epoch. */
  created: number;
}

/** The most versions kept of one secret; the oldest go first, never the newest two. */
export const MAX_SECRET_VERSIONS = 100;

/** A version's header: its kind (1 byte), then its creation time (a float64). */
const HEADER = 9;

/** Where a project's secrets live. */
export function secretsDirOf(projectDir: string): string {
  return join(projectDir, ".nitric-like", "secrets");
}

/** The secrets of one project. */
export class SecretStore implements SecretsBackend {
  private readonly root: RootDatabase;
  private readonly values: Database<Buffer, string>;
  private readonly latest: Database<string, string>;
  private readonly previous: Database<string, string>;
  /** `<secret>/<time put, 16 digits>/<version id>` → the version id, oldest first. */
  private readonly history: Database<string, string>;

  constructor(readonly path: string) {
    mkdirSync(path, { recursive: true, mode: 0o700 });
    // A folder made before (or by another umask) is narrowed too: the values are in plain bytes.
    chmodSync(path, 0o700);
    // A damaged file would crash the process inside lmdb, with no word of why.
    checkLmdbFile(path, "secrets: the secrets");
    this.root = open({ path, maxDbs: 8, noSync: false, separateFlushed: false });
    this.values = this.root.openDB<Buffer, string>({ name: "values", encoding: "binary" });
    this.latest = this.root.openDB<string, string>({ name: "latest", encoding: "string" });
    this.previous = this.root.openDB<string, string>({ name: "previous", encoding: "string" });
    this.history = this.root.openDB<string, string>({ name: "history", encoding: "string" });
  }

  /** Stores `value` as the newest version of `secret`, under `version`; resolves once durable. */
  async put(secret: string, version: string, value: Uint8Array, options: { text?: boolean } = {}): Promise<void> {
    const now = Date.now();
    const record = Buffer.allocUnsafe(HEADER + value.length);
    record[0] = options.text === true ? 1 : 0;
    record.writeDoubleLE(now, 1);
    record.set(value, HEADER);
    await this.root.transaction(() => {
      const former = this.latest.get(secret);
      this.values.put(`${secret}/${version}`, record);
      // Names hold no "/" (lower kebab case): "<secret>/" to "<secret>0" is this secret's history,
      // in the order of its keys' numbers: the put's time, or one more than the last put's when
      // that is not earlier (puts within one millisecond, or a clock set back), so the order is
      // the order of the puts (a UUID after equal times would order them at random).
      const keys = [...this.history.getKeys({ start: `${secret}/`, end: `${secret}0` })] as string[];
      const last = keys.length === 0 ? 0 : Number((keys[keys.length - 1] as string).split("/")[1]);
      const key = `${secret}/${String(Math.max(now, last + 1)).padStart(16, "0")}/${version}`;
      this.history.put(key, version);
      keys.push(key);
      this.latest.put(secret, version);
      if (former !== undefined && former !== version) this.previous.put(secret, former);
      let excess = keys.length - MAX_SECRET_VERSIONS;
      for (const key of keys) {
        if (excess <= 0) break;
        const id = key.slice(key.lastIndexOf("/") + 1);
        if (id === version || id === former) continue;
        this.history.remove(key);
        this.values.remove(`${secret}/${id}`);
        excess--;
      }
    });
  }

  /** Reads a version ("latest" for the newest); undefined when the secret has none such. */
  async access(secret: string, version: string): Promise<SecretVersionValue | undefined> {
    const found = this.read(secret, version === LATEST_VERSION ? this.latest.get(secret) : version);
    return found && { version: found.version, value: found.value };
  }

  /** One version by its id, with its kind and creation time; undefined when there is none such. */
  read(secret: string, version: string | undefined): StoredSecretVersion | undefined {
    if (version === undefined) return undefined;
    const record = this.values.getBinary(`${secret}/${version}`);
    if (record === undefined) return undefined;
    return { version, value: record.subarray(HEADER), text: record[0] === 1, created: record.readDoubleLE(1) };
  }

  /** The ids of a secret's newest version and the one before it (AWSCURRENT, AWSPREVIOUS). */
  stages(secret: string): { current?: string; previous?: string } {
    const current = this.latest.get(secret);
    const previous = this.previous.get(secret);
    return { ...(current !== undefined ? { current } : {}), ...(previous !== undefined ? { previous } : {}) };
  }

  /** The secrets that have a value, with the id of their newest version. */
  *list(): Generator<{ name: string; version: string }> {
    for (const { key, value } of this.latest.getRange()) yield { name: key, version: value };
  }

  /** Closes the environment. */
  async close(): Promise<void> {
    await this.root.close();
  }
}
