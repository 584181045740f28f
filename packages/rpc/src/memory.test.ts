// The in-memory transport's settled(): what a Lambda function's runtime waits for before it answers
// an event (providers/aws/src/runtime/handler.ts), over a real Router and Client.
import { Health, HealthCheckResponse_ServingStatus } from "@nitric-like/contracts/health";
import { WebsocketHandler } from "@nitric-like/contracts/websockets";
import { describe, expect, it } from "vitest";
import { Client } from "./client.js";
import { createMemoryTransport } from "./memory.js";
import { Router } from "./router.js";

/** Health checks answer after the number of ms their service names ("30"); "hang" never does. */
function slowRouter(): Router {
  return new Router()
    .service(Health, {
      check(call, respond) {
        if (call.request.service === "hang") return;
        setTimeout(
          () => respond(null, { status: HealthCheckResponse_ServingStatus.SERVING }),
          Number(call.request.service),
        );
      },
    })
    .service(WebsocketHandler, {
      handleEvents() {
        // A handler stream stays open for good, as a service's registration does.
      },
    });
}

const check = (client: Client, service: string) => client.unary(Health.method.check, { service });

describe("the in-memory transport's settled()", () => {
  it("resolves at once with 0 when no unary call is in flight, whatever streams are open", async () => {
    const transport = createMemoryTransport(slowRouter());
    const client = new Client(transport);
    client.bidi(WebsocketHandler.method.handleEvents).on("error", () => {});
    await check(client, "0");
    const started = Date.now();
    expect(await transport.settled(5000)).toBe(0);
    expect(Date.now() - started).toBeLessThan(1000);
    transport.close();
  });

  it("waits for the unary calls in flight, and for a call that the end of another leads to", async () => {
    const transport = createMemoryTransport(slowRouter());
    const client = new Client(transport);
    const ended: string[] = [];
    // Nothing awaits these: as a handler's callbacks would leave them.
    void check(client, "50").then(() => ended.push("first"));
    void check(client, "30")
      .then(() => check(client, "80"))
      .then(() => ended.push("chained"));
    expect(await transport.settled(5000)).toBe(0);
    expect(ended.sort()).toEqual(["chained", "first"]);
  });

  it("gives up after its timeout, with the number still in flight", async () => {
    const transport = createMemoryTransport(slowRouter());
    const client = new Client(transport);
    void check(client, "hang").catch(() => {});
    void check(client, "hang").catch(() => {});
    void check(client, "10").catch(() => {});
    const started = Date.now();
    expect(await transport.settled(200)).toBe(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    // Ended calls leave the count: close() cancels the two.
    transport.close();
    expect(await transport.settled(100)).toBe(0);
  });
});
