// The child processes the CLI starts end when it ends, however it ends: SIGKILL included, which
// runs none of its code, and a child busy in a loop, which runs none of its own.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { CLI, cleanTemp, connect, sleep, startApp, stopAll, writeProject } from "../src/harness.js";

/** A process's parent and process group, or undefined once it is gone or a zombie (PID 1 may be slow to reap one). */
function stat(pid: number): { ppid: number; pgid: number } | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    if (fields[0] === "Z") return undefined;
    return { ppid: Number(fields[1]), pgid: Number(fields[2]) };
  } catch {
    return undefined;
  }
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return "";
  }
}

/** Every live descendant of `root`, read from /proc. */
function descendants(root: number): number[] {
  const parents = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const s = stat(Number(entry));
    if (s) parents.set(Number(entry), s.ppid);
  }
  const found = new Set<number>([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, ppid] of parents) {
      if (!found.has(pid) && found.has(ppid)) {
        found.add(pid);
        grew = true;
      }
    }
  }
  found.delete(root);
  return [...found];
}

/** The CLIs these tests started and every descendant they saw, ended after each test even when it failed. */
const started: ChildProcess[] = [];
const seen = new Set<number>();

afterEach(async () => {
  await stopAll();
  const own = stat(process.pid)?.pgid;
  for (const child of started.splice(0)) child.kill("SIGKILL");
  for (const pid of seen) {
    const s = stat(pid);
    if (!s) continue;
    try {
      if (s.pgid !== own && s.pgid === pid) process.kill(-pid, "SIGKILL");
      else process.kill(pid, "SIGKILL");
    } catch {
      // Gone meanwhile.
    }
  }
  seen.clear();
});
afterAll(cleanTemp);

/**
 * Starts the CLI with `args` in `dir`, waits until one of its descendants' command lines contains
 * `marker` (and `settleMs` more, at least long enough for the CLI's spawn() to have returned),
 * ends the CLI with `signal`, and resolves with the descendants it had that are still alive a few
 * seconds later.
 */
async function survivors(dir: string, args: string[], marker: string, signal: NodeJS.Signals, settleMs = 200) {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: dir,
    env: { ...process.env, NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  started.push(child);
  let out = "";
  child.stdout.on("data", (d) => {
    out += d;
  });
  child.stderr.on("data", (d) => {
    out += d;
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const look = () => {
    for (const pid of descendants(child.pid ?? -1)) seen.add(pid);
    return [...seen].some((pid) => cmdline(pid).includes(marker));
  };
  for (let i = 0; i < 400 && !look(); i++) await sleep(50);
  expect(
    [...seen].some((pid) => cmdline(pid).includes(marker)),
    out,
  ).toBe(true);
  for (const until = Date.now() + settleMs; Date.now() < until; ) {
    look();
    await sleep(50);
  }
  look();
  child.kill(signal);
  await exited;
  const alive = () => [...seen].filter((pid) => stat(pid) !== undefined);
  for (let i = 0; i < 100 && alive().length > 0; i++) await sleep(50);
  return alive().map((pid) => `${pid} ${cmdline(pid)}`);
}

/** A service whose top level never yields. */
const BUSY_AT_LOAD = [
  'import { websocket } from "@nitric-like/sdk";',
  'websocket("busy").on("message", (ctx) => ctx.text());',
  "for (;;) {}",
].join("\n");

describe("the CLI's child processes end with it", () => {
  for (const signal of ["SIGKILL", "SIGINT", "SIGTERM", "SIGHUP"] as const) {
    it(`spec: a service busy in a loop in its collect pass ends when the CLI ends on ${signal}`, async () => {
      const dir = writeProject({
        "nitric-like.yaml": "name: busy\nservices:\n  - match: services/*.ts\n",
        "services/busy.ts": BUSY_AT_LOAD,
      });
      expect(await survivors(dir, ["spec"], join(dir, ".nitric-like"), signal)).toEqual([]);
    }, 30000);
  }

  it("run --processes: a service busy in a loop after it started ends when run is killed with SIGKILL", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: late\nservices:\n  - match: services/*.ts\n",
      "services/late.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("late");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", (ctx) => ctx.text());',
        'if (process.env.NITRIC_ENVIRONMENT === "run") setTimeout(() => { for (;;) {} }, 500);',
      ].join("\n"),
    });
    const args = ["run", "--processes", "--random-ports", "--no-dashboard", "--no-watch"];
    // The collect pass's process ends by itself; the one run starts is busy 0.5 s after it loads.
    expect(await survivors(dir, args, join(dir, ".nitric-like"), "SIGKILL", 4000)).toEqual([]);
  }, 30000);

  it("run --provider aws: a function busy in its init ends when run is killed with SIGKILL", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: slow-init\nservices:\n  - match: services/*.ts\n",
      "services/slow.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("slow");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", (ctx) => ctx.text());',
        "if (process.env.LAMBDA_TASK_ROOT) for (;;) {}",
      ].join("\n"),
    });
    const args = ["run", "--provider", "aws", "--random-ports", "--no-dashboard", "--no-watch"];
    // The emulator's worker process for the function, busy in its init.
    expect(await survivors(dir, args, "emulator/worker.js", "SIGKILL", 500)).toEqual([]);
  }, 40000);
});

describe("a CLI whose stdout's reader has gone (nitric-like run | head -1)", () => {
  it("run --processes: stops as on Ctrl-C once its stdout is closed, saying why, with no error printed and no service left", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: piped\nservices:\n  - match: services/*.ts\n",
      "services/piped.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("piped");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", (ctx) => ctx.text());',
        // What it prints reaches run's stdout after the reader has gone.
        'if (process.env.NITRIC_ENVIRONMENT === "run") setInterval(() => console.log("tick"), 200);',
      ].join("\n"),
    });
    const child = spawn(
      process.execPath,
      [CLI, "run", "--processes", "--random-ports", "--no-dashboard", "--no-watch"],
      {
        cwd: dir,
        env: { ...process.env, NO_COLOR: "1" },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    started.push(child);
    let err = "";
    child.stderr.on("data", (d) => {
      err += d;
    });
    // What `| head -1` does: read the first line, then leave.
    const first = await new Promise<string>((resolve) => {
      let out = "";
      child.stdout.on("data", (d) => {
        out += d;
        if (out.includes("\n")) resolve(out.slice(0, out.indexOf("\n")));
      });
    });
    for (const pid of descendants(child.pid ?? -1)) seen.add(pid);
    child.stdout.destroy();
    const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
    expect(first).toContain("piped");
    expect(err).not.toContain("EPIPE");
    expect(err).toContain("its stdout was closed");
    expect(code, err).toBe(0);
    for (let i = 0; i < 60 && [...seen].some((pid) => stat(pid) !== undefined); i++) await sleep(50);
    expect([...seen].filter((pid) => stat(pid) !== undefined)).toEqual([]);
  }, 30000);

  it("run --processes: stops as on Ctrl-C once its stderr is closed (run 2>&1 piped into head -1), leaving no service", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: piped\nservices:\n  - match: services/*.ts\n",
      "services/piped.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("piped");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", (ctx) => ctx.text());',
        // What it prints reaches run's stderr after the reader has gone.
        'if (process.env.NITRIC_ENVIRONMENT === "run") setInterval(() => console.error("tick"), 200);',
      ].join("\n"),
    });
    const child = spawn(
      process.execPath,
      [CLI, "run", "--processes", "--random-ports", "--no-dashboard", "--no-watch"],
      {
        cwd: dir,
        env: { ...process.env, NO_COLOR: "1" },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    started.push(child);
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    // Its stderr read until run is ready, then left.
    await new Promise<void>((resolve) => {
      let err = "";
      child.stderr.on("data", (d) => {
        err += d;
        if (err.includes("ready")) resolve();
      });
    });
    for (const pid of descendants(child.pid ?? -1)) seen.add(pid);
    child.stderr.destroy();
    const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
    expect(code, out).toBe(0);
    for (let i = 0; i < 60 && [...seen].some((pid) => stat(pid) !== undefined); i++) await sleep(50);
    expect([...seen].filter((pid) => stat(pid) !== undefined)).toEqual([]);
  }, 30000);

  it("run --processes: stops as on Ctrl-C when its stderr is closed while it starts (in its collect pass), ending the pass's service, exit 0", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: piped\nservices:\n  - match: services/*.ts\n",
      "services/piped.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'websocket("piped").on("message", (ctx) => ctx.text());',
        // The collect pass waits for it, and says so on run's stderr after 2 s.
        "await new Promise((resolve) => setTimeout(resolve, 8000));",
      ].join("\n"),
    });
    const child = spawn(
      process.execPath,
      [CLI, "run", "--processes", "--random-ports", "--no-dashboard", "--no-watch"],
      {
        cwd: dir,
        env: { ...process.env, NO_COLOR: "1" },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    started.push(child);
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
    // Its stderr read until the collect pass has begun, then left.
    await new Promise<void>((resolve) => {
      let err = "";
      child.stderr.on("data", (d) => {
        err += d;
        if (err.includes("collecting resources")) resolve();
      });
    });
    const look = () => {
      for (const pid of descendants(child.pid ?? -1)) seen.add(pid);
      return [...seen].some((pid) => cmdline(pid).includes("piped"));
    };
    for (let i = 0; i < 100 && !look(); i++) await sleep(50);
    expect(look()).toBe(true);
    child.stderr.destroy();
    const startedAt = Date.now();
    const code = await exited;
    expect(code, out).toBe(0);
    // It stopped at the pass's next line on stderr, not once the service's 8 s await was over.
    expect(Date.now() - startedAt).toBeLessThan(5000);
    expect(out).not.toContain("ready");
    for (let i = 0; i < 60 && [...seen].some((pid) => stat(pid) !== undefined); i++) await sleep(50);
    expect([...seen].filter((pid) => stat(pid) !== undefined)).toEqual([]);
  }, 30000);
});

describe("a terminal's Ctrl-C (SIGINT to run's whole process group) reaches only run", () => {
  it("run --provider aws: the emulator's execution environments outlive the keystroke, so the $disconnect of a client run closes still runs", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: drain\nservices:\n  - match: services/*.ts\n",
      "services/drain.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("drain");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => { console.log("disconnect handled"); });',
        'socket.on("message", (ctx) => "echo " + ctx.text());',
      ].join("\n"),
    });
    const app = await startApp(dir, ["--provider", "aws", "--no-dashboard", "--no-watch"], {}, { group: true });
    const client = await connect(app.url("drain"));
    client.ws.send("hi");
    expect((await client.next(10000)).text).toBe("echo hi");
    app.interrupt();
    expect(await client.waitClosed()).toMatchObject({ code: 1001 });
    const { code } = await app.exited;
    expect(app.stderr).not.toContain("EPIPE");
    expect(code, app.stderr).toBe(0);
    expect(app.stdout + app.stderr).toContain("disconnect handled");
  }, 60000);
});

/** The pids a service wrote to `file`, one a line, as it started them (ended after the test if they are left). */
function pidsIn(file: string): number[] {
  let pids: number[] = [];
  try {
    pids = readFileSync(file, "utf8").split("\n").filter(Boolean).map(Number);
  } catch {
    // None yet.
  }
  for (const pid of pids) sleeps.add(pid);
  return pids;
}

/** SIGKILL to `pid`, unless it has gone. */
function kill(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // Gone meanwhile.
  }
}

/** The `sleep 1000` processes the services started, ended after each test (those still sleeping). */
const sleeps = new Set<number>();
afterEach(() => {
  for (const pid of sleeps) if (cmdline(pid) === "sleep 1000 ") kill(pid);
  sleeps.clear();
});

/** Waits until `done`, for 10 s at most, and says whether it is. */
async function eventually(done: () => boolean): Promise<boolean> {
  for (const until = Date.now() + 10000; !done() && Date.now() < until; ) await sleep(50);
  return done();
}

/**
 * A service whose process (`when` its environment variable says it runs where `run` starts it)
 * starts a `sleep 1000` at load, and one for each message "spawn", writing each one's pid to
 * `file`; the message "exit" makes the process exit.
 */
function spawner(socket: string, file: string, when: string): string {
  return [
    'import { spawn } from "node:child_process";',
    'import { appendFileSync } from "node:fs";',
    'import { websocket } from "@nitric-like/sdk";',
    `const file = ${JSON.stringify(file)};`,
    'const start = () => appendFileSync(file, `${spawn("sleep", ["1000"], { stdio: "ignore" }).pid}\\n`);',
    `const socket = websocket(${JSON.stringify(socket)});`,
    'socket.on("connect", () => {});',
    'socket.on("disconnect", () => {});',
    'socket.on("message", (ctx) => {',
    '  if (ctx.text() === "spawn") start();',
    '  if (ctx.text() === "exit") setTimeout(() => process.exit(1), 50);',
    "  return ctx.text();",
    "});",
    `if (${when}) start();`,
  ].join("\n");
}

describe("what a service or a function started ends with it", () => {
  it("run --provider aws: a process a function's init or handler started ends with its execution environment, on a save and on Ctrl-C", async () => {
    const dir = writeProject({ "nitric-like.yaml": "name: spawner\nservices:\n  - match: services/*.ts\n" });
    const file = join(dir, "pids");
    mkdirSync(join(dir, "services"));
    const source = spawner("spawner", file, "process.env.LAMBDA_TASK_ROOT !== undefined");
    writeFileSync(join(dir, "services/spawner.ts"), source);
    const app = await startApp(dir, ["--provider", "aws", "--no-dashboard"], {}, { group: true });
    expect(await eventually(() => pidsIn(file).length === 1)).toBe(true);
    const [first] = pidsIn(file) as [number];
    expect(cmdline(first)).toBe("sleep 1000 ");
    // The user saves: the environment the restart ends takes its sleep with it.
    writeFileSync(join(dir, "services/spawner.ts"), `${source}\n// saved\n`);
    expect(await eventually(() => pidsIn(file).length === 2), app.stdout + app.stderr).toBe(true);
    expect(await eventually(() => stat(first) === undefined)).toBe(true);
    // One a handler starts, in the new environment.
    const client = await connect(app.url("spawner"));
    client.ws.send("spawn");
    expect((await client.next(10000)).text).toBe("spawn");
    expect(pidsIn(file)).toHaveLength(3);
    app.interrupt();
    expect((await app.exited).code, app.stderr).toBe(0);
    const left = () => pidsIn(file).filter((pid) => stat(pid) !== undefined);
    expect(await eventually(() => left().length === 0)).toBe(true);
  }, 90000);

  it("run --processes: a process a service started ends with the service, when it exits by itself, on a save and on Ctrl-C", async () => {
    const dir = writeProject({ "nitric-like.yaml": "name: spawner\nservices:\n  - match: services/*.ts\n" });
    const file = join(dir, "pids");
    mkdirSync(join(dir, "services"));
    const source = spawner("spawner", file, 'process.env.NITRIC_ENVIRONMENT === "run"');
    writeFileSync(join(dir, "services/spawner.ts"), source);
    const app = await startApp(dir, ["--processes", "--no-dashboard"], {}, { group: true });
    expect(await eventually(() => pidsIn(file).length === 1)).toBe(true);
    const [first] = pidsIn(file) as [number];
    expect(cmdline(first)).toBe("sleep 1000 ");
    // The service exits by itself (a crash): run restarts it, and its sleep is gone.
    const client = await connect(app.url("spawner"));
    client.ws.send("exit");
    expect(await eventually(() => pidsIn(file).length === 2), app.stdout + app.stderr).toBe(true);
    expect(await eventually(() => stat(first) === undefined)).toBe(true);
    const second = pidsIn(file)[1] as number;
    // The user saves.
    writeFileSync(join(dir, "services/spawner.ts"), `${source}\n// saved\n`);
    expect(await eventually(() => pidsIn(file).length === 3), app.stdout + app.stderr).toBe(true);
    expect(await eventually(() => stat(second) === undefined)).toBe(true);
    app.interrupt();
    expect((await app.exited).code, app.stderr).toBe(0);
    const left = () => pidsIn(file).filter((pid) => stat(pid) !== undefined);
    expect(await eventually(() => left().length === 0)).toBe(true);
  }, 90000);
});

/**
 * A service that starts three `sleep 1000`s, at load (`when` its environment variable says it runs
 * where `run` starts it) and for each message "spawn", writing their pids to `file`: one spawned
 * as a child (a thread's is a child of run's process), one spawned `detached` (a session of its
 * own, its parent the service) and one a daemon would start (`setsid ... &` under a shell that
 * exits at once: a session of its own, and a parent that has gone, so no parent chain leads from
 * the service to it).
 */
function escaper(socket: string, file: string, when: string): string {
  return [
    'import { execSync, spawn } from "node:child_process";',
    'import { appendFileSync } from "node:fs";',
    'import { websocket } from "@nitric-like/sdk";',
    `const file = ${JSON.stringify(file)};`,
    "const start = () => {",
    '  const detached = spawn("sleep", ["1000"], { detached: true, stdio: "ignore" });',
    "  detached.unref();",
    '  const daemon = execSync("setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!", { encoding: "utf8" }).trim();',
    '  const child = spawn("sleep", ["1000"], { stdio: "ignore" });',
    "  appendFileSync(file, `${detached.pid}\\n${daemon}\\n${child.pid}\\n`);",
    "};",
    `const socket = websocket(${JSON.stringify(socket)});`,
    'socket.on("connect", () => {});',
    'socket.on("disconnect", () => {});',
    'socket.on("message", (ctx) => {',
    '  if (ctx.text() === "spawn") start();',
    "  return ctx.text();",
    "});",
    `if (${when}) start();`,
  ].join("\n");
}

/** The session a process leads or belongs to (field 6 of /proc/<pid>/stat). */
function session(pid: number): number | undefined {
  try {
    return Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ")[3]);
  } catch {
    return undefined;
  }
}

describe("what a service or a function started in a session of its own ends with it too", () => {
  const ways = [
    { what: "run (a worker thread)", args: [] as string[], when: 'process.env.NITRIC_ENVIRONMENT === "run"' },
    { what: "run --processes", args: ["--processes"], when: 'process.env.NITRIC_ENVIRONMENT === "run"' },
    { what: "run --provider aws", args: ["--provider", "aws"], when: "process.env.LAMBDA_TASK_ROOT !== undefined" },
  ];
  for (const way of ways) {
    it(`${way.what}: a child, a detached process and a daemon (setsid, its parent gone) a service started end on a save and on Ctrl-C`, async () => {
      const dir = writeProject({ "nitric-like.yaml": "name: escaper\nservices:\n  - match: services/*.ts\n" });
      const file = join(dir, "pids");
      mkdirSync(join(dir, "services"));
      const source = escaper("escaper", file, way.when);
      writeFileSync(join(dir, "services/escaper.ts"), source);
      const app = await startApp(dir, [...way.args, "--no-dashboard"], {}, { group: true });
      expect(await eventually(() => pidsIn(file).length === 3), app.stdout + app.stderr).toBe(true);
      const first = pidsIn(file);
      for (const pid of first) expect(cmdline(pid)).toBe("sleep 1000 ");
      // The first two left the service's group and session: a group kill does not reach them.
      for (const pid of first.slice(0, 2)) expect(session(pid)).toBe(pid);
      // The user saves: the restart ends what the old service started.
      writeFileSync(join(dir, "services/escaper.ts"), `${source}\n// saved\n`);
      expect(await eventually(() => pidsIn(file).length === 6), app.stdout + app.stderr).toBe(true);
      const still = () => first.filter((pid) => stat(pid) !== undefined).map((pid) => `${pid} ${cmdline(pid)}`);
      expect(await eventually(() => still().length === 0), still().join("\n")).toBe(true);
      // Three more that a handler starts in the new one.
      const client = await connect(app.url("escaper"));
      client.ws.send("spawn");
      expect((await client.next(10000)).text).toBe("spawn");
      expect(pidsIn(file)).toHaveLength(9);
      app.interrupt();
      expect((await app.exited).code, app.stderr).toBe(0);
      const left = () => pidsIn(file).filter((pid) => stat(pid) !== undefined);
      expect(await eventually(() => left().length === 0)).toBe(true);
    }, 90000);
  }

  for (const way of ways) {
    it(`${way.what}: a child, a detached process and a daemon a service started end when run is killed with SIGKILL`, async () => {
      const dir = writeProject({ "nitric-like.yaml": "name: escaper\nservices:\n  - match: services/*.ts\n" });
      const file = join(dir, "pids");
      mkdirSync(join(dir, "services"));
      writeFileSync(join(dir, "services/escaper.ts"), escaper("escaper", file, way.when));
      const app = await startApp(dir, [...way.args, "--no-dashboard", "--no-watch"], {}, { group: true });
      expect(await eventually(() => pidsIn(file).length === 3), app.stdout + app.stderr).toBe(true);
      app.child.kill("SIGKILL");
      await app.exited;
      const left = () => pidsIn(file).filter((pid) => stat(pid) !== undefined);
      expect(await eventually(() => left().length === 0)).toBe(true);
    }, 60000);
  }
});

describe("run --single-thread: what a service on run's own thread started ends with run", () => {
  // The services share run's process: what they start is run's child, or in a session of its own.
  const when = 'process.env.NITRIC_ENVIRONMENT === "run"';

  it("run --single-thread: a child, a detached process and a daemon a service started end when run is killed with SIGKILL", async () => {
    const dir = writeProject({ "nitric-like.yaml": "name: escaper\nservices:\n  - match: services/*.ts\n" });
    const file = join(dir, "pids");
    mkdirSync(join(dir, "services"));
    writeFileSync(join(dir, "services/escaper.ts"), escaper("escaper", file, when));
    const app = await startApp(dir, ["--single-thread", "--no-dashboard"], {}, { group: true });
    expect(await eventually(() => pidsIn(file).length === 3), app.stdout + app.stderr).toBe(true);
    app.child.kill("SIGKILL");
    await app.exited;
    const left = () => pidsIn(file).filter((pid) => stat(pid) !== undefined);
    expect(await eventually(() => left().length === 0), left().join(" ")).toBe(true);
  }, 60000);

  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    it(`run --single-thread: a child, a detached process and a daemon a service started end when ${signal} reaches run alone (kill -${signal.slice(3)} <pid>, not its group), before run exits`, async () => {
      const dir = writeProject({ "nitric-like.yaml": "name: escaper\nservices:\n  - match: services/*.ts\n" });
      const file = join(dir, "pids");
      mkdirSync(join(dir, "services"));
      writeFileSync(join(dir, "services/escaper.ts"), escaper("escaper", file, when));
      const app = await startApp(dir, ["--single-thread", "--no-dashboard"], {}, { group: true });
      expect(await eventually(() => pidsIn(file).length === 3), app.stdout + app.stderr).toBe(true);
      // Three more that a handler starts.
      const client = await connect(app.url("escaper"));
      client.ws.send("spawn");
      expect((await client.next(10000)).text).toBe("spawn");
      expect(pidsIn(file)).toHaveLength(6);
      app.child.kill(signal);
      expect((await app.exited).code, app.stderr).toBe(0);
      // Gone by the time run has exited: run ends them, not only the reaper after it.
      expect(pidsIn(file).filter((pid) => stat(pid) !== undefined)).toEqual([]);
    }, 60000);
  }

  it("run --single-thread: a detached process a service's timer starts while run stops, up to its exit, ends too", async () => {
    const dir = writeProject({ "nitric-like.yaml": "name: ticker\nservices:\n  - match: services/*.ts\n" });
    const file = join(dir, "pids");
    mkdirSync(join(dir, "services"));
    writeFileSync(
      join(dir, "services/ticker.ts"),
      [
        'import { spawn } from "node:child_process";',
        'import { appendFileSync } from "node:fs";',
        'import { websocket } from "@nitric-like/sdk";',
        `const file = ${JSON.stringify(file)};`,
        'websocket("ticker").on("message", (ctx) => ctx.text());',
        // Its timers run on run's thread until run's process ends, a stop's last moments too.
        `if (${when}) setInterval(() => {`,
        '  const detached = spawn("sleep", ["1000"], { detached: true, stdio: "ignore" });',
        "  detached.unref();",
        "  appendFileSync(file, `${detached.pid}\\n`);",
        "}, 20);",
      ].join("\n"),
    );
    const app = await startApp(dir, ["--single-thread", "--no-dashboard"], {}, { group: true });
    expect(await eventually(() => pidsIn(file).length >= 3), app.stdout + app.stderr).toBe(true);
    app.child.kill("SIGINT");
    expect((await app.exited).code, app.stderr).toBe(0);
    const left = () => pidsIn(file).filter((pid) => stat(pid) !== undefined);
    expect(await eventually(() => left().length === 0), left().join(" ")).toBe(true);
  }, 60000);
});
