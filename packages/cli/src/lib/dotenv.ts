/**
 * `.env` files. For `nitric-like run`: `.env` and `.env.<environment>` in the project folder (the
 * environment is `run --env`, default `local`), then each `--env-from`, each over the ones before;
 * a variable set in the environment `run` starts in wins over them all. For `build`, `up` and
 * `run --provider aws`: the `--env-from` files alone, which go into every function's environment.
 * All are parsed with Node's own `util.parseEnv` (the format of `node --env-file`: `NAME=value`,
 * `#` comments, quoted values, an `export` prefix; a byte order mark is dropped first). Nothing prints a value: the CLI
 * and the dashboard show names only.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import * as util from "node:util";
import { type Output, UserError } from "./log.js";

/** The variables the `.env` files give, and where they came from. */
export interface DotEnv {
  /** Name → value, `.env.<environment>` over `.env` (the real environment is applied later, in serviceEnv). */
  values: Map<string, string>;
  /** The files read, relative to the project folder, in the order applied (`.env` first). */
  files: string[];
  /** Name → the file whose value it has (as `files` shows it). */
  from: Map<string, string>;
  /** The absolute paths looked at (whether they exist or not), to watch. */
  paths: string[];
}

/** An environment name that can be part of a file name: no path separators, no leading dot. */
const ENVIRONMENT_FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/**
 * Reads `.env` and `.env.<environment>` in `dir` (a missing one is no error), then each of
 * `envFiles` (`--env-from`, as given: relative to the working folder; a missing one is an error),
 * each over the ones before.
 */
export function loadDotEnv(dir: string, environment: string, envFiles: readonly string[] = []): DotEnv {
  const names = [".env"];
  if (ENVIRONMENT_FILE_NAME.test(environment)) names.push(`.env.${environment}`);
  const values = new Map<string, string>();
  const from = new Map<string, string>();
  const files: string[] = [];
  for (const name of names) {
    if (readEnvFile(join(dir, name), name, "run", values, false, from)) files.push(name);
  }
  for (const file of envFiles) readEnvFile(resolve(file), `--env-from ${file}`, "run", values, true, from);
  return {
    values,
    files: [...files, ...envFiles],
    from,
    paths: [...names.map((n) => join(dir, n)), ...envFiles.map((f) => resolve(f))],
  };
}

/** Reads the `--env-from` files of `command`, each over the ones before; a missing one is an error. */
export function loadEnvFiles(
  envFiles: readonly string[],
  command: string,
): { values: Map<string, string>; files: string[] } {
  const values = new Map<string, string>();
  for (const file of envFiles) readEnvFile(resolve(file), `--env-from ${file}`, command, values, true);
  return { values, files: [...envFiles] };
}

/** Parses one env file into `values`; false when it does not exist and need not. */
function readEnvFile(
  path: string,
  shown: string,
  command: string,
  values: Map<string, string>,
  needed: boolean,
  from?: Map<string, string>,
): boolean {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" && !needed) return false;
    if (code === "ENOENT")
      throw new UserError(`${command}: ${shown}: no such file; give the path of a file of NAME=value lines`);
    if (code === "EISDIR") throw new UserError(`${command}: ${shown} is a folder; .env files hold NAME=value lines`);
    throw new UserError(
      `${command}: cannot read ${shown} (${code ?? (error as Error).message}); make it readable by this user`,
    );
  }
  const parseEnv = (util as { parseEnv?: (content: string) => NodeJS.Dict<string> }).parseEnv;
  if (typeof parseEnv !== "function")
    throw new UserError(
      `${command}: reading ${shown} needs Node 20.12 or later (this is ${process.version}); upgrade Node`,
    );
  // A byte order mark (which some Windows editors write) would become part of the first name:
  // "\uFEFFAPI_KEY", a variable no service finds by its name.
  if (text.startsWith("\uFEFF")) text = text.slice(1);
  const parsed = parseEnv(text);
  const lines = text.split(/\r?\n/).map((l, i) => ({ line: i + 1, text: l.trim() }));
  const continued = continuedLines(parsed);
  // A line with no name before its `=` is dropped by Node's parser, with the next variable too.
  const unnamed = lines.filter((l) => /^(?:export[ \t]+)?=/.test(l.text) && !continues(l.text, continued));
  if (unnamed.length > 0) {
    const said = unnamed.map((l) => `line ${l.line} (${JSON.stringify(l.text)})`).join(", ");
    throw new UserError(
      `${command}: ${shown}: ${said} ${unnamed.length === 1 ? "has" : "have"} no name before the =, and Node's parser would drop ${unnamed.length === 1 ? "it" : "each"} and the variable after; write NAME=value, or make ${unnamed.length === 1 ? "it" : "each"} a # comment`,
    );
  }
  // Node's parser fills a plain object, so a `__proto__` line sets its prototype and is lost:
  // refused here rather than dropped without a word.
  if (!Object.hasOwn(parsed, "__proto__") && PROTO_LINE.test(text)) {
    throw new UserError(
      `${command}: ${shown} sets a variable named __proto__, which Node's .env parser cannot keep (it drops it); rename the variable`,
    );
  }
  // Node's parser takes a line with no `=` as the start of the next line's name ("REGION" then
  // "B=2" sets a variable named "REGION\nB"), so the variable that line meant is lost without a
  // word, and the name printed breaks the line: refused, naming each such line.
  const joined = Object.keys(parsed).filter((key) => /[\r\n]/.test(key));
  if (joined.length > 0) {
    const bad = joined.map((key) => {
      const parts = key.split(/\r?\n/).map((p) => p.trim());
      const first = parts[0] ?? "";
      return { line: lines.findIndex((l) => l.text === first) + 1, first, meant: parts[parts.length - 1] ?? "" };
    });
    bad.sort((a, b) => a.line - b.line);
    const said = bad.map((b) => `line ${b.line} (${JSON.stringify(b.first)})`);
    const list = said.length === 1 ? said[0] : `${said.slice(0, -1).join(", ")} and ${said[said.length - 1]}`;
    throw new UserError(
      `${command}: ${shown}: ${list} ${bad.length === 1 ? "is not a NAME=value line" : "are not NAME=value lines"}, and Node's parser would take ${bad.length === 1 ? "it" : "each"} as the start of the next line's name (so ${bad.map((b) => b.meant).join(", ")} would be lost); make ${bad.length === 1 ? "it" : "each"} NAME=value, or a # comment`,
    );
  }
  // A line with no `=` after the last variable has no next name to join: Node's parser drops it.
  const last = lines.findLastIndex((l) => l.text.includes("="));
  const dropped = lines
    .slice(last + 1)
    .filter((l) => l.text !== "" && !l.text.startsWith("#") && !continues(l.text, continued));
  if (dropped.length > 0) {
    const said = dropped.map((l) => `line ${l.line} (${JSON.stringify(l.text)})`).join(", ");
    throw new UserError(
      `${command}: ${shown}: ${said} ${dropped.length === 1 ? "is not a NAME=value line" : "are not NAME=value lines"}, and Node's parser would drop ${dropped.length === 1 ? "it" : "them"} without a word; make ${dropped.length === 1 ? "it" : "each"} NAME=value, or a # comment`,
    );
  }
  for (const [key, value] of Object.entries(parsed)) {
    if (value === undefined) continue;
    values.set(key, value);
    from?.set(key, shown.replace(/^--env-from /, ""));
  }
  return true;
}

/**
 * A NODE_OPTIONS that the `.env` files give the services (the environment `run` started in sets
 * none, or it would win) is checked with Node itself before any service starts: Node refuses a
 * flag it does not take there by exiting (code 9), which would otherwise read as the service's
 * own failure. `node --version` reads NODE_OPTIONS and loads none of its --require modules.
 */
export function checkNodeOptions(dotenv: DotEnv, command: string): void {
  const value = dotenv.values.get("NODE_OPTIONS");
  if (value === undefined || process.env.NODE_OPTIONS !== undefined) return;
  const node = spawnSync(process.execPath, ["--version"], {
    env: { ...process.env, NODE_OPTIONS: value },
    encoding: "utf8",
    timeout: 10_000,
  });
  if (node.status === 0) return;
  const said = node.stderr
    ?.split("\n")
    .find((line) => line.trim() !== "")
    ?.replace(/^.*?node: /, "");
  throw new UserError(
    `${command}: Node refuses the NODE_OPTIONS that ${dotenv.from.get("NODE_OPTIONS") ?? ".env"} sets (${said || `node exited with ${node.status ?? node.signal}`}); fix or remove that line, since every service starts with it`,
  );
}

/** A line of an env file that sets `__proto__` (as util.parseEnv reads names: spaces around it, `export` before it). */
const PROTO_LINE = /^[ \t]*(?:export[ \t]+)?__proto__[ \t]*=/m;

/** The lines (trimmed) of quoted values over several lines after their first: values, not lines lost. */
function continuedLines(parsed: NodeJS.Dict<string>): string[] {
  return Object.values(parsed)
    .filter((v): v is string => v?.includes("\n") === true)
    .flatMap((v) => v.split(/\r?\n/).slice(1))
    .map((l) => l.trim())
    .filter(Boolean);
}

/** Whether a line of the file (trimmed) is one of `continued`, its closing quote and comment aside. */
function continues(line: string, continued: readonly string[]): boolean {
  return continued.some((c) => line.startsWith(c));
}

/**
 * What a service's environment starts from: the `.env` values, then the environment `run` started
 * in over them (a variable set there wins), as a fresh object.
 */
export function withDotEnv(values: ReadonlyMap<string, string> | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  // defineProperty: a name such as __proto__ stays a variable, not the object's prototype.
  for (const [key, value] of values ?? [])
    Object.defineProperty(env, key, { value, enumerable: true, writable: true, configurable: true });
  return Object.assign(env, process.env);
}

/**
 * The variables of `--env-from` for every function of a provider that hosts them (`build`, `up`,
 * `run --provider aws`), said by name (never a value); undefined when none is given. (The flag is
 * not `--env-file`, Nitric's and Docker's name: Node 20 reads `--env-file` anywhere on its command
 * line, the script's own arguments too, and exits 9 on a missing file before our code runs.)
 */
export function functionVariables(
  envFiles: readonly string[],
  command: string,
  output: Output,
): Record<string, string> | undefined {
  if (envFiles.length === 0) return undefined;
  const { values, files } = loadEnvFiles(envFiles, command);
  output.info(
    `${envLine(files, [...values.keys()])} in every function's environment, which Lambda keeps in plaintext in its configuration: keep secrets in a secret() and store them with nitric-like secret put`,
  );
  // fromEntries makes own properties: a name such as __proto__ stays a variable (then refused).
  return Object.fromEntries(values);
}

/** `env: <files>: <n> variables (<names>)`: what was read, by name only. */
export function envLine(files: readonly string[], names: readonly string[]): string {
  const list = names.length > 0 ? ` (${names.join(", ")})` : "";
  return `env: ${files.join(", ")}: ${names.length} variable${names.length === 1 ? "" : "s"}${list}`;
}
