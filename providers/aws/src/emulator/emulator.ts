/**
 * A stand-in for API Gateway WebSocket APIs and Lambda on 127.0.0.1, driven by the built template:
 * it creates the template's DynamoDB tables (in dynalite unless given an endpoint), starts one
 * worker process per function with the environment the template gives it, opens a WebSocket
 * server per API that turns connections, frames and closes into `$connect`, `$default` and
 * `$disconnect` events for the routes' functions (a text message that is a JSON object whose
 * "action" names one of the API's other routes, `$request.body.action`, goes to that route), and
 * serves the Management API
 * (`POST`/`GET`/`DELETE /@connections/{id}`, 410 for unknown ids) and Lambda's Invoke API.
 *
 * It keeps API Gateway's documented rules for what clients send and what is posted to them (see
 * @nitric-like/provider-kit's aws-rules): a client's binary frame closes it with 1003, a frame
 * over 32 KB or a message over 128 KB with 1009, a PostToConnection over 128 KB gets 413
 * PayloadTooLargeException, a message posted to a client arrives in frames of at most 32 KB; a
 * connection opens only once `$connect` answered 2xx; it is closed with 1001 after 10 min without a
 * message or ping from its client, and after 2 h however busy (both shorter when `limits` says so);
 * over 500 new connections a second across every API, upgrades get 429 before `$connect` runs.
 * Over 10,000 Management API requests a second (bursts of 5,000), the account's throttle answers 429.
 * An upgrade off the API's stage (`/live`) gets 403 `Forbidden`, as API Gateway serves only its stages,
 * and so does a Management API request to another stage (`/{api}/prod/@connections/{id}`).
 * A `$connect` or message whose function has not answered within 29 s (API Gateway's integration
 * timeout) gets 504 or "Endpoint request timed out", the function running on (a `$connect` still
 * waiting for an execution environment then is dropped unrun: see answerWithin). The messages a
 * client sent before it closed run still, those waiting for an execution environment then too, as
 * API Gateway invokes a route's function as each message arrives; their replies are dropped.
 * An upgrade request not whole within the upgrade timeout gets 408, as under the local provider.
 *
 * The same server serves Secrets Manager's GetSecretValue and PutSecretValue (`POST /` with
 * `X-Amz-Target: secretsmanager.*`) for the template's secrets (secrets.ts).
 *
 * Like AWS, the Management, Invoke and Secrets Manager APIs serve only requests signed (SigV4) with the run's
 * credentials (`credentials`, which the functions get as their role's; see auth.ts), refusing the
 * rest with 403 before their body is read.
 *
 * Each function runs in execution environments (worker processes) that take one invocation at a
 * time, as Lambda's do: one starts with the emulator (where Lambda would start it at the first
 * event; so an init that fails says so at once), concurrent invocations start more (cold starts),
 * each environment's init (its process's start and its module's top level) held to Lambda's 10 s
 * (LAMBDA_INIT_LIMIT_MS; the run's output says once, 3 s in, that an init is slow): past it the init
 * is ended and the next event retries it under the function's timeout, which its handler shares,
 * failing with Lambda's "Task timed out after N seconds" when it does not finish then;
 * an init that fails (throws, a top-level await rejects, its process exits) fails the event it
 * ran for with Lambda's answer (the thrown error's type and message, or Runtime.ExitError) and
 * the next event retries it in a new environment, as Lambda resets the environment; an event waiting
 * for an init that a restart (a saved change) ends has not run, so it runs on the new code; and a crash,
 * an invocation past the function's Timeout or an environment over its MemorySize (resident
 * memory, read at each sweep on Linux) ends only its own; between its
 * invocations an environment is frozen (its worker blocks), as Lambda freezes it; the processes its
 * function started are not (Lambda's freeze takes them too): finding them means reading every
 * process's environment for its lineage (reaper.ts), too dear at every event, and a stopped one
 * takes no SIGTERM, so every way an environment ends would have to wake them first. Up to the account's
 * 1,000 concurrent executions across every function; more are throttled (a message's is dropped,
 * logged once per burst; Invoke answers 429; an asynchronous Invoke waits for one, as Lambda queues
 * it).
 *
 * Differences from AWS, on purpose: a function has at most 8 execution environments (more
 * invocations at once wait for one, where Lambda would start more), its first starts with the
 * emulator, and it keeps its last one however long it idles; IAM policies are not enforced (the runtime enforces the declared policies itself).
 * After an init that failed, its retries run one at a time and at least INIT_RETRY_SPACING_MS (1 s)
 * apart: events that come meanwhile wait for the next retry and fail with it when it fails, where
 * Lambda would start an environment for each (so an init that always fails does not spin a core
 * under a flood of events). There is no INIT_REPORT log line, and the init limit counts from
 * the worker process's start, where Lambda's counts from the environment's.
 */
import { type ChildProcess, fork } from "node:child_process";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { fileURLToPath } from "node:url";
import {
  CreateTableCommand,
  type CreateTableCommandInput,
  DescribeTableCommand,
  DynamoDBClient,
} from "@aws-sdk/client-dynamodb";
import {
  AWS_INTEGRATION_TIMEOUT_MS,
  AWS_MAX_ASYNC_PAYLOAD_BYTES,
  AWS_MAX_FRAME_BYTES,
  AWS_MAX_MESSAGE_BYTES,
  awsFrameWatcher,
  BurstLog,
  boundaryMessage,
  clientErrorRefusal,
  dict,
  endWithThisProcess,
  followedBy,
  forEachLine,
  guard,
  indentedMessage,
  MAX_BUFFERED_BYTES,
  MAX_PENDING_PONGS,
  newLineage,
  notReadingReason,
  openFilesProblem,
  parseQuery,
  pingFloodReason,
  protocolCloseReason,
  refuseRequest,
  startReaper,
  upgradeProblem,
  WS_PIECE_BOUNDS,
  withLineage,
} from "@nitric-like/provider-kit";
import { SecretStore } from "@nitric-like/provider-kit/secret-store";
import {
  compareNames,
  DEFAULT_LIMITS,
  formatDuration,
  type Logger,
  ROUTE_PROPERTY,
  ROUTE_SELECTION_EXPRESSION,
  routeByOf,
  type SocketLimits,
  selectRoute,
  type TrafficEvent,
} from "@nitric-like/spec";
import { WebSocket, WebSocketServer } from "ws";
import type { Credentials } from "../aws/signer.js";
import { functionFileIn } from "../build/function-file.js";
import { SECRET_TAG } from "../build/template.js";
import { EMULATED_VAR } from "../runtime/bindings.js";
import type { WebsocketApiEvent, WebsocketApiResult } from "../runtime/events.js";
import { SOURCE_DIR_VAR } from "../runtime/stacks.js";
import { readSignedBody } from "./auth.js";
import { answerFailure, HEADERS_TIMEOUT_MS, REQUEST_TIMEOUT_MS, requestTimeouts } from "./http.js";
import { type Physical, resolveIntrinsics } from "./intrinsics.js";
import { type EmulatedSecret, EmulatedSecrets, MAX_SECRETS_REQUEST_BYTES, type SecretsAnswer } from "./secrets.js";

const WORKER = fileURLToPath(new URL("./worker.js", import.meta.url));
/** A function's handler timeout, in its environment (the template's; the runtime's default without). */
const HANDLER_TIMEOUT_VAR = "NITRIC_LIKE_HANDLER_TIMEOUT_MS";
/** API Gateway's message limit: 128 KB (a frame's is 32 KB, AWS_MAX_FRAME_BYTES). */
export const MAX_MESSAGE_BYTES = AWS_MAX_MESSAGE_BYTES;
const ACCOUNT = "000000000000";

/** Emulator options. */
export interface EmulatorOptions {
  /** The build folder: template.json and functions/<service>/index.cjs (or index.mjs). */
  buildDir: string;
  /** DynamoDB endpoint (dynalite, LocalStack). */
  dynamodbEndpoint: string;
  /**
   * Where the secrets' values are kept: run's store (`.nitric-like/secrets`, which the local
   * provider and `nitric-like secret put` share), asked for only when the template has secrets and
   * left open at stop (its owner closes it). Without it, a store of the emulator's own in a
   * temporary folder, removed at stop.
   */
  secretStore?: () => SecretStore;
  /**
   * The run's credentials (runCredentials; the DynamoDB endpoint's too): the functions sign with
   * them, and the Management and Invoke APIs take only requests signed with them.
   */
  credentials: Credentials;
  /** What a refused request is told, after why: where to find the credentials. */
  credentialsHint?: string;
  /** The port a socket's API listens on (the project file's pin); a free one when undefined. */
  port?: (socket: string) => number | undefined;
  /**
   * A port a socket's API listened on before (a redeploy): taken again when it is free, else a
   * free one. The pin (`port`) comes first.
   */
  formerPort?: (socket: string) => number | undefined;
  /** How long a Management or Invoke API client may take to send its headers. @default HEADERS_TIMEOUT_MS */
  headersTimeoutMs?: number;
  logger: Logger;
  region?: string;
  stackName?: string;
  /** Extra environment for every function. */
  env?: Record<string, string>;
  /**
   * The project's folder (`run`'s): a function's stack frames name its sources there
   * (`<project>/services/chat.ts:12:5`, as the local provider's do) rather than in the copy of
   * the function under `buildDir`. Without it, in the function's folder, as on Lambda.
   */
  sourceDir?: string;
  /**
   * How long an execution environment's init (its module's top level) may take before it is given
   * up, as Lambda gives it up; the next event retries it under the function's timeout (see
   * LAMBDA_INIT_LIMIT_MS). Shorter only for tests. @default LAMBDA_INIT_LIMIT_MS (10 s, Lambda's)
   */
  initTimeoutMs?: number;
  /** Gives up the start (RunOptions.signal): the functions still in their init are ended, and startEmulator rejects. */
  signal?: AbortSignal;
  /**
   * A socket's idle timeout and connection age limit, by socket name (the project file's, so tests
   * can shorten them); API Gateway's 10 min and 2 h are the longest either can be. Also how long a
   * client may take to send its whole upgrade request (as under the local provider; 10 s unless
   * the project file says otherwise). And how many connections the socket is meant to hold
   * (`maxConnections`, 10,000 unless the project file says otherwise): API Gateway sets no such
   * limit and the emulator none, but a process that may keep fewer files open (ulimit -n) drops
   * connections past its limit unanswered, so the emulator warns as it starts, as `run` does.
   */
  limits?: (
    socket: string,
  ) => Partial<Pick<SocketLimits, "idleTimeoutMs" | "maxConnectionAgeMs" | "upgradeTimeoutMs" | "maxConnections">>;
  /**
   * New connections per second across every API (the account's quota, a token bucket of one
   * second's worth); more upgrades get 429 before `$connect` runs. @default 500 (API Gateway's)
   */
  newConnectionsPerSecond?: number;
  /**
   * Invocations in flight at once across every function (the account's concurrent executions);
   * more are throttled, but an asynchronous one waits (up to `maxQueuedAsync` of them).
   * @default 1000 (Lambda's)
   */
  concurrentExecutions?: number;
  /**
   * Management API (`@connections`) requests per second across every API: API Gateway's account
   * throttle, a token bucket holding half a second's worth; more get 429 LimitExceededException,
   * which the runtime retries. @default 10000 (API Gateway's)
   */
  callbacksPerSecond?: number;
  /** How many asynchronous invocations may wait for an execution; more get 429. @default MAX_QUEUED_ASYNC */
  maxQueuedAsync?: number;
  /** Every function's timeout, instead of the template's `Timeout` (for tests). */
  functionTimeoutMs?: number;
  /** Every function's memory in MB, instead of the template's `MemorySize` (for tests). */
  functionMemoryMb?: number;
  /**
   * How many execution environments one function runs at most; more invocations at once wait for
   * one (Lambda would start more). @default MAX_INSTANCES_PER_FUNCTION
   */
  maxInstancesPerFunction?: number;
  /**
   * How long an execution environment other than a function's last is kept without an invocation.
   * @default INSTANCE_IDLE_MS
   */
  instanceIdleMs?: number;
  /**
   * Freeze each execution environment between its invocations, as Lambda freezes one once its
   * handler has answered: work a handler leaves running (a promise it did not await, a timer)
   * waits for that environment's next invocation, as on AWS. @default true
   */
  freezeBetweenInvocations?: boolean;
  /**
   * Whether a change saved to a service's files starts its function again (`run` watches them); the
   * fix said for a function whose init failed is then to save, else to start `run` again.
   * @default true
   */
  restartsOnChange?: boolean;
  /**
   * How long an API waits for a route's function to answer `$connect` or a message (API Gateway's
   * integration timeout); past it a connecting client gets 504, a message's client "Endpoint request
   * timed out", and the function's later answer is dropped. @default AWS_INTEGRATION_TIMEOUT_MS (29 s)
   */
  integrationTimeoutMs?: number;
}

/**
 * Lambda's limit for the init of an on-demand function's execution environment (extensions,
 * runtime and the function's static code: its module's top level, a top-level await included).
 * Past it Lambda ends that init, and retries it as part of the function's next invocation, that
 * one under the function's own timeout (init and handler together): an init that does not finish
 * then fails the invocation ("Task timed out after N seconds"), and the next invocation tries again.
 * The emulator does the same, for every environment it starts (with the emulator, after a change
 * saved, a deploy again, or for a concurrent event).
 */
export const LAMBDA_INIT_LIMIT_MS = 10_000;

/** How long an init runs before the run's output says it is slow (once an init), at most. */
export const INIT_PROGRESS_MS = 3000;

/**
 * An init given up at the init limit (LAMBDA_INIT_LIMIT_MS, or the function's timeout for one
 * retried with an event), as opposed to one that failed (threw, or its process exited).
 */
class InitTimeoutError extends Error {}

/**
 * An init that failed: its module threw (or a top-level await rejected), or its process exited
 * during it. The message names the function; `errorType` and `errorMessage` are what Lambda
 * answers the event with (FunctionError "Unhandled"): the thrown error's type and message, or
 * Runtime.ExitError for a process that exited.
 */
export class InitError extends Error {
  constructor(
    message: string,
    readonly errorType: string,
    readonly errorMessage: string,
  ) {
    super(message);
  }
}

/**
 * An error nothing in a function caught once its init was done (thrown in a timer or a callback, or
 * a promise rejected that nobody awaited): as Lambda's Node.js runtime does, it fails the
 * invocation under way with `errorType` and `errorMessage` (the error's type and message, or
 * Runtime.UnhandledPromiseRejection and the reason) and its execution environment exits. A handler
 * that left such a timer or promise pending fails the next event of its environment, which thaws it.
 */
export class UncaughtError extends Error {
  constructor(
    message: string,
    readonly errorType: string,
    readonly errorMessage: string,
  ) {
    super(message);
  }
}

/**
 * An init a restart (a saved change) ended before it finished: the events that waited for it never
 * ran, so they go to the new code's execution environments instead (EmulatedFunction.run).
 */
class InitCutError extends Error {}

/**
 * After an init that failed, the next event retries it in a new execution environment, as Lambda
 * does; events that come while that retry runs wait for it and share how it ends, and a retry
 * starts at least this long after the failure before it, so an init that always fails costs one
 * process start a second at most, however many events come (Lambda would start one per event).
 */
export const INIT_RETRY_SPACING_MS = 1000;

/** `ms` in seconds, to a tenth at most: "10", "0.8". */
function secondsOf(ms: number): string {
  return String(Math.round(ms / 100) / 10);
}

/** Node's exit code for a main module whose top-level await nothing was left to settle. */
const UNSETTLED_AWAIT_STATUS = 13;

/**
 * What an init says whose module stopped at a top-level await nothing was left to settle (its
 * event loop had nothing left, and Node, as Lambda's runtime, ends it with exit code 13): that the
 * module never finished loading, after the line of its last call as it loaded (`at`, when one of
 * the service's own files made it), and how to fix it, as the collect pass says it of a service.
 */
export function unsettledLoadMessage(at: string | undefined): string {
  const where = at === undefined ? "after its last declaration or registration" : `after ${at}`;
  return `its module never finished loading: a top-level await ${where} never settled, nothing being left that could settle it (a promise nothing resolves), so Node ended it with exit code ${UNSETTLED_AWAIT_STATUS} (Lambda's Runtime.ExitError) and the handlers it registers after that await were never registered; register handlers at module load, before any await that may not settle, or make sure it settles`;
}

/** "10 s, Lambda's limit for an init", or a shorter limit (tests') with Lambda's beside it. */
function initLimitSaid(limitMs: number): string {
  return limitMs === LAMBDA_INIT_LIMIT_MS
    ? `${secondsOf(limitMs)} s, Lambda's limit for an init`
    : `${secondsOf(limitMs)} s, the emulator's limit for an init here (Lambda's is ${secondsOf(LAMBDA_INIT_LIMIT_MS)} s)`;
}

/** Lambda's timeout for a function whose template gives none. */
const LAMBDA_DEFAULT_TIMEOUT_SECONDS = 3;

/** Lambda's memory for a function whose template gives none, in MB. */
const LAMBDA_DEFAULT_MEMORY_MB = 128;

/** A process's resident memory in MB, from /proc (Linux); undefined elsewhere or once it has gone. */
function residentMb(pid: number | undefined): number | undefined {
  if (pid === undefined || process.platform !== "linux") return undefined;
  try {
    const kb = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  } catch {
    return undefined;
  }
}

/** API Gateway's account throttle, in requests per second (a bucket of 5,000 for bursts). */
export const CALLBACKS_PER_SECOND = 10_000;

/** API Gateway's default quota of new connections per second, per account and region. */
export const NEW_CONNECTIONS_PER_SECOND = 500;

/** Lambda's default quota of concurrent executions, per account and region. */
export const CONCURRENT_EXECUTIONS = 1000;

/**
 * An invocation over the account's concurrent executions: Lambda throttles it
 * (TooManyRequestsException, "Rate Exceeded."), and API Gateway answers its client as it answers
 * an integration that failed.
 */
export class ThrottledError extends Error {
  override readonly name = "TooManyRequestsException";
  constructor(limit: number) {
    super(
      `Rate Exceeded.: over ${limit} invocations in flight across the functions (Lambda's concurrent executions); the event was dropped`,
    );
  }
}

/**
 * The account's concurrent executions, shared by every function: invocations running or waiting
 * for an execution environment of their function (at most MAX_INSTANCES_PER_FUNCTION each), so this is
 * also what bounds what `run` holds for a client that floods messages (100,000 messages of 1 KB
 * at once took `run` to 1 GB and the function's process to 1.25 GB before it was there).
 */
class Concurrency {
  private inFlight = 0;
  /**
   * The error every invocation over the limit is thrown: one, made once, as a client that floods
   * messages is throttled hundreds of thousands of times and each new Error captures a stack.
   */
  readonly throttled: ThrottledError;
  /** Asynchronous invocations waiting for a slot, oldest first (at most maxQueued). */
  private readonly queued: (() => void)[] = [];
  constructor(
    readonly limit: number,
    private readonly maxQueued: number,
  ) {
    this.throttled = new ThrottledError(limit);
  }
  /** Takes a slot; false when all are taken. */
  take(): boolean {
    if (this.inFlight >= this.limit) return false;
    this.inFlight++;
    return true;
  }
  /**
   * A slot for an asynchronous invocation, which Lambda queues rather than throttles: at once when
   * one is free, else once one is released to it; undefined when maxQueued wait already.
   */
  wait(): Promise<void> | undefined {
    if (this.take()) return Promise.resolve();
    if (this.queued.length >= this.maxQueued) return undefined;
    return new Promise((resolve) => this.queued.push(resolve));
  }
  release(): void {
    const next = this.queued.shift();
    // The slot passes to the oldest waiting asynchronous invocation.
    if (next) next();
    else this.inFlight--;
  }
}

/**
 * How many asynchronous invocations may wait for a slot (Lambda keeps its queue for hours; here
 * it is memory in `run`, each up to 1 MB); more are answered 429.
 */
export const MAX_QUEUED_ASYNC = 1000;

/**
 * One of the account's rates, shared by every API: its new connections (a bucket of one second's
 * worth) and its Management API requests (half a second's).
 */
class TokenBucket {
  private tokens: number;
  private at = Date.now();
  constructor(
    readonly perSecond: number,
    /** The most tokens the bucket holds (a burst). @default perSecond */
    private readonly burst = perSecond,
  ) {
    this.tokens = burst;
  }
  /** Takes one token; false when the bucket is empty. */
  take(): boolean {
    const now = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) * this.perSecond) / 1000);
    this.at = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

type Template = {
  Resources: Record<string, { Type: string; Properties?: Record<string, unknown> }>;
  Outputs?: Record<string, { Description?: string; Value: unknown }>;
};

interface Invocation {
  resolve(result: unknown): void;
  reject(error: Error): void;
  /** When it was sent to the instance (Date.now()). */
  at: number;
}

/**
 * One execution environment of a function: a worker process that loads the bundle, runs its init
 * once, and then runs one invocation at a time, as a Lambda instance does.
 */
class Instance {
  readonly child: ChildProcess;
  readonly ready: Promise<void>;
  /** Taken for an invocation (also while it waits for this instance's init). */
  busy = false;
  /** The invocation it runs. */
  current: Invocation | undefined;
  /** When its last invocation ended (Date.now()). */
  idleSince = Date.now();
  /** Set once the emulator ends it (a timeout, idle, a restart, a stop): its exit is no crash. */
  ending = false;
  /**
   * Why end() ended it, when a restart or the emulator's stop did: an invocation still running
   * then fails with a RestartedError or a StoppedError, which its function or the stop says.
   */
  private endedFor: "restart" | "stop" | undefined;
  /**
   * Frozen: once it has answered an invocation (or finished its init) the worker blocks, its whole
   * event loop with it, until a byte on its stdin thaws it; stdin closed (by end(), or by this
   * process's exit, whatever ends it) makes it exit.
   */
  private frozen = false;
  /** Its init finished (it said "ready"): until then an end kills it at once, as nothing it does is owed. */
  private initialized = false;
  /** Its init is the retry of one past the init limit, made with an event under the function's timeout. */
  readonly retried: boolean;
  private next = 0;
  private currentId = -1;
  /** What its worker said ended it after its init: an uncaught exception or an unhandled rejection. */
  private uncaught: { said: string; failedEvent: boolean } | undefined;
  /** Why an event could not be sent to it (EPIPE, ERR_IPC_CHANNEL_CLOSED): it was ended for it. */
  private lost: string | undefined;
  /** Its function's name, for what it says. */
  private readonly name: string;

  /** The function's timeout: an invocation's context counts down from it. */
  private readonly timeoutMs: number;
  /** When its init began (Date.now()): a retried init's event counts its timeout from here. */
  private readonly initStartedAt = Date.now();

  constructor(
    fn: EmulatedFunction,
    /**
     * How long its init may take (see LAMBDA_INIT_LIMIT_MS), and whether this is an init retried
     * with an event (the retry Lambda makes of an init past its limit): then the limit is the
     * function's timeout, which its first event's handler shares, and past it the event fails
     * with Lambda's "Task timed out".
     */
    init: { limitMs: number; retried: boolean },
    /** Whether the worker freezes between invocations, as Lambda freezes an environment. */
    freezes: boolean,
    pipe: (child: ChildProcess) => void,
    /** Called once when its process has exited, with how, and whether an invocation failed with it. */
    onExit: (instance: Instance, how: string, failed: boolean) => void,
    /** Called once if its init is still running after `afterMs` (INIT_PROGRESS_MS, or less for a shorter limit). */
    onSlowInit: (afterMs: number) => void,
  ) {
    this.timeoutMs = fn.timeoutMs;
    this.name = fn.name;
    this.retried = init.retried;
    startReaper();
    // What the function starts in a session of its own (detached, setsid, a daemon) is not in the
    // group: it carries this lineage instead, and ends with the environment too.
    const lineage = newLineage();
    const child = fork(WORKER, [functionFileIn(fn.dir), freezes ? "freeze" : "run"], {
      // Lambda runs a function in the folder its zip unpacks to (/var/task, LAMBDA_TASK_ROOT): a
      // relative path a service reads is looked up there, not in the project, so here it is too.
      cwd: fn.dir,
      env: withLineage({ ...fn.env, LAMBDA_TASK_ROOT: fn.dir }, lineage),
      stdio: ["pipe", "pipe", "pipe", "ipc"],
      serialization: "advanced",
      // A process group of its own, as run's service processes have: a terminal's Ctrl-C then
      // reaches only run, which lets the $disconnect events of the clients it closes run here
      // before it ends the environments. The group is the environment: what the function starts
      // (a process it spawns) is in it, and ends with it, as everything in a Lambda environment does.
      detached: true,
    });
    this.child = child;
    // Ended with this process, however it ends, its group with it: one busy in its init or a
    // handler cannot notice that its IPC channel closed. And once it has exited (ended here, or
    // a crash), what is left of its group is ended too.
    endWithThisProcess(child, true, lineage);
    // Written to only to thaw it; a write after it exited fails, which its exit already says.
    child.stdin?.on("error", () => {});
    pipe(child);
    const progressMs = Math.min(INIT_PROGRESS_MS, init.limitMs / 2);
    const progress = setTimeout(() => onSlowInit(progressMs), progressMs);
    this.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        clearTimeout(progress);
        reject(
          new InitTimeoutError(
            init.retried
              ? `Task timed out after ${(this.timeoutMs / 1000).toFixed(2)} seconds`
              : `function "${fn.name}" did not finish its init within ${initLimitSaid(init.limitMs)}`,
          ),
        );
        this.end();
      }, init.limitMs);
      const settled = () => {
        clearTimeout(timer);
        clearTimeout(progress);
      };
      child.on(
        "message",
        (message: {
          type: string;
          id?: number;
          result?: unknown;
          error?: string;
          message?: string;
          errorType?: string;
          /** "uncaught exception" or "unhandled rejection": an error nothing caught (the worker's uncaught). */
          uncaught?: string;
          /** Of an init-unsettled: the line of the module's last call as it loaded (`services/chat.ts:12`). */
          at?: string;
        }) => {
          if (message.type === "ready") {
            settled();
            this.initialized = true;
            this.frozen = freezes;
            resolve();
          } else if (message.type === "init-error") {
            settled();
            const thrown = String(message.message);
            // An error thrown outside the init's own flow (a timer, a rejected promise) says so.
            const how = message.uncaught === undefined ? "" : ` with an ${message.uncaught}`;
            reject(
              // Its message as run shows a local service's: bounded, its further lines indented.
              new InitError(
                `function "${fn.name}" failed its init${how}: ${indentedMessage(thrown)}`,
                message.errorType ?? "Error",
                thrown,
              ),
            );
          } else if (message.type === "init-unsettled") {
            // Its module stopped at a top-level await nothing was left to settle: the worker exits
            // with Node's code 13 next, as Lambda's runtime would (Runtime.ExitError).
            settled();
            reject(
              new InitError(
                `function "${fn.name}" failed its init: ${unsettledLoadMessage(message.at)}`,
                "Runtime.ExitError",
                `Runtime exited with error: exit status ${UNSETTLED_AWAIT_STATUS}`,
              ),
            );
          } else if (message.type === "uncaught") {
            const thrown = String(message.message);
            const failedEvent = this.current !== undefined;
            this.uncaught = { said: `an ${message.uncaught}: ${indentedMessage(thrown)}`, failedEvent };
            // Sent after the invocation's event (a frozen worker thaws for it): the error is its.
            this.fail(
              new UncaughtError(
                `function "${fn.name}": an ${message.uncaught} ended its execution environment during this event: ${indentedMessage(thrown)}`,
                message.errorType ?? "Error",
                thrown,
              ),
            );
          } else if (message.type === "result" && message.id === this.currentId) {
            this.frozen = freezes;
            const invocation = this.current;
            this.current = undefined;
            if (message.error !== undefined) invocation?.reject(new Error(message.error));
            else invocation?.resolve(message.result);
          }
        },
      );
      child.once("exit", (code, signal) => {
        settled();
        const how =
          (signal ? `was killed by ${signal}` : `exited with code ${code}`) +
          (this.uncaught ? ` after ${this.uncaught.said}` : "") +
          (this.lost ? ` (its channel to the emulator had closed, ${this.lost}, as an event was sent to it)` : "");
        // Lambda's words for a runtime that exited: "Runtime exited with error: exit status 1".
        const status = signal ? `signal: ${signal === "SIGKILL" ? "killed" : signal}` : `exit status ${code}`;
        reject(
          this.endedFor === "restart"
            ? new InitCutError(`function "${fn.name}": a saved change restarted it during this init`)
            : new InitError(
                `function "${fn.name}" ${how} during its init`,
                "Runtime.ExitError",
                `Runtime exited with error: ${status}`,
              ),
        );
        const failed = this.current !== undefined || this.uncaught?.failedEvent === true;
        this.fail(
          this.endedFor === "stop"
            ? new StoppedError(`function "${fn.name}" ${how}`)
            : this.endedFor === "restart"
              ? new RestartedError(`function "${fn.name}" was restarted by a saved change while it ran this event`)
              : new Error(`function "${fn.name}" ${how}`),
        );
        onExit(this, how, failed);
      });
    });
    this.ready.catch(() => {}); // each caller that waits for it sees the failure on its own
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /**
   * Its worker said an uncaught error ended it: it exits once it has said so and takes no event
   * meanwhile, so it is given none (one given to it would fail with that error, never run). Its
   * exit is still said as the crash it is, unlike one the emulator ends (`ending`).
   */
  get leaving(): boolean {
    return this.uncaught !== undefined;
  }

  /** Its init finished: an exit before that is its init's failure (an InitError), said as one. */
  get started(): boolean {
    return this.initialized;
  }

  /** Runs `event` (the instance is taken for it and its init is done). */
  run(event: unknown): Promise<unknown> {
    const id = this.next++;
    this.currentId = id;
    this.thaw();
    // The event an init was retried with shares the function's timeout with that init, as on Lambda.
    const at = this.retried && id === 0 ? this.initStartedAt : Date.now();
    return new Promise((resolve, reject) => {
      this.current = { resolve, reject, at };
      // A worker that died while idle (killed, out of memory), its exit not seen here yet, or one
      // that closed its channel: the event fails as one a crash ends, once its exit is seen (an
      // uncaught EPIPE or ERR_IPC_CHANNEL_CLOSED would end run).
      if (!this.child.connected) this.channelLost("ERR_IPC_CHANNEL_CLOSED");
      else
        this.child.send({ type: "invoke", id, event, deadline: at + this.timeoutMs }, (error) => {
          if (error) this.channelLost((error as NodeJS.ErrnoException).code ?? error.message);
        });
    });
  }

  /**
   * The event could not be sent to it (`code`): it has died, or closed its channel and runs on.
   * It is ended (a no-op for one that has gone), and its exit fails the event and is said as a
   * crash, as for any environment that exits during an event.
   */
  private channelLost(code: string): void {
    this.lost ??= code;
    if (this.exited) this.fail(new Error(`function "${this.name}": its execution environment had exited`));
    else this.killGroup();
  }

  /** Kills its worker and every process in its group (what the function started) at once. */
  private killGroup(): void {
    const pid = this.child.pid;
    try {
      if (pid === undefined) throw new Error("no pid");
      process.kill(-pid, "SIGKILL");
    } catch {
      // No group (it has gone, or never started): its worker alone, if it is there.
      this.child.kill("SIGKILL");
    }
  }

  /** Fails the invocation it runs with `error`. */
  fail(error: Error): void {
    const invocation = this.current;
    this.current = undefined;
    invocation?.reject(error);
  }

  /**
   * Lets it run again, before an invocation: what its handlers left running (a promise not
   * awaited, a timer) goes on from here, as on Lambda.
   */
  private thaw(): void {
    if (!this.frozen) return;
    this.frozen = false;
    this.child.stdin?.write(THAW);
  }

  /** Ends it at once (a timeout). */
  kill(): void {
    this.ending = true;
    this.killGroup();
  }

  /**
   * Ends it: closes its IPC channel (the worker exits), or kills it after 2 s. `why`: a restart
   * (a code change) or the emulator's stop, said to an invocation it cuts short. A restart ends
   * one still running an invocation at once: its drain has waited for it already, and a worker
   * busy in a loop that does not yield would not see its channel close, so the new code would
   * wait 2 s more for its kill.
   */
  async end(why?: "restart" | "stop"): Promise<void> {
    this.ending = true;
    this.endedFor ??= why;
    if (this.exited) return;
    const exited = new Promise((r) => this.child.once("exit", r));
    // An init that has not finished (one that hangs, when the run stops) is not waited for.
    if (!this.initialized || (this.endedFor === "restart" && this.current !== undefined)) {
      this.killGroup();
      await exited;
      return;
    }
    // A frozen worker exits when its stdin closes; a running one when its channel does.
    this.child.stdin?.end();
    if (this.child.connected) this.child.disconnect();
    const timer = setTimeout(() => this.killGroup(), 2000);
    await exited;
    clearTimeout(timer);
  }
}

/** The byte that thaws a frozen worker. */
const THAW = Buffer.of(1);

/**
 * An invocation its caller may withdraw until it has an execution environment: while it waits for
 * one (the emulator runs at most MAX_INSTANCES_PER_FUNCTION a function, where Lambda would start
 * more). A withdrawn one never runs; its invoke() rejects with WithdrawnError.
 */
export class Ticket {
  started = false;
  withdrawn = false;
  /** Takes it out of the function's queue (set while it waits there). */
  dequeue: (() => void) | undefined = undefined;

  /** Withdraws it unless it has started; true when it will never run. */
  withdraw(): boolean {
    if (this.started) return false;
    this.withdrawn = true;
    this.dequeue?.();
    this.dequeue = undefined;
    return true;
  }
}

/** What an invocation fails with when the emulator stops before it ran or while it ran: not logged one by one. */
export class StoppedError extends Error {}

/**
 * What an invocation fails with when a restart (a code change) ends its execution environment
 * while it runs, past the drain: its function says so once a restart, so callers do not log it.
 */
export class RestartedError extends Error {}

/** What invoke() rejects with for an invocation withdrawn before it started (Ticket). */
export class WithdrawnError extends Error {}

/** Something waiting for an instance of a function. */
interface Waiter {
  resolve(instance: Instance): void;
  reject(error: Error): void;
}

/**
 * How many execution environments the emulator runs at most for one function: more invocations at
 * once wait for one of them (Lambda would start more, up to the account's concurrent executions).
 */
export const MAX_INSTANCES_PER_FUNCTION = 8;

/** How long an execution environment other than a function's last is kept without an invocation. */
export const INSTANCE_IDLE_MS = 60_000;

/**
 * A function: its execution environments (Instance), each running one invocation at a time, as
 * Lambda runs them. An invocation takes an idle one, or starts another (a cold start, as Lambda
 * scales out) while the function has fewer than `maxInstances`, or waits for one. So an event never
 * shares a process with another in flight: a crash, or a handler that blocks, fails only its own
 * invocation, and state kept in a module's variables is not shared by concurrent invocations.
 */
class EmulatedFunction {
  private instances: Instance[] = [];
  private readonly waiting: Waiter[] = [];
  /** Every call waits for it: the first instance's init, or a restart under way. */
  ready: Promise<void> = Promise.resolve();
  /** Why its last init failed, until one succeeds (the dashboard shows it). */
  initError: string | undefined;
  /** Also hears each line the function prints (the dashboard's log). */
  onLine: ((service: string, stream: "stdout" | "stderr", line: string) => void) | undefined = undefined;
  /**
   * Set when an environment's init passed its limit (one started with the emulator, a restart or a
   * deploy again; or a retry that timed out): the next environment started for an event retries
   * that init under the function's timeout, as Lambda retries it with the next invocation.
   */
  private retryInitWithEvent = false;
  /** When its last init failed (threw, or its process exited), until one succeeds: events retry it (retryFailedInit). */
  private initFailedAt: number | undefined;
  /** The retry of an init that failed, under way: the events that come meanwhile wait for it. */
  private initRetry: Promise<void> | undefined;
  /** Says, once a burst, that an init retried with an event failed again. */
  private readonly initFailLog: BurstLog;
  private stopped = false;
  /** Set by stop(), for good: a restart under way then starts no new instance. */
  private halted = false;
  /** A restart is ending its instances: an invocation cut then is counted in cutByRestart. */
  private restarting = false;
  /** The invocations the restart under way cut, still running past its drain. */
  private cutByRestart = 0;
  /** The events whose environment's init the restart under way cut: they go to the new code (run). */
  private carriedByRestart = 0;
  /** Looks for an invocation past the function's timeout, and for idle instances (see sweep). */
  private sweeper: NodeJS.Timeout | undefined;
  /** Says, once a burst, that events wait for an environment (where Lambda would start more). */
  private readonly waitLog: BurstLog;

  constructor(
    readonly logicalId: string,
    readonly name: string,
    readonly service: string,
    /** Its folder, which holds the bundle a build left there: index.cjs or index.mjs. */
    readonly dir: string,
    readonly env: Record<string, string>,
    private readonly logger: Logger,
    private readonly concurrency: Concurrency,
    /** The function's timeout (the template's Timeout). */
    readonly timeoutMs: number,
    /** The function's memory in MB (the template's MemorySize): an environment using more is ended. */
    readonly memoryMb: number,
    readonly maxInstances = MAX_INSTANCES_PER_FUNCTION,
    private readonly idleMs = INSTANCE_IDLE_MS,
    /** Freeze an instance between its invocations (see Instance's frozen). */
    private readonly freezeIdle = true,
    /** How long an environment's init may take (LAMBDA_INIT_LIMIT_MS unless a test shortens it). */
    private readonly initLimitMs = LAMBDA_INIT_LIMIT_MS,
  ) {
    this.waitLog = new BurstLog(logger, "warn", (n) => ` (${n} events waited since the last report)`);
    this.initFailLog = new BurstLog(logger, "error", (n) => ` (${n} inits failed since the last report)`);
  }

  /** How many execution environments it has now (started or starting). */
  get instanceCount(): number {
    return this.instances.length;
  }

  /** How many of them are taken by an invocation. */
  get busyCount(): number {
    return this.instances.filter((i) => i.busy).length;
  }

  /**
   * Starts its first execution environment at once (Lambda starts one at the first event; here an
   * init that fails says so as `run` starts); resolves once its init is done, and rejects when it
   * fails or passes the init limit. Events wait for that init, then go on as on Lambda: after one
   * that failed the next event retries it in a new environment (retryFailedInit), after one past
   * the limit the first retries it under the function's timeout.
   */
  start(): Promise<void> {
    // A restart (a code change) starts it again after stop().
    this.stopped = false;
    this.retryInitWithEvent = false;
    this.initFailedAt = undefined;
    this.initRetry = undefined;
    this.sweeper ??= setInterval(() => this.sweep(), Math.min(1000, Math.max(10, this.timeoutMs / 4)));
    this.sweeper.unref();
    const instance = this.spawn(false, false);
    // How the init ends is said by whoever started it (startEmulator, restartService).
    this.ready = instance.ready.catch(() => {});
    return instance.ready;
  }

  /**
   * After an init that failed, the retry the next event makes of it, as Lambda resets the execution
   * environment and runs the init again with the next invocation: one at a time (the events that
   * come while it runs wait for it, and fail with it when it fails again), and not sooner than
   * INIT_RETRY_SPACING_MS after the failure before it, so an init that always fails does not spin.
   * Resolves at once when the last init did not fail; once the retry's init is done, its
   * environment is idle in the pool for the events to take.
   */
  private retryFailedInit(): Promise<void> {
    const failedAt = this.initFailedAt;
    if (failedAt === undefined) return Promise.resolve();
    this.initRetry ??= (async () => {
      try {
        const wait = failedAt + INIT_RETRY_SPACING_MS - Date.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        if (this.stopped) throw this.notRunning();
        await this.spawn(false, true).ready.catch((error: Error) => {
          // One past the limit is retried with the next event under the function's timeout (acquire).
          if (!(error instanceof InitTimeoutError)) throw error;
        });
      } finally {
        this.initRetry = undefined;
      }
    })();
    return this.initRetry;
  }

  /**
   * A new execution environment in the pool; initError follows how its init ends. `retried`: its
   * init is the retry of one past the init limit, made with an event under the function's timeout.
   * `forEvent`: started for an event (not with the emulator or a restart, whose caller says how its
   * init ends), so an init that fails is said here, once a burst.
   */
  private spawn(retried: boolean, forEvent: boolean): Instance {
    const prefix = `${this.service} | `;
    const pipe = (child: ChildProcess) => {
      for (const [stream, name] of [
        [child.stdout, "stdout"],
        [child.stderr, "stderr"],
      ] as const) {
        if (stream === null) continue;
        forEachLine(stream, (line) => {
          // Each stream where `run` puts a local service's: stdout on stdout, stderr on stderr.
          if (name === "stdout" && this.logger.result) this.logger.result(`${prefix}${line}`);
          else this.logger.info(`${prefix}${line}`);
          this.onLine?.(this.service, name, line);
        });
      }
    };
    const limitMs = retried ? this.timeoutMs : this.initLimitMs;
    const instance = new Instance(
      this,
      { limitMs, retried },
      this.freezeIdle,
      pipe,
      (gone, how, failed) => this.exited(gone, how, failed),
      (afterMs) => {
        if (!instance.ending) this.logger.warn(this.slowInitSaid(afterMs, limitMs, retried));
      },
    );
    this.instances.push(instance);
    instance.ready.then(
      () => {
        this.initError = undefined;
        this.initFailedAt = undefined;
      },
      (error: Error) => {
        this.remove(instance);
        // Cut by a restart, which says how the new code's init ends.
        if (error instanceof InitCutError) return;
        if (error instanceof InitError) {
          this.initFailedAt = Date.now();
          if (forEvent && !this.stopped && !instance.ending)
            this.initFailLog.note(
              followedBy(
                `service "${this.service}": ${error.message}`,
                "failing the event that started it (and those that waited for it); as on Lambda, the next event retries the init in a new execution environment (one at a time, at most once a second here)",
                ", ",
              ),
            );
        }
        if (error instanceof InitTimeoutError && retried) {
          this.initError = `function "${this.name}" did not finish its init, retried with an event, within the function's timeout (${secondsOf(this.timeoutMs)} s): ${error.message}`;
          this.logger.error(
            `function "${this.name}": its init, retried with an event as Lambda retries one past its ${secondsOf(this.initLimitMs)} s limit, had not finished at the function's timeout (${secondsOf(this.timeoutMs)} s), so the event fails ("${error.message}") and the next event retries it; its module's top level (a top-level await that does not settle?) must finish sooner`,
          );
        } else {
          this.initError = error.message;
        }
        // Lambda retries an init past its limit with the next event, and again after a retry that timed out.
        if (error instanceof InitTimeoutError) this.retryInitWithEvent = true;
        // A module whose init rejected (a top-level promise) is still running: it is ended.
        void instance.end();
      },
    );
    return instance;
  }

  /** The line that says, once an init, that it is slow, and when it is given up. */
  private slowInitSaid(afterMs: number, limitMs: number, retried: boolean): string {
    const whose = `service "${this.service}": its function's init${retried ? ", retried with an event," : ""}`;
    const where = "(its module's top level: a top-level await that does not settle?)";
    const when = retried
      ? `it is given up at the function's timeout, ${secondsOf(limitMs)} s, failing the event`
      : limitMs === LAMBDA_INIT_LIMIT_MS
        ? `Lambda gives up at ${secondsOf(limitMs)} s`
        : `the emulator gives up at ${secondsOf(limitMs)} s here (Lambda at ${secondsOf(LAMBDA_INIT_LIMIT_MS)} s)`;
    return `${whose} has taken ${secondsOf(afterMs)} s so far ${where}; ${when}`;
  }

  private remove(instance: Instance): void {
    const at = this.instances.indexOf(instance);
    if (at >= 0) this.instances.splice(at, 1);
  }

  /**
   * An instance's process exited: it leaves the pool, and what waits for one may start another. A
   * crash is said (Lambda logs "Runtime exited with error"); what it printed is in the log above.
   */
  private exited(instance: Instance, how: string, failed: boolean): void {
    this.remove(instance);
    if (failed && instance.ending && this.restarting) this.cutByRestart++;
    // An exit during its init fails that init, which is said as one (spawn, start).
    if (!instance.ending && !this.stopped && instance.started)
      this.logger.error(
        followedBy(
          `function "${this.name}": an execution environment ${how}`,
          `${failed ? "failing the event it ran; " : ""}the function's next events start a new one when none is free`,
          failed ? ", " : "; ",
        ),
      );
    this.pump();
  }

  /** Runs the function on `event`; a ThrottledError, at once, over the account's concurrent executions. */
  async invoke(event: unknown, ticket?: Ticket): Promise<unknown> {
    if (!this.concurrency.take()) throw this.concurrency.throttled;
    return this.holding(event, ticket);
  }

  /**
   * An asynchronous invocation (Invoke with InvocationType Event): over the account's concurrent
   * executions it waits for one, as Lambda queues it; undefined when too many wait already.
   */
  invokeAsync(event: unknown): Promise<unknown> | undefined {
    return this.concurrency.wait()?.then(() => this.holding(event));
  }

  /** Runs `event` on the slot taken for it, and gives the slot back. */
  private async holding(event: unknown, ticket?: Ticket): Promise<unknown> {
    try {
      return await this.run(event, ticket);
    } finally {
      this.concurrency.release();
    }
  }

  private async run(event: unknown, ticket?: Ticket): Promise<unknown> {
    let instance: Instance;
    for (;;) {
      await this.untilRunning();
      try {
        // After an init that failed, this event retries it (or waits for the retry under way).
        await this.retryFailedInit();
        if (ticket?.withdrawn) throw new WithdrawnError(`withdrawn before it ran`);
        instance = await this.acquire(ticket);
        break;
      } catch (error) {
        if (!(error instanceof InitCutError) || this.halted) throw error;
        // A saved change restarted the function during the init this event waited for: the event
        // has not run, so it runs on the new code (its client, still there, is served by what it
        // just saved), and may be withdrawn again while it waits.
        this.carriedByRestart++;
        if (ticket) ticket.started = false;
      }
    }
    if (ticket?.withdrawn) {
      // Withdrawn as the environment came free: it goes to the next event.
      instance.busy = false;
      this.pump();
      throw new WithdrawnError(`withdrawn before it ran`);
    }
    try {
      return await instance.run(event);
    } finally {
      instance.busy = false;
      instance.idleSince = Date.now();
      this.pump();
    }
  }

  /**
   * Waits for the function's init, and for each restart that began meanwhile (saves in a row: the
   * init the event waited for may be ended by the next restart, whose new init it then waits for).
   */
  private async untilRunning(): Promise<void> {
    let ready = this.ready;
    await ready;
    while (this.stopped && !this.halted && this.ready !== ready) {
      ready = this.ready;
      await ready;
    }
    if (this.stopped) throw this.notRunning();
  }

  /** An instance for one invocation: an idle one, a new one, or the first to come free. */
  private async acquire(ticket?: Ticket): Promise<Instance> {
    let instance = this.free();
    if (instance === undefined && ticket?.withdrawn) throw new WithdrawnError(`withdrawn before it ran`);
    if (instance === undefined) {
      this.waitLog.note(
        `function "${this.name}": its ${this.maxInstances} execution environments are all running an event, so events wait for one here; Lambda would start more, up to the account's concurrent executions (the emulator runs at most ${this.maxInstances} a function)`,
      );
      instance = await new Promise<Instance>((resolve, reject) => {
        const waiter: Waiter = { resolve, reject };
        this.waiting.push(waiter);
        if (ticket)
          ticket.dequeue = () => {
            const at = this.waiting.indexOf(waiter);
            if (at === -1) return;
            this.waiting.splice(at, 1);
            reject(new WithdrawnError(`withdrawn before it ran`));
          };
        this.pump();
      });
      if (ticket) ticket.dequeue = undefined;
    }
    if (ticket) ticket.started = true;
    // A new instance is taken at once; its init may still be running, and may fail (this
    // invocation fails with it, as Lambda's fails with an init error).
    try {
      await instance.ready;
    } catch (error) {
      // An init past the limit (a cold start for this event) is retried as part of the event,
      // under the function's timeout, as Lambda retries it.
      if (!(error instanceof InitTimeoutError) || instance.retried || this.stopped) throw error;
      this.logger.warn(
        `service "${this.service}": ${error.message}, starting an execution environment for an event; as on Lambda, the event retries the init, under the function's timeout (${secondsOf(this.timeoutMs)} s)`,
      );
      this.retryInitWithEvent = false;
      instance = this.spawn(true, true);
      instance.busy = true;
      await instance.ready;
    }
    return instance;
  }

  /** Takes an idle instance, or starts one while there are fewer than maxInstances. */
  private free(): Instance | undefined {
    let instance = this.instances.find((i) => !i.busy && !i.ending && !i.leaving && !i.exited);
    if (instance === undefined && this.instances.length < this.maxInstances && !this.stopped) {
      // The first environment after an init past the limit retries it with this event (see start).
      instance = this.spawn(this.retryInitWithEvent, true);
      this.retryInitWithEvent = false;
    }
    if (instance !== undefined) instance.busy = true;
    return instance;
  }

  /** Gives what waits an instance, oldest first, while one is free or can be started. */
  private pump(): void {
    while (this.waiting.length > 0 && !this.stopped) {
      const instance = this.free();
      if (instance === undefined) return;
      this.waiting.shift()?.resolve(instance);
    }
  }

  /**
   * An invocation past the function's timeout fails with Lambda's error, and its execution
   * environment is ended and replaced, as Lambda replaces the one that timed out; the runtime
   * answers a handler that takes too long well before this (its handler timeout is shorter), so
   * what gets here has blocked its process (a loop that never yields, a synchronous wait). Other
   * invocations run in other instances and go on. An instance idle for `idleMs` is ended too,
   * except the function's last one.
   */
  private sweep(): void {
    const now = Date.now();
    for (const instance of [...this.instances]) {
      const invocation = instance.current;
      const rss = instance.ending ? undefined : residentMb(instance.child.pid);
      if (rss !== undefined && rss > this.memoryMb) {
        // Lambda's limit is the environment's memory, which Lambda ends when it is over it.
        const failed = invocation !== undefined;
        instance.fail(new Error("Runtime exited with error: signal: killed"));
        this.logger.error(
          `function "${this.name}": an execution environment used ${Math.round(rss)} MB, over the function's ${this.memoryMb} MB (its MemorySize), so it is ended as Lambda ends it ("Runtime exited with error: signal: killed")${failed ? ", failing the event it ran" : ""}; hold less in memory, or give the service more (memory: in its services: entry of the project file, up to 10240)`,
        );
        this.remove(instance);
        instance.kill();
      } else if (invocation !== undefined && now - invocation.at >= this.timeoutMs && !instance.ending) {
        const seconds = (this.timeoutMs / 1000).toFixed(2);
        instance.fail(new Error(`Task timed out after ${seconds} seconds`));
        this.logger.error(
          `function "${this.name}": an invocation ran past the function's timeout (${seconds} s; Lambda ends it: "Task timed out"), so its execution environment is replaced; a handler that never yields (a loop, a synchronous wait) blocks its instance until then`,
        );
        // It leaves the pool at once: the next invocation must not wait for it to exit.
        this.remove(instance);
        instance.kill();
      } else if (!instance.busy && now - instance.idleSince >= this.idleMs && this.instances.length > 1) {
        this.remove(instance);
        void instance.end();
      }
    }
  }

  /**
   * Replaces its instances with a fresh one that loads the bundle again (after a code change):
   * invocations in flight finish first (up to `drainMs`), and new ones wait for the new init.
   */
  async restart(drainMs = 2000): Promise<void> {
    let started: () => void = () => {};
    const restarted = new Promise<void>((resolve) => {
      started = resolve;
    });
    // Calls from now on wait for the new instance (run awaits `ready`); they fail if its init does.
    const waiting = restarted.then(() => this.ready);
    waiting.catch(() => {}); // a failed start is reported by restart(); each call waiting here fails on its own
    this.ready = waiting;
    const deadline = Date.now() + drainMs;
    while (this.instances.some((i) => i.busy) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    this.restarting = true;
    this.cutByRestart = 0;
    this.carriedByRestart = 0;
    try {
      await this.endAll(this.halted ? "stop" : "restart");
    } finally {
      this.restarting = false;
    }
    // Said once a restart, here: each cut event fails with a RestartedError, which callers do not log.
    if (this.cutByRestart > 0)
      this.logger.warn(
        `service "${this.service}" (function "${this.name}"): a saved change restarted it while ${this.cutByRestart === 1 ? "an event" : `${this.cutByRestart} events`} still ran past the ${secondsOf(drainMs)} s it waits for events in flight, so ${this.cutByRestart === 1 ? "that event was" : "they were"} cut short (failed); the next events run on the new code`,
      );
    // Stopped meanwhile (the run stops during the restart): no new instance outlives the stop.
    if (this.halted) {
      started();
      throw new Error(`function "${this.name}" is not running`);
    }
    const ready = this.start();
    started();
    // What waited for an instance of the old code runs on the new.
    this.pump();
    try {
      await ready;
    } catch (error) {
      // Ended by a later restart (saves in a row): that one says how its init ends.
      if (error instanceof InitCutError) return;
      throw error;
    }
    const carried = this.carriedByRestart;
    if (carried > 0)
      this.logger.info(
        `service "${this.service}" (function "${this.name}"): a saved change restarted it while ${carried === 1 ? "an event" : `${carried} events`} waited for an execution environment's init, which it cut, so ${carried === 1 ? "it runs" : "they run"} on the new code`,
      );
  }

  /** What an event fails with that finds the function ended: a StoppedError only once the emulator stops. */
  private notRunning(): Error {
    const message = `function "${this.name}" is not running`;
    return this.halted ? new StoppedError(message) : new Error(message);
  }

  /** Ends every instance; what waits for one keeps waiting (a restart gives it the new one). */
  private async endAll(why: "restart" | "stop"): Promise<void> {
    this.stopped = true;
    clearInterval(this.sweeper);
    this.sweeper = undefined;
    const instances = this.instances;
    this.instances = [];
    await Promise.all(instances.map((i) => i.end(why)));
  }

  async stop(): Promise<void> {
    this.halted = true;
    await this.endAll("stop");
    // Events still waiting for an environment fail unrun, said once, not once each.
    const waiting = this.waiting.splice(0);
    for (const waiter of waiting) waiter.reject(this.notRunning());
    if (waiting.length > 0)
      this.logger.warn(
        `function "${this.name}": ${waiting.length} event(s) waiting for an execution environment were dropped as the emulator stopped`,
      );
  }
}

/** The subprotocol the $connect response named, kept on the upgrade request for handleProtocols. */
const ECHOED_PROTOCOL = Symbol("echoedProtocol");

interface Connection {
  ws: WebSocket;
  /** Set once one of its listeners threw: closed with 1011, logged once. */
  failed?: boolean;
  connectedAt: number;
  lastActiveAt: number;
  sourceIp: string;
  userAgent: string;
  /** Set once the emulator closed it for breaking one of API Gateway's rules: later frames are dropped. */
  refused?: boolean;
  /**
   * Messages the client sent ahead of the frame that broke a rule, which ws delivers after that
   * frame's header was read (they came in the same chunk): routed still, as API Gateway routes them.
   */
  owed?: number;
  /** What the client asked with (the dashboard lists it); records that inherit nothing (dict()). */
  query: Record<string, string[]>;
  headers: Record<string, string[]>;
  /** The authorizer's context with its principalId: `requestContext.authorizer` of every later event. */
  authorizer?: Record<string, unknown>;
}

/** A route of an API: its function, and for $connect its REQUEST authorizer's function. */
interface EmulatedRoute {
  fn: EmulatedFunction;
  twoWay: boolean;
  authorizer?: EmulatedFunction;
}

/** An IAM policy allows `execute-api:Invoke` on `arn` when a statement allows it and none denies it. */
function policyAllows(result: unknown, arn: string): boolean {
  const statements = (result as { policyDocument?: { Statement?: unknown } } | null)?.policyDocument?.Statement;
  if (!Array.isArray(statements)) return false;
  const matches = (resource: unknown) => {
    const list = Array.isArray(resource) ? resource : [resource];
    return list.some(
      (r) => typeof r === "string" && (r === arn || (r.endsWith("*") && arn.startsWith(r.slice(0, -1)))),
    );
  };
  const applies = (s: { Action?: unknown; Resource?: unknown }) => {
    const actions = Array.isArray(s.Action) ? s.Action : [s.Action];
    return actions.some((a) => a === "execute-api:Invoke" || a === "execute-api:*" || a === "*") && matches(s.Resource);
  };
  const own = statements as { Effect?: unknown; Action?: unknown; Resource?: unknown }[];
  if (own.some((s) => s.Effect === "Deny" && applies(s))) return false;
  return own.some((s) => s.Effect === "Allow" && applies(s));
}

/**
 * A client of an emulated API. The ws library closes a connection whose frames it refuses (bad
 * UTF-8, broken framing, a message over 128 KB in fragments, too many pieces) with no reason: here
 * that close carries the reason its code stands for, kept for the API's log line, which the
 * "error" ws emits right after the close writes.
 */
class EmulatedSocket extends WebSocket {
  protocolClose: { code: number; reason: string } | undefined = undefined;

  override close(code?: number, reason?: string | Buffer): void {
    const own = reason === undefined ? protocolCloseReason(code, MAX_MESSAGE_BYTES) : undefined;
    if (own !== undefined && code !== undefined) this.protocolClose = { code, reason: own };
    super.close(code, reason ?? own);
  }
}

/** One WebSocket API. */
class EmulatedApi {
  readonly connections = new Map<string, Connection>();
  private readonly inflight = new Set<Promise<void>>();
  /** The emulator is stopping: new clients are refused with 503 while the events in flight finish. */
  private draining = false;
  private warnedNoProtocol = false;
  private readonly throttleLog: BurstLog;
  private readonly offStageLog: BurstLog;
  private readonly lateLog: BurstLog;
  private readonly withdrawnLog: BurstLog;
  readonly server: Server;
  private readonly wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_MESSAGE_BYTES,
    ...WS_PIECE_BOUNDS,
    WebSocket: EmulatedSocket,
    handleProtocols: (_offered, req) =>
      (req as IncomingMessage & { [ECHOED_PROTOCOL]?: string })[ECHOED_PROTOCOL] || false,
  });
  port = 0;
  /** The socket's name in the spec (for the dashboard). */
  socketName: string;
  /** Hears the API's traffic while the dashboard watches (`run --provider aws`). */
  observer: ((event: TrafficEvent) => void) | undefined = undefined;

  /** The keys of the API's message routes (all but $connect, $disconnect and $default): what messages select. */
  private readonly actions: ReadonlySet<string>;
  /** The property the API's route selection expression reads (`$request.body.<routeBy>`). */
  routeBy = ROUTE_PROPERTY;

  constructor(
    readonly logicalId: string,
    readonly apiId: string,
    readonly stage: string,
    readonly routes: Map<string, EmulatedRoute>,
    private readonly logger: Logger,
    /**
     * Idle timeout and connection age limit (at most API Gateway's), the upgrade timeout, and the
     * connections the socket is meant to hold (only warned about: see EmulatorOptions.limits).
     */
    private readonly limits: Pick<
      SocketLimits,
      "idleTimeoutMs" | "maxConnectionAgeMs" | "upgradeTimeoutMs" | "maxConnections"
    >,
    private readonly rate: TokenBucket,
    /** API Gateway's integration timeout (EmulatorOptions.integrationTimeoutMs). */
    private readonly integrationTimeoutMs: number,
  ) {
    this.socketName = logicalId;
    this.actions = new Set([...routes.keys()].filter((key) => !key.startsWith("$")));
    this.throttleLog = new BurstLog(logger, "warn", (n) => ` (${n} throttled since the last report)`);
    this.offStageLog = new BurstLog(logger, "warn", (n) => ` (${n} refused so since the last report)`);
    this.lateLog = new BurstLog(logger, "warn", (n) => ` (${n} timed out since the last report)`);
    this.withdrawnLog = new BurstLog(logger, "warn", (n) => ` (${n} dropped so since the last report)`);
    // A client that sends its upgrade request a byte at a time: 408 after the upgrade timeout.
    const timeouts = requestTimeouts(limits.upgradeTimeoutMs, limits.upgradeTimeoutMs);
    this.server = createServer(timeouts, (_req, res) =>
      guard(
        () =>
          res
            .writeHead(426, { "content-type": "text/plain" })
            .end("this is a WebSocket API; connect with a WebSocket client\n"),
        (error) => answerFailure(res, this.logger, `API ${this.logicalId}`, "answering a plain HTTP request", error),
      ),
    );
    // Bytes Node cannot parse as HTTP (headers over 16 KB, a request that never ends): refused with
    // the status their error stands for and a reason, the socket kept a moment for the answer to
    // be read, as the local gateway answers them (Node's own answer resets a client still sending).
    this.server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) => {
      const { status, reason } = clientErrorRefusal(`API ${this.logicalId}`, error);
      this.refuse(socket, status, reason);
    });
    // The boundary of the upgrade listener: whatever it throws refuses that one request with 500
    // (or, once upgraded, closes that one connection with 1011) and logs one line; escaping, it
    // would end `run`, every function and socket with it (a "?__proto__=1" once did).
    this.server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on("error", () => {});
      guard(
        // Tracked: a $connect in flight is waited for as a message is, as the emulator stops.
        () => this.track(this.upgrade(req, socket, head)),
        (error) => {
          this.logger.error(
            boundaryMessage(`API ${this.logicalId}`, "handling an upgrade request", error, "refused it with 500"),
          );
          refuseRequest(socket, 500, "Internal server error", "text/plain");
        },
      );
    });
  }

  /**
   * Logs an integration that failed for connection `id`: a throttle once per burst (a client that
   * floods messages must not flood the log too), a failed init not here (its function says it, once
   * a burst), anything else each time.
   */
  private integrationFailed(integration: string, id: string, error: unknown): void {
    if (
      error instanceof InitError ||
      // Its function says it, with the environment it ended.
      error instanceof UncaughtError ||
      error instanceof StoppedError ||
      error instanceof RestartedError
    )
      return;
    if (error instanceof ThrottledError) {
      this.throttleLog.note(`${integration} of ${this.logicalId} (connection ${id}) throttled: ${error.message}`);
    } else {
      this.logger.error(`${integration} of ${this.logicalId}: ${(error as Error).message}`);
    }
  }

  /** One of a connection's listeners threw: that connection is closed with 1011 and it is logged once. */
  private connectionFailed(id: string, c: Connection, serving: string, error: unknown): void {
    if (c.failed) return;
    c.failed = true;
    this.logger.error(
      boundaryMessage(`API ${this.logicalId}`, `${serving} of connection ${id}`, error, "closed it with 1011"),
    );
    if (c.ws.readyState === WebSocket.OPEN) c.ws.close(1011, "Internal server error");
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}/${this.stage}`;
  }

  /**
   * The function's answer to `integration`, or TIMED_OUT once API Gateway would have stopped
   * waiting for it (logged once a burst). An invocation that has started runs on; a later failure
   * of it is handled here, as API Gateway drops what a function answers late. One given a `ticket`
   * that is still waiting for an execution environment then is withdrawn and never runs: Lambda
   * would have run it at once, and run late it would serve a client long refused (after a flood
   * of connections, `run` would be kept busy for minutes with $connect events whose clients had gone).
   */
  private answerWithin<T>(
    integration: string,
    id: string,
    invocation: Promise<T>,
    withdrawable?: { ticket: Ticket; environments: number },
  ): Promise<T | typeof TIMED_OUT> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<typeof TIMED_OUT>((resolve) => {
      timer = setTimeout(() => {
        resolve(TIMED_OUT);
        if (withdrawable?.ticket.withdraw()) {
          this.withdrawnLog.note(
            `API ${this.logicalId}: the ${integration} event of connection ${id} waited ${formatDuration(this.integrationTimeoutMs)}, API Gateway's integration timeout, for an execution environment, so its client is told "Endpoint request timed out" and the event is dropped unrun (the emulator runs at most ${withdrawable.environments} environments a function, where Lambda would start more; this many connections at once are more than it serves)`,
          );
          return;
        }
        this.lateLog.note(
          `API ${this.logicalId}: the ${integration} function has not answered for connection ${id} within ${formatDuration(this.integrationTimeoutMs)}, API Gateway's integration timeout, so its client is told "Endpoint request timed out"; the function runs on and its answer is dropped (limits.handlerTimeout is kept under it on AWS)`,
        );
      }, this.integrationTimeoutMs);
    });
    return Promise.race([invocation, late]).finally(() => clearTimeout(timer));
  }

  /**
   * Refuses an upgrade with API Gateway's answer (`message` in its JSON body) and shows the refusal
   * to the observer (the dashboard's log) with `why`, what the developer needs to know, as the
   * local gateway shows each of its refusals.
   */
  private refuse(
    socket: Duplex,
    status: number,
    message: string,
    why = message,
    headers?: Record<string, string>,
  ): void {
    refuseRequest(socket, status, JSON.stringify({ message }), "application/json", headers);
    this.observer?.({ type: "refused", socket: this.socketName, status, reason: why, at: Date.now() });
  }

  /** Whether a request's target is this API's stage (`/live`, `/live/`, with any query). */
  private onStage(target: string): boolean {
    const query = target.indexOf("?");
    const path = query === -1 ? target : target.slice(0, query);
    return path === `/${this.stage}` || path === `/${this.stage}/`;
  }

  /** Shows the observer a frame of a connection. */
  observe(direction: "in" | "out", connectionId: string, data: Buffer, binary: boolean): void {
    const socket = this.socketName;
    this.observer?.({ type: "message", direction, socket, connectionId, data, binary, at: Date.now() });
  }

  private observeError(connectionId: string, event: "connect" | "message" | "disconnect", error: unknown): void {
    const message = `${event} handler: ${(error as Error).message}`;
    this.observer?.({ type: "error", socket: this.socketName, connectionId, event, message, at: Date.now() });
  }

  /** Listens on 127.0.0.1, on `port` (0: a free one); a port in use is named with the fix. */
  /** Listens on `port` (0: a free one); when it is taken, on a free one if `orFree`, else fails naming the pin. */
  async listen(port = 0, orFree = false): Promise<void> {
    const on = (p: number) =>
      new Promise<void>((resolve, reject) => {
        this.server.once("error", reject);
        this.server.listen(p, "127.0.0.1", () => {
          this.server.off("error", reject);
          resolve();
        });
      });
    await on(port).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== "EADDRINUSE") throw error;
      if (orFree) return on(0);
      throw Object.assign(
        new Error(
          `websocket "${this.socketName}": port ${port} is already in use; pick another under websockets.${this.socketName}.port in the project file, or run with --random-ports`,
          { cause: error },
        ),
        { userFacing: true },
      );
    });
    this.port = (this.server.address() as AddressInfo).port;
    const openFiles = openFilesProblem(this.socketName, this.limits);
    if (openFiles !== undefined) this.logger.warn(openFiles);
  }

  private requestContext(
    routeKey: string,
    id: string,
    c: { connectedAt: number; sourceIp: string; userAgent: string; authorizer?: Record<string, unknown> },
  ) {
    const eventType = routeKey === "$connect" ? "CONNECT" : routeKey === "$disconnect" ? "DISCONNECT" : "MESSAGE";
    return {
      routeKey,
      eventType,
      connectionId: id,
      apiId: this.apiId,
      domainName: `${this.apiId}.execute-api.emulated`,
      stage: this.stage,
      connectedAt: c.connectedAt,
      requestTimeEpoch: Date.now(),
      // From Node's pool of random bytes: one read of the system's random source per event cost a
      // flood of messages more than the rest of the event did.
      requestId: randomUUID().replace(/-/g, "").slice(0, 16),
      identity: { sourceIp: c.sourceIp, userAgent: c.userAgent },
      ...(c.authorizer ? { authorizer: c.authorizer } : {}),
    } as const;
  }

  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    // A request ws would refuse (no key, another version...) is refused before the authorizer and
    // $connect run: they would run, and what $connect stored stay, for a connection never opened.
    const malformed = upgradeProblem(`API ${this.logicalId}`, req);
    if (malformed) {
      this.refuse(socket, malformed.status, malformed.reason, malformed.reason, malformed.headers);
      return;
    }
    // API Gateway serves an API at its stage's path only: a client that left the stage out of its
    // URL is refused there, so it is here, with the URL it should use in `run`'s log (a client
    // sees API Gateway's body only). Checked before the rate, which a wrong path does not use.
    if (!this.onStage(req.url ?? "/")) {
      this.offStageLog.note(
        `API ${this.logicalId}: refused an upgrade on ${JSON.stringify(clip(req.url ?? "/"))} with 403, as API Gateway does: this API is served at its stage, ${this.url}`,
      );
      this.refuse(socket, 403, "Forbidden", `not this API's stage: connect to ${this.url}`);
      return;
    }
    if (this.draining) {
      this.refuse(socket, 503, "Service Unavailable", "run is stopping: connect again once it is back");
      return;
    }
    if (!this.rate.take()) {
      // Throttled before any integration runs, as API Gateway answers a request over its rate.
      this.refuse(socket, 429, "Too Many Requests", "over the account's new connections a second");
      return;
    }
    const id = connectionId();
    // Query keys and header names are the client's ("?__proto__=1"): records that inherit nothing (dict()).
    // Values decoded as API Gateway decodes them, and as the local gateway reads them (parseQuery).
    const query = dict<string[]>();
    const parsed = parseQuery(req.url ?? "/");
    for (const k of Object.keys(parsed)) query[k] = parsed[k]?.value ?? [];
    // From the raw list: Node's parsed headers leave out a header named "__proto__", API Gateway does not.
    const headers = dict<string[]>();
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
      const name = (req.rawHeaders[i] as string).toLowerCase();
      const values = headers[name];
      if (values) values.push(req.rawHeaders[i + 1] as string);
      else headers[name] = [req.rawHeaders[i + 1] as string];
    }
    const meta: { connectedAt: number; sourceIp: string; userAgent: string; authorizer?: Record<string, unknown> } = {
      connectedAt: Date.now(),
      sourceIp: req.socket.remoteAddress ?? "",
      userAgent: req.headers["user-agent"] ?? "",
    };
    const route = this.routes.get("$connect");
    let status = 200;
    let body = "";
    let protocol: string | undefined;
    // A client sends nothing before the 101 (RFC 6455 section 4.1), so reading now loses nothing
    // and is the only way to notice that it hangs up while the authorizer or $connect runs: the
    // upgrade left the socket paused, and HTTP servers are half-open.
    let left = false;
    // Its $connect, withdrawn if it still waits for an execution environment at the integration
    // timeout (see Ticket). A client that leaves does not withdraw it: API Gateway invoked it as the
    // handshake came, and Lambda, which starts environments as needed, runs it, so a record its
    // handler stores is there all the same (then told by $disconnect, as for one that left while
    // $connect ran).
    const ticket = new Ticket();
    const onGone = () => {
      left = true;
    };
    socket.once("end", onGone);
    socket.once("close", onGone);
    socket.resume();
    const gone = () => left || socket.destroyed || !socket.readable || !socket.writable;
    if (route?.authorizer) {
      // API Gateway runs the REQUEST authorizer before $connect: an error "Unauthorized" is 401, a
      // policy that does not allow execute-api:Invoke on the method is 403, any other error 500;
      // the client gets API Gateway's body, not the function's.
      const methodArn = `arn:aws:execute-api:us-east-1:000000000000:${this.apiId}/${this.stage}/$connect`;
      const event = {
        type: "REQUEST",
        methodArn,
        headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, v.join(",")])),
        multiValueHeaders: headers,
        queryStringParameters: Object.fromEntries(Object.entries(query).map(([k, v]) => [k, v.at(-1)])),
        multiValueQueryStringParameters: query,
        stageVariables: {},
        requestContext: this.requestContext("$connect", id, meta),
      };
      let refusal: { status: number; message: string } | undefined;
      try {
        const result = await route.authorizer.invoke(event);
        if (!policyAllows(result, methodArn)) refusal = { status: 403, message: "Forbidden" };
        else {
          const context = (result as { context?: Record<string, unknown>; principalId?: unknown }).context ?? {};
          meta.authorizer = { ...context, principalId: (result as { principalId?: unknown }).principalId };
        }
      } catch (error) {
        const message = (error as Error).message;
        if (message === "Unauthorized") refusal = { status: 401, message: "Unauthorized" };
        else {
          this.integrationFailed("authorizer", id, error);
          refusal = { status: 500, message: "Internal server error" };
        }
      }
      if (refusal) {
        this.refuse(socket, refusal.status, refusal.message, `the authorizer: ${refusal.message}`);
        return;
      }
      if (gone()) {
        // The client hung up before its authorizer answered: $connect does not run (nothing it
        // would store is left to forget, and nobody is there to let in), as the local gateway
        // does; a Lambda invocation, like API Gateway's, cannot be called back, so the
        // authorizer itself ran to its end.
        socket.destroy();
        return;
      }
    }
    if (route) {
      const event: WebsocketApiEvent = {
        requestContext: this.requestContext("$connect", id, meta),
        headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, v.join(",")])),
        multiValueHeaders: headers,
        ...(Object.keys(query).length > 0
          ? {
              queryStringParameters: Object.fromEntries(Object.entries(query).map(([k, v]) => [k, v.at(-1)])),
              multiValueQueryStringParameters: query,
            }
          : {}),
        isBase64Encoded: false,
      };
      try {
        const answer = await this.answerWithin("$connect", id, route.fn.invoke(event, ticket), {
          ticket,
          environments: route.fn.maxInstances,
        });
        if (answer === TIMED_OUT) {
          this.refuse(
            socket,
            504,
            "Endpoint request timed out",
            `$connect did not answer within ${formatDuration(this.integrationTimeoutMs)}`,
          );
          return;
        }
        const result = answer as WebsocketApiResult | null;
        status = result?.statusCode ?? 200;
        body = result?.body ?? "";
        // API Gateway echoes only the subprotocol the $connect integration's response names.
        const header = Object.entries(result?.headers ?? {}).find(
          ([k]) => k.toLowerCase() === "sec-websocket-protocol",
        );
        protocol = header?.[1];
      } catch (error) {
        this.integrationFailed("$connect", id, error);
        this.observeError(id, "connect", error);
        status = 500;
        body = "Internal server error";
      }
    }
    if (status < 200 || status > 299) {
      const text = body || STATUS_CODES[status] || "Forbidden";
      this.observer?.({ type: "refused", socket: this.socketName, status, reason: text, at: Date.now() });
      refuseRequest(socket, status, text, "text/plain");
      return;
    }
    socket.off("end", onGone);
    socket.off("close", onGone);
    if (gone()) {
      // The client left while $connect ran: $disconnect tells the app, which may have stored the
      // connection (as the local gateway tells it), with 1006 as for any connection that drops.
      socket.destroy();
      await this.track(this.disconnected(id, meta, 1006, ""));
      return;
    }
    (req as IncomingMessage & { [ECHOED_PROTOCOL]?: string })[ECHOED_PROTOCOL] = protocol ?? "";
    if (!protocol && headers["sec-websocket-protocol"] !== undefined && !this.warnedNoProtocol) {
      // The 101 names no subprotocol, so the client fails the connection (RFC 6455; browsers do)
      // while the app sees it connect and drop. Said once, not naming them (one may be a token).
      this.warnedNoProtocol = true;
      this.logger.warn(
        `API ${this.logicalId}: accepted a client that offered subprotocols without choosing one of them, so the client fails the connection (browsers do; API Gateway echoes only the one $connect's answer names); have authorize return one of req.protocols as protocol (said once)`,
      );
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const connection: Connection = { ws, ...meta, lastActiveAt: Date.now(), query, headers };
      this.connections.set(id, connection);
      this.observer?.({ type: "open", socket: this.socketName, connectionId: id, at: Date.now() });
      // A frame ws refused: the close has gone out with its reason (EmulatedSocket); say so once.
      ws.on("error", () => {
        const closed = (ws as EmulatedSocket).protocolClose;
        if (closed === undefined || connection.refused) return;
        connection.refused = true;
        this.logger.info(`API ${this.logicalId}: closed connection ${id} (${closed.code}): ${closed.reason}`);
      });
      this.keepRules(id, connection, socket);
      // The boundaries of the connection's listeners (see connectionFailed).
      ws.on("message", (data: Buffer, binary: boolean) =>
        guard(
          () => {
            if (connection.refused) {
              if (!connection.owed) return;
              connection.owed--;
            }
            connection.lastActiveAt = Date.now();
            return this.track(this.message(id, connection, data, binary));
          },
          (error) => this.connectionFailed(id, connection, "a message", error),
        ),
      );
      ws.on("close", (code: number, reason: Buffer) =>
        guard(
          () => {
            this.connections.delete(id);
            const text = reason.toString("utf8");
            this.observer?.({
              type: "close",
              socket: this.socketName,
              connectionId: id,
              code,
              reason: text,
              at: Date.now(),
            });
            return this.track(this.disconnected(id, connection, code, text));
          },
          (error) => this.connectionFailed(id, connection, "the close", error),
        ),
      );
    });
  }

  /**
   * API Gateway's rules for one connection: its client's frames read before the ws library reads
   * them (a binary frame closes it with 1003, a frame over 32 KB with 1009), the idle timeout and
   * the age limit (1001).
   */
  private keepRules(id: string, c: Connection, socket: Duplex): void {
    const refuse = (code: number, reason: string, owed = 0) => {
      if (c.refused) return;
      c.refused = true;
      c.owed = owed;
      this.logger.info(`API ${this.logicalId}: closed connection ${id} (${code}): ${reason}`);
      if (c.ws.readyState === WebSocket.OPEN) {
        c.ws.close(code, reason);
        // Its client has a second to answer the close (see manage()'s DELETE).
        setTimeout(() => c.ws.terminate(), 1000).unref();
      }
    };
    socket.prependListener(
      "data",
      awsFrameWatcher((rule, before) => refuse(rule.code, rule.reason, before)),
    );
    const { idleTimeoutMs, maxConnectionAgeMs } = this.limits;
    const idle = setTimeout(() => refuse(1001, "Going away"), idleTimeoutMs);
    const age = setTimeout(() => refuse(1001, "Going away"), maxConnectionAgeMs);
    idle.unref();
    age.unref();
    const active = () => idle.refresh();
    c.ws.on("message", active);
    c.ws.on("ping", () => {
      active();
      // ws has queued this ping's pong; at 60 unwritten it would cut the client off with no reason.
      if ((c.ws as unknown as { _pendingAutoPongs: number })._pendingAutoPongs >= MAX_PENDING_PONGS) {
        refuse(1008, pingFloodReason());
      }
    });
    c.ws.once("close", () => {
      clearTimeout(idle);
      clearTimeout(age);
    });
  }

  private async message(id: string, c: Connection, data: Buffer, binary: boolean): Promise<void> {
    if (this.observer) this.observe("in", id, data, binary);
    // The route `$request.body.action` selects: a text message that is a JSON object whose
    // "action" names one of the API's own routes (never $connect, $disconnect or $default); any
    // other message takes $default. selectRoute is the local provider's selection too.
    const routeKey =
      (!binary && this.actions.size > 0 ? selectRoute(data.toString("utf8"), this.actions, this.routeBy) : undefined) ??
      "$default";
    const route = this.routes.get(routeKey);
    if (!route) {
      this.tell(id, c, "Forbidden");
      return;
    }
    const event: WebsocketApiEvent = {
      requestContext: this.requestContext(routeKey, id, c),
      body: binary ? data.toString("base64") : data.toString("utf8"),
      isBase64Encoded: binary,
    };
    try {
      const answer = await this.answerWithin(routeKey, id, route.fn.invoke(event));
      if (answer === TIMED_OUT) {
        if (this.observer) this.observeError(id, "message", new Error(`the ${routeKey} route's function timed out`));
        if (route.twoWay) this.tell(id, c, "Endpoint request timed out");
        return;
      }
      const result = answer as WebsocketApiResult | null;
      // The runtime answers 5xx for an event its handler could not take (a timeout, no handler).
      if (this.observer && (result?.statusCode ?? 200) >= 500)
        this.observeError(id, "message", new Error(`the ${routeKey} route's function answered ${result?.statusCode}`));
      if (route.twoWay && typeof result?.body === "string" && c.ws.readyState === WebSocket.OPEN) {
        this.post(id, c, Buffer.from(result.body, "utf8"));
      }
    } catch (error) {
      this.integrationFailed(routeKey, id, error);
      this.observeError(id, "message", error);
      if (route.twoWay) this.tell(id, c, "Internal server error");
    }
  }

  private async disconnected(
    id: string,
    c: Pick<Connection, "connectedAt" | "sourceIp" | "userAgent" | "authorizer">,
    code: number,
    reason: string,
  ): Promise<void> {
    const route = this.routes.get("$disconnect");
    if (!route) return;
    const event: WebsocketApiEvent = {
      requestContext: {
        ...this.requestContext("$disconnect", id, c),
        disconnectStatusCode: code,
        disconnectReason: reason,
      },
      isBase64Encoded: false,
    };
    try {
      await route.fn.invoke(event);
    } catch (error) {
      this.integrationFailed("$disconnect", id, error);
      this.observeError(id, "disconnect", error);
    }
  }

  /** Management API: POST, GET or DELETE on one connection. */
  manage(method: string, id: string, body: Buffer, res: ServerResponse): void {
    const c = this.connections.get(id);
    if (!c || c.ws.readyState !== WebSocket.OPEN) {
      res
        .writeHead(410, { "content-type": "application/json", "x-amzn-errortype": "GoneException" })
        .end(JSON.stringify({ message: `Connection ${id} is gone` }));
      return;
    }
    if (method === "POST") {
      if (body.length > MAX_MESSAGE_BYTES) {
        res
          .writeHead(413, { "content-type": "application/json", "x-amzn-errortype": "PayloadTooLargeException" })
          .end(JSON.stringify({ message: `Payload too large: ${body.length} bytes, at most ${MAX_MESSAGE_BYTES}` }));
        return;
      }
      if (this.post(id, c, body)) res.writeHead(200).end();
      else
        res
          .writeHead(410, { "content-type": "application/json", "x-amzn-errortype": "GoneException" })
          .end(JSON.stringify({ message: `Connection ${id} is gone` }));
    } else if (method === "GET") {
      res.writeHead(200, { "content-type": "application/json" }).end(
        // GetConnection's wire format: camel-case names, ISO 8601 times.
        JSON.stringify({
          connectedAt: new Date(c.connectedAt).toISOString(),
          lastActiveAt: new Date(c.lastActiveAt).toISOString(),
          identity: { sourceIp: c.sourceIp, userAgent: c.userAgent },
        }),
      );
    } else if (method === "DELETE") {
      // API Gateway ends a deleted connection at once, whether or not its client answers the
      // close: one that does not is cut off after a second, not ws's 30 s, so $disconnect follows.
      c.ws.close(1000, "");
      setTimeout(() => c.ws.terminate(), 1000).unref();
      res.writeHead(204).end();
    } else {
      res.writeHead(405).end();
    }
  }

  /**
   * API Gateway's answer to a message it could not route or whose integration failed, posted
   * (under the same bound as any post: a client that floods and never reads does not make these
   * pile up).
   */
  private tell(id: string, c: Connection, message: string): void {
    if (c.ws.readyState === WebSocket.OPEN)
      this.post(id, c, Buffer.from(JSON.stringify({ message, connectionId: id })));
  }

  /**
   * Sends a message to a connection, unless over MAX_BUFFERED_BYTES would then wait for its client:
   * a client that does not read is closed with 1008 and the reason (logged), and cut off a second
   * later, instead of `run` holding all that is posted to it. False when it was closed.
   */
  post(id: string, c: Connection, body: Buffer): boolean {
    if (c.ws.bufferedAmount + body.length > MAX_BUFFERED_BYTES) {
      this.logger.warn(`API ${this.logicalId}: closed connection ${id} (1008): ${notReadingReason()}`);
      c.ws.close(1008, notReadingReason());
      setTimeout(() => c.ws.terminate(), 1000).unref();
      return false;
    }
    sendInFrames(c.ws, body);
    if (this.observer) this.observe("out", id, body, !isText(body));
    return true;
  }

  /** Keeps an invocation in flight until it settles, so that stop() can wait for it; resolves as it does. */
  private track(invocation: Promise<void>): Promise<void> {
    this.inflight.add(invocation);
    return invocation.finally(() => this.inflight.delete(invocation));
  }

  /**
   * Refuses new clients with 503 from now on, as the local gateway does as `run` stops: the
   * emulator's stop() lets the events in flight answer (inFlight) before it closes the clients.
   */
  drain(): void {
    this.draining = true;
  }

  /** How many of its clients' events (a $connect, a message, a $disconnect) are in flight. */
  get inFlight(): number {
    return this.inflight.size;
  }

  /** Closes every connection with 1001 and waits (bounded) for the invocations that caused. */
  async stop(): Promise<void> {
    this.draining = true;
    for (const c of this.connections.values()) c.ws.close(1001, "Going away");
    const deadline = Date.now() + 1000;
    while (this.connections.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    for (const c of this.connections.values()) c.ws.terminate();
    // $disconnect (and late $default) invocations must finish before the functions are stopped.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.inflight]),
      new Promise((r) => {
        timer = setTimeout(r, 5000);
      }),
    ]);
    clearTimeout(timer);
    this.wss.close();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Sends one message in frames of at most 32 KB, as API Gateway does; text when it is UTF-8. */
function sendInFrames(ws: WebSocket, body: Buffer): void {
  const binary = !isText(body);
  if (body.length <= AWS_MAX_FRAME_BYTES) {
    ws.send(body, { binary });
    return;
  }
  for (let at = 0; at < body.length; at += AWS_MAX_FRAME_BYTES) {
    const end = Math.min(at + AWS_MAX_FRAME_BYTES, body.length);
    ws.send(body.subarray(at, end), { binary, fin: end === body.length });
  }
}

function isText(data: Buffer): boolean {
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(data);
    return true;
  } catch {
    return false;
  }
}

/** A connection id shaped like API Gateway's: 16 base64 characters ending in "=". */
function connectionId(): string {
  return `${randomBytes(12).toString("base64").slice(0, 15)}=`;
}

function shortId(seed: string): string {
  return createHash("sha256").update(seed).digest("hex").slice(0, 10);
}

/** A running emulator. */
export class Emulator {
  constructor(
    readonly apis: Map<string, EmulatedApi>,
    readonly functions: EmulatedFunction[],
    private readonly management: Server,
    /** Each socket's name and the URL clients connect to. */
    readonly sockets: { name: string; url: string }[],
    /** The credentials the Management and Invoke APIs take (the functions'). */
    readonly credentials: Credentials,
    /** Where the Management and Invoke APIs listen: `http://127.0.0.1:<port>`. */
    readonly managementUrl: string,
    /** The connections table (rooms and state), when the template has one. */
    readonly connectionsTable?: string,
    /** The template's secrets and their values (Secrets Manager). */
    readonly secrets?: EmulatedSecrets,
    /** Closes and removes a secret store the emulator made for itself. */
    private readonly cleanup?: () => Promise<void>,
  ) {}

  /** The longest handler timeout of its functions (the runtime's, 5 s, unless the project file says). */
  private handlerTimeoutMs(): number {
    return Math.max(
      0,
      ...this.functions.map((f) => Number(f.env[HANDLER_TIMEOUT_VAR] ?? Number.NaN) || DEFAULT_LIMITS.handlerTimeoutMs),
    );
  }

  /** The API of a socket. */
  connectionCount(): number {
    let n = 0;
    for (const api of this.apis.values()) n += api.connections.size;
    return n;
  }

  /** Calls back with each line a function prints, with its service's name. */
  onServiceOutput(listener: (service: string, stream: "stdout" | "stderr", line: string) => void): void {
    for (const f of this.functions) f.onLine = listener;
  }

  /** Restarts the functions of a service with their bundles as they are now (after a rebuild). */
  async restartService(service: string, signal?: AbortSignal): Promise<void> {
    // An init that failed or passed the limit says what follows (the next event retries it, as on Lambda).
    const restarts = this.functions
      .filter((f) => f.service === service)
      .map((f) =>
        f.restart().catch((error: Error) => {
          if (error instanceof InitTimeoutError)
            throw new Error(`service "${service}": ${error.message}; ${initRetrySaid(f)}`);
          if (error instanceof InitError)
            throw new Error(followedBy(`service "${service}": ${error.message}`, failedInitRetrySaid(true)));
          throw error;
        }),
      );
    // A stop does not wait for an init that hangs: the restart is given up, and stop() ends its process.
    const began = Date.now();
    await untilAborted(
      Promise.all(restarts),
      signal,
      () =>
        new Error(
          `service "${service}": its restart was given up, as the run stopped ${secondsSince(began)} s into it, before its function finished starting`,
        ),
    );
  }

  /**
   * Stops as the local provider stops: refuses new clients (503), lets the events in flight answer
   * for up to `drainMs` so their replies reach their clients, closes every connection with 1001
   * (their $disconnect events run), then stops functions and servers.
   * @param drainMs how long events in flight may take; by default the functions' longest handler
   * timeout (NITRIC_LIKE_HANDLER_TIMEOUT_MS), by which the runtime has answered each event, as
   * the local provider waits up to the handler timeout
   */
  async stop(drainMs = this.handlerTimeoutMs()): Promise<void> {
    const apis = [...this.apis.values()];
    for (const api of apis) api.drain();
    const until = Date.now() + drainMs;
    while (apis.some((api) => api.inFlight > 0) && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    await Promise.all(apis.map((a) => a.stop()));
    await Promise.all(this.functions.map((f) => f.stop()));
    await new Promise<void>((resolve) => this.management.close(() => resolve()));
    await this.cleanup?.();
  }
}

/**
 * The most a Management or Invoke API request may carry: Lambda's limit for a synchronous
 * invocation's payload (6 MB; a PostToConnection is refused over 128 KB after it is read). A
 * request over it is answered 413 at once, and nothing more of its body is kept.
 */
export const MAX_REQUEST_BODY_BYTES = 6 * 1024 * 1024;

/** Starts the emulator on a build folder. */
export async function startEmulator(options: EmulatorOptions): Promise<Emulator> {
  const region = options.region ?? "us-east-1";
  const stack = options.stackName ?? "emulated";
  const template = JSON.parse(readFileSync(join(options.buildDir, "template.json"), "utf8")) as Template;
  const resources = template.Resources;
  const physical = physicalIds(resources, region, stack);
  const resolved = resolveIntrinsics(resources, physical) as Template["Resources"];
  const credentials = options.credentials;
  await createTables(resolved, physical, options.dynamodbEndpoint, region, credentials);
  const templateSecrets = secretsOf(resources, physical);
  let ownStore: { store: SecretStore; dir: string } | undefined;
  let store: SecretStore | undefined;
  if (templateSecrets.length > 0) {
    if (options.secretStore) store = options.secretStore();
    else {
      const dir = mkdtempSync(join(tmpdir(), "nitric-like-emulated-secrets-"));
      ownStore = { store: new SecretStore(dir), dir };
      store = ownStore.store;
    }
  }
  const secrets = store ? new EmulatedSecrets(templateSecrets, store) : undefined;

  // The Management API, Lambda's Invoke API and Secrets Manager share one server.
  const apis = new Map<string, EmulatedApi>();
  const byName = new Map<string, EmulatedFunction>();
  const management = createManagementServer(
    {
      apis,
      byName,
      physicalArn: (f) => physical.attributes[f.logicalId]?.Arn,
      secrets,
      logger: options.logger,
      credentials,
      region,
      hint:
        options.credentialsHint ??
        "sign it (SigV4) with the credentials the emulator gives its functions (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
      callbacks: new TokenBucket(
        options.callbacksPerSecond ?? CALLBACKS_PER_SECOND,
        (options.callbacksPerSecond ?? CALLBACKS_PER_SECOND) / 2,
      ),
      throttled: new BurstLog(options.logger, "warn", (n) => ` (${n} throttled since the last report)`),
      offStage: new BurstLog(options.logger, "warn", (n) => ` (${n} refused so since the last report)`),
    },
    options.headersTimeoutMs ?? HEADERS_TIMEOUT_MS,
  );
  await new Promise<void>((resolve) => management.listen(0, "127.0.0.1", resolve));
  const managementUrl = `http://127.0.0.1:${(management.address() as AddressInfo).port}`;

  // Socket APIs, listening first so their URLs can go into the functions' environment.
  const socketNames = socketNamesOf(template);
  const routes = routesOf(resources, resolved, physical);
  const functions = createFunctions(resolved, physical, options);
  const fnById = new Map<string, EmulatedFunction>();
  for (const fn of functions) {
    fnById.set(fn.logicalId, fn);
    byName.set(fn.name, fn);
  }
  const rate = new TokenBucket(options.newConnectionsPerSecond ?? NEW_CONNECTIONS_PER_SECOND);
  const connectionsTable = resources.ConnectionsTable ? (physical.ref.ConnectionsTable as string) : undefined;
  const sockets: { name: string; url: string }[] = [];
  const emulator = new Emulator(
    apis,
    functions,
    management,
    sockets,
    credentials,
    managementUrl,
    connectionsTable,
    secrets,
    ownStore
      ? async () => {
          await ownStore.store.close();
          rmSync(ownStore.dir, { recursive: true, force: true });
        }
      : undefined,
  );
  try {
    for (const [logicalId] of Object.entries(resources)) {
      if (resources[logicalId]?.Type !== "AWS::ApiGatewayV2::Api") continue;
      const api = emulatedApi(logicalId, { resolved, physical, routes, fnById, socketNames, options, rate });
      apis.set(api.apiId, api);
      const pinned = options.port?.(api.socketName);
      await api.listen(pinned ?? options.formerPort?.(api.socketName), pinned === undefined);
    }
    for (const fn of functions)
      Object.assign(fn.env, functionEnvironment(fn, resolved, apis, managementUrl, region, credentials, options));
    // A function whose init fails (its code throws, or a top-level await rejects, as it loads)
    // does not stop the others: as on Lambda, its next event retries the init in a new execution
    // environment. What failed is said once, with the fix. A stop while they
    // start does not wait for an init that hangs: it names the functions whose init had not
    // finished (and ends them, below).
    const began = Date.now();
    const starting = new Set(functions);
    const starts = await untilAborted(
      Promise.allSettled(functions.map((f) => f.start().finally(() => starting.delete(f)))),
      options.signal,
      () => new Error(`run stopped while the functions were starting${unfinishedInits([...starting], began)}`),
    );
    starts.forEach((started, i) => {
      const fn = functions[i];
      if (started.status === "fulfilled" || fn === undefined) return;
      fn.ready.catch(() => {});
      const why = started.reason instanceof Error ? started.reason.message : String(started.reason);
      if (started.reason instanceof InitTimeoutError) {
        options.logger.error(`service "${fn.service}": ${why}; ${initRetrySaid(fn)}`);
        return;
      }
      options.logger.error(
        followedBy(`service "${fn.service}": ${why}`, failedInitRetrySaid(options.restartsOnChange !== false)),
      );
    });
  } catch (error) {
    // What started stops: no server left listening, no function process left running.
    await emulator.stop().catch(() => {});
    throw error;
  }
  for (const api of apis.values()) sockets.push({ name: api.socketName, url: api.url });
  sockets.sort((a, b) => compareNames(a.name, b.name));
  return emulator;
}

/**
 * What follows an init that failed: as on Lambda, the next event retries it (in a new execution
 * environment), failing again while its code does; and the fix.
 */
function failedInitRetrySaid(watching: boolean): string {
  return `as on Lambda, its next event retries the init in a new execution environment, and fails with it while it fails; ${watching ? "fix its module's top level and save" : "fix its module's top level and start run again (--no-watch: it does not watch files)"}`;
}

/** What follows an init past the limit: the next event retries it, as on Lambda, and the fix. */
function initRetrySaid(fn: EmulatedFunction): string {
  return `as on Lambda, its next event retries the init, under the function's timeout (${secondsOf(fn.timeoutMs)} s); make its module's top level (a top-level await that does not settle?) finish sooner`;
}

/** `work`, unless `signal` fires first: then `stopped()`'s rejection (the caller stops what it started). */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined, stopped: () => Error): Promise<T> {
  if (signal === undefined) return work;
  // What the work says once it was given up is not waited for, and not an unhandled rejection.
  work.catch(() => {});
  if (signal.aborted) return Promise.reject(stopped());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(stopped());
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** Seconds since `since` (Date.now()), to a tenth. */
function secondsSince(since: number): string {
  return ((Date.now() - since) / 1000).toFixed(1);
}

/** `; service "x": its function's init had not finished after N s, ...` for functions still starting; "" for none. */
function unfinishedInits(functions: readonly EmulatedFunction[], since: number): string {
  const services = [...new Set(functions.map((f) => f.service))].map((s) => JSON.stringify(s));
  if (services.length === 0) return "";
  const whose =
    services.length === 1
      ? `service ${services[0]}: its function's`
      : `services ${services.join(", ")}: their functions'`;
  return `; ${whose} init had not finished after ${secondsSince(since)} s, and is ended`;
}

/** Physical ids and attributes for the template's resources, as CloudFormation would make them. */
function physicalIds(resources: Template["Resources"], region: string, stack: string): Physical {
  const physical: Physical = {
    ref: {
      "AWS::Region": region,
      "AWS::AccountId": ACCOUNT,
      "AWS::StackName": stack,
      // A stack's ARN ends in its unique id, which the template takes to name functions.
      "AWS::StackId": `arn:aws:cloudformation:${region}:${ACCOUNT}:stack/${stack}/${stackUuid(stack)}`,
      "AWS::Partition": "aws",
      "AWS::URLSuffix": "amazonaws.com",
      ArtifactBucket: "emulated-artifacts",
    },
    attributes: {},
  };
  for (const [id, r] of Object.entries(resources)) {
    const name = `${stack}-${id}`;
    if (r.Type === "AWS::ApiGatewayV2::Api") {
      const apiId = shortId(`${stack}/${id}`);
      physical.ref[id] = apiId;
      physical.attributes[id] = { ApiId: apiId, ApiEndpoint: `wss://${apiId}.execute-api.${region}.amazonaws.com` };
    } else if (r.Type === "AWS::DynamoDB::Table") {
      physical.ref[id] = name;
      physical.attributes[id] = { Arn: `arn:aws:dynamodb:${region}:${ACCOUNT}:table/${name}` };
    } else if (r.Type === "AWS::Lambda::Function") {
      // The template names a function only from the stack's pseudo parameters (a late disconnect's
      // cycle, build/template.ts), so its name resolves before any resource has an id.
      const given = (r.Properties as { FunctionName?: unknown } | undefined)?.FunctionName;
      const fnName = given === undefined ? name : String(resolveIntrinsics(given, physical));
      physical.ref[id] = fnName;
      physical.attributes[id] = { Arn: `arn:aws:lambda:${region}:${ACCOUNT}:function:${fnName}` };
    } else if (r.Type === "AWS::IAM::Role") {
      physical.ref[id] = name;
      physical.attributes[id] = { Arn: `arn:aws:iam::${ACCOUNT}:role/${name}`, RoleId: shortId(name) };
    } else if (r.Type === "AWS::SecretsManager::Secret") {
      // Named as CloudFormation names a secret without a Name (`<LogicalId>-<random>`), and its ARN
      // ends in Secrets Manager's 6 characters; both made from the stack and the id, so the values
      // kept under the ARN are found again on a redeploy and the next run.
      const hash = shortId(`${stack}/${id}/secret`);
      const secretName = `${id}-${hash.slice(0, 10)}`;
      const arn = `arn:aws:secretsmanager:${region}:${ACCOUNT}:secret:${secretName}-${hash.slice(0, 6)}`;
      physical.ref[id] = arn;
      physical.attributes[id] = { Id: arn };
    } else if (r.Type === "AWS::Logs::LogGroup") {
      // Functions' logs go to the emulator's output; the group is named, never made.
      const group = `/aws/lambda/${stack}/${id}`;
      physical.ref[id] = group;
      physical.attributes[id] = { Arn: `arn:aws:logs:${region}:${ACCOUNT}:log-group:${group}:*` };
    } else {
      physical.ref[id] = shortId(`${stack}/${id}`);
    }
  }
  return physical;
}

/** A stack's made-up unique id, in the form of CloudFormation's (a UUID), the same for a stack name. */
function stackUuid(stack: string): string {
  const hex = createHash("sha256").update(`stack/${stack}`).digest("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/**
 * The template's secrets: each one's ARN (its Ref), name (the ARN less its random suffix) and name
 * in the app (its `nitric-like:secret` tag; the logical id for a template without one).
 */
function secretsOf(resources: Template["Resources"], physical: Physical): EmulatedSecret[] {
  return Object.entries(resources)
    .filter(([, r]) => r.Type === "AWS::SecretsManager::Secret")
    .map(([id, r]) => {
      const arn = physical.ref[id] as string;
      const tags = (r.Properties as { Tags?: { Key?: unknown; Value?: unknown }[] } | undefined)?.Tags ?? [];
      const tag = tags.find((t) => t.Key === SECRET_TAG)?.Value;
      return {
        arn,
        name: (arn.split(":secret:")[1] ?? "").replace(/-[^-]{6}$/, ""),
        secret: typeof tag === "string" ? tag : id,
      };
    });
}

/** Creates the template's DynamoDB tables; one kept from an earlier run keeps its data. */
async function createTables(
  resolved: Template["Resources"],
  physical: Physical,
  endpoint: string,
  region: string,
  credentials: Credentials,
): Promise<void> {
  // The SDK's Node 20 warning says nothing the emulator's user can act on.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const dynamo = new DynamoDBClient({ endpoint, region, credentials });
  for (const [id, r] of Object.entries(resolved)) {
    if (r.Type !== "AWS::DynamoDB::Table") continue;
    const p = r.Properties as Partial<CreateTableCommandInput>;
    try {
      await dynamo.send(
        new CreateTableCommand({
          TableName: physical.ref[id],
          KeySchema: p.KeySchema,
          AttributeDefinitions: p.AttributeDefinitions,
          BillingMode: p.BillingMode ?? "PAY_PER_REQUEST",
        }),
      );
    } catch (error) {
      // Kept from an earlier run: the data survives, as a stack update keeps it.
      if ((error as { name?: string }).name !== "ResourceInUseException") throw error;
    }
    await untilActive(dynamo, physical.ref[id] as string);
  }
  dynamo.destroy();
}

/**
 * Waits for a new table to be ACTIVE, as CloudFormation does before it creates what uses it:
 * dynalite makes it so a turn after CreateTable, later on a loaded machine with its store on disk,
 * and until then a function's first PutItem would get ResourceNotFoundException.
 */
export async function untilActive(dynamo: DynamoDBClient, table: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { Table } = await dynamo.send(new DescribeTableCommand({ TableName: table }));
    if (Table?.TableStatus === "ACTIVE") return;
    if (Date.now() > deadline)
      throw new Error(`DynamoDB table ${table} is still ${Table?.TableStatus} after ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** What the Management and Invoke API server reaches: filled in as the APIs and functions start. */
interface ManagementContext {
  /** The socket APIs, by API id. */
  apis: Map<string, EmulatedApi>;
  /** The functions, by physical name. */
  byName: Map<string, EmulatedFunction>;
  physicalArn(f: EmulatedFunction): string | undefined;
  /** The template's secrets (Secrets Manager); none when it has none. */
  secrets: EmulatedSecrets | undefined;
  logger: Logger;
  /** What a request must be signed with, and what a refused one is told. */
  credentials: Credentials;
  region: string;
  hint: string;
  /** The account's throttle on Management API requests (callbacksPerSecond). */
  callbacks: TokenBucket;
  /** Logs the throttled ones, once a burst. */
  throttled: BurstLog;
  /** Logs the `@connections` requests to a stage the API does not have, once a burst. */
  offStage: BurstLog;
}

/**
 * The server of the Management API (`/{api}/{stage}/@connections/{id}`), Lambda's Invoke API and
 * Secrets Manager (`POST /`, `X-Amz-Target: secretsmanager.*`).
 */
function createManagementServer(ctx: ManagementContext, headersTimeoutMs: number): Server {
  // The boundary of every Management and Invoke API request: what throws ends that one request with
  // 500 and one log line, never the emulator.
  return createServer(requestTimeouts(headersTimeoutMs, REQUEST_TIMEOUT_MS), (req, res) =>
    guard(
      () => serveManagement(ctx, req, res),
      (error) => answerFailure(res, ctx.logger, "management API", `serving ${req.method} ${req.url}`, error),
    ),
  );
}

async function serveManagement(ctx: ManagementContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let path: string;
  try {
    path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
  } catch {
    req.resume();
    res
      .writeHead(400, { "content-type": "application/json", "x-amzn-errortype": "BadRequestException" })
      .end(JSON.stringify({ message: `invalid request path ${JSON.stringify(req.url)}` }));
    return;
  }
  const target = req.headers["x-amz-target"];
  if (path === "/" && typeof target === "string" && target.startsWith("secretsmanager.")) {
    await serveSecrets(ctx, target, req, res);
    return;
  }
  const invoke = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/.exec(path);
  // An id is whatever follows @connections/, decoded: a newline in one (%0A) is still an id, which API Gateway answers 410.
  const m = invoke ? null : /^\/([^/]+)\/([^/]+)\/@connections\/(.+)$/s.exec(path);
  const api = m ? ctx.apis.get(m[1] as string) : undefined;
  if (!invoke && !api) {
    req.resume();
    res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ message: `no route for ${path}` }));
    return;
  }
  if (api && m && m[2] !== api.stage) {
    // API Gateway serves an API's connections at its stages only: another stage ("/prod/") gets
    // 403 Forbidden, as an upgrade off the stage does, before the signature and the throttle. The
    // caller sees API Gateway's body; `run`'s log names the endpoint to use.
    req.resume();
    ctx.offStage.note(
      `management API: refused a ${clip(req.method ?? "")} on ${JSON.stringify(clip(path))} with 403 Forbidden, as API Gateway does: API ${api.logicalId} has no stage ${JSON.stringify(clip(m[2] as string))}; its connections are at /${api.apiId}/${api.stage}/@connections/{id}`,
    );
    res
      .writeHead(403, { "content-type": "application/json", "x-amzn-errortype": "ForbiddenException" })
      .end(JSON.stringify({ message: "Forbidden" }));
    return;
  }
  const scope = {
    credentials: ctx.credentials,
    region: ctx.region,
    service: invoke ? "lambda" : "execute-api",
    hint: ctx.hint,
  };
  const body = await readSignedBody(req, res, scope, MAX_REQUEST_BODY_BYTES, "rest");
  if (body === undefined) return;
  if (invoke) await serveInvoke(ctx, invoke[1] as string, req, body, res);
  else if (api && m) {
    if (!ctx.callbacks.take()) {
      // Over the account's throttle, as API Gateway answers it; the runtime retries such a call.
      ctx.throttled.note(
        `management API: throttled a ${req.method} @connections request (429 LimitExceededException): over API Gateway's account throttle of ${ctx.callbacks.perSecond} requests/s`,
      );
      res
        .writeHead(429, { "content-type": "application/json", "x-amzn-errortype": "LimitExceededException" })
        .end(JSON.stringify({ message: "Too Many Requests" }));
      return;
    }
    api.manage(req.method ?? "GET", m[3] as string, body, res);
  }
}

/**
 * A Secrets Manager request: signed for `secretsmanager` with the run's credentials (refused as
 * Secrets Manager refuses, 400 with the error in the body, before the body is read), its body
 * at most MAX_SECRETS_REQUEST_BYTES, then the operation.
 */
async function serveSecrets(ctx: ManagementContext, target: string, req: IncomingMessage, res: ServerResponse) {
  const scope = { credentials: ctx.credentials, region: ctx.region, service: "secretsmanager", hint: ctx.hint };
  if (req.method !== "POST") {
    req.resume();
    answerSecrets(res, { status: 400, error: "ValidationException", message: "Secrets Manager takes POST only" });
    return;
  }
  const body = await readSignedBody(req, res, scope, MAX_SECRETS_REQUEST_BYTES, "json");
  if (body === undefined) return;
  const answer: SecretsAnswer = ctx.secrets
    ? await ctx.secrets.serve(target, body)
    : {
        status: 400,
        error: "ResourceNotFoundException",
        message: "Secrets Manager can't find the specified secret: this deployment's template has no secrets",
      };
  answerSecrets(res, answer);
}

function answerSecrets(res: ServerResponse, answer: SecretsAnswer): void {
  const headers = { "content-type": "application/x-amz-json-1.1" };
  if ("body" in answer) {
    res.writeHead(200, headers).end(JSON.stringify(answer.body));
    return;
  }
  res.writeHead(answer.status, headers).end(JSON.stringify({ __type: answer.error, message: answer.message }));
}

/** Lambda's Invoke: RequestResponse answers the function's result, Event (asynchronous) 202 at once. */
async function serveInvoke(
  ctx: ManagementContext,
  name: string,
  req: IncomingMessage,
  body: Buffer,
  res: ServerResponse,
): Promise<void> {
  const fn = ctx.byName.get(name) ?? [...ctx.byName.values()].find((f) => ctx.physicalArn(f) === name);
  if (!fn) {
    res
      .writeHead(404, { "content-type": "application/json", "x-amzn-errortype": "ResourceNotFoundException" })
      .end(JSON.stringify({ message: `Function not found: ${name}` }));
    return;
  }
  let event: unknown;
  try {
    event = JSON.parse(body.toString("utf8") || "null");
  } catch {
    res
      .writeHead(400, { "content-type": "application/json", "x-amzn-errortype": "InvalidRequestContentException" })
      .end(JSON.stringify({ message: "Could not parse request body into json" }));
    return;
  }
  if (req.headers["x-amz-invocation-type"] === "Event") {
    if (body.length > AWS_MAX_ASYNC_PAYLOAD_BYTES) {
      res
        .writeHead(413, { "content-type": "application/json", "x-amzn-errortype": "RequestEntityTooLargeException" })
        .end(
          JSON.stringify({
            Type: "User",
            message: `${body.length} byte payload is too large for the Event invocation type (limit ${AWS_MAX_ASYNC_PAYLOAD_BYTES} bytes)`,
          }),
        );
      return;
    }
    const queued = fn.invokeAsync(event);
    if (queued === undefined) {
      res
        .writeHead(429, { "content-type": "application/json", "x-amzn-errortype": "TooManyRequestsException" })
        .end(JSON.stringify({ Type: "User", message: "Rate Exceeded.", Reason: "AsyncQueueFull" }));
      return;
    }
    // A failed init is said by its function, once a burst.
    queued.catch((error: Error) => {
      if (!(error instanceof InitError) && !(error instanceof StoppedError) && !(error instanceof RestartedError))
        ctx.logger.error(`async invoke of ${fn.name}: ${error.message}`);
    });
    res.writeHead(202).end();
    return;
  }
  try {
    // The result first: the headers say whether the function failed.
    const result = JSON.stringify((await fn.invoke(event)) ?? null);
    res.writeHead(200, { "content-type": "application/json" }).end(result);
  } catch (error) {
    if (error instanceof ThrottledError) {
      // Lambda's answer to an invocation over the concurrency quota.
      res
        .writeHead(429, { "content-type": "application/json", "x-amzn-errortype": "TooManyRequestsException" })
        .end(JSON.stringify({ Reason: "ConcurrentInvocationLimitExceeded", Type: "User", message: "Rate Exceeded." }));
      return;
    }
    // Lambda's answer to an event whose init failed: the error the init threw (or Runtime.ExitError);
    // to one an uncaught error ended, that error.
    const answer =
      error instanceof InitError || error instanceof UncaughtError
        ? { errorType: error.errorType, errorMessage: error.errorMessage }
        : { errorMessage: (error as Error).message };
    res
      .writeHead(200, { "content-type": "application/json", "x-amz-function-error": "Unhandled" })
      .end(JSON.stringify(answer));
  }
}

/** Each socket's name by its API's logical id, from the template's `Websocket<Name>` outputs. */
function socketNamesOf(template: Template): Map<string, string> {
  const socketNames = new Map<string, string>();
  for (const [key, output] of Object.entries(template.Outputs ?? {})) {
    const name = output.Description?.replace(/^websocket /, "");
    const api = /^\$\{([A-Za-z0-9]+)\}/.exec(
      String((output.Value as { "Fn::Sub"?: string })?.["Fn::Sub"] ?? "").split("://")[1] ?? "",
    );
    if (key.startsWith("Websocket") && name && api?.[1]) socketNames.set(api[1], name);
  }
  return socketNames;
}

/** A route of the template: the logical ids of the function it calls and of its authorizer's. */
interface TemplateRoute {
  fnId: string;
  twoWay: boolean;
  authorizerFnId?: string;
}

/** Each API's routes (by physical API id, then route key), followed through integrations to functions. */
function routesOf(
  resources: Template["Resources"],
  resolved: Template["Resources"],
  physical: Physical,
): Map<string, Map<string, TemplateRoute>> {
  const routesOf = new Map<string, Map<string, TemplateRoute>>();
  const functionOfUri = (uri: string) =>
    Object.keys(resources).find(
      (id) => resources[id]?.Type === "AWS::Lambda::Function" && uri.includes(`${physical.attributes[id]?.Arn}/`),
    );
  // A route is two-way (its function's answer goes back to the client) with a route response
  // selection expression and a route response, as API Gateway has it.
  const answered = new Set(
    Object.values(resolved)
      .filter((r) => r.Type === "AWS::ApiGatewayV2::RouteResponse")
      .map((r) => String((r.Properties as { RouteId?: unknown }).RouteId)),
  );
  for (const [logicalId, r] of Object.entries(resolved)) {
    if (r.Type !== "AWS::ApiGatewayV2::Route") continue;
    const p = r.Properties as {
      ApiId: string;
      RouteKey: string;
      Target: string;
      RouteResponseSelectionExpression?: string;
      AuthorizationType?: string;
      AuthorizerId?: string;
    };
    const integrationId = p.Target.replace(/^integrations\//, "");
    const integration = Object.entries(resources).find(([id]) => physical.ref[id] === integrationId)?.[0];
    const uri = String((resolved[integration ?? ""]?.Properties as { IntegrationUri?: string })?.IntegrationUri ?? "");
    const fnId = functionOfUri(uri);
    if (!fnId) throw new Error(`template: route ${p.RouteKey} of API ${p.ApiId} targets no function of the template`);
    let authorizerFnId: string | undefined;
    if (p.AuthorizationType === "CUSTOM") {
      const authorizer = Object.entries(resources).find(([id]) => physical.ref[id] === p.AuthorizerId)?.[0];
      const authorizerUri = String(
        (resolved[authorizer ?? ""]?.Properties as { AuthorizerUri?: string })?.AuthorizerUri ?? "",
      );
      authorizerFnId = functionOfUri(authorizerUri);
      if (!authorizerFnId)
        throw new Error(
          `template: the authorizer of route ${p.RouteKey} of API ${p.ApiId} names no function of the template`,
        );
    }
    const routes = routesOf.get(p.ApiId) ?? new Map();
    routes.set(p.RouteKey, {
      fnId,
      twoWay: p.RouteResponseSelectionExpression !== undefined && answered.has(String(physical.ref[logicalId])),
      ...(authorizerFnId ? { authorizerFnId } : {}),
    });
    routesOf.set(p.ApiId, routes);
  }
  return routesOf;
}

/** A function per AWS::Lambda::Function, not started: its environment is set once the APIs listen. */
function createFunctions(
  resolved: Template["Resources"],
  physical: Physical,
  options: EmulatorOptions,
): EmulatedFunction[] {
  const functions: EmulatedFunction[] = [];
  const concurrency = new Concurrency(
    options.concurrentExecutions ?? CONCURRENT_EXECUTIONS,
    options.maxQueuedAsync ?? MAX_QUEUED_ASYNC,
  );
  for (const [id, r] of Object.entries(resolved)) {
    if (r.Type !== "AWS::Lambda::Function") continue;
    const p = r.Properties as {
      Environment?: { Variables?: Record<string, string> };
      Timeout?: number;
      MemorySize?: number;
    };
    const service = p.Environment?.Variables?.NITRIC_LIKE_SERVICE ?? id;
    const name = physical.ref[id] as string;
    functions.push(
      new EmulatedFunction(
        id,
        name,
        service,
        join(options.buildDir, "functions", service),
        {},
        options.logger,
        concurrency,
        options.functionTimeoutMs ?? (p.Timeout ?? LAMBDA_DEFAULT_TIMEOUT_SECONDS) * 1000,
        options.functionMemoryMb ?? p.MemorySize ?? LAMBDA_DEFAULT_MEMORY_MB,
        options.maxInstancesPerFunction,
        options.instanceIdleMs,
        options.freezeBetweenInvocations,
        options.initTimeoutMs,
      ),
    );
  }
  return functions;
}

/** What answerWithin gives for a function API Gateway stopped waiting for. */
const TIMED_OUT = Symbol("timed out");

/** A client's request target for a log line: at most 100 characters of it (headers may hold 16 KB). */
function clip(target: string): string {
  return target.length > 100 ? `${target.slice(0, 100)}…` : target;
}

/** The emulated API of the template's API `logicalId`: its stage, routes and limits. */
function emulatedApi(
  logicalId: string,
  from: {
    resolved: Template["Resources"];
    physical: Physical;
    routes: Map<string, Map<string, TemplateRoute>>;
    fnById: Map<string, EmulatedFunction>;
    socketNames: Map<string, string>;
    options: EmulatorOptions;
    rate: TokenBucket;
  },
): EmulatedApi {
  const { resolved, physical, fnById, socketNames, options } = from;
  const apiId = physical.ref[logicalId] as string;
  const stage =
    Object.values(resolved).find(
      (r) => r.Type === "AWS::ApiGatewayV2::Stage" && (r.Properties as { ApiId: string }).ApiId === apiId,
    )?.Properties?.StageName ?? "live";
  const routes = new Map<string, EmulatedRoute>();
  const selection = (resolved[logicalId]?.Properties as { RouteSelectionExpression?: unknown } | undefined)
    ?.RouteSelectionExpression;
  const own = [...(from.routes.get(apiId)?.keys() ?? [])].filter((key) => !key.startsWith("$"));
  const routeBy = routeByOf(selection);
  if (own.length > 0 && routeBy === undefined) {
    throw new Error(
      `template: API ${logicalId} has routes ${own.map((k) => JSON.stringify(k)).join(", ")} selected by ${JSON.stringify(selection)}; the emulator selects routes by $request.body.<property> only, as ${ROUTE_SELECTION_EXPRESSION} (build the template with nitric-like build)`,
    );
  }
  for (const [key, route] of from.routes.get(apiId) ?? []) {
    const authorizer = route.authorizerFnId ? fnById.get(route.authorizerFnId) : undefined;
    routes.set(key, {
      fn: fnById.get(route.fnId) as EmulatedFunction,
      twoWay: route.twoWay,
      ...(authorizer ? { authorizer } : {}),
    });
  }
  const asked = options.limits?.(socketNames.get(logicalId) ?? logicalId) ?? {};
  const api = new EmulatedApi(
    logicalId,
    apiId,
    String(stage),
    routes,
    options.logger,
    {
      idleTimeoutMs: Math.min(asked.idleTimeoutMs ?? Number.POSITIVE_INFINITY, DEFAULT_LIMITS.idleTimeoutMs),
      maxConnectionAgeMs: Math.min(
        asked.maxConnectionAgeMs ?? Number.POSITIVE_INFINITY,
        DEFAULT_LIMITS.maxConnectionAgeMs,
      ),
      upgradeTimeoutMs: asked.upgradeTimeoutMs ?? DEFAULT_LIMITS.upgradeTimeoutMs,
      maxConnections: asked.maxConnections ?? DEFAULT_LIMITS.maxConnections,
    },
    from.rate,
    options.integrationTimeoutMs ?? AWS_INTEGRATION_TIMEOUT_MS,
  );
  api.socketName = socketNames.get(logicalId) ?? logicalId;
  if (routeBy !== undefined) api.routeBy = routeBy;
  return api;
}

/** A function's environment: the template's, with the sockets pointed at this emulator. */
function functionEnvironment(
  fn: EmulatedFunction,
  resolved: Template["Resources"],
  apis: Map<string, EmulatedApi>,
  managementUrl: string,
  region: string,
  credentials: Credentials,
  options: EmulatorOptions,
): Record<string, string> {
  const variables = {
    ...((resolved[fn.logicalId]?.Properties as { Environment?: { Variables?: Record<string, string> } } | undefined)
      ?.Environment?.Variables ?? {}),
  };
  if (variables.NITRIC_LIKE_WEBSOCKETS) {
    const sockets = JSON.parse(variables.NITRIC_LIKE_WEBSOCKETS) as Record<
      string,
      { apiId: string; url?: string; endpoint?: string }
    >;
    // Each socket's Management API is the double's, made by the runtime from the API id as on AWS
    // (runtime/bindings.ts), at the API's stage; the URL clients connect to is the API's own port.
    const stage = [...apis.values()][0]?.stage ?? "";
    variables.NITRIC_LIKE_WEBSOCKET_ENDPOINT = `${managementUrl}/{apiId}/${stage}`;
    for (const s of Object.values(sockets)) {
      const api = apis.get(s.apiId);
      if (!api)
        throw new Error(`template: NITRIC_LIKE_WEBSOCKETS of ${fn.logicalId} names API ${s.apiId}, which it lacks`);
      s.url = api.url;
      if (api.stage === stage) delete s.endpoint;
      else s.endpoint = `${managementUrl}/${api.apiId}/${api.stage}`;
    }
    variables.NITRIC_LIKE_WEBSOCKETS = JSON.stringify(sockets);
  }
  return {
    PATH: process.env.PATH ?? "",
    ...variables,
    AWS_REGION: region,
    AWS_DEFAULT_REGION: region,
    AWS_ACCESS_KEY_ID: credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
    AWS_LAMBDA_FUNCTION_NAME: fn.name,
    // The runtime's advice names `run`, not a deploy, where the deployment is this emulator's.
    [EMULATED_VAR]: "1",
    // Lambda runs nodejs22.x; on Node 20 a service bundling the AWS SDK would warn on every start.
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
    AWS_ENDPOINT_URL_DYNAMODB: options.dynamodbEndpoint,
    AWS_ENDPOINT_URL_LAMBDA: managementUrl,
    AWS_ENDPOINT_URL_SECRETS_MANAGER: managementUrl,
    ...(options.sourceDir === undefined ? {} : { [SOURCE_DIR_VAR]: options.sourceDir }),
    ...(options.env ?? {}),
  };
}
