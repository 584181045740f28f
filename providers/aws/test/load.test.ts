// What loading the provider (`--provider aws`, every deploy command's start) loads: the clients
// up and down use at every call, not those a few commands or stacks need (each AWS SDK client
// costs its compile at every start).
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const INDEX = fileURLToPath(new URL("../dist/index.js", import.meta.url));

/** The packages whose CommonJS files a fresh Node process holds once it has imported `script`'s modules. */
function packagesLoaded(script: string): string[] {
  const out = execFileSync(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      `${script}
import { createRequire } from "node:module";
const names = Object.keys(createRequire(import.meta.url).cache).map((f) => {
  const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(f.split("node_modules/.pnpm/").at(-1) ?? f);
  return m ? m[1] : "";
});
process.stdout.write(JSON.stringify([...new Set(names)].filter(Boolean)));`,
    ],
    { encoding: "utf8" },
  );
  return JSON.parse(out) as string[];
}

describe("loading the AWS provider", () => {
  it("loads CloudFormation's and S3's clients, and neither the emulator nor the clients of DynamoDB, ACM, Route 53 and Secrets Manager", () => {
    const loaded = packagesLoaded(`await import(${JSON.stringify(INDEX)});`);
    expect(loaded).toEqual(expect.arrayContaining(["@aws-sdk/client-cloudformation", "@aws-sdk/client-s3"]));
    for (const lazy of [
      "@aws-sdk/client-dynamodb",
      "@aws-sdk/client-acm",
      "@aws-sdk/client-route-53",
      "@aws-sdk/client-secrets-manager",
      "@aws-sdk/client-cloudwatch-logs",
      "dynalite",
    ])
      expect(loaded).not.toContain(lazy);
  });

  it("loads Secrets Manager's client when secret put runs", () => {
    const loaded = packagesLoaded(`const { provider } = await import(${JSON.stringify(INDEX)});
const logger = { info() {}, warn() {}, error() {}, debug() {} };
await provider.putSecret({ stack: "s", secret: "s", value: new Uint8Array(), logger }).catch(() => {});`);
    expect(loaded).toContain("@aws-sdk/client-secrets-manager");
  });
});
