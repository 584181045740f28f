// A service's own files read what sits beside their SOURCE, as Node gives a module its place
// (`new URL("./x", import.meta.url)`, `fileURLToPath(import.meta.url)`, `__dirname`), although
// `run` and `spec` run them bundled into .nitric-like/build: in every mode of `run`, in `spec`'s
// collect pass, and after `build --provider aws` (which copies the files into the function).

import { existsSync, readFileSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { type App, cleanTemp, connect, runCli, sleep, startApp, stopAll, writeProject } from "../src/harness.js";

afterAll(async () => {
  await stopAll();
  cleanTemp();
});

/**
 * A project whose service reads files beside its source in each way Node code does, and starts
 * worker threads on scripts beside it: one at load (in a folder below, reading a file beside
 * itself), one in the handler; `ts`: a TypeScript one in the handler too (which Node 20 cannot
 * start by itself: `run` and the AWS build bundle it), importing a module of its own and
 * answering with the line its stack names.
 */
function project(options: { ts?: boolean; extra?: string } = {}): string {
  return writeProject({
    // As `new` writes it: a bundled worker must say it is CommonJS itself (.cjs).
    "package.json": '{"name":"place","private":true,"type":"module"}',
    "nitric-like.yaml": "name: place\nservices:\n  - match: services/*.ts\n",
    "services/chat.ts": [
      'import { readFileSync } from "node:fs";',
      'import { dirname, join } from "node:path";',
      'import { fileURLToPath } from "node:url";',
      'import { Worker } from "node:worker_threads";',
      'import { websocket } from "@nitric-like/sdk";',
      'import { word } from "./lib/word.js";',
      // Read at load: the collect pass (spec) runs this too.
      'const config = JSON.parse(readFileSync(new URL("./config.json", import.meta.url), "utf8")) as { socket: string };',
      "const here = dirname(fileURLToPath(import.meta.url));",
      // Started at load, answered later (no top-level await: the function stays CommonJS).
      'const loadWorker = new Worker(new URL("./workers/load-worker.js", import.meta.url));',
      'const atLoad = new Promise((resolve, reject) => { loadWorker.once("message", resolve); loadWorker.once("error", reject); });',
      "const socket = websocket(config.socket);",
      'socket.on("connect", () => {});',
      'socket.on("disconnect", () => {});',
      'socket.on("message", async (ctx) => {',
      '  const worker = new Worker(new URL("./config-worker.js", import.meta.url), { workerData: ctx.text() });',
      '  const fromWorker = await new Promise((resolve, reject) => { worker.once("message", resolve); worker.once("error", reject); });',
      "  await worker.terminate();",
      ...(options.ts
        ? [
            '  const sum = new Worker(new URL("./workers/sum.ts", import.meta.url), { workerData: [1, 2, 3] });',
            '  const summed = await new Promise((resolve, reject) => { sum.once("message", resolve); sum.once("error", reject); });',
          ]
        : []),
      "  await ctx.reply(JSON.stringify({",
      '    url: readFileSync(new URL("./greeting.txt", import.meta.url), "utf8").trim(),',
      '    dir: readFileSync(join(here, "greeting.txt"), "utf8").trim(),',
      '    cjs: readFileSync(join(__dirname, "greeting.txt"), "utf8").trim(),',
      "    file: __filename === fileURLToPath(import.meta.url),",
      "    word: word(),",
      "    fromWorker,",
      "    atLoad: await atLoad,",
      ...(options.ts ? ["    summed,"] : []),
      "  }));",
      "});",
      options.extra ?? "",
    ].join("\n"),
    "services/lib/word.ts": [
      'import { readFileSync } from "node:fs";',
      'export const word = () => readFileSync(new URL("./word.txt", import.meta.url), "utf8").trim();',
    ].join("\n"),
    "services/lib/word.txt": "deep\n",
    "services/config.json": '{"socket":"beside"}',
    "services/greeting.txt": "hello\n",
    "services/config-worker.js": [
      'import { parentPort, workerData } from "node:worker_threads";',
      'parentPort.postMessage("worker got " + workerData);',
    ].join("\n"),
    "services/workers/load-worker.js": [
      'import { readFileSync } from "node:fs";',
      'import { parentPort } from "node:worker_threads";',
      'parentPort.postMessage(readFileSync(new URL("./motd.txt", import.meta.url), "utf8").trim());',
    ].join("\n"),
    "services/workers/motd.txt": "read by the worker\n",
    "services/workers/sum.ts": [
      'import { parentPort, workerData } from "node:worker_threads";',
      'import { total } from "./total.js";',
      "const values: number[] = workerData;",
      'parentPort?.postMessage({ sum: total(values), at: String(new Error("x").stack).split("\\n")[1] });',
    ].join("\n"),
    "services/workers/total.ts":
      "export const total = (values: number[]): number => values.reduce((a, b) => a + b, 0);\n",
  });
}

const EXPECTED = {
  url: "hello",
  dir: "hello",
  cjs: "hello",
  file: true,
  word: "deep",
  fromWorker: "worker got hi",
  atLoad: "read by the worker",
};

/**
 * What the TypeScript worker answers under `run` (and `run --provider aws`, whose function maps
 * its worker's stack through the map beside its bundle): its sum, and a frame naming its source's line.
 */
const summedIn = (dir: string) => ({
  sum: 6,
  at: expect.stringContaining(`${join(dir, "services", "workers", "sum.ts")}:4:`),
});

/**
 * What two tests share, made once by whichever runs first (so each still runs alone, with `-t`):
 * a project, its build, a run of it. The test that uses it last stops the run and checks how it
 * ended; the file's afterAll stops one a test that failed left running.
 */
function shared<T>(make: () => Promise<T>): () => Promise<T> {
  let made: Promise<T> | undefined;
  return () => {
    made ??= make();
    return made;
  };
}

/** Checks every way of reading beside the source, and that a TypeScript worker script the handler starts runs (bundled) and answers the client. */
async function checkReadsBeside(dir: string, app: App): Promise<void> {
  const client = await connect(app.url("beside"));
  client.ws.send("hi");
  expect(JSON.parse((await client.next()).text)).toEqual({ ...EXPECTED, summed: summedIn(dir) });
  client.close();
}

/** Runs the project with `mode`: checkReadsBeside, then a clean stop. */
async function readsBeside(mode: string[]): Promise<void> {
  const dir = project({ ts: true });
  const app = await startApp(dir, mode);
  try {
    await checkReadsBeside(dir, app);
  } finally {
    expect((await app.stop()).code).toBe(0);
  }
}

/** The TypeScript project under `run` (worker threads), for the first test and the one that saves its worker. */
const threadsRun = shared(async () => {
  const dir = project({ ts: true });
  return { dir, app: await startApp(dir) };
});

describe("a service's own place", () => {
  it("finds the files beside its source under run (worker threads): import.meta.url, its dirname and __dirname, and runs a .ts worker", async () => {
    const { dir, app } = await threadsRun();
    await checkReadsBeside(dir, app);
  }, 60000);

  it("finds the files beside its source under run --processes, and runs a .ts worker", async () => {
    await readsBeside(["--processes"]);
  }, 60000);

  it("finds the files beside its source under run --single-thread, and runs a .ts worker", async () => {
    await readsBeside(["--single-thread"]);
  }, 60000);

  it("bundles a .ts worker script again under run when it (or a file it imports) is saved, and restarts the service", async () => {
    const { dir, app } = await threadsRun();
    const summed = async () => {
      const client = await connect(app.url("beside"));
      try {
        client.ws.send("hi");
        return (JSON.parse((await client.next()).text) as { summed: { sum: number } }).summed.sum;
      } finally {
        client.close();
      }
    };
    const until = async (want: number) => {
      let sum: number | undefined;
      for (let i = 0; i < 200 && sum !== want; i++) {
        sum = await summed().catch(() => undefined);
        if (sum !== want) await sleep(50);
      }
      return sum;
    };
    try {
      expect(await summed()).toBe(6);
      writeFileSync(
        join(dir, "services", "workers", "total.ts"),
        "export const total = (values: number[]): number => values.reduce((a, b) => a * b, 10);\n",
      );
      await app.waitFor(/services\/workers\/total\.ts changed: restarting service "chat"/, 30000);
      expect(await until(60)).toBe(60);
      // A save that does not compile keeps the running version and says where.
      writeFileSync(join(dir, "services", "workers", "sum.ts"), "const x: number = ;\n");
      await app.waitFor(/services\/workers\/sum\.ts:1:\d+/, 30000);
      expect(await summed()).toBe(60);
    } finally {
      expect((await app.stop()).code).toBe(0);
    }
  }, 90000);

  it("keeps the project's tsconfig (through extends) and the source's lines in stacks for a file that names its place", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: place\nservices:\n  - match: services/*.ts\n",
      "tsconfig.base.json": '{"compilerOptions":{"experimentalDecorators":true}}',
      "tsconfig.json": '{"extends":"./tsconfig.base.json"}',
      "services/chat.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        "const keys: string[] = [];",
        // A legacy decorator gets the method's name; a standard one would get a context object.
        "function seen(_target: unknown, key: unknown) { keys.push(typeof key); }",
        "class Handlers { @seen message() {} }",
        "void Handlers;",
        "const here = import.meta.url;",
        'const socket = websocket("beside");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", (ctx) => ctx.reply(JSON.stringify({ keys, here, at: String(new Error("x").stack).split("\\n")[1] })));',
      ].join("\n"),
    });
    const app = await startApp(dir);
    try {
      const client = await connect(app.url("beside"));
      client.ws.send("hi");
      const reply = JSON.parse((await client.next()).text) as { keys: string[]; here: string; at: string };
      expect(reply.keys).toEqual(["string"]);
      expect(reply.here).toBe(pathToFileURL(join(dir, "services", "chat.ts")).href);
      expect(reply.at).toContain(`${join(dir, "services", "chat.ts")}:10:`);
      client.close();
    } finally {
      expect((await app.stop()).code).toBe(0);
    }
  }, 60000);

  it("restarts the service under run when a data file its own code names beside itself is saved, as run --provider aws does", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: place\nservices:\n  - match: services/*.ts\n",
      "services/chat.ts": [
        'import { readFileSync } from "node:fs";',
        'import { websocket } from "@nitric-like/sdk";',
        // Read once, as the service loads: only a restart reads it again.
        'const greeting = readFileSync(new URL("./greeting.txt", import.meta.url), "utf8").trim();',
        'const socket = websocket("beside");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", (ctx) => ctx.reply(greeting));',
      ].join("\n"),
      "services/greeting.txt": "hello\n",
    });
    const app = await startApp(dir);
    const reply = async () => {
      const client = await connect(app.url("beside"));
      try {
        client.ws.send("hi");
        return (await client.next()).text;
      } finally {
        client.close();
      }
    };
    try {
      expect(await reply()).toBe("hello");
      writeFileSync(join(dir, "services", "greeting.txt"), "bonjour\n");
      await app.waitFor(/services\/greeting\.txt changed: restarting service "chat"/, 30000);
      let answer = "";
      for (let i = 0; i < 200 && answer !== "bonjour"; i++) {
        answer = await reply().catch(() => "");
        if (answer !== "bonjour") await sleep(50);
      }
      expect(answer).toBe("bonjour");
    } finally {
      expect((await app.stop()).code).toBe(0);
    }
  }, 90000);

  it("is its source file's in spec's collect pass, so a config read beside it at load names the socket", async () => {
    const { code, stdout, stderr } = await runCli(["spec", project(), "--json", "--plain"]);
    expect(code, stderr).toBe(0);
    expect(stdout).toContain('"beside"');
    // Its worker scripts are outside the services' match: nothing said of them.
    expect(stderr).not.toContain("is a worker script");
  }, 60000);

  it("says that a worker script the services' match takes is a service too, before the collect pass loads it alone", async () => {
    const dir = writeProject({
      "package.json": '{"name":"place","private":true,"type":"module"}',
      "nitric-like.yaml": "name: place\nservices:\n  - match: services/*.ts\n",
      "services/chat.ts": [
        'import { Worker } from "node:worker_threads";',
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("beside");',
        'socket.on("message", (ctx) => { new Worker(new URL("./worker.ts", import.meta.url), { workerData: ctx.text() }); });',
      ].join("\n"),
      // Written as a worker script is: loaded alone, as a service, it throws.
      "services/worker.ts": [
        'import { parentPort, workerData } from "node:worker_threads";',
        "(parentPort as NonNullable<typeof parentPort>).postMessage(workerData);",
      ].join("\n"),
    });
    const { code, stderr } = await runCli(["spec", dir, "--plain"]);
    expect(code).toBe(1);
    const warning = stderr.indexOf(
      'warning: services/worker.ts is a worker script services/chat.ts starts (new Worker(new URL("./worker.ts", import.meta.url))), and the services\' match takes it for a service too ("worker"): as a service it is loaded on its own, with no parent thread (parentPort is null), and on AWS it would be a function of its own; keep it out of the services\' match in the project file',
    );
    expect(warning, stderr).toBeGreaterThanOrEqual(0);
    const failure = stderr.indexOf('error: service "worker" (services/worker.ts): exited with code 1');
    expect(failure, stderr).toBeGreaterThan(warning);
    // The script it starts is not an entry file it imports.
    expect(stderr).not.toContain("imports services/worker.ts");
  }, 60000);

  it("says so under run of a new file the services' match takes that a service starts as a worker script", async () => {
    const dir = writeProject({
      "package.json": '{"name":"place","private":true,"type":"module"}',
      "nitric-like.yaml": "name: place\nservices:\n  - match: services/*.ts\n",
      "services/chat.ts": [
        'import { Worker } from "node:worker_threads";',
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("beside");',
        'socket.on("message", async (ctx) => {',
        '  const worker = new Worker(new URL("./late.ts", import.meta.url));',
        '  await ctx.reply(String(await new Promise((resolve) => worker.once("message", resolve))));',
        "});",
      ].join("\n"),
    });
    const app = await startApp(dir);
    try {
      expect(app.stderr).not.toContain("is a worker script");
      writeFileSync(
        join(dir, "services", "late.ts"),
        'import { parentPort } from "node:worker_threads";\nparentPort?.postMessage("late");\n',
      );
      await app.waitFor(/services\/late\.ts is a new service \("late"\): starting it/, 30000);
      await app.waitFor(
        /warning: services\/late\.ts is a worker script services\/chat\.ts starts \(new Worker\(new URL\("\.\/late\.ts", import\.meta\.url\)\)\), and the services' match takes it for a service too \("late"\)/,
        30000,
      );
    } finally {
      expect((await app.stop()).code).toBe(0);
    }
  }, 60000);
});

/** The TypeScript project built with --provider aws, and then run with it, for the first two tests below. */
const awsBuilt = shared(async () => {
  const dir = project({ ts: true });
  const out = join(dir, "out");
  const built = await runCli(["build", dir, "--provider", "aws", "--out", out, "--plain"], { timeoutMs: 60000 });
  return { dir, out, built };
});
const awsRun = shared(async () => {
  const { dir } = await awsBuilt();
  return startApp(dir, ["--provider", "aws"]);
});

describe("a function's own place after build --provider aws", () => {
  it("holds the data files the service's own files name beside them, and run --provider aws reads them there", async () => {
    const { dir, out, built } = await awsBuilt();
    expect(built.code, built.stderr).toBe(0);
    for (const file of ["config.json", "greeting.txt", "word.txt", "motd.txt"]) {
      expect(built.stderr).toContain(`  chat: ${file} `);
      expect(existsSync(join(out, "functions", "chat", file))).toBe(true);
    }
    await checkReadsBeside(dir, await awsRun());
  }, 120000);

  it("bundles each worker script the service starts with new Worker(new URL(...)) into the function, and run --provider aws runs them", async () => {
    const { dir, out, built } = await awsBuilt();
    expect(built.code, built.stderr).toBe(0);
    expect(built.stderr).not.toContain("is not carried into the function");
    for (const [name, script, literal] of [
      ["config-worker.cjs", "services/config-worker.js", "./config-worker.js"],
      ["load-worker.cjs", "services/workers/load-worker.js", "./workers/load-worker.js"],
      ["sum.cjs", "services/workers/sum.ts", "./workers/sum.ts"],
    ] as const) {
      expect(built.stderr).toMatch(
        new RegExp(
          `  chat: ${name} \\d+ (?:bytes|KB) bundled into the function: services/chat\\.ts starts ${script} as a worker \\(new URL\\("${literal}", import\\.meta\\.url\\)\\)`,
        ),
      );
      expect(existsSync(join(out, "functions", "chat", name))).toBe(true);
    }
    // In the zip that is deployed, beside the function's own bundle.
    const zip = readFileSync(join(out, "functions", "chat.zip")).toString("latin1");
    for (const name of ["config-worker.cjs", "load-worker.cjs", "sum.cjs", "motd.txt"]) expect(zip).toContain(name);
    const app = await awsRun();
    try {
      await checkReadsBeside(dir, app);
      // A worker's script saved: the function is bundled again, with the new script.
      writeFileSync(
        join(dir, "services", "workers", "sum.ts"),
        "require('node:worker_threads').parentPort.postMessage(-1);\n",
      );
      await app.waitFor(/services\/workers\/sum\.ts changed: restarting service "chat"/, 30000);
      let summed: unknown;
      for (let i = 0; i < 200 && summed !== -1; i++) {
        const again = await connect(app.url("beside"));
        again.ws.send("hi");
        summed = (JSON.parse((await again.next()).text) as { summed: unknown }).summed;
        again.close();
        if (summed !== -1) await sleep(50);
      }
      expect(summed).toBe(-1);
    } finally {
      expect((await app.stop()).code).toBe(0);
    }
  }, 120000);

  it("warns at build of a worker script a package in node_modules starts, naming the package, its file and the fix", async () => {
    const dir = writeProject({
      "package.json": '{"name":"place","private":true,"type":"module"}',
      "nitric-like.yaml": "name: place\nservices:\n  - match: services/*.ts\n",
      "services/chat.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'import { startCjs } from "cjs-spawner";',
        'import { startEsm } from "esm-spawner";',
        'const socket = websocket("beside");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", (ctx) => ctx.reply(String([startCjs, startEsm].length)));',
      ].join("\n"),
      "node_modules/cjs-spawner/package.json": '{"name":"cjs-spawner","version":"1.0.0","main":"index.js"}',
      "node_modules/cjs-spawner/index.js": [
        'const { Worker } = require("node:worker_threads");',
        'const path = require("node:path");',
        'exports.startCjs = () => new Worker(path.join(__dirname, "lib", "work.js"));',
      ].join("\n"),
      "node_modules/cjs-spawner/lib/work.js": 'require("node:worker_threads").parentPort.postMessage(1);',
      "node_modules/esm-spawner/package.json":
        '{"name":"esm-spawner","version":"1.0.0","type":"module","exports":"./index.js"}',
      "node_modules/esm-spawner/index.js": [
        'import { Worker } from "node:worker_threads";',
        'export const startEsm = () => new Worker(new URL("./work.js", import.meta.url));',
      ].join("\n"),
      "node_modules/esm-spawner/work.js":
        'import { parentPort } from "node:worker_threads";\nparentPort.postMessage(1);',
    });
    const out = join(dir, "out");
    const built = await runCli(["build", dir, "--provider", "aws", "--out", out, "--plain"], { timeoutMs: 60000 });
    expect(built.code, built.stderr).toBe(0);
    const fix =
      "use the package's option to work without a worker thread if it has one, or write a worker script in the project that imports what that worker runs and start it from the service's own code as new Worker(new URL(\"./worker.js\", import.meta.url)), which the build bundles into the function";
    expect(built.stderr).toContain(
      `service "chat": package "cjs-spawner" (node_modules/cjs-spawner/index.js) starts node_modules/cjs-spawner/lib/work.js as a worker thread (new Worker(path.join(__dirname, "lib", "work.js"))), a script the function does not carry: only what the service imports is bundled, and only the worker scripts of the project's own code, so on AWS that worker is not found and fails to start; ${fix}`,
    );
    expect(built.stderr).toContain(
      `service "chat": package "esm-spawner" (node_modules/esm-spawner/index.js) starts node_modules/esm-spawner/work.js as a worker thread (new Worker(new URL("./work.js", import.meta.url))), a script the function does not carry`,
    );
  }, 60000);

  it("counts a worker's bundle and the data it reads beside itself toward Lambda's 250 MB", async () => {
    const dir = project();
    // A real file of 251 MB beside the worker started at load (sparse: written in no time).
    const big = join(dir, "services", "workers", "motd.txt");
    truncateSync(big, 251 * 1024 * 1024);
    const out = join(dir, "out");
    const built = await runCli(["build", dir, "--provider", "aws", "--out", out, "--plain"], { timeoutMs: 60000 });
    expect(built.code).toBe(1);
    expect(built.stderr).toMatch(
      /error: service "chat": its function would be 251\.\d MB unzipped \(index\.cjs \d+ KB, index\.cjs\.map \d+ KB, config\.json \d+ bytes, \.\.\.\), over Lambda's 250\.0 MB for a function's code, which it would refuse mid-deploy; the largest parts: motd\.txt \(copied: services\/workers\/load-worker\.js reads it from beside itself\) 251\.0 MB, /,
    );
    expect(existsSync(join(out, "functions", "chat.zip"))).toBe(false);
  }, 60000);

  it("is refused at build when a worker script the service starts is a link to a file outside the project", async () => {
    const dir = project({
      extra: 'export const hostile = () => new Worker(new URL("./linked-worker.js", import.meta.url));',
    });
    const outside = writeProject({ "worker.js": 'console.log("from outside the project");\n' });
    symlinkSync(join(outside, "worker.js"), join(dir, "services", "linked-worker.js"));
    const out = join(dir, "out");
    const built = await runCli(["build", dir, "--provider", "aws", "--out", out, "--plain"], { timeoutMs: 60000 });
    expect(built.code).not.toBe(0);
    expect(built.stderr).toContain(
      'service "chat": services/chat.ts names services/linked-worker.js ("./linked-worker.js"), a link to a file outside the project',
    );
    expect(existsSync(out)).toBe(false);
  }, 60000);

  it("is refused at build when the service names a file outside the project with new URL(..., import.meta.url)", async () => {
    const dir = project({
      extra: 'export const hostile = () => new URL("../../../../../../../../../etc/passwd", import.meta.url);',
    });
    const out = join(dir, "out");
    const built = await runCli(["build", dir, "--provider", "aws", "--out", out, "--plain"], { timeoutMs: 60000 });
    expect(built.code).not.toBe(0);
    expect(built.stderr).toContain(
      'service "chat": services/chat.ts names a file outside the project with new URL("../../../../../../../../../etc/passwd", import.meta.url): a build never copies a file from outside the project into a function; put the file in the project, in services/ or a folder below it',
    );
    expect(existsSync(out)).toBe(false);
  }, 60000);
});
