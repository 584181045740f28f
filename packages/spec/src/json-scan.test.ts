// topLevelString against JSON.parse, its oracle: on every text, valid JSON or not, it answers what
// JSON.parse(text)[name] is when that is a string property of an object, and undefined otherwise.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { topLevelString } from "./json-scan.js";

/** What JSON.parse reads: the top-level string property `name` of an object, else undefined. */
function oracle(text: string, name: string): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return undefined;
  const value = Object.hasOwn(parsed, name) ? (parsed as Record<string, unknown>)[name] : undefined;
  return typeof value === "string" ? value : undefined;
}

function agree(text: string, name = "action"): void {
  expect(topLevelString(text, name)).toBe(oracle(text, name));
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

describe("topLevelString", () => {
  it("answers what JSON.parse reads, on objects of any shape (property)", () => {
    fc.assert(
      fc.property(objectText, fc.constantFrom("action", "type", "__proto__"), (text, name) => agree(text, name)),
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
    expect(topLevelString(text, "action")).toBe(expected);
    agree(text);
  });

  it("takes a property named __proto__ as JSON.parse does: an own property like any other", () => {
    agree('{"__proto__":"join"}', "__proto__");
    expect(topLevelString('{"__proto__":"join"}', "__proto__")).toBe("join");
  });

  it("reads deep nesting without recursion, as JSON.parse does", () => {
    const depth = 200_000;
    const deep = `{"x":${"[".repeat(depth)}${"]".repeat(depth)},"action":"join"}`;
    expect(topLevelString(deep, "action")).toBe("join");
    agree(deep);
    agree(`{"x":${"[".repeat(depth)}${"]".repeat(depth - 1)},"action":"join"}`);
    agree(`{"x":${"[{".repeat(1000)}`);
  });
});
