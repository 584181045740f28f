/**
 * The in-memory transport: a client and the router it calls in one thread (a Lambda function's
 * service and its runtime). The messages are the same encoded bytes as on every other transport,
 * so both sides behave as they do across a port or a socket; every event reaches the other side a
 * microtask later, as it would from any transport, never inside the call that caused it.
 */
import { CallTable } from "./call-table.js";
import type { Router } from "./router.js";
import { Code } from "./status.js";
import type { MethodKind, Transport, WireCall, WireEvents } from "./wire.js";

/** The in-memory transport, which also tells when the unary calls it carries have ended. */
export interface MemoryTransport extends Transport {
  /**
   * Resolves once no unary call is in flight (looked at after each turn of the event loop, so that a
   * call that the end of another leads to counts), or once `timeoutMs` have passed: with the number
   * still in flight. A Lambda function's runtime waits for this before it answers an event,
   * since Lambda freezes the function once it has answered (handler streams are not unary calls).
   */
  settled(timeoutMs: number): Promise<number>;
}

/** A transport to `router` in this thread; a call opened while `maxCalls` are in flight ends with RESOURCE_EXHAUSTED. */
export function createMemoryTransport(router: Router, peer = "in-memory", maxCalls = 2 ** 20): MemoryTransport {
  // The calls close() abandons (a CallTable, not a Set of new keys: see call-table.ts).
  const live = new CallTable<() => void>(maxCalls);
  let unary = 0;
  /** What waits for the last unary call in flight to end (settled()). */
  const waiting = new Set<() => void>();
  return {
    open(path: string, kind: MethodKind, request: Uint8Array | undefined, events: WireEvents): WireCall {
      let over = false;
      let server: WireCall | undefined;
      const counted = kind === "unary";
      const end = () => {
        over = true;
        if (id !== undefined) live.delete(id);
        if (counted && id !== undefined && --unary === 0) for (const settle of [...waiting]) settle();
      };
      const abandon = () => {
        if (over) return;
        end();
        server?.cancel();
        events.status(Code.CANCELLED, "Cancelled on client");
      };
      const id = live.add(abandon);
      if (counted && id !== undefined) unary++;
      if (id === undefined) {
        over = true;
        queueMicrotask(() => events.status(Code.RESOURCE_EXHAUSTED, `more than ${live.capacity} calls in flight`));
        return { write: () => {}, halfClose: () => {}, cancel: () => {} };
      }
      const toClient: WireEvents = {
        message: (bytes) =>
          queueMicrotask(() => {
            if (!over) events.message(bytes);
          }),
        status: (code, details, response) =>
          queueMicrotask(() => {
            if (over) return;
            end();
            events.status(code, details, response);
          }),
      };
      queueMicrotask(() => {
        if (!over) server = router.open(path, request, toClient, peer);
      });
      return {
        write: (bytes) =>
          queueMicrotask(() => {
            if (!over) server?.write(bytes);
          }),
        halfClose: () =>
          queueMicrotask(() => {
            if (!over) server?.halfClose();
          }),
        cancel: () => {
          if (over) return;
          end();
          queueMicrotask(() => server?.cancel());
        },
      };
    },
    close() {
      for (const [, abandon] of live.entries()) abandon();
    },
    async settled(timeoutMs: number): Promise<number> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        // After the turn: a call that another's end leads to (`await a(); await b()`) opens in it.
        await new Promise((resolve) => setImmediate(resolve));
        const left = deadline - Date.now();
        if (unary === 0 || left <= 0) return unary;
        await new Promise<void>((resolve) => {
          const settle = () => {
            clearTimeout(timer);
            waiting.delete(settle);
            resolve();
          };
          const timer = setTimeout(settle, left);
          waiting.add(settle);
        });
      }
    },
  };
}
