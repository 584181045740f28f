/**
 * `nitric-like up` and `down` on AWS, through CloudFormation and S3 only (so `AWS_ENDPOINT_URL`,
 * `AWS_ENDPOINT_URL_CLOUDFORMATION` and `AWS_ENDPOINT_URL_S3` point it at LocalStack):
 * 1. the artifact bucket, made once per account and region by a bootstrap stack;
 * 2. each function's zip uploaded under its content-hashed key, unless already there;
 * 3. a change set (CREATE or UPDATE), executed, with every resource event shown as it happens;
 * 4. the stack's outputs: each socket's wss URL.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import {
  type Change,
  CloudFormationClient,
  CreateChangeSetCommand,
  CreateStackCommand,
  DeleteChangeSetCommand,
  DeleteStackCommand,
  DescribeChangeSetCommand,
  DescribeStackEventsCommand,
  DescribeStacksCommand,
  ExecuteChangeSetCommand,
  GetTemplateCommand,
  ListStackResourcesCommand,
  type Stack,
  type StackEvent,
  UpdateStackCommand,
} from "@aws-sdk/client-cloudformation";
import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { HeadObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { compareNames, type Logger, type SocketDomain } from "@nitric-like/spec";
import { SECRET_TAG } from "../build/template.js";
import {
  clientConfig,
  deployTimeouts,
  endpointVariable,
  failedCall,
  failedCallWords,
  SERVICE_LABELS,
  setChanging,
  watched,
} from "./calls.js";
import { CredentialLookupError, credentialSource } from "./credentials.js";
import type { domainProblems } from "./domains.js";
import { replacementNotes } from "./replacements.js";

/** A deploy failure the user can act on; the message says what to do. */
export class DeployError extends Error {
  override readonly name = "DeployError";
  /** The CLI prints only the message. */
  readonly userFacing = true;
  /** The exit code the CLI ends with: 1, or 130 when Ctrl-C stopped the command. */
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.exitCode = exitCode;
  }
}

/**
 * Ctrl-C (SIGINT) once CloudFormation has been asked to change a stack. Node's default ends the
 * process at once, saying nothing, while CloudFormation goes on with the change (or keeps the
 * change set made for it). Between start() and stop() the first Ctrl-C is noted instead: the
 * command stops at its next step and says where the stack is and what to do; a second ends the
 * process at once, with 130 as a shell gives.
 */
class Interrupt {
  /** Whether Ctrl-C was pressed. */
  signalled = false;
  private wake: (() => void) | undefined;
  private readonly onSignal = () => {
    if (this.signalled) process.exit(130);
    this.signalled = true;
    this.wake?.();
  };

  start(): this {
    process.on("SIGINT", this.onSignal);
    // A call that hangs meanwhile is given up soon after Ctrl-C (calls.ts), not waited for.
    setChanging(true);
    return this;
  }

  stop(): void {
    process.off("SIGINT", this.onSignal);
    setChanging(false);
  }

  /** Waits `ms`, or less when Ctrl-C is pressed meanwhile. */
  sleep(ms: number): Promise<void> {
    if (this.signalled) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
    });
  }
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
  /** The template's custom domains (checked with ACM and Route 53 before anything is uploaded). */
  domains?: readonly SocketDomain[];
  logger: Logger;
  /** How often to poll CloudFormation. @default NITRIC_LIKE_AWS_POLL_MS or 2000 */
  pollMs?: number;
  /**
   * Asked before an update deletes (or replaces) kv tables that hold items, as when a store is no
   * longer declared, with those tables; false stops the deploy with nothing changed. Without it the
   * tables go.
   */
  confirm?: (tables: KvTable[]) => Promise<boolean>;
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

/**
 * Turns an AWS SDK failure into what the user should do about it. `service` is the client's, as
 * its endpoint variable names it (`CLOUDWATCH_LOGS` for AWS_ENDPOINT_URL_CLOUDWATCH_LOGS), when
 * the caller knows it; `command` the one the user ran (`logs`, `secret put`), when it knows it.
 * `state` says what the command had done when a call got no answer (or Ctrl-C stopped it while
 * it waited), and what to run: the stack may be half way.
 */
export function explain(error: unknown, doing: string, service?: string, command?: string, state?: string): Error {
  if (error instanceof DeployError) return error;
  if (error instanceof CredentialLookupError) return new DeployError(`${doing}: ${error.message}`, error.exitCode);
  const call = failedCall(error);
  if (call) {
    const words = failedCallWords(error, call, endpointVariable(call.service, undefined));
    return new DeployError(`${doing}: ${words}${state ? `; ${state}` : ""}`, call.interrupted ? 130 : 1);
  }
  const e = error as { name?: string; message?: string; Code?: string };
  const name = e.name ?? "";
  const message = e.message ?? String(error);
  if (name === "CredentialsProviderError" || /Could not load credentials/i.test(message)) {
    // Set, but to a profile that is not there (a typo), or whose sign-in has lapsed: "set
    // AWS_PROFILE" would send the user round in a circle.
    const profile = process.env.AWS_PROFILE;
    if (profile) {
      const why = /Could not load credentials from any providers/i.test(message) ? "" : ` (${message})`;
      return new DeployError(
        `${doing}: AWS_PROFILE is ${JSON.stringify(profile)}, but no credentials were found for that profile${why}; check the name ("aws configure list-profiles" lists them), sign in again if it uses SSO ("aws sso login --profile ${profile}"), or unset AWS_PROFILE and set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`,
      );
    }
    return new DeployError(
      `${doing}: no AWS credentials found; set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or run "aws configure")`,
    );
  }
  const unreachable = unreachableEndpoint(error, service, command);
  if (unreachable) return new DeployError(`${doing}: ${unreachable}`);
  if (error instanceof NotAnAwsAnswer) return notAnAwsAnswer(doing, "", error.service);
  // The SDK could not parse the answer: a web page, or whatever else the endpoint is.
  if (/Deserialization error|XML parse error|is not valid JSON/i.test(message)) {
    const meta = error as { $metadata?: { httpStatusCode?: number }; $response?: { statusCode?: number } };
    const status = meta.$response?.statusCode ?? meta.$metadata?.httpStatusCode;
    return notAnAwsAnswer(doing, status === undefined ? "" : ` (HTTP ${status})`, service);
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

/**
 * Where a client's calls went instead of AWS, as `"<url>" (<variable>)`: `service`'s own endpoint
 * variable, else AWS_ENDPOINT_URL; for a service not known, every endpoint variable set, by URL.
 * Undefined when the calls went to AWS.
 */
function customEndpoints(service: string | undefined): string | undefined {
  const set = (
    service === undefined
      ? Object.keys(process.env)
          .filter((k) => /^AWS_ENDPOINT_URL(_[A-Z0-9_]+)?$/.test(k))
          .sort()
      : [[`AWS_ENDPOINT_URL_${service}`, "AWS_ENDPOINT_URL"].find((k) => process.env[k])]
  ).filter((k): k is string => k !== undefined && Boolean(process.env[k]));
  if (set.length === 0) return undefined;
  const byUrl = new Map<string, string[]>();
  for (const k of set) byUrl.set(process.env[k] as string, [...(byUrl.get(process.env[k] as string) ?? []), k]);
  return [...byUrl].map(([url, names]) => `${JSON.stringify(url)} (${names.join(", ")})`).join(", ");
}

/** An answer that parsed, but as nothing AWS sends (describeStack); explain() says what it means. */
class NotAnAwsAnswer extends Error {
  override readonly name = "NotAnAwsAnswer";
  constructor(readonly service: string) {
    super("not an AWS answer");
  }
}

/**
 * An answer the SDK read as nothing AWS sends (a web page, an empty document): most often an
 * AWS_ENDPOINT_URL pointing at something that is not LocalStack or moto. Said so, rather than
 * taken for a stack that is not there.
 */
export function notAnAwsAnswer(doing: string, detail = "", service?: string): DeployError {
  const endpoints = customEndpoints(service);
  return new DeployError(
    endpoints
      ? `${doing}: the endpoint ${endpoints} answered with something that is not an AWS answer${detail}; check that it is LocalStack or moto and working, or unset it to use AWS`
      : `${doing}: AWS's answer could not be read${detail}; check for a proxy between this machine and AWS (HTTPS_PROXY), then try again`,
  );
}

/** AWS's region names: `us-east-1`, `ap-southeast-4`, `us-gov-west-1`, `cn-north-1`. */
const REGION_PATTERN = /^[a-z]{2}(-[a-z]+)+-\d{1,2}$/;

/** The regions AWS had when this was written; a region outside it that does not resolve is named as unknown. */
const KNOWN_REGIONS = new Set([
  ...[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "ca-central-1",
    "ca-west-1",
  ],
  ...["mx-central-1", "sa-east-1", "af-south-1", "il-central-1", "me-south-1", "me-central-1", "cn-north-1"],
  ...["cn-northwest-1", "eu-central-1", "eu-central-2", "eu-west-1", "eu-west-2", "eu-west-3", "eu-south-1"],
  ...["eu-south-2", "eu-north-1", "ap-east-1", "ap-east-2", "ap-south-1", "ap-south-2", "ap-northeast-1"],
  ...["ap-northeast-2", "ap-northeast-3", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4"],
  ...["ap-southeast-5", "ap-southeast-6", "ap-southeast-7"],
]);

/**
 * When `error` is a host that does not resolve or answer: which region or endpoint, and the fix.
 * `service` is the failed call's (as explain() takes it), `command` the one the user ran.
 */
function unreachableEndpoint(
  error: unknown,
  service: string | undefined,
  command: string | undefined,
): string | undefined {
  const e = error as {
    code?: string;
    hostname?: string;
    port?: number;
    message?: string;
    cause?: { code?: string; hostname?: string; port?: number };
  };
  const code = e.code ?? e.cause?.code ?? /\b(ENOTFOUND|EAI_AGAIN|ECONNREFUSED)\b/.exec(e.message ?? "")?.[1];
  if (!code || !["ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED"].includes(code)) return undefined;
  const host = e.hostname ?? e.cause?.hostname ?? /(?:ENOTFOUND|EAI_AGAIN) (\S+)/.exec(e.message ?? "")?.[1];
  const port = e.port ?? e.cause?.port ?? Number(/ECONNREFUSED \S+:(\d+)/.exec(e.message ?? "")?.[1] ?? Number.NaN);
  const variable = endpointVariable(service, Number.isInteger(port) ? port : undefined);
  if (variable) {
    const name = SERVICE_LABELS.get(service ?? variable.slice("AWS_ENDPOINT_URL_".length));
    const what = name ? `the ${name} endpoint` : "the endpoint";
    const use = command ? `to run "nitric-like ${command}" against AWS` : "to use AWS";
    return `${what} ${JSON.stringify(process.env[variable])} (${variable}) does not answer (${code}); start it, or unset ${variable} ${use}`;
  }
  const region = host ? /^[a-z0-9-]+\.([a-z0-9-]+)\.amazonaws\.com/.exec(host)?.[1] : undefined;
  if (code === "ENOTFOUND" && region && !KNOWN_REGIONS.has(region)) {
    return `region ${JSON.stringify(region)} is unknown: ${host} does not exist; set AWS_REGION or --region to a region AWS has, such as "us-east-1" or "eu-west-1"`;
  }
  return `cannot reach AWS${host ? ` at ${host}` : ""} (${code}); check the network connection${region ? ` and the region ${JSON.stringify(region)}` : ""}`;
}

/** Why `name` cannot be a CloudFormation stack name, with the fix; undefined when it can. */
export function stackNameProblem(name: string, where = "up"): string | undefined {
  if (/^[a-zA-Z][-a-zA-Z0-9]*$/.test(name) && name.length <= 128) return undefined;
  const words = name
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
  let suggestion = words.join("-") || "my-app";
  if (!/^[a-z]/.test(suggestion)) suggestion = `app-${suggestion}`;
  suggestion = suggestion.slice(0, 128).replace(/-+$/, "");
  const why =
    name.length > 128
      ? `is ${name.length} characters long and CloudFormation allows 128`
      : "is not a CloudFormation stack name: it must start with a letter and hold only letters, digits and hyphens";
  return `${where}: stack name ${JSON.stringify(name)} ${why}; pass --stack ${suggestion}`;
}

/**
 * When a stack is in a state no update can leave, what it is and the command that gets out of it;
 * undefined when `up` (or `down`) can go on.
 */
export function stuckStackProblem(
  stack: Pick<Stack, "StackName" | "StackStatusReason"> & { StackStatus?: string | undefined },
  action: "up" | "down",
): string | undefined {
  const name = stack.StackName ?? "";
  const status = stack.StackStatus ?? "";
  const reason = stack.StackStatusReason ? ` (${stack.StackStatusReason})` : "";
  if (action === "up" && (status === "ROLLBACK_COMPLETE" || status === "ROLLBACK_FAILED")) {
    return `stack "${name}" is ${status}${reason}: its first deploy failed and CloudFormation can only delete it; run "nitric-like down --stack ${name}", then "nitric-like up" again`;
  }
  if (action === "up" && status === "UPDATE_ROLLBACK_FAILED") {
    return `stack "${name}" is UPDATE_ROLLBACK_FAILED${reason}: an update failed and so did undoing it; run "aws cloudformation continue-update-rollback --stack-name ${name}" (add --resources-to-skip with the ids of resources that cannot be rolled back), wait for UPDATE_ROLLBACK_COMPLETE, then run "nitric-like up" again (or delete it: "nitric-like down --stack ${name}")`;
  }
  if (action === "up" && status === "DELETE_FAILED") {
    return `stack "${name}" is DELETE_FAILED${reason}: an earlier delete stopped half way; run "nitric-like down --stack ${name}" to finish it (if it fails again, "aws cloudformation delete-stack --stack-name ${name} --retain-resources <the ids it names>"), then "nitric-like up"`;
  }
  if (status.endsWith("_IN_PROGRESS") && status !== "REVIEW_IN_PROGRESS") {
    // The AWS CLI's waiter for what is under way; each fails, or waits an hour, on the others' states.
    const waiter = status.startsWith("CREATE_")
      ? "stack-create-complete"
      : status.startsWith("DELETE_")
        ? "stack-delete-complete"
        : status.startsWith("UPDATE_") && !status.startsWith("UPDATE_ROLLBACK")
          ? "stack-update-complete"
          : undefined;
    const watch = waiter
      ? `"aws cloudformation wait ${waiter} --stack-name ${name}"`
      : `"nitric-like outputs --stack ${name}" shows its status`;
    return `stack "${name}" is ${status}: another deploy or delete is under way; wait for it to finish (${watch}, or watch the console), then run "nitric-like ${action}" again`;
  }
  return undefined;
}

/**
 * When `stack` was not made by nitric-like (another tool's, or the artifact bucket's own), why
 * `up` (which would replace its resources with the app's) or `down` (which would delete them)
 * must not touch it; undefined for one of ours. Ours: the template's description `nitric-like
 * project "<name>"`, or its ArtifactBucket parameter; a stack a change set has made but not run
 * (REVIEW_IN_PROGRESS) holds nothing yet.
 */
export function foreignStackProblem(
  stack: Pick<Stack, "StackName" | "Description" | "Parameters"> & { StackStatus?: string | undefined },
  action: "up" | "down",
): string | undefined {
  if (stack.StackStatus === "REVIEW_IN_PROGRESS") return undefined;
  if (stack.Description?.startsWith("nitric-like project ")) return undefined;
  if ((stack.Parameters ?? []).some((p) => p.ParameterKey === "ArtifactBucket")) return undefined;
  const name = stack.StackName ?? "";
  const what = stack.Description ? ` (${JSON.stringify(stack.Description)})` : "";
  const would = action === "up" ? "replace its resources with this app's" : "delete its resources";
  return `stack "${name}"${what} was not deployed by nitric-like, and "nitric-like ${action}" would ${would}; nothing was changed. Give this app a stack of its own with --stack <name> (or name: in the project file)${action === "down" ? `, or delete that stack with "aws cloudformation delete-stack --stack-name ${name}" if it is meant to go` : ""}`;
}

/** What to do after a deploy or delete ended in `status`. */
function wayOut(stack: string, status: string, gone: boolean): string {
  if (status === "ROLLBACK_COMPLETE" || status === "ROLLBACK_FAILED") {
    return `\nthe stack's first deploy failed and it can only be deleted: fix the cause above, run "nitric-like down --stack ${stack}", then "nitric-like up"`;
  }
  if (status === "UPDATE_ROLLBACK_COMPLETE") {
    return '\nthe stack is back as it was before this update: fix the cause above and run "nitric-like up" again';
  }
  if (status === "UPDATE_ROLLBACK_FAILED") {
    return `\nundoing the update failed too: run "aws cloudformation continue-update-rollback --stack-name ${stack}" (with --resources-to-skip for the resources named above), then "nitric-like up" again`;
  }
  if (status === "DELETE_FAILED" || gone) {
    return `\nfix the cause above (e.g. empty a bucket or remove what depends on a resource) and run "nitric-like down --stack ${stack}" again, or keep what cannot be deleted: "aws cloudformation delete-stack --stack-name ${stack} --retain-resources <the ids above>"`;
  }
  return "";
}

/** Templates up to this size go inline (TemplateBody); larger ones through the artifact bucket. */
export const MAX_INLINE_TEMPLATE_BYTES = 51_200;

/**
 * The https URL CloudFormation reads an object of the artifact bucket from: S3's own
 * virtual-hosted form, also with AWS_ENDPOINT_URL set (emulators such as moto and LocalStack
 * read these URLs from their own S3; the bootstrap stack's bucket names have no dots).
 */
function objectUrl(bucket: string, key: string, region: string): string {
  const suffix = region.startsWith("cn-") ? "amazonaws.com.cn" : "amazonaws.com";
  return `https://${bucket}.s3.${region}.${suffix}/${key}`;
}

/** Whether a CloudFormation answer or failure says the update would change nothing. */
function noChanges(text: string | undefined): boolean {
  return /didn't contain changes|No updates are to be performed/i.test(text ?? "");
}

/**
 * On a Node before 22 the AWS SDK's first client prints an eight-line process warning (with a hint
 * about --trace-warnings that is no use here). `up`, `down` and `outputs` say it in one line of
 * their own before they make a client, and turn the SDK's off (its documented switch). Said nothing
 * when the user has turned it off already.
 */
export function nodeVersionNotice(logger: Logger, version = process.version): void {
  if (process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED === "true") return;
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";
  const major = Number(/^v(\d+)\./.exec(version)?.[1]);
  if (major < 22) {
    logger.warn(
      `Node ${version}: the AWS SDK releases after the first week of January 2027 need Node 22 or later; use Node 22 (your functions run on it in Lambda)`,
    );
  }
}

/**
 * What `up` and `down` check before bundling: the stack name, a region AWS has, credentials AWS
 * accepts (one DescribeStacks call), and a stack stuck in a state only the user can clear.
 */
export async function preflight(options: {
  stack: string;
  region?: string;
  action: "up" | "down";
  logger?: Logger;
}): Promise<{ region: string }> {
  const problem = stackNameProblem(options.stack, options.action);
  if (problem) throw new DeployError(problem);
  const { cfn, s3 } = clients(options.region, options.logger);
  s3.destroy();
  const doing = `${options.action}: checking stack "${options.stack}"`;
  const state = `nothing was changed; run "nitric-like ${options.action}" again`;
  try {
    let region: string;
    try {
      region = await cfn.config.region();
      // Said before a lookup that goes over the network (SSO, STS, a credential process, instance
      // metadata), which can take seconds, or fail after the timeouts; not for keys at hand.
      const source = await credentialSource();
      if (source.kind !== "environment" && source.kind !== "keys")
        options.logger?.info(`resolving AWS credentials: ${source.words}`);
      await cfn.config.credentials();
    } catch (error) {
      throw explain(error, options.action, undefined, options.action);
    }
    if (!REGION_PATTERN.test(region)) {
      throw new DeployError(
        `${options.action}: region ${JSON.stringify(region)} is not an AWS region name; set AWS_REGION or --region to one such as "us-east-1" or "eu-west-1"`,
      );
    }
    const existing = await describeStack(cfn, options.stack);
    const foreign = existing ? foreignStackProblem(existing, options.action) : undefined;
    if (foreign) throw new DeployError(`${options.action}: ${foreign}`);
    const stuck = existing ? stuckStackProblem(existing, options.action) : undefined;
    if (stuck) throw new DeployError(`${options.action}: ${stuck}`);
    return { region };
  } catch (error) {
    throw explain(error, doing, undefined, options.action, state);
  } finally {
    cfn.destroy();
  }
}

/** The CloudFormation, S3 and DynamoDB clients of a region (the SDK's own configuration when undefined). */
function clients(region: string | undefined, logger?: Logger) {
  const timeouts = deployTimeouts();
  const config = clientConfig(region, timeouts, logger);
  const custom = Boolean(process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL);
  return {
    cfn: watched(new CloudFormationClient(config), "CLOUDFORMATION", timeouts, logger),
    s3: watched(new S3Client({ ...config, ...(custom ? { forcePathStyle: true } : {}) }), "S3", timeouts, logger),
    /** DynamoDB's, loaded and made when asked for. */
    ddb: new LazyDynamoDb(async () => {
      const { DynamoDBClient } = await import("@aws-sdk/client-dynamodb");
      return watched(new DynamoDBClient(config), "DYNAMODB", timeouts, logger);
    }),
  };
}

/**
 * DynamoDB's client, loaded at the first `get`: only a deploy that deletes a kv table, or a delete
 * of a stack that has some, scans one; every other command would pay for loading it at start.
 */
class LazyDynamoDb {
  private made: Promise<DynamoDBClient> | undefined;
  constructor(private readonly make: () => Promise<DynamoDBClient>) {}
  get(): Promise<DynamoDBClient> {
    this.made ??= this.make();
    return this.made;
  }
  destroy(): void {
    this.made?.then(
      (client) => client.destroy(),
      () => {},
    );
  }
}

/** A stack as DescribeStacks has it; undefined when there is no such stack. */
async function describeStack(cfn: CloudFormationClient, stack: string): Promise<Stack | undefined> {
  let found: Stack | undefined;
  try {
    found = (await cfn.send(new DescribeStacksCommand({ StackName: stack }))).Stacks?.[0];
  } catch (error) {
    if (/does not exist/.test((error as Error).message ?? "")) return undefined;
    throw error;
  }
  // CloudFormation answers a stack that is not there with an error, never with no stack: this
  // answer came from something else (an HTML page parses as an empty one).
  if (found?.StackName === undefined) throw new NotAnAwsAnswer("CLOUDFORMATION");
  return found;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const done = (status: string) => !status.endsWith("_IN_PROGRESS");
const failed = (status: string) => status.endsWith("_FAILED") || status.includes("ROLLBACK");

/** What stops follow() when Ctrl-C is pressed: the Interrupt, and the error to throw for the stack's status. */
interface Stoppable {
  interrupt: Interrupt;
  stopped: (status: string) => DeployError;
}

/**
 * Polls a stack until it settles, logging each new event; throws a DeployError listing what failed
 * (or, on Ctrl-C, `stop`'s, once the events so far are shown).
 */
async function follow(
  cfn: CloudFormationClient,
  stack: string,
  logger: Logger,
  pollMs: number,
  since: Date,
  gone = false,
  stop?: Stoppable,
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
          `stack "${stack}" ended ${status}${current.StackStatusReason ? ` (${current.StackStatusReason})` : ""}; what failed:\n${failures.map((f) => `  ${f}`).join("\n") || "  (no resource reported a reason)"}${wayOut(stack, status, gone)}`,
        );
      }
      return current;
    }
    if (stop?.interrupt.signalled) throw stop.stopped(status);
    await (stop ? stop.interrupt.sleep(pollMs) : sleep(pollMs));
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
  } else if (stack.StackStatus?.endsWith("_IN_PROGRESS") && stack.StackStatus !== "REVIEW_IN_PROGRESS") {
    // Another up making it now, or one stopped (Ctrl-C) while it made it: CloudFormation goes on.
    logger.info(`waiting for stack ${BOOTSTRAP_STACK} (the artifact bucket): it is ${stack.StackStatus}`);
    stack = await follow(cfn, BOOTSTRAP_STACK, logger, pollMs, new Date());
  }
  const bucket = stack ? outputsOf(stack).BucketName : undefined;
  if (!bucket) {
    throw new DeployError(
      `stack ${BOOTSTRAP_STACK}${stack?.StackStatus ? ` is ${stack.StackStatus} and` : ""} has no BucketName output; delete it (aws cloudformation delete-stack --stack-name ${BOOTSTRAP_STACK}) and deploy again`,
    );
  }
  return bucket;
}

/**
 * The template as CloudFormation takes it: inline up to MAX_INLINE_TEMPLATE_BYTES, else uploaded to
 * the artifact bucket under a content-hashed key and passed as TemplateURL.
 */
async function placeTemplate(
  s3: S3Client,
  bucket: string,
  stack: string,
  template: object,
  region: string,
  logger: Logger,
): Promise<{ TemplateBody: string } | { TemplateURL: string }> {
  const body = JSON.stringify(template);
  const bytes = Buffer.byteLength(body);
  if (bytes <= MAX_INLINE_TEMPLATE_BYTES) return { TemplateBody: body };
  const key = `nitric-like/${stack}/template-${createHash("sha256").update(body).digest("hex").slice(0, 16)}.json`;
  const url = { TemplateURL: objectUrl(bucket, key, region) };
  try {
    await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    logger.info(`${key}: already uploaded`);
    return url;
  } catch (error) {
    const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status !== 404 && (error as Error).name !== "NotFound") throw error;
  }
  logger.info(
    `uploading the template to ${key} (${(bytes / 1024).toFixed(0)} KB, over the ${MAX_INLINE_TEMPLATE_BYTES} bytes CloudFormation takes inline)`,
  );
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: "application/json" }));
  return url;
}

/** Deploys a built app. */
export async function deploy(options: DeployOptions): Promise<DeployOutcome> {
  const { stack, logger } = options;
  const pollMs = options.pollMs ?? defaultPollMs();
  const { cfn, s3, ddb } = clients(options.region, logger);
  const interrupt = new Interrupt();
  /**
   * What this deploy has done so far, and what to run, for a call that gets no answer (or that
   * Ctrl-C stops while it waits): said with the failure, as the stack may be half way.
   */
  let state = `nothing was changed; run "nitric-like up" again`;
  try {
    let step = "finding the artifact bucket";
    let region: string;
    try {
      region = await cfn.config.region();
    } catch (error) {
      throw explain(error, "deploy", undefined, "up");
    }
    // Before anything is uploaded: what CloudFormation would fail only once the stack is half made.
    let domains: Awaited<ReturnType<typeof domainProblems>>;
    try {
      // ACM's and Route 53's clients load only for a stack with custom domains.
      domains =
        options.domains !== undefined && options.domains.length > 0
          ? await (await import("./domains.js")).domainProblems(options.domains, stack, region, logger)
          : { problems: [], warnings: [] };
    } catch (error) {
      throw explain(error, "checking the custom domains", undefined, "up", state);
    }
    for (const warning of domains.warnings) logger.warn(warning);
    if (domains.problems.length > 0) throw new DeployError(domains.problems.join("\n"));
    try {
      state = `stack "${stack}" was not changed (the artifact bucket's stack, ${BOOTSTRAP_STACK}, may be under way, and CloudFormation finishes it without this command); run "nitric-like up" again: it waits for that stack`;
      const bucket = await artifactBucket(cfn, logger, pollMs);
      for (const a of options.artifacts) {
        step = `uploading ${a.key}`;
        state = `stack "${stack}" was not changed (the function zips uploaded so far stay in the artifact bucket, and are not uploaded again); run "nitric-like up" again`;
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
      const foreign = existing ? foreignStackProblem(existing, "up") : undefined;
      if (foreign) throw new DeployError(`up: ${foreign}`);
      const stuck = existing ? stuckStackProblem(existing, "up") : undefined;
      if (stuck) throw new DeployError(stuck);
      const type = existing && existing.StackStatus !== "REVIEW_IN_PROGRESS" ? "UPDATE" : "CREATE";
      const changeSetName = `nitric-like-${Date.now()}`;
      const templateSource = await placeTemplate(
        s3,
        bucket,
        stack,
        options.template,
        await cfn.config.region(),
        logger,
      );
      const unchanged = async () => {
        logger.info(`stack "${stack}": no changes to deploy`);
        await cfn
          .send(new DeleteChangeSetCommand({ StackName: stack, ChangeSetName: changeSetName }))
          .catch(() => undefined);
        const current = (await describeStack(cfn, stack)) as Stack;
        return { stack, outputs: outputsOf(current), sockets: socketsOf(current), changed: false };
      };
      // From here CloudFormation holds what this deploy made: Ctrl-C stops it at the next step
      // and says what is left (see Interrupt).
      interrupt.start();
      // Before the change set is executed, the stack is as it was: the change set is deleted, and
      // so is the empty stack (REVIEW_IN_PROGRESS) a first deploy's change set made.
      const stopBeforeExecuting = async () => {
        await cfn
          .send(new DeleteChangeSetCommand({ StackName: stack, ChangeSetName: changeSetName }))
          .catch(() => undefined);
        if (!existing) await cfn.send(new DeleteStackCommand({ StackName: stack })).catch(() => undefined);
        return new DeployError(
          `up: stopped (Ctrl-C) before stack "${stack}" was changed: nothing was deployed${existing ? "; it is as it was" : ""}`,
          130,
        );
      };
      state = `stack "${stack}" was not changed, but change set ${changeSetName} may be left on it${existing ? "" : " (with the empty stack, REVIEW_IN_PROGRESS, that a first deploy's change set makes)"}; run "nitric-like up" again, which deploys over it${existing ? "" : `, or "nitric-like down --stack ${stack}" to remove it`}`;
      try {
        await cfn.send(
          new CreateChangeSetCommand({
            StackName: stack,
            ChangeSetName: changeSetName,
            ChangeSetType: type,
            ...templateSource,
            Capabilities: ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
            Parameters: [{ ParameterKey: "ArtifactBucket", ParameterValue: bucket }],
          }),
        );
      } catch (error) {
        // Some CloudFormation implementations (moto) refuse a no-op change set outright.
        if (noChanges((error as Error).message)) return await unchanged();
        throw error;
      }
      let changes: Change[] = [];
      for (;;) {
        const cs = await cfn.send(new DescribeChangeSetCommand({ StackName: stack, ChangeSetName: changeSetName }));
        if (cs.Status === "CREATE_COMPLETE") {
          changes = [...(cs.Changes ?? []), ...(await moreChanges(cfn, stack, changeSetName, cs.NextToken))];
          logger.info(`change set: ${changes.length} change(s) (${type.toLowerCase()})`);
          break;
        }
        if (cs.Status === "FAILED") {
          if (noChanges(cs.StatusReason)) return await unchanged();
          throw new DeployError(`the change set for stack "${stack}" failed: ${cs.StatusReason ?? "no reason given"}`);
        }
        if (interrupt.signalled) throw await stopBeforeExecuting();
        await interrupt.sleep(pollMs);
      }
      if (interrupt.signalled) throw await stopBeforeExecuting();
      // A kv table the update deletes (its store no longer declared) or replaces loses its items
      // for good: asked first, as down asks.
      const lost = type === "UPDATE" && options.confirm ? await tablesLost(cfn, ddb, stack, changes) : [];
      if (lost.length > 0 && options.confirm) {
        let go: boolean;
        try {
          go = await options.confirm(lost);
        } catch (error) {
          await cfn
            .send(new DeleteChangeSetCommand({ StackName: stack, ChangeSetName: changeSetName }))
            .catch(() => undefined);
          const code = (error as { exitCode?: unknown }).exitCode;
          throw new DeployError((error as Error).message, typeof code === "number" ? code : 1);
        }
        if (!go) {
          await cfn
            .send(new DeleteChangeSetCommand({ StackName: stack, ChangeSetName: changeSetName }))
            .catch(() => undefined);
          throw new DeployError("up: nothing was deployed");
        }
      }
      // A secret the update deletes is scheduled for deletion, restorable for a while: said, not asked.
      const secretsGone = type === "UPDATE" ? await secretsLost(cfn, stack, changes) : [];
      if (secretsGone.length > 0) {
        const plural = secretsGone.length === 1 ? "" : "s";
        logger.warn(
          `this deploy deletes secret${plural} ${secretsGone.map((s) => `"${s.secret}" (${s.arn})`).join(", ")}, which no service declares any more: Secrets Manager keeps a deleted secret restorable for its recovery window (aws secretsmanager restore-secret --secret-id <arn>); declare it again to keep it`,
        );
      }
      // A function, API or custom domain the update replaces: said before it is, with what it
      // means for clients (an API's URL changes).
      if (type === "UPDATE") for (const line of replacementNotes(changes, options.template)) logger.warn(line);
      if (interrupt.signalled) throw await stopBeforeExecuting();
      step = `deploying stack "${stack}"`;
      state = `stack "${stack}" may be changing: CloudFormation goes on with the deploy without this command; "nitric-like outputs --stack ${stack}" shows its status, and once it is no longer *_IN_PROGRESS, run "nitric-like up" again to see it through${
        type === "CREATE"
          ? ` (or "nitric-like down --stack ${stack}" to undo it)`
          : ` (to stop it meanwhile, "aws cloudformation cancel-update-stack --stack-name ${stack}" rolls it back)`
      }`;
      const since = new Date(Date.now() - 1000);
      try {
        await cfn.send(new ExecuteChangeSetCommand({ StackName: stack, ChangeSetName: changeSetName }));
      } catch (error) {
        // ... or accept it and refuse to execute it.
        if (noChanges((error as Error).message)) return await unchanged();
        throw error;
      }
      const stopped = (status: string) =>
        new DeployError(
          `up: stopped following stack "${stack}" (Ctrl-C) while it is ${status}; CloudFormation goes on with the deploy without this command: "nitric-like outputs" shows its status, and its URLs once it is done; ${
            type === "CREATE"
              ? `to undo it, run "nitric-like down" once it has finished`
              : `to stop it, "aws cloudformation cancel-update-stack --stack-name ${stack}" rolls it back to the stack as it was`
          }`,
          130,
        );
      const result = (await follow(cfn, stack, logger, pollMs, since, false, { interrupt, stopped })) as Stack;
      return { stack, outputs: outputsOf(result), sockets: socketsOf(result), changed: true };
    } catch (error) {
      throw explain(error, step, undefined, "up", state);
    }
  } finally {
    interrupt.stop();
    cfn.destroy();
    s3.destroy();
    ddb.destroy();
  }
}

/** The changes of a change set past its first page. */
async function moreChanges(
  cfn: CloudFormationClient,
  stack: string,
  changeSetName: string,
  next: string | undefined,
): Promise<Change[]> {
  const out: Change[] = [];
  while (next) {
    const page = await cfn.send(
      new DescribeChangeSetCommand({ StackName: stack, ChangeSetName: changeSetName, NextToken: next }),
    );
    out.push(...(page.Changes ?? []));
    next = page.NextToken;
  }
  return out;
}

/** The stack's kv tables that `changes` delete or replace and that hold items. */
async function tablesLost(
  cfn: CloudFormationClient,
  ddb: LazyDynamoDb,
  stack: string,
  changes: Change[],
): Promise<KvTable[]> {
  const gone = deletedBy(changes, "AWS::DynamoDB::Table");
  if (gone.size === 0) return [];
  const { tables } = await kvTablesOf(cfn, stack);
  const lost: KvTable[] = [];
  for (const t of tables) if (gone.has(t.logicalId) && (await holdsItems(ddb, t.table))) lost.push(t);
  return lost;
}

/** The stack's secrets that `changes` delete or replace. */
async function secretsLost(cfn: CloudFormationClient, stack: string, changes: Change[]): Promise<DeployedSecret[]> {
  const gone = deletedBy(changes, "AWS::SecretsManager::Secret");
  if (gone.size === 0) return [];
  const { secrets } = await kvTablesOf(cfn, stack);
  return secrets.filter((s) => gone.has(s.logicalId));
}

/** The logical ids of the resources of `type` that `changes` delete: removed, or replaced by new ones. */
function deletedBy(changes: Change[], type: string): Set<string> {
  const ids = new Set<string>();
  for (const { ResourceChange: r } of changes) {
    if (r?.ResourceType !== type || r.LogicalResourceId === undefined) continue;
    if (r.Action === "Remove" || (r.Action === "Modify" && r.Replacement === "True")) ids.add(r.LogicalResourceId);
  }
  return ids;
}

/** Each socket's URL, from the outputs the template writes (`Websocket<Name>`, "websocket <name>"). */
function socketsOf(stack: Stack): { name: string; url: string }[] {
  return (stack.Outputs ?? [])
    .filter((o) => o.OutputKey?.startsWith("Websocket") && o.Description?.startsWith("websocket "))
    .map((o) => ({ name: (o.Description ?? "").slice("websocket ".length), url: o.OutputValue ?? "" }))
    .sort((a, b) => compareNames(a.name, b.name));
}

/** A deployed stack as it is now: its status, socket URLs and outputs. */
export interface StackDescription {
  stack: string;
  status: string;
  outputs: Record<string, string>;
  sockets: { name: string; url: string }[];
}

/**
 * A deployed stack as DescribeStacks has it, for `doing` (which every error names); a DeployError
 * ending with `missing` (what to do) when there is no such stack.
 */
export async function deployedStack(
  options: { stack: string; region?: string; command?: string; logger?: Logger },
  doing: string,
  missing: string,
): Promise<Stack> {
  // A name no stack can have (from --stack): said so, not that the stack is missing. A stack's id
  // (its ARN) names it too.
  if (!options.stack.startsWith("arn:") && stackNameProblem(options.stack) !== undefined) {
    throw new DeployError(
      `${doing}: no stack can be named ${JSON.stringify(options.stack)}: a CloudFormation stack name starts with a letter and holds only letters, digits and hyphens, at most 128; check --stack`,
    );
  }
  const { cfn, s3 } = clients(options.region, options.logger);
  s3.destroy();
  try {
    try {
      await cfn.config.region();
    } catch (error) {
      throw explain(error, doing, undefined, options.command);
    }
    const stack = await describeStack(cfn, options.stack);
    if (!stack || stack.StackStatus === "DELETE_COMPLETE") throw new DeployError(`${doing}: ${missing}`);
    return stack;
  } catch (error) {
    throw explain(error, doing, undefined, options.command);
  } finally {
    cfn.destroy();
  }
}

/** Describes a deployed stack (DescribeStacks): what `up` printed, again. */
export async function describeDeployment(options: {
  stack: string;
  region?: string;
  logger?: Logger;
}): Promise<StackDescription> {
  const stack = await deployedStack(
    options,
    `describing stack "${options.stack}"`,
    `there is no such stack in this account and region; deploy it with "nitric-like up", or give its name with --stack and its region with --region`,
  );
  return {
    stack: options.stack,
    status: stack.StackStatus ?? "UNKNOWN",
    outputs: outputsOf(stack),
    sockets: socketsOf(stack),
  };
}

/** A kv store's table in a deployed stack. */
export interface KvTable {
  /** The store's name in the app. */
  store: string;
  /** The table's name in DynamoDB. */
  table: string;
  /** The table's logical id in the template. */
  logicalId: string;
}

/** A secret in a deployed stack. */
export interface DeployedSecret {
  /** The secret's name in the app. */
  secret: string;
  /** Its ARN (the resource's physical id). */
  arn: string;
  /** Its logical id in the template. */
  logicalId: string;
}

/** What `down` did. */
export interface DestroyOutcome {
  /** The kv tables left in place (`keepData`), with their names. */
  kept: KvTable[];
  /** The secrets left in place (`keepData`), with their ARNs. */
  keptSecrets: DeployedSecret[];
}

/** What destroy() needs. */
export interface DestroyRequest {
  stack: string;
  region?: string;
  logger: Logger;
  pollMs?: number;
  /**
   * Keep every kv table and secret: they are set to `DeletionPolicy: Retain` by a stack update
   * (CloudFormation reads the policy from the deployed template only), then the stack is deleted
   * without them.
   */
  keepData?: boolean;
  /**
   * Asked before deleting when kv tables hold items, with those tables; false stops the delete
   * (nothing is deleted). Without it the tables are deleted.
   */
  confirm?: (tables: KvTable[]) => Promise<boolean>;
}

/** The tag a kv table carries (template.ts): its store's name. */
const KV_TAG = "nitric-like:kv";
/** The tag `down --keep-data` puts on the tables it keeps: the stack they came from. */
export const KEPT_TAG = "nitric-like:kept-from-stack";

type TemplateResource = {
  Type?: string;
  Properties?: { Tags?: { Key: string; Value: string }[] } & Record<string, unknown>;
  DeletionPolicy?: string;
  UpdateReplacePolicy?: string;
};

/** The deployed template (as last deployed), its kv tables with their DynamoDB names and its secrets with their ARNs. */
async function kvTablesOf(
  cfn: CloudFormationClient,
  stack: string,
): Promise<{
  template: { Resources?: Record<string, TemplateResource> } & Record<string, unknown>;
  tables: KvTable[];
  secrets: DeployedSecret[];
}> {
  const body = (await cfn.send(new GetTemplateCommand({ StackName: stack, TemplateStage: "Original" }))).TemplateBody;
  let template: { Resources?: Record<string, TemplateResource> } & Record<string, unknown>;
  try {
    template = JSON.parse(body ?? "{}");
  } catch {
    // Not a template `up` wrote (ours are JSON): no kv table or secret of ours in it.
    return { template: {}, tables: [], secrets: [] };
  }
  const stores = new Map<string, string>();
  const secretNames = new Map<string, string>();
  for (const [id, r] of Object.entries(template.Resources ?? {})) {
    if (r.Type === "AWS::DynamoDB::Table") {
      const store = r.Properties?.Tags?.find((t) => t.Key === KV_TAG)?.Value;
      if (store !== undefined) stores.set(id, store);
    } else if (r.Type === "AWS::SecretsManager::Secret") {
      const secret = r.Properties?.Tags?.find((t) => t.Key === SECRET_TAG)?.Value;
      if (secret !== undefined) secretNames.set(id, secret);
    }
  }
  const tables: KvTable[] = [];
  const secrets: DeployedSecret[] = [];
  if (stores.size === 0 && secretNames.size === 0) return { template, tables, secrets };
  let next: string | undefined;
  do {
    const page = await cfn.send(
      new ListStackResourcesCommand({ StackName: stack, ...(next ? { NextToken: next } : {}) }),
    );
    for (const r of page.StackResourceSummaries ?? []) {
      if (!r.PhysicalResourceId || r.ResourceStatus === "DELETE_COMPLETE") continue;
      const store = stores.get(r.LogicalResourceId ?? "");
      if (store !== undefined)
        tables.push({ store, table: r.PhysicalResourceId, logicalId: r.LogicalResourceId ?? "" });
      const secret = secretNames.get(r.LogicalResourceId ?? "");
      if (secret !== undefined)
        secrets.push({ secret, arn: r.PhysicalResourceId, logicalId: r.LogicalResourceId ?? "" });
    }
    next = page.NextToken;
  } while (next);
  return {
    template,
    tables: tables.sort((a, b) => compareNames(a.store, b.store)),
    secrets: secrets.sort((a, b) => compareNames(a.secret, b.secret)),
  };
}

/**
 * Whether a table holds an item: a Scan of one item (half a read unit), not DescribeTable's
 * ItemCount, which AWS refreshes only every six hours. A table that is not there holds nothing.
 */
async function holdsItems(lazy: LazyDynamoDb, table: string): Promise<boolean> {
  const ddb = await lazy.get();
  const { ScanCommand } = await import("@aws-sdk/client-dynamodb");
  let start: Record<string, never> | undefined;
  // Without a filter a page of one holds the table's first item; a few pages guard the odd empty one.
  for (let page = 0; page < 5; page++) {
    try {
      const out = await ddb.send(
        new ScanCommand({ TableName: table, Limit: 1, ...(start ? { ExclusiveStartKey: start } : {}) }),
      );
      if ((out.Items?.length ?? 0) > 0 || (out.Count ?? 0) > 0) return true;
      if (!out.LastEvaluatedKey) return false;
      start = out.LastEvaluatedKey as Record<string, never>;
    } catch (error) {
      if ((error as Error).name === "ResourceNotFoundException") return false;
      throw error;
    }
  }
  return true;
}

/**
 * Deletes a stack and waits until it is gone. Its kv tables and secrets go with it, unless
 * `keepData`; when tables hold items, `confirm` is asked first. A secret deleted with the stack is
 * scheduled for deletion by Secrets Manager (its recovery window), so it is named in the log with
 * the way to keep it.
 */
export async function destroy(options: DestroyRequest): Promise<DestroyOutcome> {
  const { cfn, s3, ddb } = clients(options.region, options.logger);
  const doing = `deleting stack "${options.stack}"`;
  /** What this delete has done so far, and what to run (as deploy's). */
  let state = `nothing was deleted; run "nitric-like down" again`;
  const pollMs = options.pollMs ?? defaultPollMs();
  const interrupt = new Interrupt();
  try {
    try {
      await cfn.config.region();
    } catch (error) {
      throw explain(error, doing, undefined, "down");
    }
    const stack = await describeStack(cfn, options.stack);
    if (!stack) throw new DeployError(`${doing}: there is no such stack in this account and region; nothing to delete`);
    const foreign = foreignStackProblem(stack, "down");
    if (foreign) throw new DeployError(`down: ${foreign}`);
    const status = stack.StackStatus ?? "";
    // A first deploy rolled back has deleted its tables and secrets already.
    const { template, tables, secrets } =
      status === "ROLLBACK_COMPLETE" ? { template: {}, tables: [], secrets: [] } : await kvTablesOf(cfn, options.stack);
    let retain: string[] | undefined;
    const kept = [...tables.map((t) => t.logicalId), ...secrets.map((s) => s.logicalId)];
    if (options.keepData && kept.length > 0) {
      if (status === "DELETE_FAILED") {
        // The one state in which DeleteStack itself may leave resources behind.
        retain = kept;
      } else {
        interrupt.start();
        state = `stack "${options.stack}" may be being updated to keep its kv tables and secrets, and is not deleted; once it is no longer UPDATE_IN_PROGRESS ("nitric-like outputs --stack ${options.stack}" shows its status), run "nitric-like down --keep-data" again`;
        await retainTables(cfn, s3, stack, template, kept, options.logger, pollMs, interrupt);
        if (interrupt.signalled) {
          throw new DeployError(
            `down: stopped (Ctrl-C) once stack "${options.stack}" was updated to keep its kv tables and secrets; it is not deleted: run "nitric-like down --keep-data" again to delete it`,
            130,
          );
        }
      }
    } else if (!options.keepData && tables.length > 0 && options.confirm) {
      const held: KvTable[] = [];
      for (const t of tables) if (await holdsItems(ddb, t.table)) held.push(t);
      if (held.length > 0) {
        let go: boolean;
        try {
          go = await options.confirm(held);
        } catch (error) {
          // The caller's refusal, said as it said it, with its exit code (130 for Ctrl-C).
          const code = (error as { exitCode?: unknown }).exitCode;
          throw new DeployError((error as Error).message, typeof code === "number" ? code : 1);
        }
        if (!go) throw new DeployError("down: nothing was deleted");
      }
    }
    if (!options.keepData && secrets.length > 0) {
      options.logger.warn(
        `deleting secret${secrets.length === 1 ? "" : "s"} ${secrets.map((s) => `"${s.secret}"`).join(", ")} with the stack (Secrets Manager keeps a deleted secret restorable for its recovery window: aws secretsmanager restore-secret --secret-id <arn>); "down --keep-data" keeps secrets and kv tables`,
      );
    }
    const since = new Date(Date.now() - 1000);
    interrupt.start();
    state = `the delete of stack "${options.stack}" may be under way: CloudFormation goes on with it without this command; "nitric-like outputs --stack ${options.stack}" says whether the stack is still there, and if it is, once it is no longer DELETE_IN_PROGRESS, run "nitric-like down" again`;
    await cfn.send(
      new DeleteStackCommand({ StackName: options.stack, ...(retain ? { RetainResources: retain } : {}) }),
    );
    const stopped = (now: string) =>
      new DeployError(
        `down: stopped following stack "${options.stack}" (Ctrl-C) while it is ${now}; CloudFormation goes on deleting it without this command: "nitric-like outputs" says whether it is still there`,
        130,
      );
    await follow(cfn, options.stack, options.logger, pollMs, since, true, { interrupt, stopped });
    if (options.keepData) {
      for (const s of secrets) options.logger.info(`kept secret "${s.secret}": ${s.arn}`);
    }
    return { kept: options.keepData ? tables : [], keptSecrets: options.keepData ? secrets : [] };
  } catch (error) {
    throw explain(error, doing, undefined, "down", state);
  } finally {
    interrupt.stop();
    cfn.destroy();
    s3.destroy();
    ddb.destroy();
  }
}

/**
 * Updates the stack so that its kv tables and secrets (`logicalIds`) survive its deletion:
 * `DeletionPolicy` and `UpdateReplacePolicy` Retain, and a tag naming the stack (a real property
 * change, so the update is never a no-op, and a way to find them later). CloudFormation honours a
 * DeletionPolicy only in the deployed template, so it cannot be passed to DeleteStack.
 */
async function retainTables(
  cfn: CloudFormationClient,
  s3: S3Client,
  stack: Stack,
  template: { Resources?: Record<string, TemplateResource> } & Record<string, unknown>,
  logicalIds: string[],
  logger: Logger,
  pollMs: number,
  interrupt: Interrupt,
): Promise<void> {
  const name = stack.StackName ?? "";
  for (const logicalId of logicalIds) {
    const resource = template.Resources?.[logicalId];
    if (!resource) continue;
    resource.DeletionPolicy = "Retain";
    resource.UpdateReplacePolicy = "Retain";
    const tags = (resource.Properties?.Tags ?? []).filter((tag) => tag.Key !== KEPT_TAG);
    resource.Properties = { ...resource.Properties, Tags: [...tags, { Key: KEPT_TAG, Value: name }] };
  }
  logger.info(
    `keeping the kv tables and secrets: updating stack "${name}" so that they outlive it (DeletionPolicy Retain)`,
  );
  const bucket = stack.Parameters?.find((p) => p.ParameterKey === "ArtifactBucket")?.ParameterValue ?? "";
  const source = await placeTemplate(s3, bucket, name, template, await cfn.config.region(), logger);
  const since = new Date(Date.now() - 1000);
  try {
    await cfn.send(
      new UpdateStackCommand({
        StackName: name,
        ...source,
        Capabilities: ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        Parameters: (stack.Parameters ?? []).map((p) => ({ ParameterKey: p.ParameterKey, UsePreviousValue: true })),
      }),
    );
  } catch (error) {
    // Kept by an earlier `down --keep-data` that stopped before the delete.
    if (noChanges((error as Error).message)) return;
    throw error;
  }
  const stopped = (status: string) =>
    new DeployError(
      `down: stopped following stack "${name}" (Ctrl-C) while it is ${status}, updated to keep its kv tables and secrets; CloudFormation goes on with that update, and the stack is not deleted: run "nitric-like down --keep-data" again once it has finished`,
      130,
    );
  await follow(cfn, name, logger, pollMs, since, false, { interrupt, stopped });
}
