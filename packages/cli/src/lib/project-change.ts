/**
 * What `run` does when the project changes in a way it does not restart a service for: its project
 * file (limits, ports, services, environments, compat) and a new file that a service's glob matches.
 * `run` applies no project file change while it runs (a changed limit or port would mean new
 * gateways), so it says so once per change, and checks a changed project file at once: a mistake
 * shows while it is made, not at the next start. A new service file is handed to `onNew` (the
 * local provider starts it); without one (a provider whose deployment is made as run starts), it
 * is named once as a service the next run starts.
 */
import { lstatSync, readdirSync, readFileSync } from "node:fs";
import { basename, join, relative, sep } from "node:path";
import {
  findServices,
  globToRegExp,
  loadProject,
  type Project,
  ProjectError,
  type ServiceEntry,
} from "@nitric-like/spec";
import type { Output } from "./log.js";

/** True for a folder that is no dependency's or tool's (node_modules, a dot folder). */
function isFolder(path: string): boolean {
  const name = basename(path);
  if (name === "node_modules" || name.startsWith(".")) return false;
  try {
    return lstatSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** The folders under `dir`, at any depth, as isFolder takes them (at most 1,000). */
function foldersIn(dir: string): string[] {
  const found: string[] = [];
  const queue = [dir];
  while (queue.length > 0 && found.length < 1000) {
    const at = queue.shift() as string;
    let names: string[];
    try {
      names = readdirSync(at);
    } catch {
      continue;
    }
    for (const n of names) {
      const path = join(at, n);
      if (!isFolder(path)) continue;
      found.push(path);
      queue.push(path);
    }
  }
  return found;
}

/** Reads a file, or undefined when it cannot be read (gone meanwhile, mid-save). */
function contents(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/**
 * A listener for a watcher's changed paths (give it the project file to watch, and the folders the
 * services are in): it tells `output` about changes to the project file, and `onNew` (or `output`,
 * once each) about new service files. `known`: the absolute paths of the services run has now.
 */
export function projectChangeNotices(
  project: Project,
  known: () => Iterable<string>,
  output: Output,
  onNew?: (entry: ServiceEntry) => void,
  /** A folder appeared in a watched one (with every folder in it): watch them, for the files they hold and will. */
  onFolders?: (dirs: string[]) => void,
): (changed: ReadonlySet<string>) => void {
  const name = basename(project.file);
  const started = contents(project.file);
  let seen = started;
  const toldNew = new Set<string>();
  /** What findServices refused, said once each (two services of one name). */
  const toldProblems = new Set<string>();
  const globs = project.services.map((s) => globToRegExp(s.match));
  const matchesService = (path: string) => {
    const file = relative(project.dir, path).split(sep).join("/");
    return globs.some((glob) => glob.test(file));
  };
  return (changed) => {
    if (changed.has(project.file)) {
      const text = contents(project.file);
      if (text !== undefined && text !== seen) {
        seen = text;
        if (text === started) {
          output.info(`${name} is as this run read it again`);
        } else {
          try {
            loadProject(project.dir);
            output.warn(
              `${name} changed: run reads it only as it starts, so this run goes on as the file was; stop it (Ctrl-C) and run again to apply the change`,
            );
          } catch (error) {
            if (!(error instanceof ProjectError)) throw error;
            const n = error.problems.length;
            output.error(
              `${name} changed and now has ${n === 1 ? "a problem" : `${n} problems`} (this run goes on as the file was):`,
            );
            for (const problem of error.problems) output.error(problem);
          }
        }
      }
    }
    // A new folder may hold service files already (mkdir -p and a file, or a folder moved in),
    // which its parent's watcher does not see: they count as changed.
    const folders = [...changed].filter((p) => p !== project.file && isFolder(p));
    if (folders.length > 0) onFolders?.(folders.flatMap((f) => [f, ...foldersIn(f)]));
    const inFolder = (path: string) => folders.some((f) => path.startsWith(`${f}${sep}`));
    // A path no service was built from that a service's glob takes is a new service's file (a
    // helper module's save walks nothing).
    const services = new Set(known());
    if (folders.length === 0 && ![...changed].some((p) => p !== project.file && !services.has(p) && matchesService(p)))
      return;
    let entries: ReturnType<typeof findServices>;
    try {
      entries = findServices(project);
    } catch (error) {
      // Two services of one name: said once; the files run has go on.
      if (error instanceof ProjectError && !toldProblems.has(error.message)) {
        toldProblems.add(error.message);
        output.error(`${error.message} (run goes on with the services it has)`);
      }
      return;
    }
    for (const entry of entries) {
      if (services.has(entry.path) || !(changed.has(entry.path) || inFolder(entry.path))) continue;
      if (onNew) {
        onNew(entry);
        continue;
      }
      if (toldNew.has(entry.path)) continue;
      toldNew.add(entry.path);
      output.warn(
        `${entry.file} is a new service ("${entry.name}"): run starts the services it found as it started; stop it (Ctrl-C) and run again to start this one`,
      );
    }
  };
}
