// Rooms and per-connection state (issue 18, items 2 and 3): the "rooms" fixture on our SDK under
// `nitric-like run` on each provider, driven by real ws clients. On aws the membership items and
// the state live in the connections table in dynalite, behind the emulated API Gateway.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type App, type Client, cleanTemp, connect, copyProject, FIXTURES, sleep, startApp } from "../src/harness.js";

afterAll(cleanTemp);

async function eventually<T>(probe: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (ok(value) || Date.now() > deadline) return value;
    await sleep(50);
  }
}

// Locally the service runs as a worker thread (calls over a MessagePort) and, with --processes, as a
// process of its own (calls over gRPC): the state rides on events both ways.
describe.each([
  { provider: "local", how: "in a worker thread", args: [] as string[] },
  { provider: "local", how: "in a process", args: ["--processes"] },
  { provider: "aws", how: "in a function", args: [] as string[] },
])("rooms and state on the $provider provider, the service $how", ({ provider, args }) => {
  let app: App;
  let url: string;
  beforeAll(async () => {
    app = await startApp(copyProject(join(FIXTURES, "rooms")), ["--provider", provider, ...args]);
    url = app.url("rooms");
  }, 30000);
  afterAll(async () => {
    const { code } = await app.stop();
    expect(code).toBe(0);
  });

  const idOf = async (c: Client) => (await c.call({ op: "whoami" })).id as string;

  it("lists a connection that joined during connect among a room's members once it is open, not while its connect handler runs", async () => {
    const asker = await connect(url);
    const opening = connect(`${url}?room=hall&hold=1500`);
    await sleep(600);
    expect((await asker.call({ op: "members", room: "hall" })).ids).toEqual([]);
    const joined = await opening;
    const id = await idOf(joined);
    expect((await asker.call({ op: "members", room: "hall" })).ids).toEqual([id]);
    joined.close();
    asker.close();
  });

  it("joins and leaves rooms, lists members and a connection's rooms, and broadcasts to a room but the excepted", async () => {
    const [a, b, c, outsider] = (await Promise.all([connect(url), connect(url), connect(url), connect(url)])) as [
      Client,
      Client,
      Client,
      Client,
    ];
    const [ida, idb, idc] = await Promise.all([idOf(a), idOf(b), idOf(c)]);
    expect(await a.call({ op: "join", room: "lobby" })).toEqual({ joined: true });
    expect(await a.call({ op: "join", room: "lobby" })).toEqual({ joined: false });
    expect(await b.call({ op: "join", room: "lobby" })).toEqual({ joined: true });
    // One connection may put another in a room.
    expect(await a.call({ op: "join", to: idc, room: "lobby" })).toEqual({ joined: true });
    expect(await a.call({ op: "join", room: "team:blue" })).toEqual({ joined: true });
    expect(await a.call({ op: "members", room: "lobby" })).toEqual({ ids: [ida, idb, idc].sort() });
    expect(await b.call({ op: "rooms", to: ida })).toEqual({ rooms: ["lobby", "team:blue"] });

    // The sender is excepted by default, and c explicitly: only b gets it, not the outsider.
    expect(await a.call({ op: "room-broadcast", room: "lobby", text: "hello lobby", except: [ida, idc] })).toEqual({
      sent: 1,
    });
    expect((await b.next()).text).toBe("hello lobby");
    expect(await a.call({ op: "leave", room: "lobby" })).toEqual({ left: true });
    expect(await a.call({ op: "leave", room: "lobby" })).toEqual({ left: false });
    expect(await b.call({ op: "room-broadcast", room: "lobby", text: "again" })).toEqual({ sent: 1 });
    expect((await c.next()).text).toBe("again");
    await sleep(200);
    expect(a.frames).toEqual([]);
    expect(outsider.frames).toEqual([]);
    for (const x of [a, b, c, outsider]) x.close();
  });

  it("ends a connection's memberships when it disconnects", async () => {
    const [a, b] = (await Promise.all([connect(url), connect(url)])) as [Client, Client];
    const [ida, idb] = await Promise.all([idOf(a), idOf(b)]);
    await a.call({ op: "join", room: "leaving" });
    await b.call({ op: "join", room: "leaving" });
    a.close();
    const after = await eventually(
      () => b.call({ op: "members", room: "leaving" }),
      (v) => (v.ids as string[]).length === 1,
    );
    expect(after).toEqual({ ids: [idb] });
    expect(await b.call({ op: "rooms", to: ida })).toEqual({ rooms: [] });
    b.close();
  });

  it("joins rooms and sets state during connect, so both hold once the connection opens", async () => {
    const a = await connect(`${url}?room=early&room=earlier&state=hi`);
    const ida = await idOf(a);
    expect(await a.call({ op: "rooms" })).toEqual({ rooms: ["earlier", "early"] });
    expect(await a.call({ op: "state" })).toEqual({ state: { from: "connect", value: "hi" } });
    expect(await a.call({ op: "members", room: "early" })).toEqual({ ids: [ida] });
    a.close();
  });

  it("refuses bad room names and a 101st room with errors naming the limit", async () => {
    const a = await connect(url);
    const bad = (await a.call({ op: "join", room: "has space" })) as { error: { code: string; message: string } };
    expect(bad.error.code).toBe("invalid_argument");
    expect(bad.error.message).toMatch(/invalid room name "has space"; use 1-128 characters/);
    const long = (await a.call({ op: "join", room: "r".repeat(129) })) as {
      error: { code: string; message: string };
    };
    expect(long.error.message).toMatch(/129 characters, over the limit of 128/);
    // A name is data: "__proto__" and "constructor" are rooms like any other.
    expect(await a.call({ op: "join", room: "__proto__" })).toEqual({ joined: true });
    expect(await a.call({ op: "join", room: "constructor" })).toEqual({ joined: true });
    for (let i = 0; i < 98; i++) expect(await a.call({ op: "join", room: `r${i}` })).toEqual({ joined: true });
    const over = (await a.call({ op: "join", room: "one-too-many" })) as { error: { code: string; message: string } };
    expect(over.error.code).toBe("resource_exhausted");
    expect(over.error.message).toMatch(/is in 100 rooms, the most allowed; leave one first/);
    expect(((await a.call({ op: "rooms" })).rooms as string[]).length).toBe(100);
    a.close();
  }, 60000);

  it("refuses a connection id that is not a string, and a close code or reason of the wrong type, naming the call", async () => {
    const a = await connect(url);
    const id = await idOf(a);
    const calls: [string, unknown[], string][] = [
      ["send", [42, "x"], 'websocket("rooms").send(): a connection id must be a string, got number'],
      ["close", [null], 'websocket("rooms").close(): a connection id must be a string, got null'],
      ["close", [[id, 7]], 'websocket("rooms").close(): a connection id must be a string, got number'],
      ["close", [id, { code: "4000" }], 'websocket("rooms").close(): a close code must be an integer'],
      ["close", [id, { code: 4000.5 }], "a close code must be an integer (1000 or 3000-4999), got 4000.5"],
      ["close", [id, { reason: 5 }], 'websocket("rooms").close(): a close reason must be a string, got number'],
      ["isConnected", [{}], 'websocket("rooms").isConnected(): a connection id must be a string, got object'],
      ["connection", [[id]], 'websocket("rooms").connection(): a connection id must be a string, got an array'],
      ["join", [1, "lobby"], 'websocket("rooms").join(): a connection id must be a string, got number'],
      ["leave", [1, "lobby"], 'websocket("rooms").leave(): a connection id must be a string'],
      ["rooms", [1], 'websocket("rooms").rooms(): a connection id must be a string'],
      ["setState", [1, {}], 'websocket("rooms").setState(): a connection id must be a string'],
      ["state", [true], 'websocket("rooms").state(): a connection id must be a string, got boolean'],
      ["broadcast", ["x", { except: 5 }], 'websocket("rooms").broadcast(): except: a connection id must be'],
      ["broadcast", ["x", { room: "r", except: [id, 5] }], "except: a connection id must be a string, got number"],
    ];
    for (const [method, args, message] of calls) {
      const answer = (await a.call({ op: "raw", method, args })) as { error?: { code: string; message: string } };
      expect(answer.error?.code, `${method}(${JSON.stringify(args)})`).toBe("invalid_argument");
      expect(answer.error?.message).toContain(message);
      if (message.includes("connection id"))
        expect(answer.error?.message).toContain("; use ctx.connectionId or an id from connections()");
    }
    // The connection is untouched: nothing reached the provider.
    expect(await a.call({ op: "raw", method: "isConnected", args: [id] })).toEqual({ result: true });
    a.close();
  }, 60000);

  it("delivers a connection's state with every later event, and refuses a state over 16 KB", async () => {
    const a = await connect(url);
    const ida = await idOf(a);
    expect(await a.call({ op: "state" })).toEqual({ state: null });
    expect(await a.call({ op: "set-state", value: { user: "ada", n: 1 } })).toEqual({ state: { user: "ada", n: 1 } });
    expect(await a.call({ op: "state" })).toEqual({ state: { user: "ada", n: 1 } });
    const big = (await a.call({ op: "set-size", size: 17 * 1024 })) as { error: { code: string; message: string } };
    expect(big.error.code).toBe("invalid_argument");
    expect(big.error.message).toMatch(/at most 16384 bytes of JSON \(16 KB\)/);
    // The refused state left the old one.
    expect(await a.call({ op: "state" })).toEqual({ state: { user: "ada", n: 1 } });
    expect(await a.call({ op: "set-size", size: 16 * 1024 - 20 })).toEqual({ ok: true });
    expect(await a.call({ op: "set-state", value: { user: "ada", n: 2 } })).toEqual({ state: { user: "ada", n: 2 } });
    // The disconnect handler gets it too.
    a.close();
    const b = await connect(url);
    const gone = await eventually(
      () => b.call({ op: "get", key: `gone:${ida}` }),
      (v) => v.value !== null,
    );
    expect(gone).toEqual({ value: { state: { user: "ada", n: 2 } } });
    b.close();
  });

  it("reads another connection's state by id, clears a state with undefined, and says not_found for a gone id", async () => {
    const [a, b] = (await Promise.all([connect(url), connect(url)])) as [Client, Client];
    const ida = await idOf(a);
    await a.call({ op: "set-state", value: ["any", "json", 1, null] });
    expect(await b.call({ op: "state-of", to: ida })).toEqual({ state: ["any", "json", 1, null] });
    expect(await a.call({ op: "set-state" })).toEqual({ state: null });
    expect(await a.call({ op: "state" })).toEqual({ state: null });
    expect(await b.call({ op: "state-of", to: ida })).toEqual({ state: null });
    a.close();
    const gone = await eventually(
      () => b.call({ op: "state-of", to: ida }),
      (v) => v.error !== undefined,
    );
    expect((gone as { error: { code: string } }).error.code).toBe("not_found");
    b.close();
  });

  it("keeps memberships and state across a restart of the service", async () => {
    const [a, b] = (await Promise.all([connect(url), connect(url)])) as [Client, Client];
    const [ida, idb] = await Promise.all([idOf(a), idOf(b)]);
    await a.call({ op: "join", room: "durable" });
    await b.call({ op: "join", room: "durable" });
    await a.call({ op: "set-state", value: { kept: true } });
    if (provider === "local") {
      expect(await a.call({ op: "crash" })).toEqual({ ok: true });
      await app.waitFor(/service "rooms" exited with code 3; restarting/);
    } else {
      // On aws the message that ends its execution environment fails, as on Lambda; the next
      // event gets a new environment.
      expect(await a.call({ op: "die" })).toEqual({ message: "Internal server error", connectionId: ida });
      await app.waitFor(/an execution environment exited with code 3, failing the event it ran; /);
    }
    expect(await a.call({ op: "state" })).toEqual({ state: { kept: true } });
    expect(await a.call({ op: "members", room: "durable" })).toEqual({ ids: [ida, idb].sort() });
    expect(await b.call({ op: "room-broadcast", room: "durable", text: "still here" })).toEqual({ sent: 1 });
    expect((await a.next()).text).toBe("still here");
    a.close();
    b.close();
  }, 30000);
});
