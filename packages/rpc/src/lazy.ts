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
  const start = () =>
    (loading ??= load().then(
      (t) => {
        loaded = t;
      },
      (error: unknown) => {
        failure = `the transport to the provider could not be loaded (${(error as Error)?.message ?? String(error)})`;
      },
    ));
  return {
    open(path: string, kind: MethodKind, request: Uint8Array | undefined, events: WireEvents): WireCall {
      if (loaded) return loaded.open(path, kind, request, events);
      // Until it loads: the call's writes wait in order, a cancel drops it.
      let call: WireCall | undefined;
      let cancelled = false;
      const waiting: ((c: WireCall) => void)[] = [];
      void start().then(() => {
        if (cancelled) return;
        if (!loaded) {
          events.status(Code.UNAVAILABLE, failure ?? "no transport");
          return;
        }
        call = loaded.open(path, kind, request, events);
        for (const step of waiting) step(call);
      });
      const later = (step: (c: WireCall) => void) => (call ? step(call) : waiting.push(step));
      return {
        write: (bytes) => later((c) => c.write(bytes)),
        halfClose: () => later((c) => c.halfClose()),
        cancel: () => {
          cancelled = true;
          call?.cancel();
        },
      };
    },
    close() {
      loaded?.close();
    },
  };
}
