// The collect pass on real services: a service collected as a worker thread (`threads: true`, as
// `run` does) gives what the same service gives collected as a process, for a service that
// declares (on our SDK, and on @nitric/sdk), one that crashes, one that exits non-zero and one that
// declares nothing.
// With `reuse` (as `run` collects), an unchanged service's last collection is given again.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { CollectedService, Project } from "@nitric-like/spec";
import { afterEach, describe, expect, it } from "vitest";
import { bundleService } from "./bundle.js";
import { type CollectOptions, collect, keptCollections, waitingSaid } from "./collect.js";
import { collectFailure } from "./readiness.js";

const SDK = fileURLToPath(new URL("../../../sdk", import.meta.url));
/** The published @nitric/sdk, as the conformance tests install it. */
const NITRIC_SDK = fileURLToPath(new URL("../../../conformance/node_modules/@nitric/sdk", import.meta.url));
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A project with our SDK installed and one service of `source`. */
function projectOf(source: string) {
  const dir = mkdtempSync(join(tmpdir(), "nitric-like-collect-"));
  dirs.push(dir);
  mkdirSync(join(dir, "node_modules", "@nitric-like"), { recursive: true });
  symlinkSync(SDK, join(dir, "node_modules", "@nitric-like", "sdk"), "dir");
  mkdirSync(join(dir, "services"));
  const path = join(dir, "services", "api.ts");
  writeFileSync(path, source);
  return { dir, entry: { name: "api", file: "services/api.ts", path }, project: { name: "app", dir } as Project };
}

/** A project with one service of `source`, bundled. */
async function service(source: string) {
  const { dir, entry, project } = projectOf(source);
  const bundle = await bundleService(dir, entry);
  expect(bundle.threadable).toBe(true);
  return { project, services: [{ entry, bundle }] as [{ entry: typeof entry; bundle: typeof bundle }] };
}

/** How long each of the last call of `both`'s two passes took, in ms: [thread, process]. */
let passMs: [number, number] = [0, 0];

/**
 * The service collected as a thread and as a process (in the project's folder, as `run` collects),
 * the two passes side by side: they share nothing but the bundle they read, and most of a pass is
 * waiting for the service. `oneByOne` runs them one after the other, for a limit too short to
 * share the machine's cores with the other pass under load.
 */
async function both(
  source: string,
  options: CollectOptions = {},
  oneByOne = false,
): Promise<[CollectedService, CollectedService]> {
  const { project, services } = await service(source);
  const cwd = process.cwd();
  process.chdir(project.dir);
  const timed = async (threads: boolean) => {
    const started = Date.now();
    const [result] = await collect(project, services, threads ? { ...options, threads } : options);
    return { result: result as CollectedService, ms: Date.now() - started };
  };
  try {
    const [thread, child] = oneByOne
      ? [await timed(true), await timed(false)]
      : await Promise.all([timed(true), timed(false)]);
    passMs = [thread.ms, child.ms];
    return [thread.result, child.result];
  } finally {
    process.chdir(cwd);
  }
}

it("records the same declarations and handlers from a thread as from a process", async () => {
  const [thread, child] = await both(`import { kv, websocket } from "@nitric-like/sdk";
kv("store").allow("get", "set");
const socket = websocket("socket");
socket.on("connect", () => {});
socket.on("message", () => {});
`);
  expect(thread.failure).toBeUndefined();
  expect(thread.declared.map((d) => d.name).sort()).toEqual(["socket", "store"]);
  expect(thread.handlers).toHaveLength(2);
  expect(thread).toEqual(child);
});

it("records a @nitric/sdk service's declarations, the kinds we do not serve included, from a thread as from a process", async () => {
  const { dir, entry, project } = projectOf(`import { api, kv, topic, websocket } from "@nitric/sdk";
kv("store").allow("get");
websocket("socket").on("message", async (ctx) => ctx);
api("main").get("/hello", async (ctx) => ctx);
topic("updates").subscribe(async (ctx) => ctx);
`);
  mkdirSync(join(dir, "node_modules", "@nitric"));
  symlinkSync(NITRIC_SDK, join(dir, "node_modules", "@nitric", "sdk"), "dir");
  const bundle = await bundleService(dir, entry);
  expect(bundle.threadable).toBe(false);
  expect(bundle.threadOutfile).toBeDefined();
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    const [[thread], [child]] = await Promise.all([
      collect(project, [{ entry, bundle }], { threads: true }),
      collect(project, [{ entry, bundle }]),
    ]);
    expect(thread?.failure).toBeUndefined();
    expect(thread?.declared.map((d) => `${d.kind} ${d.name}`).sort()).toEqual([
      "api main",
      "kv store",
      "topic updates",
      "websocket socket",
    ]);
    expect(thread?.handlers).toHaveLength(1);
    // The order of declarations may differ: over gRPC each of @nitric/sdk's streams opens on its own.
    const sorted = (r: CollectedService | undefined) =>
      r && {
        ...r,
        declared: [...r.declared].sort((a, b) => `${a.kind} ${a.name}`.localeCompare(`${b.kind} ${b.name}`)),
      };
    expect(sorted(thread)).toEqual(sorted(child));
  } finally {
    process.chdir(cwd);
  }
}, 20000);

it("reports a service that crashes as a process does, with its output", async () => {
  const [thread, child] = await both(`import { websocket } from "@nitric-like/sdk";
websocket("socket");
console.log("about to fail");
throw new Error("boom at start");
`);
  expect(thread.failure?.message).toBe("exited with code 1 while its resources were being collected");
  expect(thread.failure?.message).toBe(child.failure?.message);
  for (const r of [thread, child]) {
    expect(r.failure?.output).toContain("about to fail");
    expect(r.failure?.output).toContain("boom at start");
  }
});

it("reports a service that exits non-zero as a process does", async () => {
  const [thread, child] = await both(`import { websocket } from "@nitric-like/sdk";
websocket("socket").on("message", () => {});
setTimeout(() => process.exit(3), 10);
`);
  expect(thread.failure?.message).toBe("exited with code 3 while its resources were being collected");
  expect(thread.failure?.message).toBe(child.failure?.message);
});

it("stops a service that declares nothing and does not exit, as a process", async () => {
  const source = `import { kv } from "@nitric-like/sdk";
if (process.env.NEVER_SET_HERE) kv("store");
setInterval(() => {}, 1000);
`;
  const [thread, child] = await both(source, { startTimeoutMs: 500 }, true);
  expect(thread.failure?.message).toBe(
    "declared nothing within 0.5 s and did not exit; a service must declare its resources when it starts: look in services/api.ts for a top-level await that never settles before its first declaration (a connection that never opens, a promise nothing resolves), or a declaration its code skips (one under a condition)",
  );
  expect(thread.failure?.message).toBe(child.failure?.message);
});

it("reports a service whose top level never lets its event loop turn as blocked, not as one with no handlers", async () => {
  const [thread, child] = await both(
    `import { websocket } from "@nitric-like/sdk";
const socket = websocket("socket");
socket.on("message", () => {});
while (true);
`,
    { startTimeoutMs: 2000, quietMs: 300 },
  );
  for (const r of [thread, child]) {
    expect(r.failure?.message).toMatch(
      /^its event loop was not turning \d+\.\d s after it started \(a loop at its top level that never yields, or a synchronous wait\), so its handlers could not be collected; look in services\/api\.ts, and what it imports, for a loop with no await in it or a synchronous wait \(Atomics\.wait, execSync\) that runs as it loads$/,
    );
  }
});

it("names where a timer of the service's load was set when its callback blocks the event loop, not its top level", async () => {
  const [thread, child] = await both(
    `import { websocket } from "@nitric-like/sdk";
const socket = websocket("socket");
socket.on("message", () => {});
function warmCache() {
  setTimeout(() => {
    while (true);
  }, 1000);
}
warmCache();
`,
    // A quiet spell longer than the SDK's 500 ms between signs of life, as the default 1.5 s is.
    { startTimeoutMs: 3000, quietMs: 1000 },
  );
  for (const r of [thread, child]) {
    expect(r.failure?.message).toMatch(
      /^its event loop was not turning \d+\.\d s after it started, while the timer it set as it loaded at services\/api\.ts:5 was pending: its callback \(or what it calls\) most likely loops without yielding or waits synchronously, so its handlers could not be collected$/,
    );
  }
});

it("waits for a top level that keeps its event loop busy for a while, and collects what it registers after", async () => {
  const [thread, child] = await both(
    `import { websocket } from "@nitric-like/sdk";
const socket = websocket("socket");
const until = Date.now() + 800;
while (Date.now() < until);
socket.on("message", () => {});
`,
    { quietMs: 300 },
  );
  for (const r of [thread, child]) {
    expect(r.failure).toBeUndefined();
    expect(r.handlers).toHaveLength(1);
  }
});

const STUCK = (wait: string) => `import { websocket } from "@nitric-like/sdk";
const socket = websocket("socket");
${wait}
socket.on("message", () => {});
`;

const NEVER_LOADED =
  "its module never finished loading: a top-level await after services/api.ts:2 (?:had not settled \\d+\\.\\d s later|never settled, nothing being left that could settle it) \\(a connection that never opens, a promise nothing resolves\\), so the handlers it registers after that await were never collected; register handlers at module load, before any await that may not settle, or make sure it settles$";

it("reports a service stuck at a top-level await as one whose module never finished loading, after the line before it, once it has been waited for", async () => {
  const [thread, child] = await both(STUCK("await new Promise(() => { setInterval(() => {}, 1000); });"), {
    loadingMs: 1500,
  });
  for (const r of [thread, child]) {
    expect(r.handlers).toEqual([]);
    expect(r.failure).toMatchObject({ stopped: true });
    expect(r.failure?.message).toMatch(new RegExp(`^${NEVER_LOADED}`));
    expect(r.failure?.message).toContain("had not settled 1.");
  }
  // Each waited for the quiet spell and then up to loadingMs, not for good (nor the default 10 s).
  expect(passMs[0] + passMs[1]).toBeLessThan(15000);
}, 30000);

it("reports a service whose top-level await nothing is left to settle (Node's exit code 13) as one whose module never finished loading, after the line before it", async () => {
  const [thread, child] = await both(STUCK("await new Promise(() => {});"));
  for (const r of [thread, child]) {
    expect(r.handlers).toEqual([]);
    expect(r.failure?.message).toMatch(
      new RegExp(`^exited with code 13 while its resources were being collected: ${NEVER_LOADED}`),
    );
    expect(r.failure?.message).toContain("never settled, nothing being left");
  }
});

it("waits for a top-level await that settles after the quiet spell, and collects what the service registers after it", async () => {
  const notes: string[] = [];
  const [thread, child] = await both(STUCK("await new Promise((resolve) => setTimeout(resolve, 4000));"), {
    quietMs: 300,
    onNote: (line) => notes.push(line),
  });
  for (const r of [thread, child]) {
    expect(r.failure).toBeUndefined();
    expect(r.handlers).toEqual([{ socket: "socket", event: "message" }]);
  }
  const said =
    'service "api" (services/api.ts): its collect pass is waiting (up to 10 s) for its module to finish loading: a top-level await after services/api.ts:2 has not settled; handlers must be registered at module load, and those after that await are collected once it settles';
  expect(notes).toEqual([said, said]);
}, 30000);

it("explains Node's exit code 13, a top-level await nothing was left to settle, from a thread as from a process", async () => {
  const [thread, child] = await both(`import { websocket } from "@nitric-like/sdk";
if (process.env.NEVER_SET_HERE) websocket("socket");
await new Promise(() => {});
websocket("socket").on("message", () => {});
`);
  for (const r of [thread, child]) {
    expect(r.failure).toEqual({
      message:
        "exited with code 13 while its resources were being collected: Node's code for a module whose top-level await never settled, nothing being left that could settle it (a promise nothing resolves); look in services/api.ts, and what it imports, for that await, and register handlers at module load, before any await that may not settle",
      output: "",
    });
  }
});

it("says under run what exit code 13 means, then the last output of a service that logged before it, from a thread as from a process", async () => {
  const [thread, child] = await both(`import { websocket } from "@nitric-like/sdk";
if (process.env.NEVER_SET_HERE) websocket("socket");
console.log("connecting to the config service");
await new Promise(() => {});
websocket("socket").on("message", () => {});
`);
  const meaning =
    "Node's code for a module whose top-level await never settled, nothing being left that could settle it (a promise nothing resolves); look in services/api.ts, and what it imports, for that await, and register handlers at module load, before any await that may not settle";
  for (const r of [thread, child]) {
    expect(r.failure).toEqual({
      message: `exited with code 13 while its resources were being collected: ${meaning}`,
      output: "connecting to the config service",
    });
    // As run says it (its supervisor's line): the explanation, then the last output.
    const { when, cause } = collectFailure(r.failure as { message: string; output: string }, "/p", []);
    expect(when).toBe("while its resources were being collected");
    expect(cause.message).toBe(`it exited with code 13: ${meaning}; its last output: connecting to the config service`);
    // With nothing logged: said once, not as "(exited with code 13): exited with code 13 while...".
    const silent = collectFailure({ ...(r.failure as { message: string }), output: "" }, "/p", []);
    expect(silent.when).toBe("while its resources were being collected");
    expect(silent.cause.message).toBe(`it exited with code 13, printing nothing: ${meaning}`);
  }
});

it("says what a pass waits for in one bounded line: each timer's line once, connections with their peer, request kinds", () => {
  const dir = "/p";
  const frame = (line: number) => [`at warm (${dir}/services/api.ts:${line}:3)`];
  expect(
    waitingSaid(
      {
        timers: [frame(4), frame(4), ["at listOnTimeout (node:internal/timers:573:17)"]],
        requests: ["a DNS lookup"],
        connections: [{ frames: [], peer: "127.0.0.1:8443" }],
      },
      dir,
    ),
  ).toBe(
    "a timer set at services/api.ts:4, a timer, a connection to 127.0.0.1:8443 with an unanswered request, a DNS lookup",
  );
  const many = Array.from({ length: 50 }, (_, i) => frame(i + 1));
  expect(waitingSaid({ timers: many, requests: [], connections: [] }, dir)).toBe(
    "a timer set at services/api.ts:1, a timer set at services/api.ts:2, a timer set at services/api.ts:3, a timer set at services/api.ts:4 and 46 more",
  );
});

describe("what a service's pass waits for, said once it has waited a while", () => {
  let server: Server | undefined;
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    server = undefined;
  });

  it("names the timer its module set as it loaded, once, with the service and that handlers register at load", async () => {
    const notes: string[] = [];
    const [thread, child] = await both(
      `import { websocket } from "@nitric-like/sdk";
websocket("socket").on("message", () => {});
function warmCache() {
  setTimeout(() => {}, 3500);
}
warmCache();
`,
      { onNote: (line) => notes.push(line) },
    );
    for (const r of [thread, child]) expect(r.failure).toBeUndefined();
    const said =
      'service "api" (services/api.ts): its collect pass is waiting for work it started as it loaded (up to 10 s for each, 30 s in all): a timer set at services/api.ts:4; handlers must be registered at module load, so one registered when that work ends is refused';
    expect(notes).toEqual([said, said]);
  }, 30000);

  it("names a connection with an unanswered request, and says nothing of work that ends at once", async () => {
    // A real HTTP server on 127.0.0.1 that answers after 3.5 s.
    server = createServer((_req, res) => {
      setTimeout(() => res.end("{}"), 3500);
    });
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const notes: string[] = [];
    const [thread, child] = await both(
      `import { websocket } from "@nitric-like/sdk";
websocket("socket").on("message", () => {});
fetch("http://127.0.0.1:${port}/config").then((r) => r.text());
`,
      { onNote: (line) => notes.push(line) },
    );
    for (const r of [thread, child]) expect(r.failure).toBeUndefined();
    expect(notes).toHaveLength(2);
    for (const note of notes) {
      expect(note).toContain(
        `: a connection to 127.0.0.1:${port} with an unanswered request; handlers must be registered`,
      );
    }
    const quick: string[] = [];
    await both(
      `import { websocket } from "@nitric-like/sdk";
websocket("socket").on("message", () => {});
setTimeout(() => {}, 300);
`,
      { onNote: (line) => quick.push(line) },
    );
    expect(quick).toEqual([]);
  }, 30000);

  it.each([
    ["exec()'s callback", `exec("sleep 3.5; echo join", (_error, out) => socket.route(out.trim(), () => {}));`],
    [
      "spawn()'s 'exit' listener",
      `spawn("sleep", ["3.5"], { stdio: "ignore" }).on("exit", () => socket.route("join", () => {}));`,
    ],
  ])(
    "waits for a child process its module started as it loaded (%s), names its program (never its arguments) and pid, and refuses what it registers",
    async (_shape, work) => {
      const notes: string[] = [];
      const [thread, child] = await both(
        `import { websocket } from "@nitric-like/sdk";
import { exec, spawn } from "node:child_process";
const socket = websocket("socket");
socket.on("message", () => {});
${work}
`,
        { onNote: (line) => notes.push(line) },
      );
      for (const r of [thread, child]) {
        expect(r.failure?.output).toMatch(
          /websocket\("socket"\)\.route\("join"\): service "api" registered it after its module finished loading/,
        );
      }
      expect(notes).toHaveLength(2);
      for (const note of notes) {
        expect(note).toMatch(
          /: a child process `sleep` \(pid \d+, started at services\/api\.ts:5\); handlers must be registered/,
        );
      }
    },
    30000,
  );

  it.each([
    ["fetch(url).then((r) => r.json())", (url: string) => `fetch("${url}").then((r) => r.json()).then(register);`],
    [
      "http.get()'s response 'end'",
      (url: string) => `get("${url}", (res) => { res.resume(); res.on("end", register); });`,
    ],
  ])(
    "waits for an HTTP answer whose body arrives slowly after its first bytes (%s), and refuses what it registers",
    async (_shape, work) => {
      // A real HTTP server on 127.0.0.1 that sends its headers and a first byte at once, the rest 3.5 s later.
      server = createServer((_req, res) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.write("{");
        setTimeout(() => res.end('"room":"join"}'), 3500);
      });
      await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
      const port = (server.address() as AddressInfo).port;
      const notes: string[] = [];
      const [thread, child] = await both(
        `import { websocket } from "@nitric-like/sdk";
import { get } from "node:http";
const socket = websocket("socket");
socket.on("message", () => {});
const register = () => socket.route("join", () => {});
${work(`http://127.0.0.1:${port}/config`)}
`,
        { onNote: (line) => notes.push(line) },
      );
      for (const r of [thread, child]) {
        expect(r.failure?.output).toMatch(
          /websocket\("socket"\)\.route\("join"\): service "api" registered it after its module finished loading/,
        );
      }
      expect(notes).toHaveLength(2);
      for (const note of notes) expect(note).toContain(": an HTTP answer still arriving; handlers must be registered");
    },
    30000,
  );

  it("does not wait for a child process left alone (a sidecar) or unref()'d (a daemon)", async () => {
    const notes: string[] = [];
    const [thread, child] = await both(
      `import { websocket } from "@nitric-like/sdk";
import { spawn } from "node:child_process";
websocket("socket").on("message", () => {});
const sidecar = spawn("sleep", ["4"], { stdio: "ignore" });
const daemon = spawn("sleep", ["4"], { stdio: "ignore", detached: true });
daemon.on("exit", () => {});
daemon.unref();
process.once("SIGTERM", () => {
  sidecar.kill();
  daemon.kill();
  process.exit(0);
});
`,
      { onNote: (line) => notes.push(line) },
    );
    for (const r of [thread, child]) expect(r.failure).toBeUndefined();
    // Waited for, each pass would say so after 2 s.
    expect(notes).toEqual([]);
  }, 30000);

  it.each([
    [
      "a 'message' listener",
      // It stays up after its first message (a config thread that keeps watching).
      `new Worker(\`setInterval(() => {}, 1000); setTimeout(() => require("node:worker_threads").parentPort.postMessage({ room: "join" }), 3500);\`, { eval: true }).once("message", (m) => socket.route(m.room, () => {}));`,
    ],
    [
      "an 'exit' listener",
      `new Worker("setTimeout(() => {}, 3500);", { eval: true }).on("exit", () => socket.route("join", () => {}));`,
    ],
  ])(
    "waits for a worker thread its module started as it loaded and listens to (%s), names where it was started, and refuses what it registers",
    async (_shape, work) => {
      const notes: string[] = [];
      const [thread, child] = await both(
        `import { websocket } from "@nitric-like/sdk";
import { Worker } from "node:worker_threads";
const socket = websocket("socket");
socket.on("message", () => {});
${work}
`,
        { onNote: (line) => notes.push(line) },
      );
      for (const r of [thread, child]) {
        expect(r.failure?.output).toMatch(
          /websocket\("socket"\)\.route\("join"\): service "api" registered it after its module finished loading/,
        );
      }
      expect(notes).toHaveLength(2);
      for (const note of notes) {
        expect(note).toContain(": a worker thread (started at services/api.ts:5); handlers must be registered");
      }
    },
    30000,
  );

  it.each([
    [
      "posted from a worker thread nobody listens to, 3.5 s in",
      `new Worker(\`const { workerData } = require("node:worker_threads"); setTimeout(() => workerData.port.postMessage("join"), 3500);\`, { eval: true, workerData: { port: port2 }, transferList: [port2] });`,
    ],
    [
      "given to a worker thread by postMessage's transferList, posted 3.5 s in",
      `new Worker(\`require("node:worker_threads").parentPort.once("message", ({ port }) => setTimeout(() => port.postMessage("join"), 3500));\`, { eval: true }).postMessage({ port: port2 }, [port2]);`,
    ],
    ["posted at once from this thread", `port2.postMessage("join");`],
  ])(
    "waits for the first message of a MessagePort its module made as it loaded and listens to (%s), and refuses what it registers",
    async (shape, post) => {
      const notes: string[] = [];
      const [thread, child] = await both(
        `import { websocket } from "@nitric-like/sdk";
import { MessageChannel, Worker } from "node:worker_threads";
const socket = websocket("socket");
socket.on("message", () => {});
const { port1, port2 } = new MessageChannel();
port1.on("message", (m) => socket.route(m, () => {}));
${post}
`,
        { onNote: (line) => notes.push(line) },
      );
      for (const r of [thread, child]) {
        expect(r.failure?.output).toMatch(
          /websocket\("socket"\)\.route\("join"\): service "api" registered it after its module finished loading/,
        );
      }
      // Those a worker posts to later are waited for long enough to be said, where the port was made.
      if (!shape.endsWith("from this thread")) {
        expect(notes).toHaveLength(2);
        for (const note of notes)
          expect(note).toContain(": a MessagePort (made at services/api.ts:5); handlers must be registered");
      } else expect(notes).toEqual([]);
    },
    30000,
  );

  it("does not wait for a MessagePort used as an event bus in its own thread, both ends kept and nothing posted", async () => {
    const notes: string[] = [];
    const started = Date.now();
    const [thread, child] = await both(
      `import { websocket } from "@nitric-like/sdk";
import { MessageChannel } from "node:worker_threads";
websocket("socket").on("message", () => {});
const bus = new MessageChannel();
bus.port1.on("message", () => {});
bus.port2.on("message", () => {});
process.once("SIGTERM", () => process.exit(0));
`,
      { onNote: (line) => notes.push(line) },
    );
    for (const r of [thread, child]) expect(r.failure).toBeUndefined();
    // Waited for, each pass would say so after 2 s, and take 10 s.
    expect(notes).toEqual([]);
    expect(Date.now() - started).toBeLessThan(2 * 5000);
  }, 30000);

  it("does not wait for a MessagePort nobody listens to, nor one unref()'d, nor one once its first message has come", async () => {
    const notes: string[] = [];
    const started = Date.now();
    const [thread, child] = await both(
      `import { websocket } from "@nitric-like/sdk";
import { MessageChannel } from "node:worker_threads";
websocket("socket").on("message", () => {});
const idle = new MessageChannel();
const background = new MessageChannel();
background.port1.on("message", () => {});
background.port1.unref();
// A bus listened to for good, that has had its first message.
const bus = new MessageChannel();
bus.port1.on("message", () => {});
bus.port2.postMessage("ready");
process.once("SIGTERM", () => process.exit(0));
`,
      { onNote: (line) => notes.push(line) },
    );
    for (const r of [thread, child]) expect(r.failure).toBeUndefined();
    // Waited for, each pass would say so after 2 s, and take 10 s.
    expect(notes).toEqual([]);
    expect(Date.now() - started).toBeLessThan(2 * 5000);
  }, 30000);

  it("does not wait for a worker thread nobody listens to, nor one unref()'d, nor one once its first message has come", async () => {
    const notes: string[] = [];
    const [thread, child] = await both(
      `import { websocket } from "@nitric-like/sdk";
import { Worker } from "node:worker_threads";
websocket("socket").on("message", () => {});
new Worker("setTimeout(() => {}, 4000);", { eval: true });
const background = new Worker("setTimeout(() => {}, 4000);", { eval: true });
background.on("exit", () => {});
background.unref();
// A pool's thread, listened to for good, that says it is ready at once and stays up.
const pooled = new Worker(\`require("node:worker_threads").parentPort.postMessage("ready"); setInterval(() => {}, 1000);\`, { eval: true });
pooled.on("message", () => {});
process.once("SIGTERM", () => process.exit(0));
`,
      { onNote: (line) => notes.push(line) },
    );
    for (const r of [thread, child]) expect(r.failure).toBeUndefined();
    // Waited for, each pass would say so after 2 s, and take the worker's 4 s (the pooled one's 10 s).
    expect(notes).toEqual([]);
    expect(passMs[0] + passMs[1]).toBeLessThan(2 * 4000);
  }, 30000);

  it("does not wait for the keep-alive timer fetch leaves once its answer has come (Node's and undici's timers are not the service's)", async () => {
    // A real HTTP server on 127.0.0.1 that answers at once and keeps the connection alive (Node's
    // default): fetch then sets a keep-alive timer of a few seconds.
    server = createServer((_req, res) => res.end('{"room":"lobby"}'));
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const notes: string[] = [];
    // Its config fetched at load, awaited and not; an interval (a pool's) keeps it running, so
    // the pass ends when it has gone quiet, not when it exits.
    const [thread, child] = await both(
      `import { websocket } from "@nitric-like/sdk";
const config = await (await fetch("http://127.0.0.1:${port}/config")).json();
fetch("http://127.0.0.1:${port}/flags").then((r) => r.text());
setInterval(() => {}, 1000);
websocket(config.room).on("message", () => {});
`,
      { onNote: (line) => notes.push(line) },
    );
    for (const r of [thread, child]) {
      expect(r.failure).toBeUndefined();
      expect(r.handlers).toEqual([{ socket: "lobby", event: "message" }]);
    }
    // Waited for, each pass would say so after 2 s ("a timer", with no line of the service's).
    expect(notes).toEqual([]);
  }, 30000);
});

it("collects a thread-only bundle's service as a process, bundling it whole, when a native addon cannot load in its thread", async () => {
  // What Node throws when a native addon that is not context-aware loads in a worker thread.
  const { dir, entry, project } = projectOf(`import { isMainThread } from "node:worker_threads";
import { kv } from "@nitric-like/sdk";
if (!isMainThread) throw Object.assign(new Error("Module did not self-register: '/x/legacy.node'."), { code: "ERR_DLOPEN_FAILED" });
kv("store").allow("get");
`);
  // As run bundles a service that will run as a thread: the thread bundle alone.
  const bundle = await bundleService(dir, entry, { threadOnly: true });
  expect(existsSync(bundle.outfile)).toBe(false);
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    const [result] = await collect(project, [{ entry, bundle }], { threads: true });
    expect(result?.failure).toBeUndefined();
    expect(result?.declared.map((d) => d.name)).toEqual(["store"]);
    expect(existsSync(bundle.outfile)).toBe(true);
  } finally {
    process.chdir(cwd);
  }
});

describe("reuse (run's shortcut for an unchanged service)", () => {
  /** The service of `source`, which appends a line to runs.log each time its code runs; `collectIt` collects it with reuse. */
  async function counted(source: string) {
    const { project, services } = await service(
      `import { appendFileSync } from "node:fs";\nappendFileSync(${JSON.stringify("runs.log")}, "ran\\n");\n${source}`,
    );
    const runs = () => {
      try {
        return readFileSync(join(project.dir, "runs.log"), "utf8").split("\n").filter(Boolean).length;
      } catch {
        return 0;
      }
    };
    const collectIt = async (options: CollectOptions = {}) => {
      // As run does: what is kept and still good, then the pass with it.
      const kept = keptCollections(services, options.dotenv);
      const reused = [...kept.keys()];
      const cwd = process.cwd();
      process.chdir(project.dir);
      try {
        const [result] = await collect(project, services, { ...options, reuse: kept });
        return { result: result as CollectedService, reused };
      } finally {
        process.chdir(cwd);
      }
    };
    return { project, services, runs, collectIt };
  }

  const SOURCE = `import { kv, websocket } from "@nitric-like/sdk";
kv("store").allow("get");
websocket("socket").on("message", () => {});
`;

  it("gives the last collection again without running the service while its bundle and environment are unchanged", async () => {
    const { runs, collectIt } = await counted(SOURCE);
    const first = await collectIt({ threads: true });
    expect(first.reused).toEqual([]);
    expect(runs()).toBe(1);
    const second = await collectIt({ threads: true });
    expect(second.reused).toEqual(["api"]);
    expect(runs()).toBe(1);
    expect(second.result).toEqual(first.result);
    expect(second.result.declared.map((d) => d.name).sort()).toEqual(["socket", "store"]);
  });

  it("collects again when the service's code or its environment changes", async () => {
    const { project, services, runs, collectIt } = await counted(SOURCE);
    await collectIt();
    expect(runs()).toBe(1);
    // A .env value (as run passes them) is part of the environment.
    const withValue = await collectIt({ dotenv: new Map([["GREETING", "hello"]]) });
    expect(withValue.reused).toEqual([]);
    expect(runs()).toBe(2);
    // New code: the bundle is made again, and what it declares now is what counts.
    const [{ entry }] = services;
    writeFileSync(
      entry.path,
      `import { appendFileSync } from "node:fs";\nappendFileSync("runs.log", "ran\\n");\nimport { kv } from "@nitric-like/sdk";\nkv("other").allow("set");\n`,
    );
    const rebuilt = await bundleService(project.dir, entry);
    const changed = [{ entry, bundle: rebuilt }];
    expect(keptCollections(changed, undefined).size, "a changed bundle's collection was kept").toBe(0);
    const again = await collect(project, changed, { reuse: keptCollections(changed, undefined) });
    expect(again[0]?.declared.map((d) => d.name)).toEqual(["other"]);
  });

  it("never keeps a collection that failed, and ignores a kept file it cannot read or whose result is malformed", async () => {
    const failing = await counted(
      `import { kv } from "@nitric-like/sdk";\nkv("store");\nthrow new Error("not yet");\n`,
    );
    expect((await failing.collectIt()).result.failure?.message).toContain("exited with code 1");
    await failing.collectIt();
    expect(failing.runs()).toBe(2);

    const { services, runs, collectIt } = await counted(SOURCE);
    await collectIt();
    const [{ bundle }] = services;
    writeFileSync(`${bundle.outfile}.collected.json`, "{ not json");
    const after = await collectIt();
    expect(after.reused).toEqual([]);
    expect(after.result.declared).toHaveLength(2);
    expect(runs()).toBe(2);
    // The right key with a result of the wrong shape is not trusted either.
    const kept = `${bundle.outfile}.collected.json`;
    const { key } = JSON.parse(readFileSync(kept, "utf8")) as { key: string };
    writeFileSync(kept, JSON.stringify({ key, result: { name: "api", declared: "socket" } }));
    const reshaped = await collectIt();
    expect(reshaped.reused).toEqual([]);
    expect(reshaped.result.declared).toHaveLength(2);
    expect(runs()).toBe(3);
  });
});
