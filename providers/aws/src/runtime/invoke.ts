/**
 * Lambda's Invoke API (`POST /2015-03-31/functions/{name}/invocations`, InvocationType Event),
 * signed with Signature Version 4 from the credentials Lambda puts in every function's
 * environment. Only the runtime's delivery of messages sent during connect needs it, and a full
 * Lambda client would add 112 KB to every bundle and 25 ms to every cold start.
 */
import { createHash, createHmac } from "node:crypto";

const hmac = (key: string | Buffer, text: string) => createHmac("sha256", key).update(text, "utf8").digest();
const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest("hex");

/** The request headers of a SigV4-signed request. */
export function signRequest(options: {
  method: string;
  url: URL;
  body: string;
  headers: Record<string, string>;
  service: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  now?: Date;
}): Record<string, string> {
  const amzDate = (options.now ?? new Date()).toISOString().replace(/[:-]|\.\d{3}/g, "");
  const date = amzDate.slice(0, 8);
  const headers: Record<string, string> = {
    ...Object.fromEntries(Object.entries(options.headers).map(([k, v]) => [k.toLowerCase(), v.trim()])),
    host: options.url.host,
    "x-amz-date": amzDate,
    ...(options.sessionToken ? { "x-amz-security-token": options.sessionToken } : {}),
  };
  const names = Object.keys(headers).sort();
  const signedHeaders = names.join(";");
  // Every service but S3 signs the path with each segment encoded once more.
  const path = options.url.pathname
    .split("/")
    .map((segment) =>
      encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`),
    )
    .join("/");
  const canonical = [
    options.method,
    path,
    "",
    ...names.map((n) => `${n}:${headers[n]}`),
    "",
    signedHeaders,
    sha256(options.body),
  ].join("\n");
  const scope = `${date}/${options.region}/${options.service}/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256(canonical)].join("\n");
  const key = hmac(
    hmac(hmac(hmac(`AWS4${options.secretAccessKey}`, date), options.region), options.service),
    "aws4_request",
  );
  const signature = createHmac("sha256", key).update(toSign, "utf8").digest("hex");
  return {
    ...headers,
    authorization: `AWS4-HMAC-SHA256 Credential=${options.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`,
  };
}

/** Invokes a function asynchronously (InvocationType Event); resolves once Lambda queued it. */
export async function invokeAsync(functionName: string, payload: unknown, env: NodeJS.ProcessEnv): Promise<void> {
  const region = env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  if (!region || !accessKeyId || !secretAccessKey) {
    throw new Error("AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set (Lambda sets them)");
  }
  const base = env.AWS_ENDPOINT_URL_LAMBDA ?? env.AWS_ENDPOINT_URL ?? `https://lambda.${region}.amazonaws.com`;
  const url = new URL(`/2015-03-31/functions/${encodeURIComponent(functionName)}/invocations`, base);
  const body = JSON.stringify(payload);
  const headers = signRequest({
    method: "POST",
    url,
    body,
    headers: { "content-type": "application/json", "x-amz-invocation-type": "Event" },
    service: "lambda",
    region,
    accessKeyId,
    secretAccessKey,
    ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
  });
  delete headers.host;
  const response = await fetch(url, { method: "POST", headers, body });
  if (response.status !== 202) {
    const text = await response.text();
    throw new Error(`Lambda Invoke answered ${response.status}: ${text.slice(0, 300)}`);
  }
}
