// LeadingEdgeBatcher with real timers: what it writes, and when.
import { describe, expect, it } from "vitest";
import { LeadingEdgeBatcher } from "./batcher.js";

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A batcher whose writes are kept in order: a lone message as itself, a batch as an array. */
function recorded() {
  const writes: (string | string[])[] = [];
  const b = new LeadingEdgeBatcher<string>(
    (m) => writes.push(m),
    (ms) => writes.push(ms),
  );
  return { writes, b };
}

describe("LeadingEdgeBatcher", () => {
  it("writes a lone message at once, and those that follow it in the same turn as one batch", async () => {
    const { writes, b } = recorded();
    b.push("a");
    expect(writes).toEqual(["a"]);
    b.push("b");
    b.push("c");
    expect(writes).toEqual(["a"]);
    await turn();
    expect(writes).toEqual(["a", ["b", "c"]]);
    // The window stayed open for one more turn: a message now still waits for it...
    b.push("d");
    expect(writes).toEqual(["a", ["b", "c"]]);
    await turn();
    expect(writes).toEqual(["a", ["b", "c"], "d"]);
    // ...and after a turn with nothing, it is closed: the next message goes out at once.
    await turn();
    await turn();
    b.push("e");
    expect(writes).toEqual(["a", ["b", "c"], "d", "e"]);
  });

  it("drops what waits when cleared, keeping the order of what it wrote", async () => {
    const { writes, b } = recorded();
    b.push("a");
    b.push("b");
    b.clear();
    await turn();
    expect(writes).toEqual(["a"]);
  });

  it("writes what waits at once when drained, and nothing twice at the end of the turn", async () => {
    const { writes, b } = recorded();
    b.push("a");
    b.push("b");
    b.push("c");
    b.drain();
    expect(writes).toEqual(["a", ["b", "c"]]);
    b.push("d");
    b.drain();
    expect(writes).toEqual(["a", ["b", "c"], "d"]);
    await turn();
    await turn();
    expect(writes).toEqual(["a", ["b", "c"], "d"]);
  });
});
