// The native __async helper against the one the published @nitric/sdk carries (read from the
// installed package, the oracle): the same generators through each, and what their callers see,
// results, rejections, `this`, arguments and the order of every step among other microtasks, must
// be the same.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";
import { ESBUILD_ASYNC_HELPER, NATIVE_ASYNC_HELPER, withNativeAsync } from "./native-async.js";

type AsyncHelper = (
  self: unknown,
  args: unknown[] | null,
  generator: (...args: unknown[]) => Generator,
) => Promise<unknown>;

// The published package as the conformance suite installs it.
const conformance = fileURLToPath(new URL("../../../conformance/package.json", import.meta.url));
const published = readFileSync(createRequire(conformance).resolve("@nitric/sdk"), "utf8");

const helper = (source: string) => new Function(`${source}\nreturn __async;`)() as AsyncHelper;

it("finds esbuild's helper in the published @nitric/sdk, and keeps the file's line count", () => {
  expect(published).toContain(ESBUILD_ASYNC_HELPER);
  const patched = withNativeAsync(published) as string;
  expect(patched).not.toContain(ESBUILD_ASYNC_HELPER);
  expect(patched.split("\n").length).toBe(published.split("\n").length);
  expect(withNativeAsync("var __async = somethingElse;")).toBeUndefined();
});

/** Runs `scenario` with a helper, logging its steps between those of a steady microtask clock. */
async function observe(asyncHelper: AsyncHelper, scenario: (run: AsyncHelper, log: string[]) => Promise<unknown>[]) {
  const log: string[] = [];
  let ticking = true;
  const clock = async () => {
    for (let t = 0; ticking && t < 50; t++) {
      log.push(`tick ${t}`);
      await null;
    }
  };
  const ticks = clock();
  const outcomes = await Promise.allSettled(scenario(asyncHelper, log));
  ticking = false;
  await ticks;
  return { log, outcomes };
}

const thenable = (value: unknown) => ({
  // biome-ignore lint/suspicious/noThenProperty: a thenable is what this case is about
  then: (resolve: (v: unknown) => void) => resolve(value),
});

const scenarios: Record<string, (run: AsyncHelper, log: string[]) => Promise<unknown>[]> = {
  "returns at once": (run, log) => [
    // biome-ignore lint/correctness/useYield: an async function with no await compiles to this
    run(null, null, function* () {
      log.push("body");
      return 1;
    }),
  ],
  "yields values, promises and thenables": (run, log) => [
    run(null, null, function* () {
      const a = yield 1;
      log.push(`a ${a}`);
      const b = yield Promise.resolve(2);
      log.push(`b ${b}`);
      const c = yield thenable(3);
      log.push(`c ${c}`);
      return Promise.resolve(a + b + c);
    }),
  ],
  "catches a rejection it yielded": (run, log) => [
    run(null, null, function* () {
      try {
        yield Promise.reject(new Error("no"));
      } catch (error) {
        log.push(`caught ${(error as Error).message}`);
      }
      return "after";
    }),
  ],
  "rejects with an uncaught rejection or a throw": (run, log) => [
    run(null, null, function* () {
      yield Promise.reject(new Error("uncaught"));
      log.push("never");
    }),
    // biome-ignore lint/correctness/useYield: an async function that throws before any await
    run(null, null, function* () {
      log.push("before the throw");
      throw new Error("at once");
    }),
    run(null, null, function* () {
      yield 1;
      throw new Error("later");
    }),
  ],
  "passes this and the arguments": (run) => [
    run({ name: "self" }, ["x", "y"], function* (this: { name: string }, ...args: unknown[]) {
      yield null;
      return `${this.name} ${args.join(",")}`;
    }),
  ],
  "interleaves two calls as the original does": (run, log) =>
    ["first", "second"].map((name) =>
      run(null, null, function* () {
        for (let i = 0; i < 3; i++) {
          log.push(`${name} ${i}`);
          yield i % 2 === 0 ? i : Promise.resolve(i);
        }
        return name;
      }),
    ),
};

for (const [name, scenario] of Object.entries(scenarios)) {
  it(`behaves as esbuild's helper: ${name}`, async () => {
    const expected = await observe(helper(ESBUILD_ASYNC_HELPER), scenario);
    const actual = await observe(helper(NATIVE_ASYNC_HELPER), scenario);
    expect(actual.outcomes).toEqual(expected.outcomes);
    expect(actual.log).toEqual(expected.log);
  });
}
