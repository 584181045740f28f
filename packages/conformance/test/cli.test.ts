// The CLI end to end: real processes, real sockets, real lmdb files.
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import {
  CLI,
  cleanTemp,
  connect,
  copyProject,
  EXAMPLES,
  FIXTURES,
  runCli,
  sleep,
  startApp,
  stopAll,
  writeProject,
} from "../src/harness.js";

/** A process's listening sockets: TCP ports, or the paths of Unix sockets (from /proc). */
function listening(pid: number, kind: "tcp" | "unix"): (number | string)[] {
  const inodes = new Set(
    readdirSync(`/proc/${pid}/fd`)
      .map((fd) => {
        try {
          return /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
        } catch {
          return undefined;
        }
      })
      .filter((inode) => inode !== undefined),
  );
  const rows = (file: string) =>
    readFileSync(file, "utf8")
      .trim()
      .split("\n")
      .slice(1)
      .map((l) => l.trim().split(/\s+/));
  if (kind === "tcp")
    // local_address (hex ip:port), st (0A: LISTEN), inode in the tenth column.
    return [...rows("/proc/net/tcp"), ...rows("/proc/net/tcp6")]
      .filter((r) => r[3] === "0A" && inodes.has(r[9] ?? ""))
      .map((r) => Number.parseInt(r[1]?.split(":")[1] ?? "", 16));
  // Flags 00010000: listening; the inode in the seventh column, the path in the eighth.
  return rows("/proc/net/unix")
    .filter((r) => r[3] === "00010000" && inodes.has(r[6] ?? ""))
    .map((r) => r[7] ?? "");
}

/** The esbuild service processes among a process's children (its main thread's; zombies left out). */
function esbuildServices(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .filter((child) => {
      try {
        const state = readFileSync(`/proc/${child}/stat`, "utf8").split(") ")[1]?.[0];
        return state !== "Z" && readFileSync(`/proc/${child}/cmdline`, "utf8").includes("esbuild");
      } catch {
        return false; // it exited while being read
      }
    })
    .map(Number);
}

/**
 * A module that esbuild takes long enough to parse, on every build of a service that imports it,
 * to outlast the saves of saveThriceDuringItsBuild (some 320 ms from the build's start; its 60,000
 * functions take a few times that), of which the service uses one function: the rest is left out
 * of its bundles, so its start, its collect pass and its function stay as quick as a small one's.
 */
function bigModule(): string {
  return Array.from({ length: 60000 }, (_, i) => `export function f${i}(a: number) { return a + ${i}; }\n`).join("");
}

/**
 * Saves a service's file three times (versions "second" to "fourth"), the last two while the
 * first one's build runs: run's esbuild process is up only while a build is in flight, so the
 * second save waits for it to start, and the third comes 200 ms later, after the watcher's 120 ms
 * of quiet that makes it a change of its own; so does what is saved after them.
 */
async function saveThriceDuringItsBuild(pid: number, file: string): Promise<void> {
  const save = (version: string) =>
    writeFileSync(file, readFileSync(file, "utf8").replace(/version: "\w+"/, `version: "${version}"`));
  for (let i = 0; i < 500 && esbuildServices(pid).length > 0; i++) await sleep(20);
  expect(esbuildServices(pid), "a build still running before the saves").toEqual([]);
  save("second");
  for (let i = 0; i < 6000 && esbuildServices(pid).length === 0; i++) await sleep(5);
  expect(esbuildServices(pid).length, "the first save's build").toBeGreaterThan(0);
  save("third");
  await sleep(200);
  save("fourth");
  // A save after these is a change of its own too.
  await sleep(200);
}

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

describe("nitric-like --help and friends", () => {
  it("lists the commands", async () => {
    const { code, stdout } = await runCli(["--help"]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/run \[dir\]/);
    expect(stdout).toMatch(/spec \[dir\]/);
  });

  it("has help for each command", async () => {
    // Independent processes: started together, checked in order.
    const commands = ["run", "spec", "logs"];
    const helps = await Promise.all(
      commands.map((command) => Promise.all([runCli([command, "--help"]), runCli(["help", command])])),
    );
    for (const [i, command] of commands.entries()) {
      const [{ code, stdout }, viaHelp] = helps[i] as [Awaited<ReturnType<typeof runCli>>, { stdout: string }];
      expect(code).toBe(0);
      expect(stdout).toContain(`Usage: nitric-like ${command}`);
      expect(viaHelp.stdout).toBe(stdout);
    }
    // help's own --help is the list of commands, as help alone is (it said: unknown command "--help").
    const helpArgs = [["help", "--help"], ["help", "-h"], ["help"]];
    for (const [i, { code, stdout }] of (await Promise.all(helpArgs.map((args) => runCli(args)))).entries()) {
      expect(code, helpArgs[i]?.join(" ")).toBe(0);
      expect(stdout).toContain("Usage: nitric-like <command> [options]");
    }
  });

  it("fits every help text in 88 columns", async () => {
    const all = [
      ["--help"],
      ...["new", "run", "spec", "build", "up", "down", "outputs", "logs", "secret", "connect"].map((c) => [
        c,
        "--help",
      ]),
    ];
    const results = await Promise.all(all.map((args) => runCli(args)));
    for (const [i, args] of all.entries()) {
      const { code, stdout } = results[i] as Awaited<ReturnType<typeof runCli>>;
      expect(code).toBe(0);
      const long = stdout.split("\n").filter((line) => line.length > 88);
      expect(long, `nitric-like ${args.join(" ")}`).toEqual([]);
    }
  });

  it("prints its version", async () => {
    const { code, stdout } = await runCli(["--version"]);
    expect(code).toBe(0);
    expect(stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it("refuses an unknown command and an unknown option with the fix", async () => {
    const [unknown, option, typo, profile, endpoint] = await Promise.all([
      runCli(["deploy-it"]),
      runCli(["spec", "--frobnicate"]),
      runCli(["down", "--keepdata"]),
      runCli(["up", "--profile", "prod"]),
      runCli(["outputs", "--endpoint-url=http://127.0.0.1:4566"]),
    ]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('unknown command "deploy-it"; run "nitric-like --help"');
    expect(option.code).toBe(1);
    expect(option.stderr).toContain('error: spec: unknown option --frobnicate; run "nitric-like spec --help"');
    // A typo names the option meant; the AWS CLI's --profile and --endpoint-url name their variables.
    expect(typo.code).toBe(1);
    expect(typo.stderr).toContain(
      'error: down: unknown option --keepdata (did you mean --keep-data?); run "nitric-like down --help" for its options',
    );
    expect(profile.stderr).toContain(
      "error: up: unknown option --profile: the AWS profile is chosen with AWS_PROFILE=<name>",
    );
    expect(endpoint.stderr).toContain(
      "error: outputs: unknown option --endpoint-url: the endpoint is chosen with AWS_ENDPOINT_URL=<url>",
    );
    // Not Node's advice about positional arguments, which fits a mistyped option badly.
    expect(option.stderr + typo.stderr + profile.stderr).not.toContain("positional");
  });

  it("refuses an option that takes one value given twice with two, where the last would win unsaid", async () => {
    const [twice, header, same, alike] = await Promise.all([
      runCli(["down", "--stack", "staging", "--stack=prod"]),
      runCli(["connect", "ws://127.0.0.1:1/", "--header", "a: 1", "--header", "a: 2"]),
      runCli(["spec", FIXTURES, "--json", "--json", "--plain"]),
      runCli(["down", "--stack", "staging", "--stack", "staging"]),
    ]);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toContain('error: down: --stack given twice ("staging" and "prod"); give it once');
    // Repeatable options repeat, and one given twice alike says the same once.
    expect(header.stderr).not.toContain("given twice");
    expect(same.stderr).not.toContain("given twice");
    expect(alike.stderr).not.toContain("given twice");
  });

  it("names an option given without its value, or with one it does not take, or against another, and the fix", async () => {
    const cases: [string[], string][] = [
      [["up", "--stack"], 'error: up: --stack needs a value: --stack <value>; run "nitric-like up --help"'],
      [
        ["build", "--out", "--json"],
        'error: build: --out needs a value, but --json follows it: give --out <value> (a value that starts with "-" as --out=<value>)',
      ],
      [["down", "--yes=1"], 'error: down: --yes takes no value, got "1"; give --yes alone'],
      [["logs", "-f=2"], 'error: logs: -f (--follow) takes no value, got "2"; give -f alone'],
      // Two options that contradict each other: neither is dropped unsaid.
      [
        ["run", "--no-dashboard", "--dashboard-port", "5000"],
        "error: run: --dashboard-port and --no-dashboard both say where the dashboard is (on that port, or nowhere); choose one",
      ],
    ];
    const results = await Promise.all(cases.map(([args]) => runCli(args)));
    for (const [i, [args, said]] of cases.entries()) {
      const { code, stderr } = results[i] as Awaited<ReturnType<typeof runCli>>;
      expect(code, args.join(" ")).toBe(1);
      expect(stderr, args.join(" ")).toContain(said);
      // Not Node's words, which name neither the command nor the fix.
      expect(stderr, args.join(" ")).not.toMatch(/argument missing|ambiguous|does not take an argument|option -=/);
    }
  });

  it("says how to create a project file when there is none", async () => {
    const { code, stderr } = await runCli(["spec", FIXTURES]);
    expect(code).toBe(1);
    expect(stderr).toContain("no project file found, create nitric-like.yaml");
    // A newcomer in an empty folder learns of new too.
    expect(stderr).toContain('or make a new project, with a service and its test, by "nitric-like new my-app"');
  });
});

describe("nitric-like spec", () => {
  it("prints the chat example's resources, policies and handlers as JSON", async () => {
    const { code, stdout } = await runCli(["spec", copyProject(join(EXAMPLES, "chat"))]);
    expect(code).toBe(0);
    const spec = JSON.parse(stdout);
    expect(spec.name).toBe("chat");
    expect(spec.services).toEqual([{ name: "chat", file: "services/chat.ts" }]);
    expect(spec.resources).toEqual([
      {
        kind: "websocket",
        name: "socket",
        declaredBy: ["chat"],
        handlers: { connect: "chat", disconnect: "chat", message: "chat" },
      },
      { kind: "kv", name: "connections", declaredBy: ["chat"] },
    ]);
    expect(spec.policies).toEqual([
      { service: "chat", resource: { kind: "kv", name: "connections" }, permissions: ["delete", "get", "set"] },
      { service: "chat", resource: { kind: "websocket", name: "socket" }, permissions: ["manage"] },
    ]);
  });

  it("orders resources and policies by their names' code units, whatever the machine's locale", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: order\nservices:\n  - match: services/*.ts\n",
      "services/api.ts": [
        'import { kv, websocket } from "@nitric-like/sdk";',
        'kv("s-store").allow("get");',
        'kv("z-store").allow("get");',
        'kv("t-store").allow("get");',
        'const socket = websocket("socket");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", () => {});',
      ].join("\n"),
    });
    // Estonian collation puts z between s and t; the spec, and the templates made from it, must
    // not change with the machine they are made on.
    const { code, stdout, stderr } = await runCli(["spec", dir], {
      env: { LC_ALL: "et_EE.UTF-8", LANG: "et_EE.UTF-8" },
    });
    expect(code, stderr).toBe(0);
    const spec = JSON.parse(stdout);
    const kvNames = ["s-store", "t-store", "z-store"];
    expect(
      spec.resources.filter((r: { kind: string }) => r.kind === "kv").map((r: { name: string }) => r.name),
    ).toEqual(kvNames);
    expect(
      spec.policies
        .filter((p: { resource: { kind: string } }) => p.resource.kind === "kv")
        .map((p: { resource: { name: string } }) => p.resource.name),
    ).toEqual(kvNames);
  });

  it("lists every problem at once and exits 1", async () => {
    const { code, stdout, stderr } = await runCli(["spec", copyProject(join(FIXTURES, "bad-spec"))]);
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toContain("missing disconnect handler for websocket room");
    expect(stderr).toContain('the message event is handled by "alpha" and "beta"');
    expect(stderr).toContain(
      'kv("Bad Store"): invalid resource name "Bad Store", use lower-kebab-case such as "bad-store"',
    );
    expect(stderr).toContain("has 3 problems");
  });

  it("refuses names AWS would refuse at deploy: an API name over 128 characters, a service its log group cannot be named after", async () => {
    const name = `p${"x".repeat(99)}`;
    const dir = writeProject({
      "nitric-like.yaml": `name: ${name}\nservices:\n  - match: services/*.ts\n`,
      "services/my chat.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("socket-with-a-name-of-forty-characters1");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", () => {});',
      ].join("\n"),
    });
    const { code, stderr } = await runCli(["spec", dir, "--plain"]);
    expect(code).toBe(1);
    expect(stderr).toContain(
      `websocket socket-with-a-name-of-forty-characters1: on AWS its API is named "${name}-socket-with-a-name-of-forty-characters1", 140 characters, and API Gateway allows 128; give the socket a name of at most 27 characters, or use a shorter project name (name: in the project file)`,
    );
    expect(stderr).toContain(
      `service "my chat": on AWS its log group is named "/aws/lambda/${name}/my chat", and CloudWatch Logs takes only letters, digits and . - _ # / in one; rename services/my chat.ts to services/my-chat.ts`,
    );
    expect(stderr).toContain("has 2 problems");
  });

  it("reports a service that crashes with its output", async () => {
    const { code, stderr } = await runCli(["spec", copyProject(join(FIXTURES, "crash"))]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/service "boom" \(services\/boom\.ts\): exited with code 1/);
    expect(stderr).toContain("boom while starting");
  });

  it("says a failed service's cause as run does, bounded, however much it printed, in spec and in build", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: loud\nservices:\n  - match: services/*.ts\n",
      // More lines than a failed service's output keeps (200), long ones, then at once an error of
      // several lines: in a process, Node's print of it follows them into the pipe (BLOCKING_STDIO).
      "services/chatty.ts": [
        'for (let i = 0; i < 250; i++) console.error(`${i} ${"x".repeat(20_000)}`);',
        'throw new Error("bad config:\\n  PORT must be a number");',
      ].join("\n"),
      // Its problem logged over many long lines, then an exit: no error says why.
      "services/logger.ts": [
        'for (let i = 0; i < 30; i++) console.error(`check ${i}: ${"y".repeat(300)}`);',
        'console.error("DATABASE_URL is not set");',
        "process.exit(2);",
      ].join("\n"),
    });
    for (const command of ["spec", "build"]) {
      const { code, stderr } = await runCli([command, dir, "--plain"]);
      expect(code).toBe(1);
      expect(stderr).toContain(
        `error: service "chatty" (services/chatty.ts): exited with code 1 while its resources were being collected, at services/chatty.ts:2: bad config:\n    PORT must be a number\n  fix it, then run nitric-like ${command} again\nerror: service "logger"`,
      );
      const tail = Array.from({ length: 9 }, (_, i) => `    check ${21 + i}: ${"y".repeat(190)}... (cut)\n`).join("");
      expect(stderr).toContain(
        `error: service "logger" (services/logger.ts): exited with code 2 while its resources were being collected: it printed no error; its last output:\n    ... (21 lines before)\n${tail}    DATABASE_URL is not set\n  fix it, then run nitric-like ${command} again\n`,
      );
      expect(stderr.length).toBeLessThan(6000);
    }
  }, 60000);

  it("stops a service that never exits instead of hanging", async () => {
    const started = Date.now();
    const { code, stdout } = await runCli(["spec", copyProject(join(FIXTURES, "hang"))], { timeoutMs: 20000 });
    expect(code).toBe(0);
    expect(JSON.parse(stdout).resources[0]).toMatchObject({ name: "forever", handlers: { connect: "forever" } });
    expect(Date.now() - started).toBeLessThan(15000);
  });
});

describe("nitric-like run", () => {
  it("prints one line per socket in the documented form", async () => {
    const app = await startApp(copyProject(join(EXAMPLES, "chat")));
    expect(app.stdout).toMatch(/^websocket socket ws:\/\/127\.0\.0\.1:\d+$/m);
  }, 30000);

  it("restarts a crashed service while its clients stay connected", async () => {
    const app = await startApp(copyProject(join(FIXTURES, "lab-ours")));
    const c = await connect(app.url("lab"));
    expect(await c.call({ op: "crash" })).toEqual({ ok: true });
    await app.waitFor(/service "lab" exited with code 3; restarting/);
    // The message waits for the restarted handler instead of being dropped.
    expect(await c.call({ op: "whoami" })).toHaveProperty("id");
    expect(c.closed).toBeUndefined();
  }, 30000);

  // By default the service (it uses our SDK) runs as a worker thread of the CLI; with --processes
  // it is a process, leading a process group of its own, so a terminal's Ctrl-C (SIGINT to the
  // CLI's group) does not kill it mid-event. Either way the CLI drains first, then stops it.
  it.each([
    { how: "a worker thread", args: [] as string[], reason: "server shutting down" },
    { how: "a process", args: ["--processes"], reason: "server shutting down" },
    // The emulator closes as API Gateway closes a connection it ends: 1001 "Going away".
    { how: "an AWS function (run --provider aws)", args: ["--provider", "aws"], reason: "Going away" },
  ])(
    "on Ctrl-C lets an in-flight handler finish and its reply arrive before closing clients with 1001 (service in $how)",
    async ({ args, reason }) => {
      const dir = writeProject({
        "nitric-like.yaml": "name: drain\nservices:\n  - match: services/*.ts\n",
        "services/slow.ts": [
          'import { websocket } from "@nitric-like/sdk";',
          'const socket = websocket("slow");',
          'socket.on("connect", () => {});',
          'socket.on("disconnect", () => {});',
          'socket.on("message", async (ctx) => {',
          "  await new Promise((r) => setTimeout(r, 800));",
          '  return "done " + ctx.text();',
          "});",
        ].join("\n"),
      });
      const app = await startApp(dir, args, {}, { group: true });
      const pgid = (pid: number) => Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ")[2]);
      const cli = app.child.pid as number;
      const services = readFileSync(`/proc/${cli}/task/${cli}/children`, "utf8")
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map(Number)
        // A service process runs its bundle under .nitric-like/build (esbuild's own helper is a child too).
        .filter((pid) => readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(".nitric-like"));
      if (args.length === 0) expect(services).toEqual([]);
      else expect(services.length).toBeGreaterThan(0);
      for (const pid of services) expect(pgid(pid)).not.toBe(pgid(cli));
      const c = await connect(app.url("slow"));
      c.ws.send("job");
      await sleep(150);
      // A real Ctrl-C: SIGINT to the CLI and, were they in its group, its services.
      app.interrupt();
      expect((await c.next(5000)).text).toBe("done job");
      expect(await c.waitClosed()).toEqual({ code: 1001, reason });
      expect((await app.exited).code).toBe(0);
    },
    30000,
  );

  it("on Ctrl-C during the collect pass ends the service processes it started (their own process groups) and exits 130, saying so", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: early\nservices:\n  - match: services/*.ts\n",
      // A top level that takes its time before it declares anything, as a service that connects to
      // a database as it loads would.
      "services/early.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        "await new Promise((r) => setTimeout(r, 8000));",
        'websocket("early").on("message", (ctx) => ctx.text());',
      ].join("\n"),
    });
    const child = spawn(process.execPath, [CLI, "run", "--processes", "--random-ports", "--no-dashboard"], {
      cwd: dir,
      env: { ...process.env, NO_COLOR: "1" },
    });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr.on("data", (d) => {
      out += d;
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    // The collect pass's process: a child of the CLI running the service's bundle.
    const collecting = (): number[] => {
      let children: string[] = [];
      try {
        children = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, "utf8").trim().split(/\s+/);
      } catch {
        return [];
      }
      return children
        .filter(Boolean)
        .map(Number)
        .filter((pid) => {
          try {
            return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(join(dir, ".nitric-like"));
          } catch {
            return false;
          }
        });
    };
    let services: number[] = [];
    for (let i = 0; i < 200 && services.length === 0; i++) {
      await sleep(50);
      services = collecting();
    }
    expect(services.length, out).toBeGreaterThan(0);
    child.kill("SIGINT");
    expect(await exited).toBe(130);
    expect(out).toContain("stopped while starting (SIGINT): ending what had started");
    // The service process is gone too (it would otherwise run on, its parent gone).
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return !/^\S+ \(\S+\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
      } catch {
        return false;
      }
    };
    for (let i = 0; i < 40 && services.some(alive); i++) await sleep(50);
    expect(services.filter(alive)).toEqual([]);
  }, 30000);

  // Whoever reaches a service's gRPC endpoint acts as that service; a service thread talks over a
  // MessagePort, so a run of threads listens on nothing but its gateways.
  async function expectEndpoints(args: string[], endpoints: number): Promise<void> {
    const dir = writeProject({
      "nitric-like.yaml": "name: listeners\nservices:\n  - match: services/*.ts\n",
      "services/one.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("one");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", (ctx) => "echo " + ctx.text());',
      ].join("\n"),
    });
    const app = await startApp(dir, [...args, "--no-dashboard"]);
    const c = await connect(app.url("one"));
    c.ws.send("hi");
    expect((await c.next()).text).toBe("echo hi");
    const cli = app.child.pid as number;
    const gateway = Number(new URL(app.url("one")).port);
    const tcp = listening(cli, "tcp");
    expect(tcp).toContain(gateway);
    // The endpoint's TCP port (--tcp), and its Unix socket where there are Unix users.
    expect(tcp.filter((port) => port !== gateway)).toHaveLength(endpoints);
    if (process.getuid !== undefined) expect(listening(cli, "unix")).toHaveLength(endpoints);
    // What --tcp says matches what listens.
    if (endpoints === 0)
      expect(app.stderr).toContain(
        "--tcp: every service runs as a thread of run and reaches it over a MessagePort, so no endpoint listens on 127.0.0.1",
      );
    // Where the kernel says whose a connection is (Linux), only this user's are served, and run
    // says so; elsewhere it warns that any user can act as the service there.
    else if (process.getuid !== undefined && existsSync("/proc/net/tcp"))
      expect(app.stderr).toContain(
        `--tcp: every service's endpoint also listens on 127.0.0.1 (NITRIC_SERVICE_HOST/PORT), where only processes of your user (uid ${process.getuid?.()}) are served`,
      );
    else expect(app.stderr).toContain("warning: --tcp: every service's endpoint also listens on 127.0.0.1");
  }

  it("serves no gRPC endpoint when the service runs as a worker thread", () => expectEndpoints(["--tcp"], 0), 30000);

  it(
    "serves its gRPC endpoint when the service runs as a process",
    () => expectEndpoints(["--tcp", "--processes"], 1),
    30000,
  );

  it("names a Node flag in NITRIC_LIKE_SERVICE_NODE_ARGS that a service thread cannot take, and says where it goes", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: flags\nservices:\n  - match: services/*.ts\n",
      "services/one.ts": 'import { websocket } from "@nitric-like/sdk";\nwebsocket("one").on("message", () => {});\n',
    });
    const { code, stderr } = await runCli(["run", dir, "--no-watch", "--random-ports"], {
      env: { NITRIC_LIKE_SERVICE_NODE_ARGS: "--max-semi-space-size=2" },
    });
    expect(code).toBe(1);
    expect(stderr).toContain(
      "error: NITRIC_LIKE_SERVICE_NODE_ARGS: Node does not take --max-semi-space-size=2 in a service thread (a flag of the whole process); put it in NODE_OPTIONS for run itself and its threads, or run with --processes",
    );
    expect(stderr).not.toContain("unexpected failure");
  }, 30000);

  it("names the .env line whose NODE_OPTIONS Node refuses, before any service starts, and a flag only a thread refuses", async () => {
    const project = (dotenv: string) =>
      writeProject({
        "nitric-like.yaml": "name: options\nservices:\n  - match: services/*.ts\n",
        "services/one.ts": 'import { websocket } from "@nitric-like/sdk";\nwebsocket("one").on("message", () => {});\n',
        ".env.local": dotenv,
      });
    // Not a Node flag: Node itself refuses it in any service, thread or process. Each run has a
    // project of its own, so the three run at once.
    const [thread, processes, title] = await Promise.all([
      ...[[], ["--processes"]].map((extra) =>
        runCli(["run", project("NODE_OPTIONS=--bogus-flag\n"), "--no-watch", "--random-ports", ...extra]),
      ),
      runCli(["run", project("NODE_OPTIONS=--title=svc\n"), "--no-watch", "--random-ports"]),
    ]);
    for (const { code, stderr } of [thread, processes] as Awaited<ReturnType<typeof runCli>>[]) {
      expect(code).toBe(1);
      expect(stderr).toContain(
        "error: run: Node refuses the NODE_OPTIONS that .env.local sets (--bogus-flag is not allowed in NODE_OPTIONS); fix or remove that line",
      );
      expect(stderr).not.toContain("collecting resources");
    }
    // A flag of a whole process: a service process takes it, a thread does not.
    const { code, stderr } = title as Awaited<ReturnType<typeof runCli>>;
    expect(code).toBe(1);
    expect(stderr).toContain(
      "error: Node does not take --title in a service thread (a flag of a whole process), and the NODE_OPTIONS your .env files set holds it; remove it there, or run with --processes",
    );
    expect(stderr).not.toContain("NITRIC_LIKE_SERVICE_NODE_ARGS");
  }, 60000);

  it("refuses an --env the project file does not have, naming the ones it has", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: envs\nservices:\n  - match: services/*.ts\nenvironments:\n  prod: {}\n",
      "services/a.ts": "export {};\n",
    });
    const { code, stderr } = await runCli(["run", dir, "--env", "staging"]);
    expect(code).toBe(1);
    expect(stderr).toContain(
      'nitric-like.yaml: no environment "staging"; use one of prod, or add it under environments:',
    );
  }, 30000);

  it("restarts a service that keeps crashing with a doubling delay", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: crashy\nservices:\n  - match: services/*.ts\n",
      "services/crashy.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("crashy");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", () => {});',
        'if (process.env.NITRIC_ENVIRONMENT === "run") setTimeout(() => process.exit(2), 50);',
      ].join("\n"),
    });
    const app = await startApp(dir);
    await app.waitFor(/restarting in 1\.00 s/, 15000);
    const delays = [...app.stderr.matchAll(/service "crashy" exited with code 2; restarting in ([\d.]+) s/g)].map(
      (m) => m[1],
    );
    expect(delays.slice(0, 3)).toEqual(["0.25", "0.50", "1.00"]);
  }, 30000);

  it("prints a service thread's uncaught error with its stack in the source file, then restarts it", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: thrower\nservices:\n  - match: services/*.ts\n",
      "services/thrower.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("thrower");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", () => {});',
        "function explode(): never {",
        '  throw new Error("kaboom");',
        "}",
        'if (process.env.NITRIC_ENVIRONMENT === "run") setTimeout(explode, 50);',
      ].join("\n"),
    });
    const app = await startApp(dir);
    await app.waitFor(/service "thrower" exited with code 1; restarting in 0\.25 s/, 15000);
    expect(app.stderr).toMatch(/thrower \| Uncaught Error: kaboom/);
    // --enable-source-maps applies in the thread: the stack names the TypeScript file and line.
    expect(app.stderr).toMatch(/thrower \| +at (Timeout\.)?explode \(.*services\/thrower\.ts:7:\d+\)/);
  }, 30000);

  it("points a service thread that fails on a thread-unsafe native addon at --processes", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: addon\nservices:\n  - match: services/*.ts\n",
      "services/addon.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("addon");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", () => {});',
        // What Node throws when a native addon that is not context-aware loads in a worker thread
        // (thrown a moment after start, so the run gets ready before the thread ends).
        "const legacy = () => {",
        '  throw Object.assign(new Error("Module did not self-register: \'/x/legacy.node\'."), { code: "ERR_DLOPEN_FAILED" });',
        "};",
        'if (process.env.NITRIC_ENVIRONMENT === "run") setTimeout(legacy, 50);',
      ].join("\n"),
    });
    const app = await startApp(dir);
    await app.waitFor(/service "addon" exited with code 1; restarting/, 15000);
    expect(app.stderr).toMatch(
      /addon \| nitric-like: service "addon" loads a native addon that cannot run in a worker thread; start it with "nitric-like run --processes"/,
    );
  }, 30000);

  it("keeps kv values across a restart of run", async () => {
    const dir = copyProject(join(FIXTURES, "lab-ours"));
    const first = await startApp(dir);
    const a = await connect(first.url("lab"));
    expect(await a.call({ op: "set", key: "kept", value: { across: "restarts" } })).toEqual({ ok: true });
    expect((await first.stop()).code).toBe(0);
    const second = await startApp(dir);
    const b = await connect(second.url("lab"));
    expect(await b.call({ op: "get", key: "kept" })).toEqual({ value: { across: "restarts" } });
    // The code and environment are unchanged: the first run's collect pass is given again.
    expect(first.stderr).toContain("collecting resources from 1 service...");
    expect(second.stderr).toContain("resources of 1 service: unchanged since the last run");
    expect(second.stderr).not.toContain("collecting resources");
  }, 30000);

  it("restarts a service when its file changes, and keeps no esbuild process between builds", async () => {
    const dir = copyProject(join(FIXTURES, "lab-ours"));
    const app = await startApp(dir);
    const pid = app.child.pid as number;
    // esbuild's service (80-90 MB) is stopped once the start's bundles are made...
    for (let i = 0; i < 100 && esbuildServices(pid).length > 0; i++) await sleep(20);
    expect(esbuildServices(pid)).toEqual([]);
    const file = join(dir, "services", "lab.ts");
    writeFileSync(
      file,
      readFileSync(file, "utf8").replace(
        "return { id: ctx.connectionId };",
        "return { id: ctx.connectionId, version: 2 };",
      ),
    );
    await app.waitFor(/services\/lab\.ts changed: restarting service "lab"/);
    const c = await connect(app.url("lab"));
    let answer: Record<string, unknown> = {};
    for (let i = 0; i < 100 && answer.version !== 2; i++) {
      answer = await c.call({ op: "whoami" });
      if (answer.version !== 2) await sleep(50);
    }
    expect(answer.version).toBe(2);
    // ...and again once the save's bundle is made.
    for (let i = 0; i < 100 && esbuildServices(pid).length > 0; i++) await sleep(20);
    expect(esbuildServices(pid)).toEqual([]);
  }, 30000);

  it("bundles a saved @nitric/sdk service once, its thread bundle, before it restarts (--verbose says each bundle)", async () => {
    const dir = copyProject(join(FIXTURES, "lab-nitric"));
    const app = await startApp(dir, ["--verbose"]);
    const file = join(dir, "services", "lab.ts");
    const before = app.stderr.length;
    writeFileSync(
      file,
      readFileSync(file, "utf8").replace("await answer(id, { id });", "await answer(id, { id, version: 2 });"),
    );
    await app.waitFor(/services\/lab\.ts changed: restarting service "lab"/);
    const c = await connect(app.url("lab"));
    let answer: Record<string, unknown> = {};
    for (let i = 0; i < 100 && answer.version !== 2; i++) {
      answer = await c.call({ op: "whoami" });
      if (answer.version !== 2) await sleep(50);
    }
    c.close();
    expect(answer.version).toBe(2);
    // It runs (and is collected) as a thread: its own bundle, for a process, is not made on a save.
    expect(app.stderr.slice(before).match(/^bundled service "lab" .*$/gm)).toEqual([
      expect.stringMatching(/^bundled service "lab" \(thread bundle\) in \d+ ms$/),
    ]);
  }, 30000);

  it("bundles a service saved during its build once after that build, from the last save; a helper two import, once for each, said as the helper", async () => {
    const service = (name: string, extra: string) =>
      [
        'import { websocket } from "@nitric-like/sdk";',
        'import { greeting } from "../lib/shared.js";',
        extra,
        `const socket = websocket("${name}");`,
        "socket.on('connect', async () => {});",
        "socket.on('disconnect', async () => {});",
        "socket.on('message', async (ctx) => {",
        '  await socket.send(ctx.connectionId, JSON.stringify({ greeting, version: "first" }));',
        "});",
      ].join("\n");
    const dir = writeProject({
      "nitric-like.yaml": "name: saves\nservices:\n  - match: services/*.ts\n",
      "lib/shared.ts": 'export const greeting = "hi";\n',
      "lib/big.ts": bigModule(),
      "services/slow.ts": service("slow", 'import { f1 } from "../lib/big.js";\nconsole.log(f1(1));'),
      "services/quick.ts": service("quick", ""),
    });
    const app = await startApp(dir, ["--verbose"], {}, { readyTimeoutMs: 60000 });
    const builds = (from: number, name: string) =>
      app.stderr.slice(from).match(new RegExp(`^bundled service "${name}" \\(thread bundle\\)`, "gm"))?.length ?? 0;
    const ask = async (socket: string, want: Record<string, unknown>) => {
      const client = await connect(app.url(socket));
      try {
        let got: Record<string, unknown> = {};
        for (let i = 0; i < 300 && JSON.stringify(got) !== JSON.stringify(want); i++) {
          got = await client.call({});
          if (JSON.stringify(got) !== JSON.stringify(want)) await sleep(100);
        }
        return got;
      } finally {
        client.close();
      }
    };
    // A helper both services import: each is bundled and restarted once.
    let from = app.stderr.length;
    writeFileSync(join(dir, "lib", "shared.ts"), 'export const greeting = "hello";\n');
    expect(await ask("quick", { greeting: "hello", version: "first" })).toEqual({
      greeting: "hello",
      version: "first",
    });
    expect(await ask("slow", { greeting: "hello", version: "first" })).toEqual({ greeting: "hello", version: "first" });
    await sleep(1000);
    expect([builds(from, "slow"), builds(from, "quick")]).toEqual([1, 1]);
    // Said as the file saved, not as the services' own files.
    expect(app.stderr.slice(from)).toContain('lib/shared.ts changed: restarting service "quick"');
    expect(app.stderr.slice(from)).toContain('lib/shared.ts changed: restarting service "slow"');
    expect(app.stderr.slice(from)).not.toMatch(/services\/\w+\.ts changed/);
    // Three saves, the last two while the first one's build runs: that build, then one of the last save.
    from = app.stderr.length;
    await saveThriceDuringItsBuild(app.child.pid as number, join(dir, "services", "slow.ts"));
    expect(await ask("slow", { greeting: "hello", version: "fourth" })).toEqual({
      greeting: "hello",
      version: "fourth",
    });
    await sleep(2000);
    expect(builds(from, "slow")).toBe(2);
    expect(await ask("slow", { greeting: "hello", version: "fourth" })).toEqual({
      greeting: "hello",
      version: "fourth",
    });
  }, 120000);

  it("says with --verbose each bundle it makes at start, in the words it says a save's, and none it reuses", async () => {
    const echo = (name: string) =>
      [
        'import { websocket } from "@nitric-like/sdk";',
        `const socket = websocket("${name}");`,
        `socket.on("message", (ctx) => "${name} " + ctx.text());`,
      ].join("\n");
    const dir = writeProject({
      "nitric-like.yaml": "name: starts\nservices:\n  - match: services/*.ts\n",
      "services/one.ts": echo("one"),
      "services/two.ts": echo("two"),
    });
    const lines = (app: { stderr: string }) =>
      (app.stderr.slice(0, app.stderr.indexOf("ready: ")).match(/^bundled service .*$/gm) ?? []).sort();
    const first = await startApp(dir, ["--verbose"]);
    expect(lines(first)).toEqual([
      expect.stringMatching(/^bundled service "one" \(thread bundle\) in \d+ ms$/),
      expect.stringMatching(/^bundled service "two" \(thread bundle\) in \d+ ms$/),
    ]);
    expect(await stopAll()).toEqual([]);
    // Nothing changed: both bundles are reused, and nothing is said.
    const second = await startApp(dir, ["--verbose"]);
    expect(lines(second)).toEqual([]);
    // Without --verbose, nothing is said either.
    expect(await stopAll()).toEqual([]);
    writeFileSync(join(dir, "services", "one.ts"), echo("uno"));
    const quiet = await startApp(dir);
    expect(quiet.stderr).not.toMatch(/^bundled service/m);
  }, 60000);

  it("bundles a new service file once, its thread bundle, and collects and runs it in a thread, as a saved one (--verbose says each bundle)", async () => {
    const echo = (name: string) =>
      [
        'import { websocket } from "@nitric-like/sdk";',
        `const socket = websocket("${name}");`,
        `socket.on("message", (ctx) => "${name} " + ctx.text());`,
      ].join("\n");
    const dir = writeProject({
      "nitric-like.yaml": "name: grows\nservices:\n  - match: services/*.ts\n",
      "services/first.ts": echo("first"),
    });
    const app = await startApp(dir, ["--verbose"]);
    const from = app.stderr.length;
    writeFileSync(join(dir, "services", "extra.ts"), echo("extra"));
    await app.waitFor(/^websocket extra ws:/m);
    expect(app.stderr.slice(from)).toContain('services/extra.ts is a new service ("extra"): starting it');
    const c = await connect(app.url("extra"));
    c.ws.send("hi");
    expect((await c.next()).text).toBe("extra hi");
    c.close();
    expect(app.stderr.slice(from).match(/^bundled service "extra" .*$/gm)).toEqual([
      expect.stringMatching(/^bundled service "extra" \(thread bundle\) in \d+ ms$/),
    ]);
    // Its own bundle, for a process, was not made: it was collected, and runs, in a thread.
    expect(existsSync(join(dir, ".nitric-like", "build", "extra.mjs"))).toBe(false);
    expect(existsSync(join(dir, ".nitric-like", "build", "first.mjs"))).toBe(false);
  }, 60000);

  it("under --provider aws, names a saved helper as what changed, and builds a service saved during its build once after it, from the last save", async () => {
    const service = (name: string, extra: string) =>
      [
        'import { websocket } from "@nitric-like/sdk";',
        'import { greeting } from "../lib/shared.js";',
        extra,
        `const socket = websocket("${name}");`,
        'socket.on("message", (ctx) => JSON.stringify({ greeting, version: "first", text: ctx.text() }));',
      ].join("\n");
    const dir = writeProject({
      "nitric-like.yaml": "name: awssaves\nservices:\n  - match: services/*.ts\n",
      "lib/shared.ts": 'export const greeting = "hi";\n',
      "lib/big.ts": bigModule(),
      "services/slow.ts": service("slow", 'import { f1 } from "../lib/big.js";\nconsole.log(f1(1));'),
      "services/quick.ts": service("quick", ""),
    });
    const app = await startApp(dir, ["--provider", "aws", "--verbose"], {}, { readyTimeoutMs: 60000 });
    const count = (from: number, pattern: RegExp) => app.stderr.slice(from).match(pattern)?.length ?? 0;
    const ask = async (socket: string, want: Record<string, unknown>) => {
      const client = await connect(app.url(socket));
      try {
        let got: Record<string, unknown> = {};
        for (let i = 0; i < 300 && JSON.stringify(got) !== JSON.stringify(want); i++) {
          client.ws.send("x");
          got = JSON.parse((await client.next()).text) as Record<string, unknown>;
          if (JSON.stringify(got) !== JSON.stringify(want)) await sleep(100);
        }
        return got;
      } finally {
        client.close();
      }
    };
    // A helper both services import: each restarts, said as the helper saved, not as their own files.
    let from = app.stderr.length;
    writeFileSync(join(dir, "lib", "shared.ts"), 'export const greeting = "hello";\n');
    const hello = (version: string) => ({ greeting: "hello", version, text: "x" });
    expect(await ask("quick", hello("first"))).toEqual(hello("first"));
    expect(await ask("slow", hello("first"))).toEqual(hello("first"));
    await app.waitFor(/service "slow" restarted/);
    expect(app.stderr.slice(from)).toContain('lib/shared.ts changed: restarting service "quick"');
    expect(app.stderr.slice(from)).toContain('lib/shared.ts changed: restarting service "slow"');
    expect(app.stderr.slice(from)).not.toMatch(/services\/\w+\.ts changed/);
    // Three saves, the last two while the first one's build runs: that build, then one of the last save.
    from = app.stderr.length;
    await saveThriceDuringItsBuild(app.child.pid as number, join(dir, "services", "slow.ts"));
    // Changes are taken one at a time, in the order saved: once a save of quick's is done, every
    // change of slow's saved before it is.
    const quick = join(dir, "services", "quick.ts");
    writeFileSync(quick, readFileSync(quick, "utf8").replace('version: "first"', 'version: "second"'));
    for (let i = 0; i < 1200 && count(from, /^service "quick" restarted/gm) === 0; i++) await sleep(50);
    expect(count(from, /^services\/quick\.ts changed: restarting service "quick"/gm)).toBe(1);
    expect(count(from, /^bundled service "slow" \(thread bundle\)/gm)).toBe(2);
    expect(count(from, /^services\/slow\.ts changed: restarting service "slow"/gm)).toBe(2);
    expect(await ask("slow", hello("fourth"))).toEqual(hello("fourth"));
  }, 120000);

  it("under --provider aws, bundles a saved service once as its thread bundle, collected in a thread, and once as its function's, which serves the new code (--verbose says each bundle)", async () => {
    const echo = (version: string) =>
      [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("echo");',
        `socket.on("message", (ctx) => "${version} " + ctx.text());`,
      ].join("\n");
    const dir = writeProject({
      "nitric-like.yaml": "name: awsbundles\nservices:\n  - match: services/*.ts\n",
      "services/echo.ts": echo("first"),
    });
    const app = await startApp(dir, ["--provider", "aws", "--verbose"], {}, { readyTimeoutMs: 60000 });
    const bundled = (from: number, to = app.stderr.length) =>
      app.stderr.slice(from, to).match(/^bundled service "echo" .*$/gm) ?? [];
    // At start: the thread bundle, for the collect pass (the build's function bundle is said as it is made).
    expect(bundled(0, app.stderr.indexOf("ready: "))).toEqual([
      expect.stringMatching(/^bundled service "echo" \(thread bundle\) in \d+ ms$/),
    ]);
    const ask = async (want: string) => {
      const client = await connect(app.url("echo"));
      try {
        let got = "";
        for (let i = 0; i < 300 && got !== want; i++) {
          client.ws.send("hi");
          got = (await client.next()).text;
          if (got !== want) await sleep(50);
        }
        return got;
      } finally {
        client.close();
      }
    };
    expect(await ask("first hi")).toBe("first hi");
    const from = app.stderr.length;
    writeFileSync(join(dir, "services", "echo.ts"), echo("second"));
    expect(await ask("second hi")).toBe("second hi");
    await app.waitFor(/^service "echo" restarted$/m);
    // Its own bundle (for a process, grpc-js inside) is neither made nor left behind: the
    // function runs its own, and the collect pass runs the thread bundle.
    expect(bundled(from)).toEqual([
      expect.stringMatching(/^bundled service "echo" \(thread bundle\) in \d+ ms$/),
      expect.stringMatching(/^bundled service "echo" \(function bundle\) in \d+ ms$/),
    ]);
    expect(existsSync(join(dir, ".nitric-like", "build", "echo.mjs"))).toBe(false);
  }, 90000);
});
