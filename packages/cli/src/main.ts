/** The `nitric-like` command: parses arguments, runs one command, turns errors into exit codes. */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { didYouMean } from "@nitric-like/spec";
import { BUILD_HELP, buildCommand } from "./commands/build.js";
import { CONNECT_HELP, connectCommand } from "./commands/connect.js";
import { LOGS_HELP, logsCommand } from "./commands/logs.js";
import { NEW_HELP, newCommand } from "./commands/new.js";
import { RUN_HELP, runCommand } from "./commands/run.js";
import { SECRET_HELP, secretCommand } from "./commands/secret.js";
import { SPEC_HELP, specCommand } from "./commands/spec.js";
import { DOWN_HELP, downCommand, OUTPUTS_HELP, outputsCommand, UP_HELP, upCommand } from "./commands/up.js";
import { Output, UserError, watchOutputClosed } from "./lib/log.js";
import { systemErrorMessage } from "./lib/system-errors.js";

/** Help for the whole CLI. */
export const MAIN_HELP = `Usage: nitric-like <command> [options]

Declare websockets, kv stores and secrets in TypeScript, run them on your machine,
check them, and ship them to AWS.

Commands:
  new <dir>      Create a project from a template (chat, rooms), ready to run.
  run [dir]      Run the project locally: gateways, kv stores, services, live reload.
  connect [dir]  Connect to a socket of the running run as a client: type messages.
  spec [dir]     Collect what the services declare, check it, print it as JSON.
  build [dir]    Check the project and write what a provider deploys (default: aws).
  up [dir]       Build and deploy (default: aws), printing each socket's URL.
  down [dir]     Delete a deployment.
  outputs [dir]  Print a deployment's socket URLs and outputs again.
  logs [dir]     Print what a deployment's services logged (--follow for more).
  secret put <name> [dir]
                 Store a value as a secret's newest version (run's, or a deployment's).
  help [cmd]     Show help for a command.

Options:
  -h, --help     Show help.
  -v, --version  Print the version.
  --json         (spec, build, up, down, outputs, logs) The result as JSON on stdout,
                 progress on stderr; a failure as {"error": {...}} on stdout.

Start with: nitric-like new my-app, or nitric-like run examples/chat
`;

const HELP: Record<string, string> = {
  new: NEW_HELP,
  run: RUN_HELP,
  spec: SPEC_HELP,
  build: BUILD_HELP,
  up: UP_HELP,
  down: DOWN_HELP,
  outputs: OUTPUTS_HELP,
  logs: LOGS_HELP,
  secret: SECRET_HELP,
  connect: CONNECT_HELP,
};

/** Commands whose result `--json` prints as JSON. */
const JSON_COMMANDS = new Set(["spec", "build", "up", "down", "outputs", "logs"]);

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

/** Whether main() has set up what a closed stdout or stderr does (watchOutputClosed), once a process. */
let outputWatched = false;

/** Runs the CLI with `argv` (without node and the script) and resolves with the exit code. */
export async function main(
  argv: string[],
  output = new Output(process.stdout, process.stderr, argv.includes("--plain")),
): Promise<number> {
  const [command, ...rest] = argv;
  if (output.out === process.stdout && !outputWatched) {
    outputWatched = true;
    watchOutputClosed(process.stdout, process.stderr);
  }
  output.jsonMode = command !== undefined && JSON_COMMANDS.has(command) && rest.includes("--json");
  // logs prints a line as it reads it: JSON Lines, its failure one line too.
  output.jsonLines = output.jsonMode && command === "logs";
  try {
    if (command === undefined || command === "-h" || command === "--help") {
      output.result(MAIN_HELP.trimEnd());
      return command === undefined ? 1 : 0;
    }
    if (command === "-v" || command === "--version") {
      output.result(version());
      return 0;
    }
    if (command === "help") {
      const topic = rest[0];
      const text = topic === undefined || topic === "-h" || topic === "--help" ? MAIN_HELP : HELP[topic];
      if (text === undefined)
        throw new UserError(`unknown command "${topic}"; commands: ${Object.keys(HELP).join(", ")}`);
      output.result(text.trimEnd());
      return 0;
    }
    const help = HELP[command];
    if (help === undefined) {
      throw new UserError(`unknown command "${command}"; run "nitric-like --help" to see the commands`);
    }
    if (rest.includes("-h") || rest.includes("--help")) {
      output.result(help.trimEnd());
      return 0;
    }
    const args = parse(command, rest);
    if (command === "new" && args.positionals.length <= 1) {
      const template = args.values.template;
      return newCommand(
        {
          dir: args.positionals[0],
          template: typeof template === "string" ? template : "chat",
          version: version(),
          fromRegistry: args.values["from-registry"] === true,
        },
        output,
      );
    }
    const text = (name: string) => {
      const value = args.values[name];
      return typeof value === "string" ? value : undefined;
    };
    if (command === "connect") {
      const [connectDir, ...more] = args.positionals;
      if (more.length > 0) {
        throw new UserError(
          `connect: expected one project folder, got ${args.positionals.length}: ${args.positionals.join(" ")}; name the socket with --socket`,
        );
      }
      const list = (name: string) => {
        const value = args.values[name];
        return Array.isArray(value) ? (value as string[]) : [];
      };
      return await connectCommand(
        {
          socket: text("socket"),
          dir: connectDir ?? ".",
          url: text("url"),
          provider: text("provider"),
          stack: text("stack"),
          region: text("region"),
          query: list("query"),
          headers: list("header"),
          protocols: list("protocol"),
        },
        output,
      );
    }
    if (command === "secret") {
      const [action, name, secretDir, ...more] = args.positionals;
      if (more.length > 0) {
        throw new UserError(
          `secret: expected put <name> [dir], got ${args.positionals.length} words: ${args.positionals.join(" ")}`,
        );
      }
      return await secretCommand(
        {
          action,
          name,
          dir: secretDir ?? ".",
          provider: text("provider") ?? "local",
          ...optional("fromFile", text("from-file")),
          ...optional("stack", text("stack")),
          ...optional("region", text("region")),
        },
        output,
      );
    }
    const dir = args.positionals[0] ?? ".";
    if (args.positionals.length > 1) {
      throw new UserError(
        `${command}: expected one project folder, got ${args.positionals.length}: ${args.positionals.join(" ")}`,
      );
    }
    if (command === "spec") return await specCommand(dir, output);
    const envFiles = Array.isArray(args.values["env-from"]) ? (args.values["env-from"] as string[]) : [];
    if (command === "build") {
      return await buildCommand(
        {
          dir,
          provider: text("provider") ?? "aws",
          ...optional("out", text("out")),
          ...optional("environment", text("env")),
          envFiles,
        },
        output,
      );
    }
    if (command === "up" || command === "down" || command === "outputs") {
      const deploy = {
        dir,
        provider: text("provider") ?? "aws",
        ...optional("stack", text("stack")),
        ...optional("region", text("region")),
        ...optional("out", text("out")),
        ...(args.values.yes === true ? { yes: true } : {}),
        ...(args.values["keep-data"] === true ? { keepData: true } : {}),
        ...(command === "up" ? { envFiles, ...optional("environment", text("env")) } : {}),
      };
      if (command === "outputs") return await outputsCommand(deploy, output);
      return command === "up" ? await upCommand(deploy, output) : await downCommand(deploy, output);
    }
    if (command === "logs") {
      return await logsCommand(
        {
          dir,
          provider: text("provider") ?? "aws",
          ...optional("stack", text("stack")),
          ...optional("region", text("region")),
          ...optional("since", text("since")),
          ...optional("service", text("service")),
          ...(args.values.follow === true ? { follow: true } : {}),
        },
        output,
      );
    }
    const singleThread = args.values["single-thread"] === true;
    if (args.values["no-dashboard"] === true && text("dashboard-port") !== undefined)
      throw new UserError(
        "run: --dashboard-port and --no-dashboard both say where the dashboard is (on that port, or nowhere); choose one",
      );
    const code = await runCommand(
      {
        dir,
        provider: text("provider") ?? "local",
        randomPorts: args.values["random-ports"] === true,
        watch: args.values["no-watch"] !== true,
        dashboard: args.values["no-dashboard"] !== true,
        processes: args.values.processes === true,
        inspect: args.values.inspect === true,
        singleThread,
        tcp: args.values.tcp === true,
        verbose: args.values.verbose === true,
        ...dashboardPort(text("dashboard-port")),
        ...optional("host", text("host")),
        ...optional("environment", text("env")),
        envFiles,
      },
      output,
    );
    // --single-thread: the services' code ran on this thread, and what it left (a timer, a socket
    // it opened, a call the stopped provider never answered) would keep the process alive. Once run
    // has stopped, the process ends, as a service thread is terminated; its output first.
    if (singleThread) {
      await new Promise((resolve) => process.stdout.write("", () => process.stderr.write("", resolve)));
      process.exit(code);
    }
    return code;
  } catch (error) {
    if (output.jsonMode) jsonFailure(error, output);
    if (error instanceof UserError) {
      output.error(error.message);
      return error.exitCode;
    }
    // A provider's error meant for users (see Provider in @nitric-like/spec): its message only.
    if (error instanceof Error && (error as { userFacing?: unknown }).userFacing === true) {
      output.error(error.message);
      // Its own exit code when it gives one (130: Ctrl-C stopped it), else 1.
      const code = (error as { exitCode?: unknown }).exitCode;
      return typeof code === "number" && Number.isInteger(code) && code > 0 && code < 256 ? code : 1;
    }
    // The machine's, not ours: a port in use, a folder that cannot be written, a missing file.
    const system = systemErrorMessage(error);
    if (system !== undefined) {
      output.error(system);
      return 1;
    }
    output.error(`unexpected failure, please report it with this output:\n${(error as Error).stack ?? String(error)}`);
    return 70;
  }
}

/**
 * With `--json`, a failure is a JSON document on stdout too: `{"error": {"message", "problems"}}`
 * (a bug adds `"unexpected": true`); the exit code and stderr are as without `--json`.
 */
function jsonFailure(error: unknown, output: Output): void {
  const ours =
    error instanceof UserError || (error instanceof Error && (error as { userFacing?: unknown }).userFacing === true);
  const system = ours ? undefined : systemErrorMessage(error);
  const userFacing = ours || system !== undefined;
  const message = system ?? (error instanceof Error ? error.message : String(error));
  const problems = error instanceof UserError ? error.problems : [];
  // On stderr the problems come before the summary; in the document they are its "problems".
  const shown = problems.length > 0 ? message.replace("(listed above)", "(listed in problems)") : message;
  output.json({ error: { message: shown, problems, ...(userFacing ? {} : { unexpected: true }) } });
}

/** `{ [key]: value }` when value is set, else `{}` (exact optional properties). */
function optional<K extends string>(key: K, value: string | undefined): { [P in K]?: string } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: string };
}

function dashboardPort(value: string | undefined): { dashboardPort?: number } {
  if (value === undefined) return {};
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535)
    throw new UserError(`run: --dashboard-port must be a port number (0 to 65535, 0 for a free one), got "${value}"`);
  return { dashboardPort: port };
}

function parse(command: string, args: string[]) {
  const options = {
    spec: { json: { type: "boolean" } },
    new: { template: { type: "string" }, "from-registry": { type: "boolean" } },
    build: {
      provider: { type: "string" },
      out: { type: "string" },
      json: { type: "boolean" },
      env: { type: "string" },
      "env-from": { type: "string", multiple: true },
    },
    up: {
      provider: { type: "string" },
      yes: { type: "boolean" },
      env: { type: "string" },
      "env-from": { type: "string", multiple: true },
      stack: { type: "string" },
      region: { type: "string" },
      out: { type: "string" },
      json: { type: "boolean" },
    },
    down: {
      provider: { type: "string" },
      stack: { type: "string" },
      region: { type: "string" },
      yes: { type: "boolean" },
      "keep-data": { type: "boolean" },
      json: { type: "boolean" },
    },
    outputs: {
      provider: { type: "string" },
      stack: { type: "string" },
      region: { type: "string" },
      json: { type: "boolean" },
    },
    connect: {
      socket: { type: "string" },
      url: { type: "string" },
      provider: { type: "string" },
      stack: { type: "string" },
      region: { type: "string" },
      query: { type: "string", multiple: true },
      header: { type: "string", multiple: true },
      protocol: { type: "string", multiple: true },
    },
    secret: {
      provider: { type: "string" },
      "from-file": { type: "string" },
      stack: { type: "string" },
      region: { type: "string" },
    },
    logs: {
      provider: { type: "string" },
      stack: { type: "string" },
      region: { type: "string" },
      since: { type: "string" },
      service: { type: "string" },
      follow: { type: "boolean", short: "f" },
      json: { type: "boolean" },
    },
    run: {
      provider: { type: "string" },
      "env-from": { type: "string", multiple: true },
      "random-ports": { type: "boolean" },
      "no-watch": { type: "boolean" },
      "dashboard-port": { type: "string" },
      "no-dashboard": { type: "boolean" },
      processes: { type: "boolean" },
      "single-thread": { type: "boolean" },
      inspect: { type: "boolean" },
      tcp: { type: "boolean" },
      verbose: { type: "boolean" },
      host: { type: "string" },
      env: { type: "string" },
      plain: { type: "boolean" },
    },
  } as const;
  const accepted = { ...(options[command as keyof typeof options] ?? {}), plain: { type: "boolean" } } as const;
  try {
    const parsed = parseArgs({ args, options: accepted, allowPositionals: true, strict: true, tokens: true });
    // parseArgs keeps the last of an option given twice: `--stack a --stack b` would act on b
    // without a word. An option that takes one value, given two, is refused.
    const seen = new Map<string, string>();
    for (const token of parsed.tokens as { kind: string; name?: string; value?: string }[]) {
      if (token.kind !== "option" || token.name === undefined || token.value === undefined) continue;
      const spec = (accepted as Record<string, { multiple?: boolean }>)[token.name];
      if (spec?.multiple === true) continue;
      const before = seen.get(token.name);
      if (before !== undefined && before !== token.value)
        throw new UserError(
          `${command}: --${token.name} given twice (${JSON.stringify(before)} and ${JSON.stringify(token.value)}); give it once`,
        );
      seen.set(token.name, token.value);
    }
    return {
      positionals: parsed.positionals,
      values: parsed.values as Record<string, string | string[] | boolean | undefined>,
    };
  } catch (error) {
    const help = `run "nitric-like ${command} --help" for its options`;
    // Node's own words ("Option '--stack <value>' argument missing", three lines about an
    // ambiguous argument) name neither the command nor the fix: the option and what it takes.
    const value = optionValueProblem(args, accepted);
    if (value !== undefined) throw new UserError(`${command}: ${value}; ${help}`);
    if ((error as { code?: string }).code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
      // Node's own words ("To specify a positional argument starting with a '-' ...") fit a
      // mistyped option badly: the option as given, the one most likely meant.
      const given = /'([^']+)'/.exec((error as Error).message)?.[1] ?? "";
      throw new UserError(`${command}: unknown option ${given}${unknownOptionHint(given, accepted)}; ${help}`);
    }
    if (error instanceof UserError) throw error;
    throw new UserError(`${command}: ${(error as Error).message}; ${help}`);
  }
}

/**
 * The first option given without the value it takes, or with a value it does not take, said with
 * the fix; undefined when every option's value is right. Read from a lenient parse of `args`,
 * which keeps what the strict one refused.
 */
function optionValueProblem(
  args: string[],
  accepted: Record<string, { type: string; short?: string }>,
): string | undefined {
  const shorts = new Map(
    Object.entries(accepted).flatMap(([name, spec]) => (spec.short === undefined ? [] : [[spec.short, name]])),
  );
  for (const [index, arg] of args.entries()) {
    if (arg === "--") return undefined;
    // `-f=2`: Node reads a group of short options (-f, -=, -2) and names "-=".
    const short = /^-([^-=])=(.*)$/s.exec(arg);
    const long = shorts.get(short?.[1] ?? "");
    if (short !== null && long !== undefined && accepted[long]?.type === "boolean")
      return `-${short[1]} (--${long}) takes no value, got ${JSON.stringify(short[2])}; give -${short[1]} alone`;
    const match = /^--([^=]+)(=(.*))?$/s.exec(arg);
    const name = match?.[1];
    const spec = name === undefined || !Object.hasOwn(accepted, name) ? undefined : accepted[name];
    if (match === null || spec === undefined) continue;
    if (spec.type === "boolean" && match[2] !== undefined)
      return `--${name} takes no value, got ${JSON.stringify(match[3])}; give --${name} alone`;
    if (spec.type !== "string" || match[2] !== undefined) continue;
    const next = args[index + 1];
    if (next === undefined) return `--${name} needs a value: --${name} <value>`;
    if (next.startsWith("-"))
      return `--${name} needs a value, but ${next} follows it: give --${name} <value> (a value that starts with "-" as --${name}=<value>)`;
  }
  return undefined;
}

/** What an unknown option was most likely meant as: one the command takes, or AWS's own setting. */
function unknownOptionHint(given: string, accepted: Record<string, unknown>): string {
  const name = given.replace(/^-+/, "").replace(/=.*$/, "");
  // The AWS CLI's --profile and --endpoint-url are environment variables here, as for the SDK.
  if (name === "profile" && "region" in accepted) return ": the AWS profile is chosen with AWS_PROFILE=<name>";
  if (name === "endpoint-url" && "region" in accepted) return ": the endpoint is chosen with AWS_ENDPOINT_URL=<url>";
  // A secret's value on the command line would stay in shell history: where it comes from instead.
  if (name === "value" && "from-file" in accepted)
    return ": the value is never taken from the command line (shell history keeps it): pipe it, give --from-file <path>, or type it at the prompt";
  const known = [...Object.keys(accepted), "help"];
  const near = didYouMean(name, known);
  return near === undefined ? "" : ` (did you mean --${near}?)`;
}
