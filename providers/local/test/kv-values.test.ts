// kv values kept exactly or refused alike on both providers: the same contract calls go to the
// local provider (lmdb files in a temp folder) and to an endpoint over the AWS provider's kv
// backend (DynamoDB, here dynalite), and every value either reads back exactly on both or is
// refused by both with the same INVALID_ARGUMENT message, the one the SDK gives at set().
import { rmSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KvStore } from "@nitric-like/contracts/kvstore";
import { Action } from "@nitric-like/contracts/resources";
import { type RunningDynalite, signRequest, startDynalite } from "@nitric-like/provider-aws/emulator";
import { DynamoDbClient, DynamoKvStores } from "@nitric-like/provider-aws/runtime";
import { HandlerRegistry, Permissions } from "@nitric-like/provider-kit";
import { Client, Code } from "@nitric-like/rpc";
import { createGrpcTransport } from "@nitric-like/rpc/grpc";
import { checkKvValue, KV_MAX_ITEM_BYTES, kvKeyProblem, type Logger } from "@nitric-like/spec";
import fc from "fast-check";
import { open } from "lmdb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEndpoint, serveGrpc, stopEndpoint } from "../src/endpoint.js";
import { KvStores } from "../src/kv/store.js";
import { cleanup, declareStore, serviceClient, startProvider } from "./helpers.js";

const ALL = [Action.KeyValueStoreRead, Action.KeyValueStoreWrite, Action.KeyValueStoreDelete];
const STORE = "values";
const TABLE = "values-table";

/** Every name Object.prototype has (`__proto__`, `constructor`, `toString`, ...). */
const PROTO_NAMES = Object.getOwnPropertyNames(Object.prototype);

interface Side {
  name: "local" | "aws";
  client: Client;
}
const sides: Side[] = [];
const stops: (() => Promise<void> | void)[] = [];

const quiet: Logger = { info() {}, warn() {}, error() {} };

/** Creates the store's table as the template does (the partition `_p`, the key `_k`), through DynamoDB's JSON API. */
async function createTable(db: RunningDynalite): Promise<void> {
  const body = JSON.stringify({
    TableName: TABLE,
    KeySchema: [
      { AttributeName: "_p", KeyType: "HASH" },
      { AttributeName: "_k", KeyType: "RANGE" },
    ],
    AttributeDefinitions: [
      { AttributeName: "_p", AttributeType: "S" },
      { AttributeName: "_k", AttributeType: "S" },
    ],
    BillingMode: "PAY_PER_REQUEST",
  });
  const headers = signRequest({
    method: "POST",
    url: new URL(db.endpoint),
    body,
    headers: { "content-type": "application/x-amz-json-1.0", "x-amz-target": "DynamoDB_20120810.CreateTable" },
    service: "dynamodb",
    region: "us-east-1",
    ...db.credentials,
  });
  const response = await fetch(db.endpoint, { method: "POST", headers, body });
  if (!response.ok) throw new Error(`CreateTable: ${response.status} ${await response.text()}`);
}

beforeAll(async () => {
  // Stopped, and its folder removed, by the helpers' cleanup() in afterAll.
  const { provider } = await startProvider();
  const local = await serviceClient(provider, "svc");
  await declareStore(local, STORE, ALL);
  sides.push({ name: "local", client: local });

  const dir = await mkdtemp(join(tmpdir(), "nitric-like-dynalite-"));
  const db = await startDynalite(dir);
  stops.push(async () => {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await createTable(db);
  const env = {
    AWS_REGION: "us-east-1",
    AWS_ACCESS_KEY_ID: db.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: db.credentials.secretAccessKey,
    AWS_ENDPOINT_URL_DYNAMODB: db.endpoint,
  };
  const stores = new DynamoKvStores(
    new DynamoDbClient(env, { attempts: 2, baseDelayMs: 1, throttlingBaseDelayMs: 1 }),
    { [STORE]: TABLE },
  );
  const declared = new Set<string>();
  const endpoint = createEndpoint("svc", {
    stores,
    permissions: new Permissions(),
    handlers: new HandlerRegistry(quiet, 5000, 0),
    logger: quiet,
    unserved: new Set(),
    declared: (store) => declared.has(store),
    declareStore: (store) => {
      declared.add(store);
    },
    declareSocket: async () => {},
    gateway: () => undefined,
    // No secrets here: only kv values are under test.
    secretDeclared: () => false,
    declareSecret: () => {},
    secrets: {
      put: () => Promise.reject(new Error("no secrets in this test")),
      access: () => Promise.reject(new Error("no secrets in this test")),
    },
  });
  stops.push(() => stopEndpoint(endpoint));
  const { address } = await serveGrpc(endpoint, quiet, () => ({ tcp: true }));
  const aws = new Client(createGrpcTransport(address));
  stops.push(() => aws.close());
  await declareStore(aws, STORE, ALL);
  sides.push({ name: "aws", client: aws });
}, 30_000);

afterAll(async () => {
  for (const stop of stops.reverse()) await stop();
  await cleanup();
});

type Outcome = { ok: true; value: unknown } | { ok: false; code: number; details: string };

/** Sets `value` at `key` through one side, then reads it back. */
async function roundTrip(side: Side, key: string, value: unknown): Promise<Outcome> {
  const ref = { store: STORE, key };
  try {
    await side.client.unary(KvStore.method.setValue, { ref, content: value as never });
    const got = await side.client.unary(KvStore.method.getValue, { ref });
    return { ok: true, value: got.value?.content };
  } catch (error) {
    const e = error as { code: number; details: string };
    return { ok: false, code: e.code, details: e.details };
  }
}

/** The value as kv keeps it: -0 as 0 (JSON's normalisation, and DynamoDB's). */
function kept(v: unknown): unknown {
  if (typeof v === "number") return Object.is(v, -0) ? 0 : v;
  if (Array.isArray(v)) return v.map(kept);
  if (typeof v !== "object" || v === null) return v;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v)) {
    Object.defineProperty(out, k, { value: kept((v as Record<string, unknown>)[k]), enumerable: true });
  }
  return out;
}

/** Exact equality: numbers by Object.is, objects by their own keys (in any order; DynamoDB has none), `__proto__` included. */
function exact(a: unknown, b: unknown): boolean {
  if (typeof a === "number" && typeof b === "number") return Object.is(a, b);
  if (typeof a !== "object" || a === null || typeof b !== "object" || b === null) return a === b;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  if (ka.length !== kb.length || ka.some((k, i) => k !== kb[i])) return false;
  return ka.every((k) => exact((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/** Sends one value to both providers and holds them to the shared rules: kept exactly, or refused alike. */
async function expectSameOnBoth(key: string, value: unknown): Promise<void> {
  const problem = kvKeyProblem(STORE, "set", key) ?? checkKvValue(STORE, key, value).problem;
  for (const side of sides) {
    const outcome = await roundTrip(side, key, value);
    if (problem === undefined) {
      if (!outcome.ok) throw new Error(`${side.name} refused an accepted value: ${outcome.details}`);
      if (!exact(outcome.value, kept(value))) {
        throw new Error(`${side.name} changed the value: ${JSON.stringify(outcome.value)} != ${JSON.stringify(value)}`);
      }
    } else {
      expect(outcome, side.name).toEqual({ ok: false, code: Code.INVALID_ARGUMENT, details: problem });
    }
  }
}

// Names drawn from Object.prototype's, JS-special and random text (astral characters included).
const name = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom(...PROTO_NAMES, "__proto__", "prototype", "", "0", "-1", "a.b", "$") },
  { weight: 3, arbitrary: fc.string({ unit: "grapheme", maxLength: 8 }) },
);
// Doubles of every kind, in range and out: -0, NaN, ±Infinity, subnormals, 1e300, DynamoDB's edges.
const number = fc.oneof(
  fc.double(),
  fc.integer(),
  fc.constantFrom(-0, 1e-130, -1e-130, 9.999999999999999e-131, 9.99999999999999e125, 1e126, 5e-324, 2 ** 53 + 2),
);
/** JSON values built from `numbers`. */
const values = (numbers: fc.Arbitrary<number>, text = fc.string({ unit: "grapheme", maxLength: 12 }), names = name) =>
  fc.letrec((tie) => ({
    value: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      fc.constant(null),
      fc.boolean(),
      numbers,
      text,
      fc.array(tie("value"), { maxLength: 4 }),
      fc.dictionary(names, tie("value"), { maxKeys: 4 }),
    ),
  })).value;
const jsonValue = values(number);
/**
 * Values kv keeps, in ASCII (where dynalite, which counts UTF-16 units, counts what DynamoDB
 * counts): numbers only within DynamoDB's range.
 */
const ascii = fc.string({ unit: "grapheme-ascii", maxLength: 12 });
const keptValue = values(
  fc
    .oneof(number, fc.double({ min: -1e6, max: 1e6 }))
    .filter((n) => checkKvValue(STORE, "k", { n }).problem === undefined),
  ascii,
  ascii,
);
const object = fc.dictionary(name, jsonValue, { maxKeys: 6 });
const key = fc.oneof(
  fc.constantFrom(...PROTO_NAMES),
  fc.string({ unit: "grapheme", minLength: 1, maxLength: 20 }),
  fc
    .string({ unit: "binary", minLength: 1, maxLength: 20 })
    .filter((k) => (k as unknown as { isWellFormed(): boolean }).isWellFormed()),
);

describe("kv values on the local provider and on DynamoDB (dynalite)", () => {
  it("keeps every accepted value exactly on both, and refuses every other alike with the same message", async () => {
    await fc.assert(
      fc.asyncProperty(key, object, async (k, v) => {
        await expectSameOnBoth(k, v);
      }),
      { numRuns: 150 },
    );
  }, 120_000);

  it("keeps every Object.prototype name as a key and as a property name, each its own", async () => {
    const value: Record<string, unknown> = {};
    for (const n of PROTO_NAMES) Object.defineProperty(value, n, { value: { n }, enumerable: true });
    for (const k of PROTO_NAMES) await expectSameOnBoth(k, value);
    // Each key holds its own value: none shares a slot with another or with the prototype.
    for (const side of sides) {
      for (const k of PROTO_NAMES) {
        await side.client.unary(KvStore.method.setValue, { ref: { store: STORE, key: k }, content: { k } });
      }
      for (const k of PROTO_NAMES) {
        const got = await side.client.unary(KvStore.method.getValue, { ref: { store: STORE, key: k } });
        expect(got.value?.content, `${side.name} ${k}`).toEqual({ k });
      }
    }
  });

  it("keeps a __proto__ property as an own property, nested too, without touching the prototype", async () => {
    const value = JSON.parse('{"__proto__": {"admin": true}, "list": [{"__proto__": 1}], "a": {"__proto__": null}}');
    for (const side of sides) {
      const outcome = await roundTrip(side, "proto", value);
      expect(outcome.ok, side.name).toBe(true);
      const got = (outcome as { value: Record<string, unknown> }).value;
      expect(Object.keys(got).sort(), side.name).toEqual(["__proto__", "a", "list"]);
      expect(Object.getPrototypeOf(got), side.name).toBe(Object.prototype);
      expect(exact(got, value), side.name).toBe(true);
      expect((got as { admin?: unknown }).admin, side.name).toBeUndefined();
    }
  });

  it("accepts an item of exactly 400 KB as DynamoDB counts it and refuses one byte more, with the limit named", async () => {
    // Maps, lists, numbers and text: every part of the size formula at once.
    const base = { list: [1, -2.5, 1e-130, 123456789012, "é", null, true], map: { a: { b: [] } } };
    const used = checkKvValue(STORE, "big", { ...base, text: "" }).itemBytes;
    const fits = { ...base, text: "x".repeat(KV_MAX_ITEM_BYTES - used) };
    expect(checkKvValue(STORE, "big", fits)).toEqual({ hasUndefined: false, itemBytes: KV_MAX_ITEM_BYTES });
    await expectSameOnBoth("big", fits);
    const over = { ...base, text: `${fits.text}x` };
    const problem = checkKvValue(STORE, "big", over).problem;
    expect(problem).toBe(
      'kv("values").set("big"): the value is over 409600 bytes as a DynamoDB item (key, property names and values counted as DynamoDB counts them), and DynamoDB allows at most 409600 (400 KB): keep large data elsewhere, or split it across keys',
    );
    await expectSameOnBoth("big", over);
    // The 450 KB value of issue 15, accepted locally before and refused by AWS.
    await expectSameOnBoth("big", { text: "y".repeat(450 * 1024) });
  }, 30_000);

  it("never counts a value smaller than DynamoDB (dynalite) does: numbers, maps and lists filled to exactly 400 KB are kept", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(ascii, keptValue), { minLength: 1, maxLength: 200 }), async (parts) => {
        const value: Record<string, unknown> = {};
        parts.forEach(([n, v], i) => {
          Object.defineProperty(value, `${i}${n}`, { value: v, enumerable: true });
        });
        value.pad = "";
        const check = checkKvValue(STORE, "fill", value);
        if (check.problem !== undefined) return;
        value.pad = "p".repeat(KV_MAX_ITEM_BYTES - check.itemBytes);
        expect(checkKvValue(STORE, "fill", value).itemBytes).toBe(KV_MAX_ITEM_BYTES);
        await expectSameOnBoth("fill", value);
      }),
      { numRuns: 25 },
    );
  }, 60_000);

  it("refuses numbers DynamoDB cannot store, naming the range, and keeps its extremes exactly", async () => {
    for (const n of [1e300, -1e300, 1e126, 5e-324, 1e-131, Number.MAX_VALUE, Number.MIN_VALUE]) {
      await expectSameOnBoth("n", { n });
      expect(checkKvValue(STORE, "n", { n }).problem).toContain("outside the range of numbers DynamoDB stores");
    }
    for (const n of [9.99999999999999e125, -9.99999999999999e125, 1e-130, -1e-130, 0.1 + 0.2, 2 ** 53 + 2, -0]) {
      await expectSameOnBoth("n", { n });
      expect(checkKvValue(STORE, "n", { n }).problem).toBeUndefined();
    }
    for (const n of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      await expectSameOnBoth("n", { a: [{ n }] });
      expect(checkKvValue(STORE, "n", { a: [{ n }] }).problem).toBe(
        `kv("values").set("n"): value.a[0].n is ${n}, which kv cannot store: use null or a finite number`,
      );
    }
  });

  it("accepts 31 objects and arrays inside one another and refuses 32, naming DynamoDB's nesting limit", async () => {
    const nest = (levels: number): Record<string, unknown> => {
      let v: Record<string, unknown> = { leaf: 1 };
      for (let i = 1; i < levels; i++) v = i % 2 ? { a: [v] } : { b: v };
      return v;
    };
    // nest(n) has about 1.5 objects or arrays per level: find the deepest accepted.
    let deepest: Record<string, unknown> | undefined;
    for (let n = 1; n < 40; n++) {
      if (checkKvValue(STORE, "deep", nest(n)).problem === undefined) deepest = nest(n);
    }
    await expectSameOnBoth("deep", deepest);
    const deeper = { x: deepest };
    expect(checkKvValue(STORE, "deep", deeper).problem).toMatch(
      /^kv\("values"\)\.set\("deep"\): value\.x\.[a-z.[\]0-9]+ is nested 32 objects or arrays deep, which kv cannot store: DynamoDB allows 31 \(its limit of 32 nesting levels/,
    );
    await expectSameOnBoth("deep", deeper);
  });

  it("refuses keys DynamoDB cannot hold alike, and keeps the longest it can", async () => {
    await expectSameOnBoth("é".repeat(512), { a: 1 });
    await expectSameOnBoth(`${"é".repeat(512)}x`, { a: 1 });
    await expectSameOnBoth("", { a: 1 });
    await expectSameOnBoth("a\u0000b", { nul: true });
    await expectSameOnBoth("a", { nul: false });
    for (const side of sides) {
      const got = await side.client.unary(KvStore.method.getValue, { ref: { store: STORE, key: "a\u0000b" } });
      expect(got.value?.content, side.name).toEqual({ nul: true });
    }
  });
});

describe("the local store on disk", () => {
  it("still reads values an earlier version wrote with lmdb's msgpack encoding, and writes JSON over them", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nitric-like-kv-"));
    try {
      const old = open({ path: dir, maxDbs: 10 });
      await old.openDB({ name: "legacy", encoding: "msgpack" }).put("k", { room: "lobby", n: [1, 2.5] });
      await old.close();
      const stores = new KvStores(dir);
      expect(stores.get("legacy", "k")).toEqual({ room: "lobby", n: [1, 2.5] });
      const proto = JSON.parse('{"__proto__": {"x": 1}}') as Record<string, unknown>;
      await stores.set("legacy", "k", proto as never);
      expect(Object.keys(stores.get("legacy", "k") ?? {})).toEqual(["__proto__"]);
      expect([...stores.keys("legacy", "")]).toEqual(["k"]);
      await stores.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
