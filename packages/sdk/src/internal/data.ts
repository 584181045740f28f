/** Payload encoding: what users send becomes bytes plus a frame kind. */
/** A JSON value: what kv stores hold and what send() turns into JSON text. */
export type JsonValue = number | string | boolean | null | JsonObject | JsonValue[];
/** A JSON object: the value type of kv stores. */
export type JsonObject = { [key: string]: JsonValue };

/**
 * The check kv() and collection() put on their value type `T`: an object whose properties are JSON
 * values, nested objects and arrays included. An interface passes as a type alias does (neither
 * has to be a JsonObject: an interface has no index signature, so `kv<Profile>` failed with
 * "Index signature for type 'string' is missing"); a Date, a Map, a Set, a function or a bigint
 * does not, and the type error names it with the fix ("a Date is not JSON: store
 * date.toISOString() or date.getTime()"). An optional property may be undefined: kv leaves such a
 * property out. Class instances pass as interfaces do (types cannot tell them apart); `set()`
 * refuses them at run time.
 */
export type JsonObjectOf<T> = { [K in keyof T]: JsonValueOf<T[K]> };
/** A property type JsonObjectOf accepts, as it would be checked. */
export type JsonValueOf<V> = V extends JsonValue | undefined
  ? V
  : V extends readonly unknown[]
    ? { [I in keyof V]: JsonValueOf<V[I]> }
    : // What JSON cannot hold is checked against a sentence, which the type error then shows.
      V extends Date
      ? "a Date is not JSON: store date.toISOString() or date.getTime()"
      : V extends ReadonlyMap<unknown, unknown> | ReadonlySet<unknown>
        ? "a Map or a Set is not JSON: store a plain object or an array"
        : V extends bigint
          ? "a bigint is not JSON: store a string or a number"
          : V extends (...args: never[]) => unknown
            ? "a function is not JSON"
            : V extends object
              ? JsonObjectOf<V>
              : "not JSON: use a string, number, boolean, null, array or plain object";

/**
 * The check websocket() puts on a connection's identity type (`ctx.auth`): what the authorizer
 * returns crosses the wire as JSON (at most 8 KB), so it must be a JSON value, checked as
 * JsonValueOf checks a property (a Date or a Map is a type error naming the fix). `unknown`
 * (nothing declared, nothing inferred) passes. (`[T] extends [infer U]` keeps the check from
 * being a circular constraint of the type parameter it checks.)
 */
export type IdentityOf<T> = [T] extends [infer U] ? (unknown extends U ? U : JsonValueOf<U>) : never;

/**
 * The check websocket() puts on a connection's state type (`ctx.connection.state`): a JSON value,
 * as JsonValueOf checks a property. `unknown` (nothing declared) passes.
 */
export type StateOf<T> = [T] extends [infer U] ? (unknown extends U ? U : JsonValueOf<U>) : never;

/** Anything the SDK can send: text, bytes, or a value sent as JSON text. */
export type Payload = string | Uint8Array | ArrayBuffer | JsonValue | object;

import { NitricLikeError } from "../errors.js";

const encoder = new TextEncoder();

/** Strings up to this length are tried as ASCII first (see utf8Bytes). */
const SHORT = 64;

/**
 * A string's UTF-8 bytes. TextEncoder.encode costs ~0.8 µs even for a few characters on Node 20,
 * once for every text reply and send: a short ASCII string (ids, small messages, most JSON) is
 * copied here in ~40 ns, anything else goes to TextEncoder.
 */
export function utf8Bytes(text: string): Uint8Array {
  const n = text.length;
  if (n > SHORT) return encoder.encode(text);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c > 0x7f) return encoder.encode(text);
    out[i] = c;
  }
  return out;
}

/**
 * The payloads of text messages, as handed to handlers (`ctx.data`, `ctx.req.data`): forwarding
 * one (`socket.send(id, ctx.req.data)`, as Nitric code does) sends a text frame, as Nitric's own
 * gateway does, instead of turning a browser's string into a Blob. Other bytes, copies and slices
 * included, are binary. A WeakSet, not a subclass, so the bytes stay a plain Uint8Array.
 */
const textPayloads = new WeakSet<Uint8Array>();

/** Marks `bytes` as the payload of a text message, so sending it sends text. Returns it. */
export function markText(bytes: Uint8Array): Uint8Array {
  textPayloads.add(bytes);
  return bytes;
}

/**
 * Encodes a payload: strings as text, bytes as binary (but the payload of a text message, passed
 * on as it came, as text), everything else as JSON text. Errors name the call: the socket and
 * `call` (`.send()`, ` ctx.reply()`), put together only when one is thrown (replies are hot). What JSON cannot carry is refused rather than sent changed: a BigInt
 * or a cycle (JSON.stringify's own TypeError named neither the call nor the fix), and a Promise (a
 * forgotten await), a Map, a Set or an Error, which JSON.stringify turns into `{}`.
 */
export function encodePayload(data: Payload, socket?: string, call = ""): { data: Uint8Array; binary: boolean } {
  if (typeof data === "string") return { data: utf8Bytes(data), binary: false };
  if (data instanceof Uint8Array) return { data, binary: !textPayloads.has(data) };
  if (data instanceof ArrayBuffer) return { data: new Uint8Array(data), binary: true };
  if (ArrayBuffer.isView(data))
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), binary: true };
  let json: string | undefined;
  try {
    json = JSON.stringify(data);
  } catch (error) {
    const why = typeof error === "object" && error !== null && "message" in error ? String(error.message) : "";
    const what = /BigInt/.test(why)
      ? `${lostAt(data, "bigint") ?? "data"} is a BigInt, which JSON has no form for: send it as a string or a number`
      : /circular/i.test(why)
        ? "data refers to itself (a cycle), which JSON cannot write: send a copy without the cycle"
        : `data is not JSON (${why.split("\n")[0]}): pass a string, bytes, or a JSON value`;
    throw new NitricLikeError("invalid_argument", `${callName(socket, call)}: ${what}`, { cause: error });
  }
  if (json === undefined) {
    throw new NitricLikeError(
      "invalid_argument",
      `${callName(socket, call)}: cannot send ${typeof data}: pass a string, bytes, or a JSON value`,
    );
  }
  // Only output holding "{}" can hide an object that JSON emptied: the common case pays nothing.
  if (json.includes("{}")) {
    const at = lostAt(data, "emptied");
    if (at !== undefined) throw new NitricLikeError("invalid_argument", `${callName(socket, call)}: ${at}`);
  }
  return { data: utf8Bytes(json), binary: false };
}

function callName(socket: string | undefined, call: string): string {
  return socket === undefined ? "send" : `websocket(${JSON.stringify(socket)})${call}`;
}

/**
 * Walks `value` as JSON.stringify does (toJSON first, own enumerable properties, arrays by index)
 * and says where it holds what `kind` asks for: a BigInt's place, or an object JSON writes as `{}`
 * where it meant something else (a Promise, a Map, a Set, an Error), with the fix. Undefined when there is none.
 */
function lostAt(
  value: unknown,
  kind: "bigint" | "emptied",
  path = "data",
  key = "",
  seen = new Set<object>(),
): string | undefined {
  let v = value;
  if (typeof v === "object" && v !== null && typeof (v as { toJSON?: unknown }).toJSON === "function")
    v = (v as { toJSON(key: string): unknown }).toJSON(key);
  if (kind === "bigint" && typeof v === "bigint") return path;
  if (typeof v !== "object" || v === null || seen.has(v)) return undefined;
  seen.add(v);
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const found = lostAt(v[i], kind, `${path}[${i}]`, String(i), seen);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  const keys = Object.keys(v);
  if (kind === "emptied" && keys.length === 0) return emptiedProblem(path, v);
  for (const k of keys) {
    const found = lostAt((v as Record<string, unknown>)[k], kind, `${path}${propertyPath(k)}`, k, seen);
    if (found !== undefined) return found;
  }
  return undefined;
}

function emptiedProblem(path: string, v: object): string | undefined {
  const [name, fix] =
    v instanceof Promise
      ? ["Promise", "await it first"]
      : v instanceof Map
        ? ["Map", "send Object.fromEntries(map) or [...map] instead"]
        : v instanceof Set
          ? ["Set", "send [...set] instead"]
          : v instanceof Error
            ? ["Error", "send error.message instead"]
            : v instanceof WeakMap || v instanceof WeakSet
              ? [v instanceof WeakMap ? "WeakMap" : "WeakSet", "send a plain object or an array instead"]
              : [];
  if (name === undefined) return undefined;
  return `${path} is a${/^[AEIOU]/.test(name) ? "n" : ""} ${name}, which JSON would send as {}: ${fix}`;
}

/** `.name` for a name JavaScript can write so, `["a b"]` for any other. */
function propertyPath(key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

/** decodeURIComponent that keeps the raw text when it is not a valid escape. */
export function decodeSafely(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
