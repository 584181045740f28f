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
import { DeployError, explain } from "./deploy.js";

/** How often a follow asks for new lines. */
export const FOLLOW_POLL_MS = 2000;
/**
 * How far back each poll of a follow looks again: CloudWatch Logs can make a line readable a few
 * seconds after lines logged later than it, and a follow must not skip it. Lines already printed
 * are known by their event ids.
 */
const LATE_MS = 15_000;

/** The log group of each of the stack's services, by service. */
async function logGroups(client: CloudWatchLogsClient, stack: string): Promise<Map<string, string>> {
  const prefix = `/aws/lambda/${stack}/`;
  const groups = new Map<string, string>();
  let nextToken: string | undefined;
  do {
    const page = await client.send(
      new DescribeLogGroupsCommand({ logGroupNamePrefix: prefix, ...(nextToken ? { nextToken } : {}) }),
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
): Promise<FilteredLogEvent[]> {
  const events: FilteredLogEvent[] = [];
  let nextToken: string | undefined;
  do {
    await pace();
    const page = await client.send(
      new FilterLogEventsCommand({ logGroupName: group, startTime, ...(nextToken ? { nextToken } : {}) }),
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

/** The stack's log lines, oldest first; with `follow`, new ones every FOLLOW_POLL_MS until aborted. */
export async function* readLogs(options: LogsOptions, pollMs = FOLLOW_POLL_MS): AsyncGenerator<LogLine> {
  const { stack, service, signal } = options;
  const doing = `reading the logs of stack "${stack}"`;
  const client = new CloudWatchLogsClient(options.region ? { region: options.region } : {});
  try {
    let groups: Map<string, string>;
    try {
      groups = await logGroups(client, stack);
    } catch (error) {
      throw explain(error, doing, "CLOUDWATCH_LOGS");
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
    const reading = service === undefined ? [...groups] : [[service, groups.get(service) as string] as const];
    /** Event ids already given, with their times (a follow's polls overlap by LATE_MS). */
    const given = new Map<string, number>();
    let newest = options.since;
    let lastRequest = 0;
    const pace = async () => {
      const wait = lastRequest + REQUEST_GAP_MS - Date.now();
      if (wait > 0) await sleep(wait, undefined);
      lastRequest = Date.now();
    };
    for (;;) {
      const from = Math.max(options.since, newest - LATE_MS);
      const lines: (LogLine & { id: string })[] = [];
      try {
        for (const [name, group] of reading) {
          for (const event of await eventsOf(client, group, from, pace)) {
            const id = event.eventId ?? `${event.logStreamName}/${event.timestamp}/${event.message}`;
            if (given.has(id)) continue;
            given.set(id, event.timestamp ?? 0);
            lines.push({ id, service: name, time: event.timestamp ?? 0, message: event.message ?? "" });
          }
        }
      } catch (error) {
        throw explain(error, doing, "CLOUDWATCH_LOGS");
      }
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
