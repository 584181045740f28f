/**
 * TypeScript services run without a build step: each entry file is bundled by esbuild into
 * `.nitric-like/build/<service>.mjs` inside the project (so bare imports resolve from the project's
 * node_modules), with npm packages left external and an inline source map for readable stacks.
 */
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { compileErrorMessage } from "@nitric-like/provider-kit";
import type { ServiceEntry } from "@nitric-like/spec";
import { build } from "esbuild";
import { UserError } from "./log.js";

/** A bundled service. */
export interface Bundle {
  /** Absolute path of the bundle. */
  outfile: string;
  /** Absolute paths of the project files it was built from (watching these is enough). */
  inputs: Set<string>;
}

/** The folder where nitric-like keeps its local state inside a project. */
export function stateDir(projectDir: string): string {
  return join(projectDir, ".nitric-like");
}

/** Bundles one service. Throws UserError with esbuild's messages when the code does not compile. */
export async function bundleService(projectDir: string, service: ServiceEntry): Promise<Bundle> {
  const outdir = join(stateDir(projectDir), "build");
  mkdirSync(outdir, { recursive: true });
  const outfile = join(outdir, `${service.name}.mjs`);
  try {
    const result = await build({
      entryPoints: [service.path],
      outfile,
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      packages: "external",
      sourcemap: "inline",
      metafile: true,
      logLevel: "silent",
      absWorkingDir: projectDir,
      // ESM has no require(); bundled CommonJS helpers and user code may still call it.
      banner: {
        js: 'import { createRequire as __nitricLikeRequire } from "node:module"; const require = __nitricLikeRequire(import.meta.url);',
      },
    });
    const inputs = new Set(Object.keys(result.metafile.inputs).map((f) => resolve(projectDir, f)));
    return { outfile, inputs };
  } catch (error) {
    const message = compileErrorMessage(error, projectDir, service);
    if (!message) throw error;
    throw new UserError(message);
  }
}
