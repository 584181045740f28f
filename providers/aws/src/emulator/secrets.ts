/**
 * The emulator's Secrets Manager: the template's secrets (`AWS::SecretsManager::Secret`), each
 * known by its ARN and its name, and the two operations the runtime and the AWS CLI use,
 * GetSecretValue and PutSecretValue, in Secrets Manager's JSON 1.1 shapes and with its error codes
 * (`ResourceNotFoundException`, `ValidationException`, `InvalidParameterException`,
 * `InvalidRequestException`, `ResourceExistsException`). Requests reach it through the server of
 * the Management and Invoke APIs, signed for `secretsmanager` with the run's credentials
 * (emulator.ts checks that first).
 *
 * A put makes the version the request's ClientRequestToken names AWSCURRENT, and the former
 * current one AWSPREVIOUS; putting the same token again with the same value changes nothing, with
 * another value it is refused (ResourceExistsException), as Secrets Manager does.
 *
 * The values are `run`'s own (`@nitric-like/provider-kit/secret-store`, the project's
 * `.nitric-like/secrets`), each template secret's under the name the app gives it (its
 * `nitric-like:secret` tag): the local provider serves the same ones, `nitric-like secret put`
 * stores into them, and they survive a redeploy and the next `run`, whichever provider it uses.
 */
import { randomUUID } from "node:crypto";
import type { SecretStore } from "@nitric-like/provider-kit/secret-store";
// Secrets Manager's own limits, which the spec keeps for every provider: a value of 65,536 bytes
// (SecretBinary) or characters (SecretString) at most; a VersionId of 32 to 64 letters, digits and -.
import { isSecretVersionId, SECRET_MAX_VALUE_BYTES } from "@nitric-like/spec";

/**
 * The most a Secrets Manager request may carry: a 64 KiB value is 87,384 characters of base64,
 * and the rest of a request is a few hundred bytes. More is answered 413 before it is read whole.
 */
export const MAX_SECRETS_REQUEST_BYTES = 128 * 1024;

const CURRENT = "AWSCURRENT";
const PREVIOUS = "AWSPREVIOUS";

/** A secret of the template. */
export interface EmulatedSecret {
  arn: string;
  /** Its name in Secrets Manager (the ARN less its random suffix). */
  name: string;
  /** Its name in the app (`secret("<name>")`), under which run's store keeps its values. */
  secret: string;
}

/** An answer: its status and JSON body, or an error of Secrets Manager's. */
export type SecretsAnswer =
  | { status: 200; body: Record<string, unknown> }
  | { status: number; error: string; message: string };

const fail = (status: number, error: string, message: string): SecretsAnswer => ({ status, error, message });
const notFound = (message: string) => fail(400, "ResourceNotFoundException", message);
const validation = (message: string) => fail(400, "ValidationException", message);

/** The secrets of one emulator. */
export class EmulatedSecrets {
  /** By ARN and by name (Secrets Manager takes either as SecretId). Maps: names are data. */
  private readonly byId = new Map<string, EmulatedSecret>();

  constructor(
    secrets: EmulatedSecret[],
    /** run's secret store, where the values are kept. */
    private readonly store: SecretStore,
  ) {
    for (const s of secrets) {
      this.byId.set(s.arn, s);
      this.byId.set(s.name, s);
    }
  }

  /** Serves one operation (`secretsmanager.<Operation>`) with its parsed body. */
  serve(target: string, body: Buffer): SecretsAnswer | Promise<SecretsAnswer> {
    let input: unknown;
    try {
      input = JSON.parse(body.toString("utf8") || "{}");
    } catch {
      return fail(400, "SerializationException", "the request body is not JSON");
    }
    if (input === null || typeof input !== "object" || Array.isArray(input)) {
      return fail(400, "SerializationException", "the request body is not a JSON object");
    }
    const request = input as Record<string, unknown>;
    switch (target) {
      case "secretsmanager.GetSecretValue":
        return this.get(request);
      case "secretsmanager.PutSecretValue":
        return this.put(request);
      default:
        return fail(
          400,
          "UnknownOperationException",
          `${JSON.stringify(target)}: the emulator serves Secrets Manager's GetSecretValue and PutSecretValue only`,
        );
    }
  }

  private secretOf(request: Record<string, unknown>): EmulatedSecret | SecretsAnswer {
    const id = request.SecretId;
    if (typeof id !== "string" || id.length < 1 || id.length > 2048) {
      return validation("SecretId must be a string of 1 to 2048 characters: the secret's ARN or name");
    }
    return this.byId.get(id) ?? notFound(`Secrets Manager can't find the specified secret. (${id})`);
  }

  private get(request: Record<string, unknown>): SecretsAnswer {
    const secret = this.secretOf(request);
    if ("status" in secret) return secret;
    const { VersionId: versionId, VersionStage: stage } = request;
    if (versionId !== undefined && (typeof versionId !== "string" || !isSecretVersionId(versionId))) {
      return validation("VersionId must be 32 to 64 letters, digits and hyphens");
    }
    if (stage !== undefined && (typeof stage !== "string" || stage.length < 1 || stage.length > 256)) {
      return validation("VersionStage must be a string of 1 to 256 characters");
    }
    const stages = this.store.stages(secret.secret);
    let id: string | undefined;
    if (typeof versionId === "string") {
      id = versionId;
    } else {
      const wanted = stage ?? CURRENT;
      id = wanted === CURRENT ? stages.current : wanted === PREVIOUS ? stages.previous : undefined;
      if (id === undefined) {
        return notFound(`Secrets Manager can't find the specified secret value for staging label: ${wanted}`);
      }
    }
    const version = this.store.read(secret.secret, id);
    if (!version) return notFound(`Secrets Manager can't find the specified secret value for VersionId: ${id}`);
    const labels = stagesOf(stages, version.version);
    if (typeof stage === "string" && typeof versionId === "string" && !labels.includes(stage)) {
      return fail(
        400,
        "InvalidRequestException",
        `You provided a VersionStage (${stage}) that is not associated to the provided VersionId (${versionId}).`,
      );
    }
    const value = Buffer.from(version.value.buffer, version.value.byteOffset, version.value.byteLength);
    return {
      status: 200,
      body: {
        ARN: secret.arn,
        Name: secret.name,
        VersionId: version.version,
        ...(version.text ? { SecretString: value.toString("utf8") } : { SecretBinary: value.toString("base64") }),
        VersionStages: labels,
        CreatedDate: Math.round(version.created) / 1000,
      },
    };
  }

  private put(request: Record<string, unknown>): Promise<SecretsAnswer> | SecretsAnswer {
    const secret = this.secretOf(request);
    if ("status" in secret) return secret;
    const { SecretBinary: binary, SecretString: text, VersionStages: stages } = request;
    const token = request.ClientRequestToken ?? randomUUID();
    if (typeof token !== "string" || !isSecretVersionId(token)) {
      return validation("ClientRequestToken must be 32 to 64 letters, digits and hyphens (a UUID, say)");
    }
    if (stages !== undefined && !(Array.isArray(stages) && stages.length === 1 && stages[0] === CURRENT)) {
      return validation(
        `VersionStages: the emulator moves ${CURRENT} to each new version only; leave VersionStages out or give ["${CURRENT}"]`,
      );
    }
    if (binary !== undefined && text !== undefined) {
      return fail(
        400,
        "InvalidParameterException",
        "You can't specify both a binary secret value and a string secret value in the same secret.",
      );
    }
    let value: Buffer;
    if (typeof binary === "string") {
      // Base64 as the SDK writes it; anything else does not round-trip and is refused.
      value = Buffer.from(binary, "base64");
      if (value.toString("base64") !== binary) return fail(400, "SerializationException", "SecretBinary is not base64");
      if (value.length < 1 || value.length > SECRET_MAX_VALUE_BYTES) {
        return validation(`SecretBinary must hold 1 to ${SECRET_MAX_VALUE_BYTES} bytes; it holds ${value.length}`);
      }
    } else if (typeof text === "string") {
      if (text.length < 1 || text.length > SECRET_MAX_VALUE_BYTES) {
        return validation(`SecretString must hold 1 to ${SECRET_MAX_VALUE_BYTES} characters; it holds ${text.length}`);
      }
      value = Buffer.from(text, "utf8");
    } else if (binary !== undefined || text !== undefined) {
      return fail(400, "SerializationException", "SecretBinary and SecretString must be strings");
    } else {
      return fail(400, "InvalidRequestException", "You must provide either SecretString or SecretBinary.");
    }
    const isText = typeof text === "string";
    const existing = this.store.read(secret.secret, token);
    if (existing) {
      // The same request again (a retry): nothing changes. Another value under the same id: refused.
      if (existing.text === isText && Buffer.compare(Buffer.from(existing.value), value) === 0) {
        return { status: 200, body: putAnswer(secret, token, stagesOf(this.store.stages(secret.secret), token)) };
      }
      return fail(
        400,
        "ResourceExistsException",
        `A resource with the ID you requested already exists. (version ${token} of ${secret.name} holds another value)`,
      );
    }
    return this.store
      .put(secret.secret, token, value, { text: isText })
      .then((): SecretsAnswer => ({ status: 200, body: putAnswer(secret, token, [CURRENT]) }));
  }
}

function stagesOf(stages: { current?: string; previous?: string }, id: string): string[] {
  return [...(stages.current === id ? [CURRENT] : []), ...(stages.previous === id ? [PREVIOUS] : [])];
}

function putAnswer(secret: EmulatedSecret, id: string, stages: string[]): Record<string, unknown> {
  return { ARN: secret.arn, Name: secret.name, VersionId: id, VersionStages: stages };
}
