/**
 * A module's own place (`import.meta.url`, `import.meta.filename`, `import.meta.dirname`,
 * `__filename`, `__dirname`) in the project's own files, as Node gives it: the SOURCE file's.
 * `run` and `spec` bundle a service into `.nitric-like/build/<service>.mjs`, where these would
 * otherwise be the bundle's, so `readFileSync(new URL("./greeting.txt", import.meta.url))` and
 * `new Worker(new URL("./worker.js", import.meta.url))` looked in `.nitric-like/build/` and failed
 * with ENOENT, and `__dirname` in a .ts service was not defined at all.
 *
 * Each such file (not under node_modules: a package keeps the bundle's place, as before) is
 * compiled on its own (esbuild, not bundled, its tsconfig.json applying) with `define`, which replaces only the free names, so a file that
 * declares its own `const __dirname = ...` keeps it. Its source map is kept inline for the bundle
 * to follow, so stacks still name the source's lines. The AWS build gives the function's folder
 * instead and copies the files these name there (providers/aws/src/build/beside.ts).
 */
import { readFileSync } from "node:fs";
import { dirname } from "node:path";
import { pathToFileURL } from "node:url";
import type { Plugin } from "esbuild";

/** A file that names its own place (a cheap test before compiling it). */
const NAMES_OWN_PLACE = /\bimport\.meta\b|\b__dirname\b|\b__filename\b/;
/** Source files of the project esbuild loads itself. */
const SOURCE = /\.(?:[cm]?[jt]sx?)$/;

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
      const esbuild = await import("esbuild");
      try {
        // A build of the file alone (not a transform), so its tsconfig.json applies as it would
        // in the bundle, `extends` included (legacy decorators, class fields, JSX).
        const result = await esbuild.build({
          entryPoints: [args.path],
          bundle: false,
          write: false,
          outdir: dirname(args.path),
          outExtension: { ".js": ".own-place.js" },
          platform: "node",
          sourcemap: "inline",
          sourcesContent: false,
          logLevel: "silent",
          define: ownPlaceDefines(args.path),
        });
        const code = result.outputFiles[0]?.text;
        return code === undefined ? undefined : { contents: code, loader: "js", resolveDir: dirname(args.path) };
      } catch {
        // It does not compile: the build itself loads it and says where, as for any other file.
        return undefined;
      }
    });
  },
};
