/**
 * The codec of every message of our contracts by its type name, for code that holds a message type
 * rather than a method (tests, tools). The RPC layer takes each method's codecs from the method
 * itself (src/fastcodec/service.ts), so a bundle carries only the services it uses. Every codec is
 * generated from proto/ by scripts/protoc-gen-fastcodec.mjs and writes the bytes protobuf-es does.
 */
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { fastCodecs as health } from "./gen/grpc/health/v1/health_fast.js";
import { fastCodecs as kvstore } from "./gen/nitric/proto/kvstore/v1/kvstore_fast.js";
import { fastCodecs as resources } from "./gen/nitric/proto/resources/v1/resources_fast.js";
import { fastCodecs as websockets } from "./gen/nitric/proto/websockets/v1/websockets_fast.js";
import { fastCodecs as rooms } from "./gen/nitriclike/rooms/v1/rooms_fast.js";
import { fastCodecs as authorize } from "./gen/nitriclike/websockets/v1/authorize_fast.js";
import { fastCodecs as connections } from "./gen/nitriclike/websockets/v1/connections_fast.js";

export { CodecError } from "./fastcodec/runtime.js";
export type { MessageCodec, Method, MethodKind, Service } from "./fastcodec/service.js";

/** A message type's encoder and decoder. */
export interface Codec<D extends DescMessage> {
  /** Encodes a message or a plain init object of it. */
  encode(value: MessageInitShape<D>): Uint8Array;
  /** Decodes; throws a CodecError on bytes that are not a message of this type. */
  decode(bytes: Uint8Array): MessageShape<D>;
}

const codecs = new Map<string, Codec<DescMessage>>();
for (const codec of [...health, ...kvstore, ...resources, ...websockets, ...rooms, ...authorize, ...connections])
  if (!codecs.has(codec.typeName)) codecs.set(codec.typeName, codec as unknown as Codec<DescMessage>);

/** The codec of a message type (a protobuf-es schema, or anything with its type name). */
export function codecOf<D extends DescMessage>(type: D | { readonly typeName: string }): Codec<D> {
  const codec = codecs.get(type.typeName);
  if (!codec)
    throw new Error(`no codec for ${type.typeName}: only messages that a service of proto/ sends or receives have one`);
  return codec as unknown as Codec<D>;
}
