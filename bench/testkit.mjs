#!/usr/bin/env node
// The test kit's cost per test: from startApp("examples/chat") until a client's connection is open,
// then app.stop() (which checks every port is free), in this process; side by side with
// `nitric-like run examples/chat` spawned as a process until its first connection is open (what a
// test harness that spawns the CLI pays), in the same run. Every kit start copies the project and
// bundles the service in that fresh copy. Usage: node bench/testkit.mjs [--rounds 5]
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startApp } from "@nitric-like/testing";
import WebSocket from "ws";
import { cleanup, cli, copyApp, here, median, startProcess, stop } from "./lib.mjs";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "5" } } });
const rounds = Number(values.rounds);
const project = join(here, "..", "examples", "chat");

async function kitRound() {
  const t0 = performance.now();
  const app = await startApp(project);
  const client = await app.connect();
  const started = performance.now() - t0;
  const t1 = performance.now();
  await client.close();
  await app.stop();
  return { started, stopped: performance.now() - t1 };
}

async function processRound(dir) {
  const t0 = performance.now();
  const { child, url } = await startProcess(
    process.execPath,
    [cli, "run", dir, "--random-ports", "--no-watch", "--no-dashboard", "--plain"],
    /^websocket socket (\S+)$/m,
  );
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  const started = performance.now() - t0;
  ws.close();
  const t1 = performance.now();
  await stop(child);
  return { started, stopped: performance.now() - t1 };
}

const kit = [];
const proc = [];
const dir = copyApp(project);
try {
  await kitRound(); // warm: this process loads the CLI's modules once
  await processRound(dir); // warm: the copy's bundle
  for (let i = 0; i < rounds; i++) {
    kit.push(await kitRound());
    proc.push(await processRound(dir));
  }
} finally {
  cleanup();
}
const row = (label, rs) =>
  `| ${label} | ${median(rs.map((r) => r.started)).toFixed(0)} ms | ${median(rs.map((r) => r.stopped)).toFixed(0)} ms |`;
console.log(`\ntest kit: median of ${rounds} rounds each, ${new Date().toISOString()}`);
console.log(
  [
    "| how | start to first open connection | stop |",
    "|---|---:|---:|",
    row("`startApp` in the test's process (fresh copy, bundled each time)", kit),
    row("`nitric-like run` as a process (its bundle cached)", proc),
  ].join("\n"),
);
