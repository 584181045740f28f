/**
 * The local dashboard of `nitric-like run`: a small HTTP server on 127.0.0.1 serving one static
 * page (`packages/cli/dashboard/`) and a JSON API over the running provider's inspector. The page
 * gets live updates as server-sent events; traffic is observed only while at least one page is
 * listening, so an unwatched app pays nothing for it.
 *
 * Only this machine can reach it (127.0.0.1), and only who has the address run printed can use
 * it: every API request carries the run's key, which that address holds after `#key=` (the page
 * sends it as a header, and in the query of its event stream, which cannot have headers), since
 * every user of the machine can reach 127.0.0.1. A web page from elsewhere cannot drive it either:
 * a request must name the dashboard itself as Host (no DNS rebinding), changes need a JSON body
 * (which a cross-origin page cannot send without a CORS preflight, never answered) and a matching
 * Origin when one is given.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { join } from "node:path";
import { boundaryMessage, guard } from "@nitric-like/provider-kit";
import {
  type InspectedConnection,
  kvKeyProblem,
  kvValueProblem,
  type Logger,
  type ProviderInspector,
  type RunningProvider,
  type Spec,
  type TrafficEvent,
} from "@nitric-like/spec";
import { UserError } from "./log.js";
import { cliPackageDir } from "./package-dir.js";

/** The header an API request carries the run's key in (DashboardServer.checkKey). */
const KEY_HEADER = "x-dashboard-key";
/** The port the dashboard tries first. */
export const DEFAULT_DASHBOARD_PORT = 4040;
/** The longest text of a frame the page is sent; the rest is cut (the size is sent in full). */
const PREVIEW_CHARS = 2000;
/** Most traffic events sent to a page per flush (every FLUSH_MS); more are counted as dropped. */
const MAX_EVENTS_PER_FLUSH = 500;
const FLUSH_MS = 50;
/**
 * Most bytes of events that may wait to be sent to one page. A page that stops reading (a frozen
 * tab, a script that opened the stream and never reads it) would otherwise make `run` keep every
 * event for it; past this its stream is ended, and the page's EventSource reconnects once it runs.
 */
export const MAX_PAGE_BACKLOG_BYTES = 1024 * 1024;
/**
 * Most connections the dashboard holds at once. Every user of the machine can open connections to
 * it and send nothing on them, which Node keeps open for ever (its header timeout starts with a
 * request's first byte): unbounded, they would take every file descriptor `run` may open, and the
 * gateways, kv and services with them. Past this, the oldest connection that never carried the
 * run's key and is not being answered is closed to make room, so one without the key cannot keep
 * out a page that has it. A page uses a handful.
 */
export const MAX_DASHBOARD_CONNECTIONS = 256;
/** Most keys one kv listing returns. */
const MAX_KEYS = 500;
/** Most service output lines sent to a page per flush (every FLUSH_MS); more are counted as dropped. */
const MAX_LOG_LINES_PER_FLUSH = 200;
/** The longest service output line a page is sent; the rest is cut. */
const MAX_LOG_LINE_CHARS = 2000;

// A Map, not an object: the path is the client's, and "/constructor" must be a 404 like any other.
const ASSETS = new Map<string, { file: string; type: string }>([
  ["/", { file: "index.html", type: "text/html; charset=utf-8" }],
  ["/app.js", { file: "app.js", type: "text/javascript; charset=utf-8" }],
  ["/style.css", { file: "style.css", type: "text/css; charset=utf-8" }],
]);

/** What the dashboard shows and talks to. */
export interface DashboardOptions {
  /** Port to listen on; 0 picks a free one. */
  port: number;
  /** When the port is taken, use a free one instead of failing (the default port, not one the user asked for). */
  fallback: boolean;
  /** The provider's name, shown on the page. */
  provider: string;
  spec: Spec;
  running: RunningProvider;
  /** Where a request that failed on a bug is logged (one line each). @default stderr */
  logger?: Logger;
  /** The `.env` files read and the names they set, shown on the page; never their values. @default none */
  env?: () => { files: string[]; names: string[] };
  /** Each service and where it is, shown on the page. @default the spec's services, state unknown */
  services?: () => ServiceStatus[];
}

/** A service as the page shows it. */
export interface ServiceStatus {
  name: string;
  /** Its entry file, relative to the project. */
  file: string;
  /** `hosted`: the provider runs it (an emulated function), so run does not know more. */
  state: "starting" | "started" | "restarting" | "waiting" | "hosted" | "unknown";
  /** Why it waits, or the crash it restarts after, in a line. */
  reason?: string;
  /** While it restarts after a crash: when its new copy starts, in ms since the epoch. */
  restartAt?: number;
  /** True while it waits for a file change because it crashed in a loop. */
  crashLoop?: true;
  /** How it runs, in a line, when the provider hosts it (its function's execution environments). */
  detail?: string;
}

/** A running dashboard. */
export interface Dashboard {
  /** Where it listens, `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** The run's key, which every API request carries (the `X-Dashboard-Key` header). */
  readonly key: string;
  /** The address to open: `url` and, after `/#key=`, the key (a fragment: the browser never sends it). */
  readonly pageUrl: string;
  /**
   * One line a service printed, shown in the message log (only while a page is open; bounded per
   * flush, cut to MAX_LOG_LINE_CHARS, so a chatty service costs a bounded amount).
   */
  serviceLine(service: string, stream: "stdout" | "stderr", line: string): void;
  /** The spec changed (run started a new service, or stopped a gone one): pages and the API follow it. */
  setSpec(spec: Spec): void;
  /** A service started, stopped, came or went: the pages show it. */
  servicesChanged(): void;
  /** Tells every page the run stopped (it clears its live state), ends their event streams, stops listening. */
  close(): Promise<void>;
}

/** Consecutive lines of one service's stream, as the page gets them (a stack trace is one entry). */
interface PageLog {
  service: string;
  stream: "stdout" | "stderr";
  at: number;
  lines: string[];
}

/**
 * Collects service output for the pages: consecutive lines of one stream become one entry, at most
 * MAX_LOG_LINES_PER_FLUSH lines wait at a time (the rest are counted), and `send` gets them every
 * FLUSH_MS. Nothing is kept while `watched` is false.
 */
function logCollector(watched: () => boolean, send: (batch: { entries: PageLog[]; dropped: number }) => void) {
  let entries: PageLog[] = [];
  let lines = 0;
  let dropped = 0;
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    timer = undefined;
    if (entries.length > 0 || dropped > 0) send({ entries, dropped });
    entries = [];
    lines = 0;
    dropped = 0;
  };
  return {
    add(service: string, stream: "stdout" | "stderr", line: string): void {
      if (!watched()) return;
      timer ??= setTimeout(flush, FLUSH_MS);
      if (lines >= MAX_LOG_LINES_PER_FLUSH) {
        dropped++;
        return;
      }
      lines++;
      // Colours are for terminals; the page shows text.
      // biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escape sequences start with ESC
      const text = line.slice(0, MAX_LOG_LINE_CHARS).replace(/\x1b\[[0-9;]*[A-Za-z]/g, "");
      const last = entries.at(-1);
      if (last && last.service === service && last.stream === stream) last.lines.push(text);
      else entries.push({ service, stream, at: Date.now(), lines: [text] });
    },
    /** Sends what waits now (the last lines before a stop) and stops the timer. */
    flushNow(): void {
      clearTimeout(timer);
      flush();
    },
  };
}

/** A traffic event as the page gets it: the frame as text (cut to PREVIEW_CHARS) or hex. */
interface PageTraffic {
  type: TrafficEvent["type"];
  socket: string;
  /** The event an `error` is about. */
  event?: "connect" | "message" | "disconnect";
  message?: string;
  /** Absent for a refused connection request, which never got an id. */
  connectionId?: string;
  status?: number;
  at: number;
  direction?: "in" | "out";
  binary?: boolean;
  size?: number;
  text?: string;
  code?: number;
  reason?: string;
}

function pageTraffic(event: TrafficEvent): PageTraffic {
  if (event.type !== "message") return event;
  const { data, binary } = event;
  const text = binary
    ? Buffer.from(data.buffer, data.byteOffset, Math.min(data.byteLength, PREVIEW_CHARS / 2)).toString("hex")
    : Buffer.from(data.buffer, data.byteOffset, Math.min(data.byteLength, PREVIEW_CHARS * 4))
        .toString("utf8")
        .slice(0, PREVIEW_CHARS);
  const { direction, socket, connectionId, at } = event;
  return { type: "message", direction, socket, connectionId, at, binary, size: data.byteLength, text };
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The HTTP status of a provider's refusal (an error with a gRPC code); 500 for anything else. */
function refusalStatus(error: unknown): number {
  const code = (error as { code?: unknown } | null)?.code;
  // gRPC's INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED, FAILED_PRECONDITION,
  // OUT_OF_RANGE, and UNAVAILABLE (a socket whose gateway is starting or failed to start, a send
  // that closed its client as not reading).
  const statuses: Partial<Record<number, number>> = { 3: 400, 5: 404, 6: 409, 7: 403, 9: 412, 11: 400, 14: 503 };
  return (typeof code === "number" ? statuses[code] : undefined) ?? 500;
}

function listen(server: Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
}

/**
 * The names a request may address the dashboard by: this machine's loopback, on any port (a port
 * forward such as `ssh -L 8080:127.0.0.1:4040` keeps the name and changes the port). A web page
 * that rebinds its own name to 127.0.0.1 (DNS rebinding) sends that name, on the dashboard's port.
 */
const LOOPBACK_HOST = /^(?:127\.0\.0\.1|localhost|\[::1\])(?::\d{1,5})?$/i;

/** The largest request body the API takes (a kv value or a message, as JSON). */
const MAX_BODY_BYTES = 1024 * 1024;
/**
 * The most of a body over MAX_BODY_BYTES read and dropped after its 413 is sent; past it the
 * connection is cut. A connection closed while its client still sends is reset (RFC 9112 section
 * 9.6), and a reset can reach the client before it reads the answer: a browser, which uploads the
 * whole body before it reads, shows "Failed to fetch" instead of the reason. So the rest is read
 * (and the connection kept for the next request) up to this, for a body of any plausible size.
 */
const MAX_DROPPED_BYTES = 16 * 1024 * 1024;

/**
 * A request's body of at most MAX_BODY_BYTES. Over it, throws 413 at once (the caller answers)
 * and reads on, dropping what comes, until the body ends or MAX_DROPPED_BYTES went by.
 */
function readBody(req: IncomingMessage): Promise<Buffer> {
  const socket = req.socket;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const refuse = () => {
      req.off("data", keep);
      chunks.length = 0;
      req.on("data", (chunk: Buffer) => {
        size += chunk.byteLength;
        if (size > MAX_DROPPED_BYTES) socket.destroy();
      });
      reject(new HttpError(413, `request body over 1 MiB (${MAX_BODY_BYTES} bytes); send a smaller value or message`));
    };
    const keep = (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > MAX_BODY_BYTES) refuse();
      else chunks.push(chunk);
    };
    req.on("error", reject);
    req.on("end", () => resolve(Buffer.concat(chunks, size)));
    // A body that says it is too large is refused before any of it is read.
    if (Number(req.headers["content-length"]) > MAX_BODY_BYTES) refuse();
    else req.on("data", keep);
  });
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  if (!(req.headers["content-type"] ?? "").startsWith("application/json"))
    throw new HttpError(415, "send the request body as application/json");
  // Bytes first, text once they are all here: a character whose bytes two chunks split would
  // otherwise be decoded as two halves, each U+FFFD, and saved so.
  const body = await readBody(req);
  try {
    const parsed: unknown = JSON.parse(body.toString("utf8"));
    if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed))
      return parsed as Record<string, unknown>;
  } catch {
    // answered below
  }
  throw new HttpError(400, "the request body must be a JSON object");
}

function field(body: Record<string, unknown>, name: string): string {
  const value = body[name];
  if (typeof value !== "string" || value.length === 0) throw new HttpError(400, `"${name}" must be a non-empty string`);
  return value;
}

/** An optional field of a request body: undefined when absent, else it must be of `type`. */
function optional<T extends "string" | "number" | "boolean">(
  body: Record<string, unknown>,
  name: string,
  type: T,
): (T extends "string" ? string : T extends "number" ? number : boolean) | undefined {
  const value = body[name];
  if (value === undefined) return undefined;
  if (typeof value !== type) throw new HttpError(400, `"${name}" must be a ${type}, or left out`);
  return value as never;
}

/** A kv rule's refusal of what a request gave (@nitric-like/spec): the client's mistake, 400 with kv's words. */
function refuseKv(problem: string | undefined): void {
  if (problem !== undefined) throw new HttpError(400, problem);
}

/** Starts the dashboard. A port the user asked for that is taken is a UserError. */
export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const dashboard = new DashboardServer(options);
  await dashboard.listen();
  return {
    url: dashboard.url,
    key: dashboard.key,
    pageUrl: dashboard.pageUrl,
    serviceLine: (service, stream, line) => dashboard.serviceLine(service, stream, line),
    setSpec: (spec) => dashboard.setSpec(spec),
    servicesChanged: () => dashboard.servicesChanged(),
    close: () => dashboard.close(),
  };
}

/** How often an open page's secrets are read again, for a version another process stored. */
const SECRETS_POLL_MS = 1000;

/** The dashboard's server: its pages' event streams, the JSON API and the page's files. */
class DashboardServer {
  private readonly running: RunningProvider;
  private readonly inspect: ProviderInspector | undefined;
  private spec: Spec;
  private stores = new Set<string>();
  private sockets = new Set<string>();
  /** The event streams of the open pages. */
  private readonly pages = new Set<ServerResponse>();
  /** Reads the secrets' newest versions while a page is open (SECRETS_POLL_MS). */
  private readonly secretsTimer: NodeJS.Timeout;
  /** The secrets' newest versions as the pages were last sent them, to tell them of a change. */
  private secretsSeen: string | undefined;
  private port = 0;
  /** Stops the provider's traffic events: set while a page listens. */
  private unsubscribe: (() => void) | undefined;
  private queue: PageTraffic[] = [];
  private dropped = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly logs = logCollector(
    () => this.pages.size > 0,
    (batch) => this.emit("log", batch),
  );
  private readonly server: Server;
  /** Every open connection, oldest first (MAX_DASHBOARD_CONNECTIONS). */
  private readonly connections = new Set<Socket>();
  /** The connections that carried this run's key: never closed to make room. */
  private readonly keyed = new WeakSet<Socket>();
  /** How many requests each connection has being answered now: not closed to make room meanwhile. */
  private readonly answering = new WeakMap<Socket, number>();
  /** This run's key (KEY_HEADER): 144 random bits, new each run. */
  readonly key = randomBytes(18).toString("base64url");

  constructor(private readonly options: DashboardOptions) {
    const { running } = options;
    this.running = running;
    this.inspect = running.inspect;
    this.spec = options.spec;
    this.resources();
    running.onRegistrationsChanged(() => {
      if (this.pages.size > 0) void this.state().then((st) => this.emit("state", st));
    });
    // `nitric-like secret put` stores from another process: while a page is open, the secrets'
    // newest versions are read every SECRETS_POLL_MS and the pages told when one changed.
    this.secretsTimer = setInterval(() => {
      if (this.pages.size === 0 || !this.inspect?.secretVersions) return;
      if (!this.spec.resources.some((r) => r.kind === "secret")) return;
      void this.inspect.secretVersions().then(
        (versions) => {
          if (JSON.stringify(versions) !== this.secretsSeen) this.servicesChanged();
        },
        () => {},
      );
    }, SECRETS_POLL_MS);
    this.secretsTimer.unref();
    // The boundary of every request: an HttpError is the client's mistake and an error with a gRPC
    // code the provider's refusal (a kv key or value it does not take), each answered with its
    // status; anything else is a bug, answered with 500 and logged in one line, and the dashboard
    // carries on.
    this.server = createServer((req, res) => {
      const socket = req.socket;
      this.answering.set(socket, (this.answering.get(socket) ?? 0) + 1);
      res.once("close", () => this.answering.set(socket, (this.answering.get(socket) ?? 1) - 1));
      guard(
        () => this.handle(req, res),
        (error: unknown) => this.failed(req, res, error),
      );
    });
    this.server.on("connection", (socket: Socket) => this.admit(socket));
  }

  /** Holds a new connection, closing the oldest idle one without the key when there are too many. */
  private admit(socket: Socket): void {
    this.connections.add(socket);
    socket.once("close", () => this.connections.delete(socket));
    if (this.connections.size <= MAX_DASHBOARD_CONNECTIONS) return;
    for (const old of this.connections) {
      if (old === socket) break;
      if (this.keyed.has(old) || (this.answering.get(old) ?? 0) > 0) continue;
      this.connections.delete(old);
      old.destroy();
      return;
    }
    // Every older one is a page's or being answered: the new one waits for none.
    this.connections.delete(socket);
    socket.destroy();
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get pageUrl(): string {
    return `${this.url}/#key=${this.key}`;
  }

  /**
   * Refuses an API request without this run's key: from the header, or for the event stream (an
   * EventSource sends no headers) from the query. The page's files hold no data and need none.
   */
  private checkKey(req: IncomingMessage, url: URL): void {
    const header = req.headers[KEY_HEADER];
    const given =
      typeof header === "string" ? header : url.pathname === "/api/events" ? (url.searchParams.get("key") ?? "") : "";
    const a = Buffer.from(given);
    const b = Buffer.from(this.key);
    if (a.length === b.length && timingSafeEqual(a, b)) {
      this.keyed.add(req.socket);
      return;
    }
    throw new HttpError(
      401,
      given === ""
        ? "this request has no key: open the dashboard at the address run printed, which ends with #key=..."
        : "this key is not this run's (a run makes a new one each time it starts): open the dashboard at the address this run printed",
    );
  }

  /** Listens on the port asked for; on a free one instead when it is taken and `fallback` allows it. */
  async listen(): Promise<void> {
    const { options } = this;
    try {
      await listen(this.server, options.port);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EADDRINUSE") throw error;
      if (!options.fallback)
        throw new UserError(
          `dashboard: port ${options.port} is already in use; pick another with --dashboard-port, or --no-dashboard`,
        );
      await listen(this.server, 0);
    }
    const address = this.server.address();
    this.port = typeof address === "object" && address ? address.port : options.port;
  }

  /** The stores and sockets of the spec, which requests may name. */
  private resources(): void {
    this.stores = new Set(this.spec.resources.filter((r) => r.kind === "kv").map((r) => r.name));
    this.sockets = new Set(this.spec.resources.filter((r) => r.kind === "websocket").map((r) => r.name));
  }

  setSpec(spec: Spec): void {
    this.spec = spec;
    this.resources();
    this.servicesChanged();
  }

  servicesChanged(): void {
    if (this.pages.size > 0) void this.state().then((st) => this.emit("state", st));
  }

  serviceLine(service: string, stream: "stdout" | "stderr", line: string): void {
    this.logs.add(service, stream, line);
  }

  async close(): Promise<void> {
    clearTimeout(this.flushTimer);
    clearInterval(this.secretsTimer);
    this.logs.flushNow();
    this.emit("stopped", { at: Date.now() });
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    for (const page of this.pages) page.end();
    this.pages.clear();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  /** Sends an event to every page; a page too far behind is dropped instead. */
  private emit(event: string, data: unknown): void {
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const page of this.pages) {
      if (page.writableLength > MAX_PAGE_BACKLOG_BYTES) this.dropPage(page);
      else page.write(frame);
    }
  }

  /** Ends the stream of a page that fell behind: what waits for it is dropped with it. */
  private dropPage(page: ServerResponse): void {
    this.pages.delete(page);
    page.destroy();
    this.unwatchIfUnseen();
  }

  /** With no page left, traffic is no longer observed. */
  private unwatchIfUnseen(): void {
    if (this.pages.size === 0 && this.unsubscribe) {
      this.unsubscribe();
      this.unsubscribe = undefined;
    }
  }

  private flush(): void {
    this.flushTimer = undefined;
    if (this.queue.length > 0) this.emit("traffic", { events: this.queue, dropped: this.dropped });
    this.queue = [];
    this.dropped = 0;
  }

  private readonly onTraffic = (event: TrafficEvent): void => {
    if (this.queue.length >= MAX_EVENTS_PER_FLUSH) this.dropped++;
    else this.queue.push(pageTraffic(event));
    this.flushTimer ??= setTimeout(() => this.flush(), FLUSH_MS);
  };

  private async state() {
    const { options, inspect, running } = this;
    return {
      project: this.spec.name,
      provider: options.provider,
      inspect: inspect !== undefined,
      // Why the kv browser is off on a provider that shows connections but not its stores.
      ...(inspect?.kvUnavailable === undefined ? {} : { kvUnavailable: inspect.kvUnavailable }),
      spec: this.spec,
      sockets: running.sockets(),
      registrations: running.registrations(),
      // What each socket enforces, so a limit that closes or refuses connections can be read here.
      limits: inspect ? await inspect.limits() : {},
      // Which secrets have a value, and its version: never a value.
      secretVersions: await this.secretVersions(),
      env: options.env?.() ?? { files: [], names: [] },
      services:
        options.services?.() ??
        this.spec.services.map((s): ServiceStatus => ({ name: s.name, file: s.file, state: "unknown" })),
    };
  }

  /** The secrets' newest versions, remembered as what the pages are sent. */
  private async secretVersions(): Promise<{ name: string; version: string }[]> {
    const versions = (await this.inspect?.secretVersions?.()) ?? [];
    this.secretsSeen = JSON.stringify(versions);
    return versions;
  }

  private needInspect(): ProviderInspector {
    if (!this.inspect) throw new HttpError(501, `provider "${this.options.provider}" offers no live inspection`);
    return this.inspect;
  }

  private needKv(): ProviderInspector {
    const inspector = this.needInspect();
    if (inspector.kvUnavailable !== undefined) throw new HttpError(501, inspector.kvUnavailable);
    return inspector;
  }

  private socketNamed(name: string): string {
    if (!this.sockets.has(name)) throw new HttpError(404, `websocket "${name}" is not in the spec`);
    return name;
  }

  private store(name: string): string {
    if (!this.stores.has(name)) throw new HttpError(404, `kv store "${name}" is not in the spec`);
    return name;
  }

  /** Serves one request (the boundary in the constructor answers what it throws). */
  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const host = req.headers.host ?? "";
    if (!LOOPBACK_HOST.test(host))
      throw new HttpError(
        421,
        `${host === "" ? "this request names no host" : `this request is addressed to ${JSON.stringify(host.slice(0, 200))}`}, not to 127.0.0.1, localhost or [::1]: open the dashboard at the address run printed (it answers no other name, which a web page could point at this machine)`,
      );
    let url: URL;
    try {
      url = new URL(req.url ?? "/", `http://${host}`);
    } catch {
      throw new HttpError(400, `invalid request path ${JSON.stringify(req.url)}`);
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      const origin = req.headers.origin;
      if (origin !== undefined && origin !== `http://${host}`)
        throw new HttpError(
          403,
          `a page of another origin (${JSON.stringify(origin.slice(0, 200))}) may not change anything here: use the dashboard's own page, at the address run printed`,
        );
    }
    if (url.pathname.startsWith("/api/")) this.checkKey(req, url);
    if (url.pathname === "/api/events" && req.method === "GET") return this.events(req, res);
    if (url.pathname.startsWith("/api/")) {
      const result = await this.api(req, url);
      res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-store" });
      res.end(JSON.stringify(result));
      return;
    }
    await this.asset(req, res, url);
  }

  /** Answers a request that failed: its status and message, and a bug logged in one line. */
  private failed(req: IncomingMessage, res: ServerResponse, error: unknown): void {
    const status = error instanceof HttpError ? error.status : refusalStatus(error);
    const message = error instanceof Error ? error.message : String(error);
    if (status === 500) {
      const line = boundaryMessage("dashboard", `serving ${req.method} ${req.url}`, error, "answered it with 500");
      if (this.options.logger) this.options.logger.error(line);
      else console.error(line);
    }
    if (res.headersSent) {
      res.end();
      return;
    }
    res.writeHead(status, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ error: message }));
  }

  /** A page's event stream: the state at once, then traffic, logs and state changes as they come. */
  private events(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-store", Connection: "keep-alive" });
    void this.state().then((st) => res.write(`event: state\ndata: ${JSON.stringify(st)}\n\n`));
    this.pages.add(res);
    if (this.inspect && !this.unsubscribe) this.unsubscribe = this.inspect.onTraffic(this.onTraffic);
    req.on("close", () => {
      this.pages.delete(res);
      this.unwatchIfUnseen();
    });
  }

  /** The JSON API. */
  private async api(req: IncomingMessage, url: URL): Promise<unknown> {
    const route = `${req.method} ${url.pathname}`;
    const q = (name: string) => url.searchParams.get(name) ?? "";
    switch (route) {
      case "GET /api/state":
        return this.state();
      case "GET /api/connections":
        return boundedListing(await this.needInspect().connections());
      case "POST /api/send":
        return this.send(await readJson(req));
      case "POST /api/close":
        return this.closeConnection(await readJson(req));
      case "GET /api/kv/keys":
        return { keys: await this.needKv().kvKeys(this.store(q("store")), q("prefix"), MAX_KEYS), limit: MAX_KEYS };
      case "GET /api/kv/value": {
        // A key kv would refuse is the request's mistake (400), checked here with kv's rules before
        // the provider, whose own refusal is a plain error (500, "a bug"). A prefix from a query
        // string is always one kv takes (decoding it cannot give a lone surrogate).
        const store = this.store(q("store"));
        const key = q("key");
        refuseKv(kvKeyProblem(store, "get", key));
        const value = await this.needKv().kvGet(store, key);
        if (value === undefined) throw new HttpError(404, `key "${key}" not found`);
        return { value };
      }
      case "PUT /api/kv/value":
        return this.saveValue(await readJson(req));
      case "DELETE /api/kv/value": {
        const store = this.store(q("store"));
        refuseKv(kvKeyProblem(store, "delete", q("key")));
        await this.needKv().kvDelete(store, q("key"));
        return { deleted: true };
      }
      default:
        throw new HttpError(404, `no such API: ${route}`);
    }
  }

  /** Sends a frame to one connection, or to every connection of the socket. */
  private async send(body: Record<string, unknown>): Promise<{ sent: number }> {
    const socket = this.socketNamed(field(body, "socket"));
    // Checked, not coerced: a connectionId of another type taken as none would broadcast to all.
    const connectionId = optional(body, "connectionId", "string") ?? "";
    const data = Buffer.from(optional(body, "text", "string") ?? "", "utf8");
    const binary = optional(body, "binary", "boolean") ?? false;
    if (connectionId !== "") {
      const sent = await this.needInspect().send(socket, connectionId, data, binary);
      if (!sent) throw new HttpError(404, `connection ${connectionId} of websocket "${socket}" is not open`);
      return { sent: 1 };
    }
    return { sent: await this.needInspect().broadcast(socket, data, binary) };
  }

  /** Closes a connection with a code and reason a service could give (RFC 6455 section 7.4). */
  private async closeConnection(body: Record<string, unknown>): Promise<{ closed: true }> {
    const socket = this.socketNamed(field(body, "socket"));
    const id = field(body, "connectionId");
    const code = optional(body, "code", "number") ?? 1000;
    // A fraction would be cut to a whole code on the wire, a code the request did not ask for.
    if (!Number.isInteger(code) || (code !== 1000 && (code < 3000 || code > 4999)))
      throw new HttpError(400, "a close code is 1000 or between 3000 and 4999");
    const reason = optional(body, "reason", "string") ?? "";
    if (Buffer.byteLength(reason) > 123) throw new HttpError(400, "a close reason is at most 123 bytes");
    if (!(await this.needInspect().close(socket, id, code, reason)))
      throw new HttpError(404, `connection ${id} of websocket "${socket}" is not open`);
    return { closed: true };
  }

  /** Saves a kv value, if every kv set() would take it. */
  private async saveValue(body: Record<string, unknown>): Promise<{ saved: true }> {
    const value = body.value;
    const name = this.store(field(body, "store"));
    const key = field(body, "key");
    // The rules every kv set() follows (@nitric-like/spec), so a value saved here is one AWS keeps too.
    const problem = kvValueProblem(name, key, value);
    if (problem !== undefined) throw new HttpError(400, problem);
    await this.needKv().kvSet(name, key, value as Record<string, unknown>);
    return { saved: true };
  }

  /** One of the page's files. */
  private async asset(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const asset = ASSETS.get(url.pathname);
    // HEAD as GET without the body (RFC 9110 section 9.3.2): a page that is here is not a 404.
    if (!asset || (req.method !== "GET" && req.method !== "HEAD")) throw new HttpError(404, "not found");
    const body = await readFile(join(cliPackageDir(), "dashboard", asset.file));
    res.writeHead(200, {
      "Content-Type": asset.type,
      "Cache-Control": "no-store",
      "X-Content-Type-Options": "nosniff",
      // The page shows what apps send; it renders it as text, and this keeps any mistake inert. It
      // connects to nothing but this server and, as a client ("Try a socket"), the gateways' host.
      "Content-Security-Policy": `default-src 'self'; connect-src 'self' ${socketSources(this.running.sockets())}; img-src 'self' data:; frame-ancestors 'none'`,
    });
    res.end(body);
  }
}

/**
 * What the page's CSP lets it open WebSockets to: the host of each socket's URL, on any port (a
 * socket a new service declares while the page is open gets a port of its own on the same host).
 */
export function socketSources(sockets: readonly { url: string }[]): string {
  const sources = new Set<string>();
  for (const { url } of sockets) {
    try {
      const parsed = new URL(url);
      if (parsed.protocol === "ws:" || parsed.protocol === "wss:")
        sources.add(`${parsed.protocol}//${parsed.hostname}:*`);
    } catch {
      // Not a URL: nothing to allow.
    }
  }
  return sources.size === 0 ? "ws://127.0.0.1:*" : [...sources].join(" ");
}

/**
 * Most characters of identities, states, queries and headers one connection listing carries. An
 * identity and a state can be 8 KB and 16 KB, a connection request's query and headers 16 KB, on
 * each of 10,000 connections (400 MB a listing, refreshed while traffic flows); past this budget
 * each of them is cut to the page's preview length and marked with a trailing "…".
 */
export const LISTING_EXTRAS_CHARS = 4_000_000;
const CUT_CHARS = 80;

/** Characters of a query's or headers' names and values. */
function valuesChars(values: Record<string, string[]>): number {
  let n = 0;
  for (const [name, list] of Object.entries(values)) {
    n += name.length;
    for (const v of list) n += v.length;
  }
  return n;
}

/** The listing with identities, states, queries and headers within LISTING_EXTRAS_CHARS, in listing order. */
export function boundedListing(list: InspectedConnection[]): InspectedConnection[] {
  let budget = LISTING_EXTRAS_CHARS;
  const cut = (value: string) => (value.length > CUT_CHARS ? `${value.slice(0, CUT_CHARS)}…` : value);
  // Names cut alike keep every value, under one name. A Map first: names are the client's.
  const cutValues = (values: Record<string, string[]>) => {
    const cutNames = new Map<string, string[]>();
    for (const [name, list] of Object.entries(values)) {
      const short = cut(name);
      cutNames.set(short, [...(cutNames.get(short) ?? []), ...list.map(cut)]);
    }
    return Object.fromEntries(cutNames);
  };
  return list.map((c) => {
    const size = c.auth.length + (c.state?.length ?? 0) + valuesChars(c.query) + valuesChars(c.headers);
    if (size <= budget) {
      budget -= size;
      return c;
    }
    budget = 0;
    return {
      ...c,
      query: cutValues(c.query),
      headers: cutValues(c.headers),
      auth: cut(c.auth),
      ...(c.state === undefined ? {} : { state: cut(c.state) }),
    };
  });
}
