/**
 * Secrets in AWS Secrets Manager: one secret per declared secret (made by the template, named by
 * CloudFormation), its ARN given to each function that may use it in NITRIC_LIKE_SECRETS. A put
 * is one PutSecretValue whose ClientRequestToken is the version id the secrets service made, so the
 * new version is AWSCURRENT under exactly that id; an access of "latest" reads the AWSCURRENT
 * stage, any other version its VersionId. Values go as SecretBinary; a value set outside the app
 * as SecretString (the console, `aws secretsmanager put-secret-value --secret-string`) reads as its
 * UTF-8 bytes. Versions are never deleted by the app (Secrets Manager keeps at most about 100 and
 * removes the oldest unlabelled ones itself).
 */
import type { SecretsBackend, SecretVersionValue } from "@nitric-like/provider-kit";
import { Code, RpcError } from "@nitric-like/rpc";
import { LATEST_VERSION } from "@nitric-like/spec";
import { CURRENT_STAGE, type SecretsManager } from "../aws/secretsmanager.js";

/** Turns a Secrets Manager failure into a gRPC status that says what to fix. */
export function secretsManagerError(secret: string, arn: string, operation: "access" | "put", error: unknown): Error {
  const name = (error as { name?: string }).name ?? "";
  const message = error instanceof Error ? error.message : String(error);
  const where = `secret(${JSON.stringify(secret)})`;
  if (name === "AccessDeniedException") {
    return new RpcError(
      Code.PERMISSION_DENIED,
      `${where}: AWS refused to ${operation === "access" ? "read" : "write"} ${arn} (${message}); add .allow(${JSON.stringify(operation)}) to ${where} in this service and deploy again`,
    );
  }
  if (name === "ResourceNotFoundException") {
    // A put to a secret that is gone: deleted outside the stack (or scheduled for deletion).
    return new RpcError(
      Code.NOT_FOUND,
      `${where}: its secret ${arn} does not exist in Secrets Manager; deploy the stack again (nitric-like up --provider aws)`,
    );
  }
  if (name === "InvalidRequestException") {
    // Secrets Manager's answer for a secret scheduled for deletion, among others.
    return new RpcError(Code.FAILED_PRECONDITION, `${where}: Secrets Manager refused the ${operation}: ${message}`);
  }
  if (name === "ThrottlingException" || name === "LimitExceededException") {
    return new RpcError(
      Code.RESOURCE_EXHAUSTED,
      `${where}: Secrets Manager throttled the request; retry later (${message})`,
    );
  }
  if (name === "ValidationException" || name === "InvalidParameterException") {
    return new RpcError(Code.INVALID_ARGUMENT, `${where}: Secrets Manager refused the request: ${message}`);
  }
  return new RpcError(
    Code.UNAVAILABLE,
    `${where}: Secrets Manager ${operation} failed: ${name ? `${name}: ` : ""}${message}`,
  );
}

/** The secrets of one function, each a Secrets Manager secret named by its ARN. */
export class SecretsManagerSecrets implements SecretsBackend {
  constructor(
    private readonly client: SecretsManager,
    /** Each secret's ARN, by name (a Map: secret names are data). */
    private readonly arns: ReadonlyMap<string, string>,
  ) {}

  /** True when the deployment gave this function the secret. */
  has(secret: string): boolean {
    return this.arns.has(secret);
  }

  /** The ARN of a secret; FAILED_PRECONDITION when the deployment gave this function none. */
  arn(secret: string): string {
    const arn = this.arns.get(secret);
    if (arn === undefined) {
      throw new RpcError(
        Code.FAILED_PRECONDITION,
        `secret(${JSON.stringify(secret)}): this function has no such secret in its deployment (NITRIC_LIKE_SECRETS names ${
          [...this.arns.keys()].map((s) => JSON.stringify(s)).join(", ") || "none"
        }); declare it at the top level of the service's module with .allow(...), then build and deploy again so the template includes it`,
      );
    }
    return arn;
  }

  async put(secret: string, version: string, value: Uint8Array): Promise<void> {
    const arn = this.arn(secret);
    try {
      await this.client.putSecretValue({
        SecretId: arn,
        ClientRequestToken: version,
        SecretBinary: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64"),
      });
    } catch (error) {
      throw secretsManagerError(secret, arn, "put", error);
    }
  }

  async access(secret: string, version: string): Promise<SecretVersionValue | undefined> {
    const arn = this.arn(secret);
    let out: Awaited<ReturnType<SecretsManager["getSecretValue"]>>;
    try {
      out = await this.client.getSecretValue(
        version === LATEST_VERSION
          ? { SecretId: arn, VersionStage: CURRENT_STAGE }
          : { SecretId: arn, VersionId: version },
      );
    } catch (error) {
      // What a secret without that version answers, and a secret with no value yet too.
      if ((error as { name?: string }).name === "ResourceNotFoundException") return undefined;
      throw secretsManagerError(secret, arn, "access", error);
    }
    if (typeof out.VersionId !== "string") {
      throw new RpcError(
        Code.UNAVAILABLE,
        `secret(${JSON.stringify(secret)}): Secrets Manager answered GetSecretValue for ${arn} without a VersionId`,
      );
    }
    if (typeof out.SecretBinary === "string") {
      return { version: out.VersionId, value: new Uint8Array(Buffer.from(out.SecretBinary, "base64")) };
    }
    if (typeof out.SecretString === "string") {
      return { version: out.VersionId, value: new Uint8Array(Buffer.from(out.SecretString, "utf8")) };
    }
    throw new RpcError(
      Code.UNAVAILABLE,
      `secret(${JSON.stringify(secret)}): Secrets Manager answered GetSecretValue for ${arn} with neither SecretBinary nor SecretString`,
    );
  }
}
