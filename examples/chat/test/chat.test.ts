// The chat example's own tests, on the test kit: this project runs on the local provider inside
// the test, on free ports, with real clients.
import { fileURLToPath } from "node:url";
import { startApp, stopAll } from "@nitric-like/testing";
import { afterEach, it } from "vitest";

const project = fileURLToPath(new URL("..", import.meta.url));

afterEach(stopAll); // fails the test when anything is left open

it("sends each message to every other connection, not back to the sender", async () => {
  const app = await startApp(project);
  const [ann, bo, cy] = await Promise.all([app.connect(), app.connect(), app.connect()]);
  ann.send("hello from ann");
  await bo.expectMessage("hello from ann");
  await cy.expectMessage("hello from ann");
  await ann.expectNoMessage();
});

it("keeps broadcasting after a client's connection drops and the service restarts", async () => {
  const app = await startApp(project);
  const [ann, bo, cy] = await Promise.all([app.connect(), app.connect(), app.connect()]);
  cy.drop(); // the TCP connection ends with no close frame (1006)
  await app.restart(); // the clients stay connected
  ann.send("still here?");
  await bo.expectMessage("still here?");
  await ann.expectNoMessage();
});
