/**
 * Where a running `nitric-like run` says its sockets are: `.nitric-like/sockets.json` in the
 * project (readable by its user alone), written as run prints each socket's line and removed when
 * it stops, so `nitric-like connect` finds a socket by its name. It holds run's process id: a file
 * a killed run left behind names a process that is gone, and is not trusted.
 */
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** What the file holds. */
export interface RunSockets {
  pid: number;
  sockets: { name: string; url: string }[];
}

/** The file of a project's running run. */
export function runSocketsFile(projectDir: string): string {
  return join(projectDir, ".nitric-like", "sockets.json");
}

/** Writes this process's sockets (run calls it whenever a socket's line is printed). */
export function writeRunSockets(projectDir: string, sockets: { name: string; url: string }[]): void {
  mkdirSync(join(projectDir, ".nitric-like"), { recursive: true });
  const data: RunSockets = { pid: process.pid, sockets: sockets.map(({ name, url }) => ({ name, url })) };
  const file = runSocketsFile(projectDir);
  writeFileSync(file, `${JSON.stringify(data, null, 2)}\n`, { mode: 0o600 });
  // The mode above applies to a new file only: one left by an earlier run keeps its own.
  chmodSync(file, 0o600);
}

/** Removes the file, when this process wrote it (another run of the project may have since). */
export function removeRunSockets(projectDir: string): void {
  if (readRunSockets(projectDir)?.pid === process.pid) rmSync(runSocketsFile(projectDir), { force: true });
}

/** The sockets of the project's running run, or undefined when none runs (no file, or its process is gone). */
export function readRunSockets(projectDir: string): RunSockets | undefined {
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(runSocketsFile(projectDir), "utf8"));
  } catch {
    return undefined;
  }
  const { pid, sockets } = (data ?? {}) as Partial<RunSockets>;
  if (typeof pid !== "number" || !Array.isArray(sockets)) return undefined;
  if (!sockets.every((s) => typeof s?.name === "string" && typeof s.url === "string")) return undefined;
  try {
    process.kill(pid, 0);
  } catch {
    // No such process, or another user's (EPERM): not this project's run.
    return undefined;
  }
  return { pid, sockets };
}
