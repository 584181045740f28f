/**
 * `nitric-like secret put <name> [dir]`: stores a value as a declared secret's newest version,
 * from outside the code: in the project's own store for `run` (`--provider local`, the default),
 * or in a deployment's (`--provider aws`: the stack's Secrets Manager secret). The value comes from
 * `--from-file`, from stdin when it is piped, or is typed at a prompt that does not echo it: never
 * from the command line, where the shell's history and `ps` would keep it.
 */
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { didYouMean, loadProject, resourceNameProblem, secretValueProblem } from "@nitric-like/spec";
import { type Output, UserError } from "../lib/log.js";
import { prepareProject } from "../lib/prepare.js";
import { providerFor, refuseStackName } from "../lib/providers.js";
import { collectSpec } from "./spec.js";

/** Help for `secret`. */
export const SECRET_HELP = `Usage: nitric-like secret put <name> [dir] [options]

Stores a value as the newest version of the secret <name>, which a service of the
project in dir (default: the current folder) declares with secret("<name>"). Services
read it with secret("<name>").allow("access").latest().access(); each put is a new
version, and the former ones stay readable by their id. Prints the new version's id.

The value is read from --from-file (its bytes as they are), else from stdin when it is
piped (one trailing newline dropped: echo adds it), else typed at a prompt that does not
show it. It is never taken from the command line, where shell history would keep it.
A value holds 1 to 65,536 bytes (AWS Secrets Manager's limit, on every provider).

Where it is stored:
  --provider local   (default) the project's .nitric-like/secrets, which run serves;
                     a running run reads the new version at the next access().
  --provider aws     the deployed stack's Secrets Manager secret (made by up).

Options:
  --provider <name>   Where to store it (default: local).
  --from-file <path>  Read the value from this file.
  --stack <name>      (aws) Stack name (default: the project's name).
  --region <region>   (aws) AWS region (default: from the AWS configuration).
  --plain             No colours.
  -h, --help          Show this help.
`;

/** What `secret put` was given. */
export interface SecretCommandOptions {
  action: string | undefined;
  name: string | undefined;
  dir: string;
  provider: string;
  fromFile?: string;
  stack?: string;
  region?: string;
}

/** The most a value read from stdin or a prompt may be before it is refused: one byte over the bound. */
const READ_LIMIT = 65_537;

/** Reads a file's first READ_LIMIT bytes (more is refused by the value check): a huge file is never read whole. */
function readBounded(path: string): Uint8Array {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (error) {
    throw fileError(path, error);
  }
  try {
    const buffer = Buffer.alloc(READ_LIMIT);
    let size = 0;
    for (;;) {
      const n = readSync(fd, buffer, size, READ_LIMIT - size, null);
      if (n === 0) break;
      size += n;
      if (size >= READ_LIMIT) break;
    }
    return buffer.subarray(0, size);
  } catch (error) {
    throw fileError(path, error);
  } finally {
    closeSync(fd);
  }
}

/** What is said when `--from-file` cannot be read. */
function fileError(path: string, error: unknown): UserError {
  const code = (error as NodeJS.ErrnoException).code;
  const why =
    code === "ENOENT"
      ? "no such file"
      : code === "EISDIR"
        ? "it is a folder"
        : code === "EACCES"
          ? "this user may not read it"
          : (code ?? (error as Error).message);
  return new UserError(`secret put: --from-file ${path}: ${why}; give the path of a file holding the value`);
}

/** Reads piped stdin, at most READ_LIMIT bytes (more is refused by the value check). */
async function readPiped(): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    const buffer = chunk as Buffer;
    chunks.push(buffer.subarray(0, READ_LIMIT - size));
    size += Math.min(buffer.length, READ_LIMIT - size);
    if (size >= READ_LIMIT) break;
  }
  let bytes = Buffer.concat(chunks);
  if (bytes.at(-1) === 0x0a) bytes = bytes.subarray(0, bytes.at(-2) === 0x0d ? -2 : -1);
  return bytes;
}

/** Reads one line typed at the terminal without echoing it. */
function readHidden(prompt: string, output: Output): Promise<Uint8Array> {
  const stdin = process.stdin;
  // The terminal stops echoing before the prompt shows: what is typed right after it stays hidden.
  stdin.setRawMode(true);
  output.info(prompt);
  return new Promise((resolve, reject) => {
    const typed: number[] = [];
    const done = (error?: Error) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off("data", onData);
      if (error) reject(error);
      else resolve(new Uint8Array(typed));
    };
    const onData = (data: Buffer) => {
      for (const byte of data) {
        if (byte === 0x03) return done(new UserError("secret put: stopped (Ctrl-C); nothing was stored", 130));
        if (byte === 0x04 || byte === 0x0d || byte === 0x0a) return done();
        if (byte === 0x7f || byte === 0x08) {
          // Backspace: drop the last character, all of its UTF-8 bytes.
          while (typed.length > 0 && ((typed.pop() ?? 0) & 0xc0) === 0x80);
          continue;
        }
        if (typed.length < READ_LIMIT) typed.push(byte);
      }
    };
    stdin.on("data", onData);
    stdin.resume();
  });
}

/**
 * Stores a value as a secret's newest version in the project's own store, which `run` serves on
 * either provider (what `secret put` does with --provider local): for the test kit, which checks
 * that a service declares the secret. Resolves with the version's id.
 */
export async function putRunSecret(projectDir: string, name: string, value: Uint8Array): Promise<string> {
  const problem = resourceNameProblem("secret", name) ?? secretValueProblem(name, value);
  if (problem) throw new UserError(problem);
  const provider = await providerFor("local", "putSecret", projectDir);
  const project = loadProject(projectDir);
  const { version } = await provider.putSecret({ project, stack: project.name, secret: name, value, logger: silent });
  return version;
}

/** A logger that says nothing (the local store's put logs nothing worth a test's output). */
const silent = { info() {}, warn() {}, error() {} };

/** Runs `secret`. */
export async function secretCommand(options: SecretCommandOptions, output: Output): Promise<number> {
  if (options.action !== "put") {
    throw new UserError(
      options.action === undefined
        ? `secret: say what to do: nitric-like secret put <name> [dir]; run "nitric-like secret --help" for more`
        : `secret: unknown action "${options.action}"; the action is put: nitric-like secret put <name> [dir]`,
    );
  }
  const name = options.name;
  if (name === undefined) throw new UserError(`secret put: name the secret: nitric-like secret put <name> [dir]`);
  const problem = resourceNameProblem("secret", name);
  if (problem) throw new UserError(`secret put: ${problem}`);
  // `secret put motd "hello"` gives the value where the project's folder goes: said as the value
  // it most likely is (without repeating it), not as a folder to create with "nitric-like new".
  if (options.dir !== "." && statSync(options.dir, { throwIfNoEntry: false })?.isDirectory() !== true) {
    throw new UserError(
      `secret put: the word after the secret's name names the project's folder, and no folder has that name; the value is never taken from the command line, where shell history keeps it: pipe it (printf %s "$VALUE" | nitric-like secret put ${name}), give --from-file <path>, or type it at the prompt; nothing was stored`,
    );
  }

  // A file or a pipe is read first, so that a wrong path fails before anything is bundled.
  let value: Uint8Array | undefined;
  if (options.fromFile !== undefined) value = readBounded(options.fromFile);
  else if (!process.stdin.isTTY) value = await readPiped();

  const provider = await providerFor(options.provider, "putSecret", options.dir);
  // Before anything is bundled: a --stack no deployment can have is said as up says it.
  if (options.stack !== undefined) refuseStackName(provider, options.stack, "secret put");
  // The secret must be one the services declare: a typo would otherwise store a value nobody reads.
  const prepared = await prepareProject(options.dir, output);
  const { spec } = await collectSpec(prepared, output);
  const secrets = spec.resources.filter((r) => r.kind === "secret").map((r) => r.name);
  if (!secrets.includes(name)) {
    const near = didYouMean(name, secrets);
    throw new UserError(
      secrets.length === 0
        ? `secret put: no service of "${spec.name}" declares a secret; declare it first with secret("${name}").allow("access") in the service that reads it`
        : `secret put: no service of "${spec.name}" declares secret("${name}"); the secrets declared are ${secrets.map((s) => `"${s}"`).join(", ")}${near ? ` (did you mean "${near}"?)` : ""}`,
    );
  }

  const stack = options.stack ?? spec.name;
  const target = {
    project: prepared.project,
    stack,
    secret: name,
    logger: output,
    ...(options.region !== undefined ? { region: options.region } : {}),
  };
  if (value === undefined) {
    // Before the value is typed: a deployment without the secret is said now, not after.
    await provider.checkSecret?.(target);
    value = await readHidden(`value of secret "${name}" (not shown; Enter to end):`, output);
  }
  const tooBig = secretValueProblem(name, value);
  if (tooBig) throw new UserError(`secret put: ${tooBig}; nothing was stored`);

  const { version, where } = await provider.putSecret({ ...target, value });
  output.info(
    options.provider === "local"
      ? `stored secret "${name}" for run (${value.length} byte${value.length === 1 ? "" : "s"})`
      : `stored secret "${name}" in stack "${stack}" (${value.length} byte${value.length === 1 ? "" : "s"})${where ? `: ${where}` : ""}`,
  );
  output.result(version);
  return 0;
}
