import { DynamoDbClient } from "@nitric-like/provider-aws/runtime";
import { describe, expect, it } from "vitest";
import { CALLER, useSocketSimulations } from "../src/aws-sim.js";

const SERVICE = `import { websocket } from "@nitric-like/sdk";

const room = websocket("room");
room.on("connect", () => {});
room.on("disconnect", () => {});
room.on("message", async (ctx) => {
  const sent = await room.broadcast(ctx.text(), { except: ctx.connectionId });
  ctx.reply(JSON.stringify({ sent }));
});
`;

const sims = useSocketSimulations("fanout", SERVICE);

/** The built app in the emulator, its socket's Management API the double, `ids` (and the caller) recorded as connected. */
async function simulate(
  stack: string,
  ids: string[],
  double: { perSecond: number; burst?: number; gone: string[] },
  env: Record<string, string> = {},
) {
  const sim = await sims.simulate({
    stack,
    connected: ids,
    double,
    env,
  });
  const { management, lines } = sim;
  const broadcast = async () => {
    const body = await sim.send("to everyone");
    return { sent: (JSON.parse(body) as { sent: number }).sent, deliveredThen: management.delivered() };
  };
  const recorded = async () => {
    const client = new DynamoDbClient(sims.dynamodbEnv());
    const found = new Set<string>();
    let start: Record<string, { S?: string }> | undefined;
    do {
      const page = await client.query({
        TableName: `${stack}-ConnectionsTable`,
        KeyConditionExpression: "#s = :s",
        ExpressionAttributeNames: { "#s": "socket" },
        ExpressionAttributeValues: { ":s": { S: "room" } },
        ...(start ? { ExclusiveStartKey: start } : {}),
      });
      for (const item of page.Items ?? []) found.add(item.id?.S ?? "");
      start = page.LastEvaluatedKey;
    } while (start);
    return found;
  };
  return { management, lines, broadcast, recorded };
}

async function until(what: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!what() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}

const idsOf = (n: number, prefix: string) =>
  Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(10, "0")}=`);

describe("broadcast on AWS, simulated", () => {
  it("fans 5,000 connections out in pages: each gets the frame exactly once, 410s are pruned, 429s retried, and the caller returns first", async () => {
    const ids = idsOf(5000, "Fan");
    const gone = ids.filter((_, i) => i % 20 === 7); // 250
    const live = ids.filter((id) => !gone.includes(id));
    // 1,000 posts a second, at most 20 at once: the 4,750 frames take at least 4.7 s, and the
    // pages' first bursts are throttled however fast this machine is.
    const sim = await simulate(
      "fanout",
      ids,
      { perSecond: 1000, burst: 20, gone },
      { NITRIC_LIKE_BROADCAST_PAGE_SIZE: "250" },
    );

    const { sent, deliveredThen } = await sim.broadcast();
    // The caller is answered with how many connections it handed over itself (5 pages), before
    // delivery is done; a continuation reads and hands over the rest.
    expect(sent).toBeGreaterThanOrEqual(5 * 250);
    expect(sent).toBeLessThan(6 * 250);
    expect(deliveredThen).toBeLessThan(live.length);

    await until(() => sim.management.delivered() >= live.length, 40_000);
    await new Promise((r) => setTimeout(r, 500)); // a frame posted twice would arrive by now
    expect(sim.management.delivered()).toBe(live.length);
    expect(sim.management.received.size).toBe(live.length);
    expect([...sim.management.received.values()].every((n) => n === 1)).toBe(true);
    for (const id of live) expect(sim.management.received.get(id)).toBe(1);
    expect(sim.management.received.has(CALLER)).toBe(false);
    expect(sim.management.throttled()).toBeGreaterThan(0);
    expect(sim.management.goneAnswers()).toBe(gone.length);

    // Each page's invocation logs what it delivered: together, every frame.
    await until(() => sim.lines.filter((l) => / page \d+: delivered/.test(l)).length >= 20, 5000);
    await new Promise((r) => setTimeout(r, 200));
    const pages = sim.lines
      .map((l) => / page (\d+): delivered (\d+) of (\d+) frame\(s\), (\d+) gone/.exec(l))
      .filter((m) => m !== null);
    expect(pages.map((m) => Number(m[1])).sort((a, b) => a - b)).toEqual(
      Array.from({ length: pages.length }, (_, i) => i + 1),
    );
    expect(pages.reduce((s, m) => s + Number(m[2]), 0)).toBe(live.length);
    expect(pages.reduce((s, m) => s + Number(m[4]), 0)).toBe(gone.length);
    // The caller and one continuation log how many connections they handed over: together, all.
    const handedOver = sim.lines
      .map((l) => /broadcast [0-9a-f-]{36}: (\d+) connection\(s\) handed to page invocations/.exec(l))
      .filter((m) => m !== null);
    expect(handedOver.map((m) => Number(m[1]))).toEqual([sent, 5000 - sent]);

    // The gone connections' records are pruned; the others are kept.
    const recorded = await sim.recorded();
    expect(recorded.size).toBe(live.length + 1);
    for (const id of gone) expect(recorded.has(id)).toBe(false);
  }, 90_000);

  it("posts a broadcast to at most 100 connections from the calling function and answers how many got it", async () => {
    const ids = idsOf(60, "Few");
    const gone = ids.slice(0, 5);
    const sim = await simulate("inline", ids, { perSecond: 10_000, gone });
    const { sent, deliveredThen } = await sim.broadcast();
    expect(sent).toBe(55);
    expect(deliveredThen).toBe(55);
    expect([...sim.management.received.values()].every((n) => n === 1)).toBe(true);
    expect(sim.lines.join("\n")).not.toMatch(/asynchronous invocation/);
  }, 60_000);
});
