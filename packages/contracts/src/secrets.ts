// The secrets.proto contract: its messages' types (protoc-gen-es), and its service (SecretManager)
// as our RPC layer serves and calls it, each method with its generated codecs
// (protoc-gen-fastcodec). Nothing here loads protobuf-es at run time unless its schemas are used.

export { SecretManager } from "./gen/nitric/proto/secrets/v1/secrets_fast.js";
export * from "./gen/nitric/proto/secrets/v1/secrets_pb.js";
