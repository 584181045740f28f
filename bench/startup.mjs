#!/usr/bin/env node
// Start-up: from spawning `nitric-like run examples/chat` until its first WebSocket connection is
// open (the connect handler has answered), side by side with a raw `ws` server process started the
// same way, in the same run. The first run on a fresh copy bundles the service; the later runs are
// what a developer sees every time. Target (issue 19): the warm run ≤ 300 ms.
// Usage: node bench/startup.mjs [--rounds 5]
import { join } from "node:path";
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { cleanup, cli, copyApp, here, median, startProcess, stop, verdict } from "./lib.mjs";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "5" } } });
const rounds = Number(values.rounds);

/** Milliseconds from spawning `command args` until a connection to the URL it prints is open. */
async function timeToConnection(command, args, pattern) {
  const t0 = performance.now();
  const { child, url } = await startProcess(command, args, pattern);
  try {
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    const ms = performance.now() - t0;
    ws.close();
    return ms;
  } finally {
    await stop(child);
  }
}

/** Runs the start-up benchmark; resolves with medians in ms. */
export async function startupBench() {
  const chat = copyApp(join(here, "..", "examples", "chat"));
  const run = () =>
    timeToConnection(
      process.execPath,
      [cli, "run", chat, "--random-ports", "--no-watch", "--plain"],
      /^websocket socket (\S+)$/m,
    );
  const raw = () => timeToConnection(process.execPath, [join(here, "raw-echo-server.mjs")], /listening (\S+)/);
  try {
    const first = await run();
    const runs = [];
    const raws = [];
    for (let i = 0; i < rounds; i++) {
      raws.push(await raw());
      runs.push(await run());
    }
    return { raw: median(raws), first, run: median(runs), runs, raws };
  } finally {
    cleanup();
  }
}

/** The target for a warm `run` (bundles cached), in ms. */
export const TARGET_MS = 300;

/** The result as a Markdown table, with the verdict against the target. */
export function startupTable(r) {
  const spread = (a) => `${Math.min(...a).toFixed(0)}–${Math.max(...a).toFixed(0)}`;
  return [
    `| target | to first connection (median) | spread | vs raw | target ≤ ${TARGET_MS} ms (warm) |`,
    "|---|---:|---:|---:|---|",
    `| raw \`ws\` server process | ${r.raw.toFixed(0)} ms | ${spread(r.raws)} | 1.0x | |`,
    `| \`nitric-like run examples/chat\` | ${r.run.toFixed(0)} ms | ${spread(r.runs)} | ${(r.run / r.raw).toFixed(1)}x | ${verdict(r.run <= TARGET_MS)} |`,
    `| the same, first run on a fresh copy (bundles the service once; not the target) | ${r.first.toFixed(0)} ms | | ${(r.first / r.raw).toFixed(1)}x | |`,
  ].join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await startupBench();
  console.log(`\nstart-up: median of ${rounds} runs each, ${new Date().toISOString()}`);
  console.log(startupTable(r));
}
