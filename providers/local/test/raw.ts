/**
 * Raw clients for the bad-input and fuzz tests: bytes on a TCP socket (HTTP requests, WebSocket
 * frames built by hand), raw gRPC calls with arbitrary request bytes, and the shared check that
 * a server survived whatever it was sent: an echo world with a bystander client.
 */
import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { Action } from "@nitric-like/contracts/resources";
import { Websocket, type WebsocketEventRequest } from "@nitric-like/contracts/websockets";
import { type Client, Code } from "@nitric-like/rpc";
import type { AppLimits } from "@nitric-like/spec";
import { expect } from "vitest";
import type WebSocket from "ws";
import type { LocalProvider, LocalProviderOptions } from "../src/index.js";
import {
  accept,
  cleanup,
  declareSocket,
  declareStore,
  handle,
  type Logs,
  nextMessage,
  open,
  serviceClient,
  startProvider,
  urlOf,
} from "./helpers.js";

const sockets: Socket[] = [];

/** Destroys the raw sockets made here (call after each test, before cleanup()). */
export function destroyRaw(): void {
  for (const s of sockets.splice(0)) s.destroy();
}

/** After each test that uses raw clients: destroys them, then cleanup() (providers, clients, the listening check). */
export async function cleanupRaw(): Promise<void> {
  destroyRaw();
  await cleanup();
}

/**
 * Checks a close by the rate limit of 10 messages/s with a burst of 5: 1008, and the reason with
 * how many messages were handled, at least the burst. Gives that count.
 */
export function rateLimitHandled(close: { code: number; reason: string }): number {
  expect(close.code).toBe(1008);
  const handled = Number(/the first (\d+) were handled/.exec(close.reason)?.[1]);
  expect(close.reason).toBe(
    `rate limit: over 10 messages/s (burst 5); the first ${handled} were handled, later ones dropped; slow down`,
  );
  expect(handled).toBeGreaterThanOrEqual(5);
  return handled;
}

/**
 * Sends `data` (binary) to a connection of `socket`: true once sent, false when the provider refused it
 * because it closed that connection (NOT_FOUND, the only refusal allowed).
 */
export async function sendOrClosed(
  client: Client,
  socket: string,
  connectionId: string,
  data: Uint8Array,
): Promise<boolean> {
  try {
    await client.unary(Websocket.method.sendMessage, { socketName: socket, connectionId, data, binary: true });
    return true;
  } catch (error) {
    expect(error).toMatchObject({ code: Code.NOT_FOUND });
    return false;
  }
}

/** The port of a `ws://127.0.0.1:port` or `127.0.0.1:port` address. */
export function portOf(address: string): number {
  return Number(address.replace(/^ws:\/\//, "").split(":")[1]);
}

/** Opens a TCP connection to 127.0.0.1:port. */
export function tcp(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, "127.0.0.1", () => resolve(s));
    sockets.push(s);
    s.once("error", reject);
  });
}

/** Writes bytes to a fresh TCP connection and resolves with all it got back once the server closes it (or after 3 s). */
export async function exchange(port: number, bytes: Buffer | string): Promise<string> {
  const s = await tcp(port);
  s.on("error", () => {});
  return new Promise((resolve) => {
    let got = "";
    const done = () => resolve(got);
    const timer = setTimeout(done, 3000);
    s.on("data", (d: Buffer) => {
      got += d.toString("latin1");
    });
    s.on("close", () => {
      clearTimeout(timer);
      done();
    });
    s.write(bytes);
  });
}

/** The status line's code and the body of an HTTP response. */
export function httpResponse(raw: string): { status: number; headers: string; body: string } {
  const at = raw.indexOf("\r\n\r\n");
  return {
    status: Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0),
    headers: raw.slice(0, at),
    body: raw.slice(at + 4),
  };
}

/** An upgrade request with the headers a WebSocket client sends, any of them replaceable. */
export function upgradeRequest(
  options: { path?: string; method?: string; headers?: Record<string, string | undefined> } = {},
): string {
  const headers: Record<string, string | undefined> = {
    Host: "127.0.0.1",
    Upgrade: "websocket",
    Connection: "Upgrade",
    "Sec-WebSocket-Key": randomBytes(16).toString("base64"),
    "Sec-WebSocket-Version": "13",
    ...options.headers,
  };
  const lines = Object.entries(headers)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  return `${options.method ?? "GET"} ${options.path ?? "/"} HTTP/1.1\r\n${lines}\r\n`;
}

/** One WebSocket frame as a client would write it (masked unless told otherwise). */
export function frame(
  opcode: number,
  payload: Buffer | string = Buffer.alloc(0),
  options: { fin?: boolean; mask?: boolean; rsv?: number; length?: bigint } = {},
): Buffer {
  const data = typeof payload === "string" ? Buffer.from(payload) : payload;
  const fin = options.fin ?? true;
  const mask = options.mask ?? true;
  const head = [(fin ? 0x80 : 0) | ((options.rsv ?? 0) << 4) | opcode];
  const len = options.length ?? BigInt(data.length);
  let ext = Buffer.alloc(0);
  if (len < 126n) head.push((mask ? 0x80 : 0) | Number(len));
  else if (len < 65536n) {
    head.push((mask ? 0x80 : 0) | 126);
    ext = Buffer.alloc(2);
    ext.writeUInt16BE(Number(len));
  } else {
    head.push((mask ? 0x80 : 0) | 127);
    ext = Buffer.alloc(8);
    ext.writeBigUInt64BE(len);
  }
  if (!mask) return Buffer.concat([Buffer.from(head), ext, data]);
  const key = randomBytes(4);
  const masked = Buffer.from(data);
  for (let i = 0; i < masked.length; i++) masked[i] = (masked[i] as number) ^ (key[i % 4] as number);
  return Buffer.concat([Buffer.from(head), ext, key, masked]);
}

/** A close frame's payload: code and reason. */
export function closePayload(code: number, reason: Buffer | string = ""): Buffer {
  const c = Buffer.alloc(2);
  c.writeUInt16BE(code);
  return Buffer.concat([c, typeof reason === "string" ? Buffer.from(reason) : reason]);
}

/** A hand-driven WebSocket connection: the upgrade done, frames written raw, the server's frames parsed. */
export interface RawWs {
  socket: Socket;
  /** Text and binary messages the server sent. */
  messages: Buffer[];
  /** Resolves with the server's close frame (code 1006 when the TCP connection ended without one). */
  closed: Promise<{ code: number; reason: string }>;
  write(bytes: Buffer): void;
}

/** Upgrades a raw TCP connection to the gateway at `url`, with this upgrade request (a plain one by default). */
export async function rawWs(url: string, request: string = upgradeRequest()): Promise<RawWs> {
  const socket = await tcp(portOf(url));
  socket.on("error", () => {});
  let buffer = Buffer.alloc(0);
  let upgraded = false;
  const messages: Buffer[] = [];
  let resolveClosed: (v: { code: number; reason: string }) => void = () => {};
  const closed = new Promise<{ code: number; reason: string }>((r) => {
    resolveClosed = r;
  });
  let resolveOpen: () => void = () => {};
  let rejectOpen: (e: Error) => void = () => {};
  const opened = new Promise<void>((resolve, reject) => {
    resolveOpen = resolve;
    rejectOpen = reject;
  });
  const parse = () => {
    while (buffer.length >= 2) {
      const opcode = (buffer[0] as number) & 0x0f;
      let len = (buffer[1] as number) & 0x7f;
      let at = 2;
      if (len === 126) {
        if (buffer.length < 4) return;
        len = buffer.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (buffer.length < 10) return;
        len = Number(buffer.readBigUInt64BE(2));
        at = 10;
      }
      if (buffer.length < at + len) return;
      const payload = buffer.subarray(at, at + len);
      buffer = buffer.subarray(at + len);
      if (opcode === 8) {
        resolveClosed({
          code: payload.length >= 2 ? payload.readUInt16BE(0) : 1005,
          reason: payload.subarray(2).toString("utf8"),
        });
      } else if (opcode === 1 || opcode === 2) messages.push(Buffer.from(payload));
    }
  };
  socket.on("data", (d: Buffer) => {
    buffer = Buffer.concat([buffer, d]);
    if (!upgraded) {
      const end = buffer.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = buffer.subarray(0, end).toString("latin1");
      buffer = buffer.subarray(end + 4);
      if (!head.startsWith("HTTP/1.1 101")) {
        rejectOpen(new Error(`upgrade refused: ${head.split("\r\n")[0]}`));
        return;
      }
      upgraded = true;
      resolveOpen();
    }
    parse();
  });
  socket.on("close", () => resolveClosed({ code: 1006, reason: "" }));
  socket.write(request);
  await opened;
  return { socket, messages, closed, write: (bytes) => socket.write(bytes) };
}

/** Calls a method of a service's endpoint with these exact request bytes; resolves with the status. */
export function rawCall(address: string, path: string, bytes: Buffer): Promise<{ code: number; details: string }> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      bytes,
      { deadline: Date.now() + 5000 },
      (error) => {
        client.close();
        resolve(error ? { code: error.code, details: error.details } : { code: 0, details: "" });
      },
    );
  });
}

/** A provider with one echo socket ("echo": connect accepted, messages answered with their own bytes) and a kv store. */
export interface EchoWorld {
  provider: LocalProvider;
  logs: Logs;
  client: Client;
  url: string;
  /** A client connected before the bad input, which must be unaffected by it. */
  bystander: WebSocket;
  connects: { events: WebsocketEventRequest[] };
  /** The message events the echo handler got. */
  messages: { events: WebsocketEventRequest[] };
}

/** Starts an echo world. */
export async function echoWorld(
  options: Partial<LocalProviderOptions> & { limits?: Partial<AppLimits> } = {},
): Promise<EchoWorld> {
  const { provider, logs } = await startProvider(options);
  const client = await serviceClient(provider, "svc");
  await declareSocket(client, "echo");
  await declareStore(client, "items", [Action.KeyValueStoreRead, Action.KeyValueStoreWrite]);
  const connects = await handle(client, "echo", "connect", accept);
  await handle(client, "echo", "disconnect", () => ({}));
  const messages = await handle(client, "echo", "message", (r) => {
    const m = r.websocketEvent.case === "message" ? r.websocketEvent.value : undefined;
    return { replies: m ? [{ data: m.body, binary: m.binary ?? false }] : [] };
  });
  const url = urlOf(provider, "echo");
  const bystander = await open(url);
  return { provider, logs, client, url, bystander, connects, messages };
}

async function echoes(ws: WebSocket, text: string): Promise<void> {
  const got = nextMessage(ws);
  ws.send(text);
  expect((await got).data.toString()).toBe(text);
}

/**
 * The server is still up and nobody else noticed: the bystander (connected before the bad input)
 * is open and echoes, a new client connects and echoes, and the service's endpoint answers.
 */
export async function stillUpAndOthersFine(world: EchoWorld): Promise<void> {
  expect(world.bystander.readyState).toBe(1);
  await echoes(world.bystander, "bystander still here");
  const fresh = await open(world.url);
  await echoes(fresh, "a new client works");
  fresh.close();
  const details = await world.client.unary(Websocket.method.socketDetails, { socketName: "echo" });
  expect(details.url).toBe(world.url);
}

/** An HTTP/2 frame: 9 bytes of header (length, type, flags, stream) and the payload. */
function h2Frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK string literal, not Huffman-coded (7-bit length prefix: these are all short). */
const hpackLiteral = (text: string) => Buffer.concat([Buffer.from([text.length]), Buffer.from(text)]);

/**
 * A gRPC call to `path` on 127.0.0.1:`port` over a bare socket that sends `message` (encoded) and
 * then grants no HTTP/2 flow-control credit: the server may send the stream its first 64 KB and no
 * more, as to a client that has stopped reading. What the server sends is read and dropped (so TCP
 * itself never stalls); the call stays open until the socket is destroyed.
 */
export async function stalledGrpcCall(port: number, path: string, message: Uint8Array): Promise<Socket> {
  const socket = await tcp(port);
  socket.on("error", () => {});
  const headers = Buffer.concat([
    Buffer.from([0x83, 0x86]), // :method POST, :scheme http (static table)
    Buffer.from([0x04]), // :path, a literal value
    hpackLiteral(path),
    Buffer.from([0x01]), // :authority
    hpackLiteral("localhost"),
    Buffer.from([0x0f, 0x10]), // content-type (static index 31)
    hpackLiteral("application/grpc"),
    Buffer.from([0x00]), // te, a literal name
    hpackLiteral("te"),
    hpackLiteral("trailers"),
  ]);
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  let acked = false;
  socket.on("data", () => {
    // Acknowledge the server's SETTINGS, once.
    if (!acked) socket.write(h2Frame(4, 1, 0, Buffer.alloc(0)));
    acked = true;
  });
  socket.write(
    Buffer.concat([
      Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
      h2Frame(4, 0, 0, Buffer.alloc(0)), // SETTINGS: the defaults (64 KB per stream)
      h2Frame(1, 4, 1, headers), // HEADERS, END_HEADERS, stream 1
      h2Frame(0, 0, 1, Buffer.concat([prefix, Buffer.from(message)])), // DATA: the message
    ]),
  );
  return socket;
}
