/**
 * What a provider keeps of a connection's request beyond its connect event, for `connection(id)`,
 * `connections()` and the dashboard. A request may carry some 16 KB of query and headers, and
 * short names (`?a&b&c...`) make that thousands of entries: each listing would turn every
 * connection's into thousands of objects, so a few hundred such clients made one `connections()`
 * take seconds of the gateway's thread and hundreds of MB. The connect handler and the authorizer
 * still get every value, once per connection.
 */
import { dict } from "./untrusted.js";

/** The most query values a connection's record keeps: the first ones, by name in order of first appearance. */
export const MAX_KEPT_QUERY_VALUES = 100;

/** The first MAX_KEPT_QUERY_VALUES values of a query (names in their order, each name's values in theirs). */
export function keptQuery(query: Record<string, { value: string[] }>): Record<string, { value: string[] }> {
  const out = dict<{ value: string[] }>();
  let left = MAX_KEPT_QUERY_VALUES;
  for (const name of Object.keys(query)) {
    if (left === 0) break;
    const values = query[name]?.value ?? [];
    const kept = values.length <= left ? values : values.slice(0, left);
    out[name] = { value: kept };
    left -= Math.max(1, kept.length); // a name without values still counts
  }
  return out;
}
