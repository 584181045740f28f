/**
 * The two credential sources the deploy commands look up themselves rather than through the AWS
 * SDK's chain, because the SDK's lookups of them cannot be bounded: a profile's
 * `credential_process` (the SDK runs it with `exec` and no timeout, so one that hangs holds the
 * command for ever, and cannot be ended from outside), and a container's credentials endpoint
 * (AWS_CONTAINER_CREDENTIALS_FULL_URI / _RELATIVE_URI: the SDK's request timeout there only
 * logs a warning, so an endpoint that takes the connection and never answers holds the command
 * for ever too). Each is looked up here as the SDK would, within the deploy commands' timeouts
 * (calls.ts), and a failure says what failed and how to fix it. The test
 * credential-sources-oracle.test.ts holds both equal to the SDK's own providers (fromProcess,
 * fromHttp) answer for answer; where ours refuses more, processAnswer says why.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { request as httpRequest, type IncomingMessage, validateHeaderValue } from "node:http";
import { request as httpsRequest } from "node:https";
import { programOf } from "@nitric-like/spec";
import { parseRfc3339DateTime } from "@smithy/core/serde";
import { type CallTimeouts, duration } from "./calls.js";

/** Credentials as the SDK's clients take them. */
export interface SourceCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiration?: Date;
  credentialScope?: string;
  accountId?: string;
}

/** A source that gave no credentials; the message says what happened and how to fix it. */
export class SourceFailure extends Error {
  override readonly name = "SourceFailure";
}

/** The most a credential_process or the container endpoint may print: a few hundred bytes is usual. */
const MAX_ANSWER_BYTES = 1024 * 1024;

/** How long after a credential_process exits its output may take to close (see processCredentials). */
const EXIT_GRACE_MS = 500;

/** The last `n` characters of a process's stderr, on one line, for an error message. */
function tail(text: string, n = 500): string {
  const line = text.trim().replace(/\s+/g, " ");
  return line.length > n ? `...${line.slice(-n)}` : line;
}

/**
 * The processes `root` started, and theirs, on down: from /proc on Linux, else from `ps`. The
 * shell that runs a credential_process need not exec its command (dash does not), so killing
 * the shell alone leaves the command running. (A process group of its own would end it all at
 * once, but would take it off the terminal, where a credential_process may ask for an MFA code.)
 */
function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  const add = (pid: number, ppid: number) => {
    if (!Number.isInteger(pid) || !Number.isInteger(ppid)) return;
    const list = children.get(ppid);
    if (list) list.push(pid);
    else children.set(ppid, [pid]);
  };
  if (process.platform === "linux") {
    let names: string[] = [];
    try {
      names = readdirSync("/proc");
    } catch {
      names = [];
    }
    for (const name of names) {
      if (!/^\d+$/.test(name)) continue;
      try {
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        const stat = readFileSync(`/proc/${name}/stat`, "utf8");
        add(Number(name), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
      } catch {
        // Gone since the listing.
      }
    }
  } else {
    const listed = spawnSync("ps", ["-A", "-o", "pid=,ppid="], { encoding: "utf8" }).stdout ?? "";
    for (const line of listed.split("\n")) {
      const [pid, ppid] = line.trim().split(/\s+/).map(Number);
      add(pid as number, ppid as number);
    }
  }
  const found: number[] = [];
  const next = [root];
  while (next.length > 0) {
    for (const pid of children.get(next.pop() as number) ?? []) {
      if (found.includes(pid)) continue;
      found.push(pid);
      next.push(pid);
    }
  }
  return found;
}

/** Kills `child` and every process it started, and lets go of its output. */
function kill(child: ChildProcess): void {
  child.stdout?.destroy();
  child.stderr?.destroy();
  const pid = child.pid;
  if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  if (process.platform === "win32") {
    spawnSync("taskkill", ["/pid", String(pid), "/T", "/F"], { windowsHide: true });
    return;
  }
  // The tree is read before any of it is killed: a child whose parent is gone is re-parented.
  for (const each of [pid, ...descendants(pid)]) {
    try {
      process.kill(each, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
}

/**
 * Runs profile `profile`'s credential_process `command` through the shell, as the SDK and the AWS
 * CLI do, and reads the credentials it prints (the `Version: 1` JSON of the AWS CLI's
 * documentation). A process that has not finished within the timeouts' idleMs is killed, as is
 * one still running when `signal` aborts (Ctrl-C). Its stdin is closed, so one that reads it
 * ends rather than hangs; it keeps the terminal, where it may ask for an MFA code.
 */
export function processCredentials(
  profile: string,
  command: string,
  timeouts: CallTimeouts,
  signal: AbortSignal,
  accountIdOfProfile?: string,
): Promise<SourceCredentials> {
  const quoted = JSON.stringify(profile);
  // The command line itself is never said: its arguments may hold a token (programOf).
  const program = programOf(command);
  const lead = `the credential_process of profile ${quoted}${program ? ` (program ${JSON.stringify(program)})` : ""}`;
  const check = `check that the command of its credential_process line prints its credentials and exits when run in a shell, sign in again to the tool it runs if it needs that, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY${process.env.AWS_PROFILE ? " (unsetting AWS_PROFILE)" : ""} to use keys instead`;
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new SourceFailure(`${lead} was not run: stopped`));
    const child = spawn(command, {
      shell: true,
      stdio: ["ignore", "pipe", "pipe"],
      windowsHide: true,
    });
    let stdout = "";
    let stderr = "";
    let settled = false;
    const finish = (error: Error | undefined, credentials?: SourceCredentials) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(afterExit);
      signal.removeEventListener("abort", onAbort);
      // One that finished keeps what it started (an agent it leaves running for the next time),
      // but not its output: an agent that holds it open must not hold this process open.
      if (error) kill(child);
      else {
        child.stdout?.destroy();
        child.stderr?.destroy();
      }
      if (error) reject(error);
      else resolve(credentials as SourceCredentials);
    };
    const onAbort = () => finish(new SourceFailure(`${lead} was stopped`));
    signal.addEventListener("abort", onAbort, { once: true });
    const timer = setTimeout(() => {
      // One that has exited did finish: its answer is what it printed (see "exit" below).
      if (child.exitCode !== null || child.signalCode !== null) return ended(child.exitCode, child.signalCode);
      finish(
        new SourceFailure(
          `${lead} did not finish within ${duration(timeouts.idleMs)} and was killed${stderr.trim() ? ` (it said: ${tail(stderr)})` : ""}; ${check}; if it needs longer (a prompt to answer), ${timeouts.variable} gives it longer (in ms; now ${timeouts.idleMs})`,
        ),
      );
    }, timeouts.idleMs);
    child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      if (stdout.length > MAX_ANSWER_BYTES)
        finish(new SourceFailure(`${lead} printed more than ${MAX_ANSWER_BYTES} bytes and was killed; ${check}`));
    });
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      stderr = (stderr + chunk).slice(-4096);
    });
    child.on("error", (error) => finish(new SourceFailure(`${lead} could not be run (${error.message}); ${check}`)));
    // Its output closes as it exits, unless what it started (an agent left running) holds it
    // open: then what it printed before it exited is its answer, read a moment after its exit.
    // (The SDK's fromProcess waits for the output to close, for as long as the agent runs.)
    let afterExit: NodeJS.Timeout | undefined;
    child.on("exit", (code, killedBy) => {
      afterExit = setTimeout(() => ended(code, killedBy), EXIT_GRACE_MS);
    });
    child.on("close", (code, killedBy) => ended(code, killedBy));
    const ended = (code: number | null, killedBy: NodeJS.Signals | null) => {
      if (code !== 0) {
        const how = code === null ? `was ended by ${killedBy}` : `exited with code ${code}`;
        return finish(new SourceFailure(`${lead} ${how}${stderr.trim() ? `: ${tail(stderr)}` : ""}; ${check}`));
      }
      try {
        finish(undefined, processAnswer(stdout, accountIdOfProfile));
      } catch (error) {
        finish(new SourceFailure(`${lead} ${(error as Error).message}; ${check}`));
      }
    };
  });
}

/**
 * The credentials in a credential_process's output, as the SDK's fromProcess reads them (the
 * oracle test, credential-sources-oracle.test.ts, holds the two equal): an optional field that is
 * empty, null or absent is left out. Throws saying what is wrong with it, and, unlike the SDK,
 * also when a field that is set is not a string, or Expiration is not a date: the SDK would sign
 * with a key `null`, which AWS refuses without naming the credential_process, and would keep an
 * Invalid Date, which its memory of credentials never takes for expired.
 */
function processAnswer(stdout: string, accountIdOfProfile: string | undefined): SourceCredentials {
  let data: Record<string, unknown>;
  try {
    data = JSON.parse(stdout.trim());
  } catch {
    // What it printed is not quoted: a credential_process's output may hold keys in another
    // form (`aws-vault export` prints AWS_SECRET_ACCESS_KEY=... lines).
    throw new Error(
      `printed no JSON (${stdout.trim() ? `it printed ${stdout.trim().length} characters that are not JSON; run its command in a shell to see them` : "it printed nothing"})`,
    );
  }
  if (typeof data !== "object" || data === null) throw new Error("printed JSON that is not an object");
  if (data.Version !== 1) throw new Error(`printed "Version": ${JSON.stringify(data.Version)}, not 1`);
  if (typeof data.AccessKeyId !== "string" || typeof data.SecretAccessKey !== "string")
    throw new Error('printed no "AccessKeyId" and "SecretAccessKey" strings');
  const optional = (field: string): string | undefined => {
    const value = data[field];
    if (!value) return undefined;
    if (typeof value !== "string") throw new Error(`printed a ${JSON.stringify(field)} that is not a string`);
    return value;
  };
  let expiration: Date | undefined;
  if (data.Expiration) {
    // A string, or (as the SDK takes it too) a number of milliseconds since 1970.
    expiration = new Date(data.Expiration as string | number);
    if (Number.isNaN(expiration.getTime()))
      throw new Error(`printed an "Expiration" that is not a date (${JSON.stringify(data.Expiration)})`);
    if (expiration.getTime() < Date.now())
      throw new Error(`printed credentials that expired at ${expiration.toISOString()}`);
  }
  const sessionToken = optional("SessionToken");
  const credentialScope = optional("CredentialScope");
  const accountId = optional("AccountId") ?? accountIdOfProfile;
  return {
    accessKeyId: data.AccessKeyId,
    secretAccessKey: data.SecretAccessKey,
    ...(sessionToken ? { sessionToken } : {}),
    ...(expiration ? { expiration } : {}),
    ...(credentialScope ? { credentialScope } : {}),
    ...(accountId ? { accountId } : {}),
  };
}

/** The container endpoint variable that is set (RELATIVE first, as the SDK takes it), or undefined. */
export function containerVariable(): string | undefined {
  return ["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"].find((v) =>
    Boolean(process.env[v]),
  );
}

/** The host ECS's agent answers on, which AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is a path of. */
const ECS_HOST = "169.254.170.2";

/** Whether plain HTTP may carry credentials to `host`: loopback, or ECS's and EKS's agents (the SDK's rule). */
function localHost(host: string): boolean {
  if (["localhost", "[::1]", ECS_HOST, "169.254.170.23", "[fd00:ec2::23]"].includes(host)) return true;
  const parts = host.split(".");
  return parts.length === 4 && parts[0] === "127" && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255);
}

/**
 * The credentials of the container's credentials endpoint (ECS's agent, EKS Pod Identity's, or
 * any server AWS_CONTAINER_CREDENTIALS_FULL_URI names), asked as the SDK asks it (with the token
 * of AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE or _TOKEN), once: no connection within the
 * timeouts' connectMs, or silence for their idleMs, ends it, as does `signal` (Ctrl-C).
 */
export async function containerCredentials(timeouts: CallTimeouts, signal: AbortSignal): Promise<SourceCredentials> {
  const variable = containerVariable();
  if (!variable) throw new SourceFailure("no container credentials endpoint is set");
  const value = process.env[variable] as string;
  const unset = `or unset ${variable} and set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to use keys instead`;
  const text = variable.endsWith("RELATIVE_URI") ? `http://${ECS_HOST}${value}` : value;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new SourceFailure(
      `${variable} is ${JSON.stringify(value)}, which is not a URL; give the URL of the container's credentials agent${variable.endsWith("RELATIVE_URI") ? " as a path (/v2/credentials/...)" : " (such as http://127.0.0.1:8080/credentials)"}, ${unset}`,
    );
  }
  if (url.protocol !== "https:" && !(url.protocol === "http:" && localHost(url.hostname)))
    throw new SourceFailure(
      `${variable} is ${JSON.stringify(value)}: credentials are fetched over HTTPS, or over HTTP only from loopback (127.0.0.0/8, [::1]) or the ECS and EKS agents (${ECS_HOST}, 169.254.170.23, [fd00:ec2::23]); give such a URL, ${unset}`,
    );
  const at = `the container's credentials endpoint, ${variable} (${url.href})`;
  const fix = `check that the container's credentials agent runs and answers at that URL, ${unset}`;
  const headers: Record<string, string> = {};
  const tokenFile = process.env.AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE;
  let token = process.env.AWS_CONTAINER_AUTHORIZATION_TOKEN;
  if (tokenFile) {
    try {
      // Read as it is, not trimmed: the SDK's fromHttp sends the file's content unchanged, so a
      // line break in it, the last one too, fails there (Node refuses the header); refused here
      // too, with the fix, so a file that works here works for the SDK in the user's code.
      token = await readFile(tokenFile, "utf8");
    } catch (error) {
      throw new SourceFailure(
        `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (${tokenFile}) could not be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); give the file the container's agent wrote, or unset it`,
      );
    }
  }
  // An empty token file still sends its (empty) header, as the SDK sends it; an empty variable does not.
  if (token !== undefined && (tokenFile || token)) {
    const from = tokenFile
      ? `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (${tokenFile})`
      : "AWS_CONTAINER_AUTHORIZATION_TOKEN";
    if (/[\r\n]/.test(token))
      throw new SourceFailure(
        `the container's authorization token, ${from}, holds a line break${/^[^\r\n]*(\r?\n)$/.test(token) ? " at its end" : ""}, which an HTTP header cannot carry; give the token alone${tokenFile ? ", written without a line break (printf '%s' TOKEN > FILE)" : ""}`,
      );
    try {
      validateHeaderValue("Authorization", token);
    } catch {
      throw new SourceFailure(
        `the container's authorization token, ${from}, holds a character an HTTP header cannot carry (a control character, or one beyond Latin-1); give the token the container's agent gave`,
      );
    }
    headers.Authorization = token;
  }
  // Settled once, by whichever comes first: the answer's end, the connection's close or error
  // (before the answer, or part way through it: a response then gets no `end`), a timeout, or
  // `signal`. Whatever comes after is ignored.
  const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    let connected = false;
    let settled = false;
    let response: IncomingMessage | undefined;
    const chunks: Buffer[] = [];
    let received = 0;
    const slow = `; if the agent is slow to answer, ${timeouts.variable} gives it longer (in ms; now ${timeouts.idleMs})`;
    const settle = (outcome: { status: number; body: string } | SourceFailure) => {
      if (settled) return;
      settled = true;
      clearTimeout(connectTimer);
      if (outcome instanceof SourceFailure) {
        req.destroy();
        reject(outcome);
      } else resolve(outcome);
    };
    const fail = (why: string, timedOut = false) =>
      settle(new SourceFailure(`${at}: ${why}; ${fix}${timedOut ? slow : ""}`));
    /** The connection is gone: the answer is whole (its `end` is due), or it was cut short. */
    const closed = (code?: string) => {
      if (settled) return;
      if (signal.aborted) return settle(new SourceFailure(`${at}: stopped`));
      if (response?.complete) return settle({ status: response.statusCode ?? 0, body: answerText() });
      const why = code ? ` (${code})` : "";
      if (!response) return fail(connected ? `closed the connection without answering${why}` : `unreachable${why}`);
      const announced = Number(response.headers["content-length"]);
      const got = Number.isInteger(announced)
        ? `${received} of the ${announced} bytes it announced`
        : `after ${received} bytes`;
      fail(`the connection closed before its answer had all come (${got})`);
    };
    const answerText = () => Buffer.concat(chunks).toString("utf8");
    const req = (url.protocol === "https:" ? httpsRequest : httpRequest)(url, {
      method: "GET",
      headers,
      signal,
      timeout: timeouts.idleMs,
    });
    const connectTimer = setTimeout(
      () => fail(`no connection within ${duration(timeouts.connectMs)}`, true),
      timeouts.connectMs,
    );
    req.on("socket", (socket) => {
      const connectedNow = () => {
        connected = true;
        clearTimeout(connectTimer);
      };
      if (!socket.connecting) connectedNow();
      else socket.once(url.protocol === "https:" ? "secureConnect" : "connect", connectedNow);
    });
    req.on("timeout", () =>
      fail(
        connected ? `no answer for ${duration(timeouts.idleMs)}` : `no connection within ${duration(timeouts.idleMs)}`,
        true,
      ),
    );
    req.on("error", (error: NodeJS.ErrnoException) => closed(error.code ?? error.message));
    req.on("close", () => {
      // With an answer begun, its own close (below) says how it ended.
      if (!response) closed();
    });
    req.on("response", (res: IncomingMessage) => {
      response = res;
      clearTimeout(connectTimer);
      res.on("data", (chunk: Buffer) => {
        chunks.push(chunk);
        received += chunk.length;
        if (received > MAX_ANSWER_BYTES) fail(`answered more than ${MAX_ANSWER_BYTES} bytes`);
      });
      res.on("end", () => settle({ status: res.statusCode ?? 0, body: answerText() }));
      res.on("error", () => closed());
      res.on("close", () => closed());
    });
    req.end();
  });
  let data: Record<string, unknown> | undefined;
  try {
    data = JSON.parse(body);
  } catch {
    data = undefined;
  }
  if (status !== 200) {
    const said = typeof data?.Message === "string" ? `: ${data.Code ? `${data.Code}: ` : ""}${data.Message}` : "";
    throw new SourceFailure(`${at} answered HTTP ${status}${said}; ${fix}`);
  }
  const fields = ["AccessKeyId", "SecretAccessKey", "Token", "Expiration"];
  if (!data || typeof data !== "object" || fields.some((f) => typeof data?.[f] !== "string"))
    throw new SourceFailure(`${at} answered without the string fields ${fields.join(", ")}; ${fix}`);
  let expiration: Date;
  try {
    // RFC 3339 in UTC, as the SDK's fromHttp parses it, with the SDK's own parser.
    expiration = parseRfc3339DateTime(data.Expiration as string) as Date;
  } catch {
    throw new SourceFailure(
      `${at} answered an Expiration that is not an RFC 3339 date and time in UTC, such as 2030-01-01T00:00:00Z (${JSON.stringify(data.Expiration)}); ${fix}`,
    );
  }
  // No AccountId, even when the agent answers one: the SDK's fromHttp gives none, and one given
  // sends DynamoDB's calls to its account endpoint.
  return {
    accessKeyId: data.AccessKeyId as string,
    secretAccessKey: data.SecretAccessKey as string,
    sessionToken: data.Token as string,
    expiration,
  };
}
