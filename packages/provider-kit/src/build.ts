// What a provider's build uses of the kit (`@nitric-like/provider-kit/build`): none of it loads
// the gRPC contracts, protobuf or grpc-js that the package's index does, so a deploy command that
// builds (up) starts without them.
export { AWS_INTEGRATION_TIMEOUT_MS, AWS_MAX_HANDLER_TIMEOUT_MS } from "./aws-timeouts.js";
export { type CompileMessage, compileErrorMessage } from "./compile-errors.js";
export { building } from "./esbuild-service.js";
export { type StagedOutDir, stageOutDir } from "./out-dir.js";
export { packageOwner } from "./package-owner.js";
