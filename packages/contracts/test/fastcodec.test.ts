// The generated fast codecs (src/gen/**/*_fast.ts) against protobuf-es, driven by the descriptors:
// random messages with every field of every message the hot messages reach, unknown fields of every
// wire type at every level, must encode to exactly protobuf-es's bytes and decode to exactly what
// protobuf-es reads, merged (concatenated) and truncated input included.
import { readFileSync } from "node:fs";
import { createRegistry, type DescMessage, fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { fallbacks } from "../src/fastcodec/runtime.js";
import * as kvFast from "../src/gen/nitric/proto/kvstore/v1/kvstore_fast.js";
import { file_nitric_proto_kvstore_v1_kvstore } from "../src/gen/nitric/proto/kvstore/v1/kvstore_pb.js";
import * as wsFast from "../src/gen/nitric/proto/websockets/v1/websockets_fast.js";
import { file_nitric_proto_websockets_v1_websockets } from "../src/gen/nitric/proto/websockets/v1/websockets_pb.js";
import { message, plain, reachable } from "./fastcodec-props.js";

const registry = createRegistry(file_nitric_proto_websockets_v1_websockets, file_nitric_proto_kvstore_v1_kvstore);
const generated = [
  { module: wsFast, source: new URL("../src/gen/nitric/proto/websockets/v1/websockets_fast.ts", import.meta.url) },
  { module: kvFast, source: new URL("../src/gen/nitric/proto/kvstore/v1/kvstore_fast.ts", import.meta.url) },
];

function schemaOf(typeName: string): DescMessage {
  const desc = registry.getMessage(typeName);
  if (!desc) throw new Error(`fastcodec test: "${typeName}" is not in the registry: add its file`);
  return desc;
}

/** What protobuf-es makes of bytes, or the fact that it throws. */
function pbDecode(desc: DescMessage, bytes: Uint8Array): unknown {
  try {
    return plain(fromBinary(desc, bytes));
  } catch {
    return "throws";
  }
}
function fastDecode(decode: (b: Uint8Array) => unknown, bytes: Uint8Array): unknown {
  try {
    return plain(decode(bytes));
  } catch {
    return "throws";
  }
}

describe("generated fast codecs", () => {
  it("cover the hot messages: each root has a codec and every field of every message it reaches has direct code", () => {
    const roots = generated.flatMap((g) => g.module.fastCodecs.map((c) => c.typeName));
    expect(roots.sort()).toEqual(
      [
        "nitric.proto.kvstore.v1.KvStoreDeleteKeyRequest",
        "nitric.proto.kvstore.v1.KvStoreGetValueRequest",
        "nitric.proto.kvstore.v1.KvStoreGetValueResponse",
        "nitric.proto.kvstore.v1.KvStoreSetValueRequest",
        "nitric.proto.websockets.v1.ClientMessage",
        "nitric.proto.websockets.v1.ServerMessage",
        "nitric.proto.websockets.v1.WebsocketSendRequest",
        "nitric.proto.websockets.v1.WebsocketSendResponse",
      ].sort(),
    );
    for (const g of generated) {
      // A field type without direct code would leave its message to protobuf-es: correct, but slow.
      expect(g.module.slowMessages).toEqual([]);
      const source = readFileSync(g.source, "utf8");
      for (const codec of g.module.fastCodecs) {
        for (const desc of reachable(schemaOf(codec.typeName))) {
          const id = desc.typeName.replace(/\./g, "_");
          const start = source.indexOf(`function read_${id}(`);
          expect(start, `${desc.typeName} has no generated reader`).toBeGreaterThan(-1);
          const body = source.slice(start, source.indexOf("\n}\n", start));
          for (const field of desc.fields) {
            const wire =
              field.fieldKind === "message" || field.fieldKind === "map" || field.scalar === 9 || field.scalar === 12
                ? 2
                : field.scalar === 1
                  ? 1
                  : field.scalar === 2 || field.scalar === 7 || field.scalar === 15
                    ? 5
                    : field.fieldKind === "list" && field.listKind === "message"
                      ? 2
                      : 0;
            const tag = (field.number << 3) | wire;
            expect(body, `${desc.typeName}.${field.name}: no generated case for tag ${tag}`).toContain(`case ${tag}:`);
          }
        }
      }
    }
  });

  for (const g of generated) {
    for (const codec of g.module.fastCodecs) {
      const desc = schemaOf(codec.typeName);
      const encode = codec.encode as (m: unknown) => Buffer;
      const decode = codec.decode;
      describe(codec.typeName, () => {
        it("writes exactly protobuf-es's bytes and reads back what protobuf-es reads, unknown fields included", () => {
          const before = { ...fallbacks };
          fc.assert(
            fc.property(message(desc), (m) => {
              const expected = toBinary(desc, m as never);
              const bytes = encode(m);
              expect(Buffer.compare(bytes, Buffer.from(expected))).toBe(0);
              const decoded = decode(bytes);
              expect(plain(decoded)).toEqual(plain(fromBinary(desc, expected)));
              // Unknown fields survive a round trip through the fast codec alone.
              expect(Buffer.compare(encode(decoded), bytes)).toBe(0);
            }),
            { numRuns: 400 },
          );
          // The comparison is of the generated code, not of protobuf-es with itself: almost every
          // message takes the fast path (a "__proto__" key or an unusual Struct may not).
          expect(fallbacks.encode - before.encode).toBeLessThan(8);
          expect(fallbacks.decode - before.decode).toBeLessThan(8);
        });

        it("reads merged (concatenated) and truncated input as protobuf-es does", () => {
          fc.assert(
            fc.property(message(desc), message(desc), fc.nat(), (a, b, cut) => {
              const merged = Buffer.concat([encode(a), encode(b)]);
              expect(fastDecode(decode, merged)).toEqual(pbDecode(desc, merged));
              const truncated = merged.subarray(0, merged.length === 0 ? 0 : cut % merged.length);
              expect(fastDecode(decode, truncated)).toEqual(pbDecode(desc, truncated));
            }),
            { numRuns: 300 },
          );
        });
      });
    }
  }
});
