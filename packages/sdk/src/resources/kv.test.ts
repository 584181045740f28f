// kv() against a real gRPC server playing the provider (test/fake-provider.ts).
import { ResourceType } from "@nitric-like/contracts/resources";
import { Code, RpcError } from "@nitric-like/rpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FakeProvider, startFakeProvider } from "../../test/fake-provider.js";
import { isNitricLikeError } from "../errors.js";
import { collection } from "./collection.js";
import { kv } from "./kv.js";

let provider: FakeProvider;

beforeAll(async () => {
  provider = await startFakeProvider();
  process.env.SERVICE_ADDRESS = provider.address;
});
afterAll(async () => {
  await provider.stop();
});

describe("kv() declarations", () => {
  it("throws at once on an invalid name, with the fix, and returns the same handle for a name", () => {
    expect(() => kv("Users_Table")).toThrow(
      expect.objectContaining({
        code: "invalid_argument",
        message: expect.stringMatching(
          /^kv\("Users_Table"\): invalid resource name "Users_Table", use lower-kebab-case/,
        ),
      }),
    );
    expect(kv("same")).toBe(kv("same"));
  });

  it("throws at once on a collection's invalid name, as kv() does, before .for()", () => {
    expect(() => collection("Bad Name")).toThrow(
      expect.objectContaining({
        code: "invalid_argument",
        message: expect.stringMatching(
          /^collection\("Bad Name"\): invalid resource name "Bad Name", use lower-kebab-case/,
        ),
      }),
    );
    expect(() => collection(42 as unknown as string)).toThrow(
      'collection(42): a resource name must be a string, got number; use lower-kebab-case such as "my-collection"',
    );
  });

  it("declares the store, then one policy per allow() with its actions for the calling service", async () => {
    const store = kv("perm");
    await store.allow("get").keys()[Symbol.asyncIterator]().next();
    await store.allow("set", "delete").delete("nothing");
    const mine = provider.declarations.filter(
      (d) => d.id?.name === "perm" || (d.config.case === "policy" && d.config.value.resources[0]?.name === "perm"),
    );
    expect(mine.map((d) => [d.id?.type, d.config.case])).toEqual([
      [ResourceType.KeyValueStore, "keyValueStore"],
      [ResourceType.Policy, "policy"],
      [ResourceType.Policy, "policy"],
    ]);
    expect(mine.slice(1).map((d) => d.config.value)).toMatchObject([
      {
        principals: [{ type: ResourceType.Service, name: "" }],
        actions: [300],
        resources: [{ type: ResourceType.KeyValueStore, name: "perm" }],
      },
      { actions: [301, 302] },
    ]);
  });

  it("waits for its policy to be acknowledged before the first operation", async () => {
    provider.declareDelayMs = 40;
    try {
      await expect(kv("slow-policy").allow("get").get("k")).rejects.toMatchObject({ code: "not_found" });
    } finally {
      provider.declareDelayMs = 0;
    }
    const mine = provider.log.filter((l) => l.includes("slow-policy") || l === "declare Policy ");
    expect(mine.slice(-3)).toEqual(["declare KeyValueStore slow-policy", "declare Policy ", "getValue slow-policy k"]);
  });
});

describe("kv operations", () => {
  it("sets, gets, lists by prefix and deletes JSON objects", async () => {
    const users = kv<{ name: string; tags: string[] }>("users").allow("get", "set", "delete");
    await users.set("u:1", { name: "Ada", tags: ["a"] });
    await users.set("u:2", { name: "Bob", tags: [] });
    await users.set("x:1", { name: "X", tags: [] });
    expect(await users.get("u:1")).toEqual({ name: "Ada", tags: ["a"] });
    const keys: string[] = [];
    for await (const key of users.keys("u:")) keys.push(key);
    expect(keys).toEqual(["u:1", "u:2"]);
    await users.delete("u:1");
    const all: string[] = [];
    for await (const key of users.keys()) all.push(key);
    expect(all).toEqual(["u:2", "x:1"]);
  });

  it("rejects a missing key with not_found naming store and key", async () => {
    const error = await kv("lookup")
      .allow("get")
      .get("nope")
      .catch((e: unknown) => e);
    expect(isNitricLikeError(error)).toBe(true);
    expect(error).toMatchObject({
      code: "not_found",
      message: 'kv("lookup"): key "nope" not found',
      details: { store: "lookup", key: "nope" },
    });
    expect((error as Error).cause).toBeDefined();
  });

  it("refuses values that are not JSON objects before calling the provider, saying to wrap them", async () => {
    const store = kv("strict-values").allow("set");
    for (const value of ["text", [1, 2], null, 42]) {
      await expect(store.set("k", value as never)).rejects.toMatchObject({
        code: "invalid_argument",
        message: expect.stringMatching(/^kv\("strict-values"\): set\("k"\) needs a JSON object, got .*; wrap it/),
      });
    }
    expect(provider.log.filter((l) => l.startsWith("setValue strict-values"))).toEqual([]);
  });

  it("refuses what kv cannot keep exactly before any network, naming store, key, place and fix", async () => {
    const store = kv("exact-values").allow("get", "set", "delete");
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    const cases: [string, unknown, string][] = [
      [
        "k",
        { a: 10n },
        'kv("exact-values").set("k"): value.a is a BigInt, which kv cannot store: use a string or a number',
      ],
      ["k", { at: new Date(0) }, 'kv("exact-values").set("k"): value.at is a Date, which kv cannot store'],
      ["k", { m: new Map() }, 'kv("exact-values").set("k"): value.m is a Map, which kv cannot store'],
      ["k", { s: new Set() }, 'kv("exact-values").set("k"): value.s is a Set, which kv cannot store'],
      ["k", { f() {} }, 'kv("exact-values").set("k"): value.f is a function, which kv cannot store'],
      ["k", cycle, 'kv("exact-values").set("k"): value.self refers back to value (a cycle)'],
      ["k", { n: Number.NaN }, 'kv("exact-values").set("k"): value.n is NaN, which kv cannot store'],
      ["k", { n: 1e300 }, "outside the range of numbers DynamoDB stores"],
      ["k", { t: "x".repeat(450 * 1024) }, "DynamoDB allows at most 409600 (400 KB)"],
      ["k\ud800", {}, 'kv("exact-values").set("k\\ud800"): the key has a lone surrogate'],
    ];
    for (const [key, value, message] of cases) {
      await expect(store.set(key, value as never)).rejects.toMatchObject({
        code: "invalid_argument",
        message: expect.stringContaining(message),
        details: { store: "exact-values", key },
      });
    }
    await expect(store.get("\udc00")).rejects.toMatchObject({
      message: /^kv\("exact-values"\)\.get\("\\udc00"\): the key has a lone surrogate/,
    });
    await expect(store.delete("\udc00")).rejects.toMatchObject({ code: "invalid_argument" });
    await expect(store.keys("\udc00")[Symbol.asyncIterator]().next()).rejects.toMatchObject({
      code: "invalid_argument",
    });
    expect(provider.log.filter((l) => / exact-values /.test(l))).toEqual([]);
  });

  it("maps provider errors to their codes with the provider's message", async () => {
    const store = kv("denied").allow("get", "set");
    provider.kvError = new RpcError(Code.PERMISSION_DENIED, `kv("denied"): missing .allow("set")`);
    try {
      await expect(store.set("k", {})).rejects.toMatchObject({
        code: "permission_denied",
        message: 'kv("denied"): missing .allow("set")',
        details: { store: "denied", key: "k" },
      });
    } finally {
      provider.kvError = undefined;
    }
  });
});
