// Errors a person reads, through the real CLI: handler failures and uncaught SDK errors print as
// one line plus the line of the user's code (every frame only with `run --verbose`), with the
// identifiers the source uses even where the bundler renamed them; problems with Ampt-style code
// are worded in Ampt's API; `--json` gives results and failures as JSON on stdout.
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, relative } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { CLI, cleanTemp, connect, runCli, sleep, startApp, stopAll, writeProject } from "../src/harness.js";

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

const PROJECT = "name: errs\nservices:\n  - match: services/*.ts\n";

// Line 12 calls .get on a `data` that shadows the store (esbuild renames it data2 in the bundle);
// line 15 reads a missing key (a NitricLikeError with a gRPC or port error as its cause).
const APP = `import { kv, websocket } from "@nitric-like/sdk";

const socket = websocket("socket");
const data = kv("store").allow("get", "set");

socket.on("connect", () => {});
socket.on("disconnect", () => {});
socket.on("message", async (ctx) => {
  const text = ctx.text();
  if (text === "shadow") {
    const data = JSON.parse('{"lat": 1}') as { get(key: string): unknown };
    data.get("x");
  }
  if (text === "missing") {
    await data.get("no-such-key");
  }
  ctx.reply("done");
});
`;

/** The stderr lines from the first that matches `pattern` up to the next line of another kind. */
function block(stderr: string, pattern: RegExp): string[] {
  const lines = stderr.split("\n");
  const start = lines.findIndex((l) => pattern.test(l));
  if (start < 0) return [];
  const out = [lines[start] as string];
  for (const line of lines.slice(start + 1)) {
    if (!/^app \|\s+(at |\[cause\]|\{|\}|code:|details:)/.test(line)) break;
    out.push(line);
  }
  return out;
}

/**
 * Makes APP's message handler fail twice (a TypeError at line 12, a NitricLikeError at line 15),
 * and waits for the second failure's frame line: a failure's frame lines may arrive in a later
 * chunk of the service's output than its first line.
 */
async function failTwice(app: Awaited<ReturnType<typeof startApp>>) {
  const client = await connect(app.url("socket"));
  client.ws.send("shadow");
  await app.waitFor(/message handler failed for connection \S+: TypeError/);
  client.ws.send("missing");
  await app.waitFor(/message handler failed for connection \S+: NitricLikeError/);
  await app.waitFor(/services\/app\.ts:15/);
  return client;
}

describe("a handler's error in the service log", () => {
  it("is one line with the source's identifier and the user's file and line, no internals", async () => {
    const app = await startApp(writeProject({ "nitric-like.yaml": PROJECT, "services/app.ts": APP }), [
      "--no-dashboard",
    ]);
    const client = await failTwice(app);

    const shadow = block(app.stderr, /TypeError/);
    expect(shadow[0]).toMatch(/TypeError: data\.get is not a function$/);
    expect(shadow.slice(1)).toEqual([expect.stringMatching(/^app \|\s+at .*services\/app\.ts:12:\d+\)?$/)]);

    const missing = block(app.stderr, /NitricLikeError/);
    expect(missing[0]).toMatch(/NitricLikeError: kv\("store"\): key "no-such-key" not found$/);
    expect(missing.slice(1)).toEqual([expect.stringMatching(/^app \|\s+at .*services\/app\.ts:15:\d+\)?$/)]);

    // What is not printed: the bundler's name, the SDK's and its dependencies' frames, the cause.
    expect(app.stderr).not.toContain("data2");
    expect(app.stderr).not.toMatch(/packages\/sdk|node_modules|grpc|\[cause\]|node:internal/);
    client.ws.close();
  }, 40000);

  it("has every frame with run --verbose", async () => {
    const app = await startApp(writeProject({ "nitric-like.yaml": PROJECT, "services/app.ts": APP }), [
      "--no-dashboard",
      "--verbose",
    ]);
    const client = await connect(app.url("socket"));
    client.ws.send("missing");
    await app.waitFor(/message handler failed for connection \S+: NitricLikeError/);
    await app.waitFor(/services\/app\.ts:15/);
    const missing = block(app.stderr, /NitricLikeError/);
    // The SDK's own frames (kv.ts) come before the user's.
    expect(missing.some((l) => /resources\/kv\.ts:\d+/.test(l))).toBe(true);
    expect(missing.length).toBeGreaterThan(2);
    client.ws.close();
  }, 40000);
});

describe("a handler's error in an AWS function's log", () => {
  it("names the TypeScript file and line, through the source map in the function's zip, under run --provider aws as on Lambda", async () => {
    const app = await startApp(writeProject({ "nitric-like.yaml": PROJECT, "services/app.ts": APP }), [
      "--no-dashboard",
      "--provider",
      "aws",
    ]);
    const client = await failTwice(app);

    // The bundle is minified: the message names the minifier's identifier, the frame the source.
    const shadow = block(app.stderr, /TypeError/);
    expect(shadow[0]).toMatch(/TypeError: .+\.get is not a function$/);
    expect(shadow.slice(1)).toEqual([expect.stringMatching(/^app \|\s+at .*services\/app\.ts:12:\d+\)?$/)]);
    const missing = block(app.stderr, /NitricLikeError/);
    expect(missing[0]).toMatch(/NitricLikeError: kv\("store"\): key "no-such-key" not found$/);
    expect(missing.slice(1)).toEqual([expect.stringMatching(/^app \|\s+at .*services\/app\.ts:15:\d+\)?$/)]);
    expect(app.stderr).not.toMatch(/index\.c?js:\d+:\d+/);
    client.ws.close();
  }, 60000);
});

describe("an AWS function's frames", () => {
  it("name the project's files under run --provider aws as the local provider's do, the runtime's by package, and its build no path of the machine", async () => {
    const project = writeProject({ "nitric-like.yaml": PROJECT, "services/app.ts": APP });
    const app = await startApp(project, ["--no-dashboard", "--provider", "aws", "--verbose"]);
    const client = await failTwice(app);
    // The file the user edits, not the copy of the function run built (.nitric-like/aws-run/...).
    expect(block(app.stderr, /TypeError/)[1]).toMatch(
      new RegExp(`^app \\|\\s+at .*\\(${project}/services/app\\.ts:12:\\d+\\)$`),
    );
    const missing = block(app.stderr, /NitricLikeError/);
    expect(missing).toContainEqual(expect.stringMatching(new RegExp(`\\(${project}/services/app\\.ts:15:\\d+\\)$`)));
    // The SDK's frames by its package, as under the project's node_modules (it is linked there
    // from a folder outside the project): no path climbing out of the project.
    expect(missing).toContainEqual(
      expect.stringMatching(
        new RegExp(`\\(${project}/node_modules/@nitric-like/sdk/src/resources/kv\\.ts:\\d+:\\d+\\)$`),
      ),
    );
    const frames = app.stderr.split("\n").filter((line) => /^app \|\s+at /.test(line));
    expect(frames.filter((line) => /aws-run|\.\.\//.test(line))).toEqual([]);
    client.ws.close();

    // What build writes (the zip holds the same files as the function's folder) names no path of
    // the machine: not the project's, the home folder's, nor where the packages it bundles are.
    const out = join(project, "out");
    const built = await runCli(["build", project, "--provider", "aws", "--out", out, "--plain"]);
    expect(built.code, built.stderr).toBe(0);
    const map = JSON.parse(readFileSync(join(out, "functions", "app", "index.cjs.map"), "utf8")) as {
      sources: string[];
    };
    expect(map.sources).toContain("services/app.ts");
    expect(map.sources).toContain("node_modules/@nitric-like/provider-aws/src/runtime/handler.ts");
    expect(map.sources.filter((s) => s.startsWith("../") || s.startsWith("/"))).toEqual([]);
    // The clone the packages are linked from, without its leading slash (as a "../../" source held it).
    const packages = relative(
      "/",
      dirname(dirname(realpathSync(join(project, "node_modules", "@nitric-like", "sdk")))),
    );
    for (const file of readdirSync(join(out, "functions"), { recursive: true, encoding: "utf8" })) {
      const path = join(out, "functions", file);
      if (!statSync(path).isFile() || file.endsWith(".zip")) continue;
      const text = readFileSync(path, "utf8");
      for (const machine of [project, homedir(), packages])
        expect(text.includes(machine), `${file}: ${machine}`).toBe(false);
    }
  }, 90000);
});

describe("ctx.reject() given the wrong types from JavaScript", () => {
  it("fails that connect handler, saying what to give, and the service keeps serving", async () => {
    const app = await startApp(
      writeProject({
        "nitric-like.yaml": PROJECT,
        "services/gate.ts": `import { websocket } from "@nitric-like/sdk";

const socket = websocket("socket");
socket.on("connect", (ctx) => {
  const c = ctx as unknown as { reject(reason?: unknown, status?: unknown): void };
  const how = ctx.query.how?.[0];
  if (how === "status-string") c.reject("no", "401");
  if (how === "reason-object") c.reject({ why: "no" }, 403);
  if (how === "status-200") c.reject("no", 200);
  if (how === "ok") c.reject("who are you", 401);
});
socket.on("disconnect", () => {});
socket.on("message", () => "still here");
`,
      }),
      ["--no-dashboard"],
    );
    const url = app.url("socket");
    const open = await connect(url);
    for (const [how, said] of [
      ["status-string", 'ctx.reject(): the status is string "401"; give a number from 400 to 599, such as 401 or 403'],
      ["reason-object", "ctx.reject(): the reason is object; give a string, the body the client reads"],
      ["status-200", "ctx.reject(): the status is 200; give a number from 400 to 599"],
    ] as const) {
      await expect(connect(`${url}/?how=${how}`)).rejects.toMatchObject({
        status: 500,
        body: "connect handler failed",
      });
      await app.waitFor(new RegExp(said.replace(/[.*+?^$()|[\]\\{}]/g, "\\$&")));
    }
    await expect(connect(`${url}/?how=ok`)).rejects.toMatchObject({ status: 401, body: "who are you" });
    // The service never died: the connection opened first is still served, and nothing restarted.
    open.ws.send("x");
    expect((await open.next()).text).toBe("still here");
    expect(app.stderr).not.toMatch(/exited|restarting|CodecError/);
    open.close();
  }, 40000);
});

describe("an SDK error nobody catches", () => {
  const TOP_LEVEL = `import { kv, websocket } from "@nitric-like/sdk";

const socket = websocket("socket");
const data = kv("store").allow("get");
socket.on("connect", () => {});
socket.on("disconnect", () => {});
socket.on("message", () => {});
await data.get("boot");
`;

  it("prints as one line and the user's line when the collect pass fails on it, without its cause", async () => {
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/app.ts": TOP_LEVEL });
    const { code, stdout, stderr } = await runCli(["spec", dir, "--plain"]);
    expect(code).toBe(1);
    expect(stdout).toBe("");
    const lines = stderr.split("\n");
    // The error's one line names the user's line (file:line) and the SDK's message, then the fix.
    const at = lines.findIndex((l) => l.includes("at services/app.ts:8: kv get is not available while nitric-like"));
    expect(at, stderr).toBeGreaterThan(-1);
    expect(lines[at]).toMatch(/^error: service "app" \(services\/app\.ts\): exited with code 1 while its resources/);
    expect(lines[at + 1]).toBe("  fix it, then run nitric-like spec again");
    expect(lines[at + 2]).toMatch(/^error: the spec of "errs" has 1 problem/);
    expect(stderr).not.toMatch(/\[cause\]|grpc|node:internal|triggerUncaughtException|code: 14/);
  }, 30000);
});

describe("an SDK error nobody catches under run", () => {
  // Past the collect pass, the service reads a key nobody wrote as it starts: it fails every start.
  const AT_START = `import { kv, websocket } from "@nitric-like/sdk";

const socket = websocket("socket");
const data = kv("store").allow("get");
socket.on("connect", () => {});
socket.on("disconnect", () => {});
socket.on("message", () => {});
if (process.env.NITRIC_ENVIRONMENT !== "build") await data.get("boot");
`;

  /** Runs `run` until its stderr matches `pattern` (or 20 s), then stops it; resolves with stderr. */
  async function runUntil(dir: string, args: string[], pattern: RegExp): Promise<string> {
    const child = spawn(process.execPath, [CLI, "run", dir, "--random-ports", "--plain", "--no-dashboard", ...args], {
      env: { ...process.env, NO_COLOR: "1" },
    });
    let stderr = "";
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const exited = new Promise((resolve) => child.once("exit", resolve));
    const deadline = Date.now() + 20000;
    while (!pattern.test(stderr) && Date.now() < deadline && child.exitCode === null) await sleep(50);
    child.kill("SIGINT");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10000);
    await exited;
    clearTimeout(timer);
    return stderr;
  }

  for (const [kind, args] of [
    ["a worker thread", []],
    ["a process", ["--processes"]],
  ] as const) {
    it(`prints as one line and the user's line, without its cause, in ${kind}`, async () => {
      const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/app.ts": AT_START });
      const stderr = await runUntil(dir, [...args], /Uncaught NitricLikeError[^\n]*\n[^\n]*\n/);
      const lines = stderr.split("\n");
      const at = lines.findIndex((l) =>
        /^app \| Uncaught NitricLikeError: kv\("store"\): key "boot" not found$/.test(l),
      );
      expect(at, stderr).toBeGreaterThan(-1);
      expect(lines[at + 1]).toMatch(/^app \|\s+at .*services\/app\.ts:8:\d+\)?$/);
      expect(lines[at + 2] ?? "").not.toMatch(/^app \|/);
      expect(stderr).not.toMatch(/\[cause\]|grpc|node:internal|triggerUncaughtException|errors\.ts/);
    }, 40000);
  }
});

describe("a missing handler", () => {
  it("is worded in Ampt's API for code that uses @nitric-like/sdk/ampt", async () => {
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/tracker.ts": `import { ws } from "@nitric-like/sdk/ampt";
ws.on("connected", () => {});
ws.on("message", () => {});
`,
    });
    const { code, stderr } = await runCli(["spec", dir, "--plain"]);
    expect(code).toBe(1);
    expect(stderr).toContain(
      'missing ws.on("disconnected", ...) for websocket ws: add ws.on("disconnected", (connection) => { ... }) to one service',
    );
    expect(stderr).not.toContain('websocket("ws").on("disconnect"');
  }, 30000);

  it("is worded in Nitric's API for code that uses websocket()", async () => {
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/chat.ts": `import { websocket } from "@nitric-like/sdk";
const socket = websocket("ws");
socket.on("connect", () => {});
socket.on("message", () => {});
`,
    });
    const { code, stderr } = await runCli(["spec", dir, "--plain"]);
    expect(code).toBe(1);
    expect(stderr).toContain(
      'missing disconnect handler for websocket ws: add websocket("ws").on("disconnect", handler) to one service',
    );
    expect(stderr).not.toContain("ws.on(");
  }, 30000);
});

describe("--json", () => {
  const GOOD = `import { websocket } from "@nitric-like/sdk";
const socket = websocket("socket");
socket.on("connect", () => {});
socket.on("disconnect", () => {});
socket.on("message", () => {});
`;

  it("spec: the spec on stdout and progress on stderr; problems as a JSON error with exit 1", async () => {
    const good = await runCli([
      "spec",
      writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": GOOD }),
      "--json",
    ]);
    expect(good.code, good.stderr).toBe(0);
    expect(JSON.parse(good.stdout)).toMatchObject({ name: "errs", services: [{ name: "chat" }] });
    expect(good.stderr).toContain("collecting resources");

    const bad = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": GOOD.replace(/.*"message".*\n/, "") });
    const failed = await runCli(["spec", bad, "--json"]);
    expect(failed.code).toBe(1);
    expect(JSON.parse(failed.stdout)).toEqual({
      error: {
        message: 'the spec of "errs" has 1 problem (listed in problems)',
        problems: [
          'missing message handler for websocket socket: add websocket("socket").on("message", handler) to one service',
        ],
      },
    });
    // People still read the problem on stderr.
    expect(failed.stderr).toContain("error: missing message handler for websocket socket");
    expect(failed.stderr).toContain("has 1 problem (listed above)");

    // The project file's problems are listed in the JSON too, not only on stderr.
    const file = await runCli([
      "spec",
      writeProject({ "nitric-like.yaml": "name: Bad Name\nservices: 3\n", "services/chat.ts": GOOD }),
      "--json",
    ]);
    expect(file.code).toBe(1);
    const { error } = JSON.parse(file.stdout) as { error: { message: string; problems: string[] } };
    expect(error.message).toBe("the project file has 2 problems (listed in problems)");
    expect(error.problems).toHaveLength(2);
  }, 30000);

  it("build: the files written as JSON on stdout, nothing else there", async () => {
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": GOOD });
    const { code, stdout, stderr } = await runCli(["build", dir, "--provider", "aws", "--json"], { timeoutMs: 60000 });
    expect(code, stderr).toBe(0);
    const result = JSON.parse(stdout);
    expect(result).toMatchObject({ project: "errs", provider: "aws" });
    expect(result.files.length).toBeGreaterThan(0);
    for (const file of result.files) expect(existsSync(file), file).toBe(true);
    expect(result.files.some((f: string) => f.endsWith("template.json"))).toBe(true);
    // The lines printed without --json went to stderr.
    expect(stderr).toContain(result.files[0]);
    expect(
      JSON.parse(
        readFileSync(
          result.files.find((f: string) => f.endsWith("template.json")),
          "utf8",
        ),
      ),
    ).toHaveProperty("Resources");
  }, 60000);

  it("a command-line mistake is a JSON error too, and commands without --json refuse it", async () => {
    const { code, stdout } = await runCli(["spec", "/nonexistent-folder-for-nitric-like", "--json"]);
    expect(code).toBe(1);
    expect(JSON.parse(stdout).error.message).toMatch(/no project file found|does not exist|no such folder/);
    const run = await runCli(["run", "--json"]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toContain('run "nitric-like run --help" for its options');
  }, 30000);

  it("is in the help of each command that has it", async () => {
    for (const command of ["spec", "build", "up", "down", "outputs"]) {
      const { code, stdout } = await runCli([command, "--help"]);
      expect(code).toBe(0);
      expect(stdout, command).toContain("--json");
    }
    const run = await runCli(["run", "--help"]);
    expect(run.stdout).toContain("--verbose");
    expect(run.stdout).not.toContain("@nitric/sdk\n                      or a start command always get processes");
    const main = await runCli(["--help"]);
    expect(main.stdout).toContain("outputs [dir]");
  }, 30000);
});
