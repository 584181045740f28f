/**
 * Our SDK bundled once per installed copy, for the bundles that run locally (bundle.ts): a
 * service's bundles import it from here instead of carrying it. Each service bundle used to
 * hold the SDK and all it imports (rpc, contracts, spec, protobuf-es, and grpc-js in a process
 * bundle): examples/chat's thread bundle was 673 KB for a 20-line service, its process bundle
 * 1.7 MB, and almost all of the ~0.35 s of CPU esbuild took to bundle it went to linking and
 * printing the SDK with its source map, again for every service, every project and every copy
 * of one (the test suite's esbuild processes took a quarter of its CPU).
 *
 * The SDK's main entry point and its runtime go into ONE file, so that the service's code and the
 * thread entry (which gives the SDK its transport) share one instance of it: their export names
 * do not overlap (sdk-prebuild.test.ts checks). It is kept in
 * `node_modules/.cache/nitric-like/` of the node_modules the project finds the SDK in (the
 * find-cache-dir convention), where every project sharing that node_modules reuses it, or in the
 * project's `.nitric-like/build/sdk/` when that folder cannot be written. Each copy is made in a
 * folder of its own, renamed into place once written, and named by a hash of the stamps (path,
 * mtime, size) of every file it was made from; an index file beside it, written (aside, then
 * renamed) after the folder is in place, names the current one, so two CLIs making it at once
 * never see half of one, and a folder left by a killed process (`*.tmp-*`) is never read. Making a
 * copy removes the copies older than the two before it (prune).
 */
import { createHash } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/** The SDK as a thread bundle takes it (no gRPC fallback) or as a process bundle does (grpc-js in). */
export type SdkVariant = "thread" | "process";

/** A prebuilt SDK: its file, and the stamps of what it was made from (a bundle using it keeps them). */
export interface PrebuiltSdk {
  file: string;
  inputs: [string, number, number][];
}

/** Makes the SDK's bundle at `outfile` from `entry`; resolves with the absolute paths of the files it read. */
export type MakeSdk = (entry: string, outfile: string) => Promise<string[]>;

/** A file's [path, mtimeMs, size], or undefined when it is not there: what a bundle's record keeps of each input. */
export function stamp(path: string): [string, number, number] | undefined {
  try {
    const s = statSync(path);
    return [path, s.mtimeMs, s.size];
  } catch {
    return undefined;
  }
}

const hash = (...parts: string[]) => createHash("sha256").update(parts.join("\0")).digest("hex").slice(0, 16);

/** The folder of the `@nitric-like/sdk` that holds `file`, or undefined when none does. */
export function installedSdk(file: string): string | undefined {
  for (let dir = dirname(file); dirname(dir) !== dir; dir = dirname(dir)) {
    try {
      if (
        (JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: unknown }).name === "@nitric-like/sdk"
      )
        return dir;
    } catch {
      // No manifest here.
    }
  }
  return undefined;
}

/** The SDK's `@nitric-like/sdk/runtime` file, in its folder `root`. */
export function sdkRuntimeIn(root: string): string {
  return createRequire(join(root, "package.json")).resolve("@nitric-like/sdk/runtime");
}

/**
 * The files of the SDK's entry points that go into the prebuilt file: `@nitric-like/sdk` and its
 * runtime. Not its other subpaths: `/ampt` and `/ampt/data` declare resources as they load, which
 * in every service would declare them for all, and in a thread would run before the thread entry
 * gives the SDK its transport (a prebuilt file loads before the bundle that imports it runs). A
 * service importing them bundles the whole SDK (bundle.ts's sharedSdk).
 */
function sdkEntryFiles(root: string): string[] {
  return [createRequire(join(root, "package.json")).resolve("@nitric-like/sdk"), sdkRuntimeIn(root)];
}

/**
 * The folders a prebuilt SDK may be kept in, first choice first: `.cache/nitric-like` of the
 * node_modules that `importer` finds the SDK in, then the project's `.nitric-like/build/sdk`.
 */
export function sdkCacheDirs(importer: string, buildDir: string): string[] {
  const dirs: string[] = [];
  for (let dir = dirname(importer); dirname(dir) !== dir; dir = dirname(dir)) {
    if (existsSync(join(dir, "node_modules", "@nitric-like", "sdk"))) {
      // By its real path: projects linking one node_modules (test copies) name one file.
      dirs.push(join(realpathSync(join(dir, "node_modules")), ".cache", "nitric-like"));
      break;
    }
  }
  dirs.push(join(buildDir, "sdk"));
  return dirs;
}

/** What a cache folder's index file says of the current prebuilt SDK. */
interface SdkIndex {
  key: string;
  folder: string;
  inputs: [string, number, number][];
}

/** The prebuilt SDK the index in `dir` names, if it was made for `key` from files all unchanged. */
function current(dir: string, base: string, key: string): PrebuiltSdk | undefined {
  let index: SdkIndex;
  try {
    index = JSON.parse(readFileSync(join(dir, `${base}.json`), "utf8")) as SdkIndex;
  } catch {
    return undefined;
  }
  if (index.key !== key || !/^[\w-]+$/.test(index.folder) || !Array.isArray(index.inputs)) return undefined;
  const file = join(dir, index.folder, "sdk.mjs");
  if (!existsSync(file)) return undefined;
  for (const [path, mtimeMs, size] of index.inputs) {
    const now = stamp(path);
    if (!now || now[1] !== mtimeMs || now[2] !== size) return undefined;
  }
  return { file, inputs: index.inputs };
}

/** Prebuilt SDKs being made by this process, by cache folder, SDK and variant. */
const making = new Map<string, Promise<PrebuiltSdk>>();

/**
 * The SDK in `root`, bundled for `variant` (by `make`), from the first of `dirs` that has a
 * current one or where one can be written. `bundlerKey`: the esbuild and bundler versions.
 */
export async function prebuiltSdk(
  root: string,
  variant: SdkVariant,
  dirs: readonly string[],
  bundlerKey: string,
  make: MakeSdk,
): Promise<PrebuiltSdk> {
  const key = `${bundlerKey} ${variant} ${root}`;
  const base = `sdk-${variant}-${hash(key)}`;
  let lastError: unknown;
  for (const dir of dirs) {
    const found = current(dir, base, key);
    if (found) return found;
    const id = `${dir}\0${base}`;
    const inFlight = making.get(id);
    if (inFlight !== undefined) return await inFlight;
    let temp: string;
    try {
      mkdirSync(dir, { recursive: true });
      // Its real path: esbuild names the files it read relative to that (node_modules may be a link).
      temp = realpathSync(mkdtempSync(join(dir, `${base}.tmp-`)));
      // Readable by all who share the node_modules, as what is installed there is.
      chmodSync(temp, 0o755);
    } catch (error) {
      // Not writable (a read-only or root-owned node_modules): the next folder.
      lastError = error;
      continue;
    }
    const made = makeIn(dir, temp, base, key, root, make).finally(() => making.delete(id));
    making.set(id, made);
    return await made;
  }
  throw lastError;
}

/** How many copies made before the current one are kept: a `run` started on one may load it again. */
const KEPT_OLDER_COPIES = 2;
/** A temp folder this old was left by a process that died making it; a younger one may be in the making. */
const ABANDONED_MS = 60 * 60 * 1000;

/**
 * Removes from `dir` the copies of `base` older than the current `folder` and the
 * KEPT_OLDER_COPIES before it (each SDK rebuild or upgrade makes one, some 2.5 MB), and temp
 * folders abandoned by a process that died making one. A `run` still on a removed copy finds it
 * gone only if it restarts a service it has not rebundled since; its next save bundles again.
 */
function prune(dir: string, base: string, folder: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  const age = (name: string) => {
    try {
      return statSync(join(dir, name)).mtimeMs;
    } catch {
      return undefined;
    }
  };
  const copies = names
    .filter((name) => name !== folder && /^[\w-]+$/.test(name) && name.startsWith(`${base}-`))
    .map((name) => ({ name, mtimeMs: age(name) }))
    .filter((c): c is { name: string; mtimeMs: number } => c.mtimeMs !== undefined)
    .sort((a, b) => b.mtimeMs - a.mtimeMs);
  const abandoned = names.filter((name) => {
    if (!name.startsWith(`${base}.tmp-`)) return false;
    const mtimeMs = age(name);
    return mtimeMs !== undefined && Date.now() - mtimeMs > ABANDONED_MS;
  });
  for (const name of [...copies.slice(KEPT_OLDER_COPIES).map((c) => c.name), ...abandoned])
    rmSync(join(dir, name), { recursive: true, force: true });
}

async function makeIn(
  dir: string,
  temp: string,
  base: string,
  key: string,
  root: string,
  make: MakeSdk,
): Promise<PrebuiltSdk> {
  try {
    const entry = join(temp, "entry.mjs");
    writeFileSync(
      entry,
      sdkEntryFiles(root)
        .map((file) => `export * from ${JSON.stringify(file)};\n`)
        .join(""),
    );
    const read = await make(entry, join(temp, "sdk.mjs"));
    rmSync(entry);
    const inputs = read.flatMap((path) => {
      const s = stamp(path);
      return s === undefined ? [] : [s];
    });
    const folder = `${base}-${hash(JSON.stringify(inputs))}`;
    try {
      renameSync(temp, join(dir, folder));
    } catch (error) {
      // Another process put the same one in place first: its copy is used.
      if (!existsSync(join(dir, folder, "sdk.mjs"))) throw error;
      rmSync(temp, { recursive: true, force: true });
    }
    const index: SdkIndex = { key, folder, inputs };
    const indexTemp = join(dir, `${base}.json.tmp-${process.pid}-${hash(String(Math.random()))}`);
    writeFileSync(indexTemp, JSON.stringify(index));
    renameSync(indexTemp, join(dir, `${base}.json`));
    prune(dir, base, folder);
    return { file: join(dir, folder, "sdk.mjs"), inputs };
  } catch (error) {
    rmSync(temp, { recursive: true, force: true });
    throw error;
  }
}
