// Message routes in a function: a service on our SDK, bundled as a build bundles it and loaded as
// Lambda loads it, handles API Gateway events whose routeKey is a route (API Gateway selected it
// by the message's action) with that route's handler, `$default` with the message handler; its
// init waits for the route handlers the bindings name; a route it has no handler for fails as an
// unhandled message does, naming the route.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { bundleFunction } from "../src/build/bundle.js";
import type { WebsocketApiEvent } from "../src/runtime/events.js";
import type { LambdaHandler } from "../src/runtime/handler.js";
import { ENV } from "./helpers.js";

const out = mkdtempSync(join(tmpdir(), "nitric-like-aws-routes-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

/**
 * The service: a message handler, routes join and fail, and route late, registered after a
 * top-level await of 300 ms (still during load: a timer's registration, after load, is refused).
 */
const SERVICE = `import { websocket } from "@nitric-like/sdk";
const chat = websocket("chat");
chat.on("message", (ctx) => {
  if (ctx.text() === "fail") throw new Error("the message handler failed on purpose");
  return "message: " + ctx.text();
});
chat.route("join", (ctx) => ({ joined: ctx.json().room, connection: ctx.connectionId }));
chat.route("fail", () => {
  throw new Error("the join handler failed on purpose");
});
await new Promise((resolve) => setTimeout(resolve, 300));
chat.route("late", () => "late");
`;

const API_ID = "api1";

function event(routeKey: string, body: string): WebsocketApiEvent {
  return {
    requestContext: {
      routeKey,
      eventType: "MESSAGE",
      connectionId: "L0SM9cOFvHcCIhw=",
      apiId: API_ID,
      stage: "live",
      requestTimeEpoch: Date.now(),
    },
    body,
    isBase64Encoded: false,
  };
}

describe("a function serving message routes", () => {
  let handler: LambdaHandler;
  let readyAfterMs = 0;
  const errors: string[] = [];

  beforeAll(async () => {
    const project = join(out, "project");
    mkdirSync(join(project, "services"), { recursive: true });
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "routes", private: true }));
    writeFileSync(join(project, "services", "app.ts"), SERVICE);
    // Our SDK, as an example project has it installed.
    const modules = fileURLToPath(new URL("../../../examples/chat/node_modules", import.meta.url));
    symlinkSync(modules, join(project, "node_modules"), "dir");
    const bundle = await bundleFunction(
      project,
      { name: "app", file: "services/app.ts", path: join(project, "services", "app.ts") },
      out,
    );
    // The bindings the template gives a function serving the message handler and three routes.
    Object.assign(process.env, ENV, {
      NITRIC_LIKE_SERVICE: "app",
      NITRIC_LIKE_WEBSOCKETS: JSON.stringify({
        chat: {
          apiId: API_ID,
          url: `wss://${API_ID}.execute-api.eu-west-1.amazonaws.com/live`,
          endpoint: `https://${API_ID}.execute-api.eu-west-1.amazonaws.com/live`,
          events: ["message"],
          routes: ["fail", "join", "late"],
        },
      }),
      NITRIC_LIKE_KV_TABLES: "{}",
    });
    vi.spyOn(console, "error").mockImplementation((line: unknown) => {
      errors.push(String(line));
    });
    vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    const started = Date.now();
    // Loaded as Lambda loads it: an import of the bundle (ES module, for its top-level await), its
    // own SDK and runtime inside.
    expect(bundle.file.endsWith(".mjs")).toBe(true);
    handler = ((await import(pathToFileURL(bundle.file).href)) as { handler: LambdaHandler }).handler;
    await handler.ready;
    readyAfterMs = Date.now() - started;
  }, 60000);

  it("finishes its init once every route the bindings name is registered, the late one too", async () => {
    expect(readyAfterMs).toBeGreaterThanOrEqual(290);
    expect(await handler(event("late", '{"action":"late"}'))).toEqual({ statusCode: 200, body: "late" });
  });

  it("gives an event whose routeKey is a route to that route's handler, its reply on the route response", async () => {
    const answer = await handler(event("join", '{"action":"join","room":"lobby"}'));
    expect(answer).toEqual({
      statusCode: 200,
      body: JSON.stringify({ joined: "lobby", connection: "L0SM9cOFvHcCIhw=" }),
    });
  });

  it("gives $default to the message handler, whatever the body says (API Gateway selected the route)", async () => {
    expect(await handler(event("$default", '{"action":"join"}'))).toEqual({
      statusCode: 200,
      body: 'message: {"action":"join"}',
    });
    expect(await handler(event("$default", "hello"))).toEqual({ statusCode: 200, body: "message: hello" });
  });

  it("answers a route whose handler throws as a message handler that throws", async () => {
    const route = await handler(event("fail", '{"action":"fail"}'));
    const message = await handler(event("$default", "fail"));
    expect(route).toEqual(message);
    expect(route).toEqual({ statusCode: 200 });
  });

  it("fails a route it has no handler for as an unhandled message fails, naming the route and the fix", async () => {
    errors.length = 0;
    expect(await handler(event("leave", '{"action":"leave"}'))).toEqual({ statusCode: 500 });
    expect(errors).toEqual([
      'nitric-like: error: websocket "chat": no service handles route "leave"; add socket.route("leave", ...)',
    ]);
  });
});
