// What a function's bundle is made of: the runtime reaches DynamoDB and the Management API through
// its own clients, so no AWS SDK module (nor the Smithy code under it) is in any bundle.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { bundleFunction } from "../src/build/bundle.js";

const chat = fileURLToPath(new URL("../../../examples/chat", import.meta.url));
const out = mkdtempSync(join(tmpdir(), "nitric-like-aws-bundle-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe("a function's bundle", () => {
  it("holds our DynamoDB and Management API clients and no AWS SDK module", async () => {
    const bundle = await bundleFunction(
      chat,
      { name: "chat", file: "services/chat.ts", path: join(chat, "services", "chat.ts") },
      out,
    );
    expect(bundle.inputs.filter((i) => /[\\/]@(aws-sdk|smithy|aws-crypto)[\\/]/.test(i))).toEqual([]);
    expect(bundle.inputs.some((i) => /src[\\/]aws[\\/]dynamodb\.[jt]s$/.test(i))).toBe(true);
    expect(bundle.inputs.some((i) => /src[\\/]aws[\\/]management\.[jt]s$/.test(i))).toBe(true);
    // 940 KB while it had the SDK's clients.
    expect(bundle.bytes).toBeLessThan(600_000);
  });
});
