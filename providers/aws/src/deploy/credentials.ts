/**
 * The credentials of the commands that reach AWS, looked up under their timeouts (calls.ts). The
 * AWS SDK's own chain does the looking up (environment, config and credentials files, SSO,
 * assume-role, web identity, process, container and instance metadata); what is added here is
 * what it leaves out: its SSO and SSO OIDC clients take nothing of the calling client's request
 * handler and would wait for ever on a portal a VPN or proxy swallows, saying nothing; its STS
 * client would take 60 s of silence on each of its 3 tries, saying nothing either; and its
 * failures name neither the profile nor where the lookup had gone.
 */
import { defaultProvider } from "@aws-sdk/credential-provider-node";
import type { Logger } from "@nitric-like/spec";
import { loadSharedConfigFiles, loadSsoSessionData } from "@smithy/core/config";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import {
  type CallTimeouts,
  duration,
  endpointVariable,
  interruptible,
  isTimeout,
  origin,
  requestHandlerOptions,
} from "./calls.js";
import { containerCredentials, containerVariable, processCredentials, SourceFailure } from "./credential-sources.js";

/** Where a profile's credentials come from, as the user should hear it. */
export interface CredentialSource {
  /** The profile (AWS_PROFILE, else "default"); undefined for the environment's keys. */
  profile: string | undefined;
  /** The kind of source, for the progress line and the fix. */
  kind: "environment" | "keys" | "sso" | "assume-role" | "web-identity" | "process" | "metadata";
  /** What it is, in words: `profile "dev" signs in through SSO (start URL https://...)`. */
  words: string;
  /** For a profile whose credentials come from its credential_process: the command, and its aws_account_id. */
  process?: { command: string; accountId?: string | undefined };
}

/** A value of a profile or sso-session section, read as data (a name is never an object key of ours). */
function entry(
  sections: Record<string, Record<string, string | undefined>>,
  name: string,
): Record<string, string | undefined> | undefined {
  return Object.hasOwn(sections, name) ? sections[name] : undefined;
}

/**
 * Where the SDK's chain will take credentials from, read from the environment and the AWS config
 * and credentials files as the SDK reads them (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE).
 */
export async function credentialSource(): Promise<CredentialSource> {
  const named = process.env.AWS_PROFILE;
  if (!named && process.env.AWS_ACCESS_KEY_ID && process.env.AWS_SECRET_ACCESS_KEY)
    return { profile: undefined, kind: "environment", words: "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" };
  const profile = named || "default";
  const quoted = JSON.stringify(profile);
  let files: Awaited<ReturnType<typeof loadSharedConfigFiles>> = { configFile: {}, credentialsFile: {} };
  let sessions: Awaited<ReturnType<typeof loadSsoSessionData>> = {};
  try {
    files = await loadSharedConfigFiles();
    sessions = await loadSsoSessionData();
  } catch {
    // Files the SDK cannot read: its chain says so when it looks.
  }
  const section = {
    ...(entry(files.configFile, profile) ?? {}),
    ...(entry(files.credentialsFile, profile) ?? {}),
  };
  if (section.aws_access_key_id) return { profile, kind: "keys", words: `profile ${quoted} (its keys)` };
  const session = section.sso_session ? entry(sessions, section.sso_session) : undefined;
  const startUrl = session?.sso_start_url ?? section.sso_start_url;
  if (section.sso_session || startUrl)
    return {
      profile,
      kind: "sso",
      words: `profile ${quoted} signs in through SSO${startUrl ? ` (start URL ${startUrl})` : ""}`,
    };
  if (section.role_arn && section.web_identity_token_file)
    return {
      profile,
      kind: "web-identity",
      words: `profile ${quoted} assumes role ${section.role_arn} with a web identity token through STS`,
    };
  if (section.role_arn) {
    const from = section.source_profile
      ? `, from profile ${JSON.stringify(section.source_profile)}`
      : section.credential_source
        ? `, from ${section.credential_source}`
        : "";
    return {
      profile,
      kind: "assume-role",
      words: `profile ${quoted} assumes role ${section.role_arn} through STS${from}`,
    };
  }
  if (section.credential_process)
    return {
      profile,
      kind: "process",
      words: `profile ${quoted} runs its credential_process`,
      process: { command: section.credential_process, accountId: section.aws_account_id },
    };
  if (!named && process.env.AWS_WEB_IDENTITY_TOKEN_FILE && process.env.AWS_ROLE_ARN)
    return {
      profile: undefined,
      kind: "web-identity",
      words: `AWS_ROLE_ARN ${process.env.AWS_ROLE_ARN} with the web identity token of AWS_WEB_IDENTITY_TOKEN_FILE, through STS`,
    };
  const container =
    process.env.AWS_CONTAINER_CREDENTIALS_FULL_URI || process.env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI;
  const imdsOff = ![undefined, "", "false"].includes(process.env.AWS_EC2_METADATA_DISABLED);
  const asking = container
    ? "asking the container's credentials endpoint"
    : imdsOff
      ? "the EC2 instance metadata service is off (AWS_EC2_METADATA_DISABLED)"
      : "asking the EC2 instance metadata service (IMDS)";
  return {
    profile: named ? profile : undefined,
    kind: "metadata",
    words: `${named ? `profile ${quoted} ${Object.keys(section).length === 0 ? "is not in the AWS config or credentials file" : "holds no credentials"}; ` : ""}${asking}`,
  };
}

/** A try of the credential lookup's own AWS calls (SSO, SSO OIDC, STS) that got no answer or no connection. */
interface FailedTry {
  call: string;
  endpoint: string;
  /** Why: a timeout in words, or the connection's error code. */
  why: string;
  timedOut: boolean;
  attempt: number;
}

/** A request as the SDK's clients hand it to their request handler. */
type HttpRequest = Parameters<NodeHttpHandler["handle"]>[0];

/** The call a request of the SDK's credential clients is: by its path (SSO, SSO OIDC) or its Action (STS). */
function callOf(request: HttpRequest): string {
  if (request.path?.startsWith("/federation/credentials")) return "SSO GetRoleCredentials";
  if (request.path === "/token") return "SSO OIDC CreateToken";
  const action = typeof request.body === "string" ? /(?:^|&)Action=([A-Za-z]+)/.exec(request.body)?.[1] : undefined;
  return action ? `STS ${action}` : `a call to ${request.hostname}`;
}

/** `<call> at <endpoint>`, with the endpoint variable that sent it away from AWS when one did. */
function withVariable(callAt: string): string {
  const service = callAt.startsWith("SSO OIDC")
    ? "SSO_OIDC"
    : callAt.startsWith("SSO")
      ? "SSO"
      : callAt.startsWith("STS")
        ? "STS"
        : undefined;
  const variable = service === undefined ? undefined : endpointVariable(service, undefined);
  return variable ? `${callAt} (${variable})` : callAt;
}

/**
 * The request handler of the SDK's credential clients: the deploy commands' timeouts, and each
 * try that failed noted (and said, when the SDK tries again), so a lookup that fails can say
 * where it went.
 */
class CredentialRequests extends NodeHttpHandler {
  /** The last try that failed, since the lookup began. */
  failed: FailedTry | undefined;
  /** The call a try is waiting on now. */
  waiting: string | undefined;
  /**
   * Set once Ctrl-C stopped the lookup: the try it ended fails and no more are made (the SDK
   * would take the ended connection for a lost one and try again, keeping the process alive).
   */
  stopped = false;
  /** Where a try that failed and is made again is said: the logger of the provider that looks up now. */
  said: (line: string) => void = () => {};
  constructor(private readonly timeouts: CallTimeouts) {
    super(requestHandlerOptions(timeouts));
  }

  override async handle(
    request: HttpRequest,
    options?: Parameters<NodeHttpHandler["handle"]>[1],
  ): ReturnType<NodeHttpHandler["handle"]> {
    const endpoint = origin(request) ?? request.hostname;
    if (this.stopped) throw new Error("stopped (Ctrl-C)");
    const call = callOf(request);
    this.waiting = `${call} at ${endpoint}`;
    try {
      const answered = await super.handle(request, options);
      this.failed = undefined;
      return answered;
    } catch (error) {
      if (this.stopped) throw error;
      const code = (error as { code?: string }).code;
      const timedOut = isTimeout(error);
      if (timedOut || code) {
        const connecting = /did not establish a connection/i.test((error as Error).message ?? "");
        const why = timedOut
          ? connecting
            ? `no connection within ${duration(this.timeouts.connectMs)}`
            : `no answer for ${duration(this.timeouts.idleMs)}`
          : `unreachable (${code})`;
        const tries = /attempt=(\d+); max=(\d+)/.exec(request.headers["amz-sdk-request"] ?? "");
        const attempt = tries ? Number(tries[1]) : 1;
        this.failed = { call, endpoint, why, timedOut, attempt };
        if (tries && attempt < Number(tries[2]))
          this.said(`${call} at ${endpoint}: ${why}; trying again (try ${attempt + 1} of ${tries[2]})`);
      }
      throw error;
    } finally {
      this.waiting = undefined;
    }
  }

  /** Ends the try under way, and refuses any more. */
  stop(): void {
    this.stopped = true;
    this.destroy();
  }
}

/** A credential lookup that failed on the network, or that Ctrl-C stopped; its message says what to do. */
export class CredentialLookupError extends Error {
  override readonly name = "CredentialLookupError";
  readonly userFacing = true;
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** What to do about a source that could not be reached. */
function fix(source: CredentialSource): string {
  const keys = `or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY${process.env.AWS_PROFILE ? " (unsetting AWS_PROFILE)" : ""} to use keys instead`;
  const profile = source.profile ?? "default";
  switch (source.kind) {
    case "sso":
      return `check the network connection to AWS (VPN, proxy, firewall), sign in again ("aws sso login --profile ${profile}"), ${keys}`;
    case "assume-role":
    case "web-identity":
      return `check the network connection to AWS (VPN, proxy, firewall, HTTPS_PROXY), ${keys}`;
    default:
      return `check the network connection to AWS (VPN, proxy, firewall), ${keys}`;
  }
}

/** Credentials as the SDK's clients take them. */
type Credentials = Awaited<ReturnType<ReturnType<typeof defaultProvider>>>;

/**
 * One credential lookup, shared by every provider credentialProvider makes under the same
 * environment and timeouts: each AWS SDK client asks its own provider, and the SDK's chain keeps
 * what it found only within one chain, so with a provider each, `up`'s clients (its preflight's,
 * its deploy's, ACM's and Route 53's) each signed in through SSO, or ran the credential_process,
 * again.
 */
interface SharedLookup {
  /** The SDK's chain, with its own memory of what it found (until 5 minutes before they expire). */
  chain: ReturnType<typeof defaultProvider>;
  requests: CredentialRequests;
  /** Aborted by Ctrl-C: ends a credential_process still running, a container request still open. */
  stop: AbortController;
  /** What a source looked up here (credential-sources.ts) gave, and the lookup of it under way. */
  found?: Credentials;
  finding?: Promise<Credentials> | undefined;
  /** What that lookup waits on, for Ctrl-C's message. */
  waiting?: string | undefined;
}

const lookups = new Map<string, SharedLookup>();

/** What a lookup depends on: the timeouts, the region, and the environment the SDK reads (AWS_*, the home folder). */
function lookupKey(timeouts: CallTimeouts, region: string | undefined): string {
  const env = Object.keys(process.env)
    .filter((k) => k.startsWith("AWS_") || ["HOME", "USERPROFILE", "HOMEDRIVE", "HOMEPATH"].includes(k))
    .sort()
    .map((k) => [k, process.env[k]]);
  return JSON.stringify([timeouts, region ?? null, env]);
}

/** Whether credentials are missing, or due to be fetched again (within 5 minutes of expiring, as the SDK has it). */
function stale(credentials: Credentials | undefined): boolean {
  return (
    !credentials || (credentials.expiration !== undefined && credentials.expiration.getTime() - Date.now() < 300_000)
  );
}

/**
 * The source `source` is when it is one credential-sources.ts looks up rather than the SDK's
 * chain: a profile's credential_process, or (when nothing before it in the chain has
 * credentials) a container's credentials endpoint.
 */
function ownSource(source: CredentialSource): "process" | "container" | undefined {
  if (source.kind === "process" && source.process) return "process";
  // The SDK's web identity link (AWS_WEB_IDENTITY_TOKEN_FILE) comes before the container's.
  const webIdentity = Boolean(process.env.AWS_WEB_IDENTITY_TOKEN_FILE && process.env.AWS_ROLE_ARN);
  if (source.kind === "metadata" && containerVariable() && !webIdentity) return "container";
  return undefined;
}

/** `source`'s credentials through credential-sources.ts, kept in `shared` until they are stale. */
function ownLookup(
  shared: SharedLookup,
  kind: "process" | "container",
  source: CredentialSource,
  timeouts: CallTimeouts,
): Promise<Credentials> {
  if (!stale(shared.found)) return Promise.resolve(shared.found as Credentials);
  if (!shared.finding) {
    const profile = source.profile ?? "default";
    shared.waiting =
      kind === "process"
        ? `the credential_process of profile ${JSON.stringify(profile)}`
        : `the container's credentials endpoint, ${containerVariable()}`;
    const finding =
      kind === "process"
        ? processCredentials(
            profile,
            source.process?.command as string,
            timeouts,
            shared.stop.signal,
            source.process?.accountId,
          )
        : containerCredentials(timeouts, shared.stop.signal);
    shared.finding = finding
      .then((credentials) => {
        shared.found = credentials as Credentials;
        return shared.found;
      })
      .finally(() => {
        shared.finding = undefined;
        shared.waiting = undefined;
      });
  }
  return shared.finding;
}

/**
 * The SDK's default credential chain with the deploy commands' timeouts: its SSO, SSO OIDC and
 * STS clients use them (a try that gets no answer is said on `logger`, and the SDK tries again,
 * 3 tries in all), and the instance metadata service gets as long as the SDK gives it (1 s) or
 * the timeout when shorter. A profile's credential_process and a container's credentials endpoint
 * are looked up by credential-sources.ts instead, within the timeouts (the SDK's lookups of them
 * can wait for ever). Every provider made under the same environment, timeouts and region shares
 * one lookup, so a command signs in, or runs a credential_process, once, however many clients it
 * makes. A lookup that fails on the network or times out throws a CredentialLookupError naming
 * the profile, the call or process, where it went and the fix; Ctrl-C while it waits ends it
 * (exit 130), unless `interruptible` is false. Other failures (no credentials anywhere) are the
 * SDK's own errors, which the deploy commands explain (deploy.ts).
 */
export function credentialProvider(
  timeouts: CallTimeouts,
  options: { region?: string | undefined; logger?: Logger | undefined; interruptible?: boolean } = {},
): (properties?: Record<string, unknown>) => Promise<Credentials> {
  let source: CredentialSource | undefined;
  const said = (line: string) =>
    options.logger?.warn(
      `resolving AWS credentials${source?.profile ? ` (profile ${JSON.stringify(source.profile)})` : ""}: ${line}`,
    );
  return async (properties) => {
    source ??= await credentialSource();
    const key = lookupKey(timeouts, options.region);
    let shared = lookups.get(key);
    if (!shared) {
      const requests = new CredentialRequests(timeouts);
      const chain = defaultProvider({
        clientConfig: {
          requestHandler: requests,
          ...(options.region ? { region: options.region } : {}),
        },
        // IMDS: the SDK's own 1 s and no retries, shorter when the timeout is.
        timeout: Math.min(1000, timeouts.connectMs),
        maxRetries: 0,
      });
      shared = { chain, requests, stop: new AbortController() };
      lookups.set(key, shared);
    }
    const { requests } = shared;
    requests.said = said;
    requests.failed = undefined;
    const own = ownSource(source);
    const started = Date.now();
    try {
      const lookup = own ? ownLookup(shared, own, source, timeouts) : shared.chain(properties as never);
      return await (options.interruptible === false ? lookup : interruptible(lookup));
    } catch (error) {
      const failed = requests.failed as FailedTry | undefined;
      const interrupted = (error as Error)?.name === "CallInterrupted";
      if (error instanceof SourceFailure)
        throw new CredentialLookupError(`resolving AWS credentials: ${error.message}`);
      if (!failed && !interrupted) {
        // A profile that signs in through SSO, whose sign-in has lapsed (or was never made), or
        // whose role SSO refuses: the SDK's reason, the profile, and how to sign in again. Said
        // so whether AWS_PROFILE names the profile or it is the default one.
        const message = (error as Error)?.message ?? String(error);
        if (source.kind === "sso" && !/Could not load credentials from any providers/i.test(message)) {
          const profile = source.profile ?? "default";
          throw new CredentialLookupError(
            `resolving AWS credentials: ${source.words}, and SSO gave none: ${message.trim().replace(/\.$/, "")}; sign in again ("aws sso login --profile ${profile}"), or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY${process.env.AWS_PROFILE ? " (unsetting AWS_PROFILE)" : ""} to use keys instead`,
          );
        }
        throw error;
      }
      const waitingOn = requests.waiting ? withVariable(requests.waiting) : shared.waiting;
      if (interrupted) {
        // What the lookup left waiting (a try still open, a process still running) is ended
        // with it, and the lookup is not shared any more.
        requests.stop();
        shared.stop.abort();
        if (lookups.get(key) === shared) lookups.delete(key);
      }
      const lead = `resolving AWS credentials: ${source.words}`;
      if (interrupted)
        throw new CredentialLookupError(
          `${lead}; stopped (Ctrl-C) after ${duration(Date.now() - started)} with no credentials${waitingOn ? `, waiting on ${waitingOn}` : ""}`,
          130,
        );
      const f = failed as FailedTry;
      const tries = f.attempt > 1 ? ` (${f.attempt} tries, ${duration(Date.now() - started)} in all)` : "";
      const slow = f.timedOut
        ? `; on a slow link, ${timeouts.variable} gives each try longer (in ms; now ${timeouts.idleMs})`
        : "";
      throw new CredentialLookupError(
        `${lead}; ${withVariable(`${f.call} at ${f.endpoint}`)}: ${f.why}${tries}; ${fix(source)}${slow}`,
      );
    }
  };
}
