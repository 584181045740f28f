// The runtime's secrets backend (src/secrets/store.ts) against a loopback server playing Secrets
// Manager: what it sends for put and for each kind of access, how it reads a SecretBinary and a
// SecretString, and what each of Secrets Manager's refusals becomes (a status that says the fix).
import { Code, RpcError } from "@nitric-like/rpc";
import { afterAll, describe, expect, it } from "vitest";
import { RetryQuota } from "../src/aws/request.js";
import { SecretsManagerClient } from "../src/aws/secretsmanager.js";
import { SecretsManagerSecrets } from "../src/secrets/store.js";
import { type Answer, cleanup, ENV, FAST_RETRY, loopback } from "./helpers.js";

afterAll(cleanup);

const ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:VaultSecret-AbC12dEf3GhI-x1y2z3";
const VERSION = "6f1c2d3e-4a5b-4c6d-8e7f-8091a2b3c4d5";

/** The backend on a server answering `answer`, and what the server received. */
async function backend(answer: (body: Record<string, unknown>, target: string) => Answer) {
  const server = await loopback((r) =>
    answer(JSON.parse(r.body.toString("utf8")) as Record<string, unknown>, String(r.headers["x-amz-target"])),
  );
  const client = new SecretsManagerClient(
    { ...ENV, AWS_ENDPOINT_URL_SECRETS_MANAGER: server.url },
    { ...FAST_RETRY, attempts: 1, quota: new RetryQuota() },
  );
  return { secrets: new SecretsManagerSecrets(client, new Map([["vault", ARN]])), requests: server.requests };
}

const error = (type: string, message: string): Answer => ({
  status: 400,
  headers: { "content-type": "application/x-amz-json-1.1" },
  body: JSON.stringify({ __type: type, message }),
});

const rejection = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error("resolved");
    },
    (e: RpcError) => e,
  );

describe("the runtime's Secrets Manager backend", () => {
  it("puts a value as SecretBinary under the version id the service made, on the secret's ARN", async () => {
    const { secrets, requests } = await backend(() => ({ status: 200, body: JSON.stringify({ VersionId: VERSION }) }));
    await secrets.put("vault", VERSION, new Uint8Array([0, 255, 104, 105]));
    expect(requests).toHaveLength(1);
    expect(requests[0]?.headers["x-amz-target"]).toBe("secretsmanager.PutSecretValue");
    expect(JSON.parse(String(requests[0]?.body))).toEqual({
      SecretId: ARN,
      ClientRequestToken: VERSION,
      SecretBinary: Buffer.from([0, 255, 104, 105]).toString("base64"),
    });
  });

  it("reads latest by the AWSCURRENT stage and a version by its id; binary and text values as their bytes", async () => {
    const { secrets, requests } = await backend((body) =>
      body.VersionStage === "AWSCURRENT"
        ? {
            status: 200,
            body: JSON.stringify({ VersionId: VERSION, SecretBinary: Buffer.from([1, 2, 3]).toString("base64") }),
          }
        : { status: 200, body: JSON.stringify({ VersionId: body.VersionId, SecretString: "héllo" }) },
    );
    expect(await secrets.access("vault", "latest")).toEqual({ version: VERSION, value: new Uint8Array([1, 2, 3]) });
    const other = "0a1b2c3d-0000-4000-8000-000000000001";
    expect(await secrets.access("vault", other)).toEqual({
      version: other,
      value: new Uint8Array(Buffer.from("héllo", "utf8")),
    });
    expect(requests.map((r) => JSON.parse(String(r.body)))).toEqual([
      { SecretId: ARN, VersionStage: "AWSCURRENT" },
      { SecretId: ARN, VersionId: other },
    ]);
  });

  it("reads ResourceNotFoundException (no value yet, no such version) as no version", async () => {
    const { secrets } = await backend(() =>
      error(
        "ResourceNotFoundException",
        "Secrets Manager can't find the specified secret value for staging label: AWSCURRENT",
      ),
    );
    expect(await secrets.access("vault", "latest")).toBeUndefined();
  });

  it("turns a refusal into a status naming the fix: the .allow() to add, a deleted secret, throttling", async () => {
    const answers = [
      error("AccessDeniedException", "not authorized to perform: secretsmanager:PutSecretValue"),
      error("ResourceNotFoundException", "Secrets Manager can't find the specified secret."),
      error(
        "InvalidRequestException",
        "You can't perform this operation on the secret because it was marked for deletion.",
      ),
      error("ThrottlingException", "Rate exceeded"),
    ];
    const { secrets } = await backend(() => answers.shift() as Answer);
    const denied = await rejection(secrets.put("vault", VERSION, new Uint8Array([1])));
    expect(denied.code).toBe(Code.PERMISSION_DENIED);
    expect(denied.message).toMatch(/add \.allow\("put"\) to secret\("vault"\) in this service and deploy again/);
    const gone = await rejection(secrets.put("vault", VERSION, new Uint8Array([1])));
    expect(gone.code).toBe(Code.NOT_FOUND);
    expect(gone.message).toMatch(/does not exist in Secrets Manager; deploy the stack again/);
    const deleting = await rejection(secrets.access("vault", "latest"));
    expect(deleting.code).toBe(Code.FAILED_PRECONDITION);
    expect(deleting.message).toMatch(/marked for deletion/);
    const throttled = await rejection(secrets.access("vault", "latest"));
    expect(throttled.code).toBe(Code.RESOURCE_EXHAUSTED);
  });

  it("refuses a secret the deployment did not give this function, before any request, saying to deploy again", async () => {
    const { secrets, requests } = await backend(() => ({ status: 200, body: "{}" }));
    for (const name of ["ghost", "constructor", "__proto__"]) {
      const refused = await rejection(secrets.access(name, "latest"));
      expect(refused).toBeInstanceOf(RpcError);
      expect(refused.code).toBe(Code.FAILED_PRECONDITION);
      expect(refused.message).toContain(`secret(${JSON.stringify(name)}): this function has no such secret`);
      expect(refused.message).toMatch(/NITRIC_LIKE_SECRETS names "vault".*build and deploy again/);
    }
    expect(requests).toHaveLength(0);
  });
});
