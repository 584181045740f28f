// The templates `nitric-like build --provider aws` writes, checked against the CloudFormation
// resource specification (@aws-cdk/aws-service-spec); and the checker shown to catch each kind
// of mistake, so that a clean result means something.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildTemplate } from "@nitric-like/provider-aws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkTemplate } from "../src/cfn-spec.js";
import { cleanTemp, connect, copyProject, EXAMPLES, FIXTURES, runCli, startApp, stopAll } from "../src/harness.js";

afterAll(cleanTemp);

type Template = {
  Resources: Record<string, { Type: string; Properties: Record<string, unknown>; DependsOn?: unknown }>;
  Outputs: Record<string, { Value: unknown }>;
};

async function built(source: string, service?: string): Promise<Template> {
  const project = copyProject(source);
  if (service !== undefined) writeFileSync(join(project, "services", "chat.ts"), service);
  const out = join(project, "out");
  const { code, stderr } = await runCli(["build", project, "--provider", "aws", "--out", out, "--plain"]);
  expect(code, stderr).toBe(0);
  return JSON.parse(readFileSync(join(out, "template.json"), "utf8")) as Template;
}

describe("templates from nitric-like build --provider aws", () => {
  it.each([
    ["examples/chat", join(EXAMPLES, "chat")],
    ["examples/chat-web", join(EXAMPLES, "chat-web")],
    ["examples/rooms", join(EXAMPLES, "rooms")],
    ["the two-service split fixture", join(FIXTURES, "split")],
    ["the @nitric/sdk lab", join(FIXTURES, "lab-nitric")],
    ["the rooms and state fixture", join(FIXTURES, "rooms")],
    ["the message routes fixture (routes in two services)", join(FIXTURES, "routes")],
    ["the handover fixture (connect and disconnect in two services)", join(FIXTURES, "handover")],
    ["the crossed fixture (two services, each the disconnect of the other's socket)", join(FIXTURES, "crossed")],
  ])(
    "pass the CloudFormation resource specification: %s",
    async (_name, source) => {
      expect(await checkTemplate(await built(source))).toEqual([]);
    },
    60000,
  );
});

describe("a template's logical ids and the self-invocation", () => {
  it("keeps both route responses, stages and outputs of sockets room1 and room-1, and passes the specification", async () => {
    const handlers = (name: string) =>
      `websocket(${JSON.stringify(name)}).on("connect", async () => {}).on("disconnect", async () => {}).on("message", async (ctx) => ctx.text());`;
    const t = await built(
      join(EXAMPLES, "chat"),
      `import { websocket } from "@nitric-like/sdk";\n${handlers("room1")}\n${handlers("room-1")}\n`,
    );
    const ofType = (type: string) => Object.values(t.Resources).filter((r) => r.Type === type);
    expect(ofType("AWS::ApiGatewayV2::RouteResponse")).toHaveLength(2);
    expect(ofType("AWS::ApiGatewayV2::Stage")).toHaveLength(2);
    expect(Object.keys(t.Outputs)).toHaveLength(2);
    expect(await checkTemplate(t)).toEqual([]);
  }, 60000);

  it("accepts the self-invocation's EventInvokeConfig (no Lambda retries) in the chat template", async () => {
    const t = await built(join(EXAMPLES, "chat"));
    const configs = Object.values(t.Resources).filter((r) => r.Type === "AWS::Lambda::EventInvokeConfig");
    expect(configs.map((c) => c.Properties.MaximumRetryAttempts)).toEqual([0]);
    expect(await checkTemplate(t)).toEqual([]);
  }, 60000);
});

describe("function memory", () => {
  it("gives a service the memory of its services: entry, the others 512 MB, and passes the specification", async () => {
    const project = copyProject(join(FIXTURES, "split"));
    writeFileSync(
      join(project, "nitric-like.yaml"),
      "name: split\nservices:\n  - match: services/speaker.ts\n    memory: 2048\n  - match: services/doorman.ts\n",
    );
    const out = join(project, "out");
    const { code, stdout, stderr } = await runCli(["build", project, "--provider", "aws", "--out", out, "--plain"]);
    expect(code, stderr).toBe(0);
    // The build says it, beside the bundle's size.
    expect(stdout + stderr).toMatch(/^ {2}speaker: index\.cjs \d+ KB, zip \d+ KB, memory 2048 MB$/m);
    expect(stdout + stderr).toMatch(/^ {2}doorman: index\.cjs \d+ KB, zip \d+ KB$/m);
    const t = JSON.parse(readFileSync(join(out, "template.json"), "utf8")) as Template;
    const memory = Object.values(t.Resources)
      .filter((r) => r.Type === "AWS::Lambda::Function")
      .map((r) => [r.Properties.Environment, r.Properties.MemorySize] as const)
      .map(([env, mb]) => [(env as { Variables: Record<string, string> }).Variables.NITRIC_LIKE_SERVICE, mb]);
    expect(Object.fromEntries(memory)).toEqual({ doorman: 512, speaker: 2048 });
    expect(await checkTemplate(t)).toEqual([]);
  }, 60000);
});

describe("a template with secrets", () => {
  it("passes the specification: a service on @nitric/sdk declaring secrets gets them, unnamed, with their ARNs as outputs", async () => {
    // A second service on @nitric/sdk (its secret() as Nitric v1 has it) beside the lab's.
    const t = await built(
      join(FIXTURES, "lab-nitric"),
      [
        'import { secret } from "@nitric/sdk";',
        'const apiKey = secret("api-key").allow("access", "put");',
        'const dbUrl = secret("db-url").allow("access");',
        "export const used = [apiKey, dbUrl];",
        "",
      ].join("\n"),
    );
    const secrets = Object.entries(t.Resources).filter(([, r]) => r.Type === "AWS::SecretsManager::Secret");
    // The lab's own secrets may be there too.
    expect(secrets.map(([id]) => id)).toEqual(expect.arrayContaining(["ApiKeySecret", "DbUrlSecret"]));
    for (const [, r] of secrets) expect(r.Properties.Name).toBeUndefined();
    expect(t.Outputs.SecretApiKey?.Value).toEqual({ Ref: "ApiKeySecret" });
    expect(t.Outputs.SecretDbUrl?.Value).toEqual({ Ref: "DbUrlSecret" });
    expect(await checkTemplate(t)).toEqual([]);
  }, 60000);

  it("passes the specification with grants on secrets: each role's Secrets Manager statements and each function's NITRIC_LIKE_SECRETS", async () => {
    const spec: Parameters<typeof buildTemplate>[0]["spec"] = {
      name: "app",
      services: [
        { name: "reader", file: "services/reader.ts" },
        { name: "writer", file: "services/writer.ts" },
      ],
      resources: [
        { kind: "secret", name: "api-key", declaredBy: ["reader", "writer"] },
        { kind: "secret", name: "db-1", declaredBy: ["reader"] },
      ],
      policies: [
        { service: "reader", resource: { kind: "secret", name: "api-key" }, permissions: ["access"] },
        { service: "reader", resource: { kind: "secret", name: "db-1" }, permissions: ["access", "put"] },
        { service: "writer", resource: { kind: "secret", name: "api-key" }, permissions: ["put"] },
      ],
    };
    const t = buildTemplate({ spec, artifactKeys: { reader: "k/r.zip", writer: "k/w.zip" } }) as Template;
    const policy = JSON.stringify(t.Resources.ReaderRole?.Properties.Policies);
    expect(policy).toContain("secretsmanager:GetSecretValue");
    expect(policy).toContain("secretsmanager:PutSecretValue");
    const reader = t.Resources.ReaderFunction?.Properties as { Environment: { Variables: Record<string, unknown> } };
    expect(reader.Environment.Variables.NITRIC_LIKE_SECRETS).toEqual({
      "Fn::Sub": JSON.stringify({ "api-key": `\${ApiKeySecret}`, "db-1": `\${xDbZ1Secret}` }),
    });
    expect(await checkTemplate(t)).toEqual([]);
    // The checker sees a grant, a binding and an output naming a secret the template lacks.
    const broken = JSON.parse(JSON.stringify(t).replaceAll("xDbZ1Secret", "NoSuchSecret")) as Template;
    delete broken.Resources.NoSuchSecret;
    expect((await checkTemplate(broken)).join("\n")).toMatch(/NoSuchSecret/);
  });
});

describe("the template checker", () => {
  let template: Template;
  /** A resource of the template being changed; the test fails at once if the build lacks it. */
  const r = (t: Template, id: string) => {
    const resource = t.Resources[id];
    if (!resource) throw new Error(`the built template has no ${id}`);
    return resource;
  };
  const mutated = (change: (t: Template) => void) => {
    const copy = structuredClone(template);
    change(copy);
    return checkTemplate(copy);
  };
  beforeAll(async () => {
    template = await built(join(EXAMPLES, "chat"));
  }, 60000);

  it("finds an unknown resource type", async () => {
    expect(
      await mutated(
        (t) => (t.Resources.SocketApi = { ...t.Resources.SocketApi, Type: "AWS::ApiGatewayV2::Apii" } as never),
      ),
    ).toContain('Resources.SocketApi: unknown resource type "AWS::ApiGatewayV2::Apii"');
  });

  it("finds an unknown property", async () => {
    expect(await mutated((t) => (r(t, "SocketApi").Properties.ProtocolTyp = "WEBSOCKET"))).toContain(
      'Resources.SocketApi (AWS::ApiGatewayV2::Api): unknown property "ProtocolTyp"',
    );
  });

  it("finds a missing required property", async () => {
    expect(await mutated((t) => delete r(t, "ChatFunction").Properties.Role)).toContain(
      'Resources.ChatFunction (AWS::Lambda::Function): missing required property "Role"',
    );
  });

  it("finds a value of the wrong kind", async () => {
    expect(await mutated((t) => (r(t, "ChatFunction").Properties.MemorySize = "lots"))).toContain(
      'Resources.ChatFunction (AWS::Lambda::Function).MemorySize: expected a number, got "lots"',
    );
  });

  it("finds a mistake inside a nested property type", async () => {
    const problems = await mutated((t) => {
      (r(t, "ConnectionsTable").Properties.KeySchema as Record<string, unknown>[])[0] = {
        AttributeName: "socket",
        KeyTyp: "HASH",
      };
    });
    expect(problems.join("\n")).toMatch(
      /ConnectionsTable \(AWS::DynamoDB::Table\)\.KeySchema\[0\]: (unknown property "KeyTyp"|missing required property "KeyType")/,
    );
  });

  it("finds a Ref to nothing", async () => {
    expect(await mutated((t) => (r(t, "SocketStage").Properties.ApiId = { Ref: "NoSuchApi" }))).toContain(
      'Resources.SocketStage.Properties.ApiId: Ref to "NoSuchApi", which is neither a resource, a parameter nor a pseudo parameter',
    );
  });

  it("finds a GetAtt of an attribute the type does not have", async () => {
    expect(
      await mutated((t) => (r(t, "ChatFunction").Properties.Role = { "Fn::GetAtt": ["ChatRole", "Arnn"] })),
    ).toContain('Resources.ChatFunction.Properties.Role: AWS::IAM::Role "ChatRole" has no attribute "Arnn"');
  });

  it("finds a GetAtt of a resource that does not exist", async () => {
    expect(
      await mutated((t) => (r(t, "ChatFunction").Properties.Role = { "Fn::GetAtt": ["GhostRole", "Arn"] })),
    ).toContain('Resources.ChatFunction.Properties.Role: Fn::GetAtt names "GhostRole", which is not a resource');
  });

  it("finds a Fn::Sub variable that names nothing", async () => {
    const problems = await mutated((t) => {
      for (const o of Object.values(t.Outputs))
        o.Value = { "Fn::Sub": `wss://\${GhostApi}.execute-api.\${AWS::Region}.\${AWS::URLSuffix}/live` };
    });
    expect(problems.join("\n")).toContain('Ref to "GhostApi"');
  });

  it("finds a DependsOn that names nothing", async () => {
    const problems = await mutated((t) => {
      const deployment = Object.keys(t.Resources).find((id) => id.startsWith("SocketDeployment")) as string;
      r(t, deployment).DependsOn = ["GhostRoute"];
    });
    expect(problems.join("\n")).toMatch(/DependsOn names "GhostRoute", which is not a resource/);
  });
});

describe("a socket's custom domain", () => {
  const cert = (id: string) => `arn:aws:acm:us-east-1:123456789012:certificate/${id}`;
  const domains = [
    "websockets:",
    "  socket:",
    "    domain:",
    "      name: ws.example.com",
    `      certificate: ${cert("main")}`,
    "environments:",
    "  staging:",
    "    websockets:",
    "      socket:",
    `        domain: { name: ws-staging.example.com, certificate: "${cert("staging")}", hostedZone: Z0123456789ABC }`,
    "",
  ].join("\n");
  const project = () => {
    const dir = copyProject(join(EXAMPLES, "chat"));
    writeFileSync(join(dir, "nitric-like.yaml"), `name: chat\nservices:\n  - match: services/*.ts\n${domains}`);
    return dir;
  };
  const build = async (dir: string, ...args: string[]) => {
    const out = join(dir, `out${args.join("")}`);
    const result = await runCli(["build", dir, "--provider", "aws", "--out", out, "--plain", ...args]);
    return { ...result, template: () => JSON.parse(readFileSync(join(out, "template.json"), "utf8")) as Template };
  };

  it("is built from the project file, the environment's (--env) over the file's own, and passes the specification", async () => {
    const dir = project();
    const main = await build(dir);
    expect(main.code, main.stderr).toBe(0);
    expect(main.stderr).toContain(
      "websocket socket: wss://ws.example.com (point its DNS at the DomainTarget output once deployed)",
    );
    const t = main.template();
    expect(t.Resources.SocketDomain?.Properties.DomainName).toBe("ws.example.com");
    expect(t.Outputs.WebsocketSocket?.Value).toBe("wss://ws.example.com");
    expect(await checkTemplate(t)).toEqual([]);

    const staging = await build(dir, "--env", "staging");
    expect(staging.code, staging.stderr).toBe(0);
    expect(staging.stderr).toContain(
      "websocket socket: wss://ws-staging.example.com (its alias record in hosted zone Z0123456789ABC)",
    );
    const s = staging.template();
    expect(s.Resources.SocketDomain?.Properties).toMatchObject({
      DomainName: "ws-staging.example.com",
      DomainNameConfigurations: [{ CertificateArn: cert("staging") }],
    });
    expect(s.Resources.SocketDomainRecord?.Type).toBe("AWS::Route53::RecordSet");
    expect(await checkTemplate(s)).toEqual([]);

    // run --provider aws serves the socket on this machine: the emulated app has no domain.
    const app = await startApp(dir, ["--provider", "aws"]);
    try {
      expect(app.url("socket")).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/live$/);
      const emulated = JSON.parse(
        readFileSync(join(dir, ".nitric-like", "aws-run", "template.json"), "utf8"),
      ) as Template;
      expect(Object.values(emulated.Resources).filter((r) => r.Type === "AWS::ApiGatewayV2::DomainName")).toEqual([]);
      const [a, b] = [await connect(app.url("socket")), await connect(app.url("socket"))];
      a.ws.send("over the emulated API");
      expect((await b.next()).text).toBe("over the emulated API");
      a.close();
      b.close();
    } finally {
      expect(await stopAll()).toEqual([]);
    }

    const unknown = await build(dir, "--env", "prod");
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no environment "prod"; use one of staging, or add it under environments:');
    expect(unknown.stderr).not.toContain("bundling");
  }, 90000);
});
