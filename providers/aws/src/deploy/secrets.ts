/**
 * `nitric-like secret put <name> --provider aws`: stores a value as the newest version of a
 * deployed secret. The secret is found by the stack's output `Secret<Name>` (template.ts), which
 * holds its ARN; the value goes to Secrets Manager's PutSecretValue as SecretBinary, under a
 * ClientRequestToken made here (a random UUID, as the runtime's puts have), which becomes the
 * version's id. Runs where `up` runs, with the AWS SDK and the user's credentials.
 */
import { randomUUID } from "node:crypto";
import { PutSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { type Logger, secretValueProblem } from "@nitric-like/spec";
import { secretOutputKey } from "../build/template.js";
import { clientConfig, deployTimeouts, watched } from "./calls.js";
import { DeployError, deployedStack, explain, stuckStackProblem } from "./deploy.js";

/** What putSecret needs. */
export interface PutSecretRequest {
  stack: string;
  region?: string;
  /** The secret's name in the app. */
  secret: string;
  value: Uint8Array;
  logger: Logger;
}

/** The ARN of a deployed secret, from the stack's outputs; a DeployError saying what to do when missing. */
export async function deployedSecretArn(options: {
  stack: string;
  region?: string;
  secret: string;
  logger?: Logger;
}): Promise<string> {
  const doing = `secret put ${options.secret}`;
  const stack = await deployedStack(
    { ...options, command: "secret put" },
    doing,
    `there is no stack "${options.stack}" in this account and region; deploy the app first with "nitric-like up --provider aws", or give the stack's name with --stack and its region with --region`,
  );
  const key = secretOutputKey(options.secret);
  const output = (stack.Outputs ?? []).find((o) => o.OutputKey === key && o.Description === `secret ${options.secret}`);
  if (!output?.OutputValue) {
    // A first deploy that failed, or one under way: the way on is that, not to deploy again.
    const stuck = stuckStackProblem(stack, "up");
    if (stuck) throw new DeployError(`${doing}: ${stuck}`);
    const deployed = (stack.Outputs ?? [])
      .filter((o) => o.OutputKey?.startsWith("Secret") && o.Description?.startsWith("secret "))
      .map((o) => JSON.stringify((o.Description ?? "").slice("secret ".length)));
    throw new DeployError(
      `${doing}: stack "${options.stack}" has no secret "${options.secret}" (it has ${deployed.join(", ") || "none"}); declare it in a service with secret(${JSON.stringify(options.secret)}).allow(...), deploy with "nitric-like up --provider aws", then put the value again`,
    );
  }
  return output.OutputValue;
}

/** Stores `value` as the newest version of a deployed secret; resolves with the version's id and the secret's ARN. */
export async function putSecret(options: PutSecretRequest): Promise<{ version: string; where: string }> {
  const problem = secretValueProblem(options.secret, options.value);
  if (problem !== undefined) throw new DeployError(problem);
  const arn = await deployedSecretArn(options);
  const doing = `secret put ${options.secret}`;
  const timeouts = deployTimeouts();
  const client = watched(
    new SecretsManagerClient(clientConfig(options.region, timeouts, options.logger)),
    "SECRETS_MANAGER",
    timeouts,
    options.logger,
  );
  try {
    const token = randomUUID();
    const out = await client.send(
      new PutSecretValueCommand({ SecretId: arn, ClientRequestToken: token, SecretBinary: options.value }),
    );
    const version = out.VersionId ?? token;
    return { version, where: arn };
  } catch (error) {
    const name = (error as Error).name;
    if (name === "ResourceNotFoundException" || name === "InvalidRequestException") {
      // Deleted outside the stack, or scheduled for deletion.
      throw new DeployError(
        `${doing}: Secrets Manager refused ${arn} (${name}: ${(error as Error).message}); if the secret was deleted outside the stack, restore it (aws secretsmanager restore-secret --secret-id ${arn}) or deploy the app again`,
      );
    }
    throw explain(
      error,
      doing,
      "SECRETS_MANAGER",
      "secret put",
      `the value may or may not be stored; run "nitric-like secret put" again: a second put makes it the newest version either way`,
    );
  } finally {
    client.destroy();
  }
}
