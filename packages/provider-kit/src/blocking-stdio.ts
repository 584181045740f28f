/**
 * Makes a process's stdout and stderr blocking, for a process whose output goes to a pipe that
 * `run` reads (a service's process, an emulated Lambda function's worker). Node leaves such pipes
 * non-blocking, so a process that prints a burst and then exits (an uncaught error, an init that
 * threw) can end while its output still waits in Node's queue, and what waited is lost: the lines
 * that said what went wrong, or Node's print of the uncaught error itself, written straight to the
 * full pipe (measured: 250 lines of 1 KB then a throw lost the error in 5 of 20 runs of a bare
 * Node 20; with this, in none of 30). And a process that stops its event loop once it has answered
 * (the emulator freezes a function's environment between events) would hold what waits until it
 * runs again. Blocking, a burst waits for `run` to read it instead, as a terminal's output does.
 *
 * One function in two places: the emulator's worker calls it, and the CLI injects its source text
 * (`String(makeStdioBlocking)`) into every service's process bundle, where nothing of ours can be
 * imported. So it uses nothing but its argument. Not for a process whose streams are not its own
 * to change (`run --single-thread` imports the bundles into its own process).
 */
export function makeStdioBlocking(proc: { stdout?: unknown; stderr?: unknown }): void {
  for (const stream of [proc.stdout, proc.stderr])
    (stream as { _handle?: { setBlocking?: (blocking: boolean) => unknown } } | undefined)?._handle?.setBlocking?.(
      true,
    );
}
