// The data files a service's own code names that are not there yet, which `run --provider aws`
// waits for: only literals that look like a relative file path beside the code, only the
// project's own code (a package ships its data), and at most MAX_AWAITED of them.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
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

describe("the files the project's own code names with new URL(..., import.meta.url)", () => {
  it("refuse a path that leaves the project, by the URL's own rules or through a link, and copy nothing of it", () => {
    const outside = mkdtempSync(join(dir, "outside-"));
    writeFileSync(join(outside, "secret.txt"), "secret");
    const root = project({
      "services/chat.ts": [
        'const a = new URL("../../../../../../../../etc/passwd", import.meta.url);',
        "const b = new URL('%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/hostname', import.meta.url);",
        "const c = new URL(`file:///etc/passwd`, import.meta.url);",
        'const d = new URL("./linked.txt", import.meta.url);',
        'const fine = new URL("./greeting.txt", import.meta.url);',
      ].join("\n"),
      "services/greeting.txt": "hello",
      // A package may read what it likes from beside itself: that is warned of, not refused.
      "node_modules/pkg/index.js":
        'module.exports = require("fs").readFileSync(new URL("../../../etc/passwd", import.meta.url));',
    });
    symlinkSync(join(outside, "secret.txt"), join(root, "services", "linked.txt"));
    const found = filesReadBeside(root, ["services/chat.ts", "node_modules/pkg/index.js"]);
    expect(found.refused).toEqual([
      'services/chat.ts names a file outside the project with new URL("../../../../../../../../etc/passwd", import.meta.url): a build never copies a file from outside the project into a function; put the file in the project, in services/ or a folder below it',
      'services/chat.ts names a file outside the project with new URL("%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/hostname", import.meta.url): a build never copies a file from outside the project into a function; put the file in the project, in services/ or a folder below it',
      'services/chat.ts names a file outside the project with new URL("file:///etc/passwd", import.meta.url): a build never copies a file from outside the project into a function; put the file in the project, in services/ or a folder below it',
      'services/chat.ts names services/linked.txt ("./linked.txt"), a link to a file outside the project: a build never copies a file from outside the project into a function; copy the file into the project instead of linking it',
    ]);
    expect(found.copy.map((f) => f.name)).toEqual(["greeting.txt"]);
  });

  it("say that code named beside the service (a worker's script) is not carried into the function", () => {
    const root = project({
      "services/chat.ts": 'const w = new URL("./worker.js", import.meta.url);',
      "services/worker.js": "postMessage(1);",
    });
    const found = filesReadBeside(root, ["services/chat.ts"]);
    expect(found.refused).toEqual([]);
    expect(found.copy).toEqual([]);
    expect(found.problems).toEqual([
      'services/chat.ts names services/worker.js with new URL("./worker.js", import.meta.url), code the function does not carry: only what the service imports is bundled, and a worker\'s script its own code starts as new Worker(new URL("./worker.js", import.meta.url)); on AWS it is not found, so start the worker that way, import what it does instead, or run it in the service\'s own thread',
    ]);
    // Started as a worker, it is bundled into the function (workers.ts): nothing to say.
    const started = filesReadBeside(root, ["services/chat.ts"], {
      workers: new Set([join(root, "services", "worker.js")]),
    });
    expect(started.problems).toEqual([]);
  });

  it("say, for a data file of the project outside the service's folder, where to keep it", () => {
    const root = project({
      "services/chat.ts": 'const up = new URL("../data/up.txt", import.meta.url);',
      "data/up.txt": "up",
    });
    const found = filesReadBeside(root, ["services/chat.ts"]);
    expect(found.refused).toEqual([]);
    expect(found.copy).toEqual([]);
    expect(found.problems).toEqual([
      "services/chat.ts reads data/up.txt from beside itself (\"../data/up.txt\"), a path that leaves the function's folder once bundled: on AWS it fails with ENOENT; keep the file in services/ or a folder below it, which the function's folder stands for, or import it",
    ]);
  });
});
