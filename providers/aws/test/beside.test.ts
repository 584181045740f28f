// The data files a service's own code names that are not there yet, which `run --provider aws`
// waits for: only literals that look like a relative file path beside the code, only the
// project's own code (a package ships its data), and at most MAX_AWAITED of them.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { filesReadBeside, MAX_AWAITED } from "../src/build/beside.js";

const dir = mkdtempSync(join(tmpdir(), "nitric-like-aws-beside-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function project(files: Record<string, string>): string {
  const root = mkdtempSync(join(dir, "p-"));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(root, name, ".."), { recursive: true });
    writeFileSync(join(root, name), text);
  }
  return root;
}

describe("the data files a function waits for", () => {
  it("are the project's own literals that name a missing file beside its code, not a package's, nor code, .env, URLs or other words", () => {
    const root = project({
      "services/chat.ts": [
        'import { readFileSync } from "node:fs";',
        'const a = new URL("./greeting.txt", import.meta.url);',
        'const b = new URL("./data/words.json", import.meta.url);',
        'const there = new URL("./present.txt", import.meta.url);',
        'const skip = ["../outside.txt", "./.env", "./other.js", "https://example.com/x.txt", "utf8", "a b.txt", "index.cjs"];',
      ].join("\n"),
      "services/present.txt": "here",
      "node_modules/pkg/index.js": 'module.exports = require("fs").readFileSync(__dirname + "/missing.json");',
    });
    const found = filesReadBeside(root, ["services/chat.ts", "node_modules/pkg/index.js"]);
    expect(found.awaited).toEqual([
      join(root, "services", "data", "words.json"),
      join(root, "services", "greeting.txt"),
    ]);
    expect(found.copy.map((f) => f.name)).toEqual(["present.txt"]);
  });

  it("are at most MAX_AWAITED a bundle", () => {
    const names = Array.from({ length: MAX_AWAITED + 10 }, (_, i) => `"./f${i}.txt"`);
    const root = project({ "services/chat.ts": `const here = import.meta.url;\nconst all = [${names.join(", ")}];` });
    expect(filesReadBeside(root, ["services/chat.ts"]).awaited).toHaveLength(MAX_AWAITED);
  });
});
