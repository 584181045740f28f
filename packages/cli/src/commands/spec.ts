/** `nitric-like spec [dir]`: the collect pass, printed as JSON; refuses an app that cannot be deployed. */
import { basename, dirname } from "node:path";
import { packageOwner } from "@nitric-like/provider-kit";
import {
  awsNameProblems,
  buildSpec,
  type CollectedService,
  SERVED_KINDS,
  type Spec,
  type SpecResult,
  unusedSocketWarnings,
} from "@nitric-like/spec";
import { type CollectOptions, collect } from "../lib/collect.js";
import { failureCause } from "../lib/failure.js";
import { type Output, UserError } from "../lib/log.js";
import { importedServices, type PreparedProject, prepareProject } from "../lib/prepare.js";

/** Help for `spec`. */
export const SPEC_HELP = `Usage: nitric-like spec [dir]

Runs every service of the project in dir (default: the current folder) once with
NITRIC_ENVIRONMENT=build, collects what it declares, checks it, and prints the spec
(resources, policies, which service handles each socket event and authorizes each
socket) as JSON on stdout.

Exits 1, listing every problem at once, when a websocket misses a connect, disconnect
or message handler, when two services handle the same socket event or authorize the
same socket, when a name is invalid, when a service crashes, or when a service declares
a resource nitric-like does not serve (api, http, topic, queue, bucket, schedule,
sql, job, ...; run and build stop on those too). A service that does not exit
after declaring its resources is stopped.

Options:
  --json       The same JSON; when the spec has problems, {"error": {"message",
               "problems"}} on stdout instead (the problems are on stderr too).
  --plain      No colours.
  -h, --help   Show this help.
`;

/**
 * Collects and validates; returns the spec and the problems found, with those of the names a
 * deploy to AWS would make as stack `stack` (`up --stack`; else the project's name). `command`,
 * the one that collects (spec, build, up), is named in the fix of a service that failed.
 */
export async function collectSpec(
  prepared: PreparedProject,
  output: Output,
  options: CollectOptions = {},
  stack?: string,
  command = "spec",
): Promise<{
  spec: Spec;
  errors: string[];
  conflicts: string[];
  failures: SpecResult["failures"];
  /** What each service declared (a failed one with its failure), from which `spec` was built. */
  collected: CollectedService[];
}> {
  const n = prepared.services.length;
  const services = `${n} service${n === 1 ? "" : "s"}`;
  // Nothing to collect when every service's last pass is kept (run): a line, not a spinner.
  const reused = options.reuse?.size ?? 0;
  const allKept = options.reuse !== undefined && n > 0 && reused === n;
  const progress = allKept ? { done: () => {} } : output.progress(`collecting resources from ${services}`);
  if (allKept) output.info(output.paint("dim", `resources of ${services}: unchanged since the last run`));
  try {
    const collected = await collect(
      prepared.project,
      prepared.services.map((s) => (s.bundle ? { entry: s.entry, bundle: s.bundle } : { entry: s.entry })),
      // A note (what a slow service's pass waits for) above the spinner, which goes on below it.
      { onNote: (line) => output.info(line), ...options },
    );
    const declared = collected.map((c) => withApi(c, prepared));
    const result = buildSpec(prepared.project.name, declared);
    result.errors = result.errors.map((e) => failureSaid(e, result.failures, prepared, command));
    result.errors.push(...awsNameProblems(result.spec, stack ?? prepared.project.name, stack !== undefined));
    const found = result.spec.resources.length;
    const unchanged = reused === 0 ? "" : ` (${reused} unchanged since the last run)`;
    progress.done(
      `collected ${found} resource${found === 1 ? "" : "s"} from ${n} service${n === 1 ? "" : "s"}${unchanged}`,
    );
    const sockets = result.spec.resources.filter((r) => r.kind === "websocket").map((r) => r.name);
    // A service that failed in the collect pass may be the one that declares the socket.
    if (result.failures.length === 0) for (const w of unusedSocketWarnings(prepared.project, sockets)) output.warn(w);
    if (result.unsupported.length > 0) {
      // Nothing can run or deploy a resource nobody serves: every command stops here (run too,
      // which otherwise only warns), listing every problem at once.
      for (const e of result.errors) output.error(e);
      const count = result.unsupported.length;
      throw new UserError(
        `"${result.spec.name}" uses ${count} resource${count === 1 ? "" : "s"} nitric-like does not serve (listed above); it serves ${SERVED_KINDS}`,
        1,
        result.errors,
      );
    }
    return {
      spec: result.spec,
      errors: result.errors,
      conflicts: result.conflicts,
      failures: result.failures,
      collected: declared,
    };
  } finally {
    progress.done();
  }
}

/**
 * A problem as spec, build and up list it: buildSpec's for a service that failed in the collect
 * pass (its message, then all the output it left, which a chatty or hostile service makes huge)
 * said with the cause `run` reads from that output instead: where, the error's message (bounded
 * as run bounds it) and the fix; when no error Node printed says why (a service that logged its
 * problem and exited), the cause is that, with the last lines of its output, bounded; for a
 * service the collect pass stopped, its message and the fix. Any other problem as it is.
 */
function failureSaid(
  problem: string,
  failures: SpecResult["failures"],
  prepared: PreparedProject,
  command: string,
): string {
  for (const f of failures) {
    const said = `service ${JSON.stringify(f.service)} (${f.file}): ${f.message}`;
    if (problem !== said && !problem.startsWith(`${said}\n`)) continue;
    if (f.output.trim() === "") return said;
    // Stopped by the collect pass (blocked, or declaring nothing in time): its message says why.
    if (f.stopped === true) return `${said}\n  fix it, then run nitric-like ${command} again`;
    const service = prepared.services.find((s) => s.entry.name === f.service);
    const cause = failureCause(
      f.output,
      prepared.project.dir,
      service?.bundle?.inputs ?? (service ? [service.entry.path] : []),
      `fix it, then run nitric-like ${command} again`,
    );
    const where = cause.location === undefined ? "" : `, at ${cause.location}`;
    return [`${said}${where}: ${cause.message.replace(/\n(?=.)/g, "\n    ")}`, `  ${cause.fix}`].join("\n");
  }
  return problem;
}

/** The socket @nitric-like/sdk/ampt declares (AMPT_SOCKET_NAME there). */
const AMPT_SOCKET = "ws";

/**
 * Marks the Ampt-style socket of a service whose bundle includes @nitric-like/sdk/ampt, so that
 * problems with it name `ws.on("disconnected", ...)`, the API its code uses (the collect pass
 * sees only the contract's calls, which are the same for both interfaces), and the other services
 * whose entry file it imports, so that their handlers registered twice are said as that.
 */
function withApi(collected: CollectedService, prepared: PreparedProject): CollectedService {
  const service = prepared.services.find((s) => s.entry.name === collected.name);
  const bundle = service?.bundle;
  if (!service || !bundle) return collected;
  const usesAmpt = [...bundle.inputs].some(
    (path) => /^ampt\.(js|ts|mjs)$/.test(basename(path)) && packageOwner(dirname(path)) === "@nitric-like/sdk",
  );
  const imports = importedServices(prepared.services, service);
  return {
    ...collected,
    ...(usesAmpt ? { amptSockets: [AMPT_SOCKET] } : {}),
    ...(imports.length > 0 ? { imports } : {}),
  };
}

/** Runs `spec`. */
export async function specCommand(dir: string, output: Output): Promise<number> {
  const prepared = await prepareProject(dir, output);
  const { spec, errors } = await collectSpec(prepared, output);
  if (errors.length > 0) {
    for (const e of errors) output.error(e);
    throw new UserError(
      `the spec of "${spec.name}" has ${errors.length} problem${errors.length === 1 ? "" : "s"} (listed above)`,
      1,
      errors,
    );
  }
  if (output.jsonMode) output.json(spec);
  else output.result(JSON.stringify(spec, null, 2));
  return 0;
}
