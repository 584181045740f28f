/**
 * stringAt(text, path): what `JSON.parse(text)` holds at `path` (own properties, one per name:
 * `["meta", "type"]` reads `.meta.type`) when `text` is a JSON object, each property on the way an
 * object and the last a string, without building the object. Route selection (routes.ts) runs it
 * on the gateway's thread for text messages of a socket with routes, and a client chooses what it
 * sends: `JSON.parse` allocates every array, object and number of a message, so 128 KB of nested
 * arrays cost it about 4× what this scanner takes, which allocates only the strings it compares
 * and returns; on the other shapes measured the scanner takes 0.7–0.95× `JSON.parse`'s time (one
 * long string, which `JSON.parse` copies quickly, 2–3×; a short command the same, by a property or
 * a path: `node bench/route-select.mjs`, whose figures are in BENCHMARKS.md). That keeps a hostile
 * message's cost within a few times what the gateway spends unmasking its frame anyway.
 * Its answers are `JSON.parse`'s on every input (json-scan.test.ts holds it to that, JSON.parse
 * as the oracle): undefined for text that is not JSON, not an object, or with no such property, a
 * non-string one, or a property on the way that is not an object (an array, a string). The last
 * of duplicate keys counts, as for JSON.parse, at every level: `{"meta":{"type":"a"},"meta":{}}`
 * has no `.meta.type`. Names are compared as text, never looked up on an object, so `__proto__`
 * or `constructor` name own properties only, as JSON.parse makes them.
 */

/** The kinds of open container, on the scanner's stack. */
const OBJECT = 1;
const ARRAY = 2;

/** The stack of open containers, one byte each, grown as needed (the scanner never re-enters). */
let open = new Uint8Array(256);

/** The first character a string's plain run stops at: its closing quote, an escape, a control character. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: a JSON string may not hold U+0000-U+001F unescaped, so the scanner stops at them
const STRING_STOP = /["\\\u0000-\u001f]/g;

function isHex(c: number): boolean {
  return (c >= 48 && c <= 57) || ((c | 32) >= 97 && (c | 32) <= 102);
}

function isSpace(c: number): boolean {
  return c === 32 || c === 10 || c === 13 || c === 9;
}

/** The index just past the string starting at `i` (a quote), or -1 when it is not a JSON string. */
function endOfString(text: string, i: number): number {
  let at = i + 1;
  for (;;) {
    STRING_STOP.lastIndex = at;
    const stop = STRING_STOP.exec(text);
    if (stop === null) return -1;
    at = stop.index;
    const c = text.charCodeAt(at);
    if (c === 34) return at + 1;
    if (c !== 92) return -1; // a control character
    const e = text.charCodeAt(at + 1);
    if (e === 117) {
      if (!(isHex(text.charCodeAt(at + 2)) && isHex(text.charCodeAt(at + 3)))) return -1;
      if (!(isHex(text.charCodeAt(at + 4)) && isHex(text.charCodeAt(at + 5)))) return -1;
      at += 6;
    } else if (e === 34 || e === 92 || e === 47 || e === 98 || e === 102 || e === 110 || e === 114 || e === 116) {
      at += 2;
    } else return -1;
  }
}

/** The index just past the number, `true`, `false` or `null` starting at `i`, or -1. */
function endOfScalar(text: string, i: number): number {
  let c = text.charCodeAt(i);
  if (c === 116) return text.startsWith("true", i) ? i + 4 : -1;
  if (c === 102) return text.startsWith("false", i) ? i + 5 : -1;
  if (c === 110) return text.startsWith("null", i) ? i + 4 : -1;
  if (c === 45) c = text.charCodeAt(++i);
  if (c === 48) c = text.charCodeAt(++i);
  else if (c >= 49 && c <= 57) {
    do c = text.charCodeAt(++i);
    while (c >= 48 && c <= 57);
  } else return -1;
  if (c === 46) {
    c = text.charCodeAt(++i);
    if (!(c >= 48 && c <= 57)) return -1;
    do c = text.charCodeAt(++i);
    while (c >= 48 && c <= 57);
  }
  if (c === 101 || c === 69) {
    c = text.charCodeAt(++i);
    if (c === 43 || c === 45) c = text.charCodeAt(++i);
    if (!(c >= 48 && c <= 57)) return -1;
    do c = text.charCodeAt(++i);
    while (c >= 48 && c <= 57);
  }
  return i;
}

/** A string token's value: its text, or JSON.parse's reading when it has escapes. */
function stringValue(text: string, start: number, end: number): string {
  const inner = text.slice(start + 1, end - 1);
  return inner.includes("\\") ? (JSON.parse(text.slice(start, end)) as string) : inner;
}

/** See the file's comment. `path` has at least one name. */
export function stringAt(text: string, path: readonly string[]): string | undefined {
  const n = text.length;
  const last = path.length;
  let i = 0;
  while (isSpace(text.charCodeAt(i))) i++;
  if (text.charCodeAt(i) !== 123) return undefined;
  let depth = 0;
  /**
   * How many of the open containers, from the outermost, are the objects `path` runs through:
   * the top-level object, then the value of path[0] in it, and so on. A key is compared with
   * path[depth - 1] only while every container around it is on the path (onPath === depth).
   */
  let onPath = 0;
  /** Inside an object, before a key. */
  let key = false;
  /** The value about to be read is the property at the end of `path`. */
  let wanted = false;
  /** The value about to be read is a property on the way: an object there is on the path. */
  let through = false;
  let found: string | undefined;
  for (;;) {
    // A value, or an object's key.
    while (isSpace(text.charCodeAt(i))) i++;
    const c = text.charCodeAt(i);
    if (key) {
      if (c !== 34) return undefined;
      const end = endOfString(text, i);
      if (end < 0) return undefined;
      if (onPath === depth && stringValue(text, i, end) === path[depth - 1]) {
        // This key sets the property again (the last of duplicates counts): whatever an
        // earlier one held, or held below it, is gone.
        found = undefined;
        wanted = depth === last;
        through = !wanted;
      }
      i = end;
      while (isSpace(text.charCodeAt(i))) i++;
      if (text.charCodeAt(i) !== 58) return undefined;
      i++;
      key = false;
      continue;
    }
    if (c === 123 || c === 91) {
      if (depth === open.length) {
        const grown = new Uint8Array(open.length * 2);
        grown.set(open);
        open = grown;
      }
      const kind = c === 123 ? OBJECT : ARRAY;
      if (kind === OBJECT && (depth === 0 || through)) onPath = depth + 1;
      wanted = false;
      through = false;
      open[depth++] = kind;
      i++;
      while (isSpace(text.charCodeAt(i))) i++;
      const close = text.charCodeAt(i);
      if (!((close === 125 && kind === OBJECT) || (close === 93 && kind === ARRAY))) {
        key = kind === OBJECT;
        continue;
      }
      if (onPath === depth) onPath--;
      depth--; // empty
      i++;
    } else if (c === 34) {
      const end = endOfString(text, i);
      if (end < 0) return undefined;
      if (wanted) found = stringValue(text, i, end);
      wanted = false;
      through = false;
      i = end;
    } else {
      const end = endOfScalar(text, i);
      if (end < 0) return undefined;
      wanted = false;
      through = false;
      i = end;
    }
    // After a value: a comma, or the end of its containers, or of the text.
    for (;;) {
      while (isSpace(text.charCodeAt(i))) i++;
      if (depth === 0) return i === n ? found : undefined;
      const next = text.charCodeAt(i);
      const kind = open[depth - 1];
      if (next === 44) {
        i++;
        key = kind === OBJECT;
        break;
      }
      if (!((next === 125 && kind === OBJECT) || (next === 93 && kind === ARRAY))) return undefined;
      if (onPath === depth) onPath--;
      depth--;
      i++;
    }
  }
}
