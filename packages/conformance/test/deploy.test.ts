// `nitric-like up` and `down --provider aws` end to end through the real CLI and the AWS SDK:
// first against a loopback server answering the CloudFormation and S3 calls they make (see
// src/fake-aws.ts; it can put a stack in any state), then against moto's server, a real
// CloudFormation implementation (skipped, saying why, where moto is not installed).
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { type AddressInfo, createServer as createNetServer, type Socket } from "node:net";
import { join } from "node:path";
import { provider as aws } from "@nitric-like/provider-aws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeAws } from "../src/fake-aws.js";
import {
  CLI,
  cleanTemp,
  copyProject,
  EXAMPLES,
  FIXTURES,
  runCli,
  startMoto,
  tempDir,
  writeProject,
} from "../src/harness.js";

const fake = new FakeAws();

/** Why the CLI cannot be run on a terminal here (util-linux `script` makes one), or undefined. */
const noTerminal = spawnSync("script", ["--version"], { encoding: "utf8" }).error ? "no `script` command" : undefined;

/**
 * Runs the CLI on a pseudo-terminal (`script`), answers `answer` once it asks "(y/N)" (after
 * `waitMs`), and gives what the terminal showed, and what it showed from the question until the
 * answer. With `colour`, as a terminal that takes colours runs it (spinners drawn).
 */
function runCliOnTerminal(
  args: string[],
  answer: string,
  options: { colour?: boolean; waitMs?: number } = {},
): Promise<{ code: number | null; output: string; whileAsking: string }> {
  const quote = (a: string) => `'${a.replace(/'/g, "'\\''")}'`;
  const command = [process.execPath, CLI, ...args].map(quote).join(" ");
  const env: Record<string, string | undefined> = options.colour
    ? { ...process.env, NO_COLOR: undefined, TERM: "xterm" }
    : { ...process.env, NO_COLOR: "1" };
  return new Promise((resolve, reject) => {
    const child = spawn("script", ["-qec", command, "/dev/null"], { env });
    let output = "";
    let whileAsking = "";
    let asked = false;
    const read = (d: Buffer) => {
      output += d.toString();
      if (!asked && output.includes("(y/N)")) {
        asked = true;
        setTimeout(() => {
          whileAsking = output.slice(output.indexOf("(y/N)"));
          child.stdin.write(answer === "\u0003" ? answer : `${answer}\n`);
        }, options.waitMs ?? 0);
      }
    };
    child.stdout.on("data", read);
    child.stderr.on("data", read);
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`nitric-like ${args.join(" ")} did not finish on a terminal:\n${output}`));
    }, 60000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, output, whileAsking });
    });
  });
}
const saved = { ...process.env };
const empty = join(tempDir(), "empty");

beforeAll(async () => {
  await fake.start();
  writeFileSync(empty, "");
  Object.assign(process.env, {
    AWS_ENDPOINT_URL_CLOUDFORMATION: fake.url,
    AWS_ENDPOINT_URL_S3: fake.url,
    AWS_ENDPOINT_URL_DYNAMODB: fake.url,
    AWS_ENDPOINT_URL_ACM: fake.url,
    AWS_ENDPOINT_URL_ROUTE_53: fake.url,
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
    expect(stderr).toContain('fix the cause above, run "nitric-like down --stack broken", then "nitric-like up"');
    expect(stderr).not.toContain("unexpected failure");
  }, 60000);

  it("names the way out of a stack its first deploy left in ROLLBACK_COMPLETE, before bundling", async () => {
    const split = copyProject(join(FIXTURES, "split"));
    const { code, stderr } = await runCli(["up", split, "--stack", "broken", "--plain"], { timeoutMs: 60000 });
    expect(code).toBe(1);
    expect(stderr).toContain(
      'stack "broken" is ROLLBACK_COMPLETE: its first deploy failed and CloudFormation can only delete it; run "nitric-like down --stack broken", then "nitric-like up" again',
    );
    expect(stderr).not.toContain("bundling");
    // outputs too says what the status means and the way out, not just the status.
    const outputs = await runCli(["outputs", split, "--stack", "broken", "--plain"], { timeoutMs: 60000 });
    expect(outputs.code).toBe(0);
    expect(outputs.stderr).toContain(
      'warning: stack "broken" is ROLLBACK_COMPLETE: its first deploy failed and CloudFormation can only delete it; run "nitric-like down --stack broken", then "nitric-like up" again',
    );
  }, 60000);

  it("names the way out of UPDATE_ROLLBACK_FAILED and DELETE_FAILED", async () => {
    const split = copyProject(join(FIXTURES, "split"));
    const stuck = fake.stacks.get("broken");
    if (!stuck) throw new Error("the ROLLBACK_COMPLETE test left no stack");
    stuck.status = "UPDATE_ROLLBACK_FAILED";
    const update = await runCli(["up", split, "--stack", "broken", "--plain"], { timeoutMs: 60000 });
    expect(update.code).toBe(1);
    expect(update.stderr).toContain(
      'stack "broken" is UPDATE_ROLLBACK_FAILED: an update failed and so did undoing it; run "aws cloudformation continue-update-rollback --stack-name broken"',
    );
    stuck.status = "DELETE_FAILED";
    const deleting = await runCli(["up", split, "--stack", "broken", "--plain"], { timeoutMs: 60000 });
    expect(deleting.code).toBe(1);
    expect(deleting.stderr).toContain(
      'stack "broken" is DELETE_FAILED: an earlier delete stopped half way; run "nitric-like down --stack broken" to finish it',
    );
    expect(deleting.stderr).toContain('"aws cloudformation delete-stack --stack-name broken --retain-resources');
    stuck.status = "ROLLBACK_COMPLETE";
    const down = await runCli(["down", split, "--stack", "broken", "--plain"], { timeoutMs: 60000 });
    expect(down.code, down.stderr).toBe(0);
  }, 60000);

  /**
   * The CLI in a process group of its own, as a terminal runs it: `interrupt()` is Ctrl-C there
   * (SIGINT to the group), once stderr shows `after` (or `fake.calls` holds it).
   */
  function startCli(args: string[]) {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, NO_COLOR: "1" },
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    return {
      get stderr() {
        return stderr;
      },
      exited,
      /** Waits until stderr shows `after.stderr`, or `fake.calls` holds `after.call`. */
      async until(after: { stderr?: string; call?: string }): Promise<void> {
        const end = Date.now() + 40000;
        const seen = () =>
          (after.stderr !== undefined && stderr.includes(after.stderr)) ||
          (after.call !== undefined && fake.calls.includes(after.call));
        while (!seen() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
        if (!seen()) child.kill("SIGKILL");
        expect(seen(), stderr).toBe(true);
      },
      async interrupt(after: { stderr?: string; call?: string }): Promise<number | null> {
        await this.until(after);
        process.kill(-(child.pid as number), "SIGINT");
        return exited;
      },
    };
  }

  it("stops following a deploy on Ctrl-C (exit 130), saying that CloudFormation goes on and what to do; a second up waits for it", async () => {
    const dir = chat();
    fake.held.add("held");
    try {
      const up = startCli(["up", dir, "--stack", "held", "--plain"]);
      expect(await up.interrupt({ stderr: "held AWS::CloudFormation::Stack CREATE_IN_PROGRESS" }), up.stderr).toBe(130);
      expect(up.stderr).toContain(
        'error: up: stopped following stack "held" (Ctrl-C) while it is CREATE_IN_PROGRESS; CloudFormation goes on with the deploy without this command: "nitric-like outputs" shows its status, and its URLs once it is done; to undo it, run "nitric-like down" once it has finished',
      );
      expect(fake.stacks.get("held")?.status).toBe("CREATE_IN_PROGRESS");
      const again = await runCli(["up", dir, "--stack", "held", "--plain"], { timeoutMs: 60000 });
      expect(again.code).toBe(1);
      expect(again.stderr).toContain(
        'stack "held" is CREATE_IN_PROGRESS: another deploy or delete is under way; wait for it to finish ("aws cloudformation wait stack-create-complete --stack-name held", or watch the console), then run "nitric-like up" again',
      );
    } finally {
      fake.held.delete("held");
    }
    const done = await runCli(["up", dir, "--stack", "held", "--plain"], { timeoutMs: 60000 });
    expect(done.code, done.stderr).toBe(0);
    expect(fake.stacks.get("held")?.status).toBe("CREATE_COMPLETE");

    // An update: the way to stop it is CloudFormation's cancel.
    const file = join(dir, "services", "chat.ts");
    writeFileSync(file, `${readFileSync(file, "utf8")}\nconsole.log("v2");\n`);
    fake.held.add("held");
    try {
      const update = startCli(["up", dir, "--stack", "held", "--plain"]);
      expect(await update.interrupt({ stderr: "held AWS::CloudFormation::Stack UPDATE_IN_PROGRESS" })).toBe(130);
      expect(update.stderr).toContain(
        'to stop it, "aws cloudformation cancel-update-stack --stack-name held" rolls it back to the stack as it was',
      );
    } finally {
      fake.held.delete("held");
    }
    expect((await runCli(["down", dir, "--stack", "held", "--plain"], { timeoutMs: 60000 })).code).toBe(0);
  }, 120000);

  it("on Ctrl-C before the change set runs, deletes it (and the empty stack a first deploy made) and says nothing was deployed", async () => {
    const dir = chat();
    fake.heldChangeSets.add("early");
    fake.held.add("early");
    fake.calls.length = 0;
    try {
      const up = startCli(["up", dir, "--stack", "early", "--plain"]);
      expect(await up.interrupt({ call: "DescribeChangeSet" }), up.stderr).toBe(130);
      expect(up.stderr).toContain('error: up: stopped (Ctrl-C) before stack "early" was changed: nothing was deployed');
      expect(fake.calls).toEqual(expect.arrayContaining(["DeleteChangeSet", "DeleteStack"]));
      expect(fake.calls).not.toContain("ExecuteChangeSet");
    } finally {
      fake.heldChangeSets.delete("early");
      fake.held.delete("early");
    }
    await runCli(["outputs", dir, "--stack", "early", "--plain"]);
    expect(fake.stacks.has("early")).toBe(false);
  }, 60000);

  it("stops following a delete on Ctrl-C (exit 130), saying that CloudFormation goes on deleting, or with the update --keep-data makes", async () => {
    const dir = chat();
    expect((await runCli(["up", dir, "--stack", "leaving", "--plain"], { timeoutMs: 60000 })).code).toBe(0);
    fake.held.add("leaving");
    try {
      const down = startCli(["down", dir, "--stack", "leaving", "--plain"]);
      expect(await down.interrupt({ stderr: "leaving AWS::CloudFormation::Stack DELETE_IN_PROGRESS" })).toBe(130);
      expect(down.stderr).toContain(
        'error: down: stopped following stack "leaving" (Ctrl-C) while it is DELETE_IN_PROGRESS; CloudFormation goes on deleting it without this command',
      );
      // An up meanwhile is told to wait, with the AWS CLI's waiter for a delete.
      const up = await runCli(["up", dir, "--stack", "leaving", "--plain"], { timeoutMs: 60000 });
      expect(up.code).toBe(1);
      expect(up.stderr).toContain(
        'wait for it to finish ("aws cloudformation wait stack-delete-complete --stack-name leaving"',
      );
    } finally {
      fake.held.delete("leaving");
    }
    await runCli(["outputs", dir, "--stack", "leaving", "--plain"]);
    expect(fake.stacks.has("leaving")).toBe(false);

    // --keep-data first updates the stack to keep its tables: stopped then, it is not deleted.
    expect((await runCli(["up", dir, "--stack", "keeping", "--plain"], { timeoutMs: 60000 })).code).toBe(0);
    fake.held.add("keeping");
    try {
      const down = startCli(["down", dir, "--stack", "keeping", "--keep-data", "--plain"]);
      expect(await down.interrupt({ stderr: "keeping AWS::CloudFormation::Stack UPDATE_IN_PROGRESS" })).toBe(130);
      expect(down.stderr).toContain(
        'error: down: stopped following stack "keeping" (Ctrl-C) while it is UPDATE_IN_PROGRESS, updated to keep its kv tables and secrets; CloudFormation goes on with that update, and the stack is not deleted: run "nitric-like down --keep-data" again once it has finished',
      );
      expect(fake.stacks.get("keeping")?.status).toBe("UPDATE_IN_PROGRESS");
    } finally {
      fake.held.delete("keeping");
    }
    const again = await runCli(["down", dir, "--stack", "keeping", "--keep-data", "--plain"], { timeoutMs: 60000 });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('kept kv "connections"');
  }, 90000);

  it("waits for the artifact bucket's stack when another up is making it, rather than calling it broken", async () => {
    const bootstrap = fake.stacks.get("nitric-like-bootstrap");
    if (!bootstrap) throw new Error("the first test made no bootstrap stack");
    const outputs = bootstrap.outputs;
    bootstrap.status = "CREATE_IN_PROGRESS";
    bootstrap.outputs = [];
    bootstrap.next = () => {
      bootstrap.status = "CREATE_COMPLETE";
      bootstrap.outputs = outputs;
    };
    fake.held.add("nitric-like-bootstrap");
    try {
      const up = startCli(["up", chat(), "--stack", "second", "--plain"]);
      await up.until({
        stderr: "waiting for stack nitric-like-bootstrap (the artifact bucket): it is CREATE_IN_PROGRESS",
      });
      fake.held.delete("nitric-like-bootstrap");
      expect(await up.exited, up.stderr).toBe(0);
      expect(up.stderr).toContain('stack "second" is deployed');
    } finally {
      fake.held.delete("nitric-like-bootstrap");
    }
    expect((await runCli(["down", chat(), "--stack", "second", "--plain"], { timeoutMs: 60000 })).code).toBe(0);
  }, 60000);

  it("secret put --provider aws on a terminal says the stack lacks the secret before the value is typed", async () => {
    const lab = copyProject(join(FIXTURES, "lab-ours"));
    const quote = (a: string) => `'${a.replace(/'/g, "'\\''")}'`;
    const command = [process.execPath, CLI, "secret", "put", "vault", lab, "--provider", "aws", "--stack", "held"]
      .map(quote)
      .join(" ");
    // Deployed without the secret (the chat app), a stack that is not there, and one whose first
    // deploy failed (named with the way out of it, not "deploy it").
    expect((await runCli(["up", chat(), "--stack", "held", "--plain"], { timeoutMs: 60000 })).code).toBe(0);
    fake.failing = { logicalId: "SocketApi", reason: "Rate exceeded" };
    expect((await runCli(["up", chat(), "--stack", "failed", "--plain"], { timeoutMs: 60000 })).code).toBe(1);
    fake.failing = undefined;
    for (const [stack, said] of [
      ["held", 'secret put vault: stack "held" has no secret "vault" (it has none)'],
      ["nowhere", 'secret put vault: there is no stack "nowhere" in this account and region'],
      [
        "failed",
        'secret put vault: stack "failed" is ROLLBACK_COMPLETE: its first deploy failed and CloudFormation can only delete it; run "nitric-like down --stack failed"',
      ],
    ]) {
      const child = spawn("script", ["-qec", command.replace("'held'", `'${stack}'`), "/dev/null"], {
        env: { ...process.env, NO_COLOR: "1" },
      });
      let seen = "";
      child.stdout.on("data", (d) => {
        seen += d;
        // Asked anyway: typed, to end it.
        if (seen.includes("not shown")) child.stdin.write("typed for nothing\r");
      });
      const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
      expect(code, seen).toBe(1);
      expect(seen).toContain(said);
      expect(seen).not.toContain("value of secret");
    }
    expect((await runCli(["down", chat(), "--stack", "held", "--plain"], { timeoutMs: 60000 })).code).toBe(0);
    expect((await runCli(["down", chat(), "--stack", "failed", "--plain"], { timeoutMs: 60000 })).code).toBe(0);
  }, 120000);

  it("serves a socket at its custom domain (--env picks the environment's), and refuses a certificate of another region before uploading anything", async () => {
    const dir = chat();
    const cert = (region: string) => `arn:aws:acm:${region}:123456789012:certificate/0a1b2c3d`;
    writeFileSync(
      join(dir, "nitric-like.yaml"),
      [
        "name: domains",
        "services:\n  - match: services/*.ts",
        `websockets:\n  socket:\n    domain: { name: ws.example.com, certificate: "${cert("us-east-1")}" }`,
        `environments:\n  eu:\n    websockets:\n      socket:\n        domain: { name: ws-eu.example.com, certificate: "${cert("eu-west-1")}" }`,
        "",
      ].join("\n"),
    );
    // Issued, and its wildcard covers the name.
    fake.certificates.set(cert("us-east-1"), { status: "ISSUED", names: ["example.com", "*.example.com"] });
    const up = await runCli(["up", dir, "--plain"], { timeoutMs: 60000 });
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout.trim(), up.stderr).toBe("websocket socket wss://ws.example.com");
    expect(up.stderr).toMatch(/SocketDomain AWS::ApiGatewayV2::DomainName CREATE_COMPLETE/);
    expect(up.stderr).toMatch(/SocketDomainMapping AWS::ApiGatewayV2::ApiMapping CREATE_COMPLETE/);
    // No hosted zone: up says which record to make, with the target.
    expect(up.stderr).toMatch(
      /warning: websocket socket: point ws\.example\.com at d-\S+\.execute-api\.us-east-1\.amazonaws\.com with a CNAME record in its DNS \(or give websockets\.socket\.domain\.hostedZone, and up adds the record in Route 53\)/,
    );
    const outputs = await runCli(["outputs", dir, "--json"], { timeoutMs: 30000 });
    expect(JSON.parse(outputs.stdout).outputs).toMatchObject({
      WebsocketSocket: "wss://ws.example.com",
      DomainTargetSocket: expect.stringMatching(/^d-.*\.execute-api\.us-east-1\.amazonaws\.com$/),
      ApiUrlSocket: expect.stringMatching(/^wss:\/\/.*\.execute-api\.us-east-1\.amazonaws\.com\/live$/),
    });

    const calls = fake.calls.length;
    const eu = await runCli(["up", dir, "--env", "eu", "--stack", "domains-eu", "--plain"], { timeoutMs: 60000 });
    expect(eu.code).toBe(1);
    expect(eu.stderr).toContain(
      "the certificate of domain ws-eu.example.com is in eu-west-1, but stack \"domains-eu\" deploys to us-east-1: API Gateway serves a WebSocket API's domain only with a certificate of the API's region; request or import one in us-east-1 (AWS Certificate Manager) and give its ARN as the socket's domain.certificate, or deploy to eu-west-1 (--region eu-west-1)",
    );
    // Nothing uploaded, no stack begun.
    expect(fake.calls.slice(calls).filter((c) => /^S3 PUT|CreateChangeSet|CreateStack/.test(c))).toEqual([]);
    expect(fake.stacks.has("domains-eu")).toBe(false);
  }, 90000);

  it("checks a custom domain's certificate and hosted zone with ACM and Route 53 before uploading anything, saying what to fix", async () => {
    const dir = chat();
    const arn = (id: string) => `arn:aws:acm:us-east-1:123456789012:certificate/${id}`;
    const domain = (name: string, certificate: string, zone?: string) =>
      writeFileSync(
        join(dir, "nitric-like.yaml"),
        `name: checked\nservices:\n  - match: services/*.ts\nwebsockets:\n  socket:\n    domain: { name: ${name}, certificate: "${certificate}"${zone ? `, hostedZone: ${zone}` : ""} }\n`,
      );
    fake.certificates.set(arn("pending"), { status: "PENDING_VALIDATION", names: ["ws.example.com"] });
    fake.certificates.set(arn("other"), { status: "ISSUED", names: ["example.org", "*.example.org"] });
    fake.certificates.set(arn("deep"), { status: "ISSUED", names: ["*.example.com"] });
    fake.certificates.set(arn("good"), { status: "ISSUED", names: ["ws.example.com"] });
    fake.zones.set("Z0ORG", "example.org.");
    fake.zones.set("Z0COM", "example.com.");
    const refused = async (why: string) => {
      const calls = fake.calls.length;
      const up = await runCli(["up", dir, "--plain"], { timeoutMs: 60000 });
      expect(up.code, up.stderr).toBe(1);
      expect(up.stderr).toContain(why);
      expect(fake.calls.slice(calls).filter((c) => /^S3 PUT|CreateChangeSet|CreateStack/.test(c))).toEqual([]);
    };
    domain("ws.example.com", arn("missing"));
    await refused(
      `the certificate of domain ws.example.com is not in this account and region (${arn("missing")}); request or import one (AWS Certificate Manager) and give its ARN as the socket's domain.certificate`,
    );
    domain("ws.example.com", arn("pending"));
    await refused(
      "the certificate of domain ws.example.com is PENDING_VALIDATION, not ISSUED: ACM issues it once the DNS record it asks for exists",
    );
    domain("ws.example.com", arn("other"));
    await refused(
      "the certificate of domain ws.example.com covers example.org, *.example.org, not ws.example.com: give the ARN of a certificate for ws.example.com (or for *.example.com)",
    );
    // A wildcard covers one label only.
    domain("a.ws.example.com", arn("deep"));
    await refused("covers *.example.com, not a.ws.example.com");
    domain("ws.example.com", arn("good"), "Z0NONE");
    await refused(
      "hosted zone Z0NONE of domain ws.example.com is not in this account; give the id of the Route 53 zone that holds ws.example.com, or leave hostedZone out and make the DNS record yourself",
    );
    domain("ws.example.com", arn("good"), "Z0ORG");
    await refused(
      "hosted zone Z0ORG is example.org, which cannot hold ws.example.com; give the id of the zone of ws.example.com (or of a parent of it)",
    );
    expect(fake.stacks.has("checked")).toBe(false);
    // All well: deployed, its record in the zone, so no CNAME to make.
    domain("ws.example.com", arn("good"), "Z0COM");
    const up = await runCli(["up", dir, "--plain"], { timeoutMs: 60000 });
    expect(up.code, up.stderr).toBe(0);
    expect(up.stderr).toMatch(/SocketDomainRecord AWS::Route53::RecordSet CREATE_COMPLETE/);
    expect(up.stderr).not.toContain("CNAME");
    expect(up.stdout.trim()).toBe("websocket socket wss://ws.example.com");
    // A user who may not read ACM: said, and the deploy goes on (CloudFormation has the last word).
    fake.denyAcm = true;
    try {
      const denied = await runCli(["up", dir, "--plain"], { timeoutMs: 60000 });
      expect(denied.code, denied.stderr).toBe(0);
      expect(denied.stderr).toContain(
        "warning: could not check the certificate of domain ws.example.com (AccessDeniedException: not authorized to perform: acm:DescribeCertificate); deploying anyway",
      );
    } finally {
      fake.denyAcm = false;
    }
  }, 120000);

  it("stops before bundling when a Nitric stack file names another region than the AWS configuration's, and goes on with --region", async () => {
    const nitric = chat();
    writeFileSync(join(nitric, "nitric.dev.yaml"), "provider: nitric/aws@1.1.0\nregion: ap-southeast-2\n");
    for (const action of ["up", "down"]) {
      const { code, stderr } = await runCli([action, nitric, "--stack", "stackfile", "--plain"], { timeoutMs: 60000 });
      expect(code, stderr).toBe(1);
      expect(stderr).toContain(
        `${action}: nitric.dev.yaml, a Nitric stack file, names region ap-southeast-2, and this ${action} would go to us-east-1 (the AWS configuration's region); nitric-like does not read stack files: give --region ap-southeast-2 to ${action === "up" ? "deploy" : "delete"} there, or --region us-east-1`,
      );
      expect(stderr).not.toContain("bundling");
    }
    expect(fake.stacks.has("stackfile")).toBe(false);
    // Two files, two regions: --region decides.
    writeFileSync(join(nitric, "nitric.prod.yaml"), "provider: nitric/aws@1.1.0\nregion: eu-west-1\n");
    const two = await runCli(["up", nitric, "--stack", "stackfile", "--plain"], { timeoutMs: 60000 });
    expect(two.stderr).toContain(
      "up: the Nitric stack files nitric.dev.yaml (ap-southeast-2), nitric.prod.yaml (eu-west-1) name regions of their own, and this up would go to us-east-1",
    );
    // A stack file that names this region, or an explicit --region, lets it go on.
    writeFileSync(join(nitric, "nitric.dev.yaml"), "provider: nitric/aws@1.1.0\nregion: us-east-1\n");
    writeFileSync(join(nitric, "nitric.prod.yaml"), "provider: nitric/aws@1.1.0\n");
    const same = await runCli(["up", nitric, "--stack", "stackfile", "--plain"], { timeoutMs: 60000 });
    expect(same.code, same.stderr).toBe(0);
    writeFileSync(join(nitric, "nitric.prod.yaml"), "provider: nitric/aws@1.1.0\nregion: eu-west-1\n");
    const given = await runCli(["down", nitric, "--stack", "stackfile", "--region", "us-east-1", "--plain"], {
      timeoutMs: 60000,
    });
    expect(given.code, given.stderr).toBe(0);
  }, 180000);

  it("refuses a stack name CloudFormation refuses, with the name to use, before bundling", async () => {
    const { code, stderr } = await runCli(["up", project, "--stack", "3d_chat", "--plain"], { timeoutMs: 60000 });
    expect(code).toBe(1);
    expect(stderr).toContain(
      'up: stack name "3d_chat" is not a CloudFormation stack name: it must start with a letter and hold only letters, digits and hyphens; pass --stack app-3d-chat',
    );
    expect(stderr).not.toContain("bundling");
  }, 60000);

  it("refuses that stack name as up does in every command that takes --stack, before bundling or any AWS call", async () => {
    const app = chat();
    const before = fake.calls.length;
    for (const [command, ...args] of [
      ["down"],
      ["outputs"],
      ["logs"],
      ["connect", "--provider", "aws"],
      ["secret put", "--provider", "aws"],
    ] as const) {
      const words = command === "secret put" ? ["secret", "put", "motd", app] : [command, app];
      const { code, stderr } = await runCli([...words, ...args, "--stack", "3d_chat", "--plain"], {
        timeoutMs: 60000,
        input: "a value",
        // Any AWS call would reach the fake, and be counted.
        env: { AWS_ENDPOINT_URL: fake.url },
      });
      expect(code, stderr).toBe(1);
      expect(stderr).toBe(
        `error: ${command}: stack name "3d_chat" is not a CloudFormation stack name: it must start with a letter and hold only letters, digits and hyphens; pass --stack app-3d-chat\n`,
      );
    }
    expect(fake.calls.slice(before)).toEqual([]);
  }, 120000);

  it("refuses before deploying a --stack that makes an API name over API Gateway's 128 characters, naming the socket, the limit and the fix", async () => {
    const long = `c${"h".repeat(122)}`;
    const before = fake.calls.length;
    const { code, stderr } = await runCli(["up", chat(), "--stack", long, "--plain"], { timeoutMs: 60000 });
    expect(code).toBe(1);
    expect(stderr).toContain(
      `websocket socket: on AWS its API is named "${long}-socket", 130 characters, and API Gateway allows 128; give the socket a name of at most 4 characters, or use a shorter --stack`,
    );
    expect(fake.calls.slice(before).filter((c) => c !== "DescribeStacks")).toEqual([]);
    expect(fake.stacks.has(long)).toBe(false);
  }, 60000);

  it("never deploys over, nor deletes, a stack nitric-like did not make (another tool's, or the artifact bucket's)", async () => {
    // Another tool's stack, with the name this app's stack would have.
    const body = new URLSearchParams({
      Action: "CreateStack",
      StackName: "company-db",
      TemplateBody: JSON.stringify({
        Description: "the company database",
        Resources: { Orders: { Type: "AWS::DynamoDB::Table" } },
      }),
    });
    await fetch(fake.url, { method: "POST", body, headers: { "content-type": "application/x-www-form-urlencoded" } });
    const named = writeProject({
      "nitric-like.yaml": "name: company-db\nservices:\n  - match: services/*.ts\n",
      "services/chat.ts": readFileSync(join(EXAMPLES, "chat", "services", "chat.ts"), "utf8"),
    });
    fake.calls.length = 0;
    const up = await runCli(["up", named, "--plain"], { timeoutMs: 60000 });
    expect(up.code).toBe(1);
    expect(up.stderr).toContain(
      'error: up: stack "company-db" ("the company database") was not deployed by nitric-like, and "nitric-like up" would replace its resources with this app\'s; nothing was changed. Give this app a stack of its own with --stack <name> (or name: in the project file)',
    );
    expect(up.stderr).not.toContain("bundling");
    const down = await runCli(["down", project, "--stack", "company-db", "--plain"], { timeoutMs: 60000 });
    expect(down.code).toBe(1);
    expect(down.stderr).toContain(
      'error: down: stack "company-db" ("the company database") was not deployed by nitric-like, and "nitric-like down" would delete its resources; nothing was changed.',
    );
    expect(down.stderr).toContain(
      'or delete that stack with "aws cloudformation delete-stack --stack-name company-db"',
    );
    expect(fake.calls).not.toContain("CreateChangeSet");
    expect(fake.calls).not.toContain("DeleteStack");
    expect(fake.stacks.get("company-db")?.status).toBe("CREATE_COMPLETE");
    // The artifact bucket's stack is not an app's either.
    const bootstrap = await runCli(["down", project, "--stack", "nitric-like-bootstrap", "--plain"], {
      timeoutMs: 60000,
    });
    expect(bootstrap.code).toBe(1);
    expect(bootstrap.stderr).toContain('stack "nitric-like-bootstrap" ("nitric-like: the bucket');
    expect(fake.stacks.has("nitric-like-bootstrap")).toBe(true);
  }, 60000);

  it("deletes the stack and waits until it is gone, whatever state the code is in, and says so when there is none", async () => {
    // Nothing is built: a service that no longer compiles does not stand in the way.
    writeFileSync(join(project, "services", "chat.ts"), "this is not TypeScript {\n");
    const { code, stderr } = await runCli(["down", project, "--plain"], { timeoutMs: 60000 });
    expect(code, stderr).toBe(0);
    expect(stderr).not.toContain("bundling");
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
      // A profile that is not there (a typo) is named, not answered with "set AWS_PROFILE".
      const typo = await runCli(["outputs", project, "--plain"], { timeoutMs: 60000, env: { AWS_PROFILE: "prdo" } });
      expect(typo.code).toBe(1);
      expect(typo.stderr).toContain(
        'error: describing stack "chat": AWS_PROFILE is "prdo", but no credentials were found for that profile; check the name ("aws configure list-profiles" lists them), sign in again if it uses SSO ("aws sso login --profile prdo")',
      );
    } finally {
      process.env.AWS_ACCESS_KEY_ID = "fake";
      process.env.AWS_SECRET_ACCESS_KEY = "fake";
    }
  }, 60000);

  it("checks credentials before bundling anything for up", async () => {
    delete process.env.AWS_ACCESS_KEY_ID;
    delete process.env.AWS_SECRET_ACCESS_KEY;
    try {
      const { code, stderr } = await runCli(["up", project, "--plain"], { timeoutMs: 60000 });
      expect(code).toBe(1);
      expect(stderr).toContain("up: no AWS credentials found; set AWS_PROFILE");
      expect(stderr).not.toContain("bundling");
    } finally {
      process.env.AWS_ACCESS_KEY_ID = "fake";
      process.env.AWS_SECRET_ACCESS_KEY = "fake";
    }
  }, 60000);

  it("signs in through SSO once for a whole up, and runs a credential_process once, however many AWS clients it makes", async () => {
    // A project and stack of its own: the describe's `project` is left broken by the down test before it.
    const dir = chat();
    const home = tempDir();
    const startUrl = "https://example.awsapps.com/start";
    const cache = join(home, ".aws", "sso", "cache");
    mkdirSync(cache, { recursive: true });
    const expiresAt = new Date(Date.now() + 3_600_000).toISOString().replace(/\.\d+Z$/, "Z");
    writeFileSync(
      join(cache, `${createHash("sha1").update("corp").digest("hex")}.json`),
      JSON.stringify({ startUrl, region: "us-east-1", accessToken: "token", expiresAt }),
    );
    const runs = join(home, "runs");
    const script = join(home, "credentials.cjs");
    writeFileSync(
      script,
      `require("node:fs").appendFileSync(${JSON.stringify(runs)}, "x"); console.log(JSON.stringify({ Version: 1, AccessKeyId: "fake", SecretAccessKey: "fake" }));`,
    );
    const config = join(home, "config");
    writeFileSync(
      config,
      `[profile dev]\nsso_session = corp\nsso_account_id = 123456789012\nsso_role_name = Admin\n\n[sso-session corp]\nsso_start_url = ${startUrl}\nsso_region = us-east-1\n\n[profile tool]\ncredential_process = "${process.execPath}" "${script}"\n`,
    );
    const asked: string[] = [];
    const portal = createServer((req, res) => {
      asked.push(`${req.method} ${req.url}`);
      const roleCredentials = { accessKeyId: "fake", secretAccessKey: "fake", sessionToken: "session" };
      res
        .writeHead(200, { "content-type": "application/json" })
        .end(JSON.stringify({ roleCredentials: { ...roleCredentials, expiration: Date.now() + 3_600_000 } }));
    });
    await new Promise<void>((r) => portal.listen(0, "127.0.0.1", r));
    delete process.env.AWS_ACCESS_KEY_ID;
    delete process.env.AWS_SECRET_ACCESS_KEY;
    try {
      const env = { HOME: home, AWS_CONFIG_FILE: config };
      const sso = await runCli(["up", dir, "--stack", "sso-chat", "--plain"], {
        timeoutMs: 60000,
        env: {
          ...env,
          AWS_PROFILE: "dev",
          AWS_ENDPOINT_URL_SSO: `http://127.0.0.1:${(portal.address() as AddressInfo).port}`,
        },
      });
      expect(sso.code, sso.stderr).toBe(0);
      expect(sso.stderr).toContain('resolving AWS credentials: profile "dev" signs in through SSO');
      expect(asked).toEqual(["GET /federation/credentials?account_id=123456789012&role_name=Admin"]);
      const tool = await runCli(["up", dir, "--stack", "sso-chat", "--plain"], {
        timeoutMs: 60000,
        env: { ...env, AWS_PROFILE: "tool" },
      });
      expect(tool.code, tool.stderr).toBe(0);
      expect(readFileSync(runs, "utf8")).toBe("x");
    } finally {
      process.env.AWS_ACCESS_KEY_ID = "fake";
      process.env.AWS_SECRET_ACCESS_KEY = "fake";
      portal.closeAllConnections();
      await new Promise((r) => portal.close(r));
    }
  }, 120000);

  it("names a region AWS does not have (misspelt, or one no endpoint answers for) before bundling", async () => {
    const misspelt = await runCli(["up", project, "--region", "us-east1", "--plain"], { timeoutMs: 60000 });
    expect(misspelt.code).toBe(1);
    expect(misspelt.stderr).toContain('up: region "us-east1" is not an AWS region name; set AWS_REGION or --region');
    expect(misspelt.stderr).not.toContain("bundling");
    // Against AWS itself (no endpoint override): the region's endpoint does not resolve.
    const endpoints = { cfn: process.env.AWS_ENDPOINT_URL_CLOUDFORMATION, s3: process.env.AWS_ENDPOINT_URL_S3 };
    delete process.env.AWS_ENDPOINT_URL_CLOUDFORMATION;
    delete process.env.AWS_ENDPOINT_URL_S3;
    try {
      const unknown = await runCli(["up", project, "--region", "us-nowhere-9", "--plain"], { timeoutMs: 60000 });
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toContain(
        'region "us-nowhere-9" is unknown: cloudformation.us-nowhere-9.amazonaws.com does not exist; set AWS_REGION or --region to a region AWS has',
      );
      expect(unknown.stderr).not.toContain("ENOTFOUND cloudformation");
      expect(unknown.stderr).not.toContain("bundling");
    } finally {
      Object.assign(process.env, {
        AWS_ENDPOINT_URL_CLOUDFORMATION: endpoints.cfn,
        AWS_ENDPOINT_URL_S3: endpoints.s3,
      });
    }
  }, 60000);

  it("says which endpoint does not answer when AWS_ENDPOINT_URL points at nothing", async () => {
    const dir = chat();
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const saved = process.env.AWS_ENDPOINT_URL_CLOUDFORMATION;
    process.env.AWS_ENDPOINT_URL_CLOUDFORMATION = `http://127.0.0.1:${port}`;
    try {
      const { code, stderr } = await runCli(["up", dir, "--plain"], { timeoutMs: 60000 });
      expect(code).toBe(1);
      expect(stderr).toContain(
        `the CloudFormation endpoint "http://127.0.0.1:${port}" (AWS_ENDPOINT_URL_CLOUDFORMATION) does not answer (ECONNREFUSED); start it, or unset AWS_ENDPOINT_URL_CLOUDFORMATION to run "nitric-like up" against AWS`,
      );
      expect(stderr).not.toContain("bundling");
    } finally {
      process.env.AWS_ENDPOINT_URL_CLOUDFORMATION = saved;
    }
    // logs reads CloudWatch Logs: its variable and command are named, not CloudFormation's and up's.
    const logs = await runCli(["logs", dir, "--plain"], {
      timeoutMs: 60000,
      env: { AWS_ENDPOINT_URL_CLOUDWATCH_LOGS: `http://127.0.0.1:${port}` },
    });
    expect(logs.code).toBe(1);
    expect(logs.stderr).toContain(
      `error: reading the logs of stack "chat": the CloudWatch Logs endpoint "http://127.0.0.1:${port}" (AWS_ENDPOINT_URL_CLOUDWATCH_LOGS) does not answer (ECONNREFUSED); start it, or unset AWS_ENDPOINT_URL_CLOUDWATCH_LOGS to run "nitric-like logs" against AWS`,
    );
    expect(logs.stderr).not.toContain("CLOUDFORMATION");
  }, 60000);

  it("stops a command whose AWS call gets no answer, naming the call, the endpoint, the time, what was done and what to run", async () => {
    // A server that takes connections and never answers, as a hung proxy or a captive portal does.
    const held: Socket[] = [];
    const hole = createNetServer((socket) => {
      held.push(socket);
      socket.on("error", () => {});
    });
    await new Promise<void>((r) => hole.listen(0, "127.0.0.1", r));
    const holeUrl = `http://127.0.0.1:${(hole.address() as AddressInfo).port}`;
    const env = { NITRIC_LIKE_AWS_TIMEOUT_MS: "300" };
    const dir = chat();
    try {
      for (const command of ["up", "down", "outputs"]) {
        const started = Date.now();
        const r = await runCli([command, dir, "--plain"], {
          timeoutMs: 30000,
          env: { ...env, AWS_ENDPOINT_URL_CLOUDFORMATION: holeUrl },
        });
        expect(r.code, r.stderr).toBe(1);
        expect(Date.now() - started).toBeLessThan(15000);
        expect(r.stderr).toContain(
          `warning: CloudFormation DescribeStacks at ${holeUrl}: no answer for 300 ms; trying again (try 2 of 3)`,
        );
        expect(r.stderr).toMatch(
          new RegExp(
            `error: .*CloudFormation DescribeStacks at ${holeUrl} \\(AWS_ENDPOINT_URL_CLOUDFORMATION\\): no answer for 300 ms \\(3 tries, \\d+ m?s in all\\); check that the endpoint is running and answers \\(LocalStack, moto\\), or unset AWS_ENDPOINT_URL_CLOUDFORMATION to use AWS; on a slow link, NITRIC_LIKE_AWS_TIMEOUT_MS gives each try longer \\(in ms; now 300\\)`,
          ),
        );
        if (command !== "outputs")
          expect(r.stderr).toContain(`nothing was changed; run "nitric-like ${command}" again`);
        expect(r.stderr).not.toContain("bundling");
      }

      // logs, with its own variable.
      const logs = await runCli(["logs", dir, "--plain"], {
        timeoutMs: 30000,
        env: { NITRIC_LIKE_AWS_LOGS_TIMEOUT_MS: "300", AWS_ENDPOINT_URL_CLOUDWATCH_LOGS: holeUrl },
      });
      expect(logs.code, logs.stderr).toBe(1);
      expect(logs.stderr).toContain(
        `error: reading the logs of stack "chat": CloudWatch Logs DescribeLogGroups at ${holeUrl} (AWS_ENDPOINT_URL_CLOUDWATCH_LOGS): no answer for 300 ms (3 tries,`,
      );
      expect(logs.stderr).toContain("NITRIC_LIKE_AWS_LOGS_TIMEOUT_MS gives each try longer (in ms; now 300)");

      // Half way through up: what it had done, and what to run. Code of its own, so its zip is
      // not there already (uploaded by another test).
      const file = join(dir, "services", "chat.ts");
      writeFileSync(file, `${readFileSync(file, "utf8")}\nconsole.log("half ${Date.now()}");\n`);
      const steps: [string, string, string][] = [
        [
          "S3 PUT",
          "S3 PutObject",
          'stack "half" was not changed (the function zips uploaded so far stay in the artifact bucket, and are not uploaded again); run "nitric-like up" again',
        ],
        [
          "CreateChangeSet",
          "CloudFormation CreateChangeSet",
          '(with the empty stack, REVIEW_IN_PROGRESS, that a first deploy\'s change set makes); run "nitric-like up" again, which deploys over it, or "nitric-like down --stack half" to remove it',
        ],
        [
          "ExecuteChangeSet",
          "CloudFormation ExecuteChangeSet",
          'stack "half" may be changing: CloudFormation goes on with the deploy without this command; "nitric-like outputs --stack half" shows its status, and once it is no longer *_IN_PROGRESS, run "nitric-like up" again to see it through (or "nitric-like down --stack half" to undo it)',
        ],
      ];
      for (const [call, named, state] of steps) {
        fake.stalled.add(call);
        try {
          const r = await runCli(["up", dir, "--stack", "half", "--plain"], { timeoutMs: 60000, env });
          expect(r.code, r.stderr).toBe(1);
          expect(r.stderr).toContain(`${named} at ${fake.url} (AWS_ENDPOINT_URL_`);
          expect(r.stderr).toContain(state);
        } finally {
          fake.stalled.delete(call);
        }
      }
      const up = await runCli(["up", dir, "--stack", "half", "--plain"], { timeoutMs: 60000 });
      expect(up.code, up.stderr).toBe(0);

      fake.stalled.add("DeleteStack");
      try {
        const r = await runCli(["down", dir, "--stack", "half", "--plain"], { timeoutMs: 60000, env });
        expect(r.code, r.stderr).toBe(1);
        expect(r.stderr).toContain(
          'the delete of stack "half" may be under way: CloudFormation goes on with it without this command; "nitric-like outputs --stack half" says whether the stack is still there, and if it is, once it is no longer DELETE_IN_PROGRESS, run "nitric-like down" again',
        );
      } finally {
        fake.stalled.delete("DeleteStack");
      }
      expect((await runCli(["down", dir, "--stack", "half", "--plain"], { timeoutMs: 60000 })).code).toBe(0);

      // Not milliseconds, or past what Node's timers hold (such a timer fires at once).
      for (const value of ["30s", "0", "99999999999"]) {
        const bad = await runCli(["outputs", dir, "--plain"], { env: { NITRIC_LIKE_AWS_TIMEOUT_MS: value } });
        expect(bad.code).toBe(1);
        expect(bad.stderr).toContain(
          `error: NITRIC_LIKE_AWS_TIMEOUT_MS is "${value}": give how long an AWS request may wait for an answer, in milliseconds, a whole number from 1 to 2147483647 such as 60000, or unset it`,
        );
      }
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise((r) => hole.close(r));
    }
  }, 180000);

  it("ends at once on Ctrl-C while an AWS call gets no answer (exit 130), naming the call and what was done", async () => {
    const dir = chat();
    // Before anything is changed: the preflight's DescribeStacks.
    fake.stalled.add("DescribeStacks");
    fake.calls.length = 0;
    try {
      const up = startCli(["up", dir, "--stack", "hung", "--plain"]);
      await up.until({ call: "DescribeStacks" });
      const pressed = Date.now();
      expect(await up.interrupt({ call: "DescribeStacks" }), up.stderr).toBe(130);
      expect(Date.now() - pressed).toBeLessThan(5000);
      expect(up.stderr).toMatch(
        new RegExp(
          `error: up: checking stack "hung": stopped \\(Ctrl-C\\) while CloudFormation DescribeStacks at ${fake.url} \\(AWS_ENDPOINT_URL_CLOUDFORMATION\\) had not answered for \\d+ (ms|s); nothing was changed; run "nitric-like up" again`,
        ),
      );
    } finally {
      fake.stalled.delete("DescribeStacks");
    }
    // Once the stack is being changed: the call is given a moment to answer, then given up.
    fake.stalled.add("ExecuteChangeSet");
    fake.calls.length = 0;
    try {
      const up = startCli(["up", dir, "--stack", "hung", "--plain"]);
      await up.until({ call: "ExecuteChangeSet" });
      const pressed = Date.now();
      expect(await up.interrupt({ call: "ExecuteChangeSet" }), up.stderr).toBe(130);
      expect(Date.now() - pressed).toBeLessThan(8000);
      expect(up.stderr).toContain(
        `error: deploying stack "hung": stopped (Ctrl-C) while CloudFormation ExecuteChangeSet at ${fake.url} (AWS_ENDPOINT_URL_CLOUDFORMATION) had not answered for`,
      );
      expect(up.stderr).toContain('stack "hung" may be changing: CloudFormation goes on with the deploy');
    } finally {
      fake.stalled.delete("ExecuteChangeSet");
    }
    expect((await runCli(["down", dir, "--stack", "hung", "--plain"], { timeoutMs: 60000 })).code).toBe(0);

    // A read (logs) from a server that takes the connection and never answers.
    const held: Socket[] = [];
    const hole = createNetServer((socket) => {
      held.push(socket);
      socket.on("error", () => {});
    });
    await new Promise<void>((r) => hole.listen(0, "127.0.0.1", r));
    const holeUrl = `http://127.0.0.1:${(hole.address() as AddressInfo).port}`;
    const saved = process.env.AWS_ENDPOINT_URL_CLOUDWATCH_LOGS;
    process.env.AWS_ENDPOINT_URL_CLOUDWATCH_LOGS = holeUrl;
    try {
      const logs = startCli(["logs", dir, "--plain"]);
      const end = Date.now() + 20000;
      while (held.length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
      expect(held.length).toBeGreaterThan(0);
      const pressed = Date.now();
      expect(await logs.interrupt({ stderr: "" }), logs.stderr).toBe(130);
      expect(Date.now() - pressed).toBeLessThan(5000);
      expect(logs.stderr).toContain(
        `error: reading the logs of stack "chat": stopped (Ctrl-C) while CloudWatch Logs DescribeLogGroups at ${holeUrl} (AWS_ENDPOINT_URL_CLOUDWATCH_LOGS) had not answered for`,
      );
    } finally {
      if (saved === undefined) delete process.env.AWS_ENDPOINT_URL_CLOUDWATCH_LOGS;
      else process.env.AWS_ENDPOINT_URL_CLOUDWATCH_LOGS = saved;
      for (const socket of held) socket.destroy();
      await new Promise((r) => hole.close(r));
    }
  }, 120000);

  it("says the endpoint is not AWS when AWS_ENDPOINT_URL points at a web server, never that the stack is not there", async () => {
    // A web page parses as an empty AWS answer: taken for "no such stack" before.
    const web = createServer((_req, res) =>
      res.writeHead(200, { "content-type": "text/html" }).end("<html><head><title>my app</title></head></html>"),
    );
    await new Promise<void>((r) => web.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(web.address() as AddressInfo).port}`;
    const env = { AWS_ENDPOINT_URL_CLOUDFORMATION: url, AWS_ENDPOINT_URL_CLOUDWATCH_LOGS: url };
    const said = (variable: string) =>
      `the endpoint "${url}" (${variable}) answered with something that is not an AWS answer`;
    try {
      for (const [command, doing] of [
        ["up", 'up: checking stack "chat"'],
        ["down", 'down: checking stack "chat"'],
        ["outputs", 'describing stack "chat"'],
        ["logs", 'reading the logs of stack "chat"'],
      ] as const) {
        const { code, stderr } = await runCli([command, project, "--plain"], { timeoutMs: 60000, env });
        expect(code, stderr).toBe(1);
        expect(stderr).toContain(`error: ${doing}: `);
        expect(stderr).toContain(
          command === "logs" ? said("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS") : said("AWS_ENDPOINT_URL_CLOUDFORMATION"),
        );
        expect(stderr).toContain("check that it is LocalStack or moto and working, or unset it to use AWS");
        expect(stderr).not.toMatch(/no such stack|disappeared|Deserialization|unexpected failure/);
      }
    } finally {
      await new Promise((r) => web.close(r));
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
      notes: [],
    });
    // The socket line people read without --json is on stderr, with the progress.
    expect(up.stderr).toContain(`websocket socket ${url}`);
    expect(up.stderr).toContain('stack "json-chat" is deployed');

    const down = await runCli(["down", dir, "--stack", "json-chat", "--json"], { timeoutMs: 60000 });
    expect(down.code, down.stderr).toBe(0);
    expect(JSON.parse(down.stdout)).toEqual({
      stack: "json-chat",
      provider: "aws",
      deleted: true,
      kept: [],
      keptSecrets: [],
    });
    const again = await runCli(["down", dir, "--stack", "json-chat", "--json"], { timeoutMs: 60000 });
    expect(again.code).toBe(1);
    expect(JSON.parse(again.stdout).error.message).toContain("there is no such stack in this account and region");
  }, 60000);

  it("refuses off a terminal to delete kv tables that hold items, naming them, and deletes them with --yes", async () => {
    const dir = chat();
    const up = await runCli(["up", dir, "--stack", "data-chat", "--plain"], { timeoutMs: 60000 });
    expect(up.code, up.stderr).toBe(0);
    // The chat example's kv store "connections", as the fake names its table.
    expect(fake.tables.get("connectionskvtable-fake")).toBe(0);
    fake.tables.set("connectionskvtable-fake", 3);
    fake.calls.length = 0;
    // runCli's stdin is not a terminal: no question, a refusal.
    const refused = await runCli(["down", dir, "--stack", "data-chat", "--plain"], { timeoutMs: 60000 });
    expect(refused.code, refused.stderr).toBe(1);
    expect(refused.stderr).toContain(
      'down: deleting stack "data-chat" would delete data for good: kv "connections" (table connectionskvtable-fake) holds items; pass --yes to delete them, or --keep-data to delete the stack and keep the tables',
    );
    expect(fake.calls).toContain("DynamoDB Scan");
    expect(fake.calls).not.toContain("DeleteStack");
    expect(fake.stacks.get("data-chat")?.status).toBe("CREATE_COMPLETE");
    expect(fake.tables.get("connectionskvtable-fake")).toBe(3);

    const yes = await runCli(["down", dir, "--stack", "data-chat", "--yes", "--plain"], { timeoutMs: 60000 });
    expect(yes.code, yes.stderr).toBe(0);
    expect(yes.stderr).toContain('stack "data-chat" is deleted');
    expect(yes.stderr).not.toContain("kept kv");
    expect(fake.stacks.has("data-chat")).toBe(false);
    expect(fake.tables.has("connectionskvtable-fake")).toBe(false);
  }, 60000);

  it.skipIf(noTerminal !== undefined)(
    "asks on a terminal before deleting kv tables that hold items: no keeps everything, y deletes",
    async () => {
      const dir = chat();
      const up = await runCli(["up", dir, "--stack", "asked-chat", "--plain"], { timeoutMs: 60000 });
      expect(up.code, up.stderr).toBe(0);
      fake.tables.set("connectionskvtable-fake", 1);
      const no = await runCliOnTerminal(["down", dir, "--stack", "asked-chat", "--plain"], "n");
      expect(no.output).toContain(
        'down: kv "connections" (table connectionskvtable-fake) holds items, deleted for good with stack "asked-chat". Delete them? (y/N)',
      );
      expect(no.output).toContain("down: nothing was deleted");
      expect(no.code).toBe(1);
      expect(fake.stacks.get("asked-chat")?.status).toBe("CREATE_COMPLETE");
      expect(fake.tables.get("connectionskvtable-fake")).toBe(1);
      // In colour the spinner stops while the question waits (drawn on its line, it hid it), and
      // Ctrl-C there is a no (exit 130), the question left on screen.
      const stopped = await runCliOnTerminal(["down", dir, "--stack", "asked-chat"], "\u0003", {
        colour: true,
        waitMs: 600,
      });
      expect(stopped.whileAsking).not.toContain("deleting stack");
      expect(stopped.whileAsking).not.toContain("\r");
      expect(stopped.output).toMatch(
        /Delete them\? \(y\/N\) \S*\r?\n\S*error:\S* down: nothing was deleted \(Ctrl-C\)/,
      );
      expect(stopped.code).toBe(130);
      expect(fake.stacks.get("asked-chat")?.status).toBe("CREATE_COMPLETE");
      const yes = await runCliOnTerminal(["down", dir, "--stack", "asked-chat", "--plain"], "y");
      expect(yes.code, yes.output).toBe(0);
      expect(yes.output).toContain('stack "asked-chat" is deleted');
      expect(fake.stacks.has("asked-chat")).toBe(false);
      expect(fake.tables.has("connectionskvtable-fake")).toBe(false);
    },
    90000,
  );

  it("deletes empty kv tables without asking", async () => {
    const dir = chat();
    const up = await runCli(["up", dir, "--stack", "empty-chat", "--plain"], { timeoutMs: 60000 });
    expect(up.code, up.stderr).toBe(0);
    const down = await runCli(["down", dir, "--stack", "empty-chat", "--plain"], { timeoutMs: 60000 });
    expect(down.code, down.stderr).toBe(0);
    expect(fake.stacks.has("empty-chat")).toBe(false);
    expect(fake.tables.has("connectionskvtable-fake")).toBe(false);
  }, 60000);

  it("refuses off a terminal to deploy an update that deletes a kv table holding items (a store no longer declared), and deploys it with --yes", async () => {
    const service = (stores: string) =>
      `import { kv, websocket } from "@nitric-like/sdk";\n${stores}const socket = websocket("socket");\nsocket.on("connect", () => {});\nsocket.on("disconnect", () => {});\nsocket.on("message", () => {});\n`;
    const dir = writeProject({
      "nitric-like.yaml": "name: notes\nservices:\n  - match: services/*.ts\n",
      "services/notes.ts": service('kv("notes").allow("get", "set");\nkv("drafts").allow("get");\n'),
    });
    expect((await runCli(["up", dir, "--plain"], { timeoutMs: 60000 })).code).toBe(0);
    fake.tables.set("noteskvtable-fake", 3);
    // A refactor that no longer declares either store: their tables would go with the next up.
    writeFileSync(join(dir, "services", "notes.ts"), service(""));
    fake.calls.length = 0;
    const refused = await runCli(["up", dir, "--plain"], { timeoutMs: 60000 });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(
      'error: up: deploying stack "notes" would delete data for good: kv "notes" (table noteskvtable-fake) holds items, and the deploy deletes its table (no service declares that store any more, or its table is replaced); declare it again to keep the data, or pass --yes to deploy and delete it',
    );
    expect(fake.calls).toContain("DeleteChangeSet");
    expect(fake.calls).not.toContain("ExecuteChangeSet");
    expect(fake.tables.get("noteskvtable-fake")).toBe(3);
    // The same with --json: the refusal is the document.
    const json = await runCli(["up", dir, "--json"], { timeoutMs: 60000 });
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout).error.message).toContain('would delete data for good: kv "notes"');

    const yes = await runCli(["up", dir, "--yes", "--plain"], { timeoutMs: 60000 });
    expect(yes.code, yes.stderr).toBe(0);
    expect(fake.tables.has("noteskvtable-fake")).toBe(false);
    expect((await runCli(["down", dir, "--plain"], { timeoutMs: 60000 })).code).toBe(0);
  }, 90000);

  it("says which secrets an update deletes (no longer declared), with how to restore one, and deploys", async () => {
    const service = (secrets: string) =>
      `import { secret, websocket } from "@nitric-like/sdk";\n${secrets}const socket = websocket("socket");\nsocket.on("connect", () => {});\nsocket.on("disconnect", () => {});\nsocket.on("message", () => {});\n`;
    const dir = writeProject({
      "nitric-like.yaml": "name: keys\nservices:\n  - match: services/*.ts\n",
      "services/keys.ts": service('secret("api-key").allow("access");\nsecret("webhook").allow("access");\n'),
    });
    expect((await runCli(["up", dir, "--plain"], { timeoutMs: 60000 })).code).toBe(0);
    writeFileSync(join(dir, "services", "keys.ts"), service('secret("webhook").allow("access");\n'));
    const update = await runCli(["up", dir, "--plain"], { timeoutMs: 60000 });
    expect(update.code, update.stderr).toBe(0);
    expect(update.stderr).toMatch(
      /warning: this deploy deletes secret "api-key" \(\S+\), which no service declares any more: Secrets Manager keeps a deleted secret restorable for its recovery window \(aws secretsmanager restore-secret --secret-id <arn>\); declare it again to keep it/,
    );
    expect(update.stderr).not.toContain('"webhook" (');
    expect((await runCli(["down", dir, "--plain"], { timeoutMs: 60000 })).code).toBe(0);
  }, 90000);

  it("keeps the kv tables with --keep-data: retained by a stack update, then the stack deleted, the tables named", async () => {
    const dir = chat();
    const up = await runCli(["up", dir, "--stack", "kept-chat", "--plain"], { timeoutMs: 60000 });
    expect(up.code, up.stderr).toBe(0);
    fake.tables.set("connectionskvtable-fake", 2);
    fake.calls.length = 0;
    const down = await runCli(["down", dir, "--stack", "kept-chat", "--keep-data", "--json"], { timeoutMs: 60000 });
    expect(down.code, down.stderr).toBe(0);
    expect(JSON.parse(down.stdout)).toEqual({
      stack: "kept-chat",
      provider: "aws",
      deleted: true,
      kept: [{ store: "connections", name: "connectionskvtable-fake" }],
      keptSecrets: [],
    });
    expect(down.stderr).toContain('kept kv "connections": table connectionskvtable-fake');
    // CloudFormation reads DeletionPolicy from the deployed template: an update first, then the delete.
    expect(fake.calls.filter((c) => c === "UpdateStack" || c === "DeleteStack")).toEqual([
      "UpdateStack",
      "DeleteStack",
    ]);
    expect(fake.stacks.has("kept-chat")).toBe(false);
    expect(fake.tables.get("connectionskvtable-fake")).toBe(2);
    fake.tables.delete("connectionskvtable-fake");
  }, 60000);

  it("keeps the kv tables of a DELETE_FAILED stack with --keep-data through DeleteStack's RetainResources", async () => {
    const dir = chat();
    const up = await runCli(["up", dir, "--stack", "half-chat", "--plain"], { timeoutMs: 60000 });
    expect(up.code, up.stderr).toBe(0);
    fake.tables.set("connectionskvtable-fake", 5);
    const stuck = fake.stacks.get("half-chat");
    if (stuck) stuck.status = "DELETE_FAILED";
    fake.calls.length = 0;
    const down = await runCli(["down", dir, "--stack", "half-chat", "--keep-data", "--plain"], { timeoutMs: 60000 });
    expect(down.code, down.stderr).toBe(0);
    // No update: a DELETE_FAILED stack takes none, and DeleteStack may leave resources there.
    expect(fake.calls).not.toContain("UpdateStack");
    expect(down.stderr).toContain('kept kv "connections": table connectionskvtable-fake');
    expect(fake.stacks.has("half-chat")).toBe(false);
    expect(fake.tables.get("connectionskvtable-fake")).toBe(5);
    fake.tables.delete("connectionskvtable-fake");
  }, 60000);
});

/** Why the moto tests cannot run here, or undefined when they can. */
const motoMissing = (() => {
  const probe = spawnSync("python3", ["-c", "import moto.server"], { encoding: "utf8" });
  if (probe.status === 0) return undefined;
  return probe.error
    ? `python3 is not there (${probe.error.message})`
    : `python3 -c 'import moto.server' failed: ${probe.stderr.trim().split("\n").pop()}`;
})();
if (motoMissing)
  console.log(`skipping the deploy tests against moto: ${motoMissing}; pip install 'moto[server]' to run them`);

/** A CloudFormation query call straight to moto (it routes by the credential scope, never checks the signature). */
async function motoQuery(url: string, service: string, params: Record<string, string>): Promise<string> {
  const response = await fetch(url, {
    method: "POST",
    headers: {
      authorization: `AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/${service}/aws4_request, SignedHeaders=host, Signature=0`,
      "content-type": "application/x-www-form-urlencoded",
    },
    body: new URLSearchParams(params).toString(),
  });
  return response.text();
}

describe.skipIf(motoMissing !== undefined)("nitric-like up and down --provider aws against moto", () => {
  let moto: ChildProcess | undefined;
  let url = "";
  let project: string;
  const stackStatus = async (stack: string) =>
    /<StackStatus>([^<]+)/.exec(
      await motoQuery(url, "cloudformation", { Action: "DescribeStacks", StackName: stack, Version: "2010-05-15" }),
    )?.[1];
  const resourceTypes = async (stack: string) =>
    [
      ...(
        await motoQuery(url, "cloudformation", {
          Action: "DescribeStackResources",
          StackName: stack,
          Version: "2010-05-15",
        })
      ).matchAll(/<ResourceType>([^<]+)/g),
    ]
      .map((m) => m[1])
      .sort();
  const codeSha = async () => {
    const response = await fetch(`${url}/2015-03-31/functions/`, {
      headers: {
        authorization:
          "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=0",
      },
    });
    const { Functions } = (await response.json()) as { Functions: { FunctionName: string; CodeSha256: string }[] };
    return Functions.filter((f) => f.FunctionName.startsWith("chat-")).map((f) => f.CodeSha256);
  };

  beforeAll(async () => {
    const started = await startMoto();
    moto = started.process;
    url = started.url;
    delete process.env.AWS_ENDPOINT_URL_CLOUDFORMATION;
    delete process.env.AWS_ENDPOINT_URL_S3;
    delete process.env.AWS_ENDPOINT_URL_DYNAMODB;
    process.env.AWS_ENDPOINT_URL = url;
    process.env.NITRIC_LIKE_AWS_POLL_MS = "100";
  }, 30000);
  afterAll(() => {
    moto?.kill();
  });

  it("creates the stack: the function, its tables and roles", async () => {
    project = copyProject(join(EXAMPLES, "chat"));
    const { code, stderr } = await runCli(["up", project, "--plain"], { timeoutMs: 60000 });
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(/change set: \d+ change\(s\) \(create\)/);
    expect(stderr).toContain('stack "chat" is deployed');
    expect(await stackStatus("chat")).toBe("CREATE_COMPLETE");
    // moto keeps no AWS::ApiGatewayV2::* resource, nor an EventInvokeConfig, nor the outputs that need them.
    expect(await resourceTypes("chat")).toEqual(
      expect.arrayContaining(["AWS::DynamoDB::Table", "AWS::IAM::Role", "AWS::Lambda::Function"]),
    );
  }, 60000);

  it("says the stack is already up to date when nothing changed (moto raises where AWS returns a failed change set)", async () => {
    const { code, stderr } = await runCli(["up", project, "--plain"], { timeoutMs: 60000 });
    expect(code, stderr).toBe(0);
    expect(stderr).toContain("already uploaded");
    expect(stderr).toContain('stack "chat" was already up to date');
    expect(stderr).not.toContain("No updates are to be performed");
  }, 60000);

  it("updates the function when the code changed", async () => {
    const before = await codeSha();
    const file = join(project, "services", "chat.ts");
    writeFileSync(file, `${readFileSync(file, "utf8")}\nconsole.log("chat v2");\n`);
    const { code, stderr } = await runCli(["up", project, "--plain"], { timeoutMs: 60000 });
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(/change set: \d+ change\(s\) \(update\)/);
    expect(stderr).toContain('stack "chat" is deployed');
    expect(await stackStatus("chat")).toBe("UPDATE_COMPLETE");
    const after = await codeSha();
    expect(after).toHaveLength(1);
    expect(after).not.toEqual(before);
  }, 60000);

  it("deploys the variables of --env-from into the function's environment, and an up without it removes them", async () => {
    const environment = async () => {
      const response = await fetch(`${url}/2015-03-31/functions/`, {
        headers: {
          authorization:
            "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=0",
        },
      });
      const { Functions } = (await response.json()) as {
        Functions: { FunctionName: string; Environment?: { Variables?: Record<string, string> } }[];
      };
      return Functions.filter((f) => f.FunctionName.startsWith("chat-")).map((f) => f.Environment?.Variables ?? {});
    };
    const file = join(project, "prod.env");
    writeFileSync(file, "API_URL=https://api.example.test\n");
    const up = await runCli(["up", project, "--env-from", file, "--plain"], { timeoutMs: 60000 });
    expect(up.code, up.stderr).toBe(0);
    expect(up.stderr).toContain("1 variable (API_URL) in every function's environment");
    expect(up.stderr).not.toContain("api.example.test");
    const [withFile] = await environment();
    expect(withFile).toMatchObject({ API_URL: "https://api.example.test", NITRIC_LIKE_SERVICE: "chat" });
    const without = await runCli(["up", project, "--plain"], { timeoutMs: 60000 });
    expect(without.code, without.stderr).toBe(0);
    const [after] = await environment();
    expect(after).toMatchObject({ NITRIC_LIKE_SERVICE: "chat" });
    expect(after).not.toHaveProperty("API_URL");
  }, 90000);

  it("deploys a socket whose connect and disconnect are two services': the connect function gets the other's name", async () => {
    const handover = copyProject(join(FIXTURES, "handover"));
    const { code, stderr } = await runCli(["up", handover, "--stack", "handover", "--plain"], { timeoutMs: 60000 });
    expect(code, stderr).toBe(0);
    expect(await stackStatus("handover")).toBe("CREATE_COMPLETE");
    expect(await resourceTypes("handover")).toEqual(expect.arrayContaining(["AWS::IAM::Policy"]));
    const response = await fetch(`${url}/2015-03-31/functions/`, {
      headers: {
        authorization:
          "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=0",
      },
    });
    const { Functions } = (await response.json()) as {
      Functions: { FunctionName: string; Environment?: { Variables?: Record<string, string> } }[];
    };
    const ours = Functions.filter((f) => f.FunctionName.startsWith("handover-"));
    const service = (name: string) => ours.find((f) => f.Environment?.Variables?.NITRIC_LIKE_SERVICE === name);
    const sockets = JSON.parse(service("gate")?.Environment?.Variables?.NITRIC_LIKE_WEBSOCKETS ?? "{}");
    expect(sockets.hall.disconnect).toBe(service("keeper")?.FunctionName);
    expect(
      JSON.parse(service("keeper")?.Environment?.Variables?.NITRIC_LIKE_WEBSOCKETS ?? "{}").hall,
    ).not.toHaveProperty("disconnect");
    const down = await runCli(["down", handover, "--stack", "handover", "--plain", "--yes"], { timeoutMs: 60000 });
    expect(down.code, down.stderr).toBe(0);
  }, 120000);

  it("deploys two services that each handle the disconnect of the other's socket: each function gets the other's name, which the template gives it", async () => {
    const crossed = copyProject(join(FIXTURES, "crossed"));
    const { code, stderr } = await runCli(["up", crossed, "--stack", "crossed", "--plain"], { timeoutMs: 60000 });
    expect(code, stderr).toBe(0);
    expect(await stackStatus("crossed")).toBe("CREATE_COMPLETE");
    const stackId = /<StackId>([^<]+)/.exec(
      await motoQuery(url, "cloudformation", { Action: "DescribeStacks", StackName: "crossed", Version: "2010-05-15" }),
    )?.[1];
    const uuid = stackId?.split("/")[2];
    expect(uuid).toBeTruthy();
    const response = await fetch(`${url}/2015-03-31/functions/`, {
      headers: {
        authorization:
          "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=0",
      },
    });
    const { Functions } = (await response.json()) as {
      Functions: { FunctionName: string; Environment?: { Variables?: Record<string, string> } }[];
    };
    const service = (name: string) => Functions.find((f) => f.Environment?.Variables?.NITRIC_LIKE_SERVICE === name);
    expect(service("east")?.FunctionName).toBe(`east-${uuid}`);
    expect(service("west")?.FunctionName).toBe(`west-${uuid}`);
    const sockets = (name: string) => JSON.parse(service(name)?.Environment?.Variables?.NITRIC_LIKE_WEBSOCKETS ?? "{}");
    expect(sockets("east")["east-door"].disconnect).toBe(`west-${uuid}`);
    expect(sockets("west")["west-door"].disconnect).toBe(`east-${uuid}`);
    const down = await runCli(["down", crossed, "--stack", "crossed", "--plain", "--yes"], { timeoutMs: 60000 });
    expect(down.code, down.stderr).toBe(0);
  }, 120000);

  it("prints what the deployed functions logged, from their stack's log groups, and follows new lines", async () => {
    const logs = async (operation: string, body: object) => {
      const response = await fetch(url, {
        method: "POST",
        headers: {
          authorization:
            "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/logs/aws4_request, SignedHeaders=host, Signature=0",
          "content-type": "application/x-amz-json-1.1",
          "x-amz-target": `Logs_20140328.${operation}`,
        },
        body: JSON.stringify(body),
      });
      const text = await response.text();
      expect(response.status, text).toBe(200);
      return (text ? JSON.parse(text) : {}) as { logGroups?: { logGroupName: string }[] };
    };
    // The stack made the function's log group; a function's run writes lines into a stream of it.
    const group = "/aws/lambda/chat/chat";
    expect((await logs("DescribeLogGroups", { logGroupNamePrefix: "/aws/lambda/chat/" })).logGroups).toEqual([
      expect.objectContaining({ logGroupName: group }),
    ]);
    let stream = 0;
    const put = async (...messages: string[]) => {
      const logStreamName = `2026/12/06/[$LATEST]${++stream}`;
      await logs("CreateLogStream", { logGroupName: group, logStreamName });
      const now = Date.now();
      const logEvents = messages.map((message, i) => ({ timestamp: now + i, message }));
      await logs("PutLogEvents", { logGroupName: group, logStreamName, logEvents });
    };
    await put("START RequestId: r1 Version: $LATEST", "connected ann\n", "END RequestId: r1");

    const { code, stdout, stderr } = await runCli(["logs", project, "--plain"], { timeoutMs: 30000 });
    expect(code, stderr).toBe(0);
    const lines = stdout.trim().split("\n");
    expect(lines.map((l) => l.replace(/^\S+ /, ""))).toEqual([
      "chat | START RequestId: r1 Version: $LATEST",
      "chat | connected ann",
      "chat | END RequestId: r1",
    ]);
    expect(lines[0]).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z chat \| /);
    // --json: one object per line, the same lines, the same times.
    const json = await runCli(["logs", project, "--json", "--plain"], { timeoutMs: 30000 });
    expect(json.code, json.stderr).toBe(0);
    const objects = json.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { time: string; service: string; message: string });
    expect(objects.map((o) => `${o.time} ${o.service} | ${o.message}`)).toEqual(lines);
    expect(Object.keys(objects[0] ?? {})).toEqual(["time", "service", "message"]);

    // --follow prints each new line once, as it comes, until Ctrl-C (exit 0).
    const child = spawn(process.execPath, [CLI, "logs", project, "--follow", "--plain"], { env: process.env });
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    const until = async (text: string) => {
      const end = Date.now() + 20000;
      while (!out.includes(text) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      expect(out).toContain(text);
    };
    await until("END RequestId: r1");
    await put("a new line");
    await until("chat | a new line");
    // Two more polls: nothing printed twice.
    await new Promise((r) => setTimeout(r, 4500));
    expect(out.match(/a new line/g)).toHaveLength(1);
    expect(out.match(/connected ann/g)).toHaveLength(1);
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    child.kill("SIGINT");
    expect(await exited).toBe(0);

    // What is not there is named: a service that logs nothing, a stack with no log group.
    const none = await runCli(["logs", project, "--service", "nope", "--plain"], { timeoutMs: 30000 });
    expect(none.code).toBe(1);
    expect(none.stderr).toContain(
      'error: reading the logs of stack "chat": no service "nope" logs there; its services: chat',
    );
    const noneJson = await runCli(["logs", project, "--service", "nope", "--json"], { timeoutMs: 30000 });
    expect(noneJson.code).toBe(1);
    expect(JSON.parse(noneJson.stdout)).toEqual({
      error: {
        message: 'reading the logs of stack "chat": no service "nope" logs there; its services: chat',
        problems: [],
      },
    });
    expect(noneJson.stdout.trim().split("\n")).toHaveLength(1);
    // A service removed from the project since still has its group, read by the stack's prefix.
    await logs("CreateLogGroup", { logGroupName: "/aws/lambda/chat/retired" });
    await logs("CreateLogStream", { logGroupName: "/aws/lambda/chat/retired", logStreamName: "s" });
    await logs("PutLogEvents", {
      logGroupName: "/aws/lambda/chat/retired",
      logStreamName: "s",
      logEvents: [{ timestamp: Date.now(), message: "its last line" }],
    });
    const retired = await runCli(["logs", project, "--service", "retired", "--plain"], { timeoutMs: 30000 });
    expect(retired.code, retired.stderr).toBe(0);
    expect(retired.stdout).toMatch(/ retired \| its last line\n$/);
    const gone = await runCli(["logs", project, "--stack", "elsewhere", "--plain"], { timeoutMs: 30000 });
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain(
      'error: reading the logs of stack "elsewhere": it has no log group (/aws/lambda/elsewhere/<service>) in this account and region; deploy it with "nitric-like up", or give its name with --stack and its region with --region',
    );
  }, 90000);

  /**
   * A loopback proxy in front of moto's CloudWatch Logs that a test can make fail (`mode`), noting
   * each FilterLogEvents' startTime; and a log group "/aws/lambda/<stack>/chat" with one line.
   */
  const logsProxy = async (stack: string) => {
    const state = {
      mode: "pass" as "pass" | "reset" | "throttle" | "unavailable" | "denied" | "stall",
      starts: [] as number[],
      /** Requests taken and never answered ("stall"). */
      stalled: 0,
    };
    const proxy = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", async () => {
        const body = Buffer.concat(chunks);
        if (String(req.headers["x-amz-target"]).endsWith("FilterLogEvents")) {
          state.starts.push((JSON.parse(body.toString()) as { startTime: number }).startTime);
        }
        const error = (status: number, type: string, message: string) =>
          res
            .writeHead(status, { "content-type": "application/x-amz-json-1.1", "x-amzn-errortype": type })
            .end(JSON.stringify({ __type: type, message }));
        if (state.mode === "stall") state.stalled++;
        else if (state.mode === "reset") req.socket.destroy();
        else if (state.mode === "throttle") error(400, "ThrottlingException", "Rate exceeded");
        else if (state.mode === "unavailable") error(503, "ServiceUnavailableException", "try later");
        else if (state.mode === "denied") {
          error(400, "AccessDeniedException", "User is not authorized to perform: logs:FilterLogEvents");
        }
        if (state.mode !== "pass") return;
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string" && k !== "host") headers[k] = v;
        const answer = await fetch(`${url}${req.url}`, { method: req.method ?? "POST", headers, body });
        res.writeHead(answer.status, { "content-type": answer.headers.get("content-type") ?? "" });
        res.end(Buffer.from(await answer.arrayBuffer()));
      });
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    const logs = async (operation: string, body: object) => {
      const response = await fetch(url, {
        method: "POST",
        headers: {
          authorization:
            "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/logs/aws4_request, SignedHeaders=host, Signature=0",
          "content-type": "application/x-amz-json-1.1",
          "x-amz-target": `Logs_20140328.${operation}`,
        },
        body: JSON.stringify(body),
      });
      expect(response.status, await response.text()).toBe(200);
    };
    const group = `/aws/lambda/${stack}/chat`;
    await logs("CreateLogGroup", { logGroupName: group });
    await logs("CreateLogStream", { logGroupName: group, logStreamName: "s" });
    const put = (message: string) =>
      logs("PutLogEvents", {
        logGroupName: group,
        logStreamName: "s",
        logEvents: [{ timestamp: Date.now(), message }],
      });
    await put("before the gap");
    return {
      state,
      put,
      logs,
      url: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
      close: () => {
        proxy.closeAllConnections();
        return new Promise((r) => proxy.close(r));
      },
    };
  };

  it("logs --follow rides out a lost connection, throttling and 5xx, saying so once, each line once; a denied read ends it", async () => {
    const { state, put, url: proxyUrl, close } = await logsProxy("rider");
    const dir = copyProject(join(EXAMPLES, "chat"));
    const env = { ...process.env, AWS_ENDPOINT_URL_CLOUDWATCH_LOGS: proxyUrl };
    const child = spawn(process.execPath, [CLI, "logs", dir, "--stack", "rider", "--follow", "--plain"], { env });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    // The wait between tries doubles while the failures last (2, 4, 8 s...): up to a minute.
    const until = async (what: () => string, text: string) => {
      const end = Date.now() + 60000;
      while (!what().includes(text) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      expect(what(), err).toContain(text);
    };
    const polls = async (n: number) => {
      const seen = state.starts.length;
      const end = Date.now() + 30000;
      while (state.starts.length < seen + n && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    };
    try {
      await until(() => out, "chat | before the gap");
      // The connection lost, then throttled, then AWS unavailable: lines logged meanwhile wait.
      state.mode = "reset";
      await put("during the gap");
      await until(() => err, "lost contact with CloudWatch Logs");
      state.mode = "throttle";
      await polls(2);
      state.mode = "unavailable";
      await polls(2);
      await put("late in the gap");
      expect(child.exitCode).toBe(null);
      state.mode = "pass";
      await until(() => err, "CloudWatch Logs answers again after");
      await until(() => out, "chat | late in the gap");
      await put("after the gap");
      await until(() => out, "chat | after the gap");
      await polls(2);
      expect(out.replace(/^\S+ /gm, "")).toBe(
        "chat | before the gap\nchat | during the gap\nchat | late in the gap\nchat | after the gap\n",
      );
      expect(err.match(/lost contact/g)).toHaveLength(1);
      expect(err.match(/answers again/g)).toHaveLength(1);
      expect(err).toContain(
        'warning: reading the logs of stack "rider": lost contact with CloudWatch Logs (ECONNRESET); trying again until it answers, Ctrl-C stops',
      );
      // A failure that asking again does not mend ends the follow, saying what to do.
      state.mode = "denied";
      expect(await exited).toBe(1);
      expect(err).toContain(
        'error: reading the logs of stack "rider": AWS denied it: User is not authorized to perform: logs:FilterLogEvents; the credentials need that permission',
      );
    } finally {
      child.kill("SIGKILL");
      await close();
    }
  }, 120000);

  /** `nitric-like logs --follow` under `env`, with what it has printed so far and its exit. */
  const follow = (args: string[], env: NodeJS.ProcessEnv) => {
    const child = spawn(process.execPath, [CLI, "logs", ...args, "--follow", "--plain"], { env });
    const seen = { out: "", err: "" };
    child.stdout.on("data", (d: Buffer) => {
      seen.out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      seen.err += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    const until = async (what: () => string, text: string, ms = 30000) => {
      const end = Date.now() + ms;
      while (!what().includes(text) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      expect(what(), seen.err).toContain(text);
    };
    return { child, seen, exited, until };
  };

  it("logs --follow counts a request that gets no answer as lost contact, and Ctrl-C ends a follow whose request hangs", async () => {
    const { state, put, url: proxyUrl, close } = await logsProxy("stalled");
    const dir = copyProject(join(EXAMPLES, "chat"));
    const env = {
      ...process.env,
      AWS_ENDPOINT_URL_CLOUDWATCH_LOGS: proxyUrl,
      NITRIC_LIKE_AWS_LOGS_TIMEOUT_MS: "500",
    };
    const f = follow([dir, "--stack", "stalled"], env);
    // Without a timeout, none: a request the network drops hangs, and Ctrl-C with it.
    const { NITRIC_LIKE_AWS_LOGS_TIMEOUT_MS: _, ...untimed } = env;
    let g: ReturnType<typeof follow> | undefined;
    try {
      await f.until(() => f.seen.out, "chat | before the gap");
      // Packets dropped: the connection is taken, and nothing comes back.
      state.mode = "stall";
      await put("during the silence");
      await f.until(
        () => f.seen.err,
        'warning: reading the logs of stack "stalled": lost contact with CloudWatch Logs (TimeoutError); trying again until it answers, Ctrl-C stops',
      );
      state.mode = "pass";
      await f.until(() => f.seen.err, "CloudWatch Logs answers again after");
      await f.until(() => f.seen.out, "chat | during the silence");
      f.child.kill("SIGINT");
      expect(await f.exited).toBe(0);

      // A request that hangs (the default timeout is far off): Ctrl-C ends the follow at once.
      g = follow([dir, "--stack", "stalled"], untimed);
      await g.until(() => g?.seen.out ?? "", "chat | during the silence");
      state.mode = "stall";
      const stalled = state.stalled;
      const end = Date.now() + 10000;
      while (state.stalled === stalled && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      expect(state.stalled).toBeGreaterThan(stalled);
      const stopped = Date.now();
      g.child.kill("SIGINT");
      expect(await g.exited).toBe(0);
      expect(Date.now() - stopped).toBeLessThan(3000);
      expect(g.seen.err).not.toContain("error:");
    } finally {
      f.child.kill("SIGKILL");
      g?.child.kill("SIGKILL");
      await close();
    }
  }, 90000);

  it("logs --follow follows a service an up adds to the stack while it runs, from its first line, and lets go of one it removes", async () => {
    const { put, logs, url: proxyUrl, close } = await logsProxy("grower");
    const dir = copyProject(join(EXAMPLES, "chat"));
    const f = follow([dir, "--stack", "grower"], { ...process.env, AWS_ENDPOINT_URL_CLOUDWATCH_LOGS: proxyUrl });
    try {
      await f.until(() => f.seen.out, "chat | before the gap");
      // What an up that adds service "added" makes: its log group, into which its function logs.
      const group = "/aws/lambda/grower/added";
      await logs("CreateLogGroup", { logGroupName: group });
      await logs("CreateLogStream", { logGroupName: group, logStreamName: "s" });
      await logs("PutLogEvents", {
        logGroupName: group,
        logStreamName: "s",
        logEvents: [{ timestamp: Date.now(), message: "its first line" }],
      });
      await f.until(() => f.seen.out, "added | its first line");
      expect(f.seen.err).toContain(
        'reading the logs of stack "grower": service "added" is new in the stack; following it too',
      );
      await put("chat goes on");
      await f.until(() => f.seen.out, "chat | chat goes on");
      // An up that removes service "chat" deletes its log group: the follow goes on with the others.
      await logs("DeleteLogGroup", { logGroupName: "/aws/lambda/grower/chat" });
      await logs("PutLogEvents", {
        logGroupName: group,
        logStreamName: "s",
        logEvents: [{ timestamp: Date.now(), message: "still here" }],
      });
      await f.until(() => f.seen.out, "added | still here");
      await f.until(() => f.seen.err, 'service "chat" is gone from the stack');
      expect(f.child.exitCode).toBe(null);
      f.child.kill("SIGINT");
      expect(await f.exited).toBe(0);
      expect(f.seen.out.replace(/^\S+ /gm, "")).toBe(
        "chat | before the gap\nadded | its first line\nchat | chat goes on\nadded | still here\n",
      );
    } finally {
      f.child.kill("SIGKILL");
      await close();
    }
  }, 90000);

  it("logs --since further back than 1970 reads from 1970: CloudWatch Logs refuses a negative start time", async () => {
    const { state, url: proxyUrl, close } = await logsProxy("ancient");
    const dir = copyProject(join(EXAMPLES, "chat"));
    try {
      state.starts.length = 0;
      const far = await runCli(["logs", dir, "--stack", "ancient", "--since", "999999999h", "--plain"], {
        timeoutMs: 30000,
        env: { AWS_ENDPOINT_URL_CLOUDWATCH_LOGS: proxyUrl },
      });
      expect(far.code, far.stderr).toBe(0);
      expect(state.starts).toEqual([0]);
      expect(far.stdout).toContain("chat | before the gap");
    } finally {
      await close();
    }
  }, 60000);

  it("passes a template over 51,200 bytes through the artifact bucket (TemplateURL)", async () => {
    const big = copyProject(join(EXAMPLES, "chat"));
    mkdirSync(join(big, "services"), { recursive: true });
    // 24 sockets in 4 services: one function holding all 24 would pass Lambda's 4 KB of
    // environment variables (each socket's API id and URLs), which build refuses.
    rmSync(join(big, "services", "chat.ts"));
    for (let service = 0; service < 4; service++) {
      const sockets = Array.from({ length: 6 }, (_, i) => `room-${service * 6 + i}`);
      writeFileSync(
        join(big, "services", `rooms-${service}.ts`),
        `import { websocket } from "@nitric-like/sdk";\n${sockets
          .map(
            (s) =>
              `websocket(${JSON.stringify(s)}).on("connect", async () => {}).on("disconnect", async () => {}).on("message", async () => {});`,
          )
          .join("\n")}\n`,
      );
    }
    writeFileSync(join(big, "nitric-like.yaml"), "name: big\nservices:\n  - match: services/*.ts\n");
    const { code, stderr } = await runCli(["up", big, "--plain"], { timeoutMs: 60000 });
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(
      /uploading the template to nitric-like\/big\/template-[0-9a-f]{16}\.json \(\d+ KB, over the 51200 bytes CloudFormation takes inline\)/,
    );
    expect(stderr).toContain('stack "big" is deployed');
    expect(await stackStatus("big")).toBe("CREATE_COMPLETE");
    const down = await runCli(["down", big, "--plain"], { timeoutMs: 60000 });
    expect(down.code, down.stderr).toBe(0);
  }, 60000);

  it("refuses to delete a kv table holding an item off a terminal, and keeps it with --keep-data", async () => {
    const dir = copyProject(join(EXAMPLES, "chat"));
    const up = await runCli(["up", dir, "--stack", "kept", "--plain"], { timeoutMs: 60000 });
    expect(up.code, up.stderr).toBe(0);
    const resources = await motoQuery(url, "cloudformation", {
      Action: "DescribeStackResource",
      StackName: "kept",
      LogicalResourceId: "ConnectionsKvTable",
      Version: "2010-05-15",
    });
    const table = /<PhysicalResourceId>([^<]+)/.exec(resources)?.[1] ?? "";
    expect(table, resources).not.toBe("");
    const dynamodb = async (operation: string, body: object) =>
      (await (
        await fetch(url, {
          method: "POST",
          headers: {
            authorization:
              "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
            "content-type": "application/x-amz-json-1.0",
            "x-amz-target": `DynamoDB_20120810.${operation}`,
          },
          body: JSON.stringify(body),
        })
      ).json()) as { TableNames?: string[]; Count?: number };
    await dynamodb("PutItem", { TableName: table, Item: { _p: { S: "k#3" }, _k: { S: "ann" }, v: { S: "x" } } });

    const refused = await runCli(["down", dir, "--stack", "kept", "--plain"], { timeoutMs: 60000 });
    expect(refused.code, refused.stderr).toBe(1);
    expect(refused.stderr).toContain(`kv "connections" (table ${table}) holds items; pass --yes`);
    expect(await stackStatus("kept")).toBe("CREATE_COMPLETE");

    const kept = await runCli(["down", dir, "--stack", "kept", "--keep-data", "--plain"], { timeoutMs: 60000 });
    expect(kept.code, kept.stderr).toBe(0);
    expect(kept.stderr).toContain(`kept kv "connections": table ${table}`);
    expect(await stackStatus("kept")).toBeUndefined();
    expect((await dynamodb("ListTables", {})).TableNames).toContain(table);
    expect((await dynamodb("Scan", { TableName: table })).Count).toBe(1);
  }, 90000);

  // moto (5.2) makes no AWS::SecretsManager::Secret from a template, so these tests take
  // CloudFormation and S3 from the fake (which resolves the secret's Ref to "apikeysecret-fake")
  // and Secrets Manager from moto, where the test makes the secret under that name first.
  describe("secrets: the stack's secret found by its output, its value put through moto's Secrets Manager", () => {
    type UpOptions = Parameters<NonNullable<typeof aws.up>>[0];
    const lines: string[] = [];
    const logger = {
      info: (m: string) => lines.push(m),
      warn: (m: string) => lines.push(m),
      error: (m: string) => lines.push(m),
    };
    const SECRET_ID = "apikeysecret-fake";
    /** An app whose one service may access and put secret "api-key" (the spec the collect pass makes of it). */
    const app = (stack: string): UpOptions => {
      const dir = copyProject(join(EXAMPLES, "chat"));
      return {
        project: { name: "vault", dir, file: join(dir, "nitric-like.yaml"), services: [], websockets: {} },
        spec: {
          name: "vault",
          services: [{ name: "chat", file: "services/chat.ts" }],
          resources: [{ kind: "secret", name: "api-key", declaredBy: ["chat"] }],
          policies: [
            { service: "chat", resource: { kind: "secret", name: "api-key" }, permissions: ["access", "put"] },
          ],
        },
        services: [{ name: "chat", file: "services/chat.ts", path: join(dir, "services", "chat.ts") }],
        outDir: join(dir, "out"),
        logger,
        stack,
      };
    };
    /** Secrets Manager's JSON API on moto, which routes by the credential scope. */
    const secretsManager = async (operation: string, body: object) => {
      const response = await fetch(url, {
        method: "POST",
        headers: {
          authorization:
            "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
          "content-type": "application/x-amz-json-1.1",
          "x-amz-target": `secretsmanager.${operation}`,
        },
        body: JSON.stringify(body),
      });
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    };
    const put = (options: Partial<Parameters<NonNullable<typeof aws.putSecret>>[0]> = {}) =>
      (aws.putSecret as NonNullable<typeof aws.putSecret>)({
        project: app("unused").project,
        stack: "vault",
        secret: "api-key",
        value: new TextEncoder().encode("x"),
        logger,
        ...options,
      });
    const putError = (options: Partial<Parameters<NonNullable<typeof aws.putSecret>>[0]>) =>
      put(options).then(
        () => undefined,
        (error: Error & { userFacing?: boolean }) => error,
      );
    const endpoints = ["AWS_ENDPOINT_URL_CLOUDFORMATION", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SECRETS_MANAGER"];
    beforeAll(() => {
      Object.assign(process.env, {
        AWS_ENDPOINT_URL_CLOUDFORMATION: fake.url,
        AWS_ENDPOINT_URL_S3: fake.url,
        AWS_ENDPOINT_URL_SECRETS_MANAGER: url,
      });
    });
    afterAll(() => {
      for (const name of endpoints) delete process.env[name];
    });

    it("up outputs the secret's ARN; putSecret stores a value there that Secrets Manager gives back, and each put is a new version", async () => {
      const result = await aws.up?.(app("vault"));
      // The output `secret put` and `nitric-like outputs` read.
      expect(result?.outputs?.SecretApiKey).toBe(SECRET_ID);
      const created = await secretsManager("CreateSecret", { Name: SECRET_ID });
      expect(created.status, JSON.stringify(created.body)).toBe(200);
      // No value until one is put.
      expect(String((await secretsManager("GetSecretValue", { SecretId: SECRET_ID })).body.__type)).toMatch(
        /ResourceNotFoundException/,
      );
      const value = new Uint8Array([0, 1, 2, 250, 255, ...new TextEncoder().encode("hunter2")]);
      const first = await put({ value });
      expect(first.version).toMatch(/^[0-9a-f-]{36}$/);
      const got = await secretsManager("GetSecretValue", { SecretId: SECRET_ID });
      expect(got.body.VersionId).toBe(first.version);
      expect(new Uint8Array(Buffer.from(got.body.SecretBinary as string, "base64"))).toEqual(value);
      const second = await put({ value: new TextEncoder().encode("rotated") });
      expect(second.version).not.toBe(first.version);
      const latest = await secretsManager("GetSecretValue", { SecretId: SECRET_ID });
      expect(Buffer.from(latest.body.SecretBinary as string, "base64").toString("utf8")).toBe("rotated");
      const older = await secretsManager("GetSecretValue", { SecretId: SECRET_ID, VersionId: first.version });
      expect(new Uint8Array(Buffer.from(older.body.SecretBinary as string, "base64"))).toEqual(value);
    }, 90000);

    it("nitric-like secret put --provider aws stores a piped value in the stack named after the project, and prints its version", async () => {
      const dir = writeProject({
        "nitric-like.yaml": "name: vault\nservices:\n  - match: services/*.ts\n",
        "services/chat.ts": [
          'import { secret, websocket } from "@nitric-like/sdk";',
          'secret("api-key").allow("access", "put");',
          'const socket = websocket("socket");',
          'socket.on("connect", () => {});',
          'socket.on("disconnect", () => {});',
          'socket.on("message", () => {});',
        ].join("\n"),
      });
      const result = await runCli(["secret", "put", "api-key", dir, "--provider", "aws"], {
        input: "from the command line\n",
        timeoutMs: 60000,
      });
      expect(result.stderr).toContain(`stored secret "api-key" in stack "vault" (21 bytes): ${SECRET_ID}`);
      expect(result.code).toBe(0);
      const version = result.stdout.trim();
      const got = await secretsManager("GetSecretValue", { SecretId: SECRET_ID });
      expect(got.body.VersionId).toBe(version);
      expect(Buffer.from(got.body.SecretBinary as string, "base64").toString("utf8")).toBe("from the command line");
    }, 90000);

    it("putSecret says what to do for a secret the stack lacks, a stack that is not there, a secret gone from Secrets Manager, and an empty value", async () => {
      const missing = await putError({ secret: "db-url" });
      expect(missing?.userFacing).toBe(true);
      expect(missing?.message).toMatch(
        /stack "vault" has no secret "db-url" \(it has "api-key"\); declare it .* deploy/,
      );
      const noStack = await putError({ stack: "nowhere" });
      expect(noStack?.userFacing).toBe(true);
      expect(noStack?.message).toMatch(/there is no stack "nowhere" .*nitric-like up --provider aws/);
      const empty = await putError({ value: new Uint8Array() });
      expect(empty?.userFacing).toBe(true);
      expect(empty?.message).toMatch(/the value is empty/);
      await secretsManager("DeleteSecret", { SecretId: SECRET_ID, ForceDeleteWithoutRecovery: true });
      const gone = await putError({});
      expect(gone?.userFacing).toBe(true);
      expect(gone?.message).toMatch(
        /Secrets Manager refused apikeysecret-fake \(ResourceNotFoundException.*deploy the app again/,
      );
    }, 30000);

    it("down --keep-data retains the secret through a stack update and names it; a plain down says it deletes it", async () => {
      const before = fake.calls.length;
      const down = await runCli(["down", project, "--stack", "vault", "--keep-data", "--json"], { timeoutMs: 60000 });
      expect(down.code, down.stderr).toBe(0);
      const calls = fake.calls.slice(before).join(" ");
      expect(calls).toMatch(/UpdateStack.*DeleteStack/);
      expect(down.stderr).toContain(`kept secret "api-key": ${SECRET_ID}`);
      // --json names what was kept, the secret too (a script has its ARN).
      expect(JSON.parse(down.stdout)).toMatchObject({
        stack: "vault",
        deleted: true,
        keptSecrets: [{ secret: "api-key", name: SECRET_ID }],
      });
      expect(fake.stacks.has("vault")).toBe(false);

      await aws.up?.(app("gone"));
      await aws.down?.({ project: app("unused").project, stack: "gone", logger });
      expect(lines.join("\n")).toMatch(/deleting secret "api-key" with the stack .*"down --keep-data" keeps/);
      expect(fake.stacks.has("gone")).toBe(false);
    }, 120000);
  });

  it("deletes the stack", async () => {
    const { code, stderr } = await runCli(["down", project, "--plain"], { timeoutMs: 60000 });
    expect(code, stderr).toBe(0);
    expect(stderr).toContain('stack "chat" is deleted');
    expect(await stackStatus("chat")).toBeUndefined();
  }, 60000);
});
