// The examples beyond chat, run end to end.
import { join } from "node:path";
import { afterAll, afterEach, expect, it } from "vitest";
import { cleanTemp, connect, copyProject, EXAMPLES, FIXTURES, startApp, stopAll } from "../src/harness.js";

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

// On local, the example's own test/ (on the test kit) covers this.
it.each(["aws"])(
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

// On local, the example's own test/ (on the test kit) covers this.
it.each(["aws"])(
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

it.each(["local", "aws"])(
  "seed 001's Managing Connections code runs on %s: stores connections, its message handler's `data` bug, close all",
  async (provider) => {
    const app = await startApp(copyProject(join(FIXTURES, "seed-001", "manage")), ["--provider", provider]);
    const url = app.url("ws");
    const probe = await connect(app.url("probe"));
    const ann = await connect(`${url}/?name=ann`);
    const bo = await connect(`${url}/?name=bo`);
    const ids = [];
    for (const name of ["ann", "bo"]) {
      const { value: items } = await probe.call({ get: "connection:*" });
      expect(Array.isArray(items)).toBe(true);
      const mine = (items as { value: { username: string; connectionId: string } }[]).find(
        (i) => i.value.username === name,
      );
      expect(mine, `a connection record for ${name}`).toBeDefined();
      ids.push(mine?.value.connectionId);
    }
    const { value: record } = await probe.call({ get: `connection:${ids[0]}` });
    expect(record).toMatchObject({ connectionId: ids[0], username: "ann" });
    expect(typeof (record as { connectedAt: unknown }).connectedAt).toBe("number");

    // Values that are not objects round-trip too (the kv contract stores objects).
    for (const value of ["text", 42, [1, "two"], null, { "@nitric-like/value": 1 }]) {
      expect(await probe.call({ set: "other:v", value })).toEqual({ value });
      expect(await probe.call({ get: "other:v" })).toEqual({ value });
    }

    // The page's message handler calls data.get on its `data` parameter (the message): it fails,
    // the failure is reported, and nothing is stored; the connection stays open.
    ann.ws.send(JSON.stringify({ lat: 51.5, long: -0.12 }));
    if (provider === "local") {
      // The bundle calls it data2 (esbuild renames a shadowing name); the log says what the source says.
      await app.waitFor(/message handler failed for connection \S+: TypeError: data\.get is not a function/);
      expect(app.stderr).not.toContain("data2");
    } else {
      // A function's bundle is minified, as deployed: the name is the minifier's.
      await app.waitFor(/message handler failed for connection \S+: TypeError: \w+\.get is not a function/);
    }
    expect(await probe.call({ get: "current_location:ann" })).toEqual({ value: null });
    expect(ann.closed).toBeUndefined();

    // "Close all connections": both close, and the disconnected handler removes their records.
    expect(await probe.call({ closeAll: true })).toEqual({ closed: 2 });
    expect((await ann.waitClosed()).code).toBe(1000);
    expect((await bo.waitClosed()).code).toBe(1000);
    for (let i = 0; i < 100; i++) {
      const { value } = await probe.call({ get: "connection:*" });
      if ((value as unknown[]).length === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(await probe.call({ get: "connection:*" })).toEqual({ value: [] });
  },
  30000,
);

it.each(["local", "aws"])(
  "seed 001's listening, sending, throwIfNotConnected, isConnected and disconnectMe code runs on %s",
  async (provider) => {
    const app = await startApp(copyProject(join(FIXTURES, "seed-001", "send")), ["--provider", provider]);
    const client = await connect(app.url("ws"));
    // Sent during "connected", delivered in order once the connection is open (Nitric forbids this).
    const texts = [];
    for (let i = 0; i < 5; i++) texts.push((await client.next()).text);
    expect(texts).toEqual([
      "Welcome to Ampt WebSockets!",
      JSON.stringify({ message: "Welcome to Ampt WebSocket!" }),
      "Welcome to Ampt WebSockets!",
      "Welcome to Ampt WebSockets!",
      "Welcome to Ampt WebSockets!",
    ]);
    client.ws.send("just text");
    client.ws.send(JSON.stringify({ stay: true }));
    await new Promise((r) => setTimeout(r, 200));
    expect(client.closed).toBeUndefined();
    // ws.close then connection.close on the same connection: closes once, no error.
    client.ws.send(JSON.stringify({ disconnectMe: true }));
    expect((await client.waitClosed()).code).toBe(1000);
    await new Promise((r) => setTimeout(r, 200));
    expect(app.stdout + app.stderr).not.toMatch(/not connected|You won't see this|Error/i);
  },
  30000,
);
