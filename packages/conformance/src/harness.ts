/**
 * Runs real projects under the real CLI for the end-to-end and conformance tests: each project is
 * copied to a fresh temp folder (its own .nitric-like/ state) that shares this package's
 * node_modules, and `nitric-like run` is started on it with ephemeral ports. Every app started is
 * tracked, and `stopAll()` (called after each test) stops it with Ctrl-C and reports every app
 * that did not exit cleanly (code 0), so a leaked server or an unclean shutdown fails the test.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";

/** The CLI entry point in this repository. */
export const CLI = fileURLToPath(new URL("../../cli/bin/nitric-like.js", import.meta.url));
const NODE_MODULES = fileURLToPath(new URL("../node_modules", import.meta.url));
/** The fixture projects. */
export const FIXTURES = fileURLToPath(new URL("../fixtures", import.meta.url));
/** The examples folder. */
export const EXAMPLES = fileURLToPath(new URL("../../../examples", import.meta.url));

const tempDirs: string[] = [];
const running = new Set<App>();

/** A fresh, empty temp folder, removed after the tests. */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "nitric-like-test-"));
  tempDirs.push(dir);
  return dir;
}

/** Makes a project folder share this package's node_modules (what `npm install` would give it). */
export function linkNodeModules(dir: string): void {
  symlinkSync(NODE_MODULES, join(dir, "node_modules"), "dir");
}

/** Copies a project to a fresh temp folder sharing this package's node_modules. */
export function copyProject(source: string): string {
  const dir = mkdtempSync(join(tmpdir(), "nitric-like-test-"));
  tempDirs.push(dir);
  cpSync(source, dir, {
    recursive: true,
    filter: (p) => !p.includes("node_modules") && !p.includes(".nitric-like"),
  });
  symlinkSync(NODE_MODULES, join(dir, "node_modules"), "dir");
  return dir;
}

/** Runs the CLI to completion and returns its exit code and output. */
export function runCli(
  args: string[],
  options: { cwd?: string; timeoutMs?: number; env?: Record<string, string>; input?: string | Uint8Array } = {},
) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: options.cwd,
      env: { ...process.env, NO_COLOR: "1", ...options.env },
    });
    // Piped to stdin, then ended; without it stdin stays an open pipe.
    if (options.input !== undefined) child.stdin.end(options.input);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`nitric-like ${args.join(" ")} did not finish in ${options.timeoutMs ?? 30000} ms\n${stderr}`));
    }, options.timeoutMs ?? 30000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A request to the dashboard's API of `app` (its `path`, such as /api/state), with the run's key. */
export function dashboardFetch(app: App, path: string, init: RequestInit = {}): Promise<Response> {
  if (app.dashboard === undefined) throw new Error("this run printed no dashboard line");
  const headers = new Headers(init.headers);
  headers.set("X-Dashboard-Key", app.dashboardKey);
  return fetch(`${app.dashboard}${path}`, { ...init, headers });
}

/** A project running under `nitric-like run`. */
export class App {
  stdout = "";
  stderr = "";
  /** Socket URLs by name, from the `websocket <name> <url>` lines. */
  readonly urls: Record<string, string> = {};
  /** Where the dashboard listens, from the `dashboard <url>/#key=<key>` line. */
  dashboard: string | undefined;
  /** The dashboard's address as printed, with the run's key: the page to open. */
  dashboardPage: string | undefined;
  /** The run's dashboard key, which every API request carries (see dashboardFetch). */
  dashboardKey = "";
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly dir: string,
    readonly child: ChildProcess,
  ) {
    child.stdout?.on("data", (d) => {
      this.stdout += d;
      for (const m of this.stdout.matchAll(/^websocket (\S+) (ws:\/\/\S+)$/gm))
        this.urls[m[1] as string] = m[2] as string;
      const dashboard = /^dashboard ((http:\/\/\S+?)\/#key=(\S+))$/m.exec(this.stdout);
      if (dashboard && this.dashboard === undefined) {
        this.dashboardPage = dashboard[1];
        this.dashboard = dashboard[2];
        this.dashboardKey = dashboard[3] as string;
      }
    });
    child.stderr?.on("data", (d) => {
      this.stderr += d;
    });
    this.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  }

  /** The URL of a socket. */
  url(name: string): string {
    const url = this.urls[name];
    if (!url) throw new Error(`no socket "${name}" in the output:\n${this.stdout}\n${this.stderr}`);
    return url;
  }

  /** Waits until stdout+stderr match. */
  async waitFor(pattern: RegExp, timeoutMs = 20000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(this.stdout + this.stderr)) {
      if (this.child.exitCode !== null)
        throw new Error(
          `nitric-like run exited (${this.child.exitCode}) before ${pattern}:\n${this.stdout}\n${this.stderr}`,
        );
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}:\n${this.stdout}\n${this.stderr}`);
      await sleep(20);
    }
  }

  /** Ctrl-C as a terminal sends it: SIGINT to the whole process group (start the app with `group`). */
  interrupt(): void {
    if (this.child.pid !== undefined) process.kill(-this.child.pid, "SIGINT");
  }

  /** Sends SIGINT (Ctrl-C) and waits for the exit. */
  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    running.delete(this);
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGINT");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 10000);
    const result = await this.exited;
    clearTimeout(timer);
    return result;
  }
}

/**
 * Starts `nitric-like run` on a project folder (copy it first with copyProject) and waits until
 * ready, with `env` added to its environment. With `group`, the CLI leads a process group of its
 * own, as in a terminal, so that `interrupt()` is a real Ctrl-C: SIGINT to the CLI and to
 * everything in its group.
 */
export async function startApp(
  dir: string,
  extraArgs: string[] = [],
  env: NodeJS.ProcessEnv = {},
  /**
   * `readyTimeoutMs`: how long to wait for `ready` (20 s), longer for a test run on a loaded machine.
   * `cwd`: where run starts (this process's folder by default).
   */
  options: { group?: boolean; readyTimeoutMs?: number; cwd?: string } = {},
): Promise<App> {
  const child = spawn(process.execPath, [CLI, "run", dir, "--random-ports", "--plain", ...extraArgs], {
    env: { ...process.env, NO_COLOR: "1", ...env },
    detached: options.group === true,
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
  });
  const app = new App(dir, child);
  running.add(app);
  await app.waitFor(/^ready: /m, options.readyTimeoutMs);
  return app;
}

/** Stops every app still running; returns a line for each that did not exit with code 0. */
export async function stopAll(): Promise<string[]> {
  const apps = [...running];
  const results = await Promise.all(apps.map((a) => a.stop()));
  return apps.flatMap((a, i) => {
    const r = results[i];
    return r && r.code === 0 ? [] : [`${a.dir}: exit ${r?.code ?? r?.signal}\n${a.stderr}`];
  });
}

/** Removes the temp folders (after all tests). */
export function cleanTemp(): void {
  for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** Sleeps. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A frame a client received. */
export interface Frame {
  data: Buffer;
  binary: boolean;
  text: string;
}

/** A connected test client that queues what it receives. */
export class Client {
  readonly frames: Frame[] = [];
  private waiters: (() => void)[] = [];
  closed: { code: number; reason: string } | undefined;
  private closedWaiters: (() => void)[] = [];

  constructor(readonly ws: WebSocket) {
    ws.on("message", (data: Buffer, binary: boolean) => {
      this.frames.push({ data, binary, text: data.toString("utf8") });
      for (const w of this.waiters.splice(0)) w();
    });
    ws.on("close", (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      for (const w of this.closedWaiters.splice(0)) w();
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** The next frame, waiting up to timeoutMs. */
  async next(timeoutMs = 5000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    while (this.frames.length === 0) {
      if (this.closed)
        throw new Error(`connection closed (${this.closed.code} ${this.closed.reason}) while waiting for a frame`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("no frame arrived in time");
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.frames.shift() as Frame;
  }

  /** Sends a JSON command and returns the parsed JSON reply. */
  async call(command: Record<string, unknown>): Promise<Record<string, unknown>> {
    this.ws.send(JSON.stringify(command));
    return JSON.parse((await this.next()).text) as Record<string, unknown>;
  }

  /** Waits for the close. */
  async waitClosed(timeoutMs = 5000): Promise<{ code: number; reason: string }> {
    if (!this.closed) {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error("connection did not close in time")), timeoutMs);
        this.closedWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.closed as { code: number; reason: string };
  }

  close(): void {
    this.ws.close();
  }
}

/** Opens a client; rejects when the upgrade is refused. */
export function connect(url: string, headers: Record<string, string> = {}): Promise<Client> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    const client = new Client(ws);
    ws.once("open", () => resolve(client));
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (d: Buffer) => {
        body += d;
      });
      res.on("end", () =>
        reject(Object.assign(new Error(`refused: ${res.statusCode} ${body}`), { status: res.statusCode, body })),
      );
    });
  });
}

/**
 * A service's source on our SDK whose answer to every message names `values` (an expression of
 * what it imports) and counts the messages its copy has had: a copy restarted counts from 1 again,
 * so a test sees which saves restarted it (`a1/s1 #2`).
 */
export function countingService(name: string, imports: string[], values: string): string {
  return [
    'import { websocket } from "@nitric-like/sdk";',
    ...imports,
    `const socket = websocket(${JSON.stringify(name)});`,
    "let count = 0;",
    'socket.on("connect", () => {});',
    'socket.on("disconnect", () => {});',
    `socket.on("message", () => { count++; return \`\${${values}} #\${count}\`; });`,
  ].join("\n");
}

/**
 * Writes a project (file path → content) to a fresh temp folder sharing this package's
 * node_modules. Files under `node_modules/` are packages of the project's own, beside links to
 * the shared ones.
 */
export function writeProject(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "nitric-like-test-"));
  tempDirs.push(dir);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  const own = join(dir, "node_modules");
  if (!existsSync(own)) symlinkSync(NODE_MODULES, own, "dir");
  else linkEntries(NODE_MODULES, own);
  return dir;
}

/** Links each entry of `from` into `to` that `to` lacks; a scope folder both have, entry by entry. */
function linkEntries(from: string, to: string): void {
  for (const name of readdirSync(from)) {
    const target = join(to, name);
    if (!existsSync(target)) symlinkSync(join(from, name), target);
    else if (name.startsWith("@")) linkEntries(join(from, name), target);
  }
}

/**
 * Starts moto's server (`python3 -m moto.server`, a real CloudFormation and more) on a free loopback
 * port: its URL, and its process to kill once done. Rejects (the process killed) when it exits or
 * has not listened within `timeoutMs`.
 */
export function startMoto(timeoutMs = 20000): Promise<{ url: string; process: ChildProcess }> {
  const child = spawn("python3", ["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  return new Promise((resolve, reject) => {
    let seen = "";
    const fail = (error: Error) => {
      clearTimeout(timer);
      child.kill();
      reject(error);
    };
    const timer = setTimeout(
      () => fail(new Error(`moto did not start within ${timeoutMs / 1000} s:\n${seen}`)),
      timeoutMs,
    );
    const read = (chunk: Buffer) => {
      seen += chunk.toString();
      const match = /Running on (http:\/\/127\.0\.0\.1:\d+)/.exec(seen);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve({ url: match[1], process: child });
      }
    };
    child.stdout?.on("data", read);
    child.stderr?.on("data", read);
    child.once("exit", (code) =>
      fail(new Error(`moto exited (${code}) before it listened (is moto installed for python3?):\n${seen}`)),
    );
  });
}
