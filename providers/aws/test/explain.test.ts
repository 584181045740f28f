// What explain() says of a call whose endpoint does not answer, with a real AWS SDK client
// refused on 127.0.0.1: the endpoint variable the call went to, and its service.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { DynamoDBClient, ListTablesCommand } from "@aws-sdk/client-dynamodb";
import { afterEach, describe, expect, it } from "vitest";
import { explain } from "../src/deploy/deploy.js";

const saved = { ...process.env };
afterEach(() => {
  process.env = { ...saved };
});

/** A port on 127.0.0.1 that nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

describe("explain() of an endpoint that does not answer", () => {
  it("names the variable whose port refused a call whose service it is not told, not CloudFormation's", async () => {
    const [cfn, ddb] = [await closedPort(), await closedPort()];
    Object.assign(process.env, {
      AWS_ENDPOINT_URL_CLOUDFORMATION: `http://127.0.0.1:${cfn}`,
      AWS_ENDPOINT_URL_DYNAMODB: `http://127.0.0.1:${ddb}`,
      AWS_REGION: "us-east-1",
      AWS_ACCESS_KEY_ID: "x",
      AWS_SECRET_ACCESS_KEY: "x",
    });
    const client = new DynamoDBClient({ maxAttempts: 1 });
    const error = await client.send(new ListTablesCommand({})).then(
      () => undefined,
      (e: unknown) => e,
    );
    client.destroy();
    expect(explain(error, 'deleting stack "chat"', undefined, "down").message).toBe(
      `deleting stack "chat": the DynamoDB endpoint "http://127.0.0.1:${ddb}" (AWS_ENDPOINT_URL_DYNAMODB) does not answer (ECONNREFUSED); start it, or unset AWS_ENDPOINT_URL_DYNAMODB to run "nitric-like down" against AWS`,
    );
    // One URL in several variables (a LocalStack for everything): CloudFormation's is named.
    process.env.AWS_ENDPOINT_URL_ACM = `http://127.0.0.1:${ddb}`;
    process.env.AWS_ENDPOINT_URL_CLOUDFORMATION = `http://127.0.0.1:${ddb}`;
    expect(explain(error, "deploy", undefined, "up").message).toContain(
      `the CloudFormation endpoint "http://127.0.0.1:${ddb}" (AWS_ENDPOINT_URL_CLOUDFORMATION) does not answer`,
    );
  });
});
