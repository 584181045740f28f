// The emulator's Secrets Manager end to end (`run --provider aws`): a service on @nitric/sdk,
// built by buildAws with its secret in the template, puts and reads its secret through the
// runtime's hand-signed requests, the AWS SDK's Secrets Manager client reads and writes the same
// values with the run's credentials (a value put as SecretString reads as its bytes), requests
// not signed with them are refused as Secrets Manager refuses, bodies are bounded, and the values
// outlive a restart of the emulator in a folder only this user can read. The built modules
// (dist/): the emulator forks its workers from beside them.
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { GetSecretValueCommand, PutSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { SecretStore, secretsDirOf } from "@nitric-like/provider-kit/secret-store";
import type { Spec } from "@nitric-like/spec";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { buildAws } from "../dist/build/build.js";
import {
  type Emulator,
  type RunningDynalite,
  runCredentials,
  signRequest,
  startDynalite,
  startEmulator,
} from "../dist/emulator/index.js";
import { MAX_SECRETS_REQUEST_BYTES } from "../dist/emulator/secrets.js";

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";

/** Where @nitric/sdk is installed in this repository (the conformance fixtures' dependencies). */
const NODE_MODULES = fileURLToPath(new URL("../../../packages/conformance/node_modules", import.meta.url));

const SERVICE = `// A service on @nitric/sdk (Nitric v1's secret() interface) that puts and reads its secrets as its
// websocket's clients ask: for the emulator's Secrets Manager end to end (secrets-emulator.test.ts).
import { secret, websocket } from "@nitric/sdk";

const vault = secret("vault").allow("access", "put");
// Declared here, left out of the deployment by the test (as if the collect pass had not seen it):
// its calls must say so, with the fix.
const ghost = secret("ghost").allow("access");
const socket = websocket("vault");

const answer = (id: string, value: unknown) => socket.send(id, JSON.stringify(value));

socket.on("connect", async (ctx) => ctx);
socket.on("disconnect", async (ctx) => ctx);
socket.on("message", async (ctx) => {
  const id = ctx.req.connectionId;
  const cmd = ctx.req.json() as { op: string; text?: string; version?: string };
  try {
    if (cmd.op === "put") {
      await answer(id, { version: (await vault.put(cmd.text ?? "")).version });
    } else if (cmd.op === "get") {
      const value = await (cmd.version === undefined ? vault.latest() : vault.version(cmd.version)).access();
      await answer(id, { value: value.asString(), version: value.secretVersion.version });
    } else if (cmd.op === "ghost") {
      await answer(id, { value: (await ghost.latest().access()).asString() });
    }
  } catch (error) {
    await answer(id, { error: String((error as Error).message ?? error) });
  }
  return ctx;
});
`;

/** The spec the collect pass makes of SERVICE, less the secret "ghost" (declared, not deployed). */
const spec: Spec = {
  name: "vault",
  services: [{ name: "vault", file: "services/vault.ts" }],
  resources: [
    {
      kind: "websocket",
      name: "vault",
      declaredBy: ["vault"],
      handlers: { connect: "vault", disconnect: "vault", message: "vault" },
    },
    { kind: "secret", name: "vault", declaredBy: ["vault"] },
  ],
  policies: [
    { service: "vault", resource: { kind: "secret", name: "vault" }, permissions: ["access", "put"] },
    { service: "vault", resource: { kind: "websocket", name: "vault" }, permissions: ["manage"] },
  ],
};

const root = mkdtempSync(join(tmpdir(), "nitric-like-aws-secrets-"));
// run's secret store, as run --provider aws gives the emulator.
const secretsDir = secretsDirOf(root);
let store: SecretStore | undefined;
const secretStore = () => {
  store ??= new SecretStore(secretsDir);
  return store;
};
const out = join(root, "out");
const credentials = runCredentials();
const lines: string[] = [];
const logger = {
  info: (l: string) => lines.push(l),
  warn: (l: string) => lines.push(l),
  error: (l: string) => lines.push(l),
};
let db: RunningDynalite;
let emulator: Emulator | undefined;
let arn = "";

const start = async () => {
  emulator = await startEmulator({ buildDir: out, dynamodbEndpoint: db.endpoint, credentials, secretStore, logger });
  return emulator;
};

beforeAll(async () => {
  mkdirSync(join(root, "services"), { recursive: true });
  writeFileSync(join(root, "nitric.yaml"), "name: vault\nservices:\n  - match: services/*.ts\n");
  writeFileSync(join(root, "services", "vault.ts"), SERVICE);
  symlinkSync(NODE_MODULES, join(root, "node_modules"), "dir");
  const { loadProject } = await import("@nitric-like/spec");
  const built = await buildAws({
    project: loadProject(root),
    spec,
    services: [{ name: "vault", file: "services/vault.ts", path: join(root, "services", "vault.ts") }],
    outDir: out,
    logger,
  });
  const id = Object.keys(built.template.Resources as object).find((k) => k.endsWith("Secret")) as string;
  expect(id).toBe("VaultSecret");
  db = await startDynalite(undefined, { credentials });
  await start();
  arn = JSON.parse(emulator?.functions[0]?.env.NITRIC_LIKE_SECRETS ?? "{}").vault;
}, 60000);

afterAll(async () => {
  await emulator?.stop();
  await store?.close();
  await db?.close();
  rmSync(root, { recursive: true, force: true });
});

/** A client of the socket: each command answered by the next message. */
async function client(): Promise<{ ask: (cmd: object) => Promise<Record<string, string>>; close: () => void }> {
  const url = emulator?.sockets[0]?.url as string;
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
  return {
    ask: (cmd) =>
      new Promise((resolve, reject) => {
        ws.once("message", (data) => resolve(JSON.parse(String(data))));
        ws.once("close", (code) => reject(new Error(`closed ${code}`)));
        ws.send(JSON.stringify(cmd));
      }),
    close: () => ws.close(),
  };
}

/** The AWS SDK's Secrets Manager client on the emulator, signing with `secretAccessKey`. */
const sdk = (secretAccessKey = credentials.secretAccessKey) =>
  new SecretsManagerClient({
    endpoint: emulator?.managementUrl as string,
    region: "us-east-1",
    credentials: { accessKeyId: credentials.accessKeyId, secretAccessKey },
    maxAttempts: 1,
  });

describe("the emulator's Secrets Manager", () => {
  it("gives the function its secret's ARN and endpoint, and the function puts and reads versions through it", async () => {
    expect(arn).toMatch(/^arn:aws:secretsmanager:us-east-1:000000000000:secret:VaultSecret-[0-9a-f]{10}-[0-9a-f]{6}$/);
    expect(emulator?.functions[0]?.env.AWS_ENDPOINT_URL_SECRETS_MANAGER).toBe(emulator?.managementUrl);
    const c = await client();
    try {
      // No value yet: what Secrets Manager answers an empty secret, said with the fix.
      expect((await c.ask({ op: "get" })).error).toMatch(/has no value yet; put one/);
      const first = (await c.ask({ op: "put", text: "first" })).version as string;
      expect(first).toMatch(/^[0-9a-f-]{36}$/);
      expect(await c.ask({ op: "get" })).toEqual({ value: "first", version: first });
      const second = (await c.ask({ op: "put", text: "second" })).version as string;
      expect(await c.ask({ op: "get" })).toEqual({ value: "second", version: second });
      // An older version keeps its value.
      expect(await c.ask({ op: "get", version: first })).toEqual({ value: "first", version: first });
      expect((await c.ask({ op: "get", version: "00000000-0000-4000-8000-000000000000" })).error).toMatch(
        /has no version "00000000-0000-4000-8000-000000000000"/,
      );
    } finally {
      c.close();
    }
  });

  it("serves the AWS SDK's client signed with the run's credentials: the function's value, and a SecretString it then reads as its bytes", async () => {
    const client1 = sdk();
    const got = await client1.send(new GetSecretValueCommand({ SecretId: arn }));
    expect(Buffer.from(got.SecretBinary as Uint8Array).toString("utf8")).toBe("second");
    expect(got.VersionStages).toEqual(["AWSCURRENT"]);
    expect(got.ARN).toBe(arn);
    const put = await client1.send(new PutSecretValueCommand({ SecretId: arn, SecretString: "from the console ✓" }));
    expect(put.VersionStages).toEqual(["AWSCURRENT"]);
    const previous = await client1.send(new GetSecretValueCommand({ SecretId: arn, VersionStage: "AWSPREVIOUS" }));
    expect(Buffer.from(previous.SecretBinary as Uint8Array).toString("utf8")).toBe("second");
    const c = await client();
    try {
      expect(await c.ask({ op: "get" })).toEqual({ value: "from the console ✓", version: put.VersionId });
    } finally {
      c.close();
    }
    // By name too, as Secrets Manager takes either.
    const byName = await client1.send(new GetSecretValueCommand({ SecretId: got.Name }));
    expect(byName.SecretString).toBe("from the console ✓");
    client1.destroy();
  });

  it("answers Secrets Manager's errors: an unknown secret, a malformed version id, both values, a token reused with another value", async () => {
    const client1 = sdk();
    const error = (p: Promise<unknown>) =>
      p.then(
        () => ({ name: "none", message: "" }),
        (e: Error) => e,
      );
    expect((await error(client1.send(new GetSecretValueCommand({ SecretId: `${arn.slice(0, -6)}zzzzzz` })))).name).toBe(
      "ResourceNotFoundException",
    );
    expect((await error(client1.send(new GetSecretValueCommand({ SecretId: arn, VersionId: "short" })))).name).toBe(
      "ValidationException",
    );
    expect(
      (
        await error(
          client1.send(
            new PutSecretValueCommand({ SecretId: arn, SecretString: "a", SecretBinary: new Uint8Array([1]) }),
          ),
        )
      ).name,
    ).toBe("InvalidParameterException");
    const token = "11111111-2222-4333-8444-555555555555";
    await client1.send(new PutSecretValueCommand({ SecretId: arn, SecretString: "one", ClientRequestToken: token }));
    // The same request again (a retry) changes nothing; another value under the token is refused.
    await client1.send(new PutSecretValueCommand({ SecretId: arn, SecretString: "one", ClientRequestToken: token }));
    expect(
      (
        await error(
          client1.send(new PutSecretValueCommand({ SecretId: arn, SecretString: "two", ClientRequestToken: token })),
        )
      ).name,
    ).toBe("ResourceExistsException");
    expect((await client1.send(new GetSecretValueCommand({ SecretId: arn }))).SecretString).toBe("one");
    client1.destroy();
  });

  it("refuses requests not signed with the run's credentials before reading them, and bodies over its bound", async () => {
    const wrong = sdk("not-the-run-secret");
    const refused = await wrong.send(new GetSecretValueCommand({ SecretId: arn })).then(
      () => undefined,
      (e: Error & { $metadata?: { httpStatusCode?: number } }) => e,
    );
    expect(refused?.$metadata?.httpStatusCode).toBe(400);
    expect(refused?.message).toMatch(/signature/i);
    wrong.destroy();
    const url = emulator?.managementUrl as string;
    const headers = { "content-type": "application/x-amz-json-1.1", "x-amz-target": "secretsmanager.GetSecretValue" };
    const unsigned = await fetch(url, { method: "POST", headers, body: JSON.stringify({ SecretId: arn }) });
    expect(unsigned.status).toBe(400);
    expect(JSON.stringify(await unsigned.json())).not.toContain("SecretBinary");
    const body = JSON.stringify({ SecretId: arn, SecretString: "x".repeat(MAX_SECRETS_REQUEST_BYTES) });
    const signed = signRequest({
      method: "POST",
      url: new URL(url),
      body,
      headers: { ...headers, "x-amz-target": "secretsmanager.PutSecretValue" },
      service: "secretsmanager",
      region: "us-east-1",
      ...credentials,
    });
    const large = await fetch(url, { method: "POST", headers: signed, body });
    expect(large.status).toBe(413);
  });

  it("warns of a secret the service declares and the deployment lacks, and its calls say the collect pass did not see it", async () => {
    expect(lines.join("\n")).toMatch(
      /warning: secret\("ghost"\)\.allow\("access"\): service "vault" declared it after it started \(in a handler, or in code that does not run when nitric-like collects what the service declares\)/,
    );
    const c = await client();
    try {
      // The function's NITRIC_LIKE_DECLARED (what the collect pass saw) lacks it too.
      expect((await c.ask({ op: "ghost" })).error).toMatch(
        /FAILED_PRECONDITION: secret\("ghost"\)\.allow\("access"\): service "vault" declared it after it started \(in a handler, or in code that does not run when nitric-like collects what the service declares\).*declare it at the top level of services\/vault\.ts/,
      );
    } finally {
      c.close();
    }
  });

  it("keeps the values across a restart in run's store, which the local provider reads, in a folder only this user can enter", async () => {
    await emulator?.stop();
    emulator = undefined;
    await start();
    const c = await client();
    try {
      expect((await c.ask({ op: "get" })).value).toBe("one");
    } finally {
      c.close();
    }
    expect(statSync(secretsDir).mode & 0o777).toBe(0o700);
    expect(readdirSync(secretsDir).length).toBeGreaterThan(0);
    // Under the app's name, as the local provider and `nitric-like secret put` keep it.
    const latest = await secretStore().access("vault", "latest");
    expect(Buffer.from(latest?.value ?? []).toString()).toBe("one");
  }, 30000);
});
