// The lazy transport (the SDK's fallback, which loads grpc-js only when a call needs it), loading
// a real in-memory transport to a real router.
import { Health, HealthCheckResponse_ServingStatus } from "@nitric-like/contracts/health";
import { type ServerMessage, WebsocketHandler } from "@nitric-like/contracts/websockets";
import { describe, expect, it } from "vitest";
import { Client } from "./client.js";
import { createLazyTransport } from "./lazy.js";
import { createMemoryTransport } from "./memory.js";
import { Router } from "./router.js";
import { Code } from "./status.js";
import type { Transport } from "./wire.js";

/** What the router heard, in order, across its calls. */
function makeRouter(heard: string[]): Router {
  return new Router()
    .service(Health, {
      check(call, respond) {
        heard.push(`check ${call.request.service}`);
        if (call.request.service !== "hang") respond(null, { status: HealthCheckResponse_ServingStatus.SERVING });
      },
    })
    .service(WebsocketHandler, {
      handleEvents(call) {
        heard.push("open");
        call.onMessage((message) => {
          heard.push(`message ${message.id}`);
          call.write({ id: message.id });
        });
        call.onEnd(() => {
          heard.push("end");
          call.end();
        });
        call.onClose(() => heard.push(`close cancelled=${call.cancelled}`));
      },
    });
}

/** A loader the test lets go: `loads` counts its calls. */
function deferredLoader(transport: () => Transport) {
  let release: () => void = () => {};
  let fail: (error: unknown) => void = () => {};
  const state = { loads: 0 };
  const gate = new Promise<void>((resolve, reject) => {
    release = resolve;
    fail = reject;
  });
  const load = async () => {
    state.loads++;
    await gate;
    return transport();
  };
  return { load, release: () => release(), fail: (e: unknown) => fail(e), state };
}

describe("createLazyTransport", () => {
  it("sends the calls made before the loader resolves, in order, once it has", async () => {
    const heard: string[] = [];
    const loader = deferredLoader(() => createMemoryTransport(makeRouter(heard)));
    const client = new Client(createLazyTransport(loader.load));

    const first = client.unary(Health.method.check, { service: "1" });
    const stream = client.bidi(WebsocketHandler.method.handleEvents);
    const data: string[] = [];
    stream.on("data", (m: ServerMessage) => data.push(m.id));
    const ended = new Promise<number>((resolve) => stream.on("status", (s) => resolve(s.code)));
    stream.write({ id: "a" });
    stream.write({ id: "b" });
    stream.end();
    const second = client.unary(Health.method.check, { service: "2" });
    const dropped = client.unary(Health.method.check, { service: "dropped" }, { timeoutMs: 1 });
    await expect(dropped).rejects.toMatchObject({ code: Code.DEADLINE_EXCEEDED });

    // Nothing has reached the router yet.
    await new Promise((r) => setImmediate(r));
    expect(heard).toEqual([]);
    loader.release();

    await expect(first).resolves.toMatchObject({ status: HealthCheckResponse_ServingStatus.SERVING });
    await expect(second).resolves.toMatchObject({ status: HealthCheckResponse_ServingStatus.SERVING });
    expect(await ended).toBe(Code.OK);
    expect(data).toEqual(["a", "b"]);
    // Everything went in the order it was made (the stream's writes before the second call); the
    // cancelled call never went out.
    expect(heard).toEqual(["check 1", "open", "message a", "message b", "end", "close cancelled=false", "check 2"]);
    expect(loader.state.loads).toBe(1);

    // Once loaded, calls go straight through.
    await expect(client.unary(Health.method.check, { service: "3" })).resolves.toBeDefined();
    expect(loader.state.loads).toBe(1);
  });

  it("fails every call with UNAVAILABLE and the loader's reason when the loader fails", async () => {
    const loader = deferredLoader(() => {
      throw new Error("unreachable");
    });
    const client = new Client(createLazyTransport(loader.load));
    const waiting = client.unary(Health.method.check, { service: "" });
    const stream = client.bidi(WebsocketHandler.method.handleEvents);
    const errors: unknown[] = [];
    stream.on("error", (e) => errors.push(e));
    const status = new Promise<{ code: number; details: string }>((resolve) => stream.on("status", resolve));
    loader.fail(new Error('cannot find package "@grpc/grpc-js"'));

    const expected = {
      code: Code.UNAVAILABLE,
      details: 'rpc: the transport to the provider could not be loaded (cannot find package "@grpc/grpc-js")',
    };
    await expect(waiting).rejects.toMatchObject(expected);
    expect(await status).toEqual(expected);
    expect(errors).toEqual([expect.objectContaining(expected)]);
    // Later calls fail the same way, without loading again.
    await expect(client.unary(Health.method.check, { service: "" })).rejects.toMatchObject(expected);
    expect(loader.state.loads).toBe(1);
  });

  it("fails calls with UNAVAILABLE when the loader throws instead of rejecting", async () => {
    const transport = createLazyTransport(() => {
      throw new Error("no grpc here");
    });
    await expect(new Client(transport).unary(Health.method.check, { service: "" })).rejects.toMatchObject({
      code: Code.UNAVAILABLE,
      details: "rpc: the transport to the provider could not be loaded (no grpc here)",
    });
  });

  it("fails a call with UNAVAILABLE, rather than leaving it waiting, when the loaded transport's open() throws", async () => {
    const throwing: Transport = {
      open() {
        throw new Error("no channel");
      },
      close() {},
    };
    const client = new Client(createLazyTransport(async () => throwing));
    await expect(client.unary(Health.method.check, { service: "" })).rejects.toMatchObject({
      code: Code.UNAVAILABLE,
      details: "rpc: the call could not be opened (no channel)",
    });
  });

  it("ends the calls waiting for the loader with CANCELLED on close(), and never sends them", async () => {
    const heard: string[] = [];
    const loader = deferredLoader(() => createMemoryTransport(makeRouter(heard)));
    const transport = createLazyTransport(loader.load);
    const client = new Client(transport);
    const waiting = client.unary(Health.method.check, { service: "waiting" });
    const stream = client.bidi(WebsocketHandler.method.handleEvents);
    stream.on("error", () => {});
    const status = new Promise<number>((resolve) => stream.on("status", (s) => resolve(s.code)));
    stream.write({ id: "a" });
    transport.close();
    await expect(waiting).rejects.toMatchObject({ code: Code.CANCELLED });
    expect(await status).toBe(Code.CANCELLED);

    loader.release();
    await expect(client.unary(Health.method.check, { service: "after" })).resolves.toBeDefined();
    expect(heard).toEqual(["check after"]);
  });

  it("passes close() on to the loaded transport: its calls in flight end with CANCELLED", async () => {
    const heard: string[] = [];
    const loader = deferredLoader(() => createMemoryTransport(makeRouter(heard)));
    loader.release();
    const transport = createLazyTransport(loader.load);
    const client = new Client(transport);
    await client.unary(Health.method.check, { service: "" });
    const hanging = client.unary(Health.method.check, { service: "hang" });
    while (!heard.includes("check hang")) await new Promise((r) => setImmediate(r));
    transport.close();
    await expect(hanging).rejects.toMatchObject({ code: Code.CANCELLED });
  });
});
