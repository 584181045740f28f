// The handler stream protocol against a real gRPC server playing the provider (test/fake-provider.ts).
import { ResourceType } from "@nitric-like/contracts/resources";
import { WebsocketEventType } from "@nitric-like/contracts/websockets";
import { Code, RpcError } from "@nitric-like/rpc";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { type FakeProvider, startFakeProvider } from "../../test/fake-provider.js";
import { isNitricLikeError, type NitricLikeError } from "../errors.js";
import { websocket } from "./websocket.js";

let provider: FakeProvider;
const text = (s: string) => new TextEncoder().encode(s);
const decode = (b: Uint8Array) => new TextDecoder().decode(b);
const connectEvent = (socketName: string, connectionId: string, extra: Record<string, unknown> = {}) => ({
  socketName,
  connectionId,
  websocketEvent: {
    case: "connection" as const,
    value: { queryParams: {}, headers: {}, remoteAddress: "", connectedAt: 0, ...extra },
  },
});
const messageEvent = (socketName: string, connectionId: string, body: Uint8Array, binary = false) => ({
  socketName,
  connectionId,
  websocketEvent: { case: "message" as const, value: { body, binary } },
});
const connectionResponse = (r: { response: { websocketResponse: { case: string | undefined; value?: unknown } } }) => {
  expect(r.response.websocketResponse.case).toBe("connectionResponse");
  return r.response.websocketResponse.value as { reject: boolean; reason: string; status: number };
};

beforeAll(async () => {
  provider = await startFakeProvider();
  // The runtime reads SERVICE_ADDRESS when it makes its client, on the first declaration.
  process.env.SERVICE_ADDRESS = provider.address;
});
afterAll(async () => {
  await provider.stop();
});
afterEach(() => {
  vi.restoreAllMocks();
});

describe("websocket() declarations", () => {
  it("throws at once on an invalid name, with the fix", () => {
    let error: unknown;
    try {
      websocket("Chat Room");
    } catch (e) {
      error = e;
    }
    expect(isNitricLikeError(error)).toBe(true);
    expect(error).toMatchObject({
      code: "invalid_argument",
      message: 'websocket("Chat Room"): invalid resource name "Chat Room", use lower-kebab-case such as "chat-room"',
    });
  });

  it("throws at once on allowedOrigins no browser could match, naming the origin to write", () => {
    // From JavaScript, a string was taken character by character: every browser got 403.
    expect(() => websocket("origins-a", { allowedOrigins: "https://app.example.com" as never })).toThrow(
      'websocket("origins-a"): allowedOrigins is a list of origins, got string; write allowedOrigins: ["https://app.example.com"]',
    );
    expect(() => websocket("origins-b", { allowedOrigins: ["https://app.example.com/"] })).toThrow(
      /^websocket\("origins-b"\): allowedOrigins entry "https:\/\/app.example.com\/" is not an origin as browsers send it .*; write "https:\/\/app.example.com", or "\*" for any$/,
    );
  });

  it("declares the socket and a manage policy, then opens one stream per event after they are acknowledged", async () => {
    provider.declareDelayMs = 30;
    const socket = websocket("decl");
    expect(websocket("decl")).toBe(socket);
    socket.on("message", () => {}).on("message", () => {});
    socket.on("connect", () => {});
    await provider.stream("decl", WebsocketEventType.Connect);
    await provider.stream("decl", WebsocketEventType.Message);
    provider.declareDelayMs = 0;
    const mine = provider.log.filter((l) => l.includes("decl") || l.startsWith("declare Policy"));
    expect(mine.slice(0, 2)).toEqual(["declare Websocket decl", "declare Policy "]);
    expect(mine.slice(2).sort()).toEqual([
      `register decl ${WebsocketEventType.Connect} id=""`,
      `register decl ${WebsocketEventType.Message} id=""`,
    ]);
    expect(provider.streams.filter((s) => s.registration.socketName === "decl")).toHaveLength(2);
    const policy = provider.declarations.find(
      (d) => d.config.case === "policy" && d.config.value.resources[0]?.name === "decl",
    );
    expect(policy?.config.value).toMatchObject({
      principals: [{ type: ResourceType.Service, name: "" }],
      actions: [500],
      resources: [{ type: ResourceType.Websocket, name: "decl" }],
    });
  });
});

describe("message routes", () => {
  it("registers each route on a stream of its own, apart from the message handler, and replies as a message handler does", async () => {
    const socket = websocket("routed");
    socket.on("message", (ctx) => `default: ${ctx.text()} (route ${String(ctx.route)})`);
    socket.route<{ room: string }>("join", (ctx) => ({ joined: ctx.json().room, route: ctx.route }));
    socket.route("join", (ctx) => ctx.reply("second in the chain"));
    socket.route("chat.say", async () => "said");
    const join = await provider.stream("routed", WebsocketEventType.Message, "join");
    const say = await provider.stream("routed", WebsocketEventType.Message, "chat.say");
    const plain = await provider.stream("routed", WebsocketEventType.Message);
    expect(provider.streams.filter((s) => s.registration.socketName === "routed")).toHaveLength(3);
    expect(join.registration).toMatchObject({ eventType: WebsocketEventType.Message, route: "join", batch: true });

    const joined = await join.request(messageEvent("routed", "c1", text('{"action":"join","room":"lobby"}')));
    expect(joined.response.replies.map((r) => decode(r.data))).toEqual([
      '{"joined":"lobby","route":"join"}',
      "second in the chain",
    ]);
    const said = await say.request(messageEvent("routed", "c1", text('{"action":"chat.say"}')));
    expect(said.response.replies.map((r) => decode(r.data))).toEqual(["said"]);
    const other = await plain.request(messageEvent("routed", "c1", text("hi")));
    expect(other.response.replies.map((r) => decode(r.data))).toEqual(["default: hi (route undefined)"]);
  });

  it("names the route when its handler fails", async () => {
    const errors: string[] = [];
    vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
      errors.push(String(chunk));
      return true;
    });
    websocket("routed-fail").route("join", () => {
      throw new Error("no such room");
    });
    const stream = await provider.stream("routed-fail", WebsocketEventType.Message, "join");
    const answer = await stream.request(messageEvent("routed-fail", "c9", text('{"action":"join"}')));
    expect(connectionResponse(answer).reject).toBe(true);
    expect(errors.join("")).toContain('websocket("routed-fail") route "join" handler failed for connection c9: ');
    expect(errors.join("")).toContain("no such room");
  });

  it.each([
    ["", 'websocket("r").route(""): a route needs a name, the "action" its messages carry, such as "join"'],
    [
      "$default",
      'websocket("r").route("$default"): a route name starts with a letter and has only letters, digits, "_", "-", "." and ":", such as "join" or "chat.say"',
    ],
    [
      "9lives",
      'websocket("r").route("9lives"): a route name starts with a letter and has only letters, digits, "_", "-", "." and ":", such as "join" or "chat.say"',
    ],
    [
      "true",
      'websocket("r").route("true"): "true" is a JSON value, not a name a client sends as a string; choose another name',
    ],
    [
      "a".repeat(65),
      `websocket("r").route("${"a".repeat(65)}"): a route name is at most 64 characters; this one has 65`,
    ],
  ])("throws at once for the route name %j, saying the rule", (name, message) => {
    expect(() => websocket("r").route(name, () => {})).toThrow(
      expect.objectContaining({ code: "invalid_argument", message }),
    );
  });

  it("declares a socket's routeBy with it, refuses an invalid one or another on a second declaration, and names it in a route's refusal", async () => {
    expect(() => websocket("typed-bad", { routeBy: "body[type]" })).toThrow(
      expect.objectContaining({
        code: "invalid_argument",
        message: expect.stringMatching(/^websocket\("typed-bad", \{ routeBy: "body\[type\]" \}\): routeBy names/),
      }),
    );
    // A dotted path is a routeBy too, and a route's refusal names it.
    expect(() => websocket("nested", { routeBy: "meta.type" }).route("", () => {})).toThrow(
      'a route needs a name, the "meta.type" its messages carry',
    );
    const typed = websocket("typed", { routeBy: "type" });
    expect(websocket("typed")).toBe(typed); // a declaration without it agrees
    expect(() => websocket("typed", { routeBy: "kind" })).toThrow(
      'websocket("typed"): declared again with another routeBy; give the options where it is first declared',
    );
    expect(() => typed.route("", () => {})).toThrow('a route needs a name, the "type" its messages carry');
    typed.on("message", () => {});
    await provider.stream("typed", WebsocketEventType.Message);
    const declared = provider.declarations.find((d) => d.id?.name === "typed" && d.id.type === ResourceType.Websocket);
    expect(declared?.config).toMatchObject({ case: "websocket", value: { routeBy: "type", allowedOrigins: [] } });
  });

  it("throws at once for a handler that is not a function", async () => {
    expect(() => websocket("r").route("join", "handler" as never)).toThrow(
      'websocket("r").route("join"): a handler must be a function',
    );
    // The refused routes registered nothing; the socket itself was declared, as on() shows.
    websocket("r").on("message", () => {});
    await provider.stream("r", WebsocketEventType.Message);
    expect(
      provider.streams.filter((st) => st.registration.socketName === "r").map((st) => st.registration.route),
    ).toEqual([""]);
  });
});

describe("connect events", () => {
  it("gives the handler decoded query, headers and metadata, and delivers queued replies", async () => {
    const seen: unknown[] = [];
    websocket("conn").on("connect", (ctx) => {
      seen.push(ctx.connectionId, ctx.req.connectionId, ctx.socket, ctx.query, ctx.req.query, ctx.headers);
      seen.push(ctx.remoteAddress, ctx.connectedAt.toISOString());
      ctx.reply("welcome");
      ctx.send(new Uint8Array([7]));
      return "ignored: only message handlers reply with their return value";
    });
    const stream = await provider.stream("conn", WebsocketEventType.Connect);
    const answer = await stream.request(
      connectEvent("conn", "c1", {
        queryParams: { name: { value: ["a%20b", "100%"] }, e: { value: ["%C3%A9"] } },
        headers: { origin: { value: ["http://x"] } },
        remoteAddress: "127.0.0.1",
        connectedAt: Date.UTC(2024, 0, 1),
      }),
    );
    const query = { name: ["a b", "100%"], e: ["é"] };
    expect(seen).toEqual([
      "c1",
      "c1",
      "conn",
      query,
      query,
      { origin: ["http://x"] },
      "127.0.0.1",
      "2024-01-01T00:00:00.000Z",
    ]);
    expect(answer.id).toMatch(/^ev-/);
    expect(connectionResponse(answer)).toMatchObject({ reject: false });
    expect(answer.response.replies.map((r) => ({ data: [...r.data], binary: r.binary }))).toEqual([
      { data: [...text("welcome")], binary: false },
      { data: [7], binary: true },
    ]);
  });

  it("rejects with reason and status, stops the chain, and treats res.success = false as a 403", async () => {
    const ran: string[] = [];
    websocket("guard")
      .on("connect", (ctx) => {
        ran.push("first");
        if (ctx.query.token?.[0] !== "ok") ctx.reject("bad token", 401);
      })
      .on("connect", (ctx) => {
        ran.push("second");
        if (ctx.query.nitric?.[0] === "1") ctx.res.success = false;
      });
    const stream = await provider.stream("guard", WebsocketEventType.Connect);
    const refused = await stream.request(connectEvent("guard", "c1"));
    expect(connectionResponse(refused)).toMatchObject({ reject: true, reason: "bad token", status: 401 });
    expect(ran).toEqual(["first"]);
    const nitric = await stream.request(
      connectEvent("guard", "c2", { queryParams: { token: { value: ["ok"] }, nitric: { value: ["1"] } } }),
    );
    expect(connectionResponse(nitric)).toMatchObject({ reject: true, status: 403 });
    const accepted = await stream.request(connectEvent("guard", "c3", { queryParams: { token: { value: ["ok"] } } }));
    expect(connectionResponse(accepted)).toMatchObject({ reject: false, status: 0, reason: "" });
    expect(ran).toEqual(["first", "first", "second", "first", "second"]);
  });

  it("refuses with 500 and logs the stack when a connect handler throws", async () => {
    const writes: string[] = [];
    vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
      writes.push(String(chunk));
      return true;
    });
    websocket("boom").on("connect", async () => {
      throw new Error("database down");
    });
    const stream = await provider.stream("boom", WebsocketEventType.Connect);
    const answer = await stream.request(connectEvent("boom", "c9"));
    expect(connectionResponse(answer)).toMatchObject({
      reject: true,
      status: 500,
      reason: "connect handler failed",
    });
    expect(writes.join("")).toMatch(
      /^websocket\("boom"\) connect handler failed for connection c9: Error: database down\n\s+at /,
    );
  });
});

describe("message events", () => {
  it("exposes the payload and replies with reply() and with returned values, but not a returned ctx", async () => {
    websocket("echo")
      .on("message", (ctx) => {
        expect(ctx.req.data).toBe(ctx.data);
        ctx.reply(`text:${ctx.text()}|req:${ctx.req.text()}|binary:${ctx.binary}`);
        return ctx;
      })
      .on("message", async (ctx) => ({ got: ctx.json<{ n: number }>().n }))
      .on("message", (ctx) => ctx.data);
    const stream = await provider.stream("echo", WebsocketEventType.Message);
    const answer = await stream.request(messageEvent("echo", "m1", text('{"n":3}')));
    expect(connectionResponse(answer)).toMatchObject({ reject: false });
    expect(answer.response.replies.map((r) => [decode(r.data), r.binary])).toEqual([
      ['text:{"n":3}|req:{"n":3}|binary:false', false],
      ['{"got":3}', false],
      // The data of a text message, passed on as it came, stays text.
      ['{"n":3}', false],
    ]);
  });

  it("replies only the body of a returned Lambda proxy answer, as API Gateway does on a route with a route response", async () => {
    const writes: string[] = [];
    vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
      writes.push(String(chunk));
      return true;
    });
    websocket("proxy").on("message", (ctx) => {
      const answers: Record<string, unknown> = {
        body: { statusCode: 200, body: "hi" },
        headers: { statusCode: 500, headers: { a: "b" }, body: '{"n":1}', isBase64Encoded: false },
        none: { statusCode: 200 },
        // Not proxy answers: sent whole, as JSON.
        extra: { statusCode: 200, body: "hi", user: "ann" },
        object: { statusCode: 200, body: { n: 1 } },
        status: { statusCode: "200", body: "hi" },
        base64: { statusCode: 200, body: "aGk=", isBase64Encoded: true },
      };
      return answers[ctx.text()];
    });
    const stream = await provider.stream("proxy", WebsocketEventType.Message);
    const replies = async (which: string) => {
      const answer = await stream.request(messageEvent("proxy", "m1", text(which)));
      return answer.response.replies.map((r) => decode(r.data));
    };
    expect(await replies("body")).toEqual(["hi"]);
    expect(await replies("headers")).toEqual(['{"n":1}']);
    expect(await replies("none")).toEqual([]);
    expect(await replies("extra")).toEqual(['{"statusCode":200,"body":"hi","user":"ann"}']);
    expect(await replies("object")).toEqual(['{"statusCode":200,"body":{"n":1}}']);
    expect(await replies("status")).toEqual(['{"statusCode":"200","body":"hi"}']);
    const answer = await stream.request(messageEvent("proxy", "m1", text("base64")));
    expect(answer.response.replies).toEqual([]);
    expect(writes.join("")).toContain(
      'websocket("proxy") message handler returned { statusCode, body, isBase64Encoded: true }; return the bytes instead',
    );
  });

  it("sends a text message's data on as text, a binary message's as binary, and a copy or slice as binary", async () => {
    const socket = websocket("forward");
    socket.on("message", async (ctx) => {
      await socket.send("to", ctx.req.data);
      ctx.reply(ctx.data);
      ctx.reply(new Uint8Array(ctx.data));
      ctx.reply(ctx.data.subarray(1));
    });
    const stream = await provider.stream("forward", WebsocketEventType.Message);
    const kinds = async (body: Uint8Array, binary: boolean) => {
      const answer = await stream.request(messageEvent("forward", "m1", body, binary));
      return answer.response.replies.map((r) => r.binary);
    };
    expect(await kinds(text("hi"), false)).toEqual([false, true, true]);
    expect(await kinds(new Uint8Array([1, 2]), true)).toEqual([true, true, true]);
    expect(await kinds(new Uint8Array(0), false)).toEqual([false, true, true]);
    expect(await kinds(new Uint8Array(0), true)).toEqual([true, true, true]);
    expect(provider.sent.filter((s) => s.socketName === "forward").map((s) => s.binary)).toEqual([
      false,
      true,
      false,
      true,
    ]);
  });

  it("makes json() on a non-JSON message throw invalid_argument naming the socket and connection", async () => {
    websocket("strict").on("message", (ctx) => {
      try {
        ctx.json();
        return "parsed";
      } catch (error) {
        const e = error as NitricLikeError;
        return { code: e.code, message: e.message, details: e.details, isError: isNitricLikeError(e) };
      }
    });
    const stream = await provider.stream("strict", WebsocketEventType.Message);
    const answer = await stream.request(messageEvent("strict", "m7", text("hello")));
    const reply = JSON.parse(decode(answer.response.replies[0]?.data ?? new Uint8Array()));
    expect(reply).toMatchObject({
      code: "invalid_argument",
      details: { socket: "strict", connectionId: "m7" },
      isError: true,
    });
    expect(reply.message).toMatch(/^websocket\("strict"\): the message from connection "m7" is not JSON/);
  });

  it("answers reject when a handler throws or returns what cannot be sent, and keeps serving", async () => {
    vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    websocket("fragile").on("message", (ctx) => {
      if (ctx.text() === "throw") throw new Error("nope");
      if (ctx.text() === "fn") return () => {};
      return "fine";
    });
    const stream = await provider.stream("fragile", WebsocketEventType.Message);
    const thrown = await stream.request(messageEvent("fragile", "m1", text("throw")));
    expect(connectionResponse(thrown)).toMatchObject({ reject: true });
    const unsendable = await stream.request(messageEvent("fragile", "m1", text("fn")));
    expect(connectionResponse(unsendable)).toMatchObject({ reject: true });
    const fine = await stream.request(messageEvent("fragile", "m1", text("ok")));
    expect(connectionResponse(fine)).toMatchObject({ reject: false });
    expect(decode(fine.response.replies[0]?.data ?? new Uint8Array())).toBe("fine");
  });

  it("handles events concurrently and answers each with its own id", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    websocket("slow").on("message", async (ctx) => {
      if (ctx.text() === "wait") await gate;
      return ctx.text();
    });
    const stream = await provider.stream("slow", WebsocketEventType.Message);
    const order: string[] = [];
    const first = stream.request(messageEvent("slow", "a", text("wait"))).then((r) => {
      order.push("wait");
      return r;
    });
    const second = await stream.request(messageEvent("slow", "b", text("quick")));
    order.push("quick");
    release();
    const firstAnswer = await first;
    expect(order).toEqual(["quick", "wait"]);
    expect(decode(firstAnswer.response.replies[0]?.data ?? new Uint8Array())).toBe("wait");
    expect(decode(second.response.replies[0]?.data ?? new Uint8Array())).toBe("quick");
    expect(firstAnswer.id).not.toBe(second.id);
    expect(stream.answers.map((a) => a.id)).toEqual([second.id, firstAnswer.id]);
  });
});

describe("disconnect events", () => {
  it("passes the close code and reason and answers with a connection response", async () => {
    const seen: unknown[] = [];
    websocket("bye").on("disconnect", (ctx) => {
      seen.push(ctx.connectionId, ctx.code, ctx.reason, ctx.req.data.length);
      return "ignored";
    });
    const stream = await provider.stream("bye", WebsocketEventType.Disconnect);
    const answer = await stream.request({
      socketName: "bye",
      connectionId: "d1",
      websocketEvent: { case: "disconnection", value: { code: 4001, reason: "kicked" } },
    });
    expect(seen).toEqual(["d1", 4001, "kicked", 0]);
    expect(connectionResponse(answer)).toMatchObject({ reject: false });
    expect(answer.response.replies).toEqual([]);
  });
});

describe("sending and closing", () => {
  it("sends strings as text, bytes as binary and values as JSON, always setting the binary flag", async () => {
    const socket = websocket("out");
    await socket.send("c1", "hi");
    await socket.send("c1", new Uint8Array([1, 2]));
    await socket.send("c1", Buffer.from([3]));
    await socket.send("c1", new Uint8Array([4]).buffer);
    await socket.send("c1", { a: 1 });
    const sent = provider.sent.filter((s) => s.socketName === "out");
    expect(sent.map((s) => [s.connectionId, [...s.data], s.binary])).toEqual([
      ["c1", [...text("hi")], false],
      ["c1", [1, 2], true],
      ["c1", [3], true],
      ["c1", [4], true],
      ["c1", [...text('{"a":1}')], false],
    ]);
  });

  it("maps provider errors, and sends quietly to a gone connection when asked", async () => {
    const socket = websocket("gone");
    provider.sendError = new RpcError(Code.NOT_FOUND, 'websocket("gone"): connection "x" is not connected');
    try {
      await expect(socket.send("x", "hi")).rejects.toMatchObject({
        code: "not_found",
        message: 'websocket("gone"): connection "x" is not connected',
        details: { socket: "gone", connectionId: "x" },
      });
      await expect(socket.send("x", "hi", { throwIfNotConnected: false })).resolves.toBeUndefined();
    } finally {
      provider.sendError = undefined;
    }
  });

  it("closes with a code and reason and reads the socket's url", async () => {
    const socket = websocket("closer");
    await socket.close("c5", { code: 4000, reason: "done" });
    await socket.close("c6");
    expect(
      provider.closed.filter((c) => c.socketName === "closer").map((c) => [c.connectionId, c.code, c.reason]),
    ).toEqual([
      ["c5", 4000, "done"],
      ["c6", 0, ""],
    ]);
    expect(await socket.url()).toBe("ws://127.0.0.1:9999/closer");
  });
});
