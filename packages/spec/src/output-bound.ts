/**
 * A bound on what a service thread's output holds back. In a worker thread, process.stdout and
 * stderr hand what is written to `run`'s thread, which prints it, and keep in the worker what `run`
 * has not taken yet, however much: console.log ignores backpressure, so without a bound a service
 * printing in a hot loop grows `run`'s process by the size of its backlog (measured: 200 MB of
 * lines in 0.2 s take `run` from 90 to 630 MB). Past `maxBytes` held back, writes are dropped, and once the stream has caught up a line
 * says how many bytes were dropped. (A service process writes to a pipe, which blocks it instead.)
 *
 * The CLI injects its source text (`String(boundOutput)`) into the entry of every thread bundle,
 * before the service loads, so it uses only its arguments and the thread's globals.
 */
export function boundOutput(
  stream: {
    write(chunk: unknown, encoding?: unknown, callback?: unknown): boolean;
    readonly writableLength: number;
    once(event: "drain", listener: () => void): unknown;
  },
  maxBytes: number,
): void {
  const write = stream.write.bind(stream);
  let dropped = 0;
  const report = (): void => {
    if (dropped === 0) return;
    const n = dropped;
    dropped = 0;
    write(`[${n} bytes of this service's output dropped: it wrote faster than run could print]\n`);
  };
  stream.write = (chunk: unknown, encoding?: unknown, callback?: unknown): boolean => {
    if (stream.writableLength >= maxBytes) {
      if (dropped === 0) stream.once("drain", report);
      dropped +=
        typeof chunk === "string" ? Buffer.byteLength(chunk) : ((chunk as { byteLength?: number }).byteLength ?? 0);
      const done = typeof encoding === "function" ? encoding : callback;
      if (typeof done === "function") process.nextTick(done as () => void);
      return false;
    }
    report();
    return write(chunk, encoding, callback);
  };
}
