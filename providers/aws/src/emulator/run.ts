/**
 * `nitric-like run --provider aws`: the app as it will run on AWS, on this machine. The project is
 * built exactly as for a deploy (`.nitric-like/aws-run`), then the emulator runs the template:
 * each service in its own function process with the Lambda runtime, the sockets behind emulated
 * API Gateway WebSocket APIs, the tables in dynalite (kept under `.nitric-like/aws-dynamodb`).
 */
import { rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { HandlerRegistration, RunningProvider, RunOptions, ServiceEntry } from "@nitric-like/spec";
import { findServices } from "@nitric-like/spec";
import dynalite from "dynalite";
import { buildAws } from "../build/build.js";
import { bundleFunction } from "../build/bundle.js";
import { type Emulator, startEmulator } from "./emulator.js";

/** Where `run --provider aws` keeps its build and its tables. */
export function emulatedDirs(projectDir: string): { build: string; data: string } {
  return { build: join(projectDir, ".nitric-like", "aws-run"), data: join(projectDir, ".nitric-like", "aws-dynamodb") };
}

/** Starts dynalite on 127.0.0.1; `path` keeps its data on disk. */
export async function startDynalite(path?: string): Promise<{ endpoint: string; close(): Promise<void> }> {
  const server = dynalite({ ...(path ? { path } : {}), createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      }),
  };
}

/** The emulated app, as the CLI sees a running provider. */
class EmulatedRun implements RunningProvider {
  readonly hostsServices = true;

  constructor(
    private readonly emulator: Emulator,
    private readonly db: { close(): Promise<void> },
    private readonly expected: HandlerRegistration[],
    private readonly projectDir: string,
    private readonly buildDir: string,
  ) {}

  /**
   * Bundles the service again into the build folder, as a deploy would, and restarts its function
   * worker on the new bundle. A bundle that fails leaves the running worker alone.
   */
  async restartService(service: ServiceEntry): Promise<void> {
    try {
      await bundleFunction(this.projectDir, service, this.buildDir);
    } finally {
      rmSync(join(this.buildDir, "entries"), { recursive: true, force: true });
    }
    await this.emulator.restartService(service.name);
  }

  endpoint(service: string): Promise<string> {
    return Promise.reject(new Error(`provider aws: service "${service}" runs inside its emulated function`));
  }
  serviceStarting(): void {}
  serviceExited(): undefined {
    return undefined;
  }
  /** Every function finished its init, which waits for its handlers: the spec's registrations are live. */
  registrations(): HandlerRegistration[] {
    return this.expected;
  }
  onRegistrationsChanged(): void {}
  sockets(): { name: string; url: string }[] {
    return this.emulator.sockets;
  }
  async stop(): Promise<void> {
    await this.emulator.stop();
    await this.db.close();
  }
}

/** Builds the project and runs it in the emulator. */
export async function runEmulated(options: RunOptions): Promise<RunningProvider> {
  const { project, spec, logger } = options;
  const dirs = emulatedDirs(project.dir);
  await buildAws({ project, spec, services: findServices(project), outDir: dirs.build, logger });
  const db = await startDynalite(dirs.data);
  try {
    const emulator = await startEmulator({ buildDir: dirs.build, dynamodbEndpoint: db.endpoint, logger });
    const expected: HandlerRegistration[] = [];
    for (const r of spec.resources) {
      if (r.kind !== "websocket") continue;
      for (const [event, service] of Object.entries(r.handlers))
        expected.push({ service, socket: r.name, event: event as HandlerRegistration["event"] });
    }
    return new EmulatedRun(emulator, db, expected, project.dir, dirs.build);
  } catch (error) {
    await db.close();
    throw error;
  }
}
