// What a service's gRPC endpoint refuses to hold for it (connections past its most, calls past the
// budget of requests still arriving) is said in `run`'s log as well as to the service: a user who
// reads only `run`'s output must learn of it, and a flood must not flood that output.
import { connect as connectHttp2 } from "node:http2";
import { connect, type Socket } from "node:net";
import { KvStore } from "@nitric-like/contracts/kvstore";
import { methodPath } from "@nitric-like/rpc";
import { afterEach, describe, expect, it } from "vitest";
import { cleanup, startProvider } from "./helpers.js";

afterEach(cleanup);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Opens a connection to 127.0.0.1:`port` with HTTP/2's preface: "served" once the server answers, else "cut". */
function http2Connect(port: number): { result: Promise<string>; socket: Socket } {
  const socket = connect({ host: "127.0.0.1", port });
  socket.on("connect", () =>
    socket.write(
      Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]),
    ),
  );
  const result = new Promise<string>((resolve) => {
    socket.once("data", () => resolve("served"));
    socket.once("error", () => resolve("cut"));
    socket.once("close", () => resolve("cut"));
  });
  return { result, socket };
}

/** A kv set to 127.0.0.1:`port` whose message announces `length` bytes and sends `sent` of them; resolves with its status code. */
function partialSet(port: number, length: number, sent: number): { status: Promise<number>; close: () => void } {
  const session = connectHttp2(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  const stream = session.request({
    ":method": "POST",
    ":path": methodPath(KvStore.method.setValue),
    "content-type": "application/grpc",
    te: "trailers",
  });
  stream.on("error", () => {});
  stream.resume();
  const head = Buffer.alloc(5);
  head.writeUInt32BE(length, 1);
  stream.write(Buffer.concat([head, Buffer.alloc(sent)]));
  const status = new Promise<number>((resolve) => {
    const read = (headers: Record<string, unknown>) => {
      if (headers["grpc-status"] !== undefined) resolve(Number(headers["grpc-status"]));
    };
    stream.on("response", read);
    stream.on("trailers", read);
  });
  return { status, close: () => session.destroy() };
}

describe("the gRPC endpoint's refusals in run's log", () => {
  it("logs connections cut past the endpoint's most, naming the service, the bound and the fix, once a second at most with a count of those cut since", async () => {
    const { provider, logs } = await startProvider({ tcp: true, grpcLimits: { maxConnections: 2 } });
    const port = Number((await provider.endpoint("svc")).split(":")[1]);
    const kept = [http2Connect(port), http2Connect(port)];
    expect(await Promise.all(kept.map((c) => c.result))).toEqual(["served", "served"]);
    const line = `service "svc": cut a new connection to its gRPC endpoint: it serves at most 2 connections at once, and a service needs one or a few; make the service reuse its gRPC clients (one per address) rather than open a connection for each call, and close those it no longer uses`;
    // A flood: 50 more at once are cut, and said once.
    const flood = Array.from({ length: 50 }, () => http2Connect(port));
    expect(new Set(await Promise.all(flood.map((c) => c.result)))).toEqual(new Set(["cut"]));
    expect(logs.warn).toEqual([line]);
    // A second later, the next one is said with the count since the last line.
    await sleep(1100);
    expect(await http2Connect(port).result).toBe("cut");
    expect(logs.warn).toEqual([line, `${line} (50 connections cut since the last report)`]);
    for (const c of kept) c.socket.destroy();
  });

  it("logs calls cut by the budget of requests still arriving, naming the service, the bound and the fix, once a second at most", async () => {
    const { provider, logs } = await startProvider({ tcp: true, grpcLimits: { maxArrivingBytes: 1000 } });
    const port = Number((await provider.endpoint("svc")).split(":")[1]);
    const first = partialSet(port, 5000, 2000);
    expect(await first.status).toBe(8);
    const second = partialSet(port, 5000, 3000);
    expect(await second.status).toBe(8);
    const says = (held: number) =>
      `service "svc": ended one of its gRPC calls with RESOURCE_EXHAUSTED before its request had come, telling it: grpc: cut this call at ${held} bytes of a 5000-byte message: requests still arriving at the provider's gRPC endpoints held over 1000 bytes together, the most it holds at once, and the calls to this endpoint held the most of them, this call the most of those; send large messages (kv values) one after another rather than many at once, make them smaller, and finish or cancel the calls you start`;
    expect(logs.warn).toEqual([says(2005)]);
    first.close();
    second.close();
  });
});
