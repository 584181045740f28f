// A service that imports another service's entry file (for a constant, a helper) runs that file's
// top level too, so it registers the other service's handlers as well: spec, run and build refuse
// it naming both files, the handlers and the fix, instead of an event "handled by" a service whose
// code never registers it. Through the real CLI, on both SDKs; moved into lib/, it runs.
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { cleanTemp, connect, runCli, startApp, stopAll, writeProject } from "../src/harness.js";

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

const PROJECT = "name: imports\nservices:\n  - match: services/*.ts\n";

/** Our SDK: chat exports a constant beside its handlers; other imports it from `from`. */
const CHAT = [
  'import { websocket } from "@nitric-like/sdk";',
  'export const GREETING = "welcome";',
  'const socket = websocket("socket");',
  "socket.on('connect', (ctx) => { ctx.send(GREETING); });",
  "socket.on('message', (ctx) => 'chat ' + ctx.text());",
  "socket.on('disconnect', () => {});",
].join("\n");
const other = (from: string) =>
  [
    'import { websocket } from "@nitric-like/sdk";',
    `import { GREETING } from ${JSON.stringify(from)};`,
    'const other = websocket("other");',
    "other.on('connect', () => {});",
    "other.on('message', () => GREETING);",
    "other.on('disconnect', () => {});",
  ].join("\n");

/** @nitric/sdk: the same, as its users write it. */
const THEIR_CHAT = [
  'import { websocket } from "@nitric/sdk";',
  'export const GREETING = "welcome";',
  'const socket = websocket("socket");',
  "socket.on('connect', async (ctx) => ctx);",
  "socket.on('disconnect', async (ctx) => ctx);",
  "socket.on('message', async (ctx) => ctx);",
].join("\n");
const THEIR_OTHER = [
  'import { websocket } from "@nitric/sdk";',
  'import { GREETING } from "./chat";',
  'const other = websocket("other");',
  "other.on('connect', async (ctx) => ctx);",
  "other.on('disconnect', async (ctx) => ctx);",
  "other.on('message', async (ctx) => { await other.send(ctx.req.connectionId, GREETING); return ctx; });",
].join("\n");

const IMPORTS =
  'error: service "other" (services/other.ts) imports services/chat.ts, the entry file of service "chat" (directly or through another module), which runs that file\'s top level in "other" too: websocket("socket").on("connect"), websocket("socket").on("disconnect") and websocket("socket").on("message") are each registered by both services; move what services/other.ts takes from services/chat.ts (a constant, a helper) into a module that is not a service entry, such as lib/chat.ts, and import it from both files\n';

describe("a service that imports another service's entry file", () => {
  it("is refused by spec, run and build, naming both files, the handlers and the fix; moved into lib/, it runs", async () => {
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/chat.ts": CHAT,
      "services/other.ts": other("./chat.js"),
    });
    const spec = await runCli(["spec", dir]);
    const run = await runCli(["run", dir, "--random-ports", "--plain", "--no-dashboard"]);
    const build = await runCli(["build", dir, "--provider", "aws"], { timeoutMs: 60000 });
    for (const [what, result] of [
      ["spec", spec],
      ["run", run],
      ["build", build],
    ] as const) {
      expect(result.code, `${what}: ${result.stderr}`).toBe(1);
      expect(result.stderr, what).toContain(IMPORTS);
      // Said once as the import, not as each event "handled by" both services.
      expect(result.stderr, what).not.toContain("is handled by");
      expect(result.stderr, what).toContain('the spec of "imports" has 1 problem (listed above)');
    }
    expect(run.stdout).toBe("");
    expect(run.stderr).not.toContain("ready");

    // The fix as said: the shared code in a module that is not a service entry.
    mkdirSync(join(dir, "lib"));
    renameSync(join(dir, "services", "chat.ts"), join(dir, "lib", "chat.ts"));
    writeFileSync(join(dir, "lib", "chat.ts"), 'export const GREETING = "welcome";\n');
    writeFileSync(
      join(dir, "services", "chat.ts"),
      CHAT.replace('export const GREETING = "welcome";', 'import { GREETING } from "../lib/chat.js";'),
    );
    writeFileSync(join(dir, "services", "other.ts"), other("../lib/chat.js"));
    const app = await startApp(dir, ["--no-dashboard", "--no-watch"]);
    const c = await connect(app.url("other"));
    c.ws.send("hi");
    expect((await c.next()).text).toBe("welcome");
    c.close();
  }, 120000);

  it("is refused to @nitric/sdk services as well", async () => {
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/chat.ts": THEIR_CHAT,
      "services/other.ts": THEIR_OTHER,
    });
    const spec = await runCli(["spec", dir]);
    const run = await runCli(["run", dir, "--random-ports", "--plain", "--no-dashboard"]);
    for (const result of [spec, run]) {
      expect(result.code, result.stderr).toBe(1);
      expect(result.stderr).toContain(IMPORTS);
      expect(result.stderr).not.toContain("is handled by");
    }
  }, 60000);

  it("is refused while run runs: a new service file that imports one is not started, with the same words", async () => {
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": CHAT });
    const app = await startApp(dir, ["--no-dashboard"]);
    writeFileSync(join(dir, "services", "other.ts"), other("./chat.js"));
    await app.waitFor(/service "other" waits for a file change/, 30000);
    expect(app.stderr).toContain(IMPORTS);
    expect(app.stderr).not.toContain("is handled by");
    // The running chat still answers.
    const c = await connect(app.url("socket"));
    expect((await c.next()).text).toBe("welcome");
    c.ws.send("hi");
    expect((await c.next()).text).toBe("chat hi");
    c.close();
  }, 60000);

  it("is refused while run runs: a saved service that starts importing one is not restarted, its running version stays", async () => {
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/chat.ts": CHAT,
      "services/other.ts": other("./chat.js").replace(
        'import { GREETING } from "./chat.js";',
        'const GREETING = "hi";',
      ),
    });
    const app = await startApp(dir, ["--no-dashboard"]);
    writeFileSync(join(dir, "services", "other.ts"), other("./chat.js"));
    await app.waitFor(/service "other" is not restarted \(its running version stays\) until you save a fix/, 30000);
    expect(app.stderr).toContain(IMPORTS);
    // Neither service took the other's events over, nor was restarted.
    await new Promise((r) => setTimeout(r, 1000));
    expect(app.stderr).not.toMatch(/now handles|exited|restarting service/);
    const c = await connect(app.url("socket"));
    expect((await c.next()).text).toBe("welcome");
    c.ws.send("hi");
    expect((await c.next()).text).toBe("chat hi");
    c.close();
    const o = await connect(app.url("other"));
    o.ws.send("x");
    expect((await o.next()).text).toBe("hi");
    o.close();
  }, 60000);
});
