#!/usr/bin/env node
// Room broadcast: open 10,000 connections, 1,000 of them (every tenth) in room "r", to a raw `ws`
// server keeping a Map of rooms and to `nitric-like run` on an app that joins them in its connect
// handler and whose message handler calls socket.room("r").broadcast(data, { except: sender });
// in the same run, measure the time from one member sending a message until the last of the other
// 999 members has it (median of --rounds), and check that no connection outside the room got it.
// Usage: node bench/rooms.mjs [--connections 10000] [--members 1000] [--rounds 10] [--pairs 3]
import { join } from "node:path";
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { cleanup, here, median, startApp, startProcess, stop, verdict } from "./lib.mjs";

const { values } = parseArgs({
  options: {
    connections: { type: "string", default: "10000" },
    members: { type: "string", default: "1000" },
    rounds: { type: "string", default: "10" },
    pairs: { type: "string", default: "3" },
  },
});
const N = Number(values.connections);
const MEMBERS = Number(values.members);
const ROUNDS = Number(values.rounds);
const PAIRS = Number(values.pairs);
const EVERY = Math.floor(N / MEMBERS);

async function openAll(url) {
  const members = [];
  const others = [];
  let next = 0;
  // 100 handshakes at a time: a burst of 10,000 would overflow the listen backlog.
  async function worker() {
    while (next < N) {
      const i = next++;
      const member = i % EVERY === 0 && members.length < MEMBERS;
      const ws = new WebSocket(member ? `${url}?room=r` : url);
      await new Promise((resolve, reject) => {
        ws.once("open", resolve);
        ws.once("error", reject);
      });
      if (member) members.push(ws);
      else others.push(ws);
    }
  }
  await Promise.all(Array.from({ length: 100 }, worker));
  let strays = 0;
  for (const ws of others) ws.on("message", () => strays++);
  return { members, others, strays: () => strays };
}

async function broadcastOnce(members, payload) {
  const [sender, ...rest] = members;
  let left = rest.length;
  const t0 = performance.now();
  const done = new Promise((resolve) => {
    for (const ws of rest) {
      ws.once("message", () => {
        if (--left === 0) resolve(performance.now() - t0);
      });
    }
  });
  sender.send(payload);
  const timeout = new Promise((_, reject) =>
    setTimeout(
      () => reject(new Error(`${left} of ${rest.length} members did not get the broadcast in 30 s`)),
      30000,
    ).unref(),
  );
  return Promise.race([done, timeout]);
}

async function measure(target) {
  const started = await target.start();
  try {
    const { members, others, strays } = await openAll(started.url);
    if (members.length !== MEMBERS) throw new Error(`${members.length} members, expected ${MEMBERS}`);
    // Let the last connect handlers' joins land before the first broadcast.
    await new Promise((r) => setTimeout(r, 500));
    for (let w = 0; w < 5; w++) await broadcastOnce(members, `warm-up ${w}`);
    const times = [];
    for (let r = 0; r < ROUNDS; r++) times.push(await broadcastOnce(members, `round ${r}`));
    await new Promise((r) => setTimeout(r, 200));
    for (const ws of [...members, ...others]) ws.terminate();
    return { ms: median(times), strays: strays() };
  } finally {
    await stop(started.child);
  }
}

const targets = [
  {
    name: "raw ws",
    start: () => startProcess(process.execPath, [join(here, "raw-rooms-server.mjs")], /listening (\S+)/),
  },
  { name: "nitric-like", start: () => startApp("rooms", "rooms") },
];

const pairs = [];
try {
  for (let p = 0; p < PAIRS; p++) {
    const pair = {};
    for (const target of targets) {
      pair[target.name] = await measure(target);
      process.stderr.write(`rooms, pair ${p + 1}, ${target.name}: ${pair[target.name].ms.toFixed(1)} ms\n`);
    }
    pairs.push(pair);
  }
} finally {
  cleanup();
}

const ratios = pairs.map((p) => p["nitric-like"].ms / p["raw ws"].ms);
const ratio = median(ratios);
const strays = pairs.reduce((s, p) => s + p["raw ws"].strays + p["nitric-like"].strays, 0);
console.log(
  `\nroom broadcast: ${N} open connections, ${MEMBERS} in the room, one member's message to the other ${MEMBERS - 1}; ${PAIRS} pairs of sessions (raw ws with a Map of rooms, then nitric-like, fresh processes), each the median of ${ROUNDS} rounds after 5 warm-up rounds, ${new Date().toISOString()}`,
);
console.log(
  "| raw ws ms (median of sessions) | nitric-like ms | ratio (median of pairs) | pairs | target <= 1.3x | frames outside the room |",
);
console.log("|---:|---:|---:|---|---|---:|");
console.log(
  `| ${median(pairs.map((p) => p["raw ws"].ms)).toFixed(1)} | ${median(pairs.map((p) => p["nitric-like"].ms)).toFixed(1)} | ${ratio.toFixed(2)}x | ${ratios.map((x) => `${x.toFixed(2)}x`).join(", ")} | ${verdict(ratio <= 1.3)} | ${strays} |`,
);
if (strays > 0) process.exitCode = 1;
