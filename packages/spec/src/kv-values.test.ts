import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  checkKvValue,
  fromAttributeName,
  KV_MAX_ITEM_BYTES,
  kvKeyProblem,
  kvPrefixProblem,
  kvValueProblem,
  toAttributeName,
  withoutUndefined,
} from "./kv-values.js";

const problem = (value: unknown) => checkKvValue("connections", "k", value).problem;
const at = (what: string) => `kv("connections").set("k"): ${what}`;

class Point {
  x = 1;
}

describe("kv values: one rule each, with the store, the key, the place and the fix", () => {
  it.each([
    [{ a: 10n }, "value.a is a BigInt, which kv cannot store: use a string or a number"],
    [
      { a: new Date(0) },
      "value.a is a Date, which kv cannot store: use a string, such as date.toISOString(), or a number, such as date.getTime()",
    ],
    [{ a: new Map() }, "value.a is a Map, which kv cannot store: use a plain object, such as Object.fromEntries(map)"],
    [{ a: { b: new Set([1]) } }, "value.a.b is a Set, which kv cannot store: use an array, such as [...set]"],
    [{ a: () => 1 }, "value.a is a function, which kv cannot store: leave it out"],
    [{ a: Symbol("s") }, "value.a is a symbol, which kv cannot store: use a string"],
    [{ a: [1, undefined] }, "value.a[1] is undefined, which kv cannot store: use null"],
    [
      // biome-ignore lint/suspicious/noSparseArray: the hole is the case
      { a: [1, , 2] },
      "value.a[1] is an empty slot of a sparse array, which kv cannot store: fill it, such as with null",
    ],
    [{ p: new Point() }, "value.p is a Point, which kv cannot store: copy the fields to keep into a plain object"],
    [
      { bytes: new Uint8Array(2) },
      'value.bytes is a Uint8Array, which kv cannot store: use a base64 string, such as Buffer.from(bytes).toString("base64"), or a plain array',
    ],
    [{ s: new String("x") }, "value.s is a String, which kv cannot store: use the primitive, such as x.valueOf()"],
    [{ e: new Error("x") }, "value.e is an Error, which kv cannot store: use its message as a string"],
    [{ n: Number.NaN }, "value.n is NaN, which kv cannot store: use null or a finite number"],
    [{ n: [Number.POSITIVE_INFINITY] }, "value.n[0] is Infinity, which kv cannot store: use null or a finite number"],
    [
      { n: 1e300 },
      "value.n is 1e+300, outside the range of numbers DynamoDB stores (magnitude 1e-130 to 9.9999999999999999999999999999999999999e+125), which kv cannot store: store it as a string",
    ],
    [
      { "two words": "a\ud800b" },
      'value["two words"] is a string with a lone surrogate (U+D800 at index 1), which kv cannot store: UTF-8 has no encoding for it; use well-formed text, such as text.toWellFormed()',
    ],
    [
      { a: { "\udc00": 1 } },
      "value.a has a property name with a lone surrogate (U+DC00 at index 0), which kv cannot store: UTF-8 has no encoding for it; use well-formed text, such as name.toWellFormed()",
    ],
    [
      { [Symbol("tag")]: 1 },
      "value has a property named by a symbol (Symbol(tag)), which kv cannot store: use a string name",
    ],
  ])("refuses %o", (value, message) => {
    expect(problem(value)).toBe(at(message));
  });

  it("refuses a cycle, naming where it points back to, but keeps a value shared twice", () => {
    const a: Record<string, unknown> = { b: {} };
    (a.b as Record<string, unknown>).c = a;
    expect(problem({ a })).toBe(
      at("value.a.b.c refers back to value.a (a cycle), which kv cannot store: break the cycle"),
    );
    const shared = { n: 1 };
    expect(problem({ x: shared, y: [shared, shared] })).toBeUndefined();
  });

  it("refuses a value that is not an object, saying to wrap it", () => {
    expect(problem([1])).toBe(
      'kv("connections"): set("k") needs a JSON object, got an array; wrap it, such as { value: ... }',
    );
    expect(problem("text")).toBe(
      'kv("connections"): set("k") needs a JSON object, got a string; wrap it, such as { value: ... }',
    );
    expect(problem(null)).toContain("got null");
    // Wrapping would not do for a BigInt, which no JSON holds.
    expect(problem(1n)).toBe(
      'kv("connections"): set("k") needs a JSON object, got a BigInt; store it as text in one, such as { value: n.toString() }',
    );
  });

  it("accepts plain JSON, null-prototype objects and __proto__ as a property name", () => {
    const bare = Object.create(null) as Record<string, unknown>;
    bare.x = 1;
    expect(problem({ a: [1, "two", null, true, { b: -0 }], bare })).toBeUndefined();
    expect(problem(JSON.parse('{"__proto__": {"constructor": 1}}'))).toBeUndefined();
  });

  it("leaves undefined properties out, and says so, without refusing", () => {
    const check = checkKvValue("s", "k", { a: undefined, b: { c: undefined, d: 1 } });
    expect(check.problem).toBeUndefined();
    expect(check.hasUndefined).toBe(true);
    const copy = withoutUndefined(JSON.parse('{"__proto__": {"x": 1}}') as Record<string, unknown>);
    expect(Object.keys(copy)).toEqual(["__proto__"]);
    expect(withoutUndefined({ a: undefined, b: { c: undefined, d: 1 }, e: [1] })).toStrictEqual({
      b: { d: 1 },
      e: [1],
    });
  });

  it("counts a number's size as DynamoDB does, and refuses past its range at both ends", () => {
    // The item around {n}: _p "k#15" at its longest (6), _k "k" (3), _v (2), the map (3), 1 + "n" (2).
    const size = (n: number) => checkKvValue("s", "k", { n }).itemBytes - 16;
    expect(size(0)).toBe(1);
    expect(size(1)).toBe(2);
    expect(size(100)).toBe(2);
    expect(size(12)).toBe(2);
    expect(size(120)).toBe(3);
    expect(size(-12)).toBe(3);
    expect(size(12345)).toBe(4);
    expect(size(123456789012)).toBe(7);
    expect(size(0.5)).toBe(2);
    expect(size(0.12)).toBe(2);
    expect(size(1e21)).toBe(2);
    for (const n of [9.99999999999999e125, 1e-130, -1e-130, 0.1 + 0.2]) expect(problem({ n })).toBeUndefined();
    for (const n of [1e126, -1e126, 9.9e-131, 5e-324, Number.MAX_VALUE]) expect(problem({ n })).toContain("outside");
  });

  it("refuses past 400 KB counted as DynamoDB counts it (UTF-8, names, 3 per map or list, 1 per element)", () => {
    const overhead = checkKvValue("s", "k", { t: "" }).itemBytes;
    const fits = { t: "x".repeat(KV_MAX_ITEM_BYTES - overhead) };
    expect(checkKvValue("s", "k", fits)).toEqual({ hasUndefined: false, itemBytes: KV_MAX_ITEM_BYTES });
    expect(checkKvValue("s", "k", { t: `${fits.t}x` }).problem).toContain("DynamoDB allows at most 409600 (400 KB)");
    // "é" is 2 bytes in UTF-8 (dynalite counts 1): the stricter count is the one kept.
    expect(checkKvValue("s", "k", { t: "é".repeat(fits.t.length / 2 + 1) }).problem).toContain("409600");
    expect(checkKvValue("s", "k", { l: [1, 2] }).itemBytes - checkKvValue("s", "k", { l: [] }).itemBytes).toBe(6);
    expect(checkKvValue("s", "k", { m: { a: 1 } }).itemBytes - checkKvValue("s", "k", { m: {} }).itemBytes).toBe(4);
  });

  it("refuses more than 31 objects and arrays inside one another", () => {
    let v: Record<string, unknown> = {};
    for (let i = 1; i < 31; i++) v = { v };
    expect(problem(v)).toBeUndefined();
    expect(problem({ v })).toMatch(
      /^kv\("connections"\)\.set\("k"\): value(\.v){31} is nested 32 objects or arrays deep/,
    );
  });
});

describe("kv keys", () => {
  it("refuses a key no provider keeps apart from others, naming the call", () => {
    expect(kvKeyProblem("s", "set", "a\ud800")).toBe(
      'kv("s").set("a\\ud800"): the key has a lone surrogate (U+D800 at index 1), which kv cannot store: UTF-8 has no encoding for it, so it would become another key; use well-formed text, such as key.toWellFormed()',
    );
    expect(kvKeyProblem("s", "get", "")).toBe('kv("s").get(""): the key is empty; use a non-empty string');
    expect(kvKeyProblem("s", "delete", 7)).toBe('kv("s").delete(): the key is a number; use a non-empty string');
    expect(kvKeyProblem("s", "set", "é".repeat(512))).toBeUndefined();
    expect(kvKeyProblem("s", "set", `${"é".repeat(512)}x`)).toBe(
      'kv("s").set(): the key is 1025 bytes long and at most 1024 are allowed; use a shorter key',
    );
    expect(kvPrefixProblem("s", "\udfff")).toContain("lone surrogate");
    expect(kvValueProblem("s", "\ud800", {})).toContain("the key has a lone surrogate");
    for (const name of Object.getOwnPropertyNames(Object.prototype))
      expect(kvKeyProblem("s", "set", name)).toBeUndefined();
  });
});

describe("DynamoDB attribute names", () => {
  it("escapes __proto__ one-to-one, leaving every other name as it is", () => {
    expect(toAttributeName("__proto__")).toBe("\\__proto__");
    expect(toAttributeName("\\__proto__")).toBe("\\\\__proto__");
    expect(toAttributeName("constructor")).toBe("constructor");
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.constantFrom("__proto__", "\\__proto__", "\\\\__proto__", "x__proto__", "__proto__\\"),
        ),
        (name) => {
          expect(fromAttributeName(toAttributeName(name))).toBe(name);
          expect(toAttributeName(name)).not.toBe("__proto__");
        },
      ),
    );
  });
});
