// `nitric-like outputs --provider aws`: a deployed stack's socket URLs and outputs, read again with
// DescribeStacks, through the real CLI against moto's CloudFormation (`python3 -m moto.server`).
// moto drops API Gateway resources, so the stack here is made directly with an S3 bucket and the
// outputs our template writes for a socket (`Websocket<Name>`, described "websocket <name>").
import type { ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import { cleanTemp, runCli, startMoto, tempDir, writeProject } from "../src/harness.js";

let moto: ChildProcess | undefined;
let endpoint = "";
const saved = { ...process.env };

/** One CloudFormation Query API call to moto (it does not check signatures). */
async function cloudFormation(action: string, params: Record<string, string>): Promise<string> {
  const res = await fetch(endpoint, {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      authorization:
        "AWS4-HMAC-SHA256 Credential=fake/20260101/us-east-1/cloudformation/aws4_request, SignedHeaders=host, Signature=0",
    },
    body: new URLSearchParams({ Action: action, Version: "2010-05-15", ...params }).toString(),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${action}: ${res.status} ${text}`);
  return text;
}

const URL_SOCKET = "wss://abc123.execute-api.us-east-1.amazonaws.com/live";
const URL_HALL = "wss://def456.execute-api.us-east-1.amazonaws.com/live";

beforeAll(async () => {
  const started = await startMoto(30000);
  moto = started.process;
  endpoint = started.url;
  const empty = join(tempDir(), "empty");
  writeFileSync(empty, "");
  Object.assign(process.env, {
    AWS_ENDPOINT_URL: endpoint,
    AWS_REGION: "us-east-1",
    AWS_ACCESS_KEY_ID: "fake",
    AWS_SECRET_ACCESS_KEY: "fake",
    AWS_SHARED_CREDENTIALS_FILE: empty,
    AWS_CONFIG_FILE: empty,
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
  });
  const template = {
    AWSTemplateFormatVersion: "2010-09-09",
    Resources: { Bucket: { Type: "AWS::S3::Bucket" } },
    Outputs: {
      WebsocketSocket: { Description: "websocket socket", Value: URL_SOCKET },
      WebsocketHall: { Description: "websocket hall", Value: URL_HALL },
      BucketName: { Value: { Ref: "Bucket" } },
    },
  };
  await cloudFormation("CreateStack", { StackName: "deployed-chat", TemplateBody: JSON.stringify(template) });
}, 40000);

afterAll(() => {
  process.env = saved;
  moto?.kill();
  cleanTemp();
});

const project = () =>
  writeProject({
    "nitric-like.yaml": "name: deployed-chat\nservices:\n  - match: services/*.ts\n",
    "services/chat.ts": 'import { websocket } from "@nitric-like/sdk";\nwebsocket("socket");\n',
  });

describe("nitric-like outputs --provider aws", () => {
  it("prints each socket's URL and every output of the deployed stack, on stdout", async () => {
    const { code, stdout, stderr } = await runCli(["outputs", project(), "--plain"], { timeoutMs: 30000 });
    expect(code, stderr).toBe(0);
    const lines = stdout.trim().split("\n");
    expect(lines.slice(0, 2)).toEqual([`websocket hall ${URL_HALL}`, `websocket socket ${URL_SOCKET}`]);
    expect(lines).toContain(`output WebsocketSocket ${URL_SOCKET}`);
    expect(lines.some((l) => /^output BucketName \S+$/.test(l))).toBe(true);
    expect(stderr).toContain('stack "deployed-chat": CREATE_COMPLETE');
    // Nothing is bundled or collected to describe a stack.
    expect(stderr).not.toContain("bundling");
    expect(stderr).not.toContain("collecting");
  }, 30000);

  it("says in one line of its own, on a Node before 22, that the AWS SDK will need Node 22, instead of the SDK's warning", async () => {
    // "" is not the SDK's switch ("true"): its warning is on, as for a user who never set it.
    const { code, stderr } = await runCli(["outputs", project(), "--plain"], {
      timeoutMs: 30000,
      env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "" },
    });
    expect(code, stderr).toBe(0);
    expect(stderr).not.toContain("NodeVersionSupportWarning");
    expect(stderr).not.toContain("--trace-warnings");
    const said = stderr.split("\n").filter((line) => line.includes("need Node 22 or later"));
    const major = Number(process.versions.node.split(".")[0]);
    expect(said).toHaveLength(major < 22 ? 1 : 0);
    if (major < 22) expect(said[0]).toMatch(new RegExp(`^warning: Node ${process.version.replace(/\./g, "\\.")}: `));
  }, 30000);

  it("prints them as one JSON document with --json, and a stack named with --stack", async () => {
    const other = writeProject({
      "nitric-like.yaml": "name: other-name\nservices:\n  - match: services/*.ts\n",
      "services/chat.ts": 'import { websocket } from "@nitric-like/sdk";\nwebsocket("socket");\n',
    });
    const { code, stdout, stderr } = await runCli(["outputs", other, "--stack", "deployed-chat", "--json"], {
      timeoutMs: 30000,
    });
    expect(code, stderr).toBe(0);
    const result = JSON.parse(stdout);
    expect(result).toMatchObject({
      stack: "deployed-chat",
      provider: "aws",
      status: "CREATE_COMPLETE",
      sockets: [
        { name: "hall", url: URL_HALL },
        { name: "socket", url: URL_SOCKET },
      ],
      outputs: { WebsocketSocket: URL_SOCKET, WebsocketHall: URL_HALL },
    });
    expect(typeof result.outputs.BucketName).toBe("string");
  }, 30000);

  it("says there is no such stack, exits 1, and gives the error as JSON with --json", async () => {
    const dir = project();
    const plain = await runCli(["outputs", dir, "--stack", "never-deployed", "--plain"], { timeoutMs: 30000 });
    expect(plain.code).toBe(1);
    expect(plain.stdout).toBe("");
    expect(plain.stderr).toContain('describing stack "never-deployed": there is no such stack');
    expect(plain.stderr).not.toContain("unexpected failure");
    expect(plain.stderr).not.toMatch(/^\s+at /m);

    const json = await runCli(["outputs", dir, "--stack", "never-deployed", "--json"], { timeoutMs: 30000 });
    expect(json.code).toBe(1);
    const { error } = JSON.parse(json.stdout);
    expect(error.message).toContain('describing stack "never-deployed": there is no such stack');
    expect(error.unexpected).toBeUndefined();
  }, 30000);

  it("says a --stack no stack can be named is not a stack name, rather than that the stack is missing", async () => {
    const dir = project();
    const { code, stderr } = await runCli(["outputs", dir, "--stack", "deployed chat", "--plain"], {
      timeoutMs: 30000,
    });
    expect(code).toBe(1);
    expect(stderr).toContain(
      'error: outputs: stack name "deployed chat" is not a CloudFormation stack name: it must start with a letter and hold only letters, digits and hyphens; pass --stack deployed-chat',
    );
    // A stack's id names it as well as its name does.
    const id = /<StackId>([^<]+)/.exec(await cloudFormation("DescribeStacks", { StackName: "deployed-chat" }))?.[1];
    const byId = await runCli(["outputs", dir, "--stack", id ?? "", "--plain"], { timeoutMs: 30000 });
    expect(byId.code, byId.stderr).toBe(0);
    expect(byId.stdout).toContain(`websocket socket ${URL_SOCKET}`);
  }, 30000);

  it("lets nitric-like connect --provider aws find a socket of the deployed stack by name, and talk to it", async () => {
    // A stack whose socket output points at an echo server here (moto keeps no API Gateway).
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    server.on("connection", (ws) => ws.on("message", (data) => ws.send(`echo ${String(data)}`)));
    await new Promise((resolve) => server.once("listening", resolve));
    const url = `ws://127.0.0.1:${(server.address() as { port: number }).port}/live`;
    await cloudFormation("CreateStack", {
      StackName: "echo-stack",
      TemplateBody: JSON.stringify({
        AWSTemplateFormatVersion: "2010-09-09",
        Resources: { Bucket: { Type: "AWS::S3::Bucket" } },
        Outputs: { WebsocketEcho: { Description: "websocket echo", Value: url } },
      }),
    });
    try {
      const talked = await runCli(["connect", project(), "--provider", "aws", "--stack", "echo-stack", "--plain"], {
        input: "hello\n",
        timeoutMs: 30000,
      });
      expect(talked.code, talked.stderr).toBe(0);
      expect(talked.stdout).toBe("echo hello\n");
      expect(talked.stderr).toContain(`connected to ${url}`);
      const several = await runCli(["connect", project(), "--provider", "aws", "--plain"], { timeoutMs: 30000 });
      expect(several.code).toBe(1);
      expect(several.stderr).toContain(
        'connect: which socket? the deployed stack "deployed-chat" has hall, socket: give --socket <name>',
      );
    } finally {
      server.close();
    }
  }, 30000);

  it("refuses a provider that cannot describe deployments", async () => {
    const { code, stderr } = await runCli(["outputs", project(), "--provider", "local", "--plain"]);
    expect(code).toBe(1);
    expect(stderr).toContain('provider "local" cannot describe deployments; pass --provider aws');
  });
});
