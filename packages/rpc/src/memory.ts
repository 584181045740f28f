/**
 * The in-memory transport: a client and the router it calls in one thread (a Lambda function's
 * service and its runtime). The messages are the same encoded bytes as on every other transport,
 * so both sides behave as they do across a port or a socket; every event reaches the other side a
 * microtask later, as it would from any transport, never inside the call that caused it.
 */
import type { Router } from "./router.js";
import { Code } from "./status.js";
import type { MethodKind, Transport, WireCall, WireEvents } from "./wire.js";

/** A transport to `router` in this thread. */
export function createMemoryTransport(router: Router, peer = "in-memory"): Transport {
  const live = new Set<() => void>();
  return {
    open(path: string, _kind: MethodKind, request: Uint8Array | undefined, events: WireEvents): WireCall {
      let over = false;
      let server: WireCall | undefined;
      const end = () => {
        over = true;
        live.delete(abandon);
      };
      const abandon = () => {
        if (over) return;
        end();
        server?.cancel();
        events.status(Code.CANCELLED, "Cancelled on client");
      };
      live.add(abandon);
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
      for (const abandon of [...live]) abandon();
    },
  };
}
