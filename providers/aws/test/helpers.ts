/// <reference path="../src/emulator/dynalite-package.d.ts" />
/**
 * Test helpers: dynalite in this process, and loopback servers playing an AWS API that record
 * every request and check its Signature Version 4 signature against the bytes that arrived.
 */
import { createHash } from "node:crypto";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { CreateTableCommand, DynamoDBClient } from "@aws-sdk/client-dynamodb";
import type { Logger } from "@nitric-like/spec";
import { expect } from "vitest";
import type { RetryPolicy } from "../src/aws/request.js";
import { signRequest } from "../src/aws/signer.js";
import { startDynalite as startDynaliteServer } from "../src/emulator/dynalite.js";
import { untilActive } from "../src/emulator/emulator.js";

const cleanups: (() => Promise<void>)[] = [];

/** Closes every server the helpers started. */
export async function cleanup(): Promise<void> {
  await Promise.all(cleanups.splice(0).map((c) => c()));
}

/** The credentials Lambda would set, a session token included. */
export const ENV = {
  AWS_REGION: "eu-west-1",
  AWS_ACCESS_KEY_ID: "ASIATESTKEY",
  AWS_SECRET_ACCESS_KEY: "test-secret",
  AWS_SESSION_TOKEN: "test-session-token",
} as const;

/** The SDK's attempts, with waits short enough for a test. */
export const FAST_RETRY: RetryPolicy = { attempts: 3, baseDelayMs: 1, throttlingBaseDelayMs: 1 };

/** ENV's credentials, as the AWS SDK takes them. */
export const CREDENTIALS = { accessKeyId: ENV.AWS_ACCESS_KEY_ID, secretAccessKey: ENV.AWS_SECRET_ACCESS_KEY };

/** dynalite on 127.0.0.1, taking requests signed with ENV's credentials for ENV's region; its endpoint. */
export async function startDynalite(): Promise<string> {
  const { endpoint, close } = await startDynaliteServer(undefined, {
    credentials: CREDENTIALS,
    region: ENV.AWS_REGION,
  });
  cleanups.push(close);
  return endpoint;
}

/** The AWS SDK's DynamoDB client on dynalite at `endpoint` (as the emulator uses it): tables made and read around ours. */
export function sdkDynamo(endpoint: string): DynamoDBClient {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  return new DynamoDBClient({
    endpoint,
    region: ENV.AWS_REGION,
    credentials: CREDENTIALS,
  });
}

/** Creates a table as the template does: a string `hash` key and `range` key, billed per request. */
export async function createTable(sdk: DynamoDBClient, table: string, hash: string, range: string): Promise<void> {
  await sdk.send(
    new CreateTableCommand({
      TableName: table,
      KeySchema: [
        { AttributeName: hash, KeyType: "HASH" },
        { AttributeName: range, KeyType: "RANGE" },
      ],
      AttributeDefinitions: [
        { AttributeName: hash, AttributeType: "S" },
        { AttributeName: range, AttributeType: "S" },
      ],
      BillingMode: "PAY_PER_REQUEST",
    }),
  );
  // Usable once ACTIVE, as the emulator waits for its own tables.
  await untilActive(sdk, table);
}

/** A request as it arrived. */
export interface Received {
  method: string;
  /** The path as sent, percent-encoding included. */
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** What the server answers. */
export interface Answer {
  status: number;
  headers?: Record<string, string>;
  body?: string;
}

/** A loopback server answering with `answer`; `requests` lists what arrived. */
export async function loopback(answer: (request: Received) => Answer) {
  const requests: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const received = {
        method: req.method ?? "",
        path: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks),
      };
      requests.push(received);
      const a = answer(received);
      res.writeHead(a.status, a.headers ?? {}).end(a.body ?? "");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(
    () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

/**
 * Checks that a request carries a valid signature for `service` with ENV's credentials: the
 * scope, the signed headers (host, x-amz-date, the session token and every x-amz-* and
 * content-type header sent) and the signature over the path and body that arrived.
 */
export function expectSigned(request: Received, service: string): void {
  const authorization = String(request.headers.authorization ?? "");
  const m =
    /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, SignedHeaders=([^,]+), Signature=[0-9a-f]{64}$/.exec(
      authorization,
    );
  expect(m, authorization).not.toBeNull();
  const [, keyId, , region, signedService, signedHeaders] = m as unknown as string[];
  expect({ keyId, region, signedService }).toEqual({
    keyId: ENV.AWS_ACCESS_KEY_ID,
    region: ENV.AWS_REGION,
    signedService: service,
  });
  expect(request.headers["x-amz-security-token"]).toBe(ENV.AWS_SESSION_TOKEN);
  const names = (signedHeaders as string).split(";");
  for (const name of Object.keys(request.headers)) {
    if (name.startsWith("x-amz-") || name === "content-type" || name === "host") expect(names).toContain(name);
  }
  // The body's hash is sent (as the SDK's clients send it) and must be the hash of what arrived.
  expect(request.headers["x-amz-content-sha256"]).toBe(createHash("sha256").update(request.body).digest("hex"));
  const amzDate = String(request.headers["x-amz-date"]);
  const now = new Date(amzDate.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, "$1-$2-$3T$4:$5:$6Z"));
  const headers = Object.fromEntries(
    names
      .filter((n) => !["host", "x-amz-date", "x-amz-security-token"].includes(n))
      .map((n) => [n, String(request.headers[n])]),
  );
  const expected = signRequest({
    method: request.method,
    url: new URL(request.path, `http://${request.headers.host}`),
    body: request.body,
    headers,
    service,
    region: ENV.AWS_REGION,
    accessKeyId: ENV.AWS_ACCESS_KEY_ID,
    secretAccessKey: ENV.AWS_SECRET_ACCESS_KEY,
    sessionToken: ENV.AWS_SESSION_TOKEN,
    now,
  });
  expect(authorization).toBe(expected.authorization);
}

/** A logger that keeps what it is told. */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    info: (m) => lines.push(`info: ${m}`),
    warn: (m) => lines.push(`warn: ${m}`),
    error: (m) => lines.push(`error: ${m}`),
  };
}
