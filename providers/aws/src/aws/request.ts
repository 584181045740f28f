/**
 * Signed requests to AWS over node:http(s) (http.ts), configured as the AWS SDK configures itself inside Lambda:
 * credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, the region from
 * AWS_REGION (or AWS_DEFAULT_REGION), a service's endpoint from AWS_ENDPOINT_URL_<SERVICE> or
 * AWS_ENDPOINT_URL (unless AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true). Throttling, 5xx answers and
 * network failures are retried as the SDK's standard retry mode does: three attempts in all, waits
 * drawn at random up to 100 ms × 2^attempt (500 ms × 2^attempt after throttling).
 */
import { type HttpAnswer, httpRequest } from "./http.js";
import { type Credentials, signRequest } from "./signer.js";

/** A failed call: `name` is AWS's error code (`ResourceNotFoundException`, `GoneException`, ...). */
export class AwsError extends Error {
  constructor(
    override readonly name: string,
    message: string,
    /** The HTTP status AWS answered; undefined when no answer came (network, configuration). */
    readonly statusCode: number | undefined,
  ) {
    super(message);
  }
}

/** How a client retries. */
export interface RetryPolicy {
  /** Attempts in all, the first included. */
  attempts: number;
  /** The longest first wait after a transient failure (it doubles with each attempt). */
  baseDelayMs: number;
  /** The same after throttling. */
  throttlingBaseDelayMs: number;
}

/** The AWS SDK's standard retry mode. */
export const STANDARD_RETRY: RetryPolicy = { attempts: 3, baseDelayMs: 100, throttlingBaseDelayMs: 500 };

const MAX_DELAY_MS = 20_000;

/** Error codes the SDK treats as throttling. */
const THROTTLING = new Set([
  "ThrottlingException",
  "Throttling",
  "ThrottledException",
  "RequestThrottledException",
  "TooManyRequestsException",
  "ProvisionedThroughputExceededException",
  "TransactionInProgressException",
  "RequestLimitExceeded",
  "BandwidthLimitExceeded",
  "LimitExceededException",
  "RequestThrottled",
  "SlowDown",
]);

/** The region, as Lambda sets it. */
export function regionOf(env: NodeJS.ProcessEnv): string {
  const region = env.AWS_REGION || env.AWS_DEFAULT_REGION;
  if (!region) throw new AwsError("ConfigurationError", "AWS_REGION is not set (Lambda sets it)", undefined);
  return region;
}

/** The credentials, as Lambda sets them. */
export function credentialsOf(env: NodeJS.ProcessEnv): Credentials {
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  if (!accessKeyId || !secretAccessKey) {
    throw new AwsError(
      "CredentialsError",
      "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set (Lambda sets them from the function's role)",
      undefined,
    );
  }
  return { accessKeyId, secretAccessKey, ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}) };
}

/**
 * A service's endpoint: AWS_ENDPOINT_URL_<ID> (ID as the SDK spells it: `DYNAMODB`, `LAMBDA`), then
 * AWS_ENDPOINT_URL, then AWS's own `https://<prefix>.<region>.amazonaws.com`.
 */
export function endpointOf(env: NodeJS.ProcessEnv, id: string, prefix: string): string {
  if (env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS?.toLowerCase() !== "true") {
    const configured = env[`AWS_ENDPOINT_URL_${id}`] || env.AWS_ENDPOINT_URL;
    if (configured) return configured;
  }
  const region = regionOf(env);
  return `https://${prefix}.${region}.${region.startsWith("cn-") ? "amazonaws.com.cn" : "amazonaws.com"}`;
}

/** One request to sign and send. */
export interface AwsRequest {
  service: string;
  method: string;
  url: URL;
  headers: Record<string, string>;
  body?: string | Uint8Array;
  /** The error code to assume when AWS's answer names none, by HTTP status. */
  errorName?: (status: number) => string | undefined;
}

/** A successful answer. */
export interface AwsResponse {
  status: number;
  body: string;
}

/** The error code and message of a failed answer, from `x-amzn-errortype` or the body's `__type`/`code`. */
function errorOf(response: HttpAnswer, fallback: string | undefined): AwsError {
  const text = response.body;
  let body: { __type?: unknown; code?: unknown; message?: unknown; Message?: unknown } = {};
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed && typeof parsed === "object") body = parsed as typeof body;
  } catch {
    // Not JSON: the status speaks for itself.
  }
  const raw = response.headers["x-amzn-errortype"] ?? body.__type ?? body.code;
  // `com.amazonaws.dynamodb.v20120810#ResourceNotFoundException`, `GoneException:http://...`
  const code = typeof raw === "string" ? raw.split(":")[0]?.split("#").at(-1) : undefined;
  const name = code || fallback || (response.status >= 500 ? "InternalServerError" : `Http${response.status}Error`);
  const message = body.message ?? body.Message;
  return new AwsError(
    name,
    typeof message === "string" && message !== "" ? message : text.slice(0, 300) || name,
    response.status,
  );
}

function retryable(error: AwsError): "throttling" | "transient" | undefined {
  if (THROTTLING.has(error.name) || error.statusCode === 429) return "throttling";
  if (error.statusCode === undefined) return error.name === "NetworkError" ? "transient" : undefined;
  if ([500, 502, 503, 504].includes(error.statusCode)) return "transient";
  return undefined;
}

/** Signs and sends a request, retrying what the SDK retries; throws AwsError for any failure. */
export async function sendSigned(
  env: NodeJS.ProcessEnv,
  request: AwsRequest,
  retry: RetryPolicy = STANDARD_RETRY,
): Promise<AwsResponse> {
  const region = regionOf(env);
  const credentials = credentialsOf(env);
  const body = request.body ?? "";
  for (let attempt = 1; ; attempt++) {
    // Signed anew on every attempt: the signature carries the time.
    const headers = signRequest({
      method: request.method,
      url: request.url,
      body,
      headers: request.headers,
      service: request.service,
      region,
      ...credentials,
    });
    delete headers.host;
    let error: AwsError;
    try {
      const response = await httpRequest(
        request.url,
        request.method,
        headers,
        request.method === "GET" || request.method === "DELETE" ? undefined : body,
      );
      if (response.status >= 200 && response.status < 300) return { status: response.status, body: response.body };
      error = errorOf(response, request.errorName?.(response.status));
    } catch (thrown) {
      error = new AwsError("NetworkError", (thrown as Error).message, undefined);
    }
    const kind = retryable(error);
    if (!kind || attempt >= retry.attempts) throw error;
    const base = kind === "throttling" ? retry.throttlingBaseDelayMs : retry.baseDelayMs;
    await new Promise((resolve) => setTimeout(resolve, Math.min(MAX_DELAY_MS, Math.random() * base * 2 ** attempt)));
  }
}
