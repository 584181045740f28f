/**
 * `@nitric-like/provider-aws`: ships an app to AWS. API Gateway WebSocket APIs hold the
 * connections, one Lambda function per service runs its code with the runtime in
 * `@nitric-like/provider-aws/runtime`, and DynamoDB keeps kv stores and live connections.
 */
export { createHandler } from "./runtime/index.js";
