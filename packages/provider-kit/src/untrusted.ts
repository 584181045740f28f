/**
 * Names a client chooses (query keys, header names, cookie names, JSON keys) are data. Kept as
 * keys of a plain object they meet Object.prototype: `out["__proto__"]` is the prototype itself,
 * `out["constructor"]` is Object, and a `?__proto__=1` would take `run` down. These records have no
 * prototype, so every name is an own key like any other and reads of absent names are undefined.
 */

/** An empty record with no prototype, for names a client chose. */
export function dict<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
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
