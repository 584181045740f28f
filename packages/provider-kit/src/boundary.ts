/**
 * The boundary around a listener that serves a client (an upgrade, a connection's events, an HTTP
 * request): an exception ends that one request or connection, with a 500 or a 1011, and is logged
 * in one line; it never reaches the process, whose other clients carry on.
 */

/** Runs `body`; an exception it throws, or a promise it returns that rejects, goes to `failed` instead of the process. */
export function guard(body: () => unknown, failed: (error: unknown) => void): void {
  const settled = (error: unknown) => {
    try {
      failed(error);
    } catch {
      // The boundary itself failed (a socket already gone): nothing more can be told to that client.
    }
  };
  try {
    const result = body();
    if (result instanceof Promise) result.catch(settled);
  } catch (error) {
    settled(error);
  }
}

/**
 * The one log line for an exception caught at a listener's boundary: where, what it was serving,
 * the error with the frame it came from, and what became of that one request or connection.
 */
export function boundaryMessage(where: string, serving: string, error: unknown, outcome: string): string {
  const e = error instanceof Error ? error : new Error(String(error));
  const frame = e.stack
    ?.split("\n")
    .find((line) => line.trimStart().startsWith("at "))
    ?.trim();
  const what = `${e.name}: ${e.message}${frame ? ` (${frame})` : ""}`.replace(/\s*[\r\n]+\s*/g, " ");
  return `${where}: internal error while ${serving}: ${what}; ${outcome} and serves everyone else; please report this line as a bug`;
}
