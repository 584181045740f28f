/**
 * `nitric-like up` and `down` on AWS, through CloudFormation and S3 only (so `AWS_ENDPOINT_URL`,
 * `AWS_ENDPOINT_URL_CLOUDFORMATION` and `AWS_ENDPOINT_URL_S3` point it at LocalStack):
 * 1. the artifact bucket, made once per account and region by a bootstrap stack;
 * 2. each function's zip uploaded under its content-hashed key, unless already there;
 * 3. a change set (CREATE or UPDATE), executed, with every resource event shown as it happens;
 * 4. the stack's outputs: each socket's wss URL.
 */
import { readFileSync } from "node:fs";
import {
  CloudFormationClient,
  CreateChangeSetCommand,
  CreateStackCommand,
  DeleteChangeSetCommand,
  DeleteStackCommand,
  DescribeChangeSetCommand,
  DescribeStackEventsCommand,
  DescribeStacksCommand,
  ExecuteChangeSetCommand,
  type Stack,
  type StackEvent,
} from "@aws-sdk/client-cloudformation";
import { HeadObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import type { Logger } from "@nitric-like/spec";

/** A deploy failure the user can act on; the message says what to do. */
export class DeployError extends Error {
  override readonly name = "DeployError";
  /** The CLI prints only the message. */
  readonly userFacing = true;
}

/** The stack that owns the artifact bucket of an account and region. */
export const BOOTSTRAP_STACK = "nitric-like-bootstrap";

const BOOTSTRAP_TEMPLATE = {
  AWSTemplateFormatVersion: "2010-09-09",
  Description: "nitric-like: the bucket that holds function zips for deploys in this account and region",
  Resources: {
    ArtifactBucket: {
      Type: "AWS::S3::Bucket",
      DeletionPolicy: "Retain",
      Properties: {
        PublicAccessBlockConfiguration: {
          BlockPublicAcls: true,
          BlockPublicPolicy: true,
          IgnorePublicAcls: true,
          RestrictPublicBuckets: true,
        },
        BucketEncryption: {
          ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: "AES256" } }],
        },
      },
    },
  },
  Outputs: { BucketName: { Value: { Ref: "ArtifactBucket" } } },
};

/** What deploy() needs. */
export interface DeployOptions {
  stack: string;
  region?: string;
  template: object;
  /** S3 keys (as in the template) and the local zips. */
  artifacts: { key: string; file: string }[];
  logger: Logger;
  /** How often to poll CloudFormation. @default NITRIC_LIKE_AWS_POLL_MS or 2000 */
  pollMs?: number;
}

/** How often to poll CloudFormation: NITRIC_LIKE_AWS_POLL_MS, else 2 s. */
function defaultPollMs(): number {
  const ms = Number(process.env.NITRIC_LIKE_AWS_POLL_MS);
  return Number.isFinite(ms) && ms > 0 ? ms : 2000;
}

/** A finished deploy. */
export interface DeployOutcome {
  stack: string;
  outputs: Record<string, string>;
  sockets: { name: string; url: string }[];
  changed: boolean;
}

/** Turns an AWS SDK failure into what the user should do about it. */
export function explain(error: unknown, doing: string): Error {
  if (error instanceof DeployError) return error;
  const e = error as { name?: string; message?: string; Code?: string };
  const name = e.name ?? "";
  const message = e.message ?? String(error);
  if (name === "CredentialsProviderError" || /Could not load credentials/i.test(message)) {
    return new DeployError(
      `${doing}: no AWS credentials found; set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or run "aws configure")`,
    );
  }
  if (/Region is missing/i.test(message)) {
    return new DeployError(`${doing}: no AWS region; set AWS_REGION or pass --region`);
  }
  if (["InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken", "UnrecognizedClientException"].includes(name)) {
    return new DeployError(
      `${doing}: AWS refused the credentials (${name}: ${message}); check AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and refresh expired session tokens`,
    );
  }
  if (name === "AccessDenied" || name === "AccessDeniedException" || /not authorized/i.test(message)) {
    return new DeployError(`${doing}: AWS denied it: ${message}; the credentials need that permission`);
  }
  return new DeployError(`${doing}: ${name ? `${name}: ` : ""}${message}`);
}

function clients(region: string | undefined) {
  const custom = Boolean(process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL);
  return {
    cfn: new CloudFormationClient(region ? { region } : {}),
    s3: new S3Client({ ...(region ? { region } : {}), ...(custom ? { forcePathStyle: true } : {}) }),
  };
}

async function describeStack(cfn: CloudFormationClient, stack: string): Promise<Stack | undefined> {
  try {
    return (await cfn.send(new DescribeStacksCommand({ StackName: stack }))).Stacks?.[0];
  } catch (error) {
    if (/does not exist/.test((error as Error).message ?? "")) return undefined;
    throw error;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const done = (status: string) => !status.endsWith("_IN_PROGRESS");
const failed = (status: string) => status.endsWith("_FAILED") || status.includes("ROLLBACK");

/** Polls a stack until it settles, logging each new event; throws a DeployError listing what failed. */
async function follow(
  cfn: CloudFormationClient,
  stack: string,
  logger: Logger,
  pollMs: number,
  since: Date,
  gone = false,
): Promise<Stack | undefined> {
  const seen = new Set<string>();
  const failures: string[] = [];
  for (;;) {
    // The status first, then the events: the events of the step that settled it are shown too.
    const current = await describeStack(cfn, stack);
    let events: StackEvent[] = [];
    try {
      events = (await cfn.send(new DescribeStackEventsCommand({ StackName: stack }))).StackEvents ?? [];
    } catch (error) {
      if (gone && /does not exist/.test((error as Error).message ?? "")) return undefined;
      throw error;
    }
    for (const e of [...events].reverse()) {
      if (!e.EventId || seen.has(e.EventId) || (e.Timestamp && e.Timestamp < since)) continue;
      seen.add(e.EventId);
      const reason = e.ResourceStatusReason ? ` ${e.ResourceStatusReason}` : "";
      logger.info(`  ${e.LogicalResourceId} ${e.ResourceType} ${e.ResourceStatus}${reason}`);
      if (e.ResourceStatus?.endsWith("_FAILED") && e.LogicalResourceId !== stack)
        failures.push(`${e.LogicalResourceId} (${e.ResourceType}): ${e.ResourceStatusReason ?? "no reason given"}`);
    }
    if (!current) {
      if (gone) return undefined;
      throw new DeployError(`stack "${stack}" disappeared while deploying`);
    }
    const status = current.StackStatus ?? "";
    if (done(status)) {
      if (gone && status === "DELETE_COMPLETE") return undefined;
      if (failed(status) || (gone && status !== "DELETE_COMPLETE")) {
        throw new DeployError(
          `stack "${stack}" ended ${status}${current.StackStatusReason ? ` (${current.StackStatusReason})` : ""}; what failed:\n${failures.map((f) => `  ${f}`).join("\n") || "  (no resource reported a reason)"}`,
        );
      }
      return current;
    }
    await sleep(pollMs);
  }
}

function outputsOf(stack: Stack): Record<string, string> {
  return Object.fromEntries((stack.Outputs ?? []).map((o) => [o.OutputKey ?? "", o.OutputValue ?? ""]));
}

/** The artifact bucket of this account and region, made on first use. */
async function artifactBucket(cfn: CloudFormationClient, logger: Logger, pollMs: number): Promise<string> {
  let stack = await describeStack(cfn, BOOTSTRAP_STACK);
  if (!stack) {
    logger.info(`creating the artifact bucket (stack ${BOOTSTRAP_STACK}, once per account and region)`);
    const since = new Date(Date.now() - 1000);
    await cfn.send(
      new CreateStackCommand({ StackName: BOOTSTRAP_STACK, TemplateBody: JSON.stringify(BOOTSTRAP_TEMPLATE) }),
    );
    stack = await follow(cfn, BOOTSTRAP_STACK, logger, pollMs, since);
  }
  const bucket = stack ? outputsOf(stack).BucketName : undefined;
  if (!bucket) {
    throw new DeployError(
      `stack ${BOOTSTRAP_STACK} has no BucketName output; delete it (aws cloudformation delete-stack --stack-name ${BOOTSTRAP_STACK}) and deploy again`,
    );
  }
  return bucket;
}

/** Deploys a built app. */
export async function deploy(options: DeployOptions): Promise<DeployOutcome> {
  const { stack, logger } = options;
  const pollMs = options.pollMs ?? defaultPollMs();
  const { cfn, s3 } = clients(options.region);
  try {
    let step = "finding the artifact bucket";
    try {
      await cfn.config.region();
    } catch (error) {
      throw explain(error, "deploy");
    }
    try {
      const bucket = await artifactBucket(cfn, logger, pollMs);
      for (const a of options.artifacts) {
        step = `uploading ${a.key}`;
        try {
          await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: a.key }));
          logger.info(`${a.key}: already uploaded`);
          continue;
        } catch (error) {
          const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
          if (status !== 404 && (error as Error).name !== "NotFound") throw error;
        }
        const body = readFileSync(a.file);
        logger.info(`uploading ${a.key} (${(body.length / 1024).toFixed(0)} KB)`);
        await s3.send(new PutObjectCommand({ Bucket: bucket, Key: a.key, Body: body, ContentType: "application/zip" }));
      }
      step = `creating a change set for stack "${stack}"`;
      const existing = await describeStack(cfn, stack);
      const type = existing && existing.StackStatus !== "REVIEW_IN_PROGRESS" ? "UPDATE" : "CREATE";
      const changeSetName = `nitric-like-${Date.now()}`;
      await cfn.send(
        new CreateChangeSetCommand({
          StackName: stack,
          ChangeSetName: changeSetName,
          ChangeSetType: type,
          TemplateBody: JSON.stringify(options.template),
          Capabilities: ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
          Parameters: [{ ParameterKey: "ArtifactBucket", ParameterValue: bucket }],
        }),
      );
      for (;;) {
        const cs = await cfn.send(new DescribeChangeSetCommand({ StackName: stack, ChangeSetName: changeSetName }));
        if (cs.Status === "CREATE_COMPLETE") {
          logger.info(`change set: ${cs.Changes?.length ?? 0} change(s) (${type.toLowerCase()})`);
          break;
        }
        if (cs.Status === "FAILED") {
          if (/didn't contain changes|No updates are to be performed/i.test(cs.StatusReason ?? "")) {
            await cfn.send(new DeleteChangeSetCommand({ StackName: stack, ChangeSetName: changeSetName }));
            const current = (await describeStack(cfn, stack)) as Stack;
            return { stack, outputs: outputsOf(current), sockets: socketsOf(current), changed: false };
          }
          throw new DeployError(`the change set for stack "${stack}" failed: ${cs.StatusReason ?? "no reason given"}`);
        }
        await sleep(pollMs);
      }
      step = `deploying stack "${stack}"`;
      const since = new Date(Date.now() - 1000);
      await cfn.send(new ExecuteChangeSetCommand({ StackName: stack, ChangeSetName: changeSetName }));
      const result = (await follow(cfn, stack, logger, pollMs, since)) as Stack;
      return { stack, outputs: outputsOf(result), sockets: socketsOf(result), changed: true };
    } catch (error) {
      throw explain(error, step);
    }
  } finally {
    cfn.destroy();
    s3.destroy();
  }
}

/** Each socket's URL, from the outputs the template writes (`Websocket<Name>`, "websocket <name>"). */
function socketsOf(stack: Stack): { name: string; url: string }[] {
  return (stack.Outputs ?? [])
    .filter((o) => o.OutputKey?.startsWith("Websocket") && o.Description?.startsWith("websocket "))
    .map((o) => ({ name: (o.Description ?? "").slice("websocket ".length), url: o.OutputValue ?? "" }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** A deployed stack as it is now: its status, socket URLs and outputs. */
export interface StackDescription {
  stack: string;
  status: string;
  outputs: Record<string, string>;
  sockets: { name: string; url: string }[];
}

/** Describes a deployed stack (DescribeStacks): what `up` printed, again. */
export async function describeDeployment(options: { stack: string; region?: string }): Promise<StackDescription> {
  const { cfn, s3 } = clients(options.region);
  s3.destroy();
  const doing = `describing stack "${options.stack}"`;
  try {
    try {
      await cfn.config.region();
    } catch (error) {
      throw explain(error, doing);
    }
    const stack = await describeStack(cfn, options.stack);
    if (!stack) {
      throw new DeployError(
        `${doing}: there is no such stack in this account and region; deploy it with "nitric-like up", or give its name with --stack and its region with --region`,
      );
    }
    return {
      stack: options.stack,
      status: stack.StackStatus ?? "UNKNOWN",
      outputs: outputsOf(stack),
      sockets: socketsOf(stack),
    };
  } catch (error) {
    throw explain(error, doing);
  } finally {
    cfn.destroy();
  }
}

/** Deletes a stack and waits until it is gone. */
export async function destroy(options: {
  stack: string;
  region?: string;
  logger: Logger;
  pollMs?: number;
}): Promise<void> {
  const { cfn, s3 } = clients(options.region);
  s3.destroy();
  const doing = `deleting stack "${options.stack}"`;
  try {
    try {
      await cfn.config.region();
    } catch (error) {
      throw explain(error, doing);
    }
    const stack = await describeStack(cfn, options.stack);
    if (!stack) throw new DeployError(`${doing}: there is no such stack in this account and region; nothing to delete`);
    const since = new Date(Date.now() - 1000);
    await cfn.send(new DeleteStackCommand({ StackName: options.stack }));
    await follow(cfn, options.stack, options.logger, options.pollMs ?? defaultPollMs(), since, true);
  } catch (error) {
    throw explain(error, doing);
  } finally {
    cfn.destroy();
  }
}
