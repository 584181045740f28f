// kv stores through a service's endpoint: real gRPC calls, real lmdb files in a temp folder.

import { KvStore } from "@nitric-like/contracts/kvstore";
import { Action, Resources, ResourceType } from "@nitric-like/contracts/resources";
import { type Client, Code } from "@nitric-like/rpc";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { cleanup, declareStore, serviceClient, sleep, startProvider, TRANSPORTS, useTransport } from "./helpers.js";

afterEach(cleanup);

const ALL = [Action.KeyValueStoreRead, Action.KeyValueStoreWrite, Action.KeyValueStoreDelete];

async function keys(client: Client, store: string, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const k of client.serverStream(KvStore.method.scanKeys, { store: { name: store }, prefix }))
    out.push(k.key);
  return out;
}

describe.each(TRANSPORTS)("kv values over %s", (transport) => {
  beforeEach(() => useTransport(transport));
  it("sets, gets and deletes a value, after which get is NOT_FOUND naming store and key", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "chat");
    await declareStore(client, "connections", ALL);
    const ref = { store: "connections", key: "abc" };
    await client.unary(KvStore.method.setValue, { ref, content: { room: "lobby", n: 2, tags: ["a"], ok: true } });
    const got = await client.unary(KvStore.method.getValue, { ref });
    expect(got.value?.ref).toMatchObject(ref);
    expect(got.value?.content).toEqual({ room: "lobby", n: 2, tags: ["a"], ok: true });
    await client.unary(KvStore.method.setValue, { ref, content: { room: "other" } });
    expect((await client.unary(KvStore.method.getValue, { ref })).value?.content).toEqual({ room: "other" });
    await client.unary(KvStore.method.deleteKey, { ref });
    await expect(client.unary(KvStore.method.getValue, { ref })).rejects.toMatchObject({
      code: Code.NOT_FOUND,
      details: 'kv("connections"): key "abc" not found',
    });
    // Deleting what is not there is not an error: deletes are idempotent, as DynamoDB's DeleteItem.
    await client.unary(KvStore.method.deleteKey, { ref });
  });

  it("keeps stores apart: the same key in two stores holds two values", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareStore(client, "one", ALL);
    await declareStore(client, "two", ALL);
    await client.unary(KvStore.method.setValue, { ref: { store: "one", key: "k" }, content: { in: "one" } });
    await client.unary(KvStore.method.setValue, { ref: { store: "two", key: "k" }, content: { in: "two" } });
    expect((await client.unary(KvStore.method.getValue, { ref: { store: "one", key: "k" } })).value?.content).toEqual({
      in: "one",
    });
    expect(await keys(client, "two", "")).toEqual(["k"]);
  });

  it("accepts a key of exactly 1024 UTF-8 bytes and refuses one of 1025, counting bytes not characters", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareStore(client, "items", ALL);
    const longest = "é".repeat(512); // 2 bytes each
    await client.unary(KvStore.method.setValue, { ref: { store: "items", key: longest }, content: {} });
    await expect(
      client.unary(KvStore.method.getValue, { ref: { store: "items", key: `${longest}x` } }),
    ).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
      details: 'kv("items").get(): the key is 1025 bytes long and at most 1024 are allowed; use a shorter key',
    });
    await expect(client.unary(KvStore.method.deleteKey, { ref: { store: "items", key: "" } })).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
      details: 'kv("items").delete(""): the key is empty; use a non-empty string',
    });
  });

  it("refuses a set without a value, saying to pass a JSON object", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareStore(client, "items", ALL);
    await expect(client.unary(KvStore.method.setValue, { ref: { store: "items", key: "a" } })).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
      details: 'kv("items"): set("a") has no value; pass a JSON object',
    });
  });
});

describe.each(TRANSPORTS)("kv permissions over %s", (transport) => {
  beforeEach(() => useTransport(transport));
  it("denies each operation the service did not allow, naming the store and the permission", async () => {
    const { provider } = await startProvider();
    const chat = await serviceClient(provider, "chat");
    await declareStore(chat, "connections", [Action.KeyValueStoreWrite]);
    const ref = { store: "connections", key: "a" };
    await expect(chat.unary(KvStore.method.getValue, { ref })).rejects.toMatchObject({
      code: Code.PERMISSION_DENIED,
      details:
        'kv("connections"): service "chat" may not get keys; add .allow("get") to kv("connections") in that service',
    });
    await expect(chat.unary(KvStore.method.deleteKey, { ref })).rejects.toMatchObject({
      code: Code.PERMISSION_DENIED,
      details:
        'kv("connections"): service "chat" may not delete keys; add .allow("delete") to kv("connections") in that service',
    });
    // Listing keys reads the store, so it needs "get" too.
    await expect(keys(chat, "connections", "")).rejects.toMatchObject({ code: Code.PERMISSION_DENIED });
  });

  it("grants permissions named for another service to that service, not to the caller", async () => {
    const { provider } = await startProvider();
    const admin = await serviceClient(provider, "admin");
    const worker = await serviceClient(provider, "worker");
    await declareStore(admin, "jobs", []);
    await admin.unary(Resources.method.declare, {
      id: { type: ResourceType.Policy, name: "" },
      config: {
        case: "policy",
        value: {
          principals: [{ type: ResourceType.Service, name: "worker" }],
          actions: [Action.KeyValueStoreWrite],
          resources: [{ type: ResourceType.KeyValueStore, name: "jobs" }],
        },
      },
    });
    await worker.unary(KvStore.method.setValue, { ref: { store: "jobs", key: "j" }, content: {} });
    await expect(
      admin.unary(KvStore.method.setValue, { ref: { store: "jobs", key: "j" }, content: {} }),
    ).rejects.toMatchObject({ code: Code.PERMISSION_DENIED });
  });

  it("answers NOT_FOUND with the fix for a store nobody declared, for reads, writes, deletes and scans", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    const ref = { store: "ghost", key: "a" };
    const notFound = {
      code: Code.NOT_FOUND,
      details: 'kv("ghost"): no such store; declare it with kv("ghost").allow(...)',
    };
    await expect(client.unary(KvStore.method.getValue, { ref })).rejects.toMatchObject(notFound);
    await expect(client.unary(KvStore.method.setValue, { ref, content: {} })).rejects.toMatchObject(notFound);
    await expect(client.unary(KvStore.method.deleteKey, { ref })).rejects.toMatchObject(notFound);
    await expect(keys(client, "ghost", "")).rejects.toMatchObject(notFound);
  });

  it("refuses an invalid store name with the naming rule", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await expect(client.unary(KvStore.method.getValue, { ref: { store: "My Store", key: "a" } })).rejects.toMatchObject(
      {
        code: Code.INVALID_ARGUMENT,
        details: 'kv("My Store"): invalid resource name "My Store", use lower-kebab-case such as "my-store"',
      },
    );
  });
});

describe.each(TRANSPORTS)("kv scans over %s", (transport) => {
  beforeEach(() => useTransport(transport));
  it("lists keys in UTF-8 byte order, so upper case sorts before lower case and accents after both", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareStore(client, "items", ALL);
    for (const key of ["é", "z", "Z", "a", "A"]) {
      await client.unary(KvStore.method.setValue, { ref: { store: "items", key }, content: {} });
    }
    expect(await keys(client, "items", "")).toEqual(["A", "Z", "a", "z", "é"]);
  });

  it("leaves deleted keys out of a scan", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareStore(client, "items", ALL);
    for (const key of ["room:1", "room:2", "room:3"]) {
      await client.unary(KvStore.method.setValue, { ref: { store: "items", key }, content: {} });
    }
    await client.unary(KvStore.method.deleteKey, { ref: { store: "items", key: "room:2" } });
    expect(await keys(client, "items", "room:")).toEqual(["room:1", "room:3"]);
  });

  it("scans a big store a batch at a time: the provider's other work runs between batches, and a scan left early stops", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareStore(client, "big", ALL);
    const n = 100_000;
    const pad = "k".repeat(100);
    for (let i = 0; i < n; i += 10_000) {
      await Promise.all(Array.from({ length: 10_000 }, (_, j) => provider.inspect.kvSet("big", `${pad}${i + j}`, {})));
    }
    // The longest the event loop goes without a turn (the provider, and here the client too,
    // live in this process): a scan that walked the store in one go stalled every other call
    // and client of the provider for all of it, even one its client left after the first key.
    let longest = 0;
    let last = performance.now();
    const ticker = setInterval(() => {
      const now = performance.now();
      longest = Math.max(longest, now - last);
      last = now;
    }, 1);
    try {
      // What the seeding left to do (its garbage, lmdb's flushes) is done before the scan.
      await sleep(1000);
      // A whole scan: every key, in order, with turns between batches. Its stalls are judged
      // against its own length, which a loaded machine stretches as it stretches the stalls: a
      // scan in one go stalls the loop for about a quarter of it (the rest is the answer's delivery).
      longest = 0;
      last = performance.now();
      const started = performance.now();
      const all = await keys(client, "big", "");
      const whole = performance.now() - started;
      expect(all).toHaveLength(n);
      expect(all[1]).toBe(`${pad}1`);
      expect(longest).toBeLessThan(Math.max(150, whole / 8));
      // A scan its client leaves after the first key stops: the loop goes on turning as freely.
      longest = 0;
      last = performance.now();
      for await (const k of client.serverStream(KvStore.method.scanKeys, { store: { name: "big" }, prefix: "" })) {
        expect(k.key).toBe(`${pad}0`);
        break;
      }
      await sleep(500);
      expect(longest).toBeLessThan(Math.max(150, whole / 8));
    } finally {
      clearInterval(ticker);
    }
  }, 60_000);
});

describe.each(TRANSPORTS)("kv durability over %s", (transport) => {
  beforeEach(() => useTransport(transport));
  it("keeps deletes as well as writes across a restart on the same data folder", async () => {
    const first = await startProvider();
    const a = await serviceClient(first.provider, "svc");
    await declareStore(a, "items", ALL);
    await a.unary(KvStore.method.setValue, { ref: { store: "items", key: "kept" }, content: { v: 1 } });
    await a.unary(KvStore.method.setValue, { ref: { store: "items", key: "gone" }, content: { v: 2 } });
    await a.unary(KvStore.method.deleteKey, { ref: { store: "items", key: "gone" } });
    await first.provider.stop();
    const second = await startProvider({ dataDir: `${first.dir}/.nitric-like/kv` });
    const b = await serviceClient(second.provider, "svc");
    await declareStore(b, "items", ALL);
    expect(await keys(b, "items", "")).toEqual(["kept"]);
  });
});
