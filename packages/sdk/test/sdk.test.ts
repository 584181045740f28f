// The SDK against the real local provider, in one process: real gRPC on 127.0.0.1, real ws
// clients, real lmdb files. SERVICE_ADDRESS is set before the SDK makes its first call.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLocalProvider, type LocalProvider } from "@nitric-like/provider-local";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { isNitricLikeError, kv, NitricLikeError, websocket } from "../src/index.js";

let provider: LocalProvider;
let dir: string;
const logs: string[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "nitric-like-sdk-"));
  provider = await createLocalProvider({
    project: { name: "sdk", dir, file: join(dir, "nitric-like.yaml"), services: [], websockets: {} },
    spec: { name: "sdk", services: [], resources: [], policies: [] },
    logger: { info: (m) => logs.push(m), warn: (m) => logs.push(m), error: (m) => logs.push(m) },
    randomPorts: true,
  });
  process.env.SERVICE_ADDRESS = await provider.endpoint("svc");
});

afterAll(async () => {
  await provider.stop();
  rmSync(dir, { recursive: true, force: true });
});

const registered = async (socket: string, count: number) => {
  for (let i = 0; i < 200 && provider.registrations().filter((r) => r.socket === socket).length < count; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
};
const urlOf = (socket: string) => provider.sockets().find((s) => s.name === socket)?.url ?? "";

function client(url: string, headers: Record<string, string> = {}) {
  const ws = new WebSocket(url, { headers });
  const frames: { data: Buffer; binary: boolean }[] = [];
  const waiters: (() => void)[] = [];
  ws.on("message", (data: Buffer, binary: boolean) => {
    frames.push({ data, binary });
    for (const w of waiters.splice(0)) w();
  });
  const next = async () => {
    while (frames.length === 0) await new Promise<void>((r) => waiters.push(r));
    return frames.shift() as { data: Buffer; binary: boolean };
  };
  const opened = new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("unexpected-response", (_q, res) => {
      let body = "";
      res.on("data", (d: Buffer) => {
        body += d;
      });
      res.on("end", () => reject(Object.assign(new Error(body), { status: res.statusCode, body })));
    });
    ws.once("error", reject);
  });
  return { ws, frames, next, opened };
}

describe("websocket handlers", () => {
  it("gives the connect handler decoded query, headers, address and time, and can refuse with a status", async () => {
    const seen: unknown[] = [];
    const s = websocket("meta");
    s.on("connect", (ctx) => {
      seen.push({
        query: ctx.query,
        nitricQuery: ctx.req.query,
        agent: ctx.headers["user-agent"],
        address: ctx.remoteAddress,
        at: ctx.connectedAt instanceof Date,
      });
      if (ctx.query.deny) ctx.reject(`no ${ctx.query.deny[0]}`, 401);
    });
    s.on("message", () => {});
    s.on("disconnect", () => {});
    await registered("meta", 3);
    const ok = client(`${urlOf("meta")}/?a=1%2B1&a=x+y`, { "User-Agent": "sdk-test" });
    await ok.opened;
    expect(seen[0]).toEqual({
      query: { a: ["1+1", "x y"] },
      nitricQuery: { a: ["1+1", "x y"] },
      agent: ["sdk-test"],
      address: "127.0.0.1",
      at: true,
    });
    await expect(client(`${urlOf("meta")}/?deny=robots`).opened).rejects.toMatchObject({
      status: 401,
      body: "no robots",
    });
    ok.ws.close();
  });

  it("refuses a connection with 500 when the connect handler throws, and logs why", async () => {
    const s = websocket("throws");
    const errors: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => {
      errors.push(String(chunk));
      return true;
    }) as typeof process.stderr.write;
    try {
      s.on("connect", () => {
        throw new Error("database down");
      });
      await registered("throws", 1);
      await expect(client(urlOf("throws")).opened).rejects.toMatchObject({
        status: 500,
        body: "connect handler failed",
      });
    } finally {
      process.stderr.write = write;
    }
    expect(errors.join("")).toMatch(
      /websocket\("throws"\) connect handler failed for connection \S+: Error: database down/,
    );
  });

  it("logs a message handler that throws with its stack, and the connection and other clients carry on", async () => {
    const s = websocket("throws-on-message");
    s.on("message", (ctx) => {
      if (ctx.text() === "boom") throw new Error("bad input in the handler");
      return ctx.text();
    });
    await registered("throws-on-message", 1);
    const errors: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => {
      errors.push(String(chunk));
      return true;
    }) as typeof process.stderr.write;
    const a = client(urlOf("throws-on-message"));
    const b = client(urlOf("throws-on-message"));
    try {
      await Promise.all([a.opened, b.opened]);
      a.ws.send("boom");
      a.ws.send("after");
      expect((await a.next()).data.toString()).toBe("after");
      b.ws.send("other client");
      expect((await b.next()).data.toString()).toBe("other client");
    } finally {
      process.stderr.write = write;
    }
    expect(errors.join("")).toMatch(
      /websocket\("throws-on-message"\) message handler failed for connection \S+: Error: bad input in the handler\n\s+at /,
    );
    expect(a.ws.readyState).toBe(WebSocket.OPEN);
    a.ws.close();
    b.ws.close();
  });

  it("replies with ctx.reply() and return values, keeping text and binary, and sends during connect", async () => {
    const s = websocket("replies");
    s.on("connect", (ctx) => ctx.send({ welcome: true }));
    s.on("message", (ctx) => {
      if (ctx.binary) return ctx.data;
      if (ctx.text() === "json") return ctx.json<{ a: number }>();
      ctx.reply("one");
      return "two";
    });
    s.on("message", async (ctx) => {
      // A second handler in the chain runs after the first.
      if (!ctx.binary && ctx.text() !== "json" && ctx.text() !== "{bad") ctx.reply(new Uint8Array([9]));
    });
    await registered("replies", 2);
    const c = client(urlOf("replies"));
    await c.opened;
    expect((await c.next()).data.toString()).toBe('{"welcome":true}');
    c.ws.send("hi");
    expect((await c.next()).data.toString()).toBe("one");
    expect((await c.next()).data.toString()).toBe("two");
    expect(await c.next()).toEqual({ data: Buffer.from([9]), binary: true });
    c.ws.send(Buffer.from([0, 1, 255]));
    expect(await c.next()).toEqual({ data: Buffer.from([0, 1, 255]), binary: true });
    c.ws.close();
  });

  it("refuses ctx.send() in a message handler, which only a connect context has, naming what to use instead", async () => {
    const s = websocket("no-ctx-send");
    s.on("message", (ctx) => {
      try {
        // Untyped, as a JavaScript handler may write it: MessageContext has no send().
        (ctx as unknown as { send(data: string): void }).send("sent");
        return "sent as a reply";
      } catch (error) {
        return isNitricLikeError(error) ? `${error.code}: ${error.message}` : `other: ${error}`;
      }
    });
    await registered("no-ctx-send", 1);
    const c = client(urlOf("no-ctx-send"));
    await c.opened;
    c.ws.send("hi");
    expect((await c.next()).data.toString()).toBe(
      "invalid_argument: websocket(\"no-ctx-send\") ctx.send(): a message handler's context has no send(), only a connect handler's; reply to the sender with ctx.reply() or by returning the reply, or send with ctx.connection.send()",
    );
    c.ws.close();
  });

  it("refuses ctx.send() and ctx.reply() in a disconnect handler, whose connection is closed, rather than dropping them silently", async () => {
    const s = websocket("no-ctx-reply");
    const refused: string[] = [];
    s.on("disconnect", (ctx) => {
      // Untyped, as a JavaScript handler may write them: DisconnectContext has neither.
      const untyped = ctx as unknown as { send(data: string): void; reply(data: string): void };
      for (const call of [() => untyped.send("bye"), () => untyped.reply("bye")]) {
        try {
          call();
          refused.push("queued");
        } catch (error) {
          refused.push(isNitricLikeError(error) ? `${error.code}: ${error.message}` : `other: ${error}`);
        }
      }
    });
    await registered("no-ctx-reply", 1);
    const c = client(urlOf("no-ctx-reply"));
    await c.opened;
    c.ws.close();
    for (let i = 0; i < 200 && refused.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    const closed = "the connection is closed, so nothing can be sent to it";
    expect(refused).toEqual([
      `invalid_argument: websocket("no-ctx-reply") ctx.send(): a disconnect handler's context has no send(), only a connect handler's; ${closed}`,
      `invalid_argument: websocket("no-ctx-reply") ctx.reply(): a disconnect handler's context has no reply(), only a connect or message handler's; ${closed}`,
    ]);
  });

  it("refuses a Set, a Promise or a BigInt it was asked to send, naming the call and the fix, rather than sending {} to the client", async () => {
    const s = websocket("payloads");
    const lines: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
      if (String(chunk).includes('websocket("payloads")')) lines.push(String(chunk));
      else write(chunk, ...rest);
      return true;
    }) as typeof process.stderr.write;
    try {
      s.on("message", async (ctx) => {
        const what = ctx.text();
        if (what === "return") return { online: new Set([ctx.connectionId]) }; // the handler fails, logged
        try {
          if (what === "send") await s.send(ctx.connectionId, { user: Promise.resolve("ann") });
          else if (what === "broadcast") await s.broadcast({ count: 1n });
          else if (what === "reply") ctx.reply([new Map([["a", 1]])]);
        } catch (error) {
          return isNitricLikeError(error) ? `${error.code}: ${error.message}` : `other: ${error}`;
        }
        return { empty: {}, at: new Date(0) }; // what JSON writes as it means to, sent as always
      });
      await registered("payloads", 1);
      const c = client(urlOf("payloads"));
      await c.opened;
      c.ws.send("send");
      expect((await c.next()).data.toString()).toBe(
        'invalid_argument: websocket("payloads").send(): data.user is a Promise, which JSON would send as {}: await it first',
      );
      c.ws.send("broadcast");
      expect((await c.next()).data.toString()).toBe(
        'invalid_argument: websocket("payloads").broadcast(): data.count is a BigInt, which JSON has no form for: send it as a string or a number',
      );
      c.ws.send("reply");
      expect((await c.next()).data.toString()).toBe(
        'invalid_argument: websocket("payloads") ctx.reply(): data[0] is a Map, which JSON would send as {}: send Object.fromEntries(map) or [...map] instead',
      );
      c.ws.send("return");
      c.ws.send("fine");
      // The refused return value sent nothing: the next frame is the next message's answer.
      expect((await c.next()).data.toString()).toBe('{"empty":{},"at":"1970-01-01T00:00:00.000Z"}');
      expect(lines.join("")).toContain(
        `websocket("payloads") message handler's return value (replied to the sender): data.online is a Set, which JSON would send as {}: send [...set] instead`,
      );
      c.ws.close();
    } finally {
      process.stderr.write = write as typeof process.stderr.write;
    }
  });

  it("reports a message that is not JSON as invalid_argument naming socket and connection", async () => {
    const s = websocket("parse");
    const errors: unknown[] = [];
    s.on("message", (ctx) => {
      try {
        ctx.json();
      } catch (error) {
        errors.push(error);
        return isNitricLikeError(error) ? `${error.code}: ${error.message}` : "other";
      }
      return "parsed";
    });
    await registered("parse", 1);
    const c = client(urlOf("parse"));
    await c.opened;
    c.ws.send("{bad");
    expect((await c.next()).data.toString()).toMatch(
      /^invalid_argument: websocket\("parse"\): the message from connection "\S+" is not JSON \(.+\); use text\(\) for plain text$/,
    );
    c.ws.send('{"ok":1}');
    expect((await c.next()).data.toString()).toBe("parsed");
    c.ws.close();
  });

  it("sends, closes, tells the URL, and names a gone connection in a not_found error", async () => {
    const s = websocket("ops");
    let id = "";
    const closes: number[] = [];
    s.on("connect", (ctx) => {
      id = ctx.connectionId;
    });
    s.on("disconnect", (ctx) => {
      closes.push(ctx.code);
    });
    await registered("ops", 2);
    expect(await s.url()).toBe(urlOf("ops"));
    const c = client(urlOf("ops"));
    await c.opened;
    await s.send(id, "text");
    await s.send(id, new Uint8Array([1]));
    await s.send(id, { n: 1 });
    expect(await c.next()).toEqual({ data: Buffer.from("text"), binary: false });
    expect(await c.next()).toEqual({ data: Buffer.from([1]), binary: true });
    expect(await c.next()).toEqual({ data: Buffer.from('{"n":1}'), binary: false });
    const closed = new Promise<number>((r) => c.ws.once("close", (code) => r(code)));
    await s.close(id, { code: 4001, reason: "done" });
    expect(await closed).toBe(4001);
    const error = await s.send(id, "late").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NitricLikeError);
    expect(error).toMatchObject({ code: "not_found", details: { socket: "ops", connectionId: id } });
    expect((error as Error).message).toBe(
      `websocket "ops": connection "${id}" is not connected (it closed, or never existed)`,
    );
    for (let i = 0; i < 100 && closes.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(closes).toEqual([4001]);
  });
});

describe("kv", () => {
  it("sets, gets, lists and deletes JSON objects", async () => {
    const store = kv<{ n: number }>("numbers").allow("get", "set", "delete");
    await store.set("a:1", { n: 1 });
    await store.set("a:2", { n: 2 });
    await store.set("b:1", { n: 3 });
    expect(await store.get("a:2")).toEqual({ n: 2 });
    const keys: string[] = [];
    for await (const k of store.keys("a:")) keys.push(k);
    expect(keys).toEqual(["a:1", "a:2"]);
    await store.delete("a:1");
    await expect(store.get("a:1")).rejects.toMatchObject({
      code: "not_found",
      message: 'kv("numbers"): key "a:1" not found',
      details: { store: "numbers", key: "a:1" },
    });
  });

  it("returns the same store for the same name and refuses values that are not objects", async () => {
    expect(kv("same")).toBe(kv("same"));
    const store = kv("objects").allow("set");
    await expect(store.set("k", "text" as never)).rejects.toMatchObject({
      code: "invalid_argument",
      message: 'kv("objects"): set("k") needs a JSON object, got a string; wrap it, such as { value: ... }',
    });
    await expect(store.set("k", [1] as never)).rejects.toMatchObject({ message: /got an array/ });
    expect(() => kv("objects").allow("write" as never)).toThrow(
      'kv("objects").allow("write"): unknown permission; use "get", "set" or "delete"',
    );
  });

  it("keeps __proto__ properties and Object.prototype names exactly, leaves undefined properties out, and keeps -0 as 0", async () => {
    const store = kv("exact").allow("get", "set");
    const value = JSON.parse('{"__proto__": {"admin": true}, "constructor": [1], "nested": {"__proto__": null}}');
    await store.set("__proto__", value);
    const got = await store.get("__proto__");
    expect(Object.keys(got).sort()).toEqual(["__proto__", "constructor", "nested"]);
    expect(Object.getPrototypeOf(got)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(got, "__proto__")?.value).toEqual({ admin: true });
    expect(Object.keys(got.nested as object)).toEqual(["__proto__"]);
    for (const name of Object.getOwnPropertyNames(Object.prototype)) {
      await store.set(name, { name });
    }
    for (const name of Object.getOwnPropertyNames(Object.prototype)) expect(await store.get(name)).toEqual({ name });
    await store.set("u", { a: undefined, b: { c: undefined, d: -0 } } as never);
    const u = await store.get("u");
    expect(u).toStrictEqual({ b: { d: 0 } });
    expect(Object.is((u.b as { d: number }).d, 0)).toBe(true);
  });

  it("holds Ampt's data.set to kv's rules: kept exactly, or refused naming key, place and fix", async () => {
    const { data } = await import("../src/ampt-data.js");
    const value = JSON.parse('{"__proto__": {"a": 1}, "list": [1, "two", null]}');
    await data.set("exact", value);
    expect(Object.keys((await data.get("exact")) as object).sort()).toEqual(["__proto__", "list"]);
    await data.set("count", 3);
    expect(await data.get("count")).toBe(3);
    await expect(data.set("when", new Date(0))).rejects.toMatchObject({
      code: "invalid_argument",
      message:
        'data.set("when"): value is a Date, which kv cannot store: use a string, such as date.toISOString(), or a number, such as date.getTime()',
    });
    await expect(data.set("deep", { a: [{ b: 10n }] })).rejects.toMatchObject({
      message: 'data.set("deep"): value.a[0].b is a BigInt, which kv cannot store: use a string or a number',
    });
    await expect(data.set("big", "x".repeat(410 * 1024))).rejects.toMatchObject({
      message: /^data\.set\("big"\): the value is over 409600 bytes/,
    });
    await expect(data.set("\ud800", {})).rejects.toMatchObject({
      message: /^data\.set\("\\ud800"\): the key has a lone surrogate/,
    });
    expect(await data.get("when")).toBeUndefined();
  });

  it("is refused by the provider for a permission it did not allow", async () => {
    const store = kv("guarded").allow("get");
    const sneaky = store as unknown as { set(k: string, v: object): Promise<void> };
    await expect(sneaky.set("k", {})).rejects.toMatchObject({
      code: "permission_denied",
      message: /add \.allow\("set"\) to kv\("guarded"\)/,
    });
  });
});

describe("websocket options", () => {
  it("refuses to declare a socket again with other allowedOrigins", () => {
    websocket("origins", { allowedOrigins: ["https://a.example"] });
    expect(websocket("origins")).toBe(websocket("origins", { allowedOrigins: ["https://a.example"] }));
    expect(() => websocket("origins", { allowedOrigins: ["https://b.example"] })).toThrow(
      'websocket("origins"): declared again with other allowedOrigins; give the options where it is first declared',
    );
  });
});

describe("connections", () => {
  it("lets the connect handler send to its connection, which gets it first, in order", async () => {
    const s = websocket("greet");
    const checks: boolean[] = [];
    s.on("connect", async (ctx) => {
      checks.push(await s.isConnected(ctx.connectionId));
      ctx.reply("1 reply");
      await s.send(ctx.connectionId, "2 socket.send");
      await ctx.connection.send({ n: 3 });
    });
    await registered("greet", 1);
    const c = client(urlOf("greet"));
    await c.opened;
    expect((await c.next()).data.toString()).toBe("1 reply");
    expect((await c.next()).data.toString()).toBe("2 socket.send");
    expect((await c.next()).data.toString()).toBe('{"n":3}');
    expect(checks).toEqual([true]);
    c.ws.close();
  });

  it("drops what was sent during a connect that is then refused", async () => {
    const s = websocket("refuse-after-send");
    s.on("connect", async (ctx) => {
      await s.send(ctx.connectionId, "never seen");
      ctx.reject("no");
    });
    await registered("refuse-after-send", 1);
    const c = client(urlOf("refuse-after-send"));
    await expect(c.opened).rejects.toMatchObject({ status: 403 });
    expect(c.frames).toEqual([]);
  });

  it("lists open connections with their metadata, by id and all together", async () => {
    const s = websocket("roster");
    s.on("connect", () => {});
    await registered("roster", 1);
    const a = client(`${urlOf("roster")}/?name=ann`, { "User-Agent": "agent-a" });
    const b = client(`${urlOf("roster")}/?name=bo&name=b%C3%B6`);
    await Promise.all([a.opened, b.opened]);
    const all: Awaited<ReturnType<typeof s.connection>>[] = [];
    for await (const c of s.connections()) all.push(c);
    expect(all.map((c) => c.query.name).sort()).toEqual([["ann"], ["bo", "bö"]]);
    const ann = all.find((c) => c.query.name?.[0] === "ann");
    expect(ann).toMatchObject({ userAgent: "agent-a", remoteAddress: "127.0.0.1" });
    expect(ann?.connectedAt.getTime()).toBeGreaterThan(Date.now() - 10_000);
    expect(await s.connection(ann?.id ?? "")).toEqual(ann);
    const closed = new Promise((r) => a.ws.once("close", r));
    a.ws.close();
    await closed;
    for (let i = 0; i < 100 && (await s.isConnected(ann?.id ?? "")); i++) await new Promise((r) => setTimeout(r, 10));
    expect(await s.isConnected(ann?.id ?? "")).toBe(false);
    await expect(s.connection(ann?.id ?? "")).rejects.toMatchObject({ code: "not_found" });
    const left: string[] = [];
    for await (const c of s.connections()) left.push(c.id);
    expect(left).toHaveLength(1);
    b.ws.close();
  });

  it("broadcasts in one call to every connection but the excepted ones", async () => {
    const s = websocket("fanout");
    const ids: string[] = [];
    s.on("connect", (ctx) => {
      ids.push(ctx.connectionId);
    });
    await registered("fanout", 1);
    const clients = [client(urlOf("fanout")), client(urlOf("fanout")), client(urlOf("fanout"))];
    await Promise.all(clients.map((c) => c.opened));
    expect(await s.broadcast("to all")).toBe(3);
    for (const c of clients) expect((await c.next()).data.toString()).toBe("to all");
    expect(await s.broadcast(new Uint8Array([7]), { except: ids[0] ?? "" })).toBe(2);
    expect(await s.broadcast({ to: "one" }, { except: [ids[0] ?? "", ids[1] ?? ""] })).toBe(1);
    const second = await clients[1]?.next();
    expect(second).toEqual({ data: Buffer.from([7]), binary: true });
    expect((await clients[2]?.next())?.data).toEqual(Buffer.from([7]));
    expect((await clients[2]?.next())?.data.toString()).toBe('{"to":"one"}');
    expect(clients[0]?.frames).toEqual([]);
    for (const c of clients) c.ws.close();
  });

  it("sends quietly to a gone connection when asked, closes many, and gives handlers a connection handle", async () => {
    const s = websocket("handles");
    const ids: string[] = [];
    s.on("connect", (ctx) => {
      ids.push(ctx.connection.id);
    });
    s.on("message", async (ctx) => {
      await ctx.connection.close("asked to leave");
    });
    await registered("handles", 2);
    const [a, b, c] = [client(urlOf("handles")), client(urlOf("handles")), client(urlOf("handles"))];
    await Promise.all([a.opened, b.opened, c.opened]);
    const aClosed = new Promise<[number, string]>((r) =>
      a.ws.once("close", (code, reason) => r([code, reason.toString()])),
    );
    a.ws.send("bye");
    expect(await aClosed).toEqual([1000, "asked to leave"]);
    await expect(s.send(ids[0] ?? "", "x")).rejects.toMatchObject({ code: "not_found" });
    await expect(s.send(ids[0] ?? "", "x", { throwIfNotConnected: false })).resolves.toBeUndefined();
    const closes = [b, c].map((x) => new Promise<number>((r) => x.ws.once("close", (code) => r(code))));
    await s.close([ids[0] ?? "", ids[1] ?? "", ids[2] ?? ""], { code: 4002, reason: "all" });
    expect(await Promise.all(closes)).toEqual([4002, 4002]);
  });
});

describe("the Ampt-style ws interface", () => {
  it("parses JSON (keeping the raw text), passes text and bytes, never replies with a return value, and reports close reasons", async () => {
    // Imported here: importing it declares the "ws" socket, which needs the provider started above.
    const { ws } = await import("../src/ampt.js");
    const seen: unknown[] = [];
    const raws: { text: string; binary: boolean; bytes: number }[] = [];
    const reasons: (string | undefined)[] = [];
    let meta: unknown;
    ws.on("connected", (connection) => {
      meta = connection.meta;
    });
    ws.on("disconnected", (_connection, reason) => {
      reasons.push(reason);
    });
    ws.on("message", async (connection, data, raw) => {
      seen.push(data);
      raws.push({ text: raw.text(), binary: raw.binary, bytes: raw.bytes.length });
      await connection.send("ack");
      return "not a reply";
    });
    await registered("ws", 3);
    const c = client(`${urlOf("ws")}/?name=ann&name=al`, { "User-Agent": "ampt-test" });
    await c.opened;
    expect(meta).toMatchObject({
      queryStringParams: { name: "ann" },
      multiValueQueryStringParams: { name: ["ann", "al"] },
      headers: { "user-agent": "ampt-test" },
    });
    c.ws.send('{ "lat": 1 }');
    c.ws.send("plain");
    c.ws.send(Buffer.from([1, 2]));
    for (let i = 0; i < 3; i++) expect((await c.next()).data.toString()).toBe("ack");
    expect(seen.slice(0, 2)).toEqual([{ lat: 1 }, "plain"]);
    expect(raws.slice(0, 2)).toEqual([
      { text: '{ "lat": 1 }', binary: false, bytes: 12 },
      { text: "plain", binary: false, bytes: 5 },
    ]);
    expect(raws[2]).toMatchObject({ binary: true, bytes: 2 });
    expect(seen[2]).toBeInstanceOf(Uint8Array);
    expect([...(seen[2] as Uint8Array)]).toEqual([1, 2]);
    c.ws.close(4000, "done here");
    for (let i = 0; i < 100 && reasons.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(reasons).toEqual(["done here"]);
    expect(c.frames).toEqual([]);
  });
});
