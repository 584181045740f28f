/**
 * The protobuf wire format, by hand, for the codecs of the hot paths (handler-codec.ts,
 * kv-codec.ts): a writer that fills a buffer whose size was computed first, a reader that throws
 * SLOW at anything it does not expect, so that the caller hands the bytes to protobuf-es instead.
 */

// Tags: (field number << 3) | wire type, as varints.
export const LEN = 2;
export const tag = (field: number, wire: number) => (field << 3) | wire;

// ---- writing -------------------------------------------------------------------------------

/** Bytes to write: sizes are computed first, then one buffer is filled. */
export class Writer {
  pos = 0;
  constructor(readonly buf: Buffer) {}
  varint(v: number): void {
    while (v > 0x7f) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[this.pos++] = v;
  }
  string(field: number, s: string, size: number): void {
    if (size === 0) return;
    this.varint(tag(field, LEN));
    this.varint(size);
    this.utf8(s, size);
  }
  bytes(field: number, b: Uint8Array): void {
    if (b.length === 0) return;
    this.varint(tag(field, LEN));
    this.varint(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
  bool(field: number, v: boolean): void {
    if (!v) return;
    this.varint(tag(field, 0));
    this.buf[this.pos++] = 1;
  }
  byte(b: number): void {
    this.buf[this.pos++] = b;
  }
  /**
   * A string's UTF-8 bytes, without tag or length. `size` is its UTF-8 length (utf8Size): when it
   * equals the string's length every character is ASCII, and a short one is copied here, which is
   * several times quicker than a call into Buffer.write for the ids and names of the hot path.
   */
  utf8(s: string, size: number): void {
    if (size === s.length && size <= SHORT) {
      const { buf } = this;
      let pos = this.pos;
      for (let i = 0; i < size; i++) buf[pos++] = s.charCodeAt(i);
      this.pos = pos;
    } else this.pos += this.buf.write(s, this.pos, "utf8");
  }
  /** A double, little-endian (wire type 1). */
  double(v: number): void {
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }
  header(field: number, size: number): void {
    this.varint(tag(field, LEN));
    this.varint(size);
  }
}

/** Strings up to this length are measured and copied in JavaScript (see Writer.utf8). */
const SHORT = 64;

/** A string's length in UTF-8: counted here for short ASCII strings, else by Buffer.byteLength. */
export function utf8Size(s: string): number {
  const n = s.length;
  if (n > SHORT) return Buffer.byteLength(s, "utf8");
  for (let i = 0; i < n; i++) if (s.charCodeAt(i) > 0x7f) return Buffer.byteLength(s, "utf8");
  return n;
}

export const varintSize = (v: number) => (v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5);
/** Size of a length-delimited field with a payload of `n` bytes (0 when omitted as default). */
export const lenField = (field: number, n: number) => (n === 0 ? 0 : varintSize(tag(field, LEN)) + varintSize(n) + n);
/** Size of a sub-message field: present even when empty. */
export const msgField = (field: number, n: number) => varintSize(tag(field, LEN)) + varintSize(n) + n;
export const boolField = (field: number, v: boolean | undefined) => (v ? varintSize(tag(field, 0)) + 1 : 0);

/** Thrown by the reader at anything unexpected: decode with protobuf-es instead. */
export const SLOW = Symbol("slow");

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
      if (b < 0x80) return result;
    }
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
    // Event ids are a few ASCII characters: building them here is about three times quicker than
    // a call into Buffer.toString.
    if (end - pos <= SHORT_READ) {
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
    }
    const s = buf.toString("utf8", pos, end);
    this.pos = end;
    return s;
  }
  bytes(): Uint8Array {
    const end = this.len();
    // A view, as protobuf-es gives: grpc-js hands each message its own buffer.
    const b = this.buf.subarray(this.pos, end);
    this.pos = end;
    return b;
  }
  bool(): boolean {
    return this.varint() !== 0;
  }
  double(): number {
    if (this.pos + 8 > this.end) throw SLOW;
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }
}
