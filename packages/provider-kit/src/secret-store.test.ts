// run's secret store: real lmdb files in a temp folder, a second real process writing while the
// first has the store open (as `nitric-like secret put` does beside `run`).
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { MAX_SECRET_VERSIONS, SecretStore } from "./secret-store.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempStore(): string {
  const dir = mkdtempSync(join(tmpdir(), "nitric-like-secrets-"));
  dirs.push(dir);
  return join(dir, "secrets");
}

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array | undefined) => (value ? new TextDecoder().decode(value) : undefined);

describe("run's secret store", () => {
  it("reads the newest version as latest and every earlier one by its id, and nothing for what was never put", async () => {
    const store = new SecretStore(tempStore());
    const [v1, v2] = [crypto.randomUUID(), crypto.randomUUID()];
    expect(await store.access("api-key", "latest")).toBeUndefined();
    await store.put("api-key", v1, bytes("first"));
    await store.put("api-key", v2, bytes("second"));
    await store.put("other", crypto.randomUUID(), bytes("not mine"));
    const latest = await store.access("api-key", "latest");
    expect([latest?.version, text(latest?.value)]).toEqual([v2, "second"]);
    expect(text((await store.access("api-key", v1))?.value)).toBe("first");
    expect(await store.access("api-key", crypto.randomUUID())).toBeUndefined();
    // Another secret's version id is not this secret's.
    const otherVersion = [...store.list()].find((s) => s.name === "other")?.version ?? "";
    expect(await store.access("api-key", otherVersion)).toBeUndefined();
    expect([...store.list()].map((s) => s.name)).toEqual(["api-key", "other"]);
    // The emulated Secrets Manager's AWSCURRENT and AWSPREVIOUS, and how each version was put.
    expect(store.stages("api-key")).toEqual({ current: v2, previous: v1 });
    expect(store.stages("never")).toEqual({});
    await store.put("api-key", crypto.randomUUID(), bytes("third"), { text: true });
    expect(store.stages("api-key").previous).toBe(v2);
    const third = store.read("api-key", store.stages("api-key").current);
    expect([third?.text, store.read("api-key", v2)?.text, text(third?.value)]).toEqual([true, false, "third"]);
    expect(Math.abs((third?.created ?? 0) - Date.now())).toBeLessThan(5000);
    await store.close();
  });

  it("keeps every byte of a value, 0x00 and invalid UTF-8 included, across a reopen", async () => {
    const path = tempStore();
    const value = new Uint8Array(65536).map((_, i) => (i * 7919) % 256);
    const first = new SecretStore(path);
    const version = crypto.randomUUID();
    await first.put("blob", version, value);
    await first.close();
    const second = new SecretStore(path);
    const got = await second.access("blob", "latest");
    expect(got?.version).toBe(version);
    expect(Buffer.compare(Buffer.from(got?.value ?? []), Buffer.from(value))).toBe(0);
    await second.close();
  });

  it(`keeps the last ${MAX_SECRET_VERSIONS} versions of a secret, the oldest going first, and another secret's all`, async () => {
    const store = new SecretStore(tempStore());
    const ids = Array.from({ length: MAX_SECRET_VERSIONS + 3 }, () => crypto.randomUUID());
    await store.put("other", crypto.randomUUID(), bytes("untouched"));
    for (const [n, id] of ids.entries()) await store.put("api-key", id, bytes(`v${n}`));
    for (const id of ids.slice(0, 3)) expect(await store.access("api-key", id)).toBeUndefined();
    expect(text((await store.access("api-key", ids[3] as string))?.value)).toBe("v3");
    expect(store.stages("api-key")).toEqual({ current: ids.at(-1), previous: ids.at(-2) });
    expect(text((await store.access("other", "latest"))?.value)).toBe("untouched");
    await store.close();
  });

  it("prunes in the order of the puts when many come within one millisecond", async () => {
    const store = new SecretStore(tempStore());
    const ids = Array.from({ length: MAX_SECRET_VERSIONS + 5 }, () => crypto.randomUUID());
    // Not awaited one by one: the puts share milliseconds, and their ids order them at random.
    await Promise.all(ids.map((id, n) => store.put("burst", id, bytes(`v${n}`))));
    for (const id of ids.slice(0, 5)) expect(await store.access("burst", id)).toBeUndefined();
    for (const [n, id] of ids.slice(5).entries())
      expect(text((await store.access("burst", id))?.value)).toBe(`v${n + 5}`);
    expect(store.stages("burst")).toEqual({ current: ids.at(-1), previous: ids.at(-2) });
    await store.close();
  });

  it("makes its folder, or narrows one made before, to its user alone (0700)", async () => {
    const fresh = tempStore();
    await new SecretStore(fresh).close();
    expect(statSync(fresh).mode & 0o777).toBe(0o700);
    const old = tempStore();
    mkdirSync(old);
    chmodSync(old, 0o755);
    await new SecretStore(old).close();
    expect(statSync(old).mode & 0o777).toBe(0o700);
  });

  it("serves at its next read a version another process put while it was open", async () => {
    const path = tempStore();
    const store = new SecretStore(path);
    await store.put("motd", crypto.randomUUID(), bytes("before"));
    const version = crypto.randomUUID();
    const script = `
      const { SecretStore } = await import(${JSON.stringify(new URL("../dist/secret-store.js", import.meta.url).href)});
      const s = new SecretStore(${JSON.stringify(path)});
      await s.put("motd", ${JSON.stringify(version)}, new TextEncoder().encode("from elsewhere"));
      await s.close();`;
    const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    expect(child.stderr).toBe("");
    expect(child.status).toBe(0);
    const latest = await store.access("motd", "latest");
    expect([latest?.version, text(latest?.value)]).toEqual([version, "from elsewhere"]);
    await store.close();
  });
});
