/**
 * Limits: what a socket accepts before it refuses or closes, with AWS API Gateway's values as the
 * defaults so that what breaks in production breaks locally first. Set in the project file, for
 * every socket under `limits:` and per socket under `websockets.<name>.limits:`:
 *
 * ```yaml
 * limits:
 *   maxMessageBytes: 128KB     # 1009 "message too big" over it
 *   idleTimeout: 10m           # 1001 after this long without a message from the client
 *   maxConnectionAge: 2h       # 1001 after this long, however busy
 *   maxConnections: 10000      # per socket; more upgrades are refused with 429
 *   messagesPerSecond: 1000    # per connection, a token bucket...
 *   messageBurst: 1000         # ...of this size; over it, 1008 "rate limit"
 *   handlerTimeout: 5s         # every handler, as Ampt (at most 60s; 28s on AWS); top level only
 *   maxPendingMessages: 100    # per connection, messages waiting for the handler; over it the
 *   maxPendingBytes: 1MB       #   gateway stops reading that client (TCP backpressure)
 *   upgradeTimeout: 10s        # a connection must finish its upgrade request this soon: 408
 *   maxPendingBytesTotal: 32MB # every socket's connections together; top level only
 *   maxQueuedBytesTotal: 64MB  # bytes waiting to be sent to slow clients, all of them; top level only
 * ```
 */

/** The limits of one socket, resolved (milliseconds, bytes, counts). */
export interface SocketLimits {
  /** Largest message a client may send. @default 131072 (128 KiB, API Gateway's payload limit) */
  maxMessageBytes: number;
  /** A connection with no message (or ping) from its client for this long is closed with 1001. @default 600000 (10 min, API Gateway) */
  idleTimeoutMs: number;
  /** A connection open this long is closed with 1001. @default 7200000 (2 h, API Gateway) */
  maxConnectionAgeMs: number;
  /**
   * TCP connections per socket, counted from the moment one is accepted (open, opening, or still
   * sending its upgrade request); upgrades past it get 429. @default 10000
   */
  maxConnections: number;
  /** Messages per second a connection may send, on average. @default 1000 */
  messagesPerSecond: number;
  /** Messages a connection may send at once above the average (the bucket's size). @default 1000 */
  messageBurst: number;
  /**
   * Messages of one connection given to the handler and not yet answered; at this many the gateway
   * stops reading that connection until answers come back. @default 100
   */
  maxPendingMessages: number;
  /** The same bound in bytes (the messages' payloads). @default 1048576 (1 MiB) */
  maxPendingBytes: number;
  /** How long a new connection has to send its whole upgrade request; later, 408. @default 10000 */
  upgradeTimeoutMs: number;
}

/** Limits of a whole app: every socket's, plus the ones every socket shares. */
export interface AppLimits extends SocketLimits {
  /** How long a handler may take to answer an event. @default 5000 (as Ampt; at most 60000) */
  handlerTimeoutMs: number;
  /**
   * Bytes of every connection of every socket waiting for their handlers (payload plus 512 per
   * message); past it the gateways stop reading the connections that send. @default 33554432 (32 MiB)
   */
  maxPendingBytesTotal: number;
  /**
   * Bytes waiting to be sent to clients, all of them together; past it the client with the most
   * waiting is closed as not reading (each client also has its own 8 MiB). Under 8 MiB it is also
   * the largest message the local gateway sends (a larger send is refused), so that one message
   * cannot close a client that reads. @default 67108864 (64 MiB)
   */
  maxQueuedBytesTotal: number;
}

/** The defaults: AWS API Gateway's where it has one, Ampt's handler timeout. */
export const DEFAULT_LIMITS: Readonly<AppLimits> = Object.freeze({
  maxMessageBytes: 128 * 1024,
  idleTimeoutMs: 10 * 60_000,
  maxConnectionAgeMs: 2 * 3_600_000,
  maxConnections: 10_000,
  messagesPerSecond: 1000,
  messageBurst: 1000,
  maxPendingMessages: 100,
  maxPendingBytes: 1024 * 1024,
  upgradeTimeoutMs: 10_000,
  handlerTimeoutMs: 5000,
  maxPendingBytesTotal: 32 * 1024 * 1024,
  maxQueuedBytesTotal: 64 * 1024 * 1024,
});

/** The longest handler timeout (Ampt's maximum). */
export const MAX_HANDLER_TIMEOUT_MS = 60_000;

/**
 * The timeout of a function that serves handlers of `handlerTimeoutMs` (Lambda's Timeout, in
 * seconds): at least `atLeastSeconds` (30 by default), and always 5 s above the handler timeout,
 * or Lambda would cut an event before its handler timed out. `run` gives a service whose event
 * loop is blocked as long before it restarts it.
 */
export function functionTimeoutSeconds(
  handlerTimeoutMs = DEFAULT_LIMITS.handlerTimeoutMs,
  atLeastSeconds = 30,
): number {
  return Math.max(atLeastSeconds, Math.ceil(handlerTimeoutMs / 1000) + 5);
}

/**
 * The variable that gives a service process the descriptor of the pipe on which `run` checks that
 * its event loop turns: each byte written there is answered with "!" (run's bundles and our SDK
 * answer it; see the CLI's service-process.ts).
 */
export const ALIVE_FD_VAR = "NITRIC_LIKE_ALIVE_FD";

/**
 * How the name of the collect pass's sign of life starts (a grant of nothing our SDK sends while
 * work its service started as it loaded is waited for, see the SDK's load-work.ts): a LoadWaiting
 * as JSON after it, which names pending requests and connections as well as timers (an older
 * SDK's: a list of `timers` alone). The name says timers alone and is kept so: SDKs already
 * built send it.
 */
export const LOAD_TIMERS_SIGN = "nitric-like:load-timers:";

/**
 * The longest one piece of the work a service started as it loaded is waited for by its collect
 * pass: a timer is waited for only when it is due within this, a connection's unanswered request
 * for this at a stretch (our SDK's load-work.ts waits; the collector's note says these bounds).
 */
export const LOAD_WORK_EACH_MS = 10_000;

/** The longest all the work a service started as it loaded is waited for, from when it loaded (as LOAD_WORK_EACH_MS). */
export const LOAD_WORK_TOTAL_MS = 30_000;

/** What the collect pass's sign of life says is waited for (LOAD_TIMERS_SIGN). */
export interface LoadWaiting {
  /** Each pending timer: the stack frames of the code that started it, the nearest first. */
  timers: string[][];
  /** Each kind of pending request, as said: "a file system call", "a DNS lookup"... */
  requests: string[];
  /** Each connection with a request not answered yet: where it was opened (frames) and to whom. */
  connections: { frames: string[]; peer?: string }[];
  /**
   * Each child process not ended yet: where it was started (frames), its program (a shell's
   * command line's first word, or the program's file name; never its arguments) and its pid.
   * Absent from an older SDK's sign.
   */
  processes?: { frames: string[]; command?: string; pid?: number }[];
  /**
   * Each worker thread listened to that has neither sent a message nor exited: where it was
   * started (frames). Absent from an older SDK's sign.
   */
  workers?: { frames: string[] }[];
  /**
   * Each MessagePort (a MessageChannel's end) listened to for messages that has had none: where it
   * was made (frames). Absent from an older SDK's sign.
   */
  ports?: { frames: string[] }[];
}

/**
 * How the name of the collect pass's note of an unfinished load starts (a grant of nothing our SDK
 * sends in the collect pass when the service's module has not finished loading a moment after its
 * last declaration or registration: it is at a top-level await): JSON after it, the stack frames
 * of that last call, the nearest first; `null` once the module has finished loading. The
 * collector waits for such a module (up to CollectOptions.loadingMs), and says so.
 */
export const LOAD_PENDING_SIGN = "nitric-like:load-pending:";

/**
 * The global symbol (Symbol.for) the first line of run's bundles sets: the runner will tell our
 * SDK when the service's module has finished loading (the bundle's last line, or its thread's
 * start()). Without it (a `start` command) the SDK cannot know, so it sends no LOAD_PENDING_SIGN.
 */
export const LOAD_SAID_SYMBOL = "nitric-like.load-said";

/**
 * The largest identity an authorizer may give a connection, JSON-encoded: API Gateway's limit on a
 * Lambda authorizer's context (8 KB), kept on every provider so an app that runs locally deploys.
 */
export const MAX_IDENTITY_BYTES = 8192;

const MAX_DURATION_MS = 7 * 24 * 3_600_000;
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
const MAX_TOTAL_BYTES = 4 * 1024 * 1024 * 1024;

type Kind = "bytes" | "duration" | "count" | "rate";
interface KeySpec {
  field: keyof AppLimits;
  kind: Kind;
  example: string;
  /** Set under the top-level `limits:` only, saying why elsewhere. */
  topLevel?: string;
  /** The largest value, for sizes and durations (default 64MB and 168h). */
  max?: [number, string];
}
const KEYS: Record<string, KeySpec> = {
  maxMessageBytes: { field: "maxMessageBytes", kind: "bytes", example: "128KB" },
  idleTimeout: { field: "idleTimeoutMs", kind: "duration", example: "10m" },
  maxConnectionAge: { field: "maxConnectionAgeMs", kind: "duration", example: "2h" },
  maxConnections: { field: "maxConnections", kind: "count", example: "10000" },
  messagesPerSecond: { field: "messagesPerSecond", kind: "rate", example: "100" },
  messageBurst: { field: "messageBurst", kind: "count", example: "200" },
  maxPendingMessages: { field: "maxPendingMessages", kind: "count", example: "100" },
  maxPendingBytes: { field: "maxPendingBytes", kind: "bytes", example: "1MB" },
  upgradeTimeout: { field: "upgradeTimeoutMs", kind: "duration", example: "10s", max: [600_000, "10m"] },
  handlerTimeout: {
    field: "handlerTimeoutMs",
    kind: "duration",
    example: "5s",
    topLevel: "applies to every handler",
    max: [MAX_HANDLER_TIMEOUT_MS, "60s"],
  },
  maxPendingBytesTotal: {
    field: "maxPendingBytesTotal",
    kind: "bytes",
    example: "32MB",
    topLevel: "is shared by every socket",
    max: [MAX_TOTAL_BYTES, "4096MB"],
  },
  maxQueuedBytesTotal: {
    field: "maxQueuedBytesTotal",
    kind: "bytes",
    example: "64MB",
    topLevel: "is shared by every socket",
    max: [MAX_TOTAL_BYTES, "4096MB"],
  },
};

const UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000 };
const UNITS_BYTES: Record<string, number> = { b: 1, kb: 1024, kib: 1024, mb: 1024 * 1024, mib: 1024 * 1024 };

/** A limit that is not valid; the message names the key and says what to write instead. */
export class LimitError extends Error {
  override readonly name = "LimitError";
}

/** "10m", "1.5h", "500ms" (ms, s, m or min, h) in milliseconds; undefined for anything else. */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value !== "string") return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)\s*$/.exec(value);
  if (!m) return undefined;
  return Math.round(Number(m[1]) * (UNITS_MS[m[2] as string] as number));
}

function parseBytes(value: unknown): number | undefined {
  if (typeof value === "number") return Number.isInteger(value) ? value : undefined;
  if (typeof value !== "string") return undefined;
  const m = /^\s*(\d+)\s*([a-zA-Z]*)\s*$/.exec(value);
  const unit = UNITS_BYTES[(m?.[2] || "b").toLowerCase()];
  return m && unit ? Number(m[1]) * unit : undefined;
}

/**
 * Reads a `limits:` mapping (`at` is where it is, such as `websockets.chat.limits`) into the
 * fields it sets. Throws LimitError naming the key, the value and the fix.
 */
export function parseLimits(raw: unknown, at: string, topLevel = true): Partial<AppLimits> {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== "object" || Array.isArray(raw)) {
    throw new LimitError(`${at} must be a mapping, such as\n  ${at.split(".").pop()}:\n    idleTimeout: 10m`);
  }
  const out: Partial<AppLimits> = {};
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    const spec = KEYS[key];
    if (!spec) {
      throw new LimitError(`${at}.${key} is not a limit; use one of ${Object.keys(KEYS).join(", ")}`);
    }
    if (spec.topLevel !== undefined && !topLevel) {
      throw new LimitError(`${at}.${key} ${spec.topLevel}; set it under the top-level limits: instead`);
    }
    const got = JSON.stringify(value);
    let parsed: number | undefined;
    let rule: string;
    if (spec.kind === "duration") {
      parsed = parseDuration(value);
      const [max, shown] = spec.max ?? [MAX_DURATION_MS, "168h"];
      if (parsed !== undefined && (parsed < 1 || parsed > max)) parsed = undefined;
      rule = `a duration from 1ms to ${shown} with its unit (ms, s, m, h), such as ${spec.example}`;
    } else if (spec.kind === "bytes") {
      parsed = parseBytes(value);
      const [max, shown] = spec.max ?? [MAX_MESSAGE_BYTES, "64MB"];
      if (parsed !== undefined && (parsed < 1 || parsed > max)) parsed = undefined;
      rule = `a size from 1 byte to ${shown}, in bytes or with a unit (KB, MB), such as ${spec.example}`;
    } else if (spec.kind === "rate") {
      parsed = typeof value === "number" && Number.isFinite(value) && value > 0 ? value : undefined;
      rule = `a number above 0, such as ${spec.example}`;
    } else {
      parsed = typeof value === "number" && Number.isInteger(value) && value >= 1 ? value : undefined;
      rule = `a whole number from 1, such as ${spec.example}`;
    }
    if (parsed === undefined) throw new LimitError(`${at}.${key} is ${got}: use ${rule}`);
    out[spec.field] = parsed;
  }
  return out;
}

/**
 * The limits of one socket: the defaults, then the app's `limits:`, then the socket's own. The
 * burst defaults to the rate (one second's worth) when only the rate is set.
 */
export function resolveLimits(...layers: (Partial<AppLimits> | undefined)[]): AppLimits {
  const out: AppLimits = { ...DEFAULT_LIMITS };
  let burstSet = false;
  for (const layer of layers) {
    if (!layer) continue;
    for (const [k, v] of Object.entries(layer)) {
      if (v === undefined) continue;
      (out as unknown as Record<string, number>)[k] = v;
      if (k === "messageBurst") burstSet = true;
    }
  }
  if (!burstSet) out.messageBurst = Math.max(1, Math.ceil(out.messagesPerSecond));
  return out;
}

/** A duration for people and close reasons: "10 min", "2 h", "1.5 s", "200 ms". */
export function formatDuration(ms: number): string {
  const round = (n: number) => String(Math.round(n * 10) / 10);
  if (ms >= 3_600_000 && ms % 60_000 === 0 && ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
  if (ms >= 60_000 && ms % 1000 === 0 && ms % 60_000 === 0) return `${ms / 60_000} min`;
  if (ms >= 1000) return `${round(ms / 1000)} s`;
  return `${ms} ms`;
}

/**
 * Every key a `limits:` mapping accepts, in the order they are documented: taken from the table
 * parseLimits() reads, so a limit added there is known to the project file's checks at once.
 */
export const LIMIT_KEYS: readonly string[] = Object.freeze(Object.keys(KEYS));
