/**
 * How a call ends: a status code (gRPC's numbering, which every transport carries unchanged, so
 * Nitric's SDKs read the same codes over any of them) and an error that carries it.
 */

/** Status codes, numbered as gRPC numbers them. */
export enum Code {
  OK = 0,
  CANCELLED = 1,
  UNKNOWN = 2,
  INVALID_ARGUMENT = 3,
  DEADLINE_EXCEEDED = 4,
  NOT_FOUND = 5,
  ALREADY_EXISTS = 6,
  PERMISSION_DENIED = 7,
  RESOURCE_EXHAUSTED = 8,
  FAILED_PRECONDITION = 9,
  ABORTED = 10,
  OUT_OF_RANGE = 11,
  UNIMPLEMENTED = 12,
  INTERNAL = 13,
  UNAVAILABLE = 14,
  DATA_LOSS = 15,
  UNAUTHENTICATED = 16,
}

/**
 * A call that ended with a status other than OK. A handler throws (or answers with) one to choose
 * the status; a client rejects with one. `details` is the text the other side reads; a client's
 * error message is `<code> <NAME>: <details>`, as grpc-js writes it, so both SDKs' errors read alike.
 */
export class RpcError extends Error {
  override readonly name = "RpcError";
  constructor(
    readonly code: Code,
    readonly details: string,
    message = details,
  ) {
    super(message);
  }

  /** The error a client sees for a status it received. */
  static received(code: number, details: string): RpcError {
    return new RpcError(code, details, `${code} ${Code[code] ?? "UNKNOWN"}: ${details}`);
  }
}

/**
 * The status a thrown or passed error ends a call with: its own when it carries a numeric `code`
 * and string `details` (an RpcError, or grpc-js's ServiceError), else UNKNOWN with its message.
 * An error never ends a call with OK, and a `code` alone (other libraries number their errors
 * too: SQLite's 5 is "busy", not NOT_FOUND) is not a status.
 */
export function statusOf(error: unknown): [code: number, details: string] {
  const e = error as { code?: unknown; details?: unknown; message?: unknown } | null | undefined;
  if (
    typeof e?.code === "number" &&
    e.code !== Code.OK &&
    Code[e.code] !== undefined &&
    typeof e.details === "string"
  ) {
    return [e.code, e.details];
  }
  const details =
    typeof e?.details === "string" ? e.details : typeof e?.message === "string" ? e.message : String(error);
  return [Code.UNKNOWN, details];
}
