// The websockets.proto contract: its messages' types and enums (protoc-gen-es), and its services
// (Websocket, WebsocketHandler) as our RPC layer serves and calls them, each method with its generated codecs
// (protoc-gen-fastcodec). Nothing here loads protobuf-es at run time unless its schemas are used.

export { Websocket, WebsocketHandler } from "./gen/nitric/proto/websockets/v1/websockets_fast.js";
export * from "./gen/nitric/proto/websockets/v1/websockets_pb.js";
