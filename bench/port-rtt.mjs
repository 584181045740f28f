#!/usr/bin/env node
// What a service thread adds to an unloaded round trip at the least: a MessagePort round trip
// between this thread and a worker thread that only answers, next to a raw `ws` echo round trip
// on 127.0.0.1 (one client, bench/raw-echo-server.mjs) in the same run. The `socket.send` echo
// crosses the port once each way on its critical path (the event to the service thread, the
// send back to the gateway), so the port's round trip is the floor of what the thread adds to
// bench/echo.mjs's unloaded p50. With --gap 1 (the default) both sides sleep between messages,
// as an unloaded client leaves them; --gap 0 sends the next message at once. Also timed: the
// postMessage call alone, the sender's own cost, which includes waking the other thread when it
// sleeps (a system call, on a virtual machine an interrupt to another core). With --spin N, one
// more round trip on a second channel whose two threads, instead of sleeping, poll the port
// (receiveMessageOnPort) for up to N µs after each message: what the hop costs with no wake-up,
// paid for with a core per spinning thread. With --atomics, one more round trip with no port at all:
// a counter in a SharedArrayBuffer that each side bumps and wakes the other on with Atomics.notify,
// the other waiting in Atomics.waitAsync (how a hand-off without postMessage would wake a thread).
// Usage: node bench/port-rtt.mjs [--messages 3000] [--gap 1] [--spin 0] [--atomics]
import { join } from "node:path";
import { parseArgs } from "node:util";
import { MessageChannel, receiveMessageOnPort, Worker } from "node:worker_threads";
import WebSocket from "ws";
import { here, startProcess, stop } from "./lib.mjs";

const { values } = parseArgs({
  options: {
    messages: { type: "string", default: "3000" },
    gap: { type: "string", default: "1" },
    spin: { type: "string", default: "0" },
    atomics: { type: "boolean", default: false },
  },
});
const N = Number(values.messages);
const GAP_MS = Number(values.gap);
const SPIN_US = Number(values.spin);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Round-trip times in µs of `N` messages sent one after another through `roundTrip`, sorted. */
async function measure(roundTrip) {
  // Untimed warm-up.
  for (let i = 0; i < 200; i++) await roundTrip(i);
  const times = [];
  for (let i = 0; i < N; i++) {
    const t = process.hrtime.bigint();
    await roundTrip(i);
    times.push(Number(process.hrtime.bigint() - t) / 1000);
    if (GAP_MS > 0) await sleep(GAP_MS);
  }
  return times.sort((a, b) => a - b);
}

const at = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))];
const row = (name, t) => `| ${name} | ${at(t, 0.1).toFixed(1)} | ${at(t, 0.5).toFixed(1)} | ${at(t, 0.9).toFixed(1)} |`;

// The worker answers each message on the port it is given; on a port given with `spinUs`, it then
// polls that port for up to `spinUs` µs (from its last message) before going back to sleep. Given
// a SharedArrayBuffer instead, it waits for its first counter to move and then moves the second.
const worker = new Worker(
  `const { parentPort, receiveMessageOnPort } = require("node:worker_threads");
  const now = () => Number(process.hrtime.bigint()) / 1000;
  const answerCounter = async (counters) => {
    for (let seen = 0; ; ) {
      const waited = Atomics.waitAsync(counters, 0, seen);
      if (waited.async) await waited.value;
      seen = Atomics.load(counters, 0);
      Atomics.add(counters, 1, 1);
      Atomics.notify(counters, 1);
    }
  };
  parentPort.on("message", ({ port, spinUs, sab }) => sab ? answerCounter(new Int32Array(sab)) : port.on("message", (m) => {
    port.postMessage(m);
    for (let until = now() + spinUs; now() < until; ) {
      const next = receiveMessageOnPort(port);
      if (next) { port.postMessage(next.message); until = now() + spinUs; }
    }
  }));`,
  { eval: true },
);
const { port1, port2 } = new MessageChannel();
worker.postMessage({ port: port2, spinUs: 0 }, [port2]);
/** µs spent inside each postMessage call, the warm-up's included (dropped below). */
const posts = [];
const port = await measure(
  (i) =>
    new Promise((resolve) => {
      port1.once("message", resolve);
      const t = process.hrtime.bigint();
      port1.postMessage(i);
      posts.push(Number(process.hrtime.bigint() - t) / 1000);
    }),
);
const postCalls = posts.slice(-N).sort((a, b) => a - b);
port1.close();

let spun;
if (SPIN_US > 0) {
  const channel = new MessageChannel();
  worker.postMessage({ port: channel.port2, spinUs: SPIN_US }, [channel.port2]);
  const now = () => Number(process.hrtime.bigint()) / 1000;
  spun = await measure((i) => {
    channel.port1.postMessage(i);
    for (const until = now() + SPIN_US; now() < until; ) if (receiveMessageOnPort(channel.port1)) return;
    return new Promise((resolve) => channel.port1.once("message", resolve));
  });
  channel.port1.close();
}

let woken;
if (values.atomics) {
  const counters = new Int32Array(new SharedArrayBuffer(8));
  worker.postMessage({ sab: counters.buffer });
  woken = await measure(async () => {
    const seen = Atomics.load(counters, 1);
    Atomics.add(counters, 0, 1);
    Atomics.notify(counters, 0);
    const waited = Atomics.waitAsync(counters, 1, seen);
    if (waited.async) await waited.value;
  });
}
await worker.terminate();

const raw = await startProcess(process.execPath, [join(here, "raw-echo-server.mjs")], /(ws:\/\/\S+)/);
let ws;
try {
  ws = new WebSocket(raw.url);
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  const socket = ws;
  const echo = await measure(
    (i) =>
      new Promise((resolve) => {
        socket.once("message", resolve);
        socket.send(`m${i}`);
      }),
  );
  console.log(`\nport round trip: ${N} messages one after another, ${GAP_MS} ms between, ${new Date().toISOString()}`);
  console.log("| round trip | p10 µs | p50 µs | p90 µs |\n|---|---:|---:|---:|");
  console.log(row("MessagePort, this thread to a worker thread and back", port));
  console.log(row("of which the sender's postMessage call itself", postCalls));
  if (spun)
    console.log(row(`MessagePort, both threads polling the port up to ${SPIN_US} µs instead of sleeping`, spun));
  if (woken) console.log(row("no port: a shared counter, Atomics.notify and Atomics.waitAsync", woken));
  console.log(row("raw `ws` echo on 127.0.0.1, one client (same run)", echo));
} finally {
  ws?.close();
  await stop(raw.child);
}
