/**
 * Secrets on disk: one lmdb environment under the project's `.nitric-like/secrets`, apart from the
 * kv stores (so that removing `.nitric-like/kv` to start afresh keeps them), in a folder only this
 * user can enter (0700). Two databases: `values` holds every version's bytes under
 * `<secret>/<version id>`, `latest` the id of each secret's newest version. A put writes both in one
 * transaction and resolves once it is flushed, as kv writes do; versions are never deleted, as in
 * Secrets Manager, so an id a service kept keeps reading the value it named.
 *
 * `run` and `nitric-like secret put` may open the same folder at once: lmdb serializes their
 * writes across processes.
 */
import { chmodSync, mkdirSync } from "node:fs";
import type { SecretsBackend, SecretVersionValue } from "@nitric-like/provider-kit";
import { LATEST_VERSION } from "@nitric-like/spec";
import { type Database, open, type RootDatabase } from "lmdb";

/** The secrets of one project. */
export class SecretStore implements SecretsBackend {
  private readonly root: RootDatabase;
  private readonly values: Database<Buffer, string>;
  private readonly latest: Database<string, string>;

  constructor(readonly path: string) {
    mkdirSync(path, { recursive: true, mode: 0o700 });
    // A folder made before (or by another umask) is narrowed too: the values are in plain bytes.
    chmodSync(path, 0o700);
    this.root = open({ path, maxDbs: 4, noSync: false, separateFlushed: false });
    this.values = this.root.openDB<Buffer, string>({ name: "values", encoding: "binary" });
    this.latest = this.root.openDB<string, string>({ name: "latest", encoding: "string" });
  }

  /** Stores `value` as the newest version of `secret`, under `version`; resolves once durable. */
  async put(secret: string, version: string, value: Uint8Array): Promise<void> {
    const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    await this.root.transaction(() => {
      this.values.put(`${secret}/${version}`, bytes);
      this.latest.put(secret, version);
    });
  }

  /** Reads a version ("latest" for the newest); undefined when the secret has none such. */
  async access(secret: string, version: string): Promise<SecretVersionValue | undefined> {
    const id = version === LATEST_VERSION ? this.latest.get(secret) : version;
    if (id === undefined) return undefined;
    const bytes = this.values.getBinary(`${secret}/${id}`);
    if (bytes === undefined) return undefined;
    return { version: id, value: bytes };
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
