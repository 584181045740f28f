// The look at an lmdb data file before lmdb maps it: real files lmdb wrote, then cut or damaged.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { open } from "lmdb";
import { afterEach, describe, expect, it } from "vitest";
import { checkLmdbFile, lmdbFileProblem } from "./lmdb-file.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A folder with an lmdb environment that holds `count` values of 300 bytes. */
async function written(count: number): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "nitric-like-lmdb-file-"));
  dirs.push(dir);
  const root = open({ path: dir, maxDbs: 4 });
  const db = root.openDB<Buffer, string>({ name: "s", encoding: "binary" });
  for (let i = 0; i < count; i++) db.put(`k${i}`, Buffer.alloc(300, 1));
  await db.committed;
  await root.close();
  return dir;
}

describe("lmdbFileProblem", () => {
  it("passes what lmdb can open: none yet, an empty file, a small and a large environment", async () => {
    const none = mkdtempSync(join(tmpdir(), "nitric-like-lmdb-file-"));
    dirs.push(none);
    expect(lmdbFileProblem(none)).toBeUndefined();
    writeFileSync(join(none, "data.mdb"), "");
    expect(lmdbFileProblem(none)).toBeUndefined();
    expect(lmdbFileProblem(await written(1))).toBeUndefined();
    expect(lmdbFileProblem(await written(5000))).toBeUndefined();
  });

  it("names a file cut short, one that is not lmdb's, and one whose header is damaged", async () => {
    const dir = await written(5000);
    const file = join(dir, "data.mdb");
    const whole = readFileSync(file);
    writeFileSync(file, whole.subarray(0, whole.length - 4096));
    expect(lmdbFileProblem(dir)).toBe(
      `it is cut short: it is ${whole.length - 4096} bytes and its header says it holds ${whole.length}`,
    );
    writeFileSync(file, whole.subarray(0, 4096));
    expect(lmdbFileProblem(dir)).toBe(
      "it is cut short or damaged: it is 4096 bytes and its second header page is missing",
    );
    writeFileSync(file, Buffer.alloc(8192));
    expect(lmdbFileProblem(dir)).toBe("it is not an lmdb data file (8192 bytes, without lmdb's header)");
    writeFileSync(file, "{}\n");
    expect(lmdbFileProblem(dir)).toBe("it is not an lmdb data file (3 bytes, without lmdb's header)");
    const second = Buffer.from(whole);
    second.fill(0, 4096, 8192);
    writeFileSync(file, second);
    expect(lmdbFileProblem(dir)).toBe(
      `it is cut short or damaged: it is ${whole.length} bytes and its second header page is not lmdb's`,
    );
    const pageSize = Buffer.from(whole);
    pageSize.writeUInt32LE(1000, 24 + 24);
    writeFileSync(file, pageSize);
    expect(lmdbFileProblem(dir)).toBe("its header is damaged (a page size of 1000 bytes)");
  });

  it("throws a user-facing error naming the file and the way out", async () => {
    const dir = await written(1);
    writeFileSync(join(dir, "data.mdb"), "nope");
    let error: unknown;
    try {
      checkLmdbFile(dir, "kv: the stores");
    } catch (e) {
      error = e;
    }
    expect((error as { userFacing?: boolean }).userFacing).toBe(true);
    expect((error as Error).message).toBe(
      `kv: the stores' file ${JSON.stringify(join(dir, "data.mdb"))} is damaged: it is not an lmdb data file (4 bytes, without lmdb's header); move the folder away to start afresh (mv ${JSON.stringify(dir)} ${JSON.stringify(`${dir}.damaged`)}), or put back a copy from a backup`,
    );
  });
});
