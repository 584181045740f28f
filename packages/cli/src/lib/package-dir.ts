/**
 * The CLI package's own folder, where its non-code files live (dashboard/, templates/). Found by
 * walking up from this module to the package.json named @nitric-like/cli, since the code runs
 * from dist/lib/*.js, from the one-file bundle dist/nitric-like.mjs, or from src/ under vitest.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

let found: string | undefined;

/** The absolute path of packages/cli (or wherever the package is installed). */
export function cliPackageDir(): string {
  if (found) return found;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = join(dir, "package.json");
    if (existsSync(file) && (JSON.parse(readFileSync(file, "utf8")) as { name?: string }).name === "@nitric-like/cli") {
      found = dir;
      return dir;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error("nitric-like: cannot find the @nitric-like/cli package folder");
    dir = parent;
  }
}
