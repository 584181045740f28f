/**
 * @nitric-like/testing: start a nitric-like project on the local provider inside a test (vitest or
 * any runner), connect typed clients, and inject the faults real deployments see: dropped TCP
 * connections, silent clients, service restarts.
 */
export { type App, type ConnectOptions, type StartAppOptions, startApp, stopAll } from "./app.js";
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
