// The chat example and seed 003's @nitric/sdk broadcast, with several real clients.
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { CREDENTIALS_FILE, signRequest } from "@nitric-like/provider-aws/emulator";
import { afterAll, afterEach, expect, it } from "vitest";
import { cleanTemp, connect, copyProject, EXAMPLES, FIXTURES, sleep, startApp, stopAll } from "../src/harness.js";

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

// On local, examples/chat/test/chat.test.ts tests it with the test kit.
it.each(["aws"])(
  "examples/chat on %s sends each message to every other connection, not back to the sender",
  async (provider) => {
    const app = await startApp(copyProject(join(EXAMPLES, "chat")), ["--provider", provider]);
    const url = app.url("socket");
    const [ann, bo, cy] = await Promise.all([connect(url), connect(url), connect(url)]);
    ann.ws.send("hello from ann");
    expect((await bo.next()).text).toBe("hello from ann");
    expect((await cy.next()).text).toBe("hello from ann");
    cy.ws.send("hi ann");
    expect((await ann.next()).text).toBe("hi ann");
    expect((await bo.next()).text).toBe("hi ann");
    await sleep(200);
    expect(ann.frames).toEqual([]);
    expect(cy.frames).toEqual([]);
    // Its endpoints take only this run's credentials, which run writes for its user alone and says where.
    const file = join(app.dir, ".nitric-like", "aws-run", CREDENTIALS_FILE);
    expect(
      `${app.stdout}${app.stderr}`.match(
        /take only requests signed with this run's credentials; .*emulator\.env has them/g,
      ),
    ).toHaveLength(1);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const env = new Map(
      readFileSync(file, "utf8")
        .split("\n")
        .filter((line) => line !== "" && !line.startsWith("#"))
        .map((line) => line.split(/=(.*)/s).slice(0, 2) as [string, string]),
    );
    expect([...env.keys()]).toEqual([
      "AWS_ACCESS_KEY_ID",
      "AWS_SECRET_ACCESS_KEY",
      "AWS_REGION",
      "AWS_DEFAULT_REGION",
      "AWS_ENDPOINT_URL_DYNAMODB",
      "AWS_ENDPOINT_URL_LAMBDA",
      "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    ]);
    const dynamodb = env.get("AWS_ENDPOINT_URL_DYNAMODB") as string;
    const listTables = (secretAccessKey: string) => {
      const body = "{}";
      const headers = signRequest({
        method: "POST",
        url: new URL(dynamodb),
        body,
        headers: { "content-type": "application/x-amz-json-1.0", "x-amz-target": "DynamoDB_20120810.ListTables" },
        service: "dynamodb",
        region: env.get("AWS_REGION") as string,
        accessKeyId: env.get("AWS_ACCESS_KEY_ID") as string,
        secretAccessKey,
      });
      return fetch(dynamodb, { method: "POST", headers, body });
    };
    const listed = await listTables(env.get("AWS_SECRET_ACCESS_KEY") as string);
    expect(listed.status).toBe(200);
    expect(((await listed.json()) as { TableNames: string[] }).TableNames.length).toBeGreaterThan(0);
    const guessed = await listTables("guessed");
    expect(((await guessed.json()) as { __type: string }).__type).toBe(
      "com.amazon.coral.service#InvalidSignatureException",
    );
    // The credentials die with the run, and so does the file.
    expect((await app.stop()).code).toBe(0);
    expect(existsSync(file)).toBe(false);
  },
  30000,
);

it.each(["local", "aws"])(
  "seed 003's broadcast on the published @nitric/sdk reaches all three clients on %s",
  async (provider) => {
    const app = await startApp(copyProject(join(FIXTURES, "nitric-broadcast")), ["--provider", provider]);
    const url = app.url("example-websocket");
    const clients = await Promise.all([connect(url), connect(url), connect(url)]);
    clients[1]?.ws.send("to everyone");
    for (const c of clients) expect((await c.next()).text).toBe("to everyone");
  },
  30000,
);
