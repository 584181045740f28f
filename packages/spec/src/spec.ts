/**
 * The spec: what an app declares, as found by the collect pass (each service run once with
 * NITRIC_ENVIRONMENT=build against a collector), and the checks every deploy and `spec` apply.
 */
import { compareNames, type ResourceKind, resourceNameProblem } from "./names.js";
import { allowedOriginsProblem } from "./origins.js";
import { routeByProblem, routeNameProblem } from "./routes.js";
import type { SecretPermission } from "./secrets.js";

/** The three websocket events a socket must handle before it can be deployed. */
export const WEBSOCKET_EVENTS = ["connect", "disconnect", "message"] as const;
/** One websocket event. */
export type WebsocketEvent = (typeof WEBSOCKET_EVENTS)[number];

/** Permissions on a kv store, as `.allow()` takes them. */
export const KV_PERMISSIONS = ["get", "set", "delete"] as const;
/** One kv permission. */
export type KvPermission = (typeof KV_PERMISSIONS)[number];

/** A permission a service holds on a resource: kv or secret permissions, or `manage` on a websocket. */
export type Permission = KvPermission | SecretPermission | "manage";

/** A resource named in a declaration or policy. */
export interface ResourceRef {
  kind: ResourceKind;
  name: string;
}

/** What one service told the collector. The collector fills this in; buildSpec() checks it. */
export interface CollectedService {
  /** The service's name (its file name without extension). */
  name: string;
  /** The service's entry file, relative to the project directory. */
  file: string;
  /**
   * Resources it declared, in order. Kinds we do not serve are kept as the @nitric/sdk call that
   * declares them (`api`, `topic`, `bucket`, `schedule`, ...); buildSpec() refuses them.
   */
  declared: { kind: ResourceKind | string; name: string; allowedOrigins?: string[]; routeBy?: string }[];
  /** Permissions it asked for. */
  grants: { resource: ResourceRef; permissions: Permission[] }[];
  /** Handler registrations it made; `route` for a message route (`socket.route(action, ...)`). */
  handlers: { socket: string; event: WebsocketEvent; route?: string }[];
  /** Sockets it authorizes (`websocket(name, { authorize })`); absent when none. */
  authorizes?: string[];
  /**
   * Sockets this service handles through Ampt's interface (`ws.on("connected", ...)` from
   * @nitric-like/sdk/ampt) rather than Nitric's (`websocket(name).on("connect", ...)`): problems
   * with them are worded in the API the code uses. The CLI sets it from the service's imports.
   */
  amptSockets?: string[];
  /**
   * Other services whose entry file this service imports (directly or through another module):
   * loading it runs that file's top level, so this service registers that one's handlers too. The
   * CLI sets it from the service's bundle; absent when it imports none (or was not bundled).
   */
  imports?: { service: string; file: string }[];
  /**
   * Set when the service failed during collection (crashed, or never declared anything), with
   * its last output. `stopped`: the collect pass ended it (it blocked its event loop, or declared
   * nothing in time), so `message`, which says so, is the cause, not anything in its output.
   */
  failure?: { message: string; output: string; stopped?: boolean };
}

/** A websocket in the spec, with the service that handles each event. */
export interface WebsocketSpec {
  kind: "websocket";
  name: string;
  /** Services that declared it. */
  declaredBy: string[];
  /** The service handling each event; an event nobody handles is absent. */
  handlers: Partial<Record<WebsocketEvent, string>>;
  /**
   * Message routes (`socket.route(action, handler)`), sorted by action, each with the service that
   * handles it; absent when the socket has none. Messages that select none go to `handlers.message`.
   */
  routes?: { action: string; service: string }[];
  /** The JSON property or dotted path that selects a message's route (`websocket(name, { routeBy })`); absent: "action". */
  routeBy?: string;
  /** The service whose `authorize` runs before connect; absent when the socket has none. */
  authorizer?: string;
  /** Browser origins allowed to connect; absent when any may. */
  allowedOrigins?: string[];
}

/** A kv store in the spec. */
export interface KvSpec {
  kind: "kv";
  name: string;
  /** Services that declared it. */
  declaredBy: string[];
}

/** A secret in the spec. */
export interface SecretSpec {
  kind: "secret";
  name: string;
  /** Services that declared it. */
  declaredBy: string[];
}

/** One service's permissions on one resource. */
export interface PolicySpec {
  service: string;
  resource: ResourceRef;
  permissions: Permission[];
}

/** The validated description of an app that deploys and runs are built from. */
export interface Spec {
  /** The project's name. */
  name: string;
  /** Each service with its entry file. */
  services: { name: string; file: string }[];
  /** Every websocket, kv store and secret, sorted by kind then name. */
  resources: (WebsocketSpec | KvSpec | SecretSpec)[];
  /** Every grant, one per service and resource. */
  policies: PolicySpec[];
}

/** The result of checking what the collector found. */
export interface SpecResult {
  spec: Spec;
  /** Every problem found, each a full sentence with the fix; empty when the spec can be deployed. */
  errors: string[];
  /**
   * The problems (also in `errors`) that are resources nitric-like does not serve, one per service
   * and resource: no command can go on with them, `run` included.
   */
  unsupported: string[];
  /**
   * The problems (also in `errors`) that are one socket event handled by two services: `run`
   * refuses them as `spec` does, since only one of the handlers could get the events.
   */
  conflicts: string[];
  /** The services that failed during collection (also in `errors`), with what they printed. */
  failures: { service: string; file: string; message: string; output: string; stopped?: boolean }[];
}

/** The resource kinds nitric-like serves, as the calls that declare them. */
export const SERVED_KINDS =
  "websockets, kv stores and secrets only: websocket(), kv() and secret() (and collection() in @nitric-like/sdk)";

/** How a resource of a kind we do not serve reads in a message: `api("main")`, `http(...)`. */
function call(kind: string, name: string): string {
  return `${kind}(${name === "" ? "..." : JSON.stringify(name)})`;
}

/**
 * Builds the spec from what each service declared and lists every problem at once: resources of
 * kinds we do not serve, missing handlers, an event handled by two services, invalid names, and
 * services that failed.
 */
/** What is said when more than one service handles a socket's event: each is named. */
export function handlerConflict(socket: string, event: WebsocketEvent, services: readonly string[]): string {
  const list = services.map((n) => JSON.stringify(n)).join(" and ");
  return `websocket ${socket}: the ${event} event is handled by ${list}; a socket event has exactly one handler, so keep socket.on("${event}", ...) in one service`;
}

/** What is said when more than one service handles a socket's message route: each is named. */
export function routeConflict(socket: string, action: string, services: readonly string[]): string {
  const list = services.map((n) => JSON.stringify(n)).join(" and ");
  return `websocket ${socket}: the route ${JSON.stringify(action)} is handled by ${list}; a route has exactly one handler, so keep socket.route(${JSON.stringify(action)}, ...) in one service`;
}

/** One registration as a message names it: `websocket("chat").on("message")`. */
function registrationText(r: Registration): string {
  const ws = `websocket(${JSON.stringify(r.socket)}`;
  if (r.authorize) return `${ws}, { authorize })`;
  return r.route === undefined ? `${ws}).on(${JSON.stringify(r.event)})` : `${ws}).route(${JSON.stringify(r.route)})`;
}

/**
 * What is said when a service imports another service's entry file and so registers that one's
 * handlers too: both files, the registrations both then make, and the fix.
 */
export function importedServiceConflict(
  importer: { name: string; file: string },
  imported: { name: string; file: string },
  registrations: readonly Registration[],
): string {
  // In one order whatever order they were registered in (@nitric/sdk's promises settle in any).
  const rank = (r: Registration) =>
    r.authorize ? 4 : r.route !== undefined ? 3 : WEBSOCKET_EVENTS.indexOf(r.event as WebsocketEvent);
  const sorted = [...registrations].sort(
    (a, b) => compareNames(a.socket, b.socket) || rank(a) - rank(b) || compareNames(a.route ?? "", b.route ?? ""),
  );
  const texts = sorted.map(registrationText);
  const list = texts.length === 1 ? texts[0] : `${texts.slice(0, -1).join(", ")} and ${texts[texts.length - 1]}`;
  const each = texts.length === 1 ? "is" : "are each";
  const lib = `lib/${imported.file.slice(imported.file.lastIndexOf("/") + 1)}`;
  return `service ${JSON.stringify(importer.name)} (${importer.file}) imports ${imported.file}, the entry file of service ${JSON.stringify(imported.name)} (directly or through another module), which runs that file's top level in ${JSON.stringify(importer.name)} too: ${list} ${each} registered by both services; move what ${importer.file} takes from ${imported.file} (a constant, a helper) into a module that is not a service entry, such as ${lib}, and import it from both files`;
}

export function buildSpec(projectName: string, services: CollectedService[]): SpecResult {
  const errors: string[] = [];
  const sockets = new Map<string, WebsocketSpec>();
  const stores = new Map<string, KvSpec>();
  const secrets = new Map<string, SecretSpec>();
  const policies = new Map<string, PolicySpec>();
  const duplicateHandlers = new Map<string, Set<string>>();
  const duplicateRoutes = new Map<string, Set<string>>();
  /** Each socket's routeBy values, with the services that gave each (services that give none agree with any). */
  const routeBys = new Map<string, Map<string, string[]>>();
  /** Each socket's routes, by action (a Map: actions are names users chose, never object keys). */
  const routes = new Map<string, Map<string, string>>();
  const duplicateAuthorizers = new Map<string, Set<string>>();
  const unsupported: string[] = [];
  const conflicts: string[] = [];
  const failures: SpecResult["failures"] = [];

  const socket = (name: string): WebsocketSpec => {
    let s = sockets.get(name);
    if (!s) {
      s = { kind: "websocket", name, declaredBy: [], handlers: {} };
      sockets.set(name, s);
    }
    return s;
  };

  for (const service of services) {
    if (service.failure) {
      failures.push({ service: service.name, file: service.file, ...service.failure });
      const output = service.failure.output.trim();
      errors.push(
        `service ${JSON.stringify(service.name)} (${service.file}): ${service.failure.message}${output ? `\n${indent(output)}` : ""}`,
      );
    }
    const refused = new Set<string>();
    // Said in order of kind and name, not of arrival: @nitric/sdk declares as its promises settle,
    // so the order differs between a thread, a process and another run.
    const unserved: string[] = [];
    for (const d of service.declared) {
      if (d.kind !== "websocket" && d.kind !== "kv" && d.kind !== "secret") {
        const what = call(d.kind, d.name);
        if (refused.has(what)) continue;
        refused.add(what);
        const declares = d.name === "" ? `${d.kind}()` : `${d.kind} ${JSON.stringify(d.name)}`;
        unserved.push(
          `service ${JSON.stringify(service.name)} (${service.file}): declares ${declares}, a kind of resource nitric-like does not serve; remove ${what}`,
        );
        continue;
      }
      const problem = resourceNameProblem(d.kind, d.name);
      if (problem) {
        errors.push(`service ${JSON.stringify(service.name)}: ${problem}`);
        continue;
      }
      const entry =
        d.kind === "websocket"
          ? socket(d.name)
          : d.kind === "kv"
            ? entryOf(stores, "kv", d.name)
            : entryOf(secrets, "secret", d.name);
      if (!entry.declaredBy.includes(service.name)) entry.declaredBy.push(service.name);
      const originsRefused =
        entry.kind === "websocket"
          ? allowedOriginsProblem(`websocket(${JSON.stringify(d.name)})`, d.allowedOrigins)
          : undefined;
      if (originsRefused) errors.push(`service ${JSON.stringify(service.name)}: ${originsRefused}`);
      else if (entry.kind === "websocket" && d.allowedOrigins && d.allowedOrigins.length > 0) {
        entry.allowedOrigins = [...new Set([...(entry.allowedOrigins ?? []), ...d.allowedOrigins])].sort();
      }
      if (entry.kind === "websocket" && d.routeBy !== undefined) {
        const problem = routeByProblem(d.name, d.routeBy);
        if (problem) errors.push(`service ${JSON.stringify(service.name)}: ${problem}`);
        else {
          const by = routeBys.get(d.name) ?? new Map<string, string[]>();
          routeBys.set(d.name, by);
          by.set(d.routeBy, [...(by.get(d.routeBy) ?? []), service.name]);
          entry.routeBy ??= d.routeBy;
        }
      }
    }
    unsupported.push(...unserved.sort(compareNames));
    for (const g of service.grants) {
      if (resourceNameProblem(g.resource.kind, g.resource.name)) continue;
      const key = `${service.name}\u0000${g.resource.kind}\u0000${g.resource.name}`;
      const policy = policies.get(key) ?? { service: service.name, resource: g.resource, permissions: [] };
      for (const p of g.permissions) if (!policy.permissions.includes(p)) policy.permissions.push(p);
      policies.set(key, policy);
    }
    for (const h of service.handlers) {
      if (resourceNameProblem("websocket", h.socket)) continue;
      if (h.route !== undefined) {
        const problem = routeNameProblem(h.socket, h.route);
        if (problem) {
          errors.push(`service ${JSON.stringify(service.name)}: ${problem}`);
          continue;
        }
        socket(h.socket);
        const byAction = routes.get(h.socket) ?? new Map<string, string>();
        routes.set(h.socket, byAction);
        const current = byAction.get(h.route);
        if (current === undefined) byAction.set(h.route, service.name);
        else if (current !== service.name) {
          const key = `${h.socket}\u0000${h.route}`;
          const set = duplicateRoutes.get(key) ?? new Set([current]);
          set.add(service.name);
          duplicateRoutes.set(key, set);
        }
        continue;
      }
      const s = socket(h.socket);
      const current = s.handlers[h.event];
      if (current === undefined) {
        s.handlers[h.event] = service.name;
      } else if (current !== service.name) {
        const key = `${h.socket}\u0000${h.event}`;
        const set = duplicateHandlers.get(key) ?? new Set([current]);
        set.add(service.name);
        duplicateHandlers.set(key, set);
      }
    }
  }

  for (const service of services) {
    for (const name of service.authorizes ?? []) {
      if (resourceNameProblem("websocket", name)) continue;
      const s = socket(name);
      if (s.authorizer === undefined) s.authorizer = service.name;
      else if (s.authorizer !== service.name) {
        const set = duplicateAuthorizers.get(name) ?? new Set([s.authorizer]);
        set.add(service.name);
        duplicateAuthorizers.set(name, set);
      }
    }
  }
  // A service that imports another's entry file registers that one's handlers too: said once per
  // pair of files, with the fix, instead of as each event handled by two services.
  const importers = importConflicts(services, conflicts, errors);
  /**
   * The services of a duplicate less those that registered it by importing the entry file of
   * another one of them (said above); of two that import each other, the second stays.
   */
  const own = (key: string, names: Set<string>) => {
    const removed = new Set<string>();
    for (const n of names) {
      const from = importers.get(key)?.get(n) ?? [];
      if ([...from].some((m) => names.has(m) && !removed.has(m))) removed.add(n);
    }
    return [...names].filter((n) => !removed.has(n));
  };
  for (const [socketName, all] of duplicateAuthorizers) {
    const names = own(`authorize\u0000${socketName}`, all);
    if (names.length < 2) continue;
    const list = names.map((n) => JSON.stringify(n)).join(" and ");
    errors.push(
      `websocket ${socketName}: authorized by ${list}; a socket has exactly one authorizer, so give websocket("${socketName}", { authorize }) in one service only`,
    );
  }
  for (const [key, all] of duplicateHandlers) {
    const names = own(`on\u0000${key}`, all);
    if (names.length < 2) continue;
    const [socketName, event] = key.split("\u0000") as [string, WebsocketEvent];
    const conflict = handlerConflict(socketName, event, names);
    conflicts.push(conflict);
    errors.push(conflict);
  }
  for (const [key, all] of duplicateRoutes) {
    const names = own(`route\u0000${key}`, all);
    if (names.length < 2) continue;
    const [socketName, action] = key.split("\u0000") as [string, string];
    const conflict = routeConflict(socketName, action, names);
    conflicts.push(conflict);
    errors.push(conflict);
  }
  for (const [socketName, by] of routeBys) {
    if (by.size < 2) continue;
    const list = [...by].map(
      ([property, names]) => `${JSON.stringify(property)} (${names.map((n) => JSON.stringify(n)).join(", ")})`,
    );
    errors.push(
      `websocket ${socketName}: its routes are selected by ${list.join(" and ")}; a socket selects by one property or path, so give websocket("${socketName}", { routeBy }) the same value in every service that gives it`,
    );
  }
  for (const [socketName, byAction] of routes) {
    const s = socket(socketName);
    s.routes = [...byAction]
      .map(([action, service]) => ({ action, service }))
      .sort((a, b) => compareNames(a.action, b.action));
  }
  const amptStyle = new Set(services.flatMap((s) => s.amptSockets ?? []));
  const failed = new Set(failures.map((f) => f.service));
  for (const s of sockets.values()) {
    // A service that failed during collection may have declared the socket and stopped before
    // its handlers (whether it got as far as declaring is a race): its failure is reported, and
    // handlers it never reached are not missing from the code.
    if (s.declaredBy.some((name) => failed.has(name))) continue;
    for (const event of WEBSOCKET_EVENTS) {
      if (s.handlers[event] !== undefined) continue;
      if (amptStyle.has(s.name)) {
        const ampt = AMPT_EVENTS[event];
        errors.push(
          `missing ws.on("${ampt}", ...) for websocket ${s.name}: add ws.on("${ampt}", ${ampt === "message" ? "(connection, data)" : "(connection)"} => { ... }) to one service (ws from "@nitric-like/sdk/ampt")`,
        );
      } else {
        // A socket with routes still needs its message handler, for the messages no route takes.
        const why =
          event === "message" && s.routes !== undefined
            ? ` (its routes take only the messages whose "${s.routeBy ?? "action"}" names one; it takes the others)`
            : "";
        errors.push(
          `missing ${event} handler for websocket ${s.name}: add websocket("${s.name}").on("${event}", handler) to one service${why}`,
        );
      }
    }
  }

  const resources = [
    ...[...sockets.values()].sort(byName),
    ...[...stores.values()].sort(byName),
    ...[...secrets.values()].sort(byName),
  ];
  for (const p of policies.values()) p.permissions.sort();
  const spec: Spec = {
    name: projectName,
    services: services.map((s) => ({ name: s.name, file: s.file })),
    resources,
    policies: [...policies.values()].sort(
      (a, b) =>
        compareNames(a.service, b.service) ||
        compareNames(a.resource.kind, b.resource.kind) ||
        compareNames(a.resource.name, b.resource.name),
    ),
  };
  return { spec, errors: [...unsupported, ...errors], unsupported, conflicts, failures };
}

/** A registration of a service: a handler of a socket event, a message route, or a socket's authorizer. */
type Registration = { socket: string; event?: WebsocketEvent; route?: string; authorize?: true };

function registrationsOf(service: CollectedService): { key: string; registration: Registration }[] {
  const all: { key: string; registration: Registration }[] = service.handlers.map((h) =>
    h.route === undefined
      ? { key: `on\u0000${h.socket}\u0000${h.event}`, registration: { socket: h.socket, event: h.event } }
      : { key: `route\u0000${h.socket}\u0000${h.route}`, registration: { socket: h.socket, route: h.route } },
  );
  for (const socket of service.authorizes ?? [])
    all.push({ key: `authorize\u0000${socket}`, registration: { socket, authorize: true } });
  return all;
}

/**
 * Says (in `conflicts` and `errors`) each service that imports another's entry file where both
 * then register the same handlers; returns, by registration key, who imported whom.
 */
function importConflicts(
  services: CollectedService[],
  conflicts: string[],
  errors: string[],
): Map<string, Map<string, Set<string>>> {
  /** By registration key, then importing service: the services whose entry it imports that register it too. */
  const importers = new Map<string, Map<string, Set<string>>>();
  const named = new Map(services.map((s) => [s.name, s]));
  for (const importer of services) {
    if (importer.failure) continue;
    const mine = new Set(registrationsOf(importer).map((r) => r.key));
    for (const { service } of importer.imports ?? []) {
      const imported = named.get(service);
      if (imported === undefined || imported === importer || imported.failure) continue;
      const shared = new Map<string, Registration>();
      for (const { key, registration } of registrationsOf(imported)) {
        if (mine.has(key) && !shared.has(key)) shared.set(key, registration);
      }
      if (shared.size === 0) continue;
      for (const key of shared.keys()) {
        const byImporter = importers.get(key) ?? new Map<string, Set<string>>();
        importers.set(key, byImporter);
        const from = byImporter.get(importer.name) ?? new Set<string>();
        from.add(imported.name);
        byImporter.set(importer.name, from);
      }
      const conflict = importedServiceConflict(importer, imported, [...shared.values()]);
      conflicts.push(conflict);
      errors.push(conflict);
    }
  }
  return importers;
}

/** Each websocket event as Ampt's `ws.on()` names it. */
const AMPT_EVENTS: Record<WebsocketEvent, string> = {
  connect: "connected",
  disconnect: "disconnected",
  message: "message",
};

function entryOf<K extends "kv" | "secret">(
  entries: Map<string, { kind: K; name: string; declaredBy: string[] }>,
  kind: K,
  name: string,
): { kind: K; name: string; declaredBy: string[] } {
  let s = entries.get(name);
  if (!s) {
    s = { kind, name, declaredBy: [] };
    entries.set(name, s);
  }
  return s;
}

function byName(a: { name: string }, b: { name: string }): number {
  return compareNames(a.name, b.name);
}

function indent(text: string): string {
  return text
    .split("\n")
    .map((l) => `    ${l}`)
    .join("\n");
}
