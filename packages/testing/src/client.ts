/**
 * A WebSocket client for tests: it queues what it receives so a test reads messages in order
 * (`next()`, `expectMessage()`), says how and why the connection closed (`closed`), and injects
 * the faults real clients cause: a TCP connection that drops without a close frame (`drop()`) and
 * a client that goes silent (`idle()`).
 */
import WebSocket from "ws";

/** A message the client received. */
export interface Frame {
  /** The payload's bytes. */
  readonly data: Buffer;
  /** Whether it came as a binary frame (false: a text frame). */
  readonly binary: boolean;
  /** The payload decoded as UTF-8. */
  readonly text: string;
  /** The payload parsed as JSON; throws with the text when it is not JSON. */
  json<T = unknown>(): T;
}

/** How a connection closed: the close frame's code and reason (1006 and "" when the TCP connection dropped). */
export interface CloseInfo {
  readonly code: number;
  readonly reason: string;
}

/**
 * What `expectMessage` accepts: a string (the exact text), a RegExp (tested on the text), bytes
 * (the exact payload), a function (true for a match), or any other value, matched against the
 * message parsed as JSON: objects by the keys they list (others may be there too), arrays and
 * plain values exactly. An object may be of the app's own message types (an interface too); a
 * key whose value is undefined matches no JSON message, so it is refused: leave the key out.
 */
export type MessageMatcher = string | RegExp | Uint8Array | ((frame: Frame) => boolean) | JsonPattern | object;

/** A JSON value to match a message against (objects match by the keys listed; a string at the top is the text itself). */
export type JsonPattern =
  | string
  | number
  | boolean
  | null
  | readonly JsonPattern[]
  | { readonly [key: string]: JsonPattern };

/**
 * A value `send()` sends as JSON text (a string at the top is sent as it is); any other object
 * (an interface-typed message of the app's) goes through JSON.stringify, as the SDK's send() sends it.
 */
export type Json = string | number | boolean | null | readonly Json[] | { readonly [key: string]: Json | undefined };

/** How long to wait. */
export interface WaitOptions {
  /** @default 5000 */
  timeoutMs?: number;
}

/** The most lines of the app's output a client's error quotes. */
const MAX_QUOTED_LINES = 20;

/** The longest wait a timer takes (Node's setTimeout fires at once past it, with only a warning). */
const MAX_WAIT_MS = 2 ** 31 - 1;

/**
 * A wait given as an option: `fallback` when undefined, else a number of milliseconds from 1 (0
 * too when `zero`) to MAX_WAIT_MS. Anything else is refused, naming the call and the option: NaN
 * or a negative one made a wait spin or end at once, a keep-alive of 0 a ping flood.
 * @internal
 */
export function waitMs(at: string, option: string, value: unknown, fallback: number, zero = false): number {
  if (value === undefined) return fallback;
  if (typeof value === "number" && Number.isFinite(value) && value >= (zero ? 0 : 1) && value <= MAX_WAIT_MS)
    return value;
  const shown =
    typeof value === "number" ? String(value) : typeof value === "string" ? JSON.stringify(value) : typeof value;
  throw new Error(
    `${at}: ${option} is ${shown}; give a number of milliseconds from ${zero ? 0 : 1} to ${MAX_WAIT_MS}${value === Number.POSITIVE_INFINITY ? " (no wait is endless; the runner's own timeout ends a test)" : ""}`,
  );
}

/** The default wait of `next()`, `expectMessage()` and `close()`. */
export const DEFAULT_TIMEOUT_MS = 5000;

/** The upgrade was refused: the HTTP status and body the server answered with. */
export class ConnectRefusedError extends Error {
  constructor(
    message: string,
    /** The HTTP status (401, 403, 429, ...). */
    readonly status: number,
    /** The response body: the reason the server gave. */
    readonly body: string,
  ) {
    super(message);
    this.name = "ConnectRefusedError";
  }
}

/** A connected test client. Make one with `App.connect()` or `connectClient()`. */
export class Client {
  /** The `ws` socket underneath, for what this class does not cover. */
  readonly raw: WebSocket;
  /** Resolves when the connection closes, however it closes (never rejects). */
  readonly closed: Promise<CloseInfo>;
  private closeInfo: CloseInfo | undefined;
  private readonly frames: Frame[] = [];
  private waiters: (() => void)[] = [];
  private silent = false;
  private pinger: NodeJS.Timeout | undefined;
  /** The app's output: a mark of where it is now, and what it printed since a mark. */
  private output: { mark(): number; since(mark: number): string } | undefined;

  /** @internal */
  constructor(
    raw: WebSocket,
    private readonly label: string,
  ) {
    this.raw = raw;
    this.closed = new Promise((resolve) => {
      raw.on("close", (code: number, reason: Buffer) => {
        clearInterval(this.pinger);
        this.closeInfo = { code, reason: reason.toString("utf8") };
        resolve(this.closeInfo);
        this.wake();
      });
    });
    raw.on("message", (data: Buffer, binary: boolean) => {
      this.frames.push(frame(data, binary));
      this.wake();
    });
    // Pongs by hand (the socket is made with autoPong off) so that idle() can stop them.
    raw.on("ping", (data: Buffer) => {
      if (!this.silent && raw.readyState === WebSocket.OPEN) raw.pong(data);
    });
    // An error ends in "close" (1006), which is what a test looks at; unheard it would throw.
    raw.on("error", () => {});
  }

  /** Whether the connection is open. */
  get isOpen(): boolean {
    return this.raw.readyState === WebSocket.OPEN;
  }

  /** The subprotocol the server accepted ("" for none). */
  get protocol(): string {
    return this.raw.protocol;
  }

  /** How the connection closed, or undefined while it is open. */
  get closeResult(): CloseInfo | undefined {
    return this.closeInfo;
  }

  /** Messages received and not read yet, oldest first. */
  get unread(): readonly Frame[] {
    return [...this.frames];
  }

  /**
   * Sends a text message (a string), a binary one (bytes), or anything else as JSON text, as the
   * SDK's send() does: `send({ action: "join", room: "lobby" })` is the text
   * `{"action":"join","room":"lobby"}`, the message a route takes.
   */
  send(data: string | Uint8Array | ArrayBuffer | Json | object): void {
    if (!this.isOpen)
      throw new Error(
        `${this.label}: cannot send, the connection is ${this.closeInfo ? `closed (${this.closeInfo.code})` : "not open"}; connect again`,
      );
    if (typeof data === "string") this.raw.send(data, { binary: false });
    else if (data instanceof Uint8Array || data instanceof ArrayBuffer) this.raw.send(data, { binary: true });
    else {
      const text = JSON.stringify(data);
      if (text === undefined) throw new Error(`${this.label}: cannot send ${String(data)}: it has no JSON form`);
      this.raw.send(text, { binary: false });
    }
  }

  /**
   * The next message, waiting for it; throws when none arrives in time or the connection closes
   * first, with what the app printed meanwhile (a handler's error, a reply it refused to send).
   */
  async next(options: WaitOptions = {}): Promise<Frame> {
    const timeoutMs = waitMs(`${this.label}: next()`, "timeoutMs", options.timeoutMs, DEFAULT_TIMEOUT_MS);
    const deadline = Date.now() + timeoutMs;
    const mark = this.output?.mark();
    for (;;) {
      const first = this.frames.shift();
      if (first) return first;
      if (this.closeInfo)
        throw new Error(
          `${this.label}: the connection closed (${this.closeInfo.code}${this.closeInfo.reason ? ` ${JSON.stringify(this.closeInfo.reason)}` : ""}) before a message arrived${this.printedSince(mark)}`,
        );
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(
          `${this.label}: no message arrived within ${timeoutMs} ms; raise timeoutMs if it is slow${this.printedSince(mark)}`,
        );
      await this.wait(left);
    }
  }

  /** @internal Lets the client's errors quote the app's output (App.connect). */
  watchOutput(output: { mark(): number; since(mark: number): string }): void {
    this.output = output;
  }

  /** What the app printed since `mark`, to end an error with: its last lines, or "" for none. */
  private printedSince(mark: number | undefined): string {
    if (mark === undefined || this.output === undefined) return "";
    const lines = this.output
      .since(mark)
      .split("\n")
      .filter((line) => line.trim() !== "");
    if (lines.length === 0) return "";
    const shown = lines.slice(-MAX_QUOTED_LINES).map((line) => (line.length > 500 ? `${line.slice(0, 500)}...` : line));
    return `; meanwhile the app printed${lines.length > shown.length ? ` (the last ${shown.length} lines)` : ""}:\n${shown.join("\n")}`;
  }

  /**
   * The next message, which must match (see MessageMatcher); throws with what arrived instead, or
   * when nothing arrives in time.
   */
  async expectMessage(matcher: MessageMatcher, options: WaitOptions = {}): Promise<Frame> {
    const unmatchable = undefinedIn(matcher);
    if (unmatchable !== undefined)
      throw new Error(
        `${this.label}: expectMessage(${describe(matcher)}): ${unmatchable} is undefined, which no JSON message has; leave it out of the pattern`,
      );
    const got = await this.next(options);
    if (!matches(got, matcher))
      throw new Error(`${this.label}: expected a message matching ${describe(matcher)}, got ${show(got)}`);
    return got;
  }

  /** Waits `forMs` and throws when a message arrives meanwhile (or was unread already). */
  async expectNoMessage(options: { forMs?: number } = {}): Promise<void> {
    const forMs = waitMs(`${this.label}: expectNoMessage()`, "forMs", options.forMs, 200, true);
    const deadline = Date.now() + forMs;
    for (let left = forMs; left > 0 && this.frames.length === 0; left = deadline - Date.now()) await this.wait(left);
    const first = this.frames[0];
    if (first) throw new Error(`${this.label}: expected no message, got ${show(first)}`);
  }

  /** Closes the connection with a close frame and waits for the close to finish. */
  async close(code = 1000, reason = "", options: WaitOptions = {}): Promise<CloseInfo> {
    // What a close frame cannot carry, said before ws throws its own words ("First argument must
    // be a valid error code number") or cuts a fraction off the code.
    const shownReason =
      typeof reason !== "string"
        ? `, ${typeof reason}`
        : reason === ""
          ? ""
          : `, ${JSON.stringify(reason.length > 40 ? `${reason.slice(0, 40)}...` : reason)}`;
    const at = `${this.label}: close(${typeof code === "number" ? code : JSON.stringify(code)}${shownReason})`;
    if (
      !Number.isInteger(code) ||
      !((code >= 1000 && code <= 1014 && ![1004, 1005, 1006].includes(code)) || (code >= 3000 && code <= 4999))
    )
      throw new Error(
        `${at}: a close code is a whole number from 1000 to 1014 (1004 to 1006 are never sent) or from 3000 to 4999; use 1000 for a normal close`,
      );
    if (typeof reason !== "string" || Buffer.byteLength(reason) > 123)
      throw new Error(
        `${at}: ${typeof reason === "string" ? `the reason is ${Buffer.byteLength(reason)} bytes and` : "the reason must be text;"} a close frame holds at most 123 bytes of it; shorten it`,
      );
    const timeoutMs = waitMs(`${this.label}: close()`, "timeoutMs", options.timeoutMs, DEFAULT_TIMEOUT_MS);
    if (this.raw.readyState === WebSocket.CONNECTING || this.raw.readyState === WebSocket.OPEN)
      this.raw.close(code, reason);
    return within(this.closed, timeoutMs, `${this.label}: the close did not finish`);
  }

  /**
   * Fault: the TCP connection drops with no close frame (a phone losing its network, a killed
   * tab). The server sees close code 1006; so does this client.
   */
  drop(): void {
    this.raw.terminate();
  }

  /**
   * Fault: the client goes silent while staying connected: it stops its keep-alive pings
   * (`keepAliveMs`) and stops answering the server's pings. Send nothing afterwards and the
   * server's idle timeout (`limits.idleTimeout`, short in a test environment of the project file)
   * closes the connection, or its heartbeat (the local provider's: 30 to 60 s) does.
   */
  idle(): void {
    this.silent = true;
    clearInterval(this.pinger);
  }

  /** @internal Pings every `ms` until idle() or the close. */
  keepAlive(ms: number): void {
    clearInterval(this.pinger);
    this.pinger = setInterval(() => {
      if (this.raw.readyState === WebSocket.OPEN) this.raw.ping();
    }, ms);
    this.pinger.unref();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

/** What `connectClient` needs: the socket's URL and the request's details. */
export interface ConnectClientOptions {
  /** Query parameters, each a value or several. */
  query?: Readonly<Record<string, string | readonly string[]>>;
  /** Request headers (a browser cannot set these; a token then travels in query or protocols). */
  headers?: Readonly<Record<string, string>>;
  /** Subprotocols to request (Sec-WebSocket-Protocol). */
  protocols?: readonly string[];
  /** How long the upgrade may take. @default 5000 */
  timeoutMs?: number;
  /**
   * Send a ping this often, as some client libraries do (browsers do not): a ping counts as
   * activity, so the idle timeout leaves the connection open until `idle()`. @default no pings
   */
  keepAliveMs?: number;
}

/**
 * Opens a client to a WebSocket URL; resolves once open. A refused upgrade rejects with a
 * ConnectRefusedError that carries the status and the reason the server sent.
 */
export function connectClient(url: string, options: ConnectClientOptions = {}, label = "client"): Promise<Client> {
  let raw: WebSocket;
  let timeoutMs: number;
  try {
    timeoutMs = waitMs(`${label}: connect`, "timeoutMs", options.timeoutMs, DEFAULT_TIMEOUT_MS);
    waitMs(`${label}: connect`, "keepAliveMs", options.keepAliveMs, 0);
  } catch (error) {
    return Promise.reject(error);
  }
  try {
    const target = new URL(url);
    for (const [name, value] of Object.entries(options.query ?? {}))
      for (const v of typeof value === "string" ? [value] : value) target.searchParams.append(name, v);
    raw = new WebSocket(target, [...(options.protocols ?? [])], {
      headers: { ...options.headers },
      autoPong: false,
      handshakeTimeout: timeoutMs,
    });
  } catch (error) {
    // What no server could be asked: a header value with a line break, a subprotocol with a space
    // or given twice, a URL that is not one.
    const what = (error as Error).message;
    const fix = /subprotocol/.test(what)
      ? "; a subprotocol is a token (no spaces or separators such as , / ;), each offered once"
      : /header/.test(what)
        ? "; a header's name is a token and its value one line (no line breaks)"
        : "";
    return Promise.reject(new Error(`${label}: cannot make this request: ${what}${fix}`));
  }
  const client = new Client(raw, label);
  return new Promise((resolve, reject) => {
    raw.once("open", () => {
      if (options.keepAliveMs !== undefined) client.keepAlive(options.keepAliveMs);
      resolve(client);
    });
    raw.once("unexpected-response", (_request, response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (d: string) => {
        if (body.length < 64 * 1024) body += d;
      });
      response.on("end", () => {
        raw.terminate();
        const status = response.statusCode ?? 0;
        reject(new ConnectRefusedError(`${label}: the upgrade was refused: ${status} ${body}`.trim(), status, body));
      });
    });
    raw.once("error", (error) => {
      // ws's words for its handshakeTimeout say nothing of why or what to do.
      if (/handshake has timed out/.test(error.message))
        reject(
          new Error(
            `${label}: ${url} did not answer the upgrade within ${timeoutMs} ms: its authorize or connect handler has not returned; raise timeoutMs if it is slow`,
          ),
        );
      else reject(new Error(`${label}: could not connect to ${url}: ${error.message}`));
    });
  });
}

function frame(data: Buffer, binary: boolean): Frame {
  const text = data.toString("utf8");
  return {
    data,
    binary,
    text,
    json<T>() {
      try {
        return JSON.parse(text) as T;
      } catch {
        throw new Error(`client: the message is not JSON: ${JSON.stringify(text.slice(0, 200))}`);
      }
    },
  };
}

function matches(got: Frame, matcher: MessageMatcher): boolean {
  if (typeof matcher === "string") return got.text === matcher;
  if (matcher instanceof RegExp) return matcher.test(got.text);
  if (matcher instanceof Uint8Array) return Buffer.compare(got.data, matcher) === 0;
  if (typeof matcher === "function") return matcher(got);
  let parsed: unknown;
  try {
    parsed = JSON.parse(got.text);
  } catch {
    return false;
  }
  return subset(parsed, matcher as JsonPattern);
}

/** Whether `actual` has what `pattern` lists: objects by their keys, the rest exactly. */
function subset(actual: unknown, pattern: JsonPattern): boolean {
  if (Array.isArray(pattern))
    return Array.isArray(actual) && actual.length === pattern.length && pattern.every((p, i) => subset(actual[i], p));
  if (pattern !== null && typeof pattern === "object") {
    if (actual === null || typeof actual !== "object" || Array.isArray(actual)) return false;
    return Object.entries(pattern).every(
      ([k, v]) => Object.hasOwn(actual, k) && subset((actual as Record<string, unknown>)[k], v as JsonPattern),
    );
  }
  return Object.is(actual, pattern);
}

/** Where a JSON pattern holds undefined (`the key "name"`, `item 2 of "rooms"`), if anywhere. */
function undefinedIn(matcher: MessageMatcher, path = ""): string | undefined {
  if (typeof matcher !== "object" || matcher === null || matcher instanceof RegExp || matcher instanceof Uint8Array)
    return undefined;
  const entries: [string, unknown][] = Array.isArray(matcher)
    ? matcher.map((v, i) => [`${path}[${i}]`, v])
    : Object.entries(matcher).map(([k, v]) => [
        /^[A-Za-z_$][\w$]*$/.test(k) ? `${path}.${k}` : `${path}[${JSON.stringify(k)}]`,
        v,
      ]);
  for (const [at, value] of entries) {
    if (value === undefined) return `pattern${at}`;
    const inner = undefinedIn(value as MessageMatcher, at);
    if (inner !== undefined) return inner;
  }
  return undefined;
}

function describe(matcher: MessageMatcher): string {
  if (typeof matcher === "string") return JSON.stringify(matcher);
  if (matcher instanceof RegExp) return String(matcher);
  if (matcher instanceof Uint8Array) return `bytes [${[...matcher.subarray(0, 32)].join(", ")}]`;
  if (typeof matcher === "function") return `the function ${matcher.name || "given"}`;
  return `JSON ${JSON.stringify(matcher)}`;
}

function show(got: Frame): string {
  return got.binary
    ? `binary [${[...got.data.subarray(0, 32)].join(", ")}${got.data.length > 32 ? ", ..." : ""}]`
    : JSON.stringify(got.text.length > 500 ? `${got.text.slice(0, 500)}...` : got.text);
}

/** `promise`, or an error after `ms`. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
