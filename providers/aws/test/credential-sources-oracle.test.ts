// The two credential sources the deploy commands look up themselves (src/deploy/credential-sources.ts)
// against the AWS SDK's own providers of them, as the oracle: for each case, our lookup (through
// credentialProvider, as `up` makes it) and the SDK's provider (`fromProcess` of
// @aws-sdk/credential-provider-process, `fromHttp` of @aws-sdk/credential-provider-http) read the
// same source (a real credential_process run through the shell; a real HTTP server on 127.0.0.1)
// and give the same credentials, or both fail. Where ours is stricter than the SDK on purpose,
// the case says why, and that the SDK takes what ours refuses.
//
// AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is not a case here: both prefix it with
// http://169.254.170.2, which neither can be told to replace, and which no test can answer on.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromHttp } from "@aws-sdk/credential-provider-http";
import { fromProcess } from "@aws-sdk/credential-provider-process";
import { afterEach, describe, expect, it } from "vitest";
import { deployTimeouts } from "../src/deploy/calls.js";
import { credentialProvider } from "../src/deploy/credentials.js";

const saved = { ...process.env };
const servers: Server[] = [];
const dirs: string[] = [];
afterEach(async () => {
  process.env = { ...saved };
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/**
 * A fresh temp HOME (fresh paths, so neither side's cache of config files or lookups carries
 * over) with an AWS config file of `config` and no other credentials in the environment.
 */
function awsHome(config: string): string {
  const home = mkdtempSync(join(tmpdir(), "nitric-like-oracle-"));
  dirs.push(home);
  writeFileSync(join(home, "config"), config);
  writeFileSync(join(home, "credentials"), "");
  for (const k of Object.keys(process.env)) if (/^AWS_/.test(k)) delete process.env[k];
  Object.assign(process.env, {
    HOME: home,
    AWS_CONFIG_FILE: join(home, "config"),
    AWS_SHARED_CREDENTIALS_FILE: join(home, "credentials"),
    AWS_REGION: "us-east-1",
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
    NITRIC_LIKE_AWS_TIMEOUT_MS: "10000",
  });
  return home;
}

interface Credentials {
  accessKeyId: unknown;
  secretAccessKey: unknown;
  sessionToken?: unknown;
  expiration?: Date;
  credentialScope?: unknown;
  accountId?: unknown;
}

/** What a lookup gave, as data to compare: the credentials' fields that are set, or that it failed. */
type Outcome = { credentials: Record<string, unknown> } | { rejected: true };

async function outcome(lookup: () => Promise<Credentials>): Promise<{ outcome: Outcome; said: string }> {
  try {
    const c = await lookup();
    const fields: Record<string, unknown> = {};
    for (const key of ["accessKeyId", "secretAccessKey", "sessionToken", "credentialScope", "accountId"] as const)
      if (c[key] !== undefined) fields[key] = c[key];
    if (c.expiration !== undefined) fields.expiration = String(c.expiration.getTime());
    return { outcome: { credentials: fields }, said: JSON.stringify(fields) };
  } catch (error) {
    return { outcome: { rejected: true }, said: (error as Error).message };
  }
}

const IN_AN_HOUR = new Date(Date.now() + 3_600_000).toISOString();
const AN_HOUR_AGO = new Date(Date.now() - 3_600_000).toISOString();

interface ProcessCase {
  name: string;
  /** What the credential_process prints on stdout, byte for byte. */
  prints: string;
  exit?: number;
  /** Lines added to the profile's section. */
  profile?: string;
  /** Set when ours refuses on purpose what the SDK takes: why. */
  stricter?: string;
}

const v1 = (fields: Record<string, unknown>) => JSON.stringify({ Version: 1, ...fields });
const KEYS = { AccessKeyId: "AKIDPROCESS", SecretAccessKey: "process-secret" };

const processCases: ProcessCase[] = [
  { name: "Version 1 with the keys alone", prints: v1(KEYS) },
  {
    name: "Version 1 with SessionToken, Expiration, AccountId and CredentialScope",
    prints: v1({
      ...KEYS,
      SessionToken: "process-session",
      Expiration: IN_AN_HOUR,
      AccountId: "111122223333",
      CredentialScope: "us-east-1",
    }),
  },
  { name: "Version 1 with SessionToken but no Expiration", prints: v1({ ...KEYS, SessionToken: "s" }) },
  { name: "Version 1 with Expiration but no SessionToken", prints: v1({ ...KEYS, Expiration: IN_AN_HOUR }) },
  {
    name: "an Expiration with a time zone offset",
    prints: v1({ ...KEYS, Expiration: "2999-01-01T02:00:00+02:00" }),
  },
  { name: "an Expiration in milliseconds", prints: v1({ ...KEYS, Expiration: Date.now() + 3_600_000 }) },
  { name: "an empty Expiration", prints: v1({ ...KEYS, Expiration: "" }) },
  { name: "a null Expiration", prints: v1({ ...KEYS, Expiration: null }) },
  { name: "an empty SessionToken", prints: v1({ ...KEYS, SessionToken: "" }) },
  { name: "no AccountId, the profile's aws_account_id", prints: v1(KEYS), profile: "aws_account_id = 444455556666" },
  {
    name: "an AccountId and the profile's aws_account_id",
    prints: v1({ ...KEYS, AccountId: "111122223333" }),
    profile: "aws_account_id = 444455556666",
  },
  {
    name: "an empty AccountId and the profile's aws_account_id",
    prints: v1({ ...KEYS, AccountId: "" }),
    profile: "aws_account_id = 444455556666",
  },
  { name: "JSON amid blank lines", prints: `\n\n  ${v1(KEYS)}  \n\n` },
  { name: "Version 2", prints: JSON.stringify({ Version: 2, ...KEYS }) },
  { name: "no Version", prints: JSON.stringify(KEYS) },
  { name: 'Version "1", a string', prints: JSON.stringify({ Version: "1", ...KEYS }) },
  { name: "invalid JSON", prints: `{"Version": 1, "AccessKeyId": ` },
  { name: "nothing", prints: "" },
  { name: "JSON null", prints: "null" },
  { name: "a JSON array", prints: "[1]" },
  { name: "no SecretAccessKey", prints: v1({ AccessKeyId: "AKIDPROCESS" }) },
  { name: "an Expiration in the past", prints: v1({ ...KEYS, Expiration: AN_HOUR_AGO }) },
  { name: "good credentials, then exit code 1", prints: v1(KEYS), exit: 1 },
  { name: "nothing, and exit code 2", prints: "", exit: 2 },
  {
    name: "a null AccessKeyId",
    prints: v1({ ...KEYS, AccessKeyId: null }),
    stricter: "the SDK signs with the key `null`, which AWS refuses with a message that names no credential_process",
  },
  {
    name: "an Expiration that is not a date",
    prints: v1({ ...KEYS, Expiration: "soon" }),
    stricter: "the SDK keeps an Invalid Date, which its memory of credentials never takes for expired",
  },
  {
    name: "a SessionToken that is a number",
    prints: v1({ ...KEYS, SessionToken: 42 }),
    stricter: "a token that is not a string is a broken credential_process, which AWS would refuse without naming it",
  },
];

describe("a credential_process, looked up by us and by the AWS SDK's fromProcess", () => {
  it.each(processCases)("gives what the SDK gives, or fails where it fails, when it prints $name", async (c) => {
    const home = awsHome("");
    const answer = join(home, "answer");
    writeFileSync(answer, c.prints);
    const command = `cat ${JSON.stringify(answer)}; exit ${c.exit ?? 0}`;
    writeFileSync(
      join(home, "config"),
      `[profile test]\ncredential_process = ${command}\n${c.profile ? `${c.profile}\n` : ""}`,
    );
    process.env.AWS_PROFILE = "test";
    const ours = await outcome(() => credentialProvider(deployTimeouts())());
    const sdk = await outcome(() => fromProcess({ profile: "test" })());
    if (c.stricter) {
      expect(ours.outcome, `ours: ${ours.said}`).toEqual({ rejected: true });
      expect(sdk.outcome, `the SDK: ${sdk.said}`).toHaveProperty("credentials");
    } else expect(ours.outcome, `ours: ${ours.said}; the SDK: ${sdk.said}`).toEqual(sdk.outcome);
    if ("rejected" in ours.outcome) expect(ours.said).toMatch(/^resolving AWS credentials: .*; check /);
  });
});

interface ContainerCase {
  name: string;
  status?: number;
  /** The body the agent answers. */
  body: string;
  /** Where the authorization token comes from, and what it is. */
  token?: { variable: string } | { file: string };
  /** A FULL_URI of the case's own, in place of the agent's (`PORT` is the agent's port). */
  uri?: string;
  /**
   * How the agent cuts the connection: "before" it answers, or "midway", after its status line,
   * its headers (Content-Length: 500) and the start of `body`.
   */
  cut?: "before" | "midway";
  stricter?: string;
}

const ANSWER = { AccessKeyId: "ASIACONTAINER", SecretAccessKey: "container-secret", Token: "container-session" };
const answer = (fields: Record<string, unknown>) => JSON.stringify({ ...ANSWER, Expiration: IN_AN_HOUR, ...fields });

const containerCases: ContainerCase[] = [
  { name: "credentials and no token", body: answer({}) },
  {
    name: "credentials, with the token of AWS_CONTAINER_AUTHORIZATION_TOKEN",
    body: answer({}),
    token: { variable: "tok" },
  },
  {
    name: "credentials, with the token of AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    body: answer({}),
    token: { file: "pod-token" },
  },
  {
    name: "credentials, with a token file that ends with a line break",
    body: answer({}),
    token: { file: "pod-token\n" },
  },
  { name: "credentials, with a token that holds a line break", body: answer({}), token: { variable: "a\r\nb" } },
  { name: "credentials, with a token that ends with a line feed", body: answer({}), token: { variable: "tok\n" } },
  {
    name: "credentials, with a token that holds a control character",
    body: answer({}),
    token: { variable: "a\u0001b" },
  },
  { name: "credentials, with a token beyond Latin-1", body: answer({}), token: { variable: "tök€n" } },
  { name: "credentials, with an empty token file", body: answer({}), token: { file: "" } },
  { name: "credentials with an AccountId", body: answer({ AccountId: "111122223333" }) },
  { name: "credentials with fractional seconds", body: answer({ Expiration: "2999-01-01T00:00:00.123Z" }) },
  { name: "credentials that expired", body: answer({ Expiration: AN_HOUR_AGO }) },
  { name: "credentials with an Expiration with an offset", body: answer({ Expiration: "2999-01-01T00:00:00+02:00" }) },
  { name: "credentials with an Expiration of a date alone", body: answer({ Expiration: "2999-01-01" }) },
  { name: "credentials with an Expiration that is not a date", body: answer({ Expiration: "soon" }) },
  { name: "credentials without Token", body: JSON.stringify({ ...ANSWER, Token: undefined, Expiration: IN_AN_HOUR }) },
  { name: "credentials without Expiration", body: JSON.stringify(ANSWER) },
  { name: "an Expiration in milliseconds", body: answer({ Expiration: Date.now() + 3_600_000 }) },
  { name: "HTTP 500", status: 500, body: answer({}) },
  { name: "HTTP 403 with a Code and Message", status: 403, body: JSON.stringify({ Code: "Denied", Message: "no" }) },
  { name: "a body that is not JSON", body: "<html>credentials</html>" },
  { name: "JSON null", body: "null" },
  { name: "nothing, closing the connection", body: answer({}), cut: "before" },
  { name: "part of its answer, closing the connection before the rest", body: answer({}), cut: "midway" },
  { name: "credentials, at 127.1 (127.0.0.1)", body: answer({}), uri: "http://127.1:PORT/credentials" },
  { name: "nothing, as the URI is plain HTTP to a host not loopback", body: answer({}), uri: "http://192.0.2.1/creds" },
  {
    name: "nothing, as the URI is plain HTTP to a name that starts as loopback",
    body: answer({}),
    uri: "http://127.0.0.1.example.com:PORT/creds",
  },
];

describe("a container's credentials endpoint, looked up by us and by the AWS SDK's fromHttp", () => {
  it.each(containerCases)(
    "gives what the SDK gives, or fails where it fails, when the agent answers $name",
    async (c) => {
      const asked: string[] = [];
      const agent = createServer((req, res) => {
        asked.push(`${req.method} ${req.url} ${req.headers.authorization}`);
        if (c.cut === "before") req.socket.destroy();
        else if (c.cut === "midway") {
          res.writeHead(c.status ?? 200, { "content-type": "application/json", "content-length": "500" });
          res.write(c.body.slice(0, 20), () => res.socket?.destroy());
        } else res.writeHead(c.status ?? 200, { "content-type": "application/json" }).end(c.body);
      });
      servers.push(agent);
      await new Promise<void>((r) => agent.listen(0, "127.0.0.1", r));
      const port = (agent.address() as AddressInfo).port;
      const home = awsHome("");
      process.env.AWS_CONTAINER_CREDENTIALS_FULL_URI = (c.uri ?? "http://127.0.0.1:PORT/v2/credentials?id=1").replace(
        "PORT",
        String(port),
      );
      if (c.token && "variable" in c.token) process.env.AWS_CONTAINER_AUTHORIZATION_TOKEN = c.token.variable;
      if (c.token && "file" in c.token) {
        writeFileSync(join(home, "token"), c.token.file);
        process.env.AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE = join(home, "token");
      }
      const ours = await outcome(() => credentialProvider(deployTimeouts())());
      const oursAsked = asked.splice(0);
      // As the SDK's chain makes it (credentials.ts): one try, within a second.
      const sdk = await outcome(() => fromHttp({ timeout: 1000, maxRetries: 0 })());
      if (c.stricter) {
        expect(ours.outcome, `ours: ${ours.said}`).toEqual({ rejected: true });
        expect(sdk.outcome, `the SDK: ${sdk.said}`).toHaveProperty("credentials");
      } else expect(ours.outcome, `ours: ${ours.said}; the SDK: ${sdk.said}`).toEqual(sdk.outcome);
      if ("rejected" in ours.outcome) expect(ours.said).toMatch(/^resolving AWS credentials: .*; (give|check) /);
      // Both asked the same (or neither asked), with the same path, query and token.
      expect(oursAsked).toEqual(asked);
    },
  );
});

describe("a container's authorization token file", () => {
  it("is refused when it ends with a line break, as the SDK refuses it, saying to write it without one", async () => {
    const home = awsHome("");
    writeFileSync(join(home, "token"), "pod-token\n");
    Object.assign(process.env, {
      AWS_CONTAINER_CREDENTIALS_FULL_URI: "http://127.0.0.1:9/credentials",
      AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: join(home, "token"),
    });
    await expect(credentialProvider(deployTimeouts())()).rejects.toThrow(
      `resolving AWS credentials: the container's authorization token, AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (${join(home, "token")}), holds a line break at its end, which an HTTP header cannot carry; give the token alone, written without a line break (printf '%s' TOKEN > FILE)`,
    );
  });
});
