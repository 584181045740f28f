// The AWS emulator's function init, as Lambda runs it: one limit for every execution environment's
// init (with the emulator, a restart, a concurrent event's cold start), an init past it retried
// with the next event under the function's timeout, and one line in the run's output while an
// init is slow; an init that throws retried by the next event in a new environment, one retry at a
// time. A real service whose top-level await takes as long as a file beside the test says ("hang":
// forever; "unsettled": forever, nothing left that could settle it; "throw": it throws, "exit": its process exits, "timer": a timer of it throws, "reject": a
// promise it does not await rejects), in the emulator over dynalite, and one `run --provider aws`.

import { spawn } from "node:child_process";
import { cpSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type Emulator,
  type EmulatorOptions,
  type RunningDynalite,
  signRequest,
  startDynalite,
  startEmulator,
} from "@nitric-like/provider-aws/emulator";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { App, CLI, cleanTemp, connect, runCli, sleep, startApp, tempDir, writeProject } from "../src/harness.js";

afterAll(cleanTemp);

/** A service whose init (on Lambda only, not in the collect pass) waits as long as INIT_PLAN's file says. */
const SLOW = [
  'import { appendFileSync, existsSync, readFileSync } from "node:fs";',
  'import { websocket } from "@nitric-like/sdk";',
  'const socket = websocket("socket");',
  'socket.on("connect", () => {});',
  'socket.on("disconnect", () => {});',
  'socket.on("message", async (ctx) => {',
  // Errors nothing catches: a timer that throws once the handler has answered (once a file beside
  // the plan says the test has its answer, so not before the environment has frozen), a promise not awaited.
  '  if (ctx.text() === "timer") {',
  "    const timer = setInterval(() => {",
  "      if (!existsSync(`${process.env.INIT_PLAN}.fire`)) return;",
  "      clearInterval(timer);",
  '      throw new Error("cache refresh failed");',
  "    }, 20);",
  "  }",
  '  if (ctx.text() === "reject") Promise.reject(new Error("audit write failed"));',
  '  if (ctx.text() === "late reject") {',
  "    await new Promise((r) => setTimeout(r, 300));",
  '    Promise.reject(new Error("audit write failed"));',
  "  }",
  // A handler busy in a loop that does not yield (its event loop never sees its channel close).
  '  if (ctx.text() === "spin") {',
  '    appendFileSync(`${process.env.INIT_PLAN}.spins`, "spin\\n");',
  "    for (const end = Date.now() + 15000; Date.now() < end; );",
  "  }",
  "  const ms = Number(ctx.text());",
  "  if (ms > 0) await new Promise((r) => setTimeout(r, ms));",
  "  return `answered ${ctx.text()}`;",
  "});",
  "const plan = process.env.INIT_PLAN;",
  "if (process.env.AWS_LAMBDA_FUNCTION_NAME !== undefined && plan !== undefined) {",
  '  const what = readFileSync(plan, "utf8").trim();',
  '  appendFileSync(`${plan}.inits`, "init\\n");',
  '  if (what === "hang") await new Promise(() => setInterval(() => {}, 1000));',
  '  else if (what === "unsettled") await new Promise(() => {});',
  '  else if (what === "throw") throw new Error("config service unreachable");',
  '  else if (what === "exit") process.exit(3);',
  '  else if (what === "timer") {',
  '    setTimeout(() => { throw new Error("config timer failed"); }, 10);',
  "    await new Promise((r) => setTimeout(r, 300));",
  '  } else if (what === "reject") Promise.reject(new Error("config promise failed"));',
  "  else await new Promise((r) => setTimeout(r, Number(what)));",
  "}",
].join("\n");

const SLOW_PROJECT = {
  "nitric-like.yaml": "name: slow\nservices:\n  - match: services/*.ts\n",
  "services/slow.ts": SLOW,
};

/** Invokes function `name` through the emulator's Lambda Invoke API with `{}`, signed. */
function invokeApi(emulator: Emulator, endpoint: string, name: string): Promise<Response> {
  const api = `${endpoint}/2015-03-31/functions/${name}/invocations`;
  const body = "{}";
  const headers = signRequest({
    method: "POST",
    url: new URL(api),
    body,
    headers: {},
    service: "lambda",
    region: "us-east-1",
    ...emulator.credentials,
  });
  return fetch(api, { method: "POST", headers, body });
}

/** Waits until `done`, for 5 s at most. */
async function until(done: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!done() && Date.now() < deadline) await sleep(20);
}

/** The progress line, as the emulator says it for an init limit shortened to `limit` s, `after` s in. */
const slowLine = (after: string, limit: string) =>
  `service "slow": its function's init has taken ${after} s so far (its module's top level: a top-level await that does not settle?); the emulator gives up at ${limit} s here (Lambda at 10 s)`;

describe("the AWS emulator's function init", () => {
  let db: RunningDynalite;
  let out = "";
  let plan = "";

  beforeAll(async () => {
    const project = writeProject(SLOW_PROJECT);
    out = join(project, "out");
    plan = join(project, "init-plan");
    const { code, stderr } = await runCli(["build", project, "--provider", "aws", "--out", out, "--plain"]);
    expect(code, stderr).toBe(0);
    db = await startDynalite();
  }, 60000);
  afterAll(async () => {
    await db?.close();
  });

  /**
   * An emulator of the slow service whose init takes `init` ("hang", or ms), its log lines in
   * `lines`, and when each was said (Date.now()) in `times`.
   */
  async function emulate(
    init: string,
    options: Partial<EmulatorOptions>,
    lines: string[],
    times: number[] = [],
  ): Promise<Emulator> {
    writeFileSync(plan, init);
    writeFileSync(`${plan}.inits`, "");
    rmSync(`${plan}.fire`, { force: true });
    const log = (m: string) => {
      lines.push(m);
      times.push(Date.now());
    };
    return await startEmulator({
      buildDir: out,
      dynamodbEndpoint: db.endpoint,
      credentials: db.credentials,
      env: { INIT_PLAN: plan },
      logger: { info: log, warn: log, error: log },
      ...options,
    });
  }

  /** How many inits the service has begun (each execution environment's, each retry's). */
  const inits = () => readFileSync(`${plan}.inits`, "utf8").split("\n").filter(Boolean).length;

  it("gives up an init past the limit, says once while it is slow, and retries it with the next event under the function's timeout, as Lambda does", async () => {
    const lines: string[] = [];
    const emulator = await emulate("1500", { initTimeoutMs: 800, functionTimeoutMs: 4000 }, lines);
    try {
      const fn = emulator.functions[0];
      expect(lines).toContain(
        `service "slow": function "${fn?.name}" did not finish its init within 0.8 s, the emulator's limit for an init here (Lambda's is 10 s); as on Lambda, its next event retries the init, under the function's timeout (4 s); make its module's top level (a top-level await that does not settle?) finish sooner`,
      );
      // Said once, halfway to the (shortened) limit.
      expect(lines.filter((l) => l.includes("so far"))).toEqual([slowLine("0.4", "0.8")]);
      // The retry has the function's 4 s, so the event is answered once the 1.5 s init is done.
      const client = await connect(emulator.sockets[0]?.url as string);
      client.ws.send("0");
      expect((await client.next()).text).toBe("answered 0");
      expect(fn?.initError).toBeUndefined();
      client.close();
    } finally {
      await emulator.stop();
    }
  });

  it("fails the event whose retried init does not finish within the function's timeout with Lambda's Task timed out, and the next event retries it again", async () => {
    const lines: string[] = [];
    const emulator = await emulate("hang", { initTimeoutMs: 600, functionTimeoutMs: 1000 }, lines);
    try {
      const fn = emulator.functions[0];
      if (fn === undefined) throw new Error("no function");
      for (let i = 0; i < 2; i++) {
        const started = Date.now();
        await expect(fn.invoke({})).rejects.toThrow(/^Task timed out after 1\.00 seconds$/);
        // The retry, at once (not the 0.6 s limit first), under the function's 1 s timeout.
        expect(Date.now() - started).toBeGreaterThanOrEqual(950);
        expect(Date.now() - started).toBeLessThan(1500);
      }
      const retried = lines.filter((l) => l.includes("retried with an event as Lambda retries"));
      expect(retried).toHaveLength(2);
      expect(retried[0]).toBe(
        `function "${fn.name}": its init, retried with an event as Lambda retries one past its 0.6 s limit, had not finished at the function's timeout (1 s), so the event fails ("Task timed out after 1.00 seconds") and the next event retries it; its module's top level (a top-level await that does not settle?) must finish sooner`,
      );
      // One progress line an init: the start's, and each retry's.
      expect(lines.filter((l) => l.includes("so far"))).toEqual([
        slowLine("0.3", "0.6"),
        `service "slow": its function's init, retried with an event, has taken 0.5 s so far (its module's top level: a top-level await that does not settle?); it is given up at the function's timeout, 1 s, failing the event`,
        `service "slow": its function's init, retried with an event, has taken 0.5 s so far (its module's top level: a top-level await that does not settle?); it is given up at the function's timeout, 1 s, failing the event`,
      ]);
      expect(fn.initError).toMatch(/did not finish its init, retried with an event, within the function's timeout/);
      expect(fn.instanceCount).toBe(0);
    } finally {
      await emulator.stop();
    }
  });

  it("holds a concurrent event's cold start to the same limit, and retries it with that event", async () => {
    const lines: string[] = [];
    const emulator = await emulate("0", { initTimeoutMs: 800, functionTimeoutMs: 4000 }, lines);
    try {
      const fn = emulator.functions[0];
      const [a, b] = [
        await connect(emulator.sockets[0]?.url as string),
        await connect(emulator.sockets[0]?.url as string),
      ];
      // From now on a new environment's init takes 1.5 s: past the limit, within the timeout.
      writeFileSync(plan, "1500");
      a.ws.send("1000");
      await sleep(50);
      const started = Date.now();
      b.ws.send("0");
      expect((await b.next()).text).toBe("answered 0");
      // The cold start's 0.8 s, then the retry's 1.5 s.
      expect(Date.now() - started).toBeGreaterThanOrEqual(2200);
      expect((await a.next()).text).toBe("answered 1000");
      expect(lines.filter((l) => l.includes("did not finish its init"))).toEqual([
        `service "slow": function "${fn?.name}" did not finish its init within 0.8 s, the emulator's limit for an init here (Lambda's is 10 s), starting an execution environment for an event; as on Lambda, the event retries the init, under the function's timeout (4 s)`,
      ]);
      expect(lines.filter((l) => l.includes("so far"))).toEqual([slowLine("0.4", "0.8")]);
      expect(fn?.initError).toBeUndefined();
      a.close();
      b.close();
    } finally {
      await emulator.stop();
    }
  });

  it("retries an init that threw with the next event in a new execution environment, as Lambda does: the event fails with the thrown error, and once the init succeeds the events are served", async () => {
    const lines: string[] = [];
    const emulator = await emulate("throw", {}, lines);
    try {
      const fn = emulator.functions[0];
      if (fn === undefined) throw new Error("no function");
      expect(lines).toContain(
        `service "slow": function "${fn.name}" failed its init: config service unreachable; as on Lambda, its next event retries the init in a new execution environment, and fails with it while it fails; fix its module's top level and save`,
      );
      expect(inits()).toBe(1);
      // Lambda's answer to the invocation whose init threw: the error, named as the runtime names it.
      const api = `${fn.env.AWS_ENDPOINT_URL_LAMBDA}/2015-03-31/functions/${fn.name}/invocations`;
      const body = "{}";
      const headers = signRequest({
        method: "POST",
        url: new URL(api),
        body,
        headers: {},
        service: "lambda",
        region: "us-east-1",
        ...emulator.credentials,
      });
      const failed = await fetch(api, { method: "POST", headers, body });
      expect(failed.status).toBe(200);
      expect(failed.headers.get("x-amz-function-error")).toBe("Unhandled");
      expect(await failed.json()).toEqual({ errorType: "Error", errorMessage: "config service unreachable" });
      expect(inits()).toBe(2);
      expect(fn.instanceCount).toBe(0);
      expect(lines.filter((l) => l.includes("failing the event that started it"))).toEqual([
        `service "slow": function "${fn.name}" failed its init: config service unreachable, failing the event that started it (and those that waited for it); as on Lambda, the next event retries the init in a new execution environment (one at a time, at most once a second here)`,
      ]);
      // What made it fail has passed (a config service back up): the next event's init succeeds.
      writeFileSync(plan, "0");
      const client = await connect(emulator.sockets[0]?.url as string);
      client.ws.send("0");
      expect((await client.next()).text).toBe("answered 0");
      expect(fn.initError).toBeUndefined();
      expect(inits()).toBe(3);
      client.close();
    } finally {
      await emulator.stop();
    }
  });

  it("fails at once an init stopped at a top-level await nothing is left to settle, saying its module never finished loading, after which line, and how to fix it, and answers its event as Lambda answers an exit with code 13", async () => {
    const lines: string[] = [];
    const began = Date.now();
    // The init limit stays Lambda's 10 s: the failure comes as soon as nothing is left, not at the limit.
    const emulator = await emulate("unsettled", {}, lines);
    try {
      const fn = emulator.functions[0];
      if (fn === undefined) throw new Error("no function");
      expect(Date.now() - began).toBeLessThan(8000);
      const said = `function "${fn.name}" failed its init: its module never finished loading: a top-level await after services/slow.ts:3 never settled, nothing being left that could settle it (a promise nothing resolves), so Node ended it with exit code 13 (Lambda's Runtime.ExitError) and the handlers it registers after that await were never registered; register handlers at module load, before any await that may not settle, or make sure it settles`;
      expect(lines).toContain(
        `service "slow": ${said}; as on Lambda, its next event retries the init in a new execution environment, and fails with it while it fails; fix its module's top level and save`,
      );
      expect(fn.initError).toBe(said);
      expect(lines.filter((l) => l.includes("did not finish its init") || l.includes("so far"))).toEqual([]);
      // Lambda's answer to an event whose init's runtime exited: Runtime.ExitError with its status.
      const failed = await invokeApi(emulator, fn.env.AWS_ENDPOINT_URL_LAMBDA as string, fn.name);
      expect(failed.headers.get("x-amz-function-error")).toBe("Unhandled");
      expect(await failed.json()).toEqual({
        errorType: "Runtime.ExitError",
        errorMessage: "Runtime exited with error: exit status 13",
      });
      expect(inits()).toBe(2);
    } finally {
      await emulator.stop();
    }
  });

  it("fails an init whose timer throws, or whose promise nobody awaits rejects, with that error, as Lambda's runtime does (not only its exit)", async () => {
    for (const [plan, errorType, errorMessage, how] of [
      ["timer", "Error", "config timer failed", "an uncaught exception"],
      ["reject", "Runtime.UnhandledPromiseRejection", "Error: config promise failed", "an unhandled rejection"],
    ] as const) {
      const lines: string[] = [];
      const emulator = await emulate(plan, {}, lines);
      try {
        const fn = emulator.functions[0];
        if (fn === undefined) throw new Error("no function");
        const said = `function "${fn.name}" failed its init with ${how}: ${errorMessage}`;
        expect(lines).toContain(
          `service "slow": ${said}; as on Lambda, its next event retries the init in a new execution environment, and fails with it while it fails; fix its module's top level and save`,
        );
        // The reason run and the dashboard show.
        expect(fn.initError).toBe(said);
        // What it printed, labelled as Lambda's runtime labels it, with the error's stack.
        expect(lines).toContain(
          `slow | ${plan === "timer" ? "Uncaught Exception" : "Unhandled Promise Rejection"} Error: ${plan === "timer" ? "config timer failed" : "config promise failed"}`,
        );
        // Lambda's answer to an event whose init failed so: the error, not Runtime.ExitError.
        const failed = await invokeApi(emulator, fn.env.AWS_ENDPOINT_URL_LAMBDA as string, fn.name);
        expect(failed.headers.get("x-amz-function-error")).toBe("Unhandled");
        expect(await failed.json()).toEqual({ errorType, errorMessage });
      } finally {
        await emulator.stop();
      }
    }
  });

  it("fails the event under way with an error a handler left uncaught (a promise not awaited; a timer, at the next event, which thaws it), says so, and replaces the execution environment", async () => {
    const lines: string[] = [];
    const emulator = await emulate("0", {}, lines);
    try {
      const fn = emulator.functions[0];
      if (fn === undefined) throw new Error("no function");
      const client = await connect(emulator.sockets[0]?.url as string);
      const ended = (how: string, message: string) =>
        `function "${fn.name}": an execution environment exited with code ${how === "an uncaught exception" ? 129 : 128} after ${how}: ${message}, failing the event it ran; the function's next events start a new one when none is free`;
      // The rejection fails its own event: the client gets API Gateway's answer to a failed integration.
      client.ws.send("reject");
      expect(JSON.parse((await client.next()).text).message).toBe("Internal server error");
      await until(() => lines.includes(ended("an unhandled rejection", "Error: audit write failed")));
      client.ws.send("0");
      expect((await client.next()).text).toBe("answered 0");
      // The timer is still pending when the handler answers, and the environment freezes; told to
      // fire only now, it does so as the next event thaws the environment, while its handler waits.
      client.ws.send("timer");
      expect((await client.next()).text).toBe("answered timer");
      writeFileSync(`${plan}.fire`, "");
      client.ws.send("50");
      expect(JSON.parse((await client.next()).text).message).toBe("Internal server error");
      await until(() => lines.includes(ended("an uncaught exception", "cache refresh failed")));
      expect(lines).toContain("slow | Uncaught Exception Error: cache refresh failed");
      client.ws.send("2");
      expect((await client.next()).text).toBe("answered 2");
      // Each said once, by its function (not again as a failed integration).
      expect(lines.filter((l) => l.includes("cache refresh failed") && !l.startsWith("slow | "))).toHaveLength(1);
      client.close();
    } finally {
      await emulator.stop();
    }
  });

  it("fails the next event with the error of a timer a handler left pending, even when its handler answers without yielding", async () => {
    // A Lambda handler of its own in the build (our runtime always yields before it answers): the
    // first event answers from a timer's callback, leaving a timer that throws 50 ms later; the
    // environment freezes there, with the event loop's clock behind. The next event's handler
    // answers at once, but the timer is overdue by then and must run first, as on Lambda.
    const build = join(tempDir(), "out");
    cpSync(out, build, { recursive: true });
    // The service awaits at its top level, so its bundle is an ES module.
    writeFileSync(
      join(build, "functions", "slow", "index.mjs"),
      [
        "export const handler = async (event) => {",
        '  if (event.leave !== "timer") return "answered at once";',
        "  await new Promise((r) => setTimeout(r, 10));",
        '  setTimeout(() => { throw new Error("cache refresh failed"); }, 50);',
        '  return "left a timer";',
        "};",
      ].join("\n"),
    );
    const lines: string[] = [];
    const emulator = await emulate("0", { buildDir: build }, lines);
    try {
      const fn = emulator.functions[0];
      if (fn === undefined) throw new Error("no function");
      expect(await fn.invoke({ leave: "timer" })).toBe("left a timer");
      await sleep(200);
      await expect(fn.invoke({})).rejects.toThrow(
        `function "${fn.name}": an uncaught exception ended its execution environment during this event: cache refresh failed`,
      );
      expect(lines).toContain("slow | Uncaught Exception Error: cache refresh failed");
      // The next event runs in a new execution environment.
      expect(await fn.invoke({})).toBe("answered at once");
    } finally {
      await emulator.stop();
    }
  });

  it("runs an event that waited for the environment an uncaught error ended in a new one, not in the one that is exiting", async () => {
    const lines: string[] = [];
    // One environment: the second event waits for it while the first runs.
    const emulator = await emulate("0", { maxInstancesPerFunction: 1 }, lines);
    try {
      const fn = emulator.functions[0];
      if (fn === undefined) throw new Error("no function");
      const url = emulator.sockets[0]?.url as string;
      const [a, b] = [await connect(url), await connect(url)];
      expect(inits()).toBe(1);
      // The first event's handler leaves a promise to reject 300 ms in; the second waits meanwhile.
      a.ws.send("late reject");
      await sleep(50);
      b.ws.send("0");
      expect(JSON.parse((await a.next()).text).message).toBe("Internal server error");
      expect((await b.next()).text).toBe("answered 0");
      // It ran in a new execution environment, the failed one's exit said once, as its own.
      expect(inits()).toBe(2);
      await until(() => lines.some((l) => l.includes("exited with code 128")));
      expect(lines.filter((l) => l.includes("exited with code 128"))).toEqual([
        `function "${fn.name}": an execution environment exited with code 128 after an unhandled rejection: Error: audit write failed, failing the event it ran; the function's next events start a new one when none is free`,
      ]);
      a.close();
      b.close();
    } finally {
      await emulator.stop();
    }
  });

  it("runs on the new code the events a saved change cut out of their cold start: a message, a $connect (its client let in) and a $disconnect", async () => {
    const lines: string[] = [];
    const emulator = await emulate("0", { functionTimeoutMs: 20000 }, lines);
    try {
      const fn = emulator.functions[0];
      if (fn === undefined) throw new Error("no function");
      const url = emulator.sockets[0]?.url as string;
      const [a, b, d] = [await connect(url), await connect(url), await connect(url)];
      // From now on a new environment's init takes 5 s: the restart's drain (2 s) gives up on it.
      writeFileSync(plan, "5000");
      a.ws.send("1500");
      await sleep(50);
      // A message and a $connect, each waiting for a cold start's init.
      b.ws.send("0");
      const c = connect(url);
      c.catch(() => {});
      // And a $disconnect.
      d.close();
      // Each cold start's init has read its plan (5 s), however long its process took to start.
      const deadline = Date.now() + 5000;
      while (inits() < 4 && Date.now() < deadline) await sleep(20);
      expect(inits()).toBe(4);
      expect(fn.instanceCount).toBe(4);
      // The user saves: the new code's init is quick.
      writeFileSync(plan, "0");
      const restarted = Date.now();
      await emulator.restartService("slow");
      expect((await a.next()).text).toBe("answered 1500");
      expect((await b.next()).text).toBe("answered 0");
      const late = await c;
      late.ws.send("0");
      expect((await late.next()).text).toBe("answered 0");
      // Not the 5 s inits the restart cut: the new code's.
      expect(Date.now() - restarted).toBeLessThan(4000);
      expect(lines.filter((l) => l.includes("cut short"))).toEqual([]);
      expect(lines.filter((l) => l.includes("run on the new code"))).toEqual([
        `service "slow" (function "${fn.name}"): a saved change restarted it while 3 events waited for an execution environment's init, which it cut, so they run on the new code`,
      ]);
      expect(lines.filter((l) => /not running|failed|exited|killed/.test(l))).toEqual([]);
      b.close();
      late.close();
      a.close();
    } finally {
      await emulator.stop();
    }
  });

  it("cuts an event busy in a loop that does not yield once a restart's 2 s drain is over, not 2 s later", async () => {
    const lines: string[] = [];
    const times: number[] = [];
    const emulator = await emulate("0", { functionTimeoutMs: 20000 }, lines, times);
    try {
      const fn = emulator.functions[0] as Emulator["functions"][number];
      const url = emulator.sockets[0]?.url as string;
      const client = await connect(url);
      writeFileSync(`${plan}.spins`, "");
      client.ws.send("spin");
      // The handler is in its loop, however long its worker took to get the event.
      const deadline = Date.now() + 5000;
      while (!readFileSync(`${plan}.spins`, "utf8").includes("spin") && Date.now() < deadline) await sleep(20);
      expect(readFileSync(`${plan}.spins`, "utf8")).toBe("spin\n");
      const restarted = Date.now();
      await emulator.restartService("slow");
      // Cut once the drain is over (2 s), not once a kill 2 s after its channel closed.
      const cut = lines.findIndex((l) => l.includes("cut short"));
      expect((times[cut] as number) - restarted).toBeLessThan(3000);
      expect(lines.filter((l) => l.includes("cut short"))).toEqual([
        `service "slow" (function "${fn.name}"): a saved change restarted it while an event still ran past the 2 s it waits for events in flight, so that event was cut short (failed); the next events run on the new code`,
      ]);
      // Its client is told; the new code answers the next event.
      expect(JSON.parse((await client.next()).text).message).toBe("Internal server error");
      client.ws.send("0");
      expect((await client.next()).text).toBe("answered 0");
      client.close();
    } finally {
      await emulator.stop();
    }
  });

  it("runs an event that waited for a restart's init on the code of the save that cut that init (saves in a row)", async () => {
    const lines: string[] = [];
    const emulator = await emulate("0", { functionTimeoutMs: 20000 }, lines);
    try {
      const url = emulator.sockets[0]?.url as string;
      const client = await connect(url);
      // The first save's init takes 5 s; a message waits for it.
      writeFileSync(plan, "5000");
      const first = emulator.restartService("slow");
      // Its init has read its plan (5 s), however long its process took to start.
      const deadline = Date.now() + 5000;
      while (inits() < 2 && Date.now() < deadline) await sleep(20);
      expect(inits()).toBe(2);
      client.ws.send("0");
      await sleep(300);
      // The second save's init is quick, and ends the first's.
      writeFileSync(plan, "0");
      const started = Date.now();
      await emulator.restartService("slow");
      // The first restart was superseded, not failed: the second says how the init ends.
      await expect(first).resolves.toBeUndefined();
      expect((await client.next()).text).toBe("answered 0");
      expect(Date.now() - started).toBeLessThan(4000);
      expect(lines.filter((l) => /not running|failed|exited|killed/.test(l))).toEqual([]);
      client.close();
    } finally {
      await emulator.stop();
    }
  });

  it("retries an init that always fails one at a time and at most once a second, however many events come, saying so once a burst", async () => {
    const lines: string[] = [];
    const emulator = await emulate("exit", {}, lines);
    try {
      const fn = emulator.functions[0];
      if (fn === undefined) throw new Error("no function");
      expect(lines).toContain(
        `service "slow": function "${fn.name}" exited with code 3 during its init; as on Lambda, its next event retries the init in a new execution environment, and fails with it while it fails; fix its module's top level and save`,
      );
      const started = Date.now();
      // 40 events at once share one retry (one process), a second after the failure before it.
      const first = await Promise.allSettled(Array.from({ length: 40 }, () => fn.invoke({})));
      expect(
        first.every((r) => r.status === "rejected" && /exited with code 3 during its init/.test(String(r.reason))),
      ).toBe(true);
      expect(inits()).toBe(2);
      // And the next 40: one more retry, a second after that one failed.
      const second = await Promise.allSettled(Array.from({ length: 40 }, () => fn.invoke({})));
      expect(second.every((r) => r.status === "rejected")).toBe(true);
      expect(inits()).toBe(3);
      expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
      // One line for the burst (the first retry's; the second's is counted into the next line).
      expect(lines.filter((l) => l.includes("failing the event that started it"))).toHaveLength(1);
      // No line for each process that exited, nor for each event.
      expect(lines.filter((l) => l.includes("an execution environment exited"))).toEqual([]);
      expect(fn.instanceCount).toBe(0);
    } finally {
      await emulator.stop();
    }
  });
});

describe("run --provider aws while a function's init is slow", () => {
  it("says so once through the run's output, 3 s in, naming the service and Lambda's 10 s limit", async () => {
    const project = writeProject({
      ...SLOW_PROJECT,
      "services/slow.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("socket");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", (ctx) => ctx.text());',
        "if (process.env.AWS_LAMBDA_FUNCTION_NAME !== undefined) await new Promise(() => setInterval(() => {}, 1000));",
      ].join("\n"),
    });
    const child = spawn(process.execPath, [CLI, "run", project, "--random-ports", "--plain", "--provider", "aws"], {
      env: { ...process.env, NO_COLOR: "1" },
    });
    const app = new App(project, child);
    try {
      const line =
        /^warning: service "slow": its function's init has taken 3 s so far \(its module's top level: a top-level await that does not settle\?\); Lambda gives up at 10 s$/m;
      await app.waitFor(line, 60000);
      await sleep(1000);
      expect(app.stderr.match(new RegExp(line.source, "gm"))).toHaveLength(1);
      expect(app.stdout).not.toMatch(/^ready/m);
    } finally {
      // Stopped while still starting (its function's init had not finished): 130, as the README says.
      const { code } = await app.stop();
      expect(code).toBe(130);
    }
  }, 90000);
});

describe("run --provider aws with a function whose init fails at start", () => {
  it("warns before ready which service's function failed its init and why, says so in the ready line, and serves it once the next event's retry succeeds", async () => {
    // The function fails its init while this file exists (its path in the service: a function gets
    // only the template's environment).
    const fails = join(tempDir(), "init-fails");
    writeFileSync(fails, "");
    const project = writeProject({
      ...SLOW_PROJECT,
      "services/slow.ts": [
        'import { existsSync } from "node:fs";',
        `const fails = ${JSON.stringify(fails)};`,
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("socket");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", (ctx) => `answered ${ctx.text()}`);',
        "if (process.env.AWS_LAMBDA_FUNCTION_NAME !== undefined && existsSync(fails))",
        '  throw new Error("config service unreachable");',
      ].join("\n"),
    });
    const app = await startApp(project, ["--provider", "aws", "--no-dashboard"]);
    try {
      // The warning, then the ready line that points at it: nobody reads "ready" unwarned.
      expect(app.stderr).toMatch(
        /^warning: service "slow" is not serving yet: function "\S+" failed its init: config service unreachable; each event retries its init \(as Lambda does\) and fails while it fails\nready: slow, 1 service, but the function of "slow" failed its init \(above\)\. Ctrl-C to stop\.$/m,
      );
      expect(app.stderr).not.toMatch(/^ready: slow, 1 service\. Ctrl-C to stop\.$/m);
      // What failed it has passed: the next event retries the init, which succeeds, and is served.
      rmSync(fails);
      await sleep(1000);
      const client = await connect(app.url("socket"));
      client.ws.send("hi");
      expect((await client.next()).text).toBe("answered hi");
      client.close();
    } finally {
      expect((await app.stop()).code).toBe(0);
    }
  }, 60000);
});

/**
 * A service that prints a burst of 3,000 lines of 1 KB on stderr, then throws: in its init (as LOUD
 * says: "init") or in its message handler.
 */
const LOUD = [
  'import { websocket } from "@nitric-like/sdk";',
  'const socket = websocket("socket");',
  'socket.on("connect", () => {});',
  'socket.on("disconnect", () => {});',
  'const burst = (tag) => { for (let i = 0; i < 3000; i++) console.error(`${tag} ${i} ${"x".repeat(1000)}`); };',
  "socket.on('message', async () => {",
  '  burst("handler");',
  '  throw new Error("boom in the handler");',
  "});",
  'if (process.env.AWS_LAMBDA_FUNCTION_NAME !== undefined && process.env.LOUD === "init") {',
  '  burst("init");',
  '  throw new Error("boom at init");',
  "}",
].join("\n");

describe("the AWS emulator's function output", () => {
  let db: RunningDynalite;
  let out = "";

  beforeAll(async () => {
    const project = writeProject({
      "nitric-like.yaml": "name: loud\nservices:\n  - match: services/*.ts\n",
      "services/loud.ts": LOUD,
    });
    out = join(project, "out");
    const { code, stderr } = await runCli(["build", project, "--provider", "aws", "--out", out, "--plain"]);
    expect(code, stderr).toBe(0);
    db = await startDynalite();
  }, 60000);
  afterAll(async () => {
    await db?.close();
  });

  const emulate = (loud: string, lines: string[]) =>
    startEmulator({
      buildDir: out,
      dynamodbEndpoint: db.endpoint,
      credentials: db.credentials,
      env: { LOUD: loud },
      logger: { info: (m) => lines.push(m), warn: (m) => lines.push(m), error: (m) => lines.push(m) },
    });

  /** The lines of the burst tagged `tag` that reached the log. */
  const burstLines = (lines: string[], tag: string) => lines.filter((l) => l.startsWith(`loud | ${tag} `)).length;

  it("shows every line a function printed before its init threw, and the thrown error as the init's failure", async () => {
    for (let round = 0; round < 3; round++) {
      const lines: string[] = [];
      const emulator = await emulate("init", lines);
      try {
        const fn = emulator.functions[0];
        // Its output and its failure come by different pipes: the last lines may follow the failure by a moment.
        const deadline = Date.now() + 5000;
        while (burstLines(lines, "init") < 3000 && Date.now() < deadline) await sleep(20);
        expect(burstLines(lines, "init")).toBe(3000);
        expect(lines.filter((l) => l.includes("failed its init"))).toEqual([
          `service "loud": function "${fn?.name}" failed its init: boom at init; as on Lambda, its next event retries the init in a new execution environment, and fails with it while it fails; fix its module's top level and save`,
        ]);
        expect(fn?.initError).toBe(`function "${fn?.name}" failed its init: boom at init`);
      } finally {
        await emulator.stop();
      }
    }
  });

  it("shows every line a handler printed and the error it threw once it has answered, while its environment is frozen", async () => {
    const lines: string[] = [];
    const emulator = await emulate("", lines);
    try {
      const client = await connect(emulator.sockets[0]?.url as string);
      for (let round = 1; round <= 3; round++) {
        client.ws.send("hello");
        // No further event thaws the environment: what it printed must reach the log meanwhile.
        const deadline = Date.now() + 5000;
        const failed = () => lines.filter((l) => l.includes("boom in the handler")).length;
        while ((failed() < round || burstLines(lines, "handler") < 3000 * round) && Date.now() < deadline)
          await sleep(50);
        expect(burstLines(lines, "handler")).toBe(3000 * round);
        expect(failed()).toBe(round);
      }
      client.close();
    } finally {
      await emulator.stop();
    }
  });
});
