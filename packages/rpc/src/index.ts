/**
 * nitric-like's RPC layer. A Router serves the contracts' generated services (router.ts); a Client
 * calls them (client.ts); between the two, a Transport carries each call's bytes and status
 * (wire.ts): over a MessagePort to a worker thread (port.ts), within one thread (memory.ts), or
 * over gRPC (the `@nitric-like/rpc/grpc` entry, kept apart so that nothing else loads grpc-js).
 */
export { type CallOptions, Client, type DuplexCall } from "./client.js";
// The bounds of connections.ts without grpc-js (grpc.ts), for a provider's log.
export { MAX_PROCESS_GRPC_CONNECTIONS, OPEN_FILES_PER_GRPC_CONNECTION } from "./connections.js";
export { createLazyTransport } from "./lazy.js";
export { createMemoryTransport, type MemoryTransport } from "./memory.js";
export { openFilesLimit } from "./open-files.js";
export { canCheckTcpPeers } from "./peer-user.js";
export { createPortTransport, LocalPort, type PortLike, PortServer, type PortTransport } from "./port.js";
export {
  type BidiCall,
  type CallInfo,
  type In,
  type InInit,
  type MethodHandler,
  methodPath,
  type Out,
  type OutInit,
  type Respond,
  Router,
  type ServerStream,
  type ServerStreamingCall,
  type ServiceImpl,
  type UnaryCall,
} from "./router.js";
export { Code, RpcError, statusOf } from "./status.js";
export type { MethodKind, Transport, WireCall, WireEvents } from "./wire.js";
