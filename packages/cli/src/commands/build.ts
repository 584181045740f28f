/**
 * `nitric-like build [dir] --provider aws`: the collect pass and the checks of `spec`, then the
 * provider writes its artifacts. Nothing is written when a check fails.
 */
import { resolve } from "node:path";
import { outDirProblem } from "@nitric-like/provider-kit";
import { checkEnvironment, loadProject, type Project, ProjectError } from "@nitric-like/spec";
import { functionVariables } from "../lib/dotenv.js";
import type { Output } from "../lib/log.js";
import { UserError } from "../lib/log.js";
import { loadProjectFile, type PreparedProject, prepareProject } from "../lib/prepare.js";
import { providerFor } from "../lib/providers.js";
import { collectSpec } from "./spec.js";

/** Help for `build`. */
export const BUILD_HELP = `Usage: nitric-like build [dir] [options]

Collects and checks the project in dir (default: the current folder) as "spec" does,
then writes what the provider deploys. For aws: one bundle and zip per service
(functions/<service>/index.cjs, or index.mjs for a service that awaits at its top
level, with its source map; functions/<service>.zip) and template.json, a
CloudFormation template. Files a bundled package reads from beside itself
(path.join(__dirname, "data.json")) are copied into its function, and said; a
new URL("<file>", import.meta.url) in your code naming a file outside the project, a
function over Lambda's 250 MB unzipped, or 4 KB of variables, is refused.
A build that fails or is refused at any point leaves the --out folder as the last
build left it.

It never deletes a file it did not write: it leaves .nitric-like-build.json listing
what it wrote, a rebuild removes exactly those, and a non-empty --out folder without
that file is refused before anything is bundled.

Options:
  --provider <name>   Provider to build for (default: aws).
  --out <dir>         Where to write (default: <dir>/.nitric-like/<provider>).
  --env <name>        Which environments.<name> of the project file applies: its
                      sockets' domains (websockets.<socket>.domain, a custom domain
                      on AWS) and its limits.handlerTimeout over the file's own.
                      Default: the file's own.
  --env-from <path>   Put the variables of this file of NAME=value lines into every
                      function's environment (repeat it for more, each over the one
                      before). For aws, Lambda's rules are checked first: names of
                      letters, digits and _ starting with a letter, none Lambda or
                      nitric-like sets, at most 4 KB per function. Lambda keeps them
                      in plaintext in the function's configuration: no secrets
                      (declare a secret() and store it with nitric-like secret put).
  --json              Print the result as JSON on stdout: {"project", "provider",
                      "outDir", "files"}; progress stays on stderr. A failure is
                      {"error": {"message", "problems"}} on stdout, with the same
                      exit code.
  --plain             No colours.
  -h, --help          Show this help.
`;

/** Options of `build`. */
export interface BuildCommandOptions {
  dir: string;
  provider: string;
  out?: string;
  /** `--env-from`: variables for every function's environment. */
  envFiles?: string[];
  /** `--env`: which `environments.<name>` of the project file applies. */
  environment?: string;
}

/** Loads the provider, collects and checks: what `build` and `up` do before the provider acts. */
export async function checkedBuild(
  options: BuildCommandOptions & { stack?: string },
  output: Output,
  what: "build" | "up" = "build",
  prepared?: PreparedProject,
) {
  refuseForeignOutDir(options, what);
  // A missing --env-from file is said before anything is bundled.
  const variables = functionVariables(options.envFiles ?? [], what, output);
  // An --env the file does not have is said before anything is bundled (a file that does not
  // load is left to prepareProject, which lists every problem in it).
  if (options.environment !== undefined) refuseUnknownEnvironment(options.dir, options.environment);
  // A provider that cannot build (local), or none of that name (gcp), is refused before anything
  // is bundled: only the project file is read first (its folder is where providers resolve from).
  const project = prepared?.project ?? loadProjectFile(options.dir, output);
  const provider = await providerFor(options.provider, what, project.dir);
  const ready = prepared ?? (await prepareProject(options.dir, output));
  // up's --stack names what AWS makes; without it (and for build) the stack is the project's name.
  const { spec, errors } = await collectSpec(ready, output, {}, options.stack, what);
  if (errors.length > 0) {
    for (const e of errors) output.error(e);
    throw new UserError(
      `the spec of "${spec.name}" has ${errors.length} problem${errors.length === 1 ? "" : "s"} (listed above); nothing was built`,
      1,
      errors,
    );
  }
  const outDir = options.out ? resolve(options.out) : resolve(ready.project.dir, ".nitric-like", provider.name);
  const services = ready.services.map((s) => s.entry);
  return { prepared: ready, provider, spec, outDir, services, variables };
}

/** Refuses `--env` naming an environment the project file does not have. */
function refuseUnknownEnvironment(dir: string, environment: string): void {
  let project: Project;
  try {
    project = loadProject(resolve(dir));
  } catch (error) {
    if (error instanceof ProjectError) return;
    throw error;
  }
  try {
    checkEnvironment(project, environment);
  } catch (error) {
    if (error instanceof ProjectError) throw new UserError(error.message);
    throw error;
  }
}

/** Refuses `--out` naming a folder no build wrote, before anything is bundled. */
export function refuseForeignOutDir(options: BuildCommandOptions, what: "build" | "up"): void {
  if (options.out === undefined) return;
  const problem = outDirProblem(resolve(options.out), what);
  if (problem) throw new UserError(problem);
}

/** Runs `build`. */
export async function buildCommand(options: BuildCommandOptions, output: Output): Promise<number> {
  const { prepared, provider, spec, outDir, services, variables } = await checkedBuild(options, output);
  if (!provider.build) throw new UserError(`provider "${provider.name}" cannot build`);
  const result = await provider.build({
    project: prepared.project,
    spec,
    services,
    outDir,
    logger: output,
    ...(variables === undefined ? {} : { variables }),
    ...(options.environment === undefined ? {} : { environment: options.environment }),
  });
  for (const file of result.files) output.result(file);
  output.json({ project: prepared.project.name, provider: provider.name, outDir, files: result.files });
  return 0;
}
