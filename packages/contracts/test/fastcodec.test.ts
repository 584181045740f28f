// The generated codecs (src/gen/**/*_fast.ts), the only codecs at run time, against protobuf-es as
// the oracle, driven by the descriptors: every message that a service of proto/ sends or receives,
// random messages with every field of every message they reach and unknown fields at every level.
// - Written: exactly protobuf-es's bytes.
// - Read, from any valid encoding (non-minimal varints, packed lists unpacked, a field repeated or a
//   message split in two, map entries with fields swapped, missing or extra, unknown fields and
//   groups anywhere): exactly what protobuf-es reads.
// - Read, from damaged bytes: what protobuf-es refuses is refused; what is read equals protobuf-es's.
import { readFileSync } from "node:fs";
import {
  create,
  createRegistry,
  type DescField,
  type DescMessage,
  fromBinary,
  ScalarType,
  toBinary,
} from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CodecError, RECURSION_LIMIT } from "../src/fastcodec/runtime.js";
import * as healthFast from "../src/gen/grpc/health/v1/health_fast.js";
import { file_grpc_health_v1_health } from "../src/gen/grpc/health/v1/health_pb.js";
import * as kvFast from "../src/gen/nitric/proto/kvstore/v1/kvstore_fast.js";
import { file_nitric_proto_kvstore_v1_kvstore } from "../src/gen/nitric/proto/kvstore/v1/kvstore_pb.js";
import * as resourcesFast from "../src/gen/nitric/proto/resources/v1/resources_fast.js";
import { file_nitric_proto_resources_v1_resources } from "../src/gen/nitric/proto/resources/v1/resources_pb.js";
import * as secretsFast from "../src/gen/nitric/proto/secrets/v1/secrets_fast.js";
import { file_nitric_proto_secrets_v1_secrets } from "../src/gen/nitric/proto/secrets/v1/secrets_pb.js";
import * as wsFast from "../src/gen/nitric/proto/websockets/v1/websockets_fast.js";
import { file_nitric_proto_websockets_v1_websockets } from "../src/gen/nitric/proto/websockets/v1/websockets_pb.js";
import * as roomsFast from "../src/gen/nitriclike/rooms/v1/rooms_fast.js";
import { file_nitriclike_rooms_v1_rooms } from "../src/gen/nitriclike/rooms/v1/rooms_pb.js";
import * as authorizeFast from "../src/gen/nitriclike/websockets/v1/authorize_fast.js";
import { file_nitriclike_websockets_v1_authorize } from "../src/gen/nitriclike/websockets/v1/authorize_pb.js";
import * as connectionsFast from "../src/gen/nitriclike/websockets/v1/connections_fast.js";
import { file_nitriclike_websockets_v1_connections } from "../src/gen/nitriclike/websockets/v1/connections_pb.js";
import { message, plain, reachable } from "./fastcodec-props.js";

const files = [
  file_grpc_health_v1_health,
  file_nitric_proto_kvstore_v1_kvstore,
  file_nitric_proto_resources_v1_resources,
  file_nitric_proto_secrets_v1_secrets,
  file_nitric_proto_websockets_v1_websockets,
  file_nitriclike_rooms_v1_rooms,
  file_nitriclike_websockets_v1_authorize,
  file_nitriclike_websockets_v1_connections,
];
const registry = createRegistry(...files);
const generated = (
  [
    [healthFast, "grpc/health/v1/health"],
    [kvFast, "nitric/proto/kvstore/v1/kvstore"],
    [resourcesFast, "nitric/proto/resources/v1/resources"],
    [secretsFast, "nitric/proto/secrets/v1/secrets"],
    [wsFast, "nitric/proto/websockets/v1/websockets"],
    [roomsFast, "nitriclike/rooms/v1/rooms"],
    [authorizeFast, "nitriclike/websockets/v1/authorize"],
    [connectionsFast, "nitriclike/websockets/v1/connections"],
  ] as const
).map(([module, path]) => ({
  module,
  source: readFileSync(new URL(`../src/gen/${path}_fast.ts`, import.meta.url), "utf8"),
}));

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
  } catch (error) {
    // Bad bytes give a CodecError; anything else would be a bug of the decoder.
    expect(error).toBeInstanceOf(CodecError);
    return "throws";
  }
}

// ---- valid encodings other than the canonical one --------------------------------------------

/** A varint of `v` (a safe integer), padded to `width` bytes with zero-valued continuation bytes. */
function varint(v: number, width = 0): number[] {
  const out: number[] = [];
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  while (out.length < width) {
    out[out.length - 1] = (out[out.length - 1] as number) | 0x80;
    out.push(0);
  }
  return out;
}

/** Reads the fields of one message's bytes: number, wire type, and the value's bytes (a length-delimited one without its length). */
function fields(bytes: Uint8Array): { no: number; wt: number; value: Uint8Array }[] {
  const out = [];
  let pos = 0;
  const readVarint = () => {
    let v = 0;
    let mul = 1;
    for (;;) {
      const b = bytes[pos++] as number;
      v += (b & 0x7f) * mul;
      mul *= 128;
      if (b < 0x80) return v;
    }
  };
  while (pos < bytes.length) {
    const tag = readVarint();
    const no = Math.floor(tag / 8);
    const wt = tag % 8;
    const start = pos;
    if (wt === 0) readVarint();
    else if (wt === 1) pos += 8;
    else if (wt === 5) pos += 4;
    else if (wt === 2) {
      const n = readVarint();
      out.push({ no, wt, value: bytes.subarray(pos, pos + n) });
      pos += n;
      continue;
    }
    out.push({ no, wt, value: bytes.subarray(start, pos) });
  }
  return out;
}

const ELEMENT_WIRE: Partial<Record<ScalarType, number>> = {
  [ScalarType.DOUBLE]: 1,
  [ScalarType.FLOAT]: 5,
  [ScalarType.FIXED32]: 5,
  [ScalarType.SFIXED32]: 5,
  [ScalarType.FIXED64]: 1,
  [ScalarType.SFIXED64]: 1,
};

/** How the value of a field is made of other fields, if it is: a message, or a map entry. */
type Shape = { message: DescMessage } | { entry: DescField };

function shapeOf(field: DescField | undefined): Shape | undefined {
  if (!field) return undefined;
  if (field.fieldKind === "map") return { entry: field };
  if (field.message) return { message: field.message };
  return undefined;
}
function entryField(entry: DescField, no: number): DescField | undefined {
  // A map entry: key = 1 (a scalar), value = 2 (a scalar, an enum, or a message).
  if (no === 2 && entry.fieldKind === "map" && entry.mapKind === "message") return entry;
  return undefined;
}

/** A random group: fields of every wire type, groups within. */
function group(no: number, rnd: () => number, depth: number): number[] {
  const out = [...varint(no * 8 + 3)];
  const n = Math.floor(rnd() * 3);
  for (let i = 0; i < n; i++) {
    const inner = 1 + Math.floor(rnd() * 50);
    const kind = Math.floor(rnd() * (depth < 3 ? 5 : 4));
    if (kind === 0) out.push(...varint(inner * 8), ...varint(Math.floor(rnd() * 1e6)));
    else if (kind === 1) out.push(...varint(inner * 8 + 1), 1, 2, 3, 4, 5, 6, 7, 8);
    else if (kind === 2) out.push(...varint(inner * 8 + 2), 2, 9, 9);
    else if (kind === 3) out.push(...varint(inner * 8 + 5), 1, 2, 3, 4);
    else out.push(...group(inner, rnd, depth + 1));
  }
  out.push(...varint(no * 8 + 4));
  return out;
}

/**
 * Another valid encoding of a message's bytes: each field kept, repeated, or (a message) split in
 * two; tags, lengths and varints padded; packed lists unpacked; unknown fields and groups added.
 */
function rewrite(shape: Shape, bytes: Uint8Array, rnd: () => number): number[] {
  const out: number[] = [];
  const known = (no: number) =>
    "message" in shape
      ? shape.message.fields.find((f) => f.number === no)
      : no === 1 || no === 2
        ? shape.entry
        : undefined;
  const used = (no: number) => ("message" in shape ? known(no) !== undefined : no === 1 || no === 2);
  const tag = (no: number, wt: number) => {
    const t = no * 8 + wt;
    // A tag may take up to five bytes.
    return varint(t, rnd() < 0.15 ? Math.min(5, varint(t).length + 1 + Math.floor(rnd() * 2)) : 0);
  };
  const unknown = () => {
    let no = 1 + Math.floor(rnd() * 2000);
    while (used(no)) no++;
    const kind = Math.floor(rnd() * 4);
    if (kind === 0) return [...tag(no, 0), ...varint(Math.floor(rnd() * 2 ** 40), rnd() < 0.3 ? 10 : 0)];
    if (kind === 1) return [...tag(no, 2), ...varint(3), 7, 7, 7];
    if (kind === 2) return [...tag(no, 5), 9, 9, 9, 9];
    return group(no, rnd, 0);
  };
  const list = fields(bytes);
  // Fields of a map entry in either order.
  if ("entry" in shape && rnd() < 0.3) list.reverse();
  for (const f of list) {
    if (rnd() < 0.08) out.push(...unknown());
    const field = "message" in shape ? known(f.no) : entryField(shape.entry, f.no);
    const inner =
      "message" in shape
        ? shapeOf(field)
        : field
          ? { message: (field as DescField).message as DescMessage }
          : undefined;
    const times = rnd() < 0.1 ? 2 : 1;
    for (let k = 0; k < times; k++) {
      if (f.wt === 0) {
        const v = f.value;
        const pad = rnd() < 0.2 ? Math.min(10, v.length + 1 + Math.floor(rnd() * 3)) : 0;
        out.push(...tag(f.no, 0), ...(pad ? padBytes(v, pad) : v));
      } else if (f.wt !== 2) out.push(...tag(f.no, f.wt), ...f.value);
      else if (inner) {
        const splittable = field?.fieldKind === "message" && "message" in shape;
        if (splittable && rnd() < 0.25) {
          // A singular message in two parts, merged by the reader: cut at a field boundary.
          const parts = fields(f.value);
          const cut = Math.floor(rnd() * (parts.length + 1));
          const a = rewrite(inner, Uint8Array.from(encodeFields(parts.slice(0, cut))), rnd);
          const b = rewrite(inner, Uint8Array.from(encodeFields(parts.slice(cut))), rnd);
          out.push(...tag(f.no, 2), ...varint(a.length), ...a, ...tag(f.no, 2), ...varint(b.length), ...b);
        } else {
          const body = rewrite(inner, f.value, rnd);
          out.push(...tag(f.no, 2), ...varint(body.length, rnd() < 0.1 ? 4 : 0), ...body);
        }
      } else if (
        field?.fieldKind === "list" &&
        field.listKind !== "message" &&
        field.scalar !== ScalarType.STRING &&
        field.scalar !== ScalarType.BYTES &&
        rnd() < 0.5
      ) {
        // A packed list, unpacked: one field per element.
        const wt = ELEMENT_WIRE[field.scalar as ScalarType] ?? 0;
        const size = wt === 1 ? 8 : wt === 5 ? 4 : 0;
        let pos = 0;
        while (pos < f.value.length) {
          let end = pos + size;
          if (size === 0) {
            end = pos;
            while ((f.value[end] as number) >= 0x80) end++;
            end++;
          }
          out.push(...tag(f.no, wt), ...f.value.subarray(pos, end));
          pos = end;
        }
      } else out.push(...tag(f.no, 2), ...varint(f.value.length, rnd() < 0.1 ? 3 : 0), ...f.value);
    }
  }
  if (rnd() < 0.1) out.push(...unknown());
  return out;
}

/** A varint's bytes padded to `width` (zero-valued continuation bytes), its value unchanged. */
function padBytes(v: Uint8Array, width: number): number[] {
  const out = [...v];
  while (out.length < width) {
    out[out.length - 1] = (out[out.length - 1] as number) | 0x80;
    out.push(0);
  }
  return out;
}

function encodeFields(list: { no: number; wt: number; value: Uint8Array }[]): number[] {
  const out: number[] = [];
  for (const f of list) {
    out.push(...varint(f.no * 8 + f.wt));
    if (f.wt === 2) out.push(...varint(f.value.length));
    out.push(...f.value);
  }
  return out;
}

function random(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

describe("generated codecs", () => {
  const roots = files.flatMap((file) =>
    file.services.flatMap((s) => s.methods.flatMap((m) => [m.input.typeName, m.output.typeName])),
  );

  it("cover every message a service sends or receives, and every field of every message those reach", () => {
    const covered = generated.flatMap((g) => g.module.fastCodecs.map((c) => c.typeName));
    expect(new Set(covered)).toEqual(new Set(roots));
    // Each message's code is written once, in its own file's output, and imported by the others.
    const sources = generated.map((g) => g.source);
    for (const g of generated) {
      for (const codec of g.module.fastCodecs) {
        for (const desc of reachable(schemaOf(codec.typeName))) {
          const id = desc.typeName.replace(/\./g, "_");
          const holding = sources.filter((source) => source.includes(`export function read_${id}(`));
          expect(holding, `${desc.typeName} has no generated reader, or more than one`).toHaveLength(1);
          const source = holding[0] as string;
          const start = source.indexOf(`export function read_${id}(`);
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

  const seen = new Set<string>();
  for (const g of generated) {
    for (const codec of g.module.fastCodecs) {
      if (seen.has(codec.typeName)) continue;
      seen.add(codec.typeName);
      const desc = schemaOf(codec.typeName);
      const encode = codec.encode as (m: unknown) => Buffer;
      const decode = codec.decode;
      describe(codec.typeName, () => {
        it("writes exactly protobuf-es's bytes and reads back what protobuf-es reads, unknown fields included", () => {
          fc.assert(
            fc.property(message(desc), (m) => {
              const expected = toBinary(desc, m as never);
              const bytes = encode(m);
              expect(Buffer.compare(bytes, Buffer.from(expected))).toBe(0);
              const decoded = decode(bytes);
              expect(plain(decoded)).toEqual(plain(fromBinary(desc, expected)));
              // Unknown fields survive a round trip through the generated codec alone.
              expect(Buffer.compare(encode(decoded), bytes)).toBe(0);
            }),
            { numRuns: 150 },
          );
        });

        it("reads every other valid encoding as protobuf-es does", () => {
          fc.assert(
            fc.property(message(desc), fc.integer(), (m, seed) => {
              const bytes = Uint8Array.from(rewrite({ message: desc }, toBinary(desc, m as never), random(seed)));
              const expected = pbDecode(desc, bytes);
              // The rewritten bytes are valid: protobuf-es reads them.
              const hex = Buffer.from(bytes).toString("hex");
              expect(expected, hex).not.toBe("throws");
              expect(fastDecode(decode, bytes), hex).toEqual(expected);
            }),
            { numRuns: 150 },
          );
        });

        it("refuses what protobuf-es refuses, and reads the rest of damaged bytes as protobuf-es does", () => {
          let refusedByBoth = 0;
          fc.assert(
            fc.property(
              message(desc),
              message(desc),
              fc.nat(),
              fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
              (a, b, cut, flips) => {
                const merged = Buffer.concat([encode(a), encode(b)]);
                const truncated = merged.subarray(0, merged.length === 0 ? 0 : cut % merged.length);
                const damaged = Buffer.from(merged);
                for (const [at, v] of flips) if (damaged.length > 0) damaged[at % damaged.length] = v;
                for (const bytes of [merged, truncated, damaged]) {
                  const theirs = pbDecode(desc, bytes);
                  const ours = fastDecode(decode, bytes);
                  if (theirs === "throws") {
                    expect(ours).toBe("throws");
                    refusedByBoth++;
                  } else if (ours !== "throws") expect(ours).toEqual(theirs);
                }
              },
            ),
            { numRuns: 150 },
          );
          if (desc.fields.length > 0) expect(refusedByBoth).toBeGreaterThan(0);
        });
      });
    }
  }
});

describe("the runtime's limits and refusals", () => {
  const { decodeKvStoreSetValueRequest, encodeKvStoreSetValueRequest } = kvFast;
  const desc = schemaOf("nitric.proto.kvstore.v1.KvStoreSetValueRequest");

  /** A Struct field (content = 3) nested `levels` Values deep: {a: {a: ... {}}}. */
  function nested(levels: number): Uint8Array {
    // Every level is a prefix of the one inside it: lengths from the inside out, then the
    // prefixes from the outside in (linear, so that thousands of levels are quick to make).
    const prefixes: number[][] = [];
    let inner = 0;
    for (let i = 0; i < levels; i++) {
      const value = [0x2a, ...varint(inner)]; // Value.struct_value
      const entry = [0x0a, 1, 0x61, 0x12, ...varint(value.length + inner), ...value];
      const field = [0x0a, ...varint(entry.length + inner)]; // Struct.fields, one entry
      prefixes.push([...field, ...entry]);
      inner += field.length + entry.length;
    }
    const out: number[] = [0x1a, ...varint(inner)];
    for (let i = prefixes.length - 1; i >= 0; i--) for (const b of prefixes[i] as number[]) out.push(b);
    return Uint8Array.from(out);
  }

  it("reads nesting up to protobuf-es's recursion limit and refuses deeper, as protobuf-es does", () => {
    // The request is depth 1, its Struct 2, each level a Value and a Struct.
    const deepest = Math.floor((RECURSION_LIMIT - 2) / 2);
    expect(pbDecode(desc, nested(deepest))).not.toBe("throws");
    expect(fastDecode(decodeKvStoreSetValueRequest, nested(deepest))).toEqual(pbDecode(desc, nested(deepest)));
    expect(pbDecode(desc, nested(deepest + 1))).toBe("throws");
    expect(() => decodeKvStoreSetValueRequest(nested(deepest + 1))).toThrow(
      "cannot decode nitric.proto.kvstore.v1.KvStoreSetValueRequest: messages nest deeper than the recursion limit (100)",
    );
    // Far deeper: an error, not a stack overflow.
    expect(() => decodeKvStoreSetValueRequest(nested(20_000))).toThrow(CodecError);
  });

  it("refuses a known field with a wire type its type never has, which protobuf-es reads anyway", () => {
    // ref (field 1, a message) as a varint.
    const bytes = Uint8Array.of(0x08, 0x01);
    expect(() => decodeKvStoreSetValueRequest(bytes)).toThrow(
      "cannot decode nitric.proto.kvstore.v1.KvStoreSetValueRequest: field 1 has wire type 0, which its type does not use",
    );
  });

  it("refuses a length prefix of 2^31 or more, whose low 32 bits protobuf-es would read as a small length", () => {
    // ref (field 1) with a length of 2^40 (low 32 bits: 0), then what protobuf-es reads as another ref: { store: "a" }.
    const wraps = Uint8Array.of(0x0a, ...varint(2 ** 40), 0x0a, 0x03, 0x0a, 0x01, 0x61);
    expect(pbDecode(desc, wraps)).not.toBe("throws");
    expect(() => decodeKvStoreSetValueRequest(wraps)).toThrow(
      "cannot decode nitric.proto.kvstore.v1.KvStoreSetValueRequest: a length prefix of 2^31 bytes or more, longer than any field can be",
    );
    for (const n of [2 ** 31, 2 ** 32 + 3, 2 ** 53])
      expect(() => decodeKvStoreSetValueRequest(Uint8Array.of(0x0a, ...varint(n)))).toThrow("a length prefix of 2^31");
    // A length under 2^31 that is not there is the input ending, as before; a small length padded
    // to ten bytes (a valid encoding) is read.
    expect(() => decodeKvStoreSetValueRequest(Uint8Array.of(0x0a, ...varint(2 ** 31 - 1)))).toThrow(
      "the input ends inside a field",
    );
    const padded = Uint8Array.of(0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00);
    expect(fastDecode(decodeKvStoreSetValueRequest, padded)).toEqual(pbDecode(desc, padded));
  });

  it("refuses a field that runs past the end of the message holding it", () => {
    // ref = { store (1): "ab" } whose length says 2 but whose store field says 3.
    const bytes = Uint8Array.of(0x0a, 0x04, 0x0a, 0x03, 0x61, 0x62, 0x63);
    expect(() => decodeKvStoreSetValueRequest(bytes)).toThrow("a field runs past the end of the message that holds it");
  });

  it("writes JavaScript values that are not JSON as protobuf-es does, and names a field of the wrong type", () => {
    const odd = {
      ref: { store: "s", key: "k" },
      content: { u: undefined, b: 1n, f: () => 1, d: new Date(0), l: [undefined, null], m: new Map([[1, 2]]) },
    };
    expect(Buffer.compare(encodeKvStoreSetValueRequest(odd as never), toBinary(desc, create(desc, odd as never)))).toBe(
      0,
    );
    for (const content of [5, [1, 2], "x"]) {
      const m = { ref: { store: "s", key: "k" }, content };
      expect(Buffer.compare(encodeKvStoreSetValueRequest(m as never), toBinary(desc, create(desc, m as never)))).toBe(
        0,
      );
    }
    expect(() => encodeKvStoreSetValueRequest({ ref: { store: 5 as never, key: "k" } })).toThrow(
      new CodecError(
        "cannot encode nitric.proto.kvstore.v1.KvStoreSetValueRequest: field store must be a string, not number",
      ),
    );
  });

  it('gives a "__proto__" key as an own property, as protobuf-es does, not as the prototype', () => {
    const m = { ref: { store: "s", key: "k" }, content: JSON.parse('{"__proto__": {"x": 1}}') };
    const decoded = decodeKvStoreSetValueRequest(encodeKvStoreSetValueRequest(m));
    expect(Object.getPrototypeOf(decoded.content)).toBe(Object.prototype);
    expect(Object.keys(decoded.content as object)).toEqual(["__proto__"]);
    expect(plain(decoded)).toEqual(plain(fromBinary(desc, toBinary(desc, create(desc, m as never)))));
  });
});
