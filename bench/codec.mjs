#!/usr/bin/env node
// Codec micro-benchmark: the hot messages (the handler stream's events and answers, alone and in
// batches, a connect event with headers, the kv calls that carry values) encoded and decoded by
// the generated fast codecs (packages/contracts/src/gen/**/*_fast.ts), by protobuf-es
// (toBinary(create()) / fromBinary) and, when git history has them, by the hand-written codecs
// they replaced, all in the same run, in short interleaved runs. Reports ns per call (median of rounds)
// and the ratios. Needs `pnpm build` first.
// Usage: node bench/codec.mjs [--rounds 21] [--ms 40] [--old <git rev with the hand-written codecs>]
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "21" },
    ms: { type: "string", default: "40" },
    old: { type: "string" },
  },
});
const ROUNDS = Number(values.rounds);
const MS = Number(values.ms);

const root = fileURLToPath(new URL("..", import.meta.url));
const contracts = join(root, "packages", "contracts");
const dist = join(contracts, "dist");
const pbUrl = pathToFileURL(join(contracts, "node_modules", "@bufbuild", "protobuf", "dist", "esm", "index.js")).href;
const { create, fromBinary, toBinary } = await import(pbUrl);
const ws = await import(pathToFileURL(join(dist, "gen/nitric/proto/websockets/v1/websockets_pb.js")).href);
const kv = await import(pathToFileURL(join(dist, "gen/nitric/proto/kvstore/v1/kvstore_pb.js")).href);
const wsFast = await import(pathToFileURL(join(dist, "gen/nitric/proto/websockets/v1/websockets_fast.js")).href);
const kvFast = await import(pathToFileURL(join(dist, "gen/nitric/proto/kvstore/v1/kvstore_fast.js")).href);

/**
 * The hand-written codecs from git history (the parent of the commit that deleted them, unless
 * --old names a revision), compiled by esbuild into a temporary directory, their imports pointed at
 * this build's generated descriptors and protobuf-es.
 */
async function loadOld() {
  const git = (...args) => execFileSync("git", args, { cwd: root, encoding: "utf8" }).trim();
  let rev = values.old;
  if (rev === undefined) {
    const last = git("rev-list", "-n", "1", "HEAD", "--", "packages/contracts/src/handler-codec.ts");
    if (last === "") return undefined;
    // The last commit that touched it: the deletion (then its parent has it), or one that kept it.
    rev = git("ls-tree", last, "packages/contracts/src/handler-codec.ts") === "" ? `${last}^` : last;
  }
  const esbuild = createRequire(join(root, "packages", "cli", "package.json"))("esbuild");
  const dir = mkdtempSync(join(tmpdir(), "nitric-like-old-codec-"));
  const genUrl = pathToFileURL(join(dist, "gen")).href;
  for (const name of ["wire", "handler-codec", "kv-codec"]) {
    const source = git("show", `${rev}:packages/contracts/src/${name}.ts`);
    const { code } = esbuild.transformSync(source, { loader: "ts", format: "esm" });
    writeFileSync(
      join(dir, `${name}.mjs`),
      code
        .replaceAll('"@bufbuild/protobuf"', JSON.stringify(pbUrl))
        .replaceAll('"./gen/', `"${genUrl}/`)
        .replaceAll('"./wire.js"', '"./wire.mjs"'),
    );
  }
  const handler = await import(pathToFileURL(join(dir, "handler-codec.mjs")).href);
  const kvOld = await import(pathToFileURL(join(dir, "kv-codec.mjs")).href);
  rmSync(dir, { recursive: true, force: true });
  return { rev, handler, kv: kvOld };
}
let old;
try {
  old = await loadOld();
} catch (error) {
  // No git, or a shallow clone without that history: compare with protobuf-es only.
  console.error(`note: the hand-written codecs could not be loaded from git history: ${error.message.split("\n")[0]}`);
}

// ---- the messages --------------------------------------------------------------------------

const body = Buffer.from("hello, this is a chat message");
const messageEvent = (i) => ({
  id: String(i),
  content: {
    case: "websocketEventRequest",
    value: {
      socketName: "chat",
      connectionId: "c0a8f2b4-6d1e-4c1a-9b7e-3f2d1a0b9c8d",
      websocketEvent: { case: "message", value: { body, binary: false } },
    },
  },
});
const headers = {};
for (const [k, v] of Object.entries({
  host: "127.0.0.1:4001",
  "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
  "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
  "sec-websocket-version": "13",
  connection: "Upgrade",
  upgrade: "websocket",
  origin: "http://localhost:3000",
  "accept-language": "en-GB,en;q=0.9",
}))
  headers[k] = { value: [v] };
const connectEvent = {
  id: "1",
  content: {
    case: "websocketEventRequest",
    value: {
      socketName: "chat",
      connectionId: "c0a8f2b4-6d1e-4c1a-9b7e-3f2d1a0b9c8d",
      websocketEvent: {
        case: "connection",
        value: {
          queryParams: { room: { value: ["lobby"] } },
          headers,
          remoteAddress: "127.0.0.1",
          connectedAt: 1.7e12,
        },
      },
    },
  },
};
const answer = (i) => ({
  id: String(i),
  content: {
    case: "websocketEventResponse",
    value: { websocketResponse: { case: undefined }, replies: [{ data: body, binary: false }] },
  },
});
const batch = (n, one, kind) => ({
  id: "",
  content: {
    case: kind,
    value: { [kind === "eventBatch" ? "events" : "answers"]: Array.from({ length: n }, (_, i) => one(i)) },
  },
});
const ref = { store: "profiles", key: "user:42" };
const content = { name: "Ada", age: 36, admin: false, tags: ["a", "b"], address: { city: "London", zip: null } };

// [name, schema, message, generated {encode, decode}, old {encode, decode}]
const cases = [
  [
    "ServerMessage: message event",
    ws.ServerMessageSchema,
    messageEvent(7),
    wsFast.encodeServerMessage,
    wsFast.decodeServerMessage,
    old?.handler.encodeServerMessage,
    old?.handler.decodeServerMessage,
  ],
  [
    "ServerMessage: batch of 8 events",
    ws.ServerMessageSchema,
    batch(8, messageEvent, "eventBatch"),
    wsFast.encodeServerMessage,
    wsFast.decodeServerMessage,
    old?.handler.encodeServerMessage,
    old?.handler.decodeServerMessage,
  ],
  [
    "ServerMessage: connect event, 8 headers",
    ws.ServerMessageSchema,
    connectEvent,
    wsFast.encodeServerMessage,
    wsFast.decodeServerMessage,
    old?.handler.encodeServerMessage,
    old?.handler.decodeServerMessage,
  ],
  [
    "ClientMessage: answer, one reply",
    ws.ClientMessageSchema,
    answer(7),
    wsFast.encodeClientMessage,
    wsFast.decodeClientMessage,
    old?.handler.encodeClientMessage,
    old?.handler.decodeClientMessage,
  ],
  [
    "ClientMessage: batch of 8 answers",
    ws.ClientMessageSchema,
    batch(8, answer, "answerBatch"),
    wsFast.encodeClientMessage,
    wsFast.decodeClientMessage,
    old?.handler.encodeClientMessage,
    old?.handler.decodeClientMessage,
  ],
  [
    "KvStoreGetValueRequest",
    kv.KvStoreGetValueRequestSchema,
    { ref },
    kvFast.encodeKvStoreGetValueRequest,
    kvFast.decodeKvStoreGetValueRequest,
    old?.kv.encodeGetValueRequest,
    old?.kv.decodeGetValueRequest,
  ],
  [
    "KvStoreSetValueRequest",
    kv.KvStoreSetValueRequestSchema,
    { ref, content },
    kvFast.encodeKvStoreSetValueRequest,
    kvFast.decodeKvStoreSetValueRequest,
    old?.kv.encodeSetValueRequest,
    old?.kv.decodeSetValueRequest,
  ],
  [
    "KvStoreGetValueResponse",
    kv.KvStoreGetValueResponseSchema,
    { value: { ref, content } },
    kvFast.encodeKvStoreGetValueResponse,
    kvFast.decodeKvStoreGetValueResponse,
    old?.kv.encodeGetValueResponse,
    old?.kv.decodeGetValueResponse,
  ],
];

/** ns per call of fn, run for about MS milliseconds. */
function time(fn) {
  let n = 0;
  let sink;
  const start = process.hrtime.bigint();
  const until = start + BigInt(MS) * 1_000_000n;
  let now = start;
  while (now < until) {
    for (let i = 0; i < 200; i++) sink = fn();
    n += 200;
    now = process.hrtime.bigint();
  }
  if (sink === undefined) throw new Error("codec bench: a codec returned nothing");
  return Number(now - start) / n;
}
const median = (xs) => xs.toSorted((a, b) => a - b)[Math.floor(xs.length / 2)];

const rows = [];
for (const [name, schema, init, enc, dec, oldEnc, oldDec] of cases) {
  const bytes = Buffer.from(toBinary(schema, create(schema, init)));
  // The same bytes from every encoder, or the comparison means nothing.
  if (!bytes.equals(enc(init))) throw new Error(`codec bench: ${name}: generated encoder differs from protobuf-es`);
  if (oldEnc && !bytes.equals(oldEnc(init)))
    console.error(`note: ${name}: hand-written encoder's bytes differ from protobuf-es`);
  const impl = {
    "encode generated": () => enc(init),
    "encode protobuf-es": () => toBinary(schema, create(schema, init)),
    "decode generated": () => dec(bytes),
    "decode protobuf-es": () => fromBinary(schema, bytes),
  };
  if (oldEnc) impl["encode hand-written"] = () => oldEnc(init);
  if (oldDec) impl["decode hand-written"] = () => oldDec(bytes);
  rows.push({ name, size: bytes.length, impl, ns: Object.fromEntries(Object.keys(impl).map((k) => [k, []])) });
}

// Short runs, the codecs of a message one after another in a new order every round, so that a
// busy machine's slow spells fall on all of them alike.
for (let round = 0; round < ROUNDS; round++) {
  for (const row of rows) {
    const order = Object.entries(row.impl);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    for (const [k, fn] of order) row.ns[k].push(time(fn));
  }
}

const fmt = (x) => (x === undefined ? "-" : x.toFixed(0).padStart(6));
const ratio = (a, b) => (a === undefined || b === undefined ? "    -" : (a / b).toFixed(2).padStart(5));
console.log(
  `codec bench: ${ROUNDS} rounds of ${MS} ms per codec, median ns per call; hand-written from ${old ? old.rev : "(not found)"}`,
);
console.log(
  `${"message".padEnd(42)} ${"bytes".padStart(5)} | op     | generated  hand-written  protobuf-es | gen/hand  gen/pbes`,
);
for (const row of rows) {
  for (const op of ["encode", "decode"]) {
    const g = median(row.ns[`${op} generated`]);
    const h = row.ns[`${op} hand-written`] ? median(row.ns[`${op} hand-written`]) : undefined;
    const p = median(row.ns[`${op} protobuf-es`]);
    console.log(
      `${row.name.padEnd(42)} ${String(row.size).padStart(5)} | ${op} | ${fmt(g)}     ${fmt(h)}        ${fmt(p)}   |   ${ratio(g, h)}     ${ratio(g, p)}`,
    );
  }
}
