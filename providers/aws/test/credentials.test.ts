// The credential lookup of the commands that reach AWS (src/deploy/credentials.ts) under their
// timeouts, with the AWS SDK's own chain reading real config files (in a temp HOME, never the
// user's ~/.aws) and real servers on 127.0.0.1: one that takes connections and never answers (a
// VPN or proxy that swallows the SSO portal, STS or the instance metadata service), and an SSO
// portal stand-in that answers.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { type AddressInfo, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import type { Logger } from "@nitric-like/spec";
import { programOf } from "@nitric-like/spec";
import { afterEach, describe, expect, it } from "vitest";
import { clientConfig, deployTimeouts } from "../src/deploy/calls.js";
import { credentialProvider } from "../src/deploy/credentials.js";
import { preflight } from "../src/deploy/deploy.js";

const saved = { ...process.env };
const servers: Server[] = [];
const dirs: string[] = [];
const held: Socket[] = [];
afterEach(async () => {
  process.env = { ...saved };
  for (const c of held.splice(0)) c.destroy();
  for (const s of servers.splice(0)) {
    (s as Server & { closeAllConnections?: () => void }).closeAllConnections?.();
    await new Promise((r) => s.close(r));
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A server that takes connections and never answers; `count` says how many it took. */
async function hole(): Promise<{ url: string; count: () => number }> {
  let count = 0;
  const server = createServer((socket) => {
    count += 1;
    held.push(socket);
    socket.on("error", () => {});
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, count: () => count };
}

const START_URL = "https://example.awsapps.com/start";

/** Whether process `pid` runs (a zombie no parent has reaped yet counts as ended). */
function running(pid: number): boolean {
  const stat = `/proc/${pid}/stat`;
  if (existsSync("/proc/self/stat")) {
    try {
      return readFileSync(stat, "utf8").split(") ")[1]?.[0] !== "Z";
    } catch {
      return false;
    }
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * A temp HOME with an AWS config file of `config`, an empty credentials file, and a cached SSO
 * token for START_URL (as `aws sso login` leaves it, expiring at `tokenExpires`), all the SDK reads; the environment points
 * at them and holds no other credentials.
 */
function awsHome(config: string, tokenExpires = new Date(Date.now() + 3_600_000)): void {
  const home = mkdtempSync(join(tmpdir(), "nitric-like-credentials-"));
  dirs.push(home);
  const cache = join(home, ".aws", "sso", "cache");
  mkdirSync(cache, { recursive: true });
  const expiresAt = tokenExpires.toISOString().replace(/\.\d+Z$/, "Z");
  const token = JSON.stringify({ startUrl: START_URL, region: "us-east-1", accessToken: "token", expiresAt });
  for (const key of [START_URL, "corp"])
    writeFileSync(join(cache, `${createHash("sha1").update(key).digest("hex")}.json`), token);
  writeFileSync(join(home, "config"), config);
  writeFileSync(join(home, "credentials"), "");
  for (const k of Object.keys(process.env)) if (/^AWS_/.test(k)) delete process.env[k];
  Object.assign(process.env, {
    HOME: home,
    AWS_CONFIG_FILE: join(home, "config"),
    AWS_SHARED_CREDENTIALS_FILE: join(home, "credentials"),
    AWS_REGION: "us-east-1",
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
    NITRIC_LIKE_AWS_TIMEOUT_MS: "300",
  });
}

const SSO_PROFILE = `[profile dev]
sso_session = corp
sso_account_id = 123456789012
sso_role_name = Admin
region = us-east-1

[sso-session corp]
sso_start_url = ${START_URL}
sso_region = us-east-1
`;

function lines(): { logger: Logger; said: string[] } {
  const said: string[] = [];
  return {
    said,
    logger: {
      info: (m) => said.push(m),
      warn: (m) => said.push(`warning: ${m}`),
      error: (m) => said.push(`error: ${m}`),
    },
  };
}

/** preflight's failure, and how long it took. */
async function failing(logger: Logger): Promise<{ error: Error & { exitCode?: number }; ms: number }> {
  const started = Date.now();
  const error = await preflight({ stack: "chat", action: "up", logger }).then(
    () => {
      throw new Error("preflight passed");
    },
    (e: Error) => e,
  );
  return { error, ms: Date.now() - started };
}

describe("resolving AWS credentials under the deploy commands' timeouts", () => {
  it("says it is signing in through SSO, and stops naming the profile, the SSO call and the fix when the portal never answers", async () => {
    const portal = await hole();
    awsHome(SSO_PROFILE);
    process.env.AWS_PROFILE = "dev";
    process.env.AWS_ENDPOINT_URL_SSO = portal.url;
    const { logger, said } = lines();
    const { error, ms } = await failing(logger);
    expect(ms).toBeLessThan(10_000);
    expect(said[0]).toBe(`resolving AWS credentials: profile "dev" signs in through SSO (start URL ${START_URL})`);
    expect(said).toContain(
      `warning: resolving AWS credentials (profile "dev"): SSO GetRoleCredentials at ${portal.url}: no answer for 300 ms; trying again (try 2 of 3)`,
    );
    expect(error.message).toMatch(
      new RegExp(
        `^up: resolving AWS credentials: profile "dev" signs in through SSO \\(start URL ${START_URL}\\); SSO GetRoleCredentials at ${portal.url} \\(AWS_ENDPOINT_URL_SSO\\): no answer for 300 ms \\(3 tries, \\d+ m?s in all\\); check the network connection to AWS \\(VPN, proxy, firewall\\), sign in again \\("aws sso login --profile dev"\\), or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \\(unsetting AWS_PROFILE\\) to use keys instead; on a slow link, NITRIC_LIKE_AWS_TIMEOUT_MS gives each try longer \\(in ms; now 300\\)$`,
      ),
    );
    expect(error.exitCode).toBe(1);
  }, 20_000);

  it("stops naming the role and the STS call when the STS endpoint of an assumed role never answers", async () => {
    const sts = await hole();
    awsHome(`[profile base]
aws_access_key_id = AKIAEXAMPLE
aws_secret_access_key = secret

[profile deployer]
role_arn = arn:aws:iam::123456789012:role/deployer
source_profile = base
region = us-east-1
`);
    process.env.AWS_PROFILE = "deployer";
    process.env.AWS_ENDPOINT_URL_STS = sts.url;
    const { logger, said } = lines();
    const { error, ms } = await failing(logger);
    expect(ms).toBeLessThan(10_000);
    expect(said[0]).toBe(
      'resolving AWS credentials: profile "deployer" assumes role arn:aws:iam::123456789012:role/deployer through STS, from profile "base"',
    );
    expect(error.message).toContain(
      `; STS AssumeRole at ${sts.url} (AWS_ENDPOINT_URL_STS): no answer for 300 ms (3 tries, `,
    );
    expect(error.message).toContain("or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (unsetting AWS_PROFILE)");
  }, 20_000);

  it("names the web identity role and STS when AWS_ROLE_ARN's STS never answers, and does not say to unset an AWS_PROFILE not set", async () => {
    const sts = await hole();
    awsHome("");
    const token = join(process.env.HOME as string, "web-identity-token");
    writeFileSync(token, "token");
    Object.assign(process.env, {
      AWS_ROLE_ARN: "arn:aws:iam::123456789012:role/ci",
      AWS_WEB_IDENTITY_TOKEN_FILE: token,
      AWS_ENDPOINT_URL_STS: sts.url,
    });
    const { logger, said } = lines();
    const { error } = await failing(logger);
    expect(said[0]).toBe(
      "resolving AWS credentials: AWS_ROLE_ARN arn:aws:iam::123456789012:role/ci with the web identity token of AWS_WEB_IDENTITY_TOKEN_FILE, through STS",
    );
    expect(error.message).toContain(
      `; STS AssumeRoleWithWebIdentity at ${sts.url} (AWS_ENDPOINT_URL_STS): no answer for 300 ms (3 tries, `,
    );
    expect(error.message).toContain("or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to use keys instead;");
  }, 20_000);

  it("says no credentials were found within seconds when only the instance metadata service is left and it never answers", async () => {
    const imds = await hole();
    awsHome("[profile empty]\nregion = us-east-1\n");
    process.env.AWS_PROFILE = "empty";
    process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT = imds.url;
    const { logger, said } = lines();
    const { error, ms } = await failing(logger);
    expect(imds.count()).toBeGreaterThan(0);
    expect(ms).toBeLessThan(5_000);
    expect(said[0]).toBe(
      'resolving AWS credentials: profile "empty" holds no credentials; asking the EC2 instance metadata service (IMDS)',
    );
    expect(error.message).toContain('up: AWS_PROFILE is "empty", but no credentials were found for that profile');
  }, 20_000);

  it("ends at Ctrl-C while the SSO portal is silent, with exit code 130, naming what it waited on, and tries no more", async () => {
    const portal = await hole();
    awsHome(SSO_PROFILE);
    process.env.AWS_PROFILE = "dev";
    process.env.AWS_ENDPOINT_URL_SSO = portal.url;
    delete process.env.NITRIC_LIKE_AWS_TIMEOUT_MS; // 60 s of silence: only Ctrl-C ends it soon
    const { logger } = lines();
    const waiting = failing(logger);
    while (portal.count() === 0) await new Promise((r) => setTimeout(r, 20));
    process.emit("SIGINT");
    const { error, ms } = await waiting;
    expect(ms).toBeLessThan(5_000);
    expect(error.exitCode).toBe(130);
    expect(error.message).toBe(
      `up: resolving AWS credentials: profile "dev" signs in through SSO (start URL ${START_URL}); stopped (Ctrl-C) after ${error.message.match(/after (\d+ m?s)/)?.[1]} with no credentials, waiting on SSO GetRoleCredentials at ${portal.url} (AWS_ENDPOINT_URL_SSO)`,
    );
    await new Promise((r) => setTimeout(r, 500));
    expect(portal.count()).toBe(1);
  }, 20_000);

  it("says the default profile's SSO sign-in has expired and how to sign in again, not to set AWS_PROFILE", async () => {
    awsHome(
      `[default]\nsso_start_url = ${START_URL}\nsso_region = us-east-1\nsso_account_id = 123456789012\nsso_role_name = Admin\n`,
      new Date(Date.now() - 3_600_000),
    );
    process.env.AWS_EC2_METADATA_DISABLED = "true";
    const { logger, said } = lines();
    const { error } = await failing(logger);
    expect(said[0]).toBe(`resolving AWS credentials: profile "default" signs in through SSO (start URL ${START_URL})`);
    expect(error.message).toBe(
      `up: resolving AWS credentials: profile "default" signs in through SSO (start URL ${START_URL}), and SSO gave none: The SSO session associated with this profile has expired. To refresh this SSO session run aws sso login with the corresponding profile; sign in again ("aws sso login --profile default"), or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to use keys instead`,
    );
  });

  it("still signs in through an SSO portal that answers, once for all the clients of a command", async () => {
    const asked: string[] = [];
    const portal = createHttpServer((req, res) => {
      asked.push(`${req.method} ${req.url} ${req.headers["x-amz-sso_bearer_token"]}`);
      res.writeHead(200, { "content-type": "application/json" }).end(
        JSON.stringify({
          roleCredentials: {
            accessKeyId: "ASIAFROMSSO",
            secretAccessKey: "secret",
            sessionToken: "session",
            expiration: Date.now() + 3_600_000,
          },
        }),
      );
    });
    servers.push(portal);
    await new Promise<void>((r) => portal.listen(0, "127.0.0.1", r));
    awsHome(SSO_PROFILE);
    process.env.AWS_PROFILE = "dev";
    process.env.AWS_ENDPOINT_URL_SSO = `http://127.0.0.1:${(portal.address() as AddressInfo).port}`;
    const credentials = await credentialProvider(deployTimeouts())();
    expect(credentials).toMatchObject({ accessKeyId: "ASIAFROMSSO", sessionToken: "session" });
    // Another client of the command (each makes its provider) takes the same sign-in.
    await clientConfig(undefined).credentials();
    expect(asked).toEqual(["GET /federation/credentials?account_id=123456789012&role_name=Admin token"]);
  });
  it("says which container endpoint never answered, naming its variable, its URL and the fix, rather than waiting for ever", async () => {
    const agent = await hole();
    awsHome("");
    process.env.AWS_CONTAINER_CREDENTIALS_FULL_URI = `${agent.url}/v2/credentials`;
    const { logger, said } = lines();
    const { error, ms } = await failing(logger);
    expect(agent.count()).toBe(1);
    expect(ms).toBeLessThan(5_000);
    expect(said[0]).toBe("resolving AWS credentials: asking the container's credentials endpoint");
    expect(error.message).toBe(
      `up: resolving AWS credentials: the container's credentials endpoint, AWS_CONTAINER_CREDENTIALS_FULL_URI (${agent.url}/v2/credentials): no answer for 300 ms; check that the container's credentials agent runs and answers at that URL, or unset AWS_CONTAINER_CREDENTIALS_FULL_URI and set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to use keys instead; if the agent is slow to answer, NITRIC_LIKE_AWS_TIMEOUT_MS gives it longer (in ms; now 300)`,
    );
  }, 20_000);

  it("says the container endpoint closed the connection before its answer had all come, naming its URL and the fix", async () => {
    // Its status line and headers (500 bytes announced), the start of the body, then the connection cut.
    const agent = createServer((socket) => {
      socket.on("error", () => {});
      socket.once("data", () =>
        socket.write(
          'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{"AccessKeyId":"AKIA',
          () => socket.destroy(),
        ),
      );
    });
    servers.push(agent);
    await new Promise<void>((r) => agent.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(agent.address() as AddressInfo).port}/v2/credentials`;
    awsHome("");
    process.env.AWS_CONTAINER_CREDENTIALS_FULL_URI = url;
    const { logger } = lines();
    const { error, ms } = await failing(logger);
    expect(ms).toBeLessThan(5_000);
    expect(error.message).toBe(
      `up: resolving AWS credentials: the container's credentials endpoint, AWS_CONTAINER_CREDENTIALS_FULL_URI (${url}): the connection closed before its answer had all come (20 of the 500 bytes it announced); check that the container's credentials agent runs and answers at that URL, or unset AWS_CONTAINER_CREDENTIALS_FULL_URI and set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to use keys instead`,
    );
  }, 20_000);

  it("refuses a container endpoint that is not a URL, or plain HTTP to a host not the container's, saying what to give", async () => {
    awsHome("");
    process.env.AWS_CONTAINER_CREDENTIALS_FULL_URI = "127.0.0.1 8080";
    await expect(credentialProvider(deployTimeouts())()).rejects.toThrow(
      'resolving AWS credentials: AWS_CONTAINER_CREDENTIALS_FULL_URI is "127.0.0.1 8080", which is not a URL; give the URL of the container\'s credentials agent (such as http://127.0.0.1:8080/credentials), or unset AWS_CONTAINER_CREDENTIALS_FULL_URI and set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to use keys instead',
    );
    process.env.AWS_CONTAINER_CREDENTIALS_FULL_URI = "http://example.com/credentials";
    await expect(credentialProvider(deployTimeouts())()).rejects.toThrow(
      'resolving AWS credentials: AWS_CONTAINER_CREDENTIALS_FULL_URI is "http://example.com/credentials": credentials are fetched over HTTPS, or over HTTP only from loopback',
    );
  });

  it("takes a container endpoint's credentials, sending its authorization token, and asks it once for every client", async () => {
    const asked: string[] = [];
    const agent = createHttpServer((req, res) => {
      asked.push(`${req.method} ${req.url} ${req.headers.authorization}`);
      res.writeHead(200, { "content-type": "application/json" }).end(
        JSON.stringify({
          AccessKeyId: "ASIAFROMCONTAINER",
          SecretAccessKey: "secret",
          Token: "session",
          Expiration: new Date(Date.now() + 3_600_000).toISOString(),
        }),
      );
    });
    servers.push(agent);
    await new Promise<void>((r) => agent.listen(0, "127.0.0.1", r));
    awsHome("");
    const tokenFile = join(process.env.HOME as string, "token");
    writeFileSync(tokenFile, "pod-token");
    Object.assign(process.env, {
      AWS_CONTAINER_CREDENTIALS_FULL_URI: `http://127.0.0.1:${(agent.address() as AddressInfo).port}/v1/credentials`,
      AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: tokenFile,
    });
    const first = await clientConfig("us-east-1").credentials();
    const second = await clientConfig("us-east-1").credentials();
    expect(asked).toEqual(["GET /v1/credentials pod-token"]);
    expect(first).toMatchObject({ accessKeyId: "ASIAFROMCONTAINER", sessionToken: "session" });
    expect(second).toEqual(first);
  });

  it("kills a credential_process that never finishes, with what it started, naming the profile, its program and the fix", async () => {
    awsHome("");
    const home = process.env.HOME as string;
    const pidFile = join(home, "pid");
    const script = join(home, "hang.cjs");
    writeFileSync(
      script,
      `require("node:fs").writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); setInterval(() => {}, 1000);`,
    );
    const command = `"${process.execPath}" "${script}"`;
    writeFileSync(process.env.AWS_CONFIG_FILE as string, `[profile tool]\ncredential_process = ${command}\n`);
    process.env.AWS_PROFILE = "tool";
    const { logger, said } = lines();
    const { error, ms } = await failing(logger);
    expect(ms).toBeLessThan(5_000);
    expect(said[0]).toBe('resolving AWS credentials: profile "tool" runs its credential_process');
    expect(error.message).toBe(
      `up: resolving AWS credentials: the credential_process of profile "tool" (program "${basename(process.execPath)}") did not finish within 300 ms and was killed; check that the command of its credential_process line prints its credentials and exits when run in a shell, sign in again to the tool it runs if it needs that, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (unsetting AWS_PROFILE) to use keys instead; if it needs longer (a prompt to answer), NITRIC_LIKE_AWS_TIMEOUT_MS gives it longer (in ms; now 300)`,
    );
    // The shell ran the command as a child of its own; that is killed too.
    const pid = Number(readFileSync(pidFile, "utf8"));
    await new Promise((r) => setTimeout(r, 200));
    expect(running(pid)).toBe(false);
  }, 20_000);

  it("says what a credential_process that fails printed, naming the profile, and runs it once", async () => {
    awsHome("");
    const home = process.env.HOME as string;
    const runs = join(home, "runs");
    const script = join(home, "fail.cjs");
    writeFileSync(
      script,
      `require("node:fs").appendFileSync(${JSON.stringify(runs)}, "x"); console.error("token expired: run tool login"); process.exit(3);`,
    );
    const command = `"${process.execPath}" "${script}"`;
    writeFileSync(process.env.AWS_CONFIG_FILE as string, `[default]\ncredential_process = ${command}\n`);
    // A process that ends by itself: under load Node may take longer than 300 ms to start it.
    process.env.NITRIC_LIKE_AWS_TIMEOUT_MS = "10000";
    const { logger } = lines();
    const { error } = await failing(logger);
    expect(error.message).toContain(
      `up: resolving AWS credentials: the credential_process of profile "default" (program "${basename(process.execPath)}") exited with code 3: token expired: run tool login; check that`,
    );
    expect(error.message).toContain("or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to use keys instead");
    expect(readFileSync(runs, "utf8")).toBe("x");
  }, 20_000);

  it("never says a credential_process's arguments, the variables set before it, or what it printed: only its program", async () => {
    awsHome("");
    const home = process.env.HOME as string;
    const script = join(home, "export.cjs");
    // Keys in a form that is not the credential_process JSON, as `aws-vault export` prints them.
    writeFileSync(script, `console.log("AWS_SECRET_ACCESS_KEY=out-secret-789");`);
    writeFileSync(
      process.env.AWS_CONFIG_FILE as string,
      `[profile tool]\ncredential_process = VAULT_PASS=env-secret-123 "${process.execPath}" "${script}" --token arg-secret-456\n`,
    );
    process.env.AWS_PROFILE = "tool";
    process.env.NITRIC_LIKE_AWS_TIMEOUT_MS = "10000";
    const { logger } = lines();
    const { error } = await failing(logger);
    expect(error.message).toBe(
      `up: resolving AWS credentials: the credential_process of profile "tool" (program "${basename(process.execPath)}") printed no JSON (it printed 36 characters that are not JSON; run its command in a shell to see them); check that the command of its credential_process line prints its credentials and exits when run in a shell, sign in again to the tool it runs if it needs that, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (unsetting AWS_PROFILE) to use keys instead`,
    );
    expect(error.message).not.toMatch(/secret-\d|--token|VAULT_PASS/);
  }, 20_000);

  it("names a credential_process's program by its file name alone, after any variables set before it", () => {
    expect(programOf("aws-vault export dev --format=json")).toBe("aws-vault");
    expect(programOf('TOKEN="a b" OTHER=1 /usr/local/bin/tool --token abc')).toBe("tool");
    expect(programOf('"/opt/My Tools/get creds" --profile x')).toBe("get creds");
    expect(programOf("'/opt/tool';echo hi")).toBe("tool");
    expect(programOf("  ")).toBeUndefined();
    expect(programOf("TOKEN=abc")).toBeUndefined();
  });

  it("takes the credentials of a credential_process that exits leaving an agent holding its output, at once, and leaves the agent running", async () => {
    awsHome("");
    process.env.NITRIC_LIKE_AWS_TIMEOUT_MS = "10000";
    const home = process.env.HOME as string;
    const pidFile = join(home, "agent-pid");
    const agent = join(home, "agent.cjs");
    writeFileSync(
      agent,
      `require("node:fs").writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); setTimeout(() => {}, 30000);`,
    );
    const script = join(home, "login.cjs");
    // The agent inherits the credential_process's stdout, and keeps it open after it exits.
    writeFileSync(
      script,
      `require("node:child_process").spawn(process.execPath, [${JSON.stringify(agent)}], { stdio: "inherit", detached: true }).unref();
console.log(JSON.stringify({ Version: 1, AccessKeyId: "AKIAWITHAGENT", SecretAccessKey: "secret" }));`,
    );
    writeFileSync(
      process.env.AWS_CONFIG_FILE as string,
      `[profile tool]\ncredential_process = "${process.execPath}" "${script}"\n`,
    );
    process.env.AWS_PROFILE = "tool";
    const started = Date.now();
    try {
      const credentials = await credentialProvider(deployTimeouts())();
      expect(credentials).toMatchObject({ accessKeyId: "AKIAWITHAGENT", secretAccessKey: "secret" });
      expect(Date.now() - started).toBeLessThan(5_000);
      while (!existsSync(pidFile) || readFileSync(pidFile, "utf8") === "") await new Promise((r) => setTimeout(r, 20));
      expect(running(Number(readFileSync(pidFile, "utf8")))).toBe(true);
    } finally {
      if (existsSync(pidFile)) process.kill(Number(readFileSync(pidFile, "utf8")), "SIGKILL");
    }
  }, 30_000);

  it("runs a credential_process once for all the clients of a command", async () => {
    awsHome("");
    const home = process.env.HOME as string;
    const runs = join(home, "runs");
    const script = join(home, "ok.cjs");
    writeFileSync(
      script,
      `require("node:fs").appendFileSync(${JSON.stringify(runs)}, "x"); console.log(JSON.stringify({ Version: 1, AccessKeyId: "AKIAFROMPROCESS", SecretAccessKey: "secret" }));`,
    );
    writeFileSync(
      process.env.AWS_CONFIG_FILE as string,
      `[profile tool]\ncredential_process = "${process.execPath}" "${script}"\naws_account_id = 123456789012\n`,
    );
    process.env.AWS_PROFILE = "tool";
    const made = [clientConfig("us-east-1"), clientConfig("us-east-1"), clientConfig("us-east-1")];
    const found = await Promise.all(made.map((c) => c.credentials()));
    await made[1]?.credentials();
    expect(readFileSync(runs, "utf8")).toBe("x");
    expect(found[0]).toEqual({ accessKeyId: "AKIAFROMPROCESS", secretAccessKey: "secret", accountId: "123456789012" });
    expect(found[2]).toEqual(found[0]);
  });
  it("ends at Ctrl-C while a credential_process runs, killing it, with exit code 130", async () => {
    awsHome("");
    delete process.env.NITRIC_LIKE_AWS_TIMEOUT_MS; // 60 s: only Ctrl-C ends it soon
    const home = process.env.HOME as string;
    const pidFile = join(home, "pid");
    const script = join(home, "hang.cjs");
    writeFileSync(
      script,
      `require("node:fs").writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); setInterval(() => {}, 1000);`,
    );
    writeFileSync(
      process.env.AWS_CONFIG_FILE as string,
      `[profile tool]\ncredential_process = "${process.execPath}" "${script}"\n`,
    );
    process.env.AWS_PROFILE = "tool";
    const { logger } = lines();
    const waiting = failing(logger);
    while (!existsSync(pidFile) || readFileSync(pidFile, "utf8") === "") await new Promise((r) => setTimeout(r, 20));
    process.emit("SIGINT");
    const { error, ms } = await waiting;
    expect(ms).toBeLessThan(5_000);
    expect(error.exitCode).toBe(130);
    expect(error.message).toMatch(
      /^up: resolving AWS credentials: profile "tool" runs its credential_process; stopped \(Ctrl-C\) after \d+ m?s with no credentials, waiting on the credential_process of profile "tool"$/,
    );
    await new Promise((r) => setTimeout(r, 200));
    expect(running(Number(readFileSync(pidFile, "utf8")))).toBe(false);
  }, 20_000);
});
