// stringAt against JSON.parse, its oracle: on every text, valid JSON or not, it answers what
// JSON.parse(text) holds at the path (own properties, each on the way an object) when that is a
// string, and undefined otherwise.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { stringAt } from "./json-scan.js";

/** What JSON.parse reads: the string at `path` through own properties of objects, else undefined. */
function oracle(text: string, path: readonly string[]): string | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  for (const name of path) {
    if (value === null || typeof value !== "object" || Array.isArray(value)) return undefined;
    value = Object.hasOwn(value, name) ? (value as Record<string, unknown>)[name] : undefined;
  }
  return typeof value === "string" ? value : undefined;
}

function agree(text: string, path: readonly string[] = ["action"]): void {
  expect(stringAt(text, path)).toBe(oracle(text, path));
}

/** JSON text of objects that have, often, an `action` (or `type`) of any JSON type, in any spacing. */
const objectText = fc
  .tuple(
    fc.dictionary(fc.constantFrom("action", "type", "room", "__proto__", "a\u0000b", "é"), fc.jsonValue(), {
      maxKeys: 4,
    }),
    fc.jsonValue({ maxDepth: 3 }),
    fc.constantFrom(undefined, 0, 2, "\t"),
  )
  .map(([props, extra, space]) => JSON.stringify({ ...props, extra }, null, space));

/** Small edits: what a broken or hostile client sends. */
const mutated = fc
  .tuple(
    objectText,
    fc.nat(),
    fc.constantFrom("", '"', "\\", "{", "}", "[", "]", ",", ":", " ", "\u0001", "-", "0", "e", "u", "\\u00"),
  )
  .map(([text, at, piece]) => {
    const i = at % (text.length + 1);
    return at % 3 === 0
      ? text.slice(0, i) + piece + text.slice(i)
      : at % 3 === 1
        ? text.slice(0, i) + piece + text.slice(i + 1)
        : text.slice(0, i);
  });

/** The paths the nested tests read: one to four names, some that name Object.prototype's own. */
const PATHS: readonly (readonly string[])[] = [
  ["action"],
  ["type"],
  ["meta", "type"],
  ["meta", "meta", "type"],
  ["a", "meta", "a", "type"],
  ["__proto__", "type"],
  ["constructor", "name"],
  ["meta", "__proto__"],
];

/** A key beside the path's: one a path names elsewhere, or another. */
const otherKey = fc.constantFrom("meta", "type", "a", "action", "__proto__", "constructor", "name", "x", "é");

/** A key as JSON text, sometimes with its first character escaped (`"\u006deta"` is "meta"). */
const keyText = (key: string) =>
  fc
    .boolean()
    .map((escaped) =>
      escaped
        ? `"\\u${key.charCodeAt(0).toString(16).padStart(4, "0")}${JSON.stringify(key).slice(2)}`
        : JSON.stringify(key),
    );

const scalarText = fc.jsonValue({ maxDepth: 1 }).map((v) => JSON.stringify(v));

/**
 * Object text around `path` from its name `i` on: members in any order, often the path's name
 * (more than once too, which JSON.stringify never writes), holding the next level, a string or
 * anything else, beside other keys.
 */
function around(path: readonly string[], i: number): fc.Arbitrary<string> {
  const last = i === path.length - 1;
  const deeper = last ? undefined : around(path, i + 1);
  const here = deeper
    ? fc.oneof(
        { weight: 4, arbitrary: deeper },
        { weight: 1, arbitrary: scalarText },
        { weight: 1, arbitrary: fc.array(deeper, { maxLength: 2 }).map((a) => `[${a.join(",")}]`) },
      )
    : fc.oneof(fc.constantFrom('"join"', '"Object"', '""', '"\\u006aoin"'), scalarText);
  const member = fc.oneof(
    { weight: 2, arbitrary: fc.tuple(keyText(path[i] as string), here) },
    { weight: 1, arbitrary: fc.tuple(otherKey.chain(keyText), deeper ? fc.oneof(scalarText, deeper) : scalarText) },
  );
  return fc
    .tuple(fc.array(member, { maxLength: 4 }), fc.constantFrom("", " ", "\n\t"))
    .map(([members, space]) => `{${space}${members.map(([k, v]) => `${k}${space}:${v}`).join(`,${space}`)}${space}}`);
}

/** Object text around one of PATHS, with that path. */
const nestedText = fc.constantFrom(...PATHS).chain((path) => around(path, 0).map((text) => [text, path] as const));

describe("stringAt, one name", () => {
  it("answers what JSON.parse reads, on objects of any shape (property)", () => {
    fc.assert(
      fc.property(objectText, fc.constantFrom("action", "type", "__proto__"), (text, name) => agree(text, [name])),
      { numRuns: 5000 },
    );
  });

  it("answers what JSON.parse reads, on broken and hostile text (property)", () => {
    fc.assert(
      fc.property(mutated, (text) => agree(text)),
      { numRuns: 20000 },
    );
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 40 }), (text) => agree(`{"action":${text}`)),
      {
        numRuns: 5000,
      },
    );
  });

  it.each([
    ['{"action":"join"}', "join"],
    [' \r\n\t{ "action" : "join" } \n', "join"],
    ['{"\\u0061ction":"\\u006aoin"}', "join"],
    ['{"action":"a","action":"b"}', "b"],
    ['{"action":"a","action":5}', undefined],
    ['{"action":"a","action":{"x":"y"}}', undefined],
    ['{"x":{"action":"join"}}', undefined],
    ['{"x":[{"action":"join"}],"action":"top"}', "top"],
    ['{"action":"join"', undefined],
    ['{"action":"join"}}', undefined],
    ['{"action":"join",}', undefined],
    ['{"action":"jo\u0001in"}', undefined],
    ['{"action":"join\\x"}', undefined],
    ['{"action":"\\ud800"}', "\ud800"],
    ['{"action":01}', undefined],
    ['{"action":-0.5e+3,"b":1E2,"c":[true,false,null]}', undefined],
    ['\ufeff{"action":"join"}', undefined],
    ['{"action":"join"}\u00a0', undefined],
    ["[]", undefined],
    ['"join"', undefined],
    ["{}", undefined],
    ["", undefined],
    ['{"__proto__":"join"}', undefined],
  ])("reads %j as JSON.parse does", (text, expected) => {
    expect(stringAt(text, ["action"])).toBe(expected);
    agree(text);
  });

  it("takes a property named __proto__ as JSON.parse does: an own property like any other", () => {
    agree('{"__proto__":"join"}', ["__proto__"]);
    expect(stringAt('{"__proto__":"join"}', ["__proto__"])).toBe("join");
  });

  it("reads deep nesting without recursion, as JSON.parse does", () => {
    const depth = 200_000;
    const deep = `{"x":${"[".repeat(depth)}${"]".repeat(depth)},"action":"join"}`;
    expect(stringAt(deep, ["action"])).toBe("join");
    agree(deep);
    agree(`{"x":${"[".repeat(depth)}${"]".repeat(depth - 1)},"action":"join"}`);
    agree(`{"x":${"[{".repeat(1000)}`);
  });
});

describe("stringAt, a path", () => {
  it("answers what JSON.parse reads at the path, on nested objects of any shape, duplicate keys too (property)", () => {
    fc.assert(
      fc.property(nestedText, ([text, path]) => agree(text, path)),
      { numRuns: 10000 },
    );
  });

  it("answers what JSON.parse reads at the path, on broken and hostile text (property)", () => {
    const broken = fc
      .tuple(nestedText, fc.nat(), fc.constantFrom("", '"', "\\", "{", "}", "[", "]", ",", ":", " ", "\\u00"))
      .map(([[text, path], at, piece]) => {
        const i = at % (text.length + 1);
        const edited =
          at % 2 === 0 ? text.slice(0, i) + piece + text.slice(i) : text.slice(0, i) + piece + text.slice(i + 1);
        return [edited, path] as const;
      });
    fc.assert(
      fc.property(broken, ([text, path]) => agree(text, path)),
      { numRuns: 10000 },
    );
  });

  it.each([
    ['{"meta":{"type":"join"}}', "join"],
    ['{"type":"top","meta":{"id":1,"type":"join"},"x":[{"meta":{"type":"no"}}]}', "join"],
    ['{"\\u006deta":{"\\u0074ype":"jo\\u0069n"}}', "join"],
    ['{"meta":{"type":"a","type":"b"}}', "b"],
    ['{"meta":{"type":"a"},"meta":{"type":"b"}}', "b"],
    ['{"meta":{"type":"a"},"meta":{"id":1}}', undefined],
    ['{"meta":{"type":"a"},"meta":5}', undefined],
    ['{"meta":{"type":"a"},"meta":{}}', undefined],
    ['{"meta":{"type":"a","type":5}}', undefined],
    ['{"meta":{"type":{"x":"join"}}}', undefined],
    ['{"meta":[{"type":"join"}]}', undefined],
    ['{"meta":"join"}', undefined],
    ['{"type":"join"}', undefined],
    ['{"other":{"type":"join"}}', undefined],
    ['{"meta":{"other":{"type":"join"}}}', undefined],
    ['{"meta":{"type":"join"}', undefined],
    ['{"meta":{"type":"join"}}}', undefined],
    ['[{"meta":{"type":"join"}}]', undefined],
  ])("reads %j at meta.type as JSON.parse does", (text, expected) => {
    expect(stringAt(text, ["meta", "type"])).toBe(expected);
    agree(text, ["meta", "type"]);
  });

  it("reads names such as __proto__ and constructor as own properties only, never the prototype's", () => {
    // JSON.parse makes "__proto__" an own property; "constructor" is one only when the text has it.
    expect(stringAt('{"__proto__":{"type":"join"}}', ["__proto__", "type"])).toBe("join");
    agree('{"__proto__":{"type":"join"}}', ["__proto__", "type"]);
    expect(stringAt("{}", ["constructor", "name"])).toBeUndefined();
    expect(stringAt('{"a":1}', ["constructor", "name"])).toBeUndefined();
    expect(stringAt('{"meta":{}}', ["meta", "constructor", "name"])).toBeUndefined();
    expect(stringAt('{"meta":{}}', ["meta", "toString"])).toBeUndefined();
    expect(stringAt('{"constructor":{"name":"join"}}', ["constructor", "name"])).toBe("join");
    agree("{}", ["constructor", "name"]);
  });

  it("reads a path through deep nesting without recursion", () => {
    const depth = 100_000;
    const deep = `{"meta":{"x":${"[".repeat(depth)}${"]".repeat(depth)},"type":"join"}}`;
    expect(stringAt(deep, ["meta", "type"])).toBe("join");
    agree(deep, ["meta", "type"]);
    const objects = `{"a":${'{"a":'.repeat(depth)}"join"${"}".repeat(depth)}}`;
    expect(stringAt(objects, ["a", "a", "a", "a"])).toBeUndefined();
    agree(objects, ["a", "a", "a", "a"]);
    expect(stringAt('{"a":{"a":{"a":{"a":"join"}}}}', ["a", "a", "a", "a"])).toBe("join");
  });
});
