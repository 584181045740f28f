/**
 * The project file: `nitric-like.yaml`, or `nitric.yaml` for a Nitric project (same keys, and
 * Nitric's own: NITRIC_TOP_KEYS, NITRIC_SERVICE_KEYS).
 *
 * ```yaml
 * name: chat
 * services:
 *   - match: services/*.ts        # which files are services
 *     start: node $SERVICE_PATH    # optional: how to start one (TypeScript runs without it)
 *     memory: 1024                 # optional, AWS: each one's function memory in MB (512)
 * websockets:
 *   socket:
 *     port: 4000                   # optional: pin the local gateway's port
 *     limits: { maxConnections: 100 }   # optional: this socket's limits (see limits.ts)
 *     domain:                      # optional, AWS: serve it at wss://ws.example.com (domains.ts)
 *       name: ws.example.com
 *       certificate: arn:aws:acm:<region>:<account>:certificate/<id>
 *       hostedZone: Z0123456789ABC # optional: the stack adds the name's alias record there
 * limits:                          # optional: every socket's limits, AWS values by default
 *   idleTimeout: 10m
 * environments:                    # optional: limits (and domains) per environment, over the ones above
 *   local: { limits: { messagesPerSecond: 50 } }   # `run` uses "local" unless --env names another
 *   prod: { websockets: { socket: { domain: { ... } } } }   # `build`/`up --env prod` take its domains
 * compat: aws                      # optional: the local gateway keeps API Gateway's rules too
 * ```
 *
 * It is strict: any other key (but Nitric's), at any level, is an error saying which key was meant, and every
 * problem is reported at once (ProjectError.problems).
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { basename, dirname, extname, join, relative, resolve, sep } from "node:path";
import { parse } from "yaml";
import { certificateProblem, DOMAIN_KEYS, domainNameProblem, hostedZoneProblem, type SocketDomain } from "./domains.js";
import { type AppLimits, LIMIT_KEYS, LimitError, parseLimits, resolveLimits, type SocketLimits } from "./limits.js";
import { compareNames, kebabWords, resourceNameProblem } from "./names.js";
import { didYouMean } from "./suggest.js";

/** The project file names looked for, in order. */
export const PROJECT_FILES = ["nitric-like.yaml", "nitric.yaml"] as const;

/** One `services:` entry. */
export interface ServiceMatch {
  /** A glob relative to the project directory, such as `services/*.ts`. */
  match: string;
  /** A shell command that starts one service; `$SERVICE_PATH` is its file. @default built-in TypeScript runner */
  start?: string;
  /** Each matched service's function memory on AWS, in MB (Lambda's MemorySize). @default 512 */
  memory?: number;
}

/** Lambda's MemorySize bounds, in MB. */
export const FUNCTION_MEMORY_MB = { min: 128, max: 10_240 } as const;

/** Per-socket settings. */
export interface WebsocketConfig {
  /** The local gateway's port. @default an ephemeral port */
  port?: number;
  /** This socket's limits, over the project's `limits:`. @default the project's */
  limits?: Partial<SocketLimits>;
  /** Its custom domain on AWS (`build` and `up`; `run` serves it on its own port). @default none */
  domain?: SocketDomain;
}

/** A loaded project. */
export interface Project {
  /** The project's name. */
  name: string;
  /** Absolute path of the project directory. */
  dir: string;
  /** Absolute path of the project file. */
  file: string;
  /** The `services:` entries. */
  services: ServiceMatch[];
  /** Per-socket settings, by socket name. */
  websockets: Record<string, WebsocketConfig>;
  /** The top-level `limits:`, for every socket. @default AWS API Gateway's (see DEFAULT_LIMITS) */
  limits?: Partial<AppLimits>;
  /** Per-environment overrides (`environments.<name>.limits` and `.websockets.<socket>.limits`), by name. */
  environments?: Record<string, EnvironmentConfig>;
  /**
   * `compat: aws`: the local gateway keeps API Gateway's rules as the AWS emulator does (a client's
   * binary frame closes it with 1003, frames over 32 KB with 1009, messages over 128 KB, sends over
   * 128 KB refused), so a client meets them before the app is deployed. @default unset: local rules
   */
  compat?: Compat;
}

/** The values of the project file's `compat:`. */
export const COMPAT_VALUES = ["aws"] as const;
/** A platform whose rules the local provider keeps (`compat:`). */
export type Compat = (typeof COMPAT_VALUES)[number];

/** One `environments:` entry: limits over the project's, for every socket and per socket, and sockets' domains. */
export interface EnvironmentConfig {
  limits?: Partial<AppLimits>;
  /** `domain: null`: none in this environment, whatever the socket's own says. */
  websockets?: Record<string, { limits?: Partial<SocketLimits>; domain?: SocketDomain | null }>;
}

/** The environment `nitric-like run` uses when `--env` names none. */
export const DEFAULT_RUN_ENVIRONMENT = "local";

/**
 * The limits of one socket in one environment: the defaults, the project's `limits:`, the
 * environment's, the socket's own, the socket's in the environment, then `overrides` in order.
 */
export function socketLimitsOf(
  project: Project,
  socket: string,
  environment?: string,
  ...overrides: (Partial<AppLimits> | undefined)[]
): AppLimits {
  const env = environment === undefined ? undefined : project.environments?.[environment];
  return resolveLimits(
    project.limits,
    env?.limits,
    project.websockets[socket]?.limits,
    env?.websockets?.[socket]?.limits,
    ...overrides,
  );
}

/**
 * A socket's custom domain in one environment: the environment's for the socket (none when it
 * says `domain: null`), else the socket's own (`websockets.<socket>.domain`), else none.
 */
export function socketDomainOf(project: Project, socket: string, environment?: string): SocketDomain | undefined {
  const env = environment === undefined ? undefined : project.environments?.[environment];
  const own = env?.websockets?.[socket]?.domain;
  if (own === null) return undefined;
  return own ?? project.websockets[socket]?.domain;
}

/** Throws ProjectError when `--env` names an environment the project file does not have. */
export function checkEnvironment(project: Project, environment: string | undefined): void {
  if (environment === undefined || environment === DEFAULT_RUN_ENVIRONMENT) return;
  if (project.environments?.[environment]) return;
  const known = Object.keys(project.environments ?? {});
  throw new ProjectError(
    `${basename(project.file)}: no environment ${JSON.stringify(environment)}; ${known.length > 0 ? `use one of ${known.join(", ")}, or ` : ""}add it under environments: (an empty one, "${environment}: {}", changes no setting)`,
  );
}

/** A service found by expanding the `services:` globs. */
export interface ServiceEntry {
  /** The service's name: its file name without extension. */
  name: string;
  /** Path relative to the project directory, with forward slashes. */
  file: string;
  /** Absolute path. */
  path: string;
  /** The start command, when the matching entry has one. */
  start?: string;
  /** Its function's memory on AWS in MB, when the matching entry gives one. */
  memory?: number;
}

/**
 * A problem with the project file; its message says what to change. When the file has several
 * problems, `problems` lists each (the message is all of them, one a line).
 */
export class ProjectError extends Error {
  override readonly name = "ProjectError";
  /** Every problem found, each a full sentence starting with the file's name. */
  readonly problems: readonly string[];
  constructor(problems: string | readonly string[]) {
    const list = typeof problems === "string" ? [problems] : problems;
    super(list.join("\n"));
    this.problems = list;
  }
}

/** The keys of each level of the project file (limits: see LIMIT_KEYS). */
const TOP_KEYS = ["name", "services", "websockets", "limits", "environments", "compat"] as const;
const SERVICE_KEYS = ["match", "start", "memory"] as const;
/**
 * The keys of Nitric's own nitric.yaml (nitrictech/cli, pkg/project/config.go) that nitric-like has
 * no use for, taken so that a Nitric project's file loads as Nitric wrote it: `runtimes` and each
 * service's `runtime` and `type` configure Nitric's Docker builds and stack types (nitric-like
 * bundles each service itself), `preview` turns on Nitric's preview features. Nitric's CLI also
 * writes `batch-services: []`, `websites: []` and `basedir: ""` when it saves the file; those are
 * taken empty, and refused with the fix when they hold something (nitricKeys).
 */
const NITRIC_TOP_KEYS = ["runtimes", "preview", "batch-services", "websites"] as const;
const NITRIC_SERVICE_KEYS = ["runtime", "type", "basedir"] as const;
const SOCKET_KEYS = ["port", "limits", "domain"] as const;
const ENVIRONMENT_KEYS = ["limits", "websockets"] as const;
const ENVIRONMENT_SOCKET_KEYS = ["limits", "domain"] as const;

/** What CloudFormation accepts as a stack name, which `up` makes of the project's name. */
export const STACK_NAME_PATTERN = /^[a-zA-Z][-a-zA-Z0-9]*$/;
/** CloudFormation's longest stack name. */
export const MAX_STACK_NAME_LENGTH = 128;

/**
 * The nearest valid project name to `name`: lower-kebab-case words, `app-` in front when it would
 * not start with a letter (`2048` → `app-2048`), `my-app` when nothing is left. Never a word YAML
 * reads as other than text (`null`, `true`, `false` get `app-` too), so `name: <it>` always loads.
 * What `nitric-like new` names a project after its folder, and what a refused name's fix suggests.
 */
export function suggestProjectName(name: string): string {
  let suggestion = kebabWords(name).join("-");
  if (suggestion.length === 0) return "my-app";
  if (!/^[a-z]/.test(suggestion) || /^(null|true|false)$/.test(suggestion)) suggestion = `app-${suggestion}`;
  return suggestion.slice(0, MAX_STACK_NAME_LENGTH).replace(/-+$/, "");
}

/** Why `name` cannot be a project name, with the fix, or undefined when it can. */
export function projectNameProblem(name: string): string | undefined {
  if (STACK_NAME_PATTERN.test(name) && name.length <= MAX_STACK_NAME_LENGTH) return undefined;
  const why =
    name.length > MAX_STACK_NAME_LENGTH
      ? `is ${name.length} characters long; at most ${MAX_STACK_NAME_LENGTH} fit a stack name`
      : "cannot be a stack name: it must start with a letter and have only letters, digits and hyphens";
  return `name ${JSON.stringify(name)} ${why}; use name: ${suggestProjectName(name)}`;
}

/** The project file of the nearest folder above `dir` that has one, if any. */
function enclosingProjectFile(dir: string): string | undefined {
  let at = resolve(dir);
  for (;;) {
    const parent = dirname(at);
    if (parent === at) return undefined;
    at = parent;
    const file = PROJECT_FILES.map((f) => join(at, f)).find((f) => existsSync(f));
    if (file) return file;
  }
}

/**
 * The regions a Nitric project's stack files name (`nitric.<stack>.yaml`, each with `region:`),
 * in `dir`. nitric-like deploys with `--region` or the AWS configuration's region and does not read
 * these files; `up` and `down` compare them with the region they would use, so that a Nitric
 * project is not deployed to another region than its stack file says without a word. A file that
 * does not parse or names no region is left out.
 */
export function nitricStackRegions(dir: string): { file: string; region: string }[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const found: { file: string; region: string }[] = [];
  for (const file of names.filter((n) => /^nitric\.[^.]+\.ya?ml$/.test(n)).sort(compareNames)) {
    try {
      const doc = parse(readFileSync(join(dir, file), "utf8")) as unknown;
      const region = typeof doc === "object" && doc !== null ? (doc as { region?: unknown }).region : undefined;
      if (typeof region === "string" && region !== "") found.push({ file, region });
    } catch {
      // Not ours to judge: Nitric's CLI reads it.
    }
  }
  return found;
}

/** Finds and reads the project file in `dir`. Throws ProjectError listing every problem, each with its fix. */
export function loadProject(dir: string): Project {
  const file = PROJECT_FILES.map((f) => join(dir, f)).find((f) => existsSync(f));
  if (!file && !existsSync(dir)) {
    throw new ProjectError(
      `${JSON.stringify(dir)}: no such folder; give the project's folder, or create a project there with "nitric-like new ${dir}"`,
    );
  }
  if (!file) {
    // Run from inside a project (its services/ folder, say): name the project rather than
    // suggest a second project file in one of its folders.
    const enclosing = enclosingProjectFile(dir);
    if (enclosing) {
      const folder = dirname(enclosing);
      const shown = relative(process.cwd(), folder) || ".";
      throw new ProjectError(
        `${dir}: no project file here; it is inside the project in ${shown} (${basename(enclosing)}): give that folder (such as "nitric-like run ${shown}"), or run from there`,
      );
    }
    throw new ProjectError(
      `${dir}: no project file found, create nitric-like.yaml with\n  name: my-app\n  services:\n    - match: services/*.ts\nor make a new project, with a service and its test, by "nitric-like new my-app"`,
    );
  }
  const where = relative(process.cwd(), file) || file;
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new ProjectError(
      `${where}: cannot read it (${code}); make it readable by this user (chmod or chown), or run as its owner`,
    );
  }
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (error) {
    throw new ProjectError(`${where}: not valid YAML: ${(error as Error).message}`);
  }
  if (!isMapping(raw)) {
    throw new ProjectError(`${where}: expected a mapping with "name" and "services"`);
  }
  const problems: string[] = [];
  const problem = (text: string) => problems.push(`${where}: ${text}`);
  const doc = raw;
  unknownKeys(problem, doc, TOP_KEYS, "", NITRIC_TOP_KEYS);
  nitricTopKeys(problem, doc);

  if (doc.name === undefined || doc.name === null || doc.name === "") {
    problem(`"name" is required, such as\n  name: my-app`);
  } else if (typeof doc.name !== "string") {
    problem(`name ${JSON.stringify(doc.name)} must be text; use name: ${suggestProjectName(String(doc.name))}`);
  } else {
    const nameProblem = projectNameProblem(doc.name);
    if (nameProblem) problem(nameProblem);
  }

  const services: ServiceMatch[] = [];
  if (doc.services !== undefined && doc.services !== null && !Array.isArray(doc.services)) {
    problem(
      `"services" must be a list of entries, each starting with "-", such as\n  services:\n    - match: services/*.ts`,
    );
  } else if (!Array.isArray(doc.services) || doc.services.length === 0) {
    problem(`"services" is required, such as\n  services:\n    - match: services/*.ts`);
  } else {
    doc.services.forEach((s: unknown, i) => {
      const at = `services[${i}]`;
      if (!isMapping(s) || typeof s.match !== "string") {
        problem(`${at} needs a "match" glob, such as\n    - match: services/*.ts`);
        if (isMapping(s)) unknownKeys(problem, s, SERVICE_KEYS, at, NITRIC_SERVICE_KEYS);
        return;
      }
      unknownKeys(problem, s, SERVICE_KEYS, at, NITRIC_SERVICE_KEYS);
      if (!nitricServiceKeys(problem, s, at)) return;
      const { match, start, memory } = s;
      if (start !== undefined && typeof start !== "string") {
        problem(`${at}.start must be a shell command, such as "node $SERVICE_PATH"`);
        return;
      }
      if (
        memory !== undefined &&
        (typeof memory !== "number" ||
          !Number.isInteger(memory) ||
          memory < FUNCTION_MEMORY_MB.min ||
          memory > FUNCTION_MEMORY_MB.max)
      ) {
        problem(
          `${at}.memory is ${JSON.stringify(memory)}: give each of these services' function memory on AWS as a whole number of MB from ${FUNCTION_MEMORY_MB.min} to ${FUNCTION_MEMORY_MB.max} (Lambda's MemorySize), such as "memory: 1024"`,
        );
        return;
      }
      services.push({ match, ...(start === undefined ? {} : { start }), ...(memory === undefined ? {} : { memory }) });
    });
  }

  const websockets: Record<string, WebsocketConfig> = Object.create(null);
  if (doc.websockets !== undefined && doc.websockets !== null) {
    if (!isMapping(doc.websockets)) {
      problem(`"websockets" must map socket names to settings, such as\n  websockets:\n    socket:\n      port: 4000`);
    } else {
      for (const [name, value] of Object.entries(doc.websockets)) {
        const at = `websockets.${name}`;
        socketName(problem, name, at);
        if (value !== null && !isMapping(value)) {
          problem(
            `${at} must be a mapping of settings (port, limits), such as\n  websockets:\n    ${name}:\n      port: 4000`,
          );
          continue;
        }
        const config = value ?? {};
        unknownKeys(problem, config, SOCKET_KEYS, at);
        const port = config.port;
        if (port !== undefined && (!Number.isInteger(port) || (port as number) < 0 || (port as number) > 65535)) {
          problem(`${at}.port must be a port number from 0 to 65535, got ${JSON.stringify(port)}`);
        }
        const limits = limitsAt(problem, config.limits, `${at}.limits`, false);
        const domain = domainAt(problem, config.domain, `${at}.domain`);
        websockets[name] = {
          ...(Number.isInteger(port) ? { port: port as number } : {}),
          ...(Object.keys(limits).length > 0 ? { limits } : {}),
          ...(domain ? { domain } : {}),
        };
      }
    }
  }
  const limits = limitsAt(problem, doc.limits, "limits", true);
  const environments: Record<string, EnvironmentConfig> = Object.create(null);
  if (doc.environments !== undefined && doc.environments !== null) {
    if (!isMapping(doc.environments)) {
      problem(
        `"environments" must map environment names to settings, such as\n  environments:\n    local:\n      limits:\n        idleTimeout: 1m`,
      );
    } else {
      for (const [env, value] of Object.entries(doc.environments)) {
        const at = `environments.${env}`;
        if (value !== null && !isMapping(value)) {
          problem(
            `${at} must be a mapping of settings (limits, websockets), such as\n  environments:\n    ${env}:\n      limits:\n        idleTimeout: 1m`,
          );
          continue;
        }
        const config = value ?? {};
        unknownKeys(problem, config, ENVIRONMENT_KEYS, at);
        const entry: EnvironmentConfig = {};
        const envLimits = limitsAt(problem, config.limits, `${at}.limits`, true);
        if (Object.keys(envLimits).length > 0) entry.limits = envLimits;
        if (config.websockets !== undefined && config.websockets !== null && !isMapping(config.websockets)) {
          problem(
            `${at}.websockets must map socket names to settings, such as\n    websockets:\n      socket:\n        limits: { maxConnections: 100 }`,
          );
        } else {
          for (const [name, socketValue] of Object.entries(config.websockets ?? {})) {
            const socketAt = `${at}.websockets.${name}`;
            socketName(problem, name, socketAt);
            if (socketValue !== null && !isMapping(socketValue)) {
              problem(
                `${socketAt} must be a mapping with limits, such as\n      ${name}:\n        limits: { maxConnections: 100 }`,
              );
              continue;
            }
            unknownKeys(problem, socketValue ?? {}, ENVIRONMENT_SOCKET_KEYS, socketAt);
            const socketLimits = limitsAt(problem, socketValue?.limits, `${socketAt}.limits`, false);
            const domain = domainAt(problem, socketValue?.domain, `${socketAt}.domain`);
            // `domain: null` (or `~`): this environment serves the socket on the API's own URL.
            const noDomain =
              isMapping(socketValue) && Object.hasOwn(socketValue, "domain") && socketValue.domain === null;
            entry.websockets ??= Object.create(null) as NonNullable<EnvironmentConfig["websockets"]>;
            entry.websockets[name] = {
              ...(Object.keys(socketLimits).length > 0 ? { limits: socketLimits } : {}),
              ...(domain ? { domain } : noDomain ? { domain: null } : {}),
            };
          }
        }
        environments[env] = entry;
      }
    }
  }
  const compat = doc.compat;
  if (compat !== undefined && compat !== null && !COMPAT_VALUES.includes(compat as Compat)) {
    problem(
      `compat ${JSON.stringify(compat)} is not a platform whose rules the local provider keeps; use compat: ${COMPAT_VALUES.join(" or ")}, or leave it out for the local rules`,
    );
  }
  sharedDomains(problem, websockets, environments);
  if (problems.length > 0) throw new ProjectError(problems);
  return {
    name: doc.name as string,
    dir,
    file,
    services,
    websockets,
    ...(Object.keys(limits).length > 0 ? { limits } : {}),
    ...(Object.keys(environments).length > 0 ? { environments } : {}),
    ...(compat === "aws" ? { compat } : {}),
  };
}

/**
 * The sockets the project file configures (under `websockets:` and any environment's), each with
 * where: what a spec that declares no such socket is warned about.
 */
export function configuredSockets(project: Project): { socket: string; at: string }[] {
  const out = Object.keys(project.websockets).map((socket) => ({ socket, at: `websockets.${socket}` }));
  for (const [env, config] of Object.entries(project.environments ?? {})) {
    for (const socket of Object.keys(config.websockets ?? {})) {
      out.push({ socket, at: `environments.${env}.websockets.${socket}` });
    }
  }
  return out;
}

/**
 * Warnings for sockets the project file configures that no service declares (their settings
 * apply to nothing, most often a misspelt name), with the nearest declared socket.
 */
export function unusedSocketWarnings(project: Project, declared: readonly string[]): string[] {
  const file = basename(project.file);
  return configuredSockets(project)
    .filter(({ socket }) => !declared.includes(socket))
    .map(({ socket, at }) => {
      const near = didYouMean(socket, declared);
      const fix = near
        ? `did you mean ${near}?`
        : declared.length > 0
          ? `the declared ones are ${declared.join(", ")}`
          : "no service declares a websocket";
      return `${file}: ${at} configures a socket no service declares (websocket(${JSON.stringify(socket)})), so its settings apply to nothing; ${fix}`;
    });
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Reports each key of `value` not in `known` (nor in `nitric`, Nitric's keys, checked apart), with
 * the nearest known key or where it belongs.
 */
function unknownKeys(
  problem: (text: string) => void,
  value: Record<string, unknown>,
  known: readonly string[],
  at: string,
  nitric: readonly string[] = [],
): void {
  for (const key of Object.keys(value)) {
    if (known.includes(key) || nitric.includes(key)) continue;
    const path = at === "" ? key : `${at}.${key}`;
    const near = didYouMean(key, known);
    if (near) {
      problem(`${path} is not a setting; did you mean ${at === "" ? near : `${at}.${near}`}?`);
    } else if (known.includes("limits") && LIMIT_KEYS.includes(key)) {
      problem(`${path} is a limit, not a setting here; put it under ${at === "" ? "limits" : `${at}.limits`}:`);
    } else {
      problem(`${path} is not a setting; ${at === "" ? "the file" : at} takes ${known.join(", ")}`);
    }
  }
}

/** Whether a Nitric list setting (`batch-services`, `websites`) is absent or empty, as Nitric's CLI writes it. */
function emptyList(value: unknown): boolean {
  return value === undefined || value === null || (Array.isArray(value) && value.length === 0);
}

/** Reports the top-level Nitric keys (NITRIC_TOP_KEYS) that ask for what nitric-like does not serve. */
function nitricTopKeys(problem: (text: string) => void, doc: Record<string, unknown>): void {
  if (!emptyList(doc["batch-services"])) {
    problem(
      "batch-services lists Nitric batch services (jobs), which nitric-like does not run; remove them and their job() declarations, or leave batch-services: []",
    );
  }
  if (!emptyList(doc.websites)) {
    problem(
      "websites lists Nitric websites, which nitric-like does not serve; serve the site elsewhere and remove it, or leave websites: []",
    );
  }
}

/**
 * Reports a service's Nitric `basedir` (NITRIC_SERVICE_KEYS) other than the project's folder, and
 * answers whether the entry is usable: nitric-like matches services from the project's folder.
 */
function nitricServiceKeys(problem: (text: string) => void, s: Record<string, unknown>, at: string): boolean {
  const { basedir, match } = s;
  if (basedir === undefined || basedir === null || basedir === "" || basedir === "." || basedir === "./") return true;
  const base = typeof basedir === "string" ? basedir.replace(/^\.\//, "").replace(/\/+$/, "") : undefined;
  const fix =
    base !== undefined && typeof match === "string"
      ? `put the folder in match instead (match: ${base}/${match.replace(/^\.\//, "")}) and remove basedir`
      : "put the folder in match instead and remove basedir";
  problem(
    `${at}.basedir ${JSON.stringify(basedir)}: nitric-like matches services from the project's folder; ${fix} (a start command runs in the project's folder too)`,
  );
  return false;
}

function socketName(problem: (text: string) => void, name: string, at: string): void {
  const invalid = resourceNameProblem("websocket", name);
  if (invalid) problem(`${at}: ${invalid}`);
}

/** Reads a `domain:` mapping (name, certificate, hostedZone), reporting every problem. */
function domainAt(problem: (text: string) => void, raw: unknown, at: string): SocketDomain | undefined {
  if (raw === undefined || raw === null) return undefined;
  const example = `such as\n  domain:\n    name: ws.example.com\n    certificate: arn:aws:acm:us-east-1:123456789012:certificate/...`;
  if (!isMapping(raw)) {
    problem(`${at} must be a mapping with name and certificate, ${example}`);
    return undefined;
  }
  unknownKeys(problem, raw, DOMAIN_KEYS, at);
  const { name, certificate, hostedZone } = raw;
  let ok = true;
  const text = (key: string, value: unknown, check: (v: string) => string | undefined, required: boolean) => {
    if (value === undefined || value === null) {
      if (required) {
        problem(`${at}.${key} is required, ${example}`);
        ok = false;
      }
      return;
    }
    const why = typeof value === "string" ? check(value) : `${JSON.stringify(value)} must be text`;
    if (why !== undefined) {
      problem(`${at}.${key}: ${why}`);
      ok = false;
    }
  };
  text("name", name, domainNameProblem, true);
  text("certificate", certificate, certificateProblem, true);
  text("hostedZone", hostedZone, hostedZoneProblem, false);
  if (!ok) return undefined;
  return {
    name: name as string,
    certificate: certificate as string,
    ...(typeof hostedZone === "string" ? { hostedZone } : {}),
  };
}

/** Two sockets that one deployment would serve on the same domain (API Gateway maps a name to one API). */
function sharedDomains(
  problem: (text: string) => void,
  websockets: Record<string, WebsocketConfig>,
  environments: Record<string, EnvironmentConfig>,
): void {
  const check = (where: string, domains: [string, SocketDomain | undefined][]) => {
    const seen = new Map<string, string>();
    for (const [socket, domain] of domains) {
      if (!domain) continue;
      const other = seen.get(domain.name);
      if (other !== undefined)
        problem(
          `${where}sockets ${other} and ${socket} both have the domain ${domain.name}; a domain serves one socket, so give each its own name`,
        );
      else seen.set(domain.name, socket);
    }
  };
  const names = Object.keys(websockets);
  check(
    "",
    names.map((s) => [s, websockets[s]?.domain]),
  );
  for (const [env, config] of Object.entries(environments)) {
    const all = [...new Set([...names, ...Object.keys(config.websockets ?? {})])];
    check(
      `in environment ${env}, `,
      all.map((s) => [s, socketDomainIn(config, websockets, s)]),
    );
  }
}

/** A socket's domain in an environment, as socketDomainOf reads it from a whole project. */
function socketDomainIn(
  config: EnvironmentConfig,
  websockets: Record<string, WebsocketConfig>,
  socket: string,
): SocketDomain | undefined {
  const own = config.websockets?.[socket]?.domain;
  return own === null ? undefined : (own ?? websockets[socket]?.domain);
}

/** Reads a `limits:` mapping, reporting every unknown key and every invalid value. */
function limitsAt(problem: (text: string) => void, raw: unknown, at: string, top: boolean): Partial<AppLimits> {
  if (raw === undefined || raw === null) return {};
  if (!isMapping(raw)) {
    problem(`${at} must be a mapping, such as\n  ${at.split(".").pop()}:\n    idleTimeout: 10m`);
    return {};
  }
  const out: Partial<AppLimits> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (!LIMIT_KEYS.includes(key)) {
      const near = didYouMean(key, LIMIT_KEYS);
      problem(
        `${at}.${key} is not a limit; ${near ? `did you mean ${near}? The limits are` : "use one of"} ${LIMIT_KEYS.join(", ")}`,
      );
      continue;
    }
    try {
      Object.assign(out, parseLimits({ [key]: value }, at, top));
    } catch (error) {
      if (!(error instanceof LimitError)) throw error;
      problem(error.message);
    }
  }
  return out;
}

/** Expands the `services:` globs into service entries. Throws ProjectError on a name clash or no match. */
export function findServices(project: Project): ServiceEntry[] {
  const files = walk(project.dir);
  const byName = new Map<string, ServiceEntry>();
  for (const s of project.services) {
    const pattern = globToRegExp(s.match);
    const matched = files.filter((f) => pattern.test(f));
    if (matched.length === 0) {
      throw new ProjectError(
        `${basename(project.file)}: "${s.match}" matches no file in ${project.dir}; add the service's file there, or change the "match" glob to where it is`,
      );
    }
    for (const file of matched) {
      const name = basename(file, extname(file));
      const existing = byName.get(name);
      if (existing && existing.file !== file) {
        throw new ProjectError(
          `${basename(project.file)}: two services are named "${name}" (${existing.file} and ${file}); rename one file`,
        );
      }
      const entry: ServiceEntry = { name, file, path: join(project.dir, file) };
      if (s.start !== undefined) entry.start = s.start;
      if (s.memory !== undefined) entry.memory = s.memory;
      byName.set(name, entry);
    }
  }
  return [...byName.values()].sort((a, b) => compareNames(a.name, b.name));
}

/** Converts a glob (`*`, `**`, `?`) to an anchored RegExp over forward-slash paths. */
export function globToRegExp(glob: string): RegExp {
  let re = "";
  const g = glob.replace(/^\.\//, "");
  for (let i = 0; i < g.length; i++) {
    const c = g[i] as string;
    if (c === "*" && g[i + 1] === "*") {
      const slash = g[i + 2] === "/";
      re += slash ? "(?:.*/)?" : ".*";
      i += slash ? 2 : 1;
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

/** Files under dir (relative, forward slashes), skipping node_modules and dot folders. */
function walk(dir: string, prefix = ""): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(dir, prefix), { withFileTypes: true })) {
    if (entry.name === "node_modules" || entry.name.startsWith(".")) continue;
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...walk(dir, rel));
    else if (entry.isFile()) out.push(rel.split(sep).join("/"));
  }
  return out;
}
