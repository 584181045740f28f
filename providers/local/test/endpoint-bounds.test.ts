// What a service's gRPC endpoint refuses to hold for it (connections past its most, calls past the
// budget of requests still arriving) is said in `run`'s log as well as to the service: a user who
// reads only `run`'s output must learn of it, and a flood must not flood that output.
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { closeSync, existsSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { open } from "node:fs/promises";
import { connect as connectHttp2 } from "node:http2";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { KvStore } from "@nitric-like/contracts/kvstore";
import { canCheckTcpPeers, methodPath } from "@nitric-like/rpc";
import { ConnectionBudget } from "@nitric-like/rpc/grpc";
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

/**
 * Occupies every thread of libuv's pool (opening FIFOs nobody writes to), so that no read of the
 * kernel's tables of connections finishes meanwhile; gives what frees them.
 */
async function blockThreadPool(): Promise<() => void> {
  const dir = mkdtempSync(join(tmpdir(), "endpoint-block-"));
  const threads = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
  const fifos = Array.from({ length: threads }, (_, i) => join(dir, `f${i}`));
  for (const fifo of fifos) execFileSync("mkfifo", [fifo]);
  const opening = fifos.map((fifo) => open(fifo, "r"));
  await sleep(50);
  let freed = false;
  return () => {
    if (freed) return;
    freed = true;
    for (const fifo of fifos) closeSync(openSync(fifo, "w"));
    void Promise.all(opening).then(async (handles) => {
      for (const handle of handles) await handle.close();
      rmSync(dir, { recursive: true, force: true });
    });
  };
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

  it("logs connections cut past the most all of run's endpoints serve together, naming the service holding the most, the bound and the fix", async () => {
    const { provider, logs } = await startProvider({
      tcp: true,
      grpcLimits: { connectionBudget: new ConnectionBudget(3) },
    });
    const leaky = Number((await provider.endpoint("leaky")).split(":")[1]);
    const svc = Number((await provider.endpoint("svc")).split(":")[1]);
    const kept = [http2Connect(leaky), http2Connect(leaky), http2Connect(leaky)];
    expect(await Promise.all(kept.map((c) => c.result))).toEqual(["served", "served", "served"]);
    // A service that holds none is cut too: run's endpoints hold their most together.
    const flood = Array.from({ length: 20 }, () => http2Connect(svc));
    expect(new Set(await Promise.all(flood.map((c) => c.result)))).toEqual(new Set(["cut"]));
    expect(logs.warn).toEqual([
      `service "svc": cut a new connection to its gRPC endpoint: run's gRPC endpoints serve at most 3 connections at once together (each takes one of run's open files), service "leaky" holding 3 of them, and a service needs one or a few; make each service reuse its gRPC clients (one per address) rather than open a connection for each call, and close those it no longer uses`,
    ]);
    for (const c of kept) c.socket.destroy();
  });

  it.skipIf(!canCheckTcpPeers())(
    "logs connections cut past the most checks of whose they are at once, naming the port and how to find who opens them",
    async () => {
      const { provider, logs } = await startProvider({
        tcp: true,
        grpcLimits: { connectionBudget: new ConnectionBudget(100, 2) },
      });
      const port = Number((await provider.endpoint("svc")).split(":")[1]);
      const unblock = await blockThreadPool();
      try {
        const opened = Array.from({ length: 10 }, () => http2Connect(port));
        await sleep(500);
        expect(logs.warn).toEqual([
          `service "svc": cut a new connection to its gRPC endpoint on 127.0.0.1:${port}: run is asking the kernel whose 2 connections are already, the most it asks about at once, and a service opens one or a few; a process (another user's, or one of yours) is opening connections in a loop: find it with ss -tnpe 'dport = :${port}'`,
        ]);
        unblock();
        const results = await Promise.all(opened.map((c) => c.result));
        expect(results.filter((r) => r === "served").length).toBe(2);
        for (const c of opened) c.socket.destroy();
      } finally {
        unblock();
      }
    },
  );

  it("logs a connection cut for not sending HTTP/2's preface in time, naming the service, the port, what it sent and the fix", async () => {
    const { provider, logs } = await startProvider({ tcp: true, grpcLimits: { handshakeTimeoutMs: 300 } });
    const port = Number((await provider.endpoint("svc")).split(":")[1]);
    // Half of the preface's 24 bytes, and then nothing.
    const socket = connect({ host: "127.0.0.1", port });
    socket.on("error", () => {});
    socket.on("connect", () => socket.write("PRI * HTTP/2"));
    await once(socket, "close");
    expect(logs.warn).toEqual([
      `service "svc": cut a new connection to its gRPC endpoint on 127.0.0.1:${port}: it sent 12 bytes but not all of HTTP/2's client preface within 0.3 s of connecting, and a gRPC client sends its preface at once; such a connection holds one of the endpoint's connections and one of run's open files. Point only gRPC clients (HTTP/2 without TLS) at this endpoint; find what opens such connections with ss -tnpe 'dport = :${port}'`,
    ]);
  });

  it.skipIf(!existsSync("/proc/self/limits"))(
    "serves at most a quarter of a low open-file limit over all of run's endpoints, and says so naming the limit and how to raise it",
    async () => {
      // A provider in a process that may keep 256 files open (as under ulimit -n 256): its gRPC
      // endpoints serve 64 connections together, leaving the rest to the websocket gateway.
      const dist = pathToFileURL(join(fileURLToPath(import.meta.url), "../../dist/index.js")).href;
      const script = `
        import { mkdtempSync, rmSync } from "node:fs";
        import { tmpdir } from "node:os";
        import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
        const { createLocalProvider } = await import(${JSON.stringify(dist)});
        const dir = mkdtempSync(join(tmpdir(), "endpoint-nofile-"));
        const provider = await createLocalProvider({
          project: { name: "test", dir, file: join(dir, "nitric-like.yaml"), services: [], websockets: {} },
          spec: { name: "test", services: [], resources: [], policies: [] },
          logger: { info() {}, warn: (m) => console.log("warn " + m), error: (m) => console.log("error " + m) },
          randomPorts: true,
          tcp: true,
        });
        console.log("endpoint " + (await provider.endpoint("svc")));
        process.stdin.resume();
        process.stdin.on("end", async () => {
          await provider.stop();
          rmSync(dir, { recursive: true, force: true });
        });`;
      const child = spawn("prlimit", ["--nofile=256", process.execPath, "--input-type=module", "-e", script], {
        stdio: ["pipe", "pipe", "inherit"],
      });
      const lines: string[] = [];
      let heard: () => void = () => {};
      child.stdout.setEncoding("utf8");
      let rest = "";
      child.stdout.on("data", (chunk: string) => {
        rest += chunk;
        const parts = rest.split("\n");
        rest = parts.pop() ?? "";
        lines.push(...parts);
        heard();
      });
      const line = async (prefix: string) => {
        const until = Date.now() + 10_000;
        for (;;) {
          const found = lines.find((l) => l.startsWith(prefix));
          if (found !== undefined || Date.now() > until) return found;
          await new Promise<void>((r) => {
            heard = r;
            setTimeout(r, 100);
          });
        }
      };
      const kept: ReturnType<typeof http2Connect>[] = [];
      try {
        const port = Number((await line("endpoint "))?.split(":")[1]);
        expect(port).toBeGreaterThan(0);
        for (let i = 0; i < 64; i++) kept.push(http2Connect(port));
        expect(new Set(await Promise.all(kept.map((c) => c.result)))).toEqual(new Set(["served"]));
        const over = http2Connect(port);
        expect(await over.result).toBe("cut");
        expect(await line("warn ")).toBe(
          `warn service "svc": cut a new connection to its gRPC endpoint: run's gRPC endpoints serve at most 64 connections at once together (each takes one of run's open files, and they may take a quarter of the 256 run may keep open (its ulimit -n), leaving the rest to the websocket gateway's clients and run's own files; raise it with ulimit -n 8000 before nitric-like run to serve 2000), service "svc" holding 64 of them, and a service needs one or a few; make each service reuse its gRPC clients (one per address) rather than open a connection for each call, and close those it no longer uses`,
        );
      } finally {
        for (const c of kept) c.socket.destroy();
        child.stdin.end();
        await Promise.race([once(child, "exit"), sleep(5000)]);
        child.kill();
      }
    },
  );

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
