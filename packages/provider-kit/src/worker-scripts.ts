/**
 * The worker scripts a project's own code starts as `new Worker(new URL("./worker.ts",
 * import.meta.url))`, found and rewritten the same way by `run`'s bundles (a `.ts` script, which
 * Node 20 cannot start by itself, is bundled into `.nitric-like/build`: packages/cli's
 * worker-bundles.ts) and by the AWS build (every such script is bundled into the function's
 * folder: providers/aws's workers.ts).
 */
import { existsSync, realpathSync, statSync } from "node:fs";
import { relative, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/** `new Worker(new URL("<literal>", import.meta.url)`: the literal, in one of three quotes. */
const WORKER_URL =
  /\bnew\s+Worker\(\s*new\s+URL\(\s*(?:"((?:[^"\\\n]|\\.){1,200})"|'((?:[^'\\\n]|\\.){1,200})'|`([^`\\$\n]{1,200})`)\s*,\s*import\.meta\.url\s*\)/g;

/** Code esbuild bundles. */
export const WORKER_CODE = /\.[cm]?[jt]sx?$/;

/** A literal `new Worker(new URL(<literal>, import.meta.url))` in a file's text. */
export interface WorkerLiteral {
  /** The literal as written between its quotes. */
  literal: string;
  /** Where the quoted literal (quotes included) starts and ends in the text. */
  start: number;
  end: number;
}

/** The worker literals in `text`, in order. */
export function workerLiterals(text: string): WorkerLiteral[] {
  const found: WorkerLiteral[] = [];
  for (const match of text.matchAll(WORKER_URL)) {
    const literal = match[1] ?? match[2] ?? match[3] ?? "";
    // The quoted literal: the first quote after `URL(`, its raw text between the quotes.
    const after = match[0].indexOf("URL(") + 4;
    const start = (match.index ?? 0) + after + (match[0].slice(after).search(/["'`]/) ?? 0);
    const end = start + literal.length + 2;
    found.push({ literal, start, end });
  }
  return found;
}

/**
 * `text` with each worker literal `to` names a new one for (a URL, resolved as the old one was
 * against import.meta.url) replaced by it, and nothing else changed: its lines and columns stay
 * where they were up to the literal, so a source map of the file still names its lines.
 */
export function rewriteWorkerLiterals(text: string, to: (literal: string) => string | undefined): string {
  let out = "";
  let at = 0;
  for (const { literal, start, end } of workerLiterals(text)) {
    const replacement = to(literal);
    if (replacement === undefined) continue;
    out += `${text.slice(at, start)}${JSON.stringify(replacement)}`;
    at = end;
  }
  return at === 0 ? text : out + text.slice(at);
}

/** Whether `path` (absolute) is `dir` or inside it. */
export function insideDir(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel === "" || (rel !== ".." && !rel.startsWith(`..${sep}`) && !rel.startsWith("/"));
}

export function realpathOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/**
 * The worker script `literal` names from `file`, when it is code of the project's own (inside
 * `projectDir`, whose real path is `root`, and not a link to a file outside it); else undefined.
 */
export function workerScriptOf(projectDir: string, root: string, file: string, literal: string): string | undefined {
  let path: string;
  try {
    const url = new URL(literal, pathToFileURL(file));
    if (url.protocol !== "file:") return undefined;
    path = fileURLToPath(url);
  } catch {
    return undefined;
  }
  if (!WORKER_CODE.test(path) || !insideDir(projectDir, path) || !existsSync(path)) return undefined;
  // A link in the project to a file outside it: never bundled (the AWS build refuses it).
  if (!insideDir(root, realpathOr(path)) || !statSync(path).isFile()) return undefined;
  return path;
}
