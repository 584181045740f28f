/**
 * `nitric-like new`: copies a template into a folder, naming the project after the folder: the
 * files every project has (`packages/cli/templates/base`: package.json, tsconfig.json, the ignore
 * file, pnpm's settings), then the template's own (`packages/cli/templates/<name>`: the project
 * file, services, tests, README), which may replace a base file. Templates keep `gitignore` without
 * its dot (npm drops `.gitignore` files from published packages); it is renamed on the way.
 *
 * Its @nitric-like dependencies come one of two ways. By default the CLI packs itself and every
 * @nitric-like package it runs with into the project's vendor/ (see pack.ts), the project
 * depends on those tarballs (`file:vendor/...`), and npm's `overrides` (package.json) and pnpm's
 * (pnpm-workspace.yaml) point every @nitric-like package the tarballs depend on at its tarball:
 * it installs where the packages are not published, with the versions this CLI runs. With
 * `fromRegistry`, it depends on `^<version>` from the registry instead.
 */
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { basename, join, relative, resolve, sep } from "node:path";
import { suggestProjectName } from "@nitric-like/spec";
import { UserError } from "./log.js";
import { type Packed, packInstallation } from "./pack.js";
import { cliPackageDir } from "./package-dir.js";

/** Where the templates are. */
function templateDir(): string {
  return join(cliPackageDir(), "templates");
}

/** The folder of the files every template shares. */
const BASE = "base";

/** The templates there are. */
export function templates(): string[] {
  const dir = templateDir();
  return readdirSync(dir)
    .filter((t) => t !== BASE && statSync(join(dir, t)).isDirectory())
    .sort();
}

/** What was created. */
export interface Scaffolded {
  dir: string;
  name: string;
  /** Paths written, relative to `dir`, sorted. */
  files: string[];
}

/** Where a project's @nitric-like packages come from. */
export interface Source {
  /** The version of the CLI making the project. */
  version: string;
  /** Depend on `^version` from the registry rather than on tarballs under vendor/. */
  fromRegistry?: boolean;
}

interface PackageJson {
  name: string;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  overrides?: Record<string, string>;
}

/** The project's package.json: named, with its @nitric-like dependencies from `vendor` or the registry. */
function projectPackageJson(text: string, name: string, version: string, vendor: Packed[] | undefined): string {
  const pkg = JSON.parse(text) as PackageJson;
  const spec = (dep: string) => {
    if (!vendor) return `^${version}`;
    const packed = vendor.find((p) => p.name === dep);
    if (!packed) throw new Error(`nitric-like: the template depends on ${dep}, which this CLI does not run with`);
    return `file:vendor/${packed.file}`;
  };
  const out: PackageJson = { ...pkg, name };
  for (const deps of [out.dependencies, out.devDependencies])
    for (const dep of Object.keys(deps ?? {})) if (dep.startsWith("@nitric-like/") && deps) deps[dep] = spec(dep);
  // npm resolves the tarballs' own @nitric-like dependencies through these.
  if (vendor) out.overrides = Object.fromEntries(vendor.map((p) => [p.name, `file:vendor/${p.file}`]));
  return `${JSON.stringify(out, null, 2)}\n`;
}

/** pnpm reads its overrides from pnpm-workspace.yaml (package.json's "pnpm" field no longer). */
function pnpmOverrides(vendor: Packed[]): string {
  return `\n# Every @nitric-like package from the tarballs under vendor/ (npm: "overrides" in package.json).\noverrides:\n${vendor
    .map((p) => `  "${p.name}": file:vendor/${p.file}\n`)
    .join("")}`;
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)],
  );
}

/** Refuses a `target` that is not a new or empty folder, saying what it is and what to do. */
function refuseTarget(target: string, dir: string): void {
  const link = lstatSync(dir, { throwIfNoEntry: false });
  if (link === undefined) return;
  const found = statSync(dir, { throwIfNoEntry: false });
  if (found === undefined) {
    throw new UserError(
      `new: ${target} is a symbolic link to ${JSON.stringify(readlinkSync(dir))}, which does not exist; remove the link, or give a new folder's path`,
    );
  }
  if (!found.isDirectory()) {
    throw new UserError(
      `new: ${target} is a file, not a folder; give a new folder's path (such as "nitric-like new my-app"), or move the file away`,
    );
  }
  if (readdirSync(dir).length > 0)
    throw new UserError(`new: ${target} already exists and is not empty; choose a new folder`);
}

/**
 * Creates a project in `target` (which must not exist or be empty) from `template`, its
 * @nitric-like packages from `source`.
 */
export function scaffold(target: string, template: string, source: Source): Scaffolded {
  const from = join(templateDir(), template);
  if (!templates().includes(template))
    throw new UserError(`new: no template "${template}"; templates: ${templates().join(", ")}`);
  const dir = resolve(target);
  refuseTarget(target, dir);
  // The project file takes only stack names (`new 2048` makes app-2048); package.json takes them too.
  const name = suggestProjectName(basename(dir));
  const vendor = source.fromRegistry ? undefined : packInstallation(cliPackageDir());
  const files: string[] = [];
  const write = (path: string, data: string | Buffer) => {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), data);
    files.push(path);
  };
  // The base's files, then the template's: a template's file of the same path replaces the base's.
  const sources = new Map<string, string>();
  for (const root of [join(templateDir(), BASE), from])
    for (const file of walk(root)) sources.set(relative(root, file).split(sep).join("/"), file);
  for (const [relativePath, file] of [...sources].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    let path = relativePath;
    if (path === "gitignore") path = ".gitignore";
    let text = readFileSync(file, "utf8");
    if (path === "package.json") text = projectPackageJson(text, name, source.version, vendor);
    if (path === "pnpm-workspace.yaml" && vendor) text += pnpmOverrides(vendor);
    if (path === "nitric-like.yaml") text = text.replace(/^name: .*$/m, `name: ${name}`);
    if (path === "README.md") text = text.replace(/^# .*$/m, `# ${name}`);
    write(path, text);
  }
  for (const p of vendor ?? []) write(`vendor/${p.file}`, p.data);
  return { dir, name, files: files.sort() };
}
