import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { didYouMean, editDistance } from "./suggest.js";

describe("didYouMean", () => {
  it("finds the setting a typo meant: a missing letter, a swap, another case, a prefix", () => {
    expect(didYouMean("websocket", ["name", "services", "websockets", "limits", "environments"])).toBe("websockets");
    expect(didYouMean("prot", ["port", "limits"])).toBe("port");
    expect(didYouMean("Port", ["port", "limits"])).toBe("port");
    expect(didYouMean("env", ["name", "services", "websockets", "limits", "environments"])).toBe("environments");
    expect(didYouMean("maxConections", ["maxConnections", "maxMessageBytes"])).toBe("maxConnections");
  });

  it("suggests nothing when nothing is close", () => {
    expect(didYouMean("env", ["match", "start"])).toBeUndefined();
    expect(didYouMean("colour", ["port", "limits"])).toBeUndefined();
    expect(didYouMean("", ["port"])).toBeUndefined();
  });

  it("counts edits as a metric: zero only for equal words, symmetric", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 12 }), fc.string({ maxLength: 12 }), (a, b) => {
        expect(editDistance(a, b)).toBe(editDistance(b, a));
        expect(editDistance(a, b) === 0).toBe(a === b);
        expect(editDistance(a, b)).toBeLessThanOrEqual(Math.max(a.length, b.length));
      }),
    );
  });
});
