#!/usr/bin/env node
// Broadcast at scale on AWS, simulated (issue 20, item 8): builds bench/apps/broadcast for AWS and
// runs it in the emulator (its worker process, its Lambda Invoke API for the asynchronous
// invocations), with the connections table in dynalite holding N connection records and the
// socket's Management API played by a double on 127.0.0.1 that answers each PostToConnection after
// 15 ms and accepts at most 10,000 per second (429 LimitExceededException over it), as the account's
// throttle does. For N = 1,000, 10,000 and 100,000 it measures, before (the calling function posts
// everything, 32 in flight: NITRIC_LIKE_BROADCAST_INLINE_MAX=Infinity) and after (pages of 1,000
// handed to asynchronous invocations):
//   - caller: how long the message handler's invocation took (broadcast() included);
//   - delivered: the time from the invocation until the last frame reached the double, and how
//     many frames each connection got (must be exactly 1);
//   - 429s answered, invocations, and the frames the page invocations' log lines report.
// Usage: node bench/aws-broadcast.mjs [--sizes 1000,10000,100000] [--latency 15] [--rate 10000] [--skip-before 100000]
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  seedConnections,
  startDynalite,
  startEmulator,
  startManagementDouble,
} from "../providers/aws/dist/emulator/index.js";

const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "1000,10000,100000" },
    latency: { type: "string", default: "15" },
    rate: { type: "string", default: "10000" },
    "skip-before": { type: "string", default: "" },
  },
});
const SIZES = values.sizes.split(",").map(Number);
const SKIP_BEFORE = new Set(values["skip-before"].split(",").filter(Boolean).map(Number));
const here = fileURLToPath(new URL(".", import.meta.url));
const cli = join(here, "..", "packages", "cli", "bin", "nitric-like.js");
const work = mkdtempSync(join(tmpdir(), "nitric-like-bench-aws-broadcast-"));

const dir = join(work, "app");
cpSync(join(here, "apps", "broadcast"), dir, { recursive: true });
symlinkSync(join(here, "node_modules"), join(dir, "node_modules"), "dir");
execFileSync(process.execPath, [cli, "build", dir, "--provider", "aws", "--out", join(dir, "out"), "--plain"], {
  stdio: "pipe",
});

const dynamo = await startDynalite();
const double = await startManagementDouble({ latencyMs: Number(values.latency), perSecond: Number(values.rate) });

/** Runs the emulator with the sockets' Management API pointed at the double. */
async function emulate(inlineMax) {
  const lines = [];
  const emulator = await startEmulator({
    buildDir: join(dir, "out"),
    dynamodbEndpoint: dynamo.endpoint,
    credentials: dynamo.credentials,
    stackName: "bench",
    logger: { info: (m) => lines.push(m), warn: (m) => lines.push(m), error: (m) => lines.push(m) },
    env: {
      NITRIC_LIKE_WEBSOCKETS: JSON.stringify({
        broadcast: {
          apiId: "benchapi",
          url: "wss://benchapi.invalid/live",
          endpoint: `${double.url}/live`,
          events: ["connect", "disconnect", "message"],
        },
      }),
      NITRIC_LIKE_HANDLER_TIMEOUT_MS: "60000",
      NITRIC_LIKE_BROADCAST_INLINE_MAX: String(inlineMax),
    },
  });
  return { emulator, lines };
}

const ids = [];
async function seedTo(n) {
  const more = [];
  while (ids.length + more.length < n) more.push(`Bench${String(ids.length + more.length).padStart(10, "0")}=`);
  await seedConnections(dynamo, "bench-ConnectionsTable", "broadcast", more);
  ids.push(...more);
}

const event = {
  requestContext: { routeKey: "$default", connectionId: "CallerConnIdAA=", apiId: "benchapi", stage: "live" },
  body: "hello, everyone",
  isBase64Encoded: false,
};

async function measure(run, n) {
  double.reset();
  const t0 = Date.now();
  await run.emulator.functions[0].invoke(event);
  const caller = Date.now() - t0;
  // Delivered: until every frame arrived, or nothing arrived for 5 s.
  let seen = -1;
  let still = Date.now();
  while (double.delivered() < n) {
    await new Promise((r) => setTimeout(r, 50));
    if (double.delivered() !== seen) {
      seen = double.delivered();
      still = Date.now();
    } else if (Date.now() - still > 5000) break;
  }
  await new Promise((r) => setTimeout(r, 200));
  const counts = [...double.received.values()];
  const reported = run.lines
    .splice(0)
    .map((l) => /page \d+: delivered (\d+) of/.exec(l))
    .filter(Boolean);
  return {
    caller,
    deliver: double.lastDeliveredAt() - t0,
    got: counts.length,
    twice: counts.filter((c) => c > 1).length,
    throttled: double.throttled(),
    pages: reported.length,
    reported: reported.reduce((s, m) => s + Number(m[1]), 0),
    peak: double.peakInFlight(),
  };
}

const rows = [];
for (const n of SIZES) {
  for (const [label, inlineMax] of [
    ["before", "Infinity"],
    ["after", "100"],
  ]) {
    if (label === "before" && SKIP_BEFORE.has(n)) continue;
    const run = await emulate(inlineMax);
    // The emulator made the table: the records go in once it is there.
    await seedTo(n);
    const r = await measure(run, n);
    await run.emulator.stop();
    const row = { n, label, ...r };
    rows.push(row);
    console.log(
      `${String(n).padStart(7)} ${label.padEnd(6)} caller ${String(r.caller).padStart(6)} ms, delivered to ${r.got}/${n} (twice: ${r.twice}) in ${String(r.deliver).padStart(6)} ms; 429s ${r.throttled}; page invocations ${r.pages} reporting ${r.reported} delivered; peak in flight ${r.peak}`,
    );
  }
}
await double.close();
await dynamo.close();
rmSync(work, { recursive: true, force: true });
