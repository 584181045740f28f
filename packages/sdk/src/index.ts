export { ERROR_CODES, type ErrorCode, type ErrorDetails, isNitricLikeError, NitricLikeError } from "./errors.js";
export type { JsonObject, JsonObjectOf, JsonValue, JsonValueOf, Payload } from "./internal/data.js";
export type {
  AuthorizeAllow,
  AuthorizeDeny,
  AuthorizeFn,
  AuthorizeRequest,
  AuthorizeResult,
} from "./resources/authorize.js";
export {
  Collection,
  type CollectionPermission,
  CollectionRef,
  collection,
  type Document,
  type DocumentDeleter,
  type DocumentReader,
  type DocumentRef,
  type DocumentWriter,
  Query,
  type QueryResult,
  type WhereOperator,
} from "./resources/collection.js";
export {
  type KvDeleter,
  type KvPermission,
  type KvReader,
  type KvRef,
  KvStore,
  type KvWriter,
  kv,
} from "./resources/kv.js";
export {
  Secret,
  type SecretPermission,
  type SecretReader,
  type SecretRef,
  SecretValue,
  SecretVersion,
  type SecretWriter,
  secret,
} from "./resources/secret.js";
export {
  type BroadcastOptions,
  type CloseOptions,
  type ConnectContext,
  type ConnectionHandle,
  type ConnectionInfo,
  type DisconnectContext,
  type MessageContext,
  type Room,
  type RouteContext,
  type RouteHandlerFn,
  type SendOptions,
  Websocket,
  type WebsocketContext,
  type WebsocketContextBase,
  type WebsocketEvent,
  type WebsocketHandlerFn,
  type WebsocketOptions,
  type WebsocketRequest,
  websocket,
} from "./resources/websocket.js";
