// An honest `nitric-like run`: "ready" and the socket lines only once every service has started; a
// service that fails says why once (file:line, message, fix) and waits for a file change instead of
// a restart loop; a crash loop stops; a socket event handled by two services is refused as `spec`
// refuses it. Real CLI, real service threads and processes, real files changed on disk.
import { spawn } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { App, CLI, cleanTemp, connect, dashboardFetch, runCli, sleep, stopAll, writeProject } from "../src/harness.js";

const started: App[] = [];
afterEach(async () => {
  for (const app of started.splice(0)) {
    const { code } = await app.stop();
    expect(code, app.stderr).toBe(0);
  }
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

/** `run` on a project, without waiting for "ready" (it may never come). */
function runApp(dir: string, args: string[] = [], dashboard = false): App {
  const flags = ["--random-ports", "--plain", ...(dashboard ? [] : ["--no-dashboard"])];
  const child = spawn(process.execPath, [CLI, "run", dir, ...flags, ...args], {
    env: { ...process.env, NO_COLOR: "1" },
  });
  const app = new App(dir, child);
  started.push(app);
  return app;
}

const PROJECT = "name: honest\nservices:\n  - match: services/*.ts\n";

/** A chat service; `top` is code placed at its top level, after the import. */
function chat(top = "", socket = "chat"): string {
  return [
    'import { websocket } from "@nitric-like/sdk";',
    top,
    `const socket = websocket(${JSON.stringify(socket)});`,
    'socket.on("connect", () => {});',
    'socket.on("disconnect", () => {});',
    'socket.on("message", (ctx) => "echo " + ctx.text());',
  ].join("\n");
}

function count(text: string, pattern: RegExp): number {
  return [...text.matchAll(new RegExp(pattern.source, `${pattern.flags.replace("g", "")}g`))].length;
}

/** Nothing of a stack or of Node's crash banner was printed. */
function expectNoStack(app: App): void {
  expect(app.stderr).not.toMatch(/^\S* ?\|? +at /m);
  expect(app.stderr).not.toContain("Node.js v");
  expect(app.stderr).not.toContain("ModuleJob");
  expect(app.stderr).not.toMatch(/restarting in/);
}

/**
 * Runs `check` for each case at once, each on its own project and CLI: most of each is waiting
 * (backoffs, a quiet spell watched for, a service's timers). A failure names its case.
 */
async function sideBySide<T extends { how: string }>(cases: T[], check: (c: T) => Promise<void>): Promise<void> {
  await Promise.all(
    cases.map((c) =>
      check(c).catch((error: unknown) => {
        if (error instanceof Error) error.message = `${c.how}: ${error.message}`;
        throw error;
      }),
    ),
  );
}

/** `check` for a service in a worker thread (run's default) and in a process (--processes), side by side. */
function threadAndProcess(check: (c: { how: string; args: string[] }) => Promise<void>): Promise<void> {
  return sideBySide(
    [
      { how: "service in a worker thread", args: [] },
      { how: "service in a process", args: ["--processes"] },
    ],
    check,
  );
}

describe("nitric-like run: a service that fails", () => {
  it("at import (collect pass): no ready and no socket line, its cause once in two lines, no restart; saving a fix makes it ready", async () => {
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/chat.ts": chat('function boom(): never {\n  throw new Error("boom at import");\n}\nboom();'),
    });
    const app = runApp(dir);
    await app.waitFor(/failed while its resources were being collected/);
    await sleep(1500);
    const lines = app.stderr.split("\n");
    const at = lines.findIndex((l) => l.startsWith("error:"));
    expect(lines[at]).toBe(
      'error: service "chat" (services/chat.ts:3) failed while its resources were being collected (exited with code 1): boom at import',
    );
    expect(lines[at + 1]).toBe("  fix it and save: run starts it again when one of its files changes");
    expect(count(app.stderr, /boom at import/)).toBe(1);
    expectNoStack(app);
    expect(app.stdout).toBe("");
    expect(app.stderr).not.toContain("ready");

    writeFileSync(join(dir, "services", "chat.ts"), chat());
    await app.waitFor(/^ready: honest, 1 service/m);
    expect(app.stderr).toContain('services/chat.ts changed: collecting service "chat" again');
    const c = await connect(app.url("chat"));
    c.ws.send("hi");
    expect((await c.next()).text).toBe("echo hi");
  }, 40000);

  it("at import (collect pass): a saved fix is bundled once, its thread bundle, and collected in a thread as at start", async () => {
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/chat.ts": chat('throw new Error("boom at import");'),
    });
    const app = runApp(dir, ["--verbose"]);
    await app.waitFor(/failed while its resources were being collected/);
    const from = app.stderr.length;
    writeFileSync(join(dir, "services", "chat.ts"), chat());
    await app.waitFor(/^ready: honest, 1 service/m);
    expect(app.stderr.slice(from).match(/^bundled service "chat" .*$/gm)).toEqual([
      expect.stringMatching(/^bundled service "chat" \(thread bundle\) in \d+ ms$/),
    ]);
    // Its own bundle, for a process, was not made: the pass ran in a thread.
    expect(existsSync(join(dir, ".nitric-like", "build", "chat.mjs"))).toBe(false);
    const c = await connect(app.url("chat"));
    c.ws.send("hi");
    expect((await c.next()).text).toBe("echo hi");
  }, 40000);

  it(
    "at start (run only, service in a worker thread and in a process): its cause once, no ready, no restart loop",
    () =>
      threadAndProcess(async ({ args }) => {
        const dir = writeProject({
          "nitric-like.yaml": PROJECT,
          "services/chat.ts": chat(
            'if (process.env.NITRIC_ENVIRONMENT === "run") throw new Error("DATABASE_URL is not set; add it to .env");',
          ),
        });
        const app = runApp(dir, args);
        await app.waitFor(/failed to start/);
        await sleep(1500);
        expect(app.stderr).toContain(
          'error: service "chat" (services/chat.ts:2) failed to start (exited with code 1): DATABASE_URL is not set; add it to .env\n  fix it and save: run starts it again when one of its files changes\n',
        );
        expect(count(app.stderr, /DATABASE_URL/)).toBe(1);
        expectNoStack(app);
        expect(app.stdout).toBe("");
        expect(app.stderr).not.toContain("ready");
      }),
    30000,
  );

  it(
    "on a missing package: names the import's line and npm install left-pad-nope (package-lock.json) or pnpm add left-pad-nope (pnpm-lock.yaml); a change to package.json retries it once",
    () =>
      sideBySide(
        [
          { how: "package-lock.json", lockfile: "package-lock.json", install: "npm install left-pad-nope" },
          { how: "pnpm-lock.yaml", lockfile: "pnpm-lock.yaml", install: "pnpm add left-pad-nope" },
        ],
        async ({ lockfile, install }) => {
          const dir = writeProject({
            "nitric-like.yaml": PROJECT,
            "package.json": '{ "name": "honest", "type": "module" }\n',
            [lockfile]: lockfile.endsWith(".json") ? "{}\n" : "lockfileVersion: '9.0'\n",
            "services/chat.ts": chat('import leftPad from "left-pad-nope";\nconsole.log(leftPad("x", 3));'),
          });
          const app = runApp(dir);
          // Both lines (they may arrive in two reads).
          await app.waitFor(/failed while its resources were being collected[^\n]*\n {2}install it: [^\n]*\n/);
          expect(app.stderr).toContain(
            `error: service "chat" (services/chat.ts:2) failed while its resources were being collected (exited with code 1): cannot find package "left-pad-nope"\n  install it: ${install}\n`,
          );
          expectNoStack(app);
          // What an install does to the project: package.json changes. The service is tried again, once.
          writeFileSync(join(dir, "package.json"), '{ "name": "honest", "type": "module", "dependencies": {} }\n');
          await app.waitFor(/the project's packages changed: collecting service "chat" again/);
          await app.waitFor(/install it:[\s\S]*install it:/);
          await sleep(1500);
          expect(count(app.stderr, /install it: /), app.stderr).toBe(2);
          expect(app.stderr).not.toContain("ready");
        },
      ),
    40000,
  );

  it("on an invalid resource name: the SDK's one-line message at the declaring line, without its internals", async () => {
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": chat("", "Bad Chat") });
    const app = runApp(dir);
    await app.waitFor(/failed while its resources were being collected/);
    await sleep(1000);
    expect(app.stderr).toContain(
      'error: service "chat" (services/chat.ts:3) failed while its resources were being collected (exited with code 1): websocket("Bad Chat"): invalid resource name "Bad Chat", use lower-kebab-case such as "bad-chat"\n',
    );
    expect(app.stderr).not.toContain("NitricLikeError");
    expect(app.stderr).not.toContain("declaredOnce");
    expectNoStack(app);
    expect(app.stdout).toBe("");
  }, 30000);

  it("that ends by itself with nothing to serve (a helper module in the services' folder): said once, no restarts, and ready", async () => {
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/chat.ts": chat(),
      // What it logs on stdout is no failure: it still just ended.
      "services/util.ts": 'console.log("util: loaded");\nexport const greeting = (name: string) => `hello ${name}`;\n',
    });
    const app = runApp(dir);
    await app.waitFor(/^ready: honest, 2 services/m);
    await sleep(1500);
    expect(app.stderr).toContain(
      'error: service "util" (services/util.ts) failed to stay up: it ended by itself (exit code 0) and registers no handler\n  a service runs until stopped, serving its handlers; if services/util.ts is not a service (a helper module, say), keep it out of the services\' match in the project file\n',
    );
    expect(count(app.stderr, /service "util"/)).toBe(1);
    expect(app.stderr).not.toContain("restarting");
    const c = await connect(app.url("chat"));
    c.ws.send("hi");
    expect((await c.next()).text).toBe("echo hi");
  }, 30000);

  it("with --no-watch, where nothing would start it again: says to restart run, and exits 1 once no service runs", async () => {
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": chat('throw new Error("broken");') });
    const { code, stdout, stderr } = await runCli([
      "run",
      dir,
      "--random-ports",
      "--plain",
      "--no-dashboard",
      "--no-watch",
    ]);
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toContain(
      'error: service "chat" (services/chat.ts:2) failed while its resources were being collected (exited with code 1): broken\n  fix it, then start run again (--no-watch: it does not watch files)\n',
    );
    expect(stderr).toContain("error: no service is running, and with --no-watch none starts again");
    expect(stderr).not.toContain("ready");
  }, 30000);

  it("with --no-watch, where ready can never come: exits 1 once the others have started, with every failed service's cause, instead of hanging", async () => {
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/chat.ts": chat(),
      "services/loading.ts": chat('throw new Error("bad config:\\n  DB_URL is missing");', "loading"),
      "services/starting.ts": chat(
        'if (process.env.NITRIC_ENVIRONMENT === "run") throw new Error("no database at start");',
        "starting",
      ),
    });
    const { code, stdout, stderr } = await runCli(
      ["run", dir, "--random-ports", "--plain", "--no-dashboard", "--no-watch"],
      { timeoutMs: 30000 },
    );
    expect(code, stderr).toBe(1);
    const fix = "  fix it, then start run again (--no-watch: it does not watch files)\n";
    expect(stderr).toContain(
      `error: service "loading" (services/loading.ts:2) failed while its resources were being collected (exited with code 1): bad config:\n    DB_URL is missing\n${fix}`,
    );
    expect(stderr).toContain(
      `error: service "starting" (services/starting.ts:2) failed to start (exited with code 1): no database at start\n${fix}`,
    );
    expect(stderr).toContain(
      'error: services "loading", "starting" did not start, and with --no-watch they do not start again, so run cannot be ready: fix the problems above and start run again (without --no-watch, run serves the other services while you fix them)\n',
    );
    expect(stdout).toBe("");
    expect(stderr).not.toMatch(/^ready/m);
    expect(stderr).not.toContain("no service is running");
  }, 40000);

  it("shows an error's whole multi-line message, not its first line nor the service's own log, and cuts a huge one with a note", async () => {
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/config.ts": chat(
        'console.log("db: connected");\nconsole.error("cache: warm");\nthrow new Error("bad config:\\n  PORT must be a number\\n  HOST is missing");',
        "config",
      ),
      // More lines than run keeps of a service's output, and one line far longer than a screen.
      "services/lines.ts": chat(
        'throw new Error("many lines:\\n" + Array.from({ length: 5000 }, (_, i) => "  line " + i).join("\\n"));',
        "lines",
      ),
      "services/wide.ts": chat('throw new Error("wide: " + "w".repeat(200_000));', "wide"),
    });
    const { code, stderr } = await runCli(["run", dir, "--random-ports", "--plain", "--no-dashboard", "--no-watch"]);
    expect(code).toBe(1);
    const fix = "  fix it, then start run again (--no-watch: it does not watch files)\n";
    const failed = (service: string, line = 2) =>
      `error: service "${service}" (services/${service}.ts:${line}) failed while its resources were being collected (exited with code 1): `;
    expect(stderr).toContain(
      `${failed("config", 4)}bad config:\n    PORT must be a number\n    HOST is missing\n${fix}`,
    );
    const cut = "... (the message is cut here: a failure shows at most 20 lines, 2000 characters of it)";
    const lines = Array.from({ length: 19 }, (_, i) => `    line ${i}\n`).join("");
    expect(stderr).toContain(`${failed("lines")}many lines:\n${lines}    ${cut}\n${fix}`);
    expect(stderr).toContain(`${failed("wide")}wide: ${"w".repeat(1994)}\n    ${cut}\n${fix}`);
    expect(stderr.length).toBeLessThan(10_000);
  }, 30000);

  it(
    "that logs its problem and exits, printing no error, is said by how it ended and its last output, no log line taken for the error (service in a worker thread and in a process)",
    () =>
      threadAndProcess(async ({ args }) => {
        // A log line shaped like an error's first line (`word: text`), then the problem, then exit.
        const logged = [
          'console.error("config: loading");',
          'console.error("could not reach the database at localhost:5432; is it running?");',
          "process.exit(3);",
        ].join("\n");
        const dir = writeProject({
          "nitric-like.yaml": PROJECT,
          "services/loading.ts": chat(logged, "loading"),
          "services/starting.ts": chat(`if (process.env.NITRIC_ENVIRONMENT === "run") {\n${logged}\n}`, "starting"),
        });
        const { code, stderr } = await runCli(
          ["run", dir, "--random-ports", "--plain", "--no-dashboard", "--no-watch", ...args],
          { timeoutMs: 60000 },
        );
        expect(code).toBe(1);
        const said =
          "it exited with code 3; its last output:\n    config: loading\n    could not reach the database at localhost:5432; is it running?\n  fix it, then start run again (--no-watch: it does not watch files)\n";
        expect(stderr).toContain(
          `error: service "loading" (services/loading.ts) failed while its resources were being collected: ${said}`,
        );
        expect(stderr).toContain(`error: service "starting" (services/starting.ts) failed to start: ${said}`);
        expect(stderr).not.toMatch(/failed[^\n]*: loading/);
      }),
    60000,
  );

  it(
    "whose top-level await nothing is left to settle only once it runs (Node's exit code 13) is told what code 13 means, as the collect pass tells it, then its last output (service in a worker thread and in a process)",
    () =>
      threadAndProcess(async ({ args }) => {
        // Past the collect pass (it declares there), stuck under run at an await nothing settles.
        const stuck = (log: string) =>
          `if (process.env.NITRIC_ENVIRONMENT === "run") {\n${log}await new Promise(() => {});\n}`;
        const dir = writeProject({
          "nitric-like.yaml": PROJECT,
          "services/config.ts": chat(stuck('console.log("waiting for the config service");\n'), "config"),
          "services/quiet.ts": chat(stuck(""), "quiet"),
        });
        const { code, stderr } = await runCli(
          ["run", dir, "--random-ports", "--plain", "--no-dashboard", "--no-watch", ...args],
          { timeoutMs: 60000 },
        );
        expect(code).toBe(1);
        const meaning = (file: string) =>
          `Node's code for a module whose top-level await never settled, nothing being left that could settle it (a promise nothing resolves); look in services/${file}, and what it imports, for that await, and register handlers at module load, before any await that may not settle`;
        const fix = "\n  fix it, then start run again (--no-watch: it does not watch files)\n";
        expect(stderr).toContain(
          `error: service "config" (services/config.ts) failed to start: it exited with code 13: ${meaning("config.ts")}; its last output: waiting for the config service${fix}`,
        );
        expect(stderr).toContain(
          `error: service "quiet" (services/quiet.ts) failed to start: it exited with code 13, printing nothing: ${meaning("quiet.ts")}${fix}`,
        );
      }),
    60000,
  );

  it("stopped by the collect pass (a blocked top level, nothing declared in time) is said by the pass's message, not by a line it logged, in run and spec", async () => {
    // Lines that look like a cause but are not it: one shaped as an error, one as a log's `word: text`.
    const logged = 'console.error("config: loading");\nconsole.error("Error: retrying the cache in a second");';
    const files = {
      "nitric-like.yaml": PROJECT,
      "services/blocked.ts": chat(`${logged}\nwhile (Date.now() > 0);`, "blocked"),
      "services/silent.ts": [
        'import { kv } from "@nitric-like/sdk";',
        logged,
        'if (process.env.NEVER_SET_HERE) kv("store");',
        "setInterval(() => {}, 1000);",
      ].join("\n"),
    };
    // Each waits out the collect pass's 15 s: run and spec side by side, on copies of the project.
    const [run, spec] = await Promise.all([
      runCli(["run", writeProject(files), "--random-ports", "--plain", "--no-dashboard", "--no-watch"], {
        timeoutMs: 60000,
      }),
      runCli(["spec", writeProject(files), "--plain"], { timeoutMs: 60000 }),
    ]);
    const blocked =
      /its event loop was not turning \d+\.\d s after it started \(a loop at its top level that never yields, or a synchronous wait\), so its handlers could not be collected; look in services\/blocked\.ts, and what it imports, for a loop with no await in it or a synchronous wait \(Atomics\.wait, execSync\) that runs as it loads\n/;
    const silent =
      "declared nothing within 15 s and did not exit; a service must declare its resources when it starts: look in services/silent.ts for a top-level await that never settles before its first declaration (a connection that never opens, a promise nothing resolves), or a declaration its code skips (one under a condition)\n";
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(
      new RegExp(
        `error: service "blocked" \\(services/blocked\\.ts\\) failed while its resources were being collected: ${blocked.source}  fix it, then start run again`,
      ),
    );
    expect(run.stderr).toContain(
      `error: service "silent" (services/silent.ts) failed while its resources were being collected: ${silent}  fix it, then start run again`,
    );
    expect(spec.code).toBe(1);
    expect(spec.stderr).toMatch(
      new RegExp(
        `error: service "blocked" \\(services/blocked\\.ts\\): ${blocked.source}  fix it, then run nitric-like spec again\n`,
      ),
    );
    expect(spec.stderr).toContain(
      `error: service "silent" (services/silent.ts): ${silent}  fix it, then run nitric-like spec again\n`,
    );
    for (const { stderr } of [run, spec]) expect(stderr).not.toMatch(/retrying the cache|: loading/);
  }, 90000);

  it("shows the error that ends a thread after over 8 MB of output, which the thread's output bound drops, at load and at start", async () => {
    // Written in one synchronous loop: 12 MB, past the 8 MB a thread holds back, so what follows
    // (our SDK's print of the uncaught error) is dropped whatever the machine's speed.
    const flood = 'const line = "x".repeat(200);\nfor (let i = 0; i < 60000; i++) console.error(i, line);';
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/loading.ts": chat(`${flood}\nwebsocket("Bad Load");`, "loading"),
      "services/starting.ts": chat(
        `if (process.env.NITRIC_ENVIRONMENT === "run") {\n${flood}\nwebsocket("Bad Start");\n}`,
        "starting",
      ),
    });
    const { code, stderr } = await runCli(["run", dir, "--random-ports", "--plain", "--no-dashboard", "--no-watch"], {
      timeoutMs: 60000,
    });
    expect(code).toBe(1);
    expect(stderr).toContain(
      'error: service "loading" (services/loading.ts:4) failed while its resources were being collected (exited with code 1): websocket("Bad Load"): invalid resource name "Bad Load", use lower-kebab-case such as "bad-load"\n',
    );
    expect(stderr).toContain(
      'error: service "starting" (services/starting.ts:5) failed to start (exited with code 1): websocket("Bad Start"): invalid resource name "Bad Start", use lower-kebab-case such as "bad-start"\n',
    );
  }, 90000);

  it("holds ready back while one service of two has failed, the other serving meanwhile, and prints it once the failed one is fixed", async () => {
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/chat.ts": chat(),
      "services/other.ts": chat('throw new Error("not yet");', "other"),
    });
    const app = runApp(dir, [], true);
    await app.waitFor(/service "other" \(services\/other\.ts:2\) failed/);
    await sleep(1000);
    expect(app.stdout).toMatch(/^dashboard http:\/\/127\.0\.0\.1:\d+\/#key=[\w-]+\n$/);
    expect(app.stderr).not.toContain("ready");
    // The service that did not fail serves meanwhile (its URL, from the dashboard, as it is not printed yet).
    const state = (await (await dashboardFetch(app, `/api/state`)).json()) as {
      sockets: { name: string; url: string }[];
    };
    const url = state.sockets.find((s) => s.name === "chat")?.url as string;
    const early = await connect(url);
    early.ws.send("early");
    expect((await early.next()).text).toBe("echo early");
    writeFileSync(join(dir, "services", "other.ts"), chat("", "other"));
    await app.waitFor(/^ready: honest, 2 services/m);
    for (const name of ["chat", "other"]) {
      const c = await connect(app.url(name));
      c.ws.send(name);
      expect((await c.next()).text).toBe(`echo ${name}`);
    }
  }, 40000);
});

describe("nitric-like run: a saved service that fails at load", () => {
  it("refuses its clients at once with 503 saying it waits for a file change, not the failure run's log says (a password in its message)", async () => {
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": chat() });
    const app = runApp(dir);
    await app.waitFor(/^ready: /m);
    const top =
      'if (process.env.NITRIC_ENVIRONMENT === "run") throw new Error("cannot reach postgres://app:hunter2@127.0.0.1:1/app");';
    writeFileSync(join(dir, "services", "chat.ts"), chat(top));
    await app.waitFor(/failed to start/, 15000);
    // run's log has the whole cause...
    expect(app.stderr).toContain(
      'error: service "chat" (services/chat.ts:2) failed to start (exited with code 1): cannot reach postgres://app:hunter2@127.0.0.1:1/app\n',
    );
    // ...its clients only that it waits: a thrown message may hold a password, and under
    // --host 0.0.0.0 the clients are on the network.
    const refused = await connect(app.url("chat")).then(
      () => "",
      (error: Error) => error.message,
    );
    expect(refused).toMatch(
      /^refused: 503 websocket "chat": the connect handler is not registered \(connection \S+\): its service "chat" is not running until one of its files changes \(run's output says why\)\n$/,
    );
    expect(refused).not.toContain("hunter2");
    expect(refused).not.toContain("services/chat.ts");
  }, 40000);
});

describe("nitric-like run: a failed service fixed into a conflict", () => {
  it("is refused with spec's message and keeps waiting, and ready stays held back", async () => {
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/a.ts": chat(),
      "services/b.ts": 'throw new Error("not yet");\n',
    });
    const app = runApp(dir);
    await app.waitFor(/service "b" \(services\/b\.ts:1\) failed/);
    writeFileSync(
      join(dir, "services", "b.ts"),
      'import { websocket } from "@nitric-like/sdk";\nwebsocket("chat").on("message", () => "b");\n',
    );
    await app.waitFor(/waits for a file change/);
    expect(app.stderr).toContain(
      'error: websocket chat: the message event is handled by "a" and "b"; a socket event has exactly one handler, so keep socket.on("message", ...) in one service\n  service "b" waits for a file change\n',
    );
    await sleep(1000);
    expect(app.stdout).toBe("");
    expect(app.stderr).not.toContain("ready");
  }, 30000);
});

describe("nitric-like run: output while a service starts", () => {
  it("is held back at most 3 s: a changed service that no longer registers an expected handler still shows its stderr", async () => {
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": chat() });
    const app = runApp(dir);
    await app.waitFor(/^ready: /m);
    writeFileSync(
      join(dir, "services", "chat.ts"),
      [
        'import { websocket } from "@nitric-like/sdk";',
        'console.error("hello from v2");',
        'const socket = websocket("chat");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
      ].join("\n"),
    );
    await app.waitFor(/services\/chat\.ts changed: restarting service "chat"/);
    const changed = Date.now();
    await app.waitFor(/^chat \| hello from v2$/m, 10000);
    expect(Date.now() - changed).toBeLessThan(6000);
    expect(count(app.stderr, /hello from v2/)).toBe(1);
  }, 30000);
});

describe("nitric-like run: a crash loop", () => {
  it("stops restarting after 5 crashes in 30 s of a service that had started, says so once, and a saved change starts it again", async () => {
    const crashing = chat('if (process.env.NITRIC_ENVIRONMENT === "run") setTimeout(() => process.exit(3), 300);');
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": crashing });
    const app = runApp(dir);
    await app.waitFor(/^ready: /m);
    await app.waitFor(/crashed 5 times/, 20000);
    await sleep(2500);
    expect(count(app.stderr, /error: service "chat" crashed 5 times in 30 s; waiting for a file change/)).toBe(1);
    // Four restarts (0.25, 0.5, 1 and 2 s), then none.
    expect(count(app.stderr, /service "chat" exited with code 3; restarting in/)).toBe(4);
    writeFileSync(join(dir, "services", "chat.ts"), chat());
    await app.waitFor(/services\/chat\.ts changed: restarting service "chat"/);
    const c = await connect(app.url("chat"));
    let answer = "";
    for (let i = 0; i < 50 && answer !== "echo back"; i++) {
      c.ws.send("back");
      answer = (await c.next(5000)).text;
    }
    expect(answer).toBe("echo back");
  }, 40000);
});

describe("nitric-like run: a crash loop's wait for a file change", () => {
  it.each([
    { how: "a worker thread", args: [] as string[] },
    { how: "a process", args: ["--processes"] },
  ])(
    "after a save that does not fix it says so once, with no new round of restarts; a save that fixes it serves (service in $how)",
    async ({ args }) => {
      const crashing = chat('if (process.env.NITRIC_ENVIRONMENT === "run") setTimeout(() => process.exit(3), 300);');
      const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": crashing });
      const app = runApp(dir, args);
      await app.waitFor(/^ready: /m);
      await app.waitFor(/crashed 5 times/, 20000);
      expect(count(app.stderr, /restarting in/)).toBe(4);
      // A save that changes nothing that matters: it starts once, crashes again, and waits.
      writeFileSync(join(dir, "services", "chat.ts"), `// still broken\n${crashing}`);
      await app.waitFor(/services\/chat\.ts changed: restarting service "chat"/);
      await app.waitFor(/exited with code 3 again/, 15000);
      await sleep(3000);
      expect(app.stderr).toMatch(
        /^error: service "chat" exited with code 3 again, \d+\.\d s after the change that restarted it from a crash loop; waiting for a file change$/m,
      );
      expect(count(app.stderr, /exited with code 3 again/)).toBe(1);
      expect(count(app.stderr, /restarting in/)).toBe(4);
      expect(count(app.stderr, /crashed 5 times/)).toBe(1);
      writeFileSync(join(dir, "services", "chat.ts"), chat());
      await app.waitFor(/changed: restarting service "chat"[\s\S]*changed: restarting service "chat"/);
      const c = await connect(app.url("chat"));
      c.ws.send("fixed");
      expect((await c.next(5000)).text).toBe("echo fixed");
    },
    60000,
  );
});

describe("nitric-like run: a started service restarted after a crash", () => {
  it.each([
    { how: "a worker thread", args: [] as string[] },
    { how: "a process", args: ["--processes"] },
  ])(
    "that then ends with Node's exit code 13 (a top-level await nothing is left to settle) is told once what code 13 means, and its crash loop names it (service in $how)",
    async ({ args }) => {
      const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": "" });
      // Starts, crashes once (leaving a mark), then every copy after waits at an await nothing settles.
      const marker = JSON.stringify(join(dir, "crashed-once"));
      const top = [
        'import { existsSync, writeFileSync } from "node:fs";',
        'if (process.env.NITRIC_ENVIRONMENT === "run") {',
        `  if (existsSync(${marker})) await new Promise(() => {});`,
        `  else setTimeout(() => { writeFileSync(${marker}, ""); process.exit(3); }, 300);`,
        "}",
      ].join("\n");
      writeFileSync(join(dir, "services", "chat.ts"), chat(top));
      const app = runApp(dir, args);
      await app.waitFor(/^ready: /m);
      await app.waitFor(/crashed 5 times/, 30000);
      await sleep(1000);
      const meaning =
        "Node's code for a module whose top-level await never settled, nothing being left that could settle it (a promise nothing resolves); look in services/chat.ts, and what it imports, for that await, and register handlers at module load, before any await that may not settle";
      const cause = `it exited with code 13, printing nothing: ${meaning}`;
      expect(app.stderr).toContain('warning: service "chat" exited with code 3; restarting in 0.25 s\n');
      expect(app.stderr).toContain(
        `warning: service "chat" (services/chat.ts) failed at load after it crashed: ${cause}\n  restarting in 0.50 s, as after a crash:`,
      );
      expect(app.stderr).toContain(
        'warning: service "chat" failed again at load, same cause (3 times); restarting in 2.00 s\n',
      );
      expect(app.stderr).toContain(
        `error: service "chat" crashed 5 times in 30 s (the last 4 failing at load: services/chat.ts: ${cause}); waiting for a file change\n`,
      );
      // Said in full once, and named once more by the crash loop.
      expect(count(app.stderr, /exited with code 13/)).toBe(2);
      expect(count(app.stderr, /restarting in/)).toBe(4);
      expect(count(app.stderr, /crashed 5 times/)).toBe(1);
    },
    60000,
  );
});

/**
 * A chat service whose top level needs `flag` (a database it connects to at load, say): without
 * it, it throws at load, naming a connection string with a password. The first copy that starts
 * crashes once, 300 ms in, taking the flag with it (the database going away).
 */
function needsFlag(dir: string): { flag: string; top: string } {
  const flag = join(dir, "database-up");
  const marker = JSON.stringify(join(dir, "crashed-once"));
  const top = [
    'import { existsSync, rmSync, writeFileSync } from "node:fs";',
    'if (process.env.NITRIC_ENVIRONMENT === "run") {',
    `  if (!existsSync(${JSON.stringify(flag)})) throw new Error("cannot reach postgres://app:hunter2@127.0.0.1:1/app");`,
    `  if (!existsSync(${marker})) setTimeout(() => { writeFileSync(${marker}, ""); rmSync(${JSON.stringify(flag)}); process.exit(3); }, 300);`,
    "}",
  ].join("\n");
  writeFileSync(flag, "");
  return { flag, top };
}

/**
 * needsFlag's service, whose restarted copies fail at load in another way while the flag is gone:
 * `fail` is placed where needsFlag's throws.
 */
function needsFlagThen(dir: string, fail: string): { flag: string; top: string } {
  const { flag, top } = needsFlag(dir);
  const line = top.split("\n").find((l) => l.includes("throw new Error"));
  if (line === undefined) throw new Error("needsFlag has no throw");
  return { flag, top: top.replace(line, `  if (!existsSync(${JSON.stringify(flag)})) { ${fail} }`) };
}

/** A client that connects (waiting for the restarting service) is answered. */
async function expectServed(url: string): Promise<void> {
  const c = await connect(url);
  c.ws.send("back");
  expect((await c.next(5000)).text).toBe("echo back");
}

describe("nitric-like run: a started service whose restarted copy fails at load", () => {
  it.each([
    { how: "a worker thread", args: [] as string[] },
    { how: "a process", args: ["--processes"] },
  ])(
    "that fails slowly, past the 3 s a first start's output is held, says its cause once with no stack, and recovers (service in $how)",
    async ({ args }) => {
      const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": "" });
      const { flag, top } = needsFlagThen(
        dir,
        'await new Promise((r) => setTimeout(r, 3500)); throw new Error("timed out reaching postgres://app:hunter2@127.0.0.1:1/app");',
      );
      writeFileSync(join(dir, "services", "chat.ts"), chat(top));
      const app = runApp(dir, args);
      await app.waitFor(/^ready: /m);
      await app.waitFor(/exited with code 3; restarting in 0\.25 s/, 15000);
      await app.waitFor(/failed again at load, same cause \(2 times\); restarting in 1\.00 s/, 30000);
      writeFileSync(flag, "");
      await expectServed(app.url("chat"));
      expect(app.stderr).toContain(
        'warning: service "chat" (services/chat.ts:4) failed at load after it crashed (exited with code 1): timed out reaching postgres://app:hunter2@127.0.0.1:1/app\n  restarting in 0.50 s, as after a crash:',
      );
      expect(count(app.stderr, /timed out reaching postgres/)).toBe(1);
      expect(app.stderr).not.toMatch(/^\S* ?\|? +at /m);
      expect(app.stderr).not.toContain("Uncaught");
      expect(app.stderr).not.toContain("Node.js v");
      expect(app.stderr).not.toContain("failed to start");
    },
    60000,
  );

  it.each([
    { how: "a worker thread", args: [] as string[] },
    { how: "a process", args: ["--processes"] },
  ])(
    "that ends by itself with code 0 counts as one more crash, restarted with backoff, and recovers with no save (service in $how)",
    async ({ args }) => {
      const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": "" });
      const { flag, top } = needsFlagThen(dir, "process.exit(0);");
      writeFileSync(join(dir, "services", "chat.ts"), chat(top));
      const app = runApp(dir, args);
      await app.waitFor(/^ready: /m);
      await app.waitFor(/exited with code 3; restarting in 0\.25 s/, 15000);
      await app.waitFor(/failed again at load, same cause \(2 times\); restarting in 1\.00 s/, 15000);
      writeFileSync(flag, "");
      await expectServed(app.url("chat"));
      expect(app.stderr).toContain(
        'warning: service "chat" (services/chat.ts) failed at load after it crashed: it ended by itself (exit code 0) before registering its handlers\n  restarting in 0.50 s, as after a crash:',
      );
      expect(count(app.stderr, /exit code 0/)).toBe(1);
      expect(app.stderr).not.toContain("failed to stay up");
      expect(app.stderr).not.toContain("changed:");
    },
    60000,
  );

  it.each([
    { how: "a worker thread", args: [] as string[] },
    { how: "a process", args: ["--processes"] },
  ])(
    "is restarted with backoff as after a crash, its cause said once, and recovers by itself once what it needs is back, with no save (service in $how)",
    async ({ args }) => {
      const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": "" });
      const { flag, top } = needsFlag(dir);
      writeFileSync(join(dir, "services", "chat.ts"), chat(top));
      const app = runApp(dir, args);
      await app.waitFor(/^ready: /m);
      await app.waitFor(/exited with code 3; restarting in 0\.25 s/, 15000);
      // A client that comes meanwhile waits for the service, as during any restart: not refused.
      const waiting = connect(app.url("chat"));
      await app.waitFor(/failed at load after it crashed/, 10000);
      await sleep(1500);
      writeFileSync(flag, "");
      const c = await waiting;
      c.ws.send("back");
      expect((await c.next(5000)).text).toBe("echo back");
      expect(app.stderr).toContain(
        'warning: service "chat" (services/chat.ts:4) failed at load after it crashed (exited with code 1): cannot reach postgres://app:hunter2@127.0.0.1:1/app\n  restarting in 0.50 s, as after a crash: it ran before, so this may pass (a database it connects to restarting, say); 5 crashes in 30 s stop it until a file changes\n',
      );
      expect(count(app.stderr, /cannot reach postgres/)).toBe(1);
      expect(app.stderr).toMatch(/failed again at load, same cause \(2 times\); restarting in 1\.00 s/);
      expect(app.stderr).not.toMatch(/^\S* ?\|? +at /m);
      expect(app.stderr).not.toContain("crashed 5 times");
      expect(app.stderr).not.toContain("changed:");
      expect(app.stderr).not.toContain("failed to start");
    },
    60000,
  );

  it.each([
    { how: "a worker thread", args: [] as string[] },
    { how: "a process", args: ["--processes"] },
  ])(
    "that never recovers reaches the crash loop, which names the cause said once; clients are then refused at once and a save starts it (service in $how)",
    async ({ args }) => {
      const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": "" });
      const { top } = needsFlag(dir);
      writeFileSync(join(dir, "services", "chat.ts"), chat(top));
      const app = runApp(dir, args);
      await app.waitFor(/^ready: /m);
      await app.waitFor(/crashed 5 times/, 30000);
      await sleep(1000);
      const cause = "(exited with code 1): cannot reach postgres://app:hunter2@127.0.0.1:1/app";
      expect(app.stderr).toContain('warning: service "chat" exited with code 3; restarting in 0.25 s\n');
      expect(app.stderr).toContain(
        `warning: service "chat" (services/chat.ts:4) failed at load after it crashed ${cause}\n  restarting in 0.50 s, as after a crash:`,
      );
      expect(app.stderr).toContain(
        'warning: service "chat" failed again at load, same cause (2 times); restarting in 1.00 s\n',
      );
      expect(app.stderr).toContain(
        'warning: service "chat" failed again at load, same cause (3 times); restarting in 2.00 s\n',
      );
      expect(app.stderr).toContain(
        'error: service "chat" crashed 5 times in 30 s (the last 4 failing at load: services/chat.ts:4: exited with code 1: cannot reach postgres://app:hunter2@127.0.0.1:1/app); waiting for a file change\n  fix it and save: run starts it again when one of its files changes\n',
      );
      // Said in full once, and named once more by the crash loop; never a stack.
      expect(count(app.stderr, /cannot reach postgres/)).toBe(2);
      expect(count(app.stderr, /restarting in/)).toBe(4);
      expect(app.stderr).not.toMatch(/^\S* ?\|? +at /m);
      // A client is told at once that the service is down, not after waiting 10 s for it.
      const asked = Date.now();
      const refused = await connect(app.url("chat")).then(
        () => undefined,
        (error: Error) => error.message,
      );
      expect(Date.now() - asked).toBeLessThan(3000);
      expect(refused).toContain("503");
      expect(refused).toContain(
        'its service "chat" is not running until one of its files changes (run\'s output says why)',
      );
      expect(refused).not.toContain("hunter2");
      writeFileSync(join(dir, "services", "chat.ts"), chat());
      await app.waitFor(/services\/chat\.ts changed: restarting service "chat"/);
      const c = await connect(app.url("chat"));
      c.ws.send("back");
      expect((await c.next(5000)).text).toBe("echo back");
    },
    60000,
  );
});

describe("nitric-like run: poison messages and the crash loop", () => {
  it("deaths with a message in flight do not count: 3 poison messages (6 deaths) keep the service restarted and answering", async () => {
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/chat.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("chat");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", (ctx) => {',
        '  if (ctx.text().startsWith("die")) process.exit(1);',
        '  return "echo " + ctx.text();',
        "});",
      ].join("\n"),
    });
    const app = runApp(dir);
    await app.waitFor(/^ready: /m);
    for (let i = 0; i < 3; i++) {
      const poisoner = await connect(app.url("chat"));
      poisoner.ws.send(`die ${i}`);
      expect((await poisoner.waitClosed(15000)).code).toBe(1011);
    }
    expect(count(app.stderr, /service "chat" exited with code 1; restarting in 0\.25 s/)).toBe(6);
    expect(app.stderr).not.toContain("crashed 5 times");
    const c = await connect(app.url("chat"));
    c.ws.send("still here");
    expect((await c.next(15000)).text).toBe("echo still here");
  }, 60000);
});

describe("nitric-like run: one socket event handled by two services", () => {
  it("is refused as spec refuses it: exit 1, the same message, nothing started", async () => {
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/a.ts": chat(),
      "services/b.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'websocket("chat").on("message", () => "b");',
      ].join("\n"),
    });
    const spec = await runCli(["spec", dir]);
    const run = await runCli(["run", dir, "--random-ports", "--plain", "--no-dashboard"]);
    const conflict =
      'error: websocket chat: the message event is handled by "a" and "b"; a socket event has exactly one handler, so keep socket.on("message", ...) in one service\n';
    expect(spec.code).toBe(1);
    expect(spec.stderr).toContain(conflict);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(conflict);
    expect(run.stderr).toContain('the spec of "honest" has 1 problem (listed above)');
    expect(run.stdout).toBe("");
    expect(run.stderr).not.toContain("ready");
    expect(run.stderr).not.toContain("warning:");
  }, 30000);
});
