/**
 * @nitric-like/testing: start a nitric-like project inside a test (vitest or any runner), on the
 * local provider or as its AWS functions in the AWS emulator, connect typed clients, inject the
 * faults real deployments see (dropped TCP connections, silent clients, service restarts), and
 * read what the app keeps (its kv stores, its connections' rooms and state).
 */
export {
  type App,
  type AppConnection,
  type AppKv,
  type ConnectOptions,
  MAX_KV_KEYS,
  type StartAppOptions,
  startApp,
  stopAll,
} from "./app.js";
export {
  type Client,
  type CloseInfo,
  type ConnectClientOptions,
  ConnectRefusedError,
  connectClient,
  DEFAULT_TIMEOUT_MS,
  type Frame,
  type JsonPattern,
  type MessageMatcher,
  type WaitOptions,
} from "./client.js";
