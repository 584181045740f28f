// PortClient against a peer that never answers and one that closes: what the provider's side
// cannot show (see providers/local/test/port.test.ts for the endpoint served over a port).
import { MessageChannel } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { Health } from "./gen/grpc/health/v1/health_pb.js";
import { WebsocketHandler } from "./gen/nitric/proto/websockets/v1/websockets_pb.js";
import { GrpcStatus } from "./grpc.js";
import { PortClient } from "./port.js";

describe("PortClient", () => {
  it("fails a call past its deadline with DEADLINE_EXCEEDED and tells the server to cancel it", async () => {
    const { port1, port2 } = new MessageChannel();
    const frames: unknown[][] = [];
    port1.on("message", (f: unknown[]) => frames.push(f));
    const client = new PortClient(port2);
    const call = client.unary(Health.method.check, { service: "x" }, { timeoutMs: 20 });
    await expect(call).rejects.toMatchObject({ code: GrpcStatus.DEADLINE_EXCEEDED });
    await new Promise((r) => setTimeout(r, 20));
    expect(frames.map((f) => f[0])).toEqual([0, 3]);
    expect(frames[0]?.[2]).toBe("/grpc.health.v1.Health/Check");
    port1.close();
  });

  it("fails calls in flight with UNAVAILABLE when the provider's end closes, and refuses new ones", async () => {
    const { port1, port2 } = new MessageChannel();
    const client = new PortClient(port2);
    const call = client.unary(Health.method.check, { service: "x" });
    const stream = client.bidi(WebsocketHandler.method.handleEvents);
    stream.on("error", () => {});
    const status = new Promise<number>((resolve) => stream.on("status", (s) => resolve(s.code)));
    port1.close();
    await expect(call).rejects.toMatchObject({ code: GrpcStatus.UNAVAILABLE });
    expect(await status).toBe(GrpcStatus.UNAVAILABLE);
    await expect(client.unary(Health.method.check, { service: "x" })).rejects.toMatchObject({
      code: GrpcStatus.UNAVAILABLE,
    });
  });
});
