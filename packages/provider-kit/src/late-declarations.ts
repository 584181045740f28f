/**
 * Declarations the collect pass never saw. `spec`, `build` and `up` deploy what each service
 * declares as its module loads (with NITRIC_ENVIRONMENT=build); a `kv("x")`, `websocket("y")`,
 * `secret(...)` or a wider `.allow(...)` made later (in a handler, or in code the build never runs)
 * reaches the provider only at run time. Granting it there would make the app work under `run`
 * and fail once deployed (no table, no IAM permission), so a provider that knows the collected
 * spec refuses it: it says so with the fix, naming the resource and the service's file, and the
 * resource's calls fail with the same words. A declaration that the
 * collect pass did see (a helper that declares again on every event what the top level declares)
 * is accepted as before.
 */
import {
  type HandlerRegistration,
  type Logger,
  type Permission,
  type ResourceKind,
  registrationKey,
  type Spec,
  specRegistrations,
  type WebsocketEvent,
} from "@nitric-like/spec";
import type { MaybePromise } from "./backends.js";

/** One declaration as the provider receives it: a resource, or a grant (`permissions`) on one. */
export interface Declaration {
  kind: ResourceKind;
  name: string;
  /** The permissions asked for; absent for the resource's own declaration. */
  permissions?: readonly Permission[];
}

/** How a declaration is written in the SDK, for messages: `kv("x")`, `kv("x").allow("set")`. */
function written(d: Declaration, permissions?: readonly Permission[]): string {
  const call = `${d.kind}(${JSON.stringify(d.name)})`;
  const asked = permissions ?? d.permissions;
  if (asked === undefined || asked.length === 0 || d.kind === "websocket") return call;
  return `${call}.allow(${asked.map((p) => JSON.stringify(p)).join(", ")})`;
}

/**
 * The refusal of a declaration the deployment would not include: what was declared, by which
 * service, why it fails once deployed, and the fix (the top level of `file`). `granted` is what
 * the collected declarations give the service on that resource, when they give anything.
 */
function lateDeclarationMessage(
  service: string,
  file: string | undefined,
  d: Declaration,
  granted: readonly Permission[] = [],
  missing: readonly Permission[] = d.permissions ?? [],
): string {
  const where = file === undefined ? `the service's entry file` : file;
  const deployed =
    d.kind === "kv"
      ? "on AWS its table or its IAM permission would not exist"
      : d.kind === "secret"
        ? "on AWS its secret or its IAM permission would not exist"
        : "on AWS its API would not exist";
  const what =
    granted.length > 0
      ? `${written(d, missing)}: service "${service}" asked for ${missing.map((p) => JSON.stringify(p)).join(", ")} after it started, beyond the ${granted.map((p) => JSON.stringify(p)).join(", ")} its top level grants`
      : `${written(d)}: service "${service}" declared it after it started`;
  return `${what} (in a handler, or in code that does not run when nitric-like collects what the service declares), so spec, build and up never see it and ${deployed}; declare it at the top level of ${where}, as ${written(d, [...new Set([...granted, ...(d.permissions ?? [])])])}, and use that handle in the handler`;
}

/** One handler registration as the provider receives it: a socket's event, or one of its message routes. */
export interface LateRegistration {
  socket: string;
  event: WebsocketEvent;
  /** A message route's action; "" or absent for the socket's event itself. */
  route?: string;
}

/** How a registration is written in the SDK, for messages: `websocket("chat").route("join")`. */
function registered(r: LateRegistration): string {
  const ws = `websocket(${JSON.stringify(r.socket)})`;
  return r.route === undefined || r.route === ""
    ? `${ws}.on(${JSON.stringify(r.event)})`
    : `${ws}.route(${JSON.stringify(r.route)})`;
}

/**
 * The refusal of a handler registration the deployment would not route to the service: which
 * handler, by which service, what happens to its events once deployed, and the fix (the top
 * level of `file`). `owner` is the service the collect pass saw register it, when another one: a
 * service that imports that one's entry file after it started (`await import(...)` in a handler)
 * registers its handlers as its own.
 */
function lateRegistrationMessage(
  service: string,
  file: string | undefined,
  r: LateRegistration,
  owner?: { name: string; file: string | undefined },
): string {
  const where = file === undefined || file === "" ? "the service's entry file" : file;
  const route = r.route !== undefined && r.route !== "";
  const deployed =
    owner !== undefined
      ? `its ${route || r.event === "message" ? "messages" : `${r.event} events`} would go to the function of service ${JSON.stringify(owner.name)}`
      : route
        ? "API Gateway would have no route for it, and its messages would go to the message handler"
        : `API Gateway would never send this service its ${r.event === "message" ? "messages" : `${r.event} events`}`;
  const head = `${registered(r)}: service ${JSON.stringify(service)} registered it after it started (in a handler, or in code that does not run when nitric-like collects what the service registers), so spec, build and up never see it and on AWS ${deployed}; the provider ignores it, as a deployment would`;
  if (owner !== undefined) {
    const theirs = owner.file === undefined || owner.file === "" ? "its entry file" : owner.file;
    return `${head}. The collect pass saw service ${JSON.stringify(owner.name)} (${theirs}) register it: a service that imports another service's entry file (an await import(...) in a handler too) registers that one's handlers as its own; import what both need from a module that is not a service entry, or register it at the top level of ${where} and not in ${theirs}`;
  }
  return `${head}; register it at the top level of ${where}`;
}

/**
 * The refusal of an authorizer (`websocket(socket, { authorize })`) the deployment would not run:
 * given after the service started, so API Gateway would not call it and connections would not be
 * authorized once deployed. `owner`: the service the collect pass saw authorize the socket.
 */
function lateAuthorizerMessage(
  service: string,
  file: string | undefined,
  socket: string,
  owner?: { name: string; file: string | undefined },
): string {
  const where = file === undefined || file === "" ? "the service's entry file" : file;
  const ws = `websocket(${JSON.stringify(socket)}, { authorize })`;
  const deployed =
    owner === undefined
      ? "API Gateway would not call it, and its connections would not be authorized"
      : `the authorize of service ${JSON.stringify(owner.name)} would run instead`;
  const head = `${ws}: service ${JSON.stringify(service)} gave it after it started (in a handler, or in code that does not run when nitric-like collects what the service declares), so spec, build and up never see it and on AWS ${deployed}; the provider ignores it, as a deployment would`;
  if (owner !== undefined) {
    const theirs = owner.file === undefined || owner.file === "" ? "its entry file" : owner.file;
    return `${head}. The collect pass saw service ${JSON.stringify(owner.name)} (${theirs}) give it: a service that imports another service's entry file (an await import(...) in a handler too) gives that one's authorize as its own; import what both need from a module that is not a service entry`;
  }
  return `${head}; give authorize where the top level of ${where} declares websocket(${JSON.stringify(socket)})`;
}

/** How long a late resource's warning waits for the grant that usually follows its declaration. */
const GRANT_WAIT_MS = 1000;

/** Most refused handler registrations said once each; past it they are said again (names can come from clients). */
const MAX_SAID_REGISTRATIONS = 1000;

/**
 * Most refusals one service has said in full per burst of LATE_BURST_MS: past them (a loop that
 * declares or registers a name from each client or message) the rest are counted, and said in one
 * line as the burst ends, so such a loop cannot flood the log a line per name.
 */
const MAX_SAID_PER_BURST = 5;
const LATE_BURST_MS = 5000;

/** The collected spec as the local provider checks declarations against it. */
export class CollectedDeclarations {
  private spec: Spec;
  /** By service: a collect pass under way (a saved service restarted before it is collected again). */
  private readonly pending = new Map<string, Promise<unknown>>();
  /** By service, then `<kind>\0<name>`: the refusals given, for that resource's later calls. */
  private readonly refused = new Map<string, Map<string, string>>();
  /** `<service>\0<registration key>` of the handlers the collect passes saw, beyond the spec's (setSpec). */
  private registered = new Set<string>();
  /** `<service>\0<registration key>` of the handler registrations refused (each is said once). */
  private readonly refusedHandlers = new Set<string>();

  /** By service: the refusals said and held back in its burst under way (warn). */
  private readonly bursts = new Map<string, { said: number; held: Set<string>; heldPast: number }>();

  constructor(
    spec: Spec,
    private readonly logger: Logger,
  ) {
    this.spec = spec;
  }

  /**
   * The spec after a service was collected again (or removed), with every handler the collect
   * passes saw each service register (`registered`), which a spec with errors may leave out.
   */
  setSpec(
    spec: Spec,
    registered: readonly HandlerRegistration[] = [],
    authorizing: readonly { service: string; socket: string }[] = [],
  ): void {
    this.spec = spec;
    this.registered = new Set(registered.map((r) => `${r.service}\u0000${registrationKey(r)}`));
    for (const a of authorizing) this.registered.add(`${a.service}\u0000authorize\u0000${a.socket}`);
    // The services collected again were restarted: what was refused to the old copies is past.
    this.refused.clear();
    this.refusedHandlers.clear();
    for (const timer of this.saying.values()) clearTimeout(timer);
    this.saying.clear();
    this.said.clear();
  }

  /**
   * A collect pass of `service` under way: its declarations meanwhile are checked once it settles
   * (against the spec of then), so a saved service that declares something new at its top level,
   * restarted before its collect pass ends, is not refused it.
   */
  collecting(service: string, done: Promise<unknown>): void {
    const settled = done.then(
      () => undefined,
      () => undefined,
    );
    this.pending.set(service, settled);
    void settled.then(() => {
      if (this.pending.get(service) === settled) this.pending.delete(service);
    });
  }

  /** The refusal of `d` by `service` (and records it), or undefined when the spec includes it. */
  check(service: string, d: Declaration): MaybePromise<string | undefined> {
    const pending = this.pending.get(service);
    if (pending === undefined) return this.checkNow(service, d);
    // What the spec already includes needs no wait: a restart that declares what it did is not slowed.
    if (this.missing(service, d) === undefined) return undefined;
    return pending.then(() => this.check(service, d));
  }

  /** What the spec lacks of `d` for `service` (with its grants on the resource), or undefined when it includes it. */
  private missing(service: string, d: Declaration): { granted: Permission[]; missing: Permission[] } | undefined {
    if (d.permissions === undefined)
      return this.spec.resources.some((r) => r.kind === d.kind && r.name === d.name)
        ? undefined
        : { granted: [], missing: [] };
    const granted =
      this.spec.policies.find((p) => p.service === service && p.resource.kind === d.kind && p.resource.name === d.name)
        ?.permissions ?? [];
    const missing = d.permissions.filter((p) => !granted.includes(p));
    return missing.length > 0 ? { granted, missing } : undefined;
  }

  private checkNow(service: string, d: Declaration): string | undefined {
    const entry = this.spec.services.find((s) => s.name === service);
    // A service the spec does not list (a provider started without a collect pass, a new file
    // not collected yet) has nothing to be checked against.
    if (entry === undefined) return undefined;
    const lacks = this.missing(service, d);
    if (lacks === undefined) return undefined;
    const message = lateDeclarationMessage(service, entry.file, d, lacks.granted, lacks.missing);
    let byResource = this.refused.get(service);
    if (byResource === undefined) {
      byResource = new Map();
      this.refused.set(service, byResource);
    }
    const key = `${d.kind}\u0000${d.name}`;
    const first = !byResource.has(key);
    // Bounded: names may come from clients (kv(nameFromAMessage)). A refusal forgotten leaves its
    // calls refused still, as undeclared, only in other words.
    if (first && byResource.size >= MAX_SAID_REGISTRATIONS) byResource.clear();
    byResource.set(key, message);
    // Said once per service and resource: a handler that declares on every event would repeat it.
    // A resource's own declaration is said once its grant has come too (kv("x").allow("set")
    // declares the store, then asks for "set"), so the one warning gives the whole fix.
    if (d.permissions !== undefined || d.kind === "websocket") this.say(service, key);
    else if (first) this.sayLater(service, key);
    return message;
  }

  /** `<service>\0<kind>\0<name>` of the late declarations said; the timers of those waiting for their grant. */
  private readonly said = new Set<string>();
  private readonly saying = new Map<string, ReturnType<typeof setTimeout>>();

  /** Warns of `service`'s refusal of resource `key` (the last one given), once. */
  private say(service: string, key: string): void {
    const id = `${service}\u0000${key}`;
    const timer = this.saying.get(id);
    if (timer !== undefined) {
      clearTimeout(timer);
      this.saying.delete(id);
    }
    const message = this.refused.get(service)?.get(key);
    if (message === undefined || this.said.has(id)) return;
    if (!this.warn(service, id, message)) return;
    if (this.said.size >= MAX_SAID_REGISTRATIONS) this.said.clear();
    this.said.add(id);
  }

  /**
   * Says refusal `id` of `service` (true), unless it has said MAX_SAID_PER_BURST of them in its
   * burst under way: then counts it, once however often it comes (false, so it is said in full if
   * it comes again in a later burst), and the count is said in one line as the burst ends.
   */
  private warn(service: string, id: string, message: string): boolean {
    let burst = this.bursts.get(service);
    if (burst === undefined) {
      burst = { said: 0, held: new Set(), heldPast: 0 };
      this.bursts.set(service, burst);
      const timer = setTimeout(() => this.endBurst(service), LATE_BURST_MS);
      timer.unref?.();
    }
    if (burst.said >= MAX_SAID_PER_BURST) {
      // Bounded: past MAX_SAID_REGISTRATIONS names they are counted without being told apart.
      if (burst.held.size < MAX_SAID_REGISTRATIONS) burst.held.add(id);
      else if (!burst.held.has(id)) burst.heldPast++;
      return false;
    }
    burst.said++;
    this.logger.warn(message);
    return true;
  }

  private endBurst(service: string): void {
    const burst = this.bursts.get(service);
    this.bursts.delete(service);
    const held = (burst?.held.size ?? 0) + (burst?.heldPast ?? 0);
    if (held === 0) return;
    this.logger.warn(
      `service ${JSON.stringify(service)}: ${held} more declarations or handler registrations made after it started were refused within ${LATE_BURST_MS / 1000} s, not said one by one (a loop that declares or registers a name from each client or message?); each is refused as the ${MAX_SAID_PER_BURST} above are, and its calls fail with the reason; declare and register at the top level of the service's entry file`,
    );
  }

  /** Says `key`'s refusal once a grant on it or a call to it comes, or after GRANT_WAIT_MS without either. */
  private sayLater(service: string, key: string): void {
    const id = `${service}\u0000${key}`;
    if (this.said.has(id) || this.saying.has(id)) return;
    const timer = setTimeout(() => this.say(service, key), GRANT_WAIT_MS);
    timer.unref?.();
    this.saying.set(id, timer);
  }

  /**
   * The refusal of handler registration `r` by `service` (said once per service and handler), or
   * undefined when the collect pass saw `service` register it. Waits, as check() does, while a
   * collect pass of the service is under way: a saved service that registers a new handler at its
   * top level restarts before its collect pass ends.
   */
  checkRegistration(service: string, r: LateRegistration): MaybePromise<string | undefined> {
    if (this.registers(service, r)) return undefined;
    const pending = this.pending.get(service);
    if (pending !== undefined) return pending.then(() => this.checkRegistration(service, r));
    const entry = this.spec.services.find((s) => s.name === service);
    // A service the spec does not list has nothing to be checked against (see checkNow).
    if (entry === undefined) return undefined;
    const key = registrationKey({ socket: r.socket, event: r.event, route: r.route || undefined });
    const owner = specRegistrations(this.spec).find((o) => registrationKey(o) === key && o.service !== service);
    const message = lateRegistrationMessage(
      service,
      entry.file,
      r,
      owner === undefined
        ? undefined
        : { name: owner.service, file: this.spec.services.find((s) => s.name === owner.service)?.file },
    );
    this.sayOnce(service, `${service}\u0000${key}`, message);
    return message;
  }

  /**
   * The refusal of `service`'s authorizer of `socket` (said once per service and socket), or
   * undefined when the collect pass saw it give it; waits as checkRegistration does.
   */
  checkAuthorizer(service: string, socket: string): MaybePromise<string | undefined> {
    const ownerOf = () =>
      this.spec.resources.find((x) => x.kind === "websocket" && x.name === socket) as
        | { authorizer?: string }
        | undefined;
    if (ownerOf()?.authorizer === service || this.registered.has(`${service}\u0000authorize\u0000${socket}`))
      return undefined;
    const pending = this.pending.get(service);
    if (pending !== undefined) return pending.then(() => this.checkAuthorizer(service, socket));
    const entry = this.spec.services.find((s) => s.name === service);
    if (entry === undefined) return undefined;
    const owner = ownerOf()?.authorizer;
    const message = lateAuthorizerMessage(
      service,
      entry.file,
      socket,
      owner === undefined ? undefined : { name: owner, file: this.spec.services.find((s) => s.name === owner)?.file },
    );
    this.sayOnce(service, `${service}\u0000authorize\u0000${socket}`, message);
    return message;
  }

  /** Says a refused handler registration or authorizer (`said`: its key) once per service and handler. */
  private sayOnce(service: string, said: string, message: string): void {
    if (this.refusedHandlers.has(said) || !this.warn(service, said, message)) return;
    if (this.refusedHandlers.size >= MAX_SAID_REGISTRATIONS) this.refusedHandlers.clear();
    this.refusedHandlers.add(said);
  }

  /** True when the spec has `service` register `r`. */
  private registers(service: string, r: LateRegistration): boolean {
    const key = registrationKey({ socket: r.socket, event: r.event, route: r.route || undefined });
    if (this.registered.has(`${service}\u0000${key}`)) return true;
    return specRegistrations(this.spec).some((o) => o.service === service && registrationKey(o) === key);
  }

  /** The refusal `service` was given for a declaration of this resource, if any. */
  refusal(service: string, kind: ResourceKind, name: string): string | undefined {
    const key = `${kind}\u0000${name}`;
    const message = this.refused.get(service)?.get(key);
    // A call comes once the declarations before it were answered: no grant is still to come.
    if (message !== undefined) this.say(service, key);
    return message;
  }
}
