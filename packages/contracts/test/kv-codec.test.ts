// The generated kv codecs (kvstore_fast.ts) against protobuf-es on random keys and JSON values: the bytes written
// must be exactly protobuf-es's, what is read back must equal what protobuf-es reads, and what the
// fast path does not take (unknown or repeated fields, values that are not JSON) must come out as
// protobuf-es has it.
import { create, fromBinary, type JsonObject, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  decodeKvStoreDeleteKeyRequest as decodeDeleteKeyRequest,
  decodeKvStoreGetValueRequest as decodeGetValueRequest,
  decodeKvStoreGetValueResponse as decodeGetValueResponse,
  decodeKvStoreSetValueRequest as decodeSetValueRequest,
  encodeKvStoreDeleteKeyRequest as encodeDeleteKeyRequest,
  encodeKvStoreGetValueRequest as encodeGetValueRequest,
  encodeKvStoreGetValueResponse as encodeGetValueResponse,
  encodeKvStoreSetValueRequest as encodeSetValueRequest,
} from "../src/gen/nitric/proto/kvstore/v1/kvstore_fast.js";
import {
  KvStoreDeleteKeyRequestSchema,
  KvStoreGetValueRequestSchema,
  KvStoreGetValueResponseSchema,
  KvStoreSetValueRequestSchema,
} from "../src/gen/nitric/proto/kvstore/v1/kvstore_pb.js";

const text = fc.oneof(
  fc.constantFrom("", "a", "user:1", "héllo", "😀", "x".repeat(300)),
  fc.string({ unit: "grapheme" }),
);
const ref = fc.option(fc.record({ store: text, key: text }), { nil: undefined });
const json = fc.dictionary(text, fc.jsonValue(), { maxKeys: 8 }) as fc.Arbitrary<JsonObject>;
const content = fc.option(json, { nil: undefined });
const bytes = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);
const RUNS = 1000;

describe("kv codecs", () => {
  it("write exactly protobuf-es's bytes and read back what protobuf-es reads, for every message", () => {
    fc.assert(
      fc.property(ref, content, (r, c) => {
        const get = r === undefined ? {} : { ref: r };
        const wire = bytes(toBinary(KvStoreGetValueRequestSchema, create(KvStoreGetValueRequestSchema, get)));
        expect(encodeGetValueRequest(get)).toEqual(wire);
        expect(decodeGetValueRequest(wire)).toEqual(fromBinary(KvStoreGetValueRequestSchema, wire));

        const del = bytes(toBinary(KvStoreDeleteKeyRequestSchema, create(KvStoreDeleteKeyRequestSchema, get)));
        expect(encodeDeleteKeyRequest(get)).toEqual(del);
        expect(decodeDeleteKeyRequest(del)).toEqual(fromBinary(KvStoreDeleteKeyRequestSchema, del));

        const set = { ...get, ...(c === undefined ? {} : { content: c }) };
        const setWire = bytes(toBinary(KvStoreSetValueRequestSchema, create(KvStoreSetValueRequestSchema, set)));
        expect(encodeSetValueRequest(set)).toEqual(setWire);
        expect(decodeSetValueRequest(setWire)).toEqual(fromBinary(KvStoreSetValueRequestSchema, setWire));

        const res = { value: { ...(r === undefined ? {} : { ref: r }), ...(c === undefined ? {} : { content: c }) } };
        const resWire = bytes(toBinary(KvStoreGetValueResponseSchema, create(KvStoreGetValueResponseSchema, res)));
        expect(encodeGetValueResponse(res)).toEqual(resWire);
        expect(decodeGetValueResponse(resWire)).toEqual(fromBinary(KvStoreGetValueResponseSchema, resWire));
      }),
      { numRuns: RUNS, seed: 7 },
    );
  });

  it("read unknown and repeated fields, and nothing at all, as protobuf-es does", () => {
    fc.assert(
      fc.property(fc.record({ store: text, key: text }), json, (r, c) => {
        const res = bytes(
          toBinary(
            KvStoreGetValueResponseSchema,
            create(KvStoreGetValueResponseSchema, { value: { ref: r, content: c } }),
          ),
        );
        const unknownField = Buffer.concat([res, Buffer.from([0xf8, 0x06, 0x01])]); // field 111, varint 1
        expect(decodeGetValueResponse(unknownField)).toEqual(fromBinary(KvStoreGetValueResponseSchema, unknownField));
        const twice = Buffer.concat([res, res]); // a message field twice: protobuf merges
        expect(decodeGetValueResponse(twice)).toEqual(fromBinary(KvStoreGetValueResponseSchema, twice));
        const set = bytes(
          toBinary(KvStoreSetValueRequestSchema, create(KvStoreSetValueRequestSchema, { ref: r, content: c })),
        );
        const setTwice = Buffer.concat([set, set]);
        expect(decodeSetValueRequest(setTwice)).toEqual(fromBinary(KvStoreSetValueRequestSchema, setTwice));
      }),
      { numRuns: 300, seed: 11 },
    );
    expect(decodeGetValueResponse(Buffer.alloc(0))).toEqual(
      fromBinary(KvStoreGetValueResponseSchema, new Uint8Array()),
    );
  });

  it("treat a value that is not JSON as protobuf-es does", () => {
    for (const odd of [{ a: undefined }, { f: () => 1 }, { big: 1n }, { nested: [1, undefined] }, { d: new Date(0) }]) {
      const m = { ref: { store: "s", key: "k" }, content: odd as unknown as JsonObject };
      let expected: Buffer | Error;
      try {
        expected = bytes(toBinary(KvStoreSetValueRequestSchema, create(KvStoreSetValueRequestSchema, m)));
      } catch (error) {
        expected = error as Error;
      }
      if (expected instanceof Error) expect(() => encodeSetValueRequest(m)).toThrow(expected.message);
      else expect(encodeSetValueRequest(m)).toEqual(expected);
    }
  });
});
