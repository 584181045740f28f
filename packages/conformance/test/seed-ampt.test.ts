// Ampt's WebSocket page (seeds 000/001) keeps its connections in @ampt/data, saying that
// "eventually, Ampt will optionally manage your active connections". Here the provider keeps them:
// code on the Ampt-style `ws` lists and broadcasts to them through websocket("ws"), with no store,
// on both providers.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type App, cleanTemp, connect, startApp, writeProject } from "../src/harness.js";

afterAll(cleanTemp);

const SERVICE = `import { websocket } from "@nitric-like/sdk";
import { ws } from "@nitric-like/sdk/ampt";
import { data as store } from "@nitric-like/sdk/ampt/data";

ws.on("connected", async (connection) => {
  await connection.send("welcome " + connection.meta.queryStringParams?.name);
});
ws.on("disconnected", () => {});
ws.on("message", async (connection, data) => {
  if (data === "bad keys") {
    const errors = [];
    for (const call of [
      () => store.remove(""),
      () => store.remove(5 as never),
      () => store.get("k".repeat(2000)),
      () => store.get("x\\ud800*"),
    ]) {
      await call().then(() => errors.push("no error"), (e) => errors.push(e.code + ": " + e.message));
    }
    await connection.send({ errors });
    return;
  }
  if (data === "who") {
    const names = [];
    // Only this test's clients (ann, bo): another test's may not have left yet.
    for await (const c of websocket("ws").connections()) if (c.query.test?.[0] === "who") names.push(c.query.name?.[0]);
    await connection.send({ online: names.sort() });
    return;
  }
  await websocket("ws").broadcast({ said: data }, { except: connection.connectionId });
});
`;

describe.each([
  { provider: "local", args: [] as string[] },
  { provider: "aws", args: ["--provider", "aws"] },
])("Ampt-style code on the $provider provider", ({ args }) => {
  let app: App;
  beforeAll(async () => {
    app = await startApp(
      writeProject({
        "nitric-like.yaml": "name: ampt\nservices:\n  - match: services/*.ts\n",
        "services/app.ts": SERVICE,
      }),
      args,
    );
  }, 90000);
  afterAll(async () => {
    expect((await app.stop()).code).toBe(0);
  });

  it("names data.remove() and data.get() in the errors of a key kv cannot hold, not the kv store under them", async () => {
    const c = await connect(`${app.url("ws")}?name=cy`);
    await c.next();
    c.ws.send("bad keys");
    expect(JSON.parse((await c.next()).text)).toEqual({
      errors: [
        'invalid_argument: data.remove(""): the key is empty; use a non-empty string',
        "invalid_argument: data.remove(): the key is a number; use a non-empty string",
        "invalid_argument: data.get(): the key is 2000 bytes long and at most 1024 are allowed; use a shorter key",
        'invalid_argument: data.get("x\\ud800*"): the prefix has a lone surrogate (U+D800 at index 1), which no key has: use well-formed text, such as prefix.toWellFormed()',
      ],
    });
    c.ws.close();
    await new Promise((r) => c.ws.once("close", r));
  });

  it('lists and broadcasts to the connections the provider keeps, through websocket("ws"), with no store', async () => {
    const ann = await connect(`${app.url("ws")}?test=who&name=ann`);
    const bo = await connect(`${app.url("ws")}?test=who&name=bo`);
    expect((await ann.next()).text).toBe("welcome ann");
    expect((await bo.next()).text).toBe("welcome bo");
    ann.ws.send("who");
    expect(JSON.parse((await ann.next()).text)).toEqual({ online: ["ann", "bo"] });
    ann.ws.send(JSON.stringify({ lat: 1, long: 2 }));
    expect(JSON.parse((await bo.next()).text)).toEqual({ said: { lat: 1, long: 2 } });
    bo.ws.close();
    await new Promise((r) => bo.ws.once("close", r));
    // Gone from the list once closed; nothing of it was stored to clean up.
    for (let i = 0; ; i++) {
      ann.ws.send("who");
      const { online } = JSON.parse((await ann.next()).text) as { online: string[] };
      if (online.length === 1 || i === 20) {
        expect(online).toEqual(["ann"]);
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    ann.ws.close();
  });
});
