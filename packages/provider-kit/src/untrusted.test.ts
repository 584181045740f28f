import { describe, expect, it } from "vitest";
import { addValues, dict } from "./untrusted.js";

/** Read and written through a variable: `.__proto__` in source would be the accessor. */
const PROTO = "__proto__";
const INHERITED_NAMES = ["__proto__", "constructor", "toString", "hasOwnProperty", "valueOf", "__defineGetter__"];

describe("dict", () => {
  it("inherits nothing: a name Object.prototype has reads as absent", () => {
    const d = dict<string>();
    for (const name of INHERITED_NAMES) {
      expect(d[name], name).toBeUndefined();
      expect(name in d, name).toBe(false);
    }
    expect(Object.keys(d)).toEqual([]);
  });

  it("keeps every client-chosen name as an own key, in order, without touching any prototype", () => {
    const d = dict<{ value: string[] }>();
    for (const name of [...INHERITED_NAMES, "host"]) d[name] = { value: [name.toUpperCase()] };
    expect(Object.keys(d)).toEqual([...INHERITED_NAMES, "host"]);
    for (const name of INHERITED_NAMES) expect(Object.hasOwn(d, name), name).toBe(true);
    expect(d[PROTO]).toEqual({ value: ["__PROTO__"] });
    expect(JSON.parse(JSON.stringify(d)).constructor).toEqual({ value: ["CONSTRUCTOR"] });
    // Nothing leaked to other objects: a fresh record and a plain object are as they were.
    expect(dict<unknown>().constructor).toBeUndefined();
    expect(({} as Record<string, unknown>).host).toBeUndefined();
    expect(Object.getPrototypeOf({})).toBe(Object.prototype);
  });

  it("cannot be given inherited names through its prototype", () => {
    const proto = Object.getPrototypeOf(dict<unknown>()) as Record<string, unknown>;
    expect(Object.getPrototypeOf(proto)).toBeNull();
    expect(Object.isFrozen(proto)).toBe(true);
    expect(() => {
      proto.polluted = true;
    }).toThrow(TypeError);
    expect(dict<unknown>().polluted).toBeUndefined();
  });

  it("survives structured clone as a record of its own keys", () => {
    const d = dict<string[]>();
    d[PROTO] = ["a"];
    d.host = ["b"];
    const copy = structuredClone(d);
    expect(Object.keys(copy)).toEqual(["__proto__", "host"]);
    expect(Object.hasOwn(copy, "__proto__")).toBe(true);
  });
});

describe("addValues", () => {
  it("appends under a name already there and adds a name that is new, __proto__ included", () => {
    const d = dict<{ value: string[] }>();
    addValues(d, "x-a", ["1"]);
    addValues(d, "x-a", ["2", "3"]);
    addValues(d, "__proto__", ["p"]);
    expect(Object.keys(d)).toEqual(["x-a", "__proto__"]);
    expect(d["x-a"]?.value).toEqual(["1", "2", "3"]);
    expect(Object.hasOwn(d, "__proto__")).toBe(true);
    expect(d[PROTO]?.value).toEqual(["p"]);
  });
});
