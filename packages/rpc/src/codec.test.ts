// codecOf: the generated codec of every message a service of proto/ sends or receives (the same
// object as the codec its methods carry, which the router and the client use), protobuf-es's bytes.
import { create, type DescMessage, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { CodecError, codecOf } from "@nitric-like/contracts/codec";
import { Health, HealthCheckRequestSchema } from "@nitric-like/contracts/health";
import {
  KvStoreGetValueRequestSchema,
  KvStoreScanKeysRequestSchema,
  KvStoreSetValueRequestSchema,
} from "@nitric-like/contracts/kvstore";
import {
  PolicyResourceSchema,
  ResourceDeclareRequestSchema,
  Resources,
  ResourceType,
} from "@nitric-like/contracts/resources";
import { ClientMessageSchema, ServerMessageSchema } from "@nitric-like/contracts/websockets";
import { describe, expect, it } from "vitest";

/** Encodes with codecOf, and checks the bytes and the decoded message against protobuf-es's. */
function roundTrip<D extends DescMessage>(schema: D, init: MessageInitShape<D>): Uint8Array {
  const codec = codecOf(schema);
  const bytes = codec.encode(init);
  const reference = toBinary(schema, create(schema, init));
  expect(Buffer.from(bytes).equals(Buffer.from(reference))).toBe(true);
  expect(bytesAsArrays(codec.decode(bytes))).toEqual(bytesAsArrays(fromBinary(schema, reference)));
  return bytes;
}

/**
 * `value` with every bytes field as a plain Uint8Array: the fast decoders give bytes fields as
 * Buffer views on the message (a Uint8Array too, without a copy), protobuf-es as Uint8Arrays.
 */
function bytesAsArrays(value: unknown): unknown {
  if (value instanceof Uint8Array) return new Uint8Array(value);
  if (Array.isArray(value)) return value.map(bytesAsArrays);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, bytesAsArrays(v)]));
  }
  return value;
}

/** A length-delimited field 1 of five bytes with only one there. */
const TRUNCATED = Uint8Array.of(0x0a, 0x05, 0x01);

describe("codecOf", () => {
  it("gives a hot message type the generated fast codec, which encodes and decodes as protobuf-es does", () => {
    // The fast codecs write into Buffers; protobuf-es's toBinary returns plain Uint8Arrays.
    const hot: [DescMessage, unknown][] = [
      [KvStoreGetValueRequestSchema, { ref: { store: "store", key: "key/ü" } }],
      [
        KvStoreSetValueRequestSchema,
        { ref: { store: "store", key: "k" }, content: { a: 1, b: [true, null, "x"], c: { d: -2.5 } } },
      ],
      [ClientMessageSchema, { id: "", content: { case: "registrationRequest", value: { socketName: "socket" } } }],
      [ClientMessageSchema, { id: "7", content: { case: "websocketEventResponse", value: {} } }],
      [
        ServerMessageSchema,
        {
          id: "42",
          content: {
            case: "websocketEventRequest",
            value: {
              socketName: "socket",
              connectionId: "c-1",
              websocketEvent: { case: "message", value: { body: Uint8Array.of(0, 1, 255) } },
            },
          },
        },
      ],
      [
        ServerMessageSchema,
        {
          id: "43",
          content: {
            case: "websocketEventRequest",
            value: {
              socketName: "socket",
              connectionId: "c-2",
              websocketEvent: { case: "connection", value: { queryParams: { q: { value: ["1", "2"] } } } },
            },
          },
        },
      ],
    ];
    for (const [schema, init] of hot) {
      const bytes = roundTrip(schema, init as MessageInitShape<DescMessage>);
      expect(Buffer.isBuffer(bytes), schema.typeName).toBe(true);
    }
  });

  it("gives every other message of a service a generated codec too, and the one its method carries", () => {
    const other: [DescMessage, unknown][] = [
      [HealthCheckRequestSchema, { service: "kv" }],
      [KvStoreScanKeysRequestSchema, { store: { name: "store" }, prefix: "a/" }],
      [ResourceDeclareRequestSchema, { id: { type: ResourceType.Websocket, name: "socket" } }],
    ];
    for (const [schema, init] of other) {
      const bytes = roundTrip(schema, init as MessageInitShape<DescMessage>);
      expect(Buffer.isBuffer(bytes), schema.typeName).toBe(true);
    }
    expect(codecOf(HealthCheckRequestSchema).encode).toBe(Health.method.check.input.encode);
    expect(codecOf(ResourceDeclareRequestSchema).decode).toBe(Resources.method.declare.input.decode);
  });

  it("has none for a message no service sends or receives, and says so", () => {
    expect(() => codecOf(PolicyResourceSchema)).toThrow(
      "no codec for nitric.proto.resources.v1.PolicyResource: only messages that a service of proto/ sends or receives have one",
    );
  });

  it("makes one codec per type", () => {
    expect(codecOf(ClientMessageSchema)).toBe(codecOf(ClientMessageSchema));
    expect(codecOf(HealthCheckRequestSchema)).toBe(codecOf(HealthCheckRequestSchema));
  });

  it("throws a CodecError that names the type on bytes that are no message of it", () => {
    expect(() => codecOf(ClientMessageSchema).decode(TRUNCATED)).toThrow(
      new CodecError("cannot decode nitric.proto.websockets.v1.ClientMessage: the input ends inside a field"),
    );
    expect(() => codecOf(HealthCheckRequestSchema).decode(TRUNCATED)).toThrow(CodecError);
  });
});
