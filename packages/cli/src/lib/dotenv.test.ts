import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { checkNodeOptions, loadDotEnv, withDotEnv } from "./dotenv.js";

const root = mkdtempSync(join(tmpdir(), "nl-dotenv-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
function folder(files: Record<string, string>): string {
  const dir = join(root, String(n++));
  mkdirSync(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

it("reads .env, then .env.<environment> over it, and no file is no error", () => {
  const dir = folder({
    ".env": "A=1\nB=from-env\n",
    ".env.local": "B=from-local\nC='three words'\n",
    ".env.prod": "D=x\n",
  });
  const loaded = loadDotEnv(dir, "local");
  expect(loaded.files).toEqual([".env", ".env.local"]);
  expect([...loaded.values]).toEqual([
    ["A", "1"],
    ["B", "from-local"],
    ["C", "three words"],
  ]);
  expect(loaded.paths).toEqual([join(dir, ".env"), join(dir, ".env.local")]);
  expect(loadDotEnv(folder({}), "local")).toMatchObject({ files: [], values: new Map() });
});

it("reads no file outside the folder for an environment name that is a path", () => {
  const dir = folder({ ".env": "A=1\n" });
  writeFileSync(join(root, ".env.x"), "LEAK=1\n");
  for (const environment of ["../x", "/etc/passwd", ".hidden", ""]) {
    expect(loadDotEnv(dir, environment).files).toEqual([".env"]);
  }
});

it("keeps a variable named __proto__ a variable, and lets the real environment win", () => {
  process.env.NL_DOTENV_TEST = "real";
  const env = withDotEnv(
    new Map([
      ["__proto__", "p"],
      ["NL_DOTENV_TEST", "file"],
    ]),
  );
  expect(Object.getPrototypeOf(env)).toBe(Object.prototype);
  expect(Object.keys(env)).toContain("__proto__");
  expect(env.NL_DOTENV_TEST).toBe("real");
  delete process.env.NL_DOTENV_TEST;
});

it("refuses a .env that is a folder, saying what it should hold", () => {
  const dir = folder({});
  mkdirSync(join(dir, ".env"));
  expect(() => loadDotEnv(dir, "local")).toThrow("run: .env is a folder; .env files hold NAME=value lines");
});

it("refuses a file that sets __proto__, which Node's parser would drop without a word, and reads every other name", () => {
  for (const line of ["__proto__=x", "  __proto__ = x", "__proto__=", "\t__proto__=a=b", "export __proto__=x"]) {
    const dir = folder({ ".env": `A=1\n${line}\nB=2\n` });
    expect(() => loadDotEnv(dir, "local"), line).toThrow(
      "run: .env sets a variable named __proto__, which Node's .env parser cannot keep (it drops it); rename the variable",
    );
  }
  const dir = folder({ ".env": "constructor=c\nPROTO=__proto__=x\n# __proto__=commented\nhasOwnProperty=h\n" });
  expect(Object.fromEntries(loadDotEnv(dir, "local").values)).toEqual({
    constructor: "c",
    PROTO: "__proto__=x",
    hasOwnProperty: "h",
  });
});

it("refuses lines that are not NAME=value, which Node's parser would join to the next variable's name, naming each", () => {
  const dir = folder({ ".env": "A=1\nthis is not valid\nB=2\n# fine\nexport C=3\nREGION\nD=4\n" });
  expect(() => loadDotEnv(dir, "local")).toThrow(
    'run: .env: line 2 ("this is not valid") and line 6 ("REGION") are not NAME=value lines, and Node\'s parser would take each as the start of the next line\'s name (so B, D would be lost); make each NAME=value, or a # comment',
  );
  // A quoted value over several lines is one variable, not a bad line.
  const quoted = folder({ ".env": 'KEY="line one\nline two"\nB=2\n' });
  expect(Object.fromEntries(loadDotEnv(quoted, "local").values)).toEqual({ KEY: "line one\nline two", B: "2" });
});

it("refuses what Node's parser would drop without a word: a last line with no =, a line with no name", () => {
  const last = folder({ ".env": "A=1\nREGION=eu\nDEBUG\n\n# the end\n  verbose  \n" });
  expect(() => loadDotEnv(last, "local")).toThrow(
    'run: .env: line 3 ("DEBUG"), line 6 ("verbose") are not NAME=value lines, and Node\'s parser would drop them without a word; make each NAME=value, or a # comment',
  );
  const one = folder({ ".env": "A=1\r\nDEBUG" });
  expect(() => loadDotEnv(one, "local")).toThrow(
    'run: .env: line 2 ("DEBUG") is not a NAME=value line, and Node\'s parser would drop it without a word',
  );
  for (const text of ["=v\nA=1\n", "A=1\n  =v\nB=2\n", "A=1\nexport =v\nB=2\n"]) {
    const unnamed = folder({ ".env": text });
    expect(() => loadDotEnv(unnamed, "local"), text).toThrow(
      /^run: \.env: line \d \("(export )?=v"\) has no name before the =, and Node's parser would drop it and the variable after; write NAME=value, or make it a # comment$/,
    );
  }
  // The last lines of a quoted value over several lines are the value, whatever they hold.
  const quoted = folder({ ".env": 'KEY="one\n=two\nthree"\n# done\n' });
  expect(Object.fromEntries(loadDotEnv(quoted, "local").values)).toEqual({ KEY: "one\n=two\nthree" });
});

it("reads a file that starts with a byte order mark by the names it shows, CRLF lines, export and quotes", () => {
  const dir = folder({
    ".env": "\uFEFFAPI_KEY=k\r\nexport REGION=eu\r\nQUOTED=\"a # b\"\r\nSINGLE=' x '\r\nPLAIN=v # note\r\nPLAIN=w\r\n",
  });
  expect(Object.fromEntries(loadDotEnv(dir, "local").values)).toEqual({
    API_KEY: "k",
    REGION: "eu",
    QUOTED: "a # b",
    SINGLE: " x ",
    PLAIN: "w",
  });
  // A first line that is a comment stays a comment.
  const commented = folder({ ".env": "\uFEFF# settings\nA=1\n" });
  expect(Object.fromEntries(loadDotEnv(commented, "local").values)).toEqual({ A: "1" });
});

it("says which file gave a NODE_OPTIONS Node refuses, and takes one it accepts, loading none of its modules", () => {
  const saved = process.env.NODE_OPTIONS;
  delete process.env.NODE_OPTIONS;
  try {
    const dir = folder({ ".env": "NODE_OPTIONS=--no-warnings\n", ".env.local": "NODE_OPTIONS=--not-a-flag\n" });
    const loaded = loadDotEnv(dir, "local");
    expect(loaded.from.get("NODE_OPTIONS")).toBe(".env.local");
    expect(() => checkNodeOptions(loaded, "run")).toThrow(
      "run: Node refuses the NODE_OPTIONS that .env.local sets (--not-a-flag is not allowed in NODE_OPTIONS)",
    );
    // A module it requires would print: checking it must not run it.
    writeFileSync(join(dir, "loud.cjs"), "process.exitCode = 3; console.error('loaded');\n");
    const accepted = folder({
      ".env": `NODE_OPTIONS=--no-warnings --require ${JSON.stringify(join(dir, "loud.cjs"))}\n`,
    });
    expect(() => checkNodeOptions(loadDotEnv(accepted, "local"), "run")).not.toThrow();
    // The environment run started in wins over .env, so its NODE_OPTIONS is the one services get.
    process.env.NODE_OPTIONS = "";
    expect(() => checkNodeOptions(loaded, "run")).not.toThrow();
  } finally {
    if (saved === undefined) delete process.env.NODE_OPTIONS;
    else process.env.NODE_OPTIONS = saved;
  }
});
