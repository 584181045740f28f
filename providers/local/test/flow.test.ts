// Flow control against hostile or slow clients, on real gateways with real clients: inbound
// backpressure (a client whose messages wait for a busy handler is no longer read, per connection
// and over all of them), the shared cap on bytes queued for clients that do not read, slowloris
// connections (counted from accept, ended by the upgrade timeout, logged once per burst), and the
// rate limit's close arriving after the replies it says were handled.
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  type ClientMessageSchema,
  type ServerMessage,
  Websocket,
  type WebsocketEventRequest,
  WebsocketEventType,
  WebsocketHandler,
} from "@nitric-like/contracts/websockets";
import type { Client } from "@nitric-like/rpc";
import type { AppLimits, Spec } from "@nitric-like/spec";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { accept, closed, declareSocket, handle, open, serviceClient, sleep, startProvider, urlOf } from "./helpers.js";
import {
  cleanupRaw,
  echoWorld,
  exchange,
  httpResponse,
  portOf,
  rateLimitHandled,
  rawWs,
  sendOrClosed,
  stillUpAndOthersFine,
  tcp,
  upgradeRequest,
} from "./raw.js";

afterEach(cleanupRaw);

/** A message handler that answers nothing until told: what it holds, and a way to answer it all (echoing). */
async function heldHandler(client: Client, socket: string) {
  const call = client.bidi(WebsocketHandler.method.handleEvents);
  call.on("error", () => {});
  const held: { id: string; request: WebsocketEventRequest }[] = [];
  const received: WebsocketEventRequest[] = [];
  let holding = true;
  const answer = (id: string, request: WebsocketEventRequest) => {
    const m = request.websocketEvent.case === "message" ? request.websocketEvent.value : undefined;
    const message: MessageInitShape<typeof ClientMessageSchema> = {
      id,
      content: {
        case: "websocketEventResponse",
        value: { replies: m ? [{ data: m.body, binary: m.binary ?? false }] : [] },
      },
    };
    call.write(message);
  };
  await new Promise<void>((resolve) => {
    call.on("data", (message: ServerMessage) => {
      if (message.content.case === "registrationResponse") resolve();
      if (message.content.case !== "websocketEventRequest") return;
      received.push(message.content.value);
      if (holding) held.push({ id: message.id, request: message.content.value });
      else answer(message.id, message.content.value);
    });
    call.write({
      id: "",
      content: { case: "registrationRequest", value: { socketName: socket, eventType: WebsocketEventType.Message } },
    });
  });
  return {
    received,
    /** Answers everything held, and everything after at once. */
    release: () => {
      holding = false;
      for (const h of held.splice(0)) answer(h.id, h.request);
    },
    end: () => call.end(),
  };
}

/** A provider with socket "s": connects accepted, messages held by a handler that answers when released. */
async function heldWorld(limits: Partial<AppLimits>, handlerTimeoutMs?: number) {
  const { provider, logs } = await startProvider({ limits, ...(handlerTimeoutMs ? { handlerTimeoutMs } : {}) });
  const client = await serviceClient(provider, "svc");
  await declareSocket(client, "s");
  await handle(client, "s", "connect", accept);
  const handler = await heldHandler(client, "s");
  return { provider, logs, client, handler, url: urlOf(provider, "s") };
}

/** Resolves once `ws` got `n` messages, with them (or fails after 10 s). */
function collect(ws: WebSocket, n: number): Promise<string[]> {
  const got: string[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`got ${got.length} of ${n} messages`)), 10_000);
    ws.on("message", (d: Buffer) => {
      got.push(d.toString("latin1", 0, 12));
      if (got.length === n) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

/** A 32 KB text message whose first 12 characters name it. */
const big = (tag: string, i: number) =>
  `${tag}${String(i).padStart(12 - tag.length, "0")}${"x".repeat(32 * 1024 - 12)}`;

describe("inbound backpressure", () => {
  it("stops reading a connection once maxPendingBytes wait for its handler, and loses nothing when it answers", async () => {
    const world = await heldWorld({ maxPendingBytes: 96 * 1024 });
    const ws = await open(world.url);
    const all = collect(ws, 600);
    // 600 x 32 KB = 19.2 MB at a handler that answers nothing: more than TCP's buffers on loopback hold.
    for (let i = 0; i < 600; i++) ws.send(big("a", i));
    await sleep(400);
    const early = world.handler.received.length;
    await sleep(400);
    // The bound (3 messages), plus what one read of the socket already held when it was paused.
    expect(early).toBeGreaterThanOrEqual(3);
    expect(early).toBeLessThanOrEqual(8);
    expect(world.handler.received.length).toBe(early);
    // The rest waits on the client's side of TCP: not read, so not held by the provider.
    expect(ws.bufferedAmount).toBeGreaterThan(0);
    world.handler.release();
    const got = await all;
    expect(got).toEqual(Array.from({ length: 600 }, (_, i) => `a${String(i).padStart(11, "0")}`));
    expect(ws.readyState).toBe(1);
  });

  it("stops reading a connection once maxPendingMessages wait for its handler", async () => {
    const world = await heldWorld({ maxPendingMessages: 4 });
    const ws = await open(world.url);
    const all = collect(ws, 300);
    for (let i = 0; i < 300; i++) ws.send(big("m", i));
    await sleep(500);
    expect(world.handler.received.length).toBeGreaterThanOrEqual(4);
    expect(world.handler.received.length).toBeLessThanOrEqual(8);
    world.handler.release();
    expect(await all).toHaveLength(300);
  });

  it("stops reading every connection that sends once maxPendingBytesTotal wait, over all of them, and reads them all again", async () => {
    const world = await heldWorld({ maxPendingBytes: 8 * 1024 * 1024, maxPendingBytesTotal: 128 * 1024 });
    const a = await open(world.url);
    const b = await open(world.url);
    const allA = collect(a, 200);
    const allB = collect(b, 200);
    for (let i = 0; i < 200; i++) {
      a.send(big("a", i));
      b.send(big("b", i));
    }
    await sleep(600);
    const held = world.handler.received.length;
    // 128 KB is 4 messages; each connection may add what one read held when it was paused.
    expect(held).toBeGreaterThanOrEqual(4);
    expect(held).toBeLessThanOrEqual(12);
    world.handler.release();
    const [gotA, gotB] = await Promise.all([allA, allB]);
    expect(gotA).toEqual(Array.from({ length: 200 }, (_, i) => `a${String(i).padStart(11, "0")}`));
    expect(gotB).toEqual(Array.from({ length: 200 }, (_, i) => `b${String(i).padStart(11, "0")}`));
  });

  it("does not count a connection it stopped reading as idle", async () => {
    const world = await heldWorld({ maxPendingMessages: 1, idleTimeoutMs: 300 });
    const ws = await open(world.url);
    const all = collect(ws, 3);
    for (let i = 0; i < 3; i++) ws.send(`m${i}`);
    // Well past the idle timeout, with the client's messages unread behind the held one.
    await sleep(800);
    expect(ws.readyState).toBe(1);
    world.handler.release();
    expect(await all).toEqual(["m0", "m1", "m2"]);
  });

  it("logs a handler that times out on a flood once per burst, not once per message", async () => {
    const world = await heldWorld({ maxPendingMessages: 20 }, 200);
    const ws = await open(world.url);
    for (let i = 0; i < 60; i++) ws.send(`m${i}`);
    // Every message times out (three rounds of 20, each read once the last round timed out).
    for (let i = 0; i < 300 && world.handler.received.length < 60; i++) await sleep(10);
    await sleep(400);
    expect(world.handler.received).toHaveLength(60);
    const lines = world.logs.error.filter((l) => l.includes("did not answer within 0.2 s"));
    expect(lines).toHaveLength(1);
    expect(ws.readyState).toBe(1);
  });
});

describe("outbound cap over all clients", () => {
  it("closes the client with the most waiting once maxQueuedBytesTotal wait for clients that do not read", async () => {
    const world = await echoWorld({ limits: { maxQueuedBytesTotal: 6 * 1024 * 1024 } });
    const stalledA = await rawWs(world.url);
    const stalledB = await rawWs(world.url);
    stalledA.socket.pause();
    stalledB.socket.pause();
    for (let i = 0; i < 100 && world.connects.events.length < 3; i++) await sleep(10);
    const ids = world.connects.events.slice(1, 3).map((e) => e.connectionId);
    const chunk = new Uint8Array(256 * 1024);
    const refused = new Set<string>();
    // Round robin: neither reaches its own 8 MB before both together pass 6 MB past what TCP holds.
    for (let i = 0; i < 400 && refused.size === 0; i++) {
      const id = ids[i % 2] as string;
      if (!(await sendOrClosed(world.client, "echo", id, chunk))) refused.add(id);
    }
    expect(refused.size).toBe(1);
    const warn = world.logs.warn.join("\n");
    expect(warn).toMatch(
      /closed connection [\w-]{12} \(1008\): client not reading: [\d.]+ MB waiting, the most of any client, with over 6 MB waiting for all; read what you are sent/,
    );
    expect(warn).not.toMatch(/over 8 MB waiting to be sent to it/);
    // The other stalled client is still open; the bystander, which reads, never noticed.
    for (let i = 0; i < 200 && world.provider.connectionCount("echo") > 2; i++) await sleep(10);
    expect(world.provider.connectionCount("echo")).toBe(2);
    await stillUpAndOthersFine(world);
  });
});

describe("slowloris", () => {
  const partial = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n";

  it("counts a connection against maxConnections from its first byte, so half-sent upgrades cannot crowd out the limit unseen", async () => {
    const world = await echoWorld({ limits: { maxConnections: 3, upgradeTimeoutMs: 5000 } });
    const port = portOf(world.url);
    const slow = [await tcp(port), await tcp(port)];
    for (const s of slow) {
      s.on("error", () => {});
      s.write(partial);
    }
    await sleep(100);
    // The bystander and two half-sent requests: 3, the most allowed.
    const refused = await new Promise<string>((resolve) => {
      void tcp(port).then((s) => {
        let got = "";
        s.on("data", (d: Buffer) => {
          got += d.toString("latin1");
        });
        s.on("close", () => resolve(got));
        s.write(upgradeRequest());
      });
    });
    const r = httpResponse(refused);
    expect(r.status).toBe(429);
    expect(r.body).toBe(
      'websocket "echo": 3 connections are open, the most allowed (limits.maxConnections); try again later',
    );
    expect(world.logs.warn.filter((l) => l.includes("refused a connection with 429"))).toHaveLength(1);
    // One leaves: room again.
    slow[0]?.destroy();
    await sleep(100);
    const fresh = await open(world.url);
    fresh.close();
  });

  it("gives an open connection's place under maxConnections back however it ends: client close, dropped TCP, server close", async () => {
    const world = await echoWorld({ limits: { maxConnections: 2 } });
    const port = portOf(world.url);
    const refusedNow = async () => httpResponse(await exchange(port, upgradeRequest())).status === 429;
    const ends: ((ws: WebSocket) => void)[] = [
      (ws) => ws.close(),
      (ws) => ws.terminate(),
      (ws) => ws.close(),
      (ws) => ws.terminate(),
    ];
    // The bystander the world opened and one more: full.
    let last = await open(world.url);
    for (const end of ends) {
      expect(await refusedNow()).toBe(true);
      const gone = closed(last);
      end(last);
      await gone;
      await sleep(50);
      last = await open(world.url);
    }
    expect(await refusedNow()).toBe(true);
    // Closed by the server (its service's CloseConnection): room again too.
    const connectionId = world.connects.events.at(-1)?.connectionId ?? "";
    const gone = closed(last);
    await world.client.unary(Websocket.method.closeConnection, { socketName: "echo", connectionId });
    await gone;
    await sleep(50);
    (await open(world.url)).close();
  });

  it("ends a connection that does not finish its upgrade request within upgradeTimeout with 408, logged once per burst, even one that trickles bytes", async () => {
    const world = await echoWorld({ limits: { maxConnections: 4, upgradeTimeoutMs: 300 } });
    const port = portOf(world.url);
    const started = Date.now();
    const ends = await Promise.all(
      Array.from({ length: 3 }, async (_, n) => {
        const s = await tcp(port);
        s.on("error", () => {});
        let got = "";
        s.on("data", (d: Buffer) => {
          got += d.toString("latin1");
        });
        // The third trickles a byte every 50 ms: it is still cut at the deadline, counted from accept.
        let at = 0;
        const trickle =
          n === 2
            ? setInterval(() => {
                if (!s.destroyed && at < partial.length) s.write(partial[at++] as string);
              }, 50)
            : undefined;
        if (n < 2) s.write(partial);
        await new Promise((resolve) => s.on("close", resolve));
        clearInterval(trickle);
        return { response: httpResponse(got), after: Date.now() - started };
      }),
    );
    for (const end of ends) {
      expect(end.response.status).toBe(408);
      expect(end.response.body).toBe(
        'websocket "echo": the upgrade request did not arrive within 300 ms (limits.upgradeTimeout); send the whole request at once',
      );
      expect(end.after).toBeGreaterThanOrEqual(250);
      expect(end.after).toBeLessThan(2500);
    }
    expect(world.logs.warn.filter((l) => l.includes("refused a connection with 408"))).toHaveLength(1);
    // The bystander, connected long before, is not timed: upgraded connections are not.
    await stillUpAndOthersFine(world);
  });

  it("lets a plain HTTP request be answered (426), then ends its idle connection at the timeout without a log line", async () => {
    const world = await echoWorld({ limits: { upgradeTimeoutMs: 300 } });
    const s = await tcp(portOf(world.url));
    let got = "";
    s.on("data", (d: Buffer) => {
      got += d.toString("latin1");
    });
    s.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    await new Promise((resolve) => s.on("close", resolve));
    expect(httpResponse(got).status).toBe(426);
    expect(world.logs.warn.filter((l) => l.includes("408"))).toHaveLength(0);
  });
});

describe("the rate limit's close", () => {
  it("arrives after the replies to every message it says was handled", async () => {
    const { provider, logs } = await startProvider({ limits: { messagesPerSecond: 10, messageBurst: 5 } });
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "s");
    await handle(client, "s", "connect", accept);
    const handler = await heldHandler(client, "s");
    const ws = await open(urlOf(provider, "s"));
    const got: string[] = [];
    ws.on("message", (d: Buffer) => got.push(d.toString()));
    const done = closed(ws);
    for (let i = 0; i < 50; i++) ws.send(`m${i}`);
    // The handler is slow: the close waits for it.
    await sleep(300);
    expect(ws.readyState).toBe(1);
    handler.release();
    const close = await done;
    const handled = rateLimitHandled(close);
    expect(got).toEqual(Array.from({ length: handled }, (_, i) => `m${i}`));
    expect(logs.warn.filter((l) => l.includes("rate limit"))).toHaveLength(1);
  });

  it("says how many handled messages got no reply when their handler did not answer", async () => {
    const { provider } = await startProvider({
      limits: { messagesPerSecond: 10, messageBurst: 5 },
      handlerTimeoutMs: 200,
    });
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "s");
    await handle(client, "s", "connect", accept);
    await heldHandler(client, "s");
    const ws = await open(urlOf(provider, "s"));
    const done = closed(ws);
    for (let i = 0; i < 50; i++) ws.send(`m${i}`);
    const close = await done;
    expect(close.code).toBe(1008);
    const [, handled, none] = /the first (\d+) were handled \((\d+) got no reply\)/.exec(close.reason) ?? [];
    expect(Number(handled)).toBeGreaterThanOrEqual(5);
    expect(none).toBe(handled);
    expect(close.reason).toBe(
      `rate limit: over 10 messages/s (burst 5); the first ${handled} were handled (${none} got no reply), later ones dropped`,
    );
  });
});

describe("the rate limit on a socket with routes", () => {
  it("counts a message read for its route once more per 16 KB, and says so when it closes", async () => {
    const spec: Spec = {
      name: "test",
      services: [{ name: "svc", file: "services/svc.ts" }],
      resources: [
        {
          kind: "websocket",
          name: "s",
          declaredBy: ["svc"],
          handlers: { connect: "svc", message: "svc" },
          routes: [{ action: "join", service: "svc" }],
        },
      ],
      policies: [],
    };
    const { provider } = await startProvider({ spec, limits: { messagesPerSecond: 10, messageBurst: 40 } });
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "s");
    await handle(client, "s", "connect", accept);
    const reply = (text: string) => () => ({
      websocketResponse: { case: "connectionResponse" as const, value: { reject: false } },
      replies: [{ data: Buffer.from(text), binary: false }],
    });
    const plain = await handle(client, "s", "message", reply("message"));
    const join = await handle(client, "s", "message", reply("join"), "join");
    // 64 KB messages: 1 + 4 a message when read for a route, 1 when not (no "action" in it).
    const big = (withAction: boolean) =>
      JSON.stringify({ ...(withAction ? { action: "join" } : {}), pad: "x".repeat(64 * 1024) });
    const quiet = await open(urlOf(provider, "s"));
    const quietClose = closed(quiet);
    for (let i = 0; i < 20; i++) quiet.send(big(false));
    const routed = await open(urlOf(provider, "s"));
    const done = closed(routed);
    for (let i = 0; i < 20; i++) routed.send(big(true));
    const close = await done;
    expect(close.code).toBe(1008);
    const handled = Number(/; (\d+) handled, later ones dropped$/.exec(close.reason)?.[1]);
    expect(close.reason).toBe(
      `rate limit: over 10/s (burst 40; a routed message counts once per 16 KB too); ${handled} handled, later ones dropped`,
    );
    // The burst of 40 takes 8 such messages (and what refilled meanwhile: 10 a second), not 20.
    expect(handled).toBeGreaterThanOrEqual(8);
    expect(handled).toBeLessThan(20);
    expect(join.events).toHaveLength(handled);
    // The same bytes without the route's property are counted once each: all 20 pass.
    await sleep(200);
    expect(plain.events).toHaveLength(20);
    expect(quiet.readyState).toBe(1);
    quiet.close();
    await quietClose;
  });
});

/**
 * A socket "s" whose connect handler answers only once the app has sent `sends` messages of
 * `chunkBytes` to the opening connection: how its real ws client was closed (by itself once it got
 * `sends` messages), how many messages it got, and the provider's warnings.
 */
async function sentDuringConnect(limits: Partial<AppLimits>, sends: number, chunkBytes: number) {
  const { provider, logs } = await startProvider({ limits });
  const client = await serviceClient(provider, "svc");
  await declareSocket(client, "s");
  // A connect handler that answers only when told.
  const call = client.bidi(WebsocketHandler.method.handleEvents);
  call.on("error", () => {});
  const connects: { id: string; connectionId: string }[] = [];
  await new Promise<void>((resolve) => {
    call.on("data", (message: ServerMessage) => {
      if (message.content.case === "registrationResponse") resolve();
      if (message.content.case === "websocketEventRequest")
        connects.push({ id: message.id, connectionId: message.content.value.connectionId });
    });
    call.write({
      id: "",
      content: { case: "registrationRequest", value: { socketName: "s", eventType: WebsocketEventType.Connect } },
    });
  });
  const ws = new WebSocket(urlOf(provider, "s"));
  ws.on("error", () => {});
  let got = 0;
  ws.on("message", () => {
    if (++got === sends) ws.close(1000);
  });
  const done = closed(ws);
  for (let i = 0; i < 200 && connects.length === 0; i++) await sleep(10);
  const first = connects[0];
  if (!first) throw new Error("no connect event");
  const chunk = new Uint8Array(chunkBytes);
  // Each send is taken while the connect handler runs (the connection exists).
  for (let i = 0; i < sends; i++)
    await client.unary(Websocket.method.sendMessage, {
      socketName: "s",
      connectionId: first.connectionId,
      data: chunk,
      binary: true,
    });
  call.write({
    id: first.id,
    content: {
      case: "websocketEventResponse",
      value: { websocketResponse: { case: "connectionResponse", value: {} } },
    },
  });
  const close = await done;
  call.end();
  return { close, got, warns: logs.warn, connectionId: first.connectionId };
}

describe("sends to a connection whose connect handler is still running", () => {
  it("are bounded like an open connection's: past 8 MB the connection is closed with 1008 as it opens, logged once", async () => {
    // 40 x 256 KB = 10 MB while the connect handler runs.
    const { close, got, warns, connectionId } = await sentDuringConnect({}, 40, 256 * 1024);
    expect(close).toEqual({
      code: 1008,
      reason: "over 8 MB sent to it before it opened; send less while the connect handler runs",
    });
    expect(got).toBe(0);
    expect(warns).toEqual([
      `websocket "s": connection ${connectionId} was sent over 8 MB while its connect handler ran, more than is held for a client before it opens (the 8 MB the local gateway holds for one client): what it was sent is dropped and it is closed with 1008 as it opens; send less during connect, or send the rest once connected`,
    ]);
  });

  it("are bounded by a maxQueuedBytesTotal under 8 MB, which all of it would wait in once it opens: 1008 naming it, one log line", async () => {
    // 28 x 256 KB = 7 MB while the connect handler runs, under the 8 MB of one client but against
    // a total of 1 MB: all of it would go out at once as the connection opens, and the total would
    // cut off its client as not reading though it reads.
    const { close, got, warns, connectionId } = await sentDuringConnect(
      { maxQueuedBytesTotal: 1024 * 1024 },
      28,
      256 * 1024,
    );
    expect(close).toEqual({
      code: 1008,
      reason: "over 1 MB sent to it before it opened; send less while the connect handler runs",
    });
    expect(got).toBe(0);
    const lines = warns.filter((l) => l.includes(connectionId));
    expect(lines).toEqual([
      `websocket "s": connection ${connectionId} was sent over 1 MB while its connect handler ran, more than is held for a client before it opens (limits.maxQueuedBytesTotal, as it is under 8 MB): what it was sent is dropped and it is closed with 1008 as it opens; send less during connect, or send the rest once connected`,
    ]);
  });

  it("keep what a maxQueuedBytesTotal under 8 MB lets wait, and send it all as the connection opens", async () => {
    // 3 x 256 KB = 768 KB, under a total of 1 MB.
    const { close, got, warns } = await sentDuringConnect({ maxQueuedBytesTotal: 1024 * 1024 }, 3, 256 * 1024);
    expect(got).toBe(3);
    expect(close.code).toBe(1000);
    expect(warns).toEqual([]);
  });
});
