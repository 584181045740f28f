// The dashboard's event stream against a real local provider and real sockets: a page that stops
// reading is dropped once its backlog passes the bound, and a page that reads keeps its stream.
import { mkdtempSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLocalProvider, type LocalProvider } from "@nitric-like/provider-local";
import type { Spec } from "@nitric-like/spec";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { type Dashboard, MAX_DASHBOARD_CONNECTIONS, startDashboard } from "./dashboard.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function world(): Promise<{ provider: LocalProvider; dashboard: Dashboard; url: string }> {
  const dir = mkdtempSync(join(tmpdir(), "nitric-like-dashboard-"));
  const spec: Spec = {
    name: "test",
    services: [],
    resources: [{ kind: "websocket", name: "s", declaredBy: [], handlers: {} }],
    policies: [],
  } as Spec;
  const provider = await createLocalProvider({
    project: { name: "test", dir, file: join(dir, "nitric-like.yaml"), services: [], websockets: {} },
    spec,
    logger: { info: () => {}, warn: () => {}, error: () => {} },
    randomPorts: true,
  });
  cleanups.push(async () => {
    await provider.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const dashboard = await startDashboard({ port: 0, fallback: true, provider: "local", spec, running: provider });
  cleanups.push(() => dashboard.close());
  const url = provider.sockets().find((s) => s.name === "s")?.url ?? "";
  return { provider, dashboard, url };
}

/** Opens the event stream as a page would, on a raw socket; `read` false leaves it unread. */
async function page(
  dashboard: Dashboard,
  read: boolean,
): Promise<{ socket: Socket; got: () => number; ended: Promise<void> }> {
  const { hostname, port } = new URL(dashboard.url);
  const socket = connect(Number(port), hostname);
  cleanups.push(() => {
    socket.destroy();
  });
  socket.on("error", () => {});
  await new Promise((resolve) => socket.once("connect", resolve));
  let got = 0;
  const ended = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  socket.write(`GET /api/events?key=${dashboard.key} HTTP/1.1\r\nHost: ${hostname}:${port}\r\n\r\n`);
  if (read)
    socket.on("data", (d: Buffer) => {
      got += d.length;
    });
  else socket.pause();
  return { socket, got: () => got, ended };
}

describe("the dashboard's event stream", () => {
  it("drops a page that stops reading once its backlog passes the bound, and keeps the one that reads", async () => {
    const { provider, dashboard, url } = await world();
    const ws = new WebSocket(url);
    cleanups.push(() => ws.terminate());
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    ws.on("message", () => {});
    const stalled = await page(dashboard, false);
    const reader = await page(dashboard, true);
    // Each frame sent shows on the pages as a traffic event with a 2,000-character preview: send
    // until the reader got 24 MB, far more than the kernel's buffers and the bound together.
    const text = Buffer.from("y".repeat(4000));
    const inspect = provider.inspect;
    while (reader.got() < 24 * 1024 * 1024) {
      for (let j = 0; j < 200; j++) await inspect.broadcast("s", text, false);
      await sleep(60);
    }
    // The stalled page reads again: it gets what TCP held for it, then the end of its stream.
    let stalledGot = 0;
    stalled.socket.on("data", (d: Buffer) => {
      stalledGot += d.length;
    });
    stalled.socket.resume();
    await stalled.ended;
    expect(stalledGot).toBeLessThan(reader.got() / 2);
    // The reader still gets events.
    const before = reader.got();
    await inspect.broadcast("s", text, false);
    for (let i = 0; i < 100 && reader.got() === before; i++) await sleep(10);
    expect(reader.got()).toBeGreaterThan(before);
    expect(reader.socket.destroyed).toBe(false);
  });
});

describe("the dashboard's connections", () => {
  it("holds at most its bound of connections: idle ones without the key make room, oldest first, for a page that has it", async () => {
    const { provider, dashboard, url } = await world();
    const reader = await page(dashboard, true);
    const { hostname, port } = new URL(dashboard.url);
    // Connections that send nothing, as any user of the machine can open: Node keeps such a one
    // open for ever, and enough of them would take every file descriptor run may open.
    const extra = 100;
    const idle: { socket: Socket; closed: boolean }[] = [];
    for (let i = 0; i < MAX_DASHBOARD_CONNECTIONS + extra; i++) {
      const socket = connect(Number(port), hostname);
      const held = { socket, closed: false };
      socket.on("error", () => {});
      socket.once("close", () => {
        held.closed = true;
      });
      cleanups.push(() => {
        socket.destroy();
      });
      idle.push(held);
      await new Promise((resolve) => socket.once("connect", resolve));
    }
    const open = () => idle.filter((h) => !h.closed).length;
    for (let i = 0; i < 200 && open() > MAX_DASHBOARD_CONNECTIONS - 1; i++) await sleep(10);
    // The page's stream kept its place; the oldest idle ones gave theirs.
    expect(open()).toBe(MAX_DASHBOARD_CONNECTIONS - 1);
    expect(idle.slice(0, extra + 1).every((h) => h.closed)).toBe(true);
    expect(reader.socket.destroyed).toBe(false);
    // A request with the key is answered while they are held, and the page still gets events.
    const state = await fetch(`${dashboard.url}/api/state`, { headers: { "x-dashboard-key": dashboard.key } });
    expect(state.status).toBe(200);
    const ws = new WebSocket(url);
    cleanups.push(() => ws.terminate());
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    const before = reader.got();
    await provider.inspect.broadcast("s", Buffer.from("x"), false);
    for (let i = 0; i < 100 && reader.got() === before; i++) await sleep(10);
    expect(reader.got()).toBeGreaterThan(before);
  });
});
