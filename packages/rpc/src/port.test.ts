// The MessagePort transport where the suite over every transport (transports.test.ts) cannot
// look: the frames on the port, a provider that never answers or goes away, and frames from a
// hostile peer (a service's thread runs the app's code: whatever it posts is checked).
import { MessageChannel } from "node:worker_threads";
import { codecOf } from "@nitric-like/contracts/codec";
import { Health, HealthCheckRequestSchema, HealthCheckResponseSchema } from "@nitric-like/contracts/health";
import { ClientMessageSchema, ServerMessageSchema, WebsocketHandler } from "@nitric-like/contracts/websockets";
import { describe, expect, it } from "vitest";
import { Client } from "./client.js";
import { createPortTransport, LocalPort, type PortLike, PortServer } from "./port.js";
import { Router } from "./router.js";
import { Code } from "./status.js";
import { MAX_UNARY_IN_FLIGHT } from "./waiting.js";

const CHECK = "/grpc.health.v1.Health/Check";
const EVENTS = "/nitric.proto.websockets.v1.WebsocketHandler/HandleEvents";
const [OPEN, MESSAGE, HALF_CLOSE, CANCEL, STATUS] = [0, 1, 2, 3, 4];

/** One end of a port, driven by the test: what is posted on it is kept, what it receives is handed in. */
class HandPort implements PortLike {
  readonly posted: unknown[][] = [];
  refs = 0;
  private readonly listeners: { message: ((value: unknown) => void)[]; close: (() => void)[] } = {
    message: [],
    close: [],
  };

  postMessage(value: unknown): void {
    this.posted.push(value as unknown[]);
  }

  on(event: "message" | "close", listener: (value: unknown) => void): this {
    if (event === "message") this.listeners.message.push(listener);
    else this.listeners.close.push(listener as () => void);
    return this;
  }

  ref(): void {
    this.refs = 1;
  }

  unref(): void {
    this.refs = 0;
  }

  /** The other end went away: the port's close listeners hear it. */
  close(): void {
    for (const listener of this.listeners.close) listener();
  }

  /** Hands `value` to the port's listeners, as a frame from the other thread. */
  receive(value: unknown): void {
    for (const listener of this.listeners.message) listener(value);
  }
}

/** Health answers SERVING; the handler stream echoes each message's id and counts what it heard. */
function makeRouter(heard: string[]): Router {
  return new Router()
    .service(Health, {
      check: (call, respond) => {
        heard.push(`check ${call.request.service}`);
        respond(null, { status: 1 });
      },
    })
    .service(WebsocketHandler, {
      handleEvents(call) {
        call.onMessage((message) => {
          heard.push(`message ${message.id}`);
          call.write({ id: message.id });
        });
        call.onEnd(() => heard.push("end"));
        call.onClose(() => heard.push(`close cancelled=${call.cancelled}`));
      },
    });
}

const encodeCheck = (service: string) => codecOf(HealthCheckRequestSchema).encode({ service });
const encodeEvent = (id: string) => codecOf(ClientMessageSchema).encode({ id });

describe("createPortTransport", () => {
  it("fails a call past its deadline with DEADLINE_EXCEEDED and tells the server to cancel it", async () => {
    const { port1, port2 } = new MessageChannel();
    const frames: unknown[][] = [];
    port1.on("message", (f: unknown[]) => frames.push(f));
    const client = new Client(createPortTransport(port2));
    const call = client.unary(Health.method.check, { service: "x" }, { timeoutMs: 20 });
    await expect(call).rejects.toMatchObject({ code: Code.DEADLINE_EXCEEDED });
    while (frames.length < 2) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 20));
    expect(frames.map((f) => f[0])).toEqual([OPEN, CANCEL]);
    expect(frames[0]?.[2]).toBe(CHECK);
    expect(frames[1]?.[1]).toBe(frames[0]?.[1]);
    port1.close();
  });

  it("fails calls in flight with UNAVAILABLE when the provider's end closes, and refuses new ones", async () => {
    const { port1, port2 } = new MessageChannel();
    const client = new Client(createPortTransport(port2));
    const call = client.unary(Health.method.check, { service: "x" });
    const stream = client.bidi(WebsocketHandler.method.handleEvents);
    stream.on("error", () => {});
    const status = new Promise<number>((resolve) => stream.on("status", (s) => resolve(s.code)));
    port1.close();
    await expect(call).rejects.toMatchObject({ code: Code.UNAVAILABLE });
    expect(await status).toBe(Code.UNAVAILABLE);
    await expect(client.unary(Health.method.check, { service: "x" })).rejects.toMatchObject({
      code: Code.UNAVAILABLE,
    });
  });

  it("keeps at most MAX_UNARY_IN_FLIGHT unary calls open, the rest waiting in order, each answered once", async () => {
    const port = new HandPort();
    const transport = createPortTransport(port);
    const client = new Client(transport);
    const n = MAX_UNARY_IN_FLIGHT + 500;
    const answered: string[] = [];
    const calls = Array.from({ length: n }, (_, i) =>
      client.unary(Health.method.check, { service: `s${i}` }).then(() => answered.push(`s${i}`)),
    );
    const opens = () =>
      port.posted.flatMap((f) => (f[0] === 5 ? (f[2] as unknown[][]) : [f])).filter((f) => f[0] === OPEN);
    // The frames of a turn go out in its check phase (the batcher's setImmediate); a timer of 0 ms
    // can run before that phase, so the test waits for two check phases instead.
    const batched = async () => {
      for (let i = 0; i < 2; i++) await new Promise((r) => setImmediate(r));
    };
    await batched();
    expect(opens()).toHaveLength(MAX_UNARY_IN_FLIGHT);
    expect(transport.inFlight).toBe(n);
    // A stream is never held back.
    const stream = client.bidi(WebsocketHandler.method.handleEvents);
    stream.on("error", () => {});
    await batched();
    expect(opens().filter((f) => f[2] === EVENTS)).toHaveLength(1);
    // Each answer lets one waiting call open, in the order they were made, until all are answered.
    const ok = codecOf(HealthCheckResponseSchema).encode({ status: 1 });
    let answeredFrames = 0;
    while (answeredFrames < n) {
      const open = opens().filter((f) => f[2] === CHECK);
      for (const frame of open.slice(answeredFrames)) port.receive([STATUS, frame[1], Code.OK, "", ok]);
      answeredFrames = open.length;
      await batched();
      expect(opens().filter((f) => f[2] === CHECK).length - answeredFrames).toBeLessThanOrEqual(MAX_UNARY_IN_FLIGHT);
    }
    await Promise.all(calls);
    expect(answered).toEqual(Array.from({ length: n }, (_, i) => `s${i}`));
    const services = opens()
      .filter((f) => f[2] === CHECK)
      .map((f) => codecOf(HealthCheckRequestSchema).decode(f[3] as Uint8Array).service);
    expect(services).toEqual(Array.from({ length: n }, (_, i) => `s${i}`));
    stream.cancel();
  });

  it("ends waiting calls with the transport: cancelled on close(), unavailable when the port closes, and a cancelled one never opens", async () => {
    const port = new HandPort();
    const transport = createPortTransport(port);
    const client = new Client(transport);
    const held = Array.from({ length: MAX_UNARY_IN_FLIGHT }, () => client.unary(Health.method.check, { service: "" }));
    for (const h of held) h.catch(() => {});
    // The held calls' frames leave at the end of the turn (setImmediate); on a loaded machine the
    // 10 ms deadline below could otherwise fire first, and close() then drop the unsent batch.
    await new Promise((resolve) => setImmediate(resolve));
    // Past its deadline while it waits: DEADLINE_EXCEEDED, and it never reaches the provider.
    const late = client.unary(Health.method.check, { service: "late" }, { timeoutMs: 10 });
    await expect(late).rejects.toMatchObject({ code: Code.DEADLINE_EXCEEDED });
    const waiting = client.unary(Health.method.check, { service: "waiting" });
    transport.close();
    await expect(waiting).rejects.toMatchObject({ code: Code.CANCELLED });
    const frames = port.posted.flatMap((f) => (f[0] === 5 ? (f[2] as unknown[][]) : [f]));
    expect(frames.filter((f) => f[0] === OPEN)).toHaveLength(MAX_UNARY_IN_FLIGHT);

    const closing = new HandPort();
    const second = new Client(createPortTransport(closing));
    for (let i = 0; i < MAX_UNARY_IN_FLIGHT; i++) second.unary(Health.method.check, { service: "" }).catch(() => {});
    const queued = second.unary(Health.method.check, { service: "queued" });
    closing.close();
    await expect(queued).rejects.toMatchObject({ code: Code.UNAVAILABLE });
  });

  it("keeps its port referenced only while calls are in flight", async () => {
    const port = new HandPort();
    const client = new Client(createPortTransport(port));
    expect(port.refs).toBe(0);
    const call = client.unary(Health.method.check, { service: "" });
    expect(port.refs).toBe(1);
    const [, id] = port.posted[0] ?? [];
    port.receive([STATUS, id, Code.OK, "", codecOf(HealthCheckResponseSchema).encode({ status: 1 })]);
    await expect(call).resolves.toMatchObject({ status: 1 });
    expect(port.refs).toBe(0);
  });

  it("ignores malformed frames from the provider without throwing", async () => {
    const port = new HandPort();
    const client = new Client(createPortTransport(port));
    const call = client.unary(Health.method.check, { service: "" });
    let settled = false;
    const settle = () => {
      settled = true;
    };
    call.then(settle, settle);
    const id = port.posted[0]?.[1] as number;
    for (const frame of [
      null,
      undefined,
      7,
      "status",
      {},
      [],
      [STATUS],
      [STATUS, String(id), Code.OK, ""],
      [STATUS, id + 1, Code.OK, ""],
      [STATUS, id, "0", ""],
      [STATUS, id, 1.5, ""],
      [STATUS, id, Code.OK, 42],
      [STATUS, id, Code.OK, "", "not bytes"],
      [MESSAGE, id, "not bytes"],
      [99, id],
    ]) {
      expect(() => port.receive(frame)).not.toThrow();
    }
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(false);
    port.receive([STATUS, id, Code.NOT_FOUND, "health: gone"]);
    await expect(call).rejects.toMatchObject({ code: Code.NOT_FOUND, details: "health: gone" });
  });
});

describe("PortServer", () => {
  it("ignores malformed frames from a hostile peer without throwing, and goes on serving", async () => {
    const heard: string[] = [];
    const port = new HandPort();
    new PortServer(makeRouter(heard)).serve(port);
    const malformed: unknown[] = [
      null,
      undefined,
      0,
      "open",
      {},
      { 0: OPEN, 1: 1, 2: CHECK },
      [],
      [OPEN],
      [OPEN, "1", CHECK],
      [OPEN, 1.5, CHECK],
      [OPEN, Number.NaN, CHECK],
      [OPEN, 1],
      [OPEN, 1, 42],
      [OPEN, 1, null],
      [OPEN, 1, ["/grpc.health.v1.Health/Check"]],
      [OPEN, 1, CHECK, "not bytes"],
      [OPEN, 1, CHECK, [10, 0]],
      [MESSAGE, 99, encodeEvent("nobody")],
      [HALF_CLOSE, 99],
      [CANCEL, 99],
      [STATUS, 99, Code.OK, ""],
      ["0", 1, CHECK],
      [99, 1],
    ];
    for (const frame of malformed) expect(() => port.receive(frame)).not.toThrow();
    expect(port.posted).toEqual([]);
    expect(heard).toEqual([]);

    // A handler stream, and malformed frames on it.
    port.receive([OPEN, 7, EVENTS]);
    for (const frame of [
      [MESSAGE, 7, "not bytes"],
      [MESSAGE, 7, [10, 1, 97]],
      [MESSAGE, 7],
      [OPEN, 7, CHECK],
    ]) {
      expect(() => port.receive(frame)).not.toThrow();
    }
    expect(port.posted).toEqual([]);
    expect(heard).toEqual([]);
    port.receive([MESSAGE, 7, encodeEvent("ok")]);
    expect(heard).toEqual(["message ok"]);
    expect(port.posted).toHaveLength(1);
    const [kind, id, bytes] = port.posted[0] ?? [];
    expect([kind, id]).toEqual([MESSAGE, 7]);
    expect(codecOf(ServerMessageSchema).decode(bytes as Uint8Array).id).toBe("ok");

    // A unary call after all that (its status follows the message in the same turn: it goes on
    // the next turn, batched).
    port.receive([OPEN, 8, CHECK, encodeCheck("after")]);
    expect(heard).toEqual(["message ok", "check after"]);
    await new Promise((r) => setImmediate(r));
    expect(port.posted[1]?.slice(0, 4)).toEqual([STATUS, 8, Code.OK, ""]);
  });

  it("serves real calls on a port after a peer posted garbage on it", async () => {
    const heard: string[] = [];
    const { port1, port2 } = new MessageChannel();
    const server = new PortServer(makeRouter(heard));
    server.serve(port1);
    for (const frame of [null, 1, "x", {}, [], [OPEN, "1", CHECK], [OPEN, 1, 42], [MESSAGE, 5, "x"], [CANCEL, 5]]) {
      port2.postMessage(frame);
    }
    const client = new Client(createPortTransport(port2));
    await expect(client.unary(Health.method.check, { service: "real" })).resolves.toMatchObject({ status: 1 });
    expect(heard).toEqual(["check real"]);
    server.stop();
    port1.close();
  });

  it("cancels a port's calls when the service's end of it closes", async () => {
    const heard: string[] = [];
    const { port1, port2 } = new MessageChannel();
    new PortServer(makeRouter(heard)).serve(port1);
    const client = new Client(createPortTransport(port2));
    const call = client.bidi(WebsocketHandler.method.handleEvents);
    call.on("error", () => {});
    const echoed = new Promise((resolve) => call.on("data", resolve));
    call.write({ id: "a" });
    await echoed;
    const closed = new Promise((resolve) => port1.once("close", resolve));
    port2.close();
    await closed;
    expect(heard).toEqual(["message a", "close cancelled=true"]);
  });

  it("cancels the calls of every port it serves when it stops", async () => {
    const heard: string[] = [];
    const { port1, port2 } = new MessageChannel();
    const server = new PortServer(makeRouter(heard));
    server.serve(port1);
    const client = new Client(createPortTransport(port2));
    const call = client.bidi(WebsocketHandler.method.handleEvents);
    call.on("error", () => {});
    const echoed = new Promise((resolve) => call.on("data", resolve));
    call.write({ id: "a" });
    await echoed;
    server.stop();
    expect(heard).toEqual(["message a", "close cancelled=true"]);
    client.close();
    port1.close();
  });
});

describe("batching on the port", () => {
  const BATCH = 5;

  it("posts the first frame of a turn at once and the frames that follow in the same turn as one batch", async () => {
    const port = new HandPort();
    const transport = createPortTransport(port);
    const events = { message: () => {}, status: () => {} };
    for (const service of ["a", "b", "c"]) transport.open(CHECK, "unary", encodeCheck(service), events);
    expect(port.posted.map((f) => f[0])).toEqual([OPEN]);
    await new Promise((r) => setImmediate(r));
    expect(port.posted.map((f) => f[0])).toEqual([OPEN, BATCH]);
    const batch = port.posted[1]?.[2] as unknown[][];
    expect(batch.map((f) => [f[0], f[1], f[2]])).toEqual([
      [OPEN, 2, CHECK],
      [OPEN, 3, CHECK],
    ]);
    transport.close();
  });

  it("serves every call of a batch, in order, and answers them as a batch", async () => {
    const heard: string[] = [];
    const server = new PortServer(makeRouter(heard));
    const port = new HandPort();
    server.serve(port);
    port.receive([
      BATCH,
      0,
      [
        [OPEN, 1, CHECK, encodeCheck("first")],
        [OPEN, 2, CHECK, encodeCheck("second")],
        [OPEN, 3, CHECK, encodeCheck("third")],
      ],
    ]);
    expect(heard).toEqual(["check first", "check second", "check third"]);
    await new Promise((r) => setImmediate(r));
    expect(port.posted.map((f) => f[0])).toEqual([STATUS, BATCH]);
    const batch = port.posted[1]?.[2] as unknown[][];
    expect([port.posted[0]?.[1], ...batch.map((f) => f[1])]).toEqual([1, 2, 3]);
    server.stop();
  });

  it("ignores a batch inside a batch and a batch that is not a list, and goes on serving", () => {
    const heard: string[] = [];
    const server = new PortServer(makeRouter(heard));
    const port = new HandPort();
    server.serve(port);
    port.receive([BATCH, 0, [[BATCH, 0, [[OPEN, 1, CHECK, encodeCheck("nested")]]]]]);
    port.receive([BATCH, 0, "not frames"]);
    port.receive([BATCH, 0, { length: 1, 0: [OPEN, 2, CHECK, encodeCheck("object")] }]);
    expect(heard).toEqual([]);
    port.receive([OPEN, 3, CHECK, encodeCheck("plain")]);
    expect(heard).toEqual(["check plain"]);
    server.stop();
  });

  it("still sends the statuses of streams the router ended in the turn it stops in", async () => {
    const { port1, port2 } = new MessageChannel();
    const calls: { end(): void }[] = [];
    const router = new Router().service(WebsocketHandler, {
      handleEvents(call) {
        calls.push(call);
        call.onMessage((message) => call.write({ id: message.id }));
      },
    });
    const server = new PortServer(router);
    server.serve(port1);
    const client = new Client(createPortTransport(port2));
    const statuses = ["a", "b", "c"].map(async (id) => {
      const call = client.bidi(WebsocketHandler.method.handleEvents);
      const status = new Promise<number>((resolve) => call.on("status", (s: { code: number }) => resolve(s.code)));
      const echoed = new Promise((resolve) => call.on("data", resolve));
      call.write({ id });
      await echoed;
      return status;
    });
    while (calls.length < 3) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 20));
    // As the provider stops: every stream ended with OK, then the ports closed, in one turn. The
    // first status goes at once and the others wait for the turn's end, which close() must not drop.
    for (const call of calls) call.end();
    server.stop();
    expect(await Promise.all(statuses)).toEqual([Code.OK, Code.OK, Code.OK]);
    port1.close();
  });
});

describe("the bytes in frames", () => {
  /** A view on a larger ArrayBuffer, as the generated codecs' Buffer.allocUnsafe gives. */
  const view = () => Buffer.allocUnsafe(8192).fill(7).subarray(100, 110);

  class LocalHandPort extends HandPort {
    readonly local = true;
  }

  it("are exact copies on a port that clones, so a clone does not copy a whole pool", () => {
    const port = new HandPort();
    const transport = createPortTransport(port);
    const bytes = view();
    transport.open(CHECK, "unary", bytes, { message: () => {}, status: () => {} });
    const posted = port.posted[0]?.[3] as Uint8Array;
    expect(posted).not.toBe(bytes);
    expect(posted.byteLength).toBe(10);
    expect(posted.buffer.byteLength).toBe(10);
    expect([...posted]).toEqual([...bytes]);
    transport.close();
  });

  it("are passed as they are on a local port, which clones nothing, both ways", async () => {
    const port = new LocalHandPort();
    const transport = createPortTransport(port);
    const bytes = view();
    transport.open(CHECK, "unary", bytes, { message: () => {}, status: () => {} });
    expect(port.posted[0]?.[3]).toBe(bytes);
    transport.close();

    const heard: string[] = [];
    const served = new LocalHandPort();
    new PortServer(makeRouter(heard)).serve(served);
    served.receive([OPEN, 1, EVENTS]);
    served.receive([MESSAGE, 1, encodeEvent("e1")]);
    const answer = served.posted[0] as unknown[];
    expect(answer[0]).toBe(MESSAGE);
    // The router's encoded answer itself (a pool view), not a copy of it.
    expect(Buffer.isBuffer(answer[2])).toBe(true);
    expect(codecOf(ServerMessageSchema).decode(answer[2] as Uint8Array).id).toBe("e1");

    const copied = new HandPort();
    new PortServer(makeRouter([])).serve(copied);
    copied.receive([OPEN, 1, EVENTS]);
    copied.receive([MESSAGE, 1, encodeEvent("e1")]);
    expect(Buffer.isBuffer(copied.posted[0]?.[2])).toBe(false);
  });
});

describe("LocalPort", () => {
  it("hands what one end posts to the other end's listeners a microtask later, uncloned and in order", async () => {
    const [a, b] = LocalPort.pair();
    const heard: unknown[] = [];
    b.on("message", (value) => heard.push(value));
    const bytes = new Uint8Array([1, 2, 3]);
    a.postMessage([1, 7, bytes]);
    a.postMessage("second");
    expect(heard).toEqual([]);
    await Promise.resolve();
    expect(heard).toHaveLength(2);
    expect((heard[0] as unknown[])[2]).toBe(bytes);
    expect(heard[1]).toBe("second");
  });

  it("closes both ends from either: each hears close once, and nothing posted afterwards arrives", async () => {
    const [a, b] = LocalPort.pair();
    const heard: string[] = [];
    a.on("close", () => heard.push("a closed"));
    b.on("close", () => heard.push("b closed"));
    b.on("message", () => heard.push("b message"));
    a.on("message", () => heard.push("a message"));
    a.postMessage("in flight");
    b.close();
    a.postMessage("after");
    b.postMessage("after");
    b.close();
    await new Promise((r) => setImmediate(r));
    expect(heard.sort()).toEqual(["a closed", "b closed"]);
  });

  it("carries a client's unary and streaming calls to a port server on the same thread", async () => {
    const heard: string[] = [];
    const [served, given] = LocalPort.pair();
    const server = new PortServer(makeRouter(heard));
    server.serve(served);
    const client = new Client(createPortTransport(given));
    await expect(client.unary(Health.method.check, { service: "here" })).resolves.toMatchObject({ status: 1 });
    const call = client.bidi(WebsocketHandler.method.handleEvents);
    const echoed = new Promise((resolve) => call.on("data", resolve));
    call.write({ id: "e1" });
    expect(await echoed).toMatchObject({ id: "e1" });
    expect(heard).toEqual(["check here", "message e1"]);
    // The provider's end closing fails what is still in flight, as a MessagePort's does.
    const status = new Promise<number>((resolve) => call.on("status", (s) => resolve(s.code)));
    call.on("error", () => {});
    served.close();
    expect(await status).toBe(Code.UNAVAILABLE);
  });
});
