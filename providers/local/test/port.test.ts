// The endpoint over a MessagePort (how a service running as a worker thread reaches the provider):
// what only a port can get wrong. The calls themselves run over both transports in kv, handlers
// and isolation tests.

import type { MessagePort } from "node:worker_threads";
import { Websocket } from "@nitric-like/contracts/websockets";
import { Client, Code, createPortTransport } from "@nitric-like/rpc";
import { afterEach, describe, expect, it } from "vitest";
import { accept, cleanup, declareSocket, handle, open, startProvider, urlOf } from "./helpers.js";

afterEach(cleanup);

/** Raw frames on a port, as a client that is not our port transport might send them. */
function rawFrames(port: MessagePort) {
  const received: unknown[][] = [];
  port.on("message", (frame: unknown[]) => received.push(frame));
  const next = async (id: number) => {
    for (let i = 0; i < 200; i++) {
      const found = received.find((f) => f[1] === id);
      if (found) return found;
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error(`no frame for call ${id}`);
  };
  return { next };
}

describe("the endpoint over a port", () => {
  it("answers a method the endpoint does not serve with UNIMPLEMENTED, naming it", async () => {
    const { provider } = await startProvider();
    const port = await provider.openPort("svc");
    const { next } = rawFrames(port);
    port.postMessage([0, 1, "/nitric.proto.queues.v1.Queue/Enqueue", new Uint8Array(0)]);
    const [kind, , code, details] = await next(1);
    expect(kind).toBe(4);
    expect(code).toBe(Code.UNIMPLEMENTED);
    expect(details).toContain("/nitric.proto.queues.v1.Queue/Enqueue");
    port.close();
  });

  it("ends a call whose request bytes are not a valid message with INVALID_ARGUMENT naming method and type", async () => {
    const { provider } = await startProvider();
    const port = await provider.openPort("svc");
    const { next } = rawFrames(port);
    // Field 1 as a varint where SendMessage's socket name is a string: not a valid message.
    port.postMessage([0, 7, "/nitric.proto.websockets.v1.Websocket/SendMessage", new Uint8Array([0x08, 0xff])]);
    const [, , code, details] = await next(7);
    expect(code).toBe(Code.INVALID_ARGUMENT);
    expect(details).toMatch(
      /SendMessage: the request is not a valid nitric\.proto\.websockets\.v1\.WebsocketSendRequest/,
    );
    // The port still serves.
    const client = new Client(createPortTransport(port));
    await expect(client.unary(Websocket.method.socketDetails, { socketName: "nope" })).rejects.toMatchObject({
      code: Code.NOT_FOUND,
    });
    port.close();
  });

  it("treats a closed port as a service that went away: its events go to the handler that registers next", async () => {
    const { provider } = await startProvider();
    const first = await provider.openPort("svc");
    const a = new Client(createPortTransport(first));
    await declareSocket(a, "chat");
    await handle(a, "chat", "connect", accept);
    // This handler never answers; its port closes with the event pending, as when a thread dies.
    const silent = await handle(a, "chat", "message", () => undefined);
    const ws = await open(urlOf(provider, "chat"));
    ws.send("hello");
    for (let i = 0; i < 100 && silent.events.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    expect(silent.events.map((e) => e.connectionId)).toHaveLength(1);
    first.close();
    const b = new Client(createPortTransport(await provider.openPort("svc")));
    const echo = new Promise<string>((resolve) => ws.once("message", (data) => resolve(String(data))));
    await handle(b, "chat", "message", (request) => {
      const message = request.websocketEvent.case === "message" ? request.websocketEvent.value : undefined;
      return { replies: message ? [{ data: message.body, binary: false }] : [] };
    });
    expect(await echo).toBe("hello");
  });
});
