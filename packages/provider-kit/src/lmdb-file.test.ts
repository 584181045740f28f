// The look at an lmdb data file before lmdb maps it: real files lmdb wrote, then cut or damaged,
// and lmdb itself reading them in a child process, to show that what is refused is what would
// crash it and what is passed is what it reads.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { open } from "lmdb";
import { afterEach, describe, expect, it } from "vitest";
import { checkLmdbFile, lmdbFileProblem } from "./lmdb-file.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function temp(): string {
  const dir = mkdtempSync(join(tmpdir(), "nitric-like-lmdb-file-"));
  dirs.push(dir);
  return dir;
}

/** A folder with an lmdb environment that holds `count` values of 300 bytes in two stores. */
async function written(count: number): Promise<string> {
  const dir = temp();
  const root = open({ path: dir, maxDbs: 4 });
  const dbs = ["a", "b"].map((name) => root.openDB<Buffer, string>({ name, encoding: "binary" }));
  for (let i = 0; i < count; i++) dbs[i % 2]?.put(`k${i}`, Buffer.alloc(300, 1));
  await root.committed;
  await root.close();
  return dir;
}

const LMDB = createRequire(import.meta.url).resolve("lmdb");

/**
 * Whether lmdb, in a process of its own, opens `dir`, reads every value of both stores and writes
 * more (a write reads the free pages' list too).
 */
function lmdbWorks(dir: string): boolean {
  const script = `const { open } = require(${JSON.stringify(LMDB)});
const root = open({ path: ${JSON.stringify(dir)}, maxDbs: 4 });
for (const name of ["a", "b"]) for (const _ of root.openDB({ name, encoding: "binary" }).getRange()) {}
const db = root.openDB({ name: "a", encoding: "binary" });
for (let i = 0; i < 50; i++) db.put("new" + i, Buffer.alloc(5000, 3));
db.committed.then(() => root.close());`;
  return spawnSync(process.execPath, ["-e", script]).status === 0;
}

const PAGE = 4096;
/** The data file of `dir` cut to `pages` pages, in a folder of its own. */
function cut(whole: Buffer, pages: number): string {
  const dir = temp();
  writeFileSync(join(dir, "data.mdb"), whole.subarray(0, pages * PAGE));
  return dir;
}

describe("lmdbFileProblem", () => {
  it("passes what lmdb can open: none yet, an empty file, a small and a large environment", async () => {
    const none = temp();
    expect(lmdbFileProblem(none)).toBeUndefined();
    writeFileSync(join(none, "data.mdb"), "");
    expect(lmdbFileProblem(none)).toBeUndefined();
    expect(lmdbFileProblem(await written(1))).toBeUndefined();
    expect(lmdbFileProblem(await written(5000))).toBeUndefined();
  });

  it("names a file cut short, one that is not lmdb's, and one whose header or pages are damaged", async () => {
    const dir = await written(5000);
    const file = join(dir, "data.mdb");
    const whole = readFileSync(file);
    const half = Math.floor(whole.length / PAGE / 2);
    expect(lmdbFileProblem(cut(whole, half))).toMatch(
      new RegExp(
        `^it is cut short: it is ${half * PAGE} bytes, and its data goes on to page \\d+ \\(at least \\d+ bytes\\)$`,
      ),
    );
    expect(lmdbFileProblem(cut(whole, 1))).toBe(
      "it is cut short or damaged: it is 4096 bytes and its second header page is missing",
    );
    writeFileSync(file, Buffer.alloc(8192));
    expect(lmdbFileProblem(dir)).toBe("it is not an lmdb data file (8192 bytes, without lmdb's header)");
    writeFileSync(file, "{}\n");
    expect(lmdbFileProblem(dir)).toBe("it is not an lmdb data file (3 bytes, without lmdb's header)");
    const second = Buffer.from(whole);
    second.fill(0, PAGE, 2 * PAGE);
    writeFileSync(file, second);
    expect(lmdbFileProblem(dir)).toBe(
      `it is cut short or damaged: it is ${whole.length} bytes and its second header page is not lmdb's`,
    );
    const pageSize = Buffer.from(whole);
    pageSize.writeUInt32LE(1000, 24 + 24);
    writeFileSync(file, pageSize);
    expect(lmdbFileProblem(dir)).toBe("its header is damaged (a page size of 1000 bytes)");
    // Whole in size, but its second half zeros, as a sparse or interrupted copy leaves it.
    const zeros = Buffer.from(whole);
    zeros.fill(0, half * PAGE);
    writeFileSync(file, zeros);
    expect(lmdbFileProblem(dir)).toMatch(
      /^it is damaged: page \d+, where its data goes on, holds something else \(zeros, or another file's bytes\)$/,
    );
  });

  // LMDB: "the file may be shorter if the freeDB lists the final pages". A file cut where only
  // free pages were is one lmdb reads and writes on; a page more and lmdb dies of SIGBUS.
  it("refuses exactly the cuts lmdb cannot read and write, even where the meta's last page is past the end", async () => {
    const dir = temp();
    const root = open({ path: dir, maxDbs: 4 });
    const dbs = ["a", "b"].map((name) => root.openDB<Buffer, string>({ name, encoding: "binary" }));
    // A store's history: 30 transactions of sets (some on overflow pages) and deletes, from a seed.
    let seed = 1;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    for (let t = 0; t < 30; t++) {
      for (let i = 0; i < 100; i++) {
        const db = dbs[Math.floor(random() * 2)];
        const key = `k${Math.floor(random() * 500)}`;
        if (random() < 0.45) db?.remove(key);
        else db?.put(key, Buffer.alloc(random() < 0.05 ? 20000 : 300, 1));
      }
      await root.committed;
    }
    await root.close();
    const whole = readFileSync(join(dir, "data.mdb"));
    const pages = whole.length / PAGE;
    const outcomes = { passedAndRead: 0, refusedAndCrashed: 0, disagreed: [] as number[] };
    for (let n = pages - 1; n >= pages - 40; n--) {
      const at = cut(whole, n);
      const passed = lmdbFileProblem(at) === undefined;
      const works = lmdbWorks(at);
      if (passed !== works) outcomes.disagreed.push(n);
      else if (passed) outcomes.passedAndRead++;
      else outcomes.refusedAndCrashed++;
    }
    expect(outcomes.disagreed).toEqual([]);
    // Both kinds happen: cuts of free pages only (past the meta's last page), and cuts of data.
    expect(outcomes.passedAndRead).toBeGreaterThan(0);
    expect(outcomes.refusedAndCrashed).toBeGreaterThan(0);
  }, 60000);

  it("sees no damage in a file two other processes are writing to", async () => {
    const dir = temp();
    const writer = `const { open } = require(${JSON.stringify(LMDB)});
const root = open({ path: ${JSON.stringify(dir)}, maxDbs: 40 });
const dbs = Array.from({ length: 20 }, (_, i) => root.openDB({ name: "s" + i, encoding: "binary" }));
(async () => {
  const end = Date.now() + 3000;
  while (Date.now() < end) {
    for (let i = 0; i < 50; i++) {
      const db = dbs[Math.floor(Math.random() * dbs.length)];
      const key = "k" + Math.floor(Math.random() * 2000);
      if (Math.random() < 0.4) db.remove(key);
      else db.put(key, Buffer.alloc(Math.random() < 0.1 ? 50000 : 1000, 7));
    }
    await root.committed;
  }
  await root.close();
})();`;
    const { spawn } = await import("node:child_process");
    const writers = [0, 1].map(() => spawn(process.execPath, ["-e", writer]));
    const ended = writers.map((w) => new Promise((resolve) => w.on("exit", resolve)));
    const problems = new Set<string>();
    let checks = 0;
    await new Promise((resolve) => setTimeout(resolve, 300));
    const until = Date.now() + 2000;
    while (Date.now() < until) {
      const problem = lmdbFileProblem(dir);
      if (problem) problems.add(problem);
      checks++;
      if (checks % 20 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    expect(await Promise.all(ended)).toEqual([0, 0]);
    expect(checks).toBeGreaterThan(20);
    expect([...problems], `after ${checks} checks`).toEqual([]);
  }, 30000);

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
