// What every benchmark shares: starting the baseline and `nitric-like run` on a bench app, stopping
// them, and reading a process's memory. Everything listens on 127.0.0.1 and is stopped at the end.
import { spawn } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const here = fileURLToPath(new URL(".", import.meta.url));
export const cli = join(here, "..", "packages", "cli", "bin", "nitric-like.js");
const temp = [];
const children = new Set();

// A benchmark that ends early (an error, or its output piped into `head`, which ends it with EPIPE)
// takes the servers it started with it, and their temp copies: nothing is left listening.
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
  cleanup();
});

/** Starts a process and resolves once its output matches `pattern` (its first group is the URL). */
export function startProcess(command, args, pattern, options = {}) {
  const child = spawn(command, args, {
    env: { ...process.env, NO_COLOR: "1", ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  child.once("exit", () => children.delete(child));
  let out = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out starting ${args.join(" ")}:\n${out}`)), 30000);
    const onData = (d) => {
      out += d;
      const m = out.match(pattern);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1], output: () => out });
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => reject(new Error(`exited ${code}:\n${out}`)));
  });
}

/** Copies a project to a temp folder sharing bench's node_modules. */
export function copyApp(dir) {
  const copy = mkdtempSync(join(tmpdir(), "nitric-like-bench-"));
  temp.push(copy);
  cpSync(dir, copy, { recursive: true, filter: (p) => !p.includes("node_modules") && !p.includes(".nitric-like") });
  symlinkSync(join(here, "node_modules"), join(copy, "node_modules"), "dir");
  return copy;
}

/** `nitric-like run` on bench/apps/<name> (with `args`); resolves with the URL of its socket `socket`. */
export async function startApp(name, socket, args = []) {
  const started = await startProcess(
    process.execPath,
    [cli, "run", copyApp(join(here, "apps", name)), "--random-ports", "--no-watch", "--plain", ...args],
    new RegExp(`^websocket ${socket} (\\S+)$`, "m"),
  );
  // Give the service a moment past the ready line (its other handler streams).
  await new Promise((r) => setTimeout(r, 200));
  return started;
}

/** Stops a process with Ctrl-C (SIGKILL after 5 s). */
export function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once("exit", resolve);
    child.kill("SIGINT");
    setTimeout(() => child.kill("SIGKILL"), 5000).unref();
  });
}

/** Removes the temp copies. */
export function cleanup() {
  for (const d of temp.splice(0)) rmSync(d, { recursive: true, force: true });
}

/**
 * User and kernel CPU ms of a process or thread so far, from its `stat` file under /proc
 * (/proc/<pid>/stat: every thread; /proc/<pid>/task/<tid>/stat: one), in clock ticks of 10 ms
 * (Linux reports them at 100 per second).
 */
export function cpuTimes(statFile) {
  const stat = readFileSync(statFile, "utf8");
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { user: Number(fields[11]) * 10, kernel: Number(fields[12]) * 10 };
}

/** The CPU ms a process has used so far, every thread, user and kernel. */
export function cpuMs(pid) {
  const { user, kernel } = cpuTimes(`/proc/${pid}/stat`);
  return user + kernel;
}

/** A process's resident memory in MB. */
export function rssMb(pid) {
  const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/^VmRSS:\s+(\d+) kB/m);
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

/** The pids of the services `nitric-like run` started (its children running a built service). */
export function servicePids(pid) {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number)
      .filter((child) => readFileSync(`/proc/${child}/cmdline`, "utf8").includes(".nitric-like"));
  } catch {
    return [];
  }
}

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

/** "pass" or "MISS", for a figure against its target. */
export const verdict = (ok) => (ok ? "pass" : "MISS");
