// Message routes (socket.route): the "routes" fixture under `nitric-like run` on each provider,
// driven by real ws clients. A text message that is a JSON object whose "action" names a route
// goes to that route's handler, here or in another service; every other message (not JSON, an
// action no route has, an action that is not a string, an array, API Gateway's own route keys)
// goes to the message handler. On aws the emulated API Gateway selects the route by the
// template's $request.body.action and the route's function answers on its route response.
import { appendFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type App,
  type Client,
  cleanTemp,
  connect,
  copyProject,
  FIXTURES,
  runCli,
  sleep,
  startApp,
  writeProject,
} from "../src/harness.js";

afterAll(cleanTemp);

/** Sends a text message and returns the parsed reply. */
async function ask(c: Client, text: string): Promise<Record<string, unknown>> {
  c.ws.send(text);
  return JSON.parse((await c.next()).text) as Record<string, unknown>;
}

describe.each([
  { provider: "local", how: "in threads", args: [] },
  { provider: "local", how: "in processes (the route over gRPC)", args: ["--processes"] },
  { provider: "aws", how: "in functions", args: [] },
])("message routes on the $provider provider, the services $how", ({ provider, args }) => {
  let app: App;
  let url: string;
  beforeAll(async () => {
    app = await startApp(copyProject(join(FIXTURES, "routes")), ["--provider", provider, ...args]);
    url = app.url("game");
  }, 60000);
  afterAll(async () => {
    const { code } = await app.stop();
    expect(code).toBe(0);
  });

  it("gives a message whose action names a route to that route's handler, and its reply comes back", async () => {
    // run was ready once every handler, each route's included, had registered.
    expect(app.stdout + app.stderr).not.toContain("still waiting");
    const c = await connect(url);
    expect(await ask(c, JSON.stringify({ action: "join", room: "lobby" }))).toEqual({
      handler: "join",
      service: "game",
      room: "lobby",
    });
    // JSON's white space before the object, and a key written with escapes, still name the route.
    expect(await ask(c, '  {"action": "join"}')).toEqual({ handler: "join", service: "game", room: null });
    expect(await ask(c, '{"\\u0061ction":"join","room":"r"}')).toEqual({
      handler: "join",
      service: "game",
      room: "r",
    });
    c.close();
  });

  it("gives a route handled by another service than the message handler to that service", async () => {
    const c = await connect(url);
    const reply = await ask(c, '{"action":"leave"}');
    expect(reply).toMatchObject({ handler: "leave", service: "lobby" });
    expect(typeof reply.connectionId).toBe("string");
    // The message handler's service still has the rest.
    expect(await ask(c, "hello")).toEqual({ handler: "message", text: "hello" });
    c.close();
  });

  it.each([
    ["a message that is not JSON", "join"],
    ["an action no route has", '{"action":"nope"}'],
    ["an action that is not a string", '{"action": true}'],
    ["a JSON array", '[{"action":"join"}]'],
    ["an object without an action", '{"room":"lobby"}'],
    ["an action in a nested object", '{"data":{"action":"join"}}'],
    ["an action of another case", '{"action":"JOIN"}'],
    ["API Gateway's $connect route key", '{"action":"$connect"}'],
    ["API Gateway's $default route key", '{"action":"$default"}'],
    ["JSON that does not parse", '{"action":"join"'],
  ])("gives %s to the message handler", async (_what, text) => {
    const c = await connect(url);
    expect(await ask(c, text)).toEqual({ handler: "message", text });
    c.close();
  });

  it(
    provider === "aws"
      ? "closes a client's binary frame with 1003, as API Gateway does, whatever it holds"
      : "gives a binary frame to the message handler, whatever it holds",
    async () => {
      const c = await connect(url);
      c.ws.send(Buffer.from('{"action":"join"}'), { binary: true });
      if (provider === "aws") {
        expect((await c.waitClosed()).code).toBe(1003);
        return;
      }
      expect(JSON.parse((await c.next()).text)).toEqual({ handler: "message", binary: true, bytes: 17 });
      c.close();
    },
  );

  it("gives the client of a route whose handler throws what a message handler that throws gives, and keeps it connected", async () => {
    const c = await connect(url);
    /** What the client got for `text`: the frames before the reply to a probe sent after it. */
    const after = async (text: string) => {
      c.ws.send(text);
      await sleep(300);
      const frames: string[] = [];
      c.ws.send("probe");
      for (;;) {
        const frame = (await c.next()).text;
        if (frame === JSON.stringify({ handler: "message", text: "probe" })) return frames;
        frames.push(frame);
      }
    };
    const message = await after("boom");
    const route = await after('{"action":"boom"}');
    expect(route).toEqual(message);
    expect(c.closed).toBeUndefined();
    c.close();
    await app.waitFor(/route "boom" handler failed for connection .*the route handler failed on purpose/);
  });

  it("refuses an invalid route name in the SDK at once, with invalid_argument", async () => {
    const c = await connect(url);
    const reply = await ask(c, "bad-route");
    expect(reply).toMatchObject({ handler: "message", refused: true, code: "invalid_argument" });
    expect(reply.message).toMatch(/^websocket\("game"\)\.route\("\$x"\): a route name starts with a letter/);
    c.close();
  });

  it("routes a socket whose other events a @nitric/sdk service handles: the route to ours, the rest to Nitric's", async () => {
    const c = await connect(app.url("mixed"));
    expect(await ask(c, '{"action":"ping"}')).toEqual({ handler: "ping", route: "ping" });
    expect(await ask(c, '{"action":"pong"}')).toEqual({ handler: "nitric message", text: '{"action":"pong"}' });
    expect(await ask(c, "hello")).toEqual({ handler: "nitric message", text: "hello" });
    c.close();
  });

  it("selects a socket's routes by its routeBy property instead of action", async () => {
    const c = await connect(app.url("typed"));
    expect(await ask(c, '{"type":"join","room":"r1"}')).toEqual({ handler: "join", socket: "typed", room: "r1" });
    // "action" is a property like any other on this socket.
    const byAction = '{"action":"join","room":"r1"}';
    expect(await ask(c, byAction)).toEqual({ handler: "message", socket: "typed", text: byAction });
    expect(await ask(c, '{"type":"leave"}')).toEqual({ handler: "message", socket: "typed", text: '{"type":"leave"}' });
    c.close();
  });

  it("selects a socket's routes by its routeBy path, meta.type, as API Gateway's $request.body.meta.type", async () => {
    const c = await connect(app.url("nested"));
    expect(await ask(c, '{"meta":{"type":"join"},"room":"r2"}')).toEqual({
      handler: "join",
      socket: "nested",
      route: "join",
      room: "r2",
    });
    // White space, keys written with escapes, and other properties beside it still select it.
    expect(await ask(c, ' { "meta" : { "id" : 7, "\\u0074ype" : "join" } , "room" : "r3" }')).toMatchObject({
      handler: "join",
      room: "r3",
    });
    // The last of a duplicate key counts, as JSON.parse reads it.
    expect(await ask(c, '{"meta":{"type":"nope"},"meta":{"type":"join"}}')).toMatchObject({ handler: "join" });
    c.close();
  });

  it.each([
    ["the top-level property the path ends in", '{"type":"join"}'],
    ["the default action", '{"action":"join"}'],
    ["a path value that is not a string", '{"meta":{"type":true}}'],
    ["a path value that is an object", '{"meta":{"type":{"name":"join"}}}'],
    ["an array on the path", '{"meta":[{"type":"join"}]}'],
    ["a string on the path", '{"meta":"join"}'],
    ["a later duplicate that drops the path", '{"meta":{"type":"join"},"meta":{}}'],
    ["a dotted key, which is not a path", '{"meta.type":"join"}'],
    ["API Gateway's $connect route key", '{"meta":{"type":"$connect"}}'],
    ["API Gateway's $default route key", '{"meta":{"type":"$default"}}'],
    ["JSON that does not parse", '{"meta":{"type":"join"}'],
    ["a JSON array", '[{"meta":{"type":"join"}}]'],
  ])("gives a nested-routeBy socket %s as a message", async (_what, text) => {
    const c = await connect(app.url("nested"));
    expect(await ask(c, text)).toEqual({ handler: "message", socket: "nested", text });
    c.close();
  });

  // Last: on aws a service that declares another route deploys the emulated app again, which
  // closes every connection.
  it("follows a route a service adds while it runs", async () => {
    const file = join(app.dir, "services", "lobby.ts");
    appendFileSync(file, '\nwebsocket("game").route("wave", () => ({ handler: "wave", service: "lobby" }));\n');
    expect(readFileSync(file, "utf8")).toContain('route("wave"');
    // On aws the service declares something else: the app is deployed again from the new spec,
    // whose template has the route (so the emulator needs no routesChanged).
    if (provider === "aws")
      await app.waitFor(/services\/lobby\.ts changed what it declares: deploying the emulated app again/, 40_000);
    const deadline = Date.now() + 40_000;
    let reply: Record<string, unknown> | undefined;
    while (Date.now() < deadline) {
      try {
        const c = await connect(app.url("game"));
        reply = await ask(c, '{"action":"wave"}');
        c.close();
        if (reply.handler === "wave") break;
      } catch {
        // Redeploying: connect again.
      }
      await sleep(250);
    }
    expect(reply).toEqual({ handler: "wave", service: "lobby" });
  }, 60000);
});

describe("nitric-like spec and routes", () => {
  it("refuses a route two services handle, naming both", async () => {
    const route = (service: string) =>
      `import { websocket } from "@nitric-like/sdk";\nwebsocket("game").route("join", () => "${service}");\n`;
    const dir = writeProject({
      "nitric-like.yaml": "name: twice\nservices:\n  - match: services/*.ts\n",
      "services/game.ts": `import { websocket } from "@nitric-like/sdk";\nwebsocket("game").on("connect", () => {}).on("disconnect", () => {}).on("message", () => {});\n`,
      "services/alpha.ts": route("alpha"),
      "services/beta.ts": route("beta"),
    });
    const { code, stdout, stderr } = await runCli(["spec", dir, "--plain"], { timeoutMs: 60000 });
    expect(code, stdout).toBe(1);
    expect(stderr).toContain(
      'websocket game: the route "join" is handled by "alpha" and "beta"; a route has exactly one handler, so keep socket.route("join", ...) in one service',
    );
  }, 60000);

  it("refuses a socket two services give different routeBy properties, naming each", async () => {
    const declare = (routeBy: string) =>
      `import { websocket } from "@nitric-like/sdk";\nwebsocket("game", { routeBy: "${routeBy}" });\n`;
    const dir = writeProject({
      "nitric-like.yaml": "name: two-ways\nservices:\n  - match: services/*.ts\n",
      "services/game.ts": `import { websocket } from "@nitric-like/sdk";\nwebsocket("game").on("connect", () => {}).on("disconnect", () => {}).on("message", () => {});\n`,
      "services/alpha.ts": declare("type"),
      "services/beta.ts": declare("kind"),
    });
    const { code, stdout, stderr } = await runCli(["spec", dir, "--plain"], { timeoutMs: 60000 });
    expect(code, stdout).toBe(1);
    expect(stderr.match(/^error: /gm), stderr).toHaveLength(2); // the problem, then the summary
    expect(stderr).toContain(
      'websocket game: its routes are selected by "type" ("alpha") and "kind" ("beta"); a socket selects by one property or path, so give websocket("game", { routeBy }) the same value in every service that gives it',
    );
  }, 60000);
});
