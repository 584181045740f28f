/**
 * The longest line a service's output is held for before it is passed on in pieces: a service
 * that writes without ever ending its line (a progress bar, a stream of bytes) must not make
 * `run` hold all of it.
 */
export const MAX_LINE_CHARS = 64 * 1024;

/**
 * Calls `onLine` for each line of a stream (a service's stdout or stderr), without its "\n"; the
 * last one at the end even without a "\n". A line longer than MAX_LINE_CHARS is passed on in
 * pieces of that length as it comes.
 */
export function forEachLine(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let pending = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    pending += chunk;
    let at = pending.indexOf("\n");
    while (at >= 0) {
      emit(pending.slice(0, at));
      pending = pending.slice(at + 1);
      at = pending.indexOf("\n");
    }
    while (pending.length > MAX_LINE_CHARS) {
      onLine(pending.slice(0, MAX_LINE_CHARS));
      pending = pending.slice(MAX_LINE_CHARS);
    }
  });
  stream.on("end", () => {
    if (pending.length > 0) emit(pending);
    pending = "";
  });
  /** A line that came whole in one chunk may still be over the bound. */
  function emit(line: string): void {
    if (line.length <= MAX_LINE_CHARS) {
      onLine(line);
      return;
    }
    for (let at = 0; at < line.length; at += MAX_LINE_CHARS) onLine(line.slice(at, at + MAX_LINE_CHARS));
  }
}
