/**
 * The collect pass (NITRIC_ENVIRONMENT=build) ends a service that has gone quiet for a moment, so
 * a handler registered from a timer the module started as it loaded (`setTimeout(register, 3000)`)
 * would be lost from the spec without a word, and so from what build and up deploy. In the collect
 * pass the SDK keeps track of the one-shot timers started before the module finished loading
 * (Node's async hooks: a Timeout whose `_repeat` is null), and while one of them, due within
 * LOAD_TIMER_LIMIT_MS, has not fired or been cleared, it shows the collector signs of life, so the
 * pass sees what the timer does: a registration there is refused (registeredAfterLoad) and the
 * pass fails with its message. A one-shot timer started in the callback of a timer waited for
 * (`setTimeout(() => setTimeout(register, 3000), 100)`) is waited for too, as long as it is due
 * within LOAD_TIMER_LIMIT_MS, no more than LOAD_TIMER_NESTING timers deep, and before
 * LOAD_TIMERS_TOTAL_MS after load. Intervals and timers due later are not waited for.
 */
import { createHook } from "node:async_hooks";

/** The longest a timer started during load may take to fire and still be waited for. */
export const LOAD_TIMER_LIMIT_MS = 10_000;

/** How many timers deep, each started in the callback of the one before, a timer is still waited for. */
export const LOAD_TIMER_NESTING = 3;

/** The latest after load a timer started in a waited-for timer's callback may be due and still be waited for. */
export const LOAD_TIMERS_TOTAL_MS = 30_000;

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
  // The timers waited for, and how deep each is: 0 for one started during load, 1 for one started
  // in such a timer's callback (its trigger), and so on.
  const pending = new Map<number, number>();
  let loadedAt: number | undefined;
  const hook = createHook({
    init(id, type, trigger, resource) {
      if (type !== "Timeout") return;
      let depth = 0;
      if (loaded()) {
        // After load, only a timer started in the callback of one waited for (still pending while it runs).
        const parent = pending.get(trigger);
        if (parent === undefined || parent >= LOAD_TIMER_NESTING) return;
        depth = parent + 1;
      }
      const timer = resource as TimeoutResource;
      const due = timer._idleTimeout;
      if (timer._repeat != null || typeof due !== "number" || due > LOAD_TIMER_LIMIT_MS) return;
      if (depth > 0) {
        loadedAt ??= Date.now();
        if (Date.now() + due > loadedAt + LOAD_TIMERS_TOTAL_MS) return;
      }
      pending.set(id, depth);
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
    loadedAt ??= Date.now();
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
