// The queue both client transports hold unary calls in past their cap (waiting.ts), alone: the
// transports' own tests (port.test.ts, grpc.test.ts) drive it through real calls.
import { describe, expect, it } from "vitest";
import { Code } from "./status.js";
import { WaitingCalls } from "./waiting.js";
import type { WireCall, WireEvents } from "./wire.js";

/** Events that record how their call ended. */
function events(log: string[], name: string): WireEvents {
  return { message: () => {}, status: (code, details) => log.push(`${name} ${code} ${details}`) };
}

/** A call as a transport would open it, recording cancels. */
function opened(log: string[], name: string): WireCall {
  return { write: () => {}, halfClose: () => {}, cancel: () => log.push(`cancel ${name}`) };
}

describe("WaitingCalls", () => {
  it("opens held calls in the order they came, skipping cancelled ones, across the compaction of a long queue", () => {
    const queue = new WaitingCalls();
    const log: string[] = [];
    const calls = Array.from({ length: 5000 }, (_, i) =>
      queue.hold(`/s/${i}`, Uint8Array.of(i % 256), events(log, `c${i}`)),
    );
    // Every third one is cancelled while it waits: it never opens, and nothing is heard of it.
    for (let i = 0; i < calls.length; i += 3) calls[i]?.cancel();
    expect(queue.size).toBe(5000);
    const opens: string[] = [];
    const open = (path: string, request: Uint8Array) => {
      expect(request[0]).toBe(Number(path.slice(3)) % 256);
      opens.push(path);
      return opened(log, path);
    };
    // Release in steps of 700 (room for 700 each time), which compacts the queue on the way.
    while (queue.size > 0) {
      let room = 700;
      queue.release(() => room-- > 0, open);
    }
    const expected = Array.from({ length: 5000 }, (_, i) => i)
      .filter((i) => i % 3 !== 0)
      .map((i) => `/s/${i}`);
    expect(opens).toEqual(expected);
    expect(log).toEqual([]);
    // A cancel after it opened reaches the opened call.
    calls[1]?.cancel();
    expect(log).toEqual(["cancel /s/1"]);
  });

  it("ends every call still waiting with the status given, once, and none that was cancelled", () => {
    const queue = new WaitingCalls();
    const log: string[] = [];
    const a = queue.hold("/a", new Uint8Array(0), events(log, "a"));
    queue.hold("/b", new Uint8Array(0), events(log, "b"));
    a.cancel();
    queue.endAll(Code.UNAVAILABLE, "the provider closed the port");
    expect(log).toEqual([`b ${Code.UNAVAILABLE} the provider closed the port`]);
    expect(queue.size).toBe(0);
    queue.endAll(Code.CANCELLED, "again");
    expect(log).toHaveLength(1);
  });
});
