/**
 * Hand-written protobuf encoding for the kv calls that carry values: GetValue, SetValue and
 * DeleteKey requests and the GetValue response, whose `google.protobuf.Struct` protobuf-es turns
 * into messages and back by reflection on every call (most of what our SDK added to a kv get).
 * These write and read the same bytes directly; anything they do not expect (a value that is not
 * JSON, unknown or repeated fields) goes through protobuf-es, so behaviour and wire format are
 * exactly the contract's: `kv-codec.test.ts` checks both against protobuf-es on random values.
 */
import { create, fromBinary, type JsonObject, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import {
  type KvStoreDeleteKeyRequest,
  KvStoreDeleteKeyRequestSchema,
  type KvStoreGetValueRequest,
  KvStoreGetValueRequestSchema,
  type KvStoreGetValueResponse,
  KvStoreGetValueResponseSchema,
  type KvStoreSetValueRequest,
  KvStoreSetValueRequestSchema,
} from "./gen/nitric/proto/kvstore/v1/kvstore_pb.js";
import { Reader, SLOW, utf8Size, varintSize, Writer } from "./wire.js";

const P = "nitric.proto.kvstore.v1.";
type Ref = { store?: string; key?: string } | undefined;

// ---- google.protobuf.Struct / Value / ListValue ----------------------------------------------
// Struct { map<string, Value> fields = 1 }: each entry { string key = 1; Value value = 2 }, both
// always written. Value { oneof kind: null_value = 1, number_value = 2 (double), string_value = 3,
// bool_value = 4, struct_value = 5, list_value = 6 }, the set one always written. ListValue
// { repeated Value values = 1 }. Sizes are planned first in pre-order, then written in that order.

const len = (n: number) => varintSize(n) + n;

function planValue(v: unknown, sizes: number[]): number {
  if (v === null) return 2;
  switch (typeof v) {
    case "number":
      return 9;
    case "boolean":
      return 2;
    case "string": {
      const n = utf8Size(v);
      sizes.push(n);
      return 1 + len(n);
    }
    case "object": {
      const at = sizes.length;
      sizes.push(0);
      const n = Array.isArray(v) ? planList(v, sizes) : planStruct(v as Record<string, unknown>, sizes);
      sizes[at] = n;
      return 1 + len(n);
    }
    default:
      // undefined, functions, bigints, symbols: protobuf-es says what it makes of them.
      throw SLOW;
  }
}

function planStruct(o: Record<string, unknown>, sizes: number[]): number {
  let total = 0;
  for (const k of Object.keys(o)) {
    const at = sizes.length;
    const kn = utf8Size(k);
    sizes.push(0, kn, 0);
    const vn = planValue(o[k], sizes);
    const entry = 1 + len(kn) + 1 + len(vn);
    sizes[at] = entry;
    sizes[at + 2] = vn;
    total += 1 + len(entry);
  }
  return total;
}

function planList(a: unknown[], sizes: number[]): number {
  let total = 0;
  for (const v of a) {
    const at = sizes.length;
    sizes.push(0);
    const vn = planValue(v, sizes);
    sizes[at] = vn;
    total += 1 + len(vn);
  }
  return total;
}

/** Where the writer is in the planned sizes. */
interface Cursor {
  i: number;
  sizes: number[];
}

function writeValue(w: Writer, v: unknown, c: Cursor): void {
  if (v === null) {
    w.byte(0x08);
    w.byte(0);
    return;
  }
  switch (typeof v) {
    case "number":
      w.byte(0x11);
      w.double(v);
      return;
    case "boolean":
      w.byte(0x20);
      w.byte(v ? 1 : 0);
      return;
    case "string": {
      const n = c.sizes[c.i++] as number;
      w.byte(0x1a);
      w.varint(n);
      w.utf8(v, n);
      return;
    }
    default:
      if (Array.isArray(v)) {
        w.byte(0x32);
        w.varint(c.sizes[c.i++] as number);
        writeList(w, v, c);
      } else {
        w.byte(0x2a);
        w.varint(c.sizes[c.i++] as number);
        writeStruct(w, v as Record<string, unknown>, c);
      }
  }
}

function writeStruct(w: Writer, o: Record<string, unknown>, c: Cursor): void {
  for (const k of Object.keys(o)) {
    const entry = c.sizes[c.i++] as number;
    const kn = c.sizes[c.i++] as number;
    const vn = c.sizes[c.i++] as number;
    w.byte(0x0a);
    w.varint(entry);
    w.byte(0x0a);
    w.varint(kn);
    w.utf8(k, kn);
    w.byte(0x12);
    w.varint(vn);
    writeValue(w, o[k], c);
  }
}

function writeList(w: Writer, a: unknown[], c: Cursor): void {
  for (const v of a) {
    w.byte(0x0a);
    w.varint(c.sizes[c.i++] as number);
    writeValue(w, v, c);
  }
}

function readValue(r: Reader, end: number): unknown {
  let v: unknown = null;
  let kinds = 0;
  while (r.pos < end) {
    const t = r.varint();
    // A kind set twice would be merged or replaced by protobuf's rules: let protobuf-es decide.
    if (++kinds > 1) throw SLOW;
    if (t === 0x08) {
      r.varint();
      v = null;
    } else if (t === 0x11) v = r.double();
    else if (t === 0x1a) v = r.string();
    else if (t === 0x20) v = r.bool();
    else if (t === 0x2a) v = readStruct(r, r.len());
    else if (t === 0x32) v = readList(r, r.len());
    else throw SLOW;
  }
  return v;
}

function readStruct(r: Reader, end: number): JsonObject {
  const out: JsonObject = {};
  while (r.pos < end) {
    if (r.varint() !== 0x0a) throw SLOW;
    const entryEnd = r.len();
    let key = "";
    let value: unknown = null;
    while (r.pos < entryEnd) {
      const t = r.varint();
      if (t === 0x0a) key = r.string();
      else if (t === 0x12) value = readValue(r, r.len());
      else throw SLOW;
    }
    if (key === "__proto__") throw SLOW;
    out[key] = value as JsonObject[string];
  }
  return out;
}

function readList(r: Reader, end: number): unknown[] {
  const out: unknown[] = [];
  while (r.pos < end) {
    if (r.varint() !== 0x0a) throw SLOW;
    out.push(readValue(r, r.len()));
  }
  return out;
}

// ---- ValueRef { string store = 1; string key = 2 } --------------------------------------------

interface RefPlan {
  store: string;
  key: string;
  storeSize: number;
  keySize: number;
  size: number;
}

function planRef(ref: Ref): RefPlan | undefined {
  if (ref === undefined) return undefined;
  const store = ref.store ?? "";
  const key = ref.key ?? "";
  const storeSize = utf8Size(store);
  const keySize = utf8Size(key);
  const size = (storeSize ? 1 + len(storeSize) : 0) + (keySize ? 1 + len(keySize) : 0);
  return { store, key, storeSize, keySize, size };
}

function writeRef(w: Writer, field: number, p: RefPlan): void {
  w.byte((field << 3) | 2);
  w.varint(p.size);
  w.string(1, p.store, p.storeSize);
  w.string(2, p.key, p.keySize);
}

function readRef(r: Reader, end: number): { $typeName: string; store: string; key: string } {
  let store = "";
  let key = "";
  while (r.pos < end) {
    const t = r.varint();
    if (t === 0x0a) store = r.string();
    else if (t === 0x12) key = r.string();
    else throw SLOW;
  }
  return { $typeName: `${P}ValueRef`, store, key };
}

// ---- the messages ----------------------------------------------------------------------------

type GetRequestInit = MessageInitShape<typeof KvStoreGetValueRequestSchema>;
type DeleteRequestInit = MessageInitShape<typeof KvStoreDeleteKeyRequestSchema>;
type SetRequestInit = MessageInitShape<typeof KvStoreSetValueRequestSchema>;
type GetResponseInit = MessageInitShape<typeof KvStoreGetValueResponseSchema>;

/** A message init that may carry fields the hand-written path does not write. */
const hasUnknown = (m: object) => (m as { $unknown?: unknown[] }).$unknown !== undefined;

/** Encodes `{ ref }` (GetValue and DeleteKey requests). */
function encodeRefOnly(m: { ref?: Ref }): Buffer | undefined {
  if (hasUnknown(m) || (m.ref !== undefined && hasUnknown(m.ref))) return undefined;
  const ref = planRef(m.ref);
  if (!ref) return Buffer.alloc(0);
  const w = new Writer(Buffer.allocUnsafe(1 + len(ref.size)));
  writeRef(w, 1, ref);
  return w.buf;
}

/** Plans a Struct field: [sizes, payload size], or undefined when it must go through protobuf-es. */
function planContent(content: unknown): { sizes: number[]; size: number } | undefined {
  if (content === undefined) return { sizes: [], size: -1 };
  if (typeof content !== "object" || content === null || Array.isArray(content)) return undefined;
  try {
    const sizes: number[] = [];
    return { sizes, size: planStruct(content as Record<string, unknown>, sizes) };
  } catch (error) {
    if (error === SLOW) return undefined;
    throw error;
  }
}

/** protobuf-es's bytes as a Buffer, without copying. */
const slow = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/** Encodes a KvStoreGetValueRequest. */
export function encodeGetValueRequest(m: GetRequestInit): Buffer {
  return encodeRefOnly(m) ?? slow(toBinary(KvStoreGetValueRequestSchema, create(KvStoreGetValueRequestSchema, m)));
}

/** Encodes a KvStoreDeleteKeyRequest. */
export function encodeDeleteKeyRequest(m: DeleteRequestInit): Buffer {
  return encodeRefOnly(m) ?? slow(toBinary(KvStoreDeleteKeyRequestSchema, create(KvStoreDeleteKeyRequestSchema, m)));
}

/** `{ ref = 1; <contentField> = Struct }` (SetValue's request, GetValue's Value): its size and its writer. */
function refAndContent(refInit: Ref, contentField: number, content: unknown, plan: { sizes: number[]; size: number }) {
  const ref = planRef(refInit);
  const size = (ref ? 1 + len(ref.size) : 0) + (plan.size >= 0 ? 1 + len(plan.size) : 0);
  const write = (w: Writer) => {
    if (ref) writeRef(w, 1, ref);
    if (plan.size < 0) return;
    w.byte((contentField << 3) | 2);
    w.varint(plan.size);
    writeStruct(w, content as Record<string, unknown>, { i: 0, sizes: plan.sizes });
  };
  return { size, write };
}

/** Encodes a KvStoreSetValueRequest { ref = 1; content = 3 }. */
export function encodeSetValueRequest(m: SetRequestInit): Buffer {
  const content = planContent(m.content);
  if (!content || hasUnknown(m) || (m.ref !== undefined && hasUnknown(m.ref))) {
    return slow(toBinary(KvStoreSetValueRequestSchema, create(KvStoreSetValueRequestSchema, m)));
  }
  const body = refAndContent(m.ref, 3, m.content, content);
  const w = new Writer(Buffer.allocUnsafe(body.size));
  body.write(w);
  return w.buf;
}

/** Encodes a KvStoreGetValueResponse { Value value = 1 { ref = 1; content = 2 } }. */
export function encodeGetValueResponse(m: GetResponseInit): Buffer {
  const value = m.value;
  if (value === undefined && !hasUnknown(m)) return Buffer.alloc(0);
  const content = value ? planContent(value.content) : undefined;
  if (!value || !content || hasUnknown(m) || hasUnknown(value) || (value.ref !== undefined && hasUnknown(value.ref))) {
    return slow(toBinary(KvStoreGetValueResponseSchema, create(KvStoreGetValueResponseSchema, m)));
  }
  const body = refAndContent(value.ref, 2, value.content, content);
  const w = new Writer(Buffer.allocUnsafe(1 + len(body.size)));
  w.byte(0x0a);
  w.varint(body.size);
  body.write(w);
  return w.buf;
}

/** Reads `{ ref = 1 }` and, when `contentField` is given, a Struct there; each at most once. */
function readRefAndContent(buf: Buffer, contentField?: number) {
  const r = new Reader(buf, 0, buf.length);
  let ref: ReturnType<typeof readRef> | undefined;
  let content: JsonObject | undefined;
  const contentTag = contentField === undefined ? -1 : (contentField << 3) | 2;
  while (r.pos < r.end) {
    const t = r.varint();
    if (t === 0x0a && ref === undefined) ref = readRef(r, r.len());
    else if (t === contentTag && content === undefined) content = readStruct(r, r.len());
    else throw SLOW;
  }
  return { ref, content };
}

function decodeOr<T>(decode: () => T, fallback: () => T): T {
  try {
    return decode();
  } catch (error) {
    if (error !== SLOW) throw error;
    return fallback();
  }
}

/** Decodes a KvStoreGetValueRequest. */
export function decodeGetValueRequest(buf: Buffer): KvStoreGetValueRequest {
  return decodeOr(
    () => ({ $typeName: `${P}KvStoreGetValueRequest`, ref: readRefAndContent(buf).ref }) as KvStoreGetValueRequest,
    () => fromBinary(KvStoreGetValueRequestSchema, buf),
  );
}

/** Decodes a KvStoreDeleteKeyRequest. */
export function decodeDeleteKeyRequest(buf: Buffer): KvStoreDeleteKeyRequest {
  return decodeOr(
    () => ({ $typeName: `${P}KvStoreDeleteKeyRequest`, ref: readRefAndContent(buf).ref }) as KvStoreDeleteKeyRequest,
    () => fromBinary(KvStoreDeleteKeyRequestSchema, buf),
  );
}

/** Decodes a KvStoreSetValueRequest. */
export function decodeSetValueRequest(buf: Buffer): KvStoreSetValueRequest {
  return decodeOr(
    () => {
      const { ref, content } = readRefAndContent(buf, 3);
      return { $typeName: `${P}KvStoreSetValueRequest`, ref, content } as KvStoreSetValueRequest;
    },
    () => fromBinary(KvStoreSetValueRequestSchema, buf),
  );
}

/** Decodes a KvStoreGetValueResponse. */
export function decodeGetValueResponse(buf: Buffer): KvStoreGetValueResponse {
  return decodeOr(
    () => {
      const r = new Reader(buf, 0, buf.length);
      let value: object | undefined;
      while (r.pos < r.end) {
        if (r.varint() !== 0x0a || value !== undefined) throw SLOW;
        const end = r.len();
        const inner = readRefAndContent(buf.subarray(r.pos, end), 2);
        r.pos = end;
        value = { $typeName: `${P}Value`, ...inner };
      }
      return { $typeName: `${P}KvStoreGetValueResponse`, value } as KvStoreGetValueResponse;
    },
    () => fromBinary(KvStoreGetValueResponseSchema, buf),
  );
}
