// `nitric-like build --provider aws` and the built functions: the template's wiring and grants,
// the zips, a refused build that writes nothing, and the Lambda runtime fed API Gateway events of
// the shapes AWS documents (requestContext with routeKey, connectionId, apiId, stage, connectedAt;
// multi-valued headers and query strings; base64 bodies), in the emulator over dynalite.
import { appendFileSync, existsSync, mkdirSync, readFileSync, realpathSync, rmSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { inflateRawSync } from "node:zlib";
import { type Emulator, startDynalite, startEmulator } from "@nitric-like/provider-aws/emulator";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanTemp, copyProject, EXAMPLES, FIXTURES, runCli } from "../src/harness.js";

afterAll(cleanTemp);

type Resource = { Type: string; Properties: Record<string, unknown>; DependsOn?: string[] };
type Template = {
  Resources: Record<string, Resource>;
  Outputs: Record<string, { Description: string; Value: unknown }>;
};

/** The files of a zip archive (stored or deflated entries), read from its local headers. */
function unzip(archive: Buffer): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  let at = 0;
  while (archive.readUInt32LE(at) === 0x04034b50) {
    const method = archive.readUInt16LE(at + 8);
    const size = archive.readUInt32LE(at + 18);
    const nameLength = archive.readUInt16LE(at + 26);
    const extra = archive.readUInt16LE(at + 28);
    const name = archive.subarray(at + 30, at + 30 + nameLength).toString("utf8");
    const start = at + 30 + nameLength + extra;
    const data = archive.subarray(start, start + size);
    files.set(name, method === 8 ? inflateRawSync(data) : Buffer.from(data));
    at = start + size;
  }
  return files;
}

function ofType(t: Template, type: string): [string, Resource][] {
  return Object.entries(t.Resources).filter(([, r]) => r.Type === type);
}

async function build(project: string): Promise<{ out: string; template: Template; stderr: string }> {
  const out = join(project, "out");
  const { code, stderr } = await runCli(["build", project, "--provider", "aws", "--out", out, "--plain"]);
  expect(code, stderr).toBe(0);
  return { out, template: JSON.parse(readFileSync(join(out, "template.json"), "utf8")) as Template, stderr };
}

describe("nitric-like build --provider aws", () => {
  it("writes examples/chat as one function whose zip holds the bundle, routed from every event", async () => {
    const { out, template, stderr } = await build(copyProject(join(EXAMPLES, "chat")));
    expect(stderr).toMatch(/bundling service "chat" \(1\/1\)/);
    const bundle = readFileSync(join(out, "functions", "chat", "index.cjs"));
    const files = unzip(readFileSync(join(out, "functions", "chat.zip")));
    expect([...files.keys()]).toEqual(["index.cjs"]);
    expect(files.get("index.cjs")?.equals(bundle)).toBe(true);

    const [[apiId, api]] = ofType(template, "AWS::ApiGatewayV2::Api") as [[string, Resource]];
    expect(api.Properties.ProtocolType).toBe("WEBSOCKET");
    const routes = ofType(template, "AWS::ApiGatewayV2::Route").map(([, r]) => r.Properties.RouteKey);
    expect(routes.sort()).toEqual(["$connect", "$default", "$disconnect"]);
    const [[fnId, fn]] = ofType(template, "AWS::Lambda::Function") as [[string, Resource]];
    expect(fn.Properties.Code).toMatchObject({
      S3Bucket: { Ref: "ArtifactBucket" },
      S3Key: expect.stringMatching(/^nitric-like\/chat\/chat-[0-9a-f]{16}\.zip$/),
    });
    for (const [, integration] of ofType(template, "AWS::ApiGatewayV2::Integration")) {
      expect(integration.Properties.IntegrationType).toBe("AWS_PROXY");
      expect(JSON.stringify(integration.Properties.IntegrationUri)).toContain(`\${${fnId}.Arn}`);
    }
    const permissions = ofType(template, "AWS::Lambda::Permission");
    expect(permissions).toHaveLength(1);
    expect(permissions[0]?.[1].Properties).toMatchObject({
      Action: "lambda:InvokeFunction",
      Principal: "apigateway.amazonaws.com",
      FunctionName: { "Fn::GetAtt": [fnId, "Arn"] },
    });
    expect(Object.values(template.Outputs)).toEqual([
      {
        Description: "websocket socket",
        Value: { "Fn::Sub": `wss://\${${apiId}}.execute-api.\${AWS::Region}.\${AWS::URLSuffix}/live` },
      },
    ]);
  }, 30000);

  it("carries the handler timeout into the functions and says which other limits AWS applies its own way", async () => {
    const project = copyProject(join(EXAMPLES, "chat"));
    appendFileSync(
      join(project, "nitric-like.yaml"),
      "limits:\n  handlerTimeout: 45s\n  maxMessageBytes: 256KB\n  messagesPerSecond: 10\n",
    );
    const { template, stderr } = await build(project);
    const [[, fn]] = ofType(template, "AWS::Lambda::Function") as [[string, Resource]];
    expect(fn.Properties.Timeout).toBe(50);
    expect(fn.Properties.Environment).toMatchObject({ Variables: { NITRIC_LIKE_HANDLER_TIMEOUT_MS: "45000" } });
    expect(stderr).toContain(
      "limits.maxMessageBytes is 256 KB, but API Gateway fixes it at 128 KB: on AWS that applies",
    );
    expect(stderr).toContain("limits.messagesPerSecond is enforced by the local provider only");
    expect(stderr).not.toContain("handlerTimeout is");

    // Without limits: the runtime's default handler timeout, the default function timeout, no notes.
    const plain = await build(copyProject(join(EXAMPLES, "chat")));
    const [[, plainFn]] = ofType(plain.template, "AWS::Lambda::Function") as [[string, Resource]];
    expect(plainFn.Properties.Timeout).toBe(30);
    expect(JSON.stringify(plainFn.Properties.Environment)).not.toContain("NITRIC_LIKE_HANDLER_TIMEOUT_MS");
    expect(plain.stderr).not.toContain("API Gateway");
  }, 40000);

  it("grants each service exactly its .allow() calls, on its tables and its sockets only", async () => {
    const { template } = await build(copyProject(join(FIXTURES, "split")));
    const roles = Object.fromEntries(ofType(template, "AWS::IAM::Role"));
    const statements = (role: string) =>
      (
        (
          (roles[role]?.Properties.Policies ?? []) as {
            PolicyDocument: { Statement: { Action: unknown; Resource: unknown }[] };
          }[]
        )[0]?.PolicyDocument.Statement ?? []
      ).map((s) => ({ Action: s.Action, Resource: s.Resource }));
    expect(statements("DoormanRole")).toContainEqual({
      Action: ["dynamodb:DeleteItem", "dynamodb:PutItem"],
      Resource: { "Fn::GetAtt": ["PresentKvTable", "Arn"] },
    });
    expect(statements("SpeakerRole")).toContainEqual({
      Action: ["dynamodb:GetItem", "dynamodb:Query"],
      Resource: { "Fn::GetAtt": ["PresentKvTable", "Arn"] },
    });
    // Neither may write what the other may: no PutItem for the speaker on the kv table.
    expect(JSON.stringify(statements("SpeakerRole"))).not.toContain(
      '"dynamodb:PutItem"],"Resource":{"Fn::GetAtt":["PresentKvTable"',
    );
    const manage = statements("SpeakerRole").find((s) => s.Action === "execute-api:ManageConnections");
    expect(JSON.stringify(manage?.Resource)).toContain(`\${HallApi}/live/*/@connections/*`);
    // Two services handle events of one socket: API Gateway may invoke EACH of them.
    const targets = ofType(template, "AWS::Lambda::Permission").map(
      ([, p]) => (p.Properties.FunctionName as { "Fn::GetAtt": string[] })["Fn::GetAtt"][0],
    );
    expect(targets.sort()).toEqual(["DoormanFunction", "SpeakerFunction"]);
  }, 30000);

  it("refuses an app with a missing handler and writes nothing", async () => {
    const project = copyProject(join(FIXTURES, "bad-spec"));
    const out = join(project, "out");
    const { code, stderr } = await runCli(["build", project, "--provider", "aws", "--out", out, "--plain"]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/missing \w+ handler for websocket/);
    expect(stderr).toMatch(/nothing was built/);
    expect(existsSync(out)).toBe(false);
  }, 30000);

  it("names the providers it knows when asked for one that is not installed", async () => {
    const project = copyProject(join(EXAMPLES, "chat"));
    const { code, stderr } = await runCli(["build", project, "--provider", "nitric-like-provider-nowhere", "--plain"]);
    expect(code).toBe(1);
    expect(stderr).toContain('provider "nitric-like-provider-nowhere" is not installed');
    expect(stderr).toContain("providers found: local, aws");
  }, 30000);
});

describe("the Lambda runtime, fed API Gateway events", () => {
  let emulator: Emulator;
  let db: { endpoint: string; close(): Promise<void> };
  let invoke: (event: unknown) => Promise<unknown>;
  const context = (routeKey: string, connectionId: string) => ({
    routeKey,
    eventType: routeKey === "$connect" ? "CONNECT" : routeKey === "$disconnect" ? "DISCONNECT" : "MESSAGE",
    messageId: routeKey === "$default" ? "abcdEFGHijklMNO=" : undefined,
    extendedRequestId: "L0SM9FjiIAMFbaA=",
    requestTime: "22/Nov/2026:10:00:00 +0000",
    messageDirection: "IN",
    stage: "live",
    connectedAt: Date.now(),
    requestTimeEpoch: Date.now(),
    identity: { sourceIp: "203.0.113.7", userAgent: "doc-client/1.0" },
    requestId: "L0SM9FjiIAMFbaA=",
    domainName: "abc123.execute-api.us-east-1.amazonaws.com",
    connectionId,
    apiId: [...emulator.apis.keys()][0],
  });

  beforeAll(async () => {
    const project = copyProject(join(FIXTURES, "lab-ours"));
    const { out } = await build(project);
    db = await startDynalite();
    emulator = await startEmulator({
      buildDir: out,
      dynamodbEndpoint: db.endpoint,
      logger: { info: () => {}, warn: () => {}, error: () => {} },
    });
    const fn = emulator.functions[0];
    if (!fn) throw new Error("no function");
    invoke = (event) => fn.invoke(event);
  }, 30000);
  afterAll(async () => {
    await emulator?.stop();
    await db?.close();
  });

  it("accepts a $connect and hands its multi-valued query and headers to the connect handler", async () => {
    const result = await invoke({
      requestContext: context("$connect", "Doc1ConnIdAAAA="),
      headers: { Host: "abc123.execute-api.us-east-1.amazonaws.com", "User-Agent": "doc-client/1.0" },
      multiValueHeaders: { Host: ["abc123.execute-api.us-east-1.amazonaws.com"], "User-Agent": ["doc-client/1.0"] },
      queryStringParameters: { tag: "y z", room: "a b" },
      multiValueQueryStringParameters: { tag: ["x", "y z"], room: ["a b"] },
      isBase64Encoded: false,
    });
    expect(result).toEqual({ statusCode: 200 });
    // The message handler's one text reply comes back as the route response body.
    const answer = (await invoke({
      requestContext: context("$default", "Doc1ConnIdAAAA="),
      body: JSON.stringify({ op: "get", key: "conn:Doc1ConnIdAAAA=" }),
      isBase64Encoded: false,
    })) as { statusCode: number; body: string };
    expect(answer.statusCode).toBe(200);
    expect(JSON.parse(answer.body)).toEqual({
      value: { query: { tag: ["x", "y z"], room: ["a b"] }, agent: ["doc-client/1.0"] },
    });
  });

  it("answers a refused $connect with the handler's status and reason", async () => {
    const result = await invoke({
      requestContext: context("$connect", "Doc2ConnIdAAAA="),
      headers: {},
      multiValueHeaders: {},
      queryStringParameters: { reject: "go away" },
      multiValueQueryStringParameters: { reject: ["go away"] },
      isBase64Encoded: false,
    });
    expect(result).toEqual({ statusCode: 403, body: "go away" });
  });

  it("decodes a base64 body into a binary message", async () => {
    // The lab returns binary messages as they came; one binary reply goes out through the
    // Management API, which answers 410 for this connection no client holds: logged, not thrown.
    const result = await invoke({
      requestContext: context("$default", "Doc3ConnIdAAAA="),
      body: Buffer.from([0, 255, 1]).toString("base64"),
      isBase64Encoded: true,
    });
    expect(result).toEqual({ statusCode: 200 });
  });

  it("turns a send to a gone connection into NOT_FOUND naming it", async () => {
    const answer = (await invoke({
      requestContext: context("$default", "Doc4ConnIdAAAA="),
      body: JSON.stringify({ op: "send", to: "GoneConnIdAAAA=", text: "hello?" }),
      isBase64Encoded: false,
    })) as { body: string };
    expect(JSON.parse(answer.body)).toEqual({
      error: {
        code: "not_found",
        message: 'websocket "lab": connection "GoneConnIdAAAA=" is not connected (it closed, or never existed)',
      },
    });
  });

  it("runs the disconnect handler on $disconnect with API Gateway's status code", async () => {
    expect(
      await invoke({
        requestContext: {
          ...context("$disconnect", "Doc1ConnIdAAAA="),
          disconnectStatusCode: 1001,
          disconnectReason: "Going away",
        },
        headers: {},
        multiValueHeaders: {},
        isBase64Encoded: false,
      }),
    ).toEqual({ statusCode: 200 });
    const answer = (await invoke({
      requestContext: context("$default", "Doc5ConnIdAAAA="),
      body: JSON.stringify({ op: "get", key: "gone:Doc1ConnIdAAAA=" }),
      isBase64Encoded: false,
    })) as { body: string };
    expect(JSON.parse(answer.body)).toEqual({ value: { code: 1001 } });
  });

  it("prunes a connection API Gateway says is gone (410) from the connections it lists", async () => {
    const connectEvent = {
      requestContext: context("$connect", "Doc6ConnIdAAAA="),
      headers: {},
      multiValueHeaders: {},
      isBase64Encoded: false,
    };
    expect(await invoke(connectEvent)).toEqual({ statusCode: 200 });
    const ask = async (body: object) =>
      JSON.parse(
        (
          (await invoke({
            requestContext: context("$default", "Doc7ConnIdAAAA="),
            body: JSON.stringify(body),
            isBase64Encoded: false,
          })) as { body: string }
        ).body,
      );
    expect((await ask({ op: "connections" })).ids).toContain("Doc6ConnIdAAAA=");
    // No client holds it: the Management API answers 410 and the broadcast prunes it.
    expect(await ask({ op: "broadcast", text: "anyone?" })).toEqual({ sent: 0 });
    const deadline = Date.now() + 3000;
    let ids: string[] = ["Doc6ConnIdAAAA="];
    while (ids.includes("Doc6ConnIdAAAA=") && Date.now() < deadline) ids = (await ask({ op: "connections" })).ids;
    expect(ids).not.toContain("Doc6ConnIdAAAA=");
  });

  it("hands a $connect's query keys and header names named like Object.prototype's to the handler as own keys", async () => {
    const names = Object.getOwnPropertyNames(Object.prototype);
    // As Lambda delivers it: JSON, whose "__proto__" keys are own keys once parsed.
    const event = JSON.parse(
      JSON.stringify({
        requestContext: context("$connect", "Doc9ConnIdAAAA="),
        multiValueHeaders: Object.fromEntries(names.map((n) => [n, ["h"]])),
        multiValueQueryStringParameters: Object.fromEntries(names.map((n, i) => [n, [String(i)]])),
        isBase64Encoded: false,
      }),
    ) as unknown;
    expect(await invoke(event)).toEqual({ statusCode: 200 });
    const answer = (await invoke({
      requestContext: context("$default", "Doc9ConnIdAAAA="),
      body: JSON.stringify({ op: "seen" }),
      isBase64Encoded: false,
    })) as { body: string };
    const seen = JSON.parse(answer.body) as { query: Record<string, string[]>; headers: Record<string, string[]> };
    expect(Object.keys(seen.query).sort()).toEqual([...names].sort());
    expect(Object.getOwnPropertyDescriptor(seen.query, "__proto__")?.value).toEqual([
      String(names.indexOf("__proto__")),
    ]);
    for (const n of names)
      expect(Object.hasOwn(seen.headers, n.toLowerCase()) && seen.headers[n.toLowerCase()]).toEqual(["h"]);
  });

  it("answers an Invoke or Management API request it cannot parse with 400, and serves the next one", async () => {
    const fn = emulator.functions[0];
    const api = fn?.env.AWS_ENDPOINT_URL_LAMBDA as string;
    const badBody = await fetch(`${api}/2015-03-31/functions/${fn?.name}/invocations`, { method: "POST", body: "{" });
    expect(badBody.status).toBe(400);
    expect(badBody.headers.get("x-amzn-errortype")).toBe("InvalidRequestContentException");
    const badPath = await fetch(`${api}/%E0%A4%A`);
    expect(badPath.status).toBe(400);
    const good = await fetch(`${api}/2015-03-31/functions/${fn?.name}/invocations`, {
      method: "POST",
      body: JSON.stringify({
        requestContext: context("$default", "Doc9ConnIdAAAA="),
        body: JSON.stringify({ op: "whoami" }),
        isBase64Encoded: false,
      }),
    });
    expect(good.status).toBe(200);
    expect(JSON.parse(((await good.json()) as { body: string }).body)).toEqual({ id: "Doc9ConnIdAAAA=" });
  });

  it("says what it expected when given an event that is not from API Gateway", async () => {
    await expect(invoke({ Records: [] })).rejects.toThrow(/handles API Gateway WebSocket events/);
  });
});

describe("a third-party provider", () => {
  /** The chat example with the echo provider installed beside our SDK, as a package manager would. */
  function projectWithEcho(): string {
    const project = copyProject(join(EXAMPLES, "chat"));
    const shared = join(project, "node_modules");
    const sdk = realpathSync(join(shared, "@nitric-like", "sdk"));
    rmSync(shared);
    mkdirSync(join(project, "node_modules", "@nitric-like"), { recursive: true });
    symlinkSync(sdk, join(project, "node_modules", "@nitric-like", "sdk"), "dir");
    symlinkSync(join(FIXTURES, "provider-echo"), join(project, "node_modules", "nitric-like-provider-echo"), "dir");
    return project;
  }

  it("is found by its package name and builds, deploys and removes through the provider interface", async () => {
    const project = projectWithEcho();
    const provider = ["--provider", "nitric-like-provider-echo", "--plain"];
    const built = await runCli(["build", project, ...provider]);
    expect(built.stderr).toContain("echo: built 1 service(s)");
    expect(built.code).toBe(0);
    const written = JSON.parse(readFileSync(join(project, ".nitric-like", "echo", "echo-spec.json"), "utf8"));
    expect(written.services).toEqual(["chat"]);
    expect(written.spec.resources.map((r: { name: string }) => r.name)).toEqual(["socket", "connections"]);

    const up = await runCli(["up", project, "--stack", "demo", ...provider]);
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout.trim()).toBe("websocket socket wss://echo.example/demo/socket");
    expect(existsSync(join(project, ".echo-cloud", "demo.json"))).toBe(true);

    const down = await runCli(["down", project, "--stack", "demo", ...provider]);
    expect(down.code, down.stderr).toBe(0);
    expect(existsSync(join(project, ".echo-cloud", "demo.json"))).toBe(false);

    const errors = await runCli(["build", project, "--provider", "nitric-like-provider-nowhere", "--plain"]);
    expect(errors.stderr).toContain("providers found: local, aws, nitric-like-provider-echo");
  }, 60000);
});
