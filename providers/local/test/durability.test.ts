// kill -9 of the provider during a stream of kv writes: every write it acknowledged is in the lmdb
// files afterwards. The provider runs in a child process (real gRPC, real lmdb) that reports each
// acknowledged write on stdout; the test SIGKILLs it mid-stream and reopens its files.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { KvStores } from "../src/kv/store.js";

const WRITER = fileURLToPath(new URL("./fixtures/kv-writer.mjs", import.meta.url));
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("kv durability under kill -9", () => {
  it("keeps every write the provider acknowledged before it was killed, over three kills", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nitric-like-kill-"));
    dirs.push(dir);
    const acked: string[] = [];
    // Each round restarts on the same files and is killed at a different point of its stream.
    for (const [round, killAfter] of [200, 350, 500].entries())
      acked.push(...(await writeUntilKilled(dir, `r${round}-`, killAfter)));
    const stores = new KvStores(join(dir, "kv"));
    try {
      const missing = acked.filter((key) => stores.get("acked", key)?.key !== key);
      expect(missing).toEqual([]);
      expect(acked.length).toBeGreaterThanOrEqual(1050);
    } finally {
      await stores.close();
    }
  }, 30000);
});

/** Runs the writer on `dir`, SIGKILLs it once `killAfter` writes are acknowledged, and returns every acknowledged key. */
async function writeUntilKilled(dir: string, prefix: string, killAfter: number): Promise<string[]> {
  const child = spawn(process.execPath, [WRITER, dir, prefix], { stdio: ["ignore", "pipe", "pipe"] });
  const outputClosed = new Promise((r) => child.stdout.once("close", r));
  const acked: string[] = [];
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  let pending = "";
  const enough = new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (d: Buffer) => {
      pending += d.toString();
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) if (line.startsWith("acked ")) acked.push(line.slice(6));
      // Killed mid-stream, with 20 writes in flight.
      if (acked.length >= killAfter) resolve();
    });
    child.once("exit", (code) => reject(new Error(`the writer exited (${code}) before it was killed:\n${stderr}`)));
  });
  await enough;
  const exited = new Promise((r) => child.once("exit", (_code, signal) => r(signal)));
  child.kill("SIGKILL");
  expect(await exited).toBe("SIGKILL");
  // Lines written before the kill may still be in the pipe: they were acknowledged too.
  await outputClosed;
  return acked;
}
