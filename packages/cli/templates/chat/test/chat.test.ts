// The chat's tests (`npm test`): this project runs inside the test, on free ports, with real
// clients (@nitric-like/testing): on the local provider, and the first two on "aws" too, the
// functions `nitric-like build` makes, in the AWS emulator (API Gateway's rules, Lambda, DynamoDB).
import { startApp, stopAll } from "@nitric-like/testing";
import { afterEach, expect, it } from "vitest";

afterEach(stopAll); // fails the test when anything is left open

it.each(["local", "aws"])(
  "signs each message with the sender's name and sends it to everyone else (%s)",
  async (provider) => {
    const app = await startApp(".", { provider });
    const ann = await app.connect({ query: { name: "ann" } });
    const bo = await app.connect({ query: { name: "bo" } });
    await ann.expectMessage("welcome, ann");
    await bo.expectMessage("welcome, bo");
    ann.send("hi bo");
    await bo.expectMessage("ann: hi bo");
    await ann.expectNoMessage();
  },
);

it.each(["local", "aws"])("keeps a client's name through a service restart (%s)", async (provider) => {
  const app = await startApp(".", { provider });
  const ann = await app.connect({ query: { name: "ann" } });
  const bo = await app.connect({ query: { name: "bo" } });
  await ann.expectMessage("welcome, ann");
  await bo.expectMessage("welcome, bo");
  await app.restart("chat");
  bo.send("still there?");
  await ann.expectMessage("bo: still there?");
});

it("keeps each client's name in the names store while it is connected", async () => {
  const app = await startApp(".");
  const ann = await app.connect({ query: { name: "ann" } });
  await ann.expectMessage("welcome, ann");
  // What the app keeps, read where it keeps it: its connections, and its kv store.
  const [connection] = await app.connections();
  const id = connection?.id ?? "";
  expect(await app.kv("names").get(id)).toEqual({ name: "ann" });
  await ann.close();
  await expect.poll(() => app.kv("names").get(id)).toBeUndefined();
});
