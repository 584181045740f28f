#!/usr/bin/env node
// AWS runtime benchmark (issue 6, scenario 6): builds bench/apps/echo-reply and the published
// @nitric/sdk echo with `nitric-like build --provider aws`, then measures, side by side in the same run:
//   - bundle size of each function (target: at most 1 MB);
//   - cold init: a fresh Node process requires index.cjs and awaits handler.ready (router up,
//     service loaded, handlers registered), against a fresh process requiring a trivial handler;
//   - the first event after the cold init, in the same process (first calls, first AWS request);
//     target: cold init + first event, beyond the trivial handler's, at most 50 ms for our SDK and
//     100 ms for @nitric/sdk;
//   - warm event cost: $default events through the handler in-process (the runtime, the in-memory
//     transport to the service's SDK and back, the route-response reply; PostToConnection to a loopback Management
//     API for @nitric/sdk, which replies with socket.send), against a plain function that echoes.
// Usage: node bench/aws-runtime.mjs [--events 2000] [--colds 5]
import { execFile, execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";
import { verdict } from "./lib.mjs";

const { values } = parseArgs({
  options: { events: { type: "string", default: "2000" }, colds: { type: "string", default: "5" } },
});
const EVENTS = Number(values.events);
const COLDS = Number(values.colds);
const here = fileURLToPath(new URL(".", import.meta.url));
const cli = join(here, "..", "packages", "cli", "bin", "nitric-like.js");
const work = mkdtempSync(join(tmpdir(), "nitric-like-bench-aws-"));

function build(app) {
  const dir = join(work, app);
  cpSync(join(here, "apps", app), dir, { recursive: true });
  symlinkSync(join(here, "node_modules"), join(dir, "node_modules"), "dir");
  execFileSync(process.execPath, [cli, "build", dir, "--provider", "aws", "--out", join(dir, "out"), "--plain"], {
    stdio: "pipe",
  });
  const service = "echo";
  return {
    file: join(dir, "out", "functions", service, "index.cjs"),
    zip: join(dir, "out", "functions", `${service}.zip`),
  };
}

const env = {
  ...process.env,
  AWS_REGION: "us-east-1",
  AWS_ACCESS_KEY_ID: "bench",
  AWS_SECRET_ACCESS_KEY: "bench",
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
  NITRIC_LIKE_SERVICE: "echo",
  NITRIC_LIKE_WEBSOCKETS: JSON.stringify({
    echo: { apiId: "bench", url: "wss://bench.invalid/live", endpoint: "http://127.0.0.1:9/live", events: ["message"] },
  }),
};

const trivial = join(work, "trivial.cjs");
writeFileSync(trivial, "exports.handler = async (event) => ({ statusCode: 200, body: event.body });\n");

/** Milliseconds from require() to ready, in a fresh process; the median of COLDS. */
const run = promisify(execFile);

async function node(script, what) {
  try {
    const { stdout } = await run(process.execPath, ["-e", script], { env, encoding: "utf8" });
    const figures = stdout.trim().split("\n").at(-1).split(" ").map(Number);
    return figures.length === 1 ? figures[0] : figures;
  } catch (error) {
    throw new Error(`${what} failed:\n${error.stderr ?? error.message}`);
  }
}

const EVENT = `(i) => ({ requestContext: { routeKey: "$default", eventType: "MESSAGE", connectionId: "BenchConnIdAAA=", apiId: "bench", stage: "live", connectedAt: Date.now() }, body: "message " + i, isBase64Encoded: false })`;

/**
 * In a fresh process: milliseconds from require() to ready, then for the first $default event
 * (what a cold function's first message waits for beyond init: first calls, first AWS request).
 * The medians of COLDS processes.
 */
async function coldInit(file) {
  const script = `const event = ${EVENT}; const t0 = performance.now(); const m = require(${JSON.stringify(file)}); Promise.resolve(m.handler.ready).then(async () => { const t1 = performance.now(); const r = await m.handler(event(0)); if (r.statusCode !== 200) throw new Error("failed event " + JSON.stringify(r)); console.log(t1 - t0, performance.now() - t1); process.exit(0); }).catch((e) => { console.error(e); process.exit(1); });`;
  const inits = [];
  const firsts = [];
  for (let i = 0; i < COLDS; i++) {
    const [init, first] = await node(script, `cold init of ${file}`);
    inits.push(init);
    firsts.push(first);
  }
  const mid = (list) => list.sort((a, b) => a - b)[Math.floor(list.length / 2)];
  return { init: mid(inits), first: mid(firsts) };
}

/** Microseconds per $default event through the handler, in a fresh process. */
async function warm(file) {
  const script = `
    const m = require(${JSON.stringify(file)});
    const event = ${EVENT};
    (async () => {
      await m.handler.ready;
      for (let i = 0; i < 200; i++) await m.handler(event(i));
      const t0 = performance.now();
      for (let i = 0; i < ${EVENTS}; i++) {
        const r = await m.handler(event(i));
        if (r.statusCode !== 200) throw new Error("failed event " + JSON.stringify(r));
      }
      console.log(((performance.now() - t0) * 1000) / ${EVENTS});
      process.exit(0);
    })().catch((e) => { console.error(e); process.exit(1); });`;
  return node(script, `warm run of ${file}`);
}

// A loopback Management API: PostToConnection answers 200 (the @nitric/sdk echo sends with it).
const management = createServer((req, res) => {
  req.resume();
  req.on("end", () => res.writeHead(200).end());
});
await new Promise((resolve) => management.listen(0, "127.0.0.1", resolve));
env.NITRIC_LIKE_WEBSOCKETS = env.NITRIC_LIKE_WEBSOCKETS.replace(
  "http://127.0.0.1:9",
  `http://127.0.0.1:${management.address().port}`,
);

try {
  // Each app with its target for cold init + first event beyond the trivial handler's, in ms.
  const apps = {
    "@nitric-like/sdk (echo-reply)": { ...build("echo-reply"), targetMs: 50 },
    "@nitric/sdk (echo-nitric)": { ...build("echo-nitric"), targetMs: 100 },
  };
  const baseCold = await coldInit(trivial);
  const baseWarm = await warm(trivial);
  console.log(
    `AWS runtime, ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${EVENTS} warm events, median of ${COLDS} cold inits`,
  );
  console.log(
    `baseline (trivial handler): cold init ${baseCold.init.toFixed(1)} ms, first event ${baseCold.first.toFixed(1)} ms, warm ${baseWarm.toFixed(1)} µs/event`,
  );
  let pass = true;
  for (const [name, app] of Object.entries(apps)) {
    const bytes = statSync(app.file).size;
    const zipBytes = statSync(app.zip).size;
    const cold = await coldInit(app.file);
    const w = await warm(app.file);
    const sizeOk = bytes <= 1024 * 1024;
    const beyond = cold.init + cold.first - (baseCold.init + baseCold.first);
    const coldOk = beyond <= app.targetMs;
    pass &&= sizeOk && coldOk;
    console.log(
      `${name}: bundle ${(bytes / 1024).toFixed(0)} KB (zip ${(zipBytes / 1024).toFixed(0)} KB) ${verdict(sizeOk)} ≤ 1 MB; ` +
        `cold init ${cold.init.toFixed(1)} ms + first event ${cold.first.toFixed(1)} ms = +${beyond.toFixed(1)} over baseline ${verdict(coldOk)} ≤ ${app.targetMs} ms; ` +
        `warm ${w.toFixed(1)} µs/event (${(w / baseWarm).toFixed(0)}× baseline)`,
    );
  }
  console.log(pass ? "targets: all met" : "targets: NOT all met");
} finally {
  management.close();
  rmSync(work, { recursive: true, force: true });
}
