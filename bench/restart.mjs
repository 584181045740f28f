#!/usr/bin/env node
// Live reload: from saving a service's file under `nitric-like run` until `run` prints that it
// restarts the service (debounce + bundling + the re-check of what the service declares). A service
// on @nitric/sdk gets the collect pass again before it restarts (an edit may add api() and the
// like, which nobody serves); one on our SDK alone gets it after, outside this figure. No target:
// a figure to watch.
// Not part of all.mjs. Usage: node bench/restart.mjs [--rounds 5]
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { cleanup, cli, copyApp, here, median, startProcess, stop } from "./lib.mjs";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "5" } } });
const rounds = Number(values.rounds);
const FIXTURES = join(here, "..", "packages", "conformance", "fixtures");

/** Milliseconds from each save until the restart line, for the fixture `name`. */
async function saveToRestart(name) {
  const dir = copyApp(join(FIXTURES, name));
  const { child } = await startProcess(process.execPath, [cli, "run", dir, "--random-ports", "--plain"], /^ready: /m);
  let err = "";
  child.stderr.on("data", (d) => {
    err += d;
  });
  const file = join(dir, "services", "lab.ts");
  const times = [];
  try {
    for (let i = 0; i < rounds; i++) {
      const before = err.length;
      const t0 = performance.now();
      writeFileSync(file, `${readFileSync(file, "utf8")}\n// save ${i}\n`);
      while (!/changed: restarting service/.test(err.slice(before))) await new Promise((r) => setTimeout(r, 5));
      times.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    await stop(child);
  }
  return times;
}

try {
  console.log("| service | save → restart, median (ms) | each (ms) |\n| --- | --- | --- |");
  for (const [label, fixture] of [
    ["@nitric-like/sdk (no re-check)", "lab-ours"],
    ["@nitric/sdk (collect pass again)", "lab-nitric"],
  ]) {
    const times = await saveToRestart(fixture);
    console.log(`| ${label} | ${Math.round(median(times))} | ${times.map(Math.round).join(", ")} |`);
  }
} finally {
  cleanup();
}
