/**
 * Why a service failed, in the two lines `run` prints instead of its whole output (more when the
 * error's message has several): where (the first stack frame in the project's own files, as
 * file:line), what (the error's message, bounded), and the fix (for a package that is not
 * installed, the install command of the project's package manager).
 */
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, isAbsolute, join, relative } from "node:path";
import { boundedMessage, MAX_MESSAGE_LINES, unindentedMessage } from "@nitric-like/provider-kit";
import { UNSETTLED_AWAIT_EXIT_CODE } from "./boot-thread.js";

/** A failure, ready to print. */
export interface FailureCause {
  /** `services/chat.ts:12`, when a frame or an import points into the project. */
  location?: string;
  /** The error's message (its class too when it is not a plain Error). */
  message: string;
  /** What to do, a sentence. */
  fix: string;
  /**
   * True when Node printed no error: the message is how the service ended (failureCause's
   * `ended`) and its last lines of output, so a caller need not say how it ended again.
   */
  lastOutput?: true;
}

/** Lockfiles and the command each package manager installs a package with, first match wins. */
const MANAGERS: { lockfile: string; add: string; all: string }[] = [
  { lockfile: "pnpm-lock.yaml", add: "pnpm add", all: "pnpm install" },
  { lockfile: "yarn.lock", add: "yarn add", all: "yarn install" },
  { lockfile: "bun.lock", add: "bun add", all: "bun install" },
  { lockfile: "bun.lockb", add: "bun add", all: "bun install" },
  { lockfile: "package-lock.json", add: "npm install", all: "npm install" },
];

/** The package manager of the project in `dir`: the one whose lockfile is nearest (npm without one). */
function managerOf(dir: string): (typeof MANAGERS)[number] {
  for (let at = dir; ; at = dirname(at)) {
    const found = MANAGERS.find((m) => existsSync(join(at, m.lockfile)));
    if (found) return found;
    if (dirname(at) === at) return MANAGERS[MANAGERS.length - 1] as (typeof MANAGERS)[number];
  }
}

/**
 * The command that installs `pkg` in the project in `dir`: its package manager is the one whose
 * lockfile is nearest (the project's folder, then its parents, as for a workspace); npm without one.
 */
export function installCommand(dir: string, pkg: string): string {
  return `${managerOf(dir).add} ${pkg}`;
}

/**
 * What to do about a package import the bundler could not resolve: when the project's package.json
 * lists the package, its packages are not installed (a fresh clone, a new project before `npm
 * install`), so install them all; otherwise add it.
 */
export function missingPackageFix(projectDir: string, specifier: string): string {
  const pkg = packageOf(specifier);
  let listed = false;
  try {
    const manifest = JSON.parse(readFileSync(join(projectDir, "package.json"), "utf8")) as Record<string, unknown>;
    listed = ["dependencies", "devDependencies", "optionalDependencies", "peerDependencies"].some((field) => {
      const deps = manifest[field];
      return typeof deps === "object" && deps !== null && Object.hasOwn(deps, pkg);
    });
  } catch {
    // No package.json, or not JSON: nothing says the package is meant to be there.
  }
  return listed
    ? `${pkg} is in package.json but not installed: install the project's packages with ${managerOf(projectDir).all}`
    : `install it: ${installCommand(projectDir, pkg)}`;
}

/** The package a bare import names: `@scope/name` or `name`, without a subpath. */
function packageOf(specifier: string): string {
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : (parts[0] ?? specifier);
}

const MISSING_PACKAGE = [
  /Cannot find package '([^']+)'/,
  /Cannot find module '([^'./][^']*)'/,
  /Could not resolve "([^"./][^"]*)"/,
];

/**
 * esbuild's CLI (a `start` command's build step) failing on an import it cannot resolve: it prints
 * `✘ [ERROR] Could not resolve "x"` (`X [ERROR]` where the terminal lacks ✘) and exits, so no
 * error of Node's ends that output.
 */
const BUILD_UNRESOLVED = /^\S* ?\[ERROR\] Could not resolve "([^"./][^"]*)"/m;

/** A line such as `Error: boom`, `TypeError [ERR_X]: boom`, `Uncaught _NitricLikeError: boom`. */
const ERROR_LINE = /^(?:Uncaught )?([A-Za-z_$][\w$]*)(?: \[[A-Z0-9_]+\])?: (.+)$/;
/** A stack frame's file, line and column (the last frame ends in ` {` when Node shows the error's properties after it). */
const FRAME = /^\s+at (?:.*? \()?((?:file:\/\/)?\/[^():]+):(\d+):(\d+)\)?(?: \{)?$/;
/**
 * A line that starts Node's print of an uncaught error: a thread's `Uncaught X: ...`, or a
 * process's `TypeError: ...` (a name ending in Error or Exception), at the start of the line. Other
 * lines that read as `word: text` may be the service's own log.
 */
function isPrintedError(line: string): boolean {
  const m = ERROR_LINE.exec(line);
  return m !== null && (line.startsWith("Uncaught ") || /(Error|Exception)$/.test(m[1] as string));
}

/**
 * The line Node puts between an error's frames and those of where it was emitted, when the error
 * ended the service as an 'error' event no one listened to (`emitter.emit("error", err)`, a
 * Worker whose thread threw): `Emitted 'error' event at:`, `Emitted 'error' event on Worker
 * instance at:`. The frames after it, and the error's properties, are still that error's print.
 */
const EMITTED_AT = /^Emitted 'error' event (?:on .+ instance )?at:$/;

/** Any stack frame: where a multi-line message ends in Node's print of an error. */
const ANY_FRAME = /^\s+at \S/;
/** A line of the frames Node prints: a frame, or its note of frames left out (`... 4 lines matching cause stack trace ...`). */
const STACK_LINE = /^\s+(?:at \S|\.\.\. \d)/;

/**
 * Reads output line by line and says where the error that ended it starts: the last error Node
 * printed (isPrintedError), when nothing follows it but its own print (its message, its frames,
 * the properties Node shows after them up to the closing `}`, such as its code and [cause]), blank
 * lines, Node's version line, and nitric-like's own notes on the failure (`nitric-like: ...`).
 * An error the service printed and handled (console.error(err) prints it as Node prints an
 * uncaught one) and then went on is not what ended it. After Node's version line (printed as it
 * ends the process for an uncaught error) nothing undoes it: a line read later was written before.
 * An error with no frames counts only with a message of at most MAX_MESSAGE_LINES lines after it,
 * or Node's version line: else it may be a line of the service's own log.
 */
class EndingError {
  /** The index of the last error's first line, or -1 once something else followed it. */
  private at = -1;
  private count = 0;
  private phase: "message" | "frames" | "properties" | "after" | "ended" = "message";
  private messageLines = 0;

  /** Reads the next line; true when it starts an error (it is the ending one until more comes). */
  push(line: string): boolean {
    const i = this.count++;
    if (this.phase === "ended") return false;
    if (this.phase !== "properties" && isPrintedError(line)) {
      this.at = i;
      this.phase = "message";
      this.messageLines = 0;
      return true;
    }
    if (this.at < 0) return false;
    if (this.phase === "properties") {
      if (line === "}") this.phase = "after";
    } else if (this.phase === "message" && !STACK_LINE.test(line) && !line.startsWith("Node.js v")) {
      this.messageLines++;
    } else if (this.phase === "frames" && EMITTED_AT.test(line)) {
      // Where the unheard 'error' event was emitted: its frames follow.
    } else if (this.phase !== "after" && STACK_LINE.test(line)) {
      // Node shows an error's own properties after its last frame, between `{` and `}`.
      this.phase = line.endsWith(" {") ? "properties" : "frames";
    } else if (line.startsWith("Node.js v")) {
      this.phase = "ended";
    } else if (line.trim() === "" || line.startsWith("nitric-like: ")) {
      this.phase = "after";
    } else {
      this.at = -1;
    }
    return false;
  }

  /**
   * The index of the last error's first line while nothing but its print followed it, or -1 (its
   * message may still be going on: see start).
   */
  get last(): number {
    return this.at;
  }

  /** The index (of the lines read) of the first line of the error that ended the output, or -1. */
  get start(): number {
    if (this.at >= 0 && this.phase === "message" && this.messageLines > MAX_MESSAGE_LINES) return -1;
    return this.at;
  }
}

/**
 * A service's last `max` lines of output (in a ring: pushing a line costs no copy), kept to read
 * its failure from (failureCause), and the head of the error that ended the output (EndingError:
 * its first line and the message lines after it) when that has scrolled out: an error whose
 * message is longer than `max` lines is still named. An error followed by other output is
 * forgotten: the service handled it and went on.
 */
export class RecentOutput {
  private readonly ring: string[] = [];
  private pushed = 0;
  private readonly ending = new EndingError();
  /** The ending error's first lines, and the index (of all lines pushed) of its first. */
  private head: { at: number; lines: string[] } | undefined;

  constructor(private readonly max: number) {}

  push(line: string): void {
    if (this.ending.push(line)) this.head = { at: this.pushed, lines: [line] };
    else if (this.head) {
      if (this.ending.last !== this.head.at) this.head = undefined;
      else if (this.head.lines.length <= MAX_MESSAGE_LINES) this.head.lines.push(line);
    }
    this.ring[this.pushed % this.max] = line;
    this.pushed++;
  }

  /** The lines kept, one text: the ending error's head first when it has scrolled out. */
  text(): string {
    const start = Math.max(0, this.pushed - this.max);
    const lines: string[] = [];
    for (let i = start; i < this.pushed; i++) lines.push(this.ring[i % this.max] as string);
    const head = this.head;
    if (head === undefined || head.at >= start || this.ending.start !== head.at) return lines.join("\n");
    const after = Math.max(0, head.at + head.lines.length - start);
    return [...head.lines, ...lines.slice(after)].join("\n");
  }
}

/**
 * The message of the error Node printed at `lines[at]` (`first`: its first line, as read): with
 * the lines that follow it up to the stack's first frame (or Node's version line, when the error
 * has no frames), as unindentedMessage shows them.
 */
function wholeMessage(first: string, lines: string[], at: number): string {
  const rest: string[] = [];
  for (let i = at + 1; i < lines.length; i++) {
    const line = lines[i] ?? "";
    if (ANY_FRAME.test(line) || line.startsWith("Node.js v")) break;
    rest.push(line);
  }
  return unindentedMessage([first, ...rest]);
}

/**
 * What a service's exit code means where Node says nothing of it (`file`: its entry, as the project
 * names it), for the collect pass and `run`'s supervisor alike: for Node's code 13, a top-level
 * await nothing was left to settle, and where to look; undefined for any other code.
 */
export function exitCodeMeaning(code: number | null, file: string): string | undefined {
  if (code !== UNSETTLED_AWAIT_EXIT_CODE) return undefined;
  return `Node's code for a module whose top-level await never settled, nothing being left that could settle it (a promise nothing resolves); look in ${file}, and what it imports, for that await, and register handlers at module load, before any await that may not settle`;
}

/** What to do about a failure of no kind failureCause knows, under `run`. */
const RUN_FIX = "fix it and save: run starts it again when one of its files changes";

/**
 * Reads a failed service's output (stderr as Node prints an uncaught error) and says why it failed.
 * `projectDir` makes locations relative; `files` are the project files the service is built from,
 * searched for the import of a missing package; `fix`: what to do about a failure of no kind it
 * knows (`run`'s, by default); `ended`: how it ended, such as "exited with code 1", and
 * `meaning`: what that means (exitCodeMeaning). When Node printed no error (a service that logged
 * its problem and exited), no line of its own log is taken for one: the cause is how it ended,
 * what that means, and its last lines of output (lastOutputOf).
 */
export function failureCause(
  output: string,
  projectDir: string,
  files: Iterable<string> = [],
  fix = RUN_FIX,
  ended?: string,
  meaning?: string,
): FailureCause {
  const lines = output.split("\n");
  let message: string | undefined;
  // The error Node printed as it ended the service: the last, with nothing but its own print after
  // it (an error the service printed and went on from is not the cause).
  const ending = new EndingError();
  for (const line of lines) ending.push(line);
  const errorAt = ending.start;
  const m = ERROR_LINE.exec(lines[errorAt]?.trim() ?? "");
  if (m) {
    const kind = (m[1] as string).replace(/^_+/, "");
    const first = kind === "Error" || kind === "NitricLikeError" ? (m[2] as string) : `${kind}: ${m[2]}`;
    message = boundedMessage(wholeMessage(first, lines, errorAt));
  }
  // Only in the error that ended the service: a line the service logged before (a handled import
  // of an optional package) says nothing about why it ended. Where Node printed none, esbuild's
  // CLI may have ended it, printing what it could not resolve as its own errors.
  const endingText = errorAt < 0 ? "" : lines.slice(errorAt).join("\n");
  const missing =
    errorAt < 0
      ? BUILD_UNRESOLVED.exec(output)?.[1]
      : MISSING_PACKAGE.map((r) => r.exec(endingText)?.[1]).find((p) => p !== undefined);
  if (missing !== undefined) {
    const pkg = packageOf(missing);
    const location = importLocation(pkg, projectDir, files);
    return {
      ...(location === undefined ? {} : { location }),
      message: `cannot find package "${pkg}"`,
      fix: missingPackageFix(projectDir, pkg),
    };
  }
  // Node (before it strips types) meeting a TypeScript file: a `start` command's `node x.ts`. Only
  // in the error that ended the service, as for a missing package: a service that logged such an
  // error (an optional .ts plugin it could not import) and went on ended for another reason.
  const typescript = /ERR_UNKNOWN_FILE_EXTENSION[\s\S]*?Unknown file extension "(\.[mc]?tsx?)" for (\S+)/.exec(
    endingText,
  );
  if (typescript) {
    const rel = relative(projectDir, typescript[2] as string);
    return {
      message: `node cannot run the TypeScript file ${rel.startsWith("..") ? typescript[2] : rel} by itself`,
      fix: 'remove the service\'s "start" from the project file (nitric-like bundles TypeScript itself), or start it with a TypeScript runner, such as "start: npx tsx $SERVICE_PATH"',
    };
  }
  if (message === undefined) {
    const how = ended === undefined ? "it printed no error" : `it ${ended}`;
    const means = meaning === undefined ? "" : `: ${meaning}`;
    const last = lastOutputOf(lines);
    return {
      message:
        last === undefined
          ? `${how}${ended === undefined ? " nor anything else" : ", printing nothing"}${means}`
          : `${how}${means}; its last output:${last.includes("\n") ? "\n" : " "}${last}`,
      fix,
      lastOutput: true,
    };
  }
  const gone = goneExport(message, projectDir, files);
  if (gone !== undefined) return gone;
  const location = projectLocation(lines.slice(errorAt), projectDir);
  return { ...(location === undefined ? {} : { location }), message, fix };
}

/**
 * The first of stack frames `frames` (lines as Node prints them: `    at f (/p/a.ts:3:9)`, other
 * lines skipped) in the project's own files, as `services/a.ts:3`: not in node_modules, nor in
 * nitric-like's build folder, nor outside `projectDir`.
 */
export function projectLocation(frames: Iterable<string>, projectDir: string): string | undefined {
  for (const line of frames) {
    const frame = FRAME.exec(line);
    if (!frame) continue;
    const file = (frame[1] as string).replace(/^file:\/\//, "");
    if (file.includes("/node_modules/") || file.includes("/.nitric-like/")) continue;
    const rel = relative(projectDir, file);
    if (rel.startsWith("..") || isAbsolute(rel)) continue;
    return `${rel}:${frame[2]}`;
  }
  return undefined;
}

/**
 * Functions a package's users import from its earlier versions that its installed one no longer
 * exports, and where nitric-like has them: by package, then by name. Such an import resolves to
 * undefined (the bundler cannot check what a CommonJS package exports), and its first call fails
 * with esbuild's `(0 , import_sdk.collection) is not a function`.
 */
const GONE_EXPORTS: ReadonlyMap<string, ReadonlyMap<string, string>> = new Map([
  [
    "@nitric/sdk",
    new Map([
      [
        "collection",
        'nitric-like keeps Nitric\'s earlier document API in its own SDK: import { collection } from "@nitric-like/sdk" (README: collection(name).for(...))',
      ],
    ]),
  ],
]);

/** A bundled call of a named import that is not a function: esbuild's `(0 , import_x.name)`. */
const CALL_OF_IMPORT = /\(0 , import_[\w$]+\.([\w$]+)\) is not a function/;

/**
 * Node's ESM loader refusing a named import a package does not export (a bundle that leaves the
 * package external, as spec's and build's collect pass does): `The requested module '@nitric/sdk'
 * does not provide an export named 'collection'`.
 */
const MISSING_NAMED_EXPORT = /The requested module '([^']+)' does not provide an export named '([\w$]+)'/;

/**
 * The cause when `message` is a call of a function GONE_EXPORTS lists, or Node's refusal of its
 * import, which a project file imports by name from its package: said as that import, at its
 * line, with where nitric-like has it.
 */
function goneExport(message: string, projectDir: string, files: Iterable<string>): FailureCause | undefined {
  const refused = MISSING_NAMED_EXPORT.exec(message);
  const name = refused?.[2] ?? CALL_OF_IMPORT.exec(message)?.[1];
  if (name === undefined) return undefined;
  for (const [pkg, names] of GONE_EXPORTS) {
    if (refused !== null && refused[1] !== pkg) continue;
    const fix = names.get(name);
    if (fix === undefined) continue;
    const imported = new RegExp(
      `import\\s*(?:type\\s+)?\\{[^}]*\\b${escapeRegExp(name)}\\b[^}]*\\}\\s*from\\s*["']${escapeRegExp(pkg)}["']`,
    );
    const location = matchLocation(imported, projectDir, files);
    if (location === undefined) continue;
    const version = installedVersion(projectDir, pkg);
    return {
      location,
      message: `${pkg}${version === undefined ? "" : ` ${version}`} has no ${name}(), which the service imports from it`,
      fix,
    };
  }
  return undefined;
}

/** The version of `pkg` installed in the project, if it can be read. */
function installedVersion(projectDir: string, pkg: string): string | undefined {
  try {
    const path = createRequire(join(projectDir, "package.json")).resolve(`${pkg}/package.json`);
    const manifest = JSON.parse(readFileSync(path, "utf8")) as { version?: unknown };
    return typeof manifest.version === "string" ? manifest.version : undefined;
  } catch {
    return undefined;
  }
}

/** Where the project's own code first matches `pattern` (`file:line`), reading each file whole. */
function matchLocation(pattern: RegExp, projectDir: string, files: Iterable<string>): string | undefined {
  for (const file of files) {
    if (file.includes("/node_modules/")) continue;
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    const found = pattern.exec(text);
    if (found) return `${relative(projectDir, file)}:${text.slice(0, found.index).split("\n").length}`;
  }
  return undefined;
}

/** An export of a function named `handler`, Lambda's entry point: ESM or CommonJS. */
const LAMBDA_HANDLER =
  /(?:^|\n)\s*export\s+(?:const|let|var|(?:async\s+)?function\*?)\s+handler\b|\bexports\.handler\s*=|\bexport\s*\{[^}]*\bhandler\b[^}]*\}/;

/**
 * What to do about a service that ended by itself registering no handler when its entry file
 * exports `handler`: it is written as a Lambda function (as Architect's @ws functions are), which
 * nothing here calls. Undefined when the file does not read so.
 */
export function lambdaHandlerFix(path: string, file: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
  if (!LAMBDA_HANDLER.test(text)) return undefined;
  return `${file} exports handler(event), a Lambda function's entry, which nitric-like does not call: register handlers on a socket instead, such as websocket("ws").on("message", (ctx) => ...) with event.body as ctx.text() and event.requestContext.connectionId as ctx.connectionId (README: Code written for Architect)`;
}

/** Where the project's own code imports `pkg` (`file:line`), if it does so literally. */
function importLocation(pkg: string, projectDir: string, files: Iterable<string>): string | undefined {
  const quoted = new RegExp(
    `(?:from\\s*|import\\s*\\(?\\s*|require\\s*\\(\\s*)["']${escapeRegExp(pkg)}(?:/[^"']*)?["']`,
  );
  return matchLocation(quoted, projectDir, files);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Most lines of a failed service's output lastOutputOf shows. */
export const TAIL_LINES = 10;
/** Most characters of each of them. */
export const TAIL_LINE_CHARS = 200;

/**
 * The last lines of a failed service's output (TAIL_LINES at most, each cut to TAIL_LINE_CHARS,
 * after a line counting those before), for a failure no error Node printed explains: a service
 * that logged its problem and exited. Undefined when it printed nothing.
 */
function lastOutputOf(lines: readonly string[]): string | undefined {
  const shown = lines.map((l) => l.trimEnd()).filter((l) => l.trim() !== "" && !l.startsWith("Node.js v"));
  if (shown.length === 0) return undefined;
  const tail = shown
    .slice(-TAIL_LINES)
    .map((l) => (l.length > TAIL_LINE_CHARS ? `${l.slice(0, TAIL_LINE_CHARS)}... (cut)` : l));
  return shown.length > TAIL_LINES
    ? [`... (${shown.length - TAIL_LINES} lines before)`, ...tail].join("\n")
    : tail.join("\n");
}

/**
 * The cause as `run` prints it: `service "x" (file:line): message` (a message's further lines
 * below it, indented by 4) and the fix to print on a line of its own after.
 */
export function formatFailure(service: string, file: string, when: string, cause: FailureCause): [string, string] {
  const message = cause.message.replace(/\n(?=.)/g, "\n    ");
  return [`service ${JSON.stringify(service)} (${cause.location ?? file}) failed ${when}: ${message}`, cause.fix];
}
