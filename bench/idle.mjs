#!/usr/bin/env node
// Idle memory: the resident memory of a server holding N open WebSocket connections that send
// nothing, `nitric-like run` (the provider process, its service threads included) against a raw
// `ws` server holding the same connections. Also shows each one's RSS with no connection (the
// fixed cost) and what each connection adds, to tell the two apart.
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
];

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

const raw = (k) => median(pairs.map((p) => p["raw ws"][k]));
const ours = (k) => median(pairs.map((p) => p["nitric-like"][k]));
const perConnKb = (name) => median(pairs.map((p) => ((p[name].full - p[name].empty) * 1024) / N));
const ratios = pairs.map((p) => p["nitric-like"].full / p["raw ws"].full);
const ratio = median(ratios);
const services = pairs.at(-1)["nitric-like"].services;
console.log(
  `\nidle: ${N} open connections sending nothing, RSS read after ${SETTLE_MS} ms idle; ${PAIRS} pairs of sessions (raw ws, then nitric-like, fresh processes), ${new Date().toISOString()}`,
);
console.log(
  "| connections | raw ws RSS MB (0 connections) | raw ws RSS MB | KB per connection | provider RSS MB, service threads included (0 connections) | provider RSS MB | KB per connection | ratio (median of pairs) | pairs | target <= 1.2x | service process RSS MB |",
);
console.log("|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|");
console.log(
  `| ${N} | ${raw("empty").toFixed(0)} | ${raw("full").toFixed(0)} | ${perConnKb("raw ws").toFixed(1)} | ${ours("empty").toFixed(0)} | ${ours("full").toFixed(0)} | ${perConnKb("nitric-like").toFixed(1)} | ${ratio.toFixed(2)}x | ${ratios.map((x) => `${x.toFixed(2)}x`).join(", ")} | ${verdict(ratio <= TARGET)} | ${services.length === 0 ? "none (threads)" : services.map((x) => x.toFixed(0)).join(", ")} |`,
);
