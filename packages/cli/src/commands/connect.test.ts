import { describe, expect, it } from "vitest";
import { visible } from "./connect.js";

describe("visible", () => {
  it("writes control characters as \\u escapes, but tabs and line feeds, and leaves the rest", () => {
    expect(visible("\u001b]0;pwned\u0007\u001b[2Jclear")).toBe("\\u001b]0;pwned\\u0007\\u001b[2Jclear");
    expect(visible("a\tb\nc\rd\u007f\u0085\u009b")).toBe("a\tb\nc\\u000dd\\u007f\\u0085\\u009b");
    expect(visible('{"text":"héllo 👋"}')).toBe('{"text":"héllo 👋"}');
    expect(visible("\u0000")).toBe("\\u0000");
  });
});
