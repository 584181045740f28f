/** The steps `run`, `spec` and later `build` share: load the project, find and bundle its services. */
import { realpathSync } from "node:fs";
import { resolve } from "node:path";
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
