// The README's promises that a test can hold it to: its set-up commands, and its chat snippet,
// which must be exactly the example that chat.test.ts runs end to end.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { EXAMPLES } from "../src/harness.js";

const readme = readFileSync(join(EXAMPLES, "..", "README.md"), "utf8");
const blocks = (lang: string) =>
  [...readme.matchAll(new RegExp(`\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``, "g"))].map((m) => m[1] as string);

it("opens with the two set-up commands, the chat first and the tests second", () => {
  const [first, second] = blocks("sh");
  expect(first?.trim()).toBe("npm i -g pnpm@12.21.0 && pnpm install && pnpm chat");
  expect(second?.trim()).toBe("npm i -g pnpm@12.21.0 && pnpm install && pnpm test");
  const scripts = JSON.parse(readFileSync(join(EXAMPLES, "..", "package.json"), "utf8")).scripts;
  expect(scripts.chat).toContain("nitric-like run examples/chat");
  expect(scripts.test).toBe("node scripts/test.mjs");
});

it("shows the chat example exactly as it is in examples/chat", () => {
  expect(blocks("ts")[0]).toBe(readFileSync(join(EXAMPLES, "chat", "services", "chat.ts"), "utf8"));
});

it("backs every guarantee in 'Limits and guarantees' with a test that exists under that name", () => {
  const section = readme.slice(readme.indexOf("## Limits and guarantees"), readme.indexOf("## The AWS provider"));
  const rows = section
    .split("\n")
    .filter((l) => l.startsWith("| ") && !l.startsWith("| guarantee") && !l.startsWith("| ---"));
  expect(rows.length).toBeGreaterThanOrEqual(15);
  let checked = 0;
  for (const row of rows) {
    const cell = row.split(" | ")[1] ?? "";
    // `file`: `name`, `name`; `file`: ...
    for (const part of cell.split(/;\s*(?=`[^`]+\/)/)) {
      const [file, ...names] = [...part.matchAll(/`([^`]+)`/g)].map((m) => m[1] as string);
      if (!file || !/\.(ts|mjs)$/.test(file)) continue;
      const source = readFileSync(join(EXAMPLES, "..", file), "utf8");
      for (const name of names) {
        if (/\.(ts|mjs)$/.test(name)) continue;
        for (const piece of name.split(" … ")) expect(source, `${file}: ${name}`).toContain(piece);
        checked++;
      }
    }
  }
  expect(checked).toBeGreaterThanOrEqual(20);
});
