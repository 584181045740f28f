// The collection chat's own tests, on the test kit: this project runs on the local provider
// inside the test, with real clients.
import { fileURLToPath } from "node:url";
import { startApp, stopAll } from "@nitric-like/testing";
import { afterEach, it } from "vitest";

const project = fileURLToPath(new URL("..", import.meta.url));

afterEach(stopAll);

it("sends each message to every other connection, as seed 002 meant", async () => {
  const app = await startApp(project);
  const [ann, bo, cy] = await Promise.all([app.connect(), app.connect(), app.connect()]);
  ann.send("hello from ann");
  await bo.expectMessage("hello from ann");
  await cy.expectMessage("hello from ann");
  await ann.expectNoMessage();
});

it("stops sending to a connection that dropped", async () => {
  const app = await startApp(project);
  const [ann, bo, cy] = await Promise.all([app.connect(), app.connect(), app.connect()]);
  cy.drop();
  await cy.closed;
  ann.send("who is left?");
  await bo.expectMessage("who is left?");
  await ann.expectNoMessage();
});
