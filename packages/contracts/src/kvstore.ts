// The kvstore.proto contract: its messages' types and enums (protoc-gen-es), and its services
// (KvStore) as our RPC layer serves and calls them, each method with its generated codecs
// (protoc-gen-fastcodec). Nothing here loads protobuf-es at run time unless its schemas are used.

export { KvStore } from "./gen/nitric/proto/kvstore/v1/kvstore_fast.js";
export * from "./gen/nitric/proto/kvstore/v1/kvstore_pb.js";
