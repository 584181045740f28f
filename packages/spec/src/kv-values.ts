/**
 * What a kv store accepts, checked the same way by the SDK (at `set()`, before any network) and by
 * every provider (on each SetValue, so `@nitric/sdk` and any other client get the same answer): a
 * value is kept exactly or refused with a message naming the store, the key, where in the value the
 * problem is, and the fix. DynamoDB's limits hold everywhere, so a value the local provider keeps
 * is one AWS keeps too:
 *
 * - keys: non-empty, well-formed UTF-16 (a lone surrogate has no UTF-8 encoding, so two such keys
 *   would become the same key), at most 1024 UTF-8 bytes (DynamoDB's sort key limit);
 * - values: plain objects, arrays, strings (well-formed), finite numbers within DynamoDB's range
 *   (magnitude 1e-130 to 9.9999999999999999999999999999999999999e+125), booleans and null; no
 *   cycles; at most 31 objects and arrays inside one another, the value itself included (DynamoDB
 *   allows 32 levels of nesting and the AWS provider keeps the value in one map attribute);
 * - the whole item, as the AWS provider writes it (`_p` = the shard, `_k` = the key, `_v` = the value) and as
 *   DynamoDB counts it (UTF-8 names and strings, numbers by significant digits, 3 bytes per map or
 *   list and 1 per element), at most 400 KB.
 *
 * A JS number has at most 17 significant digits, within DynamoDB's 38, so every finite number in
 * range is kept exactly. Two normalisations, both JSON's: a property whose value is `undefined` is
 * left out (reading it gives `undefined` again), and `-0` is kept as `0`. Property order is not
 * kept (DynamoDB maps have none).
 */

/** Longest key, in UTF-8 bytes: DynamoDB's sort key limit (the AWS provider's key is the sort key). */
export const KV_MAX_KEY_BYTES = 1024;

/** Largest item, in bytes as DynamoDB counts them (400 KB). */
export const KV_MAX_ITEM_BYTES = 400 * 1024;

/** Most objects and arrays inside one another in a value, the value itself included (DynamoDB: 32 levels, the last a scalar). */
export const KV_MAX_DEPTH = 31;

/** Largest decimal exponent of a number DynamoDB stores (9.99…e+125). */
const MAX_EXPONENT = 125;
/** Smallest decimal exponent of a non-zero number DynamoDB stores (1e-130). */
const MIN_EXPONENT = -130;

/** `__proto__` and the names that escape it in DynamoDB attribute names (toAttributeName). */
const PROTO_NAME = /^\\*__proto__$/;

/**
 * Bytes of the item around the value: `_p` = the key's shard, "k#0" to "k#15", counted at its
 * longest (4), the name `_k` (its value is the key) and the name `_v`.
 */
const ITEM_OVERHEAD = 2 + 4 + 2 + 2;

/** How a message names the call: `kv("store").set("key")`. */
export function kvCall(store: string, operation: string, key: string): string {
  return `kv(${JSON.stringify(store)}).${operation}(${JSON.stringify(key)})`;
}

const q = JSON.stringify;

/** The first lone surrogate in `s`, as its index, or -1 when `s` is well-formed. */
function loneSurrogate(s: string): number {
  const wellFormed = (s as { isWellFormed?: () => boolean }).isWellFormed;
  if (wellFormed?.call(s)) return -1;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    if (c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
    }
    return i;
  }
  return -1;
}

const hex = (s: string, at: number) => `U+${s.charCodeAt(at).toString(16).toUpperCase()} at index ${at}`;

/** UTF-8 bytes of a well-formed string. */
function utf8Bytes(s: string): number {
  const n = s.length;
  if (n > 32) return Buffer.byteLength(s, "utf8");
  for (let i = 0; i < n; i++) if (s.charCodeAt(i) > 0x7f) return Buffer.byteLength(s, "utf8");
  return n;
}

/**
 * Why `key` cannot be a kv key, as a full message, or undefined when it can. `operation` names the
 * call in the message (`set`, `get`, `delete`); `call`, when given, names it instead (`data.set("k")`).
 */
export function kvKeyProblem(store: string, operation: string, key: unknown, call?: string): string | undefined {
  const where = () => call ?? `kv(${q(store)})`;
  if (typeof key !== "string") {
    return `${call ?? `${where()}.${operation}()`}: the key is ${describe(key)}; use a non-empty string`;
  }
  if (key.length === 0) return `${call ?? `${where()}.${operation}("")`}: the key is empty; use a non-empty string`;
  const lone = loneSurrogate(key);
  if (lone >= 0) {
    return `${call ?? kvCall(store, operation, key)}: the key has a lone surrogate (${hex(key, lone)}), which kv cannot store: UTF-8 has no encoding for it, so it would become another key; use well-formed text, such as key.toWellFormed()`;
  }
  const bytes = utf8Bytes(key);
  if (bytes > KV_MAX_KEY_BYTES) {
    return `${call ?? `${where()}.${operation}()`}: the key is ${bytes} bytes long and at most ${KV_MAX_KEY_BYTES} are allowed; use a shorter key`;
  }
  return undefined;
}

/**
 * Why `prefix` cannot select keys, or undefined when it can. `call`, when given, names the call in
 * the message instead of `kv(store).keys(prefix)` (`data.get("user:*")`).
 */
export function kvPrefixProblem(store: string, prefix: unknown, call?: string): string | undefined {
  if (typeof prefix !== "string") {
    return `${call ?? `kv(${q(store)}).keys()`}: the prefix is ${describe(prefix)}; use a string`;
  }
  const lone = loneSurrogate(prefix);
  if (lone < 0) return undefined;
  return `${call ?? `kv(${q(store)}).keys(${q(prefix)})`}: the prefix has a lone surrogate (${hex(prefix, lone)}), which no key has: use well-formed text, such as prefix.toWellFormed()`;
}

/** What a checked value needs before it is sent. */
export interface KvValueCheck {
  /** The message when the value is refused. */
  problem?: string;
  /** True when some property is `undefined`: send `withoutUndefined(value)`, which leaves them out. */
  hasUndefined: boolean;
  /** The item's size as DynamoDB counts it, in bytes (when refused, as far as the check went). */
  itemBytes: number;
}

/** How a message names the call and the value's root, for APIs built on kv (Ampt's `data.set`). */
export interface KvCheckOptions {
  /** Names the call, instead of `kv("store").set("key")`. */
  where?: string;
  /** The one property of the stored object that holds what the caller passed, named `value` in messages. */
  unwrap?: string;
}

/** A JS expression for a path inside the value: `value.a[3]["b c"]`. */
function pathText(path: readonly (string | number)[], unwrap?: string): string {
  let out = "value";
  for (const [i, p] of path.entries()) {
    if (i === 0 && p === unwrap) continue;
    if (typeof p === "number") out += `[${p}]`;
    else {
      const name = p.length > 40 ? `${p.slice(0, 40)}…` : p;
      out += /^[A-Za-z_$][\w$]*$/.test(p) ? `.${name}` : `[${q(name)}]`;
    }
  }
  return out;
}

/** A value's kind, as a message says it: "a BigInt", "an instance of Foo". */
function describe(v: unknown): string {
  if (v === null) return "null";
  switch (typeof v) {
    case "undefined":
      return "undefined";
    case "bigint":
      return "a BigInt";
    case "symbol":
      return "a symbol";
    case "function":
      return "a function";
    case "string":
      return "a string";
    case "number":
      return "a number";
    case "boolean":
      return "a boolean";
    default: {
      if (Array.isArray(v)) return "an array";
      const name = constructorName(v as object);
      if (name === undefined) return "an object";
      return /^[AEIO]/.test(name) ? `an ${name}` : `a ${name}`;
    }
  }
}

function constructorName(o: object): string | undefined {
  try {
    const proto = Object.getPrototypeOf(o) as { constructor?: { name?: unknown } } | null;
    const name = proto?.constructor?.name;
    return typeof name === "string" && name !== "" ? name : undefined;
  } catch {
    return undefined;
  }
}

/** The fix for an object kv cannot store, by its class. */
function objectFix(name: string | undefined): string {
  switch (name) {
    case "Date":
      return "use a string, such as date.toISOString(), or a number, such as date.getTime()";
    case "Map":
      return "use a plain object, such as Object.fromEntries(map)";
    case "Set":
      return "use an array, such as [...set]";
    case "String":
    case "Number":
    case "Boolean":
      return "use the primitive, such as x.valueOf()";
    case "Promise":
      return "await it first";
    case "RegExp":
      return "use its source as a string";
    case "ArrayBuffer":
    case "SharedArrayBuffer":
    case "Buffer":
    case "DataView":
      return 'use a base64 string, such as Buffer.from(bytes).toString("base64")';
    default:
      if (name?.endsWith("Array"))
        return 'use a base64 string, such as Buffer.from(bytes).toString("base64"), or a plain array';
      if (name?.endsWith("Error")) return "use its message as a string";
      return "copy the fields to keep into a plain object";
  }
}

/** True for an object literal's or array literal's prototype, from this realm or another (a vm context). */
function isPlainPrototype(proto: object | null, name: "Object" | "Array"): boolean {
  if (proto === null) return name === "Object";
  if (proto === (name === "Object" ? Object.prototype : Array.prototype)) return true;
  const ctor = (proto as { constructor?: { name?: unknown } }).constructor;
  const grand = Object.getPrototypeOf(proto) as object | null;
  return typeof ctor === "function" && ctor.name === name && (name === "Object" ? grand === null : grand !== null);
}

class Refused {
  constructor(readonly message: string) {}
}

/** Size in bytes DynamoDB counts for a number (as dynalite computes it: 1 byte per 2 significant digits, and more). */
function numberBytes(x: number, path: () => string, where: () => string): number {
  if (x === 0) return 1;
  let digits: number;
  let exponent: number;
  const abs = Math.abs(x);
  if (Number.isSafeInteger(abs)) {
    let m = abs;
    let zeros = 0;
    while (m % 10 === 0) {
      m /= 10;
      zeros++;
    }
    digits = 1;
    while (m >= 10) {
      m = Math.floor(m / 10);
      digits++;
    }
    exponent = digits + zeros - 1;
  } else {
    const text = abs.toExponential();
    const e = text.indexOf("e");
    digits = text.slice(0, e).replace(".", "").replace(/0+$/, "").length;
    exponent = Number(text.slice(e + 1));
  }
  if (exponent > MAX_EXPONENT || exponent < MIN_EXPONENT) {
    throw new Refused(
      `${where()}: ${path()} is ${String(x)}, outside the range of numbers DynamoDB stores (magnitude 1e-130 to 9.9999999999999999999999999999999999999e+125), which kv cannot store: store it as a string`,
    );
  }
  return 1 + Math.ceil(digits / 2) + (digits % 2 || exponent % 2 ? 0 : 1) + (x < 0 ? 1 : 0);
}

/**
 * Checks a value for `kv(store).set(key, value)`; the key is assumed checked (kvKeyProblem). The
 * first problem found, in property order, is the one reported.
 */
export function checkKvValue(store: string, key: string, value: unknown, options: KvCheckOptions = {}): KvValueCheck {
  const where = () => options.where ?? kvCall(store, "set", key);
  const text = (p: readonly (string | number)[]) => pathText(p, options.unwrap);
  const path: (string | number)[] = [];
  const stack: object[] = [];
  let size = ITEM_OVERHEAD + utf8Bytes(key);
  let hasUndefined = false;

  const grow = (n: number) => {
    size += n;
    if (size > KV_MAX_ITEM_BYTES) {
      throw new Refused(
        `${where()}: the value is over ${KV_MAX_ITEM_BYTES} bytes as a DynamoDB item (key, property names and values counted as DynamoDB counts them), and DynamoDB allows at most ${KV_MAX_ITEM_BYTES} (400 KB): keep large data elsewhere, or split it across keys`,
      );
    }
  };

  const refuse = (what: string, fix: string): never => {
    throw new Refused(`${where()}: ${text(path)} ${what}, which kv cannot store: ${fix}`);
  };

  const string = (s: string, what: "is a string" | "has a property name") => {
    const lone = loneSurrogate(s);
    if (lone >= 0) {
      refuse(
        `${what} with a lone surrogate (${hex(s, lone)})`,
        `UTF-8 has no encoding for it; use well-formed text, such as ${what === "is a string" ? "text" : "name"}.toWellFormed()`,
      );
    }
    return utf8Bytes(s);
  };

  /** Counts one value (not its name) into the item's size; objects and arrays recursively. */
  const visit = (v: unknown, inArray: boolean): void => {
    if (v === null) {
      grow(1);
      return;
    }
    switch (typeof v) {
      case "string":
        grow(string(v, "is a string"));
        return;
      case "number":
        if (!Number.isFinite(v)) refuse(`is ${String(v)}`, "use null or a finite number");
        grow(numberBytes(v, () => text(path), where));
        return;
      case "boolean":
        grow(1);
        return;
      case "undefined":
        if (inArray) refuse("is undefined", "use null");
        return;
      case "bigint":
        refuse("is a BigInt", "use a string or a number");
        return;
      case "symbol":
        refuse("is a symbol", "use a string");
        return;
      case "function":
        refuse("is a function", "leave it out");
        return;
    }
    const o = v as object;
    const at = stack.indexOf(o);
    if (at >= 0) refuse(`refers back to ${text(path.slice(0, at))} (a cycle)`, "break the cycle");
    if (stack.length >= KV_MAX_DEPTH) {
      refuse(
        `is nested ${stack.length + 1} objects or arrays deep`,
        `DynamoDB allows ${KV_MAX_DEPTH} (its limit of 32 nesting levels, counting the value itself and the scalar at the end); flatten the value`,
      );
    }
    const array = Array.isArray(o);
    if (!isPlainPrototype(Object.getPrototypeOf(o) as object | null, array ? "Array" : "Object")) {
      refuse(`is ${describe(o)}`, objectFix(constructorName(o)));
    }
    for (const s of Object.getOwnPropertySymbols(o)) {
      if (Object.prototype.propertyIsEnumerable.call(o, s)) {
        refuse(`has a property named by a symbol (${String(s)})`, "use a string name");
      }
    }
    // A map or list: 3 bytes, then 1 per element, plus each element's name (maps) and value.
    grow(3);
    stack.push(o);
    if (array) {
      const a = o as unknown[];
      for (let i = 0; i < a.length; i++) {
        path.push(i);
        if (!(i in a)) refuse("is an empty slot of a sparse array", "fill it, such as with null");
        grow(1);
        visit(a[i], true);
        path.pop();
      }
    } else {
      const r = o as Record<string, unknown>;
      for (const name of Object.keys(r)) {
        const item = r[name];
        if (item === undefined) {
          hasUndefined = true;
          continue;
        }
        // Bytes of the name as the AWS provider stores it (toAttributeName adds one to `__proto__`).
        grow(1 + string(name, "has a property name") + (name.endsWith("__proto__") && PROTO_NAME.test(name) ? 1 : 0));
        path.push(name);
        visit(item, false);
        path.pop();
      }
    }
    stack.pop();
  };

  try {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new Refused(
        `${options.where ?? `kv(${q(store)})`}: set(${q(key)}) needs a JSON object, got ${describe(value)}; ${
          // Wrapping alone would not do for a value JSON cannot hold.
          typeof value === "bigint"
            ? "store it as text in one, such as { value: n.toString() }"
            : typeof value === "function" || typeof value === "symbol" || value === undefined
              ? "pass one"
              : "wrap it, such as { value: ... }"
        }`,
      );
    }
    visit(value, false);
    return { hasUndefined, itemBytes: size };
  } catch (error) {
    if (error instanceof Refused) return { problem: error.message, hasUndefined, itemBytes: size };
    throw error;
  }
}

/**
 * Why `kv(store).set(key, value)` would be refused, as a full message, or undefined when the value
 * is kept exactly (but for an `undefined` property left out and -0 kept as 0).
 */
export function kvValueProblem(store: string, key: string, value: unknown): string | undefined {
  return kvKeyProblem(store, "set", key) ?? checkKvValue(store, key, value).problem;
}

/**
 * The DynamoDB attribute name the AWS provider keeps a property under: the name itself, but for
 * `__proto__` and the names that escape it (`\__proto__`, `\\__proto__`, ...), which get one more
 * backslash in front. DynamoDB takes any name, but code between here and it (dynalite, which
 * `run --provider aws` uses, among others) loses a `__proto__` attribute; the escape is one-to-one.
 */
export function toAttributeName(name: string): string {
  return PROTO_NAME.test(name) ? `\\${name}` : name;
}

/** The property name of a DynamoDB attribute name (the inverse of toAttributeName). */
export function fromAttributeName(name: string): string {
  return name.length > 9 && PROTO_NAME.test(name) ? name.slice(1) : name;
}

/** Sets `o[name] = v` as an own data property, also for `__proto__` (which assignment would turn into a prototype). */
export function setOwn<T>(o: Record<string, T>, name: string, v: T): void {
  if (name === "__proto__")
    Object.defineProperty(o, name, { value: v, enumerable: true, writable: true, configurable: true });
  else o[name] = v;
}

/** A copy of a checked value without its `undefined` properties (what JSON.stringify leaves out too). */
export function withoutUndefined<T>(value: T): T {
  if (typeof value !== "object" || value === null) return value;
  if (Array.isArray(value)) return value.map((v) => withoutUndefined(v)) as T;
  const out: Record<string, unknown> = {};
  for (const name of Object.keys(value)) {
    const v = (value as Record<string, unknown>)[name];
    if (v !== undefined) setOwn(out, name, withoutUndefined(v));
  }
  return out as T;
}
