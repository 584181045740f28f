/** The steps `run`, `spec` and later `build` share: load the project, find and bundle its services. */
import { resolve } from "node:path";
import { findServices, loadProject, type Project, ProjectError, type ServiceEntry } from "@nitric-like/spec";
import { type Bundle, bundleService } from "./bundle.js";
import { UserError } from "./log.js";

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

/** Loads the project in `dir` and bundles every service; project-file mistakes become UserErrors. */
export async function prepareProject(dir: string): Promise<PreparedProject> {
  let project: Project;
  let entries: ServiceEntry[];
  try {
    project = loadProject(resolve(dir));
    entries = findServices(project);
  } catch (error) {
    if (error instanceof ProjectError) throw new UserError(error.message);
    throw error;
  }
  const services = await Promise.all(
    entries.map(async (entry): Promise<PreparedService> => {
      if (entry.start !== undefined) return { entry };
      return { entry, bundle: await bundleService(project.dir, entry) };
    }),
  );
  return { project, services };
}
