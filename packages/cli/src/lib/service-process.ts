/**
 * Starting one service process: the built-in TypeScript runner (node on the esbuild bundle) or the
 * project's own `start` command, with the environment both @nitric/sdk and our SDK read.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createRequire } from "node:module";
import type { Project, ServiceEntry } from "@nitric-like/spec";
import type { Bundle } from "./bundle.js";

/** How to start a service. */
export interface ServiceLaunch {
  project: Project;
  service: ServiceEntry;
  /** The bundle, when the service has no `start` command. */
  bundle?: Bundle;
  /** Its gRPC endpoint, `127.0.0.1:port`. */
  endpoint: string;
  /** What SERVICE_ADDRESS gets when not the endpoint: the same endpoint on a Unix socket. */
  address?: string;
  /** `run` locally, `build` for the collect pass. */
  environment: "run" | "build";
}

/** Preloaded into every Node service: see provider-kit's preload/grpc-reset.cjs (a fix for @nitric/sdk's grpc-js). */
export const GRPC_RESET_PRELOAD = createRequire(import.meta.url).resolve(
  "@nitric-like/provider-kit/preload/grpc-reset.cjs",
);

/** The variables a service process gets, for every SDK: Node reads SERVICE_ADDRESS, Go and JVM SDKs host and port. */
export function serviceEnv(launch: ServiceLaunch): NodeJS.ProcessEnv {
  const [host, port] = launch.endpoint.split(":") as [string, string];
  // A `start` command may run node itself: NODE_OPTIONS carries the preload there.
  const preload = `--require ${JSON.stringify(GRPC_RESET_PRELOAD)}`;
  return {
    ...process.env,
    NODE_OPTIONS: process.env.NODE_OPTIONS ? `${process.env.NODE_OPTIONS} ${preload}` : preload,
    SERVICE_ADDRESS: launch.address ?? launch.endpoint,
    NITRIC_SERVICE_HOST: host,
    NITRIC_SERVICE_PORT: port,
    NITRIC_ENVIRONMENT: launch.environment,
    NITRIC_LIKE_SERVICE: launch.service.name,
    NITRIC_LIKE_PROJECT: launch.project.name,
    SERVICE_PATH: launch.service.path,
  };
}

/** Spawns the service with piped output. */
export function spawnService(launch: ServiceLaunch): ChildProcess {
  const env = serviceEnv(launch);
  const options = { cwd: launch.project.dir, env, stdio: ["ignore", "pipe", "pipe"] as ["ignore", "pipe", "pipe"] };
  if (launch.service.start !== undefined) {
    return spawn("/bin/sh", ["-c", launch.service.start], { ...options, detached: true });
  }
  if (!launch.bundle) throw new Error(`service "${launch.service.name}" has neither a bundle nor a start command`);
  // A process group of its own (as for start commands): a terminal's Ctrl-C then reaches only the
  // CLI, which drains in-flight handlers before it stops the services, instead of killing them mid-event.
  // NITRIC_LIKE_SERVICE_NODE_ARGS: extra Node flags for the services only (e.g. --cpu-prof, which
  // NODE_OPTIONS does not accept), for profiling.
  const extra = process.env.NITRIC_LIKE_SERVICE_NODE_ARGS?.split(" ").filter(Boolean) ?? [];
  return spawn(process.execPath, ["--enable-source-maps", ...extra, launch.bundle.outfile], {
    ...options,
    detached: true,
  });
}

/** Stops a process: SIGTERM, then SIGKILL after `graceMs`. Resolves when it has exited. */
export function stopProcess(child: ChildProcess, graceMs = 2000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => signal(child, "SIGKILL"), graceMs);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    signal(child, "SIGTERM");
  });
}

function signal(child: ChildProcess, sig: NodeJS.Signals): void {
  try {
    // Every service runs in its own process group (a `start` command under sh too): signal the whole group.
    if (child.pid !== undefined) process.kill(-child.pid, sig);
    else child.kill(sig);
  } catch {
    // Already gone.
  }
}

/** Calls `onLine` for each complete line of a stream. */
export function forEachLine(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let pending = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    pending += chunk;
    let at = pending.indexOf("\n");
    while (at >= 0) {
      onLine(pending.slice(0, at));
      pending = pending.slice(at + 1);
      at = pending.indexOf("\n");
    }
  });
  stream.on("end", () => {
    if (pending.length > 0) onLine(pending);
    pending = "";
  });
}
