// The Ampt-style layer's checks at the call, against a real gRPC server playing the provider
// (test/fake-provider.ts): importing it declares websocket("ws").
import { WebsocketEventType } from "@nitric-like/contracts/websockets";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FakeProvider, startFakeProvider } from "../test/fake-provider.js";

let provider: FakeProvider;

beforeAll(async () => {
  provider = await startFakeProvider();
  // The runtime reads SERVICE_ADDRESS when it makes its client, on the first declaration.
  process.env.SERVICE_ADDRESS = provider.address;
});
afterAll(async () => {
  await provider.stop();
});

describe("ws.on() from JavaScript", () => {
  it("refuses an unknown event or a handler that is not a function at the call, as a NitricLikeError with the fix", async () => {
    const { ws } = await import("./ampt.js");
    const refused = (call: () => void) => {
      try {
        call();
      } catch (error) {
        return error;
      }
      return undefined;
    };
    // Nitric's event name, not Ampt's: a TypeError before, of another class than every SDK error.
    expect(refused(() => ws.on("connect" as never, () => {}))).toMatchObject({
      name: "NitricLikeError",
      code: "invalid_argument",
      message: 'ws.on("connect"): unknown event; use "connected", "disconnected" or "message"',
    });
    // An undefined handler (a misspelt import) was taken, and failed at every connection instead.
    expect(refused(() => ws.on("connected", undefined as never))).toMatchObject({
      code: "invalid_argument",
      message: 'ws.on("connected"): a handler must be a function, got undefined',
    });
    expect(refused(() => ws.on("message", () => {}))).toBeUndefined();
    // Only the good one registered (and the test ends once it has, before the provider stops).
    const stream = await provider.stream("ws", WebsocketEventType.Message);
    expect(stream.registration.socketName).toBe("ws");
    expect(provider.streams.map((s) => s.registration.eventType)).toEqual([WebsocketEventType.Message]);
  });
});
