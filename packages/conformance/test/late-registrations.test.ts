// Handlers registered after a service started (socket.on() or socket.route() in a handler): the
// collect pass, which spec, build and up deploy from, never sees them, so a deployment would not
// route to them. run refuses them as it refuses late declarations: it says which handler, the
// service's file and the fix, and ignores the registration, so its events go where they would go
// once deployed; a deployed function (and run --provider aws) does the same from its bindings.
// Through the real CLI and real ws clients, on both SDKs and both providers.
import { writeFileSync } from "node:fs";
import { createServer as createHttpServer, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { createServer as createTcpServer, type Server as TcpServer } from "node:net";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { cleanTemp, connect, runCli, sleep, startApp, stopAll, writeProject } from "../src/harness.js";
import { selfSignedCertificate } from "../src/tls.js";

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

const PROJECT = "name: lateregs\nservices:\n  - match: services/*.ts\n";

/**
 * Our SDK: chat handles "socket"; a message "register" tries to register a route and another
 * socket's connect handler once the handler has answered, from a timer. Our SDK refuses both at
 * the call (the module has loaded), so the service prints what it was told.
 */
const CHAT = [
  'import { websocket } from "@nitric-like/sdk";',
  'const socket = websocket("socket");',
  'const lobby = websocket("lobby");',
  "socket.on('connect', () => {});",
  "socket.on('disconnect', () => {});",
  "socket.on('message', (ctx) => {",
  "  if (ctx.text() !== 'register') return 'message ' + ctx.text();",
  "  setTimeout(() => {",
  "    try { socket.route('late', () => 'late route'); } catch (e) { console.error(e.message); }",
  "    try { lobby.on('connect', (c) => { c.send('late connect'); }); } catch (e) { console.error(e.message); }",
  "  }, 0);",
  "  return 'registered';",
  "});",
].join("\n");

/** The service that handles "lobby" at its top level. */
const LOBBY = [
  'import { websocket } from "@nitric-like/sdk";',
  'const lobby = websocket("lobby");',
  "lobby.on('connect', (c) => { c.send('lobby connect'); });",
  "lobby.on('disconnect', () => {});",
  "lobby.on('message', () => 'lobby message');",
].join("\n");

/** @nitric/sdk: chat's late connect handler of "lobby", as its users write it. */
const THEIR_CHAT = [
  'import { websocket } from "@nitric/sdk";',
  'const socket = websocket("socket");',
  'const lobby = websocket("lobby");',
  "socket.on('connect', async (ctx) => ctx);",
  "socket.on('disconnect', async (ctx) => ctx);",
  "socket.on('message', async (ctx) => {",
  "  lobby.on('connect', async (c) => { await lobby.send(c.req.connectionId, 'late connect'); return c; });",
  "  await socket.send(ctx.req.connectionId, 'registered');",
  "  return ctx;",
  "});",
].join("\n");

/** The message that registers late, then the first frame of a new "lobby" connection. */
async function registerLate(app: { url(name: string): string }): Promise<{ route: string; lobby: string }> {
  const client = await connect(app.url("socket"));
  client.ws.send("register");
  expect((await client.next(10000)).text).toBe("registered");
  // The registration streams open after the handler answered: give them a moment.
  await sleep(500);
  client.ws.send(JSON.stringify({ action: "late" }));
  const route = (await client.next(10000)).text;
  client.close();
  const lobby = await connect(app.url("lobby"));
  const first = (await lobby.next(10000)).text;
  lobby.close();
  return { route, lobby: first };
}

describe.each(["local", "aws"])("handlers registered after a service started, under run --provider %s", (provider) => {
  it("are refused with the handler, the service's file and the fix; their events go where a deployment sends them", async () => {
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": CHAT, "services/lobby.ts": LOBBY });
    const app = await startApp(dir, ["--no-dashboard", "--no-watch", "--provider", provider]);
    const out = await registerLate(app);
    expect(out).toEqual({ route: 'message {"action":"late"}', lobby: "lobby connect" });
    // Once per handler however often the handler registers it, and the service kept running.
    expect((await registerLate(app)).lobby).toBe("lobby connect");
    const said = app.stdout + app.stderr;
    // Our SDK refuses them at the call, once the module has loaded: the provider never sees them
    // (the @nitric/sdk test below has the provider's refusal).
    const fix = "register handlers at module load: at top level or during import, not in a timer/callback";
    const route = said.match(
      /websocket\("socket"\)\.route\("late"\): service "chat" registered it after its module finished loading [^\n]*/g,
    );
    expect(route?.[0]).toContain(fix);
    const connectRefused = said.match(
      /websocket\("lobby"\)\.on\("connect"\): service "chat" registered it after its module finished loading [^\n]*/g,
    );
    expect(connectRefused?.[0]).toContain(fix);
    expect(said).not.toMatch(/now handles connect events instead of/);
    expect(app.stderr).not.toMatch(/exited|crashed/);
  }, 60000);

  it("are refused to a @nitric/sdk service as well: the provider checks what the collect pass found", async () => {
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/chat.ts": THEIR_CHAT,
      "services/lobby.ts": LOBBY,
    });
    const app = await startApp(dir, ["--no-dashboard", "--no-watch", "--provider", provider]);
    const client = await connect(app.url("socket"));
    client.ws.send("register");
    expect((await client.next(10000)).text).toBe("registered");
    await sleep(500);
    client.close();
    const lobby = await connect(app.url("lobby"));
    expect((await lobby.next(10000)).text).toBe("lobby connect");
    lobby.close();
    await app.waitFor(/warning: websocket\("lobby"\)\.on\("connect"\): service "chat" registered it after it started/);
    expect(app.stderr).not.toMatch(/exited|crashed/);
  }, 60000);

  it("are not refused to a saved service that registers a new route at its top level, restarted before it is collected again", async () => {
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": CHAT, "services/lobby.ts": LOBBY });
    const app = await startApp(dir, ["--no-dashboard", "--provider", provider]);
    writeFileSync(
      join(dir, "services/chat.ts"),
      CHAT.replace(
        "socket.on('connect', () => {});",
        "socket.on('connect', () => {});\nsocket.route('late', () => 'top route');",
      ),
    );
    if (provider === "aws") await app.waitFor(/deployed again/, 30000);
    else await app.waitFor(/changed: restarting service "chat"/);
    const before = app.stderr.length;
    let got = "";
    for (const deadline = Date.now() + 20000; Date.now() < deadline && got !== "top route"; ) {
      try {
        const client = await connect(app.url("socket"));
        client.ws.send(JSON.stringify({ action: "late" }));
        got = (await client.next(2000)).text;
        client.close();
      } catch {
        // restarting: the next try
      }
      if (got !== "top route") await sleep(100);
    }
    expect(got).toBe("top route");
    expect(app.stderr.slice(before)).not.toContain("after it started");
  }, 60000);

  it("are refused at the call when a handler imports another service's entry file, whose handlers stay its own", async () => {
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/chat.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("socket");',
        "socket.on('connect', () => {});",
        "socket.on('disconnect', () => {});",
        "let imported = '';",
        "socket.on('message', () => {",
        "  if (imported === '') setTimeout(() => { import('./lobby.ts').then((m) => { imported = m.NAME; }, (e) => { imported = 'refused: ' + e.message; }); }, 0);",
        "  return 'imported ' + imported;",
        "});",
      ].join("\n"),
      "services/lobby.ts": `${LOBBY}\nexport const NAME = "lobby";`,
    });
    const app = await startApp(dir, ["--no-dashboard", "--no-watch", "--provider", provider]);
    const client = await connect(app.url("socket"));
    client.ws.send("hi");
    expect((await client.next(10000)).text).toBe("imported ");
    await sleep(500);
    client.ws.send("hi");
    // Its first late call is the declaration of the socket, which chat never declared as it loaded.
    expect((await client.next(10000)).text).toMatch(
      /^imported refused: websocket\("lobby"\): service "chat" declared it after its module finished loading/,
    );
    client.close();
    await sleep(500);
    // The lobby's handlers stay its own.
    const lobby = await connect(app.url("lobby"));
    expect((await lobby.next(10000)).text).toBe("lobby connect");
    lobby.ws.send("x");
    expect((await lobby.next(10000)).text).toBe("lobby message");
    lobby.close();
    expect(app.stdout + app.stderr).not.toMatch(/now handles \w+ events instead of/);
    expect(app.stderr).not.toMatch(/exited|crashed/);
  }, 60000);

  it("an authorizer given after the service started is refused too: its connections are not authorized, as once deployed", async () => {
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/lobby.ts": LOBBY,
      "services/chat.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("socket");',
        "socket.on('connect', () => {});",
        "socket.on('disconnect', () => {});",
        "socket.on('message', () => {",
        "  setTimeout(() => {",
        "    try { websocket('lobby', { authorize: () => ({ status: 401, reason: 'late authorizer' }) }); }",
        "    catch (e) { console.error(e.message); }",
        "  }, 0);",
        "  return 'authorizing';",
        "});",
      ].join("\n"),
    });
    const app = await startApp(dir, ["--no-dashboard", "--no-watch", "--provider", provider]);
    const client = await connect(app.url("socket"));
    client.ws.send("hi");
    expect((await client.next(10000)).text).toBe("authorizing");
    client.close();
    // Our SDK refuses it at the call, once the module has loaded: a socket it did not declare then.
    await app.waitFor(
      /websocket\("lobby", \{ authorize \}\): service "chat" declared it after its module finished loading/,
    );
    expect(app.stdout + app.stderr).toContain('as websocket("lobby", { authorize })');
    // Not run: the next client connects, as it would once deployed.
    const lobby = await connect(app.url("lobby"));
    expect((await lobby.next(10000)).text).toBe("lobby connect");
    lobby.close();
    expect(app.stderr).not.toMatch(/exited|crashed/);
  }, 60000);
});

describe("a handler moved from one service to another across two saves, under run", () => {
  it("is not refused to the service that registers it at its top level while the other still does", async () => {
    const a = LOBBY;
    const b = [
      'import { websocket } from "@nitric-like/sdk";',
      'const lobby = websocket("lobby");',
      "void lobby;",
      'const socket = websocket("socket");',
      "socket.on('connect', () => {});",
      "socket.on('disconnect', () => {});",
      "socket.on('message', () => 'b');",
    ].join("\n");
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/a.ts": a, "services/b.ts": b });
    const app = await startApp(dir, ["--no-dashboard"]);
    // First b takes the connect handler (a still has it: the spec has both, an error it keeps a's)...
    writeFileSync(
      join(dir, "services/b.ts"),
      b.replace("void lobby;", "lobby.on('connect', (c) => { c.send('b connect'); });"),
    );
    await app.waitFor(/now handles connect events instead of service "a"/);
    // ...then a lets it go.
    writeFileSync(
      join(dir, "services/a.ts"),
      a.replace("lobby.on('connect', (c) => { c.send('lobby connect'); });", ""),
    );
    await app.waitFor(/changed: restarting service "a"/);
    let got = "";
    for (const deadline = Date.now() + 20000; Date.now() < deadline && got !== "b connect"; ) {
      try {
        const lobby = await connect(app.url("lobby"));
        got = (await lobby.next(2000)).text;
        lobby.close();
      } catch {
        await sleep(100);
      }
    }
    expect(got).toBe("b connect");
    expect(app.stderr).not.toContain("after it started");
  }, 60000);
});

describe("our SDK, under run", () => {
  it("refuses a second handler made in a handler at the call, with the socket, the handler and the fix, and never grows the chain; a first one is refused too, made after the module loaded", async () => {
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/chat.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("socket");',
        "socket.on('connect', () => {});",
        "socket.on('disconnect', () => {});",
        "const refused = (f) => { try { f(); return 'registered'; } catch (e) { return e.code + ': ' + e.message; } };",
        "socket.on('message', async (ctx) => {",
        "  await new Promise((r) => setTimeout(r, 1));",
        "  if (ctx.text() === 'again') ctx.reply(refused(() => socket.on('message', (c) => { c.reply('extra'); })));",
        "  if (ctx.text() === 'route') ctx.reply(refused(() => socket.route('late', () => 'late route')));",
        "  if (ctx.text() === 'auth') ctx.reply(refused(() => websocket('other', { authorize: () => ({ identity: {} }) })));",
        "  return 'handled ' + ctx.text();",
        "});",
      ].join("\n"),
    });
    const app = await startApp(dir, ["--no-dashboard", "--no-watch"]);
    const client = await connect(app.url("socket"));
    const frames = async (n: number) => {
      const got: string[] = [];
      for (let i = 0; i < n; i++) got.push((await client.next(10000)).text);
      return got;
    };
    client.ws.send("again");
    const [again] = await frames(2);
    expect(again).toMatch(
      /^failed_precondition: websocket\("socket"\)\.on\("message"\): service "chat" registered it again after it started \(in a handler/,
    );
    expect(again).toContain("register each handler once, at the top level of the service's entry file");
    // A first registration in a handler comes after the module loaded: refused at the call too
    // (one after a top-level await, made before the import resolved, is not: see below).
    client.ws.send("route");
    const [route, handled] = await frames(2);
    expect(route).toMatch(
      /^failed_precondition: websocket\("socket"\)\.route\("late"\): service "chat" registered it after its module finished loading/,
    );
    expect(handled).toBe("handled route");
    // An authorizer of a new socket is a declaration: refused at the call as well.
    client.ws.send("auth");
    const [auth, authHandled] = await frames(2);
    expect(auth).toMatch(
      /^failed_precondition: websocket\("other", \{ authorize \}\): service "chat" declared it after its module finished loading/,
    );
    expect(authHandled).toBe("handled auth");
    // The chain is as the top level left it: one handler, one reply; no route.
    client.ws.send("x");
    expect(await frames(1)).toEqual(["handled x"]);
    client.ws.send(JSON.stringify({ action: "late" }));
    expect(await frames(1)).toEqual(['handled {"action":"late"}']);
    await sleep(300);
    client.ws.send("y");
    expect(await frames(1)).toEqual(["handled y"]);
    client.close();
    expect(app.stderr).not.toMatch(/exited|crashed/);
  }, 60000);

  it("names the service that registered it under --single-thread, where services share one environment", async () => {
    const service = (name: string) =>
      [
        'import { websocket } from "@nitric-like/sdk";',
        `const socket = websocket(${JSON.stringify(name)});`,
        "socket.on('connect', () => {});",
        "socket.on('disconnect', () => {});",
        "socket.on('message', () => {",
        "  try { socket.route('late', () => 'late'); return 'registered'; } catch (e) { return e.message; }",
        "});",
      ].join("\n");
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/alpha.ts": service("alpha"),
      "services/beta.ts": service("beta"),
    });
    const app = await startApp(dir, ["--no-dashboard", "--single-thread"]);
    for (const name of ["alpha", "beta"]) {
      const client = await connect(app.url(name));
      client.ws.send("register");
      expect((await client.next(10000)).text).toMatch(
        new RegExp(
          `^websocket\\("${name}"\\)\\.route\\("late"\\): service "${name}" registered it after its module finished loading`,
        ),
      );
      client.close();
    }
  }, 60000);

  it("accepts a route registered after a top-level await while an event of the service is being handled", async () => {
    const file = (delay: number) =>
      [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("socket");',
        "socket.on('connect', () => {});",
        "socket.on('disconnect', () => {});",
        "socket.on('message', async (ctx) => { await new Promise((r) => setTimeout(r, 1500)); return 'slow ' + ctx.text(); });",
        `await new Promise((r) => setTimeout(r, ${delay}));`,
        "socket.route('join', () => 'joined');",
      ].join("\n");
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": file(10) });
    const app = await startApp(dir, ["--no-dashboard"]);
    const client = await connect(app.url("socket"));
    // Saved: the new copy registers its message handler, gets the message sent meanwhile and is
    // handling it when its top level goes on to register the route, which the collect pass saw.
    writeFileSync(join(dir, "services", "chat.ts"), `${file(700)}\n// saved\n`);
    await expect.poll(() => app.stdout + app.stderr, { timeout: 20000 }).toMatch(/restarting service "chat"/);
    client.ws.send("during");
    expect((await client.next(20000)).text).toBe("slow during");
    client.ws.send(JSON.stringify({ action: "join" }));
    expect((await client.next(20000)).text).toBe("joined");
    client.close();
    expect(app.stderr).not.toMatch(/failed_precondition|exited|crashed/);
  }, 60000);

  it("refuses ws.on() made in an Ampt-style handler, said as ws.on() as the user wrote it", async () => {
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/tracker.ts": [
        'import { ws } from "@nitric-like/sdk/ampt";',
        "ws.on('connected', () => {});",
        "ws.on('disconnected', () => {});",
        "ws.on('message', async (connection, data) => {",
        "  let said = 'registered';",
        "  try { ws.on('message', () => {}); } catch (e) { said = e.code + ': ' + e.message; }",
        "  await connection.send({ said, data });",
        "});",
      ].join("\n"),
    });
    const app = await startApp(dir, ["--no-dashboard", "--no-watch"]);
    const client = await connect(app.url("ws"));
    client.ws.send("again");
    const { said } = JSON.parse((await client.next(10000)).text);
    expect(said).toMatch(
      /^failed_precondition: ws\.on\("message"\): service "tracker" registered it again after it started \(in a handler/,
    );
    client.close();
  }, 60000);
});

/** A service that registers a route from a timer its top level starts: after its module has loaded. */
const TIMER_ROUTE = (ms: number) =>
  [
    'import { websocket } from "@nitric-like/sdk";',
    'const socket = websocket("late");',
    "socket.on('message', () => 'message');",
    `setTimeout(() => { socket.route('join', () => 'joined'); }, ${ms});`,
  ].join("\n");

const REFUSED =
  /websocket\("late"\)\.route\("join"\): service "chat" registered it after its module finished loading \(in a timer, a callback or a handler\)[^\n]*register handlers at module load: at top level or during import, not in a timer\/callback/;

describe("a route registered from a timer the service's top level started", () => {
  // Each case is its own project and CLI, run side by side: most of each is the collect pass
  // waiting for the service's timers.
  it("fails spec (3000 ms, 0 ms, and a few timers deep from a load timer's callback), naming the socket, the route and the fix, rather than leaving the route out of the spec", async () => {
    const nested = TIMER_ROUTE(3000).replace(
      /setTimeout\(\(\) => \{ (socket\.route\([^;]*;) \}, 3000\);/,
      "setTimeout(() => setTimeout(() => setTimeout(() => { $1 }, 3000), 100), 100);",
    );
    expect(nested).toContain("setTimeout(() => setTimeout(() => setTimeout(");
    const cases: [string, string][] = [
      ["3000 ms", TIMER_ROUTE(3000)],
      ["0 ms", TIMER_ROUTE(0)],
      ["a few timers deep", nested],
    ];
    const results = await Promise.all(
      cases.map(([, source]) => {
        const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": source });
        return runCli(["spec", dir], { timeoutMs: 60000 });
      }),
    );
    for (const [i, [shape]] of cases.entries()) {
      const result = results[i] as (typeof results)[number];
      expect(result.code, shape).toBe(1);
      expect(result.stderr, shape).toMatch(REFUSED);
    }
  }, 60000);

  it("fails run ([], --processes, --single-thread) in the same words before ready, instead of deploying the app without it", async () => {
    const extras = [[], ["--processes"], ["--single-thread"]];
    const results = await Promise.all(
      extras.map((extra) => {
        const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": TIMER_ROUTE(3000) });
        return runCli(["run", dir, "--random-ports", "--plain", "--no-dashboard", "--no-watch", ...extra], {
          // Shorter than the test's: without the fix run stays up, and is killed rather than left.
          timeoutMs: 40000,
        });
      }),
    );
    for (const [i, extra] of extras.entries()) {
      const result = results[i] as (typeof results)[number];
      const label = JSON.stringify(extra);
      expect(result.code, label).toBe(1);
      expect(result.stdout, label).not.toMatch(/^ready/m);
      expect(result.stdout + result.stderr, label).toMatch(REFUSED);
    }
  }, 60000);
});

/** A real HTTP server on 127.0.0.1 that answers each request after `ms`: a slow config service. */
async function slowServer(ms: number): Promise<{ url: string; server: Server }> {
  const server = createHttpServer((_req, res) => {
    setTimeout(() => res.end("{}"), ms);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return { url: `http://127.0.0.1:${address.port}/config`, server };
}

/** A service that handles "late" at load, then registers "join" once `work` (its top level's) has got an answer. */
const IO_ROUTE = (work: string) =>
  [
    'import { websocket } from "@nitric-like/sdk";',
    'import { get } from "node:http";',
    'const socket = websocket("late");',
    "socket.on('message', () => 'message');",
    "const register = () => { socket.route('join', () => 'joined'); };",
    work,
  ].join("\n");

describe("a route registered once I/O the service's top level started has answered", () => {
  // Longer than the collect pass's quiet spell (1.5 s): a pass that does not wait has ended by then.
  const SLOW_MS = 2500;
  let slow: { url: string; server: Server } | undefined;
  afterEach(async () => {
    slow?.server.closeAllConnections();
    await new Promise((resolve) => slow?.server.close(resolve) ?? resolve(undefined));
    slow = undefined;
  });

  // Each shape is its own project and spec, run side by side against one slow server (it answers
  // each request after SLOW_MS): most of each is the collect pass waiting for the answer.
  it("fails spec (fetch(url).then(), http.get()'s callback, an await in a load timer's callback), naming the socket, the route and the fix, rather than leaving the route out of the spec", async () => {
    const server = await slowServer(SLOW_MS);
    slow = server;
    const shapes: [string, (url: string) => string][] = [
      ["fetch(url).then()", (url) => `fetch(${JSON.stringify(url)}).then((r) => r.text()).then(register);`],
      [
        "http.get()'s callback",
        (url) => `get(${JSON.stringify(url)}, (res) => { res.resume(); res.on('end', register); });`,
      ],
      [
        "an await in a load timer's callback",
        (url) => `setTimeout(async () => { await fetch(${JSON.stringify(url)}); register(); }, 10);`,
      ],
    ];
    const results = await Promise.all(
      shapes.map(([, work]) => {
        const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": IO_ROUTE(work(server.url)) });
        return runCli(["spec", dir], { timeoutMs: 60000 });
      }),
    );
    for (const [i, [shape]] of shapes.entries()) {
      const result = results[i] as (typeof results)[number];
      expect(result.code, shape).toBe(1);
      expect(result.stderr, shape).toMatch(REFUSED);
      expect(result.stderr, shape).toContain("at services/chat.ts:5:");
    }
  }, 60000);

  it("fails spec over TLS too (fetch(url).then(), https.get()'s callback, an await in a load timer's callback): a TLS 1.3 server's session tickets, read after the request went out, are no answer", async () => {
    const { cert, key } = selfSignedCertificate();
    // A self-signed HTTPS server on 127.0.0.1, slow to answer as slowServer; one for every shape.
    const server = createHttpsServer({ cert, key }, (_req, res) => {
      setTimeout(() => res.end("{}"), SLOW_MS);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    if (address === null || typeof address === "string") throw new Error("no port");
    const shapes: [string, (url: string, ca: string) => string][] = [
      ["fetch(url).then()", (url) => `fetch(${JSON.stringify(url)}).then((r) => r.text()).then(register);`],
      [
        "https.get()'s callback",
        (url, ca) =>
          `https.get(${JSON.stringify(url)}, { ca: ${JSON.stringify(ca)} }, (res) => { res.resume(); res.on('end', register); });`,
      ],
      [
        "an await in a load timer's callback",
        (url) => `setTimeout(async () => { await fetch(${JSON.stringify(url)}); register(); }, 10);`,
      ],
    ];
    try {
      const url = `https://127.0.0.1:${address.port}/config`;
      const results = await Promise.all(
        shapes.map(([, work]) => {
          const service = IO_ROUTE(work(url, cert)).replace(
            'import { get } from "node:http";',
            'import https from "node:https";',
          );
          const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": service, "ca.pem": cert });
          // fetch trusts the server's certificate from NODE_EXTRA_CA_CERTS, which the service inherits.
          return runCli(["spec", dir], { timeoutMs: 60000, env: { NODE_EXTRA_CA_CERTS: join(dir, "ca.pem") } });
        }),
      );
      for (const [i, [shape]] of shapes.entries()) {
        const result = results[i] as (typeof results)[number];
        expect(result.stderr, shape).not.toMatch(/fetch failed|self.signed/i);
        expect(result.code, shape).toBe(1);
        expect(result.stderr, shape).toMatch(REFUSED);
        expect(result.stderr, shape).toContain("at services/chat.ts:5:");
      }
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }, 60000);

  it("says, once, what a pass that has waited a while waits for: the connection, and that handlers register at load", async () => {
    slow = await slowServer(3500);
    const port = new URL(slow.url).port;
    const work = `fetch(${JSON.stringify(slow.url)}).then((r) => r.text()).then(register);`;
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": IO_ROUTE(work) });
    const result = await runCli(["spec", dir], { timeoutMs: 60000 });
    expect(result.code).toBe(1);
    const notes = result.stderr.split("\n").filter((l) => l.includes("its collect pass is waiting"));
    expect(notes).toEqual([
      `service "chat" (services/chat.ts): its collect pass is waiting for work it started as it loaded (up to 10 s for each, 30 s in all): a connection to 127.0.0.1:${port} with an unanswered request; handlers must be registered at module load, so one registered when that work ends is refused`,
    ]);
    expect(result.stderr).toMatch(REFUSED);
  }, 60000);

  it("does not hold spec for a connection the top level keeps open, nor for a promise only a signal settles", async () => {
    // A server that takes the connection and never says a word: a keep-alive connection.
    const quiet: TcpServer = createTcpServer(() => {});
    await new Promise<void>((resolve) => quiet.listen(0, "127.0.0.1", resolve));
    const address = quiet.address();
    if (address === null || typeof address === "string") throw new Error("no port");
    const service = [
      'import { websocket } from "@nitric-like/sdk";',
      'import { connect } from "node:net";',
      'import { once } from "node:events";',
      'const socket = websocket("kept");',
      "socket.on('connect', () => {});",
      "socket.on('disconnect', () => {});",
      "socket.on('message', () => 'message');",
      `const conn = connect(${address.port}, "127.0.0.1");`,
      "conn.on('data', () => {});",
      "once(process, 'SIGTERM').then(() => conn.end());",
    ].join("\n");
    try {
      const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": service });
      const started = Date.now();
      const result = await runCli(["spec", dir], { timeoutMs: 60000 });
      expect(result.stderr).toBe("bundling 1 service...\ncollecting resources from 1 service...\n");
      expect(result.code).toBe(0);
      // The quiet spell and a beat, well short of the 10 s an open-ended wait may take.
      expect(Date.now() - started).toBeLessThan(8000);
    } finally {
      await new Promise((resolve) => quiet.close(resolve));
    }
  }, 60000);
});

describe("a service whose module never finishes loading", () => {
  it("fails spec saying so, and after which line, rather than that the handlers after its top-level await are missing", async () => {
    const service = [
      'import { websocket } from "@nitric-like/sdk";',
      'const socket = websocket("late");',
      "await new Promise(() => {}); // a connection that never opens",
      "socket.on('connect', () => {});",
      "socket.on('disconnect', () => {});",
      "socket.on('message', () => 'message');",
    ].join("\n");
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": service });
    const result = await runCli(["spec", dir], { timeoutMs: 60000 });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /error: service "chat" \(services\/chat\.ts\): (exited with code 13 while its resources were being collected: )?its module never finished loading: a top-level await after services\/chat\.ts:2 (had not settled|never settled)/,
    );
    expect(result.stderr).toContain("register handlers at module load, before any await that may not settle");
    expect(result.stderr).not.toMatch(/missing \w+ handler/);
  }, 60000);

  it("waits for a top-level await of a slow answer, saying what for, and collects the handlers registered after it", async () => {
    const slow = await slowServer(2500);
    try {
      const service = [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("late");',
        `const config = await fetch(${JSON.stringify(slow.url)}).then((r) => r.json());`,
        "socket.on('connect', () => {});",
        "socket.on('disconnect', () => {});",
        "socket.on('message', () => JSON.stringify(config));",
      ].join("\n");
      const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/chat.ts": service });
      const result = await runCli(["spec", dir], { timeoutMs: 60000 });
      expect(result.stderr).toContain(
        'service "chat" (services/chat.ts): its collect pass is waiting (up to 10 s) for its module to finish loading: a top-level await after services/chat.ts:2 has not settled; handlers must be registered at module load, and those after that await are collected once it settles',
      );
      expect(result.code).toBe(0);
      expect(JSON.parse(result.stdout).resources).toEqual([
        expect.objectContaining({ kind: "websocket", name: "late" }),
      ]);
    } finally {
      slow.server.closeAllConnections();
      await new Promise((resolve) => slow.server.close(resolve));
    }
  }, 60000);
});
