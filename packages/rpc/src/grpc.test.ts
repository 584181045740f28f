// The gRPC transport where the suite over every transport (transports.test.ts) cannot look: the
// addresses it is given.
import { createServer } from "node:net";
import { Health } from "@nitric-like/contracts/health";
import { WebsocketHandler } from "@nitric-like/contracts/websockets";
import { describe, expect, it } from "vitest";
import { Client } from "./client.js";
import { createGrpcTransport } from "./grpc.js";
import { Code } from "./status.js";

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
});
