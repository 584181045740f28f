/**
 * The published @nitric/sdk is JavaScript that esbuild compiled for targets without async
 * functions: each `async` function became a generator run by esbuild's `__async` helper, which
 * makes three named closures per call (fulfilled, rejected, step). A service's thread bundle keeps
 * function names (bundle.ts: esbuild's keepNames), which wraps each of those in `__name`, an
 * Object.defineProperty per closure: in a `--cpu-prof` of an @nitric/sdk echo's service thread the
 * helper, `__name` and the property sets under it took about a fifth of the thread's busy time.
 *
 * So when a thread bundle takes in an @nitric/* file, its `__async` helper, found by its exact
 * text, becomes one that runs the same generator with a native async function: no closure per
 * step. Measured in 16 alternating pairs of an @nitric/sdk echo service under load (50 clients):
 * the server's CPU per message 56.8 -> 50.0 µs, msgs/s +15 % (medians; BENCHMARKS.md, Echo).
 * native-async.test.ts runs the same generators through the package's own helper and through this
 * one and compares what each caller sees, the order of their steps included. A file whose helper
 * reads otherwise is left as it is.
 */

/** esbuild's helper, as it stands in @nitric/sdk 1.2.2's lib/index.js. */
export const ESBUILD_ASYNC_HELPER = `var __async = (__this, __arguments, generator) => {
  return new Promise((resolve, reject) => {
    var fulfilled = (value) => {
      try {
        step(generator.next(value));
      } catch (e) {
        reject(e);
      }
    };
    var rejected = (value) => {
      try {
        step(generator.throw(value));
      } catch (e) {
        reject(e);
      }
    };
    var step = (x) => x.done ? resolve(x.value) : Promise.resolve(x.value).then(fulfilled, rejected);
    step((generator = generator.apply(__this, __arguments)).next());
  });
};`;

/**
 * The same contract on a native async function: the generator starts at once (its code up to the
 * first yield runs before __async returns), each yielded value is awaited and sent back in (a
 * rejection thrown in), and the promise settles with what it returns or throws.
 */
const NATIVE = `var __async = (__this, __arguments, generator) => (async () => {
  const it = generator.apply(__this, __arguments);
  let step = it.next();
  while (!step.done) {
    let value;
    try {
      value = await step.value;
    } catch (error) {
      step = it.throw(error);
      continue;
    }
    step = it.next(value);
  }
  return step.value;
})();`;

const lines = (text: string) => text.split("\n").length;

/** The native helper, padded to the line count of esbuild's, so the rest of the file keeps its line numbers (stack traces, source maps). */
export const NATIVE_ASYNC_HELPER = NATIVE + "\n".repeat(lines(ESBUILD_ASYNC_HELPER) - lines(NATIVE));

/** `source` with esbuild's `__async` helper replaced by the native one, or undefined when it has none. */
export function withNativeAsync(source: string): string | undefined {
  const at = source.indexOf(ESBUILD_ASYNC_HELPER);
  if (at < 0) return undefined;
  return source.slice(0, at) + NATIVE_ASYNC_HELPER + source.slice(at + ESBUILD_ASYNC_HELPER.length);
}
