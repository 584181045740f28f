// CallTable against the Map it replaces (the oracle): any sequence of adds and deletes leaves both
// answering alike, and the transports that keep their calls in one bound the calls in flight.
import { MessageChannel } from "node:worker_threads";
import { Health } from "@nitric-like/contracts/health";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CallTable } from "./call-table.js";
import { Client } from "./client.js";
import { createMemoryTransport } from "./memory.js";
import { createPortTransport, PortServer } from "./port.js";
import { Router } from "./router.js";
import { Code } from "./status.js";

type Op = { add: number } | { del: number } | { probe: number };

describe("CallTable", () => {
  it("answers get, has, delete, size and entries as a Map keyed by the ids it hands out", () => {
    const op = fc.oneof(
      fc.record({ add: fc.integer() }),
      // Deletes and probes pick among the ids handed out so far (the index wraps), or a stray id.
      fc.record({ del: fc.nat() }),
      fc.record({ probe: fc.integer({ min: -5, max: 2 ** 22 }) }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.array(op, { maxLength: 300 }), (capacity, ops: Op[]) => {
        const table = new CallTable<number>(capacity);
        const oracle = new Map<number, number>();
        const handedOut: number[] = [];
        for (const o of ops) {
          if ("add" in o) {
            const id = table.add(o.add);
            if (oracle.size >= capacity) {
              expect(id).toBeUndefined();
              continue;
            }
            expect(id).toBeDefined();
            // Never an id handed out before, even one whose call has finished.
            expect(handedOut).not.toContain(id);
            handedOut.push(id as number);
            oracle.set(id as number, o.add);
          } else if ("del" in o) {
            const id = handedOut.length ? (handedOut[o.del % handedOut.length] as number) : o.del;
            expect(table.delete(id)).toBe(oracle.delete(id));
          } else {
            expect(table.get(o.probe)).toBe(oracle.get(o.probe));
            expect(table.has(o.probe)).toBe(oracle.has(o.probe));
          }
          expect(table.size).toBe(oracle.size);
        }
        for (const id of handedOut) {
          expect(table.get(id)).toBe(oracle.get(id));
          expect(table.has(id)).toBe(oracle.has(id));
        }
        const byId = (a: [number, number], b: [number, number]) => a[0] - b[0];
        expect(table.entries().sort(byId)).toEqual([...oracle].sort(byId));
      }),
    );
  });

  it("hands out 1, 2, 3 from a fresh table, and a reused slot a new id", () => {
    const table = new CallTable<string>(4);
    expect([table.add("a"), table.add("b"), table.add("c")]).toEqual([1, 2, 3]);
    table.delete(2);
    const again = table.add("d");
    expect(again).toBe(2 + 4);
    expect(table.get(2)).toBeUndefined();
    expect(table.get(again as number)).toBe("d");
  });

  it("finds nothing under ids that are not whole positive numbers", () => {
    const table = new CallTable<string>();
    table.add("a");
    for (const id of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 60]) {
      expect(table.get(id)).toBeUndefined();
      expect(table.delete(id)).toBe(false);
    }
    expect(table.size).toBe(1);
  });

  it("refuses a capacity that is not a whole number of at least one", () => {
    for (const capacity of [0, -1, 1.5, Number.NaN]) expect(() => new CallTable(capacity)).toThrow(RangeError);
  });
});

/** A router whose health check answers when the test says so. */
function heldRouter(): { router: Router; release(): void } {
  const held: (() => void)[] = [];
  const router = new Router().service(Health, {
    check(_call, respond) {
      held.push(() => respond(null, { status: 1 }));
    },
  });
  return {
    router,
    release: () => {
      for (const answer of held.splice(0)) answer();
    },
  };
}

describe.each([
  {
    name: "MessagePort",
    make(router: Router, maxCalls: number) {
      const { port1, port2 } = new MessageChannel();
      const server = new PortServer(router);
      server.serve(port1);
      const transport = createPortTransport(port2, maxCalls);
      const stop = () => {
        transport.close();
        server.stop();
        port1.close();
      };
      return { transport, stop };
    },
  },
  {
    name: "in-memory",
    make(router: Router, maxCalls: number) {
      const transport = createMemoryTransport(router, "test", maxCalls);
      return { transport, stop: () => transport.close() };
    },
  },
])("the $name transport's bound on calls in flight", ({ make }) => {
  it("ends a call past the bound with RESOURCE_EXHAUSTED, and takes calls again once one ends", async () => {
    const { router, release } = heldRouter();
    const { transport, stop } = make(router, 2);
    const client = new Client(transport);
    try {
      const first = [client.unary(Health.method.check, {}), client.unary(Health.method.check, {})];
      await expect(client.unary(Health.method.check, {})).rejects.toMatchObject({
        code: Code.RESOURCE_EXHAUSTED,
        details: expect.stringMatching(/^more than 2 calls in flight/),
      });
      // Let the two held calls reach the router, answer them, and the transport has room again.
      await new Promise((r) => setTimeout(r, 20));
      release();
      await expect(Promise.all(first)).resolves.toHaveLength(2);
      const later = client.unary(Health.method.check, {});
      await new Promise((r) => setTimeout(r, 20));
      release();
      await expect(later).resolves.toMatchObject({ status: 1 });
    } finally {
      stop();
    }
  });
});
