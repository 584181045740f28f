// Frames the gateway writes itself: a broadcast builds one frame and writes it to every client's
// socket, and a send or reply of a small payload is one write of a whole frame (see frameOf,
// sendFrame and sendOne in gateway.ts). The frame must be the bytes ws's own send() puts on the
// wire (ws is the oracle), and every client must get exactly what ws.send() would give it.
import { connect, type Socket } from "node:net";
import { Connections } from "@nitric-like/contracts/connections";
import { Websocket } from "@nitric-like/contracts/websockets";
import { afterEach, describe, expect, it } from "vitest";
import type WebSocket from "ws";
import * as wsLib from "ws";
import { frameOf } from "../src/websocket/gateway.js";
import { accept, declareSocket, handle, open, serviceClient, sleep, startProvider, urlOf } from "./helpers.js";
import { cleanupRaw, echoWorld, rawWs } from "./raw.js";

afterEach(cleanupRaw);

/** ws's Sender (exported by ws, not declared by @types/ws), on a socket that keeps what it is given. */
const { Sender } = wsLib as unknown as {
  Sender: new (
    socket: unknown,
  ) => { send(data: Buffer, options: { binary: boolean; fin: boolean; mask: boolean; compress: boolean }): void };
};

/** The bytes ws's own send() writes for one message from a server (unmasked, not compressed). */
function wsSendBytes(data: Buffer, binary: boolean): Buffer {
  const written: Buffer[] = [];
  const socket = { cork() {}, uncork() {}, write: (b: Buffer) => written.push(Buffer.from(b)) };
  new Sender(socket).send(data, { binary, fin: true, mask: false, compress: false });
  return Buffer.concat(written);
}

describe("frameOf", () => {
  it("is the bytes ws's send() writes, for every length encoding and both kinds", () => {
    // 7-bit lengths up to 125, 16-bit from 126 to 65535, 64-bit from 65536.
    for (const length of [0, 1, 125, 126, 127, 65535, 65536, 70000]) {
      const data = Buffer.alloc(length, "a");
      for (const binary of [false, true]) {
        const frame = frameOf(data, binary);
        expect(frame.equals(wsSendBytes(data, binary)), `${length} bytes, binary ${binary}`).toBe(true);
      }
    }
  });

  it("frames a Uint8Array that is a view into a larger buffer by its own bytes only", () => {
    const backing = new Uint8Array([9, 9, 1, 2, 3, 9]);
    const view = backing.subarray(2, 5);
    expect(frameOf(view, true).equals(wsSendBytes(Buffer.from([1, 2, 3]), true))).toBe(true);
  });
});

/** A WebSocket client on a bare TCP socket: the handshake by hand, then every byte the server sends. */
async function rawClient(url: string): Promise<{ socket: Socket; bytes: () => Buffer }> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  let got = Buffer.alloc(0);
  socket.on("data", (d: Buffer) => {
    got = Buffer.concat([got, d]);
  });
  socket.write(
    `GET / HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  for (let i = 0; i < 400 && got.indexOf("\r\n\r\n") < 0; i++) await sleep(5);
  const head = got.indexOf("\r\n\r\n");
  expect(got.subarray(0, head).toString()).toMatch(/^HTTP\/1\.1 101 /);
  const start = head + 4;
  return { socket, bytes: () => got.subarray(start) };
}

/** Every message a ws client gets. */
function collect(ws: WebSocket): { data: string; binary: boolean }[] {
  const got: { data: string; binary: boolean }[] = [];
  ws.on("message", (data: Buffer, binary: boolean) => got.push({ data: data.toString(), binary }));
  return got;
}

describe("broadcast", () => {
  it("puts on the wire, for a send and a broadcast of every size, the bytes ws's send() writes", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "s");
    const connects = await handle(client, "s", "connect", accept);
    const raw = await rawClient(urlOf(provider, "s"));
    try {
      const id = connects.events[0]?.connectionId ?? "";
      const big = new Uint8Array(70000).fill(0x62);
      const messages = [
        { data: new TextEncoder().encode("héllo"), binary: false },
        { data: new Uint8Array([0, 1, 2, 255]), binary: true },
        { data: new Uint8Array(300).fill(0x61), binary: false },
        // Either side of the largest payload a send writes as one frame (ONE_WRITE_MAX, 4000).
        { data: new Uint8Array(3999).fill(0x63), binary: true },
        { data: new Uint8Array(4000).fill(0x64), binary: false },
        { data: new Uint8Array(4001).fill(0x65), binary: true },
        { data: big, binary: true },
        { data: new Uint8Array([7]), binary: true },
        { data: new Uint8Array(0), binary: false },
      ];
      // Each message twice: sent to the one client (SendMessage), then broadcast.
      let expected = 0;
      for (const m of messages) {
        await client.unary(Websocket.method.sendMessage, { socketName: "s", connectionId: id, ...m });
        const sent = await client.unary(Connections.method.broadcast, { socketName: "s", ...m, except: [] });
        expect(sent.sent).toBe(1);
        expected += 2 * wsSendBytes(Buffer.from(m.data), m.binary).length;
      }
      for (let i = 0; i < 400 && raw.bytes().length < expected; i++) await sleep(5);
      const wire = raw.bytes();
      expect(wire.length).toBe(expected);
      let at = 0;
      for (const m of messages) {
        const one = wsSendBytes(Buffer.from(m.data), m.binary);
        expect(wire.subarray(at, at + one.length).equals(one)).toBe(true);
        expect(wire.subarray(at + one.length, at + 2 * one.length).equals(one)).toBe(true);
        at += 2 * one.length;
      }
    } finally {
      raw.socket.destroy();
    }
  });

  it("reaches every open client but the excepted ones, keeping each frame's kind and its place among sends", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "s");
    const connects = await handle(client, "s", "connect", accept);
    const url = urlOf(provider, "s");
    const clients = [await open(url), await open(url), await open(url)];
    const got = clients.map(collect);
    const [a, b] = connects.events.map((e) => e.connectionId);
    const text = (s: string) => new TextEncoder().encode(s);
    await client.unary(Websocket.method.sendMessage, { socketName: "s", connectionId: a ?? "", data: text("before") });
    const first = await client.unary(Connections.method.broadcast, {
      socketName: "s",
      data: text("to all but b"),
      binary: false,
      except: [b ?? ""],
    });
    await client.unary(Websocket.method.sendMessage, { socketName: "s", connectionId: a ?? "", data: text("after") });
    const second = await client.unary(Connections.method.broadcast, {
      socketName: "s",
      data: text("bytes"),
      binary: true,
      except: [],
    });
    expect(first.sent).toBe(2);
    expect(second.sent).toBe(3);
    await sleep(100);
    expect(got[0]).toEqual([
      { data: "before", binary: false },
      { data: "to all but b", binary: false },
      { data: "after", binary: false },
      { data: "bytes", binary: true },
    ]);
    expect(got[1]).toEqual([{ data: "bytes", binary: true }]);
    expect(got[2]).toEqual([
      { data: "to all but b", binary: false },
      { data: "bytes", binary: true },
    ]);
  });

  it("closes a client that does not read its broadcasts once over 8 MB wait for it, and the others still get every one", async () => {
    const world = await echoWorld();
    const stalled = await rawWs(world.url);
    stalled.socket.pause();
    const got = collect(world.bystander);
    const chunk = new Uint8Array(256 * 1024).fill(0x61);
    let broadcasts = 0;
    // 200 x 256 KB = 50 MB: the stalled client must be closed well before.
    const notReading = () => world.logs.warn.some((line) => line.includes("client not reading"));
    for (; broadcasts < 200 && !notReading(); broadcasts++) {
      await world.client.unary(Connections.method.broadcast, {
        socketName: "echo",
        data: chunk,
        binary: true,
        except: [],
      });
      await sleep(1);
    }
    expect(broadcasts).toBeLessThan(100);
    expect(world.logs.warn.join("\n")).toMatch(
      /closed connection [\w-]{12} \(1008\): client not reading: over 8 MB waiting to be sent to it; read the messages you are sent/,
    );
    for (let i = 0; i < 400 && got.length < broadcasts; i++) await sleep(5);
    for (let i = 0; i < 400 && world.provider.connectionCount("echo") > 1; i++) await sleep(5);
    expect(world.provider.connectionCount("echo")).toBe(1);
    expect(got.length).toBe(broadcasts);
    expect(got.every((m) => m.binary && m.data.length === chunk.length)).toBe(true);
  });
});
