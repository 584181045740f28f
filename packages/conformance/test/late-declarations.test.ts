// Declarations made after a service started (in a handler): the collect pass, which spec, build
// and up deploy from, never sees them, so they are refused with the fix instead of letting the
// app work locally and fail once deployed: by our SDK at the call, and for @nitric/sdk services
// by run's provider and a deployed function's runtime (and run --provider aws).
// Through the real CLI and real ws clients, on both SDKs and both providers; a save that adds a
// top-level declaration (restarted before it is collected again) is not refused.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { cleanTemp, connect, runCli, startApp, stopAll, writeProject } from "../src/harness.js";

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

const PROJECT = "name: late\nservices:\n  - match: services/*.ts\n";

/** Our SDK: a handler that declares a new store, widens a collected one, and declares a collected one again. */
const OURS = [
  'import { kv, websocket } from "@nitric-like/sdk";',
  'const socket = websocket("socket");',
  'const names = kv<{ v: string }>("names").allow("get");',
  "void names;",
  "socket.on('message', async (ctx) => {",
  "  const out: Record<string, string> = {};",
  "  const step = async (name: string, f: () => Promise<unknown>) => {",
  "    try { await f(); out[name] = 'ok'; } catch (e) { out[name] = (e as Error).message; }",
  "  };",
  "  await step('late', () => kv<{ v: string }>('late').allow('get', 'set').set('k', { v: 'x' }));",
  "  await step('wider', () => kv<{ v: string }>('names').allow('set').set('k', { v: 'x' }));",
  "  await step('again', () => kv<{ v: string }>('names').allow('get').keys().next());",
  "  ctx.reply(JSON.stringify(out));",
  "});",
].join("\n");

/** @nitric/sdk: the same, as its users write it. */
const THEIRS = [
  'import { kv, websocket } from "@nitric/sdk";',
  'const socket = websocket("socket");',
  'const names = kv("names").allow("get");',
  "void names;",
  "socket.on('connect', async (ctx) => ctx);",
  "socket.on('disconnect', async (ctx) => ctx);",
  "socket.on('message', async (ctx) => {",
  "  const out: Record<string, string> = {};",
  "  try { await kv('late').allow('get', 'set').set('k', { v: 'x' }); out.late = 'ok'; }",
  "  catch (e) { out.late = (e as Error).message; }",
  "  try { await kv('names').allow('get').get('nope').catch((e: Error) => { if (!/not found/i.test(e.message)) throw e; }); out.again = 'ok'; }",
  "  catch (e) { out.again = (e as Error).message; }",
  "  await socket.send(ctx.req.connectionId, JSON.stringify(out));",
  "  return ctx;",
  "});",
].join("\n");

async function ask(url: string): Promise<Record<string, string>> {
  const client = await connect(url);
  client.ws.send("hi");
  const frame = await client.next(10000);
  client.close();
  return JSON.parse(frame.text) as Record<string, string>;
}

// On AWS (deployed, and under the emulator) the function's runtime refuses them with the same
// words, from what its bindings say the collect pass saw (NITRIC_LIKE_DECLARED).
describe.each(["local", "aws"])("declarations made after a service started, under run --provider %s", (provider) => {
  it("are refused at the call by our SDK with the resource and the fix; what the collect pass saw is declared again as before", async () => {
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": OURS });
    const app = await startApp(dir, ["--no-dashboard", "--no-watch", "--provider", provider]);
    const out = await ask(app.url("socket"));
    // Our SDK refuses them once the module has loaded, before the provider hears of them (the
    // @nitric/sdk test below has the provider's refusal, which names the service's file).
    const fix = "declare resources at module load: at top level or during import, not in a timer/callback";
    expect(out.late).toContain('kv("late"): service "chat" declared it after its module finished loading');
    expect(out.late).toContain(fix);
    expect(out.wider).toContain(
      'kv("names").allow("set"): service "chat" asked for "set" after its module finished loading, beyond the "get" it granted as it loaded',
    );
    expect(out.wider).toContain(`${fix}, as kv("names").allow("get", "set")`);
    expect(out.again).toBe("ok");
    // The service kept running, and declares again what it declared as it loaded.
    expect(await ask(app.url("socket"))).toEqual(out);
    const said = app.stdout + app.stderr;
    expect(said).not.toContain("after it started");
    expect(app.stderr).not.toMatch(/exited|crashed/);
  }, 60000);

  it("are refused to a @nitric/sdk service as well: the provider checks what the collect pass found", async () => {
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": THEIRS });
    const app = await startApp(dir, ["--no-dashboard", "--no-watch", "--provider", provider]);
    const out = await ask(app.url("socket"));
    expect(out.late).toContain('kv("late"): service "chat" declared it after it started');
    expect(out.late).toContain("declare it at the top level of services/chat.ts");
    expect(out.again).toBe("ok");
  }, 60000);

  it("are not refused to a saved service that declares something new at its top level, restarted before it is collected again", async () => {
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": OURS });
    const app = await startApp(dir, ["--no-dashboard", "--provider", provider]);
    const saved = OURS.replace(
      'const names = kv<{ v: string }>("names").allow("get");',
      'const names = kv<{ v: string }>("names").allow("get", "set");\nconst late = kv<{ v: string }>("late").allow("get", "set");\nvoid late;',
    );
    writeFileSync(join(dir, "services/chat.ts"), saved);
    // Under --provider aws it declares more: the emulated app is deployed again with it. Until
    // then the running function is the old version, whose handler declares late: refused, truly.
    if (provider === "aws") await app.waitFor(/deployed again/, 30000);
    else await app.waitFor(/changed: restarting service "chat"/);
    const before = app.stderr.length;
    let out: Record<string, string> = {};
    for (let i = 0; i < 50; i++) {
      try {
        out = await ask(app.url("socket"));
        if (out.late === "ok") break;
      } catch {
        // restarting: the next try
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(out).toEqual({ late: "ok", wider: "ok", again: "ok" });
    expect(app.stderr.slice(before)).not.toContain("after it started");
  }, 60000);
});

/** A service that declares from a timer its top level starts: after its module has loaded. */
const TIMER_DECLARES = (ms: number, declaration: string) =>
  [
    'import { kv, websocket } from "@nitric-like/sdk";',
    'const names = kv("names").allow("get");',
    "void names;",
    'websocket("socket").on("message", () => "message");',
    `setTimeout(() => { ${declaration}; }, ${ms});`,
  ].join("\n");

describe("a declaration made from a timer the service's top level started", () => {
  it.each([
    [3000, 'kv("late").allow("get")', /kv\("late"\): service "chat" declared it after its module finished loading/],
    [
      0,
      'kv("names").allow("get", "set")',
      /kv\("names"\)\.allow\("set"\): service "chat" asked for "set" after its module finished loading, beyond the "get" it granted as it loaded/,
    ],
  ])(
    "fails spec (%i ms: %s), naming the resource and the fix, rather than leaving it out of the spec",
    async (ms, declaration, refused) => {
      const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": TIMER_DECLARES(ms, declaration) });
      const result = await runCli(["spec", dir], { timeoutMs: 60000 });
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(refused);
      expect(result.stderr).toContain(
        "declare resources at module load: at top level or during import, not in a timer/callback",
      );
    },
    60000,
  );
});
