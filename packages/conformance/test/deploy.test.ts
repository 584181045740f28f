// `nitric-like up` and `down --provider aws` end to end through the real CLI and the AWS SDK,
// against a loopback server answering the CloudFormation and S3 calls they make (no CloudFormation
// emulator installs here; see src/fake-aws.ts).
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeAws } from "../src/fake-aws.js";
import { cleanTemp, copyProject, EXAMPLES, FIXTURES, runCli } from "../src/harness.js";

const fake = new FakeAws();
const saved = { ...process.env };
const empty = join(mkdtempSync(join(tmpdir(), "nitric-like-aws-config-")), "empty");

beforeAll(async () => {
  await fake.start();
  writeFileSync(empty, "");
  Object.assign(process.env, {
    AWS_ENDPOINT_URL_CLOUDFORMATION: fake.url,
    AWS_ENDPOINT_URL_S3: fake.url,
    AWS_REGION: "us-east-1",
    AWS_ACCESS_KEY_ID: "fake",
    AWS_SECRET_ACCESS_KEY: "fake",
    AWS_SHARED_CREDENTIALS_FILE: empty,
    AWS_CONFIG_FILE: empty,
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
    NITRIC_LIKE_AWS_POLL_MS: "20",
  });
});
afterAll(async () => {
  process.env = saved;
  await fake.stop();
  cleanTemp();
});

describe("nitric-like up and down --provider aws", () => {
  const chat = () => copyProject(join(EXAMPLES, "chat"));
  let project: string;

  it("bootstraps the bucket, uploads the zip, creates the stack through a change set, and prints the URL", async () => {
    project = chat();
    const { code, stdout, stderr } = await runCli(["up", project, "--plain"], { timeoutMs: 60000 });
    expect(code, stderr).toBe(0);
    expect(stdout.trim()).toBe("websocket socket wss://socketapi-fake.execute-api.us-east-1.amazonaws.com/live");
    expect(stderr).toContain("creating the artifact bucket (stack nitric-like-bootstrap");
    expect(stderr).toMatch(/uploading nitric-like\/chat\/chat-[0-9a-f]{16}\.zip \(\d+ KB\)/);
    expect(stderr).toMatch(/SocketApi AWS::ApiGatewayV2::Api CREATE_COMPLETE/);
    expect(stderr).toContain('stack "chat" is deployed');
    expect(fake.calls).toEqual(
      expect.arrayContaining([
        "CreateStack",
        "CreateChangeSet",
        "ExecuteChangeSet",
        expect.stringMatching(/^S3 PUT \//),
      ]),
    );
    expect(fake.stacks.get("chat")?.status).toBe("CREATE_COMPLETE");
  }, 60000);

  it("uploads nothing and changes nothing when deployed again unchanged", async () => {
    fake.calls.length = 0;
    const { code, stdout, stderr } = await runCli(["up", project, "--plain"], { timeoutMs: 60000 });
    expect(code, stderr).toBe(0);
    expect(stderr, stderr).toContain("already uploaded");
    expect(stderr).toContain('stack "chat" was already up to date');
    expect(stdout.trim()).toBe("websocket socket wss://socketapi-fake.execute-api.us-east-1.amazonaws.com/live");
    expect(fake.calls.filter((c) => c.startsWith("S3 PUT"))).toEqual([]);
    expect(fake.calls).not.toContain("ExecuteChangeSet");
  }, 60000);

  it("updates the stack through an UPDATE change set when the code changed", async () => {
    const file = join(project, "services", "chat.ts");
    writeFileSync(file, `${readFileSync(file, "utf8")}\nconsole.log("chat v2");\n`);
    fake.calls.length = 0;
    const { code, stderr } = await runCli(["up", project, "--plain"], { timeoutMs: 60000 });
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(/change set: \d+ change\(s\) \(update\)/);
    expect(stderr).toMatch(/ChatFunction AWS::Lambda::Function UPDATE_COMPLETE/);
    expect(fake.calls.filter((c) => c.startsWith("S3 PUT"))).toHaveLength(1);
    expect(fake.stacks.get("chat")?.status).toBe("UPDATE_COMPLETE");
  }, 60000);

  it("names the resource that failed and why, and exits 1", async () => {
    fake.failing = { logicalId: "HallApi", reason: "Rate exceeded (Service: ApiGatewayV2)" };
    const split = copyProject(join(FIXTURES, "split"));
    const { code, stderr } = await runCli(["up", split, "--stack", "broken", "--plain"], { timeoutMs: 60000 });
    fake.failing = undefined;
    expect(code).toBe(1);
    expect(stderr).toContain('stack "broken" ended ROLLBACK_COMPLETE');
    expect(stderr).toContain("HallApi (AWS::ApiGatewayV2::Api): Rate exceeded (Service: ApiGatewayV2)");
    expect(stderr).not.toContain("unexpected failure");
  }, 60000);

  it("deletes the stack and waits until it is gone, and says so when there is none", async () => {
    const { code, stderr } = await runCli(["down", project, "--plain"], { timeoutMs: 60000 });
    expect(code, stderr).toBe(0);
    expect(stderr).toContain('stack "chat" is deleted');
    expect(fake.stacks.has("chat")).toBe(false);
    const again = await runCli(["down", project, "--plain"], { timeoutMs: 60000 });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("there is no such stack in this account and region");
  }, 60000);

  it("says which credentials to set when there are none", async () => {
    delete process.env.AWS_ACCESS_KEY_ID;
    delete process.env.AWS_SECRET_ACCESS_KEY;
    try {
      const { code, stderr } = await runCli(["down", project, "--plain"], { timeoutMs: 60000 });
      expect(code).toBe(1);
      expect(stderr).toContain(
        "no AWS credentials found; set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
      );
    } finally {
      process.env.AWS_ACCESS_KEY_ID = "fake";
      process.env.AWS_SECRET_ACCESS_KEY = "fake";
    }
  }, 60000);

  it("says to set a region when none is configured", async () => {
    delete process.env.AWS_REGION;
    try {
      const { code, stderr } = await runCli(["down", project, "--plain"], { timeoutMs: 60000 });
      expect(code).toBe(1);
      expect(stderr).toContain("no AWS region; set AWS_REGION or pass --region");
    } finally {
      process.env.AWS_REGION = "us-east-1";
    }
  }, 60000);

  it("gives up's and down's results as JSON on stdout with --json, progress on stderr", async () => {
    const dir = chat();
    const up = await runCli(["up", dir, "--stack", "json-chat", "--json"], { timeoutMs: 60000 });
    expect(up.code, up.stderr).toBe(0);
    const url = "wss://socketapi-fake.execute-api.us-east-1.amazonaws.com/live";
    expect(JSON.parse(up.stdout)).toEqual({
      stack: "json-chat",
      provider: "aws",
      changed: true,
      sockets: [{ name: "socket", url }],
      outputs: expect.objectContaining({ WebsocketSocket: url }),
    });
    // The socket line people read without --json is on stderr, with the progress.
    expect(up.stderr).toContain(`websocket socket ${url}`);
    expect(up.stderr).toContain('stack "json-chat" is deployed');

    const down = await runCli(["down", dir, "--stack", "json-chat", "--json"], { timeoutMs: 60000 });
    expect(down.code, down.stderr).toBe(0);
    expect(JSON.parse(down.stdout)).toEqual({ stack: "json-chat", provider: "aws", deleted: true });
    const again = await runCli(["down", dir, "--stack", "json-chat", "--json"], { timeoutMs: 60000 });
    expect(again.code).toBe(1);
    expect(JSON.parse(again.stdout).error.message).toContain("there is no such stack in this account and region");
  }, 60000);
});
