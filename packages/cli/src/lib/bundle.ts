/**
 * TypeScript services run without a build step: each entry file is bundled by esbuild into
 * `.nitric-like/build/<service>.mjs` inside the project (so bare imports resolve from the project's
 * node_modules), with an inline source map for readable stacks.
 *
 * The project's own npm packages stay external (they load from node_modules as they would in
 * production, native addons included). Our SDK and everything it imports (grpc-js, protobuf-es)
 * load as one file, not as the some 200 separate ES modules they are installed as: that takes a
 * service about 250 ms to start, one file a fraction of that, and every service starts twice per
 * `run` (the collect pass, then for real). That file is bundled once per installed SDK and shared
 * by every service and project using it (sdk-prebuild.ts says why); a service's bundles import it.
 * A service that also uses @nitric/sdk gets a thread bundle holding both SDKs, as before.
 */
import { isAscii } from "node:buffer";
import { createHash, randomBytes } from "node:crypto";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { building, compileErrorMessage, packageOwner } from "@nitric-like/provider-kit";
import { asciiComments } from "@nitric-like/provider-kit/ascii-comments";
import { makeStdioBlocking } from "@nitric-like/provider-kit/blocking-stdio";
import { nativeAsync } from "@nitric-like/provider-kit/native-async";
import { ALIVE_FD_VAR, answerAliveChecks, boundOutput, LOAD_SAID_SYMBOL, type ServiceEntry } from "@nitric-like/spec";
import type { BuildOptions, Plugin, PluginBuild } from "esbuild";
import { missingPackageFix } from "./failure.js";
import { cheaperKeepNames } from "./keep-names.js";
import { UserError } from "./log.js";
import { ownPlace } from "./own-place.js";
import {
  installedSdk,
  type PrebuiltSdk,
  prebuiltSdk,
  type SdkVariant,
  sdkCacheDirs,
  sdkRuntimeIn,
  stamp,
} from "./sdk-prebuild.js";
import { type WorkerBundle, WorkerBundles } from "./worker-bundles.js";

/** A bundled service. */
export interface Bundle {
  /** Absolute path of the bundle. */
  outfile: string;
  /** Absolute paths of the project files it was built from (watching these is enough). */
  inputs: Set<string>;
  /** True when the service uses our SDK and not @nitric/sdk (it declares only what providers serve). */
  threadable: boolean;
  /**
   * For a service that uses either SDK: the bundle that runs it as a worker thread of `run`. Its
   * generated entry (threadEntry) gives the SDKs a MessagePort transport before the service's code
   * loads; @nitric/sdk's grpc-js is our compat adapter there. The first bundle (for a process: the
   * collect pass, --processes) leaves the SDKs on gRPC, and @nitric/sdk's grpc-js as installed.
   */
  threadOutfile?: string;
  /**
   * Those of `inputs` only the bundles of the worker scripts its code starts were made of (not
   * the service's own bundles): they run in a worker's thread, never in the service's module.
   */
  workerInputs?: Set<string>;
}

/** The folder where nitric-like keeps its local state inside a project. */
export function stateDir(projectDir: string): string {
  return join(projectDir, ".nitric-like");
}

/** The packages bundled into a service rather than loaded from node_modules: our SDK and its parts. */
const BUNDLED_PACKAGES = new Set([
  "@nitric-like/sdk",
  "@nitric-like/contracts",
  "@nitric-like/rpc",
  "@nitric-like/spec",
]);

function packageName(specifier: string): string {
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : (parts[0] ?? specifier);
}

/** Our SDK and its parts, bundled into every service. */
const ours = (name: string | undefined) => name !== undefined && BUNDLED_PACKAGES.has(name);

/** Packages whose grpc-js is the stand-in in a thread bundle: @nitric/sdk and the @nitric/* it brings. */
const isNitricPackage = (name: string | undefined) => name?.startsWith("@nitric/") === true;

/**
 * Other platforms' SDKs whose part nitric-like plays with a module of its own (or, for
 * Architect's, with websocket()), and what to import instead. Their own code runs only on their platform: not installed, it would fail as a package to
 * install (which would not help), and installed, its handlers would never be called.
 */
const PLAYED_BY_OUR_SDK: ReadonlyMap<string, string> = new Map([
  [
    "@ampt/sdk",
    "nitric-like does not run @ampt/sdk, Ampt's own SDK (it needs Ampt's runtime), but has its ws interface: import { ws } from \"@nitric-like/sdk/ampt\" (README: Code written for Ampt)",
  ],
  [
    "@ampt/data",
    "nitric-like does not run @ampt/data, Ampt's own data store, but has the part of it Ampt's WebSocket page uses (get, set, remove): import { data } from \"@nitric-like/sdk/ampt/data\" (README: Code written for Ampt)",
  ],
  [
    "@architect/functions",
    'nitric-like does not run @architect/functions, Architect\'s helpers for its Lambda functions (they call the API Gateway Architect deployed); use a socket instead: import { websocket } from "@nitric-like/sdk", and arc.ws.send({ id, payload }) is websocket("ws").send(id, payload), arc.ws.close({ id }) is websocket("ws").close(id) (README: Code written for Architect)',
  ],
]);

/**
 * A bare import from the project's code stays external unless `bundled` names its package; what
 * bundled packages import (grpc-js, protobuf-es, ...) is bundled with them. esbuild never reads an
 * external package, so an importer inside node_modules is always a bundled one. An import of a
 * package PLAYED_BY_OUR_SDK fails the build at the import, saying what to import instead.
 */
function keepProjectPackagesExternal(build: PluginBuild, bundled: (name: string | undefined) => boolean): void {
  build.onResolve({ filter: /^[^./]/ }, (args) => {
    if (args.kind === "entry-point" || bundled(packageName(args.path))) return undefined;
    const fromBundled = args.importer.includes("/node_modules/") || bundled(packageOwner(dirname(args.importer)));
    if (fromBundled) return undefined;
    const instead = PLAYED_BY_OUR_SDK.get(packageName(args.path));
    return instead === undefined ? { path: args.path, external: true } : { errors: [{ text: instead }] };
  });
}

/** A service's bundle: our SDK inside, the project's own packages (and @nitric/sdk) as installed. */
const externalProjectPackages: Plugin = {
  name: "nitric-like-external-packages",
  setup: (build) => keepProjectPackagesExternal(build, ours),
};

const cliRequire = createRequire(import.meta.url);
/** The @nitric/sdk compat adapter: @nitric/* packages' grpc-js in a thread bundle. */
const COMPAT = cliRequire.resolve("@nitric-like/rpc/grpc-js-compat");
/** Our RPC layer, for a thread entry of a service that uses @nitric/sdk alone. */
const RPC = cliRequire.resolve("@nitric-like/rpc");

/**
 * What our SDK's gRPC fallback (used only when no runner gave it a transport) is in a thread
 * bundle, whose entry always gives it one: leaving grpc-js out makes the bundle a third of the
 * size, and a thread starts some 10 ms sooner (bench/startup.mjs starts two per run).
 */
const NO_GRPC_IN_THREAD = `export function createGrpcTransport() {
  throw new Error("nitric-like: a service thread has no gRPC transport; its entry gives the SDK a MessagePort");
}
`;

/** Our SDK's import of its gRPC fallback gets NO_GRPC_IN_THREAD. */
function noGrpcInThread(build: PluginBuild): void {
  build.onResolve({ filter: /^@nitric-like\/rpc\/grpc$/ }, (args) =>
    packageOwner(dirname(args.importer)) === "@nitric-like/sdk"
      ? { path: "grpc-fallback", namespace: "nitric-like-thread" }
      : undefined,
  );
  build.onLoad({ filter: /.*/, namespace: "nitric-like-thread" }, () => ({ contents: NO_GRPC_IN_THREAD }));
}

/** The first line of every bundle: ESM has no require(); bundled CommonJS helpers and user code may still call it. */
const REQUIRE_BANNER =
  'import { createRequire as __nitricLikeRequire } from "node:module"; const require = __nitricLikeRequire(import.meta.url);';

/**
 * Our SDK for `variant`, bundled as a service's bundle would carry it (the same target, keepNames,
 * ASCII comments and inline source map without the sources): see sdk-prebuild.ts.
 */
function makeSdk(build: typeof import("esbuild").build, variant: SdkVariant) {
  return async (entry: string, outfile: string): Promise<string[]> => {
    const dir = dirname(entry);
    const result = await buildAscii(build, {
      entryPoints: [entry],
      outfile,
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      plugins: variant === "thread" ? [{ name: "nitric-like-sdk-thread", setup: noGrpcInThread }] : [],
      external: ["@grpc/proto-loader"],
      keepNames: true,
      sourcemap: "inline",
      sourcesContent: false,
      logLevel: "silent",
      absWorkingDir: dir,
      banner: { js: REQUIRE_BANNER },
    });
    return Object.keys(result.metafile.inputs)
      .filter((f) => !f.startsWith("nitric-like-thread:"))
      .map((f) => resolve(dir, f))
      .filter((path) => path !== entry);
  };
}

/** The SDKs a build's bundle imports prebuilt (sharedSdk): which, and what they were made from. */
interface SdkUse {
  /** The SDK folders the project's own code imports. */
  roots: Set<string>;
  /** Every prebuilt SDK the bundle imports. */
  prebuilt: Set<PrebuiltSdk>;
  /**
   * The project's code imports a subpath of the SDK that is not prebuilt (`/ampt`, ...): the
   * bundle is made again with the whole SDK in it, which then holds one instance of it.
   */
  whole: boolean;
}

const sdkUse = (): SdkUse => ({ roots: new Set(), prebuilt: new Set(), whole: false });

/** sharedSdk's own resolve of the SDK, which it leaves to esbuild. */
const RESOLVING = Symbol("nitric-like-shared-sdk");

/**
 * Imports of our SDK (`@nitric-like/sdk`) from the project's own code, and `runtime` (the thread
 * entry's import of its runtime, by path), made imports of the SDK prebuilt for `variant`
 * (sdk-prebuild.ts), by its file URL, kept by the node_modules the service finds the SDK in.
 * `instance`: a query the URL carries, for thread bundles: a service on run's own thread (`run
 * --single-thread`) then has an SDK of its own there, as each thread bundle held one before,
 * while its code and entry still share one. An import of another subpath (`/ampt`) makes
 * SdkUse.whole true and is left to be bundled: the caller builds again without this plugin.
 */

function sharedSdk(
  build: typeof import("esbuild").build,
  projectDir: string,
  service: ServiceEntry,
  variant: SdkVariant,
  use: SdkUse,
  runtime?: string,
  instance = "",
): Plugin {
  // Kept by the node_modules the service finds the SDK in: the entry's import of the runtime and
  // the service's of the SDK get the same file.
  const dirs = sdkCacheDirs(service.path, join(stateDir(projectDir), "build"));
  const external = async (root: string) => {
    const prebuilt = await prebuiltSdk(root, variant, dirs, BUNDLE_KEY, makeSdk(build, variant));
    use.prebuilt.add(prebuilt);
    return { path: `${pathToFileURL(prebuilt.file).href}${instance}`, external: true };
  };
  return {
    name: "nitric-like-shared-sdk",
    setup(plugin) {
      plugin.onResolve({ filter: /^@nitric-like\/sdk(\/|$)/ }, async (args) => {
        if (args.kind === "entry-point" || args.importer.includes("/node_modules/")) return undefined;
        if (args.pluginData === RESOLVING || ours(packageOwner(dirname(args.importer)))) return undefined;
        if (args.path !== "@nitric-like/sdk") {
          use.whole = true;
          return undefined;
        }
        // Found as esbuild finds it; one it cannot find fails the build as any package does.
        const found = await plugin.resolve(args.path, {
          kind: args.kind,
          importer: args.importer,
          resolveDir: args.resolveDir,
          pluginData: RESOLVING,
        });
        const root = found.errors.length > 0 || found.external ? undefined : installedSdk(found.path);
        if (root === undefined) return undefined;
        use.roots.add(root);
        return await external(root);
      });
      if (runtime !== undefined) {
        plugin.onResolve({ filter: /^\// }, async (args) => {
          if (args.path !== runtime) return undefined;
          const root = installedSdk(runtime);
          return root === undefined ? undefined : await external(root);
        });
      }
    },
  };
}

/**
 * @nitric/* JavaScript with its async functions native (provider-kit's native-async.ts), kept in
 * the project's state folder: parsing and rewriting @nitric/sdk 1.2.2's one 610 KB file costs
 * 230-400 ms of a thread bundle's 380-620 ms, for a file that changes only when the package does.
 * One cache file per source file, named by a hash of its path; its first line is the key it was
 * made for (the bundler's version and a hash of the source's text), so a changed package or
 * bundler makes it anew.
 */
function nativeAsyncCached(stateFolder: string, path: string): string | undefined {
  const source = readFileSync(path, "utf8");
  const key = `// ${createHash("sha256").update(BUNDLE_KEY).update("\0").update(source).digest("hex")}\n`;
  const dir = join(stateFolder, "native-async");
  const file = join(dir, `${createHash("sha256").update(path).digest("hex").slice(0, 32)}.js`);
  try {
    const cached = readFileSync(file, "utf8");
    if (cached.startsWith(key)) {
      const code = cached.slice(key.length);
      return code === UNCHANGED ? undefined : code;
    }
  } catch {
    // Not cached yet.
  }
  const contents = nativeAsync(source);
  mkdirSync(dir, { recursive: true });
  // Written aside and renamed: two services' builds may make the same file at once.
  const temp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}`;
  writeFileSync(temp, key + (contents ?? UNCHANGED));
  renameSync(temp, file);
  return contents;
}

/** What a cache file of nativeAsyncCached holds after its key for a file loaded as it is. */
const UNCHANGED = "// unchanged\n";

/**
 * The thread bundle: @nitric/* packages are bundled (and our SDK, where sharedSdk leaves it), and
 * @nitric/* packages' imports of grpc-js get the compat adapter (the only swap: our own packages
 * take their transport from the entry, so our SDK's import of its gRPC fallback gets
 * NO_GRPC_IN_THREAD). `stateFolder`: the project's, for nativeAsyncCached.
 */
function inThread(stateFolder: string): Plugin {
  return {
    name: "nitric-like-thread",
    setup(build) {
      build.onResolve({ filter: /^@grpc\/grpc-js$/ }, (args) =>
        isNitricPackage(packageOwner(dirname(args.importer))) ? { path: COMPAT } : undefined,
      );
      noGrpcInThread(build);
      // @nitric/* JavaScript runs its async functions as native ones (see provider-kit's native-async.ts).
      build.onLoad({ filter: /[\\/]node_modules[\\/]@nitric[\\/].*\.c?js$/ }, (args) => {
        const contents = nativeAsyncCached(stateFolder, args.path);
        return contents === undefined ? undefined : { contents, loader: "js" };
      });
      keepProjectPackagesExternal(build, (name) => ours(name) || isNitricPackage(name));
    },
  };
}

/**
 * run's liveness check of a service thread (startServiceThread's watchAlive): the message it posts
 * to the thread, and the one the thread's entry answers with. A thread that lets its event loop turn
 * answers within microseconds; one that does not (a loop that never yields) cannot answer at all.
 */
export const ALIVE_PING = "nitric-like:alive?";
export const ALIVE_PONG = "nitric-like:alive";
/**
 * A service process's answer to the same check, on the pipe ALIVE_FD_VAR names (spawnService
 * opens it): the bundles' first line, so that it answers before the service's code loads, in
 * bundles of `@nitric/sdk` alone too. The same function our SDK calls where run's bundles do not
 * start the process (@nitric-like/spec's alive.ts), as source text: it uses only its arguments.
 */
const ALIVE_ANSWER = `(${String(answerAliveChecks)})(process.env, ${JSON.stringify(ALIVE_FD_VAR)}, require("node:net").Socket);`;

/**
 * A service process's stdout and stderr, pipes to run, made blocking (makeStdioBlocking says why),
 * as the bundle's first lines. In the process bundle only: --single-thread imports bundles into
 * run's own process, whose streams are not the service's to change.
 */
const BLOCKING_STDIO = `(${String(makeStdioBlocking)})(process);`;

/**
 * A process bundle's first import (its banner's): it runs before anything the bundle imports (the
 * prebuilt SDK, the project's packages) loads, as a bundle's first lines did when the SDK was in it.
 * A file beside the bundles; no service's bundle can take its name (a service's name has no `/`).
 */
const PRELUDE = "prelude/process.mjs";

/** Writes `text` to `file` unless it holds it already, aside then renamed (two services' builds may write it at once). */
function writeIfChanged(file: string, text: string): void {
  try {
    if (readFileSync(file, "utf8") === text) return;
  } catch {
    // Not written yet.
  }
  mkdirSync(dirname(file), { recursive: true });
  const temp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}`;
  writeFileSync(temp, text);
  renameSync(temp, file);
}

/**
 * Tells our SDK, before the service's code runs, that the bundle will say when its module has
 * loaded (LOADED_FOOTER, or its thread's start()): in the collect pass it then tells the collector
 * of a load that has not finished (see its noteLoadCall).
 */
const LOAD_SAID = `globalThis[Symbol.for(${JSON.stringify(LOAD_SAID_SYMBOL)})] = true;`;

/** Tells every copy of our SDK in a service process that the service's module has loaded (see its serviceLoaded). */
const LOADED_FOOTER = `for (const loaded of globalThis[Symbol.for("nitric-like.service-loaded")] ?? []) loaded();`;

/** The process bundle's PRELUDE: what its first lines did (the alive answer, LOAD_SAID, blocking stdio). */
const PROCESS_PRELUDE = `// Generated by nitric-like: the first lines of every service process bundle beside it.\n${REQUIRE_BANNER}\n${ALIVE_ANSWER}\n${LOAD_SAID}\n${BLOCKING_STDIO}\n`;

/** How much of a service thread's output may wait for run's thread to print it (boundOutput). */
export const MAX_HELD_OUTPUT_BYTES = 8 * 1024 * 1024;

/**
 * The generated entry of a thread bundle: the runner's choice of transport, made explicit. Its
 * `start(port, service)` gives each SDK the service uses a transport over that MessagePort, then
 * loads the service and tells our SDK it has loaded. In a worker thread it starts itself on the
 * port it finds in workerData; on `run`'s own thread (`run --single-thread`) the runner imports it,
 * calls `start` with its port and the service's name (services share process.env there), and
 * stops the service by waiting for the transport's calls to end and closing it.
 * `sdkRuntime`: our SDK's `@nitric-like/sdk/runtime` as the service resolves it (so the bundle
 * holds one copy of the SDK), when the service uses our SDK.
 */
export function threadEntry(servicePath: string, sdkRuntime: string | undefined, nitricSdk: boolean): string {
  const lines = [
    "// Generated by nitric-like run: this service on a thread of run's process, calling its provider over a port.",
    'import { isMainThread, parentPort, workerData } from "node:worker_threads";',
    `import { createPortTransport } from ${JSON.stringify(sdkRuntime ?? RPC)};`,
  ];
  const give: string[] = [];
  if (sdkRuntime !== undefined) {
    lines.push(`import { serviceLoaded, useTransport as ours } from ${JSON.stringify(sdkRuntime)};`);
    give.push("  ours(transport);");
  }
  if (nitricSdk) {
    lines.push(`import { useTransport as nitric } from ${JSON.stringify(COMPAT)};`);
    give.push("  nitric(transport);");
  }
  lines.push(
    // `service`: its name, where services share one process.env (see startServiceHere).
    "export function start(port, service) {",
    "  const transport = createPortTransport(port);",
    ...give,
    // Once the import has resolved (top-level awaits included) the service has loaded: our SDK
    // refuses handlers registered later (see its serviceLoaded).
    sdkRuntime === undefined
      ? `  return { transport, loaded: import(${JSON.stringify(servicePath)}) };`
      : `  return { transport, loaded: import(${JSON.stringify(servicePath)}).then((m) => { serviceLoaded(service); return m; }) };`,
    "}",
    "// In a worker: output held back for run's thread is bounded (see @nitric-like/spec's output-bound.ts).",
    `if (!isMainThread) for (const stream of [process.stdout, process.stderr]) (${String(boundOutput)})(stream, ${MAX_HELD_OUTPUT_BYTES});`,
    "// In a worker: answers run's liveness check (set before the service loads; unref'd, it keeps nothing alive).",
    `if (!isMainThread) parentPort.on("message", (m) => { if (m === ${JSON.stringify(ALIVE_PING)}) parentPort.postMessage(${JSON.stringify(ALIVE_PONG)}); }).unref();`,
    "if (!isMainThread) await start(workerData.port).loaded;",
    "",
  );
  return lines.join("\n");
}

/** Our SDK's runtime entry as the service resolves it, if it uses our SDK. */
function sdkRuntimeOf(projectDir: string, inputs: Set<string>): string | undefined {
  const sdkFile = [...inputs].find((path) => packageOwner(dirname(path)) === "@nitric-like/sdk");
  if (sdkFile === undefined) return undefined;
  try {
    return createRequire(sdkFile).resolve("@nitric-like/sdk/runtime");
  } catch {
    return createRequire(join(projectDir, "package.json")).resolve("@nitric-like/sdk/runtime");
  }
}

/** How a thread bundle's entry was generated (threadEntry's arguments after the service's path). */
interface ThreadEntryChoice {
  sdkRuntime?: string;
  nitricSdk: boolean;
  /** The service imports a subpath of our SDK that is not prebuilt: the bundle holds the SDK (SdkUse.whole). */
  wholeSdk?: boolean;
}

/** What a bundle was made from, kept beside it: when none of it changed, the bundle is reused. */
interface BundleRecord {
  key: string;
  /** [path, mtimeMs, size] of every input. */
  inputs: [string, number, number][];
  /**
   * The same of the prebuilt SDKs the bundles import (sdk-prebuild.ts) and of what they were made
   * from: not watched (not the project's), but a bundle of an SDK changed since is made again.
   */
  sdk?: [string, number, number][];
  threadable: boolean;
  /** The thread bundle, for a service on either SDK. */
  threadOutfile?: string;
  /** How the thread bundle's entry was generated. */
  threadEntry?: ThreadEntryChoice;
  /**
   * False after a thread-only build (bundleService's threadOnly): the service's own bundle was not
   * made again and is gone, so only a caller that wants the thread bundle alone may reuse this.
   */
  processBundle: boolean;
  /**
   * Every file written for the `.ts` worker scripts its code starts (worker-bundles.ts). After a
   * failed build (a record whose key matches nothing) also those of the build before it, so the
   * next build that succeeds removes the ones it no longer writes.
   */
  workerOutfiles?: string[];
  /** Those of `inputs` only the worker scripts' bundles read (Bundle.workerInputs). */
  workerInputs?: string[];
}

// A bundle made by another version of esbuild or of this bundler (its options) is made again.
// esbuild itself is loaded only when something has to be bundled.
const BUNDLE_KEY = `esbuild ${(createRequire(import.meta.url)("esbuild/package.json") as { version: string }).version}, bundler 27`;

/**
 * The files a build is expected to read (the last build's inputs and the service's file), stamped
 * as it starts, and when it started: see recordedStamps.
 */
interface BeforeBuild {
  stamps: Map<string, [string, number, number] | undefined>;
  at: number;
}

function beforeBuild(record: BundleRecord | undefined, service: ServiceEntry): BeforeBuild {
  const paths = new Set([service.path, ...(record?.inputs.map(([path]) => path) ?? [])]);
  return { stamps: new Map([...paths].map((path) => [path, stamp(path)])), at: Date.now() };
}

/**
 * A file saved at about this long before a build started, or later, may be newer than what the
 * build read when the build did not stamp it first: a file system's clock may lag the wall
 * clock's by a tick.
 */
const STAMP_SLACK_MS = 50;

/**
 * The stamps a record keeps of a build's inputs. A file saved while the build ran may have been
 * read before its save: its stamp now would make the next call reuse a bundle of its older text
 * (a save during a save's build running the code of the first). So a file that changed since the
 * build started keeps the stamp it had then, and one the build did not stamp first that was
 * saved about as it started gets none that matches: the next call builds again.
 */
function recordedStamps(paths: Iterable<string>, before: BeforeBuild): [string, number, number][] {
  return [...paths].flatMap((path): [string, number, number][] => {
    const now = stamp(path);
    if (now === undefined) return [];
    if (before.stamps.has(path)) {
      const then = before.stamps.get(path);
      if (then === undefined) return [[path, -1, -1]];
      return [then[1] === now[1] && then[2] === now[2] ? now : then];
    }
    return [now[1] >= before.at - STAMP_SLACK_MS ? [path, -1, -1] : now];
  });
}

/** The record kept beside a service's bundle by this version of the bundler, if there is one. */
function readRecord(recordFile: string, entry: string): BundleRecord | undefined {
  try {
    const record = JSON.parse(readFileSync(recordFile, "utf8")) as BundleRecord;
    return record.key === `${BUNDLE_KEY} ${entry}` ? record : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The bundles at `outfile` and the record's threadOutfile if they exist and were made from exactly
 * the files the record lists, unchanged (the thread bundle alone when `threadOnly` and the service
 * has one: a service on neither SDK runs as a process, from its own bundle).
 */
function reusable(outfile: string, record: BundleRecord | undefined, threadOnly: boolean): Bundle | undefined {
  if (record === undefined) return undefined;
  const threadAlone = threadOnly && record.threadOutfile !== undefined;
  if (!threadAlone && (!record.processBundle || !existsSync(outfile))) return undefined;
  if (record.threadOutfile !== undefined && !existsSync(record.threadOutfile)) return undefined;
  if (record.workerOutfiles?.some((file) => !existsSync(file))) return undefined;
  for (const [path, mtimeMs, size] of [...record.inputs, ...(record.sdk ?? [])]) {
    const now = stamp(path);
    if (!now || now[1] !== mtimeMs || now[2] !== size) return undefined;
  }
  return {
    outfile,
    inputs: new Set(record.inputs.map(([path]) => path)),
    threadable: record.threadable === true,
    ...(record.threadOutfile === undefined ? {} : { threadOutfile: record.threadOutfile }),
    ...(record.workerInputs?.length ? { workerInputs: new Set(record.workerInputs) } : {}),
  };
}

/**
 * The files the last build of a service wrote for its worker scripts (its record's, whatever
 * bundler made it), each directly in `dir`, the service's `.workers` folder: a record changed by
 * hand never names a file elsewhere to remove.
 */
function workerFilesWritten(recordFile: string, dir: string): string[] {
  try {
    const files = (JSON.parse(readFileSync(recordFile, "utf8")) as { workerOutfiles?: unknown }).workerOutfiles;
    if (!Array.isArray(files)) return [];
    return files.filter((f): f is string => typeof f === "string" && f === resolve(dir, basename(f)));
  } catch {
    return [];
  }
}

/**
 * Removes the worker files the last build wrote (`before`) that this one did not (`now`): a
 * worker script renamed, deleted or no longer started leaves no bundle behind. Only those: a
 * file the bundler never wrote stays. The folder goes once empty.
 */
function removeStaleWorkerFiles(before: readonly string[], now: readonly string[], dir: string): void {
  const kept = new Set(now);
  for (const file of before) {
    if (kept.has(file)) continue;
    try {
      if (lstatSync(file).isFile()) rmSync(file);
    } catch {
      // Gone already.
    }
  }
  try {
    if (readdirSync(dir).length === 0) rmdirSync(dir);
  } catch {
    // No folder (no worker was ever bundled), or not ours to remove.
  }
}

/**
 * Adds to `inputs` (the service's own bundles') the worker scripts' bundles' inputs; returns those
 * only the workers read (Bundle.workerInputs).
 */
function addWorkerInputs(inputs: Set<string>, bundles: readonly WorkerBundle[]): string[] {
  const only = new Set<string>();
  for (const w of bundles) {
    for (const path of w.inputs) {
      if (inputs.has(path)) continue;
      inputs.add(path);
      only.add(path);
    }
  }
  return [...only];
}

/**
 * esbuild's build, its file's comments made ASCII (provider-kit's ascii-comments.ts): an em dash
 * or an emoji in a service's comment would make V8 hold the whole bundle two bytes a character;
 * and keepNames's helper made cheaper (keep-names.ts). esbuild writes the file itself, and it is
 * read back only as bytes (outside the JS heap) to be checked and rewritten, as a string only
 * when a comment is not ASCII. Handed back over esbuild's pipe instead (write: false), the whole
 * bundle would pass through `run`'s heap as buffers and strings, and V8 and malloc keep what they
 * grow for that for as long as `run` runs (BENCHMARKS.md, Idle memory).
 */
async function buildAscii(build: typeof import("esbuild").build, options: BuildOptions & { outfile: string }) {
  const result = await build({ ...options, metafile: true, write: true });
  const written = readFileSync(options.outfile);
  const named = cheaperKeepNames(written);
  const bytes = named ?? written;
  if (!isAscii(bytes)) writeFileSync(options.outfile, asciiComments(bytes.toString("utf8")));
  else if (named) writeFileSync(options.outfile, named);
  return result;
}

/** What bundleService is asked for. */
export interface BundleOptions {
  /**
   * Only the thread bundle is wanted for a service on either SDK: `run` on the local provider,
   * which runs such a service as a worker thread (or on its own thread) and collects it in one, at
   * start and after a save. When the last build found the service on an SDK, or with no earlier
   * build our SDK resolves from the service's folder, only its thread bundle is made (half the
   * work), and its own bundle is deleted until a caller asks for it. A build that finds the service on other SDKs than that build did (it
   * now imports @nitric/sdk, or no longer does, or neither) makes both, which decides afresh.
   * @default false
   */
  threadOnly?: boolean;
  /** Hears each bundle made (not reused), which, and how long esbuild took (`run --verbose` says it). */
  onBuilt?: (which: "service" | "thread", ms: number) => void;
}

/**
 * The thread entry of a service on our SDK alone, before any build of it: our SDK's runtime as the
 * project resolves it from the service's folder. A guess, which threadBundleAlone checks.
 */
function guessedThreadEntry(service: ServiceEntry): ThreadEntryChoice | undefined {
  try {
    return { sdkRuntime: createRequire(service.path).resolve("@nitric-like/sdk/runtime"), nitricSdk: false };
  } catch {
    return undefined;
  }
}

/**
 * The thread entry a thread-only build tries: the last build's, if it made a thread bundle (the
 * service is on either SDK); a guess when there was no build; none (both bundles are made) otherwise.
 */
function threadEntryToTry(record: BundleRecord | undefined, service: ServiceEntry): ThreadEntryChoice | undefined {
  if (record === undefined) return guessedThreadEntry(service);
  return record.threadOutfile === undefined ? undefined : record.threadEntry;
}

/**
 * Bundles one service, or reuses its bundles when none of the files they were made from changed
 * (checking their files' stamps takes a few ms, bundling a small service on the prebuilt SDK some
 * tens). Throws UserError with esbuild's messages when the code does not compile.
 */
export async function bundleService(
  projectDir: string,
  service: ServiceEntry,
  options: BundleOptions = {},
): Promise<Bundle> {
  const outdir = join(stateDir(projectDir), "build");
  mkdirSync(outdir, { recursive: true });
  const outfile = join(outdir, `${service.name}.mjs`);
  const recordFile = join(outdir, `${service.name}.inputs.json`);
  const record = readRecord(recordFile, service.path);
  const threadOnly = options.threadOnly === true;
  const cached = reusable(outfile, record, threadOnly);
  if (cached) return cached;
  const { build, stop } = await import("esbuild");
  const before = beforeBuild(record, service);
  // esbuild's service is stopped once no build is left in flight (provider-kit's esbuild-service.ts).
  return building(stop, async () => {
    const choice = threadOnly ? threadEntryToTry(record, service) : undefined;
    // Its `.ts` worker scripts, bundled once for both of its bundles.
    const workersDir = join(outdir, `${service.name}.workers`);
    const workers = new WorkerBundles(projectDir, workersDir, (from, workerFile) =>
      buildWorker(build, projectDir, from, workerFile),
    );
    const written: WorkerFiles = { dir: workersDir, before: workerFilesWritten(recordFile, workersDir) };
    const threadAlone =
      choice === undefined
        ? undefined
        : await threadBundleAlone(
            build,
            projectDir,
            service,
            outfile,
            recordFile,
            choice,
            before,
            workers,
            written,
            options.onBuilt,
          );
    return (
      threadAlone ??
      (await bundleWith(build, projectDir, service, outfile, recordFile, before, workers, written, options.onBuilt))
    );
  });
}

/** A service's `.workers` folder, and the files the last build wrote there. */
interface WorkerFiles {
  dir: string;
  before: string[];
}

/** The options of both bundles of a service; the thread bundle changes its entry, outfile and plugins. */
function bundleOptions(
  projectDir: string,
  service: ServiceEntry,
  outfile: string,
  named: Set<string>,
  workers?: WorkerBundles,
) {
  return {
    entryPoints: [service.path],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    // The project's own files see their source's place (import.meta.url, __dirname), not the bundle's.
    plugins: [ownPlace(named, workers), externalProjectPackages],
    // grpc-js loads it only for channelz and ORCA, which a service never serves.
    external: ["@grpc/proto-loader"],
    // Functions and classes keep their source names (stacks, `.name`). A nested name that
    // shadows another is still renamed (esbuild always does: data -> data2); the SDK's
    // error logging puts the source name back in messages (describeError in errors.ts). The
    // cost is a call of esbuild's __name for each named function made at run time, which
    // buildAscii makes a property read where the name is already right (keep-names.ts); our own
    // per-message code uses methods rather than named closures all the same (client.ts's
    // PendingUnary, port.ts's PortCall, the SDK's HandlerStream).
    keepNames: true,
    sourcemap: "inline",
    // Stacks map to the original files and lines without the sources themselves in the map.
    sourcesContent: false,
    metafile: true,
    logLevel: "silent",
    absWorkingDir: projectDir,
    banner: { js: `${REQUIRE_BANNER} ${ALIVE_ANSWER} ${LOAD_SAID}` },
  } satisfies BuildOptions;
}

/**
 * Builds a service's thread bundle with the entry `choice` describes. Resolves with the inputs it
 * read, the entry aside, and whether the service's code imports our SDK (the entry itself does when
 * it gives our SDK a transport, so the SDK's files among the inputs do not tell) and @nitric/sdk
 * (which the thread bundle holds, where the service's own bundle leaves it external).
 */
async function buildThread(
  build: typeof import("esbuild").build,
  projectDir: string,
  service: ServiceEntry,
  outfile: string,
  choice: ThreadEntryChoice,
  workers: WorkerBundles,
  onBuilt?: BundleOptions["onBuilt"],
): Promise<ThreadBuilt> {
  const outdir = dirname(outfile);
  const threadOutfile = join(outdir, `${service.name}.thread.mjs`);
  const entry = join(outdir, `${service.name}.thread-entry.mjs`);
  writeFileSync(entry, threadEntry(service.path, choice.sdkRuntime, choice.nitricSdk));
  const started = performance.now();
  const named = new Set<string>();
  // Our SDK alone: it is imported prebuilt. With @nitric/sdk it is bundled, as its compat adapter
  // shares our RPC layer.
  const threadBuild = (use: SdkUse | undefined) =>
    buildAscii(build, {
      ...bundleOptions(projectDir, service, outfile, named),
      entryPoints: [entry],
      outfile: threadOutfile,
      plugins: [
        ownPlace(named, workers),
        ...(use === undefined
          ? []
          : [
              sharedSdk(
                build,
                projectDir,
                service,
                "thread",
                use,
                choice.sdkRuntime,
                `?service=${encodeURIComponent(service.name)}`,
              ),
            ]),
        inThread(stateDir(projectDir)),
      ],
    });
  let use = choice.sdkRuntime !== undefined && !choice.nitricSdk && choice.wholeSdk !== true ? sdkUse() : undefined;
  let threaded = await threadBuild(use);
  if (use?.whole) {
    use = undefined;
    named.clear();
    threaded = await threadBuild(use);
  }
  onBuilt?.("thread", Math.round(performance.now() - started));
  const inputs: string[] = [];
  let importsOurSdk = false;
  let importsNitricSdk = false;
  const ownerOf = (path: string) => packageOwner(dirname(resolve(projectDir, path)));
  const ourSdk = (path: string) => ownerOf(path) === "@nitric-like/sdk";
  const nitricSdk = (path: string) => ownerOf(path) === "@nitric/sdk";
  for (const [f, input] of Object.entries(threaded.metafile.inputs)) {
    // NO_GRPC_IN_THREAD is no file.
    if (f.startsWith("nitric-like-thread:")) continue;
    const path = resolve(projectDir, f);
    if (path === entry) continue;
    inputs.push(path);
    const bundled = input.imports.filter((i) => i.external !== true);
    if (!importsOurSdk && !ourSdk(f)) importsOurSdk = bundled.some((i) => ourSdk(i.path));
    // As the service's own bundle tells it: the project's code (no @nitric/* package) imports it.
    if (!importsNitricSdk && !isNitricPackage(ownerOf(f))) importsNitricSdk = bundled.some((i) => nitricSdk(i.path));
  }
  // The data files its own code names beside itself: a save of one builds and restarts it.
  for (const path of named) if (!inputs.includes(path)) inputs.push(path);
  if (use === undefined) {
    const wholeSdk = choice.sdkRuntime !== undefined && !choice.nitricSdk;
    return { threadOutfile, inputs, importsOurSdk, importsNitricSdk, sdk: [], wholeSdk };
  }
  const [root] = use.roots;
  return {
    threadOutfile,
    inputs,
    importsOurSdk: root !== undefined,
    importsNitricSdk,
    ...(root === undefined ? {} : { sdkRuntime: sdkRuntimeIn(root) }),
    sdk: sdkStamps(use),
    wholeSdk: false,
  };
}

/** A thread bundle built (buildThread). */
interface ThreadBuilt {
  threadOutfile: string;
  /** The files it was made from, its entry and the prebuilt SDK aside. */
  inputs: string[];
  /** Whether the service's own code imports our SDK (the entry's import of it aside). */
  importsOurSdk: boolean;
  importsNitricSdk: boolean;
  /** Our SDK's runtime as the service's code resolves it, when it was imported prebuilt. */
  sdkRuntime?: string;
  /** The stamps of the prebuilt SDK it imports and what that was made from (BundleRecord.sdk). */
  sdk: [string, number, number][];
  /** Its service is on our SDK alone, and the bundle holds the SDK (ThreadEntryChoice.wholeSdk). */
  wholeSdk: boolean;
}

/** The stamps a record keeps of the prebuilt SDKs a bundle imports: each file, and its inputs. */
function sdkStamps(use: SdkUse): [string, number, number][] {
  return [...use.prebuilt].flatMap((p) => {
    const file = stamp(p.file);
    return file === undefined ? [[p.file, -1, -1], ...p.inputs] : [file, ...p.inputs];
  });
}

/**
 * The thread bundle alone, for a service the last build found on either SDK (with that build's
 * entry) or, with no earlier build, one that our SDK resolves from (guessedThreadEntry). Undefined
 * when what it read says otherwise (the service imports @nitric/sdk where it did not or no longer
 * does, or not our SDK where it did, or our SDK from elsewhere): the caller then builds both
 * bundles, which decides the entry afresh.
 */
async function threadBundleAlone(
  build: typeof import("esbuild").build,
  projectDir: string,
  service: ServiceEntry,
  outfile: string,
  recordFile: string,
  choice: ThreadEntryChoice,
  before: BeforeBuild,
  workers: WorkerBundles,
  written: WorkerFiles,
  onBuilt?: BundleOptions["onBuilt"],
): Promise<Bundle | undefined> {
  try {
    const thread = await buildThread(build, projectDir, service, outfile, choice, workers, onBuilt);
    const { threadOutfile, inputs, importsOurSdk, importsNitricSdk } = thread;
    const inputSet = new Set(inputs);
    const onOurs = choice.sdkRuntime !== undefined;
    const same =
      importsOurSdk === onOurs &&
      importsNitricSdk === choice.nitricSdk &&
      (onOurs || choice.nitricSdk) &&
      // Our SDK alone: no @nitric/* package came in another way (bundleWith would see it external).
      (choice.nitricSdk || !inputs.some((path) => isNitricPackage(packageOwner(dirname(path))))) &&
      (!onOurs || (thread.sdkRuntime ?? sdkRuntimeOf(projectDir, inputSet)) === choice.sdkRuntime);
    if (!same) return undefined;
    // The service's own bundle was made from other files: it goes, so that nothing runs it stale.
    rmSync(outfile, { force: true });
    const workerBundles = await workers.bundles();
    const workerInputs = addWorkerInputs(inputSet, workerBundles);
    const record: BundleRecord = {
      key: `${BUNDLE_KEY} ${service.path}`,
      inputs: recordedStamps(inputSet, before),
      sdk: thread.sdk,
      threadable: onOurs && !choice.nitricSdk,
      threadOutfile,
      threadEntry: thread.wholeSdk ? { ...choice, wholeSdk: true } : choice,
      processBundle: false,
      workerOutfiles: workerBundles.flatMap((w) => w.files),
      workerInputs,
    };
    writeFileSync(recordFile, JSON.stringify(record));
    removeStaleWorkerFiles(written.before, record.workerOutfiles ?? [], written.dir);
    return {
      outfile,
      inputs: inputSet,
      threadable: record.threadable,
      threadOutfile,
      ...(workerInputs.length > 0 ? { workerInputs: new Set(workerInputs) } : {}),
    };
  } catch (error) {
    return await buildFailed(error, projectDir, service, recordFile, workers, written);
  }
}

/**
 * A `.ts` worker script's bundle (worker-bundles.ts), made as a service's is: its own files keep
 * their source's place, the project's packages load from node_modules, and an inline source map
 * lets stacks name its lines. `outfile` is a two-line start that turns source maps on in the
 * worker's thread, then imports the bundle (`<name>.bundle.mjs`): a worker started from run's own
 * thread (`--single-thread`) gets run's flags, without --enable-source-maps, and a module loaded
 * before source maps are on is never mapped. Resolves to the files it was made of (and the data
 * files they name beside themselves) and the files written.
 */
async function buildWorker(
  build: typeof import("esbuild").build,
  projectDir: string,
  from: string,
  outfile: string,
): Promise<{ inputs: string[]; files: string[] }> {
  const named = new Set<string>();
  const bundleFile = outfile.replace(/\.mjs$/, ".bundle.mjs");
  const result = await buildAscii(build, {
    entryPoints: [from],
    outfile: bundleFile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    plugins: [ownPlace(named), externalProjectPackages],
    external: ["@grpc/proto-loader"],
    keepNames: true,
    sourcemap: "inline",
    sourcesContent: false,
    logLevel: "silent",
    absWorkingDir: projectDir,
    banner: { js: REQUIRE_BANNER },
  });
  const start = [
    "// Generated by nitric-like run: a worker script's bundle, its stacks mapped to the source's lines.",
    "process.setSourceMapsEnabled(true);",
    `await import(${JSON.stringify(`./${basename(bundleFile)}`)});`,
    "",
  ].join("\n");
  writeFileSync(outfile, start);
  return {
    inputs: [...Object.keys(result.metafile.inputs).map((f) => resolve(projectDir, f)), ...named],
    files: [outfile, bundleFile],
  };
}

/**
 * A failed build leaves no record that matches, so the next run builds again, only the worker
 * files written (by this build and the last), for the next build that succeeds to remove those it
 * no longer writes: none is removed now, as the running version of the service may start them.
 * A compile error becomes a UserError.
 */
async function buildFailed(
  error: unknown,
  projectDir: string,
  service: ServiceEntry,
  recordFile: string,
  workers: WorkerBundles,
  written: WorkerFiles,
): Promise<never> {
  const made = await workers.bundles().catch(() => []);
  const files = [...new Set([...written.before, ...made.flatMap((w) => w.files)])];
  if (files.length === 0) rmSync(recordFile, { force: true });
  else writeFileSync(recordFile, JSON.stringify({ key: "failed", workerOutfiles: files }));
  const message = compileErrorMessage(error, projectDir, service);
  if (!message) throw error;
  // A package import that does not resolve: what to install (often: nothing installed yet).
  const missing = /Could not resolve "([^"./][^"]*)"/.exec(message)?.[1];
  throw new UserError(missing === undefined ? message : `${message}\n  ${missingPackageFix(projectDir, missing)}`);
}

/** The build itself: the service's bundle and, for a service on either SDK, its thread bundle. */
async function bundleWith(
  build: typeof import("esbuild").build,
  projectDir: string,
  service: ServiceEntry,
  outfile: string,
  recordFile: string,
  before: BeforeBuild,
  workers: WorkerBundles,
  written: WorkerFiles,
  onBuilt?: BundleOptions["onBuilt"],
): Promise<Bundle> {
  try {
    // The process bundle's last line says the service's module has loaded (its top-level awaits
    // included): our SDK then refuses handlers registered later (a timer's), which the collect
    // pass may not see. The thread bundle says it from its entry's start() instead.
    const named = new Set<string>();
    const base = bundleOptions(projectDir, service, outfile, named, workers);
    const processBuild = (use: SdkUse) =>
      buildAscii(build, {
        ...base,
        plugins: [
          ownPlace(named, workers),
          ...(use.whole ? [] : [sharedSdk(build, projectDir, service, "process", use)]),
          externalProjectPackages,
        ],
        // The prelude is the first import, so it runs before the prebuilt SDK loads.
        banner: { js: `import ${JSON.stringify(`./${PRELUDE}`)}; ${REQUIRE_BANNER}` },
        footer: { js: LOADED_FOOTER },
      });
    writeIfChanged(join(dirname(outfile), PRELUDE), PROCESS_PRELUDE);
    const started = performance.now();
    let use = sdkUse();
    let result = await processBuild(use);
    if (use.whole) {
      use = { ...sdkUse(), whole: true };
      named.clear();
      result = await processBuild(use);
    }
    onBuilt?.("service", Math.round(performance.now() - started));
    const inputs = new Set(Object.keys(result.metafile.inputs).map((f) => resolve(projectDir, f)));
    for (const path of named) inputs.add(path);
    const importsNitricSdk = Object.values(result.metafile.inputs).some((input) =>
      input.imports.some((i) => i.external === true && packageName(i.path) === "@nitric/sdk"),
    );
    const bundlesOurSdk = [...inputs].some((path) => packageOwner(dirname(path)) === "@nitric-like/sdk");
    const [prebuiltRoot] = use.roots;
    const usesOurSdk = prebuiltRoot !== undefined || bundlesOurSdk;
    const threadable = usesOurSdk && !importsNitricSdk;
    let threadOutfile: string | undefined;
    let choice: ThreadEntryChoice | undefined;
    const sdk = sdkStamps(use);
    if (usesOurSdk || importsNitricSdk) {
      const sdkRuntime = !usesOurSdk
        ? undefined
        : prebuiltRoot !== undefined
          ? sdkRuntimeIn(prebuiltRoot)
          : sdkRuntimeOf(projectDir, inputs);
      choice = {
        ...(sdkRuntime === undefined ? {} : { sdkRuntime }),
        nitricSdk: importsNitricSdk,
        ...(use.whole ? { wholeSdk: true } : {}),
      };
      const thread = await buildThread(build, projectDir, service, outfile, choice, workers, onBuilt);
      threadOutfile = thread.threadOutfile;
      for (const path of thread.inputs) inputs.add(path);
      sdk.push(...thread.sdk);
    }
    const workerBundles = await workers.bundles();
    const workerInputs = addWorkerInputs(inputs, workerBundles);
    const record: BundleRecord = {
      key: `${BUNDLE_KEY} ${service.path}`,
      inputs: recordedStamps(inputs, before),
      sdk,
      threadable,
      ...(threadOutfile === undefined ? {} : { threadOutfile }),
      ...(choice === undefined ? {} : { threadEntry: choice }),
      processBundle: true,
      workerOutfiles: workerBundles.flatMap((w) => w.files),
      workerInputs,
    };
    writeFileSync(recordFile, JSON.stringify(record));
    removeStaleWorkerFiles(written.before, record.workerOutfiles ?? [], written.dir);
    return {
      outfile,
      inputs,
      threadable,
      ...(threadOutfile === undefined ? {} : { threadOutfile }),
      ...(workerInputs.length > 0 ? { workerInputs: new Set(workerInputs) } : {}),
    };
  } catch (error) {
    return await buildFailed(error, projectDir, service, recordFile, workers, written);
  }
}
