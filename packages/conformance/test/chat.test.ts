// The chat example and seed 003's @nitric/sdk broadcast, with several real clients.
import { join } from "node:path";
import { afterAll, afterEach, expect, it } from "vitest";
import { cleanTemp, connect, copyProject, EXAMPLES, FIXTURES, sleep, startApp, stopAll } from "../src/harness.js";

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

// On local, examples/chat/test/chat.test.ts tests it with the test kit.
it.each(["aws"])(
  "examples/chat on %s sends each message to every other connection, not back to the sender",
  async (provider) => {
    const app = await startApp(copyProject(join(EXAMPLES, "chat")), ["--provider", provider]);
    const url = app.url("socket");
    const [ann, bo, cy] = await Promise.all([connect(url), connect(url), connect(url)]);
    ann.ws.send("hello from ann");
    expect((await bo.next()).text).toBe("hello from ann");
    expect((await cy.next()).text).toBe("hello from ann");
    cy.ws.send("hi ann");
    expect((await ann.next()).text).toBe("hi ann");
    expect((await bo.next()).text).toBe("hi ann");
    await sleep(200);
    expect(ann.frames).toEqual([]);
    expect(cy.frames).toEqual([]);
    // Its endpoints check no credential, and run says so once, as `run --tcp` does.
    expect(app.stderr.match(/any user of this machine can invoke your functions/g)).toHaveLength(1);
  },
  30000,
);

it.each(["local", "aws"])(
  "seed 003's broadcast on the published @nitric/sdk reaches all three clients on %s",
  async (provider) => {
    const app = await startApp(copyProject(join(FIXTURES, "nitric-broadcast")), ["--provider", provider]);
    const url = app.url("example-websocket");
    const clients = await Promise.all([connect(url), connect(url), connect(url)]);
    clients[1]?.ws.send("to everyone");
    for (const c of clients) expect((await c.next()).text).toBe("to everyone");
  },
  30000,
);
