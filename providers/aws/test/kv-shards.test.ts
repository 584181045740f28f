// kv stores spread over hash shards, against dynalite: where items land (the table inspected), that
// keys(prefix) lists exactly the keys in byte order across shards and many pages, that items
// written before sharding (`_p: "k"`) stay readable, and a property test against a model.
import { DescribeTableCommand, type DynamoDBClient, PutItemCommand, ScanCommand } from "@aws-sdk/client-dynamodb";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DynamoDb, DynamoDbClient, type QueryInput } from "../src/aws/dynamodb.js";
import { compareKeys, LEGACY_PARTITION, partitionOf, SHARDS, shardOf } from "../src/kv/shards.js";
import { DynamoKvStores } from "../src/kv/store.js";
import { cleanup, createTable, ENV, FAST_RETRY, loopback, sdkDynamo, startDynalite } from "./helpers.js";

let client: DynamoDbClient;
let sdk: DynamoDBClient;
let tables = 0;

beforeAll(async () => {
  const endpoint = await startDynalite();
  client = new DynamoDbClient({ ...ENV, AWS_ENDPOINT_URL_DYNAMODB: endpoint }, FAST_RETRY);
  sdk = sdkDynamo(endpoint);
});

afterAll(async () => {
  sdk.destroy();
  await cleanup();
});

/** A fresh table as the template makes a store's (`_p` hash, `_k` range). */
async function newTable(): Promise<string> {
  const name = `kv-${++tables}`;
  await createTable(sdk, name, "_p", "_k");
  // dynalite answers CreateTable while the table is still CREATING: wait until it is ACTIVE.
  while ((await sdk.send(new DescribeTableCommand({ TableName: name }))).Table?.TableStatus !== "ACTIVE") {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return name;
}

/** Every item of a table as [partition, key], through the AWS SDK. */
async function inspect(table: string): Promise<[string, string][]> {
  const rows: [string, string][] = [];
  let start: Record<string, never> | undefined;
  do {
    const out = await sdk.send(new ScanCommand({ TableName: table, ...(start ? { ExclusiveStartKey: start } : {}) }));
    for (const item of out.Items ?? []) rows.push([item._p?.S as string, item._k?.S as string]);
    start = out.LastEvaluatedKey as typeof start;
  } while (start);
  return rows;
}

/** Our client, counting the calls the stores make (the calls themselves go to dynalite). */
function counting(inner: DynamoDb) {
  const calls = { get: 0, put: 0, delete: 0, query: 0, queries: [] as QueryInput[] };
  const counted: DynamoDb = {
    getItem(input) {
      calls.get++;
      return inner.getItem(input);
    },
    putItem(input) {
      calls.put++;
      return inner.putItem(input);
    },
    deleteItem(input) {
      calls.delete++;
      return inner.deleteItem(input);
    },
    query(input) {
      calls.query++;
      calls.queries.push(input);
      return inner.query(input);
    },
  };
  return { calls, counted };
}

async function all(keys: AsyncGenerator<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const k of keys) out.push(k);
  return out;
}

/** JS's own sort orders UTF-16 code units; DynamoDB orders UTF-8 bytes. */
const byBytes = (a: string, b: string) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));

describe("shards", () => {
  it("hashes a key to the same shard forever: SHA-256's first 4 bytes modulo 16", () => {
    expect(SHARDS).toBe(16);
    // Pinned (as Python computes it: int.from_bytes(sha256(key.encode()).digest()[:4], "big") % 16):
    // changing the hash would hide every item already stored.
    expect(["", "a", "user:1", "user:2", "😀", "__proto__"].map(shardOf)).toEqual([2, 2, 11, 12, 4, 8]);
    expect(partitionOf("a")).toBe("k#2");
  });

  it("spreads keys evenly: 16,000 similar keys, every shard within 10% of 1,000", () => {
    const counts = new Array<number>(SHARDS).fill(0);
    for (let i = 0; i < 16_000; i++) counts[shardOf(`user:${i}`)] = (counts[shardOf(`user:${i}`)] ?? 0) + 1;
    for (const c of counts) expect(Math.abs(c - 1000)).toBeLessThan(100);
  });

  it("orders keys as DynamoDB does, by UTF-8 bytes, where JS's < differs", () => {
    expect(compareKeys("\u{1F600}", "\uE000")).toBeGreaterThan(0);
    expect("\u{1F600}" < "\uE000").toBe(true);
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), fc.string({ unit: "grapheme" }), (a, b) => {
        expect(Math.sign(compareKeys(a, b))).toBe(Math.sign(byBytes(a, b)));
      }),
      { numRuns: 2000 },
    );
  });
});

describe("sharded kv stores against dynalite", () => {
  it("writes each key to its shard only, over all 16 partition key values, and reads it back", async () => {
    const table = await newTable();
    const stores = new DynamoKvStores(client, { s: table });
    const keys = Array.from({ length: 200 }, (_, i) => `user:${i}`);
    for (const k of keys) await stores.set("s", k, { k });
    const rows = await inspect(table);
    expect(rows).toHaveLength(200);
    for (const [p, k] of rows) expect(p).toBe(partitionOf(k));
    expect(new Set(rows.map(([p]) => p)).size).toBe(SHARDS);
    expect(rows.some(([p]) => p === LEGACY_PARTITION)).toBe(false);
    expect(await stores.get("s", "user:7")).toEqual({ k: "user:7" });
    await stores.delete("s", "user:7");
    expect(await stores.get("s", "user:7")).toBeUndefined();
    expect(await inspect(table)).toHaveLength(199);
  });

  it("lists exactly the keys with the prefix in byte order across shards, 2 keys a page, one Query per page", async () => {
    const table = await newTable();
    const { calls, counted } = counting(client);
    const stores = new DynamoKvStores(counted, { s: table }, { pageLimit: 2 });
    const keys = [
      ...Array.from({ length: 150 }, (_, i) => `p:${i}`),
      ...["p:\uE000", "p:\u{1F600}", "p:é", "p:", "p", "q:1", "o:9", "p:\uFFFF", "p:\u{10FFFF}"],
    ];
    for (const k of keys) await stores.set("s", k, { v: 1 });
    calls.query = 0;
    const listed = await all(stores.keys("s", "p:"));
    const expected = keys.filter((k) => k.startsWith("p:")).sort(byBytes);
    expect(listed).toEqual(expected);
    // Every shard paged through (2 keys a page), plus the legacy check, and never a Scan.
    expect(calls.query).toBeGreaterThanOrEqual(Math.ceil(expected.length / 2));
    expect(calls.queries.every((q) => q.KeyConditionExpression.startsWith("#p = :p"))).toBe(true);
    expect(await all(stores.keys("s", ""))).toEqual([...keys].sort(byBytes));
    expect(await all(stores.keys("s", "nothing"))).toEqual([]);
  });

  it("asks for at most two pages per shard ahead of what was read, and stopping early leaves nothing failing", async () => {
    const table = await newTable();
    const stores = new DynamoKvStores(client, { s: table });
    for (let i = 0; i < 300; i++) await stores.set("s", `k:${String(i).padStart(3, "0")}`, { i });
    const { calls, counted } = counting(client);
    const paged = new DynamoKvStores(counted, { s: table }, { pageLimit: 2 });
    const first: string[] = [];
    for await (const k of paged.keys("s", "k:")) {
      first.push(k);
      if (first.length === 5) break;
    }
    expect(first).toEqual(["k:000", "k:001", "k:002", "k:003", "k:004"]);
    // 17 first pages (16 shards and the legacy partition), at most one more each, and the check.
    expect(calls.query).toBeLessThanOrEqual(2 * (SHARDS + 1) + 1);
  });

  it("reads items written before sharding (under _p k): get, keys, set over them, delete, then migrates them", async () => {
    const table = await newTable();
    // A store as yesterday's deployment left it.
    const old: [string, string][] = [
      ["old:1", "one"],
      ["old:2", "two"],
      ["both", "old"],
    ];
    for (const [k, v] of old) {
      await sdk.send(
        new PutItemCommand({ TableName: table, Item: { _p: { S: "k" }, _k: { S: k }, _v: { M: { v: { S: v } } } } }),
      );
    }
    const stores = new DynamoKvStores(client, { s: table }, { pageLimit: 1 });
    expect(await stores.get("s", "old:1")).toEqual({ v: "one" });
    await stores.set("s", "new:1", { v: "new" });
    await stores.set("s", "both", { v: "new" });
    expect(await stores.get("s", "both")).toEqual({ v: "new" });
    expect(await all(stores.keys("s", ""))).toEqual(["both", "new:1", "old:1", "old:2"]);
    expect(await all(stores.keys("s", "old:"))).toEqual(["old:1", "old:2"]);
    // A delete removes the legacy item too, so the old value never comes back.
    await stores.delete("s", "old:2");
    expect(await stores.get("s", "old:2")).toBeUndefined();
    expect((await inspect(table)).some(([, k]) => k === "old:2")).toBe(false);

    expect(await stores.migrateLegacy("s")).toBe(2);
    const rows = await inspect(table);
    expect(rows.some(([p]) => p === LEGACY_PARTITION)).toBe(false);
    for (const [p, k] of rows) expect(p).toBe(partitionOf(k));
    expect(await stores.get("s", "both")).toEqual({ v: "new" }); // the newer value kept
    expect(await stores.get("s", "old:1")).toEqual({ v: "one" });
    expect(await all(stores.keys("s", ""))).toEqual(["both", "new:1", "old:1"]);
  });

  it("once the legacy partition is seen empty, a get is one GetItem and a delete one DeleteItem", async () => {
    const table = await newTable();
    const { calls, counted } = counting(client);
    const stores = new DynamoKvStores(counted, { s: table });
    await stores.set("s", "a", { v: 1 });
    expect(await stores.get("s", "a")).toEqual({ v: 1 });
    expect(await stores.get("s", "missing")).toBeUndefined();
    await stores.delete("s", "a");
    expect(calls).toMatchObject({ get: 2, put: 1, delete: 1, query: 1 });
  });

  // A delete awaited the (cached) legacy check before its DeleteItem, so a delete and a set of one
  // key started together went out set first: the key was gone on AWS and kept locally.
  it("sends a delete and a set of one key started together in the order they were made, as locally", async () => {
    const table = await newTable();
    const order: string[] = [];
    const ordered: DynamoDb = {
      getItem: (input) => client.getItem(input),
      query: (input) => client.query(input),
      putItem(input) {
        order.push("put");
        return client.putItem(input);
      },
      deleteItem(input) {
        order.push("delete");
        return client.deleteItem(input);
      },
    };
    const stores = new DynamoKvStores(ordered, { s: table });
    await stores.set("s", "k", { v: 1 });
    await stores.delete("s", "k"); // the legacy partition is seen empty
    order.length = 0;
    await Promise.all([stores.delete("s", "k"), stores.set("s", "k", { v: 2 })]);
    expect(order).toEqual(["delete", "put"]);
    expect(await stores.get("s", "k")).toEqual({ v: 2 });
  });

  it("re-checks a legacy partition that held items after a minute, and stops reading it once empty", async () => {
    const table = await newTable();
    await sdk.send(new PutItemCommand({ TableName: table, Item: { _p: { S: "k" }, _k: { S: "x" }, _v: { M: {} } } }));
    let now = 0;
    const { calls, counted } = counting(client);
    const stores = new DynamoKvStores(counted, { s: table }, { now: () => now });
    expect(await stores.get("s", "missing")).toBeUndefined();
    expect(calls).toMatchObject({ get: 2, query: 1 });
    await stores.delete("s", "x"); // the legacy item and the shard's
    now += 60_001;
    expect(await stores.get("s", "missing")).toBeUndefined();
    expect(calls).toMatchObject({ get: 3, query: 2 });
  });

  it("deletes the legacy item too when AWS refuses the legacy check (a service allowed only delete), legacy first", async () => {
    const server = await loopback((request) =>
      request.headers["x-amz-target"] === "DynamoDB_20120810.Query"
        ? {
            status: 400,
            body: JSON.stringify({
              __type: "com.amazon.coral.service#AccessDeniedException",
              Message: "not authorized to perform: dynamodb:Query",
            }),
          }
        : { status: 200, body: "{}" },
    );
    const stores = new DynamoKvStores(
      new DynamoDbClient({ ...ENV, AWS_ENDPOINT_URL_DYNAMODB: server.url }, FAST_RETRY),
      {
        s: "t",
      },
    );
    await stores.delete("s", "user:1");
    const sent = server.requests.map((r) => [
      String(r.headers["x-amz-target"]).split(".")[1],
      JSON.parse(r.body.toString()).Key?._p?.S,
    ]);
    // An AccessDenied is not retried: one Query, then both deletes.
    expect(sent).toEqual([
      ["Query", undefined],
      ["DeleteItem", "k"],
      ["DeleteItem", partitionOf("user:1")],
    ]);
  });

  it("keys(prefix) is the sorted filter of what was set and not deleted (property, against a model)", async () => {
    const table = await newTable();
    const stores = new DynamoKvStores(client, { s: table }, { pageLimit: 3 });
    let run = 0;
    const unit = fc.constantFrom("a", "b", "ab", "é", "\uE000", "\u{1F600}", "/", "0");
    const key = fc.string({ unit, maxLength: 4 });
    const op = fc.oneof(fc.record({ set: key }), fc.record({ set: key }), fc.record({ del: key }));
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 30 }), key, async (ops, prefix) => {
        const base = `r${++run}/`;
        const model = new Set<string>();
        for (const o of ops) {
          if ("set" in o) {
            await stores.set("s", base + o.set, { v: o.set });
            model.add(base + o.set);
          } else {
            await stores.delete("s", base + o.del);
            model.delete(base + o.del);
          }
        }
        const expected = [...model].filter((k) => k.startsWith(base + prefix)).sort(byBytes);
        expect(await all(stores.keys("s", base + prefix))).toEqual(expected);
      }),
      { numRuns: 40 },
    );
  });
});
