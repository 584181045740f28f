/** Payload encoding: what users send becomes bytes plus a frame kind. */
/** A JSON value: what kv stores hold and what send() turns into JSON text. */
export type JsonValue = number | string | boolean | null | JsonObject | JsonValue[];
/** A JSON object: the value type of kv stores. */
export type JsonObject = { [key: string]: JsonValue };

/** Anything the SDK can send: text, bytes, or a value sent as JSON text. */
export type Payload = string | Uint8Array | ArrayBuffer | JsonValue | object;

import { NitricLikeError } from "../errors.js";

const encoder = new TextEncoder();

/** Strings up to this length are tried as ASCII first (see utf8Bytes). */
const SHORT = 64;

/**
 * A string's UTF-8 bytes. TextEncoder.encode costs ~0.8 µs even for a few characters on Node 20,
 * once for every text reply and send: a short ASCII string (ids, small messages, most JSON) is
 * copied here in ~40 ns, anything else goes to TextEncoder.
 */
export function utf8Bytes(text: string): Uint8Array {
  const n = text.length;
  if (n > SHORT) return encoder.encode(text);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c > 0x7f) return encoder.encode(text);
    out[i] = c;
  }
  return out;
}

/**
 * The payloads of text messages, as handed to handlers (`ctx.data`, `ctx.req.data`): forwarding
 * one (`socket.send(id, ctx.req.data)`, as Nitric code does) sends a text frame, as Nitric's own
 * gateway does, instead of turning a browser's string into a Blob. Other bytes, copies and slices
 * included, are binary. A WeakSet, not a subclass, so the bytes stay a plain Uint8Array.
 */
const textPayloads = new WeakSet<Uint8Array>();

/** Marks `bytes` as the payload of a text message, so sending it sends text. Returns it. */
export function markText(bytes: Uint8Array): Uint8Array {
  textPayloads.add(bytes);
  return bytes;
}

/**
 * Encodes a payload: strings as text, bytes as binary (but the payload of a text message, passed
 * on as it came, as text), everything else as JSON text.
 */
export function encodePayload(data: Payload): { data: Uint8Array; binary: boolean } {
  if (typeof data === "string") return { data: utf8Bytes(data), binary: false };
  if (data instanceof Uint8Array) return { data, binary: !textPayloads.has(data) };
  if (data instanceof ArrayBuffer) return { data: new Uint8Array(data), binary: true };
  if (ArrayBuffer.isView(data))
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), binary: true };
  const json = JSON.stringify(data);
  if (json === undefined) {
    throw new NitricLikeError("invalid_argument", `cannot send ${typeof data}: pass a string, bytes, or a JSON value`);
  }
  return { data: utf8Bytes(json), binary: false };
}

/** decodeURIComponent that keeps the raw text when it is not a valid escape. */
export function decodeSafely(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
