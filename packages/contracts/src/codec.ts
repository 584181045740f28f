/**
 * The encoder and decoder of every message of our contracts. The hot messages (the handler
 * stream's events and answers, the kv calls that carry values) have direct codecs generated from
 * proto/ by scripts/protoc-gen-fastcodec.mjs (the root= options of proto/buf.gen.yaml choose
 * them); every other message goes through protobuf-es. Both produce the bytes protobuf-es does.
 */
import {
  create,
  type DescMessage,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import { fastCodecs as kvCodecs } from "./gen/nitric/proto/kvstore/v1/kvstore_fast.js";
import { fastCodecs as websocketCodecs } from "./gen/nitric/proto/websockets/v1/websockets_fast.js";

/** A message type's encoder and decoder. */
export interface Codec<D extends DescMessage> {
  /** Encodes a message or a plain init object of it. */
  encode(value: MessageInitShape<D>): Uint8Array;
  /** Decodes; throws on bytes that are not a message of this type. */
  decode(bytes: Uint8Array): MessageShape<D>;
}

const FAST = new Map<string, { encode: (value: never) => Uint8Array; decode: (bytes: Uint8Array) => unknown }>();
for (const codec of [...websocketCodecs, ...kvCodecs]) FAST.set(codec.typeName, codec);

const made = new Map<string, Codec<DescMessage>>();

/** The codec of `schema`, made once per type. */
export function codecOf<D extends DescMessage>(schema: D): Codec<D> {
  let codec = made.get(schema.typeName);
  if (!codec) {
    const fast = FAST.get(schema.typeName);
    codec = fast
      ? { encode: fast.encode as (value: unknown) => Uint8Array, decode: fast.decode as (bytes: Uint8Array) => never }
      : {
          // create() returns its argument unchanged when it already is a message of this type, so
          // callers may pass plain init objects.
          encode: (value) => toBinary(schema, create(schema, value as never)),
          decode: (bytes) => fromBinary(schema, bytes) as never,
        };
    made.set(schema.typeName, codec);
  }
  return codec as unknown as Codec<D>;
}
