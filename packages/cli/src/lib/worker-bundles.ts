/**
 * The worker scripts Node 20 cannot start by itself under `run`: a `.ts` (`.mts`, `.cts`, `.tsx`)
 * or `.jsx` script the project's own code starts as `new Worker(new URL("./worker.ts",
 * import.meta.url))`. With the source's place kept (own-place.ts) the URL names the script itself,
 * and Node refused it (ERR_UNKNOWN_FILE_EXTENSION). Each such script is bundled as a service is (its
 * own files keeping their place, an inline source map for stacks that name its lines), into
 * `.nitric-like/build/<service>.workers/`, and the literal is rewritten to that bundle's file URL:
 * the same literals, found and rewritten the same way, as the AWS build bundles into a function
 * (provider-kit's worker-scripts.ts). A `.js` (`.mjs`, `.cjs`) script runs in place, as Node runs
 * it; so does a script a worker starts (its own literals are not rewritten, as on AWS).
 */
import { createHash } from "node:crypto";
import { basename, extname, join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  realpathOr,
  rewriteWorkerLiterals,
  workerLiterals,
  workerScriptOf,
} from "@nitric-like/provider-kit/worker-scripts";
import type { Message } from "esbuild";

/** Scripts Node 20 does not run by itself. */
const NEEDS_BUNDLE = /\.(?:[cm]?ts|tsx|jsx)$/;

/** A worker script's bundle. */
export interface WorkerBundle {
  /** The file the rewritten literal names. */
  outfile: string;
  /** Every file written for it (the bundle may be more than one). */
  files: string[];
  /** The files it was made of (absolute), which a save of rebundles. */
  inputs: string[];
}

/** The worker scripts of one service's bundles (its process and thread bundles share them). */
export class WorkerBundles {
  private readonly built = new Map<string, Promise<WorkerBundle | { errors: Message[] }>>();
  private readonly root: string;

  constructor(
    private readonly projectDir: string,
    /** The folder the bundles go in. */
    private readonly outdir: string,
    /** Bundles `from` to start at `outfile`; resolves to its inputs and files, or rejects with esbuild's errors. */
    private readonly bundle: (from: string, outfile: string) => Promise<{ inputs: string[]; files: string[] }>,
  ) {
    this.root = realpathOr(projectDir);
  }

  /**
   * `text`, the source of the project's own `file`, with each literal naming a script Node cannot
   * run rewritten to its bundle's URL (the bundle made first); undefined when it names none.
   */
  async rewrite(file: string, text: string): Promise<{ contents: string } | { errors: Message[] } | undefined> {
    const scripts = new Map<string, string>();
    for (const { literal } of workerLiterals(text)) {
      const from = workerScriptOf(this.projectDir, this.root, file, literal);
      if (from !== undefined && NEEDS_BUNDLE.test(from)) scripts.set(literal, from);
    }
    if (scripts.size === 0) return undefined;
    const made = await Promise.all([...new Set(scripts.values())].map((from) => this.ensure(from)));
    const errors = made.flatMap((m) => ("errors" in m ? m.errors : []));
    if (errors.length > 0) return { errors };
    const urls = new Map<string, string>();
    for (const [literal, from] of scripts) {
      const made = await this.ensure(from);
      if ("outfile" in made) urls.set(literal, pathToFileURL(made.outfile).href);
    }
    return { contents: rewriteWorkerLiterals(text, (literal) => urls.get(literal)) };
  }

  /** The bundles made, once all are. */
  async bundles(): Promise<WorkerBundle[]> {
    const made = await Promise.all(this.built.values());
    return made.filter((m): m is WorkerBundle => "outfile" in m);
  }

  /** Bundles a script once: `<stem>-<hash of its path>.mjs`, so two scripts never share a name. */
  private ensure(from: string): Promise<WorkerBundle | { errors: Message[] }> {
    let made = this.built.get(from);
    if (made === undefined) {
      const stem = basename(from, extname(from)).replace(/[^\w.-]/g, "-") || "worker";
      const hash = createHash("sha256").update(from).digest("hex").slice(0, 8);
      const outfile = join(this.outdir, `${stem}-${hash}.mjs`);
      made = this.bundle(from, outfile).then(
        ({ inputs, files }) => ({ outfile, inputs, files }),
        (error: unknown) => {
          const errors = (error as { errors?: Message[] }).errors;
          if (Array.isArray(errors) && errors.length > 0) return { errors };
          throw error;
        },
      );
      this.built.set(from, made);
    }
    return made;
  }
}
