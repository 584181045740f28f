#!/usr/bin/env node
// Runs the one-file build of the CLI (dist/nitric-like.mjs, see scripts/bundle.mjs) while every
// file it was made from is unchanged, and the separate modules of dist/ otherwise.
import { readFileSync, statSync } from "node:fs";

function bundleIsCurrent() {
  try {
    const inputs = JSON.parse(readFileSync(new URL("../dist/nitric-like.inputs.json", import.meta.url), "utf8"));
    return inputs.every(([path, mtimeMs, size]) => {
      const s = statSync(path, { throwIfNoEntry: false });
      return s !== undefined && s.mtimeMs === mtimeMs && s.size === size;
    });
  } catch {
    return false;
  }
}

const { main } = bundleIsCurrent() ? await import("../dist/nitric-like.mjs") : await import("../dist/main.js");
process.exitCode = await main(process.argv.slice(2));
