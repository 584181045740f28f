// The gRPC transport where the suite over every transport (transports.test.ts) cannot look: the
// addresses it is given.
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { open } from "node:fs/promises";
import { type ClientHttp2Stream, connect as connectHttp2 } from "node:http2";
import { connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import * as grpc from "@grpc/grpc-js";
import { Health, HealthCheckResponse_ServingStatus } from "@nitric-like/contracts/health";
import { KvStore } from "@nitric-like/contracts/kvstore";
import { WebsocketHandler } from "@nitric-like/contracts/websockets";
import { describe, expect, it } from "vitest";
import { Client } from "./client.js";
import {
  ArrivingBudget,
  ConnectionBudget,
  canCheckTcpPeers,
  createGrpcTransport,
  type GrpcRefusal,
  GrpcServer,
  HANDSHAKE_TIMEOUT_MS,
  MAX_ARRIVING_BYTES,
  MAX_CONCURRENT_STREAMS,
  MAX_GRPC_CONNECTIONS,
  MAX_GRPC_MESSAGE_BYTES,
  MAX_PEER_CHECKS,
  MAX_PROCESS_GRPC_CONNECTIONS,
  MAX_STATUS_DETAILS_BYTES,
  MAX_UNSENT_STREAM_BYTES,
  processConnectionLimit,
  processConnections,
} from "./grpc.js";
import { openFilesLimit } from "./open-files.js";
import { listsListener } from "./peer-user.js";
import { methodPath, Router } from "./router.js";
import { Code, RpcError } from "./status.js";
import { MAX_UNARY_IN_FLIGHT } from "./waiting.js";

/** A port on 127.0.0.1 that was free a moment ago and that nobody listens on now. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe("createGrpcTransport", () => {
  it("fails calls to an address grpc-js cannot parse with UNAVAILABLE naming it, instead of throwing", async () => {
    const client = new Client(createGrpcTransport(""));
    await expect(client.unary(Health.method.check, { service: "" })).rejects.toMatchObject({
      code: Code.UNAVAILABLE,
      details: 'grpc: cannot call "" (Could not parse target name ""); give the address as host:port or unix:<path>',
    });
    const stream = client.bidi(WebsocketHandler.method.handleEvents);
    stream.on("error", () => {});
    const status = await new Promise<{ code: number }>((resolve) => stream.on("status", resolve));
    expect(status.code).toBe(Code.UNAVAILABLE);
    client.close();
  });

  it("fails calls to an address where nobody listens with UNAVAILABLE", async () => {
    const client = new Client(createGrpcTransport(`127.0.0.1:${await closedPort()}`));
    await expect(client.unary(Health.method.check, { service: "" })).rejects.toMatchObject({
      code: Code.UNAVAILABLE,
    });
    client.close();
  });

  it("keeps at most MAX_UNARY_IN_FLIGHT unary calls open, the rest waiting in its process in order, each answered once; close() cancels the waiting ones", async () => {
    // A real server that holds every check until the test answers it.
    const seen: string[] = [];
    const held: ((error: null, response: { status: HealthCheckResponse_ServingStatus }) => void)[] = [];
    const server = new GrpcServer(
      new Router().service(Health, {
        check(call, respond) {
          seen.push(call.request.service);
          held.push(respond);
        },
      }),
    );
    const address = `127.0.0.1:${await server.bind("127.0.0.1:0")}`;
    const client = new Client(createGrpcTransport(address));
    const n = MAX_UNARY_IN_FLIGHT + 300;
    const answered: string[] = [];
    const calls = Array.from({ length: n }, (_, i) =>
      client.unary(Health.method.check, { service: `s${i}` }).then(() => answered.push(`s${i}`)),
    );
    const until = async (done: () => boolean) => {
      const end = Date.now() + 10_000;
      while (!done() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    };
    await until(() => seen.length >= MAX_UNARY_IN_FLIGHT);
    // Time for any call that was not held back to arrive as well.
    await new Promise((r) => setTimeout(r, 200));
    expect(seen).toHaveLength(MAX_UNARY_IN_FLIGHT);
    expect(new Set(seen)).toEqual(new Set(Array.from({ length: MAX_UNARY_IN_FLIGHT }, (_, i) => `s${i}`)));
    // Each answer lets one waiting call open, until every call is answered; the server never
    // has more than MAX_UNARY_IN_FLIGHT unanswered.
    let responded = 0;
    while (answered.length < n) {
      const now = held.splice(0);
      for (const respond of now) respond(null, { status: HealthCheckResponse_ServingStatus.SERVING });
      responded += now.length;
      await until(() => held.length > 0 || answered.length === n);
      await new Promise((r) => setTimeout(r, 20));
      expect(seen.length - responded).toBeLessThanOrEqual(MAX_UNARY_IN_FLIGHT);
    }
    await Promise.all(calls);
    expect(new Set(answered).size).toBe(n);
    expect(seen).toHaveLength(n);
    expect(new Set(seen).size).toBe(n);

    // close() ends the waiting calls with CANCELLED, and they never reach the server.
    const open = Array.from({ length: MAX_UNARY_IN_FLIGHT }, () =>
      client.unary(Health.method.check, { service: "open" }),
    );
    for (const call of open) call.catch(() => {});
    const waiting = client.unary(Health.method.check, { service: "waiting" });
    await until(() => held.length === MAX_UNARY_IN_FLIGHT);
    client.close();
    await expect(waiting).rejects.toMatchObject({ code: Code.CANCELLED });
    await new Promise((r) => setTimeout(r, 100));
    expect(seen.filter((s) => s === "waiting")).toHaveLength(0);
    server.forceStop();
  });

  it("takes at most MAX_CONCURRENT_STREAMS calls of one client connection at once (HTTP/2's own limit): a client with no cap of its own waits, and every call completes", async () => {
    const held: (() => void)[] = [];
    let seen = 0;
    const server = new GrpcServer(
      new Router().service(Health, {
        check(_call, respond) {
          seen++;
          held.push(() => respond(null, { status: HealthCheckResponse_ServingStatus.SERVING }));
        },
      }),
    );
    const port = await server.bind("127.0.0.1:0");
    // grpc-js itself, not our transport (which holds calls back on its own side).
    const raw = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const n = MAX_CONCURRENT_STREAMS + 300;
    let done = 0;
    const all = new Promise<void>((resolve, reject) => {
      for (let i = 0; i < n; i++)
        raw.makeUnaryRequest(
          methodPath(Health.method.check),
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.alloc(0),
          (error) => {
            if (error) reject(error);
            else if (++done === n) resolve();
          },
        );
    });
    const until = async (ok: () => boolean) => {
      const end = Date.now() + 10_000;
      while (!ok() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    };
    await until(() => seen >= MAX_CONCURRENT_STREAMS);
    await new Promise((r) => setTimeout(r, 200));
    expect(seen).toBe(MAX_CONCURRENT_STREAMS);
    while (done < n) {
      for (const answer of held.splice(0)) answer();
      await until(() => held.length > 0 || done === n);
    }
    await all;
    expect(seen).toBe(n);
    raw.close();
    server.forceStop();
  });
});

/** The uid and gid of "nobody", from /etc/passwd. */
function nobody(): { uid: number; gid: number } {
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith("nobody:"));
  const [, , u, g] = (line ?? "nobody:x:65534:65534").split(":");
  return { uid: Number(u), gid: Number(g) };
}

/**
 * Opens an HTTP/2 connection to 127.0.0.1:`port` from a new process running as `user` and says
 * whether the server answered ("served": its SETTINGS came back) or cut it ("cut").
 */
function http2From(port: number, user: { uid: number; gid: number }): Promise<string> {
  const script = `
    const s = require("node:net").connect({ host: "127.0.0.1", port: ${port} });
    // The client preface and an empty SETTINGS frame.
    s.on("connect", () => s.write(Buffer.concat([Buffer.from("PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n"), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])])));
    s.on("data", () => { process.stdout.write("served"); s.destroy(); });
    s.on("close", () => process.stdout.write("|closed"));
    s.on("error", (e) => process.stdout.write(e.code || e.message));`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", script], { cwd: "/", ...user });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.once("error", reject);
    child.once("exit", () => resolve(out.startsWith("served") ? "served" : "cut"));
  });
}

describe("GrpcServer status details", () => {
  it("cuts details by the bytes grpc-js sends (a CJK or emoji message), never splitting a character, so the client reads the status and the connection serves the next call", async () => {
    // The check fails with the service name the client asked for as its details, whole.
    const server = new GrpcServer(
      new Router().service(Health, {
        check(call, respond) {
          if (call.request.service === "") respond(null, { status: HealthCheckResponse_ServingStatus.SERVING });
          else respond(new RpcError(Code.NOT_FOUND, call.request.service));
        },
      }),
    );
    const address = `127.0.0.1:${await server.bind("127.0.0.1:0")}`;
    // One client: one HTTP/2 connection for every call, as a service's SDK has.
    const client = new Client(createGrpcTransport(address));
    const check = (service: string) =>
      client.unary(Health.method.check, { service }, { timeoutMs: 5000 }).then(
        () => ({ code: Code.OK, details: "" }),
        (error: RpcError) => ({ code: error.code, details: error.details }),
      );
    const messages = [
      "漢字".repeat(1500), // 3,000 characters, 27,000 bytes once percent-encoded
      `a${"😀".repeat(1500)}`, // a pair would be split at 2,048 code units
      "a b ".repeat(2000), // a space is sent as %20
      "ok",
    ];
    for (const message of messages) {
      const { code, details } = await check(message);
      expect(code, `${message.slice(0, 10)}...`).toBe(Code.NOT_FOUND);
      // Whole characters only (encodeURI refuses a lone surrogate), within the bound as sent.
      expect(details).not.toMatch(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/);
      expect(encodeURI(details).length).toBeLessThanOrEqual(MAX_STATUS_DETAILS_BYTES);
      if (message === "ok") expect(details).toBe("ok");
      else {
        const [shown, said] = details.split("... (cut: ");
        expect(message.startsWith(shown ?? "")).toBe(true);
        expect(encodeURI(shown ?? "").length).toBeGreaterThan(MAX_STATUS_DETAILS_BYTES - 100);
        expect(said).toBe(`the message has ${message.length} characters)`);
      }
      // The same connection still serves.
      expect(await check("")).toEqual({ code: Code.OK, details: "" });
    }
    client.close();
    await server.stop(100);
  });
});

/** HTTP/2's client preface: its 24 bytes, then an empty SETTINGS frame. */
const CLIENT_PREFACE = Buffer.concat([
  Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
  Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]),
]);

/**
 * Opens a connection (`{port}` on 127.0.0.1, or a Unix socket's `{path}`) and sends HTTP/2's
 * client preface: "served" once the server's SETTINGS come, "cut" if it closes first.
 */
function http2Connect(target: { port: number } | { path: string }): { result: Promise<string>; socket: Socket } {
  const socket = connect("path" in target ? target : { host: "127.0.0.1", port: target.port });
  socket.on("connect", () => socket.write(CLIENT_PREFACE));
  const result = new Promise<string>((resolve) => {
    socket.once("data", () => resolve("served"));
    socket.once("error", () => resolve("cut"));
    socket.once("close", () => resolve("cut"));
  });
  return { result, socket };
}

/**
 * Occupies every thread of libuv's pool (opening FIFOs nobody writes to) so that no file read of
 * this process finishes, the kernel's tables of connections among them; resolves once they are
 * busy, with what frees them (again a no-op).
 */
async function blockThreadPool(): Promise<() => void> {
  const dir = mkdtempSync(join(tmpdir(), "grpc-block-"));
  const threads = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
  const fifos = Array.from({ length: threads }, (_, i) => join(dir, `f${i}`));
  for (const fifo of fifos) execFileSync("mkfifo", [fifo]);
  const opening = fifos.map((fifo) => open(fifo, "r"));
  let freed = false;
  const free = () => {
    if (freed) return;
    freed = true;
    for (const fifo of fifos) closeSync(openSync(fifo, "w"));
    void Promise.all(opening).then(async (handles) => {
      for (const handle of handles) await handle.close();
      rmSync(dir, { recursive: true, force: true });
    });
  };
  // The pool takes its work in order, so what is queued after the opens waits for them anyway;
  // this waits for the threads to be inside them, as the kernel tells (read here without the pool).
  try {
    await until(() => {
      const inOpen = threadsWaiting("wait_for_partner");
      return inOpen === undefined || inOpen >= threads;
    }, "libuv's threads to block in their FIFO opens");
  } catch (error) {
    free();
    throw error;
  }
  return free;
}

/**
 * How many of this process's threads the kernel says wait in `wchan` (a kernel function's name),
 * undefined where it does not name them (every thread's reads 0).
 */
function threadsWaiting(wchan: string): number | undefined {
  let named = false;
  let waiting = 0;
  for (const task of readdirSync("/proc/self/task")) {
    let where: string;
    try {
      where = readFileSync(`/proc/self/task/${task}/wchan`, "utf8").trim();
    } catch {
      continue;
    }
    if (where !== "" && where !== "0") named = true;
    if (where === wchan) waiting++;
  }
  return named ? waiting : undefined;
}

/** Resolves once `done()` holds, checked every 10 ms; fails saying `what` after `ms`. */
async function until(done: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`waited ${ms} ms for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * What each promise has settled with once `done` holds of those results (undefined for those
 * still waiting), or after `ms`, however long the machine takes to get there.
 */
async function settledOnce<T>(
  promises: Promise<T>[],
  done: (results: (T | undefined)[]) => boolean,
  ms = 10_000,
): Promise<(T | undefined)[]> {
  const results: (T | undefined)[] = promises.map(() => undefined);
  promises.forEach((p, i) => void p.then((r) => (results[i] = r)));
  await until(() => done(results), "the connections to settle", ms).catch(() => {});
  return results;
}

describe("GrpcServer connections", () => {
  it("serves at most MAX_GRPC_CONNECTIONS connections at once across its addresses: past it a new one is cut as it comes, and said", async () => {
    expect(MAX_GRPC_CONNECTIONS).toBe(1000);
    const refused: GrpcRefusal[] = [];
    const server = new GrpcServer(new Router(), { maxConnections: 2, refused: (refusal) => refused.push(refusal) });
    const dir = mkdtempSync(join(tmpdir(), "grpc-connections-"));
    const path = join(dir, "s.sock");
    try {
      expect(await server.bind(`unix:${path}`)).toBe(0);
      const { port } = await server.bindLoopback(0);
      const one = http2Connect({ path });
      expect(await one.result).toBe("served");
      const two = http2Connect({ port });
      expect(await two.result).toBe("served");
      // A third, on either address, is cut before HTTP/2 answers it.
      const three = http2Connect({ port });
      const four = http2Connect({ path });
      expect([await three.result, await four.result]).toEqual(["cut", "cut"]);
      expect(refused).toEqual([
        { kind: "connections", scope: "endpoint", limit: 2 },
        { kind: "connections", scope: "endpoint", limit: 2 },
      ]);
      // One goes: there is room for one more, and calls over it work.
      one.socket.destroy();
      const until = Date.now() + 5000;
      let again = http2Connect({ path });
      while ((await again.result) === "cut" && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 10));
        again = http2Connect({ path });
      }
      expect(await again.result).toBe("served");
      again.socket.destroy();
      const client = new Client(createGrpcTransport(`unix:${path}`));
      await new Promise((r) => setTimeout(r, 50));
      await expect(client.unary(Health.method.check, { service: "" })).rejects.toMatchObject({
        code: Code.UNIMPLEMENTED,
      });
      client.close();
      two.socket.destroy();
    } finally {
      server.forceStop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("shares one bound of connections among the process's servers: past it a new one to any of them is cut as it comes, naming the server holding the most", async () => {
    expect(MAX_PROCESS_GRPC_CONNECTIONS).toBe(2000);
    expect(processConnections.limit).toBe(processConnectionLimit(openFilesLimit()).limit);
    // Every server shares the process's budget unless given its own.
    expect(new GrpcServer(new Router()).connectionBudget).toBe(processConnections);
    const budget = new ConnectionBudget(3);
    const refused: GrpcRefusal[] = [];
    const leaky = new GrpcServer(new Router(), { connectionBudget: budget, name: "leaky" });
    const quiet = new GrpcServer(new Router(), {
      connectionBudget: budget,
      name: "quiet",
      refused: (refusal) => refused.push(refusal),
    });
    const dir = mkdtempSync(join(tmpdir(), "grpc-process-connections-"));
    const paths = { leaky: join(dir, "leaky.sock"), quiet: join(dir, "quiet.sock") };
    try {
      await leaky.bind(`unix:${paths.leaky}`);
      await quiet.bind(`unix:${paths.quiet}`);
      const kept = [http2Connect({ path: paths.leaky }), http2Connect({ path: paths.leaky })];
      const first = http2Connect({ path: paths.quiet });
      expect(await Promise.all([...kept, first].map((c) => c.result))).toEqual(["served", "served", "served"]);
      // The budget is full: the other server cuts a new one, though it holds only one of its own.
      expect(await http2Connect({ path: paths.quiet }).result).toBe("cut");
      expect(refused).toEqual([
        { kind: "connections", scope: "process", limit: 3, busiest: { name: "leaky", connections: 2 } },
      ]);
      // One of the other server's goes: there is room again.
      kept[0]?.socket.destroy();
      const until = Date.now() + 5000;
      let again = http2Connect({ path: paths.quiet });
      while ((await again.result) === "cut" && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 10));
        again = http2Connect({ path: paths.quiet });
      }
      expect(await again.result).toBe("served");
      for (const c of [again, first, ...kept]) c.socket.destroy();
    } finally {
      leaky.forceStop();
      quiet.forceStop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("cuts a connection that has not sent HTTP/2's whole client preface within HANDSHAKE_TIMEOUT_MS (nothing, half of it, or all but its SETTINGS), said, and serves a new one in its place", async () => {
    expect(HANDSHAKE_TIMEOUT_MS).toBe(10_000);
    const refused: GrpcRefusal[] = [];
    const server = new GrpcServer(new Router(), {
      maxConnections: 4,
      connectionBudget: new ConnectionBudget(100),
      handshakeTimeoutMs: 500,
      refused: (refusal) => refused.push(refusal),
    });
    const dir = mkdtempSync(join(tmpdir(), "grpc-handshake-"));
    const path = join(dir, "s.sock");
    try {
      await server.bind(`unix:${path}`);
      const { port } = await server.bindLoopback(0);
      const stalled = (target: { port: number } | { path: string }, bytes: Buffer) => {
        const socket = connect("path" in target ? target : { host: "127.0.0.1", port: target.port });
        socket.on("error", () => {});
        socket.on("connect", () => {
          if (bytes.length > 0) socket.write(bytes);
        });
        const closed = once(socket, "close").then(() => Date.now());
        return { socket, closed };
      };
      const started = Date.now();
      const silent = stalled({ port }, Buffer.alloc(0));
      const half = stalled({ port }, CLIENT_PREFACE.subarray(0, 12));
      // The 24 bytes and a SETTINGS frame's header announcing 6 bytes, of which 3 come.
      const noSettings = stalled(
        { port },
        Buffer.concat([CLIENT_PREFACE.subarray(0, 24), Buffer.from([0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0])]),
      );
      const silentLocal = stalled({ path }, Buffer.alloc(0));
      // Each holds one of the server's connections meanwhile: the bound is full.
      await new Promise((r) => setTimeout(r, 100));
      expect(await http2Connect({ port }).result).toBe("cut");
      const cutAt = await Promise.all([silent, half, noSettings, silentLocal].map((c) => c.closed));
      for (const at of cutAt) {
        expect(at - started).toBeGreaterThanOrEqual(450);
        expect(at - started).toBeLessThan(3000);
      }
      expect(refused).toEqual(
        expect.arrayContaining([
          { kind: "connections", scope: "endpoint", limit: 4 },
          { kind: "connections", scope: "handshake", ms: 500, received: 0, port },
          { kind: "connections", scope: "handshake", ms: 500, received: 12, port },
          { kind: "connections", scope: "handshake", ms: 500, received: 36, port },
          { kind: "connections", scope: "handshake", ms: 500, received: 0, port: undefined },
        ]),
      );
      expect(refused.length).toBe(5);
      // Their slots are free again: new connections over both addresses are served.
      const again = [http2Connect({ port }), http2Connect({ path })];
      expect(await Promise.all(again.map((c) => c.result))).toEqual(["served", "served"]);
      for (const c of again) c.socket.destroy();
    } finally {
      server.forceStop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("keeps serving a client whose preface comes slowly within the deadline, a grpc-js client, and an HTTP/2 connection left idle long past it", async () => {
    const refused: GrpcRefusal[] = [];
    const budget = new ConnectionBudget(100);
    // Well past the 170 ms the slow preface takes, so that a loaded machine still sends it in time.
    const handshakeTimeoutMs = 3000;
    const server = new GrpcServer(
      new Router().service(Health, {
        check(_call, respond) {
          respond(null, { status: HealthCheckResponse_ServingStatus.SERVING });
        },
      }),
      { connectionBudget: budget, handshakeTimeoutMs, refused: (refusal) => refused.push(refusal) },
    );
    const { port } = await server.bindLoopback(0);
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    try {
      // A byte every 5 ms: its preface has all come after about 170 ms.
      const slow = connect({ host: "127.0.0.1", port });
      slow.on("error", () => {});
      let slowClosed = false;
      slow.on("close", () => {
        slowClosed = true;
      });
      const answered = once(slow, "data");
      await once(slow, "connect");
      for (const byte of CLIENT_PREFACE) {
        slow.write(Buffer.from([byte]));
        await sleep(5);
      }
      await answered;
      // A real HTTP/2 session (node:http2) that makes a call, then idles past the deadline.
      const session = connectHttp2(`http://127.0.0.1:${port}`);
      session.on("error", () => {});
      let sessionClosed = false;
      session.on("close", () => {
        sessionClosed = true;
      });
      const call = () =>
        new Promise<string | undefined>((resolve, reject) => {
          const stream = session.request({
            ":method": "POST",
            ":path": methodPath(Health.method.check),
            "content-type": "application/grpc",
            te: "trailers",
          });
          stream.on("trailers", (trailers) => resolve(trailers["grpc-status"] as string | undefined));
          stream.on("error", reject);
          stream.end(Buffer.from([0, 0, 0, 0, 0]));
          stream.resume();
        });
      expect(await call()).toBe("0");
      // grpc-js, our transport's client: a call, an idle connection, another call.
      const client = new Client(createGrpcTransport(`127.0.0.1:${port}`));
      await client.unary(Health.method.check, { service: "" });
      await sleep(handshakeTimeoutMs + 500);
      expect(await call()).toBe("0");
      await client.unary(Health.method.check, { service: "" });
      expect({ slowClosed, sessionClosed }).toEqual({ slowClosed: false, sessionClosed: false });
      // The three connections, each the one it was.
      expect(budget.held).toBe(3);
      expect(refused).toEqual([]);
      client.close();
      session.close();
      slow.destroy();
    } finally {
      server.forceStop();
    }
  });

  it("lowers the process's bound of connections to a quarter of a low open-file limit, saying the limit, and keeps MAX_PROCESS_GRPC_CONNECTIONS under a high one", () => {
    expect(processConnectionLimit(1024)).toEqual({ limit: 256, openFiles: 1024 });
    expect(processConnectionLimit(7999)).toEqual({ limit: 1999, openFiles: 7999 });
    expect(processConnectionLimit(8000)).toEqual({ limit: MAX_PROCESS_GRPC_CONNECTIONS });
    expect(processConnectionLimit(1_048_576)).toEqual({ limit: MAX_PROCESS_GRPC_CONNECTIONS });
    // Where the system does not tell its limit.
    expect(processConnectionLimit(undefined)).toEqual({ limit: MAX_PROCESS_GRPC_CONNECTIONS });
    expect(processConnectionLimit(2)).toEqual({ limit: 1, openFiles: 2 });
  });

  it("refuses an address it cannot listen on with the forms it takes", async () => {
    const server = new GrpcServer(new Router());
    await expect(server.bind("nowhere")).rejects.toThrow(
      'grpc: cannot listen on "nowhere"; give the address as <host>:<port> or unix:<path>',
    );
    server.forceStop();
  });
});

describe("GrpcServer.bindLoopback", () => {
  const isRoot = process.getuid?.() === 0;
  it.skipIf(!isRoot || !canCheckTcpPeers())(
    "serves this user's processes on 127.0.0.1 and cuts another user's before any call, saying whose it was",
    async () => {
      const server = new GrpcServer(
        new Router().service(Health, {
          check: (_call, respond) => respond(null, { status: HealthCheckResponse_ServingStatus.SERVING }),
        }),
      );
      const refused: (number | undefined)[] = [];
      const { port, sameUserOnly } = await server.bindLoopback(0, (uid) => refused.push(uid));
      expect(sameUserOnly).toBe(true);
      // This user's process (this one) is served, call after call.
      const client = new Client(createGrpcTransport(`127.0.0.1:${port}`));
      for (let i = 0; i < 3; i++) {
        expect(await client.unary(Health.method.check, { service: "" })).toMatchObject({
          status: HealthCheckResponse_ServingStatus.SERVING,
        });
      }
      client.close();
      // Another user's is cut before HTTP/2 begins: the server never answers its preface.
      expect(await http2From(port, nobody())).toBe("cut");
      expect(refused).toEqual([nobody().uid]);
      // As a control: the same raw client as this user is served.
      expect(await http2From(port, { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 })).toBe("served");
      await server.stop(100);
    },
  );
  it.skipIf(!canCheckTcpPeers())(
    "counts connections still waiting for their check against its bound: past it a new one is cut at once, before any check answers",
    async () => {
      const refused: GrpcRefusal[] = [];
      const server = new GrpcServer(new Router(), {
        maxConnections: 3,
        connectionBudget: new ConnectionBudget(100),
        refused: (refusal) => refused.push(refusal),
      });
      const { port, sameUserOnly } = await server.bindLoopback(0);
      expect(sameUserOnly).toBe(true);
      const unblock = await blockThreadPool();
      try {
        // No check answers while the thread pool is busy: every connection waits for one.
        const opened = Array.from({ length: 20 }, () => http2Connect({ port }));
        const settled = await settledOnce(
          opened.map((c) => c.result),
          (results) => results.filter((r) => r !== undefined).length >= 17,
        );
        expect(settled.filter((r) => r === "cut").length).toBe(17);
        expect(settled.filter((r) => r === undefined).length).toBe(3);
        expect(refused).toEqual(Array(17).fill({ kind: "connections", scope: "endpoint", limit: 3 }));
        unblock();
        // Their checks answer: the three are served.
        const results = await Promise.all(opened.map((c) => c.result));
        expect(results.filter((r) => r === "served").length).toBe(3);
        for (const c of opened) c.socket.destroy();
      } finally {
        unblock();
        server.forceStop();
      }
    },
  );

  it.skipIf(!canCheckTcpPeers())(
    "asks the kernel about at most MAX_PEER_CHECKS connections at once: past it a new one is cut at once and said, while its Unix socket still serves",
    async () => {
      expect(MAX_PEER_CHECKS).toBe(500);
      const refused: GrpcRefusal[] = [];
      const server = new GrpcServer(new Router(), {
        connectionBudget: new ConnectionBudget(100, 3),
        refused: (refusal) => refused.push(refusal),
      });
      const dir = mkdtempSync(join(tmpdir(), "grpc-peer-checks-"));
      const path = join(dir, "s.sock");
      await server.bind(`unix:${path}`);
      const { port } = await server.bindLoopback(0);
      const unblock = await blockThreadPool();
      try {
        const opened = Array.from({ length: 10 }, () => http2Connect({ port }));
        const settled = await settledOnce(
          opened.map((c) => c.result),
          (results) => results.filter((r) => r !== undefined).length >= 7,
        );
        expect(settled.filter((r) => r === "cut").length).toBe(7);
        expect(settled.filter((r) => r === undefined).length).toBe(3);
        expect(refused).toEqual(Array(7).fill({ kind: "connections", scope: "checks", limit: 3, port }));
        // The owner-only Unix socket needs no check: this user's services still connect there.
        const local = http2Connect({ path });
        expect(await local.result).toBe("served");
        unblock();
        const results = await Promise.all(opened.map((c) => c.result));
        expect(results.filter((r) => r === "served").length).toBe(3);
        for (const c of [local, ...opened]) c.socket.destroy();
        // Every check answered: a new connection is checked again, and served.
        const later = http2Connect({ port });
        expect(await later.result).toBe("served");
        later.socket.destroy();
      } finally {
        unblock();
        server.forceStop();
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  it.skipIf(!canCheckTcpPeers())(
    "checks a burst of 2,000 connections at once with one read of the kernel's tables at a time, serving each without gigabytes of memory",
    async () => {
      const n = 2000;
      // More than MAX_GRPC_CONNECTIONS: the checks are what is measured here.
      const server = new GrpcServer(new Router(), {
        maxConnections: n,
        connectionBudget: new ConnectionBudget(n, n),
      });
      const { port, sameUserOnly } = await server.bindLoopback(0);
      expect(sameUserOnly).toBe(true);
      const peakBefore = process.resourceUsage().maxRSS;
      const started = Date.now();
      const sockets: Socket[] = [];
      // Served: the server's HTTP/2 SETTINGS come, which it sends only once the check let it in.
      const served: Promise<boolean>[] = [];
      // 200 at a time, each wave once its connections are accepted by the kernel: more at once
      // would overflow the listen backlog, and the SYNs it drops are sent again only seconds later.
      for (let wave = 0; wave < n; wave += 200) {
        const connected: Promise<unknown>[] = [];
        for (let i = 0; i < 200; i++) {
          const socket = connect({ host: "127.0.0.1", port });
          sockets.push(socket);
          // The server answers once the client's preface has come (HANDSHAKE_TIMEOUT_MS).
          socket.on("connect", () => socket.write(CLIENT_PREFACE));
          connected.push(once(socket, "connect"));
          served.push(
            new Promise<boolean>((resolve) => {
              socket.once("data", () => resolve(true));
              socket.once("error", () => resolve(false));
              socket.once("close", () => resolve(false));
            }),
          );
        }
        await Promise.all(connected);
      }
      const answered = await Promise.all(served);
      const seconds = (Date.now() - started) / 1000;
      const grewMb = (process.resourceUsage().maxRSS - peakBefore) / 1024;
      for (const socket of sockets) socket.destroy();
      await server.stop(100);
      expect(answered.filter(Boolean).length).toBe(n);
      // One read of the tables per connection (each a copy of a table of 4,000 rows or more, which
      // the kernel is slow to write) took more than a minute and gigabytes here; one read for
      // every connection waiting, a few seconds and a few megabytes.
      expect(grewMb).toBeLessThan(300);
      expect(seconds).toBeLessThan(20);
    },
    120_000,
  );
});

describe("listsListener", () => {
  it.skipIf(!canCheckTcpPeers())(
    "finds a socket listening on 127.0.0.1 in the kernel's tables, and no listener on a port closed again",
    async () => {
      const server = createServer();
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const { port } = server.address() as { port: number };
      expect(await listsListener(port)).toBe(true);
      await new Promise((resolve) => server.close(resolve));
      expect(await listsListener(port)).toBe(false);
    },
  );
});

/** An HTTP/2 frame: 9 bytes of header (length, type, flags, stream) and the payload. */
function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK string literal, not Huffman-coded (7-bit length prefix; these are all short). */
const literal = (text: string) => Buffer.concat([Buffer.from([text.length]), Buffer.from(text)]);

/**
 * Opens a gRPC call to `path` on 127.0.0.1:`port` over a bare socket, with an empty request,
 * and then never sends WINDOW_UPDATE: the server may send the stream 64 KB and no more.
 */
async function stalledCall(port: number, path: string): Promise<Socket> {
  const socket = connect({ host: "127.0.0.1", port });
  await new Promise((resolve) => socket.once("connect", resolve));
  const headers = Buffer.concat([
    Buffer.from([0x83, 0x86]), // :method POST, :scheme http (static table)
    Buffer.from([0x04]), // :path, a literal value
    literal(path),
    Buffer.from([0x01]), // :authority
    literal("localhost"),
    Buffer.from([0x0f, 0x10]), // content-type (static index 31)
    literal("application/grpc"),
    Buffer.from([0x00]), // te, a literal name
    literal("te"),
    literal("trailers"),
  ]);
  let acked = false;
  socket.on("data", () => {
    // Acknowledge the server's SETTINGS once; read (and drop) the rest, so TCP does not stall.
    if (!acked) socket.write(frame(4, 1, 0, Buffer.alloc(0)));
    acked = true;
  });
  socket.on("error", () => {});
  socket.write(
    Buffer.concat([
      Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
      frame(4, 0, 0, Buffer.alloc(0)), // SETTINGS: the defaults (a 64 KB window per stream)
      frame(1, 4, 1, headers), // HEADERS, END_HEADERS, stream 1
      frame(0, 1, 1, Buffer.alloc(5)), // DATA, END_STREAM: an empty message
    ]),
  );
  return socket;
}

describe("GrpcServer flow control", () => {
  it("holds back a server stream's writer while its client grants no flow-control credit: flushed() waits", async () => {
    const n = 40_000;
    const key = "k".repeat(1024);
    let written = 0;
    let finished = false;
    const unused = (_call: unknown, respond: (error: unknown) => void) => respond(new Error("unused"));
    const server = new GrpcServer(
      new Router().service(KvStore, {
        getValue: unused,
        setValue: unused,
        deleteKey: unused,
        scanKeys: async (call) => {
          while (written < n && !call.ended) {
            call.write({ key });
            if (++written % 16 === 0) await call.flushed();
          }
          finished = true;
          call.end();
        },
      }),
    );
    const port = await server.bind("127.0.0.1:0");
    // A client that never grants HTTP/2 flow-control credit past the first 64 KB of its stream
    // (the window every stream starts with), as one that stops reading does.
    const socket = await stalledCall(port, methodPath(KvStore.method.scanKeys));
    await new Promise((r) => setTimeout(r, 500));
    // The writer waits on flushed(): it has written what the server holds for a client that does
    // not read (MAX_UNSENT_STREAM_BYTES), the window's worth and a batch, not the 40 MB.
    expect(written).toBeLessThan(MAX_UNSENT_STREAM_BYTES / 1024 + 100);
    expect(finished).toBe(false);
    // A client that reads gets every message.
    const reader = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    written = 0;
    finished = false;
    let received = 0;
    await new Promise<void>((resolve) => {
      const stream = reader.makeServerStreamRequest(
        methodPath(KvStore.method.scanKeys),
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.alloc(0),
      );
      stream.on("data", () => {
        received++;
      });
      stream.on("status", () => resolve());
    });
    expect(received).toBe(n);
    expect(finished).toBe(true);
    socket.destroy();
    reader.close();
    server.forceStop();
  });
});

/** A raw HTTP/2 gRPC call to `path`: the request sent as the test writes it, and what came back. */
function rawCall(port: number, path: string, headers: Record<string, string> = {}) {
  const session = connectHttp2(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  const stream: ClientHttp2Stream = session.request({
    ":method": "POST",
    ":path": path,
    "content-type": "application/grpc",
    te: "trailers",
    ...headers,
  });
  stream.on("error", () => {});
  stream.resume();
  const status = new Promise<{ code: number; details: string }>((resolve) => {
    const read = (headers: Record<string, unknown>) => {
      const code = headers["grpc-status"];
      if (code !== undefined)
        resolve({ code: Number(code), details: decodeURIComponent(String(headers["grpc-message"] ?? "")) });
    };
    stream.on("response", read);
    stream.on("trailers", read);
  });
  const closed = new Promise<number>((resolve) => stream.on("close", () => resolve(stream.rstCode ?? -1)));
  return { stream, status, closed, close: () => session.destroy() };
}

/** A gRPC message's 5-byte prefix: not compressed, `length` bytes long. */
function prefix(length: number): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(length, 1);
  return head;
}

describe("GrpcServer requests still arriving", () => {
  it("holds at most its budget of requests still arriving, across connections: past it the call holding the most ends with RESOURCE_EXHAUSTED, saying the bound and the fix, and lets its bytes go while other calls go on", async () => {
    // The process's budget is 4 of the largest messages (arriving.ts); this server gets 1 MB of its own.
    expect(MAX_ARRIVING_BYTES).toBe(256 * 1024 * 1024);
    const budget = 1024 * 1024;
    const stored: number[] = [];
    // What the server says it refused, for `run`'s log.
    const refused: GrpcRefusal[] = [];
    const unused = (_call: unknown, respond: (error: unknown) => void) => respond(new Error("unused"));
    const server = new GrpcServer(
      new Router().service(KvStore, {
        getValue: unused,
        deleteKey: unused,
        scanKeys: (call) => call.end(),
        setValue(call, respond) {
          stored.push(call.request.ref?.key.length ?? 0);
          respond(null, {});
        },
      }),
      { maxArrivingBytes: budget, refused: (refusal) => refused.push(refusal) },
    );
    const port = await server.bind("127.0.0.1:0");
    const setValue = methodPath(KvStore.method.setValue);
    const request = (keyBytes: number) =>
      Buffer.from(
        KvStore.method.setValue.input.encode({ ref: { store: "s", key: "k".repeat(keyBytes) }, content: {} }),
      );
    const until = async (done: () => boolean) => {
      const end = Date.now() + 10_000;
      while (!done() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
    };
    // Two connections of a service that sends two large kv sets slowly, each on its own.
    const bigger = request(800_000);
    const smaller = request(700_000);
    const a = rawCall(port, setValue);
    const b = rawCall(port, setValue);
    a.stream.write(Buffer.concat([prefix(bigger.length), bigger.subarray(0, 600_000)]));
    b.stream.write(Buffer.concat([prefix(smaller.length), smaller.subarray(0, 300_000)]));
    await until(() => server.arriving.held === 900_010);
    expect(server.arriving.held).toBe(900_010);
    // A whole call beside them is not held back.
    const client = new Client(createGrpcTransport(`127.0.0.1:${port}`));
    await client.unary(KvStore.method.setValue, { ref: { store: "s", key: "small" }, content: {} });
    expect(stored).toEqual([5]);
    // b's next bytes take the total over the budget: a, which holds the most, is cut, and told why.
    b.stream.write(smaller.subarray(300_000, 500_000));
    const cut = await a.status;
    expect(cut.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(cut.details).toBe(
      `grpc: cut this call at 600005 bytes of a ${bigger.length}-byte message: requests still arriving at the provider's gRPC endpoints held over 1 MB together, the most it holds at once, and the calls to this endpoint held the most of them, this call the most of those; send large messages (kv values) one after another rather than many at once, make them smaller, and finish or cancel the calls you start`,
    );
    expect(refused).toEqual([{ kind: "arriving", code: Code.RESOURCE_EXHAUSTED, details: cut.details }]);
    // a's bytes are let go, and a is told to stop sending (RST_STREAM, NO_ERROR); b's keep coming.
    expect(await a.closed).toBe(0);
    await until(() => server.arriving.held === 500_005);
    expect(server.arriving.held).toBe(500_005);
    // b completes, and so does a large set that fits beside it.
    b.stream.end(smaller.subarray(500_000));
    expect((await b.status).code).toBe(Code.OK);
    await client.unary(KvStore.method.setValue, { ref: { store: "s", key: "k".repeat(900_000) }, content: {} });
    expect(stored).toEqual([5, 700_000, 900_000]);
    expect(server.arriving.held).toBe(0);
    a.close();
    b.close();
    client.close();
    server.forceStop();
  });

  it("makes the server whose calls hold the most together pay when the shared budget is full: another server's larger call goes through while the calls of one that keeps many open are cut", async () => {
    const budget = new ArrivingBudget(1024 * 1024);
    const stored: number[] = [];
    const refused = { buggy: [] as GrpcRefusal[], good: [] as GrpcRefusal[] };
    const unused = (_call: unknown, respond: (error: unknown) => void) => respond(new Error("unused"));
    const serve = (name: keyof typeof refused) =>
      new GrpcServer(
        new Router().service(KvStore, {
          getValue: unused,
          deleteKey: unused,
          scanKeys: (call) => call.end(),
          setValue(call, respond) {
            stored.push(call.request.ref?.key.length ?? 0);
            respond(null, {});
          },
        }),
        { arrivingBudget: budget, refused: (refusal) => refused[name].push(refusal) },
      );
    const buggy = serve("buggy");
    const good = serve("good");
    const buggyPort = await buggy.bind("127.0.0.1:0");
    const goodPort = await good.bind("127.0.0.1:0");
    const setValue = methodPath(KvStore.method.setValue);
    const until = async (done: () => boolean) => {
      const end = Date.now() + 10_000;
      while (!done() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
    };
    // The buggy service keeps 10 calls open, each 90,000 bytes into a 100,000-byte message.
    const calls = Array.from({ length: 10 }, () => rawCall(buggyPort, setValue));
    for (const call of calls) call.stream.write(Buffer.concat([prefix(100_000), Buffer.alloc(90_000)]));
    await until(() => budget.held === 900_050);
    expect(budget.held).toBe(900_050);
    // The other service's 400 KB set is larger than any of those calls, yet goes through.
    const client = new Client(createGrpcTransport(`127.0.0.1:${goodPort}`));
    await client.unary(KvStore.method.setValue, { ref: { store: "s", key: "k".repeat(400_000) }, content: {} });
    expect(stored).toEqual([400_000]);
    expect(refused.good).toEqual([]);
    // The buggy service's calls paid, each told why.
    const ended = refused.buggy.length;
    expect(ended).toBeGreaterThanOrEqual(3);
    for (const refusal of refused.buggy)
      expect(refusal).toMatchObject({
        kind: "arriving",
        details: expect.stringContaining("the calls to this endpoint held the most of them"),
      });
    await until(() => budget.held === (10 - ended) * 90_005);
    expect(budget.held).toBe((10 - ended) * 90_005);
    for (const call of calls) call.close();
    await until(() => budget.held === 0);
    expect(budget.held).toBe(0);
    client.close();
    buggy.forceStop();
    good.forceStop();
  });

  it("counts a stream's messages by their gRPC framing however they are cut: a whole one holds nothing, a part holds its bytes, a cancelled call none", async () => {
    const ids: string[] = [];
    const server = new GrpcServer(
      new Router().service(WebsocketHandler, {
        handleEvents(call) {
          call.onMessage((message) => ids.push(message.id));
        },
      }),
      { maxArrivingBytes: 1024 * 1024 },
    );
    const port = await server.bind("127.0.0.1:0");
    const framed = (id: string) => {
      const bytes = Buffer.from(WebsocketHandler.method.handleEvents.input.encode({ id }));
      return Buffer.concat([prefix(bytes.length), bytes]);
    };
    const until = async (done: () => boolean) => {
      const end = Date.now() + 10_000;
      while (!done() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
    };
    const call = rawCall(port, methodPath(WebsocketHandler.method.handleEvents));
    // Three whole messages and the first 1,000 bytes of a fourth, cut inside prefixes and bodies.
    const whole = Buffer.concat([framed(""), framed("a"), framed("b".repeat(70_000))]);
    const bytes = Buffer.concat([whole, framed("c".repeat(5000)).subarray(0, 1000)]);
    const cuts = [0, 2, 3, 6, 9, 40_000, 70_010, whole.length + 3, bytes.length];
    for (let i = 1; i < cuts.length; i++) {
      call.stream.write(bytes.subarray(cuts[i - 1], cuts[i]));
      await new Promise((r) => setTimeout(r, 5));
    }
    await until(() => ids.length === 3 && server.arriving.held === 1000);
    expect(ids).toEqual(["", "a", "b".repeat(70_000)]);
    expect(server.arriving.held).toBe(1000);
    // The client goes away mid-message: its bytes are let go.
    call.close();
    await until(() => server.arriving.held === 0);
    expect(server.arriving.held).toBe(0);
    server.forceStop();
  });

  it("refuses a compressed message before inflating it, with UNIMPLEMENTED and the fix: a few KB of gzip could take 64 MB", async () => {
    const stored: string[] = [];
    const unused = (_call: unknown, respond: (error: unknown) => void) => respond(new Error("unused"));
    const server = new GrpcServer(
      new Router().service(KvStore, {
        getValue: unused,
        deleteKey: unused,
        scanKeys: (call) => call.end(),
        setValue(call, respond) {
          stored.push(call.request.ref?.key ?? "");
          respond(null, {});
        },
      }),
    );
    const port = await server.bind("127.0.0.1:0");
    const setValue = methodPath(KvStore.method.setValue);
    const packed = gzipSync(KvStore.method.setValue.input.encode({ ref: { store: "s", key: "k" }, content: {} }));
    const head = prefix(packed.length);
    head[0] = 1;
    const call = rawCall(port, setValue, { "grpc-encoding": "gzip" });
    call.stream.end(Buffer.concat([head, packed]));
    expect(await call.status).toEqual({
      code: Code.UNIMPLEMENTED,
      details:
        "grpc: this endpoint takes uncompressed messages only (a compressed one could inflate to far more than it sent); turn compression off in the client (no default compression algorithm, grpc-encoding identity)",
    });
    expect(stored).toEqual([]);
    expect(server.arriving.held).toBe(0);
    // The same request uncompressed is served.
    const plain = Buffer.from(KvStore.method.setValue.input.encode({ ref: { store: "s", key: "k" }, content: {} }));
    const again = rawCall(port, setValue);
    again.stream.end(Buffer.concat([prefix(plain.length), plain]));
    expect((await again.status).code).toBe(Code.OK);
    expect(stored).toEqual(["k"]);
    call.close();
    again.close();
    server.forceStop();
  });

  it("ends a call whose message announces more than MAX_GRPC_MESSAGE_BYTES as soon as its prefix is read, with RESOURCE_EXHAUSTED, the limit and the fix, and tells the client to stop sending", async () => {
    const refused: GrpcRefusal[] = [];
    const unused = (_call: unknown, respond: (error: unknown) => void) => respond(new Error("unused"));
    const server = new GrpcServer(
      new Router().service(KvStore, {
        getValue: unused,
        deleteKey: unused,
        scanKeys: (call) => call.end(),
        setValue: unused,
      }),
      { refused: (refusal) => refused.push(refusal) },
    );
    const port = await server.bind("127.0.0.1:0");
    const call = rawCall(port, methodPath(KvStore.method.setValue));
    call.stream.write(Buffer.concat([prefix(MAX_GRPC_MESSAGE_BYTES + 1), Buffer.alloc(1000)]));
    const status = await call.status;
    expect(status).toEqual({
      code: Code.RESOURCE_EXHAUSTED,
      details: `grpc: this call's message is ${MAX_GRPC_MESSAGE_BYTES + 1} bytes, over the ${MAX_GRPC_MESSAGE_BYTES} (64 MB) a message to the provider's gRPC endpoint may take; send smaller messages (split a large kv value over several keys)`,
    });
    expect(refused).toEqual([{ kind: "too-large", code: Code.RESOURCE_EXHAUSTED, details: status.details }]);
    // Told to stop (RST_STREAM, NO_ERROR) rather than left to send 64 MB more for nothing, which
    // the budget would count as held meanwhile.
    const sending = setInterval(() => call.stream.write(Buffer.alloc(64 * 1024)), 1);
    const closed = await Promise.race([call.closed, new Promise((r) => setTimeout(() => r("still open"), 3000))]);
    clearInterval(sending);
    expect(closed).toBe(0);
    expect(server.arriving.held).toBe(0);
    // A message of exactly the limit's size is let in as far as the prefix.
    const fits = rawCall(port, methodPath(KvStore.method.setValue));
    fits.stream.write(Buffer.concat([prefix(MAX_GRPC_MESSAGE_BYTES), Buffer.alloc(1000)]));
    const until = Date.now() + 5000;
    while (server.arriving.held !== 1005 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    expect(server.arriving.held).toBe(1005);
    call.close();
    fits.close();
    server.forceStop();
  });
});
