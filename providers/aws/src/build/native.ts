/**
 * Packages in a function's bundle that load native code. A Node addon (a `.node` file) cannot go
 * into the one JavaScript file a function is: the package's loader (node-gyp-build, bindings,
 * prebuild-install...) looks for it beside the package, finds nothing in the zip, and the
 * function fails as it loads, on AWS only (an addon built on this machine would not load on
 * Lambda's Linux in any case, unless both are the same). `build` warns rather than refuses: some
 * packages take an addon only when it loads and fall back to JavaScript (ws with bufferutil).
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { shownPath } from "./shown-path.js";

/** The loaders addon packages depend on, by name. */
const ADDON_LOADERS = ["node-gyp-build", "bindings", "prebuild-install", "node-pre-gyp", "@mapbox/node-pre-gyp"];

/** `node_modules/a/b.js` → `node_modules/a`, `x/node_modules/@s/p/c.js` → `x/node_modules/@s/p`. */
function packageRoot(input: string): { root: string; name: string } | undefined {
  const at = input.lastIndexOf("node_modules/");
  if (at < 0) return undefined;
  const rest = input.slice(at + "node_modules/".length).split("/");
  const name = rest[0]?.startsWith("@") ? `${rest[0]}/${rest[1] ?? ""}` : rest[0];
  if (!name) return undefined;
  return { root: `${input.slice(0, at)}node_modules/${name}`, name };
}

/** Whether the package in `dir` builds or loads an addon. */
function loadsNativeCode(dir: string): boolean {
  if (existsSync(join(dir, "binding.gyp"))) return true;
  let manifest: { gypfile?: unknown; dependencies?: Record<string, unknown>; binary?: unknown };
  try {
    manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  } catch {
    return false;
  }
  if (manifest.gypfile === true || manifest.binary !== undefined) return true;
  const deps = manifest.dependencies ?? {};
  return ADDON_LOADERS.some((loader) => Object.hasOwn(deps, loader));
}

/**
 * The packages among a bundle's `inputs` (esbuild's metafile inputs, relative to `projectDir`)
 * that load native code, each with the first input outside it that imports it (as shownPath
 * names it: a package's file by the package, never a path leaving the project), sorted by name.
 */
export function nativePackages(
  projectDir: string,
  inputs: Readonly<Record<string, { imports: readonly { path: string }[] }>>,
): { name: string; importedBy: string | undefined }[] {
  const found = new Map<string, { name: string; importedBy: string | undefined }>();
  for (const input of Object.keys(inputs)) {
    const pkg = packageRoot(input);
    if (pkg === undefined || found.has(pkg.root)) continue;
    if (!input.endsWith(".node") && !loadsNativeCode(join(projectDir, pkg.root))) continue;
    const importer = Object.entries(inputs).find(
      ([from, { imports }]) =>
        !from.startsWith(`${pkg.root}/`) && imports.some((i) => i.path.startsWith(`${pkg.root}/`)),
    )?.[0];
    found.set(pkg.root, {
      name: pkg.name,
      importedBy: importer === undefined ? undefined : shownPath(projectDir, importer),
    });
  }
  return [...found.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The warning for one such package in service `service`'s function. */
export function nativePackageWarning(service: string, pkg: { name: string; importedBy: string | undefined }): string {
  return `service "${service}": its function bundles "${pkg.name}"${pkg.importedBy ? ` (imported by ${pkg.importedBy})` : ""}, a package that loads native code (a .node addon), which a function's bundle cannot carry: on AWS it fails as it loads, unless the package falls back to JavaScript; use a package without native code (kv() is DynamoDB on AWS, with no lmdb)`;
}
