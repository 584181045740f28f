import { describe, expect, it } from "vitest";
import { decodeSafely, encodePayload, utf8Bytes } from "./data.js";

describe("encodePayload", () => {
  it("sends strings as text, bytes as binary and other values as JSON text", () => {
    expect(encodePayload("hé")).toEqual({ data: new TextEncoder().encode("hé"), binary: false });
    const bytes = new Uint8Array([1, 2]);
    expect(encodePayload(bytes)).toEqual({ data: bytes, binary: true });
    expect(encodePayload(Buffer.from([3]))).toEqual({ data: Buffer.from([3]), binary: true });
    expect(encodePayload(new Uint8Array([4, 5]).buffer)).toEqual({ data: new Uint8Array([4, 5]), binary: true });
    expect(encodePayload(new Uint16Array([1]))).toEqual({ data: new Uint8Array([1, 0]), binary: true });
    expect(encodePayload({ a: [1, null] })).toEqual({
      data: new TextEncoder().encode('{"a":[1,null]}'),
      binary: false,
    });
    expect(encodePayload(42)).toEqual({ data: new TextEncoder().encode("42"), binary: false });
  });

  it("refuses what JSON cannot carry", () => {
    for (const value of [undefined, () => {}, Symbol("s")]) {
      expect(() => encodePayload(value as never)).toThrow(
        expect.objectContaining({
          code: "invalid_argument",
          message: expect.stringMatching(/^send: cannot send \w+: pass a string, bytes, or a JSON value$/),
        }),
      );
    }
  });

  it("refuses, naming the call, the place and the fix, what JSON would drop or fail on, instead of sending {} or a bare TypeError", () => {
    const refused = (data: unknown, call: string) => {
      try {
        encodePayload(data as never, "chat", call);
      } catch (error) {
        expect(error).toMatchObject({ code: "invalid_argument" });
        return (error as Error).message;
      }
      return "sent";
    };
    const cycle: { self?: unknown } = {};
    cycle.self = cycle;
    expect(refused({ users: new Set(["ann"]) }, ".send()")).toBe(
      'websocket("chat").send(): data.users is a Set, which JSON would send as {}: send [...set] instead',
    );
    expect(refused(new Map([["a", 1]]), ".broadcast()")).toBe(
      'websocket("chat").broadcast(): data is a Map, which JSON would send as {}: send Object.fromEntries(map) or [...map] instead',
    );
    expect(refused({ user: Promise.resolve({ name: "ann" }) }, " ctx.reply()")).toBe(
      'websocket("chat") ctx.reply(): data.user is a Promise, which JSON would send as {}: await it first',
    );
    expect(refused([{ "a b": new Error("boom") }], ".send()")).toBe(
      'websocket("chat").send(): data[0]["a b"] is an Error, which JSON would send as {}: send error.message instead',
    );
    expect(refused({ n: [1, 2n] }, ".send()")).toBe(
      'websocket("chat").send(): data.n[1] is a BigInt, which JSON has no form for: send it as a string or a number',
    );
    expect(refused(cycle, ".send()")).toBe(
      'websocket("chat").send(): data refers to itself (a cycle), which JSON cannot write: send a copy without the cycle',
    );
    // What JSON writes as {} on purpose, or in a form of its own, is sent as it always was.
    expect(refused({ empty: {}, none: Object.create(null), at: new Date(0), list: [] }, ".send()")).toBe("sent");
    expect(new TextDecoder().decode(encodePayload({ e: {}, m: { toJSON: () => ({}) } }).data)).toBe('{"e":{},"m":{}}');
  });
});

describe("utf8Bytes", () => {
  it("gives TextEncoder's bytes for ASCII and not, short and long, around the 64-character line", () => {
    const encoder = new TextEncoder();
    const cases = [
      "",
      "m1",
      '{"op":"get"}',
      "a".repeat(64),
      "a".repeat(65),
      `${"a".repeat(63)}é`,
      "é",
      "😀 emoji",
      "日本語",
      "\u007f\u0080",
      "\ud800 lone surrogate",
      "x".repeat(1000),
    ];
    for (const text of cases) expect(utf8Bytes(text)).toEqual(encoder.encode(text));
  });
});

describe("decodeSafely", () => {
  it("decodes escapes and keeps text with a bad escape as it is", () => {
    expect(decodeSafely("a%20b%C3%A9")).toBe("a bé");
    expect(decodeSafely("100%")).toBe("100%");
    expect(decodeSafely("%E0%A4%A")).toBe("%E0%A4%A");
  });
});
