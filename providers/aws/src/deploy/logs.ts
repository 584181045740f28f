/**
 * `nitric-like logs --provider aws`: the lines a deployment's functions wrote to CloudWatch Logs.
 * Each function logs to `/aws/lambda/<stack>/<service>` (build/template.ts), so the stack's log
 * groups are found by that prefix, including a service's that has since been removed from the
 * project, without reading the stack itself.
 */
import {
  CloudWatchLogsClient,
  DescribeLogGroupsCommand,
  type FilteredLogEvent,
  FilterLogEventsCommand,
} from "@aws-sdk/client-cloudwatch-logs";
import type { LogLine, LogsOptions } from "@nitric-like/spec";
import { callTimeouts, requestHandlerOptions, watchCalls } from "./calls.js";
import { credentialProvider } from "./credentials.js";
import { DeployError, explain } from "./deploy.js";

/** How often a follow asks for new lines. */
export const FOLLOW_POLL_MS = 2000;
/**
 * How far back each poll of a follow looks again: CloudWatch Logs can make a line readable a few
 * seconds after lines logged later than it, and a follow must not skip it. Lines already printed
 * are known by their event ids.
 */
const LATE_MS = 15_000;

/**
 * How long a request to CloudWatch Logs may wait, for its connection and then between any two
 * bytes of its answer, before it counts as failed (and is tried again): a network that silently
 * drops packets would otherwise hold a follow forever. NITRIC_LIKE_AWS_LOGS_TIMEOUT_MS, else 15 s:
 * a read's answers are small, and a follow says it lost contact once that long has passed.
 */
function logsTimeouts() {
  return callTimeouts("NITRIC_LIKE_AWS_LOGS_TIMEOUT_MS", { connectMs: 15_000, idleMs: 15_000 });
}

/** The log group of each of the stack's services, by service. */
async function logGroups(
  client: CloudWatchLogsClient,
  stack: string,
  signal: AbortSignal | undefined,
): Promise<Map<string, string>> {
  const prefix = `/aws/lambda/${stack}/`;
  const groups = new Map<string, string>();
  let nextToken: string | undefined;
  do {
    const page = await client.send(
      new DescribeLogGroupsCommand({ logGroupNamePrefix: prefix, ...(nextToken ? { nextToken } : {}) }),
      signal ? { abortSignal: signal } : {},
    );
    for (const group of page.logGroups ?? []) {
      const name = group.logGroupName;
      if (name?.startsWith(prefix)) groups.set(name.slice(prefix.length), name);
    }
    nextToken = page.nextToken;
  } while (nextToken);
  return groups;
}

/**
 * The least time between two FilterLogEvents requests: CloudWatch Logs allows an account a few of
 * them a second in a region (5 by default), and a stack of many services, followed, would pass
 * that if its groups were read back to back. The SDK retries a throttled one as well.
 */
const REQUEST_GAP_MS = 250;

/** Every event of `group` from `startTime`, all pages; `pace` waits for each request's turn. */
async function eventsOf(
  client: CloudWatchLogsClient,
  group: string,
  startTime: number,
  pace: () => Promise<void>,
  signal: AbortSignal | undefined,
): Promise<FilteredLogEvent[]> {
  const events: FilteredLogEvent[] = [];
  let nextToken: string | undefined;
  do {
    await pace();
    const page = await client.send(
      new FilterLogEventsCommand({ logGroupName: group, startTime, ...(nextToken ? { nextToken } : {}) }),
      signal ? { abortSignal: signal } : {},
    );
    events.push(...(page.events ?? []));
    nextToken = page.nextToken;
  } while (nextToken);
  return events;
}

const sleep = (ms: number, signal: AbortSignal | undefined) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });

/** The longest wait between two tries of a follow that lost contact with CloudWatch Logs. */
const MAX_BACKOFF_MS = 30_000;

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ENETUNREACH",
  "ENETDOWN",
  "EHOSTUNREACH",
]);
const PASSING_ERRORS = new Set([
  "ThrottlingException",
  "Throttling",
  "TooManyRequestsException",
  "RequestLimitExceeded",
  "LimitExceededException",
  "ServiceUnavailable",
  "ServiceUnavailableException",
  "InternalFailure",
  "InternalServerError",
  "RequestTimeout",
  "RequestTimeoutException",
  "TimeoutError",
]);

/**
 * Why a request failed, in a few words, when asking again later may succeed: the network (the
 * connection refused, reset or timed out, the name not resolved), throttling, or a fault on AWS's
 * side (5xx). Undefined for a failure that lasts: credentials refused, access denied, a log group
 * that is gone, an endpoint that is not AWS.
 */
export function passingFailure(error: unknown): string | undefined {
  const e = error as {
    name?: string;
    code?: string;
    message?: string;
    cause?: { code?: string };
    $metadata?: { httpStatusCode?: number };
  };
  const code = e.code ?? e.cause?.code ?? /\b(E[A-Z]{4,})\b/.exec(e.message ?? "")?.[1];
  if (code && NETWORK_CODES.has(code)) return code;
  if (/socket hang up/i.test(e.message ?? "")) return "the connection closed";
  if (e.name && PASSING_ERRORS.has(e.name)) return e.name;
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined && (status >= 500 || status === 429)) return `HTTP ${status}`;
  return undefined;
}

/** How often a follow looks for services added to (or removed from) the stack by an `up`. */
const GROUPS_REFRESH_MS = 30_000;
/** The same, once a read found nothing new: a quiet stack is looked at sooner, cheaply. */
const QUIET_GROUPS_REFRESH_MS = 5_000;

/**
 * The stack's log lines, oldest first; with `follow`, new ones every `pollMs` until aborted. Once
 * a follow has read the stack, a failure that passes (passingFailure; a request that gets no
 * answer for NITRIC_LIKE_AWS_LOGS_TIMEOUT_MS is one) is said once and ridden out, asking again
 * with a growing wait; the read that then succeeds starts where the last one that succeeded did,
 * so no line is skipped or given twice across the gap. Any other failure ends it, saying what to
 * do. A follow of every service looks for the stack's log groups again now and then (every
 * `refreshMs`, sooner when quiet), so a service an `up` adds meanwhile is followed too, from its
 * first line, and one it removes is let go.
 */
export async function* readLogs(
  options: LogsOptions,
  pollMs = FOLLOW_POLL_MS,
  refreshMs = { busy: GROUPS_REFRESH_MS, quiet: QUIET_GROUPS_REFRESH_MS },
): AsyncGenerator<LogLine> {
  const { stack, service, signal, logger } = options;
  const doing = `reading the logs of stack "${stack}"`;
  const timeouts = logsTimeouts();
  // A follow's Ctrl-C aborts its requests through `signal`; a single read's ends one that waits.
  const client = watchCalls(
    new CloudWatchLogsClient({
      ...(options.region ? { region: options.region } : {}),
      requestHandler: requestHandlerOptions(timeouts),
      // A follow's Ctrl-C is its own (through `signal`), never a failed lookup.
      credentials: credentialProvider(timeouts, { region: options.region, logger, interruptible: !options.follow }),
    }),
    { service: "CLOUDWATCH_LOGS", timeouts, interruptible: !options.follow },
  );
  try {
    let groups: Map<string, string>;
    try {
      groups = await logGroups(client, stack, signal);
    } catch (error) {
      if (signal?.aborted) return;
      throw explain(error, doing, "CLOUDWATCH_LOGS", "logs");
    }
    if (groups.size === 0) {
      throw new DeployError(
        `${doing}: it has no log group (/aws/lambda/${stack}/<service>) in this account and region; deploy it with "nitric-like up", or give its name with --stack and its region with --region`,
      );
    }
    if (service !== undefined && !groups.has(service)) {
      throw new DeployError(
        `${doing}: no service "${service}" logs there; its services: ${[...groups.keys()].sort().join(", ")}`,
      );
    }
    /** The groups read, by service. */
    const reading = new Map(service === undefined ? groups : [[service, groups.get(service) as string]]);
    /** Services found after the follow began, read from `since` at their first read. */
    const added = new Set<string>();
    let listedAt = Date.now();
    /** The group a read found gone, looked for again before the follow gives up on it. */
    let vanished: string | undefined;
    /** Event ids already given, with their times (a follow's polls overlap by LATE_MS). */
    const given = new Map<string, number>();
    let newest = options.since;
    let quiet = false;
    let lastRequest = 0;
    const pace = async () => {
      const wait = lastRequest + REQUEST_GAP_MS - Date.now();
      if (wait > 0) await sleep(wait, undefined);
      lastRequest = Date.now();
    };
    /** When contact was lost (Date.now()), while a follow rides out a failure. */
    let lostAt: number | undefined;
    let backoff = pollMs;
    for (;;) {
      const from = Math.max(options.since, newest - LATE_MS);
      const lines: (LogLine & { id: string })[] = [];
      // What this read found; known as given only once every group has been read, so a read that
      // fails halfway gives nothing and the next one finds the same lines again.
      const found = new Map<string, number>();
      let group = "";
      try {
        if (
          options.follow &&
          service === undefined &&
          (vanished !== undefined || Date.now() - listedAt >= (quiet ? refreshMs.quiet : refreshMs.busy))
        ) {
          group = "";
          const now = await logGroups(client, stack, signal);
          listedAt = Date.now();
          for (const [name, logGroup] of now) {
            if (reading.has(name)) continue;
            reading.set(name, logGroup);
            added.add(name);
            logger.info(`${doing}: service "${name}" is new in the stack; following it too`);
          }
          for (const [name, logGroup] of reading) {
            if (now.has(name) || reading.size === 1) continue;
            reading.delete(name);
            added.delete(name);
            logger.info(
              `${doing}: service "${name}" is gone from the stack (its log group ${JSON.stringify(logGroup)} was deleted); following the others`,
            );
          }
        }
        for (const [name, logGroup] of reading) {
          group = logGroup;
          for (const event of await eventsOf(client, logGroup, added.has(name) ? options.since : from, pace, signal)) {
            const id = event.eventId ?? `${event.logStreamName}/${event.timestamp}/${event.message}`;
            if (given.has(id) || found.has(id)) continue;
            found.set(id, event.timestamp ?? 0);
            lines.push({ id, service: name, time: event.timestamp ?? 0, message: event.message ?? "" });
          }
        }
      } catch (error) {
        if (signal?.aborted) return;
        // A group deleted under a follow of every service (an `up` removed its service): the
        // stack's groups are listed again at once, and the follow goes on without it. One still
        // listed, or the last one, ends it.
        if (
          options.follow &&
          service === undefined &&
          (error as { name?: string }).name === "ResourceNotFoundException" &&
          group !== "" &&
          vanished !== group &&
          reading.size > 1
        ) {
          vanished = group;
          continue;
        }
        const passing = options.follow ? passingFailure(error) : undefined;
        if (passing === undefined) throw lasting(error, doing, group);
        if (lostAt === undefined) {
          lostAt = Date.now();
          logger.warn(
            `${doing}: lost contact with CloudWatch Logs (${passing}); trying again until it answers, Ctrl-C stops`,
          );
        }
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
        if (signal?.aborted) return;
        continue;
      }
      vanished = undefined;
      added.clear();
      if (lostAt !== undefined) {
        logger.info(
          `${doing}: CloudWatch Logs answers again after ${Math.round((Date.now() - lostAt) / 1000)} s; the lines logged meanwhile follow`,
        );
        lostAt = undefined;
        backoff = pollMs;
      }
      for (const [id, time] of found) given.set(id, time);
      quiet = lines.length === 0;
      lines.sort((a, b) => a.time - b.time || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      for (const { service: name, time, message } of lines) {
        newest = Math.max(newest, time);
        // Lambda's lines end with a line break; a message may hold several lines.
        for (const text of message.replace(/\r?\n$/, "").split(/\r?\n/)) yield { service: name, time, message: text };
      }
      if (!options.follow || signal?.aborted) return;
      for (const [id, time] of given) if (time < newest - 2 * LATE_MS) given.delete(id);
      await sleep(pollMs, signal);
      if (signal?.aborted) return;
    }
  } finally {
    client.destroy();
  }
}

/** A failure reading `group` that asking again will not mend, said with what to do. */
function lasting(error: unknown, doing: string, group: string): Error {
  if ((error as { name?: string }).name === "ResourceNotFoundException") {
    return new DeployError(
      `${doing}: its log group ${JSON.stringify(group)} is not there any more (was the stack deleted, with "nitric-like down"?); deploy it again with "nitric-like up", or give another stack with --stack`,
    );
  }
  return explain(error, doing, "CLOUDWATCH_LOGS", "logs");
}
