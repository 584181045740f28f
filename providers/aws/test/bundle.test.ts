// What a function's bundle is made of: the runtime reaches DynamoDB and the Management API through
// its own clients, so no AWS SDK module (nor the Smithy code under it) is in any bundle; the SDKs
// reach the runtime in-process, so no grpc-js is either, unless the service itself uses it.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
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

  it("gives @nitric/sdk and our packages the in-process grpc-js: no grpc-js, no portfinder", async () => {
    const bundle = await bundleFunction(
      echoNitric,
      { name: "echo", file: "services/echo.ts", path: join(echoNitric, "services", "echo.ts") },
      out,
    );
    expect(grpcCopies(bundle.inputs)).toEqual([]);
    expect(bundle.inputs.some((i) => /runtime[\\/]in-process-grpc\.[jt]s$/.test(i))).toBe(true);
    expect(bundle.inputs.filter((i) => /[\\/](portfinder|async|debug)[\\/]/.test(i))).toEqual([]);
    expect(bundle.inputs.some((i) => /runtime[\\/]portfinder\.[jt]s$/.test(i))).toBe(true);
    // 1,253 KB with both grpc-js copies and portfinder; 1,007 KB with the runtime's grpc-js alone.
    expect(bundle.bytes).toBeLessThan(800_000);
  });

  it("gives the service's own grpc-js import the real grpc-js, the runtime's", async () => {
    const project = join(out, "own-grpc");
    mkdirSync(join(project, "services"), { recursive: true });
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "own-grpc", private: true }));
    // The service's dependencies: this package's, where @grpc/grpc-js is one.
    symlinkSync(fileURLToPath(new URL("../node_modules", import.meta.url)), join(project, "node_modules"), "dir");
    writeFileSync(
      join(project, "services", "client.ts"),
      [
        'import * as grpc from "@grpc/grpc-js";',
        "// A client of some other gRPC service: it needs HTTP/2, the real grpc-js.",
        'export const other = new grpc.Client("127.0.0.1:1", grpc.credentials.createInsecure());',
        "",
      ].join("\n"),
    );
    const bundle = await bundleFunction(
      project,
      { name: "client", file: "services/client.ts", path: join(project, "services", "client.ts") },
      out,
    );
    expect(grpcCopies(bundle.inputs)).toEqual(["1.14.7"]);
    // The runtime's own calls still stay in the thread.
    expect(bundle.inputs.some((i) => /runtime[\\/]in-process-grpc\.[jt]s$/.test(i))).toBe(true);
  });

  it("knows a package by the nearest package.json with a name, past a nameless one in a build folder", async () => {
    const project = join(out, "nameless");
    const pkg = join(project, "node_modules", "@nitric", "fake");
    mkdirSync(join(pkg, "lib"), { recursive: true });
    mkdirSync(join(project, "services"), { recursive: true });
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "nameless", private: true }));
    writeFileSync(join(pkg, "package.json"), JSON.stringify({ name: "@nitric/fake", main: "lib/index.js" }));
    // As some packages ship a build folder: a manifest that only says how to load its files.
    writeFileSync(join(pkg, "lib", "package.json"), JSON.stringify({ type: "commonjs" }));
    writeFileSync(
      join(pkg, "lib", "index.js"),
      'const grpc = require("@grpc/grpc-js");\nexports.client = () => new grpc.Client("x", grpc.credentials.createInsecure());\n',
    );
    writeFileSync(
      join(project, "services", "svc.ts"),
      'import { client } from "@nitric/fake";\nexport const c = client;\n',
    );
    const bundle = await bundleFunction(
      project,
      { name: "svc", file: "services/svc.ts", path: join(project, "services", "svc.ts") },
      out,
    );
    // @nitric/fake's grpc-js is the in-process one: no real grpc-js in the bundle.
    expect(grpcCopies(bundle.inputs)).toEqual([]);
    expect(bundle.inputs.some((i) => /runtime[\\/]in-process-grpc\.[jt]s$/.test(i))).toBe(true);
  });
});

/** The versions of grpc-js a bundle was made from (pnpm also names other packages' folders after their grpc-js peer). */
function grpcCopies(inputs: string[]): string[] {
  const versions = inputs
    .map((i) => /@grpc\+grpc-js@([^/\\]+)[/\\]node_modules[/\\]@grpc[/\\]grpc-js[/\\]/.exec(i)?.[1])
    .filter((v) => v !== undefined);
  return [...new Set(versions)];
}
