// The test kit in a file whose tests run at once (vitest's it.concurrent), each with its own app,
// and the one afterEach(stopAll) the README teaches.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterEach, it } from "vitest";
import { type App, startApp, stopAll } from "../src/index.js";

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const open = { query: { token: "letmein" } };

afterEach(stopAll);

let quickFinished: () => void = () => {};
const quickDone = new Promise<void>((resolve) => {
  quickFinished = resolve;
});
let quickApp: App | undefined;

it.concurrent("a concurrent test that finishes first, its afterEach(stopAll) run", async ({
  expect,
  onTestFinished,
}) => {
  quickApp = await startApp(fixture("recorder"));
  const client = await quickApp.connect(open);
  await client.expectMessage("hello anonymous");
  expect(client.isOpen).toBe(true);
  // After this test's afterEach hooks (the context's own: the global one may name the other test).
  onTestFinished(() => quickFinished());
});

it.concurrent("afterEach(stopAll) of a concurrent test leaves the apps of the tests still running alone; the last one stops them all", async ({
  expect,
  onTestFinished,
}) => {
  // Before, the first test's afterEach(stopAll) stopped this app mid-test: its client was closed
  // with 1001 and the next call said the app was stopped.
  const app = await startApp(fixture("recorder"));
  const client = await app.connect(open);
  await client.expectMessage("hello anonymous");
  await quickDone;
  client.send("still here");
  await client.expectMessage("echo still here");
  const again = await app.connect(open);
  await again.expectMessage("hello anonymous");
  onTestFinished(() => {
    // This test's afterEach(stopAll), the last of the file's, stopped both apps.
    expect(quickApp && existsSync(quickApp.dir)).toBe(false);
    expect(existsSync(app.dir)).toBe(false);
  });
});
