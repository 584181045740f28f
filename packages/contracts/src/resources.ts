// The resources.proto contract: its messages' types and enums (protoc-gen-es), and its services
// (Resources) as our RPC layer serves and calls them, each method with its generated codecs
// (protoc-gen-fastcodec). Nothing here loads protobuf-es at run time unless its schemas are used.

export { Resources } from "./gen/nitric/proto/resources/v1/resources_fast.js";
export * from "./gen/nitric/proto/resources/v1/resources_pb.js";
