// The emulator's signature check (src/emulator/auth.ts) against the AWS SDK's own signer as the
// oracle: requests that `@smithy/signature-v4` signs, sent over real HTTP to a server that checks
// them, pass; the same requests with one thing changed do not; and dynalite behind the check serves
// the SDK's DynamoDB client with the run's credentials and refuses it with any other.
import { once } from "node:events";
import { createServer, type IncomingMessage, request, type Server } from "node:http";
import { type AddressInfo, createConnection } from "node:net";
import { CreateTableCommand, DynamoDBClient, ListTablesCommand } from "@aws-sdk/client-dynamodb";
import { Sha256Js } from "@smithy/core/checksum";
import { HttpRequest } from "@smithy/core/protocols";
import { SignatureV4 } from "@smithy/signature-v4";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { escapeUri, signRequest } from "../src/aws/signer.js";
import { checkHeaders, readBody, runCredentials, type SignatureScope } from "../src/emulator/auth.js";
import { startDynalite } from "../src/emulator/dynalite.js";

const HINT = "sign it with the test's credentials";
const scope: SignatureScope = { credentials: runCredentials(), region: "eu-west-1", service: "lambda", hint: HINT };

/** A server answering each request with what the check said: 200 `ok`, or 403 and the refusal. */
let server: Server;
let port = 0;
beforeAll(async () => {
  server = createServer(async (req, res) => {
    const signed = checkHeaders(req, scope);
    if ("code" in signed) {
      req.resume();
      res.writeHead(403).end(JSON.stringify({ ...signed, stage: "headers" }));
      return;
    }
    const body = (await readBody(req, 1 << 20)) as Buffer;
    const refusal = signed.check(body);
    res.writeHead(refusal ? 403 : 200).end(JSON.stringify(refusal ? { ...refusal, stage: "body" } : { ok: true }));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  port = (server.address() as AddressInfo).port;
});
afterAll(() => {
  server.close();
  server.closeAllConnections();
});

interface Wire {
  method: string;
  path: string;
  query: [string, string][];
  headers: Record<string, string>;
  body: Uint8Array;
  /** The SDK's clients send the body's hash as x-amz-content-sha256 (its signer's `applyChecksum`). */
  checksum?: boolean;
}

/** Signs `wire` with the SDK's signer as a client of `service` in `region` would, at `now`. */
async function sdkSigned(
  wire: Wire,
  options: { secretAccessKey?: string; accessKeyId?: string; region?: string; service?: string; now?: Date } = {},
): Promise<Record<string, string>> {
  const query: Record<string, string | string[]> = Object.create(null);
  for (const [k, v] of wire.query) {
    const had = query[k];
    query[k] = had === undefined ? v : Array.isArray(had) ? [...had, v] : [had, v];
  }
  const signer = new SignatureV4({
    service: options.service ?? scope.service,
    region: options.region ?? scope.region,
    sha256: Sha256Js,
    credentials: {
      accessKeyId: options.accessKeyId ?? scope.credentials.accessKeyId,
      secretAccessKey: options.secretAccessKey ?? scope.credentials.secretAccessKey,
    },
    applyChecksum: wire.checksum ?? false,
  });
  const signed = await signer.sign(
    new HttpRequest({
      method: wire.method,
      protocol: "http:",
      hostname: "127.0.0.1",
      port,
      path: wire.path,
      query,
      // Sent by every client of the SDK, and signed: the body's length.
      headers: { ...wire.headers, host: `127.0.0.1:${port}`, "content-length": String(wire.body.length) },
      body: wire.body,
    }),
    { signingDate: options.now ?? new Date() },
  );
  return signed.headers as Record<string, string>;
}

/** Sends `wire` with `headers` (the query encoded as the SDK encodes it); the server's answer. */
function send(
  wire: Wire,
  headers: Record<string, string>,
): Promise<{ status: number; answer: { ok?: boolean; code: string; message: string; stage: string } }> {
  const search = wire.query.map(([k, v]) => `${escapeUri(k)}=${escapeUri(v)}`).join("&");
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        method: wire.method,
        path: `${wire.path}${search ? `?${search}` : ""}`,
        headers: { ...headers, "content-length": String(wire.body.length) },
      },
      (res: IncomingMessage) => {
        let text = "";
        res.on("data", (d) => {
          text += d;
        });
        res.on("end", () => {
          try {
            resolve({ status: res.statusCode ?? 0, answer: JSON.parse(text) });
          } catch {
            reject(new Error(`answer ${res.statusCode} ${JSON.stringify(text)} to ${wire.method} ${wire.path}`));
          }
        });
      },
    );
    req.on("error", reject);
    req.end(wire.body);
  });
}

const text = fc.string({ unit: "grapheme", maxLength: 8 });
const wire = fc.record({
  method: fc.constantFrom("GET", "POST", "PUT", "DELETE"),
  // Each segment encoded as the SDK's serializers encode a label; `.` and `..` as they are.
  path: fc
    .array(fc.oneof(text.map(escapeUri), fc.constantFrom(".", "..", "@connections", "%40connections")), {
      maxLength: 5,
    })
    .map((segments) => `/${segments.join("/")}`),
  query: fc.array(fc.tuple(text, text), { maxLength: 4 }),
  headers: fc
    .uniqueArray(
      fc.tuple(
        fc.constantFrom("content-type", "x-amz-target", "x-amz-invocation-type", "x-odd", "user-agent"),
        fc.string({ unit: fc.constantFrom(..."abc XYZ-/.;=\t"), maxLength: 12 }).map((v) => v.trim() || "v"),
      ),
      { selector: ([name]) => name },
    )
    .map((pairs) => Object.fromEntries(pairs)),
  body: fc.uint8Array({ maxLength: 200 }),
  checksum: fc.boolean(),
});

describe("the emulator's signature check, against the AWS SDK's signer", () => {
  it("takes 300 random requests the SDK signed with the run's credentials, over HTTP", async () => {
    await fc.assert(
      fc.asyncProperty(wire, async (w) => {
        const { status, answer } = await send(w, await sdkSigned(w));
        expect(answer).toEqual({ ok: true });
        expect(status).toBe(200);
      }),
      { numRuns: 300 },
    );
  });

  it("refuses each of them with one thing changed after signing: method, path, query, a header or the body", async () => {
    await fc.assert(
      fc.asyncProperty(wire, fc.nat(4), async (w, what) => {
        const headers = await sdkSigned(w);
        const changed: Wire = { ...w, headers: { ...w.headers } };
        if (what === 0) changed.method = w.method === "PUT" ? "POST" : "PUT";
        else if (what === 1) changed.path = `${w.path}x`;
        else if (what === 2) changed.query = [...w.query, ["added", "1"]];
        else if (what === 3) {
          // One second before the one signed.
          const signedAt = (headers["x-amz-date"] as string).replace(
            /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/,
            "$1-$2-$3T$4:$5:$6Z",
          );
          headers["x-amz-date"] = new Date(Date.parse(signedAt) - 1000).toISOString().replace(/[:-]|\.\d{3}/g, "");
        } else changed.body = new Uint8Array([...w.body, 1]);
        const { status, answer } = await send(changed, headers);
        expect(status).toBe(403);
        expect(answer.code).toBe("InvalidSignature");
        expect(answer.message).toMatch(
          what === 4 && w.checksum
            ? /^the body's SHA-256 is not the one its x-amz-content-sha256 header gives/
            : /^The request signature we calculated does not match/,
        );
        expect(answer.message.endsWith(`; ${HINT}`)).toBe(true);
      }),
      { numRuns: 150 },
    );
  });

  it("refuses, before reading the body, what is not signed with the run's credentials for this region and service", async () => {
    const w: Wire = {
      method: "POST",
      path: "/2015-03-31/functions/f/invocations",
      query: [],
      headers: {},
      body: new Uint8Array([1]),
    };
    const refused = async (headers: Record<string, string>) => {
      const { status, answer } = await send(w, headers);
      expect(status).toBe(403);
      expect(answer.message.endsWith(`; ${HINT}`)).toBe(true);
      return [answer.stage, answer.code, answer.message.replace(`; ${HINT}`, "")];
    };
    expect(await refused({})).toEqual([
      "headers",
      "MissingAuthenticationToken",
      "Missing Authentication Token: the request is not signed",
    ]);
    expect(await refused({ authorization: "Basic dXNlcjpwYXNz" })).toEqual([
      "headers",
      "MissingAuthenticationToken",
      "Missing Authentication Token: the Authorization header is not an AWS4-HMAC-SHA256 signature",
    ]);
    const good = await sdkSigned(w);
    expect(
      await refused({ ...good, authorization: (good.authorization as string).replace(/, Signature=.*/, "") }),
    ).toEqual(["headers", "IncompleteSignature", "the Authorization header lacks Signature"]);
    const otherKey = await refused(await sdkSigned(w, { accessKeyId: "AKIAOTHERKEY0000" }));
    expect(otherKey.slice(0, 2)).toEqual(["headers", "UnrecognizedClient"]);
    expect(otherKey[2]).toContain('access key id "AKIAOTHERKEY0000" is not this run\'s');
    expect(await refused(await sdkSigned(w, { region: "us-east-1" }))).toEqual([
      "headers",
      "InvalidSignature",
      'Credential should be scoped to region "eu-west-1" and service "lambda", not "us-east-1" and "lambda"',
    ]);
    expect((await refused(await sdkSigned(w, { service: "execute-api" })))[1]).toBe("InvalidSignature");
    const stale = await refused(await sdkSigned(w, { now: new Date(Date.now() - 6 * 60_000) }));
    expect(stale.slice(0, 2)).toEqual(["headers", "InvalidSignature"]);
    expect(stale[2]).toMatch(/^Signature expired or not yet current: \d{8}T\d{6}Z is more than 5 minutes from /);
    expect((await refused(await sdkSigned(w, { now: new Date(Date.now() + 6 * 60_000) })))[1]).toBe("InvalidSignature");
    // Names from the request are data: Object.prototype's are headers that were not sent.
    for (const name of ["constructor", "__proto__", "toString"]) {
      const auth = (good.authorization as string).replace("SignedHeaders=", `SignedHeaders=${name};`);
      expect(await refused({ ...good, authorization: auth })).toEqual([
        "headers",
        "IncompleteSignature",
        `the signed header "${name}" is not sent`,
      ]);
    }
    const { "x-amz-date": _date, ...undated } = good;
    expect((await refused(undated))[1]).toBe("IncompleteSignature");
    // Another secret: only the signature over the body can tell.
    expect((await refused(await sdkSigned(w, { secretAccessKey: "not-the-secret" }))).slice(0, 2)).toEqual([
      "body",
      "InvalidSignature",
    ]);
    // A signed x-amz-content-sha256 that is not the body's.
    const hashed = await sdkSigned({ ...w, headers: { "x-amz-content-sha256": "0".repeat(64) } });
    expect(await refused(hashed)).toEqual([
      "body",
      "InvalidSignature",
      "the body's SHA-256 is not the one its x-amz-content-sha256 header gives",
    ]);
  });
});

describe("dynalite behind the signature check", () => {
  const credentials = runCredentials();
  let db: Awaited<ReturnType<typeof startDynalite>>;
  const clients: DynamoDBClient[] = [];
  const client = (c = credentials) => {
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
    const made = new DynamoDBClient({ endpoint: db.endpoint, region: "us-east-1", credentials: c, maxAttempts: 1 });
    clients.push(made);
    return made;
  };
  beforeAll(async () => {
    db = await startDynalite(undefined, { credentials, hint: HINT });
  });
  afterAll(async () => {
    for (const c of clients) c.destroy();
    await db?.close();
  });

  it("serves the AWS SDK's client signing with the run's credentials", async () => {
    expect(db.credentials).toBe(credentials);
    await client().send(
      new CreateTableCommand({
        TableName: "signed-only",
        KeySchema: [{ AttributeName: "k", KeyType: "HASH" }],
        AttributeDefinitions: [{ AttributeName: "k", AttributeType: "S" }],
        BillingMode: "PAY_PER_REQUEST",
      }),
    );
    expect((await client().send(new ListTablesCommand({}))).TableNames).toEqual(["signed-only"]);
  });

  it("refuses a client with another secret or key as DynamoDB does, naming how to sign", async () => {
    const other = client({ ...credentials, secretAccessKey: "guessed" }).send(new ListTablesCommand({}));
    await expect(other).rejects.toMatchObject({
      name: "InvalidSignatureException",
      message: expect.stringMatching(new RegExp(`^The request signature we calculated does not match.*; ${HINT}$`)),
      $metadata: { httpStatusCode: 400 },
    });
    const key = client({ ...credentials, accessKeyId: "AKIAGUESSED00000" }).send(new ListTablesCommand({}));
    await expect(key).rejects.toMatchObject({ name: "UnrecognizedClientException" });
  });

  it("refuses 500 requests with random Authorization and x-amz-date headers with 400 and a reason, never a server error", async () => {
    const now = new Date().toISOString().replace(/[:-]|\.\d{3}/g, "");
    const day = now.slice(0, 8);
    const part = fc.string({ unit: fc.constantFrom(..."abcAZ09/;=, _-.:"), maxLength: 24 });
    const authorization = fc.oneof(
      fc.string({ unit: "grapheme-ascii", maxLength: 60 }),
      part.map((p) => `AWS4-HMAC-SHA256 ${p}`),
      fc
        .tuple(part, part, part)
        .map(
          ([scope, names, signature]) =>
            `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, SignedHeaders=${names}, Signature=${signature}`,
        ),
      fc
        .tuple(
          fc.constantFrom("host;x-amz-date", "host;x-amz-date;constructor", "__proto__;host;x-amz-date", "", ";;"),
          part,
        )
        .map(
          ([names, signature]) =>
            `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${day}/us-east-1/dynamodb/aws4_request, SignedHeaders=${names}, Signature=${signature}`,
        ),
    );
    const date = fc.option(fc.oneof(fc.constant(now), fc.string({ unit: "grapheme-ascii", maxLength: 20 })), {
      nil: undefined,
    });
    const url = new URL(db.endpoint);
    const answers = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(authorization, date, fc.string({ maxLength: 30 }), async (auth, amzDate, body) => {
        const headers: Record<string, string> = { "content-type": "application/x-amz-json-1.0" };
        if (auth.trim() !== "") headers.authorization = auth;
        if (amzDate !== undefined && amzDate.trim() !== "") headers["x-amz-date"] = amzDate;
        const answer = await fetch(url, { method: "POST", headers, body });
        const parsed = (await answer.json()) as { __type: string; message: string };
        expect(answer.status).toBe(400);
        expect(parsed.__type).toMatch(
          /^com\.amazon\.coral\.service#(MissingAuthenticationToken|IncompleteSignature|InvalidSignature)Exception$/,
        );
        expect(parsed.message.endsWith(`; ${HINT}`)).toBe(true);
        const type = parsed.__type.split("#")[1] as string;
        answers.set(type, (answers.get(type) ?? 0) + 1);
      }),
      { numRuns: 500 },
    );
    // The generator reaches every kind of refusal, and the store still serves the SDK.
    expect([...answers.keys()].sort()).toEqual([
      "IncompleteSignatureException",
      "InvalidSignatureException",
      "MissingAuthenticationTokenException",
    ]);
    expect((await client().send(new ListTablesCommand({}))).TableNames).toEqual(["signed-only"]);
  });

  it("answers 408 and closes a connection whose headers are not whole within its timeout", async () => {
    const slowDb = await startDynalite(undefined, { credentials, hint: HINT, headersTimeoutMs: 300 });
    try {
      const socket = createConnection({ host: "127.0.0.1", port: Number(new URL(slowDb.endpoint).port) });
      let answer = "";
      socket.on("data", (d) => {
        answer += d;
      });
      const started = Date.now();
      const closed = new Promise<number>((resolve) => socket.on("close", () => resolve(Date.now() - started)));
      socket.write("POST / HTTP/1.1\r\nHost: x\r\n");
      const after = await closed;
      expect(answer).toMatch(/^HTTP\/1\.1 408 /);
      expect(after).toBeGreaterThanOrEqual(250);
      expect(after).toBeLessThan(2000);
    } finally {
      await slowDb.close();
    }
  });

  it("answers an unsigned request at once, without reading its body, and serves the next", async () => {
    const url = new URL(db.endpoint);
    const answer = await new Promise<{ status: number; body: string; sentBefore: number }>((resolve, reject) => {
      let sent = 0;
      const req = request(
        {
          host: url.hostname,
          port: url.port,
          method: "POST",
          headers: { "content-type": "application/x-amz-json-1.0", "x-amz-target": "DynamoDB_20120810.ListTables" },
        },
        (res) => {
          let body = "";
          res.on("data", (d) => {
            body += d;
          });
          res.on("end", () => {
            req.destroy();
            resolve({ status: res.statusCode ?? 0, body, sentBefore: sent });
          });
        },
      );
      req.on("error", () => {});
      // An upload that never ends by itself: the answer must come while it is still going.
      const chunk = Buffer.alloc(64 * 1024, 32);
      const pump = () => {
        while (sent < 64 * 1024 * 1024 && req.write(chunk)) sent += chunk.length;
        if (sent < 64 * 1024 * 1024 && !req.destroyed) req.once("drain", pump);
      };
      pump();
      setTimeout(() => reject(new Error("no answer within 5 s")), 5000).unref();
    });
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body)).toEqual({
      __type: "com.amazon.coral.service#MissingAuthenticationTokenException",
      message: `Missing Authentication Token: the request is not signed; ${HINT}`,
    });
    // Less than DynamoDB's 16 MB request limit had gone when the answer came: nothing waited for the body.
    expect(answer.sentBefore).toBeLessThan(16 * 1024 * 1024);
    expect((await client().send(new ListTablesCommand({}))).TableNames).toEqual(["signed-only"]);
  });

  it("answers a signed request over DynamoDB's 16 MB with 413, keeping none of it", async () => {
    const body = Buffer.alloc(16 * 1024 * 1024 + 1, 32);
    const headers = signRequest({
      method: "POST",
      url: new URL(db.endpoint),
      body,
      headers: { "content-type": "application/x-amz-json-1.0", "x-amz-target": "DynamoDB_20120810.ListTables" },
      service: "dynamodb",
      region: "us-east-1",
      ...credentials,
    });
    const answer = await fetch(db.endpoint, { method: "POST", headers, body });
    expect(answer.status).toBe(413);
    expect(((await answer.json()) as { __type: string }).__type).toBe(
      "com.amazon.coral.service#RequestTooLargeException",
    );
    expect((await client().send(new ListTablesCommand({}))).TableNames).toEqual(["signed-only"]);
  });
});
