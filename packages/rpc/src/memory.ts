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

/** A transport to `router` in this thread; a call opened while `maxCalls` are in flight ends with RESOURCE_EXHAUSTED. */
export function createMemoryTransport(router: Router, peer = "in-memory", maxCalls = 2 ** 20): Transport {
  // The calls close() abandons (a CallTable, not a Set of new keys: see call-table.ts).
  const live = new CallTable<() => void>(maxCalls);
  return {
    open(path: string, _kind: MethodKind, request: Uint8Array | undefined, events: WireEvents): WireCall {
      let over = false;
      let server: WireCall | undefined;
      const end = () => {
        over = true;
        if (id !== undefined) live.delete(id);
      };
      const abandon = () => {
        if (over) return;
        end();
        server?.cancel();
        events.status(Code.CANCELLED, "Cancelled on client");
      };
      const id = live.add(abandon);
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
  };
}
