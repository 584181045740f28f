#!/usr/bin/env node
// Route selection micro-benchmark: what the gateway spends reading a text message's route, with
// the scanner it uses (stringAt, packages/spec/src/json-scan.ts) and with JSON.parse (the
// baseline it replaced, and its test's oracle), on messages of up to 128 KB (the default
// maxMessageBytes) a client may send: nested arrays, numbers, objects, one long string, and a
// short command, read by `action`, and a short command read by the path `meta.type` (routeBy). Both read the same flat strings (as the gateway's Buffer.toString gives them), in
// interleaved rounds; reports µs per message (median of rounds) and the ratio. Needs `pnpm build`.
// Usage: node bench/route-select.mjs [--rounds 15] [--ms 40]
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: { rounds: { type: "string", default: "15" }, ms: { type: "string", default: "40" } },
});
const ROUNDS = Number(values.rounds);
const MS = Number(values.ms);
const root = fileURLToPath(new URL("..", import.meta.url));
const { stringAt } = await import(pathToFileURL(join(root, "packages", "spec", "dist", "json-scan.js")).href);

function parsed(text, path) {
  let p;
  try {
    p = JSON.parse(text);
  } catch {
    return undefined;
  }
  for (const name of path) {
    if (p === null || typeof p !== "object" || Array.isArray(p)) return undefined;
    p = Object.hasOwn(p, name) ? p[name] : undefined;
  }
  return typeof p === "string" ? p : undefined;
}

const ACTION = ["action"];

const half = 64 * 1024 - 20;
const flat = (s) => Buffer.from(s).toString("utf8");
const cases = [
  ["128 KB of nested arrays", `{"action":"join","x":${"[".repeat(half)}${"]".repeat(half)}}`],
  ["128 KB of numbers", `{"action":"join","x":[${Array(half).fill("1").join(",")}]}`],
  [
    "128 KB of small objects",
    `{"action":"join","x":[${Array(Math.floor(half / 4))
      .fill('{"a":1}')
      .join(",")}]}`,
  ],
  ["128 KB in one string", `{"action":"join","x":"${"a".repeat(2 * half)}"}`],
  ["a short command", JSON.stringify({ action: "say", text: "hello there", room: "lobby" })],
  [
    "a short command by meta.type",
    JSON.stringify({ meta: { type: "say", id: 7 }, text: "hello there", room: "lobby" }),
    ["meta", "type"],
  ],
].map(([name, text, path = ACTION]) => [name, flat(text), path]);

/** µs per call of f over `text` and `path`, for about MS milliseconds. */
function time(f, text, path) {
  let calls = 0;
  const start = performance.now();
  let now = start;
  while (now - start < MS) {
    for (let i = 0; i < 8; i++) f(text, path);
    calls += 8;
    now = performance.now();
  }
  return ((now - start) * 1000) / calls;
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

console.log(`| message (${ROUNDS} rounds) | JSON.parse µs | scanner µs | scanner / JSON.parse |`);
console.log("|---|---:|---:|---:|");
for (const [name, text, path] of cases) {
  if (stringAt(text, path) !== parsed(text, path)) throw new Error(`the two read ${name} differently`);
  time(parsed, text, path);
  time(stringAt, text, path);
  const a = [];
  const b = [];
  for (let r = 0; r < ROUNDS; r++) {
    a.push(time(parsed, text, path));
    b.push(time(stringAt, text, path));
  }
  const [pa, pb] = [median(a), median(b)];
  const fmt = (x) => (x < 10 ? x.toFixed(2) : x.toFixed(0));
  console.log(`| ${name} | ${fmt(pa)} | ${fmt(pb)} | ${(pb / pa).toFixed(2)}× |`);
}
