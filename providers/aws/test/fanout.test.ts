// One page of a broadcast (src/websocket/fanout.ts) posted through our Management API client to a
// loopback server playing API Gateway: which answers are retried (429 only: API Gateway did not
// take the frame) and which never are (5xx, a dropped connection: it may have), so that no frame
// is posted twice; 410s are pruned; throttled posts stop at the invocation's deadline.
import { afterEach, describe, expect, it } from "vitest";
import { ManagementApiClient } from "../src/aws/management.js";
import { postPage } from "../src/websocket/fanout.js";
import { type Answer, cleanup, ENV, loopback } from "./helpers.js";

afterEach(cleanup);

const NO_RETRY = { attempts: 1, baseDelayMs: 0, throttlingBaseDelayMs: 0 };

const error = (status: number, type: string): Answer => ({
  status,
  headers: { "content-type": "application/json", "x-amzn-errortype": type },
  body: JSON.stringify({ message: type }),
});

async function page(answer: (id: string, seen: number) => Answer) {
  const seen = new Map<string, number>();
  const server = await loopback((r) => {
    const id = decodeURIComponent(r.path.replace(/^\/live\/@connections\//, ""));
    const n = (seen.get(id) ?? 0) + 1;
    seen.set(id, n);
    return answer(id, n);
  });
  return { seen, management: new ManagementApiClient(`${server.url}/live`, { ...ENV }, NO_RETRY) };
}

describe("postPage", () => {
  it("retries throttled posts until each is taken, prunes gone ones, and never re-posts one that failed otherwise", async () => {
    const { seen, management } = await page((id, n) => {
      if (id.startsWith("gone")) return error(410, "GoneException");
      if (id.startsWith("broken")) return error(500, "InternalServerErrorException");
      if (id.startsWith("busy") && n <= 3) return error(429, "LimitExceededException");
      return { status: 200 };
    });
    const ids = [
      ...Array.from({ length: 20 }, (_, i) => `ok${i}`),
      ...Array.from({ length: 10 }, (_, i) => `busy${i}`),
      ...Array.from({ length: 5 }, (_, i) => `gone${i}`),
      ...Array.from({ length: 3 }, (_, i) => `broken${i}`),
    ];
    const pruned: string[] = [];
    const outcome = await postPage(ids, Buffer.from("hi"), {
      management,
      deadline: Date.now() + 20_000,
      prune: async (id) => {
        pruned.push(id);
      },
    });
    expect(outcome).toMatchObject({ delivered: 30, gone: 5, failed: 3, throttled: 30 });
    expect(outcome.firstError).toMatch(/^InternalServerErrorException \(500\)/);
    for (let i = 0; i < 20; i++) expect(seen.get(`ok${i}`)).toBe(1);
    for (let i = 0; i < 10; i++) expect(seen.get(`busy${i}`)).toBe(4);
    for (let i = 0; i < 3; i++) expect(seen.get(`broken${i}`)).toBe(1);
    expect(pruned.sort()).toEqual(["gone0", "gone1", "gone2", "gone3", "gone4"]);
  });

  it("gives up on posts still throttled at the deadline, counting them as failed", async () => {
    const { seen, management } = await page(() => error(429, "LimitExceededException"));
    const started = Date.now();
    const outcome = await postPage(["a", "b"], Buffer.from("hi"), {
      management,
      deadline: Date.now() + 300,
      prune: async () => {},
    });
    expect(Date.now() - started).toBeLessThan(2000);
    expect(outcome).toMatchObject({ delivered: 0, failed: 2 });
    expect(outcome.firstError).toMatch(/throttled until the invocation's deadline/);
    expect(seen.get("a")).toBeGreaterThan(1);
  });

  it("keeps at most maxConcurrency posts in flight", async () => {
    let inFlight = 0;
    let peak = 0;
    const { createServer } = await import("node:http");
    const server = createServer((req, res) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      req.resume();
      req.on("end", () =>
        setTimeout(() => {
          inFlight--;
          res.writeHead(200).end();
        }, 5),
      );
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const { port } = server.address() as { port: number };
    const management = new ManagementApiClient(`http://127.0.0.1:${port}/live`, { ...ENV }, NO_RETRY);
    const outcome = await postPage(
      Array.from({ length: 300 }, (_, i) => `c${i}`),
      Buffer.from("hi"),
      { management, deadline: Date.now() + 20_000, prune: async () => {}, maxConcurrency: 12 },
    );
    await new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections();
    });
    expect(outcome.delivered).toBe(300);
    expect(peak).toBeLessThanOrEqual(12);
    expect(peak).toBeGreaterThan(8);
  });
});
