// The dashboard's log events, read from its real event stream: service output is sent only while a
// page listens, consecutive lines of one stream travel as one entry, colours are stripped, and a
// stopping dashboard tells its pages before it ends their streams.
import type { RunningProvider, Spec } from "@nitric-like/spec";
import { afterEach, expect, it } from "vitest";
import { type Dashboard, startDashboard } from "./dashboard.js";

let dashboard: Dashboard | undefined;
afterEach(async () => {
  await dashboard?.close();
  dashboard = undefined;
});

const spec = { name: "app", services: [], resources: [], policies: [] } as unknown as Spec;

/** A provider with no inspector, as a third-party one may be. */
const provider: RunningProvider = {
  endpoint: () => Promise.reject(new Error("none")),
  serviceStarting: () => {},
  serviceExited: () => undefined,
  registrations: () => [],
  onRegistrationsChanged: () => {},
  sockets: () => [],
  stop: async () => {},
};

/** Opens the event stream; `events()` is every event read so far, by name. */
async function listen(dashboard: Dashboard) {
  const response = await fetch(`${dashboard.url}/api/events?key=${dashboard.key}`);
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  const seen: { event: string; data: unknown }[] = [];
  let buffered = "";
  const done = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffered += decoder.decode(value, { stream: true });
      let end = buffered.indexOf("\n\n");
      while (end >= 0) {
        const frame = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        const event = /^event: (.*)$/m.exec(frame)?.[1] ?? "";
        const data = JSON.parse(/^data: (.*)$/m.exec(frame)?.[1] ?? "null") as unknown;
        seen.push({ event, data });
        end = buffered.indexOf("\n\n");
      }
    }
  })();
  return {
    events: (name: string) => seen.filter((e) => e.event === name).map((e) => e.data),
    names: () => seen.map((e) => e.event),
    done,
  };
}

async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
}

it("sends service output only while a page listens, a stream's consecutive lines as one entry, without colours", async () => {
  dashboard = await startDashboard({ port: 0, fallback: false, provider: "third", spec, running: provider });
  dashboard.serviceLine("a", "stdout", "printed with no page open");
  const page = await listen(dashboard);
  await until(() => page.events("state").length === 1);
  dashboard.serviceLine("a", "stderr", "Error: \u001b[31mred\u001b[39m");
  dashboard.serviceLine("a", "stderr", "    at f (a.ts:1:1)");
  dashboard.serviceLine("b", "stdout", "from b");
  dashboard.serviceLine("a", "stdout", "x".repeat(5000));
  await until(() => page.events("log").length > 0);
  expect(page.events("log")).toEqual([
    {
      dropped: 0,
      entries: [
        { service: "a", stream: "stderr", at: expect.any(Number), lines: ["Error: red", "    at f (a.ts:1:1)"] },
        { service: "b", stream: "stdout", at: expect.any(Number), lines: ["from b"] },
        { service: "a", stream: "stdout", at: expect.any(Number), lines: ["x".repeat(2000)] },
      ],
    },
  ]);
});

it("counts the lines over the bound of one flush instead of sending them", async () => {
  dashboard = await startDashboard({ port: 0, fallback: false, provider: "third", spec, running: provider });
  const page = await listen(dashboard);
  await until(() => page.events("state").length === 1);
  for (let i = 0; i < 1000; i++) dashboard.serviceLine("a", "stdout", `line ${i}`);
  await until(() => page.events("log").length > 0);
  const [batch] = page.events("log") as { entries: { lines: string[] }[]; dropped: number }[];
  expect(batch?.entries[0]?.lines).toHaveLength(200);
  expect(batch?.dropped).toBe(800);
});

it("tells its pages the run stopped, with the last lines first, then ends their streams", async () => {
  dashboard = await startDashboard({ port: 0, fallback: false, provider: "third", spec, running: provider });
  const page = await listen(dashboard);
  await until(() => page.events("state").length === 1);
  dashboard.serviceLine("a", "stdout", "last words");
  await dashboard.close();
  dashboard = undefined;
  await page.done;
  expect((page.events("log")[0] as { entries: { lines: string[] }[] }).entries[0]?.lines).toEqual(["last words"]);
  expect(page.events("stopped")).toEqual([{ at: expect.any(Number) }]);
  expect(page.names()).toEqual(["state", "log", "stopped"]);
});
