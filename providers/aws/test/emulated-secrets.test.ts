// The emulator's Secrets Manager store (src/emulator/secrets.ts) on its own: stages, the bound on
// versions, what it refuses and how, and a file it cannot read named with the fix.
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { EmulatedSecrets, MAX_SECRET_BYTES, MAX_VERSIONS } from "../src/emulator/secrets.js";

const ARN = "arn:aws:secretsmanager:us-east-1:000000000000:secret:VaultSecret-0123456789-abcdef";
const NAME = "VaultSecret-0123456789";
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`;
const call = (s: EmulatedSecrets, op: string, body: object) =>
  s.serve(`secretsmanager.${op}`, Buffer.from(JSON.stringify(body)));
const put = (s: EmulatedSecrets, n: number, text = `v${n}`) =>
  call(s, "PutSecretValue", { SecretId: ARN, ClientRequestToken: id(n), SecretString: text });

describe("the emulated Secrets Manager store", () => {
  it("moves AWSCURRENT to each new version and AWSPREVIOUS to the one before, as Secrets Manager does", () => {
    const s = new EmulatedSecrets([{ arn: ARN, name: NAME }]);
    put(s, 1);
    put(s, 2);
    put(s, 3);
    expect(call(s, "GetSecretValue", { SecretId: ARN })).toMatchObject({
      status: 200,
      body: { VersionId: id(3), SecretString: "v3", VersionStages: ["AWSCURRENT"] },
    });
    expect(call(s, "GetSecretValue", { SecretId: NAME, VersionStage: "AWSPREVIOUS" })).toMatchObject({
      body: { VersionId: id(2), VersionStages: ["AWSPREVIOUS"] },
    });
    expect(call(s, "GetSecretValue", { SecretId: ARN, VersionId: id(1) })).toMatchObject({
      body: { VersionId: id(1), SecretString: "v1", VersionStages: [] },
    });
    expect(call(s, "GetSecretValue", { SecretId: ARN, VersionId: id(1), VersionStage: "AWSCURRENT" })).toMatchObject({
      status: 400,
      error: "InvalidRequestException",
    });
  });

  it(`keeps at most ${MAX_VERSIONS} versions, dropping the oldest unlabelled one`, () => {
    const s = new EmulatedSecrets([{ arn: ARN, name: NAME }]);
    for (let n = 1; n <= MAX_VERSIONS + 5; n++) put(s, n);
    const gone = call(s, "GetSecretValue", { SecretId: ARN, VersionId: id(5) });
    expect(gone).toMatchObject({ status: 400, error: "ResourceNotFoundException" });
    expect(call(s, "GetSecretValue", { SecretId: ARN, VersionId: id(6) })).toMatchObject({ status: 200 });
    expect(call(s, "GetSecretValue", { SecretId: ARN })).toMatchObject({ body: { VersionId: id(MAX_VERSIONS + 5) } });
  });

  it("refuses what Secrets Manager refuses, with its error codes", () => {
    const s = new EmulatedSecrets([{ arn: ARN, name: NAME }]);
    const refused = (op: string, body: object) => {
      const answer = call(s, op, body);
      return "error" in answer ? answer.error : "accepted";
    };
    expect(refused("GetSecretValue", { SecretId: "other" })).toBe("ResourceNotFoundException");
    expect(refused("GetSecretValue", { SecretId: 7 })).toBe("ValidationException");
    expect(refused("GetSecretValue", { SecretId: ARN })).toBe("ResourceNotFoundException");
    expect(refused("PutSecretValue", { SecretId: ARN })).toBe("InvalidRequestException");
    expect(refused("PutSecretValue", { SecretId: ARN, SecretBinary: "not base64!" })).toBe("SerializationException");
    expect(refused("PutSecretValue", { SecretId: ARN, SecretString: "x".repeat(MAX_SECRET_BYTES + 1) })).toBe(
      "ValidationException",
    );
    expect(refused("PutSecretValue", { SecretId: ARN, ClientRequestToken: "short", SecretString: "x" })).toBe(
      "ValidationException",
    );
    expect(refused("PutSecretValue", { SecretId: ARN, SecretString: "x", VersionStages: ["STAGING"] })).toBe(
      "ValidationException",
    );
    expect(refused("DeleteSecret", { SecretId: ARN })).toBe("UnknownOperationException");
    expect(s.serve("secretsmanager.GetSecretValue", Buffer.from("{"))).toMatchObject({
      error: "SerializationException",
    });
    expect(refused("PutSecretValue", { SecretId: ARN, SecretString: "x".repeat(MAX_SECRET_BYTES) })).toBe("accepted");
  });

  it("names a file it cannot read, and how to start that secret afresh", () => {
    const dir = mkdtempSync(join(tmpdir(), "nitric-like-emulated-secrets-"));
    dirs.push(dir);
    put(new EmulatedSecrets([{ arn: ARN, name: NAME }], dir), 1);
    const [file] = readdirSync(dir);
    writeFileSync(join(dir, file as string), "{ not json");
    const fresh = new EmulatedSecrets([{ arn: ARN, name: NAME }], dir);
    expect(() => call(fresh, "GetSecretValue", { SecretId: ARN })).toThrow(
      new RegExp(`${file} cannot be read .*delete it to start that secret afresh`),
    );
  });
});
