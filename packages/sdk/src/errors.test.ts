import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { ERROR_CODES, isNitricLikeError, NitricLikeError } from "./errors.js";

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
