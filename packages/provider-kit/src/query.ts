/**
 * A connection request's query, read once, the same way on every provider. API Gateway hands a
 * `$connect` function (and a REQUEST authorizer) each query value decoded, `+` as a space, in
 * `multiValueQueryStringParameters`; the contract's `queryParams` carry values percent-encoded,
 * as Nitric's SDKs decode them (the published `@nitric/sdk` with a bare `decodeURIComponent`, which
 * throws on a `%` no escape follows). So a provider decodes the query once (parseQuery), as the URL
 * standard's query parsing does (a `%` that starts no escape stays as sent, bytes that are not
 * UTF-8 read as U+FFFD, where AWS documents nothing), and puts each value on the wire encoded again
 * (wireQuery): both SDKs then give handlers exactly the decoded value, never a second decoding of
 * it (`%2541` is `%41`, never `A`), and never fail on it.
 */
import { addValues, dict } from "./untrusted.js";

/**
 * The query of a request target (`/live?a=1&a=2&b=c+d`), every value of each name decoded in order,
 * in a record that inherits nothing (names are the client's: `?__proto__=1`).
 */
export function parseQuery(target: string): Record<string, { value: string[] }> {
  const out = dict<{ value: string[] }>();
  const at = target.indexOf("?");
  if (at < 0) return out;
  for (const [name, value] of new URLSearchParams(target.slice(at + 1))) addValues(out, name, [value]);
  return out;
}

/** Lone UTF-16 surrogates, which encodeURIComponent refuses (a JSON event may hold them). */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** A decoded value as the contract's `queryParams` carry it: percent-encoded, so decoding gives it back. */
export function wireValue(value: string): string {
  return encodeURIComponent(value.replace(LONE_SURROGATE, "\uFFFD"));
}

/** Decoded query values (parseQuery's, or API Gateway's) as the contract's `queryParams` carry them. */
export function wireQuery(query: Record<string, { value: string[] }>): Record<string, { value: string[] }> {
  const out = dict<{ value: string[] }>();
  for (const name of Object.keys(query)) addValues(out, name, (query[name]?.value ?? []).map(wireValue));
  return out;
}
