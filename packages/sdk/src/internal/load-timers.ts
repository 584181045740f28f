/**
 * The collect pass (NITRIC_ENVIRONMENT=build) ends a service that has gone quiet for a moment, so
 * a handler registered from a timer the module started as it loaded (`setTimeout(register, 3000)`)
 * would be lost from the spec without a word, and so from what build and up deploy. In the collect
 * pass the SDK keeps track of the one-shot timers started before the module finished loading
 * (Node's async hooks: a Timeout whose `_repeat` is null), and while one of them, due within
 * LOAD_TIMER_LIMIT_MS, has not fired or been cleared, it shows the collector signs of life, so the
 * pass sees what the timer does: a registration there is refused (registeredAfterLoad) and the
 * pass fails with its message. Intervals and timers due later are not waited for.
 */
import { createHook } from "node:async_hooks";

/** The longest a timer started during load may take to fire and still be waited for. */
export const LOAD_TIMER_LIMIT_MS = 10_000;

/** How often the collector is shown a sign of life while such a timer is pending (its quiet spell is 1.5 s). */
const SIGN_OF_LIFE_MS = 500;

interface TimeoutResource {
  _repeat?: unknown;
  _idleTimeout?: unknown;
}

/**
 * Starts watching the timers the module starts as it loads. `loaded` says whether it has finished;
 * `signOfLife` makes a call the collector counts as one. Returns what to call once it has loaded.
 */
export function watchLoadTimers(loaded: () => boolean, signOfLife: () => Promise<unknown>): () => void {
  const pending = new Set<number>();
  const hook = createHook({
    init(id, type, _trigger, resource) {
      if (type !== "Timeout" || loaded()) return;
      const timer = resource as TimeoutResource;
      const due = timer._idleTimeout;
      if (timer._repeat != null || typeof due !== "number" || due > LOAD_TIMER_LIMIT_MS) return;
      pending.add(id);
    },
    after(id) {
      pending.delete(id);
    },
    destroy(id) {
      pending.delete(id);
    },
  });
  hook.enable();
  return () => {
    if (pending.size === 0) {
      hook.disable();
      return;
    }
    const beat = setInterval(() => {
      if (pending.size === 0) {
        clearInterval(beat);
        hook.disable();
        return;
      }
      // Only a sign of life: what it is answered does not matter.
      signOfLife().catch(() => {});
    }, SIGN_OF_LIFE_MS);
    // It never keeps the service alive itself: the timers it waits for do.
    beat.unref();
  };
}
