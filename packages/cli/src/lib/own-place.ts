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
 *
 * A worker script such a file starts that Node cannot run by itself (a `.ts` one) is bundled, and
 * the file's literal naming it rewritten to the bundle (worker-bundles.ts), before it is compiled.
 */
import { readFileSync, statSync } from "node:fs";
import { dirname, extname, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { Loader, Plugin } from "esbuild";
import type { WorkerBundles } from "./worker-bundles.js";

/** A file that names its own place (a cheap test before compiling it). */
const NAMES_OWN_PLACE = /\bimport\.meta\b|\b__dirname\b|\b__filename\b/;
/** Source files of the project esbuild loads itself. */
const SOURCE = /\.(?:[cm]?[jt]sx?)$/;

/**
 * A data file named beside the code: `new URL("<literal>", import.meta.url)`, or
 * `path.join(__dirname, "<literal>")` (or `resolve`).
 */
const NAMED_BESIDE =
  /\bnew\s+URL\(\s*(["'`])([^"'`\\$\n]{1,200})\1\s*,\s*import\.meta\.url\s*\)|\b(?:join|resolve)\(\s*__dirname\s*,\s*(["'`])([^"'`\\$\n]{1,200})\3\s*\)/g;

/** The existing data files (not code) `text`, the source of `file`, names beside itself. */
function dataNamedBeside(file: string, text: string): string[] {
  const found: string[] = [];
  for (const match of text.matchAll(NAMED_BESIDE)) {
    let path: string;
    try {
      path =
        match[2] !== undefined
          ? fileURLToPath(new URL(match[2], pathToFileURL(file)))
          : resolve(dirname(file), match[4] ?? "");
      if (!statSync(path).isFile() || SOURCE.test(path)) continue;
    } catch {
      continue;
    }
    found.push(path);
  }
  return found;
}

/** The loader of a project file esbuild would pick by its extension. */
const LOADERS: Record<string, Loader> = { ".ts": "ts", ".mts": "ts", ".cts": "ts", ".tsx": "tsx", ".jsx": "jsx" };

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

/**
 * The esbuild plugin that gives the project's own files their source's place (see above). Adds
 * to `named` the data files they name beside themselves (dataNamedBeside), which `run` watches
 * with the bundle's inputs: a config read as the service loads restarts it when saved, as under
 * `run --provider aws`, whose build copies it into the function. `workers`: the service's worker
 * bundles, for the `.ts` worker scripts its files start (none in a worker's own bundle).
 */
export function ownPlace(named: Set<string>, workers?: WorkerBundles): Plugin {
  return {
    name: "nitric-like-own-place",
    setup(build) {
      build.onLoad({ filter: SOURCE }, async (args) => {
        if (args.namespace !== "file" || /[\\/]node_modules[\\/]/.test(args.path)) return undefined;
        const text = readFileSync(args.path, "utf8");
        if (!NAMES_OWN_PLACE.test(text)) return undefined;
        for (const path of dataNamedBeside(args.path, text)) named.add(path);
        const rewritten = await workers?.rewrite(args.path, text);
        if (rewritten !== undefined && "errors" in rewritten) return { errors: rewritten.errors };
        // The file's text with its worker literals rewritten, given to the build of it alone.
        const withWorkers: Plugin[] =
          rewritten === undefined
            ? []
            : [
                {
                  name: "nitric-like-worker-literals",
                  setup(own) {
                    own.onLoad({ filter: /.*/ }, (load) =>
                      load.path === args.path
                        ? { contents: rewritten.contents, loader: LOADERS[extname(load.path)] ?? "js" }
                        : undefined,
                    );
                  },
                },
              ];
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
            plugins: withWorkers,
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
}
