/**
 * A transport made on first use by an asynchronous loader: the SDK's fallback when no runner gave
 * it one loads the gRPC transport (and grpc-js) only then, so a bundle whose runner passes another
 * transport never evaluates grpc-js. Calls opened before the loader settles wait for it, in order.
 */
import { Code } from "./status.js";
import type { MethodKind, Transport, WireCall, WireEvents } from "./wire.js";

/** A transport that forwards to `load()`'s, once it has loaded; a failed load fails every call with UNAVAILABLE. */
export function createLazyTransport(load: () => Promise<Transport>): Transport {
  let loaded: Transport | undefined;
  let failure: string | undefined;
  let loading: Promise<void> | undefined;
  // Calls waiting for the load, to cancel on close().
  const waiting = new Set<() => void>();
  const start = () =>
    (loading ??= new Promise<Transport>((resolve) => resolve(load())).then(
      (t) => {
        loaded = t;
      },
      (error: unknown) => {
        const reason = error instanceof Error ? error.message : String(error);
        failure = `rpc: the transport to the provider could not be loaded (${reason})`;
      },
    ));
  return {
    open(path: string, kind: MethodKind, request: Uint8Array | undefined, events: WireEvents): WireCall {
      if (loaded) return loaded.open(path, kind, request, events);
      // Until it loads: the call's writes wait in order, a cancel drops it.
      let call: WireCall | undefined;
      let over = false;
      const steps: ((c: WireCall) => void)[] = [];
      const abandon = () => {
        over = true;
        waiting.delete(abandon);
        events.status(Code.CANCELLED, "Cancelled on client");
      };
      waiting.add(abandon);
      void start().then(() => {
        if (over) return;
        waiting.delete(abandon);
        if (!loaded) {
          over = true;
          events.status(Code.UNAVAILABLE, failure ?? "rpc: no transport");
          return;
        }
        try {
          call = loaded.open(path, kind, request, events);
        } catch (error) {
          // A transport's open() should not throw; if it does, the call fails rather than hangs.
          over = true;
          const reason = error instanceof Error ? error.message : String(error);
          events.status(Code.UNAVAILABLE, `rpc: the call could not be opened (${reason})`);
          return;
        }
        for (const step of steps) step(call);
      });
      const later = (step: (c: WireCall) => void) => {
        if (call) step(call);
        else if (!over) steps.push(step);
      };
      return {
        write: (bytes) => later((c) => c.write(bytes)),
        halfClose: () => later((c) => c.halfClose()),
        cancel: () => {
          if (call) {
            call.cancel();
            return;
          }
          over = true;
          waiting.delete(abandon);
        },
      };
    },
    close() {
      for (const abandon of [...waiting]) abandon();
      loaded?.close();
    },
  };
}
