#!/usr/bin/env node
// Flood benchmark: what hostile or slow clients cost `nitric-like run` in memory. Two cases on
// bench/apps/flood (services as worker threads, so the provider process's RSS is all of `run`):
//   inbound: one client makes the service busy for 8 s (a synchronous loop), then two clients,
//     each under the rate limit (900 of 100 KB messages/s), push as fast as TCP takes for 10 s;
//   slow consumers: 20 clients each ask for 14 MB (56 sends of 256 KB) and stop reading;
//   slowloris: 500 connections send half an upgrade request and nothing more, while a real
//     client connects.
// Prints `run`'s RSS idle, at its peak during each case (sampled every 100 ms) and after, beside
// what the clients pushed, how many of their messages were answered and what the log says.
// Usage: node bench/flood.mjs [--seconds 10] [--consumers 20] [--slowloris 500]
import { connect as tcp } from "node:net";
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { cleanup, rssMb, startApp, stop } from "./lib.mjs";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    consumers: { type: "string", default: "20" },
    slowloris: { type: "string", default: "500" },
  },
});
const SLOWLORIS = Number(values.slowloris);
const SECONDS = Number(values.seconds);
const CONSUMERS = Number(values.consumers);
/**
 * What each slow consumer asks for, in 256 KB messages: 14 MB, of which TCP's buffers on loopback
 * take some 7 to 10 MB, leaving each under the 8 MB one client may have waiting, and all of them together over the total.
 */
const CHUNKS = 56;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function connect(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { maxPayload: 1024 * 1024 * 1024 });
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

/** Samples a process's RSS every 100 ms until stopped; returns the peak. */
function sampler(pid) {
  let peak = rssMb(pid);
  const timer = setInterval(() => {
    peak = Math.max(peak, rssMb(pid));
  }, 100);
  const stopSampling = () => {
    clearInterval(timer);
    return Math.max(peak, rssMb(pid));
  };
  stopSampling.now = () => peak;
  return stopSampling;
}

const mb = (n) => `${Math.round(n)} MB`;

async function settle(pid) {
  // Idle: let start-up garbage go first.
  await sleep(2000);
  return rssMb(pid);
}

async function inbound(app) {
  const pid = app.child.pid;
  const url = app.url;
  const idle = await settle(pid);
  // Connected first: the busy service answers no connect either.
  const [busy, ...clients] = await Promise.all([connect(url), connect(url), connect(url)]);
  busy.on("error", () => {});
  busy.send("b");
  await sleep(100);
  const peak = sampler(pid);
  const busyStart = Date.now();
  let busyPeak = 0;
  // The peak while the service is busy (its 8 s), apart from the peak overall.
  const busyTimer = setTimeout(() => {
    busyPeak = peak.now();
  }, 7900);
  const payload = Buffer.alloc(100 * 1024, 0x78);
  let pushed = 0;
  let answered = 0;
  let closes = 0;
  const until = Date.now() + SECONDS * 1000;
  await Promise.all(
    clients.map(async (ws) => {
      ws.on("message", () => answered++);
      ws.on("close", () => closes++);
      ws.on("error", () => {});
      // 900 messages/s, under the default limit of 1000; the client keeps up to 16 MB waiting in
      // its own buffer, so it pushes as fast as the server reads.
      while (Date.now() < until && ws.readyState === WebSocket.OPEN) {
        for (let i = 0; i < 90 && ws.bufferedAmount < 16 * 1024 * 1024; i++) {
          ws.send(payload);
          pushed++;
        }
        await sleep(100);
      }
    }),
  );
  const during = peak();
  clearTimeout(busyTimer);
  void busyStart;
  // The service comes back once its 8 s are up and answers what it was given.
  await sleep(3000);
  const after = rssMb(pid);
  for (const ws of [...clients, busy]) ws.terminate();
  return { idle, busyPeak, during, after, pushed, answered, closes };
}

async function slowConsumers(app) {
  const pid = app.child.pid;
  const idle = await settle(pid);
  const peak = sampler(pid);
  const clients = await Promise.all(Array.from({ length: CONSUMERS }, () => connect(app.url)));
  let closes = 0;
  for (const ws of clients) {
    ws.on("error", () => {});
    ws.on("close", () => closes++);
    ws.send(`p${CHUNKS}`);
    // It reads nothing more: what it is sent waits in the kernel, then in the provider.
    ws.pause();
  }
  await sleep(8000);
  const during = peak();
  for (const ws of clients) ws.terminate();
  await sleep(3000);
  const after = rssMb(pid);
  return { idle, during, after, closes };
}

async function slowloris(app) {
  const { port } = new URL(app.url);
  const started = performance.now();
  const held = await Promise.all(
    Array.from(
      { length: SLOWLORIS },
      () =>
        new Promise((resolve) => {
          const s = tcp(Number(port), "127.0.0.1", () =>
            s.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"),
          );
          let status = 0;
          s.on("data", (d) => {
            status ||= Number(/^HTTP\/1\.1 (\d{3})/.exec(d.toString("latin1"))?.[1] ?? 0);
          });
          s.on("error", () => {});
          s.on("close", () => resolve({ status, seconds: (performance.now() - started) / 1000 }));
        }),
    ).concat([
      // A real client in the middle of it.
      sleep(500).then(async () => {
        const t0 = performance.now();
        const ws = await connect(app.url);
        ws.terminate();
        return { real: performance.now() - t0 };
      }),
    ]),
  );
  const real = held.pop().real;
  const seconds = held.map((h) => h.seconds).sort((a, b) => a - b);
  const statuses = new Set(held.map((h) => h.status));
  return { first: seconds[0], last: seconds.at(-1), statuses: [...statuses], real };
}

try {
  // Each case on a fresh `run`, so its idle figure is its own.
  let app = await startApp("flood", "flood");
  let lines = app.output().split("\n").length;
  const a = await inbound(app);
  const inboundLines = app.output().split("\n").length - lines;
  await stop(app.child);
  app = await startApp("flood", "flood");
  lines = app.output().split("\n").length;
  const b = await slowConsumers(app);
  const slowLines = app.output().split("\n").length - lines;
  const overOwn = (app.output().match(/client not reading: over 8 MB/g) ?? []).length;
  const overTotal = (app.output().match(/client not reading: [\d.]+ MB waiting, the most/g) ?? []).length;
  await stop(app.child);
  app = await startApp("flood", "flood");
  lines = app.output().split("\n").length;
  const c = await slowloris(app);
  const slowlorisLines = app.output().split("\n").length - lines;
  await stop(app.child);
  console.log("| case | `run` RSS idle | peak | peak − idle | after | what happened | log lines |");
  console.log("| --- | --- | --- | --- | --- | --- | --- |");
  console.log(
    `| inbound flood, while the service is busy (8 s) | ${mb(a.idle)} | ${mb(a.busyPeak)} | ${mb(a.busyPeak - a.idle)} | | 2 clients × 900 × 100 KB/s, pushing as fast as TCP takes | |`,
  );
  console.log(
    `| inbound flood, whole ${SECONDS} s (the service answers after its 8 s) | ${mb(a.idle)} | ${mb(a.during)} | ${mb(a.during - a.idle)} | ${mb(a.after)} | ${a.pushed} messages (${mb((a.pushed * 100) / 1024)}) taken by TCP from the clients; ${a.answered} answered; ${a.closes} clients closed | ${inboundLines} |`,
  );
  console.log(
    `| ${CONSUMERS} slow consumers, each sent ${(CHUNKS * 256) / 1024} MB it does not read | ${mb(b.idle)} | ${mb(b.during)} | ${mb(b.during - b.idle)} | ${mb(b.after)} | ${overTotal} closed as not reading for the total (maxQueuedBytesTotal, 64 MB), ${overOwn} for their own 8 MB | ${slowLines} |`,
  );
  console.log(
    `| ${SLOWLORIS} slowloris connections (half an upgrade request each) | | | | | closed with ${c.statuses.join(", ")} after ${c.first.toFixed(1)} to ${c.last.toFixed(1)} s; a real client connected meanwhile in ${c.real.toFixed(0)} ms | ${slowlorisLines} |`,
  );
} finally {
  cleanup();
}
