#!/usr/bin/env node
// Soak: hold --connections connections (default 2,000) to `nitric-like run` on the echo app
// (bench/apps/echo-reply) and send a steady --rate messages per second in total (default 2,000:
// one per connection per second) for --seconds (default 60). Every message carries its
// connection and sequence number; every echo is checked: none lost, none duplicated, none out of
// order. The resident memory of the provider (the `run` process, with the service thread in it) is sampled
// every 5 s, so a leak shows as a slope. Everything is on 127.0.0.1 and the run stops by itself
// (a hard stop at twice the planned time). Usage: node bench/soak.mjs [--connections 2000] [--rate 2000] [--seconds 60]
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { cleanup, rssMb, servicePids, startApp, stop, verdict } from "./lib.mjs";

const { values } = parseArgs({
  options: {
    connections: { type: "string", default: "2000" },
    rate: { type: "string", default: "2000" },
    seconds: { type: "string", default: "60" },
  },
});
const CONNECTIONS = Number(values.connections);
const RATE = Number(values.rate);
const SECONDS = Number(values.seconds);
const TICK_MS = 10;

const started = await startApp("echo-reply", "echo");
const hardStop = setTimeout(
  () => {
    process.stderr.write("soak: hard stop (twice the planned time)\n");
    started.child.kill("SIGKILL");
    process.exit(2);
  },
  (SECONDS * 2 + 60) * 1000,
);
hardStop.unref();

const clients = [];
let lost = 0;
let duplicated = 0;
let reordered = 0;
let closedEarly = 0;
let received = 0;
let sent = 0;

try {
  let next = 0;
  // 100 handshakes at a time: a burst of thousands would overflow the listen backlog.
  const worker = async () => {
    while (next < CONNECTIONS) {
      const index = next++;
      const ws = new WebSocket(started.url);
      await new Promise((resolve, reject) => {
        ws.once("open", resolve);
        ws.once("error", reject);
      });
      const c = { ws, index, sent: 0, got: 0, open: true };
      ws.on("message", (data) => {
        received++;
        const [i, seq] = data.toString().split(":").map(Number);
        if (i !== index) reordered++;
        else if (seq < c.got) duplicated++;
        else if (seq > c.got) reordered++;
        c.got = Math.max(c.got, seq + 1);
      });
      ws.on("close", () => {
        if (c.open) closedEarly++;
        c.open = false;
      });
      clients.push(c);
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 100 }, worker));
  process.stderr.write(
    `soak: ${clients.length} connections open in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
  );

  const provider = started.child.pid;
  const services = servicePids(provider);
  const samples = [];
  const sample = (t) =>
    samples.push({ t, provider: rssMb(provider), service: services.map(rssMb).reduce((a, b) => a + b, 0), received });
  sample(0);

  // A steady rate: every tick sends its share, round robin over the connections.
  const perTick = (RATE * TICK_MS) / 1000;
  let credit = 0;
  let cursor = 0;
  const start = performance.now();
  const sampler = setInterval(() => {
    const t = Math.round((performance.now() - start) / 1000);
    sample(t);
    process.stderr.write(
      `soak: ${t} s, sent ${sent}, received ${received}, provider ${samples.at(-1).provider.toFixed(0)} MB\n`,
    );
  }, 5000);
  await new Promise((resolve) => {
    const ticker = setInterval(() => {
      const elapsed = performance.now() - start;
      if (elapsed >= SECONDS * 1000) {
        clearInterval(ticker);
        resolve();
        return;
      }
      // Catch up on ticks the timer fired late, so the rate holds on a busy machine.
      credit = (elapsed / 1000) * RATE - sent;
      for (let n = Math.min(Math.floor(credit), perTick * 10); n > 0; n--) {
        const c = clients[cursor];
        cursor = (cursor + 1) % clients.length;
        if (!c.open) continue;
        c.ws.send(`${c.index}:${c.sent++}`);
        sent++;
      }
    }, TICK_MS);
  });
  const sendSeconds = (performance.now() - start) / 1000;
  // The last echoes.
  const drainUntil = Date.now() + 10_000;
  while (received < sent && Date.now() < drainUntil) await new Promise((r) => setTimeout(r, 50));
  clearInterval(sampler);
  const end = Math.round((performance.now() - start) / 1000);
  if (samples.at(-1).t !== end) sample(end);
  lost = clients.reduce((n, c) => n + (c.sent - Math.min(c.got, c.sent)), 0);

  const steady = samples.filter((s) => s.t >= 10);
  const first = steady[0] ?? samples[0];
  const last = samples.at(-1);
  const peak = Math.max(...samples.map((s) => s.provider));
  const ok = lost === 0 && duplicated === 0 && reordered === 0 && closedEarly === 0;
  const growth = last.provider - first.provider;
  console.log(
    `\nsoak: ${CONNECTIONS} connections, ${RATE} msgs/s for ${SECONDS} s, ${new Date().toISOString()}, ${cpus().length} cores, Node ${process.version}`,
  );
  console.log(
    `sent ${sent} (${(sent / sendSeconds).toFixed(0)} msgs/s), echoed ${received}; lost ${lost}, duplicated ${duplicated}, out of order ${reordered}, closed early ${closedEarly}: ${verdict(ok)}`,
  );
  console.log(
    `provider RSS: ${samples[0].provider.toFixed(0)} MB at start, ${first.provider.toFixed(0)} MB at ${first.t} s, ${last.provider.toFixed(0)} MB at the end (${growth >= 0 ? "+" : ""}${growth.toFixed(0)} MB after warm-up), peak ${peak.toFixed(0)} MB`,
  );
  // With the service as a worker thread (the default) its memory is in the provider's.
  const header = services.length > 0 ? "provider RSS MB | service RSS MB" : "provider RSS MB (service thread included)";
  console.log(`\n| t (s) | ${header} | echoed |`);
  console.log(services.length > 0 ? "|---:|---:|---:|---:|" : "|---:|---:|---:|");
  for (const s of samples)
    console.log(
      `| ${s.t} | ${s.provider.toFixed(0)}${services.length > 0 ? ` | ${s.service.toFixed(0)}` : ""} | ${s.received} |`,
    );
  process.exitCode = ok ? 0 : 1;
} finally {
  for (const c of clients) {
    c.open = false;
    c.ws.terminate();
  }
  await stop(started.child);
  cleanup();
  clearTimeout(hardStop);
}
