// A Nitric app that declares what nitric-like does not serve: spec, run and build stop at once with
// exit 1, naming each resource, its kind and the service file, and what is served; no gRPC
// UNIMPLEMENTED stack, no `ready`, no restart loop, nothing dropped silently. Real CLI, real
// @nitric/sdk 1.2.2 in the collect pass: over real gRPC for spec and build, in a worker thread
// over the compat adapter for run.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cleanTemp, connect, runCli, startApp, stopAll, tempDir, writeProject } from "../src/harness.js";

afterAll(async () => {
  expect(await stopAll()).toEqual([]);
  cleanTemp();
});

const APP = [
  'import { api, bucket, http, kv, queue, schedule, secret, sql, topic, websocket } from "@nitric/sdk";',
  'const socket = websocket("socket");',
  'socket.on("connect", async () => {});',
  'socket.on("disconnect", async () => {});',
  'socket.on("message", async () => {});',
  'kv("store").allow("get");',
  'const main = api("main");',
  // Not declarations but handler streams: each used to crash the collect pass with UNIMPLEMENTED.
  'main.get("/hello", async (ctx) => ctx);',
  'topic("updates").subscribe(async (ctx) => ctx);',
  'bucket("files").on("write", "*", async (ctx) => ctx);',
  'schedule("tick").every("5 minutes", async (ctx) => ctx);',
  // Served: it must not be among the refusals.
  'secret("key").allow("access");',
  'queue("jobs").allow("enqueue");',
  'sql("db");',
].join("\n");

const WORKER = [
  'import { websocket } from "@nitric/sdk";',
  "// A second service, with nothing unsupported: it must not be blamed.",
  'websocket("socket");',
].join("\n");

const EXPECTED = [
  'declares api "main"',
  'declares topic "updates"',
  'declares bucket "files"',
  'declares schedule "tick"',
  'declares queue "jobs"',
  'declares sql "db"',
];

function project(): string {
  return writeProject({
    "nitric.yaml": "name: mixed\nservices:\n  - match: services/*.ts\n",
    "services/app.ts": APP,
    "services/worker.ts": WORKER,
  });
}

function expectRefused(result: { code: number | null; stdout: string; stderr: string }) {
  expect(result.code).toBe(1);
  for (const what of EXPECTED) {
    expect(result.stderr).toContain(
      `error: service "app" (services/app.ts): ${what}, a kind of resource nitric-like does not serve`,
    );
  }
  expect(result.stderr).toContain('remove api("main")');
  expect(result.stderr).toContain(
    '"mixed" uses 6 resources nitric-like does not serve (listed above); it serves websockets, kv stores and secrets only: websocket(), kv() and secret()',
  );
  expect(result.stderr).not.toContain("worker.ts");
  expect(result.stderr).not.toContain("declares secret");
  expect(result.stderr).not.toMatch(/UNIMPLEMENTED|node:events|Unhandled 'error'|^\s+at /m);
  // Every resource named once: handler streams and declarations of one resource are one problem.
  expect(result.stderr.match(/declares api "main"/g)).toHaveLength(1);
}

describe("unsupported Nitric resources", () => {
  it("makes spec exit 1 naming each unsupported resource, its kind and its service file, and what is served", async () => {
    const result = await runCli(["spec", project()], { timeoutMs: 30000 });
    expectRefused(result);
    expect(result.stdout).toBe("");
  }, 40000);

  it("makes run stop before anything starts: exit 1, never ready, no restarts", async () => {
    const result = await runCli(["run", project(), "--random-ports", "--plain", "--no-dashboard"], {
      timeoutMs: 30000,
    });
    expectRefused(result);
    expect(result.stdout).not.toMatch(/ready|websocket socket ws:/);
    expect(result.stderr).not.toMatch(/restarting/);
  }, 40000);

  it("makes build exit 1 and write nothing", async () => {
    const out = join(tempDir(), "out");
    const result = await runCli(["build", project(), "--provider", "aws", "--out", out], { timeoutMs: 30000 });
    expectRefused(result);
    expect(existsSync(out)).toBe(false);
  }, 40000);
});

// @nitric/sdk's topics(), queues() and storage() clients declare nothing, so no collect pass can
// refuse them: a call is answered UNIMPLEMENTED with what it used and what is served, as
// UnimplementedError, and the service goes on.
const CLIENTS = [
  'import { kv, queues, storage, topics, websocket } from "@nitric/sdk";',
  'const socket = websocket("socket");',
  'const store = kv("store").allow("get", "set");',
  'socket.on("connect", async (ctx) => ctx);',
  'socket.on("disconnect", async (ctx) => ctx);',
  'socket.on("message", async (ctx) => {',
  "  const calls = {",
  '    topic: () => topics().topic("updates").publish({ a: 1 }),',
  '    queue: () => queues().queue("jobs").enqueue({ a: 1 }),',
  '    bucket: () => storage().bucket("files").file("f").read(),',
  '    kv: () => store.set("k", { a: 1 }),',
  "  };",
  "  try {",
  "    await calls[ctx.req.text()]();",
  '    await socket.send(ctx.req.connectionId, "ok");',
  "  } catch (e) {",
  '    await socket.send(ctx.req.connectionId, `${e.constructor.name}: ${e.message.split("\\n")[0]}`);',
  "  }",
  "  return ctx;",
  "});",
].join("\n");

describe.each([
  ["in a thread", []],
  ["in a process", ["--processes"]],
])("a @nitric/sdk service that calls a client of what nitric-like does not serve, %s", (_, args) => {
  it("is told which kind of resource it used and what is served, and keeps serving", async () => {
    const dir = writeProject({
      "nitric.yaml": "name: clients\nservices:\n  - match: services/*.js\n",
      "services/app.js": CLIENTS,
    });
    const app = await startApp(dir, ["--no-dashboard", ...args]);
    const client = await connect(app.url("socket"));
    const ask = async (what: string) => {
      client.ws.send(what);
      return (await client.next(10000)).text;
    };
    const served = "nitric-like serves websockets, kv stores and secrets only";
    for (const [what, path, kind] of [
      ["topic", "/nitric.proto.topics.v1.Topics/Publish", "a topic"],
      ["queue", "/nitric.proto.queues.v1.Queues/Enqueue", "a queue"],
      ["bucket", "/nitric.proto.storage.v1.Storage/Read", "a bucket"],
    ]) {
      const answer = await ask(what as string);
      expect(answer).toContain(
        `UnimplementedError: 12 UNIMPLEMENTED: ${path}: service "app" uses ${kind}, a kind of resource nitric-like does not serve; remove it from the service (${served}`,
      );
    }
    expect(await ask("kv")).toBe("ok");
    client.close();
    await app.stop();
  }, 60000);
});
