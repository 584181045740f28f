import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { failureCause, formatFailure, installCommand, RecentOutput } from "./failure.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function temp(files: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), "nitric-like-failure-"));
  dirs.push(dir);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

/** What a real Node prints when `file` in `dir` fails at import. */
function crash(dir: string, file: string): string {
  const result = spawnSync(process.execPath, [join(dir, file)], { cwd: dir, encoding: "utf8" });
  expect(result.status).toBe(1);
  return result.stderr;
}

describe("installCommand", () => {
  it("follows the nearest lockfile, upwards as in a workspace, and npm without one", () => {
    expect(installCommand(temp(), "left-pad")).toBe("npm install left-pad");
    expect(installCommand(temp({ "package-lock.json": "{}" }), "a")).toBe("npm install a");
    expect(installCommand(temp({ "pnpm-lock.yaml": "" }), "a")).toBe("pnpm add a");
    expect(installCommand(temp({ "yarn.lock": "" }), "a")).toBe("yarn add a");
    expect(installCommand(temp({ "bun.lock": "" }), "a")).toBe("bun add a");
    const workspace = temp({ "pnpm-lock.yaml": "", "apps/chat/package.json": "{}" });
    expect(installCommand(join(workspace, "apps", "chat"), "@scope/pkg")).toBe("pnpm add @scope/pkg");
  });
});

describe("failureCause", () => {
  it("reads a real uncaught error: the project frame's file:line and the message, no stack", () => {
    const dir = temp({
      "services/a.mjs": 'function boom() {\n  throw new TypeError("data.get is not a function");\n}\nboom();\n',
    });
    expect(failureCause(crash(dir, "services/a.mjs"), dir)).toEqual({
      location: "services/a.mjs:2",
      message: "TypeError: data.get is not a function",
      fix: "fix it and save: run starts it again when one of its files changes",
    });
  });

  it("names a missing package, the line that imports it and the install command", () => {
    const dir = temp({
      "pnpm-lock.yaml": "",
      "services/a.mjs": '// chat\nimport pad from "left-pad-nope/sub/path.js";\npad();\n',
    });
    const cause = failureCause(crash(dir, "services/a.mjs"), dir, [join(dir, "services/a.mjs")]);
    expect(cause).toEqual({
      location: "services/a.mjs:2",
      message: 'cannot find package "left-pad-nope"',
      fix: "install it: pnpm add left-pad-nope",
    });
    expect(formatFailure("a", "services/a.mjs", "to start (exited with code 1)", cause)).toEqual([
      'service "a" (services/a.mjs:2) failed to start (exited with code 1): cannot find package "left-pad-nope"',
      "install it: pnpm add left-pad-nope",
    ]);
  });

  it("takes a missing package the service logged and went on from for no cause: the error that ended it is", () => {
    const dir = temp({
      "pnpm-lock.yaml": "",
      "services/a.mjs": [
        "try {",
        '  await import("optional-x");',
        "} catch (e) {",
        "  console.error(e.message);",
        "}",
        'throw new TypeError("data.get is not a function");',
        "",
      ].join("\n"),
    });
    const output = crash(dir, "services/a.mjs");
    // The handled failure is in the output, as the service logged it.
    expect(output).toMatch(/Cannot find package 'optional-x'/);
    expect(failureCause(output, dir, [join(dir, "services/a.mjs")])).toEqual({
      location: "services/a.mjs:6",
      message: "TypeError: data.get is not a function",
      fix: "fix it and save: run starts it again when one of its files changes",
    });
    // A service that logged it and exited printing no error: its last output, no install command.
    const logged = "Cannot find module 'optional-x'\nfatal: database unreachable\n";
    expect(failureCause(logged, dir, [], undefined, "exited with code 1")).toMatchObject({ lastOutput: true });
  });

  it("names the package esbuild's CLI cannot resolve in a start command's build step, which no Node error ends, while a Node error that ended the service still wins", () => {
    const dir = temp({
      "pnpm-lock.yaml": "",
      "services/a.ts": 'import leftPad from "left-pad";\nconsole.log(leftPad("a", 3));\n',
    });
    // esbuild's CLI itself, as a start command such as "esbuild $SERVICE_PATH --bundle ... && node out.js" runs it.
    const esbuild = join(dirname(fileURLToPath(import.meta.url)), "../../node_modules/.bin/esbuild");
    const build = spawnSync(esbuild, ["services/a.ts", "--bundle", "--platform=node", "--outfile=out.js"], {
      cwd: dir,
      encoding: "utf8",
    });
    expect(build.status).toBe(1);
    expect(build.stderr).toMatch(/\[ERROR\] Could not resolve "left-pad"/);
    expect(failureCause(build.stderr, dir, [join(dir, "services/a.ts")], undefined, "exited with code 1")).toEqual({
      location: "services/a.ts:1",
      message: 'cannot find package "left-pad"',
      fix: "install it: pnpm add left-pad",
    });
    // A service whose build step warned of it and that then crashed on its own error is told that error.
    const crashed = `${build.stderr}TypeError: data.get is not a function\n    at main (${join(dir, "services/a.ts")}:2:3)\n\nNode.js v20.0.0\n`;
    expect(failureCause(crashed, dir, [join(dir, "services/a.ts")])).toEqual({
      location: "services/a.ts:2",
      message: "TypeError: data.get is not a function",
      fix: "fix it and save: run starts it again when one of its files changes",
    });
  });

  it("names the package the ending error cannot find, not one the service logged before", () => {
    const dir = temp({
      "pnpm-lock.yaml": "",
      "services/a.mjs": [
        "try {",
        '  await import("optional-x");',
        "} catch (e) {",
        "  console.error(e.message);",
        "}",
        'await import("needed-y");',
        "",
      ].join("\n"),
    });
    expect(failureCause(crash(dir, "services/a.mjs"), dir, [join(dir, "services/a.mjs")])).toEqual({
      location: "services/a.mjs:6",
      message: 'cannot find package "needed-y"',
      fix: "install it: pnpm add needed-y",
    });
  });

  it("says that node cannot run a TypeScript file by itself, and what to start it with", () => {
    // A project of ES modules, as `new` makes: Node refuses the file's extension.
    const dir = temp({
      "package.json": '{ "type": "module" }\n',
      "services/chat.ts": "const x: number = 1;\nexport default x;\n",
    });
    const run = spawnSync(process.execPath, [join(dir, "services", "chat.ts")], { cwd: dir, encoding: "utf8" });
    // Node versions that strip types run it: nothing to explain there.
    if (run.status === 0) return;
    expect(failureCause(run.stderr, dir)).toEqual({
      message: "node cannot run the TypeScript file services/chat.ts by itself",
      fix: 'remove the service\'s "start" from the project file (nitric-like bundles TypeScript itself), or start it with a TypeScript runner, such as "start: npx tsx $SERVICE_PATH"',
    });
  });

  it("takes a TypeScript file the service logged it could not import and went on from for no cause: the error that ended it is", () => {
    const dir = temp({
      "package.json": '{ "type": "module" }\n',
      "plugins/extra.ts": "export const x: number = 1;\n",
      "services/a.mjs": [
        "try {",
        '  await import("../plugins/extra.ts");',
        "} catch (e) {",
        "  console.error(e);",
        "}",
        'throw new TypeError("data.get is not a function");',
        "",
      ].join("\n"),
    });
    const run = spawnSync(process.execPath, [join(dir, "services/a.mjs")], { cwd: dir, encoding: "utf8" });
    expect(run.status).toBe(1);
    // Node versions that strip types import it: nothing was logged to mislead the check.
    if (!run.stderr.includes("ERR_UNKNOWN_FILE_EXTENSION")) return;
    expect(failureCause(run.stderr, dir, [join(dir, "services/a.mjs")])).toEqual({
      location: "services/a.mjs:6",
      message: "TypeError: data.get is not a function",
      fix: "fix it and save: run starts it again when one of its files changes",
    });
    // A service that logged it and exited printing no error: its last output, not a TypeScript fix.
    const logged = `${run.stderr.split("TypeError: data.get")[0]}fatal: database unreachable\n`;
    expect(failureCause(logged, dir, [], undefined, "exited with code 1")).toMatchObject({ lastOutput: true });
  });

  it("skips frames outside the project and in node_modules, and says the last output when there is no error line", () => {
    const dir = temp();
    const output = [
      "Error: nope",
      `    at x (${dir}/node_modules/lib/index.js:1:1)`,
      "    at y (/elsewhere/lib.js:3:3)",
      `    at z (file://${dir}/services/b.ts:7:9)`,
    ].join("\n");
    expect(failureCause(output, dir)).toMatchObject({ location: "services/b.ts:7", message: "nope" });
    expect(failureCause("segfault, or so\n", dir)).toMatchObject({
      message: "it printed no error; its last output: segfault, or so",
      lastOutput: true,
    });
    expect(failureCause("", dir, [], undefined, "was killed by SIGKILL")).toEqual({
      message: "it was killed by SIGKILL, printing nothing",
      fix: "fix it and save: run starts it again when one of its files changes",
      lastOutput: true,
    });
  });

  it("takes no line of a service's own log for the error when Node printed none: how it ended and its last lines, bounded", () => {
    const dir = temp();
    const output = ["config: loading", "Retry: in 1 s", ...Array.from({ length: 12 }, (_, i) => `tick ${i}`)];
    output.push(`bye ${"z".repeat(300)}`, "Node.js v20.0.0");
    expect(failureCause(output.join("\n"), dir, [], undefined, "exited with code 1")).toEqual({
      message: [
        "it exited with code 1; its last output:",
        "... (5 lines before)",
        ...Array.from({ length: 9 }, (_, i) => `tick ${i + 3}`),
        `bye ${"z".repeat(196)}... (cut)`,
      ].join("\n"),
      fix: "fix it and save: run starts it again when one of its files changes",
      lastOutput: true,
    });
    // An error Node printed after the log is still the cause.
    expect(failureCause("config: loading\nTypeError: x is not a function\n", dir)).toMatchObject({
      message: "TypeError: x is not a function",
    });
  });

  it("takes an error the service printed and went on from for no cause: what ended it is said", () => {
    const dir = temp();
    const recent = new RecentOutput(200);
    // console.error(err) of a handled error prints it as Node prints an uncaught one.
    recent.push("TypeError: Cannot read properties of undefined (reading 'url')");
    recent.push(`    at connect (${dir}/services/a.js:3:9)`);
    for (let i = 1; i <= 300; i++) recent.push(`connecting, attempt ${i}`);
    recent.push("fatal: database unreachable, giving up");
    const cause = failureCause(recent.text(), dir, [], undefined, "exited with code 1");
    expect(cause).toEqual({
      message: [
        "it exited with code 1; its last output:",
        "... (190 lines before)",
        ...Array.from({ length: 9 }, (_, i) => `connecting, attempt ${292 + i}`),
        "fatal: database unreachable, giving up",
      ].join("\n"),
      fix: "fix it and save: run starts it again when one of its files changes",
      lastOutput: true,
    });
    // Short of the lines kept too: the log after the error's frames says it went on.
    const short = ["Error: first try failed", `    at a (${dir}/services/a.js:3:9)`, "retrying", "gave up"];
    expect(failureCause(short.join("\n"), dir, [], undefined, "exited with code 1")).toMatchObject({
      lastOutput: true,
    });
  });

  it("takes the error that ended the output for the cause, with its properties, cause and Node's version line after it", () => {
    const dir = temp({
      "services/a.mjs": 'console.error("starting");\nthrow new Error("x", { cause: new Error("y") });\n',
    });
    const real = crash(dir, "services/a.mjs");
    expect(failureCause(`${real}late stdout line\n`, dir)).toMatchObject({
      location: "services/a.mjs:2",
      message: "x",
    });
    const withCode = [
      "Error: boom",
      `    at f (${dir}/services/a.js:2:1) {`,
      "  code: 'E_BOOM'",
      "}",
      "",
      "Node.js v22.0.0",
    ];
    expect(failureCause(withCode.join("\n"), dir)).toMatchObject({ location: "services/a.js:2", message: "boom" });
    // A thread's error and nitric-like's note on it.
    const thread = [
      "Uncaught Error: no addon",
      `    at f (${dir}/services/a.js:2:1)`,
      "nitric-like: start it with --processes",
    ];
    expect(failureCause(thread.join("\n"), dir)).toMatchObject({ message: "no addon" });
  });

  it("reads an error that ended the service as an 'error' event no one listened to, an emitter's or a worker thread's", () => {
    const dir = temp({
      "services/a.mjs":
        'import { EventEmitter } from "node:events";\nconst queue = new EventEmitter();\nsetTimeout(() => queue.emit("error", new Error("the queue closed")), 1);\n',
      "services/b.mjs":
        'import { Worker } from "node:worker_threads";\nnew Worker(\'throw new RangeError("no config")\', { eval: true }).on("message", () => {});\n',
    });
    // Node prints where it was emitted after the error's frames (`Emitted 'error' event at:`).
    const emitter = crash(dir, "services/a.mjs");
    expect(emitter).toContain("Emitted 'error' event at:");
    expect(failureCause(emitter, dir)).toEqual({
      location: "services/a.mjs:3",
      message: "the queue closed",
      fix: "fix it and save: run starts it again when one of its files changes",
    });
    const worker = crash(dir, "services/b.mjs");
    expect(worker).toContain("Emitted 'error' event on Worker instance at:");
    expect(failureCause(worker, dir)).toEqual({
      message: "RangeError: no config",
      fix: "fix it and save: run starts it again when one of its files changes",
    });
    // With the error's properties after the last frame, as a Worker's missing file prints them.
    const missing = [
      `Error: Cannot find module '${dir}/services/config-worker.js'`,
      "    at Module._resolveFilename (node:internal/modules/cjs/loader:1225:15)",
      "Emitted 'error' event on Worker instance at:",
      "    at [kOnErrorMessage] (node:internal/worker:333:10) {",
      "  code: 'MODULE_NOT_FOUND',",
      "  requireStack: []",
      "}",
      "",
      "Node.js v20.20.2",
    ];
    expect(failureCause(missing.join("\n"), dir)).toMatchObject({
      message: `Cannot find module '${dir}/services/config-worker.js'`,
    });
  });

  it("keeps the head of an ending error whose message is longer than the lines kept", () => {
    const dir = temp();
    const recent = new RecentOutput(50);
    recent.push("log before");
    recent.push("Error: bad config:");
    for (let i = 0; i < 80; i++) recent.push(`  line ${i}`);
    recent.push(`    at load (${dir}/services/a.js:9:1)`);
    const cause = failureCause(recent.text(), dir);
    expect(cause.location).toBe("services/a.js:9");
    expect(cause.message.split("\n").slice(0, 2)).toEqual(["bad config:", "line 0"]);
  });
});
