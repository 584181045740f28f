/**
 * `@nitric-like/provider-kit`: the parts every provider shares. The gRPC services of the contract
 * (Resources, Websocket, WebsocketHandler, KvStore, SecretManager, Connections, Rooms) are written once
 * here, over three small backend interfaces, so the local and AWS providers answer every call alike: the same
 * checks, the same permission rules, the same errors. So is the connect path's logic (opening.ts):
 * what a connection is sent while its connect handler runs, and the HTTP status a refused one gets.
 * A third-party provider can use it too.
 */

export {
  type AuthorizationInput,
  type AuthorizeDecision,
  AuthorizerRegistry,
  AuthorizerStream,
  authorizerService,
  checkDecision,
  MAX_PENDING_AUTHORIZATIONS,
  offeredProtocols,
} from "./authorizer.js";
export {
  AWS_DELIVERY_ENVELOPE_BYTES,
  AWS_INTEGRATION_TIMEOUT_MS,
  AWS_MAX_ASYNC_PAYLOAD_BYTES,
  AWS_MAX_FRAME_BYTES,
  AWS_MAX_HANDLER_TIMEOUT_MS,
  AWS_MAX_MESSAGE_BYTES,
  awsConnectReplies,
  awsConnectReplyTooLarge,
  awsDeliveryCost,
  awsFrameWatcher,
  awsOpeningSendProblem,
  awsPayloadTooLarge,
  awsReplyTooLarge,
  BINARY_FRAME_CLOSE,
  type FrameRuleBreak,
  LARGE_FRAME_CLOSE,
} from "./aws-rules.js";
export type {
  ConnectionInfo,
  KvBackend,
  MaybePromise,
  SecretsBackend,
  SecretVersionValue,
  SocketBackend,
} from "./backends.js";
export { MAX_KEY_BYTES } from "./backends.js";
export { boundaryMessage, guard } from "./boundary.js";
export { BurstLog } from "./burst-log.js";
export { type CompileMessage, compileErrorMessage } from "./compile-errors.js";
export { building } from "./esbuild-service.js";
export {
  boundedMessage,
  followedBy,
  indentedMessage,
  MAX_MESSAGE_CHARS,
  MAX_MESSAGE_LINES,
  unindentedMessage,
} from "./failure-message.js";
export {
  type AnswerSink,
  EVENT_NAMES,
  HandlerError,
  type HandlerFailure,
  HandlerRegistry,
  HandlerStream,
  type LateAnswer,
  MAX_FATAL_DELIVERIES,
  MAX_LATE_EVENTS,
  MAX_WAITING_EVENTS,
  poisonCloseReason,
  waitingForChange,
} from "./handlers.js";
export { keptQuery, MAX_KEPT_QUERY_VALUES } from "./kept.js";
export { CollectedDeclarations, type Declaration } from "./late-declarations.js";
export { forEachLine, MAX_LINE_CHARS } from "./lines.js";
export { checkLmdbFile, lmdbFileProblem } from "./lmdb-file.js";
export { openFilesLimit, openFilesProblem } from "./open-files.js";
export {
  addRoom,
  byteSize,
  type CloseRequest,
  type ConnectRefusal,
  connectEvent,
  connectRefusal,
  type Frame,
  type KeepOutcome,
  LATE_CONNECT_NOTE,
  lateConnectAbandoned,
  lateConnectReason,
  Opening,
  openingOverflowReason,
  unansweredStatus,
} from "./opening.js";
export { originProblem } from "./origins.js";
export {
  OUT_DIR_MARKER,
  OUT_DIR_STAGING,
  type OutDir,
  outDirProblem,
  prepareOutDir,
  type StagedOutDir,
  stageOutDir,
} from "./out-dir.js";
export { packageOwner } from "./package-owner.js";
export { Permissions } from "./permissions.js";
export { parseQuery, wireQuery, wireValue } from "./query.js";
export {
  endLineageOfThisProcess,
  endLineageWithThisProcess,
  endWithThisProcess,
  LINEAGE_VAR,
  lineageCarriers,
  lineageOfThisProcess,
  lineageScanPasses,
  newLineage,
  REAPER_NAME,
  startReaper,
  withLineage,
} from "./reaper.js";
export { clientErrorRefusal, REFUSED_GRACE_MS, refuseRequest, upgradeProblem } from "./refusals.js";
export { permissionsOf, resourceKindOf } from "./resources.js";
export { type EndpointContext, serviceRouter } from "./router.js";
export {
  createRunDir,
  currentUid,
  ownerAlive,
  processMark,
  RUN_DIR_PREFIX,
  type RunDir,
  removeStaleRunDirs,
  runDirParent,
} from "./run-dir.js";
export { noValueYet } from "./secrets.js";
export { MAX_STANDBY } from "./standby.js";
export { addValues, dict } from "./untrusted.js";
export {
  asGrpcError,
  checkClose,
  closedNotReading,
  MAX_BUFFERED_BYTES,
  MAX_MESSAGE_PIECES,
  MAX_PENDING_PONGS,
  notConnected,
  notReadingReason,
  pingFloodReason,
  protocolCloseReason,
  settle,
  shownId,
  WS_PIECE_BOUNDS,
} from "./websocket.js";
