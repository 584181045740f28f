// Every SDK snippet in the README (a ```ts block under a `<!-- snippet: NAME -->` line) is a whole
// service; each is run here with `nitric-like run` on the local provider (and those whose state
// the provider keeps, connections, rooms, routes and stores, on the AWS emulator too) and driven by
// a client, so the README cannot show code that does not run or does not do what it says.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, expect, it } from "vitest";
import { WebSocket } from "ws";
import {
  type App,
  type Client,
  cleanTemp,
  connect,
  EXAMPLES,
  sleep,
  startApp,
  stopAll,
  writeProject,
} from "../src/harness.js";

const readme = readFileSync(join(EXAMPLES, "..", "README.md"), "utf8");
const snippets = new Map(
  [...readme.matchAll(/<!-- snippet: (\S+) -->\n```ts\n([\s\S]*?)```/g)].map((m) => [m[1] as string, m[2] as string]),
);

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

/**
 * Runs a snippet's service under `nitric-like run` on `provider` (the AWS emulator for aws, where
 * connection state and rooms live in DynamoDB and each event is a function's invocation).
 */
async function runSnippet(name: string, provider: "local" | "aws" = "local"): Promise<App> {
  const code = snippets.get(name);
  if (!code) throw new Error(`README.md has no snippet "${name}"`);
  const dir = writeProject({
    "nitric-like.yaml": `name: readme-${name}\nservices:\n  - match: services/*.ts\n`,
    [`services/${name}.ts`]: code,
  });
  return startApp(dir, provider === "aws" ? ["--provider", "aws"] : []);
}

/** The snippets whose state lives in the provider (connections, rooms, stores) run on both. */
const PROVIDERS = ["local", "aws"] as const;

it("the README has exactly the snippets this file runs", () => {
  expect([...snippets.keys()].sort()).toEqual([
    "ampt",
    "authorize",
    "collection",
    "connections",
    "kv",
    "rooms",
    "routes",
    "secret",
    "websocket",
  ]);
});

it("the test the README shows is examples/chat/test/chat.test.ts, a file the root vitest runs", async () => {
  const shown = [...readme.matchAll(/<!-- test: (\S+) -->\n```ts\n([\s\S]*?)```/g)];
  expect(shown.map((m) => m[1])).toEqual(["examples/chat/test/chat.test.ts"]);
  const root = join(EXAMPLES, "..");
  for (const [, path, code] of shown) {
    expect(code).toBe(readFileSync(join(root, path as string), "utf8"));
    const { default: config } = await import(join(root, "vitest.config.ts"));
    const include: string[] = config.test.include;
    expect(include.some((glob) => globRegExp(glob).test(path as string))).toBe(true);
  }
});

it("authorize: 401 and 403 with reasons, the identity on connect, message and connection(id), a subprotocol token", async () => {
  const app = await runSnippet("authorize");
  const url = app.url("chat");
  await expect(connect(url)).rejects.toMatchObject({ status: 401, body: "a token is required" });
  await expect(connect(`${url}/?token=nope`)).rejects.toMatchObject({ status: 403, body: "unknown token" });
  // Names every object has are no tokens: a lookup in an object literal would let these in.
  for (const token of ["constructor", "__proto__", "toString"]) {
    await expect(connect(`${url}/?token=${token}`)).rejects.toMatchObject({ status: 403, body: "unknown token" });
  }
  const ann = await connect(`${url}/?token=t-ann`);
  expect((await ann.next()).text).toBe("hello ann");
  expect(await ann.call({})).toEqual({ user: "ann", recorded: { user: "ann" } });
  ann.close();
  await app.waitFor(/ann left/);
  const ws = new WebSocket(url, ["token.t-bo", "chat"]);
  // Listening before the open: the greeting can arrive in the same packet as the 101, and ws emits
  // it in the same turn as "open".
  const greeting = new Promise<string>((resolve) => ws.once("message", (d: Buffer) => resolve(d.toString())));
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  expect(ws.protocol).toBe("chat");
  const first = await greeting;
  expect(first).toBe("hello bo");
  ws.close();
  // A client offering the token alone is let in with no subprotocol (the snippet accepts only one
  // the client offered), so it fails the connection itself, as RFC 6455 says, and run says why.
  const alone = new WebSocket(url, ["token.t-bo"]);
  await expect(
    new Promise((resolve, reject) => {
      alone.once("open", resolve);
      alone.once("error", reject);
    }),
  ).rejects.toThrow("Server sent no subprotocol");
  await app.waitFor(/without choosing one of them/);
}, 60000);

it("every snippet type-checks under the repository's strict settings (noImplicitReturns aside)", () => {
  const root = join(EXAMPLES, "..");
  const files = Object.fromEntries([...snippets].map(([name, code]) => [`services/${name}.ts`, code]));
  const compilerOptions = {
    ...JSON.parse(readFileSync(join(root, "tsconfig.base.json"), "utf8")).compilerOptions,
    composite: false,
    declaration: false,
    declarationMap: false,
    sourceMap: false,
    noEmit: true,
    // handlers reply on some paths and not on others, which is how replies are meant to be used
    noImplicitReturns: false,
    typeRoots: [join(root, "node_modules", "@types")],
  };
  const dir = writeProject({
    ...files,
    "package.json": '{ "type": "module" }',
    "tsconfig.json": JSON.stringify({ compilerOptions, include: ["services"] }),
  });
  const result = spawnSync(join(root, "node_modules", ".bin", "tsc"), ["-p", dir], { encoding: "utf8" });
  expect(result.stdout + result.stderr).toBe("");
  expect(result.status).toBe(0);
}, 60000);

it("websocket: origin check, reject, welcome, reply and returned value, the three send kinds, close with a code", async () => {
  const app = await runSnippet("websocket");
  const url = app.url("socket");
  await expect(connect(url)).rejects.toMatchObject({
    status: 401,
    body: expect.stringContaining("a token is required"),
  });
  await expect(connect(`${url}/?token=t`, { origin: "https://evil.example" })).rejects.toMatchObject({ status: 403 });
  (await connect(`${url}/?token=t`, { origin: "https://app.example.com" })).close();
  const client = await connect(`${url}/?token=t`);
  expect((await client.next()).text).toBe("welcome");
  client.ws.send("hi");
  expect((await client.next()).text).toBe("got 2 bytes, binary: false");
  expect(JSON.parse((await client.next()).text)).toEqual({ also: "replied" });
  client.ws.send(Buffer.from([7, 8, 9]));
  expect((await client.next()).text).toBe("got 3 bytes, binary: true");
  await client.next();
  client.ws.send("send");
  expect((await client.next()).text).toBe("text");
  const bytes = await client.next();
  expect([bytes.binary, [...bytes.data]]).toEqual([true, [1]]);
  expect(JSON.parse((await client.next()).text)).toEqual({ any: "json" });
  client.ws.send("bye");
  expect(await client.waitClosed()).toEqual({ code: 4000, reason: "bye" });
  await app.waitFor(/closed 4000 bye/);
}, 30000);

it.each(PROVIDERS)(
  "connections: hello on connect, who, broadcast except the sender, poke (not_found), kick by id, leave (%s)",
  async (provider) => {
    const app = await runSnippet("connections", provider);
    const url = app.url("room");
    const ann = await connect(`${url}?name=ann`);
    const bo = await connect(`${url}?name=bo`);
    expect((await ann.next()).text).toBe("hello");
    expect((await bo.next()).text).toBe("hello");
    const who = async (client: Client) => {
      client.ws.send("who");
      const people = JSON.parse((await client.next()).text) as { id: string; name: string }[];
      return people.sort((a, b) => a.name.localeCompare(b.name));
    };
    const people = await who(ann);
    expect(people.map((p) => p.name)).toEqual(["ann", "bo"]);

    ann.ws.send("hi all"); // broadcast to everyone but ann; ann gets "sent"
    expect((await bo.next()).text).toBe("hi all");
    expect((await ann.next()).text).toBe("sent");

    ann.ws.send(`poke ${people[1]?.id}`);
    expect((await bo.next()).text).toBe("poke");
    expect((await ann.next()).text).toBe("poked");
    ann.ws.send("poke nobody");
    expect((await ann.next()).text).toBe(
      'websocket "room": connection "nobody" is not connected (it closed, or never existed)',
    );
    ann.ws.send("kick nobody");
    expect((await ann.next()).text).toBe("nobody is not connected");
    ann.ws.send(`kick ${people[1]?.id}`);
    expect((await bo.next()).text).toBe("bye bo");
    expect((await bo.waitClosed()).code).toBe(1000);
    expect((await ann.next()).text).toBe("kicked");
    // Locally a closed connection leaves the listing at once; on AWS once its $disconnect has run
    // (DeleteConnection answers before it), a moment later.
    let left = (await who(ann)).map((p) => p.name);
    for (let i = 0; provider === "aws" && i < 40 && left.length > 1; i++) {
      await new Promise((r) => setTimeout(r, 50));
      left = (await who(ann)).map((p) => p.name);
    }
    expect(left).toEqual(["ann"]);

    const cy = await connect(`${url}?name=cy`);
    expect((await cy.next()).text).toBe("hello");
    cy.ws.send("leave"); // broadcast to ann, "sent" to cy, then cy is closed with a reason
    expect((await ann.next()).text).toBe("leave");
    expect((await cy.next()).text).toBe("sent");
    // API Gateway's DeleteConnection takes no code or reason: the client gets 1000 and none (README).
    expect(await cy.waitClosed()).toEqual({ code: 1000, reason: provider === "aws" ? "" : "see you" });
  },
  30000,
);

it.each(PROVIDERS)(
  "rooms: state from connect on every message, join, leave, list, broadcast to a room but the sender (%s)",
  async (provider) => {
    const app = await runSnippet("rooms", provider);
    const url = app.url("chat");
    const ann = await connect(`${url}?name=ann`);
    const bo = await connect(`${url}?name=bo`);
    ann.ws.send("hi");
    expect((await bo.next()).text).toBe("ann: hi");
    ann.ws.send("/join blue");
    expect((await ann.next()).text).toBe("joined: true");
    ann.ws.send("/rooms");
    expect(JSON.parse((await ann.next()).text)).toEqual(["blue", "lobby"]);
    bo.ws.send("/who blue");
    expect((await bo.next()).text).toBe("1");
    bo.ws.send("/join blue");
    expect((await bo.next()).text).toBe("joined: true");
    ann.ws.send("/leave lobby");
    expect((await ann.next()).text).toBe("left: true");
    bo.ws.send("hey"); // to lobby (ann left it) and blue: ann gets it once
    expect((await ann.next()).text).toBe("bo: hey");
    await sleep(200);
    expect(ann.frames).toEqual([]);
    ann.close();
    await app.waitFor(/ann left/);
  },
  30000,
);

it.each(PROVIDERS)(
  "routes: an action goes to its route's handler, and anything else to the message handler (%s)",
  async (provider) => {
    const app = await runSnippet("routes", provider);
    const url = app.url("game");
    const ann = await connect(url);
    const bo = await connect(url);
    expect(await ann.call({ action: "move", x: 1, y: 2 })).toEqual({ moved: [1, 2] });
    ann.ws.send(JSON.stringify({ action: "chat.say", text: "gg" }));
    expect(JSON.parse((await bo.next()).text)).toEqual({ said: "gg" });
    for (const other of ["move", '{"action":"jump"}', '{"action":["move"]}', "[1]"]) {
      ann.ws.send(other);
      expect(JSON.parse((await ann.next()).text)).toEqual({
        error: `unknown command: ${other}`,
        try: ["move", "chat.say"],
      });
    }
    await sleep(100);
    expect(ann.frames).toEqual([]);
  },
  30000,
);

it.each(PROVIDERS)(
  "ampt: welcome on connect, JSON parsed, the data store counts who is online, records removed (%s)",
  async (provider) => {
    const app = await runSnippet("ampt", provider);
    const url = app.url("ws");
    const ann = await connect(`${url}?name=ann`);
    expect((await ann.next()).text).toBe("Welcome!");
    expect(await ann.call({ lat: 1 })).toEqual({ got: { lat: 1 }, online: 1, bytes: 9 });
    const bo = await connect(`${url}?name=bo`);
    expect((await bo.next()).text).toBe("Welcome!");
    bo.ws.send("plain text");
    expect(JSON.parse((await bo.next()).text)).toEqual({ got: "plain text", online: 2, bytes: 10 });
    bo.close();
    await bo.waitClosed();
    for (let i = 0; i < 50 && (await ann.call({})).online !== 1; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await ann.call({})).toEqual({ got: {}, online: 1, bytes: 2 });
  },
  30000,
);

it.each(PROVIDERS)(
  "kv: set, get through a read-only reference, keys by prefix, delete (%s)",
  async (provider) => {
    const app = await runSnippet("kv", provider);
    const client = await connect(app.url("profiles"));
    client.ws.send("Ann");
    expect(JSON.parse((await client.next()).text)).toEqual({ user: { name: "Ann" }, keys: ["user:1"] });
    client.ws.send("Bo");
    expect(JSON.parse((await client.next()).text)).toEqual({ user: { name: "Bo" }, keys: ["user:1"] });
  },
  30000,
);

it("secret: rotate stores a new version whose id the next read names, and its value is a UUID's 36 characters", async () => {
  const app = await runSnippet("secret");
  const client = await connect(app.url("keys"));
  client.ws.send("rotate");
  const { rotated } = JSON.parse((await client.next()).text) as { rotated: string };
  expect(rotated).toMatch(/^[0-9a-f-]{36}$/);
  client.ws.send("read");
  expect(JSON.parse((await client.next()).text)).toEqual({ version: rotated, length: 36 });
  client.ws.send("rotate");
  const second = JSON.parse((await client.next()).text) as { rotated: string };
  expect(second.rotated).not.toBe(rotated);
  client.ws.send("read");
  expect(JSON.parse((await client.next()).text)).toEqual({ version: second.rotated, length: 36 });
}, 30000);

it("collection: documents per connection, a where/limit query, deleted on disconnect", async () => {
  const app = await runSnippet("collection");
  const url = app.url("visits");
  const ann = await connect(url);
  const al = await connect(url);
  const bo = await connect(url);
  al.ws.send("Al");
  expect(JSON.parse((await al.next()).text)).toEqual(["Al"]);
  bo.ws.send("Bo");
  expect(JSON.parse((await bo.next()).text)).toEqual(["Al"]);
  al.close();
  await al.waitClosed();
  await new Promise((r) => setTimeout(r, 200));
  ann.ws.send("Ann");
  expect(JSON.parse((await ann.next()).text)).toEqual(["Ann"]);
}, 30000);

// A RegExp for a vitest include glob of the forms the config uses: "*" and "**" followed by a slash.
function globRegExp(glob: string): RegExp {
  const source = glob
    .split(/(\*\*\/|\*)/)
    .map((part) => (part === "**/" ? "(?:.*/)?" : part === "*" ? "[^/]*" : part.replace(/[.+?^${}()|[\]\\]/g, "\\$&")))
    .join("");
  return new RegExp(`^${source}$`);
}
