import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  WebsocketEventRequestSchema,
  type WebsocketEventResponse,
  WebsocketEventResponseSchema,
} from "@nitric-like/contracts/websockets";
import { Code, RpcError } from "@nitric-like/rpc";
import { MAX_ROOMS_PER_CONNECTION } from "@nitric-like/spec";
import { describe, expect, it } from "vitest";
import type { ConnectionInfo } from "./backends.js";
import { HandlerError } from "./handlers.js";
import { addRoom, connectEvent, connectRefusal, Opening, openingOverflowReason, unansweredStatus } from "./opening.js";

const info: ConnectionInfo = {
  connectionId: "AbCdEfGhIjKl",
  connectedAt: 1_700_000_000_000,
  query: { room: { value: ["a b"] } },
  headers: { "user-agent": { value: ["test"] } },
  remoteAddress: "127.0.0.1",
  auth: '{"user":"ada"}',
};

const text = (s: string) => new TextEncoder().encode(s);

/** A connect answer as it comes off the wire from a service. */
function answer(connection?: { reject: boolean; status?: number; reason?: string }): WebsocketEventResponse {
  const sent = create(WebsocketEventResponseSchema, {
    websocketResponse: connection ? { case: "connectionResponse", value: connection } : { case: undefined },
  });
  return fromBinary(WebsocketEventResponseSchema, toBinary(WebsocketEventResponseSchema, sent));
}

describe("Opening", () => {
  it("keeps frames in the order they were sent, text and binary alike", () => {
    const opening = new Opening(info);
    expect(opening.keep(text("one"), false)).toBe("kept");
    expect(opening.keep(new Uint8Array([1, 2]), true)).toBe("kept");
    expect(opening.keep(text("three"), false)).toBe("kept");
    expect(opening.frames.map((f) => [Buffer.from(f.data).toString("hex"), f.binary])).toEqual([
      [Buffer.from("one").toString("hex"), false],
      ["0102", true],
      [Buffer.from("three").toString("hex"), false],
    ]);
    expect(opening.bytes).toBe(10);
    expect(opening.close).toBeUndefined();
  });

  it("keeps exactly maxBytes; the frame past it drops what was kept and asks for a 1008 close, and later frames are dropped", () => {
    const opening = new Opening(info, 8);
    expect(opening.keep(text("1234"), false)).toBe("kept");
    expect(opening.keep(text("5678"), false)).toBe("kept");
    expect(opening.frames).toHaveLength(2);
    expect(opening.keep(text("9"), false)).toBe("overflowed");
    expect(opening.frames).toEqual([]);
    expect(opening.close).toEqual({ code: 1008, reason: openingOverflowReason(8) });
    expect(opening.keep(text("x"), true)).toBe("dropped");
    expect(opening.frames).toEqual([]);
  });

  it("says how many MB the bound is in the overflow reason, and fits a close frame's 123 bytes", () => {
    const reason = openingOverflowReason(8 * 1024 * 1024);
    expect(reason).toBe("over 8 MB sent to it before it opened; send less while the connect handler runs");
    expect(Buffer.byteLength(reason)).toBeLessThanOrEqual(123);
  });

  it("says a bound that is not a whole number of MB to one decimal, in KB under 1 MB, and still fits a close frame", () => {
    expect(openingOverflowReason(1.5 * 1024 * 1024)).toBe(
      "over 1.5 MB sent to it before it opened; send less while the connect handler runs",
    );
    expect(openingOverflowReason(100_000)).toBe(
      "over 97.7 KB sent to it before it opened; send less while the connect handler runs",
    );
    expect(Buffer.byteLength(openingOverflowReason(1000))).toBeLessThanOrEqual(123);
  });

  it("has no bound unless given one", () => {
    const opening = new Opening(info);
    const big = new Uint8Array(16 * 1024 * 1024);
    expect(opening.keep(big, true)).toBe("kept");
    expect(opening.keep(big, true)).toBe("kept");
    expect(opening.frames).toHaveLength(2);
  });

  it("keeps the last close the app asked for, and the frames sent before it", () => {
    const opening = new Opening(info);
    opening.keep(text("bye soon"), false);
    opening.requestClose(4000, "first");
    opening.requestClose(1000, "second");
    expect(opening.close).toEqual({ code: 1000, reason: "second" });
    expect(opening.frames).toHaveLength(1);
  });

  it("lets an app's close replace the 1008 of an overflow, as it did before the frames were shared", () => {
    const opening = new Opening(info, 1);
    expect(opening.keep(text("ab"), false)).toBe("overflowed");
    opening.requestClose(4001, "mine");
    expect(opening.close).toEqual({ code: 4001, reason: "mine" });
  });
});

describe("Opening.refused", () => {
  it("drops what was kept and everything sent after, while the app still sees it sent", () => {
    const opening = new Opening(info, 1024);
    expect(opening.keep(new Uint8Array(10), false)).toBe("kept");
    opening.requestClose(4000, "bye");
    opening.refused();
    expect(opening.keep(new Uint8Array(2048), true)).toBe("dropped");
    expect(opening.frames).toEqual([]);
    expect(opening.close).toBeUndefined();
  });
});

describe("connectRefusal", () => {
  it("accepts an answer that does not reject, and an answer with no connection response", () => {
    expect(connectRefusal("chat", answer({ reject: false, status: 401, reason: "ignored" }))).toBeUndefined();
    expect(connectRefusal("chat", answer())).toBeUndefined();
  });

  it("keeps the handler's status from 400 to 599 and its reason", () => {
    expect(connectRefusal("chat", answer({ reject: true, status: 400, reason: "bad" }))).toEqual({
      status: 400,
      reason: "bad",
    });
    expect(connectRefusal("chat", answer({ reject: true, status: 401, reason: "who are you" }))).toEqual({
      status: 401,
      reason: "who are you",
    });
    expect(connectRefusal("chat", answer({ reject: true, status: 599, reason: "x" }))?.status).toBe(599);
  });

  it("answers 403 for a status of 0 or one that is not an HTTP error", () => {
    for (const status of [0, 200, 302, 399, 600, 4000])
      expect(connectRefusal("chat", answer({ reject: true, status, reason: "no" }))?.status).toBe(403);
  });

  it("says who refused when the handler gave no reason", () => {
    expect(connectRefusal("chat", answer({ reject: true }))).toEqual({
      status: 403,
      reason: 'connection refused by the connect handler of websocket "chat"',
    });
  });
});

describe("unansweredStatus", () => {
  it("maps a timeout to 504, a missing registration to 503 and every other failure to 500, with the error's message", () => {
    expect(unansweredStatus(new HandlerError("timeout", "too slow"))).toEqual({ status: 504, reason: "too slow" });
    expect(unansweredStatus(new HandlerError("unavailable", "not there"))).toEqual({
      status: 503,
      reason: "not there",
    });
    for (const failure of ["none", "gone", "poison"] as const)
      expect(unansweredStatus(new HandlerError(failure, failure)).status).toBe(500);
    expect(unansweredStatus(new Error("broken"))).toEqual({ status: 500, reason: "broken" });
    expect(unansweredStatus("a string")).toEqual({ status: 500, reason: "a string" });
  });
});

describe("connectEvent", () => {
  it("is a connect event the wire carries whole: id, identity, the query as given, headers, address and time", () => {
    const raw = { room: { value: ["a%20b"] } };
    const sent = create(WebsocketEventRequestSchema, connectEvent("chat", info, raw));
    const got = fromBinary(WebsocketEventRequestSchema, toBinary(WebsocketEventRequestSchema, sent));
    expect(got.socketName).toBe("chat");
    expect(got.connectionId).toBe("AbCdEfGhIjKl");
    expect(got.auth).toBe('{"user":"ada"}');
    expect(got.websocketEvent.case).toBe("connection");
    const value = got.websocketEvent.case === "connection" ? got.websocketEvent.value : undefined;
    expect(value?.queryParams.room?.value).toEqual(["a%20b"]);
    expect(value?.headers["user-agent"]?.value).toEqual(["test"]);
    expect(value?.remoteAddress).toBe("127.0.0.1");
    expect(Number(value?.connectedAt)).toBe(1_700_000_000_000);
  });

  it("sends an empty identity for a connection no authorizer saw", () => {
    const { auth: _, ...anonymous } = info;
    expect(connectEvent("chat", anonymous, {}).auth).toBe("");
  });
});

describe("addRoom", () => {
  it("adds a room once, and refuses the room past MAX_ROOMS_PER_CONNECTION with RESOURCE_EXHAUSTED", () => {
    const rooms = new Set<string>();
    expect(addRoom(rooms, "chat", "c1", "lobby")).toBe(true);
    expect(addRoom(rooms, "chat", "c1", "lobby")).toBe(false);
    for (let i = 1; i < MAX_ROOMS_PER_CONNECTION; i++) expect(addRoom(rooms, "chat", "c1", `r${i}`)).toBe(true);
    expect(rooms.size).toBe(MAX_ROOMS_PER_CONNECTION);
    let error: unknown;
    try {
      addRoom(rooms, "chat", "c1", "one-too-many");
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(RpcError);
    expect((error as RpcError).code).toBe(Code.RESOURCE_EXHAUSTED);
    expect((error as RpcError).message).toContain('websocket "chat"');
    expect(rooms.has("one-too-many")).toBe(false);
    // A room it is in already is still answered, full or not.
    expect(addRoom(rooms, "chat", "c1", "lobby")).toBe(false);
  });
});
