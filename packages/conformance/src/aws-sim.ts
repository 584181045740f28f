/**
 * A built app's functions in the emulator with its socket "room"'s Management API a double on
 * 127.0.0.1 (15 ms a call, a rate cap, 410 for gone ids) and the given connections recorded in
 * dynalite, and the build, dynalite and clean-up around them: what the AWS broadcast and
 * room-broadcast simulations share.
 */
import { join } from "node:path";
import {
  type Emulator,
  type ManagementDouble,
  type ManagementDoubleOptions,
  type RunningDynalite,
  seedConnections,
  startDynalite,
  startEmulator,
  startManagementDouble,
} from "@nitric-like/provider-aws/emulator";
import { afterAll, afterEach, beforeAll, expect } from "vitest";
import { cleanTemp, runCli, writeProject } from "./harness.js";

/** The connection every simulated event comes from. */
export const CALLER = "CallerConnIdAA=";

/** A running simulation: what the double counted, what the functions logged, an event to send. */
export interface SocketSimulation {
  emulator: Emulator;
  management: ManagementDouble;
  lines: string[];
  /** Sends `body` as a $default event of CALLER and resolves to the function's answer body. */
  send(body: string): Promise<string>;
}

/** Starts the simulation of stack `stack`; the caller stops `emulator` and `management`. */
export async function simulateSocket(options: {
  buildDir: string;
  /** Where the tables are and the credentials the functions sign with. */
  dynamodb: Pick<RunningDynalite, "endpoint" | "credentials">;
  stack: string;
  connected: string[];
  double: Omit<ManagementDoubleOptions, "latencyMs">;
  env?: Record<string, string>;
}): Promise<SocketSimulation> {
  const management = await startManagementDouble({ latencyMs: 15, ...options.double });
  const lines: string[] = [];
  const emulator = await startEmulator({
    buildDir: options.buildDir,
    dynamodbEndpoint: options.dynamodb.endpoint,
    credentials: options.dynamodb.credentials,
    stackName: options.stack,
    logger: { info: (m) => lines.push(m), warn: (m) => lines.push(m), error: (m) => lines.push(m) },
    env: {
      NITRIC_LIKE_WEBSOCKETS: JSON.stringify({
        room: {
          apiId: "simapi",
          url: "wss://simapi.invalid/live",
          endpoint: `${management.url}/live`,
          events: ["connect", "disconnect", "message"],
        },
      }),
      ...options.env,
    },
  });
  await seedConnections(options.dynamodb, `${options.stack}-ConnectionsTable`, "room", [CALLER, ...options.connected]);
  const fn = emulator.functions[0] as Emulator["functions"][number];
  const send = async (body: string) => {
    const result = (await fn.invoke({
      requestContext: { routeKey: "$default", connectionId: CALLER, apiId: "simapi", stage: "live" },
      body,
      isBase64Encoded: false,
    })) as { body?: unknown };
    // An answer without a body is the runtime's failure (the handler timeout, a throw): say which.
    if (typeof result?.body !== "string") throw new Error(`the function answered ${JSON.stringify(result)}`);
    return result.body;
  };
  return { emulator, management, lines, send };
}

/**
 * A test file's simulations of one app: `service` (as services/room.ts of app `name`, with
 * `projectLines` added to its project file) is built once
 * and dynalite started before the file's tests; every simulation `simulate` starts is stopped
 * after its test, and dynalite and the build after the file.
 */
export function useSocketSimulations(name: string, service: string, projectLines = "") {
  let buildDir = "";
  let dynamo: RunningDynalite | undefined;
  const started: SocketSimulation[] = [];
  beforeAll(async () => {
    const project = writeProject({
      "nitric-like.yaml": `name: ${name}\nservices:\n  - match: services/*.ts\n${projectLines}`,
      "services/room.ts": service,
    });
    buildDir = join(project, "out");
    const built = await runCli(["build", project, "--provider", "aws", "--out", buildDir, "--plain"]);
    expect(built.code, built.stderr).toBe(0);
    dynamo = await startDynalite();
  }, 60_000);
  afterEach(async () => {
    for (const sim of started.splice(0)) {
      await sim.emulator.stop();
      await sim.management.close();
    }
  });
  afterAll(async () => {
    await dynamo?.close();
    cleanTemp();
  });
  const running = () => {
    if (!dynamo) throw new Error("aws-sim: dynalite is not started; call simulate from a test");
    return dynamo;
  };
  return {
    /** The environment that points the runtime's DynamoDB client at dynalite, signing as the functions do. */
    dynamodbEnv: () => ({
      AWS_REGION: "us-east-1",
      AWS_ACCESS_KEY_ID: running().credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: running().credentials.secretAccessKey,
      AWS_ENDPOINT_URL_DYNAMODB: running().endpoint,
    }),
    /** Starts a simulation of the built app, stopped after the test. */
    async simulate(options: Omit<Parameters<typeof simulateSocket>[0], "buildDir" | "dynamodb">) {
      const sim = await simulateSocket({ ...options, buildDir, dynamodb: running() });
      started.push(sim);
      return sim;
    },
  };
}
