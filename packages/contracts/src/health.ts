// The health.proto contract: its messages' types and enums (protoc-gen-es), and its services
// (Health) as our RPC layer serves and calls them, each method with its generated codecs
// (protoc-gen-fastcodec). Nothing here loads protobuf-es at run time unless its schemas are used.

export { Health } from "./gen/grpc/health/v1/health_fast.js";
export * from "./gen/grpc/health/v1/health_pb.js";
