/**
 * The emulator's endpoints (Lambda's Invoke API, API Gateway's Management API, DynamoDB) listen on
 * 127.0.0.1, where any user of the machine can reach them. As on AWS, they serve only requests
 * signed (Signature Version 4) with the credentials of this run: made afresh for each run, given to
 * the functions in their environment as Lambda gives a role's, and to the user in a file only they
 * can read (`run --provider aws`). The headers are checked before the body is read, so an unsigned
 * request costs nothing to refuse; the signature, which covers the body, once it is read.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { type Credentials, payloadHashOf, signatureOf } from "../aws/signer.js";

/** How far a request's `x-amz-date` may be from the clock (AWS: 5 minutes). */
export const MAX_CLOCK_SKEW_MS = 5 * 60 * 1000;

/** Credentials for one run: an access key id of AWS's shape and a random secret. */
export function runCredentials(): Credentials {
  return {
    accessKeyId: `EMULATED${randomBytes(6).toString("hex").toUpperCase()}`,
    secretAccessKey: randomBytes(30).toString("base64"),
  };
}

/** Why a request was refused, as AWS names it (`<code>Exception`). */
export interface Refusal {
  code: "MissingAuthenticationToken" | "IncompleteSignature" | "UnrecognizedClient" | "InvalidSignature";
  message: string;
}

/** A request whose headers passed: its signature is checked against the body once it is read. */
export interface PendingSignature {
  check(body: Uint8Array): Refusal | undefined;
}

/** What a verifier needs: the run's credentials, the region and the service it signs for. */
export interface SignatureScope {
  credentials: Credentials;
  region: string;
  /** `lambda`, `execute-api` or `dynamodb`. */
  service: string;
  /** How a refused caller gets the credentials, appended to each refusal's message. */
  hint: string;
}

const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;

/** `YYYYMMDDTHHMMSSZ` as a time, or NaN. */
function timeOf(amzDate: string): number {
  return AMZ_DATE.test(amzDate) ? Date.parse(amzDate.replace(AMZ_DATE, "$1-$2-$3T$4:$5:$6Z")) : Number.NaN;
}

/** The `Credential`, `SignedHeaders` and `Signature` of an `AWS4-HMAC-SHA256` Authorization header. */
function authorizationParts(header: string): Map<string, string> {
  const parts = new Map<string, string>();
  for (const part of header.slice("AWS4-HMAC-SHA256 ".length).split(",")) {
    const eq = part.indexOf("=");
    if (eq > 0) parts.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return parts;
}

/**
 * Checks what a request's headers say of its signature: present, ours, scoped to this region and
 * service, dated within 5 minutes of now and covering `host` and `x-amz-date`. Answers a refusal,
 * or the check of the signature itself once the body is read.
 */
export function checkHeaders(
  req: Pick<IncomingMessage, "method" | "url" | "headers" | "headersDistinct">,
  scope: SignatureScope,
): Refusal | PendingSignature {
  const now = Date.now();
  const refuse = (code: Refusal["code"], message: string): Refusal => ({ code, message: `${message}; ${scope.hint}` });
  const authorization = req.headers.authorization;
  if (authorization === undefined || !authorization.startsWith("AWS4-HMAC-SHA256 ")) {
    return refuse(
      "MissingAuthenticationToken",
      authorization === undefined
        ? "Missing Authentication Token: the request is not signed"
        : "Missing Authentication Token: the Authorization header is not an AWS4-HMAC-SHA256 signature",
    );
  }
  const parts = authorizationParts(authorization);
  const credential = parts.get("Credential");
  const signedHeaders = parts.get("SignedHeaders");
  const signature = parts.get("Signature");
  const missing = [
    ["Credential", credential],
    ["SignedHeaders", signedHeaders],
    ["Signature", signature],
  ]
    .filter(([, value]) => !value)
    .map(([name]) => name);
  if (missing.length > 0) {
    return refuse("IncompleteSignature", `the Authorization header lacks ${missing.join(", ")}`);
  }
  const [accessKeyId, date, region, service, terminator, ...rest] = (credential as string).split("/");
  if (accessKeyId !== scope.credentials.accessKeyId) {
    return refuse(
      "UnrecognizedClient",
      `The security token included in the request is invalid: access key id ${JSON.stringify(accessKeyId)} is not this run's`,
    );
  }
  if (terminator !== "aws4_request" || rest.length > 0) {
    return refuse(
      "IncompleteSignature",
      `the credential scope ${JSON.stringify(credential)} is not <key>/<date>/<region>/<service>/aws4_request`,
    );
  }
  if (region !== scope.region || service !== scope.service) {
    return refuse(
      "InvalidSignature",
      `Credential should be scoped to region ${JSON.stringify(scope.region)} and service ${JSON.stringify(scope.service)}, not ${JSON.stringify(region)} and ${JSON.stringify(service)}`,
    );
  }
  const names = (signedHeaders as string).split(";");
  const amzDate = req.headers["x-amz-date"];
  if (typeof amzDate !== "string" || !names.includes("x-amz-date") || !names.includes("host")) {
    return refuse(
      "IncompleteSignature",
      "the signature must cover the host and x-amz-date headers, and x-amz-date be sent",
    );
  }
  const at = timeOf(amzDate);
  if (Number.isNaN(at) || amzDate.slice(0, 8) !== date) {
    return refuse(
      "IncompleteSignature",
      `x-amz-date ${JSON.stringify(amzDate)} is not YYYYMMDDTHHMMSSZ of the credential's date`,
    );
  }
  if (Math.abs(now - at) > MAX_CLOCK_SKEW_MS) {
    return refuse(
      "InvalidSignature",
      `Signature expired or not yet current: ${amzDate} is more than 5 minutes from ${new Date(now).toISOString()}`,
    );
  }
  const headers = new Map<string, string>();
  for (const name of names) {
    // A header sent more than once is signed as its values joined with commas.
    const values = req.headersDistinct[name];
    if (values === undefined)
      return refuse("IncompleteSignature", `the signed header ${JSON.stringify(name)} is not sent`);
    headers.set(name, values.join(","));
  }
  // The path as it came, not as a URL parser would normalise it (a client signs what it sent).
  const target = req.url ?? "/";
  const q = target.indexOf("?");
  const pathname = q < 0 ? target : target.slice(0, q);
  const searchParams = new URLSearchParams(q < 0 ? "" : target.slice(q + 1));
  const given = Buffer.from(signature as string, "utf8");
  return {
    check(body: Uint8Array): Refusal | undefined {
      const payloadHash = payloadHashOf(body);
      const declared = headers.get("x-amz-content-sha256");
      if (declared !== undefined && declared !== payloadHash) {
        return refuse("InvalidSignature", "the body's SHA-256 is not the one its x-amz-content-sha256 header gives");
      }
      const expected = signatureOf({
        method: req.method ?? "GET",
        pathname,
        searchParams,
        headers,
        names,
        payloadHash,
        amzDate,
        service: scope.service,
        region: scope.region,
        secretAccessKey: scope.credentials.secretAccessKey,
      }).signature;
      const computed = Buffer.from(expected, "utf8");
      if (given.length !== computed.length || !timingSafeEqual(given, computed)) {
        return refuse(
          "InvalidSignature",
          "The request signature we calculated does not match the signature you provided (the secret key, or what was signed, differs)",
        );
      }
      return undefined;
    },
  };
}

/** How an API of AWS answers an error: REST (Lambda, API Gateway: the type in a header) or JSON 1.0 (DynamoDB: in the body). */
export type ErrorStyle = "rest" | "json";

/** Answers the error `<code>Exception` with `status`, as an API of `style` does. */
function answerError(
  res: ServerResponse,
  style: ErrorStyle,
  status: number,
  code: string,
  message: string,
  headers: Record<string, string> = {},
): void {
  if (style === "rest") {
    res
      .writeHead(status, { "content-type": "application/json", "x-amzn-errortype": `${code}Exception`, ...headers })
      .end(JSON.stringify({ message }));
  } else {
    res
      .writeHead(status, { "content-type": "application/x-amz-json-1.0", ...headers })
      .end(JSON.stringify({ __type: `com.amazon.coral.service#${code}Exception`, message }));
  }
}

/**
 * A request's body, or undefined once it passes `max` bytes: the rest is read and dropped (not
 * kept, and not cut off, which could lose the answer to a reset before its client reads it).
 */
export function readBody(req: IncomingMessage, max: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    let chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > max) {
        req.off("data", onData);
        chunks = [];
        resolve(undefined);
        return;
      }
      chunks.push(c);
    };
    req.on("data", onData);
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

/**
 * The body of a request signed for `scope`, in the order that costs a stranger least: the
 * signature's headers (refused at once, the body never read; AWS answers 403 on its REST APIs, 400
 * on DynamoDB), the body up to `maxBytes` (over it, 413 `RequestTooLargeException` at once and the
 * rest dropped), then the signature over it. Undefined when the request was answered here.
 */
export async function readSignedBody(
  req: IncomingMessage,
  res: ServerResponse,
  scope: SignatureScope,
  maxBytes: number,
  style: ErrorStyle,
): Promise<Buffer | undefined> {
  const refusedStatus = style === "rest" ? 403 : 400;
  const signed = checkHeaders(req, scope);
  if ("code" in signed) {
    req.resume();
    answerError(res, style, refusedStatus, signed.code, signed.message);
    return undefined;
  }
  const body = await readBody(req, maxBytes);
  if (body === undefined) {
    // Answered now; what the client still sends is dropped as it comes, then the connection ends.
    const message = `Request must be smaller than ${maxBytes} bytes`;
    answerError(res, style, 413, "RequestTooLarge", message, { connection: "close" });
    return undefined;
  }
  const refusal = signed.check(body);
  if (refusal) {
    answerError(res, style, refusedStatus, refusal.code, refusal.message);
    return undefined;
  }
  return body;
}
