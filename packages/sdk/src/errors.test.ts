import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Code, RpcError } from "@nitric-like/rpc";
import { describe, expect, it } from "vitest";
import { describeError, ERROR_CODES, isNitricLikeError, NitricLikeError, VERBOSE_ENV } from "./errors.js";

describe("NitricLikeError", () => {
  it("maps every gRPC status to its code and keeps the original as cause", () => {
    const statuses = [
      Code.CANCELLED,
      Code.UNKNOWN,
      Code.INVALID_ARGUMENT,
      Code.DEADLINE_EXCEEDED,
      Code.NOT_FOUND,
      Code.ALREADY_EXISTS,
      Code.PERMISSION_DENIED,
      Code.RESOURCE_EXHAUSTED,
      Code.FAILED_PRECONDITION,
      Code.ABORTED,
      Code.OUT_OF_RANGE,
      Code.UNIMPLEMENTED,
      Code.INTERNAL,
      Code.UNAVAILABLE,
      Code.DATA_LOSS,
      Code.UNAUTHENTICATED,
    ];
    expect(statuses.map((s) => NitricLikeError.from(RpcError.received(s, "x")).code)).toEqual([...ERROR_CODES]);
    const original = RpcError.received(Code.NOT_FOUND, 'kv("a"): key "b" not found');
    const e = NitricLikeError.from(original, { store: "a", key: "b" });
    expect(e).toMatchObject({
      code: "not_found",
      message: 'kv("a"): key "b" not found',
      cause: original,
      details: { store: "a", key: "b" },
    });
  });

  it("returns a NitricLikeError unchanged and wraps anything else as unknown", () => {
    const e = new NitricLikeError("aborted", "stop");
    expect(NitricLikeError.from(e)).toBe(e);
    expect(NitricLikeError.from(new TypeError("bad"))).toMatchObject({ code: "unknown", message: "bad" });
    expect(NitricLikeError.from("plain")).toMatchObject({ code: "unknown", message: "plain" });
  });

  it("is recognised across duplicate copies of the package, and nothing else is", () => {
    // What another copy's instance looks like: a different class with the same global brand.
    const foreign = Object.assign(new Error("x"), { [Symbol.for("nitric-like.error")]: true, code: "internal" });
    expect(isNitricLikeError(foreign)).toBe(true);
    expect(isNitricLikeError(new NitricLikeError("internal", "x"))).toBe(true);
    for (const other of [new Error("x"), { code: "internal" }, null, undefined, "e"])
      expect(isNitricLikeError(other)).toBe(false);
  });
});

describe("errors as a person reads them", () => {
  const THIS_FILE = fileURLToPath(import.meta.url);

  /** Runs `f` as in a service the CLI started (NITRIC_LIKE_SERVICE set), with `verbose` or not. */
  function inService<T>(f: () => T, verbose = false): T {
    process.env.NITRIC_LIKE_SERVICE = "test";
    if (verbose) process.env[VERBOSE_ENV] = "1";
    try {
      return f();
    } finally {
      delete process.env.NITRIC_LIKE_SERVICE;
      delete process.env[VERBOSE_ENV];
    }
  }

  it("a NitricLikeError prints as its message and the first frame in the user's files", () => {
    const e = new NitricLikeError("not_found", 'kv("a"): key "b" not found', { cause: new Error("inner") });
    const lines = inService(() => describeError(e)).split("\n");
    expect(lines[0]).toBe('NitricLikeError: kv("a"): key "b" not found');
    expect(lines).toHaveLength(2);
    expect(lines[1]).toContain("errors.test.ts:");
    // Its stack, code, details and cause are all still there to read.
    expect(e).toMatchObject({ code: "not_found", details: {} });
    expect(e.cause).toBeInstanceOf(Error);
    expect(String(e.stack).split("\n").length).toBeGreaterThan(2);
    // Outside a service the CLI started (a deployed function, a test), it prints whole.
    expect(describeError(e)).toBe(e.stack);
  });

  it("has every frame with NITRIC_LIKE_VERBOSE", () => {
    const e = new NitricLikeError("internal", "x");
    const text = inService(() => describeError(e), true);
    expect(text.split("\n").length).toBeGreaterThan(2);
    expect(text).toContain("node_modules");
  });

  it("describeError puts back a name the bundler renamed when the source line spells it without the number", () => {
    const source = readFileSync(THIS_FILE, "utf8").split("\n");
    // The frame points at the MARKER line below: its source says data.get where the "bundle" said data2.get.
    const line = source.findIndex((l) => l.includes(`${"MARKER"}: data.get`)) + 1;
    // MARKER: data.get(key)
    const error = new TypeError("data2.get is not a function");
    error.stack = `TypeError: data2.get is not a function\n    at handler (${THIS_FILE}:${line}:5)\n    at step (/x/node_modules/@nitric-like/sdk/dist/resources/websocket.js:1:1)`;
    expect(inService(() => describeError(error))).toBe(
      `TypeError: data.get is not a function\n    at handler (${THIS_FILE}:${line}:5)`,
    );
    // A name whose plain form the source line lacks is left alone.
    const kept = new TypeError("item2 is not iterable");
    kept.stack = `TypeError: item2 is not iterable\n    at f (${THIS_FILE}:${line}:5)`;
    expect(inService(() => describeError(kept))).toBe(
      `TypeError: item2 is not iterable\n    at f (${THIS_FILE}:${line}:5)`,
    );
    expect(describeError("plain")).toBe("plain");
  });
});
