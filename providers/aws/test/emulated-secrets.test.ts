// The emulator's Secrets Manager (src/emulator/secrets.ts) on its own, over run's secret store in a
// temp folder (real lmdb files): stages, what it refuses and how, and that what it stores is what
// the local provider and `nitric-like secret put` read and write.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SecretStore } from "@nitric-like/provider-kit/secret-store";
import { SECRET_MAX_VALUE_BYTES as MAX_SECRET_BYTES } from "@nitric-like/spec";
import { afterAll, describe, expect, it } from "vitest";
import { EmulatedSecrets, type SecretsAnswer } from "../src/emulator/secrets.js";

const ARN = "arn:aws:secretsmanager:us-east-1:000000000000:secret:VaultSecret-0123456789-abcdef";
const NAME = "VaultSecret-0123456789";
const SECRETS = [{ arn: ARN, name: NAME, secret: "vault" }];
const dirs: string[] = [];
const stores: SecretStore[] = [];
afterAll(async () => {
  for (const s of stores) await s.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function store(): SecretStore {
  const dir = mkdtempSync(join(tmpdir(), "nitric-like-emulated-secrets-"));
  dirs.push(dir);
  const s = new SecretStore(dir);
  stores.push(s);
  return s;
}

const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`;
const call = (s: EmulatedSecrets, op: string, body: object): Promise<SecretsAnswer> =>
  Promise.resolve(s.serve(`secretsmanager.${op}`, Buffer.from(JSON.stringify(body))));
const put = (s: EmulatedSecrets, n: number, text = `v${n}`) =>
  call(s, "PutSecretValue", { SecretId: ARN, ClientRequestToken: id(n), SecretString: text });

describe("the emulated Secrets Manager", () => {
  it("moves AWSCURRENT to each new version and AWSPREVIOUS to the one before, as Secrets Manager does", async () => {
    const s = new EmulatedSecrets(SECRETS, store());
    await put(s, 1);
    await put(s, 2);
    await put(s, 3);
    expect(await call(s, "GetSecretValue", { SecretId: ARN })).toMatchObject({
      status: 200,
      body: { VersionId: id(3), SecretString: "v3", VersionStages: ["AWSCURRENT"] },
    });
    expect(await call(s, "GetSecretValue", { SecretId: NAME, VersionStage: "AWSPREVIOUS" })).toMatchObject({
      body: { VersionId: id(2), VersionStages: ["AWSPREVIOUS"] },
    });
    expect(await call(s, "GetSecretValue", { SecretId: ARN, VersionId: id(1) })).toMatchObject({
      body: { VersionId: id(1), SecretString: "v1", VersionStages: [] },
    });
    expect(
      await call(s, "GetSecretValue", { SecretId: ARN, VersionId: id(1), VersionStage: "AWSCURRENT" }),
    ).toMatchObject({ status: 400, error: "InvalidRequestException" });
  });

  it("keeps its values in run's store under the app's secret name: what secret put stores it serves, and the reverse", async () => {
    const shared = store();
    const s = new EmulatedSecrets(SECRETS, shared);
    // As `nitric-like secret put vault` stores a value: bytes, under the app's name.
    await shared.put("vault", id(1), new Uint8Array([0, 255, 7]));
    expect(await call(s, "GetSecretValue", { SecretId: ARN })).toMatchObject({
      body: { VersionId: id(1), SecretBinary: Buffer.from([0, 255, 7]).toString("base64") },
    });
    await put(s, 2, "from the AWS CLI");
    const latest = await shared.access("vault", "latest");
    expect([latest?.version, Buffer.from(latest?.value ?? []).toString()]).toEqual([id(2), "from the AWS CLI"]);
    // The same request again changes nothing; another value under its id is refused.
    expect(await put(s, 2, "from the AWS CLI")).toMatchObject({ status: 200 });
    expect(await put(s, 2, "something else")).toMatchObject({ status: 400, error: "ResourceExistsException" });
    expect(shared.stages("vault")).toEqual({ current: id(2), previous: id(1) });
  });

  it("refuses what Secrets Manager refuses, with its error codes", async () => {
    const s = new EmulatedSecrets(SECRETS, store());
    const refused = async (op: string, body: object) => {
      const answer = await call(s, op, body);
      return "error" in answer ? answer.error : "accepted";
    };
    expect(await refused("GetSecretValue", { SecretId: "other" })).toBe("ResourceNotFoundException");
    expect(await refused("GetSecretValue", { SecretId: "vault" })).toBe("ResourceNotFoundException");
    expect(await refused("GetSecretValue", { SecretId: 7 })).toBe("ValidationException");
    expect(await refused("GetSecretValue", { SecretId: ARN })).toBe("ResourceNotFoundException");
    expect(await refused("PutSecretValue", { SecretId: ARN })).toBe("InvalidRequestException");
    expect(await refused("PutSecretValue", { SecretId: ARN, SecretBinary: "not base64!" })).toBe(
      "SerializationException",
    );
    expect(await refused("PutSecretValue", { SecretId: ARN, SecretString: "x".repeat(MAX_SECRET_BYTES + 1) })).toBe(
      "ValidationException",
    );
    expect(await refused("PutSecretValue", { SecretId: ARN, ClientRequestToken: "short", SecretString: "x" })).toBe(
      "ValidationException",
    );
    expect(await refused("PutSecretValue", { SecretId: ARN, SecretString: "x", VersionStages: ["STAGING"] })).toBe(
      "ValidationException",
    );
    expect(await refused("DeleteSecret", { SecretId: ARN })).toBe("UnknownOperationException");
    expect(await Promise.resolve(s.serve("secretsmanager.GetSecretValue", Buffer.from("{")))).toMatchObject({
      error: "SerializationException",
    });
    expect(await refused("PutSecretValue", { SecretId: ARN, SecretString: "x".repeat(MAX_SECRET_BYTES) })).toBe(
      "accepted",
    );
  });
});
