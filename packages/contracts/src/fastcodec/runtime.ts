/**
 * The runtime of the generated fast codecs (src/gen/**\/*_fast.ts, written by
 * scripts/protoc-gen-fastcodec.mjs from proto/): the protobuf wire format with no knowledge of any
 * message. Encoding is two passes: a size pass that records every string's UTF-8 length and every
 * sub-message's size in `sizes` (pre-order), then a write pass into one buffer of the exact size
 * that reads them back in the same order. The reader throws SLOW at anything unusual (a known
 * field with another wire type, a group, invalid UTF-8, a "__proto__" map key), and the generated
 * decoder then hands the bytes to protobuf-es, so errors and edge cases are exactly protobuf-es's.
 */
import { isUtf8 } from "node:buffer";

/** Thrown at anything the fast path does not handle: the caller uses protobuf-es instead. */
export const SLOW = Symbol("slow");

/** How often the generated codecs handed a message to protobuf-es (tests check the fast path is taken). */
export const fallbacks = { encode: 0, decode: 0 };

/** An unknown field as protobuf-es keeps it: the bytes after the tag. */
export interface Unknown {
  no: number;
  wireType: number;
  data: Uint8Array;
}

export const varintSize = (v: number) => (v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5);
/** Size of an int32 (or enum) as a varint: negative values take ten bytes. */
export const int32Size = (v: number) => (v < 0 ? 10 : varintSize(v));

/** Strings up to this length are measured and copied in JavaScript (see Writer.utf8). */
const SHORT = 64;

/** A string's length in UTF-8: counted here for short ASCII strings, else by Buffer.byteLength. */
export function utf8Size(s: string): number {
  const n = s.length;
  if (n > SHORT) return Buffer.byteLength(s, "utf8");
  for (let i = 0; i < n; i++) if (s.charCodeAt(i) > 0x7f) return Buffer.byteLength(s, "utf8");
  return n;
}

/** The checks protobuf-es makes before it writes a value; a failing one leaves the write to it. */
export function str(v: unknown): string {
  if (typeof v !== "string") throw SLOW;
  return v;
}
export function bytes(v: unknown): Uint8Array {
  if (!(v instanceof Uint8Array)) throw SLOW;
  return v;
}
export function int32(v: unknown): number {
  if (typeof v !== "number" || (v | 0) !== v) throw SLOW;
  return v;
}
export function uint32(v: unknown): number {
  if (typeof v !== "number" || v >>> 0 !== v) throw SLOW;
  return v;
}
export function num(v: unknown): number {
  if (typeof v !== "number") throw SLOW;
  return v;
}
export function bool(v: unknown): boolean {
  if (typeof v !== "boolean") throw SLOW;
  return v;
}

/** The size of a message's unknown fields, written back after its known ones. */
export function unknownSize(u: Unknown[] | undefined): number {
  if (u === undefined) return 0;
  let n = 0;
  for (let i = 0; i < u.length; i++) {
    const f = u[i] as Unknown;
    n += varintSize(((f.no << 3) | f.wireType) >>> 0) + f.data.length;
  }
  return n;
}

/** Bytes to write: sizes are computed first (into `sizes`), then one buffer is filled. */
export class Writer {
  pos = 0;
  /** The next entry of `sizes` to read. */
  i = 0;
  constructor(
    readonly buf: Buffer,
    readonly sizes: number[],
  ) {}
  /** The next recorded size. */
  size(): number {
    return this.sizes[this.i++] as number;
  }
  byte(b: number): void {
    this.buf[this.pos++] = b;
  }
  varint(v: number): void {
    while (v > 0x7f) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[this.pos++] = v;
  }
  /** An int32: a negative one as the ten-byte varint of its 64-bit two's complement. */
  int32(v: number): void {
    if (v >= 0) {
      this.varint(v);
      return;
    }
    let lo = v >>> 0;
    for (let k = 0; k < 4; k++) {
      this.buf[this.pos++] = (lo & 0x7f) | 0x80;
      lo >>>= 7;
    }
    // Bits 28-31, then the sign-extended high word: all ones.
    this.buf[this.pos++] = (lo & 0x0f) | 0xf0;
    this.buf[this.pos++] = 0xff;
    this.buf[this.pos++] = 0xff;
    this.buf[this.pos++] = 0xff;
    this.buf[this.pos++] = 0xff;
    this.buf[this.pos++] = 0x01;
  }
  /** A string's UTF-8 bytes of known size, with its length first. */
  string(s: string, size: number): void {
    this.varint(size);
    this.utf8(s, size);
  }
  /**
   * A string's UTF-8 bytes, without length. `size` is its UTF-8 length (utf8Size): when it equals
   * the string's length every character is ASCII, and a short one is copied here, which is several
   * times quicker than a call into Buffer.write for the ids and names of the hot path.
   */
  utf8(s: string, size: number): void {
    if (size === s.length && size <= SHORT) {
      const { buf } = this;
      let pos = this.pos;
      for (let i = 0; i < size; i++) buf[pos++] = s.charCodeAt(i);
      this.pos = pos;
    } else this.pos += this.buf.write(s, this.pos, "utf8");
  }
  bytes(b: Uint8Array): void {
    this.varint(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
  double(v: number): void {
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }
  float(v: number): void {
    this.buf.writeFloatLE(v, this.pos);
    this.pos += 4;
  }
  fixed32(v: number): void {
    this.buf.writeUInt32LE(v, this.pos);
    this.pos += 4;
  }
  sfixed32(v: number): void {
    this.buf.writeInt32LE(v, this.pos);
    this.pos += 4;
  }
  unknown(u: Unknown[] | undefined): void {
    if (u === undefined) return;
    for (let i = 0; i < u.length; i++) {
      const f = u[i] as Unknown;
      this.varint(((f.no << 3) | f.wireType) >>> 0);
      this.buf.set(f.data, this.pos);
      this.pos += f.data.length;
    }
  }
}

/** 2 ** (7 * i): the weight of a varint's i-th byte. */
const SEVEN_BITS = [1, 2 ** 7, 2 ** 14, 2 ** 21, 2 ** 28];
/** Strings up to this length are read in JavaScript when they are ASCII (see Reader.string). */
const SHORT_READ = 8;

export class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }
  /** A varint of up to 32 bits (tags, lengths, uint32). */
  varint(): number {
    // Tags and short lengths: one byte.
    if (this.pos < this.end) {
      const first = this.buf[this.pos] as number;
      if (first < 0x80) {
        this.pos++;
        return first;
      }
    }
    let result = 0;
    for (let i = 0; ; i++) {
      if (this.pos >= this.end || i > 4) throw SLOW;
      const b = this.buf[this.pos++] as number;
      // A table, not 2 ** shift: that is a call to pow() for every byte past the first.
      result += (b & 0x7f) * (SEVEN_BITS[i] as number);
      if (b < 0x80) {
        if (result > 0xffffffff) throw SLOW;
        return result;
      }
    }
  }
  /** An int32 (or enum): a varint of up to ten bytes, of which the low 32 bits count. */
  int32(): number {
    const { buf, end } = this;
    let pos = this.pos;
    let v = 0;
    for (let i = 0; i < 10; i++) {
      if (pos >= end) throw SLOW;
      const b = buf[pos++] as number;
      if (i < 4) v |= (b & 0x7f) << (7 * i);
      else if (i === 4) v |= (b & 0x0f) << 28;
      if (b < 0x80) {
        this.pos = pos;
        return v | 0;
      }
    }
    throw SLOW;
  }
  uint32(): number {
    return this.int32() >>> 0;
  }
  /** A bool: a varint of up to ten bytes, true unless every bit is zero. */
  bool(): boolean {
    const { buf, end } = this;
    let pos = this.pos;
    let any = 0;
    for (let i = 0; i < 10; i++) {
      if (pos >= end) throw SLOW;
      const b = buf[pos++] as number;
      any |= b & 0x7f;
      if (b < 0x80) {
        this.pos = pos;
        return any !== 0;
      }
    }
    throw SLOW;
  }
  /** The end of a length-delimited field starting at pos. */
  len(): number {
    const n = this.varint();
    const end = this.pos + n;
    if (end > this.end) throw SLOW;
    return end;
  }
  string(): string {
    const end = this.len();
    const { buf } = this;
    let pos = this.pos;
    const n = end - pos;
    // Event ids are a few ASCII characters: building them here is about three times quicker than
    // a call into Buffer.toString.
    if (n <= SHORT_READ) {
      let s = "";
      for (; pos < end; pos++) {
        const b = buf[pos] as number;
        if (b > 0x7f) break;
        s += String.fromCharCode(b);
      }
      if (pos === end) {
        this.pos = end;
        return s;
      }
      pos = this.pos;
    } else if (n <= SHORT) {
      // Ids, names and headers: ASCII needs no UTF-8 check, and latin1 is the quickest decoder.
      let ascii = true;
      for (let i = pos; i < end; i++) {
        if ((buf[i] as number) > 0x7f) {
          ascii = false;
          break;
        }
      }
      if (ascii) {
        this.pos = end;
        return buf.toString("latin1", pos, end);
      }
    }
    // protobuf-es refuses invalid UTF-8 in proto3 strings: it says how.
    if (!isUtf8(buf.subarray(pos, end))) throw SLOW;
    this.pos = end;
    return buf.toString("utf8", pos, end);
  }
  bytes(): Uint8Array {
    const end = this.len();
    // A view, as protobuf-es gives, on the message's buffer: its own over gRPC and a MessagePort,
    // a share of Buffer's pool on a LocalPort (port.ts), which passes the encoder's bytes on.
    const b = this.buf.subarray(this.pos, end);
    this.pos = end;
    return b;
  }
  private fixed(n: number): number {
    const at = this.pos;
    if (at + n > this.end) throw SLOW;
    this.pos = at + n;
    return at;
  }
  double(): number {
    return this.buf.readDoubleLE(this.fixed(8));
  }
  float(): number {
    return this.buf.readFloatLE(this.fixed(4));
  }
  fixed32(): number {
    return this.buf.readUInt32LE(this.fixed(4));
  }
  sfixed32(): number {
    return this.buf.readInt32LE(this.fixed(4));
  }
  /** Skips a field that the message does not know and keeps its bytes, like protobuf-es's $unknown. */
  unknown(m: { $unknown?: Unknown[] }, tag: number): void {
    const no = tag >>> 3;
    const wireType = tag & 7;
    if (no === 0) throw SLOW;
    const start = this.pos;
    if (wireType === 0) {
      for (let i = 0; ; i++) {
        if (this.pos >= this.end || i >= 10) throw SLOW;
        if ((this.buf[this.pos++] as number) < 0x80) break;
      }
    } else if (wireType === 1) this.fixed(8);
    else if (wireType === 5) this.fixed(4);
    else if (wireType === 2) this.pos = this.len();
    // Groups (3, 4) and invalid wire types: protobuf-es.
    else throw SLOW;
    const data = this.buf.subarray(start, this.pos);
    if (m.$unknown === undefined) m.$unknown = [{ no, wireType, data }];
    else m.$unknown.push({ no, wireType, data });
  }
}

// ---- google.protobuf.Struct, as protobuf-es shows it in a field: a JsonObject ------------------
// Struct { map<string, Value> fields = 1 }: each entry { string key = 1; Value value = 2 }, both
// always written. Value { oneof kind: null_value = 1, number_value = 2 (double), string_value = 3,
// bool_value = 4, struct_value = 5, list_value = 6 }, the set one always written. ListValue
// { repeated Value values = 1 }.

const lenSize = (n: number) => varintSize(n) + n;

function sizeValue(v: unknown, s: number[]): number {
  if (v === null) return 2;
  switch (typeof v) {
    case "number":
      return 9;
    case "boolean":
      return 2;
    case "string": {
      const n = utf8Size(v);
      s.push(n);
      return 1 + lenSize(n);
    }
    case "object": {
      const at = s.length;
      s.push(0);
      const n = Array.isArray(v) ? sizeList(v, s) : sizeStruct(v as Record<string, unknown>, s);
      s[at] = n;
      return 1 + lenSize(n);
    }
    default:
      // undefined, functions, bigints, symbols: protobuf-es says what it makes of them.
      throw SLOW;
  }
}

/** The size of a Struct's fields (a JsonObject); records sizes for writeStruct. */
export function sizeStruct(o: Record<string, unknown>, s: number[]): number {
  if (typeof o !== "object" || o === null || Array.isArray(o)) throw SLOW;
  let total = 0;
  for (const k of Object.keys(o)) {
    const at = s.length;
    const kn = utf8Size(k);
    s.push(0, kn, 0);
    const vn = sizeValue(o[k], s);
    const entry = 1 + lenSize(kn) + 1 + lenSize(vn);
    s[at] = entry;
    s[at + 2] = vn;
    total += 1 + lenSize(entry);
  }
  return total;
}

function sizeList(a: unknown[], s: number[]): number {
  let total = 0;
  for (const v of a) {
    const at = s.length;
    s.push(0);
    const vn = sizeValue(v, s);
    s[at] = vn;
    total += 1 + lenSize(vn);
  }
  return total;
}

function writeValue(w: Writer, v: unknown): void {
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
    case "string":
      w.byte(0x1a);
      w.string(v, w.size());
      return;
    default:
      if (Array.isArray(v)) {
        w.byte(0x32);
        w.varint(w.size());
        writeList(w, v);
      } else {
        w.byte(0x2a);
        w.varint(w.size());
        writeStruct(w, v as Record<string, unknown>);
      }
  }
}

/** Writes a Struct's fields as sizeStruct measured them. */
export function writeStruct(w: Writer, o: Record<string, unknown>): void {
  for (const k of Object.keys(o)) {
    const entry = w.size();
    const kn = w.size();
    const vn = w.size();
    w.byte(0x0a);
    w.varint(entry);
    w.byte(0x0a);
    w.string(k, kn);
    w.byte(0x12);
    w.varint(vn);
    writeValue(w, o[k]);
  }
}

function writeList(w: Writer, a: unknown[]): void {
  for (const v of a) {
    w.byte(0x0a);
    w.varint(w.size());
    writeValue(w, v);
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
      r.int32();
      v = null;
    } else if (t === 0x11) v = r.double();
    else if (t === 0x1a) v = r.string();
    else if (t === 0x20) v = r.bool();
    else if (t === 0x2a) v = readStruct(r, r.len());
    else if (t === 0x32) v = readList(r, r.len());
    else throw SLOW;
  }
  if (r.pos !== end) throw SLOW;
  return v;
}

/** Reads a Struct's fields into a JsonObject. */
export function readStruct(r: Reader, end: number, into?: Record<string, unknown>): Record<string, unknown> {
  // A Struct field read twice merges in protobuf-es: it says how.
  if (into !== undefined) throw SLOW;
  const out: Record<string, unknown> = {};
  while (r.pos < end) {
    if (r.varint() !== 0x0a) throw SLOW;
    const entryEnd = r.len();
    let key = "";
    let value: unknown = null;
    let values = 0;
    while (r.pos < entryEnd) {
      const t = r.varint();
      if (t === 0x0a) key = r.string();
      else if (t === 0x12 && ++values === 1) value = readValue(r, r.len());
      else throw SLOW;
    }
    if (key === "__proto__") throw SLOW;
    out[key] = value;
  }
  if (r.pos !== end) throw SLOW;
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

/** Bytes as a Buffer over the same memory. */
export function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** A sub-message to write: protobuf-es writes an empty one for undefined, which it is left to. */
export function msg<T>(v: T | undefined | null): T {
  if (v === undefined || v === null) throw SLOW;
  return v;
}
