#!/usr/bin/env node
// The whole benchmark suite, one command: `pnpm bench` (or node bench/all.mjs). Runs each
// benchmark in its own process, one after another (they share the machine's cores, so never in
// parallel), shows their progress on stderr, and prints one Markdown report on stdout: the
// machine, the date, then each benchmark's tables with pass/fail against its target. Every
// benchmark starts what it measures on 127.0.0.1 and stops it. Takes about 5 minutes here.
// Usage: node bench/all.mjs [--only echo,kv,...] > report.md
import { spawn } from "node:child_process";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { here } from "./lib.mjs";

const BENCHMARKS = [
  { name: "echo", args: ["echo.mjs"] },
  { name: "broadcast", args: ["broadcast.mjs", "--floor"] },
  { name: "idle", args: ["idle.mjs"] },
  { name: "rooms", args: ["rooms.mjs"] },
  { name: "kv", args: ["kv.mjs"] },
  { name: "startup", args: ["startup.mjs"] },
  { name: "aws-runtime", args: ["aws-runtime.mjs"] },
  { name: "flood", args: ["flood.mjs"] },
];

const { values } = parseArgs({ options: { only: { type: "string" } } });
const only = values.only?.split(",");
const chosen = BENCHMARKS.filter((b) => !only || only.includes(b.name));
if (only && chosen.length !== only.length) {
  const known = BENCHMARKS.map((b) => b.name).join(", ");
  console.error(`bench: unknown benchmark in --only ${values.only}; choose from ${known}`);
  process.exit(2);
}

function run(benchmark) {
  return new Promise((resolve) => {
    const [script, ...args] = benchmark.args;
    const child = spawn(process.execPath, [join(here, script), ...args], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.on("exit", (code) => resolve({ code, out: out.trim() }));
  });
}

const cpu = cpus()[0]?.model ?? "unknown CPU";
const report = [
  `# nitric-like benchmarks, ${new Date().toISOString().slice(0, 10)}`,
  "",
  `${cpus().length} × ${cpu}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}; load generator, provider and services on the same machine.`,
];
let failed = 0;
for (const benchmark of chosen) {
  process.stderr.write(`\n== ${benchmark.name}\n`);
  const t0 = performance.now();
  const { code, out } = await run(benchmark);
  const seconds = ((performance.now() - t0) / 1000).toFixed(0);
  report.push("", `## ${benchmark.name} (\`node bench/${benchmark.args.join(" ")}\`, ${seconds} s)`, "", out);
  if (code !== 0) {
    failed++;
    report.push("", `**${benchmark.name} exited with code ${code}**; its error output is above this report.`);
  }
}
console.log(report.join("\n"));
const misses = (report.join("\n").match(/\bMISS\b/g) ?? []).length;
process.stderr.write(`\n${chosen.length} benchmarks run, ${failed} failed to run, ${misses} target(s) missed\n`);
process.exit(failed > 0 ? 1 : 0);
