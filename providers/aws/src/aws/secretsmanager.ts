/**
 * The Secrets Manager operations the runtime uses (PutSecretValue, GetSecretValue), over Secrets
 * Manager's JSON 1.1 protocol: `POST /` with `X-Amz-Target: secretsmanager.<Operation>` and a JSON
 * body, in the shapes of Secrets Manager's API reference, signed for service `secretsmanager`: what
 * the runtime needs of `@aws-sdk/client-secrets-manager`, which it does not ship. The same requests
 * as the SDK's for the same input: test/sdk-equivalence.test.ts. Failures are AwsError named by the
 * answer's `__type` (`ResourceNotFoundException`, ...).
 */
import { callJson, type JsonProtocol, type RetryPolicy, STANDARD_RETRY } from "./request.js";

/** Secrets Manager's JSON 1.1 protocol; the SDK's id for it is SECRETS_MANAGER (AWS_ENDPOINT_URL_SECRETS_MANAGER). */
const SECRETS_MANAGER: JsonProtocol = {
  service: "secretsmanager",
  endpointId: "SECRETS_MANAGER",
  prefix: "secretsmanager",
  contentType: "application/x-amz-json-1.1",
  targetPrefix: "secretsmanager",
};

/** The stage Secrets Manager gives a secret's newest version. */
export const CURRENT_STAGE = "AWSCURRENT";

export interface PutSecretValueInput {
  SecretId: string;
  /** Becomes the new version's id (Secrets Manager's idempotency token: 32 to 64 characters). */
  ClientRequestToken: string;
  /** The value, base64. */
  SecretBinary?: string;
  SecretString?: string;
}

export interface PutSecretValueOutput {
  ARN?: string;
  Name?: string;
  VersionId?: string;
  VersionStages?: string[];
}

export interface GetSecretValueInput {
  SecretId: string;
  VersionId?: string;
  VersionStage?: string;
}

export interface GetSecretValueOutput {
  ARN?: string;
  Name?: string;
  VersionId?: string;
  /** A value stored as bytes, base64. */
  SecretBinary?: string;
  /** A value stored as text (the console, `put-secret-value --secret-string`). */
  SecretString?: string;
  VersionStages?: string[];
  CreatedDate?: number;
}

/** What the secrets backend needs of Secrets Manager. */
export interface SecretsManager {
  putSecretValue(input: PutSecretValueInput): Promise<PutSecretValueOutput>;
  getSecretValue(input: GetSecretValueInput): Promise<GetSecretValueOutput>;
}

/** Secrets Manager through its JSON protocol, configured from the environment. */
export class SecretsManagerClient implements SecretsManager {
  constructor(
    private readonly env: NodeJS.ProcessEnv = process.env,
    private readonly retry: RetryPolicy = STANDARD_RETRY,
  ) {}

  private call<T>(operation: string, input: object): Promise<T> {
    return callJson<T>(this.env, SECRETS_MANAGER, operation, input, this.retry);
  }

  putSecretValue(input: PutSecretValueInput): Promise<PutSecretValueOutput> {
    return this.call("PutSecretValue", input);
  }

  getSecretValue(input: GetSecretValueInput): Promise<GetSecretValueOutput> {
    return this.call("GetSecretValue", input);
  }
}
