/**
 * Names a client chooses (query keys, header names, cookie names, JSON keys) are data. Kept as
 * keys of a plain object they meet Object.prototype: `out["__proto__"]` is the prototype itself,
 * `out["constructor"]` is Object, and a `?__proto__=1` would take `run` down. These records inherit
 * nothing, so every name is an own key like any other and reads of absent names are undefined.
 */

/**
 * What dict() makes: an object whose prototype is empty and has no prototype itself, so nothing is
 * inherited. Not Object.create(null), whose objects V8 keeps as hash tables from the start: a
 * request's 6 headers took 1,000 bytes in one, 600 in this (heap used over 100,000 kept records),
 * and the gateway makes one for every connect event.
 */
const NameRecord = function NameRecord() {} as unknown as new () => Record<string, unknown>;
NameRecord.prototype = Object.freeze(Object.create(null));

/** An empty record that inherits nothing, for names a client chose. */
export function dict<T>(): Record<string, T> {
  return new NameRecord() as Record<string, T>;
}

/** Adds values under a client-chosen name of a multi-valued map made with dict(). */
export function addValues(out: Record<string, { value: string[] }>, name: string, values: readonly string[]): void {
  const entry = Object.hasOwn(out, name) ? out[name] : undefined;
  if (entry) for (const v of values) entry.value.push(v);
  // defineProperty, not assignment: the map may be a plain object that came from elsewhere.
  else
    Object.defineProperty(out, name, {
      value: { value: [...values] },
      enumerable: true,
      writable: true,
      configurable: true,
    });
}
