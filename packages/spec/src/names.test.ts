import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isValidResourceName, MAX_RESOURCE_NAME_LENGTH, resourceNameProblem, suggestName } from "./names.js";

describe("resource names", () => {
  it("accepts lower-kebab-case names", () => {
    for (const name of ["a", "socket", "my-store", "v2", "a-b-c-1"])
      expect(resourceNameProblem("kv", name)).toBeUndefined();
  });

  it("explains an invalid name with a valid suggestion", () => {
    expect(resourceNameProblem("kv", "My Store")).toBe(
      'kv("My Store"): invalid resource name "My Store", use lower-kebab-case such as "my-store"',
    );
    expect(resourceNameProblem("websocket", "chatRoom")).toContain('such as "chat-room"');
    expect(resourceNameProblem("kv", "")).toContain("a resource name is required");
    // From JavaScript: the wrong type is named (it said kv(""): a resource name is required).
    expect(resourceNameProblem("websocket", 42 as never)).toBe(
      'websocket(42): a resource name must be a string, got number; use lower-kebab-case such as "my-socket"',
    );
    expect(resourceNameProblem("kv", undefined as never)).toBe(
      'kv(undefined): a resource name must be a string, got undefined; use lower-kebab-case such as "my-store"',
    );
    expect(resourceNameProblem("kv", "x".repeat(65))).toContain(`at most ${MAX_RESOURCE_NAME_LENGTH}`);
  });

  it("suggests a name with the accents dropped, not the accented letters", () => {
    expect(suggestName("Café Chat")).toBe("cafe-chat");
    expect(suggestName("ńame")).toBe("name");
    expect(suggestName("Ünïcode")).toBe("unicode");
    expect(resourceNameProblem("kv", "Crème brûlée")).toContain('such as "creme-brulee"');
  });

  it("always suggests a name that is itself valid", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 100 }), (name) => {
        expect(isValidResourceName(suggestName(name))).toBe(true);
      }),
    );
  });

  it("agrees with itself: a name has a problem exactly when it is not valid", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.stringMatching(/^[a-z0-9-]{1,70}$/)), (name) => {
        expect(resourceNameProblem("kv", name) === undefined).toBe(isValidResourceName(name));
      }),
    );
  });

  it("keeps a valid name unchanged when suggesting", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z0-9]{1,10}(-[a-z0-9]{1,10}){0,3}$/), (name) => {
        expect(suggestName(name)).toBe(name);
      }),
    );
  });
});
