/** The open-file limit of this process, where the system tells it. */
import { readFileSync } from "node:fs";

/**
 * The most files this process may keep open (its soft RLIMIT_NOFILE, which Node raises to the hard
 * limit as it starts), where the system tells (Linux's /proc/self/limits); undefined elsewhere.
 */
export function openFilesLimit(): number | undefined {
  try {
    const line = readFileSync("/proc/self/limits", "utf8")
      .split("\n")
      .find((l) => l.startsWith("Max open files"));
    const soft = Number(line?.split(/\s{2,}/)[1]);
    return Number.isFinite(soft) ? soft : undefined;
  } catch {
    return undefined;
  }
}
