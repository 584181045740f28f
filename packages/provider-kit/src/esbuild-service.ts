/**
 * esbuild runs every build of a Node process in one child process of its own (its "service"),
 * started by the first build and kept until esbuild's `stop()`. `run` bundles its services at start
 * and again on a save, and serves for hours in between; an idle service left running would hold
 * 80-90 MB all that time, and keep on run's own heap the buffer esbuild's JavaScript side grows to
 * hold its largest answer (3.6 MB for one service and its thread bundle).
 *
 * So the bundlers (the CLI's for services, the AWS provider's for functions) build inside
 * `building()`: once the last build in flight in this process ends, esbuild is stopped, and the next
 * build starts it again (about 20 ms more than a build on a running service, on a 135 ms build).
 * Builds that overlap keep it running: stopping it would fail every build still in flight.
 *
 * The count lives on globalThis because esbuild's service is one per process while this module is
 * not: the CLI's one-file bundle and the AWS provider (loaded beside it) each hold a copy.
 */

const STATE = Symbol.for("nitric-like.esbuild-builds");

interface BuildState {
  /** Builds in flight in this process, through any copy of this module. */
  inFlight: number;
  /** The stop() of each esbuild module those builds used (one, unless two versions are loaded). */
  stops: Set<() => Promise<void>>;
}

function state(): BuildState {
  const holder = globalThis as { [STATE]?: BuildState };
  holder[STATE] ??= { inFlight: 0, stops: new Set() };
  return holder[STATE];
}

/**
 * Runs `build` (one or more esbuild builds) and stops esbuild's service once no build of this
 * process is left in flight. `stop` is esbuild's own, from the module `build` uses.
 */
export async function building<T>(stop: () => Promise<void>, build: () => Promise<T>): Promise<T> {
  const s = state();
  s.inFlight++;
  s.stops.add(stop);
  try {
    return await build();
  } finally {
    s.inFlight--;
    // Checked and done in one synchronous step: a build that starts after this starts esbuild anew.
    if (s.inFlight === 0) {
      const stops = [...s.stops];
      s.stops.clear();
      for (const stopService of stops) void stopService();
    }
  }
}
