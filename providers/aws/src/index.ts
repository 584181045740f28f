/**
 * `@nitric-like/provider-aws`: ships an app to AWS. API Gateway WebSocket APIs hold the
 * connections, one Lambda function per service runs its code with the runtime in
 * `@nitric-like/provider-aws/runtime`, DynamoDB keeps kv stores and live connections, and Secrets
 * Manager keeps secrets.
 */
import type { Provider } from "@nitric-like/spec";
import { buildAws } from "./build/build.js";
import { deploy, describeDeployment, destroy, nodeVersionNotice, preflight } from "./deploy/deploy.js";
import { putSecret } from "./deploy/secrets.js";
import { runEmulated } from "./emulator/run.js";

export { type AwsBuild, artifactHash, buildAws } from "./build/build.js";
export { BundleError } from "./build/bundle.js";
export {
  buildTemplate,
  deploymentHash,
  logicalName,
  ROUTE_KEYS,
  SELF_INVOKE_MAX_AGE_SECONDS,
  STAGE,
  type TemplateInput,
} from "./build/template.js";
export { type ZipEntry, zip } from "./build/zip.js";
export {
  BOOTSTRAP_STACK,
  DeployError,
  type DeployOptions,
  type DeployOutcome,
  deploy,
  describeDeployment,
  destroy,
  explain,
  MAX_INLINE_TEMPLATE_BYTES,
  nodeVersionNotice,
  preflight,
  type StackDescription,
  stackNameProblem,
  stuckStackProblem,
} from "./deploy/deploy.js";
export { deployedSecretArn, type PutSecretRequest, putSecret } from "./deploy/secrets.js";

/** The AWS provider, as `--provider aws` loads it. */
export const provider: Provider = {
  name: "aws",
  build: (options) => buildAws(options, { domains: true }),
  run: (options) => runEmulated(options),
  async up(options) {
    const built = await buildAws(options, { domains: true });
    const result = await deploy({
      stack: options.stack,
      ...(options.region ? { region: options.region } : {}),
      template: built.template,
      artifacts: built.artifacts.map((a) => ({ key: a.key, file: a.file })),
      logger: options.logger,
    });
    return { sockets: result.sockets, changed: result.changed, outputs: result.outputs };
  },
  preflight: (options) => {
    nodeVersionNotice(options.logger);
    return preflight({
      stack: options.stack,
      action: options.action,
      ...(options.region ? { region: options.region } : {}),
    });
  },
  down: (options) =>
    destroy({
      stack: options.stack,
      ...(options.region ? { region: options.region } : {}),
      logger: options.logger,
      ...(options.keepData ? { keepData: true } : {}),
      ...(options.confirmDataLoss
        ? {
            confirm: (tables) =>
              options.confirmDataLoss?.(tables.map((t) => ({ store: t.store, name: t.table }))) ??
              Promise.resolve(true),
          }
        : {}),
    }).then((outcome) => ({ kept: outcome.kept.map((t) => ({ store: t.store, name: t.table })) })),
  outputs: (options) => {
    nodeVersionNotice(options.logger);
    return describeDeployment({ stack: options.stack, ...(options.region ? { region: options.region } : {}) });
  },
  putSecret: (options) => {
    nodeVersionNotice(options.logger);
    return putSecret({
      stack: options.stack,
      ...(options.region ? { region: options.region } : {}),
      secret: options.secret,
      value: options.value,
      logger: options.logger,
    });
  },
  async *logs(options) {
    nodeVersionNotice(options.logger);
    // CloudWatch Logs' client loads only for `logs`.
    const { readLogs } = await import("./deploy/logs.js");
    yield* readLogs(options);
  },
};
