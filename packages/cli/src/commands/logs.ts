/** `nitric-like logs`: what a deployment's services logged, and with --follow what they log next. */
import { parseDuration } from "@nitric-like/spec";
import { type Output, UserError } from "../lib/log.js";
import { loadProjectFile } from "../lib/prepare.js";
import { providerFor, refuseStackName } from "../lib/providers.js";

/** Help for `logs`. */
export const LOGS_HELP = `Usage: nitric-like logs [dir] [options]

Prints what the deployed services of the project in dir (default: the current folder)
logged, oldest first, one line each:
  2026-12-06T06:40:12.345Z chat | <the line>
For aws: each function's CloudWatch Logs group (/aws/lambda/<stack>/<service>), the
lines Lambda adds included (START, END, REPORT). Nothing is built: only the project
file is read. Under "nitric-like run" every line is printed as it is logged instead.

Options:
  --since <duration>  How far back to start (default: 10m), such as 30s, 10m, 2h.
  --follow, -f        Keep printing new lines (every 2 s) until Ctrl-C.
                      A lost connection or throttling is waited out, said once;
                      services an "up" adds meanwhile are followed too.
  --service <name>    Only this service's lines.
  --provider <name>   Provider of the deployment (default: aws).
  --stack <name>      Stack name (default: the project's name).
  --region <region>   AWS region (default: from the AWS configuration).
  --json              One JSON object per line on stdout (JSON Lines), as
                        {"time":"<ISO 8601>","service":"chat","message":"<the line>"}
                      for a reader such as jq; a failure is one line too,
                        {"error":{"message":...,"problems":[...]}}
                      and what is said for people goes to stderr.
  --plain             No colours.
  -h, --help          Show this help.
`;

/** Options of `logs`. */
export interface LogsCommandOptions {
  dir: string;
  provider: string;
  stack?: string;
  region?: string;
  /** As typed: a duration. */
  since?: string;
  follow?: boolean;
  service?: string;
}

/** Runs `logs`; with `follow`, until SIGINT. */
export async function logsCommand(options: LogsCommandOptions, output: Output): Promise<number> {
  const back = parseDuration(options.since ?? "10m");
  if (back === undefined) {
    throw new UserError(`logs: --since takes a duration such as 30s, 10m or 2h, got ${JSON.stringify(options.since)}`);
  }
  const project = loadProjectFile(options.dir, output);
  const provider = await providerFor(options.provider, "logs", project.dir);
  const stack = options.stack ?? project.name;
  refuseStackName(provider, stack, "logs");
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  if (options.follow) process.once("SIGINT", onSignal);
  try {
    let lines = 0;
    for await (const line of provider.logs({
      stack,
      logger: output,
      // A span reaching past 1970 reads from the start: CloudWatch Logs refuses a time before it.
      since: Math.max(0, Date.now() - back),
      follow: options.follow === true,
      signal: stop.signal,
      ...(options.region ? { region: options.region } : {}),
      ...(options.service ? { service: options.service } : {}),
    })) {
      lines++;
      const time = new Date(line.time).toISOString();
      if (output.jsonMode) output.json({ time, service: line.service, message: line.message });
      else output.result(`${time} ${line.service} | ${line.message}`);
    }
    if (lines === 0 && !options.follow) {
      output.info(
        `no lines logged by stack "${stack}" in the last ${options.since ?? "10m"}; --since reads further back`,
      );
    }
    return 0;
  } finally {
    process.off("SIGINT", onSignal);
  }
}
