/**
 * A service process's answer to `run`'s liveness check. `run` gives the process a pipe whose
 * descriptor is in the variable ALIVE_FD_VAR names and writes to it now and then; each byte is
 * answered with "!", which only a process whose event loop turns can do, so `run` restarts one
 * that stops answering (a loop that never yields). "!" is also said once at once: `run` watches a
 * `start` command's program only once it has answered, since one in another language may not.
 * The variable is removed, so that a child process of the service does not take it for its own.
 *
 * One function in two places: our SDK calls it in a process it runs (`start` commands, --processes),
 * and the CLI injects its source text (`String(answerAliveChecks)`) as the first line of every
 * service bundle, which also serves bundles of `@nitric/sdk` alone, where nothing of ours can be
 * imported. So it uses nothing but its arguments.
 */
export function answerAliveChecks(
  env: Record<string, string | undefined>,
  name: string,
  Socket: new (options: {
    fd: number;
    readable: boolean;
    writable: boolean;
  }) => {
    on(event: string, listener: (...args: unknown[]) => void): unknown;
    write(data: string): unknown;
    unref(): unknown;
  },
): void {
  const fd = env[name];
  if (fd === undefined) return;
  delete env[name];
  try {
    const pipe = new Socket({ fd: Number(fd), readable: true, writable: true });
    pipe.on("data", () => pipe.write("!"));
    pipe.on("error", () => {});
    pipe.unref();
    pipe.write("!");
  } catch {
    // Not a pipe this process can open: run then never watches it.
  }
}
