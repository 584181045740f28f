// The portfinder stand-in bundled for @nitric/sdk (runtime/portfinder.ts): real ports on 127.0.0.1.
import { createServer, type Server } from "node:net";
import { describe, expect, it } from "vitest";
import portfinder, { getPortPromise } from "../src/runtime/portfinder.js";

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}

describe("the portfinder stand-in", () => {
  it("hands the callback a port that is free to listen on", async () => {
    const port = await new Promise<number>((resolve, reject) =>
      portfinder.getPort((error, p) => (error ? reject(error) : resolve(p))),
    );
    expect(port).toBeGreaterThan(0);
    const server = await listen(port);
    server.close();
  });

  it("moves past a taken port to the next free one, as portfinder does", async () => {
    const taken = await listen(0);
    const address = taken.address();
    const port = typeof address === "object" && address ? address.port : 0;
    const found = await getPortPromise({ port });
    expect(found).toBeGreaterThan(port);
    taken.close();
  });
});
