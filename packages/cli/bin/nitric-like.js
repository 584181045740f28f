#!/usr/bin/env node
// Runs the one-file build of the CLI (dist/nitric-like.mjs, see scripts/bundle.mjs) while every
// file it was made from is unchanged, and the separate modules of dist/ otherwise. An installed
// package has no list of those files (the tarball leaves it out): its bundle is current.
import { existsSync, readFileSync, statSync } from "node:fs";

function bundleIsCurrent() {
  const list = new URL("../dist/nitric-like.inputs.json", import.meta.url);
  if (!existsSync(list)) return existsSync(new URL("../dist/nitric-like.mjs", import.meta.url));
  try {
    const inputs = JSON.parse(readFileSync(list, "utf8"));
    return inputs.every(([path, mtimeMs, size]) => {
      const s = statSync(path, { throwIfNoEntry: false });
      return s !== undefined && s.mtimeMs === mtimeMs && s.size === size;
    });
  } catch {
    return false;
  }
}

// `run` boots a worker thread for its collect pass while the CLI loads (dist/lib/boot-thread.js).
const args = process.argv.slice(2);
if (args[0] === "run") {
  try {
    (await import("../dist/lib/boot-thread.js")).bootForRun(args);
  } catch {
    // Only an optimisation: the CLI starts its threads itself.
  }
}

const { main } = bundleIsCurrent() ? await import("../dist/nitric-like.mjs") : await import("../dist/main.js");
process.exitCode = await main(args);
