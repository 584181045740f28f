// The gRPC transport where the suite over every transport (transports.test.ts) cannot look: the
// addresses it is given.
import { createServer } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { Health, HealthCheckResponse_ServingStatus } from "@nitric-like/contracts/health";
import { WebsocketHandler } from "@nitric-like/contracts/websockets";
import { describe, expect, it } from "vitest";
import { Client } from "./client.js";
import { createGrpcTransport, GrpcServer, MAX_CONCURRENT_STREAMS } from "./grpc.js";
import { methodPath, Router } from "./router.js";
import { Code } from "./status.js";
import { MAX_UNARY_IN_FLIGHT } from "./waiting.js";

/** A port on 127.0.0.1 that was free a moment ago and that nobody listens on now. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe("createGrpcTransport", () => {
  it("fails calls to an address grpc-js cannot parse with UNAVAILABLE naming it, instead of throwing", async () => {
    const client = new Client(createGrpcTransport(""));
    await expect(client.unary(Health.method.check, { service: "" })).rejects.toMatchObject({
      code: Code.UNAVAILABLE,
      details: 'grpc: cannot call "" (Could not parse target name ""); give the address as host:port or unix:<path>',
    });
    const stream = client.bidi(WebsocketHandler.method.handleEvents);
    stream.on("error", () => {});
    const status = await new Promise<{ code: number }>((resolve) => stream.on("status", resolve));
    expect(status.code).toBe(Code.UNAVAILABLE);
    client.close();
  });

  it("fails calls to an address where nobody listens with UNAVAILABLE", async () => {
    const client = new Client(createGrpcTransport(`127.0.0.1:${await closedPort()}`));
    await expect(client.unary(Health.method.check, { service: "" })).rejects.toMatchObject({
      code: Code.UNAVAILABLE,
    });
    client.close();
  });

  it("keeps at most MAX_UNARY_IN_FLIGHT unary calls open, the rest waiting in its process in order, each answered once; close() cancels the waiting ones", async () => {
    // A real server that holds every check until the test answers it.
    const seen: string[] = [];
    const held: ((error: null, response: { status: HealthCheckResponse_ServingStatus }) => void)[] = [];
    const server = new GrpcServer(
      new Router().service(Health, {
        check(call, respond) {
          seen.push(call.request.service);
          held.push(respond);
        },
      }),
    );
    const address = `127.0.0.1:${await server.bind("127.0.0.1:0")}`;
    const client = new Client(createGrpcTransport(address));
    const n = MAX_UNARY_IN_FLIGHT + 300;
    const answered: string[] = [];
    const calls = Array.from({ length: n }, (_, i) =>
      client.unary(Health.method.check, { service: `s${i}` }).then(() => answered.push(`s${i}`)),
    );
    const until = async (done: () => boolean) => {
      const end = Date.now() + 10_000;
      while (!done() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    };
    await until(() => seen.length >= MAX_UNARY_IN_FLIGHT);
    // Time for any call that was not held back to arrive as well.
    await new Promise((r) => setTimeout(r, 200));
    expect(seen).toHaveLength(MAX_UNARY_IN_FLIGHT);
    expect(new Set(seen)).toEqual(new Set(Array.from({ length: MAX_UNARY_IN_FLIGHT }, (_, i) => `s${i}`)));
    // Each answer lets one waiting call open, until every call is answered; the server never
    // has more than MAX_UNARY_IN_FLIGHT unanswered.
    let responded = 0;
    while (answered.length < n) {
      const now = held.splice(0);
      for (const respond of now) respond(null, { status: HealthCheckResponse_ServingStatus.SERVING });
      responded += now.length;
      await until(() => held.length > 0 || answered.length === n);
      await new Promise((r) => setTimeout(r, 20));
      expect(seen.length - responded).toBeLessThanOrEqual(MAX_UNARY_IN_FLIGHT);
    }
    await Promise.all(calls);
    expect(new Set(answered).size).toBe(n);
    expect(seen).toHaveLength(n);
    expect(new Set(seen).size).toBe(n);

    // close() ends the waiting calls with CANCELLED, and they never reach the server.
    const open = Array.from({ length: MAX_UNARY_IN_FLIGHT }, () =>
      client.unary(Health.method.check, { service: "open" }),
    );
    for (const call of open) call.catch(() => {});
    const waiting = client.unary(Health.method.check, { service: "waiting" });
    await until(() => held.length === MAX_UNARY_IN_FLIGHT);
    client.close();
    await expect(waiting).rejects.toMatchObject({ code: Code.CANCELLED });
    await new Promise((r) => setTimeout(r, 100));
    expect(seen.filter((s) => s === "waiting")).toHaveLength(0);
    server.forceStop();
  });

  it("takes at most MAX_CONCURRENT_STREAMS calls of one client connection at once (HTTP/2's own limit): a client with no cap of its own waits, and every call completes", async () => {
    const held: (() => void)[] = [];
    let seen = 0;
    const server = new GrpcServer(
      new Router().service(Health, {
        check(_call, respond) {
          seen++;
          held.push(() => respond(null, { status: HealthCheckResponse_ServingStatus.SERVING }));
        },
      }),
    );
    const port = await server.bind("127.0.0.1:0");
    // grpc-js itself, not our transport (which holds calls back on its own side).
    const raw = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const n = MAX_CONCURRENT_STREAMS + 300;
    let done = 0;
    const all = new Promise<void>((resolve, reject) => {
      for (let i = 0; i < n; i++)
        raw.makeUnaryRequest(
          methodPath(Health.method.check),
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.alloc(0),
          (error) => {
            if (error) reject(error);
            else if (++done === n) resolve();
          },
        );
    });
    const until = async (ok: () => boolean) => {
      const end = Date.now() + 10_000;
      while (!ok() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    };
    await until(() => seen >= MAX_CONCURRENT_STREAMS);
    await new Promise((r) => setTimeout(r, 200));
    expect(seen).toBe(MAX_CONCURRENT_STREAMS);
    while (done < n) {
      for (const answer of held.splice(0)) answer();
      await until(() => held.length > 0 || done === n);
    }
    await all;
    expect(seen).toBe(n);
    raw.close();
    server.forceStop();
  });
});
