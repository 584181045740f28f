// The service bundler on real files: our SDK and its dependencies go into the bundle, the project's
// own packages stay external, and an unchanged service reuses its bundle. A service that uses
// either SDK also gets a thread bundle, whose generated entry gives the SDKs the MessagePort of
// its worker thread.
import {
  appendFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { MessageChannel, Worker } from "node:worker_threads";
import { Resources, ResourceType } from "@nitric-like/contracts/resources";
import { WebsocketHandler } from "@nitric-like/contracts/websockets";
import { firstNonAscii } from "@nitric-like/provider-kit/ascii-comments";
import { PortServer, Router } from "@nitric-like/rpc";
import { transformSync } from "esbuild";
import { afterEach, expect, it } from "vitest";
import { bundleService, threadEntry } from "./bundle.js";
import { CHEAPER_NAME_HELPER, ESBUILD_NAME_HELPER } from "./keep-names.js";
import { importedServices } from "./prepare.js";

const SDK = fileURLToPath(new URL("../../../sdk", import.meta.url));
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function project(source: string) {
  const dir = mkdtempSync(join(tmpdir(), "nitric-like-bundle-"));
  dirs.push(dir);
  mkdirSync(join(dir, "node_modules", "@nitric-like"), { recursive: true });
  symlinkSync(SDK, join(dir, "node_modules", "@nitric-like", "sdk"), "dir");
  mkdirSync(join(dir, "node_modules", "shout"));
  writeFileSync(join(dir, "node_modules", "shout", "package.json"), '{"name":"shout","main":"index.js"}');
  writeFileSync(join(dir, "node_modules", "shout", "index.js"), "module.exports = (s) => s.toUpperCase();");
  mkdirSync(join(dir, "services"));
  const path = join(dir, "services", "api.ts");
  writeFileSync(path, source);
  return { dir, path, entry: { name: "api", file: "services/api.ts", path } };
}

const importsOf = (file: string) =>
  [...readFileSync(file, "utf8").matchAll(/^import .* from "([^"]+)";?$/gm)].map((m) => m[1]);

/** The prebuilt SDK files a bundle imports (by file URL), each with the query its URL carries. */
const prebuiltIn = (file: string) => [
  ...new Map(
    importsOf(file)
      .filter((i): i is string => i?.startsWith("file:") === true)
      .map((i) => [i, { path: fileURLToPath(new URL(i)), query: new URL(i).search }]),
  ).values(),
];

const SOURCE = `import shout from "shout";
import { websocket } from "@nitric-like/sdk";
websocket("socket").on("message", (ctx) => shout(ctx.text()));
`;

it("imports our SDK prebuilt with its dependencies and leaves the project's own packages external", async () => {
  const { dir, entry, path } = project(SOURCE);
  const bundle = await bundleService(dir, entry);
  const code = readFileSync(bundle.outfile, "utf8");
  const imports = importsOf(bundle.outfile);
  expect(imports).toContain("shout");
  expect(
    imports.some((i) => i?.startsWith("@nitric-like/") || i?.startsWith("@grpc/") || i?.startsWith("@bufbuild/")),
  ).toBe(false);
  // The SDK is one file in the cache of the node_modules it is installed in, not in the bundle.
  const cache = join(dir, "node_modules", ".cache", "nitric-like");
  const [sdk, ...more] = prebuiltIn(bundle.outfile);
  expect(more).toEqual([]);
  expect(sdk?.path.startsWith(`${cache}/sdk-process-`)).toBe(true);
  expect(sdk?.query).toBe("");
  expect(code.length).toBeLessThan(20_000);
  const sdkCode = readFileSync(sdk?.path as string, "utf8");
  expect(sdkCode).toMatch(/makeUnaryRequest\(method, serialize, deserialize/); // grpc-js's client, in the process SDK
  expect(bundle.inputs.has(path)).toBe(true);
  // The thread bundle: the same, started by an entry that gives our SDK its port.
  expect(bundle.threadable).toBe(true);
  expect(bundle.threadOutfile).toBeDefined();
  const threaded = readFileSync(bundle.threadOutfile as string, "utf8");
  expect(threaded).toMatch(/\b(\w+) = createPortTransport\(port\);\s*ours\(\1\);/);
  expect(threaded).toContain("if (!isMainThread) await start(workerData.port).loaded;");
  expect(importsOf(bundle.threadOutfile as string)).toContain("shout");
  expect(
    importsOf(bundle.threadOutfile as string).some(
      (i) => i?.startsWith("@nitric-like/") || i?.startsWith("@grpc/") || i?.startsWith("@bufbuild/"),
    ),
  ).toBe(false);
  // The entry and the service import one SDK, the thread one (no grpc-js), as this service's instance.
  const [threadSdk, ...others] = prebuiltIn(bundle.threadOutfile as string);
  expect(others).toEqual([]);
  expect(threadSdk?.path.startsWith(`${cache}/sdk-thread-`)).toBe(true);
  expect(threadSdk?.query).toBe("?service=api");
  const threadSdkCode = readFileSync(threadSdk?.path as string, "utf8");
  expect(threadSdkCode).not.toContain("makeUnaryRequest");
  // No @nitric/sdk in it, so no compat adapter.
  expect(threaded).not.toContain("this bundle's grpc-js calls its provider through nitric-like's runtime");
  // No protobuf-es in either SDK: the contracts' generated codecs and services are all the SDK runs with.
  for (const bundled of [sdkCode, threadSdkCode]) {
    // keepNames's helper, made cheaper (keep-names.ts).
    expect(bundled).toContain(CHEAPER_NAME_HELPER);
    expect(bundled).not.toContain(ESBUILD_NAME_HELPER);
    expect(bundled).not.toMatch(/@bufbuild[+\\/]protobuf/);
    expect(bundled).not.toContain("premature EOF");
    expect(bundled).toContain("function encodeWebsocketSendRequest(");
  }
});

it("runs the thread bundle of our SDK's service in a worker calling its provider over the port it is given", async () => {
  const { dir, entry } = project(SOURCE);
  const bundle = await bundleService(dir, entry);
  expect(await runThread(bundle.threadOutfile as string)).toEqual([
    "thread declare Websocket socket",
    "thread declare Policy ",
    "thread register socket 2",
  ]);
});

/**
 * Runs a thread bundle in a worker, as run does, serving its declarations and registrations over
 * its port; resolves with what it asked for once it has ended by itself (with code 0, no stderr).
 */
async function runThread(threadOutfile: string): Promise<string[]> {
  const heard: string[] = [];
  const router = new Router()
    .service(Resources, {
      declare(call, respond) {
        heard.push(`${call.peer} declare ${ResourceType[call.request.id?.type ?? 0]} ${call.request.id?.name ?? ""}`);
        respond(null, {});
      },
    })
    .service(WebsocketHandler, {
      handleEvents(call) {
        call.onMessage((message) => {
          if (message.content.case !== "registrationRequest") return;
          const { socketName, eventType } = message.content.value;
          heard.push(`${call.peer} register ${socketName} ${eventType}`);
          call.write({ id: "", content: { case: "registrationResponse", value: {} } });
          // Ending every handler stream with OK lets the service end by itself (the collect pass).
          call.end();
        });
      },
    });
  const { port1, port2 } = new MessageChannel();
  new PortServer(router, "thread").serve(port1);
  const worker = new Worker(threadOutfile, {
    // Were the port ignored, the SDK would call this address, where nothing listens, and exit 1.
    env: { ...process.env, SERVICE_ADDRESS: "127.0.0.1:1", NITRIC_ENVIRONMENT: "build" },
    workerData: { port: port2 },
    transferList: [port2],
    stderr: true,
  });
  let stderr = "";
  worker.stderr.on("data", (d: Buffer) => {
    stderr += d;
  });
  const code = await new Promise<number>((resolve) => worker.once("exit", resolve));
  port1.close();
  expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
  return heard;
}

it("writes both bundles ASCII when the service's kept comments are not, so V8 holds them one byte a character", async () => {
  const { dir, entry } = project(`import { websocket } from "@nitric-like/sdk";
const replies = {
  // what the socket answers \u2014 kindly \u{1f600}
  hello: "h\u00e9llo",
};
websocket("socket").on("message", (ctx) => replies.hello + ctx.text());
`);
  const bundle = await bundleService(dir, entry);
  for (const file of [bundle.outfile, bundle.threadOutfile as string]) {
    const code = readFileSync(file, "utf8");
    expect(code).toContain("// what the socket answers ? kindly ??");
    expect(firstNonAscii(code)).toBeUndefined();
    // The SDK it imports: ASCII too, with keepNames's helper made cheaper (keep-names.ts).
    for (const { path } of prebuiltIn(file)) {
      const sdk = readFileSync(path, "utf8");
      expect(firstNonAscii(sdk)).toBeUndefined();
      expect(sdk).toContain(CHEAPER_NAME_HELPER);
    }
    expect(prebuiltIn(file)).toHaveLength(1);
  }
});

it("generates a thread entry whose start(port) gives each SDK the service uses the port before the service loads, called by itself in a worker", () => {
  const both = threadEntry("/p/services/api.ts", "/p/node_modules/@nitric-like/sdk/dist/runtime.js", true);
  expect(both).toContain(
    'import { serviceLoaded, useTransport as ours } from "/p/node_modules/@nitric-like/sdk/dist/runtime.js";',
  );
  expect(both).toMatch(/import \{ useTransport as nitric \} from ".*grpc-js\.js";/);
  const lines = both.split("\n");
  const given = lines.indexOf("  const transport = createPortTransport(port);");
  expect(lines[given - 1]).toBe("export function start(port, service) {");
  expect(lines.slice(given + 1, given + 5)).toEqual([
    "  ours(transport);",
    "  nitric(transport);",
    // Our SDK is told once the import has resolved: it refuses handlers registered later.
    // Named by run --single-thread, where services share process.env (undefined in a worker).
    '  return { transport, loaded: import("/p/services/api.ts").then((m) => { serviceLoaded(service); return m; }) };',
    "}",
  ]);
  // Before the service loads (its import is in start()): its output bounded, the liveness check answered.
  const rest = lines.slice(given + 5).join("\n");
  expect(rest.startsWith("// In a worker: output held back for run's thread is bounded")).toBe(true);
  const bound = rest.indexOf(
    "if (!isMainThread) for (const stream of [process.stdout, process.stderr]) (function boundOutput(",
  );
  const applied = rest.indexOf(")(stream, 8388608);\n");
  const alive = rest.indexOf(
    '\nif (!isMainThread) parentPort.on("message", (m) => { if (m === "nitric-like:alive?") parentPort.postMessage("nitric-like:alive"); }).unref();',
  );
  const loads = rest.indexOf("\nif (!isMainThread) await start(workerData.port).loaded;");
  expect(bound).toBeGreaterThan(0);
  expect([bound < applied, applied < alive, alive < loads]).toEqual([true, true, true]);
  const nitricOnly = threadEntry("/p/services/api.ts", undefined, true);
  expect(nitricOnly).not.toContain("ours(");
  expect(nitricOnly).toContain("nitric(transport);");
  const oursOnly = threadEntry("/p/services/api.ts", "/p/sdk/runtime.js", false);
  expect(oursOnly).toContain("ours(transport);");
  expect(oursOnly).not.toContain("nitric(");
});

it("reuses the bundle while its files are unchanged and makes it again when one changes", async () => {
  const { dir, entry, path } = project(SOURCE);
  const first = await bundleService(dir, entry);
  const madeAt = statSync(first.outfile).mtimeMs;
  await new Promise((r) => setTimeout(r, 20));
  const again = await bundleService(dir, entry);
  expect(statSync(again.outfile).mtimeMs).toBe(madeAt);
  expect([...again.inputs].sort()).toEqual([...first.inputs].sort());

  writeFileSync(path, `${SOURCE}websocket("socket").on("connect", () => console.log("changed on purpose"));\n`);
  const changed = await bundleService(dir, entry);
  expect(readFileSync(changed.outfile, "utf8")).toContain("changed on purpose");
});

it("makes only the thread bundle again when asked for it alone, and the service's own bundle once that is asked for", async () => {
  const { dir, entry, path } = project(SOURCE);
  const first = await bundleService(dir, entry);
  expect(existsSync(first.outfile)).toBe(true);
  writeFileSync(path, SOURCE.replace("shout(ctx.text())", 'shout(ctx.text() + " saved")'));
  const saved = await bundleService(dir, entry, { threadOnly: true });
  expect(saved.threadable).toBe(true);
  expect(readFileSync(saved.threadOutfile as string, "utf8")).toContain('shout(ctx.text() + " saved")');
  expect(saved.inputs.has(path)).toBe(true);
  // The service's own bundle was made from the old file: it is gone rather than stale...
  expect(existsSync(saved.outfile)).toBe(false);
  const threadMadeAt = statSync(saved.threadOutfile as string).mtimeMs;
  await new Promise((r) => setTimeout(r, 20));
  expect(statSync((await bundleService(dir, entry, { threadOnly: true })).threadOutfile as string).mtimeMs).toBe(
    threadMadeAt,
  );
  // ...and made again, from the saved file, for a caller that wants it.
  const whole = await bundleService(dir, entry);
  expect(readFileSync(whole.outfile, "utf8")).toContain('shout(ctx.text() + " saved")');
  expect(importsOf(whole.outfile)).toContain("shout");
});

it("makes only the thread bundle of a new service on our SDK when asked for it alone, and both for one that does not use it", async () => {
  const ours = project(SOURCE);
  const bundle = await bundleService(ours.dir, ours.entry, { threadOnly: true });
  expect(bundle.threadable).toBe(true);
  expect(existsSync(bundle.outfile)).toBe(false);
  const threaded = readFileSync(bundle.threadOutfile as string, "utf8");
  expect(threaded).toMatch(/\b(\w+) = createPortTransport\(port\);\s*ours\(\1\);/);
  expect(threaded).toContain("shout(ctx.text())");
  // A service that imports neither SDK has no thread bundle: its own is made.
  const plain = project('import shout from "shout";\nconsole.log(shout("plain"));\n');
  const own = await bundleService(plain.dir, plain.entry, { threadOnly: true });
  expect(own.threadable).toBe(false);
  expect(own.threadOutfile).toBeUndefined();
  expect(readFileSync(own.outfile, "utf8")).toContain('shout("plain")');
});

it("makes both bundles when a service asked for its thread bundle alone now uses @nitric/sdk", async () => {
  const { dir, entry, path } = project(SOURCE);
  await bundleService(dir, entry);
  mkdirSync(join(dir, "node_modules", "@nitric", "sdk"), { recursive: true });
  writeFileSync(
    join(dir, "node_modules", "@nitric", "sdk", "package.json"),
    '{"name":"@nitric/sdk","main":"index.js"}',
  );
  writeFileSync(join(dir, "node_modules", "@nitric", "sdk", "index.js"), 'exports.kind = "nitric";');
  writeFileSync(path, `import { kind } from "@nitric/sdk";\n${SOURCE}console.log(kind);\n`);
  const saved = await bundleService(dir, entry, { threadOnly: true });
  // Not on our SDK alone any more: the entry gives @nitric/sdk its transport too.
  expect(saved.threadable).toBe(false);
  expect(existsSync(saved.outfile)).toBe(true);
  expect(importsOf(saved.outfile)).toContain("@nitric/sdk");
  expect(readFileSync(saved.threadOutfile as string, "utf8")).toContain('"nitric"');
  expect(readFileSync(join(dirname(saved.outfile), "api.thread-entry.mjs"), "utf8")).toContain("nitric(transport);");
});

it("makes only the thread bundle again of a service on @nitric/sdk when asked for it alone, and both once it is on our SDK alone", async () => {
  const source = `import { kind } from "@nitric/sdk";\nconsole.log(kind("first"));\n`;
  const { dir, entry, path } = project(source);
  mkdirSync(join(dir, "node_modules", "@nitric", "sdk"), { recursive: true });
  writeFileSync(
    join(dir, "node_modules", "@nitric", "sdk", "package.json"),
    '{"name":"@nitric/sdk","main":"index.js"}',
  );
  writeFileSync(join(dir, "node_modules", "@nitric", "sdk", "index.js"), "exports.kind = (s) => s;");
  const first = await bundleService(dir, entry);
  expect(first.threadable).toBe(false);
  expect(first.threadOutfile).toBeDefined();
  const built: string[] = [];
  const onBuilt = (which: string) => built.push(which);
  // run's save of a service that runs as a thread: one build, the thread bundle's.
  writeFileSync(path, source.replace('kind("first")', 'kind("saved")'));
  const saved = await bundleService(dir, entry, { threadOnly: true, onBuilt });
  expect(built).toEqual(["thread"]);
  expect(saved.threadable).toBe(false);
  expect(readFileSync(saved.threadOutfile as string, "utf8").includes('("saved")')).toBe(true);
  expect(readFileSync(join(dirname(saved.outfile), "api.thread-entry.mjs"), "utf8")).toContain("nitric(transport);");
  expect(saved.inputs.has(path)).toBe(true);
  // Its own bundle, made from the old file, is gone rather than stale; reused while unchanged...
  expect(existsSync(saved.outfile)).toBe(false);
  await bundleService(dir, entry, { threadOnly: true, onBuilt });
  expect(built).toEqual(["thread"]);
  // ...and made again, from the saved file, for a caller that wants it.
  const whole = await bundleService(dir, entry, { onBuilt });
  expect(built).toEqual(["thread", "service", "thread"]);
  expect(importsOf(whole.outfile)).toContain("@nitric/sdk");
  expect(readFileSync(whole.outfile, "utf8").includes('("saved")')).toBe(true);
  // A save that moves it to our SDK alone: the thread bundle tried says so, and both are made.
  writeFileSync(path, SOURCE);
  const ours = await bundleService(dir, entry, { threadOnly: true });
  expect(ours.threadable).toBe(true);
  expect(readFileSync(join(dirname(ours.outfile), "api.thread-entry.mjs"), "utf8")).not.toContain("nitric(transport);");
});

it("makes a bundle again after a save that came while it was being made, rather than reuse one of the older text", async () => {
  const { dir, entry, path } = project(SOURCE);
  const saved = SOURCE.replace("shout(ctx.text())", 'shout(ctx.text() + " saved")');
  // The save lands after esbuild read the file, before the build has ended.
  const first = await bundleService(dir, entry, { threadOnly: true, onBuilt: () => writeFileSync(path, saved) });
  expect(readFileSync(first.threadOutfile as string, "utf8").includes('" saved"')).toBe(false);
  const next = await bundleService(dir, entry, { threadOnly: true });
  expect(readFileSync(next.threadOutfile as string, "utf8").includes('shout(ctx.text() + " saved")')).toBe(true);
  // The same for both bundles, and for a file the build found that no build had read before.
  writeFileSync(join(dir, "services", "helper.ts"), 'export const helper = "one";\n');
  writeFileSync(path, `import { helper } from "./helper.js";\n${SOURCE}console.log(helper);\n`);
  await bundleService(dir, entry, {
    onBuilt: () => writeFileSync(join(dir, "services", "helper.ts"), 'export const helper = "two";\n'),
  });
  const whole = await bundleService(dir, entry);
  expect(readFileSync(whole.outfile, "utf8").includes('"two"')).toBe(true);
  expect(readFileSync(whole.threadOutfile as string, "utf8").includes('"two"')).toBe(true);
});

it("says to install the project's packages when our SDK, which it lists, is not installed, and to add it when it does not", async () => {
  const { dir, entry } = project(SOURCE);
  rmSync(join(dir, "node_modules"), { recursive: true, force: true });
  writeFileSync(join(dir, "package.json"), '{ "dependencies": { "@nitric-like/sdk": "0.1.0" } }\n');
  writeFileSync(join(dir, "pnpm-lock.yaml"), "lockfileVersion: '9.0'\n");
  await expect(bundleService(dir, entry)).rejects.toThrow(
    /Could not resolve "@nitric-like\/sdk"\n {2}@nitric-like\/sdk is in package\.json but not installed: install the project's packages with pnpm install$/,
  );
  writeFileSync(join(dir, "package.json"), "{}\n");
  await expect(bundleService(dir, entry)).rejects.toThrow(/\n {2}install it: pnpm add @nitric-like\/sdk$/);
});

it("reports a compile error with its place, and builds again once the file is fixed", async () => {
  const { dir, entry, path } = project(SOURCE);
  await bundleService(dir, entry);
  writeFileSync(path, "export const x = ;\n");
  await expect(bundleService(dir, entry)).rejects.toThrow(/services\/api\.ts:1:\d+/);
  writeFileSync(path, SOURCE);
  const fixed = await bundleService(dir, entry);
  expect(readFileSync(fixed.outfile, "utf8")).toContain(
    'websocket("socket").on("message", (ctx) => shout(ctx.text()))',
  );
});

/** A service on our SDK that starts the worker script `literal` names, with `extra` after it. */
const startsWorker = (literal: string, extra = "") => `import { Worker } from "node:worker_threads";
import { websocket } from "@nitric-like/sdk";
websocket("socket").on("message", () => { new Worker(new URL(${JSON.stringify(literal)}, import.meta.url)); });
${extra}`;

const WORKER = 'import { parentPort } from "node:worker_threads";\nparentPort?.postMessage(1 as number);\n';

it("removes the bundles of a worker script no longer started, once a build succeeds, and never a file it did not write", async () => {
  const { dir, entry, path } = project(startsWorker("./a.ts"));
  for (const name of ["a", "b", "c"]) writeFileSync(join(dir, "services", `${name}.ts`), WORKER);
  const workersDir = join(dir, ".nitric-like", "build", "api.workers");
  const files = () => readdirSync(workersDir).sort();
  await bundleService(dir, entry);
  expect(files()).toEqual([
    expect.stringMatching(/^a-[0-9a-f]{8}\.bundle\.mjs$/),
    expect.stringMatching(/^a-[0-9a-f]{8}\.mjs$/),
  ]);
  const mine = join(workersDir, "notes.txt");
  writeFileSync(mine, "not the bundler's\n");

  // A build that fails keeps every worker file, the new one it wrote too: the running version of
  // the service may still start the old one.
  writeFileSync(path, startsWorker("./c.ts", "export const x: number = ;"));
  await expect(bundleService(dir, entry, { threadOnly: true })).rejects.toThrow(/services\/api\.ts:4:\d+/);
  expect(files().map((f) => f.replace(/-[0-9a-f]{8}\./, "."))).toEqual([
    "a.bundle.mjs",
    "a.mjs",
    "c.bundle.mjs",
    "c.mjs",
    "notes.txt",
  ]);

  // The next build that succeeds removes what it no longer writes (a's and c's), from either path.
  writeFileSync(path, startsWorker("./b.ts"));
  await bundleService(dir, entry, { threadOnly: true });
  expect(files().map((f) => f.replace(/-[0-9a-f]{8}\./, "."))).toEqual(["b.bundle.mjs", "b.mjs", "notes.txt"]);
  writeFileSync(path, SOURCE);
  await bundleService(dir, entry);
  expect(files()).toEqual(["notes.txt"]);
  expect(readFileSync(mine, "utf8")).toBe("not the bundler's\n");

  // Emptied of its own files, the folder goes.
  rmSync(mine);
  writeFileSync(path, startsWorker("./a.ts"));
  await bundleService(dir, entry);
  expect(files()).toHaveLength(2);
  writeFileSync(path, SOURCE);
  await bundleService(dir, entry);
  expect(existsSync(workersDir)).toBe(false);
});

it("never removes a file a changed record names outside the service's .workers folder", async () => {
  const { dir, entry, path } = project(startsWorker("./a.ts"));
  writeFileSync(join(dir, "services", "a.ts"), WORKER);
  await bundleService(dir, entry);
  const recordFile = join(dir, ".nitric-like", "build", "api.inputs.json");
  const record = JSON.parse(readFileSync(recordFile, "utf8")) as { workerOutfiles: string[] };
  const precious = join(dir, "precious.txt");
  writeFileSync(precious, "keep\n");
  const workersDir = join(dir, ".nitric-like", "build", "api.workers");
  // Outside it, up through it, and its parent folder itself.
  record.workerOutfiles.push(precious, join(workersDir, "..", "..", "..", "precious.txt"), `${workersDir}/..`);
  writeFileSync(recordFile, JSON.stringify(record));
  writeFileSync(path, SOURCE);
  await bundleService(dir, entry);
  expect(readFileSync(precious, "utf8")).toBe("keep\n");
  expect(existsSync(workersDir)).toBe(false);
});

it("counts a worker script's files (a service's entry too) as inputs, watched, but not as imports of the service", async () => {
  const { dir, entry, path } = project(startsWorker("./worker.ts"));
  const workerPath = join(dir, "services", "worker.ts");
  writeFileSync(workerPath, WORKER);
  const worker = { entry: { name: "worker", file: "services/worker.ts", path: workerPath } };
  for (const threadOnly of [false, true]) {
    const bundle = await bundleService(dir, entry, { threadOnly });
    expect(bundle.inputs.has(workerPath)).toBe(true);
    expect(importedServices([{ entry, bundle }, worker], { entry, bundle })).toEqual([]);
  }
  // Imported by the service itself, it is one of its imports.
  writeFileSync(path, startsWorker("./worker.ts", 'import "./worker.js";'));
  const bundle = await bundleService(dir, entry);
  expect(importedServices([{ entry, bundle }, worker], { entry, bundle })).toEqual([
    { service: "worker", file: "services/worker.ts" },
  ]);
  // Reused from its record, the same.
  const reused = await bundleService(dir, entry);
  expect(reused.workerInputs).toEqual(bundle.workerInputs);
});

it("makes a @nitric/sdk service a second bundle for a thread: @nitric/sdk inside, its grpc-js the compat adapter", async () => {
  const { dir, entry } = project(`import { kind } from "@nitric/sdk";
import * as grpc from "@grpc/grpc-js";
console.log(kind, grpc.kind);
`);
  const pkg = (name: string, index: string) => {
    mkdirSync(join(dir, "node_modules", name), { recursive: true });
    writeFileSync(join(dir, "node_modules", name, "package.json"), JSON.stringify({ name, main: "index.js" }));
    writeFileSync(join(dir, "node_modules", name, "index.js"), index);
  };
  pkg("@nitric/sdk", 'exports.kind = require("@grpc/grpc-js").kind;');
  pkg("@grpc/grpc-js", 'exports.kind = "installed";');
  const bundle = await bundleService(dir, entry);
  // The process bundle keeps @nitric/sdk as installed (with the grpc-js it brings).
  expect(bundle.threadable).toBe(false);
  expect(importsOf(bundle.outfile)).toContain("@nitric/sdk");
  expect(readFileSync(bundle.outfile, "utf8")).not.toContain("this bundle's grpc-js calls its provider");
  // The thread bundle has @nitric/sdk in it, calling through the compat adapter given the port...
  expect(bundle.threadOutfile).toBeDefined();
  const threaded = readFileSync(bundle.threadOutfile as string, "utf8");
  expect(importsOf(bundle.threadOutfile as string)).not.toContain("@nitric/sdk");
  expect(threaded).toContain("this bundle's grpc-js calls its provider through nitric-like's runtime");
  expect(threaded).toMatch(/\b(\w+) = createPortTransport\(port\);\s*useTransport\(\1\);/);
  expect(threaded).toContain("if (!isMainThread) await start(workerData.port).loaded;");
  expect(threaded).not.toContain('"installed"');
  // ...while the service's own import of grpc-js stays the project's.
  expect(importsOf(bundle.threadOutfile as string)).toContain("@grpc/grpc-js");
  // Reused while unchanged, the thread bundle with it.
  const again = await bundleService(dir, entry);
  expect(again.threadOutfile).toBe(bundle.threadOutfile);
});

it("keeps @nitric/sdk's code with native async functions in the project, made again when the package changes", async () => {
  const { dir, entry, path } = project('import { kind } from "@nitric/sdk";\nconsole.log(await kind());\n');
  // A package compiled as @nitric/sdk is: its async functions lowered to generators (esbuild's __async).
  const lowered = (value: string) =>
    transformSync(`exports.kind = async () => { await null; return ${JSON.stringify(value)}; };`, {
      target: "es2016",
      format: "cjs",
    }).code;
  const sdk = join(dir, "node_modules", "@nitric", "sdk");
  mkdirSync(sdk, { recursive: true });
  writeFileSync(join(sdk, "package.json"), '{"name":"@nitric/sdk","main":"index.js"}');
  writeFileSync(join(sdk, "index.js"), lowered("first"));
  const threadCode = async () => readFileSync((await bundleService(dir, entry)).threadOutfile as string, "utf8");
  const first = await threadCode();
  expect(first).toContain('return "first"');
  expect(first).not.toContain("__async(");
  const cacheDir = join(dir, ".nitric-like", "native-async");
  const [cached] = readdirSync(cacheDir);
  const cacheFile = join(cacheDir, cached as string);
  // The cache is what the next build reads: a mark put in it shows up in the bundle.
  const kept = readFileSync(cacheFile, "utf8");
  writeFileSync(cacheFile, kept.replace('return "first"', 'return "from the cache"'));
  writeFileSync(path, `${readFileSync(path, "utf8")}// saved\n`);
  expect(await threadCode()).toContain('return "from the cache"');
  // A new version of the package is transformed anew.
  writeFileSync(join(sdk, "index.js"), lowered("second"));
  const second = await threadCode();
  expect(second).toContain('return "second"');
  expect(second).not.toContain("from the cache");
  expect(second).not.toContain("__async(");
});

it("puts no grpc-js in the thread bundle of a service on the published @nitric/sdk, only the compat adapter", async () => {
  const { dir, entry } = project(`import { websocket } from "@nitric/sdk";
websocket("socket").on("message", (ctx) => ctx);
`);
  // The published package as the conformance suite installs it (with its own grpc-js beside it).
  const conformance = fileURLToPath(new URL("../../../conformance/package.json", import.meta.url));
  const published = dirname(createRequire(conformance).resolve("@nitric/sdk/package.json"));
  mkdirSync(join(dir, "node_modules", "@nitric"), { recursive: true });
  symlinkSync(published, join(dir, "node_modules", "@nitric", "sdk"), "dir");
  const bundle = await bundleService(dir, entry);
  expect(importsOf(bundle.outfile)).toContain("@nitric/sdk");
  const threaded = readFileSync(bundle.threadOutfile as string, "utf8");
  expect(importsOf(bundle.threadOutfile as string).filter((i) => !i?.startsWith("node:"))).toEqual([]);
  expect([...bundle.inputs].filter((path) => path.includes("/@grpc/grpc-js/"))).toEqual([]);
  expect(threaded).not.toMatch(/makeUnaryRequest\(method, serialize, deserialize/);
  expect(threaded).toContain("this bundle's grpc-js calls its provider through nitric-like's runtime");
  expect(threaded).toMatch(/\b(\w+) = createPortTransport\(port\);\s*useTransport\(\1\);/);
  expect(threaded).toContain("if (!isMainThread) await start(workerData.port).loaded;");
  // Its async functions are native ones again (provider-kit's native-async.ts): no generator made per call, so
  // esbuild's helper, and its closures, are left out of the bundle as unused.
  expect(threaded).toMatch(/\(async function\(\) \{\n[\s\S]*?\}\)\.apply\(this, null\)/);
  expect(threaded).not.toMatch(/__async\(/);
  expect(threaded).not.toContain("step(generator.throw(value));");
});

/** The SDK's package as an installed copy of its own in `dir`'s node_modules (its dependencies linked), to change. */
function installSdkCopy(dir: string): string {
  const root = join(dir, "node_modules", "@nitric-like", "sdk");
  rmSync(root, { force: true });
  cpSync(join(SDK, "package.json"), join(root, "package.json"));
  cpSync(join(SDK, "dist"), join(root, "dist"), { recursive: true });
  for (const name of readdirSync(join(SDK, "node_modules"))) {
    const names = name.startsWith("@")
      ? readdirSync(join(SDK, "node_modules", name)).map((n) => `${name}/${n}`)
      : [name];
    for (const dep of names) {
      const to = join(dir, "node_modules", dep);
      if (existsSync(to)) continue;
      mkdirSync(dirname(to), { recursive: true });
      symlinkSync(realpathSync(join(SDK, "node_modules", dep)), to, "dir");
    }
  }
  return root;
}

/** A second project whose node_modules is `first`'s, as the test harness's copies share one. */
function copyOf(first: string, source: string) {
  const dir = mkdtempSync(join(tmpdir(), "nitric-like-bundle-"));
  dirs.push(dir);
  symlinkSync(join(first, "node_modules"), join(dir, "node_modules"), "dir");
  mkdirSync(join(dir, "services"));
  const path = join(dir, "services", "api.ts");
  writeFileSync(path, source);
  return { dir, path, entry: { name: "api", file: "services/api.ts", path } };
}

/** The files of a cache folder, each with its mtime, to tell whether anything was made there. */
const cacheFiles = (cache: string) =>
  readdirSync(cache, { recursive: true, encoding: "utf8" })
    .sort()
    .map((f) => `${f} ${statSync(join(cache, f)).mtimeMs}`);

it("bundles our SDK once for every project sharing a node_modules, and both projects' services run on it", async () => {
  const first = project(SOURCE);
  const one = await bundleService(first.dir, first.entry);
  const cache = join(first.dir, "node_modules", ".cache", "nitric-like");
  const made = cacheFiles(cache);
  expect(made.filter((f) => f.split(" ")[0]?.endsWith(".json")).length).toBe(2); // the thread and process SDKs' indexes
  // A copy of the project, cold (no bundle of its own yet), on the same node_modules.
  const second = copyOf(first.dir, SOURCE.replace('"socket"', '"other"'));
  const built: string[] = [];
  const two = await bundleService(second.dir, second.entry, { onBuilt: (which) => built.push(which) });
  expect(built).toEqual(["service", "thread"]);
  expect(cacheFiles(cache)).toEqual(made);
  for (const bundle of [one, two]) {
    const threadOutfile = bundle.threadOutfile as string;
    expect(statSync(threadOutfile).size).toBeLessThan(50_000);
    expect(statSync(bundle.outfile).size).toBeLessThan(50_000);
    expect(prebuiltIn(threadOutfile).map((p) => p.path)).toEqual(
      prebuiltIn(one.threadOutfile as string).map((p) => p.path),
    );
    expect(prebuiltIn(bundle.outfile).map((p) => p.path)).toEqual(prebuiltIn(one.outfile).map((p) => p.path));
  }
  expect(await runThread(one.threadOutfile as string)).toContain("thread register socket 2");
  expect(await runThread(two.threadOutfile as string)).toContain("thread register other 2");
});

it("bundles our SDK again once a file it was made from changes, and the services on it with it", async () => {
  const { dir, entry } = project(SOURCE);
  const root = installSdkCopy(dir);
  const first = await bundleService(dir, entry);
  const [before] = prebuiltIn(first.threadOutfile as string);
  expect(readFileSync(before?.path as string, "utf8")).not.toContain("changed SDK");
  // The installed SDK changes (an upgrade, a rebuild): its runtime now says so as it loads.
  appendFileSync(join(root, "dist", "runtime.js"), '\nconsole.log("changed SDK");\n');
  const built: string[] = [];
  const again = await bundleService(dir, entry, { onBuilt: (which) => built.push(which) });
  expect(built).toEqual(["service", "thread"]);
  const [after] = prebuiltIn(again.threadOutfile as string);
  expect(after?.path).not.toBe(before?.path);
  expect(readFileSync(after?.path as string, "utf8")).toContain("changed SDK");
  // A project that was not bundled since (another copy) gets the new one as well.
  const other = copyOf(dir, SOURCE);
  expect(prebuiltIn((await bundleService(other.dir, other.entry)).outfile)[0]?.path).toBe(
    prebuiltIn(again.outfile)[0]?.path,
  );
  // Unchanged since, it is reused.
  const reused = await bundleService(dir, entry, { onBuilt: (which) => built.push(which) });
  expect(built).toEqual(["service", "thread"]);
  expect(reused.threadOutfile).toBe(again.threadOutfile);
});

it("keeps our SDK bundled in the project's state folder when node_modules cannot take the cache, and runs on it", async () => {
  const { dir, entry } = project(SOURCE);
  // A file where the cache folder would go: nothing can be made there (as in a read-only node_modules).
  writeFileSync(join(dir, "node_modules", ".cache"), "not a folder\n");
  const bundle = await bundleService(dir, entry);
  const [sdk] = prebuiltIn(bundle.threadOutfile as string);
  expect(sdk?.path.startsWith(join(dir, ".nitric-like", "build", "sdk", "sdk-thread-"))).toBe(true);
  expect(await runThread(bundle.threadOutfile as string)).toContain("thread register socket 2");
});

it("never reads a prebuilt SDK a killed process left half made, nor one its index names that is gone", async () => {
  const first = project(SOURCE);
  await bundleService(first.dir, first.entry);
  const cache = join(first.dir, "node_modules", ".cache", "nitric-like");
  const index = readdirSync(cache).find((f) => f.startsWith("sdk-thread-") && f.endsWith(".json")) as string;
  const folder = (JSON.parse(readFileSync(join(cache, index), "utf8")) as { folder: string }).folder;
  // As a process killed while making it leaves things: a temp folder with half a file, no index.
  rmSync(join(cache, folder), { recursive: true });
  rmSync(join(cache, index));
  const half = join(cache, `${index.replace(/\.json$/, "")}.tmp-killed`);
  mkdirSync(half);
  writeFileSync(join(half, "sdk.mjs"), 'throw new Error("half made");\nexport function useTran');
  const second = copyOf(first.dir, SOURCE);
  const bundle = await bundleService(second.dir, second.entry);
  const [sdk] = prebuiltIn(bundle.threadOutfile as string);
  expect(sdk?.path).toBe(join(cache, folder, "sdk.mjs"));
  expect(await runThread(bundle.threadOutfile as string)).toContain("thread register socket 2");
  // An index naming a folder that is gone (removed by hand): made again.
  rmSync(join(cache, folder), { recursive: true });
  const third = copyOf(first.dir, SOURCE);
  const remade = await bundleService(third.dir, third.entry);
  expect(existsSync(prebuiltIn(remade.threadOutfile as string)[0]?.path as string)).toBe(true);
  expect(await runThread(remade.threadOutfile as string)).toContain("thread register socket 2");
});

it("keeps the current prebuilt SDK and the two made before it, and removes older ones and temp folders a dead process left", async () => {
  const { dir, entry } = project(SOURCE);
  const root = installSdkCopy(dir);
  const cache = join(dir, "node_modules", ".cache", "nitric-like");
  const threadCopies = () =>
    readdirSync(cache)
      .filter((f) => /^sdk-thread-\w+-\w+$/.test(f))
      .sort();
  const made: string[] = [];
  for (let n = 0; n < 5; n++) {
    // Each change of the installed SDK (a rebuild, an upgrade) makes a copy of its own.
    appendFileSync(join(root, "dist", "runtime.js"), `\nexport const change${n} = ${n};\n`);
    const bundle = await bundleService(dir, entry);
    made.push(basename(dirname(prebuiltIn(bundle.threadOutfile as string)[0]?.path as string)));
    expect(await runThread(bundle.threadOutfile as string)).toContain("thread register socket 2");
  }
  expect(new Set(made).size).toBe(5);
  expect(threadCopies()).toEqual(made.slice(-3).sort());
  // A temp folder of a process that died making a copy an hour ago goes; one being made now stays.
  const base = (made.at(-1) as string).replace(/-\w+$/, "");
  const dead = join(cache, `${base}.tmp-dead`);
  const young = join(cache, `${base}.tmp-young`);
  for (const folder of [dead, young]) mkdirSync(folder);
  const hoursAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
  utimesSync(dead, hoursAgo, hoursAgo);
  appendFileSync(join(root, "dist", "runtime.js"), "\nexport const change5 = 5;\n");
  await bundleService(dir, entry);
  expect(existsSync(dead)).toBe(false);
  expect(existsSync(young)).toBe(true);
  expect(threadCopies()).toHaveLength(3);
});

it("bundles the whole SDK into a service that imports a subpath that is not prebuilt, holding one instance of it", async () => {
  const { dir, entry } = project(`import { websocket } from "@nitric-like/sdk";
import { ws } from "@nitric-like/sdk/ampt";
websocket("socket").on("message", (ctx) => ctx);
ws.on("message", () => {});
`);
  const bundle = await bundleService(dir, entry);
  for (const file of [bundle.outfile, bundle.threadOutfile as string]) {
    expect(prebuiltIn(file)).toEqual([]);
    expect(readFileSync(file, "utf8")).toContain("function encodeWebsocketSendRequest(");
  }
  const heard = await runThread(bundle.threadOutfile as string);
  expect(heard).toContain("thread register socket 2");
  expect(heard).toContain("thread declare Websocket ws");
});

it("prebuilds entry points of our SDK whose export names do not overlap, so one file can hold them", async () => {
  const sdk = createRequire(join(SDK, "package.json"));
  const main = Object.keys(await import(sdk.resolve("@nitric-like/sdk")));
  const runtime = Object.keys(await import(sdk.resolve("@nitric-like/sdk/runtime")));
  expect(main.length).toBeGreaterThan(5);
  expect(runtime).toContain("useTransport");
  expect(main.filter((name) => runtime.includes(name))).toEqual([]);
});
