// Comments made ASCII one UTF-16 unit for one, on esbuild's own output: the code outside the
// comments, every column and what the module does stay as they were.
import { buildSync } from "esbuild";
import { expect, it } from "vitest";
import { asciiComments, firstNonAscii } from "./ascii-comments.js";

/** What esbuild makes of `source` as a bundle (its default charset, "ascii"). */
const bundled = (source: string) =>
  buildSync({ stdin: { contents: source, loader: "ts" }, bundle: true, format: "esm", write: false }).outputFiles[0]
    ?.text ?? "";

const SOURCE = `export const options = {
  // shown to the user — short and kind 😀
  greeting: "h\u00e9llo \u2014 \u{1f600}",
  /* the limit — in ms */ limit: 10, // trailing — note
};
export const raw = String.raw\`a\\u2014b\`;
`;

it("leaves esbuild's output no non-ASCII character, replacing only those of comments, one unit for one", async () => {
  const code = bundled(SOURCE);
  // The comments esbuild keeps carry their characters; the code's are escaped.
  expect(code).toContain("short and kind");
  expect(firstNonAscii(code)).toBeDefined();
  const ascii = asciiComments(code);
  expect(firstNonAscii(ascii)).toBeUndefined();
  expect(ascii.length).toBe(code.length);
  expect(ascii).toContain("// shown to the user ? short and kind ??");
  // Everything but the replaced characters is unchanged, so every column is too.
  for (let i = 0; i < code.length; i++) if (code.charCodeAt(i) < 0x80) expect(ascii[i]).toBe(code[i]);
  const before = await import(`data:text/javascript,${encodeURIComponent(code)}`);
  const after = await import(`data:text/javascript,${encodeURIComponent(ascii)}`);
  expect(after.options).toEqual(before.options);
  expect(after.options.greeting).toBe("h\u00e9llo \u2014 \u{1f600}");
  expect(after.raw).toBe(before.raw);
});

it("returns ASCII code, and code it cannot parse, as it is", () => {
  const ascii = "export const a = 1; // plain\n";
  expect(asciiComments(ascii)).toBe(ascii);
  const broken = "export const a = ; // broken \u2014\n";
  expect(asciiComments(broken)).toBe(broken);
});

it("keeps non-ASCII outside comments, where changing it would change the program, and says where it is", () => {
  const code = "export const s = '\u2014'; // \u2014\n";
  const ascii = asciiComments(code);
  expect(ascii).toBe("export const s = '\u2014'; // ?\n");
  expect(firstNonAscii(ascii)).toEqual({ line: 1, column: 19 });
});
