/**
 * A built app's functions in the emulator with its socket "room"'s Management API a double on
 * 127.0.0.1 (15 ms a call, a rate cap, 410 for gone ids) and the given connections recorded in
 * dynalite: the set-up the AWS broadcast and room-broadcast simulations share.
 */
import {
  type Emulator,
  type ManagementDouble,
  type ManagementDoubleOptions,
  seedConnections,
  startEmulator,
  startManagementDouble,
} from "@nitric-like/provider-aws/emulator";

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
  dynamodbEndpoint: string;
  stack: string;
  connected: string[];
  double: Omit<ManagementDoubleOptions, "latencyMs">;
  env?: Record<string, string>;
}): Promise<SocketSimulation> {
  const management = await startManagementDouble({ latencyMs: 15, ...options.double });
  const lines: string[] = [];
  const emulator = await startEmulator({
    buildDir: options.buildDir,
    dynamodbEndpoint: options.dynamodbEndpoint,
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
  await seedConnections(options.dynamodbEndpoint, `${options.stack}-ConnectionsTable`, "room", [
    CALLER,
    ...options.connected,
  ]);
  const fn = emulator.functions[0] as Emulator["functions"][number];
  const send = async (body: string) => {
    const result = (await fn.invoke({
      requestContext: { routeKey: "$default", connectionId: CALLER, apiId: "simapi", stage: "live" },
      body,
      isBase64Encoded: false,
    })) as { body: string };
    return result.body;
  };
  return { emulator, management, lines, send };
}
