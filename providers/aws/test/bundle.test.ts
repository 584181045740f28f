// What a function's bundle is made of: the runtime reaches DynamoDB and the Management API through
// its own clients, so no AWS SDK module (nor the Smithy code under it) is in any bundle; the SDKs
// reach the runtime in the function's thread through the transport the generated entry gives them
// (@nitric/sdk through the grpc-js compat adapter), so no grpc-js is either, unless the service
// itself uses it. Each kind of bundle is also loaded in a child process, out of reach of any
// node_modules, to show its SDK registers its handlers through that transport. Nor is protobuf-es:
// the contracts' generated codecs and service descriptions are all a function runs with.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { afterAll, describe, expect, it } from "vitest";
import { artifactHash } from "../src/build/build.js";
import { bundleFunction, functionEntry } from "../src/build/bundle.js";

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

  it("holds no protobuf-es, for our SDK or @nitric/sdk: the contracts' generated codecs are all that runs", async () => {
    for (const [dir, service] of [
      [chat, "chat"],
      [echoNitric, "echo"],
    ] as const) {
      const bundle = await bundleOf(dir, service);
      // esbuild reads protobuf-es's modules for their types' sake and leaves them out: its binary
      // reader's own errors are the sign of it in a minified bundle.
      const code = readFileSync(bundle.file, "utf8");
      expect(code).not.toContain("premature EOF");
      expect(code).not.toContain("invalid end group tag");
      expect(code).toContain("the input ends inside a field");
    }
  });

  it("gives our SDK the runtime's transport: no grpc-js, no compat adapter, its gRPC fallback left out", async () => {
    const bundle = await bundleOf(chat, "chat");
    expect(grpcCopies(bundle.inputs)).toEqual([]);
    expect(hasCompat(bundle.inputs)).toBe(false);
    // The SDK's fallback when no runner gives it a transport: external, and only ever imported lazily.
    expect(hasGrpcTransport(bundle.inputs)).toBe(false);
    expect(externalImports(bundle.file)).toEqual(['import("@nitric-like/rpc/grpc")']);
    const entry = readFileSync(join(out, "entries", "chat.mjs"), "utf8");
    expect(entry).toMatch(/import \{ serviceLoaded, useTransport as ours \} from ".*sdk[\\/]dist[\\/]runtime\.js";/);
    expect(entry).not.toContain("grpc-js");
    expect(entry).toContain("transport: (transport) => { ours(transport); },");
  });

  it("runs our SDK's service in a function: its handlers register through the entry's transport", async () => {
    const { file } = await bundleOf(chat, "chat");
    // Out of reach of any node_modules: the gRPC fallback, were it loaded, could not be found.
    const result = await loadFunction(file, "chat", "socket");
    expect(result.stderr.slice(0, 2_000)).toBe("");
    expect(result).toMatchObject({ code: 0, stdout: "ready\n" });
  });

  it("gives @nitric/sdk's grpc-js the compat adapter: no grpc-js, no portfinder", async () => {
    const bundle = await bundleOf(echoNitric, "echo");
    expect(grpcCopies(bundle.inputs)).toEqual([]);
    expect(hasCompat(bundle.inputs)).toBe(true);
    expect(hasGrpcTransport(bundle.inputs)).toBe(false);
    expect(externalImports(bundle.file)).toEqual([]);
    expect(bundle.inputs.filter((i) => /[\\/](portfinder|async|debug)[\\/]/.test(i))).toEqual([]);
    expect(bundle.inputs.some((i) => /runtime[\\/]portfinder\.[jt]s$/.test(i))).toBe(true);
    const entry = readFileSync(join(out, "entries", "echo.mjs"), "utf8");
    expect(entry).toMatch(/import \{ useTransport as nitric \} from ".*rpc[\\/]dist[\\/]compat[\\/]grpc-js\.js";/);
    expect(entry).toContain("transport: (transport) => { nitric(transport); },");
    // @nitric/sdk's async functions are native ones again (provider-kit's native-async.ts): of its
    // 71 generators made per call, none is left (2 generators of other code remain).
    const code = readFileSync(bundle.file, "utf8");
    expect(code.match(/function\*/g)?.length ?? 0).toBeLessThanOrEqual(2);
    expect(code.match(/async function/g)?.length ?? 0).toBeGreaterThan(70);
    // 1,253 KB with both grpc-js copies and portfinder; about 200 KB more than without either with
    // the runtime's grpc-js alone; about 855 KB without either, with the Authorizer and Rooms
    // services (their descriptors and checks). The bound tells the grpc-js bundles apart.
    expect(bundle.bytes).toBeLessThan(950_000);
  });

  it("runs a @nitric/sdk service in a function: its handlers register through the compat adapter", async () => {
    const { file } = await bundleOf(echoNitric, "echo");
    const result = await loadFunction(file, "echo", "echo");
    expect(result.stderr.slice(0, 2_000)).toBe("");
    expect(result).toMatchObject({ code: 0, stdout: "ready\n" });
  });

  it("gives a service that imports both SDKs both their transports", () => {
    const entry = functionEntry(
      { name: "both", file: "services/both.ts", path: "/app/services/both.ts" },
      "/app/node_modules/@nitric-like/sdk/dist/runtime.js",
      true,
    );
    expect(entry).toContain(
      'import { serviceLoaded, useTransport as ours } from "/app/node_modules/@nitric-like/sdk/dist/runtime.js";',
    );
    expect(entry).toMatch(/import \{ useTransport as nitric \} from ".*compat[\\/]grpc-js\.js";/);
    expect(entry).toContain("transport: (transport) => { ours(transport); nitric(transport); },");
    // Our SDK is told once the import has resolved: it refuses handlers registered later.
    expect(entry).toContain('load: () => import("/app/services/both.ts").then((m) => { serviceLoaded(); return m; }),');
    // Neither SDK: nothing to give.
    expect(functionEntry({ name: "none", file: "s.ts", path: "/app/s.ts" }, undefined, false)).toContain(
      "transport: (transport) => {},",
    );
  });

  it("gives the service's own grpc-js import the real grpc-js", async () => {
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
    // No @nitric/* package asked for grpc-js: no compat adapter, and no SDK to give a transport.
    expect(hasCompat(bundle.inputs)).toBe(false);
    expect(readFileSync(join(out, "entries", "client.mjs"), "utf8")).toContain("transport: (transport) => {},");
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
    // @nitric/fake's grpc-js is the compat adapter: no real grpc-js in the bundle.
    expect(grpcCopies(bundle.inputs)).toEqual([]);
    expect(hasCompat(bundle.inputs)).toBe(true);
    expect(readFileSync(join(out, "entries", "svc.mjs"), "utf8")).toContain(
      "transport: (transport) => { nitric(transport); },",
    );
  });
});

describe("the worker scripts a function's own code starts", () => {
  it("are bundled beside it, each under a name of its own that the literal is rewritten to, and run there", async () => {
    const files: Record<string, string> = {
      "services/svc.ts": [
        'import { Worker } from "node:worker_threads";',
        'export const a = () => new Worker(new URL("./w.js", import.meta.url));',
        "export const b = () => new Worker(new URL('./more/w.ts', import.meta.url), { workerData: 2 });",
        'export const c = () => new Worker(new URL("./index.js", import.meta.url));',
        'export const d = () => new Worker(new URL("./late.js", import.meta.url));',
        // Named twice: bundled once.
        'export const e = () => new Worker(new URL("./w.js", import.meta.url));',
      ].join("\n"),
      "services/w.js": 'require("node:worker_threads").parentPort.postMessage("w");\n',
      "services/more/w.ts":
        'import { parentPort, workerData } from "node:worker_threads";\nparentPort?.postMessage((workerData as number) * 21);\n',
      "services/index.js": 'require("node:worker_threads").parentPort.postMessage("index");\n',
      // A top-level await: an ES module, as the function would be.
      "services/late.js":
        'import { parentPort } from "node:worker_threads";\nawait new Promise((r) => setTimeout(r, 1));\nparentPort.postMessage("late");\n',
    };
    const project = writeProject("workers", files);
    const bundle = await bundleOf(project, "svc");
    expect(bundle.workers.map((w) => [w.name, w.script, w.literal])).toEqual([
      ["index-2.cjs", "services/index.js", "./index.js"],
      ["late.mjs", "services/late.js", "./late.js"],
      // Two of one name: the first by path has it as it is, whatever order esbuild loads them in.
      ["w-2.cjs", "services/w.js", "./w.js"],
      ["w.cjs", "services/more/w.ts", "./more/w.ts"],
    ]);
    const code = readFileSync(bundle.file, "utf8");
    for (const name of ["./w.cjs", "./w-2.cjs", "./index-2.cjs", "./late.mjs"]) expect(code).toContain(`"${name}"`);
    for (const literal of ["./w.js", "./more/w.ts", "./index.js", "./late.js"])
      expect(code).not.toContain(`"${literal}"`);
    expect(bundle.beside.problems).toEqual([]);
    // Each has its source map beside it, naming its script as in the project.
    for (const w of bundle.workers) {
      expect(w.map).toBe(`${w.file}.map`);
      const sources = (JSON.parse(readFileSync(w.map, "utf8")) as { sources: string[] }).sources;
      expect(sources).toContain(w.script);
    }
    // Each runs in the function's folder, with workerData, and says what it computed.
    const run = (name: string, workerData?: unknown) =>
      new Promise((resolve, reject) => {
        const worker = new Worker(join(dirname(bundle.file), name), { workerData });
        worker.once("message", (m) => {
          void worker.terminate();
          resolve(m);
        });
        worker.once("error", reject);
      });
    expect(await run("w-2.cjs")).toBe("w");
    expect(await run("w.cjs", 2)).toBe(42);
    expect(await run("index-2.cjs")).toBe("index");
    expect(await run("late.mjs")).toBe("late");
    // A change to a worker's script alone is a change to the function (its artifact's key).
    writeFileSync(join(project, "services", "more", "w.ts"), files["services/more/w.ts"]?.replace("21", "2") ?? "");
    const again = await bundleOf(project, "svc");
    expect(again.sourcesDigest).not.toBe(bundle.sourcesDigest);
    expect(again.workers.find((w) => w.name === "w.cjs")?.digest).not.toBe(
      bundle.workers.find((w) => w.name === "w.cjs")?.digest,
    );
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

const hasCompat = (inputs: string[]) => inputs.some((i) => /rpc[\\/](dist|src)[\\/]compat[\\/]grpc-js\.[jt]s$/.test(i));
const hasGrpcTransport = (inputs: string[]) => inputs.some((i) => /rpc[\\/](dist|src)[\\/]grpc\.[jt]s$/.test(i));

/** The modules a bundle leaves to be loaded at run time, besides Node's own. */
function externalImports(file: string): string[] {
  const code = readFileSync(file, "utf8");
  const found = [...code.matchAll(/\b(require|import)\("([^"]+)"\)/g)]
    .filter(([, , specifier]) => !specifier?.startsWith("node:") && !/^[a-z_]+$/.test(specifier ?? ""))
    .map(([call]) => call);
  return [...new Set(found)];
}

/**
 * Loads a function's bundle in a child process, as Lambda's init phase does, with bindings for one
 * socket whose three events this function handles, and waits until the runtime is ready: the
 * service's code has loaded and registered its handlers. The runtime warns on stderr when they do
 * not come (a call that never reached it). The bundle is copied where no node_modules is found.
 */
function loadFunction(bundle: string, service: string, socket: string) {
  const dir = mkdtempSync(join(out, "function-"));
  const file = join(dir, "index.cjs");
  writeFileSync(file, readFileSync(bundle));
  const env = {
    PATH: process.env.PATH,
    AWS_REGION: "eu-west-1",
    AWS_ACCESS_KEY_ID: "x",
    AWS_SECRET_ACCESS_KEY: "x",
    NITRIC_LIKE_SERVICE: service,
    NITRIC_LIKE_WEBSOCKETS: JSON.stringify({
      [socket]: {
        apiId: "api1",
        url: "wss://api1.execute-api.eu-west-1.amazonaws.com/prod",
        endpoint: "https://api1.execute-api.eu-west-1.amazonaws.com/prod",
        events: ["connect", "disconnect", "message"],
      },
    }),
  };
  const script = `require(${JSON.stringify(file)}).handler.ready.then(() => { console.log("ready"); process.exit(0); }, (e) => { console.error(e); process.exit(1); });`;
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, ["-e", script], { cwd: dir, env });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

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
