/**
 * A module's own place (`import.meta.url`, `import.meta.filename`, `import.meta.dirname`,
 * `__filename`, `__dirname`) in the project's own files, as Node gives it: the SOURCE file's.
 * `run` and `spec` bundle a service into `.nitric-like/build/<service>.mjs`, where these would
 * otherwise be the bundle's, so `readFileSync(new URL("./greeting.txt", import.meta.url))` and
 * `new Worker(new URL("./worker.js", import.meta.url))` looked in `.nitric-like/build/` and failed
 * with ENOENT, and `__dirname` in a .ts service was not defined at all.
 *
 * Each such file (not under node_modules: a package keeps the bundle's place, as before) is
 * compiled on its own with esbuild's `define`, which replaces only the free names, so a file that
 * declares its own `const __dirname = ...` keeps it. Its source map is kept inline for the bundle
 * to follow, so stacks still name the source's lines. The AWS build gives the function's folder
 * instead and copies the files these name there (providers/aws/src/build/beside.ts).
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import type { Loader, Plugin } from "esbuild";

/** A file that names its own place (a cheap test before compiling it). */
const NAMES_OWN_PLACE = /\bimport\.meta\b|\b__dirname\b|\b__filename\b/;
/** Source files of the project esbuild loads itself. */
const SOURCE = /\.(?:[cm]?[jt]sx?)$/;

function loaderOf(path: string): Loader {
  if (path.endsWith(".tsx")) return "tsx";
  if (path.endsWith(".jsx")) return "jsx";
  return /\.[cm]?ts$/.test(path) ? "ts" : "js";
}

/** The text of the tsconfig.json nearest `dir`, as esbuild's build would find it, for its TypeScript options. */
function nearestTsconfig(dir: string): string | undefined {
  for (let at = dir; ; at = dirname(at)) {
    const file = join(at, "tsconfig.json");
    if (existsSync(file)) {
      try {
        return readFileSync(file, "utf8");
      } catch {
        return undefined;
      }
    }
    if (dirname(at) === at) return undefined;
  }
}

/** What a file's own-place names are, as source text for esbuild's `define`. */
export function ownPlaceDefines(path: string): Record<string, string> {
  const file = JSON.stringify(path);
  const dir = JSON.stringify(dirname(path));
  return {
    "import.meta.url": JSON.stringify(pathToFileURL(path).href),
    "import.meta.filename": file,
    "import.meta.dirname": dir,
    __filename: file,
    __dirname: dir,
  };
}

/** The esbuild plugin that gives the project's own files their source's place (see above). */
export const ownPlace: Plugin = {
  name: "nitric-like-own-place",
  setup(build) {
    build.onLoad({ filter: SOURCE }, async (args) => {
      if (args.namespace !== "file" || /[\\/]node_modules[\\/]/.test(args.path)) return undefined;
      const text = readFileSync(args.path, "utf8");
      if (!NAMES_OWN_PLACE.test(text)) return undefined;
      const { transform } = await import("esbuild");
      const tsconfigRaw = nearestTsconfig(dirname(args.path));
      try {
        const result = await transform(text, {
          loader: loaderOf(args.path),
          sourcefile: args.path,
          sourcemap: "inline",
          sourcesContent: false,
          define: ownPlaceDefines(args.path),
          ...(tsconfigRaw === undefined ? {} : { tsconfigRaw }),
        });
        return { contents: result.code, loader: "js", resolveDir: dirname(args.path) };
      } catch {
        // It does not compile: the build itself loads it and says where, as for any other file.
        return undefined;
      }
    });
  },
};
