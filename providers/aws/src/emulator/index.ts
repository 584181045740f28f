/**
 * `@nitric-like/provider-aws/emulator`: runs a built app on 127.0.0.1 as API Gateway, Lambda and
 * DynamoDB (dynalite) would, so the runtime is tested end to end without an AWS account.
 */

export { signRequest } from "../aws/signer.js";
export { runCredentials } from "./auth.js";
export {
  type DynaliteOptions,
  type RunningDynalite,
  type RunningDynaliteThread,
  startDynalite,
  startDynaliteThread,
} from "./dynalite.js";
export {
  Emulator,
  type EmulatorOptions,
  MAX_MESSAGE_BYTES,
  NEW_CONNECTIONS_PER_SECOND,
  startEmulator,
} from "./emulator.js";
export { type Physical, resolveIntrinsics } from "./intrinsics.js";
export {
  type ManagementDouble,
  type ManagementDoubleOptions,
  seedConnections,
  startManagementDouble,
} from "./management-double.js";
export { CREDENTIALS_FILE, emulatedDirs, runEmulated } from "./run.js";
