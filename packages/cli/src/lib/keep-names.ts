/**
 * esbuild's `keepNames` for less. With it, esbuild calls its `__name` helper on every named
 * function and class as it is made, and the helper sets the function's `name` with
 * `Object.defineProperty`, even when the name is already the one it sets (the binding was not
 * renamed), which is nearly always. That gives each closure a map of its own, made anew at every
 * call of code that makes closures: grpc-js makes several for every call, so in a service process
 * (`run --processes`, our SDK over gRPC) the kv benchmark's `get` ran 3,276 and 3,543 calls/s with
 * esbuild's helper against 4,230 and 4,446 with this one (`bench/kv.mjs`, one in flight, best of
 * 5 rounds, runs taking turns, 2026-12-06) and `keys` 2,680 and 3,059 against 3,339 and 3,480;
 * without keepNames at all, 4,237 and 4,071.
 *
 * The helper written here sets the name only when it differs, so every function and class ends
 * with the same `name` property as under esbuild's helper: the same value, not writable, not
 * enumerable, configurable (keep-names.test.ts compares the two on one bundle).
 */

/** esbuild's helper, as it writes it in a bundle that is not minified (esbuild 0.28). */
export const ESBUILD_NAME_HELPER =
  'var __name = (target, value) => __defProp(target, "name", { value, configurable: true });';

/** The same helper, that leaves a name that is already right as it is. */
export const CHEAPER_NAME_HELPER =
  'var __name = (target, value) => target.name === value ? target : __defProp(target, "name", { value, configurable: true });';

/**
 * The bundle `bytes` with esbuild's `__name` helper replaced by the cheaper one, or undefined when
 * it has none (a bundle built without keepNames). The helper is a line of its own, so the columns
 * of every other line, and with them the source map, stay as they were.
 */
export function cheaperKeepNames(bytes: Buffer): Buffer | undefined {
  const at = bytes.indexOf(ESBUILD_NAME_HELPER);
  if (at < 0) return undefined;
  return Buffer.concat([
    bytes.subarray(0, at),
    Buffer.from(CHEAPER_NAME_HELPER),
    bytes.subarray(at + ESBUILD_NAME_HELPER.length),
  ]);
}
