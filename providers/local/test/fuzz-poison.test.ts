// Property test: random mixes of messages to a service that exits. Clients send messages that are
// fine, messages that kill the service each time it gets them ("die") and messages that kill it
// on their first delivery only ("flaky"); the service (a real gRPC or port client playing its processes)
// dies as a process would (its streams end and the exit is reported, in either order) and is
// restarted after a random delay, as the CLI's supervisor does. Whatever the mix: each "die"
// message is delivered exactly MAX_FATAL_DELIVERIES times, its client is closed with 1011 and the
// reason, and it is logged once; every other client gets every answer and stays open; and each
// case ends with the server up and other clients fine.
import type { WebsocketEventRequest } from "@nitric-like/contracts/websockets";
import { MAX_FATAL_DELIVERIES } from "@nitric-like/provider-kit";
import type { Client } from "@nitric-like/rpc";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type WebSocket from "ws";
import {
  accept,
  closed,
  declareSocket,
  handle,
  open,
  serviceClient,
  sleep,
  startProvider,
  TRANSPORTS,
  urlOf,
  useTransport,
} from "./helpers.js";
import { cleanupRaw, type EchoWorld, stillUpAndOthersFine } from "./raw.js";

afterEach(cleanupRaw);

const text = (e: WebsocketEventRequest) =>
  e.websocketEvent.case === "message" ? Buffer.from(e.websocketEvent.value.body).toString() : "";

const spec = {
  name: "test",
  services: [],
  resources: [
    {
      kind: "websocket" as const,
      name: "echo",
      declaredBy: ["svc"],
      handlers: { connect: "svc", disconnect: "svc", message: "svc" },
    },
  ],
  policies: [],
};

/** How the next deaths go: stream first or exit first, and the restart delay (ms). */
interface DeathPlan {
  streamFirst: boolean;
  restartMs: number;
}

/**
 * Service "svc" as the CLI runs it: one process at a time, each echoing messages, except that a
 * message starting with "die" (always) or "flaky" (on its first delivery only) makes it
 * die before it answers; it is then restarted.
 */
class DyingService {
  /** Deliveries per message text, over all processes. */
  readonly deliveries = new Map<string, number>();
  plans: DeathPlan[] = [{ streamFirst: false, restartMs: 0 }];
  deaths = 0;
  /** Resolves when no process is dying or starting. */
  settled: Promise<void> = Promise.resolve();

  constructor(private readonly world: EchoWorld) {}

  async start(): Promise<void> {
    const { provider } = this.world;
    provider.serviceStarting("svc");
    const client: Client = await serviceClient(provider, "svc");
    await declareSocket(client, "echo");
    const proc = { dead: false, calls: [] as { end(): void }[] };
    const die = () => {
      proc.dead = true;
      const plan = this.plans[this.deaths++ % this.plans.length] as DeathPlan;
      this.settled = (async () => {
        await sleep(0);
        if (plan.streamFirst) {
          for (const c of proc.calls) c.end();
          await sleep(5);
          provider.serviceExited("svc", 1, null);
        } else {
          provider.serviceExited("svc", 1, null);
          for (const c of proc.calls) c.end();
        }
        await sleep(plan.restartMs);
        await this.start();
      })();
    };
    proc.calls.push((await handle(client, "echo", "connect", accept)).call);
    proc.calls.push((await handle(client, "echo", "disconnect", () => ({}))).call);
    const messages = await handle(client, "echo", "message", (e) => {
      const t = text(e);
      const n = (this.deliveries.get(t) ?? 0) + 1;
      this.deliveries.set(t, n);
      if (proc.dead) return undefined;
      if (t.startsWith("die") || (t.startsWith("flaky") && n === 1)) {
        die();
        return undefined;
      }
      return { replies: e.websocketEvent.case === "message" ? [{ data: e.websocketEvent.value.body }] : [] };
    });
    proc.calls.push(messages.call);
    this.world.client = client;
  }
}

const kind = fc.oneof(
  { weight: 6, arbitrary: fc.constant("fine") },
  { weight: 1, arbitrary: fc.constant("die") },
  { weight: 1, arbitrary: fc.constant("flaky") },
);
const aCase = fc.record({
  clients: fc.array(
    fc.array(fc.record({ kind, pauseMs: fc.integer({ min: 0, max: 8 }) }), { minLength: 1, maxLength: 5 }),
    {
      minLength: 1,
      maxLength: 3,
    },
  ),
  plans: fc.array(fc.record({ streamFirst: fc.boolean(), restartMs: fc.integer({ min: 0, max: 30 }) }), {
    minLength: 1,
    maxLength: 4,
  }),
});

describe.each(TRANSPORTS)("fuzz: messages to a service that exits, over %s", (transport) => {
  beforeEach(() => useTransport(transport));

  it("drops each message that kills its service after MAX_FATAL_DELIVERIES, closing only its client with 1011; everyone else is answered", async () => {
    const { provider, logs } = await startProvider({ spec });
    const world = { provider, logs, url: urlOf(provider, "echo"), connects: { events: [] } } as unknown as EchoWorld;
    const service = new DyingService(world);
    await service.start();
    world.bystander = await open(world.url);
    let run = 0;
    let poisoned = 0;
    await fc.assert(
      fc.asyncProperty(aCase, async ({ clients, plans }) => {
        run++;
        await service.settled;
        service.plans = plans;
        logs.error.length = 0;
        const sockets = await Promise.all(clients.map(() => open(world.url)));
        const got = sockets.map(() => [] as string[]);
        const ends = sockets.map((ws, i) => {
          ws.on("message", (data: Buffer) => got[i]?.push(data.toString()));
          return closed(ws);
        });
        const ended: ({ code: number; reason: string } | undefined)[] = sockets.map(() => undefined);
        for (const [i, p] of ends.entries())
          void p.then((c) => {
            ended[i] = c;
          });
        const sent = clients.map(() => [] as string[]);
        await Promise.all(
          clients.map(async (list, i) => {
            for (const [j, m] of list.entries()) {
              const ws = sockets[i] as WebSocket;
              if (ws.readyState !== 1) break;
              const t = `${m.kind} ${run}.${i}.${j}`;
              sent[i]?.push(t);
              ws.send(t);
              if (m.pauseMs > 0) await sleep(m.pauseMs);
            }
          }),
        );
        const deadly = clients.map((_, i) => (sent[i] ?? []).some((t) => t.startsWith("die")));
        // Settles when every client that sent a deadly message is closed and every other has all its answers.
        for (let waited = 0; ; waited += 10) {
          const done = clients.every((_, i) =>
            deadly[i] ? ended[i] !== undefined : (got[i]?.length ?? 0) >= (sent[i]?.length ?? 0),
          );
          if (done) break;
          if (waited > 15000)
            throw new Error(
              `case ${run} did not settle: sent ${JSON.stringify(sent)}, got ${JSON.stringify(got)}, closed ${JSON.stringify(ended)}`,
            );
          await sleep(10);
        }
        // Then until nothing moves: no death or restart under way, no delivery or log line for 100 ms
        // (a client's second deadly message may still be on its way after the first closed it).
        for (let last = -1; ; ) {
          await service.settled;
          const now = [...service.deliveries.values()].reduce((a, b) => a + b, 0) + logs.error.length;
          if (now === last) break;
          last = now;
          await sleep(100);
        }
        const dieMessages = sent.flat().filter((t) => t.startsWith("die") && (service.deliveries.get(t) ?? 0) > 0);
        for (const [i] of clients.entries()) {
          if (deadly[i]) {
            expect(ended[i]).toEqual({
              code: 1011,
              reason: `message handler's service "svc" exited twice while handling this message`,
            });
          } else {
            expect(ended[i]).toBeUndefined();
            expect([...(got[i] ?? [])].sort()).toEqual([...(sent[i] ?? [])].sort());
          }
          // Whatever a client was answered is an echo of what it sent, and never a "die" message.
          for (const g of got[i] ?? []) {
            expect(sent[i]).toContain(g);
            expect(g.startsWith("die")).toBe(false);
          }
        }
        for (const t of dieMessages) expect(service.deliveries.get(t)).toBe(MAX_FATAL_DELIVERIES);
        expect(logs.error).toHaveLength(dieMessages.length);
        for (const line of logs.error)
          expect(line).toMatch(
            /^websocket "echo": service "svc" exited twice while handling a \d+-byte message of connection \S+, so that event is dropped; closed the connection with 1011$/,
          );
        poisoned += dieMessages.length;
        for (const ws of sockets) ws.terminate();
        await stillUpAndOthersFine(world);
      }),
      // No shrinking: each replay restarts services for real, and the counterexample reads well as it is.
      { numRuns: 30, endOnFailure: true },
    );
    console.log(
      `fuzz-poison (${transport}): ${run} cases, ${poisoned} poison messages, ${service.deaths} service deaths`,
    );
    expect(poisoned).toBeGreaterThan(0);
  }, 120000);
});
