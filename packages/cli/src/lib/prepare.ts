/** The steps `run`, `spec` and later `build` share: load the project, find and bundle its services. */
import { readFileSync, realpathSync } from "node:fs";
import { relative, resolve, sep } from "node:path";
import { insideDir, WORKER_CODE, workerLiterals, workerScriptOf } from "@nitric-like/provider-kit/worker-scripts";
import { findServices, loadProject, type Project, ProjectError, type ServiceEntry } from "@nitric-like/spec";
import { type Bundle, type BundleOptions, bundleService } from "./bundle.js";
import { type Output, UserError } from "./log.js";

/** A service ready to start. */
export interface PreparedService {
  entry: ServiceEntry;
  /** Absent when the service has its own `start` command. */
  bundle?: Bundle;
}

/** A project with its services bundled. */
export interface PreparedProject {
  project: Project;
  services: PreparedService[];
}

/** A project-file mistake as a UserError: one problem as it is, several each on a line of `output`. */
function projectProblem(error: unknown, output: Output | undefined): unknown {
  if (!(error instanceof ProjectError)) return error;
  if (error.problems.length === 1 || !output) return new UserError(error.message);
  // Every problem on a line of its own, then a summary: all are fixed in one go.
  for (const p of error.problems) output.error(p);
  return new UserError(`the project file has ${error.problems.length} problems (listed above)`, 1, [...error.problems]);
}

/**
 * Loads the project file in `dir` only, for the commands that need nothing of the services
 * (`down`, `outputs`): they work whatever state the code is in.
 */
export function loadProjectFile(dir: string, output?: Output): Project {
  try {
    return loadProject(resolve(dir));
  } catch (error) {
    throw projectProblem(error, output);
  }
}

/**
 * Loads the project in `dir` and bundles every service (as `bundling` asks: see BundleOptions);
 * project-file mistakes become UserErrors. With `output`, the bundling shows as progress; with
 * `bundled`, each bundle made is heard, by service (`run --verbose` says each).
 */
export async function prepareProject(
  dir: string,
  output?: Output,
  bundling: BundleOptions = {},
  bundled?: (service: string) => BundleOptions["onBuilt"],
): Promise<PreparedProject> {
  let project: Project;
  let entries: ServiceEntry[];
  try {
    project = loadProject(resolve(dir));
    entries = findServices(project);
  } catch (error) {
    throw projectProblem(error, output);
  }
  const n = entries.filter((e) => e.start === undefined).length;
  const progress = n > 0 ? output?.progress(`bundling ${n} service${n === 1 ? "" : "s"}`) : undefined;
  try {
    const services = await Promise.all(
      entries.map(async (entry): Promise<PreparedService> => {
        if (entry.start !== undefined) return { entry };
        const onBuilt = bundled?.(entry.name);
        return {
          entry,
          bundle: await bundleService(project.dir, entry, onBuilt ? { ...bundling, onBuilt } : bundling),
        };
      }),
    );
    progress?.done(`bundled ${n} service${n === 1 ? "" : "s"}`);
    for (const warning of workerScriptServices(project.dir, services)) output?.warn(warning);
    return { project, services };
  } finally {
    progress?.done();
  }
}

/** `path` with its links resolved (as it is when it no longer exists). */
function real(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/**
 * The other services whose entry file `service`'s bundle includes: it imports them (directly or
 * through another module), so loading it runs their top level and registers their handlers too.
 * A file only a worker script it starts imports (or the script itself) runs in the worker's
 * thread, never in the service's module: it is not counted.
 */
export function importedServices(
  services: readonly PreparedService[],
  service: PreparedService,
): { service: string; file: string }[] {
  const inputs = service.bundle?.inputs;
  if (inputs === undefined || inputs.size === 0) return [];
  const workerOnly = service.bundle?.workerInputs;
  const included = new Set([...inputs].filter((path) => !workerOnly?.has(path)).map(real));
  return services
    .filter((s) => s.entry.name !== service.entry.name && included.has(real(s.entry.path)))
    .map((s) => ({ service: s.entry.name, file: s.entry.file }));
}

/**
 * Says each service entry that another service's own code starts as a worker script (`new
 * Worker(new URL("./worker.ts", import.meta.url))`): the services' match takes the script for a
 * service too, so `spec`, `build` and `run` also load it on its own, with no parent thread
 * (`parentPort` is null; a script that posts to it throws in the collect pass), and on AWS it
 * would be a function of its own. It stays a service, as the match says; the warning comes
 * first, so whatever it does loaded alone is read with its cause.
 */
export function workerScriptServices(
  projectDir: string,
  services: readonly PreparedService[],
  /** Only what concerns this service (a new one): as the script, or as the service that starts one. */
  only?: string,
): string[] {
  const root = real(projectDir);
  const entries = new Map(services.map((s) => [real(s.entry.path), s.entry]));
  const said = new Set<string>();
  const warnings: string[] = [];
  for (const service of services) {
    const bundle = service.bundle;
    if (bundle === undefined) continue;
    for (const file of [...bundle.inputs].sort()) {
      if (bundle.workerInputs?.has(file) || !WORKER_CODE.test(file) || !insideDir(projectDir, file)) continue;
      if (relative(projectDir, file).split(sep).includes("node_modules")) continue;
      let text: string;
      try {
        text = readFileSync(file, "utf8");
      } catch {
        continue;
      }
      if (!text.includes("Worker")) continue;
      for (const { literal } of workerLiterals(text)) {
        const script = workerScriptOf(projectDir, root, file, literal);
        const entry = script === undefined ? undefined : entries.get(real(script));
        if (entry === undefined || entry.name === service.entry.name || said.has(entry.name)) continue;
        if (only !== undefined && only !== entry.name && only !== service.entry.name) continue;
        said.add(entry.name);
        const startedBy = relative(projectDir, file).split(sep).join("/");
        warnings.push(
          `${entry.file} is a worker script ${startedBy} starts (new Worker(new URL(${JSON.stringify(literal)}, import.meta.url))), and the services' match takes it for a service too ("${entry.name}"): as a service it is loaded on its own, with no parent thread (parentPort is null), and on AWS it would be a function of its own; keep it out of the services' match in the project file (move it to a folder the match does not take, and change the URL with it)`,
        );
      }
    }
  }
  return warnings;
}
