// `run --single-thread` through the real CLI: services on run's own thread (the conformance
// scenarios run there too, in conformance.test.ts), and what that mode says and refuses: the
// options it conflicts with, no watching, a service that fails to load, and an error a service
// throws outside its handlers or its process.exit(), which end run and say why.
import { afterAll, describe, expect, it } from "vitest";
import { cleanTemp, connect, runCli, startApp, stopAll, writeProject } from "../src/harness.js";

afterAll(async () => {
  await stopAll();
  cleanTemp();
});

const PROJECT = "name: alone\nservices:\n  - match: services/*.ts\n";

/** A service on our SDK: its socket answers each message with `answer` (an expression over ctx). */
const service = (socket: string, answer: string, top = "") =>
  [
    'import { isMainThread } from "node:worker_threads";',
    'import { websocket } from "@nitric-like/sdk";',
    `const socket = websocket(${JSON.stringify(socket)});`,
    "socket.on('connect', () => {});",
    "socket.on('disconnect', () => {});",
    `socket.on('message', async (ctx) => { await socket.send(ctx.connectionId, JSON.stringify(${answer})); });`,
    "void isMainThread;",
    top,
  ].join("\n");

describe("run --single-thread", () => {
  it("runs every service on run's own thread with the project's .env, says it does not watch files, and ends on Ctrl-C", async () => {
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      // A timer that would keep the process alive: Ctrl-C still ends run.
      "services/one.ts": service(
        "one",
        "{ main: isMainThread, pid: process.pid, value: process.env.FROM_DOTENV }",
        "setInterval(() => {}, 60_000);",
      ),
      "services/two.ts": service("two", "{ main: isMainThread, pid: process.pid, text: ctx.text() }"),
      ".env": "FROM_DOTENV=from-the-file\n",
    });
    const app = await startApp(dir, ["--single-thread"]);
    const one = await connect(app.url("one"));
    const two = await connect(app.url("two"));
    expect(await one.call({})).toEqual({ main: true, pid: app.child.pid, value: "from-the-file" });
    two.ws.send("hello");
    expect(JSON.parse((await two.next()).text)).toEqual({ main: true, pid: app.child.pid, text: "hello" });
    expect(app.stderr).toContain(
      "--single-thread: services are loaded once into run's thread and files are not watched; restart run to load a change",
    );
    one.close();
    two.close();
    expect((await app.stop()).code).toBe(0);
  }, 60000);

  it.each([
    [["--processes"], "--single-thread and --processes both say where services run"],
    [["--inspect"], "--single-thread and --inspect both say where services run"],
    [["--provider", "aws"], "--single-thread runs services on run's own thread, which only the local provider does"],
  ])("refuses %j beside it, saying why, before starting anything", async (extra, message) => {
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/one.ts": service("one", "{}") });
    const { code, stderr } = await runCli(["run", dir, "--single-thread", ...extra]);
    expect(code).toBe(1);
    expect(stderr).toContain(message);
    expect(stderr).not.toContain("bundling");
  });

  it("says --tcp opens nothing when every service is on run's own thread", async () => {
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/one.ts": service("one", "{}") });
    const app = await startApp(dir, ["--single-thread", "--tcp"]);
    expect(app.stderr).toContain(
      "--tcp: every service runs on run's own thread and reaches it over a port within that thread, so no endpoint listens on 127.0.0.1",
    );
    expect((await app.stop()).code).toBe(0);
  }, 60000);

  it("prints the cause of a service that fails to load and exits 1, as nothing watches for a fix", async () => {
    // It loads in the collect pass (environment "build") and fails on run's thread only.
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/one.ts": service(
        "one",
        "{}",
        'if (process.env.NITRIC_ENVIRONMENT === "run") throw new Error("no database at run time (on purpose)");',
      ),
    });
    const { code, stderr } = await runCli(["run", dir, "--single-thread", "--random-ports", "--no-dashboard"], {
      timeoutMs: 60000,
    });
    expect(code).toBe(1);
    expect(stderr).toMatch(/service "one".*failed to start/);
    expect(stderr).toContain("no database at run time (on purpose)");
    expect(stderr).toContain("services/one.ts:");
  }, 70000);

  it.each([
    {
      how: "an error a service throws outside its handlers",
      answer: "(setTimeout(() => { throw new Error('late boom from ' + ctx.text()); }, 5), {})",
      code: 1,
      said: "an uncaught error ends run: with --single-thread, services share run's thread, so one that throws outside its handlers ends it (without --single-thread, that service alone restarts): late boom from the timer",
      unsaid: "process.exit",
    },
    {
      how: "a service's process.exit()",
      answer: "(setTimeout(() => process.exit(7), 5), {})",
      code: 7,
      said: "a service called process.exit(7), which ends run: with --single-thread, services share run's process (without --single-thread, that service alone ends and restarts)",
      unsaid: "uncaught",
    },
  ])(
    "ends with $how, saying that the services share run's thread",
    async ({ answer, code, said, unsaid }) => {
      const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/one.ts": service("one", answer) });
      const app = await startApp(dir, ["--single-thread"]);
      const client = await connect(app.url("one"));
      client.ws.send("the timer");
      expect((await app.exited).code).toBe(code);
      expect(app.stderr).toContain(said);
      expect(app.stderr).not.toContain(unsaid);
    },
    60000,
  );
});
