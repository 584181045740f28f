export {
  isValidResourceName,
  MAX_RESOURCE_NAME_LENGTH,
  RESOURCE_NAME_PATTERN,
  type ResourceKind,
  resourceNameProblem,
  suggestName,
} from "./names.js";
export {
  findServices,
  globToRegExp,
  loadProject,
  PROJECT_FILES,
  type Project,
  ProjectError,
  type ServiceEntry,
  type ServiceMatch,
  type WebsocketConfig,
} from "./project.js";
export type {
  HandlerRegistration,
  Logger,
  Provider,
  RunningProvider,
  RunOptions,
} from "./provider.js";
export {
  buildSpec,
  type CollectedService,
  KV_PERMISSIONS,
  type KvPermission,
  type KvSpec,
  type Permission,
  type PolicySpec,
  type ResourceRef,
  type Spec,
  type SpecResult,
  WEBSOCKET_EVENTS,
  type WebsocketEvent,
  type WebsocketSpec,
} from "./spec.js";
