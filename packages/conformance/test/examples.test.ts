// The examples beyond chat, run end to end.
import { join } from "node:path";
import { afterAll, afterEach, expect, it } from "vitest";
import { cleanTemp, connect, copyProject, EXAMPLES, startApp, stopAll } from "../src/harness.js";

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

it("examples/ampt-tracker runs Ampt's ws interface: welcome on connect, locations, disconnectMe", async () => {
  const app = await startApp(copyProject(join(EXAMPLES, "ampt-tracker")));
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
}, 30000);
