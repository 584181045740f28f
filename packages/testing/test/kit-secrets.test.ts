// Secrets in the test kit: values stored before the services start (startApp's `secrets`) and
// while they run (app.secret(name).put), in the store run serves on either provider, checked as
// `nitric-like secret put` checks them.
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { startApp, stopAll } from "../src/index.js";

const fixture = fileURLToPath(new URL("./fixtures/secretive", import.meta.url));

afterEach(stopAll);

describe.each(["local", "aws"])("on %s", (provider) => {
  it("serves the value startApp stored, then the one app.secret().put() stores while it runs", async () => {
    const app = await startApp(fixture, { provider, secrets: { "api-key": "first" } });
    const client = await app.connect();
    client.send("key?");
    await client.expectMessage("first");
    const version = await app.secret("api-key").put(new TextEncoder().encode("second"));
    expect(version).toMatch(/^[0-9a-f-]{36}$/);
    client.send("key?");
    await client.expectMessage("second");
  });
});

it("refuses a secret no service declares and a value the rules refuse, each with its words", async () => {
  await expect(startApp(fixture, { secrets: { "api-kye": "x" } })).rejects.toThrow(
    'startApp: secrets.api-kye: no service declares secret("api-kye"); the project\'s secrets are "api-key"',
  );
  await expect(startApp(fixture, { secrets: { API: "x" } })).rejects.toThrow(
    /^startApp: secrets\.API: .*invalid resource name "API"/,
  );
  const app = await startApp(fixture);
  const client = await app.connect();
  client.send("key?");
  // No value yet: the service's access() fails, and says how to give one.
  await expect(app.waitForLog(/has no value yet; put one with/)).resolves.toBeUndefined();
  await expect(app.secret("nope").put("x")).rejects.toThrow(
    'app.secret("nope"): no service declares secret("nope"); the project\'s secrets are "api-key"',
  );
  await expect(app.secret("api-key").put("")).rejects.toThrow(
    /^app\.secret\("api-key"\)\.put: .*the value is empty; a secret holds 1 to 65536 bytes$/,
  );
  await expect(app.secret("api-key").put("x".repeat(65_537))).rejects.toThrow(
    /^app\.secret\("api-key"\)\.put: .*the value is 65537 bytes, over the 65536/,
  );
});
