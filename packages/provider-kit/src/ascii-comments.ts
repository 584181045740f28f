/**
 * Bundles stay ASCII. V8 keeps a module's source on the heap for as long as the module lives, one
 * byte a character only when every character is Latin-1: one character outside it anywhere in a
 * bundle makes the whole source a two-byte string, twice its size. esbuild (charset "ascii", its
 * default) escapes every non-ASCII character of the code, but copies the comments it keeps (those
 * inside object literals, trailing ones) as they are, so an em dash in a comment of a dependency
 * or of a service doubled the source on the heap: the CLI's 1.8 MB bundle became 3.6 MB on `run`'s
 * heap (a heap snapshot). This writes each non-ASCII UTF-16 unit of a comment as "?", one for
 * one, so every column after it, and the bundle's source map, stay as they were.
 */
import { parse } from "acorn";

/** Any UTF-16 unit outside ASCII (an astral character is two of them). */
const NON_ASCII = /[\u0080-\uffff]/;
const EVERY_NON_ASCII = new RegExp(NON_ASCII.source, "g");

/**
 * `code` (an ES module) with the non-ASCII characters of its comments replaced as above, or the
 * same string when there are none. Code acorn cannot parse is returned as it is.
 */
export function asciiComments(code: string): string {
  if (!NON_ASCII.test(code)) return code;
  const comments: [number, number][] = [];
  try {
    parse(code, {
      ecmaVersion: "latest",
      sourceType: "module",
      allowHashBang: true,
      onComment: (_block, _text, start, end) => {
        comments.push([start, end]);
      },
    });
  } catch {
    return code;
  }
  let out = "";
  let at = 0;
  for (const [start, end] of comments) {
    out += code.slice(at, start) + code.slice(start, end).replace(EVERY_NON_ASCII, "?");
    at = end;
  }
  return out + code.slice(at);
}

/** Where the first non-ASCII character of `code` is, as 1-based line and column, if it has one. */
export function firstNonAscii(code: string): { line: number; column: number } | undefined {
  const at = code.search(NON_ASCII);
  if (at === -1) return undefined;
  const before = code.slice(0, at);
  return { line: before.split("\n").length, column: at - before.lastIndexOf("\n") };
}
