/**
 * `nitric-like new`: copies a template from `packages/cli/templates/<name>` into a folder, naming
 * the project after the folder. Templates keep `gitignore` without its dot (npm drops `.gitignore`
 * files from published packages); it is renamed on the way.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { suggestName } from "@nitric-like/spec";
import { UserError } from "./log.js";
import { cliPackageDir } from "./package-dir.js";

/** Where the templates are. */
function templateDir(): string {
  return join(cliPackageDir(), "templates");
}

/** The templates there are. */
export function templates(): string[] {
  const dir = templateDir();
  return readdirSync(dir).filter((t) => statSync(join(dir, t)).isDirectory());
}

/** What was created. */
export interface Scaffolded {
  dir: string;
  name: string;
  /** Paths written, relative to `dir`, sorted. */
  files: string[];
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)],
  );
}

/**
 * Creates a project in `target` (which must not exist or be empty) from `template`, with
 * `version` as the range of our packages it depends on.
 */
export function scaffold(target: string, template: string, version: string): Scaffolded {
  const source = join(templateDir(), template);
  if (!templates().includes(template))
    throw new UserError(`new: no template "${template}"; templates: ${templates().join(", ")}`);
  const dir = resolve(target);
  if (existsSync(dir) && (!statSync(dir).isDirectory() || readdirSync(dir).length > 0))
    throw new UserError(`new: ${target} already exists and is not empty; choose a new folder`);
  const name = suggestName(basename(dir));
  const files: string[] = [];
  for (const from of walk(source)) {
    let path = relative(source, from);
    if (path === "gitignore") path = ".gitignore";
    let text = readFileSync(from, "utf8");
    if (path === "package.json") {
      const pkg = JSON.parse(text) as {
        name: string;
        dependencies?: Record<string, string>;
        devDependencies?: Record<string, string>;
      };
      pkg.name = name;
      for (const deps of [pkg.dependencies, pkg.devDependencies])
        for (const dep of Object.keys(deps ?? {}))
          if (dep.startsWith("@nitric-like/") && deps) deps[dep] = `^${version}`;
      text = `${JSON.stringify(pkg, null, 2)}\n`;
    }
    if (path === "nitric-like.yaml") text = text.replace(/^name: .*$/m, `name: ${name}`);
    if (path === "README.md") text = text.replace(/^# .*$/m, `# ${name}`);
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), text);
    files.push(path);
  }
  return { dir, name, files: files.sort() };
}
