// Property tests: thousands of random WebSocket frames and random gRPC request bytes against the
// real provider. Whatever arrives, every connection ends with a close the RFC allows (with a
// reason when the server refuses a frame), every call ends with a status that says what was
// wrong, and the server keeps serving everyone else.
import * as grpc from "@grpc/grpc-js";
import { KvStore } from "@nitric-like/contracts/kvstore";
import { Resources } from "@nitric-like/contracts/resources";
import { Websocket } from "@nitric-like/contracts/websockets";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import {
  cleanupRaw,
  closePayload,
  echoWorld,
  frame,
  portOf,
  rawWs,
  stillUpAndOthersFine,
  tcp,
  upgradeRequest,
} from "./raw.js";

afterEach(cleanupRaw);

const anyFrame = fc.oneof(
  // Mostly frames with a plausible shape, any opcode, flags and payload...
  fc.record({
    opcode: fc.integer({ min: 0, max: 15 }),
    payload: fc.uint8Array({ maxLength: 300 }),
    fin: fc.boolean(),
    mask: fc.oneof({ weight: 9, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    rsv: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 7 }) }),
  }),
  // ...and some raw bytes.
  fc.uint8Array({ minLength: 1, maxLength: 64 }).map((bytes) => ({ raw: bytes })),
);

/** Names a client may choose: Object.prototype's (each once meant something else), headers the gateway reads, and random ones. */
const NAMES = [
  ...Object.getOwnPropertyNames(Object.prototype),
  "Upgrade",
  "Connection",
  "Sec-WebSocket-Key",
  "Sec-WebSocket-Version",
  "Sec-WebSocket-Protocol",
  "Sec-WebSocket-Extensions",
  "Origin",
  "Host",
  "Cookie",
  "x",
];
const percentEncoded = (name: string) =>
  [...Buffer.from(name)].map((b) => `%${b.toString(16).padStart(2, "0")}`).join("");
const aName = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...NAMES) },
  { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 12 }).filter((s) => /^[\w-]+$/.test(s)) },
);
const aQueryKey = fc.oneof(
  { weight: 3, arbitrary: aName },
  { weight: 1, arbitrary: aName.map(percentEncoded) },
  { weight: 1, arbitrary: fc.constantFrom("%", "%zz", "%E0%A4%A", "+", "=", "") },
);
const aValue = fc.oneof(
  { weight: 6, arbitrary: fc.string({ maxLength: 20 }).filter((s) => /^[\x21-\x7e ]*$/.test(s)) },
  // Huge values: alone or together past the 16 KiB a request head may take.
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 20_000 }).map((n) => "v".repeat(n)) },
);
const anUpgrade = fc.record({
  query: fc.array(fc.tuple(aQueryKey, aValue), { maxLength: 8 }),
  // Extra header lines, names repeated (each a duplicate of another or of one the client sends).
  headers: fc.array(fc.tuple(aName, aValue), { maxLength: 8 }),
});

/** The status of the answer to a raw request (0 when the server closed without one). */
async function statusOf(port: number, request: string): Promise<number> {
  const s = await tcp(port);
  s.on("error", () => {});
  return new Promise((resolve) => {
    let got = "";
    const timer = setTimeout(() => resolve(-1), 3000);
    const done = (status: number) => {
      clearTimeout(timer);
      s.destroy();
      resolve(status);
    };
    s.on("data", (d: Buffer) => {
      got += d.toString("latin1");
      if (got.includes("\r\n")) done(Number(/^HTTP\/1\.1 (\d{3})/.exec(got)?.[1] ?? 0));
    });
    s.on("close", () => done(Number(/^HTTP\/1\.1 (\d{3})/.exec(got)?.[1] ?? 0)));
    s.write(request);
  });
}

describe("fuzz", () => {
  it("survives random upgrade requests: hostile query keys, duplicate and huge headers each get an answer, others unaffected", async () => {
    const world = await echoWorld();
    const port = portOf(world.url);
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(anUpgrade, async ({ query, headers }) => {
        const path = `/?${query.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join("&")}`;
        const head = upgradeRequest({ path });
        // The extra lines go after the ones a client sends, so names repeat theirs too.
        const extra = headers.map(([k, v]) => `${k}: ${v}\r\n`).join("");
        const status = await statusOf(port, `${head.slice(0, -2)}${extra}\r\n`);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        // Upgraded, or refused with what is wrong; never a 500 (a listener that threw), never silence.
        expect([101, 400, 403, 404, 426, 431]).toContain(status);
      }),
      { numRuns: 300 },
    );
    console.log(`fuzz: 300 upgrade requests, answered ${JSON.stringify(Object.fromEntries(statuses))}`);
    expect(statuses.get(101)).toBeGreaterThan(50);
    expect(world.logs.error).toEqual([]);
    await stillUpAndOthersFine(world);
  }, 60000);

  it("survives random frames: each connection ends with an allowed close, others unaffected", async () => {
    const world = await echoWorld({ limits: { maxMessageBytes: 256 } });
    let frames = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(anyFrame, { minLength: 5, maxLength: 40 }), async (list) => {
        const ws = await rawWs(world.url);
        for (const f of list) {
          frames++;
          ws.write(
            "raw" in f
              ? Buffer.from(f.raw)
              : frame(f.opcode, Buffer.from(f.payload), { fin: f.fin, mask: f.mask, rsv: f.rsv }),
          );
        }
        // A clean close at the end: a connection still open must answer it. The zeros after it
        // complete any frame still waiting for payload (at most 256 bytes here), then break the
        // framing, so every connection ends one way or the other.
        ws.write(frame(0x8, closePayload(1000)));
        ws.write(Buffer.alloc(300));
        const timeout = new Promise<{ code: number; reason: string }>((r) =>
          setTimeout(() => r({ code: -1, reason: "no close within 3 s" }), 3000),
        );
        const got = await Promise.race([ws.closed, timeout]);
        ws.socket.destroy();
        // 1005: the client closed without a code and the server echoed that (RFC 6455 section 5.5.1).
        // A close frame the client sent with a code (3072, say, an application's) is echoed with it.
        const sentClose = list.find((f) => !("raw" in f) && f.opcode === 8 && f.payload.length >= 2);
        const echoed =
          sentClose && !("raw" in sentClose) ? ((sentClose.payload[0] ?? 0) << 8) | (sentClose.payload[1] ?? 0) : 1000;
        expect([1000, 1002, 1005, 1006, 1007, 1009, echoed]).toContain(got.code);
        if (got.code === 1002 || got.code === 1007 || got.code === 1009) expect(got.reason.length).toBeGreaterThan(10);
      }),
      { numRuns: 400 },
    );
    console.log(`fuzz: ${frames} random frames on 400 connections`);
    expect(frames).toBeGreaterThanOrEqual(2000);
    await stillUpAndOthersFine(world);
  }, 30000);

  it("survives random request bytes on every unary method: each call gets a status with details", async () => {
    const world = await echoWorld();
    const address = await world.provider.endpoint("svc");
    const client = new grpc.Client(address, grpc.credentials.createInsecure());
    const paths = [KvStore, Websocket, Resources].flatMap((s) =>
      s.methods.filter((m) => m.methodKind === "unary").map((m) => `/${s.typeName}/${m.name}`),
    );
    let calls = 0;
    try {
      await fc.assert(
        fc.asyncProperty(fc.constantFrom(...paths), fc.uint8Array({ maxLength: 200 }), async (path, bytes) => {
          calls++;
          const status = await new Promise<grpc.StatusObject | grpc.ServiceError | null>((resolve) =>
            client.makeUnaryRequest(
              path,
              (b: Buffer) => b,
              (b: Buffer) => b,
              Buffer.from(bytes),
              { deadline: Date.now() + 5000 },
              (error) => resolve(error),
            ),
          );
          if (status === null) return;
          expect([grpc.status.UNKNOWN, grpc.status.INTERNAL, grpc.status.DEADLINE_EXCEEDED]).not.toContain(status.code);
          expect(status.details.length).toBeGreaterThan(10);
        }),
        { numRuns: 1000 },
      );
    } finally {
      client.close();
    }
    expect(calls).toBe(1000);
    await stillUpAndOthersFine(world);
  }, 30000);
});
