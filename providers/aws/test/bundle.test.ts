// What a function's bundle is made of: the runtime reaches DynamoDB and the Management API through
// its own clients, so no AWS SDK module (nor the Smithy code under it) is in any bundle.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { bundleFunction } from "../src/build/bundle.js";

const chat = fileURLToPath(new URL("../../../examples/chat", import.meta.url));
const echoNitric = fileURLToPath(new URL("../../../bench/apps/echo-nitric", import.meta.url));
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

  it("gives a @nitric/sdk service one grpc-js (the runtime's) and no portfinder, under 1 MB", async () => {
    const bundle = await bundleFunction(
      echoNitric,
      { name: "echo", file: "services/echo.ts", path: join(echoNitric, "services", "echo.ts") },
      out,
    );
    const grpcCopies = new Set(
      bundle.inputs
        // The package's own folder (pnpm also names other packages' folders after their grpc-js peer).
        .map((i) => /@grpc\+grpc-js@([^/\\]+)[/\\]node_modules[/\\]@grpc[/\\]grpc-js[/\\]/.exec(i)?.[1])
        .filter((v) => v !== undefined),
    );
    // @nitric/sdk 1.2.2 asks for grpc-js 1.10; the runtime's 1.14 serves both.
    expect([...grpcCopies]).toEqual(["1.14.7"]);
    expect(bundle.inputs.filter((i) => /[\\/](portfinder|async|debug)[\\/]/.test(i))).toEqual([]);
    expect(bundle.inputs.some((i) => /runtime[\\/]portfinder\.[jt]s$/.test(i))).toBe(true);
    // 1,253 KB with both grpc-js copies and portfinder.
    expect(bundle.bytes).toBeLessThan(1024 * 1024);
  });
});
