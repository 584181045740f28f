/**
 * `@nitric-like/provider-aws/runtime`: the Lambda runtime bundled into every function the AWS
 * provider builds. The generated entry calls `createHandler({ load: () => require(<service>) })`.
 */
export { DynamoDbClient } from "../aws/dynamodb.js";
export { DynamoKvStores } from "../kv/store.js";
export type { BroadcastEvent } from "../websocket/fanout.js";
export { BindingError, type Bindings, type FunctionSocket, readBindings } from "./bindings.js";
export type { DeliverEvent, WebsocketApiEvent, WebsocketApiResult } from "./events.js";
export { createHandler, type LambdaContext, type LambdaHandler, Runtime, type RuntimeOptions } from "./handler.js";
