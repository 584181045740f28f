/**
 * The emulator's Secrets Manager: the template's secrets (`AWS::SecretsManager::Secret`), each
 * known by its ARN and its name, and the two operations the runtime and `nitric-like secret put`
 * use, GetSecretValue and PutSecretValue, in Secrets Manager's JSON 1.1 shapes and with its error
 * codes (`ResourceNotFoundException`, `ValidationException`, `InvalidParameterException`,
 * `InvalidRequestException`, `ResourceExistsException`). Requests reach it through the server of
 * the Management and Invoke APIs, signed for `secretsmanager` with the run's credentials
 * (emulator.ts checks that first).
 *
 * A put makes the version the request's ClientRequestToken names AWSCURRENT, and the former
 * current one AWSPREVIOUS; putting the same token again with the same value changes nothing, with
 * another value it is refused (ResourceExistsException), as Secrets Manager does. At most
 * MAX_VERSIONS versions are kept per secret: the oldest one without a stage goes first (Secrets
 * Manager's quota is about 100 versions a secret, and it removes unlabelled ones itself).
 *
 * With a folder (`run`: `.nitric-like/aws-secrets`), each secret's versions are one JSON file in
 * it named by a hash of the ARN, written whole to a temporary file and renamed over the old one,
 * so that a crash leaves either version; the folder is this user's alone (0700) and each file
 * 0600, since the values are in plain bytes. The ARN is made from the stack and logical id, so
 * values survive a redeploy and a restart of `run`, as kv tables do. Without a folder (tests), they
 * live in memory.
 */
import { createHash, randomUUID } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** The most versions kept per secret. */
export const MAX_VERSIONS = 100;
/** Secrets Manager's largest value: 65,536 bytes (SecretBinary) or characters (SecretString). */
export const MAX_SECRET_BYTES = 65_536;
/**
 * The most a Secrets Manager request may carry: a 64 KiB value is 87,384 characters of base64,
 * and the rest of a request is a few hundred bytes. More is answered 413 before it is read whole.
 */
export const MAX_SECRETS_REQUEST_BYTES = 128 * 1024;

const CURRENT = "AWSCURRENT";
const PREVIOUS = "AWSPREVIOUS";
/** Secrets Manager's ClientRequestToken and VersionId: 32 to 64 characters. */
const VERSION_ID = /^[A-Za-z0-9-]{32,64}$/;

/** One stored version. */
interface StoredVersion {
  id: string;
  /** Base64 of a SecretBinary value. */
  binary?: string;
  /** A SecretString value. */
  text?: string;
  /** Seconds since the epoch, as Secrets Manager's CreatedDate. */
  created: number;
}

/** One secret's versions, as its file holds them. */
interface StoredSecret {
  arn: string;
  versions: StoredVersion[];
  current?: string;
  previous?: string;
}

/** A secret of the template. */
export interface EmulatedSecret {
  arn: string;
  name: string;
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
  /** Loaded or written secrets, by ARN. */
  private readonly loaded = new Map<string, StoredSecret>();

  constructor(
    secrets: EmulatedSecret[],
    /** Where values are kept; in memory when undefined. */
    private readonly dir?: string,
  ) {
    for (const s of secrets) {
      this.byId.set(s.arn, s);
      this.byId.set(s.name, s);
    }
    if (dir !== undefined && secrets.length > 0) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      // A folder made before (or under another umask) is narrowed too.
      chmodSync(dir, 0o700);
    }
  }

  /** The file of a secret's versions. */
  private fileOf(arn: string): string | undefined {
    if (this.dir === undefined) return undefined;
    return join(this.dir, `${createHash("sha256").update(arn).digest("hex").slice(0, 32)}.json`);
  }

  private stored(arn: string): StoredSecret {
    let secret = this.loaded.get(arn);
    if (secret) return secret;
    secret = { arn, versions: [] };
    const file = this.fileOf(arn);
    if (file !== undefined) {
      let text: string | undefined;
      try {
        text = readFileSync(file, "utf8");
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      }
      if (text !== undefined) {
        try {
          const parsed = JSON.parse(text) as StoredSecret;
          if (parsed.arn !== arn || !Array.isArray(parsed.versions)) throw new Error("not a secret's versions");
          secret = parsed;
        } catch (error) {
          throw new Error(
            `secrets: ${file} cannot be read (${(error as Error).message}); delete it to start that secret afresh (its values are lost)`,
          );
        }
      }
    }
    this.loaded.set(arn, secret);
    return secret;
  }

  private save(secret: StoredSecret): void {
    const file = this.fileOf(secret.arn);
    if (file === undefined) return;
    const temporary = `${file}.${process.pid}.tmp`;
    try {
      writeFileSync(temporary, JSON.stringify(secret), { mode: 0o600 });
      renameSync(temporary, file);
    } catch (error) {
      rmSync(temporary, { force: true });
      throw error;
    }
  }

  /** Serves one operation (`secretsmanager.<Operation>`) with its parsed body. */
  serve(target: string, body: Buffer): SecretsAnswer {
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
    if (versionId !== undefined && (typeof versionId !== "string" || !VERSION_ID.test(versionId))) {
      return validation("VersionId must be 32 to 64 letters, digits and hyphens");
    }
    if (stage !== undefined && (typeof stage !== "string" || stage.length < 1 || stage.length > 256)) {
      return validation("VersionStage must be a string of 1 to 256 characters");
    }
    const stored = this.stored(secret.arn);
    let id: string | undefined;
    if (typeof versionId === "string") {
      id = versionId;
    } else {
      const wanted = stage ?? CURRENT;
      id = wanted === CURRENT ? stored.current : wanted === PREVIOUS ? stored.previous : undefined;
      if (id === undefined) {
        return notFound(`Secrets Manager can't find the specified secret value for staging label: ${wanted}`);
      }
    }
    const version = stored.versions.find((v) => v.id === id);
    if (!version) return notFound(`Secrets Manager can't find the specified secret value for VersionId: ${id}`);
    const stages = stagesOf(stored, version.id);
    if (typeof stage === "string" && typeof versionId === "string" && !stages.includes(stage)) {
      return fail(
        400,
        "InvalidRequestException",
        `You provided a VersionStage (${stage}) that is not associated to the provided VersionId (${versionId}).`,
      );
    }
    return {
      status: 200,
      body: {
        ARN: secret.arn,
        Name: secret.name,
        VersionId: version.id,
        ...(version.binary !== undefined ? { SecretBinary: version.binary } : { SecretString: version.text }),
        VersionStages: stages,
        CreatedDate: version.created,
      },
    };
  }

  private put(request: Record<string, unknown>): SecretsAnswer {
    const secret = this.secretOf(request);
    if ("status" in secret) return secret;
    const { SecretBinary: binary, SecretString: text, VersionStages: stages } = request;
    const token = request.ClientRequestToken ?? randomUUID();
    if (typeof token !== "string" || !VERSION_ID.test(token)) {
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
    let version: StoredVersion;
    const created = Math.round(Date.now()) / 1000;
    if (typeof binary === "string") {
      // Base64 as the SDK writes it; anything else does not round-trip and is refused.
      const bytes = Buffer.from(binary, "base64");
      if (bytes.toString("base64") !== binary) return fail(400, "SerializationException", "SecretBinary is not base64");
      if (bytes.length < 1 || bytes.length > MAX_SECRET_BYTES) {
        return validation(`SecretBinary must hold 1 to ${MAX_SECRET_BYTES} bytes; it holds ${bytes.length}`);
      }
      version = { id: token, binary, created };
    } else if (typeof text === "string") {
      if (text.length < 1 || text.length > MAX_SECRET_BYTES) {
        return validation(`SecretString must hold 1 to ${MAX_SECRET_BYTES} characters; it holds ${text.length}`);
      }
      version = { id: token, text, created };
    } else if (binary !== undefined || text !== undefined) {
      return fail(400, "SerializationException", "SecretBinary and SecretString must be strings");
    } else {
      return fail(400, "InvalidRequestException", "You must provide either SecretString or SecretBinary.");
    }
    const stored = this.stored(secret.arn);
    const existing = stored.versions.find((v) => v.id === token);
    if (existing) {
      // The same request again (a retry): nothing changes. Another value under the same id: refused.
      if (existing.binary === version.binary && existing.text === version.text) {
        return { status: 200, body: putAnswer(secret, token, stagesOf(stored, token)) };
      }
      return fail(
        400,
        "ResourceExistsException",
        `A resource with the ID you requested already exists. (version ${token} of ${secret.name} holds another value)`,
      );
    }
    const next: StoredSecret = {
      arn: secret.arn,
      versions: [...stored.versions, version],
      current: token,
      ...(stored.current !== undefined ? { previous: stored.current } : {}),
    };
    while (next.versions.length > MAX_VERSIONS) {
      const oldest = next.versions.findIndex((v) => v.id !== next.current && v.id !== next.previous);
      next.versions.splice(oldest, 1);
    }
    this.save(next);
    this.loaded.set(secret.arn, next);
    return { status: 200, body: putAnswer(secret, token, [CURRENT]) };
  }
}

function stagesOf(stored: StoredSecret, id: string): string[] {
  return [...(stored.current === id ? [CURRENT] : []), ...(stored.previous === id ? [PREVIOUS] : [])];
}

function putAnswer(secret: EmulatedSecret, id: string, stages: string[]): Record<string, unknown> {
  return { ARN: secret.arn, Name: secret.name, VersionId: id, VersionStages: stages };
}
