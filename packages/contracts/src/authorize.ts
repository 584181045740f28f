// The authorize.proto contract: its messages' types and enums (protoc-gen-es), and its services
// (Authorizer) as our RPC layer serves and calls them, each method with its generated codecs
// (protoc-gen-fastcodec). Nothing here loads protobuf-es at run time unless its schemas are used.

export { Authorizer } from "./gen/nitriclike/websockets/v1/authorize_fast.js";
export * from "./gen/nitriclike/websockets/v1/authorize_pb.js";
