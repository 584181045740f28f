/**
 * Where a function's bundle is: `<outDir>/functions/<service>/index.cjs`, or `index.mjs` for a
 * service that awaits at its top level (bundle.ts). A build leaves one of the two; Lambda finds
 * either for the handler `index.handler`, and so does the emulator.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";

/** The two files a function's bundle can be. */
export const FUNCTION_FILES = { cjs: "index.cjs", esm: "index.mjs" } as const;

/** The bundle a build left in a function's folder. */
export function functionFileIn(dir: string): string {
  const esm = join(dir, FUNCTION_FILES.esm);
  return existsSync(esm) ? esm : join(dir, FUNCTION_FILES.cjs);
}
