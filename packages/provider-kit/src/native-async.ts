/**
 * The published @nitric/sdk is JavaScript that esbuild compiled for targets without async
 * functions: each `async` function became `__async(this, arguments, function* (...) {...})`, a
 * generator, made anew at every call, run by esbuild's `__async` helper. A service's thread bundle
 * (`run`, packages/cli's bundle.ts) and its AWS function's bundle (providers/aws's bundle.ts) turn
 * those back into native async functions, in two steps, for two measured costs:
 *
 * 1. withNativeAsyncFunctions: each such call becomes `(async function (...) {...}).apply(this,
 *    arguments)`, the generator's own `yield`s as `await`s. Why: V8 gives every generator function
 *    it instantiates an initial map of its own, and maps live in the old generation and point back
 *    at their function (heap snapshots show the chain), and so at the variables it closes over. Every call of the package's async
 *    functions (per message: the event's handler, the handler chain, each send) left what it
 *    touched reachable from the old generation until the next full GC: each young GC of an
 *    @nitric/sdk echo's service thread kept about 2 MB and promoted it at the next, a full GC
 *    followed every 20-25 young ones, and GC took a fifth of the thread (BENCHMARKS.md, Echo).
 *    Async functions have no such map. Measured in 6 alternating pairs of that echo (50 clients):
 *    server CPU per message 45.0 -> 36.2 µs, msgs/s 25.6k -> 30.2k (medians), nothing promoted.
 * 2. withNativeAsync: the `__async` helper itself, found by its exact text, becomes one that runs a
 *    generator on a native async function, for the calls step 1 leaves (none in @nitric/sdk 1.2.2).
 *    esbuild's helper makes three named closures per call, each wrapped by the bundle's keepNames
 *    in an Object.defineProperty: in 16 alternating pairs the server's CPU per message went
 *    56.8 -> 50.0 µs.
 *
 * native-async.test.ts holds both to esbuild's: code esbuild lowered, run as it is and rewritten,
 * and the same generators through the package's helper and the native one; what callers see and
 * the order of every step among other microtasks must match. A file without esbuild's helper is
 * loaded as it is, and one that does not parse keeps its generators (step 2 only).
 */
import { parse } from "acorn";

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

/** `source` with esbuild's `__async` helper replaced by the native one (step 2), or undefined when it has none. */
export function withNativeAsync(source: string): string | undefined {
  const at = source.indexOf(ESBUILD_ASYNC_HELPER);
  if (at < 0) return undefined;
  return source.slice(0, at) + NATIVE_ASYNC_HELPER + source.slice(at + ESBUILD_ASYNC_HELPER.length);
}

/** An ESTree node as acorn gives it: a type, its place in the source, and its children. */
interface AstNode {
  type: string;
  start: number;
  end: number;
  [key: string]: unknown;
}

const isNode = (value: unknown): value is AstNode =>
  typeof value === "object" && value !== null && typeof (value as AstNode).type === "string";

function children(node: AstNode): AstNode[] {
  const out: AstNode[] = [];
  for (const key of Object.keys(node)) {
    const value = node[key];
    if (Array.isArray(value)) for (const item of value) if (isNode(item)) out.push(item);
    if (isNode(value)) out.push(value);
  }
  return out;
}

const FUNCTION = new Set(["FunctionExpression", "FunctionDeclaration", "ArrowFunctionExpression"]);

/**
 * The `yield`s of a generator's own body (not of the functions inside it), or undefined when the
 * body cannot become an async function's as it is: a `yield*`, or an identifier named `await`.
 */
function ownYields(body: AstNode): AstNode[] | undefined {
  const yields: AstNode[] = [];
  let convertible = true;
  const walk = (node: AstNode): void => {
    if (node.type === "Identifier" && node.name === "await") convertible = false;
    if (FUNCTION.has(node.type)) {
      // A nested function keeps its own yields, but no name of it may be `await` either.
      const inner = (n: AstNode): void => {
        if (n.type === "Identifier" && n.name === "await") convertible = false;
        for (const c of children(n)) inner(c);
      };
      inner(node);
      return;
    }
    if (node.type === "YieldExpression") {
      if (node.delegate) convertible = false;
      yields.push(node);
    }
    for (const child of children(node)) walk(child);
  };
  walk(body);
  return convertible ? yields : undefined;
}

/**
 * Step 1: `source` with every `__async(SELF, ARGS, function* (PARAMS) { BODY })` rewritten as
 * `(async function (PARAMS) { BODY }).apply(SELF, ARGS)`, each `yield X` of the generator's own
 * body as `await (X)` (a bare `yield` as `await void 0`). The same `this`, arguments and
 * `arguments` object; the body runs at once up to its first await, as the generator ran up to its
 * first yield. No line is added or removed. Undefined when the source does not parse as a script
 * or a module, or has no such call.
 */
export function withNativeAsyncFunctions(
  source: string,
): { source: string; converted: number; left: number } | undefined {
  let ast: AstNode;
  try {
    ast = parse(source, { ecmaVersion: "latest", sourceType: "script", allowHashBang: true }) as unknown as AstNode;
  } catch {
    try {
      ast = parse(source, { ecmaVersion: "latest", sourceType: "module", allowHashBang: true }) as unknown as AstNode;
    } catch {
      return undefined;
    }
  }
  const edits: [start: number, end: number, text: string][] = [];
  let converted = 0;
  let left = 0;
  const visit = (node: AstNode): void => {
    const callee = node.callee as AstNode | undefined;
    const args = node.arguments as AstNode[] | undefined;
    if (
      node.type === "CallExpression" &&
      callee?.type === "Identifier" &&
      callee.name === "__async" &&
      args?.length === 3
    ) {
      const [self, argv, fn] = args as [AstNode, AstNode, AstNode];
      const body = fn.body as AstNode;
      const head = /^function\s*\*\s*/.exec(source.slice(fn.start, body.start));
      const yields = fn.type === "FunctionExpression" && fn.generator && !fn.async ? ownYields(body) : undefined;
      if (head && yields) {
        converted++;
        edits.push([node.start, fn.start, "("]);
        edits.push([fn.start, fn.start + head[0].length, "async function "]);
        edits.push([
          fn.end,
          node.end,
          `).apply(${source.slice(self.start, self.end)}, ${source.slice(argv.start, argv.end)})`,
        ]);
        for (const y of yields) {
          const argument = y.argument as AstNode | null;
          if (argument) {
            edits.push([y.start, argument.start, "await ("]);
            edits.push([argument.end, argument.end, ")"]);
          } else edits.push([y.start, y.end, "await void 0"]);
        }
      } else left++;
    }
    for (const child of children(node)) visit(child);
  };
  visit(ast);
  if (converted === 0) return undefined;
  // From the end of the file back, so every edit's offsets still hold; at one offset, the insert
  // that closes an outer `await (` goes after an inner call's `).apply(...)`.
  edits.sort((a, b) => b[0] - a[0] || b[1] - a[1]);
  let out = source;
  for (const [start, end, text] of edits) out = out.slice(0, start) + text + out.slice(end);
  return { source: out, converted, left };
}

/**
 * What a thread bundle loads for an @nitric/* file: both steps, for a file that carries esbuild's
 * helper (so that `__async` is that helper); undefined to load the file as it is.
 */
export function nativeAsync(source: string): string | undefined {
  if (!source.includes(ESBUILD_ASYNC_HELPER)) return undefined;
  const functions = withNativeAsyncFunctions(source);
  return withNativeAsync(functions?.source ?? source);
}
