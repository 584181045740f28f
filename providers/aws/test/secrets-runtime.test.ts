// A function's runtime (createHandler) serving a service's secret calls over its in-memory
// transport, with Secrets Manager a loopback server that has no value for the secret: the
// not_found a service gets names the command that stores a value where this function reads it,
// `nitric-like secret put <name> --provider aws` when deployed, without the flag under
// `run --provider aws` (whose store `secret put` fills by default).
import { Action, Resources, ResourceType } from "@nitric-like/contracts/resources";
import { SecretManager } from "@nitric-like/contracts/secrets";
import { Client, Code, type Transport } from "@nitric-like/rpc";
import { afterAll, describe, expect, it } from "vitest";
import { createHandler } from "../src/runtime/handler.js";
import { cleanup, ENV, loopback } from "./helpers.js";

afterAll(cleanup);

const ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:VaultSecret-AbC12dEf3GhI-x1y2z3";
const quiet = { info: () => {}, warn: () => {}, error: () => {} };

/** A runtime whose service declares secret "vault" with access; what it is told when reading it. */
async function accessMissing(emulated: boolean): Promise<{ code: number; details: string }> {
  const server = await loopback(() => ({
    status: 400,
    headers: { "content-type": "application/x-amz-json-1.1" },
    body: JSON.stringify({
      __type: "ResourceNotFoundException",
      message: "Secrets Manager can't find the specified secret value for staging label: AWSCURRENT",
    }),
  }));
  let transport: Transport | undefined;
  const handler = createHandler({
    load: () => {},
    transport: (t) => {
      transport = t;
    },
    env: {
      ...ENV,
      NITRIC_LIKE_SERVICE: "vault",
      NITRIC_LIKE_SECRETS: JSON.stringify({ vault: ARN }),
      AWS_ENDPOINT_URL_SECRETS_MANAGER: server.url,
      ...(emulated ? { NITRIC_LIKE_EMULATED: "1" } : {}),
    },
    logger: quiet,
  });
  await handler.ready;
  const client = new Client(transport as Transport);
  // What both SDKs send first: the declaration, then the policy for the calling service.
  await client.unary(Resources.method.declare, {
    id: { type: ResourceType.Secret, name: "vault" },
    config: { case: "secret", value: {} },
  });
  await client.unary(Resources.method.declare, {
    id: { type: ResourceType.Policy, name: "" },
    config: {
      case: "policy",
      value: {
        principals: [{ type: ResourceType.Service, name: "" }],
        actions: [Action.SecretAccess],
        resources: [{ type: ResourceType.Secret, name: "vault" }],
      },
    },
  });
  return client
    .unary(SecretManager.method.access, { secretVersion: { secret: { name: "vault" }, version: "latest" } })
    .then(
      () => ({ code: -1, details: "answered" }),
      (error: { code: number; details: string }) => ({ code: error.code, details: error.details }),
    );
}

describe("a secret with no value yet, read in a function", () => {
  it("is not_found naming secret put --provider aws when deployed", async () => {
    const { code, details } = await accessMissing(false);
    expect(code).toBe(Code.NOT_FOUND);
    expect(details).toContain('secret("vault") has no value yet');
    expect(details).toContain("or with `nitric-like secret put vault --provider aws`");
  });

  it("is not_found naming secret put alone under run --provider aws", async () => {
    const { code, details } = await accessMissing(true);
    expect(code).toBe(Code.NOT_FOUND);
    expect(details).toContain("or with `nitric-like secret put vault`");
    expect(details).not.toContain("--provider aws");
  });
});
