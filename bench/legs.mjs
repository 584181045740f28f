#!/usr/bin/env node
// Where the unloaded round trip goes, leg by leg: one client sends a message, awaits its echo,
// sends the next (bench/echo.mjs's unloaded p50), against a raw `ws` echo server and `nitric-like
// run` with the reply path and with `socket.send`, the service in a worker thread. Every thread of
// the server runs bench/legs-trace.mjs, which stamps each moment a message crosses a thread's edge
// with the clock the client reads too, so each round trip splits into its legs:
//   client → server     the client's send until the server's socket has the bytes
//   gateway in          those bytes until the event is posted to the service thread
//   hop to service      the post until the service thread's listener has it
//   service             the handler, until the service posts its answer or its send
//   hop to gateway      that post until the gateway's listener has it
//   gateway out         until the echo is written to the client's socket
//   server → client     the write until the client has the echo
// Raw `ws` has the first leg, "server" (bytes in to echo written) and the last. The medians of each
// leg over the round trips do not add up to the median round trip exactly. Targets take turns for
// --rounds rounds, each started fresh; the table shows the median over rounds of each median.
// Usage: node bench/legs.mjs [--rounds 3] [--messages 900] [--only raw,send]
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { cleanup, cli, copyApp, here, median, startProcess, stop } from "./lib.mjs";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    // Under the gateway's per-connection burst of 1,000 messages.
    messages: { type: "string", default: "900" },
    only: { type: "string" },
  },
});
const ROUNDS = Number(values.rounds);
const MESSAGES = Number(values.messages);
// The first round trips of the measured client are left out: its connection is new.
const SKIP = 100;
const tracer = pathToFileURL(join(here, "legs-trace.mjs")).href;

const targets = [
  { name: "raw ws", threads: 1, start: (env) => startRaw(env) },
  { name: "reply path", threads: 2, start: (env) => startRun("echo-reply", env) },
  { name: "socket.send", threads: 2, start: (env) => startRun("echo-send", env) },
].filter((t) => !values.only || values.only.split(",").some((o) => t.name.includes(o)));

function startRaw(env) {
  return startProcess(process.execPath, ["--import", tracer, join(here, "raw-echo-server.mjs")], /listening (\S+)/, {
    env,
  });
}

function startRun(app, env) {
  return startProcess(
    process.execPath,
    ["--import", tracer, cli, "run", copyApp(join(here, "apps", app)), "--random-ports", "--no-watch", "--plain"],
    /^websocket echo (\S+)$/m,
    { env: { ...env, NITRIC_LIKE_SERVICE_NODE_ARGS: `--import ${tracer}` } },
  );
}

const now = () => Number(process.hrtime.bigint());

/** One client's `count` echoes one after another; returns [sent, received] stamps of each. */
async function client(url, count) {
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  const stamps = [];
  for (let i = 0; i < count; i++) {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no echo of message ${i} in 5 s`)), 5000);
      ws.once("message", () => {
        clearTimeout(timer);
        stamps.push([sent, now()]);
        resolve();
      });
      const sent = now();
      ws.send(`m${i}`);
    });
  }
  ws.close();
  return stamps;
}

/** The stamps every thread of the server wrote to `dir`: one list per thread, [tag, ns] in time order. */
function readStamps(dir) {
  const threads = new Map();
  for (const file of readdirSync(dir)) {
    const list = [];
    for (const line of readFileSync(join(dir, file), "utf8").split("\n")) {
      if (!line) continue;
      const [tag, t] = line.split(" ");
      list.push([tag, Number(t)]);
    }
    threads.set(file.startsWith("main") ? "main" : "service", list);
  }
  return threads;
}

/** The first stamp of `tag` in `list` at or after `t` (and before `until`), or undefined. */
function firstAfter(list, tag, t, until) {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid][1] < t) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo; i < list.length && list[i][1] < until; i++) if (list[i][0] === tag) return list[i][1];
  return undefined;
}

/** Each round trip's legs in µs, following the message from thread to thread. */
function legsOf(stamps, threads) {
  const main = threads.get("main") ?? [];
  const service = threads.get("service");
  const legs = new Map();
  const add = (name, a, b) => {
    if (!legs.has(name)) legs.set(name, []);
    legs.get(name).push((b - a) / 1000);
  };
  for (const [sent, received] of stamps) {
    const data = firstAfter(main, "data", sent, received);
    if (data === undefined) continue;
    add("client → server", sent, data);
    if (!service) {
      const write = firstAfter(main, "write", data, received);
      if (write === undefined) continue;
      add("server (bytes in to echo written)", data, write);
      add("server → client", write, received);
    } else {
      const posted = firstAfter(main, "post", data, received);
      const got = posted && firstAfter(service, "recv", posted, received);
      const answered = got && firstAfter(service, "post", got, received);
      const back = answered && firstAfter(main, "recv", answered, received);
      const write = back && firstAfter(main, "write", back, received);
      if (write === undefined) continue;
      add("gateway in", data, posted);
      add("hop to service", posted, got);
      add("service", got, answered);
      add("hop to gateway", answered, back);
      add("gateway out", back, write);
      add("server → client", write, received);
    }
    add("round trip", sent, received);
  }
  return legs;
}

const LEG_ORDER = [
  "client → server",
  "server (bytes in to echo written)",
  "gateway in",
  "hop to service",
  "service",
  "hop to gateway",
  "gateway out",
  "server → client",
  "round trip",
];

const results = new Map(targets.map((t) => [t.name, new Map()]));
try {
  for (let round = 1; round <= ROUNDS; round++) {
    for (const target of targets) {
      const dir = mkdtempSync(join(tmpdir(), "nitric-like-legs-"));
      const { child, url } = await target.start({ LEGS_DIR: dir });
      try {
        // Untimed warm-up: 40 clients × 300 echoes, so the code on the path is optimized.
        await Promise.all(Array.from({ length: 40 }, () => client(url, 300)));
        await new Promise((r) => setTimeout(r, 200));
        const stamps = (await client(url, MESSAGES)).slice(SKIP);
        child.kill("SIGUSR2");
        const deadline = Date.now() + 5000;
        while (readdirSync(dir).length < target.threads && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 50));
        await new Promise((r) => setTimeout(r, 200));
        const legs = legsOf(stamps, readStamps(dir));
        for (const [leg, list] of legs) {
          const rounds = results.get(target.name);
          if (!rounds.has(leg)) rounds.set(leg, []);
          rounds.get(leg).push(median(list));
        }
        const trip = legs.get("round trip") ?? [];
        process.stderr.write(
          `round ${round} ${target.name}: ${trip.length} round trips followed, p50 ${median(trip)?.toFixed(1)} µs\n`,
        );
      } finally {
        await stop(child);
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }
} finally {
  cleanup();
}

console.log(
  `\nlegs of the unloaded round trip: one client, ${MESSAGES} echoes one after another (the first ${SKIP} left out), ${ROUNDS} rounds, ${new Date().toISOString()}`,
);
console.log("median µs of each leg (median over rounds)\n");
console.log(`| leg | ${targets.map((t) => t.name).join(" | ")} |`);
console.log(`|---|${targets.map(() => "---:").join("|")}|`);
for (const leg of LEG_ORDER) {
  const cells = targets.map((t) => {
    const rounds = results.get(t.name).get(leg);
    return rounds ? median(rounds).toFixed(1) : "";
  });
  if (cells.some((c) => c !== "")) console.log(`| ${leg} | ${cells.join(" | ")} |`);
}
