// The thread bundle's native async functions against esbuild's lowering of them (the oracle):
// the native __async helper against the one the published @nitric/sdk carries (read from the
// installed package), and async code lowered by esbuild run as it is and rewritten into native
// async functions. What callers see, results, rejections, `this`, arguments and the order of every
// step among other microtasks, must be the same.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { parse } from "acorn";
import { transformSync } from "esbuild";
import { expect, it } from "vitest";
import {
  ESBUILD_ASYNC_HELPER,
  NATIVE_ASYNC_HELPER,
  nativeAsync,
  withNativeAsync,
  withNativeAsyncFunctions,
} from "./native-async.js";

type AsyncHelper = (
  self: unknown,
  args: unknown[] | null,
  generator: (...args: unknown[]) => Generator,
) => Promise<unknown>;

// The published package as the conformance suite installs it.
const conformance = fileURLToPath(new URL("../../conformance/package.json", import.meta.url));
const published = readFileSync(createRequire(conformance).resolve("@nitric/sdk"), "utf8");

const helper = (source: string) => new Function(`${source}\nreturn __async;`)() as AsyncHelper;

it("finds esbuild's helper in the published @nitric/sdk, and keeps the file's line count", () => {
  expect(published).toContain(ESBUILD_ASYNC_HELPER);
  const patched = withNativeAsync(published) as string;
  expect(patched).not.toContain(ESBUILD_ASYNC_HELPER);
  expect(patched.split("\n").length).toBe(published.split("\n").length);
  expect(withNativeAsync("var __async = somethingElse;")).toBeUndefined();
});

it("rewrites every lowered async function of the published @nitric/sdk, keeping its line count", () => {
  const rewritten = withNativeAsyncFunctions(published);
  expect(rewritten?.converted).toBeGreaterThan(50);
  expect(rewritten?.left).toBe(0);
  const source = rewritten?.source ?? "";
  expect(source.split("\n").length).toBe(published.split("\n").length);
  expect(() => parse(source, { ecmaVersion: "latest", sourceType: "script" })).not.toThrow();
  // Nothing is left to rewrite, and the helper itself is replaced too (for calls a file may keep).
  expect(withNativeAsyncFunctions(source)).toBeUndefined();
  const loaded = nativeAsync(published) ?? "";
  expect(loaded).not.toContain(ESBUILD_ASYNC_HELPER);
  expect(loaded).toContain("(async function (");
  expect(nativeAsync("const x = __async(this, null, function* () { yield 1; });")).toBeUndefined();
});

it("leaves a generator it cannot turn into an async function as it is", () => {
  const code = `${ESBUILD_ASYNC_HELPER}
const a = __async(this, null, function* () { yield* other(); });
const b = __async(this, null, function* () { var await = 1; yield await; });
const c = __async(this, null, function* () { return yield 1; });`;
  const rewritten = withNativeAsyncFunctions(code);
  expect(rewritten?.converted).toBe(1);
  expect(rewritten?.left).toBe(2);
  expect(rewritten?.source).toContain("yield* other()");
  expect(rewritten?.source).toContain("(async function () { return await (1); }).apply(this, null)");
});

/** Runs `start`, logging its steps between those of a steady microtask clock. */
async function observeRun(start: (log: string[]) => Promise<unknown>[]) {
  const log: string[] = [];
  let ticking = true;
  const clock = async () => {
    for (let t = 0; ticking && t < 50; t++) {
      log.push(`tick ${t}`);
      await null;
    }
  };
  const ticks = clock();
  const outcomes = await Promise.allSettled(start(log));
  ticking = false;
  await ticks;
  return { log, outcomes };
}

/** Runs `scenario` with a helper, logging its steps between those of a steady microtask clock. */
const observe = (asyncHelper: AsyncHelper, scenario: (run: AsyncHelper, log: string[]) => Promise<unknown>[]) =>
  observeRun((log) => scenario(asyncHelper, log));

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

// Async code as users and @nitric/sdk write it; each defines scenario(log), which starts its calls
// and returns their promises. esbuild lowers it (target es2016, as for @nitric/sdk's build).
const sources: Record<string, string> = {
  "awaits values, promises and thenables, in expressions": `
    const thenable = (v) => ({ then: (resolve) => resolve(v) });
    async function f(x) {
      const a = await x;
      log("a " + a);
      const b = 1 + await Promise.resolve(2) * 3;
      log("b " + b);
      const c = (await thenable(false)) || "fallback";
      log("c " + c);
      return Promise.resolve(a + b + c);
    }
    function scenario(log) { return [f(1), f(Promise.resolve("p"))]; }`,
  "keeps this, arguments and default parameters": `
    class Greeter {
      constructor(name) { this.name = name; }
      async greet(who, greeting = "hello") {
        await null;
        return greeting + " " + who + " from " + this.name + " (" + arguments.length + ")";
      }
    }
    const self = { name: "outer", later() { return (async () => { await 0; return this.name; })(); } };
    function scenario(log) { const g = new Greeter("g"); return [g.greet("ann"), g.greet("bob", "hi"), self.later()]; }`,
  "rejects, catches and runs finally blocks": `
    async function fails() { await 1; throw new Error("later"); }
    async function throwsAtOnce() { log("before"); throw new Error("at once"); }
    async function recovers() {
      try { await Promise.reject(new Error("no")); }
      catch (e) { log("caught " + e.message); await 2; }
      finally { log("finally"); await 3; log("after finally await"); }
      return "recovered";
    }
    function scenario(log) { return [fails(), throwsAtOnce(), recovers()]; }`,
  "loops, nested async functions and for await": `
    async function* numbers() { yield 1; yield 2; }
    async function loops() {
      let sum = 0;
      for (let i = 0; i < 3; i++) { sum += await i; log("i " + i); }
      for await (const n of numbers()) { sum += n; log("n " + n); }
      for await (const m of [Promise.resolve(10), 20]) { sum += m; log("m " + m); }
      const inner = async (k) => { await null; log("inner " + k); return k * 2; };
      sum += (await Promise.all([inner(1), inner(2)])).reduce((p, q) => p + q);
      return sum;
    }
    function scenario(log) { return [loops()]; }`,
  "interleaves calls as the original does": `
    async function worker(name) {
      for (let i = 0; i < 3; i++) { log(name + " " + i); await (i % 2 === 0 ? i : Promise.resolve(i)); }
      return name;
    }
    function scenario(log) { return ["first", "second"].map(worker); }`,
};

/** Runs lowered code: its scenario(log), with log pushing to the observer's log. */
const runner = (code: string) => (log: string[]) =>
  new Function("log", `${code}\nreturn scenario(log);`)((step: string) => log.push(step)) as Promise<unknown>[];

for (const [name, source] of Object.entries(sources)) {
  it(`runs esbuild's lowered code the same once rewritten: ${name}`, async () => {
    const lowered = transformSync(source, { target: "es2016", loader: "js" }).code;
    expect(lowered).toContain("__async(");
    const rewritten = withNativeAsyncFunctions(lowered);
    expect(rewritten?.converted).toBeGreaterThan(0);
    expect(rewritten?.source).not.toMatch(/__async\(/);
    const expected = await observeRun(runner(lowered));
    const actual = await observeRun(runner(rewritten?.source ?? ""));
    expect(actual.outcomes).toEqual(expected.outcomes);
    expect(actual.log).toEqual(expected.log);
  });
}
