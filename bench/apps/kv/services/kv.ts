// The kv benchmark runs inside a service, where kv calls are made. A message
// { "op": "empty" | "get" | "set" | "keys", "ms": T, "concurrency": C } runs that call for T ms, C at a
// time, and replies { "calls": n, "seconds": s }. { "op": "get-vs-empty", ... } alternates a get and
// an empty call in each of the C loops and replies each kind's calls and the seconds spent in them,
// so both kinds are measured in the same moments of a noisy machine. The baseline "empty" is the
// provider's standard gRPC health check (a served unary call that does no work); its client has the
// SDK's channel options, so grpc-js gives both the same connection (its subchannel pool shares one
// per address and options). get reads a 100-byte value, set writes one durably, keys lists a
// prefix of 10 keys.
import * as grpc from "@grpc/grpc-js";
import { kv, websocket } from "@nitric-like/sdk";

const store = kv("bench").allow("get", "set", "delete");
const address = process.env.SERVICE_ADDRESS ?? "127.0.0.1:50051";
// The options of the SDK's client (packages/rpc/src/grpc.ts).
const channel = new grpc.Client(address, grpc.credentials.createInsecure(), {
  "grpc.max_receive_message_length": 64 * 1024 * 1024,
  "grpc.max_send_message_length": 64 * 1024 * 1024,
});
const identity = (b: Buffer) => b;
const emptyRequest = Buffer.alloc(0);

function empty(): Promise<void> {
  return new Promise((resolve, reject) => {
    channel.makeUnaryRequest("/grpc.health.v1.Health/Check", identity, identity, emptyRequest, (error) =>
      error ? reject(error) : resolve(),
    );
  });
}

const ops: Record<string, (i: number) => Promise<unknown>> = {
  empty: () => empty(),
  get: () => store.get("one"),
  set: (i) => store.set(`key:${i % 100}`, { i, value: "x".repeat(100) }),
  keys: async () => {
    for await (const _ of store.keys("list:"));
  },
};

let seeded: Promise<void> | undefined;
async function seed(): Promise<void> {
  for (let i = 0; i < 10; i++) await store.set(`list:${i}`, { i });
  await store.set("one", { value: "x".repeat(100) });
}

/** Gets and empty calls taking turns in each loop: each kind's calls and the seconds spent in them. */
async function alternate(ms: number, concurrency: number) {
  const result = { get: { calls: 0, seconds: 0 }, empty: { calls: 0, seconds: 0 } };
  const end = performance.now() + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        for (const kind of ["get", "empty"] as const) {
          const t0 = performance.now();
          await (kind === "get" ? store.get("one") : empty());
          result[kind].calls++;
          result[kind].seconds += (performance.now() - t0) / 1000;
        }
      }
    }),
  );
  return result;
}

const socket = websocket("kv");
socket.on("connect", () => {});
socket.on("disconnect", () => {});
socket.on("message", async (ctx) => {
  const { op, ms, concurrency } = ctx.json<{ op: string; ms: number; concurrency: number }>();
  const call = ops[op];
  if (!call && op !== "get-vs-empty") {
    return { error: `unknown op ${JSON.stringify(op)}; use ${Object.keys(ops).join(", ")} or get-vs-empty` };
  }
  seeded ??= seed();
  await seeded;
  if (op === "get-vs-empty") return alternate(ms, concurrency);
  let calls = 0;
  const t0 = performance.now();
  const end = t0 + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) await call?.(calls++);
    }),
  );
  return { calls, seconds: (performance.now() - t0) / 1000 };
});
