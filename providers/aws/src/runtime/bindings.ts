/**
 * What a function needs to know about its deployment, from environment variables the template sets
 * (documented in providers/aws/README.md). With them the runtime runs under any API Gateway
 * emulator, too.
 */
import { AWS_MAX_HANDLER_TIMEOUT_MS, type Declaration } from "@nitric-like/provider-kit";
import { type Permission, routeNameProblem, type WebsocketEvent } from "@nitric-like/spec";
import { INLINE_MAX, PAGE_SIZE } from "../websocket/fanout.js";
import type { SocketBinding } from "../websocket/gateway.js";
import { GRANTABLE, type GrantableKind, grantOfDigit } from "./grants.js";

/**
 * A socket as this function sees it: where it is, which of its events this function handles, and
 * which of its message routes.
 */
export interface FunctionSocket extends SocketBinding {
  events: WebsocketEvent[];
  /** The message routes (`socket.route(action, ...)`) API Gateway routes to this function, by action. */
  routes: string[];
  /** True when this function is the socket's authorizer (a Lambda REQUEST authorizer on $connect). */
  authorize?: boolean;
  /**
   * The function that runs the socket's disconnect handler, when this one runs its connect handler
   * and another service the disconnect: a connect handler that answers after its client was
   * refused (504) has its disconnect run there (an asynchronous Invoke, runtime/late-disconnect.ts).
   */
  disconnectFunction?: string;
}

/** Set by `run --provider aws`'s emulator in each function's environment. */
export const EMULATED_VAR = "NITRIC_LIKE_EMULATED";

/** A function's bindings. */
export interface Bindings {
  /** NITRIC_LIKE_SERVICE: the service this function runs. */
  service: string;
  /**
   * NITRIC_LIKE_WEBSOCKETS: `{ "<socket>": { apiId, domain?, events, routes?, authorize?, disconnect? } }`
   * (`disconnect`: FunctionSocket.disconnectFunction), each
   * socket's URLs made from its API id and NITRIC_LIKE_WEBSOCKET_ENDPOINT (socketUrls); an entry's
   * own `url` and `endpoint` win (the emulator's, and a template made before they were derived).
   */
  websockets: Record<string, FunctionSocket>;
  /** NITRIC_LIKE_KV_TABLES: `{ "<store>": "<table name>" }`. */
  kvTables: Record<string, string>;
  /**
   * NITRIC_LIKE_SECRETS: `{ "<secret>": "<its Secrets Manager ARN>" }`, the secrets this function's
   * service may access or put. A Map: secret names are data.
   */
  secrets: Map<string, string>;
  /**
   * NITRIC_LIKE_DECLARED: `{ "file": "<entry file>", "grants": { "kv": "7", "secret": "1", "websocket": "10" },
   * "resources": [["kv", "<store>", []], ...] }`, what the collect pass saw the service declare,
   * each resource with the permissions granted on it: those NITRIC_LIKE_KV_TABLES,
   * NITRIC_LIKE_SECRETS and NITRIC_LIKE_WEBSOCKETS name as a digit each in `grants` (runtime/grants.ts,
   * in those variables' order; a kind left out: all 0), the others in `resources`. A declaration
   * beyond it, made once started, is refused (late-declarations.ts). Absent from a template made
   * before it: then none is.
   */
  declared: { file: string; resources: Required<Declaration>[] } | undefined;
  /** NITRIC_LIKE_CONNECTIONS_TABLE: the managed connections table, when there is one. */
  connectionsTable: string | undefined;
  /**
   * NITRIC_LIKE_HANDLER_TIMEOUT_MS: how long a handler may take to answer an event, at most
   * AWS_MAX_HANDLER_TIMEOUT_MS (28 s: API Gateway waits 29 s for a function). @default 5000
   */
  handlerTimeoutMs: number;
  /**
   * NITRIC_LIKE_BROADCAST_INLINE_MAX: broadcasts to at most this many connections are posted by
   * the calling function; larger ones are fanned out to asynchronous invocations. @default 100
   */
  broadcastInlineMax: number;
  /** NITRIC_LIKE_BROADCAST_PAGE_SIZE: connection ids per asynchronous invocation, 1 to 1000. @default 1000 */
  broadcastPageSize: number;
}

/** A variable the deployment set wrongly: the message says which and how to fix it. */
export class BindingError extends Error {
  override readonly name = "BindingError";
}

function json<T>(env: NodeJS.ProcessEnv, name: string, fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  try {
    const value = JSON.parse(raw) as unknown;
    if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("not a JSON object");
    return value as T;
  } catch (error) {
    throw new BindingError(
      `nitric-like runtime: ${name} is not valid (${(error as Error).message}); it is set by the template, so build and deploy again`,
    );
  }
}

const EVENTS: readonly WebsocketEvent[] = ["connect", "disconnect", "message"];

/** A Lambda function's name (Lambda's are at most 64 characters; the emulator's may be longer), or its ARN. */
const FUNCTION_NAME = /^(arn:[a-z-]+:lambda:[a-z0-9-]+:\d{12}:function:)?[A-Za-z0-9_-]{1,256}$/;

/** What stands for a socket's API id in NITRIC_LIKE_WEBSOCKET_ENDPOINT (build/template.ts). */
const API_ID_PLACEHOLDER = "{apiId}";

/**
 * A socket's URLs: its entry's own `url` and `endpoint` when it has them; else the Management API
 * endpoint is NITRIC_LIKE_WEBSOCKET_ENDPOINT with the API id in it
 * (`https://{apiId}.execute-api.<region>.<URL suffix>/<stage>`), and the URL clients connect to
 * is `wss://<domain>` for a socket with a custom domain, else the endpoint as `wss://`.
 */
function socketUrls(
  env: NodeJS.ProcessEnv,
  name: string,
  s: { apiId: string; url?: unknown; endpoint?: unknown; domain?: unknown },
): { url: string; endpoint: string } {
  const invalid = (what: string) =>
    new BindingError(
      `nitric-like runtime: NITRIC_LIKE_WEBSOCKETS[${JSON.stringify(name)}] ${what}; it is set by the template, so build and deploy again`,
    );
  let endpoint = s.endpoint;
  if (endpoint === undefined) {
    const pattern = env.NITRIC_LIKE_WEBSOCKET_ENDPOINT;
    if (!pattern?.includes(API_ID_PLACEHOLDER))
      throw invalid(
        `has no endpoint, and NITRIC_LIKE_WEBSOCKET_ENDPOINT (${JSON.stringify(pattern ?? null)}) has no ${API_ID_PLACEHOLDER} to make one`,
      );
    endpoint = pattern.replaceAll(API_ID_PLACEHOLDER, s.apiId);
  }
  if (typeof endpoint !== "string" || !/^https?:\/\//.test(endpoint))
    throw invalid("has an endpoint that is not an http(s) URL");
  if (s.domain !== undefined && (typeof s.domain !== "string" || s.domain === ""))
    throw invalid("has a domain that is not a host name");
  const url = s.url ?? (s.domain === undefined ? endpoint.replace(/^http/, "ws") : `wss://${s.domain}`);
  if (typeof url !== "string") throw invalid("has a url that is not a string");
  return { url, endpoint };
}

/** NITRIC_LIKE_SECRETS, checked: each secret's ARN, a string. */
function secretArns(env: NodeJS.ProcessEnv): Map<string, string> {
  const arns = new Map<string, string>();
  for (const [name, arn] of Object.entries(json<Record<string, unknown>>(env, "NITRIC_LIKE_SECRETS", {}))) {
    if (typeof arn !== "string" || arn === "") {
      throw new BindingError(
        `nitric-like runtime: NITRIC_LIKE_SECRETS[${JSON.stringify(name)}] is ${JSON.stringify(arn)}, not a secret's ARN; it is set by the template, so build and deploy again`,
      );
    }
    arns.set(name, arn);
  }
  return arns;
}

/** NITRIC_LIKE_WEBSOCKETS[socket].routes, checked: an array of route names (absent: none). */
function routesOf(socket: string, routes: unknown): string[] {
  if (routes === undefined) return [];
  const problem = Array.isArray(routes)
    ? routes.map((r) => routeNameProblem(socket, r)).find((p) => p !== undefined)
    : "not an array of route names";
  if (problem !== undefined) {
    throw new BindingError(
      `nitric-like runtime: NITRIC_LIKE_WEBSOCKETS[${JSON.stringify(socket)}].routes is not valid (${problem}); it is set by the template, so build and deploy again`,
    );
  }
  return [...(routes as string[])];
}

/**
 * NITRIC_LIKE_DECLARED, checked (absent: undefined): the resources of `grants` (a digit for each
 * store, secret and socket its function's variables name, in their order: `named`), then those of
 * `resources`.
 */
function declaredOf(env: NodeJS.ProcessEnv, named: Record<GrantableKind, string[]>): Bindings["declared"] {
  if (env.NITRIC_LIKE_DECLARED === undefined || env.NITRIC_LIKE_DECLARED === "") return undefined;
  const raw = json<{ file?: unknown; grants?: unknown; resources?: unknown }>(env, "NITRIC_LIKE_DECLARED", {});
  const invalid = (what: string) =>
    new BindingError(
      `nitric-like runtime: NITRIC_LIKE_DECLARED is not valid (${what}); it is set by the template, so build and deploy again`,
    );
  if (typeof raw.file !== "string") throw invalid("no file");
  const grants = raw.grants ?? {};
  if (grants === null || typeof grants !== "object" || Array.isArray(grants)) throw invalid("grants is not an object");
  const resources: Required<Declaration>[] = [];
  for (const kind of Object.keys(GRANTABLE) as GrantableKind[]) {
    const digits = Object.hasOwn(grants, kind) ? (grants as Record<string, unknown>)[kind] : undefined;
    const names = named[kind];
    if (digits !== undefined && (typeof digits !== "string" || digits.length !== names.length))
      throw invalid(`grants.${kind} is not a digit for each of the ${names.length} ${kind} its variables name`);
    names.forEach((name, i) => {
      const permissions = grantOfDigit(kind, digits === undefined ? "0" : ((digits as string)[i] ?? ""));
      if (permissions === undefined) throw invalid(`grants.${kind} has ${JSON.stringify(digits)}, not ${kind} grants`);
      resources.push({ kind, name, permissions });
    });
  }
  const more = raw.resources ?? [];
  if (!Array.isArray(more)) throw invalid("resources is not an array");
  for (const r of more as unknown[]) {
    if (!Array.isArray(r) || r.length !== 3) throw invalid(`${JSON.stringify(r)} is not [kind, name, permissions]`);
    const [kind, name, permissions] = r as unknown[];
    const allowed =
      typeof kind === "string" && Object.hasOwn(GRANTABLE, kind) ? GRANTABLE[kind as GrantableKind] : undefined;
    if (allowed === undefined || typeof name !== "string")
      throw invalid(`${JSON.stringify(r)} names no websocket, kv store or secret`);
    if (!Array.isArray(permissions) || !permissions.every((p) => allowed.includes(p as Permission)))
      throw invalid(`${JSON.stringify(r)} has permissions ${kind} does not take`);
    resources.push({ kind: kind as Declaration["kind"], name, permissions: permissions as Permission[] });
  }
  return { file: raw.file, resources };
}

/** Reads and checks the bindings. */
export function readBindings(env: NodeJS.ProcessEnv): Bindings {
  const service = env.NITRIC_LIKE_SERVICE;
  if (!service) {
    throw new BindingError(
      "nitric-like runtime: NITRIC_LIKE_SERVICE is not set; it names the service this function runs and is set by the template",
    );
  }
  const websockets = json<Record<string, Partial<FunctionSocket> & { domain?: unknown }>>(
    env,
    "NITRIC_LIKE_WEBSOCKETS",
    {},
  );
  const sockets: Record<string, FunctionSocket> = {};
  for (const [name, s] of Object.entries(websockets)) {
    if (typeof s.apiId !== "string" || s.apiId === "") {
      throw new BindingError(
        `nitric-like runtime: NITRIC_LIKE_WEBSOCKETS[${JSON.stringify(name)}] needs an apiId string; it is set by the template, so build and deploy again`,
      );
    }
    const events = (s.events ?? []).filter((e): e is WebsocketEvent => EVENTS.includes(e as WebsocketEvent));
    const disconnect = (s as { disconnect?: unknown }).disconnect;
    if (disconnect !== undefined && !(typeof disconnect === "string" && FUNCTION_NAME.test(disconnect))) {
      throw new BindingError(
        `nitric-like runtime: NITRIC_LIKE_WEBSOCKETS[${JSON.stringify(name)}].disconnect is ${JSON.stringify(disconnect)}, not a Lambda function's name; it is set by the template, so build and deploy again`,
      );
    }
    sockets[name] = {
      apiId: s.apiId,
      ...socketUrls(env, name, { ...s, apiId: s.apiId }),
      events,
      routes: routesOf(name, s.routes),
      ...(s.authorize === true ? { authorize: true } : {}),
      ...(typeof disconnect === "string" ? { disconnectFunction: disconnect } : {}),
    };
  }
  const timeout = Number(env.NITRIC_LIKE_HANDLER_TIMEOUT_MS ?? 5000);
  const pageSize = Number(env.NITRIC_LIKE_BROADCAST_PAGE_SIZE ?? PAGE_SIZE);
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > PAGE_SIZE) {
    throw new BindingError(
      `nitric-like runtime: NITRIC_LIKE_BROADCAST_PAGE_SIZE is ${JSON.stringify(env.NITRIC_LIKE_BROADCAST_PAGE_SIZE)}; give a whole number from 1 to ${PAGE_SIZE} (what fits Lambda's 256 KB event with a 128 KB frame), or leave it unset for ${PAGE_SIZE}`,
    );
  }
  const inlineMax = Number(env.NITRIC_LIKE_BROADCAST_INLINE_MAX ?? INLINE_MAX);
  if (!(inlineMax >= 0)) {
    throw new BindingError(
      `nitric-like runtime: NITRIC_LIKE_BROADCAST_INLINE_MAX is ${JSON.stringify(env.NITRIC_LIKE_BROADCAST_INLINE_MAX)}; give a number of connections (0 or more, Infinity to never fan out), or leave it unset for ${INLINE_MAX}`,
    );
  }
  const kvTables = json<Record<string, string>>(env, "NITRIC_LIKE_KV_TABLES", {});
  const secrets = secretArns(env);
  return {
    service,
    websockets: sockets,
    kvTables,
    secrets,
    declared: declaredOf(env, {
      kv: Object.keys(kvTables),
      secret: [...secrets.keys()],
      websocket: Object.keys(sockets),
    }),
    connectionsTable: env.NITRIC_LIKE_CONNECTIONS_TABLE || undefined,
    handlerTimeoutMs: Number.isFinite(timeout) && timeout > 0 ? Math.min(timeout, AWS_MAX_HANDLER_TIMEOUT_MS) : 5000,
    broadcastInlineMax: inlineMax,
    broadcastPageSize: pageSize,
  };
}
