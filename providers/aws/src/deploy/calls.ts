/**
 * What every AWS SDK client of the commands (`up`, `down`, `outputs`, `connect`, `secret put`,
 * `logs`) shares: how long a request may go without an answer before it counts as failed, and,
 * for a call that failed so or that Ctrl-C stopped while it hung, which call it was, to which
 * endpoint, after how long. The SDK's own default waits for ever: a proxy or captive portal that
 * takes the connection and never answers held `up` with nothing said.
 */
import type { Logger } from "@nitric-like/spec";
import { credentialProvider } from "./credentials.js";

/** How long a request may wait, and the variable that set it. */
export interface CallTimeouts {
  /** For its TCP connection. */
  connectMs: number;
  /** Without a byte going either way, once connected (the whole request, not only its answer). */
  idleMs: number;
  /** The environment variable that changes both. */
  variable: string;
}

/**
 * The timeouts `variable` sets (milliseconds, both), else `fallback`; a value that is not a
 * whole number of milliseconds above 0 is refused, naming the variable.
 */
export function callTimeouts(variable: string, fallback: { connectMs: number; idleMs: number }): CallTimeouts {
  const text = process.env[variable];
  if (text === undefined || text.trim() === "") return { ...fallback, variable };
  const ms = Number(text);
  // Node's timers hold at most MAX_TIMER_MS: a longer one fires at once.
  if (!Number.isSafeInteger(ms) || ms <= 0 || ms > MAX_TIMER_MS) {
    throw new CallSetupError(
      `${variable} is ${JSON.stringify(text)}: give how long an AWS request may wait for an answer, in milliseconds, a whole number from 1 to ${MAX_TIMER_MS} such as ${fallback.idleMs}, or unset it`,
    );
  }
  return { connectMs: ms, idleMs: ms, variable };
}

/** The longest delay Node's timers take (about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A bad timeout variable; the CLI prints its message. */
export class CallSetupError extends Error {
  override readonly name = "CallSetupError";
  readonly userFacing = true;
}

/**
 * The timeouts of the deploy commands' clients (CloudFormation, S3, DynamoDB, ACM, Route 53,
 * Secrets Manager): NITRIC_LIKE_AWS_TIMEOUT_MS sets both, else 10 s to connect and 60 s of silence.
 * A TCP connection to AWS takes well under a second on any working link; 10 s allows the lost
 * SYNs a bad link retries (at 1 s and 3 s). The 60 s is the AWS CLI's own read timeout, and it is
 * a limit on silence, not on the request's length: an upload of a function's zip (1 MB and more)
 * on a slow link keeps handing bytes to the connection as the link sends them, so it is never
 * cut, however long it takes; the silence left is the link sending what the machine's send buffer
 * holds (sized to the link: seconds) and S3's answer. A request that hangs is tried again by the
 * SDK (3 tries in all), each try said.
 */
export function deployTimeouts(): CallTimeouts {
  return callTimeouts("NITRIC_LIKE_AWS_TIMEOUT_MS", { connectMs: 10_000, idleMs: 60_000 });
}

/**
 * A client's request handler options for `timeouts`: `connectionTimeout` for the connection, and
 * `socketTimeout`, the SDK's limit on a socket's silence (its `requestTimeout` would cap the
 * whole request, cutting a slow upload).
 */
export function requestHandlerOptions(timeouts: CallTimeouts): { connectionTimeout: number; socketTimeout: number } {
  return { connectionTimeout: timeouts.connectMs, socketTimeout: timeouts.idleMs };
}

/**
 * An AWS SDK client's configuration for a region (the SDK's own when undefined), with the
 * deploy commands' timeouts (calls.ts: a request the network leaves unanswered fails, rather than
 * holding the command for ever), for its own calls and for the credential lookup before them
 * (credentials.ts); a credential call that gets no answer is said on `logger`.
 */
export function clientConfig(
  region: string | undefined,
  timeouts: CallTimeouts = deployTimeouts(),
  logger?: Logger,
): {
  region?: string;
  requestHandler: { connectionTimeout: number; socketTimeout: number };
  credentials: ReturnType<typeof credentialProvider>;
} {
  return {
    ...(region ? { region } : {}),
    requestHandler: requestHandlerOptions(timeouts),
    credentials: credentialProvider(timeouts, { region, logger }),
  };
}

/**
 * `client` (of `service`, as its endpoint variable names it), watched: a try that got no answer
 * is said on `logger`, and Ctrl-C stops a call that waits (calls.ts).
 */
export function watched<C>(client: C, service: string, timeouts: CallTimeouts, logger?: Logger): C {
  return watchCalls(client, { service, timeouts, interruptible: true, ...(logger ? { logger } : {}) });
}

/** A call that failed by timing out, or that Ctrl-C stopped, as callWatch saw it. */
export interface FailedCall {
  /** The service's endpoint variable suffix (`CLOUDFORMATION`, `S3`). */
  service: string;
  /** The SDK's command name (`DescribeStacksCommand`), without `Command`. */
  command: string;
  /** Where its last try went: `https://cloudformation.us-east-1.amazonaws.com`. */
  endpoint: string | undefined;
  /** From the call until it failed. */
  elapsedMs: number;
  /** Tries made, as the SDK counted them. */
  attempts: number;
  timeouts: CallTimeouts;
  /** Ctrl-C stopped it while it waited. */
  interrupted: boolean;
}

const failures = new WeakMap<object, FailedCall>();

/** The call `error` failed, when it was a timeout or Ctrl-C that callWatch saw. */
export function failedCall(error: unknown): FailedCall | undefined {
  return typeof error === "object" && error !== null ? failures.get(error) : undefined;
}

/** Whether an SDK failure is a request that got no answer (the SDK names those TimeoutError). */
export function isTimeout(error: unknown): boolean {
  const e = error as { name?: string; code?: string };
  return e?.name === "TimeoutError" && e.code !== "ECONNRESET" && e.code !== "EPIPE";
}

/** What Ctrl-C makes of a call that was waiting. */
export class CallInterrupted extends Error {
  override readonly name = "CallInterrupted";
  constructor() {
    super("stopped (Ctrl-C) while waiting for an answer");
  }
}

/**
 * How long a call may still answer after Ctrl-C while the command is changing a stack (see
 * `changing`): one that answers goes on to the command's next step, which says where the stack
 * is; one still silent then is given up.
 */
const CHANGING_GRACE_MS = 2000;

/** The calls waiting now: what Ctrl-C stops. */
const waiting = new Set<(error: Error) => void>();
/** Whether a command is changing a stack and handles Ctrl-C itself, at its next step. */
let changing = false;
/** Set while the command changes a stack (deploy.ts's Interrupt): Ctrl-C then waits CHANGING_GRACE_MS. */
export function setChanging(value: boolean): void {
  changing = value;
}

const onSignal = () => {
  // The calls waiting when Ctrl-C was pressed; those the command makes next (deleting a change
  // set it made) are not cut short.
  const pending = [...waiting];
  const stop = () => {
    for (const reject of pending) if (waiting.has(reject)) reject(new CallInterrupted());
  };
  if (changing) setTimeout(stop, CHANGING_GRACE_MS).unref();
  else stop();
};

/** `call`, which Ctrl-C stops (rejecting with CallInterrupted) while it waits. */
export function interruptible<T>(call: Promise<T>): Promise<T> {
  let reject: (error: Error) => void = () => {};
  const stopped = new Promise<never>((_, r) => {
    reject = r;
  });
  waiting.add(reject);
  if (waiting.size === 1) process.on("SIGINT", onSignal);
  return Promise.race([call, stopped]).finally(() => {
    waiting.delete(reject);
    if (waiting.size === 0) process.off("SIGINT", onSignal);
  });
}

/** The origin a request went to: `<protocol>//<host>[:<port>]`, an IPv6 host in brackets. */
export function origin(
  request: { protocol?: string; hostname?: string; port?: number } | undefined,
): string | undefined {
  if (!request?.hostname) return undefined;
  const host = request.hostname.includes(":") ? `[${request.hostname}]` : request.hostname;
  return `${request.protocol ?? "https:"}//${host}${request.port ? `:${request.port}` : ""}`;
}

/** The shape of an SDK client's middleware stack that callWatch uses. */
interface WatchedClient {
  middlewareStack: {
    add(
      middleware: (
        next: (args: { request?: unknown }) => Promise<unknown>,
        context: { commandName?: string },
      ) => (args: { request?: unknown }) => Promise<unknown>,
      options: { step: "initialize" | "deserialize"; name: string; override?: boolean },
    ): void;
  };
}

/**
 * Watches `client`'s calls: a try that got no answer is said on `logger` as it happens, when the
 * SDK tries again; a call that failed so, or that Ctrl-C stopped while it waited (`interruptible`),
 * is kept for failedCall(), with its endpoint and time. Ctrl-C stops a waiting call at once,
 * unless a stack is being changed (setChanging), when it is given CHANGING_GRACE_MS to answer.
 */
export function watchCalls<C>(
  client: C,
  options: { service: string; timeouts: CallTimeouts; logger?: Logger; interruptible?: boolean },
): C {
  const stack = (client as unknown as WatchedClient).middlewareStack;
  const endpoints = new WeakMap<object, string>();
  /**
   * The calls Ctrl-C stopped: their tries still under way end with CallInterrupted, and no more
   * are made. The command's client.destroy() ends a try's connection; the SDK would otherwise
   * take that for a lost connection and try again, keeping the process alive meanwhile.
   */
  const stopped = new WeakSet<object>();
  const name = (context: { commandName?: string }) => (context.commandName ?? "a call").replace(/Command$/, "");
  const label = SERVICE_LABELS.get(options.service) ?? options.service;
  stack.add(
    (next, context) => async (args) => {
      const request = args.request as
        | { protocol?: string; hostname?: string; port?: number; headers?: Record<string, string> }
        | undefined;
      const where = origin(request);
      if (where) endpoints.set(context, where);
      if (stopped.has(context)) throw new CallInterrupted();
      try {
        return await next(args);
      } catch (error) {
        if (stopped.has(context)) throw new CallInterrupted();
        const tries = /attempt=(\d+); max=(\d+)/.exec(request?.headers?.["amz-sdk-request"] ?? "");
        if (isTimeout(error) && options.logger && tries && Number(tries[1]) < Number(tries[2])) {
          options.logger.warn(
            `${label} ${name(context)} at ${where ?? "its endpoint"}: ${timeoutWords(error, options.timeouts)}; trying again (try ${Number(tries[1]) + 1} of ${tries[2]})`,
          );
        }
        throw error;
      }
    },
    { step: "deserialize", name: "nitricLikeTryWatch", override: true },
  );
  stack.add(
    (next, context) => async (args) => {
      const started = Date.now();
      try {
        const call = next(args);
        return await (options.interruptible ? interruptible(call) : call);
      } catch (error) {
        const interrupted = error instanceof CallInterrupted;
        if (interrupted) stopped.add(context);
        if ((interrupted || isTimeout(error)) && typeof error === "object" && error !== null) {
          failures.set(error, {
            service: options.service,
            command: name(context),
            endpoint: endpoints.get(context),
            elapsedMs: Date.now() - started,
            attempts: (error as { $metadata?: { attempts?: number } }).$metadata?.attempts ?? 1,
            timeouts: options.timeouts,
            interrupted,
          });
        }
        throw error;
      }
    },
    { step: "initialize", name: "nitricLikeCallWatch", override: true },
  );
  return client;
}

/** The AWS services whose calls the commands make, by the suffix of their endpoint variable. */
export const SERVICE_LABELS = new Map([
  ["CLOUDFORMATION", "CloudFormation"],
  ["S3", "S3"],
  ["DYNAMODB", "DynamoDB"],
  ["CLOUDWATCH_LOGS", "CloudWatch Logs"],
  ["SECRETS_MANAGER", "Secrets Manager"],
  ["ACM", "ACM"],
  ["ROUTE_53", "Route 53"],
]);

/** A duration as people say it: `500 ms`, `60 s`, `2 min 5 s`. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ""}`;
}

/** What a timed-out try met: no connection, or silence. */
function timeoutWords(error: unknown, timeouts: CallTimeouts): string {
  const connecting = /did not establish a connection/i.test((error as Error).message ?? "");
  return connecting
    ? `no connection within ${duration(timeouts.connectMs)}`
    : `no answer for ${duration(timeouts.idleMs)}`;
}

/**
 * What a call that got no answer (or that Ctrl-C stopped while it waited) was, for an error
 * message: which call, where, for how long, and what to check. `variable` is the endpoint
 * variable that sent it away from AWS, when one did.
 */
export function failedCallWords(error: unknown, call: FailedCall, variable: string | undefined): string {
  const label = SERVICE_LABELS.get(call.service) ?? call.service;
  const where = call.endpoint
    ? ` at ${call.endpoint}${variable ? ` (${variable})` : ""}`
    : variable
      ? ` at ${JSON.stringify(process.env[variable])} (${variable})`
      : "";
  const what = `${label} ${call.command}${where}`;
  if (call.interrupted) return `stopped (Ctrl-C) while ${what} had not answered for ${duration(call.elapsedMs)}`;
  const tries = call.attempts > 1 ? ` (${call.attempts} tries, ${duration(call.elapsedMs)} in all)` : "";
  const check = variable
    ? `check that the endpoint is running and answers (LocalStack, moto), or unset ${variable} to use AWS`
    : "check the network connection, and any proxy, VPN, firewall or captive portal (a hotel or café sign-in page) between this machine and AWS";
  return `${what}: ${timeoutWords(error, call.timeouts)}${tries}; ${check}; on a slow link, ${call.timeouts.variable} gives each try longer (in ms; now ${call.timeouts.idleMs})`;
}

/**
 * The endpoint variable that sent a call of `service` (the SDK's name, as in
 * AWS_ENDPOINT_URL_<service>: STS, SSO_OIDC, CLOUDFORMATION) away from AWS: `service`'s own, else
 * AWS_ENDPOINT_URL; for a service not known, the variable whose URL has the port the connection
 * was refused on, else the first set of CloudFormation's, S3's and AWS_ENDPOINT_URL.
 */
export function endpointVariable(service: string | undefined, port: number | undefined): string | undefined {
  const set = (v: string) => Boolean(process.env[v]);
  if (service !== undefined) return [`AWS_ENDPOINT_URL_${service}`, "AWS_ENDPOINT_URL"].find(set);
  const portOf = (url: string) => {
    try {
      const u = new URL(url);
      return Number(u.port || (u.protocol === "https:" ? 443 : 80));
    } catch {
      return undefined;
    }
  };
  // CloudFormation's and S3's first, as most calls are theirs: several variables often hold one URL.
  const first = ["AWS_ENDPOINT_URL_CLOUDFORMATION", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"];
  const byPort =
    port === undefined
      ? undefined
      : [
          ...first,
          ...Object.keys(process.env)
            .filter((v) => /^AWS_ENDPOINT_URL_[A-Z0-9_]+$/.test(v) && !first.includes(v))
            .sort(),
        ]
          .filter(set)
          .find((v) => portOf(process.env[v] as string) === port);
  return byPort ?? first.find(set);
}
