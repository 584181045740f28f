/**
 * `@nitric-like/provider-aws`: ships an app to AWS. API Gateway WebSocket APIs hold the
 * connections, one Lambda function per service runs its code with the runtime in
 * `@nitric-like/provider-aws/runtime`, and DynamoDB keeps kv stores and live connections.
 */
import type { Provider } from "@nitric-like/spec";
import { buildAws } from "./build/build.js";
import { runEmulated } from "./emulator/run.js";

export { type AwsBuild, buildAws } from "./build/build.js";
export { BundleError } from "./build/bundle.js";
export { buildTemplate, logicalName, ROUTE_KEYS, STAGE, type TemplateInput } from "./build/template.js";
export { type ZipEntry, zip } from "./build/zip.js";

/** The AWS provider, as `--provider aws` loads it. */
export const provider: Provider = {
  name: "aws",
  build: (options) => buildAws(options),
  run: (options) => runEmulated(options),
};
