/**
 * Services as the generated code describes them (src/gen/**\/*_fast.ts): each method's name, kind
 * and the codecs of its messages, which is all our RPC layer needs of a contract at run time. The
 * type parameters carry protobuf-es's message types for TypeScript only.
 */
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";

export type MethodKind = "unary" | "server_streaming" | "client_streaming" | "bidi_streaming";

/** A message type of a method: its full name and its codec. */
export interface MessageCodec<D extends DescMessage = DescMessage> {
  readonly typeName: string;
  /** For TypeScript only, never set: the protobuf-es descriptor type, from which shapes are inferred. */
  readonly desc?: D;
  /** Encodes a message or a plain init object of it; throws a CodecError on a value of the wrong type. */
  encode(value: MessageInitShape<D>): Uint8Array;
  /** Decodes; throws a CodecError on bytes that are not a message of this type. */
  decode(bytes: Uint8Array): MessageShape<D>;
}

/** One method of a service. */
export interface Method<
  K extends MethodKind = MethodKind,
  I extends DescMessage = DescMessage,
  O extends DescMessage = DescMessage,
> {
  /** As in the .proto file, and in the method's gRPC path. */
  readonly name: string;
  /** As implementations and callers name it (lower camel case). */
  readonly localName: string;
  readonly methodKind: K;
  readonly parent: { readonly typeName: string };
  readonly input: MessageCodec<I>;
  readonly output: MessageCodec<O>;
}

/** A service: its full name and its methods, in order and by local name. */
export interface Service<M extends Record<string, Method> = Record<string, Method>> {
  readonly typeName: string;
  readonly methods: readonly Method[];
  readonly method: M;
}

type MethodRow = readonly [
  name: string,
  localName: string,
  kind: MethodKind,
  input: MessageCodec,
  output: MessageCodec,
];

/** A service from the generated rows of its methods. */
export function service<M extends Record<string, Method>>(typeName: string, rows: readonly MethodRow[]): Service<M> {
  const parent = { typeName };
  const methods = rows.map(([name, localName, methodKind, input, output]) =>
    Object.freeze({ name, localName, methodKind, parent, input, output }),
  );
  // Local names come from proto/, never from a client: a null-prototype record all the same.
  const method = Object.create(null) as Record<string, Method>;
  for (const m of methods) method[m.localName] = m;
  return Object.freeze({ typeName, methods, method: Object.freeze(method) as M });
}
