import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { describe, expect, it, onTestFinished } from "vitest";
import { describeError, ERROR_CODES, isNitricLikeError, NitricLikeError, VERBOSE_ENV } from "./errors.js";

const grpcError = (code: grpc.status, details: string) =>
  Object.assign(new Error(`${code} ${details}`), { code, details, metadata: new grpc.Metadata() });

describe("NitricLikeError", () => {
  it("maps every gRPC status to its code and keeps the original as cause", () => {
    const statuses = [
      grpc.status.CANCELLED,
      grpc.status.UNKNOWN,
      grpc.status.INVALID_ARGUMENT,
      grpc.status.DEADLINE_EXCEEDED,
      grpc.status.NOT_FOUND,
      grpc.status.ALREADY_EXISTS,
      grpc.status.PERMISSION_DENIED,
      grpc.status.RESOURCE_EXHAUSTED,
      grpc.status.FAILED_PRECONDITION,
      grpc.status.ABORTED,
      grpc.status.OUT_OF_RANGE,
      grpc.status.UNIMPLEMENTED,
      grpc.status.INTERNAL,
      grpc.status.UNAVAILABLE,
      grpc.status.DATA_LOSS,
      grpc.status.UNAUTHENTICATED,
    ];
    expect(statuses.map((s) => NitricLikeError.from(grpcError(s, "x")).code)).toEqual([...ERROR_CODES]);
    const original = grpcError(grpc.status.NOT_FOUND, 'kv("a"): key "b" not found');
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

  it("a NitricLikeError's stack is its message and the first frame in the user's files", () => {
    process.env.NITRIC_LIKE_SERVICE = "test";
    let e: NitricLikeError;
    try {
      e = new NitricLikeError("not_found", 'kv("a"): key "b" not found', { cause: new Error("inner") });
    } finally {
      delete process.env.NITRIC_LIKE_SERVICE;
    }
    process.env.NITRIC_LIKE_SERVICE = "test";
    const lines = String(e.stack).split("\n");
    delete process.env.NITRIC_LIKE_SERVICE;
    expect(lines[0]).toBe('NitricLikeError: kv("a"): key "b" not found');
    expect(lines).toHaveLength(2);
    // Outside a service the CLI started (a deployed function, a test), the stack is whole.
    expect(String(e.stack).split("\n").length).toBeGreaterThan(2);
    expect(lines[1]).toContain("errors.test.ts:");
    // Code, details and cause are there to read, but not printed when the error is inspected.
    expect(e).toMatchObject({ code: "not_found", details: {} });
    expect(e.cause).toBeInstanceOf(Error);
    expect(Object.keys(e)).toEqual([]);
    e.stack = "replaced";
    expect(e.stack).toBe("replaced");
  });

  it("has every frame with NITRIC_LIKE_VERBOSE", () => {
    process.env[VERBOSE_ENV] = "1";
    process.env.NITRIC_LIKE_SERVICE = "test";
    try {
      const e = new NitricLikeError("internal", "x");
      expect(String(e.stack).split("\n").length).toBeGreaterThan(2);
      expect(e.stack).toContain("node_modules");
    } finally {
      delete process.env[VERBOSE_ENV];
      delete process.env.NITRIC_LIKE_SERVICE;
    }
  });

  it("describeError puts back a name the bundler renamed when the source line spells it without the number", () => {
    const source = readFileSync(THIS_FILE, "utf8").split("\n");
    // The frame points at the MARKER line below: its source says data.get where the "bundle" said data2.get.
    const line = source.findIndex((l) => l.includes(`${"MARKER"}: data.get`)) + 1;
    // MARKER: data.get(key)
    process.env.NITRIC_LIKE_SERVICE = "test";
    onTestFinished(() => {
      delete process.env.NITRIC_LIKE_SERVICE;
    });
    const error = new TypeError("data2.get is not a function");
    error.stack = `TypeError: data2.get is not a function\n    at handler (${THIS_FILE}:${line}:5)\n    at step (/x/node_modules/@nitric-like/sdk/dist/resources/websocket.js:1:1)`;
    expect(describeError(error)).toBe(`TypeError: data.get is not a function\n    at handler (${THIS_FILE}:${line}:5)`);
    // A name the source does use is left alone, and so is one whose plain form the line lacks.
    const kept = new TypeError("item2 is not iterable");
    kept.stack = `TypeError: item2 is not iterable\n    at f (${THIS_FILE}:${line}:5)`;
    expect(describeError(kept)).toBe(`TypeError: item2 is not iterable\n    at f (${THIS_FILE}:${line}:5)`);
    expect(describeError("plain")).toBe("plain");
  });
});
