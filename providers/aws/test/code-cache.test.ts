// The function's code cache (build/code-cache.ts): made at build time by running the function's
// init once, used by its loader when V8 accepts it, and harmless when V8 does not.
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { Spec } from "@nitric-like/spec";
import { afterAll, describe, expect, it } from "vitest";
import { bundleFunction } from "../src/build/bundle.js";
import { LOADER_SOURCE, makeCodeCache } from "../src/build/code-cache.js";

const run = promisify(execFile);
const chat = fileURLToPath(new URL("../../../examples/chat", import.meta.url));
const out = mkdtempSync(join(tmpdir(), "nitric-like-aws-cache-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

const spec: Spec = {
  name: "chat",
  services: [],
  resources: [
    { kind: "websocket", name: "socket", handlers: { connect: "chat", disconnect: "chat", message: "chat" } },
    { kind: "kv", name: "names" },
  ],
  policies: [],
} as unknown as Spec;

/** Starts the function in a fresh process as Lambda would (placeholder bindings) and awaits its init. */
async function coldStart(index: string): Promise<{ stderr: string }> {
  const env = {
    PATH: process.env.PATH,
    AWS_REGION: "us-east-1",
    AWS_ACCESS_KEY_ID: "test",
    AWS_SECRET_ACCESS_KEY: "test",
    NITRIC_LIKE_SERVICE: "chat",
    NITRIC_LIKE_WEBSOCKETS: JSON.stringify({
      socket: {
        apiId: "t",
        url: "wss://t.invalid/live",
        endpoint: "http://127.0.0.1:9/live",
        events: ["connect", "disconnect", "message"],
      },
    }),
  };
  const script = `require(${JSON.stringify(index)}).handler.ready.then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });`;
  const { stderr } = await run(process.execPath, ["-e", script], { env, encoding: "utf8", timeout: 20_000 });
  return { stderr };
}

describe("a function's code cache", () => {
  it("is made at build time from the function's own init, and its loader starts the function with it", async () => {
    const bundle = await bundleFunction(
      chat,
      { name: "chat", file: "services/chat.ts", path: join(chat, "services", "chat.ts") },
      out,
    );
    const dir = dirname(bundle.file);
    writeFileSync(join(dir, "index.cjs"), LOADER_SOURCE);
    const made = await makeCodeCache(dir, spec, "chat");
    expect(made).toMatchObject({ bytes: expect.any(Number) });
    expect(statSync(join(dir, "service.cache")).size).toBeGreaterThan(10_000);
    const { stderr } = await coldStart(join(dir, "index.cjs"));
    // The loader warns only when V8 rejects the cache.
    expect(stderr).not.toMatch(/service\.cache was made by another Node version/);

    // A cache V8 does not accept (another Node's, or damaged) is set aside: the function starts anyway.
    writeFileSync(join(dir, "service.cache"), Buffer.alloc(4096, 7));
    const rejected = await coldStart(join(dir, "index.cjs"));
    expect(rejected.stderr).toMatch(/service\.cache was made by another Node version than v\d+/);

    // And with no cache at all it starts without a word.
    rmSync(join(dir, "service.cache"));
    expect(existsSync(join(dir, "service.cache"))).toBe(false);
    expect((await coldStart(join(dir, "index.cjs"))).stderr).not.toMatch(/service\.cache/);
  }, 60_000);
});
