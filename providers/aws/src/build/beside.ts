/**
 * Files a function's code reads from beside itself. A package (or a service) that reads
 * `path.join(__dirname, "data.json")` or `new URL("./data.json", import.meta.url)` as it runs
 * finds its own folder in node_modules under `run`; in a function, bundled into one file, its
 * `__dirname` and `import.meta.url` are the bundle's, the function's folder (/var/task on AWS),
 * where no such file is, and it fails there only, with ENOENT. esbuild cannot see these reads (they
 * are ordinary calls with a computed path) and says nothing of them.
 *
 * What is found, and how reliably: in each bundled file that names `__dirname`, `__filename` or
 * `import.meta`, each string literal that names an existing data file (or a folder of them)
 * relative to that file's folder is taken as read from beside it. That relative path is where
 * the bundled code looks, relative to the function's folder, so the build copies the file there
 * (the function's folder and its zip). A literal is not a read, so a file can be copied that
 * is never read (it costs its bytes, which the build prints); a read whose path is computed
 * from variables is not found. A path that leaves the file's folder (`../data.json`) would leave
 * the function's folder, and two files that want the same place cannot both have it: those are
 * not copied but named in a warning, with the package and the file. A literal in the project's
 * own code that looks like such a file's path but names nothing yet is kept (`awaited`), so `run`
 * can watch for the file and copy it once it is made.
 */
import { createHash } from "node:crypto";
import { existsSync, lstatSync, readdirSync, readFileSync, realpathSync, statSync } from "node:fs";
import { dirname, join, posix, relative, resolve, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { packageOwner } from "@nitric-like/provider-kit/build";
import { workerLiterals } from "@nitric-like/provider-kit/worker-scripts";
import { isPackageFile, shownPath } from "./shown-path.js";

/** A file to copy into a function's folder. */
export interface BesideFile {
  /** Its path on this machine. */
  from: string;
  /** Its path in the function's folder (forward slashes). */
  name: string;
  bytes: number;
  /** The bundled file that names it, as shownPath names it (never a path leaving the project). */
  readBy: string;
  /** The package of that file; undefined for the project's own. */
  pkg: string | undefined;
  /** Its content's SHA-256, for the artifact's key. */
  digest: string;
  /**
   * The folder the read named, when the file is copied as one of that folder's (its every data
   * file is): a file added to it later is copied too, by the next build.
   */
  folder?: string;
}

/** What `filesReadBeside` found. */
export interface BesideFiles {
  copy: BesideFile[];
  /** Reads that cannot be served from the function's folder, one sentence each (without the service). */
  problems: string[];
  /**
   * The files the project's own code names as it would name a data file beside it, that do not
   * exist yet (absolute paths; at most MAX_AWAITED): once one is made, the next build copies it,
   * so `run` watches for them.
   */
  awaited: string[];
  /**
   * The project's own `new URL("<literal>", import.meta.url)` that name a file outside the project
   * (`"../../../etc/passwd"`, or a link that points out of it), one sentence each (without the
   * service): the build refuses them, as it never puts a file from outside the project into a
   * function's zip.
   */
  refused: string[];
}

/**
 * How many missing files one bundle's literals may have `run` wait for: a literal is not a read,
 * so the bound keeps a file full of path-like strings from watching a folder for each.
 */
export const MAX_AWAITED = 32;
/** A literal that names a data file: a relative path of plain segments, its last with an extension. */
const FILE_LIKE = /^(?:[\w@+-][\w@+.-]*\/)*[\w@+-][\w@+.-]*\.[A-Za-z0-9]{1,10}$/;

/** Names that mark a file as reading relative to its own place. */
const OWN_PLACE = /\b__dirname\b|\b__filename\b|\bimport\.meta\b/;
/** String literals: quoted, or a template without substitutions; and a template's tail after `${__dirname}`. */
const LITERAL =
  /"((?:[^"\\\n]|\\.){1,200})"|'((?:[^'\\\n]|\\.){1,200})'|`([^`\\$\n]{1,200})`|\$\{\s*__dirname\s*\}([^`$\n]{1,200})`/g;
/**
 * `new URL("<literal>", import.meta.url)`: a file the code names by its URL beside its own, the
 * form Node's documentation gives (and a worker's: `new Worker(new URL("./w.js", import.meta.url))`).
 */
const URL_BESIDE =
  /\bnew\s+URL\(\s*(?:"((?:[^"\\\n]|\\.){1,200})"|'((?:[^'\\\n]|\\.){1,200})'|`([^`\\$\n]{1,200})`)\s*,\s*import\.meta\.url\s*\)/g;
/** Code esbuild bundles: named by a URL beside the code and not started as a worker (workers.ts), it is not carried into the function. */
const CODE = /\.[cm]?[jt]sx?$/;
/** Code (esbuild bundles it, or it is not data), addons (native.ts), types and maps. */
const NOT_DATA = /\.(?:[cm]?[jt]sx?|node)$|\.d\.[cm]?ts$|\.map$/;
/** The files a function's folder holds already. */
const TAKEN = new Set(["index.cjs", "index.mjs", "index.cjs.map", "index.mjs.map"]);

/** A literal as a path relative to the file's folder, or undefined when it cannot be one. */
function relativePathOf(literal: string): string | undefined {
  if (literal.includes("://") || literal.startsWith("node:") || /[*?<>|\0\s]/.test(literal)) return undefined;
  const trimmed = literal.replace(/^\.?\/+/, "").replaceAll("\\", "/");
  if (trimmed === "" || trimmed === "." || trimmed === "..") return undefined;
  const normal = posix.normalize(trimmed);
  return normal.startsWith("node_modules/") || normal === "node_modules" ? undefined : normal;
}

/** The data files under `dir` (relative, forward slashes), or undefined when it holds code. */
function dataFolder(dir: string, inputs: ReadonlySet<string>): string[] | undefined {
  const out: string[] = [];
  const walk = (at: string, prefix: string): boolean => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) {
        if (entry.name === "node_modules" || !walk(path, `${prefix}${entry.name}/`)) return false;
      } else if (entry.isFile()) {
        if (NOT_DATA.test(entry.name) || inputs.has(path)) return false;
        out.push(`${prefix}${entry.name}`);
      }
    }
    return true;
  };
  return walk(dir, "") ? out : undefined;
}

/** A file's content digest, to tell the same file from another at the same place. */
const digest = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

/**
 * The files the bundle's `inputs` (esbuild's metafile inputs, relative to `projectDir`) read
 * from beside themselves, to copy into the function's folder, and the reads that cannot be.
 */
export function filesReadBeside(
  projectDir: string,
  inputs: readonly string[],
  {
    workers = new Set<string>(),
  }: {
    /**
     * The worker scripts bundled into the function (workers.ts; absolute paths): not warned of.
     * Their bundles' names (`.cjs`, `.mjs`) are code, so no data file takes their place.
     */
    workers?: ReadonlySet<string>;
  } = {},
): BesideFiles {
  const absolute = new Set(inputs.map((input) => resolve(projectDir, input)));
  const byName = new Map<string, BesideFile>();
  const awaited = new Set<string>();
  const problems: string[] = [];
  const refused: string[] = [];
  const root = realpathOr(projectDir);
  const said = new Set<string>();
  const say = (problem: string) => {
    if (said.has(problem)) return;
    said.add(problem);
    problems.push(problem);
  };
  for (const input of inputs) {
    const file = resolve(projectDir, input);
    if (!NOT_DATA.test(file) || !existsSync(file)) continue;
    let source: string;
    try {
      source = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    if (!OWN_PLACE.test(source)) continue;
    const dir = dirname(file);
    const pkg = isPackageFile(input) ? packageOwner(dir) : undefined;
    const readBy = shownPath(projectDir, input);
    const who = pkg === undefined ? readBy : `package "${pkg}" (${readBy})`;
    if (pkg === undefined && !isPackageFile(input)) {
      for (const problem of ownUrls(projectDir, file, readBy, source, workers)) {
        if (problem.refused) refused.push(problem.text);
        else say(problem.text);
      }
    } else for (const problem of packageWorkers(projectDir, file, who, source)) say(problem);
    for (const match of source.matchAll(LITERAL)) {
      const literal = match[1] ?? match[2] ?? match[3] ?? match[4] ?? "";
      const name = relativePathOf(literal);
      if (name === undefined) continue;
      const from = resolve(dir, name);
      if (absolute.has(from)) continue;
      if (!existsSync(from)) {
        // The project's own data file, not made yet (packages ship theirs): the build copies it
        // once it is there, so run waits for it.
        if (!isPackageFile(input) && awaited.size < MAX_AWAITED && awaitable(name)) awaited.add(from);
        continue;
      }
      const own = pkg === undefined && !isPackageFile(input);
      if (own && inProject(projectDir, from) && !inProject(root, realpathOr(from))) {
        refused.push(
          `${readBy} names ${shownPath(projectDir, from)} (${JSON.stringify(literal)}), a link to a file outside the project: a build never copies a file from outside the project into a function; copy the file into the project instead of linking it`,
        );
        continue;
      }
      const stat = statSync(from);
      // A link to a folder elsewhere (the machine's root, say) is not the package's data.
      if (stat.isDirectory() && lstatSync(from).isSymbolicLink()) continue;
      const shown = shownPath(projectDir, from);
      if (/^\.env(\.|$)/.test(posix.basename(name))) {
        say(
          `${who} reads ${shown} from beside itself: it is not copied into the function, whose zip would carry its values to S3 in plaintext; give the functions variables with --env-from and secrets with secret()`,
        );
        continue;
      }
      let files: [string, string][];
      let folder: string | undefined;
      if (stat.isFile()) {
        if (NOT_DATA.test(from)) continue;
        files = [[from, name]];
      } else if (stat.isDirectory()) {
        const inside = dataFolder(from, absolute);
        if (inside === undefined || inside.length === 0) continue;
        files = inside.map((f) => [join(from, f), `${name}/${f}`]);
        folder = from;
      } else continue;
      if (name.startsWith("../")) {
        say(
          `${who} reads ${shown} from beside itself (${JSON.stringify(literal)}), a path that leaves the function's folder once bundled: on AWS it fails with ENOENT; ${pkg === undefined && !isPackageFile(input) ? `keep the file in ${shownPath(projectDir, dir)}/ or a folder below it, which the function's folder stands for, or import it` : "use a package that does not read files as it runs, or read the file in your own code (import it, or declare it as data)"}`,
        );
        continue;
      }
      for (const [path, at] of files) {
        if (TAKEN.has(at)) {
          say(
            `${who} reads ${shown} from beside itself, where the function's own ${at} is: on AWS it reads that instead`,
          );
          continue;
        }
        const content = digest(path);
        const held = byName.get(at);
        if (held !== undefined) {
          if (held.digest !== content)
            say(
              `${who} reads ${at} from beside itself, as ${held.pkg === undefined ? held.readBy : `package "${held.pkg}"`} does, a different file: the function's folder holds only ${held.pkg === undefined ? "its" : `"${held.pkg}"'s`} (${shownPath(projectDir, held.from)}), so on AWS ${pkg === undefined ? readBy : `"${pkg}"`} reads the wrong one`,
            );
          continue;
        }
        byName.set(at, {
          from: path,
          name: at,
          bytes: statSync(path).size,
          readBy,
          pkg,
          digest: content,
          ...(folder === undefined ? {} : { folder }),
        });
      }
    }
  }
  const copy = [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { copy, problems, awaited: [...awaited].sort(), refused: [...new Set(refused)] };
}

/** `path` with its links resolved, or as it is when it cannot be. */
function realpathOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/** Whether `path` (absolute) is `projectDir` or inside it. */
function inProject(projectDir: string, path: string): boolean {
  const rel = relative(projectDir, path);
  return rel === "" || (rel !== ".." && !rel.startsWith(`..${sep}`) && !rel.startsWith("/"));
}

/**
 * What the project's own `file` names with `new URL("<literal>", import.meta.url)` that the
 * function cannot carry: a file outside the project (refused; by the URL's own rules, so `%2e%2e`
 * and an absolute `file:` URL count), and code beside it, which is bundled only when imported or
 * started as a worker (`workers`, which workers.ts bundles into the function).
 */
function ownUrls(
  projectDir: string,
  file: string,
  readBy: string,
  source: string,
  workers: ReadonlySet<string>,
): { text: string; refused: boolean }[] {
  const out: { text: string; refused: boolean }[] = [];
  for (const match of source.matchAll(URL_BESIDE)) {
    const literal = match[1] ?? match[2] ?? match[3] ?? "";
    let target: URL;
    try {
      target = new URL(literal, pathToFileURL(file));
    } catch {
      continue;
    }
    if (target.protocol !== "file:") continue;
    let path: string;
    try {
      path = fileURLToPath(target);
    } catch {
      continue;
    }
    const named = `new URL(${JSON.stringify(literal)}, import.meta.url)`;
    // A link inside the project that points out of it is refused where the file is copied.
    if (!inProject(projectDir, path)) {
      out.push({
        refused: true,
        text: `${readBy} names a file outside the project with ${named}: a build never copies a file from outside the project into a function; put the file in the project, in ${shownPath(projectDir, dirname(file))}/ or a folder below it`,
      });
      continue;
    }
    if (CODE.test(path) && existsSync(path) && !workers.has(path)) {
      out.push({
        refused: false,
        text: `${readBy} names ${shownPath(projectDir, path)} with ${named}, code the function does not carry: only what the service imports is bundled, and a worker's script its own code starts as new Worker(${named}); on AWS it is not found, so start the worker that way, import what it does instead, or run it in the service's own thread`,
      });
    }
  }
  return out;
}

/**
 * `new Worker(join(__dirname, "lib", "worker.js"))` (or `path.resolve`), `` `${__dirname}/<literal>` ``,
 * `__dirname + "<literal>"`: how a CommonJS package starts a worker on a script beside itself.
 */
const DIRNAME_WORKER =
  /\bnew\s+Worker\(\s*(?:(?:[\w$]+\.)?(?:join|resolve)\(\s*__dirname((?:\s*,\s*(?:"[^"\\\n]{1,200}"|'[^'\\\n]{1,200}'))+)\s*\)|`\$\{\s*__dirname\s*\}([^`$\n]{1,200})`|__dirname\s*\+\s*(?:"([^"\\\n]{1,200})"|'([^'\\\n]{1,200})'))/g;

/**
 * The worker scripts a package's `file` starts beside itself (`new Worker(new URL("./w.js",
 * import.meta.url))`, DIRNAME_WORKER), which the function does not carry: esbuild bundles only
 * what is imported, and the build bundles only the project's own workers (workers.ts), so on AWS
 * the worker is looked for in the function's folder and not found. Said, with the package, its
 * file, the script and the fix; `who` names the package and file.
 */
function packageWorkers(projectDir: string, file: string, who: string, source: string): string[] {
  const named: { path: string; how: string }[] = [];
  for (const { literal } of workerLiterals(source)) {
    try {
      const url = new URL(literal, pathToFileURL(file));
      if (url.protocol === "file:")
        named.push({ path: fileURLToPath(url), how: `new URL(${JSON.stringify(literal)}, import.meta.url)` });
    } catch {
      // Not a URL: nothing the worker could start either.
    }
  }
  for (const match of source.matchAll(DIRNAME_WORKER)) {
    const how = match[0].slice(match[0].indexOf("(") + 1).trimStart();
    const parts =
      match[1] === undefined
        ? [`./${match[2] ?? match[3] ?? match[4] ?? ""}`]
        : [...match[1].matchAll(/"([^"]*)"|'([^']*)'/g)].map((m) => m[1] ?? m[2] ?? "");
    named.push({ path: join(dirname(file), ...parts), how });
  }
  const out: string[] = [];
  for (const { path, how } of named) {
    if (!CODE.test(path) || !existsSync(path)) continue;
    out.push(
      `${who} starts ${shownPath(projectDir, path)} as a worker thread (new Worker(${how})), a script the function does not carry: only what the service imports is bundled, and only the worker scripts of the project's own code, so on AWS that worker is not found and fails to start; use the package's option to work without a worker thread if it has one, or write a worker script in the project that imports what that worker runs and start it from the service's own code as new Worker(new URL("./worker.js", import.meta.url)), which the build bundles into the function`,
    );
  }
  return out;
}

/** Whether a literal's relative path (relativePathOf) is one a data file of the project could have, beside the code. */
function awaitable(name: string): boolean {
  return (
    FILE_LIKE.test(name) &&
    !name.startsWith("../") &&
    !NOT_DATA.test(name) &&
    !/^\.env(\.|$)/.test(posix.basename(name)) &&
    !TAKEN.has(name)
  );
}
