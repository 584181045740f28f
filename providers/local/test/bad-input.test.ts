// The bad-input catalogue: each case sends one kind of malformed, oversized, unknown or hostile
// input to the real local provider (ws gateway, gRPC endpoint, handler streams), checks the clear
// error it gets back, then that the server is still up and the other clients unaffected.
import { randomBytes } from "node:crypto";
import { Connections } from "@nitric-like/contracts/connections";
import { KvStore } from "@nitric-like/contracts/kvstore";
import { Action, Resources, ResourceType } from "@nitric-like/contracts/resources";
import { Websocket, WebsocketEventType, WebsocketHandler } from "@nitric-like/contracts/websockets";
import { Code, methodPath } from "@nitric-like/rpc";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import type { Gateway } from "../src/websocket/gateway.js";
import {
  accept,
  closed,
  declareSocket,
  declareStore,
  handle,
  open,
  serviceClient,
  sleep,
  startProvider,
  until,
  urlOf,
} from "./helpers.js";
import {
  cleanupRaw,
  closePayload,
  echoWorld,
  exchange,
  frame,
  httpResponse,
  portOf,
  rateLimitHandled,
  rawCall,
  rawWs,
  sendOrClosed,
  stalledGrpcCall,
  stillUpAndOthersFine,
  upgradeRequest,
} from "./raw.js";

afterEach(cleanupRaw);

const TEXT = 0x1;
const BINARY = 0x2;
const CONTINUATION = 0x0;
const CLOSE = 0x8;
const PING = 0x9;

/** Sends raw frames on a fresh connection and resolves with the server's close frame. */
async function closeAfter(url: string, ...frames: Buffer[]): Promise<{ code: number; reason: string }> {
  const ws = await rawWs(url);
  for (const f of frames) ws.write(f);
  return ws.closed;
}

describe("bad frames", () => {
  const cases: [string, () => Buffer[], number, RegExp][] = [
    ["invalid UTF-8 in a text frame", () => [frame(TEXT, Buffer.from([0xc3, 0x28]))], 1007, /invalid UTF-8/],
    ["a frame over the message limit", () => [frame(BINARY, Buffer.alloc(2048))], 1009, /at most 1024 bytes/],
    [
      "a fragmented message whose fragments together pass the limit",
      () => [
        frame(TEXT, "a".repeat(600), { fin: false }),
        frame(CONTINUATION, "b".repeat(600), { fin: false }),
        frame(CONTINUATION, "c", { fin: true }),
      ],
      1009,
      /message too big/,
    ],
    [
      "a message in 1,025 fragments (empty ones, so the size limit never trips)",
      () => [
        frame(TEXT, "", { fin: false }),
        ...Array.from({ length: 1024 }, () => frame(CONTINUATION, "", { fin: false })),
      ],
      1008,
      /^too many pieces: over 1024 fragments in a message/,
    ],
    ["a frame whose length field claims 2^62 bytes", () => [frame(BINARY, "", { length: 2n ** 62n })], 1009, /too big/],
    ["an unmasked client frame", () => [frame(TEXT, "hi", { mask: false })], 1002, /protocol error/],
    ["a reserved opcode", () => [frame(0x3, "x")], 1002, /protocol error/],
    ["an RSV bit without an extension", () => [frame(TEXT, "x", { rsv: 4 })], 1002, /protocol error/],
    ["a ping over 125 bytes", () => [frame(PING, Buffer.alloc(126))], 1002, /protocol error/],
    ["a fragmented ping", () => [frame(PING, "p", { fin: false })], 1002, /protocol error/],
    ["a continuation with nothing to continue", () => [frame(CONTINUATION, "x")], 1002, /protocol error/],
    [
      "a new message inside a fragmented one",
      () => [frame(TEXT, "a", { fin: false }), frame(TEXT, "b")],
      1002,
      /protocol error/,
    ],
    ["a close frame with a reserved code (1005)", () => [frame(CLOSE, closePayload(1005))], 1002, /protocol error/],
    ["a close frame with a one-byte payload", () => [frame(CLOSE, Buffer.from([3]))], 1002, /protocol error/],
    [
      "a close reason that is not UTF-8",
      () => [frame(CLOSE, closePayload(1000, Buffer.from([0xff, 0xfe])))],
      1007,
      /invalid UTF-8/,
    ],
    ["bytes that are no frame at all", () => [Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff])], 1002, /protocol/],
  ];
  for (const [what, frames, code, reason] of cases) {
    it(`closes a connection that sends ${what} with ${code} and a reason, and serves everyone else`, async () => {
      const world = await echoWorld({ limits: { maxMessageBytes: 1024 } });
      const got = await closeAfter(world.url, ...frames());
      expect(got.code).toBe(code);
      expect(got.reason).toMatch(reason);
      await stillUpAndOthersFine(world);
      // The log says which connection and what the ws library found.
      expect(world.logs.warn.join("\n")).toMatch(/websocket "echo": closed connection [\w-]{12}: /);
    });
  }

  it("closes with 1008 and the reason a client that sends a frame a byte at a time, holding no more than 1,024 pieces", async () => {
    const world = await echoWorld();
    const ws = await rawWs(world.url);
    // A 4 KB frame's header, then its payload a byte at a time, 1 ms apart, so that each byte is a
    // chunk of its own to the gateway: ws alone would keep up to 262,144 of them (a client dripping
    // a 120 KB frame made it hold about 18 MB).
    const payload = 4096;
    const whole = frame(BINARY, Buffer.alloc(payload, 7));
    const head = whole.subarray(0, whole.length - payload);
    ws.write(head);
    let sent = 0;
    let closedBy: { code: number; reason: string } | undefined;
    void ws.closed.then((c) => {
      closedBy = c;
    });
    while (closedBy === undefined && sent < payload - 1) {
      ws.write(whole.subarray(head.length + sent, head.length + sent + 1));
      sent++;
      await sleep(1);
    }
    expect(await ws.closed).toEqual({
      code: 1008,
      reason: "too many pieces: over 1024 fragments in a message, or chunks of a frame; send whole frames",
    });
    // Closed once over 1,024 chunks wait (a chunk may hold a few bytes), before the frame was whole.
    expect(sent).toBeGreaterThan(1024);
    expect(sent).toBeLessThan(payload - 1);
    expect(world.logs.warn.join("\n")).toMatch(/closed connection [\w-]{12}: Too many buffered chunks/);
    await stillUpAndOthersFine(world);
  });

  it("takes a message of 1,024 fragments, the most it allows", async () => {
    const world = await echoWorld();
    const ws = await rawWs(world.url);
    ws.write(
      Buffer.concat([
        frame(TEXT, "f", { fin: false }),
        ...Array.from({ length: 1022 }, () => frame(CONTINUATION, "r", { fin: false })),
        frame(CONTINUATION, "!"),
      ]),
    );
    for (let i = 0; i < 200 && ws.messages.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(ws.messages.map(String)).toEqual([`f${"r".repeat(1022)}!`]);
    await stillUpAndOthersFine(world);
  });

  it("reassembles a fragmented message within the limit into one message", async () => {
    const world = await echoWorld({ limits: { maxMessageBytes: 1024 } });
    const ws = await rawWs(world.url);
    ws.write(frame(TEXT, "frag", { fin: false }));
    ws.write(frame(PING, "between fragments is allowed"));
    ws.write(frame(CONTINUATION, "mented"));
    for (let i = 0; i < 100 && ws.messages.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(ws.messages.map(String)).toEqual(["fragmented"]);
    await stillUpAndOthersFine(world);
  });
});

describe("bad upgrade requests", () => {
  const cases: [string, () => string, number, RegExp][] = [
    [
      "without Sec-WebSocket-Key",
      () => upgradeRequest({ headers: { "Sec-WebSocket-Key": undefined } }),
      400,
      /^websocket "echo": Sec-WebSocket-Key must be 16 bytes in base64 .*; connect with a WebSocket client/,
    ],
    [
      "with a key that is not 16 bytes",
      () => upgradeRequest({ headers: { "Sec-WebSocket-Key": "c2hvcnQ=" } }),
      400,
      /Sec-WebSocket-Key must be 16 bytes/,
    ],
    [
      "with an unsupported version",
      () => upgradeRequest({ headers: { "Sec-WebSocket-Version": "12" } }),
      400,
      /Sec-WebSocket-Version "12" is not supported; use 13/,
    ],
    // Version 8 is a draft before RFC 6455, which the ws library still takes: RFC 6455 asks for 13.
    [
      "with version 8, a draft before RFC 6455",
      () => upgradeRequest({ headers: { "Sec-WebSocket-Version": "8" } }),
      400,
      /Sec-WebSocket-Version "8" is not supported; use 13/,
    ],
    // The ws library refuses these after the connect handler ran: the app would keep what it stored
    // for the connection (its rooms, its state), and hear of no disconnect.
    [
      "offering a subprotocol twice",
      () => upgradeRequest({ headers: { "Sec-WebSocket-Protocol": "chat, token.a, chat" } }),
      400,
      /^websocket "echo": Sec-WebSocket-Protocol has subprotocol "chat" twice; offer distinct subprotocols separated by commas/,
    ],
    [
      "offering a subprotocol that is not a token",
      () => upgradeRequest({ headers: { "Sec-WebSocket-Protocol": "chat, to ken" } }),
      400,
      /Sec-WebSocket-Protocol has subprotocol "to ken", which is not a token/,
    ],
    [
      "offering an empty subprotocol",
      () => upgradeRequest({ headers: { "Sec-WebSocket-Protocol": "chat,,token.a" } }),
      400,
      /Sec-WebSocket-Protocol has an empty subprotocol/,
    ],
    ["with POST", () => upgradeRequest({ method: "POST" }), 405, /a WebSocket upgrade must be a GET request, got POST/],
    [
      "for another protocol",
      () => upgradeRequest({ headers: { Upgrade: "h2c" } }),
      400,
      /the Upgrade header must be "websocket"/,
    ],
    [
      "for an unknown path",
      () => upgradeRequest({ path: "/admin/../secret?x=1" }),
      404,
      /no such path "\/admin\/\.\.\/secret"; connect to ws:\/\/127\.0\.0\.1:\d+\//,
    ],
    [
      "with a 20 KB query string",
      () => upgradeRequest({ path: `/?q=${"x".repeat(20_000)}` }),
      431,
      /over 16 KiB \(query string included\); send less in the URL and headers/,
    ],
    [
      "with 2,000 headers",
      () =>
        upgradeRequest({
          headers: Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`x-header-${i}`, "value"])),
        }),
      431,
      /over 16 KiB/,
    ],
    ["that is not HTTP at all", () => "\u0000\u0001garbage\r\n\r\n", 400, /not a valid HTTP request \(HPE_/],
    [
      "with a header line that has no colon",
      () => "GET / HTTP/1.1\r\nHost x\r\n\r\n",
      400,
      /not a valid HTTP request \(HPE_/,
    ],
  ];
  for (const [what, request, status, reason] of cases) {
    it(`refuses an upgrade ${what} with ${status} saying what is wrong, before any connect handler runs`, async () => {
      const world = await echoWorld();
      const before = world.connects.events.length;
      const response = httpResponse(await exchange(portOf(world.url), request()));
      expect(response.status).toBe(status);
      expect(response.body).toMatch(reason);
      // RFC 6455 section 4.2.2: a refused version is answered with the one the server speaks.
      if (/version/.test(what)) expect(response.headers).toMatch(/\r\nSec-WebSocket-Version: 13(\r\n|$)/i);
      expect(world.connects.events.length).toBe(before);
      await stillUpAndOthersFine(world);
    });
  }

  it("answers a plain HTTP request with 426 and how to connect", async () => {
    const world = await echoWorld();
    const response = httpResponse(
      await exchange(portOf(world.url), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    );
    expect(response.status).toBe(426);
    expect(response.body).toMatch(/connect with a WebSocket client, such as: npx wscat -c ws:\/\/127\.0\.0\.1:\d+/);
    await stillUpAndOthersFine(world);
  });

  it("survives 64 KB of random bytes on the gateway's port", async () => {
    const world = await echoWorld();
    const response = httpResponse(await exchange(portOf(world.url), randomBytes(65536)));
    expect([0, 400]).toContain(response.status);
    await stillUpAndOthersFine(world);
  });
});

describe("bad gRPC requests", () => {
  it("survives random bytes on a service's gRPC port", async () => {
    const world = await echoWorld();
    await exchange(portOf(await world.provider.endpoint("svc")), randomBytes(65536));
    await exchange(portOf(await world.provider.endpoint("svc")), "GET / HTTP/1.1\r\n\r\n");
    await stillUpAndOthersFine(world);
  });

  it("answers garbage bytes on a method with INVALID_ARGUMENT naming the method and the type", async () => {
    const world = await echoWorld();
    const address = await world.provider.endpoint("svc");
    const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]);
    for (const path of [
      "/nitric.proto.kvstore.v1.KvStore/GetValue",
      "/nitric.proto.websockets.v1.Websocket/SendMessage",
      "/nitric.proto.resources.v1.Resources/Declare",
    ]) {
      const status = await rawCall(address, path, garbage);
      expect(status.code).toBe(Code.INVALID_ARGUMENT);
      expect(status.details).toMatch(
        new RegExp(
          `^${path.replace(/[./]/g, "\\$&")}: the request is not a valid nitric\\.proto\\.\\S+ message .*; encode it with the contract in proto/$`,
        ),
      );
    }
    await stillUpAndOthersFine(world);
  });

  it("answers a length prefix of 2^40 with INVALID_ARGUMENT saying so, instead of reading its low 32 bits (0) and the rest as fields", async () => {
    const world = await echoWorld();
    const address = await world.provider.endpoint("svc");
    // GetValue { ref (1): a length of 2^40, then bytes that a length of 0 leaves to be read as another ref { store: "items" } }.
    const wraps = Buffer.from([
      0x0a,
      0x80,
      0x80,
      0x80,
      0x80,
      0x80,
      0x20,
      0x0a,
      0x07,
      0x0a,
      0x05,
      ...Buffer.from("items"),
    ]);
    expect(await rawCall(address, "/nitric.proto.kvstore.v1.KvStore/GetValue", wraps)).toEqual({
      code: Code.INVALID_ARGUMENT,
      details:
        "/nitric.proto.kvstore.v1.KvStore/GetValue: the request is not a valid nitric.proto.kvstore.v1.KvStoreGetValueRequest message (cannot decode nitric.proto.kvstore.v1.KvStoreGetValueRequest: a length prefix of 2^31 bytes or more, longer than any field can be); encode it with the contract in proto/",
    });
    await stillUpAndOthersFine(world);
  });

  it("answers a key that is not UTF-8 (a lone surrogate as @nitric/sdk encodes it) saying to send well-formed text", async () => {
    const world = await echoWorld();
    const address = await world.provider.endpoint("svc");
    // KvStoreGetValueRequest { ref = 1 { store = 1 "items", key = 2 ED A0 80 } }: google-protobuf's
    // bytes for the key "\ud800", which UTF-8 has no encoding for.
    const ref = Buffer.from([0x0a, 5, ...Buffer.from("items"), 0x12, 3, 0xed, 0xa0, 0x80]);
    const request = Buffer.from([0x0a, ref.length, ...ref]);
    const status = await rawCall(address, "/nitric.proto.kvstore.v1.KvStore/GetValue", request);
    expect(status.code).toBe(Code.INVALID_ARGUMENT);
    expect(status.details).toContain("a string field holds bytes that are not UTF-8, as a text with a lone surrogate");
    expect(status.details).toMatch(/; send well-formed text, such as text\.toWellFormed\(\)$/);
    expect(status.details).not.toContain("encode it with the contract");
    await stillUpAndOthersFine(world);
  });

  it("ends a handler stream that sends garbage bytes with INVALID_ARGUMENT, keeping the other streams", async () => {
    const world = await echoWorld();
    const address = await world.provider.endpoint("svc");
    const { Client, credentials } = await import("@grpc/grpc-js");
    const raw = new Client(address, credentials.createInsecure());
    const call = raw.makeBidiStreamRequest(
      "/nitric.proto.websockets.v1.WebsocketHandler/HandleEvents",
      (b: Buffer) => b,
      (b: Buffer) => b,
    );
    const status = new Promise<{ code: number; details: string }>((r) => call.on("status", r));
    call.on("error", () => {});
    call.write(Buffer.from([0x0a, 0xff, 0xff, 0xff]));
    const s = await status;
    raw.close();
    expect(s.code).toBe(Code.INVALID_ARGUMENT);
    expect(s.details).toMatch(/HandleEvents: the request is not a valid .*ClientMessage message/);
    await stillUpAndOthersFine(world);
  });

  it("answers an unknown method with UNIMPLEMENTED naming it", async () => {
    const world = await echoWorld();
    const status = await rawCall(
      await world.provider.endpoint("svc"),
      "/nitric.proto.kvstore.v1.KvStore/Nope",
      Buffer.alloc(0),
    );
    expect(status.code).toBe(Code.UNIMPLEMENTED);
    expect(status.details).toMatch(/KvStore\/Nope/);
    await stillUpAndOthersFine(world);
  });

  it("refuses an empty store name and an empty socket name with the naming rule", async () => {
    const world = await echoWorld();
    await expect(world.client.unary(KvStore.method.getValue, { ref: { store: "", key: "k" } })).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
      details: expect.stringMatching(/^kv\(""\): .*name/),
    });
    await expect(
      world.client.unary(Websocket.method.sendMessage, { socketName: "", connectionId: "x", data: new Uint8Array() }),
    ).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
      details: expect.stringMatching(/^websocket\(""\): /),
    });
    await stillUpAndOthersFine(world);
  });

  it("refuses invalid resource names with a suggestion", async () => {
    const world = await echoWorld();
    await expect(
      world.client.unary(Resources.method.declare, {
        id: { type: ResourceType.KeyValueStore, name: "My Store" },
        config: { case: "keyValueStore", value: {} },
      }),
    ).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
      details: expect.stringMatching(
        /^kv\("My Store"\): invalid resource name "My Store", use lower-kebab-case such as "my-store"/,
      ),
    });
    await expect(
      world.client.unary(Resources.method.declare, { id: { type: ResourceType.Websocket, name: "x".repeat(300) } }),
    ).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT });
    await expect(world.client.unary(Resources.method.declare, {})).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
      details: "declare: the request has no resource id",
    });
    // A routeBy no provider could select by (a bracketed path, not names joined by ".").
    await expect(
      world.client.unary(Resources.method.declare, {
        id: { type: ResourceType.Websocket, name: "echo" },
        config: { case: "websocket", value: { allowedOrigins: [], routeBy: "body[__proto__]" } },
      }),
    ).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
      details: expect.stringMatching(/^websocket\("echo", \{ routeBy: "body\[__proto__\]" \}\): routeBy names/),
    });
    await stillUpAndOthersFine(world);
  });

  it("answers a 100 KB name with a status any gRPC client can read, and the connection serves the next call", async () => {
    const world = await echoWorld();
    const address = await world.provider.endpoint("svc");
    const { Client, credentials, Metadata } = await import("@grpc/grpc-js");
    // One client: one HTTP/2 connection for every call, as a service's SDK has.
    const client = new Client(address, credentials.createInsecure());
    const call = (path: string, bytes: Buffer) =>
      new Promise<{ code: number; details: string }>((resolve) =>
        client.makeUnaryRequest(
          path,
          (b: Buffer) => b,
          (b: Buffer) => b,
          bytes,
          new Metadata(),
          { deadline: Date.now() + 5000 },
          (error) => resolve(error ? { code: error.code, details: error.details } : { code: 0, details: "" }),
        ),
      );
    const text = (field: number, value: string | Buffer) => {
      const bytes = Buffer.from(value);
      const length: number[] = [];
      for (let n = bytes.length; ; n >>>= 7) {
        if (n < 0x80) {
          length.push(n);
          break;
        }
        length.push((n & 0x7f) | 0x80);
      }
      return Buffer.concat([Buffer.from([(field << 3) | 2, ...length]), bytes]);
    };
    const long = "a".repeat(100_000);
    // GetValue { ref: { store, key } }: the name's own message shows its start and its length.
    const ref = Buffer.concat([text(1, long), text(2, "k")]);
    expect(await call("/nitric.proto.kvstore.v1.KvStore/GetValue", text(1, ref))).toEqual({
      code: Code.INVALID_ARGUMENT,
      details: `kv("${"a".repeat(64)}"...): invalid resource name, it is 100000 characters long and at most 64 are allowed, use a shorter lower-kebab-case name such as "${"a".repeat(64)}"`,
    });
    // A message that quotes the name whole is cut to 4,096 bytes as sent, saying so.
    const health = await call("/grpc.health.v1.Health/Check", text(1, long));
    expect(health.code).toBe(Code.NOT_FOUND);
    expect(health.details).toMatch(/^health: service "a{4000,}\.\.\. \(cut: the message has 100\d+ characters\)$/);
    expect(encodeURI(health.details).length).toBeLessThanOrEqual(4096);
    // The same connection still serves.
    expect(await call("/grpc.health.v1.Health/Check", Buffer.alloc(0))).toEqual({ code: Code.OK, details: "" });
    client.close();
    await stillUpAndOthersFine(world);
  });

  it("refuses an empty key and a 10 KB key, saying the limit", async () => {
    const world = await echoWorld();
    await expect(
      world.client.unary(KvStore.method.setValue, { ref: { store: "items", key: "" }, content: {} }),
    ).rejects.toMatchObject({ details: 'kv("items").set(""): the key is empty; use a non-empty string' });
    await expect(
      world.client.unary(KvStore.method.setValue, { ref: { store: "items", key: "k".repeat(10_240) }, content: {} }),
    ).rejects.toMatchObject({
      details: 'kv("items").set(): the key is 10240 bytes long and at most 1024 are allowed; use a shorter key',
    });
    await stillUpAndOthersFine(world);
  });

  it("refuses a kv write without a value, saying to pass a JSON object", async () => {
    const world = await echoWorld();
    await expect(
      world.client.unary(KvStore.method.setValue, { ref: { store: "items", key: "k" } }),
    ).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
      details: 'kv("items"): set("k") has no value; pass a JSON object',
    });
    await stillUpAndOthersFine(world);
  });

  it("answers NOT_FOUND naming the id for sends, closes and look-ups of unknown connection ids", async () => {
    const world = await echoWorld();
    for (const id of ["nope", "", "x".repeat(5000)]) {
      await expect(
        world.client.unary(Websocket.method.sendMessage, {
          socketName: "echo",
          connectionId: id,
          data: new Uint8Array([1]),
        }),
      ).rejects.toMatchObject({
        code: Code.NOT_FOUND,
        details: expect.stringMatching(/is not connected \(it closed, or never existed\)$/),
      });
      await expect(
        world.client.unary(Websocket.method.closeConnection, { socketName: "echo", connectionId: id }),
      ).rejects.toMatchObject({ code: Code.NOT_FOUND });
      await expect(
        world.client.unary(Connections.method.getConnection, { socketName: "echo", connectionId: id }),
      ).rejects.toMatchObject({ code: Code.NOT_FOUND, details: expect.stringContaining("is not connected") });
      expect(
        (await world.client.unary(Connections.method.isConnected, { socketName: "echo", connectionId: id })).connected,
      ).toBe(false);
    }
    await stillUpAndOthersFine(world);
  });

  it("refuses a close code a service may not send and a reason over 123 bytes", async () => {
    const world = await echoWorld();
    await expect(
      world.client.unary(Websocket.method.closeConnection, { socketName: "echo", connectionId: "x", code: 1006 }),
    ).rejects.toMatchObject({ details: 'websocket "echo": close code 1006 is not allowed; use 1000 or 3000-4999' });
    await expect(
      world.client.unary(Websocket.method.closeConnection, {
        socketName: "echo",
        connectionId: "x",
        code: 4000,
        reason: "r".repeat(124),
      }),
    ).rejects.toMatchObject({ details: expect.stringMatching(/at most 123 bytes .*; shorten it$/) });
    await stillUpAndOthersFine(world);
  });
});

describe("bad handlers", () => {
  it("ends a handler stream that does not start with a registration, and one for an unknown event type", async () => {
    const world = await echoWorld();
    const first = world.client.bidi(WebsocketHandler.method.handleEvents);
    first.on("error", () => {});
    const status = new Promise<{ code: number; details: string }>((r) => first.on("status", r));
    first.write({ id: "x", content: { case: "websocketEventResponse", value: {} } });
    expect(await status).toMatchObject({
      code: Code.INVALID_ARGUMENT,
      details: "websocket handler: the first message on a handler stream must be a registration",
    });
    const second = world.client.bidi(WebsocketHandler.method.handleEvents);
    second.on("error", () => {});
    const status2 = new Promise<{ code: number; details: string }>((r) => second.on("status", r));
    second.write({
      id: "",
      content: { case: "registrationRequest", value: { socketName: "echo", eventType: 42 as WebsocketEventType } },
    });
    expect(await status2).toMatchObject({
      code: Code.INVALID_ARGUMENT,
      details: "websocket handler: unknown event type 42",
    });
    await stillUpAndOthersFine(world);
  });

  it("ends a registration of a route with an invalid name, or on an event other than message", async () => {
    const world = await echoWorld();
    const refused = async (eventType: WebsocketEventType, route: string) => {
      const call = world.client.bidi(WebsocketHandler.method.handleEvents);
      call.on("error", () => {});
      const status = new Promise<{ code: number; details: string }>((r) => call.on("status", r));
      call.write({ id: "", content: { case: "registrationRequest", value: { socketName: "echo", eventType, route } } });
      return status;
    };
    expect(await refused(WebsocketEventType.Message, "__proto__")).toMatchObject({
      code: Code.INVALID_ARGUMENT,
      details:
        'websocket("echo").route("__proto__"): a route name starts with a letter and has only letters, digits, "_", "-", "." and ":", such as "join" or "chat.say"',
    });
    expect(await refused(WebsocketEventType.Connect, "join")).toMatchObject({
      code: Code.INVALID_ARGUMENT,
      details: 'websocket "echo": a route is registered for message events, not connect events',
    });
    await stillUpAndOthersFine(world);
  });

  it("ends a handler stream that registers a second time, saying to open a stream per socket event", async () => {
    const world = await echoWorld();
    const stream = await handle(world.client, "other", "message", () => undefined);
    const status = new Promise<{ code: number; details: string }>((r) => stream.call.on("status", r));
    stream.call.write({
      id: "",
      content: { case: "registrationRequest", value: { socketName: "other", eventType: WebsocketEventType.Connect } },
    });
    expect(await status).toMatchObject({
      code: Code.INVALID_ARGUMENT,
      details:
        'websocket handler: this stream already handles message events of websocket "other", and a stream registers once; open another HandleEvents stream for connect events of websocket "other"',
    });
    await stillUpAndOthersFine(world);
  });

  it("says a flood of late registrations and declarations of names a client chose in 5 lines and one count, not a line each", async () => {
    const world = await echoWorld({
      spec: {
        name: "test",
        services: [{ name: "svc", file: "services/svc.ts" }],
        resources: [
          {
            kind: "websocket",
            name: "echo",
            declaredBy: ["svc"],
            handlers: { connect: "svc", disconnect: "svc", message: "svc" },
          },
          { kind: "kv", name: "items", declaredBy: ["svc"] },
        ],
        policies: [
          { service: "svc", resource: { kind: "websocket", name: "echo" }, permissions: ["manage"] },
          { service: "svc", resource: { kind: "kv", name: "items" }, permissions: ["get", "set"] },
        ],
      },
    });
    expect(world.logs.warn).toEqual([]);
    // A service that registers and declares a name from each client, after it started: each is
    // refused as one is (the stream answered and ended with OK, the store's calls refused).
    const statuses = await Promise.all(
      Array.from(
        { length: 300 },
        async (_, i) => (await handle(world.client, `room-${i}`, "message", () => undefined)).status,
      ),
    );
    expect(new Set(statuses)).toEqual(new Set([Code.OK]));
    for (let i = 0; i < 100; i++) await declareStore(world.client, `store-${i}`, [Action.KeyValueStoreRead]);
    await expect(
      world.client.unary(KvStore.method.getValue, { ref: { store: "store-7", key: "k" } }),
    ).rejects.toMatchObject({ code: Code.FAILED_PRECONDITION });
    // Five said in full, then one line with the count once the burst is over.
    expect(world.logs.warn).toHaveLength(5);
    for (const line of world.logs.warn)
      expect(line).toMatch(/^websocket\("room-\d+"\)\.on\("message"\): service "svc" registered it after it started/);
    await until(() => world.logs.warn.length > 5, "the count of the refusals not said", 7000, 50);
    expect(world.logs.warn.slice(5)).toEqual([
      'service "svc": 395 more declarations or handler registrations made after it started were refused within 5 s, not said one by one (a loop that declares or registers a name from each client or message?); each is refused as the 5 above are, and its calls fail with the reason; declare and register at the top level of the service\'s entry file',
    ]);
    // A later one, in a new burst, is said in full again.
    await declareStore(world.client, "late-store", [Action.KeyValueStoreRead]);
    expect(world.logs.warn.at(-1)).toMatch(
      /^kv\("late-store"\)\.allow\("get"\): service "svc" declared it after it started/,
    );
    await stillUpAndOthersFine(world);
  }, 20_000);

  it("fails a message once 8 MB of events wait for a service that does not read its handler stream: 1013, and why", async () => {
    const world = await echoWorld();
    await declareSocket(world.client, "stall");
    await handle(world.client, "stall", "connect", accept);
    await handle(world.client, "stall", "disconnect", () => ({}));
    // The message handler: a stream that registers and then reads nothing more.
    const register = WebsocketHandler.method.handleEvents.input.encode({
      id: "",
      content: { case: "registrationRequest", value: { socketName: "stall", eventType: WebsocketEventType.Message } },
    });
    await stalledGrpcCall(
      portOf(await world.provider.endpoint("svc")),
      methodPath(WebsocketHandler.method.handleEvents),
      register,
    );
    await until(
      () => world.provider.registrations().some((r) => r.socket === "stall" && r.event === "message"),
      "the stalled stream's registration",
    );
    // 100 KB messages from ten clients: past 8 MB (and HTTP/2's window) the provider stops taking them.
    const clients = await Promise.all(Array.from({ length: 10 }, () => open(urlOf(world.provider, "stall"))));
    const first = Promise.race(clients.map((ws) => closed(ws)));
    const body = Buffer.alloc(100 * 1024, 1);
    for (let i = 0; i < 12; i++) for (const ws of clients) ws.send(body);
    expect(await first).toEqual({ code: 1013, reason: "message handler unavailable, try again later" });
    await until(() => world.logs.error.length > 0, "the error line");
    expect(world.logs.error[0]).toMatch(
      /^websocket "stall": service "svc" is not reading the events of the message handler: the provider holds all it will of events sent to it and not yet taken; does a handler block the loop of its SDK that receives them\?; closed connection \S+$/,
    );
    await stillUpAndOthersFine(world);
  });

  it("ignores answers for events that do not exist", async () => {
    const world = await echoWorld();
    const stream = await handle(world.client, "other", "message", () => undefined);
    stream.call.write({ id: "no-such-event", content: { case: "websocketEventResponse", value: {} } });
    stream.call.write({ id: "", content: { case: "answerBatch", value: { answers: [] } } });
    await stillUpAndOthersFine(world);
  });

  it("logs a handler that never answers as timed out, naming socket, service and limit, and keeps the client", async () => {
    const world = await echoWorld({
      handlerTimeoutMs: 150,
    });
    // A second socket whose handler never answers.
    const { declareSocket, urlOf } = await import("./helpers.js");
    await declareSocket(world.client, "slow");
    await handle(world.client, "slow", "message", () => undefined);
    const ws = await open(urlOf(world.provider, "slow"));
    ws.send("anyone?");
    for (let i = 0; i < 100 && world.logs.error.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(world.logs.error[0]).toMatch(
      /^websocket "slow": the message handler of service "svc" did not answer within 0\.15 s \(connection [\w-]{12}\)$/,
    );
    expect(ws.readyState).toBe(WebSocket.OPEN);
    await stillUpAndOthersFine(world);
  });

  it("closes with 1013 saying to try again when the message handler's service exits mid-message and does not return", async () => {
    const world = await echoWorld({ handlerWaitMs: 200 });
    const { declareSocket, urlOf } = await import("./helpers.js");
    await declareSocket(world.client, "dies");
    const dying = await handle(world.client, "dies", "message", () => undefined);
    const ws = await open(urlOf(world.provider, "dies"));
    const done = closed(ws);
    ws.send("in flight when it dies");
    for (let i = 0; i < 100 && dying.events.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    world.provider.serviceExited("svc", 1, null);
    expect(await done).toEqual({ code: 1013, reason: "message handler unavailable, try again later" });
    expect(world.logs.error.join("\n")).toMatch(
      /websocket "dies": the message handler did not register within 0\.2 s .*its service "svc" exited with code 1 and has not registered it again; fix the service and it restarts/,
    );
    // The service's other streams went with it; it comes back and serves again.
    world.provider.serviceStarting("svc");
    const { accept } = await import("./helpers.js");
    await handle(world.client, "echo", "connect", accept);
    await handle(world.client, "echo", "disconnect", () => ({}));
    await handle(world.client, "echo", "message", (r) => ({
      replies: r.websocketEvent.case === "message" ? [{ data: r.websocketEvent.value.body, binary: false }] : [],
    }));
    await stillUpAndOthersFine(world);
  });
});

describe("floods", () => {
  it("refuses connections over the socket's limit with 429 and the reason, logging once per burst", async () => {
    const world = await echoWorld({ limits: { maxConnections: 3 } });
    const a = await open(world.url);
    const b = await open(world.url);
    expect(world.provider.connectionCount("echo")).toBe(3);
    const refusals = await Promise.all(
      Array.from({ length: 5 }, async () => httpResponse(await exchange(portOf(world.url), upgradeRequest()))),
    );
    for (const r of refusals) {
      expect(r.status).toBe(429);
      expect(r.body).toBe(
        'websocket "echo": 3 connections are open, the most allowed (limits.maxConnections); try again later',
      );
      expect(r.headers).toMatch(/Retry-After: 1/);
    }
    expect(world.logs.warn.filter((l) => l.includes("refused a connection with 429"))).toHaveLength(1);
    // Room again once one leaves.
    const gone = closed(b);
    b.close();
    await gone;
    for (let i = 0; i < 100 && world.provider.connectionCount("echo") > 2; i++)
      await new Promise((r) => setTimeout(r, 10));
    a.close();
    await stillUpAndOthersFine(world);
  });

  it("closes a connection that sends faster than its rate with 1008, saying how many were handled, logging once", async () => {
    const world = await echoWorld({ limits: { messagesPerSecond: 10, messageBurst: 5 } });
    const ws = await open(world.url);
    const got: string[] = [];
    ws.on("message", (d: Buffer) => got.push(d.toString()));
    const done = closed(ws);
    for (let i = 0; i < 50; i++) ws.send(`m${i}`);
    const close = await done;
    // The burst went through (a token or so may have refilled meanwhile), and nothing past the count.
    const handled = rateLimitHandled(close);
    expect(handled).toBeLessThan(10);
    expect(got).toEqual(Array.from({ length: got.length }, (_, i) => `m${i}`));
    expect(got.length).toBeLessThanOrEqual(handled);
    expect(world.logs.warn.filter((l) => l.includes("rate limit"))).toHaveLength(1);
    await stillUpAndOthersFine(world);
  });

  it("closes a client that pings faster than it takes its pongs with 1008 and the reason, logging once", async () => {
    const world = await echoWorld();
    // At its own pace (each ping after the last one's pong) a client may ping as often as it likes.
    const steady = await open(world.url);
    for (let i = 0; i < 200; i++) {
      const pong = new Promise((resolve) => steady.once("pong", resolve));
      steady.ping();
      await pong;
    }
    expect(steady.readyState).toBe(WebSocket.OPEN);
    // 200 at once: ws would cut the client off after 60 waiting pongs, with no close frame (1006).
    const flooder = await open(world.url);
    const done = closed(flooder);
    for (let i = 0; i < 200; i++) flooder.ping();
    expect(await done).toEqual({
      code: 1008,
      reason: "ping flood: 50 pongs wait to be written to you; read them, and wait for a pong before the next ping",
    });
    expect(world.logs.warn.filter((l) => l.includes("ping flood"))).toHaveLength(1);
    steady.close();
    await stillUpAndOthersFine(world);
  });

  it("closes a client that stops reading once 8 MB wait for it, cutting it off, and keeps serving the others", async () => {
    const world = await echoWorld();
    const stalled = await rawWs(world.url);
    // It reads nothing more: what is sent to it piles up in the provider.
    stalled.socket.pause();
    for (let i = 0; i < 100 && world.connects.events.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    // The bystander connected first; the stalled client second.
    const stalledId = world.connects.events[1]?.connectionId ?? "";
    const chunk = new Uint8Array(256 * 1024);
    let refusedAt = -1;
    for (let i = 0; i < 200 && refusedAt < 0; i++) {
      if (!(await sendOrClosed(world.client, "echo", stalledId, chunk))) refusedAt = i;
    }
    // Refused well before 200 x 256 KB = 50 MB were held for it.
    expect(refusedAt).toBeGreaterThan(0);
    expect(refusedAt).toBeLessThan(100);
    expect(world.logs.warn.join("\n")).toMatch(
      /closed connection [\w-]{12} \(1008\): client not reading: over 8 MB waiting to be sent to it; read the messages you are sent/,
    );
    for (let i = 0; i < 200 && world.provider.connectionCount("echo") > 1; i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(world.provider.connectionCount("echo")).toBe(1);
    await stillUpAndOthersFine(world);
  });

  it("sends a reading client a reply, send or broadcast of 8 MB, and refuses a larger one with the limit, never closing it", async () => {
    const MB8 = 8 * 1024 * 1024;
    const { provider, logs } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "echo");
    const sizeOf = (text: string) => (text === "over" ? MB8 + 1 : text === "max" ? MB8 : 0);
    const connects = await handle(client, "echo", "connect", (r) => {
      const q = r.websocketEvent.case === "connection" ? r.websocketEvent.value.queryParams : {};
      const size = sizeOf(q.reply?.value[0] ?? "");
      return {
        websocketResponse: { case: "connectionResponse", value: { reject: false } },
        replies: size > 0 ? [{ data: new Uint8Array(size), binary: true }] : [],
      };
    });
    await handle(client, "echo", "disconnect", () => ({}));
    await handle(client, "echo", "message", (r) => {
      const text = r.websocketEvent.case === "message" ? Buffer.from(r.websocketEvent.value.body).toString() : "";
      const size = sizeOf(text);
      return { replies: [{ data: size > 0 ? new Uint8Array(size) : Buffer.from(text), binary: size > 0 }] };
    });
    const url = urlOf(provider, "echo");
    // A connect reply over 8 MB is left out and logged; the connection opens and gets what follows.
    const ws = await open(`${url}?reply=over`);
    const got: number[] = [];
    ws.on("message", (d: Buffer) => got.push(d.length));
    const id = connects.events[0]?.connectionId ?? "";
    expect(logs.error.join("\n")).toContain(
      `websocket "echo": a reply of ${MB8 + 1} bytes to connection ${id} was not sent: it is over the 8 MB the local gateway holds for one client (${MB8} bytes); send it in parts of at most 8 MB`,
    );
    // A reply: 8 MB goes out whole, one byte more is left out and logged, and what follows goes out.
    ws.send("max");
    ws.send("over");
    ws.send("after");
    await until(() => got.length >= 2, "the replies", 10_000, 10);
    expect(got).toEqual([MB8, 5]);
    expect(logs.error.join("\n")).toContain(`a reply of ${MB8 + 1} bytes to connection ${id} was not sent`);
    // A send and a broadcast: 8 MB goes out, one byte more is refused to the caller with the limit and the fix.
    await client.unary(Websocket.method.sendMessage, {
      socketName: "echo",
      connectionId: id,
      data: new Uint8Array(MB8),
    });
    const over = new Uint8Array(MB8 + 1);
    await expect(
      client.unary(Websocket.method.sendMessage, { socketName: "echo", connectionId: id, data: over }),
    ).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
      message: expect.stringContaining(
        `websocket "echo": a message of ${MB8 + 1} bytes is over the 8 MB the local gateway holds for one client (${MB8} bytes); send it in parts of at most 8 MB`,
      ),
    });
    await expect(
      client.unary(Connections.method.broadcast, { socketName: "echo", data: over, binary: true, except: [] }),
    ).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, message: expect.stringContaining("over the 8 MB") });
    await until(() => got.length >= 3, "the send", 10_000, 10);
    expect(got).toEqual([MB8, 5, MB8]);
    expect(ws.readyState).toBe(WebSocket.OPEN);
    expect(logs.warn.join("\n")).not.toMatch(/not reading/);
  });

  it("takes a maxQueuedBytesTotal under 8 MB as the largest message, refusing a larger one with that limit, never closing a reader", async () => {
    const MB = 1024 * 1024;
    const { provider, logs } = await startProvider({ limits: { maxQueuedBytesTotal: MB } });
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "echo");
    const sizes: Record<string, number> = { max: MB, over: MB + 1, far: 6 * MB };
    const connects = await handle(client, "echo", "connect", accept);
    await handle(client, "echo", "disconnect", () => ({}));
    await handle(client, "echo", "message", (r) => {
      const text = r.websocketEvent.case === "message" ? Buffer.from(r.websocketEvent.value.body).toString() : "";
      const size = Object.hasOwn(sizes, text) ? (sizes[text] as number) : 0;
      return { replies: [{ data: size > 0 ? new Uint8Array(size) : Buffer.from(text), binary: size > 0 }] };
    });
    const ws = await open(urlOf(provider, "echo"));
    const got: number[] = [];
    ws.on("message", (d: Buffer) => got.push(d.length));
    const id = connects.events[0]?.connectionId ?? "";
    // A reply: as large as the total goes out whole; larger ones are left out and logged, the client kept.
    for (const text of ["max", "over", "far", "after"]) ws.send(text);
    await until(() => got.length >= 2, "the replies", 10_000, 10);
    const why = `is over the 1 MB limits.maxQueuedBytesTotal lets wait for all clients together (${MB} bytes, set in the project file); send it in parts of at most that, or raise limits.maxQueuedBytesTotal (a message may be up to 8 MB)`;
    expect(logs.error.join("\n")).toContain(
      `websocket "echo": a reply of ${MB + 1} bytes to connection ${id} was not sent: it ${why}`,
    );
    expect(logs.error.join("\n")).toContain(`a reply of ${6 * MB} bytes to connection ${id} was not sent`);
    // A send and a broadcast: refused to the caller with the limit, which setting sets it, and the fix.
    for (const data of [new Uint8Array(MB + 1), new Uint8Array(6 * MB)]) {
      await expect(
        client.unary(Websocket.method.sendMessage, { socketName: "echo", connectionId: id, data }),
      ).rejects.toMatchObject({
        code: Code.INVALID_ARGUMENT,
        message: expect.stringContaining(`websocket "echo": a message of ${data.byteLength} bytes ${why}`),
      });
      await expect(
        client.unary(Connections.method.broadcast, { socketName: "echo", data, binary: true, except: [] }),
      ).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, message: expect.stringContaining(why) });
    }
    await client.unary(Websocket.method.sendMessage, {
      socketName: "echo",
      connectionId: id,
      data: new Uint8Array(MB),
    });
    await until(() => got.length >= 3, "the send", 10_000, 10);
    await sleep(100);
    expect(got).toEqual([MB, 5, MB]);
    expect(ws.readyState).toBe(WebSocket.OPEN);
    expect(logs.warn.join("\n")).not.toMatch(/not reading/);
  });
});

/** Every name Object.prototype has: as keys of a plain object each one meant something else. */
const PROTOTYPE_NAMES = Object.getOwnPropertyNames(Object.prototype);

/** A name with every byte percent-encoded. */
const percentEncoded = (name: string) =>
  [...Buffer.from(name)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`).join("");

describe("names a client chooses are data", () => {
  it("covers every name of Object.prototype", () => {
    expect(PROTOTYPE_NAMES).toEqual(expect.arrayContaining(["__proto__", "constructor", "toString", "hasOwnProperty"]));
    expect(PROTOTYPE_NAMES.length).toBeGreaterThanOrEqual(12);
  });

  for (const name of PROTOTYPE_NAMES) {
    it(`takes "${name}" as a query key, a header name, a JSON key and a kv key like any other name, and serves everyone else`, async () => {
      const world = await echoWorld();
      const before = world.connects.events.length;
      // As a query key, plain and percent-encoded, and as a header name.
      const ws = await rawWs(
        world.url,
        upgradeRequest({
          path: `/?${name}=1&${percentEncoded(name)}=2&x=3`,
          headers: Object.fromEntries([[name, "4"]]),
        }),
      );
      await until(() => world.connects.events.length > before, "the connect event", 3000, 10);
      const event = world.connects.events[before];
      const connection = event?.websocketEvent.case === "connection" ? event.websocketEvent.value : undefined;
      const header = name.toLowerCase();
      expect(Object.hasOwn(connection?.queryParams ?? {}, name)).toBe(true);
      expect(connection?.queryParams[name]?.value).toEqual(["1", "2"]);
      expect(connection?.queryParams.x?.value).toEqual(["3"]);
      expect(Object.hasOwn(connection?.headers ?? {}, header)).toBe(true);
      expect(connection?.headers[header]?.value).toEqual(["4"]);
      // What the gateway keeps of the connection: its lookup, the list (socket.connections()) and the dashboard's list.
      const id = event?.connectionId ?? "";
      const got = await world.client.unary(Connections.method.getConnection, { socketName: "echo", connectionId: id });
      expect(got.connection?.query[name]?.value).toEqual(["1", "2"]);
      expect(got.connection?.headers[header]?.value).toEqual(["4"]);
      const listed = [];
      for await (const r of world.client.serverStream(Connections.method.listConnections, { socketName: "echo" }))
        listed.push(r.connection?.connectionId);
      expect(listed).toContain(id);
      const inspected = JSON.parse(JSON.stringify(await world.provider.inspect.connections("echo"))) as {
        id: string;
        query: Record<string, string[]>;
        headers: Record<string, string[]>;
      }[];
      const mine = inspected.find((c) => c.id === id);
      expect(Object.hasOwn(mine?.query ?? {}, name) && mine?.query[name]).toEqual(["1", "2"]);
      expect(Object.hasOwn(mine?.headers ?? {}, header) && mine?.headers[header]).toEqual(["4"]);
      // As a JSON key in a message.
      const json = JSON.stringify(Object.fromEntries([[name, { [name]: 1 }]]));
      ws.write(frame(TEXT, json));
      await until(() => ws.messages.length > 0, "the echo", 3000, 10);
      expect(ws.messages.map(String)).toEqual([json]);
      // As a kv key, and as the prefix of a listing.
      const ref = { store: "items", key: name };
      await world.client.unary(KvStore.method.setValue, { ref, content: { name } });
      expect((await world.client.unary(KvStore.method.getValue, { ref })).value?.content).toEqual({ name });
      const keys = [];
      for await (const r of world.client.serverStream(KvStore.method.scanKeys, {
        store: { name: "items" },
        prefix: name,
      }))
        keys.push(r.key);
      expect(keys).toEqual([name]);
      expect(world.logs.error).toEqual([]);
      await stillUpAndOthersFine(world);
    });
  }

  it("lists connections of a socket without a connect handler whose query and headers use those names", async () => {
    const world = await echoWorld();
    // A socket with a message handler only: its connections are accepted without a connect event.
    await declareSocket(world.client, "open");
    await handle(world.client, "open", "message", () => ({}));
    const url = urlOf(world.provider, "open");
    const query = PROTOTYPE_NAMES.map((n, i) => `${i % 2 === 0 ? n : percentEncoded(n)}=${i}`).join("&");
    const headers = Object.fromEntries(PROTOTYPE_NAMES.map((n) => [n, "h"]));
    await rawWs(url, upgradeRequest({ path: `/?${query}`, headers }));
    // socket.connections() for every service, and the dashboard's list.
    const listed = [];
    for await (const r of world.client.serverStream(Connections.method.listConnections, { socketName: "open" }))
      listed.push(r.connection);
    expect(listed).toHaveLength(1);
    for (const [i, n] of PROTOTYPE_NAMES.entries()) {
      expect(listed[0]?.query[n]?.value).toEqual([String(i)]);
      expect(listed[0]?.headers[n.toLowerCase()]?.value).toEqual(["h"]);
    }
    const inspected = await world.provider.inspect.connections("open");
    expect(Object.keys(inspected[0]?.query ?? {}).sort()).toEqual([...PROTOTYPE_NAMES].sort());
    await stillUpAndOthersFine(world);
  });
});

describe("the boundary around every listener", () => {
  /** The gateway of a socket: its traffic observer is the seam a faulty dashboard would reach it through. */
  const gatewayOf = (world: Awaited<ReturnType<typeof echoWorld>>, socket: string) =>
    (world.provider as unknown as { gateways: Map<string, Gateway> }).gateways.get(socket) as Gateway;

  it("closes with 1011 the one connection whose message listener threw, logging one line, and serves everyone else", async () => {
    const world = await echoWorld();
    // An observer that chokes on one client's message, as a bug in the message path would.
    gatewayOf(world, "echo").observer = (event) => {
      if (event.type === "message" && event.direction === "in" && Buffer.from(event.data).toString() === "boom")
        throw new TypeError("cannot read this message");
    };
    const victim = await open(world.url);
    const done = closed(victim);
    victim.send("boom");
    expect(await done).toEqual({ code: 1011, reason: "internal error; connect again" });
    expect(world.logs.error).toHaveLength(1);
    expect(world.logs.error[0]).toMatch(
      /^websocket "echo": internal error while handling a message of connection [\w-]{12}: TypeError: cannot read this message \(at .*\); closed it with 1011 and serves everyone else; please report this line as a bug$/,
    );
    await stillUpAndOthersFine(world);
    expect(world.logs.error).toHaveLength(1);
  });

  it("closes with 1011 a connection whose opening threw, logging one line, and serves everyone else", async () => {
    // Room for the bystander, the victim and one more: the victim's place must come back.
    const world = await echoWorld({ limits: { maxConnections: 2 } });
    let fail = true;
    gatewayOf(world, "echo").observer = (event) => {
      if (event.type === "open" && fail) {
        fail = false;
        throw new RangeError("cannot show this connection");
      }
    };
    const victim = new WebSocket(world.url);
    victim.on("error", () => {});
    expect(await closed(victim)).toEqual({ code: 1011, reason: "internal error; connect again" });
    expect(world.logs.error).toEqual([
      expect.stringMatching(
        /^websocket "echo": internal error while handling a open of connection [\w-]{12}: RangeError: cannot show this connection .*closed it with 1011/,
      ),
    ]);
    for (let i = 0; i < 100 && world.provider.connectionCount("echo") > 1; i++) await sleep(10);
    expect(world.provider.connectionCount("echo")).toBe(1);
    await stillUpAndOthersFine(world);
  });

  it("keeps serving when an upgrade listener throws after answering, logging one line and answering once", async () => {
    const world = await echoWorld();
    // An observer that chokes on the first refusal it sees: the listener throws once it has answered.
    let fail = true;
    gatewayOf(world, "echo").observer = (event) => {
      if (event.type === "refused" && fail) {
        fail = false;
        throw new Error("cannot show this refusal");
      }
    };
    const raw = await exchange(portOf(world.url), upgradeRequest({ method: "POST" }));
    expect(httpResponse(raw).status).toBe(405);
    expect(raw.match(/HTTP\/1\.1 /g)).toHaveLength(1);
    expect(world.logs.error).toEqual([
      expect.stringMatching(
        /^websocket "echo": internal error while handling an upgrade request: Error: cannot show this refusal .*refused it with 500/,
      ),
    ]);
    await stillUpAndOthersFine(world);
  });
});
