/**
 * `@nitric-like/provider-local`: runs an app on this machine. Each socket gets a WebSocket gateway
 * on 127.0.0.1 (ws), each kv store a named lmdb database, and each service its own gRPC endpoint.
 */
export {
  createLocalProvider,
  type LocalProvider,
  type LocalProviderOptions,
  provider,
} from "./provider.js";
