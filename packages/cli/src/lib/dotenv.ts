/**
 * `.env` files for `nitric-like run`: `.env` and `.env.<environment>` in the project folder (the
 * environment is `run --env`, default `local`), parsed with Node's own `util.parseEnv` (the format
 * of `node --env-file`: `NAME=value`, `#` comments, quoted values, `export` prefixes not accepted).
 * A variable set in the environment `run` starts in wins over both files, and `.env.<environment>`
 * wins over `.env`. The values go only into the services' environments: nothing prints them (the
 * CLI and the dashboard show names only).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as util from "node:util";
import { UserError } from "./log.js";

/** The variables the `.env` files give, and where they came from. */
export interface DotEnv {
  /** Name → value, `.env.<environment>` over `.env` (the real environment is applied later, in serviceEnv). */
  values: Map<string, string>;
  /** The files read, relative to the project folder, in the order applied (`.env` first). */
  files: string[];
  /** The absolute paths looked at (whether they exist or not), to watch. */
  paths: string[];
}

/** An environment name that can be part of a file name: no path separators, no leading dot. */
const ENVIRONMENT_FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Reads `.env` and `.env.<environment>` in `dir`; a missing file is no error. */
export function loadDotEnv(dir: string, environment: string): DotEnv {
  const names = [".env"];
  if (ENVIRONMENT_FILE_NAME.test(environment)) names.push(`.env.${environment}`);
  const values = new Map<string, string>();
  const files: string[] = [];
  for (const name of names) {
    let text: string;
    try {
      text = readFileSync(join(dir, name), "utf8");
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT") continue;
      if (code === "EISDIR") throw new UserError(`run: ${name} is a folder; .env files hold NAME=value lines`);
      throw new UserError(
        `run: cannot read ${name} (${code ?? (error as Error).message}); make it readable by this user`,
      );
    }
    const parseEnv = (util as { parseEnv?: (content: string) => NodeJS.Dict<string> }).parseEnv;
    if (typeof parseEnv !== "function")
      throw new UserError(`run: reading ${name} needs Node 20.12 or later (this is ${process.version}); upgrade Node`);
    for (const [key, value] of Object.entries(parseEnv(text))) if (value !== undefined) values.set(key, value);
    files.push(name);
  }
  return { values, files, paths: names.map((n) => join(dir, n)) };
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
