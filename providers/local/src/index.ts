export { KvStores, MAX_KEY_BYTES } from "./kv/store.js";
export { createLocalProvider, LocalProvider, type LocalProviderOptions, provider } from "./provider.js";
export { Gateway, type GatewayOptions } from "./websocket/gateway.js";
