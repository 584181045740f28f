/**
 * Stacks that name the service's TypeScript files and lines in a function. Its bundle is one
 * minified file, whose frames (`index.cjs:8:7380`) say nothing to its author; the zip carries the
 * bundle's source map beside it (build/bundle.ts), and this reads it the first time a stack is
 * formatted, so a function that never formats one pays nothing for it. Node's own
 * `--enable-source-maps` would read and parse the map as the bundle loads, at every cold start
 * (about 10 ms and 7 MB for a 340 KB bundle here).
 *
 * A frame in the bundle becomes the frame of its source, resolved against the bundle's folder, as
 * Node resolves one: on Lambda `/var/task/services/chat.ts:12:5`; under `run --provider aws`,
 * whose emulator names the project in SOURCE_DIR_VAR, against the project, as the local
 * provider's stacks read: `<project>/services/chat.ts:12:5`. Other frames, and every stack when
 * the map cannot be read, stay as V8 writes them.
 */
import { readFileSync } from "node:fs";
import { SourceMap } from "node:module";
import { dirname, resolve } from "node:path";
import { pathToFileURL } from "node:url";

/**
 * Set by `run --provider aws`'s emulator in each function's environment: the project's folder,
 * which a frame's source (`services/chat.ts`, `node_modules/...`) is resolved against instead of
 * the copy of the function `run` built, so a frame names the file the user edits.
 */
export const SOURCE_DIR_VAR = "NITRIC_LIKE_SOURCE_DIR";

/** What V8 writes for an error without a stack formatter: its `toString()` and a line per frame. */
function header(error: unknown): string {
  try {
    return Error.prototype.toString.call(error);
  } catch {
    return "Error";
  }
}

/**
 * Maps the frames in `bundle` (the function's file, `__filename` in its entry) through
 * `<bundle>.map` in every stack formatted from now on. Code that sets its own
 * `Error.prepareStackTrace` later replaces this, as it would replace Node's.
 */
export function mapStacks(bundle: string): void {
  const dir = process.env[SOURCE_DIR_VAR] || dirname(bundle);
  const url = pathToFileURL(bundle).href;
  /** undefined: not read yet; null: none to read. */
  let map: SourceMap | null | undefined;
  const sourceMap = (): SourceMap | null => {
    if (map === undefined) {
      try {
        map = new SourceMap(JSON.parse(readFileSync(`${bundle}.map`, "utf8")));
      } catch {
        map = null;
      }
    }
    return map;
  };
  const frame = (site: NodeJS.CallSite): string => {
    try {
      return mapped(site);
    } catch {
      return String(site);
    }
  };
  const mapped = (site: NodeJS.CallSite): string => {
    const text = String(site);
    const file = site.getFileName();
    if (file !== bundle && file !== url) return text;
    const line = site.getLineNumber();
    const column = site.getColumnNumber();
    if (line === null || column === null) return text;
    const entry = sourceMap()?.findEntry(line - 1, column - 1) as
      | { originalSource?: string; originalLine?: number; originalColumn?: number }
      | undefined;
    if (entry?.originalSource === undefined || entry.originalLine === undefined || entry.originalColumn === undefined)
      return text;
    const at = `${file}:${line}:${column}`;
    const i = text.lastIndexOf(at);
    if (i < 0) return text;
    const source = `${resolve(dir, entry.originalSource)}:${entry.originalLine + 1}:${entry.originalColumn + 1}`;
    return `${text.slice(0, i)}${source}${text.slice(i + at.length)}`;
  };
  Error.prepareStackTrace = (error, sites) => {
    const first = header(error);
    if (sites.length === 0) return first;
    return `${first}\n    at ${sites.map(frame).join("\n    at ")}`;
  };
}
