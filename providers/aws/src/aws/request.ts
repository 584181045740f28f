/**
 * Signed requests to AWS over node:http(s) (http.ts), configured as the AWS SDK configures itself inside Lambda:
 * credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, the region from
 * AWS_REGION (or AWS_DEFAULT_REGION), a service's endpoint from AWS_ENDPOINT_URL_<SERVICE> or
 * AWS_ENDPOINT_URL (unless AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true). Throttling, 5xx answers,
 * timeouts and network failures are retried as the SDK's standard retry mode does: three attempts
 * in all; before retry n (from 0) a wait drawn at random up to 100 ms × 2^n (500 ms × 2^n after
 * throttling), at most 20 s, or longer when the answer's `Retry-After` asks (up to 5 s more); each
 * retry paid from a quota of 500 tokens (5 a retry, 10 after a timeout; a success gives them back).
 * Each attempt has a connect and a response timeout (http.ts, DEFAULT_TIMEOUTS).
 */
import { DEFAULT_TIMEOUTS, type HttpAnswer, httpRequest, type Timeouts } from "./http.js";
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

/**
 * The retry quota of the SDK's standard retry mode: a token bucket of 500, shared by the calls of
 * one client. A retry takes 5 tokens (10 after a timeout); a call refused its retry for want of
 * tokens fails at once. A success gives back what its retry took, or 1 when it needed none.
 * When AWS is failing, the function's calls stop retrying after about a hundred retries instead
 * of tripling the load on a service that is already in trouble.
 */
export class RetryQuota {
  private tokens: number;

  constructor(
    readonly capacity = 500,
    readonly retryCost = 5,
    readonly timeoutCost = 10,
    readonly successIncrement = 1,
  ) {
    this.tokens = capacity;
  }

  /** The tokens left. */
  get available(): number {
    return this.tokens;
  }

  /** Takes a retry's tokens; undefined (nothing taken) when too few are left. */
  take(timeout: boolean): number | undefined {
    const cost = timeout ? this.timeoutCost : this.retryCost;
    if (this.tokens < cost) return undefined;
    this.tokens -= cost;
    return cost;
  }

  /** A call succeeded: `retryCost` is what its last retry took (undefined when it had none). */
  succeeded(retryCost: number | undefined): void {
    this.tokens = Math.min(this.capacity, this.tokens + (retryCost ?? this.successIncrement));
  }
}

/** How a client retries and how long it waits. */
export interface RetryPolicy {
  /** Attempts in all, the first included. */
  attempts: number;
  /** The longest wait before the first retry after a transient failure (it doubles with each retry). */
  baseDelayMs: number;
  /** The same after throttling. */
  throttlingBaseDelayMs: number;
  /** No wait is longer (the SDK's 20 s), Retry-After included. */
  maxDelayMs?: number;
  /** A `Retry-After` (or `x-amz-retry-after`) is honoured up to this much beyond the backoff (the SDK's 5 s). */
  retryAfterSlackMs?: number;
  /** The bucket retries are paid from; by default one per service in this process. */
  quota?: RetryQuota;
  /** Per attempt. */
  timeouts?: Timeouts;
}

/** The AWS SDK's standard retry mode. */
export const STANDARD_RETRY: RetryPolicy = { attempts: 3, baseDelayMs: 100, throttlingBaseDelayMs: 500 };

const MAX_DELAY_MS = 20_000;
const RETRY_AFTER_SLACK_MS = 5_000;

/** One bucket per service, as the SDK has one per client (the runtime holds one client per service). */
const quotas = new Map<string, RetryQuota>();
function quotaOf(service: string): RetryQuota {
  let quota = quotas.get(service);
  if (!quota) {
    quota = new RetryQuota();
    quotas.set(service, quota);
  }
  return quota;
}

/**
 * The wait before retry number `retry` + 1 (0 for the first): full jitter, drawn at random up to
 * base × 2^retry and never above `maxDelayMs`, as the SDK computes it.
 */
export function backoffDelay(
  kind: "throttling" | "transient",
  retry: number,
  policy: RetryPolicy,
  random: () => number = Math.random,
): number {
  const base = kind === "throttling" ? policy.throttlingBaseDelayMs : policy.baseDelayMs;
  return Math.floor(random() * Math.min(base * 2 ** retry, policy.maxDelayMs ?? MAX_DELAY_MS));
}

/**
 * When the answer asks to be retried: `Retry-After` in seconds or as an HTTP date, or
 * `x-amz-retry-after` in milliseconds; the time to wait from now, in milliseconds.
 */
export function retryAfterMs(headers: HttpAnswer["headers"], now = Date.now()): number | undefined {
  const amz = headers["x-amz-retry-after"];
  if (typeof amz === "string" && /^\d+(\.\d+)?$/.test(amz.trim())) return Number(amz);
  const value = headers["retry-after"];
  if (typeof value !== "string") return undefined;
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

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
  if (error.statusCode === undefined) {
    return error.name === "NetworkError" || error.name === "TimeoutError" ? "transient" : undefined;
  }
  if ([500, 502, 503, 504].includes(error.statusCode)) return "transient";
  return undefined;
}

/**
 * Signs and sends a request, retrying what the SDK retries as its standard mode does: up to
 * `attempts` in all, each retry paid from the quota and preceded by a backoff (or the wait a
 * `Retry-After` asks for, up to 5 s beyond the backoff); throws AwsError for any failure.
 */
export async function sendSigned(
  env: NodeJS.ProcessEnv,
  request: AwsRequest,
  retry: RetryPolicy = STANDARD_RETRY,
): Promise<AwsResponse> {
  const region = regionOf(env);
  const credentials = credentialsOf(env);
  const body = request.body ?? "";
  const quota = retry.quota ?? quotaOf(request.service);
  let retryCost: number | undefined;
  // What the SDK's clients send and sign: the body's length (when there is one) and its hash.
  const sent = request.method === "GET" || request.method === "DELETE" ? undefined : body;
  const given =
    sent === undefined ? request.headers : { ...request.headers, "content-length": String(Buffer.byteLength(sent)) };
  for (let attempt = 1; ; attempt++) {
    // Signed anew on every attempt: the signature carries the time.
    const headers = signRequest({
      method: request.method,
      url: request.url,
      body,
      headers: given,
      service: request.service,
      region,
      ...credentials,
      contentSha256: true,
    });
    delete headers.host;
    let error: AwsError;
    let asked: number | undefined;
    try {
      const response = await httpRequest(
        request.url,
        request.method,
        headers,
        sent,
        retry.timeouts ?? DEFAULT_TIMEOUTS,
      );
      if (response.status >= 200 && response.status < 300) {
        quota.succeeded(retryCost);
        return { status: response.status, body: response.body };
      }
      error = errorOf(response, request.errorName?.(response.status));
      asked = retryAfterMs(response.headers);
    } catch (thrown) {
      const thrownName = (thrown as Error).name;
      const name = ["TimeoutError", "AnswerTooLargeError"].includes(thrownName) ? thrownName : "NetworkError";
      error = new AwsError(name, (thrown as Error).message, undefined);
    }
    const kind = retryable(error);
    if (!kind || attempt >= retry.attempts) throw error;
    retryCost = quota.take(error.name === "TimeoutError");
    if (retryCost === undefined) throw error;
    const max = retry.maxDelayMs ?? MAX_DELAY_MS;
    const backoff = backoffDelay(kind, attempt - 1, retry);
    const wait =
      asked === undefined
        ? backoff
        : Math.max(backoff, Math.min(asked, backoff + (retry.retryAfterSlackMs ?? RETRY_AFTER_SLACK_MS)));
    await new Promise((resolve) => setTimeout(resolve, Math.min(max, wait)));
  }
}

/** A service spoken to in AWS's JSON protocol: `POST /`, the operation in `X-Amz-Target`. */
export interface JsonProtocol {
  /** The signing name (`dynamodb`, `secretsmanager`). */
  service: string;
  /** The SDK's id for its endpoint variable (`AWS_ENDPOINT_URL_<id>`), and its host's first label. */
  endpointId: string;
  prefix: string;
  /** `application/x-amz-json-1.0` or `-1.1`. */
  contentType: string;
  /** What precedes the operation in `X-Amz-Target` (`DynamoDB_20120810`, `secretsmanager`). */
  targetPrefix: string;
}

/** Calls one operation of a JSON-protocol service with `input`; its answer parsed ({} for an empty body). */
export async function callJson<T>(
  env: NodeJS.ProcessEnv,
  api: JsonProtocol,
  operation: string,
  input: object,
  retry: RetryPolicy = STANDARD_RETRY,
): Promise<T> {
  const response = await sendSigned(
    env,
    {
      service: api.service,
      method: "POST",
      url: new URL(endpointOf(env, api.endpointId, api.prefix)),
      headers: { "content-type": api.contentType, "x-amz-target": `${api.targetPrefix}.${operation}` },
      body: JSON.stringify(input),
    },
    retry,
  );
  return (response.body === "" ? {} : JSON.parse(response.body)) as T;
}
