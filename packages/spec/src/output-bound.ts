/**
 * A bound on what a service thread's output holds back. In a worker thread, process.stdout and
 * stderr hand what is written to `run`'s thread, which prints it, and keep in the worker what `run`
 * has not taken yet, however much: console.log ignores backpressure, so without a bound a service
 * printing in a hot loop grows `run`'s process by the size of its backlog (measured: 200 MB of
 * lines in 0.2 s take `run` from 90 to 630 MB). Past `maxBytes` held back, writes are dropped, and once the stream has caught up a line
 * says how many bytes were dropped. (A service process writes to a pipe, which blocks it instead.)
 *
 * What a service writes last is often why it ends (our SDK's print of an uncaught error, a
 * service's console.error before process.exit(1)), and `run` reads its failure from it: so the
 * last 64 KB of what was dropped since the last write that went through are kept, and written
 * after all as the thread exits (process 'exit'), after a line saying so.
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
  // The end of what was dropped since the last write that went through: at most lastWordsBytes
  // of the droppedSince bytes.
  const lastWordsBytes = 64 * 1024;
  let lastWords: Buffer[] = [];
  let kept = 0;
  let droppedSince = 0;
  let dropped = 0;
  const keep = (chunk: unknown, encoding: unknown): number => {
    const bytes =
      typeof chunk === "string"
        ? Buffer.from(chunk, typeof encoding === "string" ? (encoding as BufferEncoding) : "utf8")
        : chunk instanceof Uint8Array
          ? chunk
          : new Uint8Array(0);
    // A copy of its end only: the writer may reuse its buffer, and a huge chunk is not held whole.
    const last = Buffer.from(bytes.subarray(Math.max(0, bytes.length - lastWordsBytes)));
    lastWords.push(last);
    kept += last.length;
    while (kept - (lastWords[0]?.length ?? 0) >= lastWordsBytes) kept -= lastWords.shift()?.length ?? 0;
    droppedSince += bytes.length;
    return bytes.length;
  };
  const report = (): void => {
    if (dropped === 0) return;
    const n = dropped;
    dropped = 0;
    write(`[${n} bytes of this service's output dropped: it wrote faster than run could print]\n`);
  };
  stream.write = (chunk: unknown, encoding?: unknown, callback?: unknown): boolean => {
    if (stream.writableLength >= maxBytes) {
      if (dropped === 0) stream.once("drain", report);
      dropped += keep(chunk, encoding);
      const done = typeof encoding === "function" ? encoding : callback;
      if (typeof done === "function") process.nextTick(done as () => void);
      return false;
    }
    report();
    // Most writes follow a write that went through: nothing to forget, and nothing allocated.
    if (droppedSince !== 0) {
      lastWords = [];
      kept = 0;
      droppedSince = 0;
    }
    return write(chunk, encoding, callback);
  };
  // Written whatever is held back: the thread is ending, so nothing more piles up behind it.
  process.once("exit", () => {
    if (droppedSince === 0) return;
    report();
    let text = Buffer.concat(lastWords);
    text = text.subarray(Math.max(0, text.length - lastWordsBytes));
    // Cut: shown from its first whole line.
    if (text.length < droppedSince) text = text.subarray(text.indexOf(10) + 1);
    write(`[the last ${text.length} bytes of its dropped output, written as it ended:]\n`);
    write(text);
  });
}
