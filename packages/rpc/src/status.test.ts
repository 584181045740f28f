// statusOf: which status an error a handler throws or answers with ends its call with.
import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { Code, RpcError, statusOf } from "./status.js";

describe("statusOf", () => {
  it("keeps the code and details of an RpcError, and of grpc-js's ServiceError", () => {
    expect(statusOf(new RpcError(Code.NOT_FOUND, 'kv("s"): no key "k"'))).toEqual([
      Code.NOT_FOUND,
      'kv("s"): no key "k"',
    ]);
    const serviceError = Object.assign(new Error("5 NOT_FOUND: gone"), {
      code: grpc.status.NOT_FOUND,
      details: "gone",
      metadata: new grpc.Metadata(),
    });
    expect(statusOf(serviceError)).toEqual([Code.NOT_FOUND, "gone"]);
  });

  it("gives any other error UNKNOWN with its message", () => {
    expect(statusOf(new TypeError("x is not a function"))).toEqual([Code.UNKNOWN, "x is not a function"]);
    expect(statusOf("a string")).toEqual([Code.UNKNOWN, "a string"]);
    expect(statusOf(undefined)).toEqual([Code.UNKNOWN, "undefined"]);
    expect(statusOf(null)).toEqual([Code.UNKNOWN, "null"]);
  });

  it("does not read another library's numeric error code as a status", () => {
    // SQLite numbers "database is locked" 5, which is NOT_FOUND's number.
    const busy = Object.assign(new Error("database is locked"), { code: 5 });
    expect(statusOf(busy)).toEqual([Code.UNKNOWN, "database is locked"]);
    expect(statusOf(Object.assign(new Error("enoent"), { code: "ENOENT" }))).toEqual([Code.UNKNOWN, "enoent"]);
    expect(statusOf({ code: 404, details: "not a status" })).toEqual([Code.UNKNOWN, "not a status"]);
  });

  it("never ends a call with OK for an error", () => {
    expect(statusOf(Object.assign(new Error("oops"), { code: 0, details: "oops" }))).toEqual([Code.UNKNOWN, "oops"]);
    expect(statusOf(new RpcError(Code.OK, "fine?"))).toEqual([Code.UNKNOWN, "fine?"]);
  });
});

describe("RpcError.received", () => {
  it("reads as grpc-js's errors read: <code> <NAME>: <details>", () => {
    const error = RpcError.received(Code.PERMISSION_DENIED, 'kv("s"): missing .allow("get")');
    expect(error).toMatchObject({ code: 7, details: 'kv("s"): missing .allow("get")', name: "RpcError" });
    expect(error.message).toBe('7 PERMISSION_DENIED: kv("s"): missing .allow("get")');
    expect(RpcError.received(99, "odd").message).toBe("99 UNKNOWN: odd");
  });
});
