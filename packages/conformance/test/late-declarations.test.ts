// Declarations made after a service started (in a handler): the collect pass, which spec, build
// and up deploy from, never sees them, so run refuses them with the fix instead of letting the
// app work locally and fail once deployed; a deployed function (and run --provider aws) as well.
// Through the real CLI and real ws clients, on both SDKs and both providers; a save that adds a
// top-level declaration (restarted before it is collected again) is not refused.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { cleanTemp, connect, startApp, stopAll, writeProject } from "../src/harness.js";

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
  it("are refused under run with the resource, the service's file and the fix; what the collect pass saw is declared again as before", async () => {
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": OURS });
    const app = await startApp(dir, ["--no-dashboard", "--no-watch", "--provider", provider]);
    const out = await ask(app.url("socket"));
    expect(out.late).toContain('kv("late").allow("get", "set"): service "chat" declared it after it started');
    expect(out.late).toContain('declare it at the top level of services/chat.ts, as kv("late").allow("get", "set")');
    expect(out.wider).toContain(
      'kv("names").allow("set"): service "chat" asked for "set" after it started, beyond the "get" its top level grants',
    );
    expect(out.wider).toContain('as kv("names").allow("get", "set")');
    expect(out.again).toBe("ok");
    // Said by run too, once per resource however often the handler declares it, and the service kept running.
    expect((await ask(app.url("socket"))).again).toBe("ok");
    const said = app.stdout + app.stderr;
    // One warning for kv("late").allow(...), which gives the whole fix: the store and its grant.
    const late = said.match(/warning: kv\("late"\)[^\n]*/g);
    expect(late?.length).toBe(1);
    expect(late?.[0]).toContain('kv("late").allow("get", "set"): service "chat" declared it after it started');
    expect(late?.[0]).toContain('declare it at the top level of services/chat.ts, as kv("late").allow("get", "set")');
    expect(said.match(/warning: kv\("names"\)\.allow\("set"\): service "chat" asked for "set"/g)?.length).toBe(1);
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
