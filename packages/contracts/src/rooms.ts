// The rooms.proto contract: its messages' types and enums (protoc-gen-es), and its services
// (Rooms) as our RPC layer serves and calls them, each method with its generated codecs
// (protoc-gen-fastcodec). Nothing here loads protobuf-es at run time unless its schemas are used.

export { Rooms } from "./gen/nitriclike/rooms/v1/rooms_fast.js";
export * from "./gen/nitriclike/rooms/v1/rooms_pb.js";
