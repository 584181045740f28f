/**
 * A file as `build` names it in what it prints: by its path in the project (`services/chat.ts`,
 * `node_modules/level/index.js`); a file outside the project (a workspace's linked package, a
 * package in pnpm's global store) by its package and its path inside it (`level/index.js`), never
 * by a path that climbs out of the project (`../../home/me/...`), which names the machine and says
 * nothing the package's name does not.
 */
import { existsSync, readFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve, sep } from "node:path";

/** The package that holds `dir`: the nearest folder up with a package.json that has a name. */
export function packageAt(dir: string): { name: string; root: string } | undefined {
  for (let at = dir; ; ) {
    const manifest = join(at, "package.json");
    if (existsSync(manifest)) {
      try {
        const { name } = JSON.parse(readFileSync(manifest, "utf8")) as { name?: unknown };
        if (typeof name === "string" && name !== "") return { name, root: at };
      } catch {
        // Not JSON: look further up.
      }
    }
    const parent = dirname(at);
    if (parent === at) return undefined;
    at = parent;
  }
}

/** Whether `path` (relative to the project, `/`-separated) is a package's file rather than the project's. */
export function isPackageFile(path: string): boolean {
  return path.startsWith("../") || path === ".." || path.includes("node_modules/");
}

/** `file` (absolute, or relative to `projectDir`) as build names it to the user. */
export function shownPath(projectDir: string, file: string): string {
  const absolute = resolve(projectDir, file);
  const inProject = relative(projectDir, absolute).split(sep).join("/");
  if (inProject !== ".." && !inProject.startsWith("../")) return inProject;
  // From the last node_modules/ on: the package's name, then its path inside it.
  const at = inProject.lastIndexOf("node_modules/");
  if (at >= 0 && !inProject.slice(at + "node_modules/".length).startsWith(".")) {
    return inProject.slice(at + "node_modules/".length);
  }
  const pkg = packageAt(dirname(absolute));
  if (pkg === undefined) return `${basename(absolute)} (outside the project)`;
  return `${pkg.name}/${relative(pkg.root, absolute).split(sep).join("/")}`;
}
