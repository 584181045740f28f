/**
 * Packs the @nitric-like packages this CLI runs from into npm tarballs, as `pnpm pack` would:
 * package.json (with `workspace:` ranges replaced by versions), README and LICENSE, and what the
 * manifest's `files` lists (a `!path` entry leaves a file out). `nitric-like new` writes them
 * under a new project's vendor/ so that it installs where @nitric-like/* are not published. The
 * same code packs a clone's packages (symlinked by pnpm) and an installed copy of them.
 */
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { gzipSync } from "node:zlib";

/** One package, packed. */
export interface Packed {
  name: string;
  version: string;
  /** The tarball's file name, as npm names it: `nitric-like-sdk-0.1.0.tgz`. */
  file: string;
  data: Buffer;
}

interface Manifest {
  name: string;
  version: string;
  files?: string[];
  bin?: Record<string, string> | string;
  [key: string]: unknown;
}

const DEPENDENCY_FIELDS = ["dependencies", "devDependencies", "optionalDependencies", "peerDependencies"] as const;
const SCOPE = "@nitric-like/";

function readManifest(dir: string): Manifest {
  return JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as Manifest;
}

/** Finds where package `name` resolves from `from`, as Node does: the nearest node_modules/name above. */
function findPackage(name: string, from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", name);
    if (existsSync(join(candidate, "package.json"))) return realpathSync(candidate);
    if (dirname(dir) === dir) throw new Error(`nitric-like: cannot find ${name} from ${from}; reinstall nitric-like`);
  }
}

/**
 * Packages made to be used beside the CLI that depend on it, so that its own dependencies never
 * reach them: the test kit. They are packed with it where they are installed beside it (in this
 * repository, and in a project made by `new`), found as Node would find them from its folder.
 */
export const COMPANIONS = ["@nitric-like/testing"] as const;

/**
 * The folders of `root` and of every @nitric-like package it depends on, directly or not, by
 * name, plus the COMPANIONS installed beside it (and what they depend on).
 */
export function packageClosure(root: string): Map<string, string> {
  const found = new Map<string, string>();
  const visit = (dir: string) => {
    const manifest = readManifest(dir);
    if (found.has(manifest.name)) return;
    found.set(manifest.name, dir);
    for (const dep of Object.keys((manifest.dependencies ?? {}) as Record<string, string>))
      if (dep.startsWith(SCOPE)) visit(findPackage(dep, dir));
  };
  const from = realpathSync(root);
  visit(from);
  for (const companion of COMPANIONS) {
    let dir: string | undefined;
    try {
      dir = findPackage(companion, from);
    } catch {
      // Not installed beside this CLI: a template that needs it says so (scaffold.ts).
    }
    if (dir !== undefined) visit(dir);
  }
  return found;
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.name === "node_modules" ? [] : e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)],
  );
}

/**
 * Whether the CLI's one-file bundle is older than a file it was made from (dist/ rebuilt by
 * `tsc -b` alone): bin/nitric-like.js then runs dist/main.js, and so must the packed copy.
 */
function staleBundle(dir: string): boolean {
  const list = join(dir, "dist", "nitric-like.inputs.json");
  if (!existsSync(list)) return false;
  try {
    const inputs = JSON.parse(readFileSync(list, "utf8")) as [string, number, number][];
    return !inputs.every(([path, mtimeMs, size]) => {
      const s = statSync(path, { throwIfNoEntry: false });
      return s !== undefined && s.mtimeMs === mtimeMs && s.size === size;
    });
  } catch {
    return true;
  }
}

/** The files a package publishes, relative to its folder with `/` separators, sorted. */
function packageFiles(dir: string, manifest: Manifest): string[] {
  const always = readdirSync(dir).filter((f) => f === "package.json" || /^(readme|license|licence)(\..*)?$/i.test(f));
  const listed = manifest.files ?? readdirSync(dir).filter((f) => f !== "node_modules");
  const excluded = new Set(listed.filter((f) => f.startsWith("!")).map((f) => f.slice(1)));
  if (staleBundle(dir)) for (const f of ["dist/nitric-like.mjs", "dist/nitric-like.mjs.map"]) excluded.add(f);
  const files = new Set(always);
  for (const entry of listed) {
    if (entry.startsWith("!")) continue;
    const path = join(dir, entry);
    if (!existsSync(path)) continue;
    const all = statSync(path).isDirectory() ? walk(path) : [path];
    for (const f of all) files.add(relative(dir, f).split(sep).join("/"));
  }
  return [...files].filter((f) => !excluded.has(f)).sort();
}

/** The manifest as published: every `workspace:` range becomes the version it stands for. */
function publishedManifest(manifest: Manifest, versions: Map<string, string>): string {
  const out: Manifest = { ...manifest };
  for (const field of DEPENDENCY_FIELDS) {
    const deps = manifest[field] as Record<string, string> | undefined;
    if (!deps) continue;
    const rewritten: Record<string, string> = {};
    for (const [dep, range] of Object.entries(deps)) {
      if (!range.startsWith("workspace:")) {
        rewritten[dep] = range;
        continue;
      }
      const version = versions.get(dep);
      if (version === undefined)
        throw new Error(`nitric-like: ${manifest.name} depends on ${dep} (${range}), not found`);
      const rest = range.slice("workspace:".length);
      rewritten[dep] =
        rest === "^" || rest === "~" ? `${rest}${version}` : rest === "*" || rest === "" ? version : rest;
    }
    out[field] = rewritten;
  }
  return `${JSON.stringify(out, null, 2)}\n`;
}

/** A tar header field: `value` as NUL-padded bytes. */
function field(header: Buffer, offset: number, length: number, value: string): void {
  header.write(value, offset, length, "utf8");
}

function octal(value: number, length: number): string {
  return `${value.toString(8).padStart(length - 1, "0")}\0`;
}

/** One ustar entry (header and data padded to 512 bytes). */
function tarEntry(path: string, data: Buffer, mode: number): Buffer[] {
  const header = Buffer.alloc(512);
  let name = path;
  let prefix = "";
  if (Buffer.byteLength(name) > 100) {
    const cut = path.lastIndexOf("/", 155);
    prefix = path.slice(0, cut);
    name = path.slice(cut + 1);
    if (cut <= 0 || Buffer.byteLength(name) > 100 || Buffer.byteLength(prefix) > 155)
      throw new Error(`nitric-like: cannot pack ${path}: path too long`);
  }
  field(header, 0, 100, name);
  field(header, 100, 8, octal(mode, 8));
  field(header, 108, 8, octal(0, 8));
  field(header, 116, 8, octal(0, 8));
  field(header, 124, 12, octal(data.length, 12));
  // npm packs every file with the same mtime (1985-10-26), so a tarball depends only on contents.
  field(header, 136, 12, octal(499162500, 12));
  field(header, 148, 8, "        ");
  field(header, 156, 1, "0");
  field(header, 257, 6, "ustar\0");
  field(header, 263, 2, "00");
  field(header, 345, 155, prefix);
  let sum = 0;
  for (const byte of header) sum += byte;
  field(header, 148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  const padding = Buffer.alloc((512 - (data.length % 512)) % 512);
  return [header, data, padding];
}

/** Packs one package folder into an npm tarball (every path under `package/`). */
function packOne(dir: string, manifest: Manifest, versions: Map<string, string>): Buffer {
  const bins = new Set(
    Object.values(typeof manifest.bin === "string" ? { main: manifest.bin } : (manifest.bin ?? {})).map((b) =>
      b.replace(/^\.\//, ""),
    ),
  );
  const parts: Buffer[] = [];
  for (const file of packageFiles(dir, manifest)) {
    const data =
      file === "package.json" ? Buffer.from(publishedManifest(manifest, versions)) : readFileSync(join(dir, file));
    parts.push(...tarEntry(`package/${file}`, data, bins.has(file) ? 0o755 : 0o644));
  }
  parts.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(parts), { level: 9 });
}

/** Packs `root` (a package folder) and every @nitric-like package it depends on. */
export function packInstallation(root: string): Packed[] {
  const dirs = packageClosure(root);
  const manifests = new Map([...dirs].map(([name, dir]) => [name, readManifest(dir)]));
  const versions = new Map([...manifests].map(([name, m]) => [name, m.version]));
  return [...dirs]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([name, dir]) => {
      const manifest = manifests.get(name) as Manifest;
      const file = `${name.replace(/^@/, "").replace("/", "-")}-${manifest.version}.tgz`;
      return { name, version: manifest.version, file, data: packOne(dir, manifest, versions) };
    });
}
