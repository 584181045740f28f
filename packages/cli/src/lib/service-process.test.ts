// A thread booted ahead of its service (boot-thread.ts) runs it as a thread started on it does:
// the same environment (its own variables included, nothing left over), argv, workerData.port,
// output, exit code, and an uncaught error at load ends it with 1 and is printed.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MessageChannel } from "node:worker_threads";
import type { Project } from "@nitric-like/spec";
import { afterEach, expect, it } from "vitest";
import { bootedFor, bootForRun, bootThread, dropBootedThreads } from "./boot-thread.js";
import type { Bundle } from "./bundle.js";
import { type ServiceHandle, serviceEnv, startEarlyThread, startServiceThread } from "./service-process.js";

const dirs: string[] = [];
afterEach(() => {
  delete process.env.SERVICE_ADDRESS;
  dropBootedThreads();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/**
 * What a thread reports of itself over its port, then prints and exits with. Its lineage (what the
 * processes it starts carry, so that they end with it) is its own, a new one for each thread:
 * reported as whether it has one.
 */
const REPORTER = `import { workerData } from "node:worker_threads";
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => /^(SERVICE_|NITRIC_|BOOT_)/.test(k) && k !== "NITRIC_LIKE_LINEAGE"));
const lineage = /^[0-9a-f]{32}$/.test(process.env.NITRIC_LIKE_LINEAGE ?? "");
workerData.port.postMessage({ env, lineage, argv: process.argv.slice(1), port: typeof workerData.port.postMessage });
console.log("out line");
process.exitCode = 7;
`;

function launchOf(source: string, endpoint: string) {
  const dir = mkdtempSync(join(tmpdir(), "nitric-like-thread-"));
  dirs.push(dir);
  const file = join(dir, "svc.thread.mjs");
  writeFileSync(file, source);
  const bundle: Bundle = { outfile: file, inputs: new Set(), threadable: true, threadOutfile: file };
  return {
    project: { name: "app", dir } as Project,
    service: { name: "svc", file: "svc.ts", path: join(dir, "svc.ts") },
    endpoint,
    environment: "run" as const,
    dotenv: new Map([["BOOT_FROM_DOTENV", "yes"]]),
    bundle,
  };
}

/** Runs `launch` in a thread; resolves with what it reported, its stdout, stderr and exit code. */
async function runThread(launch: ReturnType<typeof launchOf>) {
  const { port1, port2 } = new MessageChannel();
  const reported = new Promise((resolve) => port1.once("message", resolve));
  const handle: ServiceHandle = startServiceThread(launch, port2);
  let out = "";
  let err = "";
  handle.stdout?.on("data", (d) => {
    out += d;
  });
  handle.stderr?.on("data", (d) => {
    err += d;
  });
  const code = await new Promise((resolve) => handle.onExit((c) => resolve(c)));
  port1.close();
  return { reported: await Promise.race([reported, Promise.resolve(undefined)]), out, err, code };
}

it("runs a service in a booted thread as in a thread started on it", async () => {
  const launch = launchOf(REPORTER, "127.0.0.1:4567");
  // Inherited from where run starts: not for the thread (removed in afterEach).
  process.env.SERVICE_ADDRESS = "unix:/somewhere/else.sock";
  const fresh = await runThread(launch);
  expect(fresh.reported).toBeDefined();
  // Booted before the endpoint is known, with a variable that is gone by the time it runs.
  process.env.BOOT_GONE_LATER = "1";
  try {
    bootThread(serviceEnv({ ...launch, endpoint: "" }));
  } finally {
    delete process.env.BOOT_GONE_LATER;
  }
  // A thread booted with another environment (BOOT_GONE_LATER) is not used for it.
  const unmatched = await runThread(launch);
  expect(unmatched.reported).toEqual(fresh.reported);
  bootThread(serviceEnv({ ...launch, endpoint: "" }));
  const booted = await runThread(launch);
  expect(booted.reported).toEqual(unmatched.reported);
  const env = (booted.reported as { env: Record<string, string> }).env;
  expect(env).toMatchObject({ NITRIC_ENVIRONMENT: "run", BOOT_FROM_DOTENV: "yes" });
  expect(booted.reported).toMatchObject({ lineage: true });
  // A thread reaches its provider over its port alone: no gRPC address, not even an inherited one.
  expect(env.SERVICE_ADDRESS).toBeUndefined();
  expect(env.NITRIC_SERVICE_PORT).toBeUndefined();
  expect(booted.out).toBe("out line\n");
  expect(booted.code).toBe(7);
  expect(fresh.code).toBe(7);
});

it("ends a booted thread whose service throws at load with 1, the error printed", async () => {
  const source = 'throw new Error("boom at load");\n';
  const launch = launchOf(source, "127.0.0.1:1");
  const fresh = await runThread(launch);
  bootThread(serviceEnv({ ...launch, endpoint: "" }));
  const booted = await runThread(launch);
  expect(booted.code).toBe(1);
  expect(fresh.code).toBe(1);
  expect(booted.err).toContain("Uncaught Error: boom at load");
  expect(fresh.err).toContain("Uncaught Error: boom at load");
});

it("ends a booted thread whose service is stuck at a top-level await nothing is left to settle with 13, as a thread started on it", async () => {
  const stuck = launchOf('console.log("connecting");\nawait new Promise(() => {});\n', "127.0.0.1:1");
  // One that loads and ends, and one that exits as it loads, end as they say.
  const ends = launchOf("await new Promise((resolve) => setTimeout(resolve, 10));\n", "127.0.0.1:1");
  const exits = launchOf("process.exit(0);\nawait new Promise(() => {});\n", "127.0.0.1:1");
  // process.exit() with no code during load is an exit call, not an await left unsettled.
  const exitsBare = launchOf("process.exit();\nawait new Promise(() => {});\n", "127.0.0.1:1");
  const exitsLater = launchOf("setTimeout(() => process.exit(), 10);\nawait new Promise(() => {});\n", "127.0.0.1:1");
  for (const [launch, code] of [
    [stuck, 13],
    [ends, 0],
    [exits, 0],
    [exitsBare, 0],
    [exitsLater, 0],
  ] as const) {
    const fresh = await runThread(launch);
    bootThread(serviceEnv({ ...launch, endpoint: "" }));
    const booted = await runThread(launch);
    expect(fresh.code).toBe(code);
    expect(booted.code, launch.bundle.outfile).toBe(code);
  }
});

it("runs a service in the thread bin/nitric-like.js boots for run, when its environment matches", async () => {
  // No .env values: the environment the bin can know before the CLI loads.
  const launch = { ...launchOf(REPORTER, "127.0.0.1:4567"), dotenv: new Map<string, string>() };
  const fresh = await runThread(launch);
  bootForRun(["run", launch.project.dir, "--processes"]);
  bootForRun(["run", launch.project.dir, "--provider", "aws"]);
  bootForRun(["spec", launch.project.dir]);
  expect(bootedFor(serviceEnv({ ...launch, endpoint: "" }))).toBe(0);
  bootForRun(["run", launch.project.dir, "--provider=local"]);
  expect(bootedFor(serviceEnv({ ...launch, endpoint: "" }))).toBe(1);
  const booted = await runThread(launch);
  expect(bootedFor(serviceEnv({ ...launch, endpoint: "" }))).toBe(0);
  expect(booted.reported).toEqual(fresh.reported);
  expect(booted.code).toBe(7);
});

it("keeps what an early thread sends before its port is served, and delivers it in order once it is", async () => {
  const launch = launchOf(
    `import { workerData } from "node:worker_threads";
for (let i = 0; i < 3; i++) workerData.port.postMessage(i);
workerData.port.postMessage(process.env.NITRIC_ENVIRONMENT);
`,
    "",
  );
  const early = startEarlyThread(launch);
  // The thread has run and ended before anyone listens on the other end.
  const code = await new Promise((resolve) => early.handle.onExit((c) => resolve(c)));
  expect(code).toBe(0);
  const got: unknown[] = [];
  await new Promise<void>((resolve) => {
    early.port.on("message", (m) => {
      got.push(m);
      if (got.length === 4) resolve();
    });
  });
  early.port.close();
  expect(got).toEqual([0, 1, 2, "run"]);
});
