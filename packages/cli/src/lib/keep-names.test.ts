// The cheaper __name helper against esbuild's own (the oracle): one bundle, built by esbuild with
// keepNames, run as esbuild wrote it and with the helper replaced, gives every function and class
// the same name property: renamed bindings (two modules' `handler`), closures and classes made at
// run time, methods, a class with a static `name` of its own.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { build } from "esbuild";
import { afterAll, expect, it } from "vitest";
import { CHEAPER_NAME_HELPER, cheaperKeepNames, ESBUILD_NAME_HELPER } from "./keep-names.js";

const dir = mkdtempSync(join(tmpdir(), "nitric-like-keep-names-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MODULE = (tag: string) => `
export function handler() { return "${tag}"; }
export class Conn { send() {} }
export const arrow = () => 1;
export const expression = function () {};
export const obj = { method() {}, arrowProp: () => 2, named: function other() {} };
export const make = () => function inner() {};
export const makeArrow = () => { const made = () => 3; return made; };
export const makeClass = () => class Inner {};
export class OwnName { static name = "custom"; }
export class NameMethod { static name() { return "method"; } }
export default function () {}
`;

/** Every function reachable from the bundle's exports (closures and classes made by calling make*), with its name property. */
const COLLECT = `
import * as a from "./a.ts";
import * as b from "./b.ts";
export function collect() {
  const out = [];
  const visit = (path, value) => {
    if (typeof value === "function") {
      const d = Object.getOwnPropertyDescriptor(value, "name");
      out.push([path, typeof d?.value === "function" ? "(method)" : d?.value, d?.writable, d?.enumerable, d?.configurable]);
      if (/[.]make[A-Za-z]*$/.test(path)) visit(path + "()", value());
    } else if (value && typeof value === "object") {
      for (const key of Object.keys(value).sort()) visit(path + "." + key, value[key]);
    }
  };
  visit("a", { ...a });
  visit("b", { ...b });
  return out;
}
`;

it("gives every function and class the name esbuild's own helper gives it, and replaces the helper", async () => {
  writeFileSync(join(dir, "a.ts"), MODULE("a"));
  writeFileSync(join(dir, "b.ts"), MODULE("b"));
  writeFileSync(join(dir, "entry.ts"), COLLECT);
  const esbuilt = join(dir, "esbuild.mjs");
  await build({
    entryPoints: [join(dir, "entry.ts")],
    outfile: esbuilt,
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    keepNames: true,
    logLevel: "silent",
  });
  const original = readFileSync(esbuilt);
  // Two modules' `handler`: one of them is renamed in the bundle, and keepNames names it back.
  expect(original.toString()).toMatch(/function handler2\(/);
  expect(original.includes(ESBUILD_NAME_HELPER)).toBe(true);

  const patched = cheaperKeepNames(original) as Buffer;
  expect(patched.includes(CHEAPER_NAME_HELPER)).toBe(true);
  expect(patched.includes(ESBUILD_NAME_HELPER)).toBe(false);
  expect(patched.length - original.length).toBe(CHEAPER_NAME_HELPER.length - ESBUILD_NAME_HELPER.length);
  const cheaper = join(dir, "cheaper.mjs");
  writeFileSync(cheaper, patched);

  type Collect = () => [string, unknown, boolean, boolean, boolean][];
  const expected = ((await import(pathToFileURL(esbuilt).href)) as { collect: Collect }).collect();
  const got = ((await import(pathToFileURL(cheaper).href)) as { collect: Collect }).collect();
  expect(got).toEqual(expected);
  // The oracle names what the test is about: renamed bindings and closures named back, own names kept.
  expect(expected).toContainEqual(["b.handler", "handler", false, false, true]);
  expect(expected).toContainEqual(["a.Conn", "Conn", false, false, true]);
  expect(expected).toContainEqual(["b.make()", "inner", false, false, true]);
  expect(expected).toContainEqual(["a.makeArrow()", "made", false, false, true]);
  expect(expected.length).toBeGreaterThan(20);
});

it("leaves a bundle built without keepNames alone", () => {
  expect(cheaperKeepNames(Buffer.from("var x = 1;\n"))).toBeUndefined();
});
