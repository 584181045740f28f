// What a function's bundle is made of: the runtime reaches DynamoDB and the Management API through
// its own clients, so no AWS SDK module (nor the Smithy code under it) is in any bundle; the SDKs
// reach the runtime in-process, so no grpc-js is either, unless the service itself uses it.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { artifactHash } from "../src/build/build.js";
import { bundleFunction } from "../src/build/bundle.js";

const chat = fileURLToPath(new URL("../../../examples/chat", import.meta.url));
const echoNitric = fileURLToPath(new URL("../../../bench/apps/echo-nitric", import.meta.url));
const out = mkdtempSync(join(tmpdir(), "nitric-like-aws-bundle-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe("a function's bundle", () => {
  it("holds our DynamoDB and Management API clients and no AWS SDK module", async () => {
    const bundle = await bundleOf(chat, "chat");
    expect(bundle.inputs.filter((i) => /[\\/]@(aws-sdk|smithy|aws-crypto)[\\/]/.test(i))).toEqual([]);
    expect(bundle.inputs.some((i) => /src[\\/]aws[\\/]dynamodb\.[jt]s$/.test(i))).toBe(true);
    expect(bundle.inputs.some((i) => /src[\\/]aws[\\/]management\.[jt]s$/.test(i))).toBe(true);
    // 940 KB while it had the SDK's clients.
    expect(bundle.bytes).toBeLessThan(600_000);
  });

  it("gives @nitric/sdk and our packages the in-process grpc-js: no grpc-js, no portfinder", async () => {
    const bundle = await bundleOf(echoNitric, "echo");
    expect(grpcCopies(bundle.inputs)).toEqual([]);
    expect(hasInProcessGrpc(bundle.inputs)).toBe(true);
    expect(bundle.inputs.filter((i) => /[\\/](portfinder|async|debug)[\\/]/.test(i))).toEqual([]);
    expect(bundle.inputs.some((i) => /runtime[\\/]portfinder\.[jt]s$/.test(i))).toBe(true);
    // 1,253 KB with both grpc-js copies and portfinder; 1,007 KB with the runtime's grpc-js alone;
    // about 810 KB without either, with the Authorizer and Rooms services (their descriptors and
    // checks). The bound tells the grpc-js bundles apart.
    expect(bundle.bytes).toBeLessThan(850_000);
  });

  it("gives the service's own grpc-js import the real grpc-js, the runtime's", async () => {
    const project = writeProject("own-grpc", {
      "services/client.ts": [
        'import * as grpc from "@grpc/grpc-js";',
        "// A client of some other gRPC service: it needs HTTP/2, the real grpc-js.",
        'export const other = new grpc.Client("127.0.0.1:1", grpc.credentials.createInsecure());',
        "",
      ].join("\n"),
    });
    // The service's dependencies: this package's, where @grpc/grpc-js is one.
    symlinkSync(fileURLToPath(new URL("../node_modules", import.meta.url)), join(project, "node_modules"), "dir");
    const bundle = await bundleOf(project, "client");
    expect(grpcCopies(bundle.inputs)).toEqual(["1.14.7"]);
    // The runtime's own calls still stay in the thread.
    expect(hasInProcessGrpc(bundle.inputs)).toBe(true);
  });

  it("knows a package by the nearest package.json with a name, past a nameless one in a build folder", async () => {
    const project = writeProject("nameless", {
      "node_modules/@nitric/fake/package.json": JSON.stringify({ name: "@nitric/fake", main: "lib/index.js" }),
      // As some packages ship a build folder: a manifest that only says how to load its files.
      "node_modules/@nitric/fake/lib/package.json": JSON.stringify({ type: "commonjs" }),
      "node_modules/@nitric/fake/lib/index.js":
        'const grpc = require("@grpc/grpc-js");\nexports.client = () => new grpc.Client("x", grpc.credentials.createInsecure());\n',
      "services/svc.ts": 'import { client } from "@nitric/fake";\nexport const c = client;\n',
    });
    const bundle = await bundleOf(project, "svc");
    // @nitric/fake's grpc-js is the in-process one: no real grpc-js in the bundle.
    expect(grpcCopies(bundle.inputs)).toEqual([]);
    expect(hasInProcessGrpc(bundle.inputs)).toBe(true);
  });
});

/** Bundles `services/<name>.ts` of `project`. */
function bundleOf(project: string, name: string) {
  const file = `services/${name}.ts`;
  return bundleFunction(project, { name, file, path: join(project, file) }, out);
}

/** A project in the temp folder named `name` (its package.json too) with these files. */
function writeProject(name: string, files: Record<string, string>): string {
  const project = join(out, name);
  for (const [path, text] of Object.entries({ "package.json": JSON.stringify({ name, private: true }), ...files })) {
    mkdirSync(dirname(join(project, path)), { recursive: true });
    writeFileSync(join(project, path), text);
  }
  return project;
}

const hasInProcessGrpc = (inputs: string[]) =>
  inputs.some((i) => /contracts[\\/](dist|src)[\\/]grpc-standin\.[jt]s$/.test(i));

/** The versions of grpc-js a bundle was made from (pnpm also names other packages' folders after their grpc-js peer). */
function grpcCopies(inputs: string[]): string[] {
  const versions = inputs
    .map((i) => /@grpc\+grpc-js@([^/\\]+)[/\\]node_modules[/\\]@grpc[/\\]grpc-js[/\\]/.exec(i)?.[1])
    .filter((v) => v !== undefined);
  return [...new Set(versions)];
}

describe("a function's artifact key", () => {
  it('is the same for two bundles that differ only in esbuild\'s wavering "use strict", and differs for any other change', () => {
    const withDirective = 'var a=h(()=>{"use strict";b=require("node:events")});exports.handler=a;';
    const without = 'var a=h(()=>{b=require("node:events")});exports.handler=a;';
    expect(artifactHash(Buffer.from(withDirective))).toBe(artifactHash(Buffer.from(without)));
    expect(artifactHash(without)).not.toBe(artifactHash(without.replace("node:events", "node:stream")));
    expect(artifactHash(without)).toMatch(/^[0-9a-f]{16}$/);
  });
});
