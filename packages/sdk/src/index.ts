export { type ErrorCode, type ErrorDetails, ERROR_CODES, isNitricLikeError, NitricLikeError } from "./errors.js";
export type { JsonObject, JsonValue, Payload } from "./internal/data.js";
export { kv, type KvDeleter, type KvReader, type KvRef, KvStore, type KvWriter } from "./resources/kv.js";
export {
  type CloseOptions,
  type ConnectContext,
  type DisconnectContext,
  type MessageContext,
  type SendOptions,
  type WebsocketContext,
  type WebsocketContextBase,
  type WebsocketHandlerFn,
  type WebsocketOptions,
  type WebsocketRequest,
  Websocket,
  websocket,
} from "./resources/websocket.js";
