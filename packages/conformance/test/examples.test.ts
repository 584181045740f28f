// The examples beyond chat, run end to end.
import { join } from "node:path";
import { afterAll, afterEach, expect, it } from "vitest";
import { cleanTemp, connect, copyProject, EXAMPLES, FIXTURES, startApp, stopAll } from "../src/harness.js";

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

it.each(["local", "aws"])(
  "examples/ampt-tracker runs Ampt's ws interface on %s: welcome on connect, locations, disconnectMe",
  async (provider) => {
    const app = await startApp(copyProject(join(EXAMPLES, "ampt-tracker")), ["--provider", provider]);
    const url = app.url("ws");
    const ann = await connect(`${url}/?name=ann`);
    const bo = await connect(`${url}/?name=bo`);
    expect(JSON.parse((await ann.next()).text)).toEqual({ message: "Welcome to the tracker!" });
    expect(JSON.parse((await bo.next()).text)).toEqual({ message: "Welcome to the tracker!" });
    expect(await ann.call({ lat: 51.5, long: -0.12 })).toEqual({ saved: "ann" });
    bo.ws.send("where");
    expect(JSON.parse((await bo.next()).text)).toEqual({ locations: { ann: { lat: 51.5, long: -0.12 } } });
    expect(await bo.call({ lat: "north" })).toHaveProperty("error");
    bo.ws.send(JSON.stringify({ disconnectMe: true }));
    expect((await bo.waitClosed()).code).toBe(1000);
  },
  30000,
);

it.each(["local", "aws"])(
  "examples/collection-chat on %s sends each message to every other connection, as seed 002 meant",
  async (provider) => {
    const app = await startApp(copyProject(join(EXAMPLES, "collection-chat")), ["--provider", provider]);
    const url = app.url("socket");
    const [ann, bo, cy] = await Promise.all([connect(url), connect(url), connect(url)]);
    ann.ws.send("hello from ann");
    expect((await bo.next()).text).toBe("hello from ann");
    expect((await cy.next()).text).toBe("hello from ann");
    await new Promise((r) => setTimeout(r, 200));
    expect(ann.frames).toEqual([]);
  },
  30000,
);

it.each(["local", "aws"])(
  "seed 002's code runs verbatim on %s, bug included: the sender gets its message once per other connection",
  async (provider) => {
    const app = await startApp(copyProject(join(FIXTURES, "seed-002")), ["--provider", provider]);
    const url = app.url("socket");
    const [ann, bo, cy] = await Promise.all([connect(url), connect(url), connect(url)]);
    ann.ws.send("hello");
    expect((await ann.next()).text).toBe("hello");
    expect((await ann.next()).text).toBe("hello");
    await new Promise((r) => setTimeout(r, 200));
    expect(bo.frames).toEqual([]);
    expect(cy.frames).toEqual([]);
  },
  30000,
);
