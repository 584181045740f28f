#!/usr/bin/env node
// Idle memory: the resident memory of a server holding N open WebSocket connections that send
// nothing, `nitric-like run` (the provider process, its service threads included) against a raw
// `ws` server holding the same connections. Also shows each one's RSS with no connection (the
// fixed cost) and what each connection adds, to tell the two apart. `run` is measured as it runs by
// default (the service in a worker thread, which the target judges) and with --single-thread (the
// service on run's own thread).
// Usage: node bench/idle.mjs [--connections 10000] [--pairs 3] [--settle 3000]
import { join } from "node:path";
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { cleanup, here, median, rssMb, servicePids, startApp, startProcess, stop, verdict } from "./lib.mjs";

const { values } = parseArgs({
  options: {
    connections: { type: "string", default: "10000" },
    pairs: { type: "string", default: "3" },
    settle: { type: "string", default: "3000" },
  },
});
const N = Number(values.connections);
/** Sessions per target, taken in turns (raw, then nitric-like, each started fresh). */
const PAIRS = Number(values.pairs);
/** How long the connections sit idle before the RSS is read, and the wait before the 0-connection reading. */
const SETTLE_MS = Number(values.settle);
const TARGET = 1.2;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function openAll(url, n) {
  const clients = [];
  let next = 0;
  // 100 handshakes at a time: a burst of 10,000 would overflow the listen backlog.
  async function worker() {
    while (next < n) {
      next++;
      const ws = new WebSocket(url);
      await new Promise((resolve, reject) => {
        ws.once("open", resolve);
        ws.once("error", reject);
      });
      clients.push(ws);
    }
  }
  await Promise.all(Array.from({ length: 100 }, worker));
  return clients;
}

async function measure(target) {
  const started = await target.start();
  try {
    await sleep(SETTLE_MS);
    const empty = rssMb(started.child.pid);
    const clients = await openAll(started.url, N);
    await sleep(SETTLE_MS);
    const full = rssMb(started.child.pid);
    const services = servicePids(started.child.pid).map(rssMb);
    for (const ws of clients) ws.terminate();
    return { empty, full, services };
  } finally {
    await stop(started.child);
  }
}

const targets = [
  {
    name: "raw ws",
    start: () => startProcess(process.execPath, [join(here, "raw-broadcast-server.mjs")], /listening (\S+)/),
  },
  { name: "nitric-like", start: () => startApp("broadcast", "broadcast") },
  { name: "nitric-like --single-thread", start: () => startApp("broadcast", "broadcast", ["--single-thread"]) },
];
const ours = targets.slice(1).map((t) => t.name);

const pairs = [];
try {
  for (let p = 0; p < PAIRS; p++) {
    const pair = {};
    for (const target of targets) {
      const m = await measure(target);
      pair[target.name] = m;
      process.stderr.write(
        `idle pair ${p + 1}, ${target.name}: ${m.empty.toFixed(0)} MB empty, ${m.full.toFixed(0)} MB with ${N} connections\n`,
      );
    }
    pairs.push(pair);
  }
} finally {
  cleanup();
}

const med = (name, k) => median(pairs.map((p) => p[name][k]));
const perConnKb = (name) => median(pairs.map((p) => ((p[name].full - p[name].empty) * 1024) / N));
console.log(
  `\nidle: ${N} open connections sending nothing, RSS read after ${SETTLE_MS} ms idle; ${PAIRS} pairs of sessions (raw ws, then each nitric-like, fresh processes), ${new Date().toISOString()}`,
);
console.log(
  "| server | RSS MB (0 connections) | RSS MB | KB per connection | vs raw ws (median of pairs) | pairs | target <= 1.2x | service process RSS MB |",
);
console.log("|---|---:|---:|---:|---:|---|---|---:|");
const row = (name, rest) =>
  console.log(
    `| ${name} | ${med(name, "empty").toFixed(0)} | ${med(name, "full").toFixed(0)} | ${perConnKb(name).toFixed(1)} | ${rest} |`,
  );
row("raw ws", "1.00x | | | ");
for (const name of ours) {
  const ratios = pairs.map((p) => p[name].full / p["raw ws"].full);
  const ratio = median(ratios);
  const services = pairs.at(-1)[name].services;
  row(
    name,
    `${ratio.toFixed(2)}x | ${ratios.map((x) => `${x.toFixed(2)}x`).join(", ")} | ${verdict(ratio <= TARGET)} | ${services.length === 0 ? "none (threads)" : services.map((x) => x.toFixed(0)).join(", ")}`,
  );
}
