/**
 * One Lambda bundle per service: a generated entry that starts the runtime and loads the service's
 * code lazily (so the runtime's endpoint exists before the SDK makes its client), bundled with
 * everything it imports into a single minified file: `index.cjs`, CommonJS, or `index.mjs`, an ES
 * module, for a service that awaits at its top level (which CommonJS cannot). Lambda finds either
 * for the handler `index.handler`. CommonJS stays the rule: the measured cold starts, the zips'
 * stable hashes and the packages bundled in sloppy mode were all made with it.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { building, compileErrorMessage, packageOwner } from "@nitric-like/provider-kit/build";
import { nativeAsync } from "@nitric-like/provider-kit/native-async";
import type { ServiceEntry } from "@nitric-like/spec";
import { build, type Message, type Plugin, stop } from "esbuild";
import { type BesideFiles, filesReadBeside } from "./beside.js";
import { FUNCTION_FILES } from "./function-file.js";
import { nativePackages } from "./native.js";
import { isPackageFile, packageAt, shownPath } from "./shown-path.js";
import { FunctionWorkers } from "./workers.js";

/** A bundled service. */
export interface ServiceBundle {
  service: string;
  /** The bundle's path. */
  file: string;
  /** Its size in bytes. */
  bytes: number;
  /** The files it was made of (esbuild's metafile inputs, relative to the project). */
  inputs: string[];
  /** Its source map (`<file>.map`, which the zip carries beside it). */
  map: string;
  /** A digest of its source files' contents (sourcesDigest). */
  sourcesDigest: string;
  /** The packages it bundles that load native code (nativePackages), for build to warn of. */
  native: { name: string; importedBy: string | undefined }[];
  /** What its bytes come from: each package (by name) or file of the project, largest first. */
  parts: { name: string; bytes: number }[];
  /** The files its code reads from beside itself, to copy into the function (beside.ts). */
  beside: BesideFiles;
  /** esbuild's warnings, one line each (file:line:column: text). */
  warnings: string[];
  /** The worker scripts its own code starts, each bundled beside it (workers.ts). */
  workers: BundledWorker[];
}

/** A worker script's bundle in a function's folder. */
export interface BundledWorker {
  /** Its name in the function's folder (`config-worker.cjs`). */
  name: string;
  /** Its path. */
  file: string;
  bytes: number;
  /** Its source map (`<file>.map`, which the zip carries beside it), and its size. */
  map: string;
  mapBytes: number;
  /** The script, as shownPath names it, and the file that starts it with its literal. */
  script: string;
  startedBy: string;
  literal: string;
  /** Its content's digest, for the artifact's key. */
  digest: string;
  /** The project's own files it was made of (absolute): a save of one bundles the function again. */
  ownSources: string[];
}

/** A service that does not compile; the message lists esbuild's errors with file:line:column. */
export class BundleError extends Error {
  override readonly name = "BundleError";
  /** The CLI prints only the message. */
  readonly userFacing = true;
}

const RUNTIME = fileURLToPath(new URL("../runtime/index.js", import.meta.url));
/** A module of the runtime: built, `<name>.js`; run from source (the tests), `<name>.ts`. */
const runtimeModule = (name: string) =>
  ["js", "ts"]
    .map((ext) => fileURLToPath(new URL(`../runtime/${name}.${ext}`, import.meta.url)))
    .find((path) => existsSync(path));
const PORTFINDER = runtimeModule("portfinder");
/** Maps the bundle's stacks through its source map (runtime/stacks.ts). */
const STACKS = runtimeModule("stacks");
const awsRequire = createRequire(import.meta.url);
/** The @nitric/sdk compat adapter: what @nitric/* packages get for grpc-js in a function. */
const COMPAT = awsRequire.resolve("@nitric-like/rpc/grpc-js-compat");

/**
 * What a function's bundle changes in its dependencies. @nitric/* packages' grpc-js is the compat
 * adapter, which calls the runtime in the function's thread: no server to bind or channel to
 * connect at a cold start, and no grpc-js to load. Our SDK takes its transport from the entry and
 * never loads its gRPC fallback here, so that is left out. The service's own imports of grpc-js
 * (its clients of other gRPC services) get the real one, as installed. portfinder, which
 * @nitric/sdk brings for its HTTP proxy, is the same entry points in a few lines of node:net.
 * @nitric/* JavaScript gets its async functions back as native ones (provider-kit's
 * native-async.ts), as in a service thread of `run`.
 */
const leanDependencies: Plugin = {
  name: "nitric-like-lean-dependencies",
  setup(b) {
    b.onResolve({ filter: /^@grpc\/grpc-js$/ }, (args) => {
      const caller = args.importer ? packageOwner(dirname(args.importer)) : undefined;
      return caller?.startsWith("@nitric/") ? { path: COMPAT } : undefined;
    });
    b.onResolve({ filter: /^@nitric-like\/rpc\/grpc$/ }, (args) => ({ path: args.path, external: true }));
    if (PORTFINDER) b.onResolve({ filter: /^portfinder$/ }, () => ({ path: PORTFINDER }));
    b.onLoad({ filter: /[\\/]node_modules[\\/]@nitric[\\/].*\.c?js$/ }, (args) => {
      const contents = nativeAsync(readFileSync(args.path, "utf8"));
      return contents === undefined ? undefined : { contents, loader: "js" };
    });
  },
};

/**
 * Which SDKs a service's own code imports: a build of its code alone, every package left out
 * (a few milliseconds), read from esbuild's metafile.
 */
async function sdksOf(
  projectDir: string,
  service: ServiceEntry,
): Promise<{ ours: boolean; nitric: boolean; files: string[] }> {
  const result = await build({
    entryPoints: [service.path],
    bundle: true,
    write: false,
    platform: "node",
    format: "esm",
    metafile: true,
    logLevel: "silent",
    absWorkingDir: projectDir,
    packages: "external",
  });
  const imports = Object.values(result.metafile.inputs).flatMap((input) => input.imports.map((i) => i.path));
  return {
    ours: imports.some((path) => path === "@nitric-like/sdk" || path.startsWith("@nitric-like/sdk/")),
    nitric: imports.some((path) => path.startsWith("@nitric/")),
    // The service's own files (every package left out), for the worker scripts they start.
    files: Object.keys(result.metafile.inputs).map((input) => resolve(projectDir, input)),
  };
}

/**
 * The generated entry of a function: the runtime, given each SDK's useTransport (the runner's
 * explicit choice of transport: in memory, to the runtime's router), and the service's code,
 * loaded once the runtime serves.
 */
export function functionEntry(service: ServiceEntry, sdkRuntime: string | undefined, nitric: boolean): string {
  const lines = [`// Generated by nitric-like: the Lambda entry of service "${service.name}".`];
  // Before the service's code loads (at the first event, below), so its stacks are mapped;
  // `__filename` is the bundle's own (ESM_BANNER defines it in an ES module).
  if (STACKS) lines.push(`import { mapStacks } from ${JSON.stringify(STACKS)};`, "mapStacks(__filename);");
  lines.push(`import { createHandler } from ${JSON.stringify(RUNTIME)};`);
  const give: string[] = [];
  if (sdkRuntime !== undefined) {
    lines.push(`import { serviceLoaded, useTransport as ours } from ${JSON.stringify(sdkRuntime)};`);
    give.push("ours(transport);");
  }
  if (nitric) {
    lines.push(`import { useTransport as nitric } from ${JSON.stringify(COMPAT)};`);
    give.push("nitric(transport);");
  }
  lines.push(
    "export const handler = createHandler({",
    // Once the import has resolved (top-level awaits included), our SDK refuses handlers
    // registered later (a timer's), which the build did not see (see its serviceLoaded).
    sdkRuntime === undefined
      ? `  load: () => import(${JSON.stringify(service.path)}),`
      : `  load: () => import(${JSON.stringify(service.path)}).then((m) => { serviceLoaded(); return m; }),`,
    `  transport: (transport) => {${give.length > 0 ? ` ${give.join(" ")} ` : ""}},`,
    "});",
    "",
  );
  return lines.join("\n");
}

/**
 * The generated start of a worker script's bundle: its stacks mapped through the map beside it
 * (as the function's entry maps the function's), then the script, loaded after that (a stack it
 * formats as it loads is mapped too). `__filename` is the bundle's own (ESM_BANNER defines it in
 * an ES module, the format of a script that awaits at its top level).
 */
export function workerEntry(script: string, format: "cjs" | "esm"): string {
  const lines = [`// Generated by nitric-like: the start of a worker script's bundle in a function.`];
  if (format === "cjs") {
    if (STACKS) lines.push(`require(${JSON.stringify(STACKS)}).mapStacks(__filename);`);
    lines.push(`require(${JSON.stringify(script)});`);
  } else {
    if (STACKS) lines.push(`import { mapStacks } from ${JSON.stringify(STACKS)};`, "mapStacks(__filename);");
    lines.push(`await import(${JSON.stringify(script)});`);
  }
  return `${lines.join("\n")}\n`;
}

/**
 * Bundles `service` into `<outDir>/functions/<service>/index.cjs`, or `index.mjs` when its code
 * awaits at its top level, and removes the other one an earlier build may have left.
 */
export function bundleFunction(projectDir: string, service: ServiceEntry, outDir: string): Promise<ServiceBundle> {
  // esbuild's service is stopped once no build is left in flight (provider-kit's esbuild-service.ts).
  return building(stop, () => bundleFunctionNow(projectDir, service, outDir));
}

/** esbuild's refusal of a top-level await in a CommonJS bundle. */
const isTopLevelAwait = (error: unknown) =>
  (error as { errors?: { text?: string }[] })?.errors?.some((e) =>
    e.text?.startsWith("Top-level await is currently not supported"),
  ) === true;

async function bundleFunctionNow(projectDir: string, service: ServiceEntry, outDir: string): Promise<ServiceBundle> {
  const dir = join(outDir, "functions", service.name);
  mkdirSync(dir, { recursive: true });
  const entry = join(outDir, "entries", `${service.name}.mjs`);
  mkdirSync(join(outDir, "entries"), { recursive: true });
  try {
    const sdks = await sdksOf(projectDir, service);
    const sdkRuntime = sdks.ours
      ? createRequire(join(projectDir, "package.json")).resolve("@nitric-like/sdk/runtime")
      : undefined;
    writeFileSync(entry, functionEntry(service, sdkRuntime, sdks.nitric));
    // Each worker script the service's own code starts, bundled as the function is (workers.ts).
    const workerOutputs = new Map<string, { inputs: string[]; warnings: string[] }>();
    const workers = new FunctionWorkers(
      projectDir,
      Object.values(FUNCTION_FILES).flatMap((name) => [name, `${name}.map`]),
      async (from, stem) => {
        try {
          let name = `${stem}.cjs`;
          let built: Awaited<ReturnType<typeof bundleAs>>;
          // A generated start (workerEntry), so its stacks are mapped before the script runs.
          const start = join(outDir, "entries", `${service.name}.worker.${stem}`);
          try {
            writeFileSync(`${start}.cjs`, workerEntry(from, "cjs"));
            built = await bundleAs("cjs", projectDir, `${start}.cjs`, join(dir, name));
          } catch (error) {
            if (!isTopLevelAwait(error)) throw error;
            name = `${stem}.mjs`;
            writeFileSync(`${start}.mjs`, workerEntry(from, "esm"));
            built = await bundleAs("esm", projectDir, `${start}.mjs`, join(dir, name));
          }
          const mapFile = join(dir, `${name}.map`);
          writeFileSync(mapFile, functionSourceMap(readFileSync(mapFile, "utf8"), dir, projectDir));
          workerOutputs.set(name, {
            inputs: Object.keys(built.metafile.inputs).filter((input) => !resolve(projectDir, input).startsWith(start)),
            warnings: built.warnings.map((w) => warningLine(projectDir, w)),
          });
          return { name };
        } catch (error) {
          const errors = (error as { errors?: Message[] }).errors;
          if (Array.isArray(errors) && errors.length > 0) return { errors };
          throw error;
        }
      },
    );
    workers.plan(sdks.files);
    const plugins = [workers.plugin()];
    let format: "cjs" | "esm" = "cjs";
    let result: Awaited<ReturnType<typeof bundleAs>>;
    try {
      result = await bundleAs("cjs", projectDir, entry, join(dir, FUNCTION_FILES.cjs), { plugins });
    } catch (error) {
      if (!isTopLevelAwait(error)) throw error;
      format = "esm";
      result = await bundleAs("esm", projectDir, entry, join(dir, FUNCTION_FILES.esm), { plugins });
    }
    const scripts = await workers.scripts();
    const file = join(dir, FUNCTION_FILES[format]);
    const other = join(dir, FUNCTION_FILES[format === "cjs" ? "esm" : "cjs"]);
    rmSync(other, { force: true });
    rmSync(`${other}.map`, { force: true });
    const map = `${file}.map`;
    writeFileSync(map, functionSourceMap(readFileSync(map, "utf8"), dir, projectDir));
    const output = result.metafile.outputs[relative(projectDir, file)];
    const bytes = output?.bytes ?? 0;
    const inputs = Object.keys(result.metafile.inputs);
    const sources = inputs.filter((input) => resolve(projectDir, input) !== entry);
    const parts = new Map<string, number>();
    for (const [input, { bytesInOutput }] of Object.entries(output?.inputs ?? {})) {
      const name = partOf(projectDir, input);
      parts.set(name, (parts.get(name) ?? 0) + bytesInOutput);
    }
    const bundled: BundledWorker[] = scripts.map((w) => {
      const file = join(dir, w.name);
      const data = readFileSync(file);
      return {
        name: w.name,
        file,
        bytes: data.length,
        map: `${file}.map`,
        mapBytes: statSync(`${file}.map`).size,
        script: shownPath(projectDir, w.from),
        startedBy: shownPath(projectDir, w.startedBy),
        literal: w.literal,
        // Without "use strict" directives, as artifactHash reads the function's bundle (esbuild#3284).
        digest: createHash("sha256").update(data.toString("utf8").replaceAll('"use strict";', "")).digest("hex"),
        ownSources: (workerOutputs.get(w.name)?.inputs ?? [])
          .filter((input) => !isPackageFile(input))
          .map((input) => resolve(projectDir, input)),
      };
    });
    const workerInputs = [...new Set(scripts.flatMap((w) => workerOutputs.get(w.name)?.inputs ?? []))].filter(
      (input) => !sources.includes(input),
    );
    const beside = filesReadBeside(projectDir, [...sources, ...workerInputs], {
      workers: new Set(scripts.map((w) => w.from)),
    });
    if (beside.refused.length > 0)
      throw new BundleError(beside.refused.map((problem) => `service "${service.name}": ${problem}`).join("\n"));
    return {
      service: service.name,
      file,
      bytes,
      inputs,
      map,
      sourcesDigest: sourcesDigest(projectDir, [...sources, ...workerInputs]),
      native: nativePackages(projectDir, result.metafile.inputs),
      parts: [...parts].map(([name, n]) => ({ name, bytes: n })).sort((a, b) => b.bytes - a.bytes),
      beside,
      warnings: [
        ...result.warnings.map((w) => warningLine(projectDir, w)),
        ...scripts.flatMap((w) => workerOutputs.get(w.name)?.warnings ?? []),
      ],
      workers: bundled,
    };
  } catch (error) {
    const message = compileErrorMessage(error, projectDir, service);
    if (!message) throw error;
    throw new BundleError(message);
  }
}

/** An esbuild warning as one line: file:line:column: text. */
function warningLine(projectDir: string, w: Message): string {
  const at = w.location
    ? `${shownPath(projectDir, w.location.file)}:${w.location.line}:${w.location.column + 1}: `
    : "";
  return `${at}${w.text}`;
}

/**
 * A bundle input as what it is part of: its package's name (a file under node_modules, or outside
 * the project: a workspace's package), or its path in the project.
 */
function partOf(projectDir: string, input: string): string {
  if (!input.includes("node_modules/") && !input.startsWith("../")) return input;
  return packageOwner(dirname(resolve(projectDir, input))) ?? input;
}

/**
 * Lets an ES module bundle run the CommonJS it bundles as CommonJS would: `require` (for Node's
 * own modules and the externals), `__filename` and `__dirname` (the bundle's own, as in a
 * CommonJS bundle).
 */
const ESM_BANNER = [
  'import { createRequire as __nlRequire } from "node:module";',
  'import { fileURLToPath as __nlPath } from "node:url";',
  'import { dirname as __nlDirname } from "node:path";',
  "const require = __nlRequire(import.meta.url);",
  "const __filename = __nlPath(import.meta.url);",
  "const __dirname = __nlDirname(__filename);",
].join(" ");

/**
 * What a function was made of, as one digest of its source files' contents: a change that leaves
 * the minified code as it was (a comment, a line moved) still moves its source map's lines, so
 * its zip's key changes, `up` uploads it again and a stack on AWS names the lines as they now
 * are. Contents only, sorted: not the files' paths, nor the generated entry (which names paths of
 * this machine), so the same project gives the same key wherever it is built.
 */
function sourcesDigest(projectDir: string, inputs: string[]): string {
  return inputs
    .map((input) => {
      try {
        return createHash("sha256")
          .update(readFileSync(resolve(projectDir, input)))
          .digest("hex");
      } catch {
        return "";
      }
    })
    .sort()
    .join("");
}

/**
 * A function's source map with its sources named as in the project (`services/chat.ts`; a
 * package's file as under the project's node_modules, `node_modules/ws/lib/websocket.js`), not
 * relative to the build folder: Lambda unpacks the zip into /var/task, and the function's stack
 * formatter (runtime/stacks.ts) resolves each source against the map's own place, as Node would,
 * so a stack there reads `/var/task/services/chat.ts:12:5` (under `run --provider aws`, against
 * the project: `<project>/services/chat.ts:12:5`, as the local provider's stacks read). No source
 * climbs out of the project (`../../home/me/...`), which would name the machine that built it and
 * make an odd path of a frame: the same project gives the same map wherever it is checked out.
 */
export function functionSourceMap(text: string, mapDir: string, projectDir: string): string {
  const map = JSON.parse(text) as { sources?: string[]; sourceRoot?: string };
  map.sources = (map.sources ?? []).map((source) => {
    const absolute = resolve(mapDir, source);
    const path = relative(projectDir, absolute).replaceAll("\\", "/");
    if (!path.startsWith("../")) return path;
    // A package's file (pnpm's store, a hoisted node_modules above the project) from its
    // node_modules on.
    const at = path.lastIndexOf("node_modules/");
    if (at >= 0) return path.slice(at);
    // A workspace's package linked into node_modules (the SDK and this runtime, in a clone of
    // nitric-like): where node_modules would hold it installed, by its package's name.
    const pkg = packageAt(dirname(absolute));
    if (pkg !== undefined) return `node_modules/${pkg.name}/${relative(pkg.root, absolute).replaceAll("\\", "/")}`;
    return basename(absolute);
  });
  delete map.sourceRoot;
  return JSON.stringify(map);
}

/**
 * Gives the ES modules a CommonJS bundle holds the `import.meta` Node gives them, the bundle's
 * own: esbuild leaves it empty there, so the many packages (and services) that call
 * `createRequire(import.meta.url)` or `fileURLToPath(import.meta.url)` as they load failed the
 * function's init with `Invalid URL` or `The "path" argument must be of type string`. Injected
 * (not a banner, which would come before the bundle's "use strict" and undo it).
 */
const IMPORT_META = runtimeModule("import-meta");
const cjsImportMeta = () =>
  IMPORT_META === undefined
    ? {}
    : {
        inject: [IMPORT_META],
        define: {
          "import.meta.url": "__nlImportMetaUrl",
          "import.meta.filename": "__filename",
          "import.meta.dirname": "__dirname",
        },
      };

function bundleAs(
  format: "cjs" | "esm",
  projectDir: string,
  entry: string,
  outfile: string,
  { plugins = [] }: { plugins?: Plugin[] } = {},
) {
  return build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: "node",
    format,
    target: "node20",
    minify: true,
    // No keepNames here, unlike `run`'s bundles: with it, esbuild 0.28's output for the same
    // inputs varied between builds in this repository (a "use strict" directive in a module
    // wrapper, esbuild#3284), so a zip's hash changed and `up` uploaded an unchanged function
    // again (4 of 19 runs of deploy.test.ts, 0 of 12 without). It would cost +8 KB (164 -> 172
    // KB) on our SDK and +18 KB on @nitric/sdk; a minified function names the minifier's
    // identifiers in any case.
    metafile: true,
    // A map beside the bundle, in the zip: a stack on AWS names the TypeScript file and line
    // (runtime/stacks.ts reads the map when a stack is first formatted, not at every cold start
    // as --enable-source-maps would). Without the sources' text, which mapping a frame does not need.
    sourcemap: "linked",
    sourcesContent: false,
    logLevel: "silent",
    absWorkingDir: projectDir,
    legalComments: "none",
    // grpc-js (a service's own) loads it only to serve channelz and ORCA: 130 KB saved.
    external: ["@grpc/proto-loader"],
    plugins: [...plugins, leanDependencies],
    ...(format === "esm" ? { banner: { js: ESM_BANNER } } : cjsImportMeta()),
  });
}
