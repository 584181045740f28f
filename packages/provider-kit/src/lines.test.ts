import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { forEachLine, MAX_LINE_CHARS } from "./lines.js";

/** Writes `chunks` to a real stream read by forEachLine, and resolves with the lines it passed on. */
async function linesOf(chunks: string[]): Promise<string[]> {
  const stream = new PassThrough();
  const lines: string[] = [];
  forEachLine(stream, (line) => lines.push(line));
  const ended = new Promise((resolve) => stream.on("end", resolve));
  for (const c of chunks) stream.write(c);
  stream.end();
  await ended;
  return lines;
}

describe("forEachLine", () => {
  it("passes on each line without its newline, across chunks, empty ones and the last unended one too", async () => {
    expect(await linesOf(["a\nb", "c\n\n", "d"])).toEqual(["a", "bc", "", "d"]);
  });

  it("passes on a line longer than MAX_LINE_CHARS in pieces as it comes, holding no more than that", async () => {
    const long = "x".repeat(2 * MAX_LINE_CHARS + 10);
    // Without a newline, in chunks of 1,000: the pieces leave as soon as there is one.
    const chunks = long.match(/.{1,1000}/g) ?? [];
    const stream = new PassThrough();
    const lines: string[] = [];
    forEachLine(stream, (line) => lines.push(line));
    for (const c of chunks) stream.write(c);
    await new Promise((r) => setImmediate(r));
    expect(lines.map((l) => l.length)).toEqual([MAX_LINE_CHARS, MAX_LINE_CHARS]);
    stream.end("y\nz");
    await new Promise((r) => stream.on("end", r));
    expect(lines.map((l) => l.length)).toEqual([MAX_LINE_CHARS, MAX_LINE_CHARS, 11, 1]);
    expect(lines.join("")).toBe(`${long}yz`);
  });

  it("cuts a long line that arrives whole in one chunk, with its newline, the same way", async () => {
    const long = "q".repeat(MAX_LINE_CHARS + 5);
    expect((await linesOf([`${long}\nend\n`])).map((l) => l.length)).toEqual([MAX_LINE_CHARS, 5, 3]);
  });

  it("keeps multi-byte characters whole across chunk boundaries", async () => {
    const stream = new PassThrough();
    const lines: string[] = [];
    forEachLine(stream, (line) => lines.push(line));
    const bytes = Buffer.from("héllo → wörld\n");
    for (const b of bytes) stream.write(Buffer.from([b]));
    stream.end();
    await new Promise((r) => stream.on("end", r));
    expect(lines).toEqual(["héllo → wörld"]);
  });
});
