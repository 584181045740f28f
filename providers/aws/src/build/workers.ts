/**
 * The worker scripts a service's own code starts: `new Worker(new URL("./worker.js",
 * import.meta.url))` (or a `.ts` one). Under `run` the script is found beside the source; in a
 * function, bundled into one file, `import.meta.url` is the bundle's, the function's folder, where
 * no such script is (esbuild bundles only what is imported, and cannot see a URL), so the worker
 * failed on AWS only.
 *
 * Each script the project's own code names that way, with a literal, is bundled as an entry of its
 * own, as the function is (platform node, CommonJS unless it awaits at its top level, minified),
 * into the function's folder (and so its zip), and the literal is rewritten to that bundle's name:
 * `<name>.cjs` (or `.mjs`), whose extension says its format whatever package.json is above it (the
 * emulator's function folder is inside the project, whose package.json may say `"type": "module"`),
 * and which Node runs for a `.ts` script too. The worker's bundle has the function's folder as its
 * place, as the function's has, so a data file it reads beside itself is the one the build copies
 * there (beside.ts). A script outside the project (or a link to one) is left as it is, and the
 * build refuses it (beside.ts); a worker a worker starts is not bundled (beside.ts warns of it).
 * A worker's bundle has a source map beside it (`<name>.cjs.map`), as the function's has, and its
 * start maps its stacks through it (bundle.ts's workerEntry), so a stack on Lambda names the
 * script's source file and line.
 */
import { readFileSync } from "node:fs";
import { basename, extname } from "node:path";
import {
  insideDir,
  realpathOr,
  rewriteWorkerLiterals,
  WORKER_CODE,
  workerLiterals,
  workerScriptOf,
} from "@nitric-like/provider-kit/worker-scripts";
import type { Loader, Message, Plugin } from "esbuild";

/** A worker script bundled into a function. */
export interface WorkerScript {
  /** The script's path on this machine. */
  from: string;
  /** Its bundle's name in the function's folder. */
  name: string;
  /** The literal that named it (its first), and the file that holds it (absolute). */
  literal: string;
  startedBy: string;
  /** Its bundle's name without the extension, which its format gives. */
  stem: string;
}

const LOADERS: Record<string, Loader> = {
  ".ts": "ts",
  ".mts": "ts",
  ".cts": "ts",
  ".tsx": "tsx",
  ".jsx": "jsx",
};

/**
 * The worker scripts of one function. `plan` finds them in the service's own files and names their
 * bundles, in the order of the scripts' paths (so the same project gets the same names, and the
 * same artifact key, however esbuild orders its loads); `plugin` (for the function's bundle)
 * rewrites each literal to its script's bundle and asks `bundle` to make it, once per script.
 */
export class FunctionWorkers {
  private readonly planned = new Map<string, WorkerScript>();
  private readonly built = new Map<string, Promise<Message[]>>();
  private readonly root: string;

  constructor(
    private readonly projectDir: string,
    /** Names the function's folder holds already (its bundle and map). */
    private readonly taken: Iterable<string>,
    /** Bundles `from` into the function's folder as `<stem>.cjs` or `<stem>.mjs`; returns the name, or esbuild's errors. */
    private readonly bundle: (from: string, stem: string) => Promise<{ name: string } | { errors: Message[] }>,
  ) {
    this.root = realpathOr(projectDir);
  }

  /** Finds the worker scripts `files` (the service's own, absolute) start, and names their bundles. */
  plan(files: readonly string[]): void {
    const found = new Map<string, { literal: string; startedBy: string }>();
    for (const file of [...files].sort()) {
      if (!WORKER_CODE.test(file) || /[\\/]node_modules[\\/]/.test(file) || !insideDir(this.projectDir, file)) continue;
      let text: string;
      try {
        text = readFileSync(file, "utf8");
      } catch {
        continue;
      }
      for (const { literal } of workerLiterals(text)) {
        const from = workerScriptOf(this.projectDir, this.root, file, literal);
        if (from !== undefined && !found.has(from)) found.set(from, { literal, startedBy: file });
      }
    }
    const names = new Set(this.taken);
    for (const from of [...found.keys()].sort()) {
      const stem =
        basename(from, extname(from))
          .replace(/[^\w.-]/g, "-")
          .replace(/^\.+/, "") || "worker";
      let n = 1;
      while ([".cjs", ".mjs"].some((ext) => names.has(`${n === 1 ? stem : `${stem}-${n}`}${ext}`))) n++;
      const unique = n === 1 ? stem : `${stem}-${n}`;
      names.add(`${unique}.cjs`);
      names.add(`${unique}.mjs`);
      const { literal, startedBy } = found.get(from) as { literal: string; startedBy: string };
      this.planned.set(from, { from, name: `${unique}.cjs`, literal, startedBy, stem: unique });
    }
  }

  /** The scripts bundled, once every bundle is made (their names final), in the order of their names. */
  async scripts(): Promise<WorkerScript[]> {
    await Promise.all(this.built.values());
    return [...this.planned.values()]
      .filter((w) => this.built.has(w.from))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Bundles a planned script once; resolves to esbuild's errors (none when it bundled). */
  private ensure(script: WorkerScript): Promise<Message[]> {
    let built = this.built.get(script.from);
    if (built === undefined) {
      built = this.bundle(script.from, script.stem).then((result) => {
        if ("errors" in result) return result.errors;
        script.name = result.name;
        return [];
      });
      this.built.set(script.from, built);
    }
    return built;
  }

  /** The esbuild plugin for the function's bundle: the project's own files' worker literals, rewritten. */
  plugin(): Plugin {
    return {
      name: "nitric-like-worker-scripts",
      setup: (build) => {
        build.onLoad({ filter: WORKER_CODE }, async (args) => {
          if (this.planned.size === 0) return undefined;
          if (args.namespace !== "file" || /[\\/]node_modules[\\/]/.test(args.path)) return undefined;
          if (!insideDir(this.projectDir, args.path)) return undefined;
          const text = readFileSync(args.path, "utf8");
          const found = new Map<string, WorkerScript>();
          for (const { literal } of workerLiterals(text)) {
            const from = workerScriptOf(this.projectDir, this.root, args.path, literal);
            const script = from === undefined ? undefined : this.planned.get(from);
            if (script !== undefined) found.set(literal, script);
          }
          if (found.size === 0) return undefined;
          const errors = (await Promise.all([...new Set(found.values())].map((w) => this.ensure(w)))).flat();
          if (errors.length > 0) return { errors };
          // Only the literals change, so the function's source map still names the file's lines.
          const contents = rewriteWorkerLiterals(text, (literal) => {
            const script = found.get(literal);
            return script === undefined ? undefined : `./${script.name}`;
          });
          return { contents, loader: LOADERS[extname(args.path)] ?? "js" };
        });
      },
    };
  }
}
