/**
 * The project file: `nitric-like.yaml`, or `nitric.yaml` for a Nitric project (same keys).
 *
 * ```yaml
 * name: chat
 * services:
 *   - match: services/*.ts        # which files are services
 *     start: node $SERVICE_PATH    # optional: how to start one (TypeScript runs without it)
 * websockets:
 *   socket:
 *     port: 4000                   # optional: pin the local gateway's port
 *     limits: { maxConnections: 100 }   # optional: this socket's limits (see limits.ts)
 * limits:                          # optional: every socket's limits, AWS values by default
 * environments:                    # optional: limits per environment, over the ones above
 *   local: { limits: { messagesPerSecond: 50 } }   # `run` uses "local" unless --env names another
 *   idleTimeout: 10m
 * ```
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { basename, extname, join, relative, sep } from "node:path";
import { parse } from "yaml";
import { type AppLimits, LimitError, parseLimits, resolveLimits, type SocketLimits } from "./limits.js";

/** The project file names looked for, in order. */
export const PROJECT_FILES = ["nitric-like.yaml", "nitric.yaml"] as const;

/** One `services:` entry. */
export interface ServiceMatch {
  /** A glob relative to the project directory, such as `services/*.ts`. */
  match: string;
  /** A shell command that starts one service; `$SERVICE_PATH` is its file. @default built-in TypeScript runner */
  start?: string;
}

/** Per-socket settings. */
export interface WebsocketConfig {
  /** The local gateway's port. @default an ephemeral port */
  port?: number;
  /** This socket's limits, over the project's `limits:`. @default the project's */
  limits?: Partial<SocketLimits>;
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
}

/** One `environments:` entry: limits over the project's, for every socket and per socket. */
export interface EnvironmentConfig {
  limits?: Partial<AppLimits>;
  websockets?: Record<string, { limits?: Partial<SocketLimits> }>;
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

/** Throws ProjectError when `--env` names an environment the project file does not have. */
export function checkEnvironment(project: Project, environment: string | undefined): void {
  if (environment === undefined || environment === DEFAULT_RUN_ENVIRONMENT) return;
  if (project.environments?.[environment]) return;
  const known = Object.keys(project.environments ?? {});
  throw new ProjectError(
    `${basename(project.file)}: no environment ${JSON.stringify(environment)}; ${known.length > 0 ? `use one of ${known.join(", ")}, or ` : ""}add it under environments:`,
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
}

/** A problem with the project file; its message says what to change. */
export class ProjectError extends Error {
  override readonly name = "ProjectError";
}

/** Finds and reads the project file in `dir`. Throws ProjectError with the fix when it is wrong. */
export function loadProject(dir: string): Project {
  const file = PROJECT_FILES.map((f) => join(dir, f)).find((f) => existsSync(f));
  if (!file && !existsSync(dir)) {
    throw new ProjectError(
      `${JSON.stringify(dir)}: no such folder; give the project's folder, or create a project there with "nitric-like new ${dir}"`,
    );
  }
  if (!file) {
    throw new ProjectError(
      `${dir}: no project file found, create nitric-like.yaml with\n  name: my-app\n  services:\n    - match: services/*.ts`,
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
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ProjectError(`${where}: expected a mapping with "name" and "services"`);
  }
  const doc = raw as Record<string, unknown>;
  if (typeof doc.name !== "string" || doc.name.length === 0) {
    throw new ProjectError(`${where}: "name" is required, such as\n  name: my-app`);
  }
  if (!Array.isArray(doc.services) || doc.services.length === 0) {
    throw new ProjectError(`${where}: "services" is required, such as\n  services:\n    - match: services/*.ts`);
  }
  const services = doc.services.map((s, i): ServiceMatch => {
    if (typeof s !== "object" || s === null || typeof (s as ServiceMatch).match !== "string") {
      throw new ProjectError(`${where}: services[${i}] needs a "match" glob, such as\n    - match: services/*.ts`);
    }
    const { match, start } = s as { match: string; start?: unknown };
    if (start !== undefined && typeof start !== "string") {
      throw new ProjectError(`${where}: services[${i}].start must be a shell command, such as "node $SERVICE_PATH"`);
    }
    return start === undefined ? { match } : { match, start };
  });
  const websockets: Record<string, WebsocketConfig> = {};
  if (doc.websockets !== undefined && doc.websockets !== null) {
    if (typeof doc.websockets !== "object" || Array.isArray(doc.websockets)) {
      throw new ProjectError(
        `${where}: "websockets" must map socket names to settings, such as\n  websockets:\n    socket:\n      port: 4000`,
      );
    }
    for (const [name, value] of Object.entries(doc.websockets as Record<string, unknown>)) {
      const config = (value ?? {}) as Record<string, unknown>;
      const port = config.port;
      if (port !== undefined && (!Number.isInteger(port) || (port as number) < 0 || (port as number) > 65535)) {
        throw new ProjectError(
          `${where}: websockets.${name}.port must be a port number from 0 to 65535, got ${JSON.stringify(port)}`,
        );
      }
      const limits = limitsAt(where, config.limits, `websockets.${name}.limits`, false);
      websockets[name] = {
        ...(port === undefined ? {} : { port: port as number }),
        ...(Object.keys(limits).length > 0 ? { limits } : {}),
      };
    }
  }
  const limits = limitsAt(where, doc.limits, "limits", true);
  const environments: Record<string, EnvironmentConfig> = {};
  if (doc.environments !== undefined && doc.environments !== null) {
    if (typeof doc.environments !== "object" || Array.isArray(doc.environments)) {
      throw new ProjectError(
        `${where}: "environments" must map environment names to settings, such as\n  environments:\n    local:\n      limits:\n        idleTimeout: 1m`,
      );
    }
    for (const [env, value] of Object.entries(doc.environments as Record<string, unknown>)) {
      const config = (value ?? {}) as Record<string, unknown>;
      for (const key of Object.keys(config)) {
        if (key !== "limits" && key !== "websockets") {
          throw new ProjectError(`${where}: environments.${env}.${key} is not a setting; use limits or websockets`);
        }
      }
      const entry: EnvironmentConfig = {};
      const envLimits = limitsAt(where, config.limits, `environments.${env}.limits`, true);
      if (Object.keys(envLimits).length > 0) entry.limits = envLimits;
      const sockets = (config.websockets ?? {}) as Record<string, unknown>;
      for (const [name, socketValue] of Object.entries(sockets)) {
        const socketLimits = limitsAt(
          where,
          ((socketValue ?? {}) as Record<string, unknown>).limits,
          `environments.${env}.websockets.${name}.limits`,
          false,
        );
        entry.websockets ??= {};
        entry.websockets[name] = Object.keys(socketLimits).length > 0 ? { limits: socketLimits } : {};
      }
      environments[env] = entry;
    }
  }
  return {
    name: doc.name,
    dir,
    file,
    services,
    websockets,
    ...(Object.keys(limits).length > 0 ? { limits } : {}),
    ...(Object.keys(environments).length > 0 ? { environments } : {}),
  };
}

function limitsAt(where: string, raw: unknown, at: string, top: boolean): Partial<AppLimits> {
  try {
    return parseLimits(raw, at, top);
  } catch (error) {
    if (error instanceof LimitError) throw new ProjectError(`${where}: ${error.message}`);
    throw error;
  }
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
      byName.set(name, entry);
    }
  }
  return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
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
