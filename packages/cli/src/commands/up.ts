/** `nitric-like up` and `nitric-like down`: deploy the project with a provider, and remove it. */

import { resolve } from "node:path";
import { createInterface } from "node:readline/promises";
import {
  compareNames,
  type DeployedOutputs,
  loadProject,
  nitricStackRegions,
  type Project,
  ProjectError,
  type StoredData,
} from "@nitric-like/spec";
import { type Output, UserError } from "../lib/log.js";
import { loadProjectFile } from "../lib/prepare.js";
import { providerFor, refuseStackName } from "../lib/providers.js";
import { checkedBuild, refuseForeignOutDir } from "./build.js";

/** Help for `up`. */
export const UP_HELP = `Usage: nitric-like up [dir] [options]

Builds the project in dir (default: the current folder) as "build" does, then deploys
it. For aws: uploads each function's zip to an S3 bucket made once per account and
region, creates or updates a CloudFormation stack through a change set, shows each
resource as it changes, and prints one line per socket:
  websocket <name> wss://<api>.execute-api.<region>.amazonaws.com/live

Credentials and region come from the standard AWS chain (AWS_PROFILE,
AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_REGION); AWS_ENDPOINT_URL points it at
LocalStack.

Before bundling it checks the stack name, region and credentials, refuses a stack of
that name nitric-like did not make (it would replace its resources), and says how to
get a stack out of ROLLBACK_COMPLETE, UPDATE_ROLLBACK_FAILED or DELETE_FAILED. Nothing
to change: "already up to date". Templates over 51,200 bytes go through the bucket.

Ctrl-C before the change set runs deletes it: nothing is deployed. Once it runs,
Ctrl-C stops following the stack (exit 130) and says how to see, undo or stop what
CloudFormation goes on with; a second Ctrl-C exits at once.

An AWS request that gets no answer (NITRIC_LIKE_AWS_TIMEOUT_MS, default 60000 ms of
silence) is tried again, 3 tries in all; then up stops naming the call, what it had
done and what to run. Ctrl-C while a request waits ends up at once, saying the same.
The credential lookup (SSO, STS for an assumed role) runs under the same timeouts.

Options:
  --provider <name>   Provider to deploy with (default: aws).
  --stack <name>      Stack name (default: the project's name).
  --region <region>   AWS region (default: from the AWS configuration).
  --out <dir>         Where to build (default: <dir>/.nitric-like/<provider>).
  --env <name>        Which environments.<name> of the project file applies, as
                      "build --env" does: its sockets' domains and handler
                      timeout.
  --env-from <path>   Put the variables of this file into every function's
                      environment, as "build --env-from" does (see its help): a later
                      up without it removes them.
  --yes               Deploy even when it deletes kv tables that hold items (a store
                      no service declares any more); without it up asks (y/N) on a
                      terminal, and off a terminal stops with exit 1 naming them.
  --json              Print the result as JSON on stdout: {"stack", "provider",
                      "changed", "sockets": [{"name", "url"}], "outputs", "notes"};
                      progress and the socket lines go to stderr. A failure is {"error":
                      {"message", "problems"}} on stdout, with the same exit code.
  --plain             No colours.
  -h, --help          Show this help.
`;

/** Help for `down`. */
export const DOWN_HELP = `Usage: nitric-like down [dir] [options]

Deletes the deployment of the project in dir (default: the current folder) and waits
until it is gone, its functions' log groups with it. kv tables are deleted with it
too; when one holds items, down first asks (y/N) on a terminal, and off a terminal
(CI) stops with exit 1 unless --yes or --keep-data is given. Nothing is built: only
the project file is read, so a deployment can be deleted whatever state the code is in.
A stack nitric-like did not make is never deleted. Ctrl-C stops following the delete
(exit 130); CloudFormation goes on with it.

Options:
  --provider <name>   Provider of the deployment (default: aws).
  --stack <name>      Stack name (default: the project's name).
  --region <region>   AWS region (default: from the AWS configuration).
  --yes               Delete kv tables that hold items without asking.
  --keep-data         Keep every kv table and secret: for aws the stack is first
                      updated so that they are kept (DeletionPolicy Retain, tagged
                      nitric-like:kept-from-stack=<stack>), then deleted; the kept
                      tables' and secrets' names are printed. Without it, secrets are
                      deleted with a warning saying how to restore them.
  --json              Print {"stack", "provider", "deleted": true, "kept": [{"store",
                      "name"}], "keptSecrets": [{"secret", "name"}]} on stdout when
                      done; a failure is {"error": {"message", "problems"}} on stdout.
  --plain             No colours.
  -h, --help          Show this help.
`;

/** Options of `up` and `down`. */
export interface DeployCommandOptions {
  dir: string;
  provider: string;
  stack?: string;
  region?: string;
  out?: string;
  /** (down) Delete kv data without asking. */
  yes?: boolean;
  /** (down) Keep the kv tables. */
  keepData?: boolean;
  /** (up) `--env-from`: variables for every function's environment. */
  envFiles?: string[];
  /** (up) `--env`: which `environments.<name>` of the project file applies. */
  environment?: string;
}

/**
 * What `up` and `down` check before bundling anything: the provider's preflight (for aws: the stack
 * name, region, credentials, and a stack stuck in a state only the user can clear). A project
 * file that does not load is left to what follows (prepareProject for up, loadProjectFile for
 * down), which lists every problem in it.
 */
async function preflightDeploy(options: DeployCommandOptions, action: "up" | "down", output: Output): Promise<void> {
  if (action === "up") refuseForeignOutDir(options, "up");
  let project: Project;
  try {
    project = loadProject(resolve(options.dir));
  } catch (error) {
    if (error instanceof ProjectError) return;
    throw error;
  }
  const provider = await providerFor(options.provider, action, project.dir);
  refuseStackName(provider, options.stack ?? project.name, action);
  const checked = await provider.preflight?.({
    stack: options.stack ?? project.name,
    action,
    logger: output,
    ...(options.region ? { region: options.region } : {}),
  });
  if (options.region === undefined && checked?.region !== undefined)
    refuseStackFileRegions(project.dir, checked.region, action);
}

/**
 * A Nitric project's stack files (`nitric.<stack>.yaml`) name the region Nitric deploys to; nitric-like
 * does not read them. Where one names another region than the one the AWS configuration gives, `up`
 * (or `down`) stops before anything happens and asks for --region, which then decides.
 */
function refuseStackFileRegions(dir: string, region: string, action: "up" | "down"): void {
  const named = nitricStackRegions(dir);
  if (!named.some((s) => s.region !== region)) return;
  const verb = action === "up" ? "deploy" : "delete";
  const [only] = named;
  if (named.length === 1 && only !== undefined)
    throw new UserError(
      `${action}: ${only.file}, a Nitric stack file, names region ${only.region}, and this ${action} would go to ${region} (the AWS configuration's region); nitric-like does not read stack files: give --region ${only.region} to ${verb} there, or --region ${region} to ${verb} here`,
    );
  const files = named.map((s) => `${s.file} (${s.region})`).join(", ");
  throw new UserError(
    `${action}: the Nitric stack files ${files} name regions of their own, and this ${action} would go to ${region} (the AWS configuration's region); nitric-like does not read stack files: give --region with the one to ${verb} in`,
  );
}

/** Runs `up`. */
export async function upCommand(options: DeployCommandOptions, output: Output): Promise<number> {
  await preflightDeploy(options, "up", output);
  const { prepared, provider, spec, outDir, services, variables } = await checkedBuild(options, output, "up");
  if (!provider.up) throw new UserError(`provider "${provider.name}" cannot deploy`);
  const stack = options.stack ?? prepared.project.name;
  const progress = output.progress(`deploying "${spec.name}" as stack "${stack}" with provider "${provider.name}"`);
  const result = await provider
    .up({
      project: prepared.project,
      spec,
      services,
      outDir,
      logger: output,
      stack,
      ...(options.region ? { region: options.region } : {}),
      ...(variables === undefined ? {} : { variables }),
      ...(options.environment === undefined ? {} : { environment: options.environment }),
      confirmDataLoss: (stores) => confirmDataLoss("up", stores, stack, options.yes === true, output),
    })
    .finally(() => progress.done());
  output.info(result.changed ? `stack "${stack}" is deployed` : `stack "${stack}" was already up to date`);
  for (const s of result.sockets) output.result(`websocket ${s.name} ${s.url}`);
  for (const note of result.notes ?? []) output.warn(note);
  output.json({
    stack,
    provider: provider.name,
    changed: result.changed,
    sockets: result.sockets,
    outputs: result.outputs ?? {},
    notes: result.notes ?? [],
  });
  return 0;
}

/** Runs `down`. */
export async function downCommand(options: DeployCommandOptions, output: Output): Promise<number> {
  await preflightDeploy(options, "down", output);
  // Only the project file: a deployment can be deleted whatever state the code is in (a service
  // that no longer builds, or that is gone).
  const project = loadProjectFile(options.dir, output);
  const provider = await providerFor(options.provider, "down", project.dir);
  const stack = options.stack ?? project.name;
  const progress = output.progress(`deleting stack "${stack}" with provider "${provider.name}"`);
  const result = await provider
    .down({
      project,
      stack,
      logger: output,
      ...(options.region ? { region: options.region } : {}),
      ...(options.keepData ? { keepData: true } : {}),
      confirmDataLoss: (stores) => confirmDataLoss("down", stores, stack, options.yes === true, output),
    })
    .finally(() => progress.done());
  const kept = result?.kept ?? [];
  const keptSecrets = result?.keptSecrets ?? [];
  output.info(`stack "${stack}" is deleted`);
  for (const k of kept) output.info(`kept kv "${k.store}": table ${k.name}`);
  output.json({ stack, provider: provider.name, deleted: true, kept, keptSecrets });
  return 0;
}

/**
 * How `up` and `down` ask before deleting stores that hold data, and say no: `list` names the
 * stores and their tables, `one` whether it is one store.
 */
const DATA_LOSS = {
  down: {
    refused: (stack: string, list: string, one: boolean) =>
      `down: deleting stack "${stack}" would delete data for good: ${list} ${one ? "holds" : "hold"} items; pass --yes to delete them, or --keep-data to delete the stack and keep the tables`,
    question: (stack: string, list: string, one: boolean) =>
      `down: ${list} ${one ? "holds" : "hold"} items, deleted for good with stack "${stack}". Delete them? (y/N) `,
    no: `down: nothing was deleted; run "nitric-like down --keep-data" to delete the stack and keep the tables`,
    stopped: "down: nothing was deleted (Ctrl-C)",
  },
  up: {
    refused: (stack: string, list: string, one: boolean) =>
      `up: deploying stack "${stack}" would delete data for good: ${list} ${one ? "holds" : "hold"} items, and the deploy deletes ${one ? "its table" : "their tables"} (no service declares ${one ? "that store" : "those stores"} any more, or ${one ? "its table is" : "their tables are"} replaced); declare ${one ? "it" : "them"} again to keep the data, or pass --yes to deploy and delete ${one ? "it" : "them"}`,
    question: (stack: string, list: string, one: boolean) =>
      `up: ${list} ${one ? "holds" : "hold"} items, and deploying stack "${stack}" deletes ${one ? "its table" : "their tables"} for good (no service declares ${one ? "that store" : "those stores"} any more, or ${one ? "its table is" : "their tables are"} replaced). Deploy anyway? (y/N) `,
    no: "up: nothing was deployed; declare the store again to keep its data",
    stopped: "up: nothing was deployed (Ctrl-C)",
  },
};

/**
 * Whether `up` or `down` may delete stores that hold data: yes with --yes; on a terminal, the
 * user's answer (no unless "y"); off a terminal (CI), a refusal naming --yes.
 */
async function confirmDataLoss(
  action: "up" | "down",
  stores: StoredData[],
  stack: string,
  yes: boolean,
  output: Output,
): Promise<boolean> {
  if (yes) return true;
  const words = DATA_LOSS[action];
  const list = stores.map((s) => `kv "${s.store}" (table ${s.name})`).join(", ");
  const one = stores.length === 1;
  if (process.stdin.isTTY !== true || process.stderr.isTTY !== true) {
    throw new UserError(words.refused(stack, list, one));
  }
  const prompt = createInterface({ input: process.stdin, output: process.stderr });
  try {
    // The spinner stops meanwhile: redrawn on the question's line, it would hide the question.
    const answer = await output
      .aside(() => prompt.question(words.question(stack, list, one)))
      .catch((error: Error) => {
        // Ctrl-C at the question (readline's AbortError): a no.
        if (error.name === "AbortError") {
          output.err.write("\n"); // the question's line stays as answered
          throw new UserError(words.stopped, 130);
        }
        throw error;
      });
    if (/^y(es)?$/i.test(answer.trim())) return true;
    throw new UserError(words.no);
  } finally {
    prompt.close();
  }
}

/** Help for `outputs`. */
export const OUTPUTS_HELP = `Usage: nitric-like outputs [dir] [options]

Prints what "up" printed about the deployment of the project in dir (default: the
current folder), read again from the provider (for aws: DescribeStacks), on stdout:
  websocket <name> wss://<api>.execute-api.<region>.amazonaws.com/live
  output <key> <value>        (every output of the stack)
Nothing is built or changed.

Options:
  --provider <name>   Provider of the deployment (default: aws).
  --stack <name>      Stack name (default: the project's name).
  --region <region>   AWS region (default: from the AWS configuration).
  --json              Print {"stack", "provider", "status", "sockets": [{"name",
                      "url"}], "outputs"} on stdout instead; a failure is {"error":
                      {"message", "problems"}} on stdout.
  --plain             No colours.
  -h, --help          Show this help.
`;

/** Runs `outputs`. */
/**
 * A deployment's socket URLs and outputs, from the project file alone (nothing is bundled or
 * collected): `outputs` prints them, `connect --provider` finds a socket among them.
 */
export async function deployedOutputs(
  options: { dir: string; provider: string; stack?: string | undefined; region?: string | undefined },
  output: Output,
  command: "outputs" | "connect" = "outputs",
): Promise<{ stack: string; provider: string; found: DeployedOutputs }> {
  const project = loadProjectFile(options.dir, output);
  const provider = await providerFor(options.provider, "outputs", project.dir);
  const stack = options.stack ?? project.name;
  refuseStackName(provider, stack, command);
  const found = await provider.outputs({
    project,
    stack,
    logger: output,
    ...(options.region ? { region: options.region } : {}),
  });
  return { stack, provider: provider.name, found };
}

export async function outputsCommand(options: DeployCommandOptions, output: Output): Promise<number> {
  const { stack, provider, found } = await deployedOutputs(options, output);
  if (found.status !== undefined) output.info(`stack "${stack}": ${found.status}`);
  if (output.jsonMode) {
    const { sockets, outputs } = found;
    output.json({ stack, provider, status: found.status ?? null, sockets, outputs });
    return 0;
  }
  for (const s of found.sockets) output.result(`websocket ${s.name} ${s.url}`);
  for (const [key, value] of Object.entries(found.outputs).sort(([a], [b]) => compareNames(a, b))) {
    output.result(`output ${key} ${value}`);
  }
  return 0;
}
