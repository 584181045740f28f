// The generated handler-stream codecs (websockets_fast.ts) against protobuf-es, on random messages
// of the shapes the stream carries: the bytes written must be exactly protobuf-es's, and what is read
// back must equal what protobuf-es reads. (fastcodec.test.ts draws every field from the descriptors;
// this one draws the shapes our providers send.)
import { create, equals, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  decodeClientMessage,
  decodeServerMessage,
  encodeClientMessage,
  encodeServerMessage,
} from "../src/gen/nitric/proto/websockets/v1/websockets_fast.js";
import {
  ClientMessageSchema,
  ServerMessageSchema,
  WebsocketEventType,
} from "../src/gen/nitric/proto/websockets/v1/websockets_pb.js";

type ServerInit = MessageInitShape<typeof ServerMessageSchema>;
type ClientInit = MessageInitShape<typeof ClientMessageSchema>;

// A small deterministic generator, so a failure can be replayed.
let seed = 42;
const rand = () => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed / 2 ** 31;
};
const int = (n: number) => Math.floor(rand() * n);
const pick = <T>(xs: T[]) => xs[int(xs.length)] as T;
const text = () =>
  pick([
    "",
    "a",
    "abc123",
    "héllo wörld",
    "😀 emoji",
    "x".repeat(200),
    "日本語のテキスト",
    "\u0000nul",
    // Around the length up to which ASCII is measured and copied in JavaScript (src/fastcodec/runtime.ts).
    "y".repeat(64),
    "y".repeat(65),
    `${"y".repeat(63)}é`,
    "\ud800 lone surrogate",
    // Around the length up to which ASCII is read in JavaScript (src/fastcodec/runtime.ts), and short non-ASCII.
    "12345678",
    "123456789",
    "abcdeé",
    "é",
    "\u0080",
  ]);
/** A map<string, QueryValue>: no entries to several, empty keys and value lists included. */
const queryMap = () => {
  const map: Record<string, { value: string[] }> = {};
  for (let i = int(4); i > 0; i--)
    map[pick(["a", "", "user-agent", "sec-websocket-key", text()])] = { value: Array.from({ length: int(3) }, text) };
  return map;
};
const bytes = () => {
  // Lengths around the one-, two- and three-byte varint boundaries (the last one rarely: slow to compare).
  const n = rand() < 0.02 ? 20000 : pick([0, 1, 5, 127, 128, 300]);
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = int(256);
  return b;
};

function serverMessage(depth = 0): ServerInit {
  const id = pick(["", "1", "zz9", text()]);
  switch (int(depth === 0 ? 6 : 5)) {
    case 0:
    case 1:
    case 2:
      return {
        id,
        content: {
          case: "websocketEventRequest",
          value: {
            socketName: text(),
            connectionId: text(),
            auth: pick(["", '{"user":"ann"}', text()]),
            websocketEvent: { case: "message", value: { body: bytes(), binary: rand() < 0.5 } },
            // The connection's state (nitriclike.rooms.v1.ConnectionExtras): absent, empty or set.
            ...(rand() < 0.5 ? {} : { extras: { stateJson: pick(["", '{"a":1}', text()]) } }),
          },
        },
      };
    case 3:
      return {
        id,
        content: {
          case: "websocketEventRequest",
          value: {
            socketName: text(),
            connectionId: text(),
            auth: pick(["", '{"user":"ann"}', text()]),
            websocketEvent: {
              case: "connection",
              value: {
                queryParams: queryMap(),
                headers: queryMap(),
                remoteAddress: pick(["127.0.0.1", "", "::1", text()]),
                connectedAt: pick([0, Math.floor(rand() * 2e12), rand() * 2e12, -1.5]),
              },
            },
          },
        },
      };
    case 4:
      return rand() < 0.5
        ? { id, content: { case: "registrationResponse", value: { batch: rand() < 0.5 } } }
        : {
            id,
            content: {
              case: "websocketEventRequest",
              value: {
                socketName: text(),
                connectionId: text(),
                auth: pick(["", text()]),
                websocketEvent: {
                  case: "disconnection",
                  // 0 is left out of the bytes; a negative code is a ten-byte varint (protobuf-es's path).
                  value: { code: pick([1000, 1006, 4000, 0, 2 ** 31 - 1, -1]), reason: text() },
                },
                ...(rand() < 0.5 ? {} : { extras: { stateJson: pick(["", text()]) } }),
              },
            },
          };
    default:
      return {
        id: "",
        content: { case: "eventBatch", value: { events: Array.from({ length: int(6) }, () => serverMessage(1)) } },
      };
  }
}

function clientMessage(depth = 0): ClientInit {
  const id = pick(["", "1", "zz9", text()]);
  switch (int(depth === 0 ? 5 : 4)) {
    case 0:
    case 1:
    case 2:
      return {
        id,
        content: {
          case: "websocketEventResponse",
          value: {
            websocketResponse:
              rand() < 0.8
                ? {
                    case: "connectionResponse",
                    value: {
                      reject: rand() < 0.3,
                      reason: rand() < 0.5 ? "" : text(),
                      status: pick([0, 0, 401, 403, 500, 599, 2 ** 31 - 1]),
                    },
                  }
                : { case: undefined },
            replies: Array.from({ length: int(4) }, () => ({ data: bytes(), binary: rand() < 0.5 })),
          },
        },
      };
    case 3:
      return rand() < 0.5
        ? {
            id,
            content: {
              case: "registrationRequest",
              value: { socketName: text(), eventType: WebsocketEventType.Message, batch: rand() < 0.5 },
            },
          }
        : {
            id,
            content: {
              case: "websocketEventResponse",
              value: { websocketResponse: { case: "connectionResponse", value: { status: -1 } } },
            },
          };
    default:
      return {
        id: "",
        content: { case: "answerBatch", value: { answers: Array.from({ length: int(6) }, () => clientMessage(1)) } },
      };
  }
}

const slowServer = (m: ServerInit) => Buffer.from(toBinary(ServerMessageSchema, create(ServerMessageSchema, m)));
const slowClient = (m: ClientInit) => Buffer.from(toBinary(ClientMessageSchema, create(ClientMessageSchema, m)));

describe("ServerMessage (events)", () => {
  it("writes exactly protobuf-es's bytes and reads back what protobuf-es reads, for 3000 random messages", () => {
    for (let i = 0; i < 3000; i++) {
      const m = serverMessage();
      const expected = slowServer(m);
      const written = encodeServerMessage(m);
      expect(written.equals(expected), `message ${i}`).toBe(true);
      const read = decodeServerMessage(written);
      const reference = fromBinary(ServerMessageSchema, expected);
      expect(equals(ServerMessageSchema, read, reference), `message ${i} read back`).toBe(true);
      // protobuf-es's equals() reads through reflection; every 25th is compared as plain objects too
      if (i % 25 === 0) expect(read).toEqual(reference);
    }
  });

  it("keeps unknown fields as protobuf-es does, and refuses malformed bytes as it does", () => {
    const m = slowServer(serverMessage());
    const withUnknown = Buffer.concat([m, Buffer.from([0xa8, 0x1f, 0x05])]); // field 501, varint 5
    expect(decodeServerMessage(withUnknown)).toEqual(fromBinary(ServerMessageSchema, withUnknown));
    expect(() => decodeServerMessage(Buffer.from([0x0a, 0x05, 0x61]))).toThrow(
      "cannot decode nitric.proto.websockets.v1.ServerMessage: the input ends inside a field",
    );
    expect(() => fromBinary(ServerMessageSchema, Buffer.from([0x0a, 0x05, 0x61]))).toThrow();
  });
});

describe("ClientMessage (answers)", () => {
  it("writes exactly protobuf-es's bytes and reads back what protobuf-es reads, for 3000 random messages", () => {
    for (let i = 0; i < 3000; i++) {
      const m = clientMessage();
      const expected = slowClient(m);
      const written = encodeClientMessage(m);
      expect(written.equals(expected), `message ${i}`).toBe(true);
      const read = decodeClientMessage(written);
      const reference = fromBinary(ClientMessageSchema, expected);
      expect(equals(ClientMessageSchema, read, reference), `message ${i} read back`).toBe(true);
      if (i % 25 === 0) expect(read).toEqual(reference);
    }
  });

  it("refuses malformed bytes, as protobuf-es does", () => {
    expect(() => decodeClientMessage(Buffer.from([0x1a, 0x09, 0x52]))).toThrow("the input ends inside a field");
    expect(() => fromBinary(ClientMessageSchema, Buffer.from([0x1a, 0x09, 0x52]))).toThrow();
  });
});
