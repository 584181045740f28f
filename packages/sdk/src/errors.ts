/**
 * The one error type the SDK throws. Its `code` is a closed set aligned with gRPC status codes, so
 * every provider's failures read the same; the original error is kept as `cause`.
 */
import type { ServiceError } from "@grpc/grpc-js";

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
  }

  /** What the error is about. */
  readonly details: ErrorDetails;

  /**
   * Turns anything thrown into a NitricLikeError: a gRPC error keeps its status as the code and its
   * details as the message; a NitricLikeError is returned as it is; anything else is `unknown`.
   */
  static from(error: unknown, details?: ErrorDetails): NitricLikeError {
    if (isNitricLikeError(error)) return error;
    const grpc = error as Partial<ServiceError> | undefined;
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
