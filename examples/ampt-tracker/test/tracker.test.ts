// The tracker's own tests, on the test kit: this project runs on the local provider inside the
// test, with real clients speaking Ampt's ws interface.
import { fileURLToPath } from "node:url";
import { startApp, stopAll } from "@nitric-like/testing";
import { afterEach, expect, it } from "vitest";

const project = fileURLToPath(new URL("..", import.meta.url));

afterEach(stopAll);

it("welcomes each client, saves locations, lists them, and closes a client that asks", async () => {
  const app = await startApp(project);
  const ann = await app.connect({ query: { name: "ann" } });
  const bo = await app.connect({ query: { name: "bo" } });
  await ann.expectMessage({ message: "Welcome to the tracker!" });
  await bo.expectMessage({ message: "Welcome to the tracker!" });
  ann.send(JSON.stringify({ lat: 51.5, long: -0.12 }));
  await ann.expectMessage({ saved: "ann" });
  bo.send("where");
  await bo.expectMessage({ locations: { ann: { lat: 51.5, long: -0.12 } } });
  bo.send(JSON.stringify({ lat: "north" }));
  expect((await bo.next()).json()).toHaveProperty("error");
  bo.send(JSON.stringify({ disconnectMe: true }));
  expect((await bo.closed).code).toBe(1000);
});

it("keeps the saved locations through a service restart", async () => {
  const app = await startApp(project);
  const ann = await app.connect({ query: { name: "ann" } });
  await ann.next();
  ann.send(JSON.stringify({ lat: 1, long: 2 }));
  await ann.expectMessage({ saved: "ann" });
  await app.restart();
  ann.send("where");
  // At least once (app.restart): had the old copy not yet answered the location's event when it
  // stopped, the new copy saves it again and says so before it answers "where".
  let reply = (await ann.next()).json();
  if (JSON.stringify(reply) === JSON.stringify({ saved: "ann" })) reply = (await ann.next()).json();
  expect(reply).toEqual({ locations: { ann: { lat: 1, long: 2 } } });
});
