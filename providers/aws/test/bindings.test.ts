// The function's bindings, read from the environment the template gives it.
import { describe, expect, it } from "vitest";
import { readBindings } from "../src/runtime/bindings.js";

describe("readBindings", () => {
  const env = (timeout?: string) => ({
    NITRIC_LIKE_SERVICE: "chat",
    ...(timeout === undefined ? {} : { NITRIC_LIKE_HANDLER_TIMEOUT_MS: timeout }),
  });

  it("keeps the handler timeout under API Gateway's 29 s integration timeout, however it was set", () => {
    expect(readBindings(env()).handlerTimeoutMs).toBe(5000);
    expect(readBindings(env("20000")).handlerTimeoutMs).toBe(20_000);
    // Past what API Gateway waits for: a second under it, so the runtime times out first.
    expect(readBindings(env("45000")).handlerTimeoutMs).toBe(28_000);
    expect(readBindings(env("soon")).handlerTimeoutMs).toBe(5000);
    expect(readBindings(env("-1")).handlerTimeoutMs).toBe(5000);
  });

  it("names the variable a function needs when it is missing", () => {
    expect(() => readBindings({})).toThrow(/NITRIC_LIKE_SERVICE is not set/);
  });
});
