/** Payload encoding: what users send becomes bytes plus a frame kind. */
/** A JSON value: what kv stores hold and what send() turns into JSON text. */
export type JsonValue = number | string | boolean | null | JsonObject | JsonValue[];
/** A JSON object: the value type of kv stores. */
export type JsonObject = { [key: string]: JsonValue };

/** Anything the SDK can send: text, bytes, or a value sent as JSON text. */
export type Payload = string | Uint8Array | ArrayBuffer | JsonValue | object;

import { NitricLikeError } from "../errors.js";

const encoder = new TextEncoder();

/** Encodes a payload: strings as text, bytes as binary, everything else as JSON text. */
export function encodePayload(data: Payload): { data: Uint8Array; binary: boolean } {
  if (typeof data === "string") return { data: encoder.encode(data), binary: false };
  if (data instanceof Uint8Array) return { data, binary: true };
  if (data instanceof ArrayBuffer) return { data: new Uint8Array(data), binary: true };
  if (ArrayBuffer.isView(data))
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), binary: true };
  const json = JSON.stringify(data);
  if (json === undefined) {
    throw new NitricLikeError("invalid_argument", `cannot send ${typeof data}: pass a string, bytes, or a JSON value`);
  }
  return { data: encoder.encode(json), binary: false };
}

/** decodeURIComponent that keeps the raw text when it is not a valid escape. */
export function decodeSafely(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
