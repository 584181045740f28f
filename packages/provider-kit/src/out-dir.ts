/**
 * A build's output folder. A build writes a marker file listing every file it wrote; the next
 * build removes exactly those files and nothing else. A folder that holds anything and has no
 * marker is refused, so `--out .` or `--out ~` can never lose a file the build did not write.
 */
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";

/** The marker a build leaves in its output folder. */
export const OUT_DIR_MARKER = ".nitric-like-build.json";

/** What the marker holds. */
interface Marker {
  tool: "nitric-like";
  provider: string;
  /** Paths relative to the folder, `/`-separated, of every file the build wrote. */
  files: string[];
}

/** The folder inside the output folder where a build writes until it has written everything. */
export const OUT_DIR_STAGING = ".nitric-like-staging";

/** A folder an earlier build of a version without markers left: only these names. */
const LEGACY_LAYOUT = new Set(["template.json", "artifacts.json", "functions", "entries"]);

function readMarker(dir: string): Marker | undefined {
  const file = join(dir, OUT_DIR_MARKER);
  if (!existsSync(file)) return undefined;
  try {
    const parsed = JSON.parse(readFileSync(file, "utf8")) as Partial<Marker>;
    if (parsed.tool !== "nitric-like" || !Array.isArray(parsed.files)) return undefined;
    return {
      tool: "nitric-like",
      provider: String(parsed.provider),
      files: parsed.files.filter((f) => typeof f === "string"),
    };
  } catch {
    return undefined;
  }
}

/** Every file under `dir`, relative and `/`-separated (symbolic links are files, never followed). */
function walk(dir: string, base = dir): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (lstatSync(path).isDirectory()) out.push(...walk(path, base));
    else out.push(relative(base, path).split(sep).join("/"));
  }
  return out;
}

/**
 * Why a build must not write into `dir`, with the fix; undefined when it may (missing, empty, or
 * holding a marker an earlier build left). `where` starts the message (e.g. `build`).
 */
export function outDirProblem(dir: string, where: string): string | undefined {
  const abs = resolve(dir);
  if (!existsSync(abs)) return undefined;
  if (!statSync(abs).isDirectory()) {
    return `${where}: --out ${JSON.stringify(abs)} is a file, not a folder; pass a new or empty folder, or leave --out out to build into .nitric-like/<provider>`;
  }
  const names = readdirSync(abs);
  if (names.length === 0 || readMarker(abs) !== undefined) return undefined;
  // What a build killed midway left: its staging folder (stageOutDir), and nothing of anyone else's.
  if (names.every((n) => LEGACY_LAYOUT.has(n) || n === OUT_DIR_STAGING)) return undefined;
  return `${where}: --out ${JSON.stringify(abs)} holds ${names.length} entr${names.length === 1 ? "y" : "ies"} (such as ${JSON.stringify(names.sort()[0])}) and no ${OUT_DIR_MARKER}, so no earlier build wrote it, and building would overwrite them; pass a new or empty folder (e.g. --out ${JSON.stringify(join(abs, "nitric-like-out"))}), or leave --out out to build into .nitric-like/<provider>`;
}

/** A build's output folder made ready: what an earlier build wrote is removed, nothing else. */
export interface OutDir {
  /** Absolute path. */
  dir: string;
  /** Writes the marker listing every file under the folder that was not there before the build. */
  finish(): void;
}

/**
 * Prepares `dir` for a build by `provider`: refuses (throws an Error with `userFacing`) a folder
 * `outDirProblem` refuses; otherwise removes the files the last build listed (and folders left
 * empty by that), and remembers what else is there so the marker never claims it.
 */
export function prepareOutDir(dir: string, provider: string, where = "build"): OutDir {
  const abs = resolve(dir);
  const problem = outDirProblem(abs, where);
  if (problem) throw Object.assign(new Error(problem), { userFacing: true });
  if (existsSync(abs)) {
    const marker = readMarker(abs);
    const listed = marker ? marker.files : walk(abs); // the legacy layout: all of it is ours
    for (const file of [...listed, OUT_DIR_MARKER]) {
      const path = resolve(abs, file);
      // A marker is data: a listed path outside the folder is never followed.
      if (!path.startsWith(abs + sep)) continue;
      rmSync(path, { force: true });
      removeEmptyParents(dirname(path), abs);
    }
  }
  mkdirSync(abs, { recursive: true });
  const before = new Set(walk(abs));
  return {
    dir: abs,
    finish() {
      const files = walk(abs).filter((f) => !before.has(f) && f !== OUT_DIR_MARKER);
      const marker: Marker = { tool: "nitric-like", provider, files: files.sort() };
      writeFileSync(join(abs, OUT_DIR_MARKER), `${JSON.stringify(marker, null, 2)}\n`);
    },
  };
}

function removeEmptyParents(dir: string, root: string): void {
  let current = dir;
  while (current.startsWith(root + sep) && existsSync(current) && readdirSync(current).length === 0) {
    rmdirSync(current);
    current = dirname(current);
  }
}

/** A build's output folder, written in a staging folder first (stageOutDir). */
export interface StagedOutDir {
  /** The output folder, absolute. */
  dir: string;
  /** Where the build writes: `<dir>/.nitric-like-staging`, laid out as `dir` is to be. */
  staging: string;
  /** `path` under `staging` as where it is once committed, under `dir`. */
  final(path: string): string;
  /**
   * Removes the files the last build listed, moves every staged file into `dir` in their place
   * and writes the marker listing them.
   */
  commit(): void;
  /** Removes the staging folder: `dir` holds what it held before the build (and is gone if it was). */
  abandon(): void;
}

/**
 * Prepares `dir` for a build by `provider` that leaves it as it was when it fails: refuses (throws
 * an Error with `userFacing`) a folder `outDirProblem` refuses; the build writes into `staging`
 * and, once it has written everything, `commit` puts that in place of what the last build wrote.
 * A build refused midway (`abandon`) leaves no half-written function and keeps the last build's
 * output whole (what `run --provider aws` runs from).
 */
export function stageOutDir(dir: string, provider: string, where = "build"): StagedOutDir {
  const abs = resolve(dir);
  const problem = outDirProblem(abs, where);
  if (problem) throw Object.assign(new Error(problem), { userFacing: true });
  const existed = existsSync(abs);
  const staging = join(abs, OUT_DIR_STAGING);
  // A build that was killed midway left it: ours by its name, in a folder a build wrote.
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  const abandon = () => {
    rmSync(staging, { recursive: true, force: true });
    if (!existed && existsSync(abs) && readdirSync(abs).length === 0) rmdirSync(abs);
  };
  return {
    dir: abs,
    staging,
    final: (path) => join(abs, relative(staging, resolve(path))),
    abandon,
    commit() {
      const marker = readMarker(abs);
      const listed = marker ? marker.files : walk(abs).filter((f) => !f.startsWith(`${OUT_DIR_STAGING}/`));
      const staged = walk(staging);
      const replaced = new Set(staged);
      for (const file of [...listed, OUT_DIR_MARKER]) {
        const path = resolve(abs, file);
        // A marker is data: a listed path outside the folder is never followed.
        if (!path.startsWith(abs + sep) || path.startsWith(staging + sep) || replaced.has(file)) continue;
        rmSync(path, { force: true });
        removeEmptyParents(dirname(path), abs);
      }
      // Each file replaced at once (a rename), so a function running from the folder meanwhile
      // (run --provider aws) never finds one missing or half written.
      for (const file of staged) {
        const to = join(abs, ...file.split("/"));
        mkdirSync(dirname(to), { recursive: true });
        renameSync(join(staging, ...file.split("/")), to);
      }
      rmSync(staging, { recursive: true, force: true });
      const written: Marker = { tool: "nitric-like", provider, files: staged.sort() };
      writeFileSync(join(abs, OUT_DIR_MARKER), `${JSON.stringify(written, null, 2)}\n`);
    },
  };
}
