/**
 * The one error type the SDK throws. Its `code` is a closed set aligned with gRPC status codes, so
 * every provider's failures read the same; the original error is kept as `cause`.
 *
 * Errors are printed for the person reading them: in a service the CLI started (NITRIC_LIKE_SERVICE
 * is set), a NitricLikeError that a handler throws or that nobody catches prints as its one-line
 * message and the user's source location (the first frame in the service's own files), unless
 * NITRIC_LIKE_VERBOSE is set (`nitric-like run --verbose`); other errors a handler throws keep
 * their frames in the user's files, with the source names of identifiers the bundler renamed put
 * back (`data2` -> `data`). See describeError(). `stack` itself is left as Node makes it, and
 * elsewhere (a deployed function, whose bundle has no source map; tests) everything prints whole.
 */
import { readFileSync } from "node:fs";
import type { RpcError } from "@nitric-like/rpc";

/** Every code a NitricLikeError can have (gRPC's status codes, in snake case). */
export const ERROR_CODES = [
  "cancelled",
  "unknown",
  "invalid_argument",
  "deadline_exceeded",
  "not_found",
  "already_exists",
  "permission_denied",
  "resource_exhausted",
  "failed_precondition",
  "aborted",
  "out_of_range",
  "unimplemented",
  "internal",
  "unavailable",
  "data_loss",
  "unauthenticated",
] as const;

/** A NitricLikeError's code. */
export type ErrorCode = (typeof ERROR_CODES)[number];

// Indexed by gRPC status number (1 = CANCELLED ... 16 = UNAUTHENTICATED).
const BY_STATUS: (ErrorCode | undefined)[] = [undefined, ...ERROR_CODES];

const BRAND = Symbol.for("nitric-like.error");

/** What an error is about, when the SDK knows (which store and key, which socket and connection). */
export interface ErrorDetails {
  store?: string;
  key?: string;
  socket?: string;
  connectionId?: string;
  /** The room a rooms call named. */
  room?: string;
  /** The secret a secrets call named, and the version it asked for. */
  secret?: string;
  version?: string;
}

/** The error every SDK call throws. */
export class NitricLikeError extends Error {
  override readonly name = "NitricLikeError";
  /** Brands instances so isNitricLikeError() works across duplicate copies of this package. */
  readonly [BRAND] = true;

  constructor(
    /** What went wrong, as a closed code. */
    readonly code: ErrorCode,
    message: string,
    options: { cause?: unknown; details?: ErrorDetails } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.details = options.details ?? {};
    // Printing is decided where errors are printed (describeError, the uncaught handler below),
    // not here: a kv miss throws one of these, and making one must stay cheap.
    shortUncaughtErrors();
  }

  /** What the error is about. */
  readonly details: ErrorDetails;

  /**
   * Turns anything thrown into a NitricLikeError: a gRPC error keeps its status as the code and its
   * details as the message; a NitricLikeError is returned as it is; anything else is `unknown`.
   */
  static from(error: unknown, details?: ErrorDetails): NitricLikeError {
    if (isNitricLikeError(error)) return error;
    const grpc = error as Partial<RpcError> | undefined;
    if (grpc && typeof grpc.code === "number" && typeof grpc.details === "string") {
      const code = BY_STATUS[grpc.code] ?? "unknown";
      return new NitricLikeError(
        code,
        grpc.details || (grpc.message ?? code),
        details ? { cause: error, details } : { cause: error },
      );
    }
    const message = error instanceof Error ? error.message : String(error);
    return new NitricLikeError("unknown", message, details ? { cause: error, details } : { cause: error });
  }
}

/** True when `value` is a NitricLikeError, even one from another copy of this package. */
export function isNitricLikeError(value: unknown): value is NitricLikeError {
  return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
}

/** The environment variable that asks for full stacks (set by `nitric-like run --verbose`). */
export const VERBOSE_ENV = "NITRIC_LIKE_VERBOSE";

/** True when errors print with every frame: NITRIC_LIKE_VERBOSE is set to something other than 0. */
export function verboseErrors(): boolean {
  const value = process.env[VERBOSE_ENV];
  return value !== undefined && value !== "" && value !== "0" && value !== "false";
}

/** True when errors print short: in a service the CLI started, without NITRIC_LIKE_VERBOSE. */
function shortErrors(): boolean {
  return process.env.NITRIC_LIKE_SERVICE !== undefined && !verboseErrors();
}

/** The frame lines of a stack (`    at ...`), without the header. */
function framesOf(stack: string): string[] {
  return stack.split("\n").filter((line) => /^\s+at /.test(line));
}

/** The file, line and column a frame line points at. */
function locationOf(frame: string): { file: string; line: number; column: number } | undefined {
  const m = /\(?((?:file:\/\/)?[^\s()]+?):(\d+):(\d+)\)?\s*$/.exec(frame);
  if (!m?.[1]) return undefined;
  let file = m[1];
  if (file.startsWith("file://")) {
    try {
      file = decodeURIComponent(new URL(file).pathname);
    } catch {
      return undefined;
    }
  }
  return { file, line: Number(m[2]), column: Number(m[3]) };
}

/**
 * True for a frame in the service's own code: a file in the project's folder (the service's
 * working directory), not in node_modules or nitric-like's build folder, not Node's own. In an
 * AWS function the working directory is the function's folder (/var/task) and its source map
 * names the project's files under it; under `run --provider aws` the function's frames name the
 * project's files where they are, which the emulator gives in NITRIC_LIKE_SOURCE_DIR (its working
 * directory is the function's folder under `.nitric-like/aws-run`, as Lambda's is /var/task).
 */
function isUserFrame(frame: string, root = process.env.NITRIC_LIKE_SOURCE_DIR || process.cwd()): boolean {
  const at = locationOf(frame);
  if (!at || at.file.startsWith("node:")) return false;
  const file = at.file.replaceAll("\\", "/");
  const base = root.replaceAll("\\", "/").replace(/\/$/, "");
  if (!file.startsWith(`${base}/`)) return false;
  const inside = file.slice(base.length);
  return !inside.includes("/node_modules/") && !inside.startsWith("/.nitric-like/");
}

/**
 * The user's frames of a stack, at most `max`; when there is none, the first frame outside Node
 * (where the error came from), so the line is never without a place.
 */
function userFrames(frames: string[], max: number): string[] {
  const mine = frames.filter((f) => isUserFrame(f)).slice(0, max);
  if (mine.length > 0) return mine;
  const first = frames.find((f) => !/\(node:|at node:/.test(f));
  return first ? [first] : [];
}

/**
 * Identifiers in an error's message that the bundler renamed to avoid shadowing (`data2` for a
 * parameter `data`), put back as the source at `frame` spells them. A name changes only when the
 * source line lacks it and has the name without its number.
 */
function sourceNames(message: string, frame: string | undefined): string {
  const at = frame === undefined ? undefined : locationOf(frame);
  if (!at) return message;
  let line: string | undefined;
  try {
    line = readFileSync(at.file, "utf8").split(/\r?\n/)[at.line - 1];
  } catch {
    return message;
  }
  if (line === undefined) return message;
  const source = line;
  const has = (name: string) => new RegExp(`(^|[^\\w$])${name.replace(/\$/g, "\\$")}($|[^\\w$])`).test(source);
  return message.replace(/(^|[^\w$.])([A-Za-z_$][\w$]*?)(\d+)(?=$|[^\w$])/g, (whole, before, name, digits) => {
    const renamed = `${name}${digits}`;
    return !has(renamed) && has(name) ? `${before}${name}` : whole;
  });
}

/**
 * How a failure is written to a service's log. In a service the CLI started: the error's first
 * line, with the bundler's renamed identifiers put back, and its frames in the user's code (a
 * NitricLikeError: the first only); with NITRIC_LIKE_VERBOSE, that line and every frame.
 * Elsewhere, the stack as it is.
 */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const stack = String(error.stack ?? `${error.name}: ${error.message}`);
  if (process.env.NITRIC_LIKE_SERVICE === undefined) return stack;
  const frames = framesOf(stack);
  const first = frames.find((f) => isUserFrame(f));
  const header = `${error.name}: ${sourceNames(error.message, first)}`;
  if (!shortErrors()) return [header, ...frames].join("\n");
  return [header, ...userFrames(frames, isNitricLikeError(error) ? 1 : 3)].join("\n");
}

let uncaughtInstalled = false;

/**
 * An uncaught NitricLikeError in a service (process or worker thread) prints as describeError()
 * writes it (one line and the user's location) and the service exits with 1, as with Node's own
 * printing but without the frames, code, details and cause (a gRPC error with its own stack)
 * Node adds. Installed when the first NitricLikeError is made, only in a service the CLI started
 * (NITRIC_LIKE_SERVICE is set) and not --verbose; it acts only while it is the one
 * uncaughtException listener, and anything else is thrown again for Node to print.
 */
function shortUncaughtErrors(): void {
  if (uncaughtInstalled || !shortErrors()) return;
  uncaughtInstalled = true;
  const listener = (error: unknown) => {
    if (process.listenerCount("uncaughtException") > 1) return;
    if (isNitricLikeError(error)) {
      process.stderr.write(`Uncaught ${describeError(error)}\n`);
      process.exit(1);
    }
    process.off("uncaughtException", listener);
    process.nextTick(() => {
      throw error;
    });
  };
  process.on("uncaughtException", listener);
}
