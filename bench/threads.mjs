#!/usr/bin/env node
// Where an echo's CPU goes, per thread: the echo load of bench/echo.mjs (50 clients, each sending
// its messages one after another) against a raw `ws` echo server and against `nitric-like run` on
// the reply path, socket.send and @nitric/sdk, taking turns. For each server process, the CPU its
// threads spent (user + kernel, from /proc/<pid>/task/*/stat) divided by the messages echoed:
// its main thread, its busiest other thread (in `run`, the service's worker thread), and all the
// others together (V8's helper threads: parallel GC, concurrent compiling). Also the load
// generator's own CPU per message, since it shares the machine's cores. Linux only.
// The same three with --single-thread (the service on run's main thread) too.
// With --seconds N the load runs for N seconds after --warm-seconds of the same load instead
// (the steady state: what V8 still compiles in a short run is then done), each client taking a
// fresh connection every 800 echoes, under the gateway's per-connection burst of 1,000.
// Usage: node bench/threads.mjs [--clients 50] [--messages 600] [--runs 3] [--only raw,send]
//        [--seconds 6 [--warm-seconds 2]]
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { cleanup, cpuTimes, here, median, startApp, startProcess, stop } from "./lib.mjs";

const { values } = parseArgs({
  options: {
    clients: { type: "string", default: "50" },
    messages: { type: "string", default: "600" },
    runs: { type: "string", default: "3" },
    only: { type: "string" },
    seconds: { type: "string" },
    "warm-seconds": { type: "string", default: "2" },
  },
});
const CLIENTS = Number(values.clients);
const MESSAGES = Number(values.messages);
const RUNS = Number(values.runs);
const SECONDS = values.seconds === undefined ? undefined : Number(values.seconds);
const WARM_SECONDS = Number(values["warm-seconds"]);

const targets = [
  {
    name: "raw ws",
    start: () => startProcess(process.execPath, [join(here, "raw-echo-server.mjs")], /listening (\S+)/),
  },
  { name: "reply path", start: () => startApp("echo-reply", "echo") },
  { name: "socket.send", start: () => startApp("echo-send", "echo") },
  { name: "@nitric/sdk", start: () => startApp("echo-nitric", "echo") },
  ...[
    ["reply path", "echo-reply"],
    ["socket.send", "echo-send"],
    ["@nitric/sdk", "echo-nitric"],
  ].map(([name, app]) => ({
    name: `${name}, --single-thread`,
    start: () => startApp(app, "echo", ["--single-thread"]),
  })),
].filter((t) => !values.only || values.only.split(",").some((o) => t.name.includes(o)));

/** CPU milliseconds (user, kernel) of each thread of `pid`, by thread id. */
function threadTimes(pid) {
  const times = new Map();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      times.set(tid, cpuTimes(`/proc/${pid}/task/${tid}/stat`));
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return times;
}

async function client(url, messages) {
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  for (let i = 0; i < messages; i++) {
    await new Promise((resolve) => {
      ws.once("message", resolve);
      ws.send(`m${i}`);
    });
  }
  ws.close();
}

/** Echoes one after another until `deadline` (performance.now()), a fresh connection every 800; how many. */
async function clientUntil(url, deadline) {
  let echoed = 0;
  while (performance.now() < deadline) {
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    for (let i = 0; i < 800 && performance.now() < deadline; i++) {
      await new Promise((resolve) => {
        ws.once("message", resolve);
        ws.send(`m${i}`);
      });
      echoed++;
    }
    ws.close();
  }
  return echoed;
}

/** The load: CLIENTS × MESSAGES echoes, or CLIENTS clients for SECONDS; how many echoes. */
async function load(url) {
  if (SECONDS === undefined) {
    await Promise.all(Array.from({ length: CLIENTS }, () => client(url, MESSAGES)));
    return CLIENTS * MESSAGES;
  }
  const deadline = performance.now() + SECONDS * 1000;
  const counts = await Promise.all(Array.from({ length: CLIENTS }, () => clientUntil(url, deadline)));
  return counts.reduce((sum, c) => sum + c, 0);
}

async function measure(target) {
  const { child, url } = await target.start();
  try {
    if (SECONDS === undefined) {
      // The same untimed warm-up as bench/echo.mjs gets in total, spread over 10 clients.
      await Promise.all(Array.from({ length: 10 }, () => client(url, 200)));
    } else {
      const deadline = performance.now() + WARM_SECONDS * 1000;
      await Promise.all(Array.from({ length: CLIENTS }, () => clientUntil(url, deadline)));
    }
    const before = threadTimes(child.pid);
    const load0 = process.cpuUsage();
    const t0 = performance.now();
    const n = await load(url);
    const ms = performance.now() - t0;
    const loadCpu = process.cpuUsage(load0);
    const after = threadTimes(child.pid);
    const perThread = [];
    for (const [tid, b] of after) {
      const a = before.get(tid) ?? { user: 0, kernel: 0 };
      perThread.push({ tid, user: b.user - a.user, kernel: b.kernel - a.kernel });
    }
    const main = perThread.find((t) => t.tid === String(child.pid)) ?? { user: 0, kernel: 0 };
    const others = perThread.filter((t) => t !== main).sort((x, y) => y.user + y.kernel - (x.user + x.kernel));
    const busiest = others[0] ?? { user: 0, kernel: 0 };
    const rest = others.slice(1).reduce((sum, t) => sum + t.user + t.kernel, 0);
    const us = (cpuMs) => (cpuMs * 1000) / n;
    return {
      rate: n / (ms / 1000),
      total: us(perThread.reduce((sum, t) => sum + t.user + t.kernel, 0)),
      mainUser: us(main.user),
      mainKernel: us(main.kernel),
      busiest: us(busiest.user + busiest.kernel),
      rest: us(rest),
      // process.cpuUsage() is in microseconds.
      loadGenerator: (loadCpu.user + loadCpu.system) / n,
    };
  } finally {
    await stop(child);
  }
}

const results = new Map(targets.map((t) => [t.name, []]));
try {
  for (let run = 1; run <= RUNS; run++) {
    for (const target of targets) {
      const r = await measure(target);
      results.get(target.name).push(r);
      process.stderr.write(`run ${run} ${target.name}: ${r.rate.toFixed(0)} msgs/s, ${r.total.toFixed(1)} µs/msg\n`);
    }
  }
} finally {
  cleanup();
}

console.log(
  `\nthreads: CPU per message of each server's threads, ${CLIENTS} clients x ${SECONDS === undefined ? `${MESSAGES} echoes` : `${SECONDS} s after ${WARM_SECONDS} s of the same load`}, median of ${RUNS} runs taken in turns, ${new Date().toISOString()}`,
);
console.log(
  "| server | msgs/s | main thread (user + kernel) | busiest other thread | all other threads | total | load generator |",
);
console.log("|---|---:|---:|---:|---:|---:|---:|");
const f = (x) => x.toFixed(1);
for (const [name, runs] of results) {
  const m = (key) => median(runs.map((r) => r[key]));
  console.log(
    `| ${name} | ${m("rate").toFixed(0)} | ${f(m("mainUser") + m("mainKernel"))} µs (${f(m("mainUser"))} + ${f(m("mainKernel"))}) | ${f(m("busiest"))} µs | ${f(m("rest"))} µs | ${f(m("total"))} µs | ${f(m("loadGenerator"))} µs |`,
  );
}
