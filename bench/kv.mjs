#!/usr/bin/env node
// kv through the local provider vs an empty unary gRPC call (the provider's health check) to the
// same endpoint, measured inside a service (bench/apps/kv) in the same run: calls per second, one
// at a time and 32 at a time. The kinds take turns for --rounds rounds of --ms each, and the table
// shows each kind's best round. The target is judged on get against the empty call measured in
// the same moments: in each round the service also alternates a get and an empty call in each of
// its loops ("get-vs-empty"), and the ratio of their rates (calls per second spent in each kind)
// is taken; the verdict is on the median over rounds. (Timed in separate windows, the two rates
// moved by up to a third between neighbouring half-seconds of this shared machine.) The target
// compares calls on the same gRPC channel, so it is judged with the service in a process
// (--processes); the kv calls of the same service run as a worker thread (the default, over a
// MessagePort) are measured after it, against that gRPC baseline.
// Usage: node bench/kv.mjs [--ms 500] [--rounds 5]
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { cleanup, median, startApp, stop, verdict } from "./lib.mjs";

const { values } = parseArgs({
  options: { ms: { type: "string", default: "500" }, rounds: { type: "string", default: "5" } },
});
const ms = Number(values.ms);
const rounds = Number(values.rounds);
const KINDS = ["empty", "get", "set", "keys"];

/** Runs the kv benchmark; resolves with one row per concurrency. */
export async function kvBench(args = []) {
  // The gRPC baseline means something only where the kv calls are gRPC too.
  const kinds = args.includes("--processes") ? KINDS : KINDS.filter((k) => k !== "empty");
  const app = await startApp("kv", "kv", args);
  const rows = [];
  try {
    const ws = new WebSocket(app.url);
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    const ask = (request) =>
      new Promise((resolve, reject) => {
        ws.once("message", (d) => {
          const answer = JSON.parse(d.toString());
          if (answer.error) reject(new Error(answer.error));
          else resolve(answer);
        });
        ws.send(JSON.stringify(request));
      });
    for (const concurrency of [1, 32]) {
      const best = {};
      const ratios = [];
      for (const op of kinds) await ask({ op, ms: 200, concurrency }); // warm-up
      for (let round = 0; round < rounds; round++) {
        const rates = {};
        for (const op of kinds) {
          const { calls, seconds } = await ask({ op, ms, concurrency });
          rates[op] = calls / seconds;
          best[op] = Math.max(best[op] ?? 0, rates[op]);
        }
        if (rates.empty) {
          const both = await ask({ op: "get-vs-empty", ms, concurrency });
          ratios.push(both.get.calls / both.get.seconds / (both.empty.calls / both.empty.seconds));
        }
      }
      rows.push({ concurrency, ...best, ratios });
    }
    ws.close();
  } finally {
    await stop(app.child);
    cleanup();
  }
  return rows;
}

/** The rows as a Markdown table, with the verdict against the target. */
export function kvTable(rows, threadRows = []) {
  const lines = [
    "| service | in flight | empty unary /s (gRPC, best round) | kv get /s (best round) | get vs empty, alternating (median of rounds) | target ≥ 80 % | kv set /s | kv keys (10) /s |",
    "|---|---:|---:|---:|---:|---|---:|---:|",
  ];
  for (const r of rows) {
    const ratio = median(r.ratios);
    const each = r.ratios.map((x) => `${(x * 100).toFixed(0)}`).join(", ");
    lines.push(
      `| process (--processes), gRPC | ${r.concurrency} | ${r.empty.toFixed(0)} | ${r.get.toFixed(0)} | ${(ratio * 100).toFixed(0)} % (${each}) | ${verdict(ratio >= 0.8)} | ${r.set.toFixed(0)} | ${r.keys.toFixed(0)} |`,
    );
  }
  for (const t of threadRows) {
    const base = rows.find((r) => r.concurrency === t.concurrency);
    const ratio = base ? `${((t.get / base.empty) * 100).toFixed(0)} % of the process's gRPC empty unary` : "-";
    lines.push(
      `| worker thread (default), port | ${t.concurrency} | - | ${t.get.toFixed(0)} | ${ratio} | | ${t.set.toFixed(0)} | ${t.keys.toFixed(0)} |`,
    );
  }
  return lines.join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rows = await kvBench(["--processes"]);
  const threadRows = await kvBench();
  console.log(`\nkv: ${rounds} rounds of ${ms} ms per kind, ${new Date().toISOString()}`);
  console.log(kvTable(rows, threadRows));
}
