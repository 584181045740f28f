// Limits as in production, from the project file: idle timeout, connection age, message size and
// handler timeout, each closing or failing with its reason; and stop() draining in-flight handlers.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ServerMessage } from "@nitric-like/contracts/websockets";
import { openFilesLimit } from "@nitric-like/provider-kit";
import { afterEach, describe, expect, it } from "vitest";
import {
  accept,
  cleanup,
  closed,
  declareSocket,
  handle,
  open,
  serviceClient,
  sleep,
  startProvider,
  urlOf,
} from "./helpers.js";
import { cleanupRaw, echoWorld, exchange, httpResponse, portOf, upgradeRequest } from "./raw.js";

const after: (() => void)[] = [];
afterEach(async () => {
  await cleanupRaw();
  for (const f of after.splice(0)) f();
});

describe("idle timeout and connection age", () => {
  it("closes a connection idle past the limit with 1001 and the reason, but not one that keeps talking", async () => {
    const world = await echoWorld({ limits: { idleTimeoutMs: 300 } });
    const idle = await open(world.url);
    const busy = await open(world.url);
    const idleClosed = closed(idle);
    const started = Date.now();
    let busyClosed = false;
    busy.once("close", () => {
      busyClosed = true;
    });
    const timer = setInterval(() => busy.send("still here"), 60);
    const got = await idleClosed;
    clearInterval(timer);
    expect(got).toEqual({
      code: 1001,
      reason: "idle timeout: no message for 300 ms; send a message or ping to keep it open",
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(busyClosed).toBe(false);
    expect(world.logs.warn.filter((l) => l.includes("idle timeout"))).toHaveLength(
      // The idle client and the bystander, once each.
      2,
    );
  });

  it("closes a connection at the age limit with 1001 and the reason, however busy it is", async () => {
    const { provider } = await startProvider({ limits: { maxConnectionAgeMs: 250 } });
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "s");
    await handle(client, "s", "connect", accept);
    await handle(client, "s", "message", () => ({}));
    const ws = await open(urlOf(provider, "s"));
    const done = closed(ws);
    const timer = setInterval(() => ws.send("busy"), 20);
    const got = await done;
    clearInterval(timer);
    expect(got).toEqual({
      code: 1001,
      reason: "connection age limit: open for 250 ms, the longest allowed; reconnect",
    });
  });
});

describe("limits from the project file", () => {
  it("applies the project's limits, a socket's own over them, and the handler timeout", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nitric-like-limits-"));
    after.push(() => rmSync(dir, { recursive: true, force: true }));
    const { provider, logs } = await startProvider({
      project: {
        name: "test",
        dir,
        file: join(dir, "nitric-like.yaml"),
        services: [],
        websockets: { small: { limits: { maxMessageBytes: 100 } } },
        limits: { maxMessageBytes: 1000, handlerTimeoutMs: 120 },
      },
    });
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "small");
    await declareSocket(client, "big");
    await handle(client, "small", "message", () => ({}));
    await handle(client, "big", "message", () => undefined);
    const small = await open(urlOf(provider, "small"));
    const smallClosed = closed(small);
    small.send("x".repeat(101));
    expect(await smallClosed).toEqual({ code: 1009, reason: "message too big: at most 100 bytes" });
    const big = await open(urlOf(provider, "big"));
    const bigClosed = closed(big);
    big.send("x".repeat(999));
    for (let i = 0; i < 100 && logs.error.length === 0; i++) await sleep(10);
    expect(logs.error[0]).toMatch(
      /^websocket "big": the message handler of service "svc" did not answer within 0\.12 s/,
    );
    big.send("x".repeat(1001));
    expect(await bigClosed).toEqual({ code: 1009, reason: "message too big: at most 1000 bytes" });
  });
});

describe("environments", () => {
  it("applies the limits of the environment it runs in, and the project's elsewhere", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nitric-like-limits-"));
    after.push(() => rmSync(dir, { recursive: true, force: true }));
    const project = {
      name: "test",
      dir,
      file: join(dir, "nitric-like.yaml"),
      services: [],
      websockets: {},
      limits: { maxMessageBytes: 200 },
      environments: { prod: { websockets: { s: { limits: { maxMessageBytes: 50 } } } } },
    };
    for (const [environment, limit] of [
      ["prod", 50],
      ["local", 200],
    ] as const) {
      const { provider } = await startProvider({ project, environment, dataDir: join(dir, environment) });
      const client = await serviceClient(provider, "svc");
      await declareSocket(client, "s");
      await handle(client, "s", "message", () => ({}));
      const ws = await open(urlOf(provider, "s"));
      const done = closed(ws);
      ws.send("x".repeat(limit + 1));
      expect(await done).toEqual({ code: 1009, reason: `message too big: at most ${limit} bytes` });
      await cleanup();
    }
  });
});

describe("graceful stop", () => {
  it("lets in-flight handlers answer and their replies reach the clients before closing with 1001", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "s");
    await handle(client, "s", "connect", accept);
    const stream = await handle(client, "s", "message", () => undefined);
    const ids: string[] = [];
    stream.call.on("data", (m: ServerMessage) => {
      if (m.content.case === "websocketEventRequest") ids.push(m.id);
    });
    const url = urlOf(provider, "s");
    const ws = await open(url);
    const order: string[] = [];
    ws.on("message", (d: Buffer) => order.push(`reply ${d.toString()}`));
    const done = closed(ws).then((c) => order.push(`close ${c.code} ${c.reason}`));
    ws.send("slow");
    for (let i = 0; i < 100 && ids.length === 0; i++) await sleep(10);
    const stopping = provider.stop();
    // While it drains, new clients are refused with 503 and told to come back.
    const refused = httpResponse(await exchange(portOf(url), upgradeRequest()));
    expect(refused.status).toBe(503);
    expect(refused.body).toBe('websocket "s": the server is shutting down; connect again once it is back');
    // The handler finishes 300 ms into the stop.
    await sleep(300);
    stream.call.write({
      id: ids[0] as string,
      content: {
        case: "websocketEventResponse",
        value: { replies: [{ data: new TextEncoder().encode("done"), binary: false }] },
      },
    });
    await stopping;
    await done;
    expect(order).toEqual(["reply done", "close 1001 server shutting down"]);
  });
});

describe("open files", () => {
  it("warns, naming the fix, when this process may keep fewer files open than a socket may have connections", async () => {
    // Linux tells the limit (/proc/self/limits); CI runs there.
    const limit = openFilesLimit();
    expect(limit).toBeGreaterThan(1000);
    const over = await echoWorld({ limits: { maxConnections: (limit as number) + 1 } });
    expect(over.logs.warn).toContain(
      `websocket "echo": this process may keep at most ${limit} files open (ulimit -n), fewer than the ${(limit as number) + 1} connections limits.maxConnections lets this socket hold and the files run needs; past it, new connections are dropped with no answer. Raise the limit (ulimit -n ${(limit as number) + 513}) or lower maxConnections`,
    );
    const within = await echoWorld({ limits: { maxConnections: (limit as number) - 1000 } });
    expect(within.logs.warn.filter((l) => l.includes("files open"))).toEqual([]);
  });
});
