#!/usr/bin/env node
// Why the AWS runtime does not ship the AWS SDK (issue 20): the same small function, once with
// our hand-written clients (providers/aws/src/aws/) and once with @aws-sdk/client-dynamodb and
// @aws-sdk/client-apigatewaymanagementapi, each bundled as the build bundles a function (esbuild,
// CJS, node20, minified). The SDK three ways: bundled; external (required from node_modules, as
// Lambda's Node runtime provides it); lazy (bundled, loaded on the first event). Measured side by
// side in the same run, in fresh processes:
//   - bundle size;
//   - cold init: require() of the bundle (wall and CPU time: the CPU figure holds on a busy machine);
//   - first event: one PutItem and one PostToConnection to loopback servers (what a cold
//     function's first $connect or message costs in AWS calls, SDK set-up included).
// Usage: node bench/aws-sdk-clients.mjs [--colds 9]
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";

const { values } = parseArgs({ options: { colds: { type: "string", default: "9" } } });
const COLDS = Number(values.colds);
const here = fileURLToPath(new URL(".", import.meta.url));
const aws = join(here, "..", "providers", "aws");
const modules = join(aws, "node_modules");
const { build } = await import(join(modules, "esbuild", "lib", "main.js"));
const work = mkdtempSync(join(tmpdir(), "nitric-like-bench-sdk-"));

const WORK = `
  await db.putItem({ TableName: "t", Item: { _p: { S: "k" }, _k: { S: "conn" }, _v: { S: "x".repeat(200) } } });
  await api.postToConnection("BenchConnIdAAA=", new TextEncoder().encode("hello"));
  return { statusCode: 200 };`;

const sources = {
  ours: `
    import { DynamoDbClient } from ${JSON.stringify(join(aws, "src", "aws", "dynamodb.ts"))};
    import { ManagementApiClient } from ${JSON.stringify(join(aws, "src", "aws", "management.ts"))};
    const db = new DynamoDbClient();
    const api = new ManagementApiClient(process.env.BENCH_MANAGEMENT);
    export const handler = async () => {${WORK}
    };`,
  sdk: `
    import { DynamoDBClient, PutItemCommand } from "@aws-sdk/client-dynamodb";
    import { ApiGatewayManagementApiClient, PostToConnectionCommand } from "@aws-sdk/client-apigatewaymanagementapi";
    const dynamo = new DynamoDBClient({});
    const management = new ApiGatewayManagementApiClient({ endpoint: process.env.BENCH_MANAGEMENT });
    const db = { putItem: (input) => dynamo.send(new PutItemCommand(input)) };
    const api = { postToConnection: (ConnectionId, Data) => management.send(new PostToConnectionCommand({ ConnectionId, Data })) };
    export const handler = async () => {${WORK}
    };`,
  sdkLazy: `
    let clients;
    async function load() {
      const [{ DynamoDBClient, PutItemCommand }, { ApiGatewayManagementApiClient, PostToConnectionCommand }] = await Promise.all([
        import("@aws-sdk/client-dynamodb"),
        import("@aws-sdk/client-apigatewaymanagementapi"),
      ]);
      const dynamo = new DynamoDBClient({});
      const management = new ApiGatewayManagementApiClient({ endpoint: process.env.BENCH_MANAGEMENT });
      return {
        db: { putItem: (input) => dynamo.send(new PutItemCommand(input)) },
        api: { postToConnection: (ConnectionId, Data) => management.send(new PostToConnectionCommand({ ConnectionId, Data })) },
      };
    }
    export const handler = async () => {
      const { db, api } = await (clients ??= load());${WORK}
    };`,
};

async function bundle(name, source, external) {
  const entry = join(work, `${name}.mjs`);
  const outfile = join(work, `${name}.cjs`);
  writeFileSync(entry, source);
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    minify: true,
    nodePaths: [modules],
    external: external ? ["@aws-sdk/*", "@smithy/*"] : [],
    logLevel: "error",
  });
  return outfile;
}

const run = promisify(execFile);
// Answers 200 to anything: PutItem gets `{}`, PostToConnection an empty body.
const server = createServer((req, res) => {
  req.resume();
  req.on("end", () => res.writeHead(200, { "content-type": "application/x-amz-json-1.0" }).end("{}"));
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const endpoint = `http://127.0.0.1:${server.address().port}`;
const env = {
  ...process.env,
  AWS_REGION: "us-east-1",
  AWS_ACCESS_KEY_ID: "bench",
  AWS_SECRET_ACCESS_KEY: "bench",
  AWS_SESSION_TOKEN: "bench",
  AWS_ENDPOINT_URL_DYNAMODB: endpoint,
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
  BENCH_MANAGEMENT: `${endpoint}/live`,
  // External mode: the SDK from node_modules, as Lambda's runtime has it.
  NODE_PATH: modules,
};

/** In a fresh process: ms for require(), then ms for the first event; medians of COLDS. */
async function cold(file) {
  const script = `const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
    const t0 = performance.now(); const c0 = cpu(); const m = require(${JSON.stringify(file)}); const t1 = performance.now(); const c1 = cpu();
    m.handler().then((r) => { if (r.statusCode !== 200) throw new Error("failed"); console.log(t1 - t0, performance.now() - t1, c1 - c0, cpu() - c1); process.exit(0); })
      .catch((e) => { console.error(e); process.exit(1); });`;
  const figures = [[], [], [], []];
  for (let i = 0; i < COLDS; i++) {
    const { stdout } = await run(process.execPath, ["-e", script], { env, encoding: "utf8" });
    const line = stdout.trim().split("\n").at(-1).split(" ").map(Number);
    for (const [j, n] of line.entries()) figures[j].push(n);
  }
  const mid = (list) => list.sort((a, b) => a - b)[Math.floor(list.length / 2)];
  const [init, first, initCpu, firstCpu] = figures.map(mid);
  return { init, first, initCpu, firstCpu };
}

try {
  const variants = {
    "hand-written clients (providers/aws/src/aws)": await bundle("ours", sources.ours, false),
    "SDK clients, bundled": await bundle("sdk", sources.sdk, false),
    "SDK clients, external (node_modules)": await bundle("sdk-external", sources.sdk, true),
    "SDK clients, bundled, loaded on first event": await bundle("sdk-lazy", sources.sdkLazy, false),
  };
  console.log(
    `AWS clients in a cold function, ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, median of ${COLDS} fresh processes`,
  );
  let base;
  for (const [name, file] of Object.entries(variants)) {
    const c = await cold(file);
    base ??= c;
    const extra = c.init + c.first - (base.init + base.first);
    console.log(
      `${name}: bundle ${(statSync(file).size / 1024).toFixed(0)} KB; cold init ${c.init.toFixed(1)} ms ` +
        `(CPU ${c.initCpu.toFixed(1)} ms); first event ${c.first.toFixed(1)} ms (CPU ${c.firstCpu.toFixed(1)} ms); ` +
        `init + first event ${(c.init + c.first).toFixed(1)} ms` +
        (base === c ? "" : ` (+${extra.toFixed(1)} ms)`),
    );
  }
} finally {
  server.close();
  rmSync(work, { recursive: true, force: true });
}
