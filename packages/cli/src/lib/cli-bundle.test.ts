// The CLI's one-file build (scripts/bundle.mjs, made by `pnpm build` and `pnpm test`) is ASCII, so
// V8 keeps its source on the heap of every `run` as a one-byte string: one non-Latin-1 character
// anywhere in its 1.8 MB would double that to a two-byte string.
import { readFileSync } from "node:fs";
import { firstNonAscii } from "@nitric-like/provider-kit/ascii-comments";
import { expect, it } from "vitest";

const BUNDLE = new URL("../../dist/nitric-like.mjs", import.meta.url);

it("dist/nitric-like.mjs holds only ASCII characters, comments included", () => {
  const code = readFileSync(BUNDLE, "utf8");
  expect(code.length).toBeGreaterThan(100_000);
  expect(firstNonAscii(code)).toBeUndefined();
});
