/**
 * Which package a file belongs to, for the bundlers (the CLI's for services, the AWS provider's
 * for functions): the name in the nearest package.json above it that has one. A package.json
 * without a name, such as `{ "type": "module" }` in a build folder, is passed over.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";

const owners = new Map<string, string | undefined>();

/** The package that owns the directory `dir`, or undefined outside any named package (cached). */
export function packageOwner(dir: string): string | undefined {
  const visited: string[] = [];
  let name: string | undefined;
  for (let at = dir; ; ) {
    if (owners.has(at)) {
      name = owners.get(at);
      break;
    }
    visited.push(at);
    const manifest = join(at, "package.json");
    if (existsSync(manifest)) {
      try {
        const parsed = JSON.parse(readFileSync(manifest, "utf8")) as { name?: unknown };
        if (typeof parsed.name === "string") {
          name = parsed.name;
          break;
        }
      } catch {
        // Not JSON: not a manifest to go by; look further up.
      }
    }
    const parent = dirname(at);
    if (parent === at) break;
    at = parent;
  }
  for (const d of visited) owners.set(d, name);
  return name;
}
