// A $connect that reaches its function late (a cold start, an invocation that waited for an
// execution environment): API Gateway's 29 s integration timeout runs from the request, so a
// connect handler answering within its own timeout can still answer after API Gateway has refused
// the client (504) and opened no connection, with no $disconnect to follow. The runtime refuses it
// itself once API Gateway's time is up, and runs the disconnect handler for it once it has ended
// accepting, so what it stored is cleaned up. A service on our SDK, bundled as a build bundles it
// and loaded as Lambda loads it, given API Gateway events.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { bundleFunction } from "../src/build/bundle.js";
import type { WebsocketApiEvent } from "../src/runtime/events.js";
import type { LambdaHandler } from "../src/runtime/handler.js";
import { cleanup, createTable, ENV, expectSigned, loopback, sdkDynamo, startDynalite } from "./helpers.js";

const out = mkdtempSync(join(tmpdir(), "nitric-like-aws-late-connect-"));
afterAll(async () => {
  rmSync(out, { recursive: true, force: true });
  await cleanup();
});

/**
 * The service: a connect handler that takes `hold` ms then "stores" its connection, a disconnect
 * handler that takes 800 ms, and a message handler that takes as many ms as the message says.
 */
const SERVICE = `import { websocket } from "@nitric-like/sdk";
const chat = websocket("chat");
chat.on("connect", async (ctx) => {
  await new Promise((resolve) => setTimeout(resolve, Number(ctx.query.hold?.[0] ?? 0)));
  console.log("stored " + ctx.connectionId);
});
chat.on("disconnect", async (ctx) => {
  await new Promise((resolve) => setTimeout(resolve, 800));
  console.log("disconnect " + ctx.connectionId + " " + ctx.code + " " + ctx.reason);
});
chat.on("message", async (ctx) => {
  await new Promise((resolve) => setTimeout(resolve, Number(ctx.text())));
  return "ok";
});
`;

const API_ID = "api1";

function connectEvent(connectionId: string, hold: number, requestTimeEpoch: number): WebsocketApiEvent {
  return {
    requestContext: {
      routeKey: "$connect",
      eventType: "CONNECT",
      connectionId,
      apiId: API_ID,
      stage: "live",
      requestTimeEpoch,
    },
    queryStringParameters: { hold: String(hold) },
    multiValueQueryStringParameters: { hold: [String(hold)] },
    isBase64Encoded: false,
  };
}

describe("a function whose $connect arrives late", () => {
  let handler: LambdaHandler;
  const lines: string[] = [];

  beforeAll(async () => {
    const project = join(out, "project");
    mkdirSync(join(project, "services"), { recursive: true });
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "late", private: true }));
    writeFileSync(join(project, "services", "app.ts"), SERVICE);
    // Our SDK, as an example project has it installed.
    const modules = fileURLToPath(new URL("../../../examples/chat/node_modules", import.meta.url));
    symlinkSync(modules, join(project, "node_modules"), "dir");
    const bundle = await bundleFunction(
      project,
      { name: "app", file: "services/app.ts", path: join(project, "services", "app.ts") },
      out,
    );
    // The connections table, on dynalite: a connection that opened has its record there.
    const dynamodb = await startDynalite();
    await createTable(sdkDynamo(dynamodb), "connections", "socket", "id");
    Object.assign(process.env, ENV, {
      AWS_ENDPOINT_URL_DYNAMODB: dynamodb,
      NITRIC_LIKE_CONNECTIONS_TABLE: "connections",
      NITRIC_LIKE_SERVICE: "app",
      NITRIC_LIKE_HANDLER_TIMEOUT_MS: "5000",
      NITRIC_LIKE_WEBSOCKETS: JSON.stringify({
        chat: {
          apiId: API_ID,
          url: `wss://${API_ID}.execute-api.eu-west-1.amazonaws.com/live`,
          endpoint: `https://${API_ID}.execute-api.eu-west-1.amazonaws.com/live`,
          events: ["connect", "disconnect", "message"],
          routes: [],
        },
      }),
      NITRIC_LIKE_KV_TABLES: "{}",
    });
    for (const stream of ["log", "warn", "error"] as const)
      vi.spyOn(console, stream).mockImplementation((line: unknown) => {
        lines.push(String(line));
      });
    handler = (createRequire(import.meta.url)(bundle.file) as { handler: LambdaHandler }).handler;
    await handler.ready;
  }, 60000);

  it("refuses a connect whose handler answers after API Gateway's integration timeout, however long its own, and runs the disconnect handler for it once it has ended", async () => {
    // API Gateway has waited 27.5 s already: 0.5 s is left for the answer, under the 1 s margin.
    const answer = await handler(connectEvent("LateConn1aaaa=", 1500, Date.now() - 27_500));
    expect(answer).toMatchObject({ statusCode: 504 });
    expect((answer as { body: string }).body).toContain(
      `the connect handler of service "app" did not answer before API Gateway's integration timeout (29 s from the request`,
    );
    const mine = lines.filter((l) => l.includes("LateConn1aaaa="));
    expect(mine.filter((l) => !l.startsWith("nitric-like:"))).toEqual([
      "stored LateConn1aaaa=",
      "disconnect LateConn1aaaa= 1006 connect handler answered after API Gateway's integration timeout; its client was refused with 504",
    ]);
    // One that reaches the function in time connects, as ever.
    expect(await handler(connectEvent("InTime1aaaaaa=", 100, Date.now()))).toEqual({ statusCode: 200 });
    expect(lines.filter((l) => l.includes("InTime1aaaaaa="))).toEqual(["stored InTime1aaaaaa="]);
  }, 30000);

  it("answers a connect past its timeout at once when the invocation has no time left to wait, and the event during which that handler ends answers only once its disconnect has run", async () => {
    // 6 s left: the handler timeout (5 s) and the second a disconnect needs leave nothing to wait.
    const started = Date.now();
    const refused = await handler(connectEvent("Frozen1aaaaaa=", 6000, Date.now()), {
      getRemainingTimeInMillis: () => 6000 - (Date.now() - started),
    });
    expect(refused).toMatchObject({ statusCode: 504 });
    expect(lines.filter((l) => l.includes("Frozen1aaaaaa=") && !l.startsWith("nitric-like:"))).toEqual([]);
    // Lambda would freeze the handler here; the next event thaws it, and it ends (at 6 s) during
    // this message (1.5 s from about 5 s): the message's answer waits for its disconnect (800 ms).
    const message: WebsocketApiEvent = {
      requestContext: {
        routeKey: "$default",
        eventType: "MESSAGE",
        connectionId: "Other1aaaaaaa=",
        apiId: API_ID,
        stage: "live",
        requestTimeEpoch: Date.now(),
      },
      body: "1500",
      isBase64Encoded: false,
    };
    expect(await handler(message)).toEqual({ statusCode: 200, body: "ok" });
    expect(lines.filter((l) => l.includes("Frozen1aaaaaa=") && !l.startsWith("nitric-like:"))).toEqual([
      "stored Frozen1aaaaaa=",
      "disconnect Frozen1aaaaaa= 1006 connect handler answered after the handler timeout (5 s); its client was refused with 504",
    ]);
  }, 30000);

  it("runs the disconnect handler for a late disconnect another function hands it, and refuses one that is not exactly that, as hostile input", async () => {
    const reason = "connect handler answered after the handler timeout (5 s); its client was refused with 504";
    const good = { nitricLike: "late-disconnect", socket: "chat", connectionId: "Handed1aaaaaa=", reason };
    expect(await handler({ ...good, state: '{"tag":"a"}' })).toBeUndefined();
    expect(lines.filter((l) => l.includes("Handed1aaaaaa="))).toEqual([`disconnect Handed1aaaaaa= 1006 ${reason}`]);
    const forged: [unknown, string][] = [
      // Made into a connect (or a message), it would run another handler: it is a late disconnect or nothing.
      [
        {
          ...good,
          connectionId: "Forged1aaaaaa=",
          requestContext: { routeKey: "$connect", connectionId: "Forged1aaaaaa=" },
        },
        'it has "requestContext", which it may not',
      ],
      [
        { ...good, connectionId: "Forged2aaaaaa=", socket: "other" },
        'it names socket "other", whose disconnect this function does not handle',
      ],
      [
        { ...good, connectionId: "Forged3aaaaaa=", reason: "anything at all" },
        "its reason is not one the runtime gives a late connect's disconnect",
      ],
      [{ ...good, connectionId: "Forged4aaaaaa=", state: "{not json" }, "its state: a connection's state must be JSON"],
      [{ ...good, connectionId: "Forged5aaaaaa=", state: JSON.stringify("x".repeat(17_000)) }, "at most 16384 bytes"],
      [{ ...good, connectionId: "Forged6aaaaaa=", auth: 42 }, "its auth is not an identity (JSON text)"],
      [{ ...good, connectionId: "" }, "its connectionId is not a connection id"],
      [{ ...good, connectionId: "Forged7aaaaaa=", code: 1000 }, 'it has "code", which it may not'],
      // A log line shows at most 3 of the names a forged event brings, each cut to 64 characters
      // with its length said (as provider-kit's shownId shows a connection id).
      [
        { ...good, connectionId: "Forged8aaaaaa=", ["k".repeat(5000)]: 1, a: 1, b: 1, c: 1, d: 1 },
        `it has "${"k".repeat(64)}"... (5000 characters), "a", "b" and 2 more, which it may not`,
      ],
      [{ ...good, socket: "s".repeat(5000) }, `it names socket "${"s".repeat(64)}"... (5000 characters), whose`],
    ];
    // A connection that opened (its record is in the connections table) gets its disconnect from
    // API Gateway: one handed over for it is forged, and would clean up a live connection.
    expect(await handler(connectEvent("Opened1aaaaaa=", 0, Date.now()))).toEqual({ statusCode: 200 });
    forged.push([{ ...good, connectionId: "Opened1aaaaaa=" }, 'connection Opened1aaaaaa= of websocket "chat" is open']);
    for (const [event, why] of forged) {
      const before = lines.length;
      expect(await handler(event)).toBeUndefined();
      const said = lines.slice(before);
      expect(said.filter((l) => !l.startsWith("nitric-like:"))).toEqual([]);
      expect(said).toEqual([expect.stringContaining(why)]);
      expect(said[0]).toMatch(/^nitric-like: error: service "app": refused a late disconnect event/);
    }
  }, 30000);
});

/** A service that handles connect but not disconnect: another service's function does, or none. */
const CONNECT_ONLY = `import { websocket } from "@nitric-like/sdk";
const chat = websocket("chat");
chat.on("connect", async (ctx) => {
  await new Promise((resolve) => setTimeout(resolve, Number(ctx.query.hold?.[0] ?? 0)));
  console.log("stored " + ctx.connectionId);
});
`;

describe("a function whose late connect handler's socket has no disconnect handler", () => {
  let handler: LambdaHandler;
  const lines: string[] = [];

  beforeAll(async () => {
    const project = join(out, "split");
    mkdirSync(join(project, "services"), { recursive: true });
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "split", private: true }));
    writeFileSync(join(project, "services", "gate.ts"), CONNECT_ONLY);
    const modules = fileURLToPath(new URL("../../../examples/chat/node_modules", import.meta.url));
    symlinkSync(modules, join(project, "node_modules"), "dir");
    const bundle = await bundleFunction(
      project,
      { name: "gate", file: "services/gate.ts", path: join(project, "services", "gate.ts") },
      join(out, "split-out"),
    );
    // The bindings of a function serving only the socket's connect event, named no function for
    // its disconnect: the template names one whenever another service handles it.
    Object.assign(process.env, ENV, {
      NITRIC_LIKE_SERVICE: "gate",
      NITRIC_LIKE_HANDLER_TIMEOUT_MS: "5000",
      NITRIC_LIKE_WEBSOCKETS: JSON.stringify({
        chat: {
          apiId: API_ID,
          url: `wss://${API_ID}.execute-api.eu-west-1.amazonaws.com/live`,
          endpoint: `https://${API_ID}.execute-api.eu-west-1.amazonaws.com/live`,
          events: ["connect"],
          routes: [],
        },
      }),
      NITRIC_LIKE_KV_TABLES: "{}",
    });
    for (const stream of ["log", "warn", "error"] as const)
      vi.spyOn(console, stream).mockImplementation((line: unknown) => {
        lines.push(String(line));
      });
    handler = (createRequire(import.meta.url)(bundle.file) as { handler: LambdaHandler }).handler;
    await handler.ready;
  }, 60000);

  it("refuses it and, named no function that runs its disconnect, runs none and warns of nothing, as locally", async () => {
    const answer = await handler(connectEvent("Split1aaaaaaa=", 1500, Date.now() - 27_500));
    expect(answer).toMatchObject({ statusCode: 504 });
    const mine = lines.filter((l) => l.includes("Split1aaaaaaa="));
    expect(mine[0]).toContain("did not answer before API Gateway's integration timeout");
    expect(mine.slice(1)).toEqual(["stored Split1aaaaaaa="]);
    expect(lines.filter((l) => l.includes("warning: websocket"))).toEqual([]);
  }, 30000);
});

describe("a function whose late connect handler's disconnect handler is another service's function, named to it", () => {
  let handler: LambdaHandler;
  const lines: string[] = [];
  /** Lambda's Invoke API: 429 (throttled, nothing queued) for the first of each connection, then 202; 500 for "Broken". */
  let lambda: Awaited<ReturnType<typeof loopback>>;

  beforeAll(async () => {
    const seen = new Set<string>();
    lambda = await loopback((request) => {
      const id = String((JSON.parse(request.body.toString("utf8")) as { connectionId?: unknown }).connectionId);
      if (id.startsWith("Broken")) return { status: 500, body: JSON.stringify({ message: "internal" }) };
      if (!seen.has(id)) {
        seen.add(id);
        return {
          status: 429,
          headers: { "x-amzn-errortype": "TooManyRequestsException" },
          body: JSON.stringify({ message: "Rate Exceeded." }),
        };
      }
      return { status: 202 };
    });
    const project = join(out, "handover");
    mkdirSync(join(project, "services"), { recursive: true });
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "handover", private: true }));
    writeFileSync(
      join(project, "services", "gate.ts"),
      CONNECT_ONLY.replace(
        'console.log("stored " + ctx.connectionId);',
        'console.log("stored " + ctx.connectionId);\n  await chat.setState(ctx.connectionId, { tag: "t" });',
      ),
    );
    const modules = fileURLToPath(new URL("../../../examples/chat/node_modules", import.meta.url));
    symlinkSync(modules, join(project, "node_modules"), "dir");
    const bundle = await bundleFunction(
      project,
      { name: "gate", file: "services/gate.ts", path: join(project, "services", "gate.ts") },
      join(out, "handover-out"),
    );
    Object.assign(process.env, ENV, {
      AWS_ENDPOINT_URL_LAMBDA: lambda.url,
      NITRIC_LIKE_SERVICE: "gate",
      NITRIC_LIKE_HANDLER_TIMEOUT_MS: "5000",
      NITRIC_LIKE_WEBSOCKETS: JSON.stringify({
        chat: {
          apiId: API_ID,
          url: `wss://${API_ID}.execute-api.eu-west-1.amazonaws.com/live`,
          endpoint: `https://${API_ID}.execute-api.eu-west-1.amazonaws.com/live`,
          events: ["connect"],
          routes: [],
          disconnect: "handover-KeeperFunction-AbC123",
        },
      }),
      NITRIC_LIKE_KV_TABLES: "{}",
    });
    for (const stream of ["log", "warn", "error"] as const)
      vi.spyOn(console, stream).mockImplementation((line: unknown) => {
        lines.push(String(line));
      });
    handler = (createRequire(import.meta.url)(bundle.file) as { handler: LambdaHandler }).handler;
    await handler.ready;
  }, 60000);

  it("hands the disconnect to that function asynchronously before it answers, trying again only while Lambda throttles", async () => {
    const answer = await handler(connectEvent("Handover1aaaa=", 1500, Date.now() - 27_500));
    expect(answer).toMatchObject({ statusCode: 504 });
    const invokes = lambda.requests.filter((r) => r.body.toString("utf8").includes("Handover1aaaa="));
    expect(invokes).toHaveLength(2);
    for (const r of invokes) {
      expect(r.method).toBe("POST");
      expect(r.path).toBe("/2015-03-31/functions/handover-KeeperFunction-AbC123/invocations");
      expect(r.headers["x-amz-invocation-type"]).toBe("Event");
      expectSigned(r, "lambda");
      expect(JSON.parse(r.body.toString("utf8"))).toEqual({
        nitricLike: "late-disconnect",
        socket: "chat",
        connectionId: "Handover1aaaa=",
        reason: "connect handler answered after API Gateway's integration timeout; its client was refused with 504",
        state: '{"tag":"t"}',
      });
    }
    expect(lines.filter((l) => l.includes("Handover1aaaa=") && l.includes("warning: websocket"))).toEqual([]);
    // An Invoke that may have been queued (500) is not sent again: the disconnect must not run twice.
    await handler(connectEvent("Broken1aaaaaa=", 1500, Date.now() - 27_500));
    expect(lambda.requests.filter((r) => r.body.toString("utf8").includes("Broken1aaaaaa="))).toHaveLength(1);
    expect(lines.filter((l) => l.includes("Broken1aaaaaa=")).at(-1)).toMatch(
      /^nitric-like: error: websocket "chat": could not hand the disconnect of connection Broken1aaaaaa= .* to function handover-KeeperFunction-AbC123, which runs the socket's disconnect handler: .*500.*; what connect stored for it is not cleaned up$/,
    );
  }, 30000);
});
