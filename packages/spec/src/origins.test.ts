import { describe, expect, it } from "vitest";
import { allowedOriginsProblem } from "./origins.js";

const where = 'websocket("chat")';

describe("allowedOrigins", () => {
  it("takes origins as browsers send them, * and null", () => {
    for (const ok of [
      undefined,
      [],
      ["https://app.example.com"],
      ["http://127.0.0.1:3000", "http://[::1]:8080", "chrome-extension://abcdefgh"],
      ["*"],
      ["null"],
    ]) {
      expect(allowedOriginsProblem(where, ok), JSON.stringify(ok)).toBeUndefined();
    }
  });

  it("refuses what no Origin header can equal, with the origin to write", () => {
    const cases: [unknown, string][] = [
      [
        "https://app.example.com",
        'allowedOrigins is a list of origins, got string; write allowedOrigins: ["https://app.example.com"]',
      ],
      [null, "allowedOrigins is a list of origins, got null"],
      [[5], "allowedOrigins holds origins as strings, got number"],
      [["https://app.example.com/"], 'entry "https://app.example.com/" is not an origin as browsers send it'],
      [["https://app.example.com/"], 'write "https://app.example.com", or "*" for any'],
      [["app.example.com"], 'write "https://app.example.com"'],
      [["https://App.Example.com"], 'write "https://app.example.com"'],
      [["https://app.example.com/login?x=1"], 'write "https://app.example.com"'],
      [["https://app.example.com:443"], 'write "https://app.example.com"'],
      [["https://user@app.example.com"], 'write "https://app.example.com"'],
      [["https://bücher.example"], 'write "https://xn--bcher-kva.example"'],
      [[""], 'such as "https://app.example.com", or "*" for any'],
    ];
    for (const [value, message] of cases) {
      const problem = allowedOriginsProblem(where, value);
      expect(problem, JSON.stringify(value)).toContain(message);
      expect(problem?.startsWith(`${where}: `)).toBe(true);
    }
  });
});
