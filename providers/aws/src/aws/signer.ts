/**
 * Signature Version 4: the headers that sign a request with the credentials Lambda puts in every
 * function's environment. Checked against AWS's SigV4 test suite (signer.test.ts). It signs what
 * the runtime sends: no query string, any body (text or bytes).
 */
import { createHash, createHmac } from "node:crypto";

const hmac = (key: string | Buffer, text: string) => createHmac("sha256", key).update(text, "utf8").digest();
const sha256 = (data: string | Uint8Array) =>
  (typeof data === "string" ? createHash("sha256").update(data, "utf8") : createHash("sha256").update(data)).digest(
    "hex",
  );

/** Credentials, as Lambda's environment has them. */
export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** The request headers of a SigV4-signed request. */
export function signRequest(options: {
  method: string;
  url: URL;
  body: string | Uint8Array;
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
