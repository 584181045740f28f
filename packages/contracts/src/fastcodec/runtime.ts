/**
 * The runtime of the generated codecs (src/gen/**\/*_fast.ts, written by
 * scripts/protoc-gen-fastcodec.mjs from proto/): the protobuf wire format with no knowledge of any
 * message. They are the only codecs of our contracts at run time: protobuf-es generates the types
 * and serves as the tests' oracle, and is not loaded by a provider or a service (see codec.ts).
 *
 * Encoding is two passes: a size pass that records every string's UTF-8 length and every
 * sub-message's size in `sizes` (pre-order), then a write pass into one buffer of the exact size
 * that reads them back in the same order.
 *
 * Decoding reads every valid encoding as protobuf-es does (non-minimal varints, packed and unpacked
 * repeated fields, a message field split in parts, map entries with fields missing or extra, unknown
 * fields of every wire type, groups included, kept as protobuf-es keeps them) and refuses what
 * protobuf-es refuses (truncated input, invalid UTF-8 in a string, an illegal tag, nesting deeper
 * than 100 messages). It is stricter than protobuf-es on two kinds of invalid input that
 * protobuf-es reads anyway: a known field with another wire type (protobuf-es reads it as its
 * declared type), and a field that runs past the end of the message that holds it.
 */
import { isUtf8 } from "node:buffer";

/** Bytes that are no message of the type, or a value that cannot be encoded as its field. */
export class CodecError extends Error {
  override readonly name = "CodecError";
  /**
   * What the sender can do, when the fault is in the values sent rather than in how they were
   * encoded (a string that is not UTF-8); undefined otherwise.
   */
  readonly fix: string | undefined;
  constructor(message: string, fix?: string) {
    super(message);
    this.fix = fix;
  }
}

const fail = (reason: string, fix?: string): never => {
  throw new CodecError(reason, fix);
};

/** How deep messages may nest in what is decoded, as protobuf-es's default recursion limit. */
export const RECURSION_LIMIT = 100;

/** The error of a failed encode: says which message; other errors pass unchanged. */
export function encodeError(typeName: string, error: unknown): unknown {
  return error instanceof CodecError ? new CodecError(`cannot encode ${typeName}: ${error.message}`) : error;
}
/** The error of a failed decode: says which message; other errors pass unchanged. */
export function decodeError(typeName: string, error: unknown): unknown {
  return error instanceof CodecError ? new CodecError(`cannot decode ${typeName}: ${error.message}`, error.fix) : error;
}

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

const what = (v: unknown) => (v === null ? "null" : Array.isArray(v) ? "an array" : typeof v);
const wrong = (field: string, expected: string, v: unknown): never =>
  fail(`field ${field} must be ${expected}, not ${what(v)}`);

/** The checks made before a value is written: the value of `field` as its type needs it. */
export function str(v: unknown, field: string): string {
  if (typeof v !== "string") wrong(field, "a string", v);
  return v as string;
}
export function bytes(v: unknown, field: string): Uint8Array {
  if (!(v instanceof Uint8Array)) wrong(field, "a Uint8Array", v);
  return v as Uint8Array;
}
export function int32(v: unknown, field: string): number {
  if (typeof v !== "number" || (v | 0) !== v) wrong(field, "an int32 (an integer from -2^31 to 2^31 - 1)", v);
  return v as number;
}
export function uint32(v: unknown, field: string): number {
  if (typeof v !== "number" || v >>> 0 !== v) wrong(field, "a uint32 (an integer from 0 to 2^32 - 1)", v);
  return v as number;
}
export function num(v: unknown, field: string): number {
  if (typeof v !== "number") wrong(field, "a number", v);
  return v as number;
}
export function bool(v: unknown, field: string): boolean {
  if (typeof v !== "boolean") wrong(field, "a boolean", v);
  return v as boolean;
}

/** The message with no field set. */
export const EMPTY = Object.freeze({});
/**
 * A sub-message to write, checked. `undefined` (an unset oneof value, a hole in a list) is written
 * as an empty message, as protobuf-es writes it.
 */
export function msg<T>(v: T | undefined, field: string): T {
  if (v === undefined) return EMPTY as T;
  if (typeof v !== "object" || v === null) wrong(field, "a message", v);
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

/** Strings up to this length are read in JavaScript when they are ASCII (see Reader.string). */
const SHORT_READ = 8;

const TRUNCATED = "the input ends inside a field";
const OVERRUN = "a field runs past the end of the message that holds it";
const LONG = "a length prefix of 2^31 bytes or more, longer than any field can be";

/** Sets `key` as an own property, "__proto__" included (an assignment would set the prototype). */
export function setOwn(record: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__")
    Object.defineProperty(record, key, { value, enumerable: true, writable: true, configurable: true });
  else record[key] = value;
}

export class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }
  /** A tag: a varint of at most five bytes whose value fits 32 bits, as protobuf-es accepts. */
  tag(): number {
    const start = this.pos;
    const v = this.varint();
    const n = this.pos - start;
    if (n >= 5 && (n > 5 || (this.buf[this.pos - 1] as number) > 0x0f))
      fail("illegal tag: its varint overflows 32 bits");
    return v;
  }
  /** A length, or a uint32: the low 32 bits of a varint of up to ten bytes (protobuf-es's uint32()). */
  varint(): number {
    if (this.pos < this.end) {
      const first = this.buf[this.pos] as number;
      if (first < 0x80) {
        this.pos++;
        return first;
      }
    }
    return this.uint32();
  }
  /** An int32 (or enum): a varint of up to ten bytes, of which the low 32 bits count. */
  int32(): number {
    const { buf, end } = this;
    let pos = this.pos;
    let v = 0;
    for (let i = 0; i < 10; i++) {
      if (pos >= end) fail(TRUNCATED);
      const b = buf[pos++] as number;
      if (i < 4) v |= (b & 0x7f) << (7 * i);
      else if (i === 4) v |= (b & 0x0f) << 28;
      if (b < 0x80) {
        this.pos = pos;
        return v | 0;
      }
    }
    return fail("a varint longer than ten bytes");
  }
  uint32(): number {
    return this.int32() >>> 0;
  }
  /** A bool: a varint of up to ten bytes, true unless its low 64 bits are all zero. */
  bool(): boolean {
    const { buf, end } = this;
    let pos = this.pos;
    let any = 0;
    for (let i = 0; i < 10; i++) {
      if (pos >= end) fail(TRUNCATED);
      const b = buf[pos++] as number;
      // The tenth byte holds bit 63 only.
      any |= i < 9 ? b & 0x7f : b & 0x01;
      if (b < 0x80) {
        this.pos = pos;
        return any !== 0;
      }
    }
    return fail("a varint longer than ten bytes");
  }
  /**
   * The end of a length-delimited field starting at pos. protobuf-es reads a length's low 32 bits
   * only, so a length of 2^32 or more (a hostile or broken sender's) would wrap to a small one and
   * the bytes after it be read as fields; no field is 2 GiB or longer, so such a length is refused.
   */
  len(): number {
    const start = this.pos;
    const n = this.varint();
    if (this.pos - start >= 5 && this.tooLong(start)) fail(LONG);
    const end = this.pos + n;
    if (end > this.end) fail(TRUNCATED);
    return end;
  }
  /** Whether the varint from `start` to pos says 2^31 or more (its low 32 bits are all varint() keeps). */
  private tooLong(start: number): boolean {
    const { buf } = this;
    // The fifth byte carries bits 28 to 34, of which 31 and up must be zero; later bytes all of theirs.
    if (((buf[start + 4] as number) & 0x78) !== 0) return true;
    for (let i = start + 5; i < this.pos; i++) if (((buf[i] as number) & 0x7f) !== 0) return true;
    return false;
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
    // A proto3 string must be valid UTF-8: protobuf-es refuses it too. A JS string with a lone
    // surrogate has no UTF-8; google-protobuf (@nitric/sdk's encoder) writes some as ED A0 80..ED
    // BF BF, which is not UTF-8, so the sender is told about its text, not about its encoder.
    if (!isUtf8(buf.subarray(pos, end)))
      fail(
        'a string field holds bytes that are not UTF-8, as a text with a lone surrogate (such as "\\ud800") becomes in some encoders, @nitric/sdk\'s among them',
        "send well-formed text, such as text.toWellFormed()",
      );
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
    if (at + n > this.end) fail(TRUNCATED);
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
  /**
   * Skips the value of a field of a message at nesting `depth`, after its tag, up to `end` (the
   * message's end). A group's fields are skipped to its end tag, groups within groups included,
   * as deep as protobuf-es allows (its recursion limit less the message's depth).
   */
  skip(tag: number, end: number, depth: number): void {
    const no = tag >>> 3;
    const wireType = tag & 7;
    if (no === 0) fail("illegal tag: field number 0");
    switch (wireType) {
      case 0:
        for (let i = 0; ; i++) {
          if (this.pos >= end) fail(this.pos >= this.end ? TRUNCATED : OVERRUN);
          if (i >= 10) fail("a varint longer than ten bytes");
          if ((this.buf[this.pos++] as number) < 0x80) break;
        }
        break;
      case 1:
        this.fixed(8);
        break;
      case 2:
        this.pos = this.len();
        break;
      case 5:
        this.fixed(4);
        break;
      case 3:
        this.skipGroup(no, end, RECURSION_LIMIT - depth);
        break;
      case 4:
        fail(`an end-group tag (field ${no}) with no group open`);
        break;
      default:
        fail(`illegal tag: wire type ${wireType} (field ${no})`);
    }
    if (this.pos > end) fail(OVERRUN);
  }
  private skipGroup(no: number, end: number, budget: number): void {
    if (budget <= 0) fail(`groups nest deeper than the recursion limit (${RECURSION_LIMIT})`);
    for (;;) {
      if (this.pos >= end) fail(this.pos >= this.end ? TRUNCATED : OVERRUN);
      const t = this.tag();
      if ((t & 7) === 4) {
        if (t >>> 3 !== no) fail(`a group of field ${no} ends with the end tag of field ${t >>> 3}`);
        return;
      }
      if ((t & 7) === 3) {
        if (t >>> 3 === 0) fail("illegal tag: field number 0");
        this.skipGroup(t >>> 3, end, budget - 1);
      } else this.skip(t, end, 0); // not a group: the depth is not used
    }
  }
  /** Skips a field that the message does not know and keeps its bytes, like protobuf-es's $unknown. */
  unknown(m: { $unknown?: Unknown[] }, tag: number, end: number, depth: number): void {
    const start = this.pos;
    this.skip(tag, end, depth);
    const field = { no: tag >>> 3, wireType: tag & 7, data: this.buf.subarray(start, this.pos) };
    if (m.$unknown === undefined) m.$unknown = [field];
    else m.$unknown.push(field);
  }
}

/** A known field with a wire type its type never has: protobuf-es would read it anyway; we refuse it. */
export function wrongWireType(tag: number): never {
  return fail(`field ${tag >>> 3} has wire type ${tag & 7}, which its type does not use`);
}
/** The check at the end of every message and map entry. */
export function ended(r: Reader, end: number): void {
  if (r.pos !== end) fail(OVERRUN);
}
/** The check at the start of every message read. */
export function tooDeep(): never {
  return fail(`messages nest deeper than the recursion limit (${RECURSION_LIMIT})`);
}

// ---- google.protobuf.Struct, as protobuf-es shows it in a field: a JsonObject ------------------
// Struct { map<string, Value> fields = 1 }: each entry { string key = 1; Value value = 2 }, both
// always written. Value { oneof kind: null_value = 1, number_value = 2 (double), string_value = 3,
// bool_value = 4, struct_value = 5, list_value = 6 }, the set one always written. ListValue
// { repeated Value values = 1 }.
//
// What protobuf-es makes of JavaScript values that are not JSON, kept here: undefined, a bigint, a
// function or a symbol is a Value with no kind (read back as null); any other object is a Struct of
// its own enumerable string keys (a Date is {}); a Struct field holding no object, or an array, is
// an empty Struct.

const lenSize = (n: number) => varintSize(n) + n;
const isStruct = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

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
      return 0;
  }
}

/** The size of a Struct's fields (a JsonObject); records sizes for writeStruct. */
export function sizeStruct(o: Record<string, unknown>, s: number[]): number {
  if (!isStruct(o)) return 0;
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
    case "object":
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
  if (!isStruct(o)) return;
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

/**
 * Reads a Value message at nesting `depth`, merged into `into` (the JSON of the same field read
 * before, in the same entry) as protobuf-es merges messages: a kind read again replaces the one
 * before, except a struct_value or list_value read again, which is merged into the one before; no
 * kind leaves `into` as it was, and a Value with no kind at all is null.
 */
function readValue(r: Reader, end: number, into: unknown, depth: number): unknown {
  if (depth > RECURSION_LIMIT) tooDeep();
  let v: unknown = into === undefined ? null : into;
  while (r.pos < end) {
    const t = r.tag();
    switch (t) {
      case 0x08:
        r.int32();
        v = null;
        break;
      case 0x11:
        v = r.double();
        break;
      case 0x1a:
        v = r.string();
        break;
      case 0x20:
        v = r.bool();
        break;
      case 0x2a:
        v = readStruct(r, r.len(), isStruct(v) ? v : undefined, depth + 1);
        break;
      case 0x32:
        v = readList(r, r.len(), Array.isArray(v) ? v : undefined, depth + 1);
        break;
      default:
        if (t >>> 3 >= 1 && t >>> 3 <= 6) wrongWireType(t);
        r.skip(t, end, depth);
    }
  }
  ended(r, end);
  return v;
}

/**
 * Reads a Struct message at nesting `depth` into a JsonObject; a Struct field read again merges
 * into `into`, its keys replacing those before.
 */
export function readStruct(r: Reader, end: number, into: Record<string, unknown> | undefined, depth: number) {
  if (depth > RECURSION_LIMIT) tooDeep();
  const out: Record<string, unknown> = into ?? {};
  while (r.pos < end) {
    const t = r.tag();
    if (t !== 0x0a) {
      if (t >>> 3 === 1) wrongWireType(t);
      r.skip(t, end, depth);
      continue;
    }
    const entryEnd = r.len();
    let key = "";
    let value: unknown;
    while (r.pos < entryEnd) {
      const et = r.tag();
      if (et === 0x0a) key = r.string();
      else if (et === 0x12) value = readValue(r, r.len(), value, depth + 1);
      else {
        if (et >>> 3 === 1 || et >>> 3 === 2) wrongWireType(et);
        r.skip(et, entryEnd, depth);
      }
    }
    ended(r, entryEnd);
    setOwn(out, key, value === undefined ? null : value);
  }
  ended(r, end);
  return out;
}

function readList(r: Reader, end: number, into: unknown[] | undefined, depth: number): unknown[] {
  if (depth > RECURSION_LIMIT) tooDeep();
  const out: unknown[] = into ?? [];
  while (r.pos < end) {
    const t = r.tag();
    if (t === 0x0a) out.push(readValue(r, r.len(), undefined, depth + 1));
    else {
      if (t >>> 3 === 1) wrongWireType(t);
      r.skip(t, end, depth);
    }
  }
  ended(r, end);
  return out;
}

/** Bytes as a Buffer over the same memory. */
export function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}
