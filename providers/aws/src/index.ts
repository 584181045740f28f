/**
 * `@nitric-like/provider-aws`: ships an app to AWS. API Gateway WebSocket APIs hold the
 * connections, one Lambda function per service runs its code with the runtime in
 * `@nitric-like/provider-aws/runtime`, DynamoDB keeps kv stores and live connections, and Secrets
 * Manager keeps secrets.
 */
import type { Provider, SocketDomain } from "@nitric-like/spec";
import { buildAws } from "./build/build.js";
import { logicalName } from "./build/template.js";
import {
  deploy,
  describeDeployment,
  destroy,
  nodeVersionNotice,
  preflight,
  stackNameProblem,
  stuckStackProblem,
} from "./deploy/deploy.js";
import type { PutSecretRequest } from "./deploy/secrets.js";

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
export type { PutSecretRequest } from "./deploy/secrets.js";

// Secrets Manager's client, and the emulator (dynalite, the execute-api gateway), load only for
// the commands that use them: every other command would pay for loading them at each start.

/** Stores `value` as the newest version of a deployed secret (see deploy/secrets.ts). */
export async function putSecret(options: PutSecretRequest): Promise<{ version: string; where: string }> {
  return (await import("./deploy/secrets.js")).putSecret(options);
}

/** The ARN of a deployed secret, from the stack's outputs (see deploy/secrets.ts). */
export async function deployedSecretArn(
  options: Parameters<typeof import("./deploy/secrets.js").deployedSecretArn>[0],
): Promise<string> {
  return (await import("./deploy/secrets.js")).deployedSecretArn(options);
}

/**
 * What is left to do for each custom domain the stack made no record for: the CNAME to its
 * regional target (the `DomainTarget<Socket>` output), or a hosted zone for up to add it.
 */
function domainNotes(domains: Record<string, SocketDomain>, outputs: Record<string, string>): string[] {
  const notes: string[] = [];
  for (const [socket, domain] of Object.entries(domains)) {
    if (domain.hostedZone !== undefined) continue;
    const target = outputs[`DomainTarget${logicalName(socket)}`];
    if (target === undefined) continue;
    notes.push(
      `websocket ${socket}: point ${domain.name} at ${target} with a CNAME record in its DNS (or give websockets.${socket}.domain.hostedZone, and up adds the record in Route 53)`,
    );
  }
  return notes;
}

/** The AWS provider, as `--provider aws` loads it. */
export const provider: Provider = {
  name: "aws",
  build: (options) => buildAws(options, { domains: true }),
  run: async (options) => (await import("./emulator/run.js")).runEmulated(options),
  async up(options) {
    const built = await buildAws(options, { domains: true });
    const result = await deploy({
      stack: options.stack,
      ...(options.region ? { region: options.region } : {}),
      template: built.template,
      artifacts: built.artifacts.map((a) => ({ key: a.key, file: a.file })),
      domains: Object.values(built.domains),
      logger: options.logger,
      ...(options.confirmDataLoss
        ? {
            confirm: (tables) =>
              options.confirmDataLoss?.(tables.map((t) => ({ store: t.store, name: t.table }))) ??
              Promise.resolve(true),
          }
        : {}),
    });
    return {
      sockets: result.sockets,
      changed: result.changed,
      outputs: result.outputs,
      notes: domainNotes(built.domains, result.outputs),
    };
  },
  // `outputs` and `connect` read a stack with DescribeStacks, which takes its id (ARN) as well.
  stackNameProblem: (stack, command) =>
    (command === "outputs" || command === "connect") && stack.startsWith("arn:")
      ? undefined
      : stackNameProblem(stack, command),
  preflight: (options) => {
    nodeVersionNotice(options.logger);
    return preflight({
      stack: options.stack,
      action: options.action,
      logger: options.logger,
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
    }).then((outcome) => ({
      kept: outcome.kept.map((t) => ({ store: t.store, name: t.table })),
      keptSecrets: outcome.keptSecrets.map((s) => ({ secret: s.secret, name: s.arn })),
    })),
  outputs: async (options) => {
    nodeVersionNotice(options.logger);
    const found = await describeDeployment({
      stack: options.stack,
      logger: options.logger,
      ...(options.region ? { region: options.region } : {}),
    });
    // A stack a deploy left stuck: what its status means, and the way out (one still changing
    // is said by its status, which outputs prints).
    const stuck = found.status.endsWith("_IN_PROGRESS")
      ? undefined
      : stuckStackProblem({ StackName: options.stack, StackStatus: found.status }, "up");
    if (stuck) options.logger.warn(stuck);
    return found;
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
  checkSecret: async (options) => {
    nodeVersionNotice(options.logger);
    await deployedSecretArn({
      stack: options.stack,
      ...(options.region ? { region: options.region } : {}),
      secret: options.secret,
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
