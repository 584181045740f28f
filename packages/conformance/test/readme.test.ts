// The README's promises that a test can hold it to: its set-up commands, and its chat snippet,
// which must be exactly the example that chat.test.ts runs end to end.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
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

// Every repo path a README names in backticks (or links to) exists, so no README points at a file
// that moved. A backticked word with a slash counts as a path when it names a file (it ends in an
// extension) or when its first segment is an entry of the README's folder or of the repository's
// root; it may be relative to the README's folder, its src/ (package READMEs), the root, or a
// template of `nitric-like new` (the files of a project it makes).
const ROOT = join(EXAMPLES, "..");
const READMES = [
  "README.md",
  "BENCHMARKS.md",
  "docs/architecture.md",
  "providers/aws/README.md",
  ...readdirSync(join(ROOT, "examples"))
    .map((e) => `examples/${e}/README.md`)
    .filter((p) => existsSync(join(ROOT, p))),
];
const TEMPLATES = readdirSync(join(ROOT, "packages/cli/templates")).map((t) => join(ROOT, "packages/cli/templates", t));
const PATH_WORD = /^[A-Za-z0-9_.-]+(?:\/[A-Za-z0-9_.-]+)*\/?$/;
const FILE = /\.(?:ts|mts|mjs|cjs|js|json|md|yaml|yml|proto|sh|png)$/;

/** The repo paths `text` names: backticked words with a slash, and relative link targets. */
function namedPaths(text: string): string[] {
  const words = [...text.matchAll(/`([^`\n]+)`/g)].flatMap((m) => (m[1] as string).split(/\s+/));
  const links = [...text.matchAll(/\]\(([^)\s#]+)(?:#[^)]*)?\)/g)].map((m) => m[1] as string);
  return [...words.filter((w) => w.includes("/") && PATH_WORD.test(w)), ...links.filter((l) => !/^[a-z]+:/.test(l))];
}

it.each(READMES)("names only paths that exist in %s", (file) => {
  const dir = dirname(join(ROOT, file));
  const text = readFileSync(join(ROOT, file), "utf8");
  const missing: string[] = [];
  for (const path of namedPaths(text)) {
    if (path.startsWith("..")) continue;
    const first = path.split("/")[0] as string;
    const bases = [dir, join(dir, "src"), ROOT, ...TEMPLATES];
    if (!FILE.test(path) && !bases.some((base) => first !== "" && existsSync(join(base, first)))) continue;
    if (!bases.some((base) => existsSync(join(base, path)))) missing.push(path);
  }
  expect(missing, `${file} names paths that do not exist`).toEqual([]);
});

it("checks the paths of the main README", () => {
  expect(namedPaths(readFileSync(join(ROOT, "README.md"), "utf8")).length).toBeGreaterThanOrEqual(30);
});
