/**
 * The project file's limits on AWS. API Gateway fixes a WebSocket API's message size (128 KB), idle
 * timeout (10 min) and connection age (2 h), and has no per-connection count or rate setting, so
 * only the handler timeout carries over (into each function's environment, with the function's
 * own timeout above it), and only up to what API Gateway waits for a function; for every other
 * limit the project sets, the build says what AWS does instead, so an app tuned locally is not
 * surprised in production.
 */
import { AWS_INTEGRATION_TIMEOUT_MS, AWS_MAX_HANDLER_TIMEOUT_MS } from "@nitric-like/provider-kit/build";
import { type AppLimits, DEFAULT_LIMITS, formatDuration, type Project, type SocketLimits } from "@nitric-like/spec";

/** The keys as the project file spells them, and how to show a value. */
const FIXED_BY_API_GATEWAY: [keyof SocketLimits, string, (v: number) => string][] = [
  ["maxMessageBytes", "maxMessageBytes", (v) => `${Math.round(v / 1024)} KB`],
  ["idleTimeoutMs", "idleTimeout", formatDuration],
  ["maxConnectionAgeMs", "maxConnectionAge", formatDuration],
];
/** The limits only the local provider has, with what API Gateway lacks. */
const LOCAL_ONLY: [keyof AppLimits, string, string][] = [
  ["maxConnections", "maxConnections", "per-connection connection count"],
  ["messagesPerSecond", "messagesPerSecond", "per-connection message rate"],
  ["messageBurst", "messageBurst", "per-connection message rate"],
  ["maxPendingMessages", "maxPendingMessages", "per-connection bound on messages waiting for a function"],
  ["maxPendingBytes", "maxPendingBytes", "per-connection bound on messages waiting for a function"],
  ["upgradeTimeoutMs", "upgradeTimeout", "upgrade timeout setting"],
  ["maxPendingBytesTotal", "maxPendingBytesTotal", "bound on messages waiting for functions"],
  ["maxQueuedBytesTotal", "maxQueuedBytesTotal", "bound on bytes waiting for clients"],
];

/**
 * Where each limit is set: the top-level `limits:` and each socket's, then those of the
 * environment built (`--env`), which apply over them.
 */
function layers(project: Project, environment: string | undefined): [string, Partial<AppLimits>][] {
  const out: [string, Partial<AppLimits>][] = [];
  if (project.limits) out.push(["limits", project.limits]);
  for (const [name, socket] of Object.entries(project.websockets)) {
    if (socket.limits) out.push([`websockets.${name}.limits`, socket.limits]);
  }
  const env = environment === undefined ? undefined : project.environments?.[environment];
  if (env?.limits) out.push([`environments.${environment}.limits`, env.limits]);
  for (const [name, socket] of Object.entries(env?.websockets ?? {})) {
    if (socket.limits) out.push([`environments.${environment}.websockets.${name}.limits`, socket.limits]);
  }
  return out;
}

/**
 * The handler timeout the project sets for `environment` (its `limits:`, over the top-level one),
 * with where it is set; undefined when neither sets one.
 */
function handlerTimeoutOf(project: Project, environment: string | undefined): [string, number] | undefined {
  const env = environment === undefined ? undefined : project.environments?.[environment];
  const own = env?.limits?.handlerTimeoutMs;
  if (own !== undefined) return [`environments.${environment}.limits`, own];
  const top = project.limits?.handlerTimeoutMs;
  return top === undefined ? undefined : ["limits", top];
}

/**
 * What the build tells the user about limits AWS applies differently, one line each, for the
 * environment built (`--env`; the file's own limits when undefined).
 */
export function awsLimitNotes(project: Project, environment?: string): string[] {
  const notes: string[] = [];
  const [at, handlerTimeoutMs] = handlerTimeoutOf(project, environment) ?? ["limits", undefined];
  if (handlerTimeoutMs !== undefined && handlerTimeoutMs > AWS_MAX_HANDLER_TIMEOUT_MS) {
    notes.push(
      `${at}.handlerTimeout is ${formatDuration(handlerTimeoutMs)}, but API Gateway waits at most ${formatDuration(AWS_INTEGRATION_TIMEOUT_MS)} for a function's answer: on AWS handlers time out at ${formatDuration(AWS_MAX_HANDLER_TIMEOUT_MS)}; set it to ${AWS_MAX_HANDLER_TIMEOUT_MS / 1000}s or less to run locally as on AWS`,
    );
  }
  for (const [at, limits] of layers(project, environment)) {
    for (const [field, key, show] of FIXED_BY_API_GATEWAY) {
      const value = limits[field];
      if (value === undefined || value === DEFAULT_LIMITS[field]) continue;
      notes.push(
        `${at}.${key} is ${show(value)}, but API Gateway fixes it at ${show(DEFAULT_LIMITS[field])}: on AWS that applies; remove the setting to run locally as on AWS`,
      );
    }
    for (const [field, key, what] of LOCAL_ONLY) {
      if (limits[field] === undefined) continue;
      notes.push(
        `${at}.${key} is enforced by the local provider only: API Gateway has no ${what}; on AWS the account's API Gateway quotas apply`,
      );
    }
  }
  return notes;
}

/**
 * The handler timeout the functions get: the environment's `limits.handlerTimeout` (`--env`), else
 * the project's, when one is set, at most AWS_MAX_HANDLER_TIMEOUT_MS.
 */
export function awsHandlerTimeoutMs(project: Project, environment?: string): number | undefined {
  const set = handlerTimeoutOf(project, environment)?.[1];
  return set === undefined ? undefined : Math.min(set, AWS_MAX_HANDLER_TIMEOUT_MS);
}
