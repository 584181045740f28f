// The connections.proto contract: its messages' types and enums (protoc-gen-es), and its services
// (Connections) as our RPC layer serves and calls them, each method with its generated codecs
// (protoc-gen-fastcodec). Nothing here loads protobuf-es at run time unless its schemas are used.

export { Connections } from "./gen/nitriclike/websockets/v1/connections_fast.js";
export * from "./gen/nitriclike/websockets/v1/connections_pb.js";
