// The rooms' tests (`npm test`): this project runs inside the test, on free ports, with real
// clients (@nitric-like/testing): on the local provider, and the first test on "aws" too, the
// functions `nitric-like build` makes in the AWS emulator (API Gateway selects the routes there).
// send({ ... }) sends JSON, which the routes take.
import { fileURLToPath } from "node:url";
import { startApp, stopAll } from "@nitric-like/testing";
import { afterEach, it } from "vitest";

const project = fileURLToPath(new URL("..", import.meta.url));

afterEach(stopAll); // fails the test when anything is left open

it.each(["local", "aws"])("sends what is said in a room to its other members only (%s)", async (provider) => {
  const app = await startApp(project, { provider });
  const ann = await app.connect({ query: { name: "ann" } });
  const bo = await app.connect({ query: { name: "bo" } });
  const cy = await app.connect({ query: { name: "cy" } });
  for (const [client, name] of [
    [ann, "ann"],
    [bo, "bo"],
    [cy, "cy"],
  ] as const)
    await client.expectMessage({ type: "welcome", name });
  ann.send({ action: "join", room: "blue" });
  await ann.expectMessage({ type: "joined", room: "blue", members: 1 });
  bo.send({ action: "join", room: "blue" });
  await bo.expectMessage({ type: "joined", room: "blue", members: 2 });
  await ann.expectMessage({ type: "joined", room: "blue", name: "bo" });
  cy.send({ action: "join", room: "red" });
  await cy.expectMessage({ type: "joined", room: "red", members: 1 });

  ann.send({ action: "say", text: "hi blue" });
  await bo.expectMessage({ type: "said", room: "blue", name: "ann", text: "hi blue" });
  await cy.expectNoMessage();
  await ann.expectNoMessage();
});

it("tells a room who left it, by moving or by closing", async () => {
  const app = await startApp(project);
  const ann = await app.connect({ query: { name: "ann" } });
  const bo = await app.connect({ query: { name: "bo" } });
  await ann.expectMessage({ type: "welcome" });
  await bo.expectMessage({ type: "welcome" });
  ann.send({ action: "join", room: "blue" });
  await ann.expectMessage({ type: "joined", room: "blue" });
  bo.send({ action: "join", room: "blue" });
  await bo.expectMessage({ type: "joined", room: "blue" });
  await ann.expectMessage({ type: "joined", name: "bo" });
  bo.send({ action: "join", room: "red" });
  await bo.expectMessage({ type: "joined", room: "red", members: 1 });
  await ann.expectMessage({ type: "left", room: "blue", name: "bo" });
  bo.send({ action: "join", room: "blue" });
  await bo.expectMessage({ type: "joined", room: "blue" });
  await ann.expectMessage({ type: "joined", name: "bo" });
  await bo.close();
  await ann.expectMessage({ type: "left", room: "blue", name: "bo" });
});

it("answers what no route takes, and a command it cannot do, with what to send", async () => {
  const app = await startApp(project);
  const ann = await app.connect({ query: { name: "ann" } });
  await ann.expectMessage({ type: "welcome" });
  ann.send("hello?");
  await ann.expectMessage({
    type: "error",
    message: 'send {"action":"join","room":"lobby"} or {"action":"say","text":"hello"}',
  });
  ann.send({ action: "say", text: "anyone?" });
  await ann.expectMessage({ type: "error", message: 'join a room first: {"action":"join","room":"lobby"}' });
  ann.send({ action: "join", room: "no spaces" });
  await ann.expectMessage(({ text }) => text.includes('"type":"error"') && text.includes("room"));
});

it("keeps a client that sends its joins without waiting for the answers in one room", async () => {
  const app = await startApp(project);
  const ann = await app.connect({ query: { name: "ann" } });
  const bo = await app.connect({ query: { name: "bo" } });
  await ann.expectMessage({ type: "welcome" });
  await bo.expectMessage({ type: "welcome" });
  // Handled side by side, as they arrive: each is answered, joined or, past 100 rooms at once, why not.
  for (let i = 0; i < 120; i++) ann.send({ action: "join", room: `r${i}` });
  for (let i = 0; i < 120; i++)
    await ann.expectMessage(({ text }) => text.includes('"type":"joined"') || text.includes("100 rooms, the most"));
  ann.send({ action: "join", room: "blue" });
  await ann.expectMessage({ type: "joined", room: "blue", members: 1 });
  for (const room of ["r0", "r60", "r119"]) {
    bo.send({ action: "join", room });
    await bo.expectMessage({ type: "joined", room, members: 1 });
  }
});
