// Random messages for any message descriptor, for comparing the generated fast codecs with
// protobuf-es (fastcodec.test.ts): every field of every message is drawn from its descriptor, with
// unknown fields of every wire type at every level.
import { create, type DescField, type DescMessage, ScalarType } from "@bufbuild/protobuf";
import fc from "fast-check";

const text = fc.oneof(
  fc.constantFrom("", "a", "abc123", "héllo wörld", "😀", "日本語", "\u0000", "12345678", "123456789", "y".repeat(65)),
  fc.string({ unit: "grapheme", maxLength: 20 }),
  // Lone surrogates included: both sides write U+FFFD.
  fc.string({ unit: "binary", maxLength: 10 }),
  fc.string({ maxLength: 200 }),
);
const bytes = fc.oneof(
  fc.uint8Array({ maxLength: 20 }),
  fc.constantFrom(0, 127, 128, 300).map((n) => new Uint8Array(n).fill(7)),
);
const int32 = fc.oneof(fc.constantFrom(0, 1, -1, 127, 128, 2 ** 31 - 1, -(2 ** 31)), fc.integer());
const uint32 = fc.oneof(fc.constantFrom(0, 1, 127, 128, 2 ** 32 - 1), fc.integer({ min: 0, max: 2 ** 32 - 1 }));

function scalar(type: ScalarType): fc.Arbitrary<unknown> {
  switch (type) {
    case ScalarType.STRING:
      return text;
    case ScalarType.BYTES:
      return bytes;
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return int32;
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return uint32;
    case ScalarType.DOUBLE:
      return fc.oneof(fc.constantFrom(0, -0, 1.5, Number.NaN, Number.POSITIVE_INFINITY), fc.double());
    case ScalarType.FLOAT:
      return fc.oneof(fc.constantFrom(0, -0, 1.5), fc.float());
    default:
      // 64-bit integers: the generator refuses a message with one (no proto of ours has any).
      return fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
  }
}

const json = fc.dictionary(text, fc.jsonValue({ maxDepth: 3 }), { maxKeys: 5 });

function varint(v: number): number[] {
  const out: number[] = [];
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

/** Unknown fields for a message: numbers it does not use, every wire type, valid bytes. */
export function unknownFields(desc: DescMessage) {
  const used = new Set(desc.fields.map((f) => f.number));
  const no = fc.integer({ min: 1, max: 3000 }).filter((n) => !used.has(n));
  const field = fc.oneof(
    fc.record({ no, v: fc.integer({ min: 0, max: 2 ** 53 - 1 }) }).map(({ no, v }) => ({
      no,
      wireType: 0,
      data: new Uint8Array(varint(v)),
    })),
    fc
      .record({ no, d: fc.uint8Array({ minLength: 8, maxLength: 8 }) })
      .map(({ no, d }) => ({ no, wireType: 1, data: d })),
    fc.record({ no, d: fc.uint8Array({ maxLength: 20 }) }).map(({ no, d }) => ({
      no,
      wireType: 2,
      data: new Uint8Array([...varint(d.length), ...d]),
    })),
    fc
      .record({ no, d: fc.uint8Array({ minLength: 4, maxLength: 4 }) })
      .map(({ no, d }) => ({ no, wireType: 5, data: d })),
  );
  return fc.oneof(
    { arbitrary: fc.constant([]), weight: 2 },
    { arbitrary: fc.array(field, { minLength: 1, maxLength: 3 }), weight: 1 },
  );
}

const MAX_DEPTH = 3;

function value(field: DescField, kind: "scalar" | "enum" | "message", depth: number): fc.Arbitrary<unknown> {
  if (kind === "enum" && field.enum) return fc.constantFrom(...field.enum.values.map((v) => v.number), 7);
  if (kind === "message" && field.message) {
    if (field.message.typeName === "google.protobuf.Struct") return json;
    return message(field.message, depth + 1);
  }
  return scalar(field.scalar as ScalarType);
}

function fieldArb(field: DescField, depth: number): fc.Arbitrary<unknown> {
  const deep = depth >= MAX_DEPTH;
  switch (field.fieldKind) {
    case "scalar":
      return value(field, "scalar", depth);
    case "enum":
      return value(field, "enum", depth);
    case "message":
      return deep ? fc.constant(undefined) : fc.option(value(field, "message", depth), { nil: undefined });
    case "list":
      if (field.listKind === "message" && deep) return fc.constant([]);
      return fc.array(value(field, field.listKind, depth), { maxLength: 4 });
    case "map":
      if (field.mapKind === "message" && deep) return fc.constant({});
      return fc.dictionary(text, value(field, field.mapKind, depth), { maxKeys: 4 });
  }
}

const cache = new Map<string, fc.Arbitrary<Record<string, unknown>>>();

/** A message of `desc` made by create(), unknown fields attached, nested to MAX_DEPTH. */
export function message(desc: DescMessage, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  const key = `${desc.typeName}@${depth}`;
  const cached = cache.get(key);
  if (cached) return cached;
  const parts: Record<string, fc.Arbitrary<unknown>> = {};
  for (const field of desc.fields) {
    if (field.oneof) continue;
    const arb = fieldArb(field, depth);
    // Explicit presence: unset is a value of its own.
    parts[field.localName] =
      field.fieldKind !== "list" && field.fieldKind !== "map" && field.presence === 1
        ? fc.option(arb, { nil: undefined })
        : arb;
  }
  for (const oneof of desc.oneofs) {
    const members = oneof.fields.map((f) => {
      const kind = f.fieldKind === "message" ? "message" : f.fieldKind === "enum" ? "enum" : "scalar";
      return (kind === "message" && depth >= MAX_DEPTH ? fc.constant(undefined) : value(f, kind, depth)).map((v) =>
        v === undefined ? { case: undefined } : { case: f.localName, value: v },
      );
    });
    parts[oneof.localName] = fc.oneof(fc.constant({ case: undefined }), ...members);
  }
  const arb = fc.tuple(fc.record(parts), unknownFields(desc)).map(([init, unknown]) => {
    for (const k of Object.keys(init)) if (init[k] === undefined) delete init[k];
    const m = create(desc, init as never) as Record<string, unknown>;
    if (unknown.length > 0) m.$unknown = unknown;
    return m;
  });
  cache.set(key, arb);
  return arb;
}

/** Buffers as plain Uint8Arrays, so that a decoded message compares equal to protobuf-es's. */
export function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return new Uint8Array(v);
  if (Array.isArray(v)) return v.map(plain);
  if (typeof v === "object" && v !== null) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v))
      Object.defineProperty(out, k, { value: plain((v as Record<string, unknown>)[k]), enumerable: true });
    return out;
  }
  return v;
}

/** Every message a root reaches through its fields (Struct's own messages excluded). */
export function reachable(root: DescMessage): DescMessage[] {
  const seen = new Map<string, DescMessage>();
  const visit = (m: DescMessage) => {
    if (m.typeName === "google.protobuf.Struct" || seen.has(m.typeName)) return;
    seen.set(m.typeName, m);
    for (const f of m.fields) if (f.message) visit(f.message);
  };
  visit(root);
  return [...seen.values()];
}
