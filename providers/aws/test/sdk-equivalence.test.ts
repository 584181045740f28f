// Our DynamoDB, Management API and Secrets Manager clients against the AWS SDK's
// (`@aws-sdk/client-dynamodb`, `@aws-sdk/client-apigatewaymanagementapi`,
// `@aws-sdk/client-secrets-manager`): for the same operation and input, the SDK's request
// (captured by a request handler that records it and sends nothing) and ours (as it arrived at a
// server on 127.0.0.1) have the same method, path, signed headers and body, and each one's
// signature is the one the other side's signer computes for it.
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import {
  ApiGatewayManagementApiClient,
  DeleteConnectionCommand,
  GetConnectionCommand,
  PostToConnectionCommand,
} from "@aws-sdk/client-apigatewaymanagementapi";
import {
  DeleteItemCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  type AttributeValue as SdkAttributeValue,
  UpdateItemCommand,
} from "@aws-sdk/client-dynamodb";
import {
  GetSecretValueCommand,
  PutSecretValueCommand,
  SecretsManagerClient as SdkSecretsManagerClient,
} from "@aws-sdk/client-secrets-manager";
import { Sha256Js } from "@smithy/core/checksum";
import { HttpRequest, HttpResponse } from "@smithy/core/protocols";
import { SignatureV4 } from "@smithy/signature-v4";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AttributeValue, DynamoDbClient, type Item } from "../src/aws/dynamodb.js";
import { ManagementApiClient } from "../src/aws/management.js";
import { RetryQuota } from "../src/aws/request.js";
import { SecretsManagerClient } from "../src/aws/secretsmanager.js";
import { signRequest } from "../src/aws/signer.js";
import { cleanup, ENV, FAST_RETRY, loopback, type Received } from "./helpers.js";

// The SDK warns, on creating a client, that its releases after early 2027 need Node 22: known, pinned.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";

/** Headers only the SDK sends: its telemetry and invocation ids (signed by it, meaningless to AWS's checks). */
const SDK_ONLY = new Set(["amz-sdk-invocation-id", "amz-sdk-request", "x-amz-user-agent", "user-agent"]);

const BODY_HEADERS = new Set(["x-amz-content-sha256", "content-length"]);

const credentials = {
  accessKeyId: ENV.AWS_ACCESS_KEY_ID,
  secretAccessKey: ENV.AWS_SECRET_ACCESS_KEY,
  sessionToken: ENV.AWS_SESSION_TOKEN,
};

/** One request, either side's, in a form to compare. */
interface Seen {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Uint8Array;
}

let answerBody = "{}";
const sdkRequests: Seen[] = [];
const requestHandler = {
  handle: async (request: HttpRequest) => {
    const body = request.body === undefined ? new Uint8Array() : new Uint8Array(request.body as Uint8Array);
    sdkRequests.push({
      method: request.method,
      path: request.path,
      headers: Object.fromEntries(Object.entries(request.headers).map(([k, v]) => [k.toLowerCase(), String(v)])),
      body,
    });
    return {
      response: new HttpResponse({ statusCode: 200, headers: {}, body: Readable.from([Buffer.from(answerBody)]) }),
    };
  },
};

let server: { url: string; requests: Received[] };
beforeAll(async () => {
  server = await loopback(() => ({ status: 200, body: answerBody }));
});
afterAll(cleanup);

function oursSeen(r: Received): Seen {
  return {
    method: r.method,
    path: r.path,
    headers: Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k, String(v)])),
    body: new Uint8Array(r.body),
  };
}

const signedNames = (h: Record<string, string>) =>
  (/SignedHeaders=([^,]+),/.exec(h.authorization ?? "")?.[1] ?? "").split(";");

/** The signature smithy's SignatureV4 computes for a request, at the date it carries. */
async function smithySignature(seen: Seen, service: string): Promise<string> {
  const names = signedNames(seen.headers);
  const amz = seen.headers["x-amz-date"] as string;
  const date = new Date(amz.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, "$1-$2-$3T$4:$5:$6Z"));
  const signer = new SignatureV4({ service, region: ENV.AWS_REGION, sha256: Sha256Js, credentials });
  const headers = Object.fromEntries(
    names.filter((n) => n !== "x-amz-date" && n !== "x-amz-security-token").map((n) => [n, seen.headers[n] as string]),
  );
  const signed = await signer.sign(
    new HttpRequest({ method: seen.method, hostname: "127.0.0.1", path: seen.path, headers, body: seen.body }),
    { signingDate: date },
  );
  return String(signed.headers.authorization);
}

/** The signature our signer computes for a request, at the date it carries. */
function ourSignature(seen: Seen, service: string): string {
  const names = signedNames(seen.headers);
  const amz = seen.headers["x-amz-date"] as string;
  const now = new Date(amz.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, "$1-$2-$3T$4:$5:$6Z"));
  const headers = Object.fromEntries(
    names
      .filter((n) => !["host", "x-amz-date", "x-amz-security-token"].includes(n))
      .map((n) => [n, seen.headers[n] as string]),
  );
  return String(
    signRequest({
      method: seen.method,
      url: new URL(seen.path, `http://${seen.headers.host}`),
      body: seen.body,
      headers,
      service,
      region: ENV.AWS_REGION,
      ...credentials,
      now,
    }).authorization,
  );
}

/** The comparison: method, path, signed headers (less the SDK's own), their values, the body. */
async function expectSame(sdk: Seen, ours: Seen, service: string, body: "json" | "bytes") {
  expect(ours.method).toBe(sdk.method);
  expect(ours.path).toBe(sdk.path);
  const sdkSigned = signedNames(sdk.headers).filter((n) => !SDK_ONLY.has(n));
  expect(signedNames(ours.headers)).toEqual(sdkSigned);
  for (const name of sdkSigned) {
    // The date is each request's own; the body's hash and length are checked against each body
    // below (a JSON body's members may come in another order, which DynamoDB does not mind).
    if (name === "x-amz-date" || (body === "json" && BODY_HEADERS.has(name))) continue;
    expect(ours.headers[name], name).toBe(sdk.headers[name]);
  }
  for (const seen of [sdk, ours]) {
    expect(seen.headers["x-amz-content-sha256"]).toBe(createHash("sha256").update(seen.body).digest("hex"));
    if (seen.body.length > 0 || seen.method === "POST")
      expect(seen.headers["content-length"]).toBe(String(seen.body.length));
  }
  if (body === "json") {
    expect(JSON.parse(Buffer.from(ours.body).toString("utf8"))).toEqual(
      JSON.parse(Buffer.from(sdk.body).toString("utf8")),
    );
  } else {
    expect(Buffer.from(ours.body).equals(Buffer.from(sdk.body))).toBe(true);
  }
  // Each side's signature is what the other side's signer computes for its request.
  expect(ours.headers.authorization).toBe(await smithySignature(ours, service));
  expect(sdk.headers.authorization).toBe(ourSignature(sdk, service));
}

/** Runs `ours` and `sdk`, each once, and returns what each sent. */
async function both(ours: () => Promise<unknown>, sdk: () => Promise<unknown>): Promise<[Seen, Seen]> {
  const before = server.requests.length;
  const sdkBefore = sdkRequests.length;
  const [ourResult, sdkResult] = [await ours(), await sdk()];
  expect(server.requests.length).toBe(before + 1);
  expect(sdkRequests.length).toBe(sdkBefore + 1);
  results = [ourResult, sdkResult];
  return [sdkRequests.at(-1) as Seen, oursSeen(server.requests.at(-1) as Received)];
}
let results: [unknown, unknown] = [undefined, undefined];

const bytes = (b64: string) => new Uint8Array(Buffer.from(b64, "base64"));

/** Our attribute value (binary as base64) as the SDK takes it (binary as bytes). */
function toSdk(v: AttributeValue): SdkAttributeValue {
  if (v.B !== undefined) return { B: bytes(v.B) };
  if (v.BS !== undefined) return { BS: v.BS.map(bytes) };
  if (v.M !== undefined) return { M: sdkItem(v.M) };
  if (v.L !== undefined) return { L: v.L.map(toSdk) };
  return v as SdkAttributeValue;
}
const sdkItem = (item: Item): Record<string, SdkAttributeValue> =>
  Object.fromEntries(Object.entries(item).map(([k, v]) => [k, toSdk(v)]));

/** Random DynamoDB values: every type, odd strings, nesting. */
const text = fc.string({ unit: "binary", maxLength: 12 });
const base64 = fc.uint8Array({ minLength: 1, maxLength: 12 }).map((b) => Buffer.from(b).toString("base64"));
const number = fc.oneof(fc.integer().map(String), fc.double({ noNaN: true, noDefaultInfinity: true }).map(String));
const { value: attribute } = fc.letrec<{ value: AttributeValue }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    text.map((S) => ({ S })),
    number.map((N) => ({ N })),
    base64.map((B) => ({ B })),
    fc.uniqueArray(text, { minLength: 1, maxLength: 3 }).map((SS) => ({ SS })),
    fc.uniqueArray(number, { minLength: 1, maxLength: 3 }).map((NS) => ({ NS })),
    fc.uniqueArray(base64, { minLength: 1, maxLength: 3 }).map((BS) => ({ BS })),
    fc.constant({ NULL: true }),
    fc.boolean().map((BOOL) => ({ BOOL })),
    fc.dictionary(text, tie("value"), { maxKeys: 3 }).map((M) => ({ M })),
    fc.array(tie("value"), { maxLength: 3 }).map((L) => ({ L })),
  ),
}));
const item = fc.dictionary(
  fc.string({ unit: "binary", minLength: 1, maxLength: 10 }).filter((k) => k !== "__proto__"),
  attribute,
  { minKeys: 1, maxKeys: 4 },
);
const tableName = fc.string({
  unit: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"),
  minLength: 3,
  maxLength: 40,
});

describe("our DynamoDB client against @aws-sdk/client-dynamodb", () => {
  const env = { ...ENV, AWS_ENDPOINT_URL_DYNAMODB: "" };
  let ours: DynamoDbClient;
  let sdk: DynamoDBClient;
  beforeAll(() => {
    env.AWS_ENDPOINT_URL_DYNAMODB = server.url;
    ours = new DynamoDbClient(env, { ...FAST_RETRY, attempts: 1, quota: new RetryQuota() });
    sdk = new DynamoDBClient({
      region: ENV.AWS_REGION,
      endpoint: server.url,
      credentials,
      requestHandler,
      maxAttempts: 1,
    });
  });

  it("PutItem: random items, with a condition, the same request", async () => {
    answerBody = "{}";
    await fc.assert(
      fc.asyncProperty(tableName, item, async (TableName, Item) => {
        const input = {
          TableName,
          Item,
          ConditionExpression: "attribute_not_exists(#k) OR #v = :v",
          ExpressionAttributeNames: { "#k": "_k", "#v": "v" },
          ExpressionAttributeValues: { ":v": { S: "x" } },
        };
        const [s, o] = await both(
          () => ours.putItem(input),
          () =>
            sdk.send(
              new PutItemCommand({
                ...input,
                Item: sdkItem(Item),
                ExpressionAttributeValues: sdkItem(input.ExpressionAttributeValues),
              }),
            ),
        );
        await expectSame(s, o, "dynamodb", "json");
      }),
      { numRuns: 60 },
    );
  });

  it("GetItem: the same request, and the same item read from the same answer", async () => {
    await fc.assert(
      fc.asyncProperty(tableName, item, item, async (TableName, Key, Item) => {
        answerBody = JSON.stringify({ Item });
        const input = {
          TableName,
          Key,
          ConsistentRead: true,
          ProjectionExpression: "#a",
          ExpressionAttributeNames: { "#a": "a" },
        };
        const [s, o] = await both(
          () => ours.getItem(input),
          () => sdk.send(new GetItemCommand({ ...input, Key: sdkItem(Key) })),
        );
        await expectSame(s, o, "dynamodb", "json");
        const [ourOut, sdkOut] = results as [{ Item?: Item }, { Item?: Record<string, SdkAttributeValue> }];
        expect(sdkItem(ourOut.Item as Item)).toEqual(sdkOut.Item);
      }),
      { numRuns: 40 },
    );
  });

  it("DeleteItem: the same request", async () => {
    answerBody = "{}";
    await fc.assert(
      fc.asyncProperty(tableName, item, async (TableName, Key) => {
        const input = {
          TableName,
          Key,
          ConditionExpression: "#o = :o",
          ExpressionAttributeNames: { "#o": "owner" },
          ExpressionAttributeValues: { ":o": { S: "me" } },
        };
        const [s, o] = await both(
          () => ours.deleteItem(input),
          () =>
            sdk.send(
              new DeleteItemCommand({
                ...input,
                Key: sdkItem(Key),
                ExpressionAttributeValues: sdkItem(input.ExpressionAttributeValues),
              }),
            ),
        );
        await expectSame(s, o, "dynamodb", "json");
      }),
      { numRuns: 30 },
    );
  });

  it("UpdateItem: the same request (a connection's rooms and state)", async () => {
    answerBody = "{}";
    await fc.assert(
      fc.asyncProperty(tableName, item, fc.string({ minLength: 1, maxLength: 20 }), async (TableName, Key, room) => {
        const input = {
          TableName,
          Key,
          UpdateExpression: "ADD #r :set",
          ConditionExpression: "attribute_exists(id) AND (attribute_not_exists(#r) OR size(#r) < :max)",
          ExpressionAttributeNames: { "#r": "rooms" },
          ExpressionAttributeValues: { ":set": { SS: [room] }, ":max": { N: "100" } },
          ReturnValues: "ALL_OLD" as const,
        };
        const [s, o] = await both(
          () => ours.updateItem(input),
          () =>
            sdk.send(
              new UpdateItemCommand({
                ...input,
                Key: sdkItem(Key),
                ExpressionAttributeValues: sdkItem(input.ExpressionAttributeValues),
              }),
            ),
        );
        await expectSame(s, o, "dynamodb", "json");
      }),
      { numRuns: 30 },
    );
  });

  it("Query: the same request, every option, and the same page read from the same answer", async () => {
    await fc.assert(
      fc.asyncProperty(
        tableName,
        text,
        fc.option(item, { nil: undefined }),
        fc.integer({ min: 1, max: 1000 }),
        fc.boolean(),
        fc.array(item, { maxLength: 3 }),
        async (TableName, prefix, ExclusiveStartKey, Limit, ScanIndexForward, Items) => {
          answerBody = JSON.stringify({
            Items,
            Count: Items.length,
            ...(ExclusiveStartKey ? { LastEvaluatedKey: ExclusiveStartKey } : {}),
          });
          const input = {
            TableName,
            KeyConditionExpression: "#p = :p AND begins_with(#k, :k)",
            FilterExpression: "attribute_exists(#v)",
            ProjectionExpression: "#k, #v",
            ExpressionAttributeNames: { "#p": "_p", "#k": "_k", "#v": "v" },
            ExpressionAttributeValues: { ":p": { S: "k" }, ":k": { S: prefix } },
            ConsistentRead: true,
            Limit,
            ScanIndexForward,
            ...(ExclusiveStartKey ? { ExclusiveStartKey } : {}),
          };
          const [s, o] = await both(
            () => ours.query(input),
            () =>
              sdk.send(
                new QueryCommand({
                  ...input,
                  ExpressionAttributeValues: sdkItem(input.ExpressionAttributeValues),
                  ExclusiveStartKey: ExclusiveStartKey ? sdkItem(ExclusiveStartKey) : undefined,
                }),
              ),
          );
          await expectSame(s, o, "dynamodb", "json");
          const [ourOut, sdkOut] = results as [
            { Items?: Item[]; LastEvaluatedKey?: Item },
            { Items?: Record<string, SdkAttributeValue>[]; LastEvaluatedKey?: Record<string, SdkAttributeValue> },
          ];
          expect((ourOut.Items ?? []).map(sdkItem)).toEqual(sdkOut.Items);
          expect(ourOut.LastEvaluatedKey && sdkItem(ourOut.LastEvaluatedKey)).toEqual(sdkOut.LastEvaluatedKey);
        },
      ),
      { numRuns: 40 },
    );
  });
});

describe("our Management API client against @aws-sdk/client-apigatewaymanagementapi", () => {
  let ours: ManagementApiClient;
  let sdk: ApiGatewayManagementApiClient;
  beforeAll(() => {
    ours = new ManagementApiClient(
      `${server.url}/live`,
      { ...ENV },
      { ...FAST_RETRY, attempts: 1, quota: new RetryQuota() },
    );
    sdk = new ApiGatewayManagementApiClient({
      region: ENV.AWS_REGION,
      endpoint: `${server.url}/live`,
      credentials,
      requestHandler,
      maxAttempts: 1,
    });
  });

  /** Connection ids as API Gateway makes them (base64, `=` included), and odd ones. */
  const connectionId = fc.oneof(
    fc.uint8Array({ minLength: 12, maxLength: 12 }).map((b) => Buffer.from(b).toString("base64")),
    fc.string({ unit: "binary", minLength: 1, maxLength: 20 }).filter((s) => s !== "." && s !== ".."),
  );

  it("PostToConnection: text and binary frames, the same request", async () => {
    answerBody = "";
    await fc.assert(
      fc.asyncProperty(connectionId, fc.uint8Array({ maxLength: 256 }), async (ConnectionId, Data) => {
        const [s, o] = await both(
          () => ours.postToConnection(ConnectionId, Data),
          () => sdk.send(new PostToConnectionCommand({ ConnectionId, Data })),
        );
        await expectSame(s, o, "execute-api", "bytes");
      }),
      { numRuns: 60 },
    );
  });

  it("GetConnection: the same request, and the same connection read from the same answer", async () => {
    answerBody = JSON.stringify({
      connectedAt: "2026-12-03T10:00:00.000Z",
      lastActiveAt: "2026-12-03T10:01:30.000Z",
      identity: { sourceIp: "203.0.113.9", userAgent: "Mozilla/5.0 (X11)" },
    });
    await fc.assert(
      fc.asyncProperty(connectionId, async (ConnectionId) => {
        const [s, o] = await both(
          () => ours.getConnection(ConnectionId),
          () => sdk.send(new GetConnectionCommand({ ConnectionId })),
        );
        await expectSame(s, o, "execute-api", "bytes");
        const [mine, theirs] = results as [
          Awaited<ReturnType<ManagementApiClient["getConnection"]>>,
          { ConnectedAt?: Date; LastActiveAt?: Date; Identity?: { SourceIp?: string; UserAgent?: string } },
        ];
        expect(mine).toEqual({
          connectedAt: theirs.ConnectedAt,
          lastActiveAt: theirs.LastActiveAt,
          sourceIp: theirs.Identity?.SourceIp,
          userAgent: theirs.Identity?.UserAgent,
        });
      }),
      { numRuns: 30 },
    );
  });

  it("DeleteConnection: the same request", async () => {
    answerBody = "";
    await fc.assert(
      fc.asyncProperty(connectionId, async (ConnectionId) => {
        const [s, o] = await both(
          () => ours.deleteConnection(ConnectionId),
          () => sdk.send(new DeleteConnectionCommand({ ConnectionId })),
        );
        await expectSame(s, o, "execute-api", "bytes");
      }),
      { numRuns: 30 },
    );
  });
});

describe("our Secrets Manager client against @aws-sdk/client-secrets-manager", () => {
  const env = { ...ENV, AWS_ENDPOINT_URL_SECRETS_MANAGER: "" };
  let ours: SecretsManagerClient;
  let sdk: SdkSecretsManagerClient;
  beforeAll(() => {
    env.AWS_ENDPOINT_URL_SECRETS_MANAGER = server.url;
    ours = new SecretsManagerClient(env, { ...FAST_RETRY, attempts: 1, quota: new RetryQuota() });
    sdk = new SdkSecretsManagerClient({
      region: ENV.AWS_REGION,
      endpoint: server.url,
      credentials,
      requestHandler,
      maxAttempts: 1,
    });
  });

  /** Secret ARNs as CloudFormation names them (`<LogicalId>-<random>`, then Secrets Manager's 6 characters). */
  const arn = fc
    .tuple(fc.stringMatching(/^[A-Za-z][A-Za-z0-9]{0,20}$/), fc.stringMatching(/^[A-Za-z0-9]{6,12}$/))
    .map(([id, suffix]) => `arn:aws:secretsmanager:${ENV.AWS_REGION}:123456789012:secret:${id}-${suffix}`);
  const versionId = fc.uuid();

  it("PutSecretValue: any value as SecretBinary under the version id, the same request", async () => {
    await fc.assert(
      fc.asyncProperty(arn, versionId, fc.uint8Array({ minLength: 1, maxLength: 512 }), async (SecretId, id, value) => {
        answerBody = JSON.stringify({ ARN: SecretId, Name: "x", VersionId: id, VersionStages: ["AWSCURRENT"] });
        const [s, o] = await both(
          () =>
            ours.putSecretValue({
              SecretId,
              ClientRequestToken: id,
              SecretBinary: Buffer.from(value).toString("base64"),
            }),
          () => sdk.send(new PutSecretValueCommand({ SecretId, ClientRequestToken: id, SecretBinary: value })),
        );
        await expectSame(s, o, "secretsmanager", "json");
        expect(o.headers["x-amz-target"]).toBe("secretsmanager.PutSecretValue");
        const [mine, theirs] = results as [{ VersionId?: string }, { VersionId?: string }];
        expect(mine.VersionId).toBe(theirs.VersionId);
      }),
      { numRuns: 40 },
    );
  });

  it("GetSecretValue: by stage and by version id, the same request, and the same value read from the same answer", async () => {
    await fc.assert(
      fc.asyncProperty(
        arn,
        fc.oneof(fc.constant(undefined), versionId),
        fc.oneof(
          fc.uint8Array({ minLength: 1, maxLength: 256 }).map((b) => ({ binary: b })),
          fc.string({ unit: "binary", minLength: 1, maxLength: 64 }).map((t) => ({ text: t })),
        ),
        async (SecretId, version, value) => {
          const VersionId = version ?? "9d0b6f5e-8a55-4a3a-9b7e-0a3c1c2d3e4f";
          answerBody = JSON.stringify({
            ARN: SecretId,
            Name: "x",
            VersionId,
            VersionStages: ["AWSCURRENT"],
            CreatedDate: 1_765_000_000.5,
            ...("binary" in value
              ? { SecretBinary: Buffer.from(value.binary).toString("base64") }
              : { SecretString: value.text }),
          });
          const input = version === undefined ? { SecretId, VersionStage: "AWSCURRENT" } : { SecretId, VersionId };
          const [s, o] = await both(
            () => ours.getSecretValue(input),
            () => sdk.send(new GetSecretValueCommand(input)),
          );
          await expectSame(s, o, "secretsmanager", "json");
          expect(o.headers["x-amz-target"]).toBe("secretsmanager.GetSecretValue");
          expect(o.headers["content-type"]).toBe("application/x-amz-json-1.1");
          const [mine, theirs] = results as [
            { VersionId?: string; SecretBinary?: string; SecretString?: string },
            { VersionId?: string; SecretBinary?: Uint8Array; SecretString?: string },
          ];
          expect(mine.VersionId).toBe(theirs.VersionId);
          expect(mine.SecretString).toBe(theirs.SecretString);
          expect(mine.SecretBinary === undefined ? undefined : bytes(mine.SecretBinary)).toEqual(
            theirs.SecretBinary === undefined ? undefined : new Uint8Array(theirs.SecretBinary),
          );
        },
      ),
      { numRuns: 40 },
    );
  });
});
