import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  AWS_DELIVERY_ENVELOPE_BYTES,
  AWS_MAX_ASYNC_PAYLOAD_BYTES,
  AWS_MAX_FRAME_BYTES,
  awsConnectReplies,
  awsConnectReplyTooLarge,
  awsDeliveryCost,
  awsFrameWatcher,
  type FrameRuleBreak,
} from "./aws-rules.js";

/** One client frame as RFC 6455 section 5.2 lays it out (masked), with the 7, 16 or 64-bit length. */
function frame(opcode: number, fin: boolean, length: number): Buffer {
  const head =
    length < 126
      ? Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | length])
      : length < 65536
        ? Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | 126, length >> 8, length & 0xff])
        : Buffer.concat([Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | 127]), u64(length)]);
  return Buffer.concat([head, randomBytes(4), randomBytes(length)]);
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

/** What a watcher reported: the rule, the chunk it came in (`from` to `at`) and the messages before. */
interface Watched {
  rule?: FrameRuleBreak;
  at: number;
  from: number;
  before: number;
}

/** Feeds `bytes` to a watcher in chunks cut at `cuts`; returns what it reported and after how many bytes. */
function watch(bytes: Buffer, cuts: number[]): Watched {
  let got: Watched = { at: -1, from: -1, before: -1 };
  let fed = 0;
  let start = 0;
  const watcher = awsFrameWatcher((rule, before) => {
    got = { rule, at: fed, from: start, before };
  });
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  let from = 0;
  for (const to of [...points, bytes.length]) {
    if (to <= from) continue;
    fed = to;
    start = from;
    watcher(bytes.subarray(from, to));
    from = to;
  }
  return got;
}

// Text, continuation and control frames of a legal stream, each within the limits.
const legal = fc.array(
  fc.oneof(
    fc.record({ opcode: fc.constant(0x1), length: fc.integer({ min: 0, max: AWS_MAX_FRAME_BYTES }) }),
    fc.record({ opcode: fc.constant(0x0), length: fc.integer({ min: 0, max: 300 }) }),
    fc.record({ opcode: fc.constantFrom(0x9, 0xa), length: fc.integer({ min: 0, max: 125 }) }),
  ),
  { maxLength: 6 },
);

describe("awsFrameWatcher", () => {
  it("lets frames within API Gateway's rules pass, however the bytes are cut", () => {
    fc.assert(
      fc.property(legal, fc.array(fc.nat(), { maxLength: 20 }), (frames, cuts) => {
        const bytes = Buffer.concat(frames.map((f) => frame(f.opcode, true, f.length)));
        expect(watch(bytes, cuts).rule).toBeUndefined();
      }),
      { numRuns: 200 },
    );
  });

  it("reports a binary frame (1003) or a data frame over 32 KB (1009) at its header, after legal frames, however the bytes are cut", () => {
    fc.assert(
      fc.property(
        legal,
        fc.oneof(
          fc.record({ opcode: fc.constant(0x2), length: fc.integer({ min: 0, max: 70_000 }) }),
          fc.record({
            opcode: fc.constantFrom(0x0, 0x1),
            length: fc.integer({ min: AWS_MAX_FRAME_BYTES + 1, max: 70_000 }),
          }),
        ),
        fc.array(fc.nat(), { maxLength: 20 }),
        (before, bad, cuts) => {
          const prefix = Buffer.concat(before.map((f) => frame(f.opcode, true, f.length)));
          const last = frame(bad.opcode, true, bad.length);
          const headerLength = last.length - bad.length;
          const got = watch(Buffer.concat([prefix, last]), cuts);
          expect(got.rule?.code).toBe(bad.opcode === 0x2 ? 1003 : 1009);
          // Reported in the chunk that completed the header, before the payload was all there.
          expect(got.at).toBeGreaterThanOrEqual(prefix.length + headerLength);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("counts the messages that end in the breaking frame's chunk ahead of it, which ws delivers next", () => {
    fc.assert(
      fc.property(legal, fc.array(fc.nat(), { maxLength: 20 }), (before, cuts) => {
        const frames = before.map((f) => frame(f.opcode, true, f.length));
        const got = watch(Buffer.concat([...frames, frame(0x2, true, 3)]), cuts);
        // Where each text or continuation frame (every one is FIN here) ends.
        let end = 0;
        let expected = 0;
        for (const [i, f] of before.entries()) {
          end += (frames[i] as Buffer).length;
          if (f.opcode < 0x8 && end > got.from) expected++;
        }
        expect(got.before).toBe(expected);
      }),
      { numRuns: 300 },
    );
  });

  it("counts a fragmented message once, at its last fragment, and none that the breaking frame cuts", () => {
    let before = -1;
    const watcher = awsFrameWatcher((_, n) => {
      before = n;
    });
    watcher(
      Buffer.concat([
        frame(0x1, false, 5),
        frame(0x9, true, 2),
        frame(0x0, true, 5), // the end of the first message
        frame(0x1, true, 0), // a whole empty one
        frame(0x1, false, 4), // the start of a third, which the binary frame cuts
        frame(0x2, true, 3),
      ]),
    );
    expect(before).toBe(2);
  });

  it("reports once, and reads nothing after", () => {
    let reports = 0;
    const watcher = awsFrameWatcher(() => {
      reports++;
    });
    watcher(Buffer.concat([frame(0x2, true, 3), frame(0x2, true, 3), frame(0x1, true, 40_000)]));
    expect(reports).toBe(1);
  });
});

describe("awsConnectReplies", () => {
  const reply = (bytes: number) => ({ data: new Uint8Array(bytes), binary: false });
  it("keeps the replies the delivery event has room for, in order, and says why each other was left out", () => {
    const kept = awsConnectReplies("s", "c", AWS_DELIVERY_ENVELOPE_BYTES, [
      reply(10),
      reply(128 * 1024 + 1),
      reply(20),
    ]);
    expect(kept.kept.map((r) => r.data.byteLength)).toEqual([10, 20]);
    expect(kept.dropped).toEqual([awsConnectReplyTooLarge("s", "c", 128 * 1024 + 1)]);
    // 7 sends of 100 KB kept: a 100 KB reply no longer fits, a small one still does.
    const taken = AWS_DELIVERY_ENVELOPE_BYTES + 7 * awsDeliveryCost(100 * 1024);
    const full = awsConnectReplies("s", "c", taken, [reply(100 * 1024), reply(100)]);
    expect(full.kept.map((r) => r.data.byteLength)).toEqual([100]);
    expect(full.dropped).toEqual([
      expect.stringMatching(/^websocket "s": a reply of 102400 bytes from the connect handler of c did not fit/),
    ]);
    // What it keeps fits in Lambda's 1 MB with the sends, by the same cost it charges them.
    expect(taken + awsDeliveryCost(100)).toBeLessThanOrEqual(AWS_MAX_ASYNC_PAYLOAD_BYTES);
  });
});
