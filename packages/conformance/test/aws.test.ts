// `nitric-like build --provider aws` and the built functions: the template's wiring and grants,
// the zips, a refused build that writes nothing, and the Lambda runtime fed API Gateway events of
// the shapes AWS documents (requestContext with routeKey, connectionId, apiId, stage, connectedAt;
// multi-valued headers and query strings; base64 bodies), in the emulator over dynalite.

import { execFileSync, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  symlinkSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer, request } from "node:http";
import { createConnection } from "node:net";
import { join } from "node:path";
import { inflateRawSync } from "node:zlib";
import {
  type Emulator,
  type EmulatorOptions,
  type RunningDynalite,
  signRequest,
  startDynalite,
  startEmulator,
} from "@nitric-like/provider-aws/emulator";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import {
  App,
  CLI,
  cleanTemp,
  connect,
  copyProject,
  dashboardFetch,
  EXAMPLES,
  FIXTURES,
  runCli,
  sleep,
  startApp,
  writeProject,
} from "../src/harness.js";

afterAll(cleanTemp);

type Resource = { Type: string; Properties: Record<string, unknown>; DependsOn?: string[] };
type Template = {
  Resources: Record<string, Resource>;
  Outputs: Record<string, { Description: string; Value: unknown }>;
};

/** The files of a zip archive (stored or deflated entries), read from its local headers. */
/** A request to the emulator's Invoke (`lambda`) or Management (`execute-api`) API, signed as its functions sign theirs. */
function signedFetch(
  emulator: Emulator,
  url: string | URL,
  service: "lambda" | "execute-api",
  init: { method?: string; body?: string; secretAccessKey?: string } = {},
): Promise<Response> {
  const method = init.method ?? "POST";
  const body = init.body ?? "";
  const headers = signRequest({
    method,
    url: new URL(url),
    body,
    headers: {},
    service,
    region: "us-east-1",
    ...emulator.credentials,
    ...(init.secretAccessKey ? { secretAccessKey: init.secretAccessKey } : {}),
  });
  return fetch(url, { method, headers, ...(method === "GET" ? {} : { body }) });
}

function unzip(archive: Buffer): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  let at = 0;
  while (archive.readUInt32LE(at) === 0x04034b50) {
    const method = archive.readUInt16LE(at + 8);
    const size = archive.readUInt32LE(at + 18);
    const nameLength = archive.readUInt16LE(at + 26);
    const extra = archive.readUInt16LE(at + 28);
    const name = archive.subarray(at + 30, at + 30 + nameLength).toString("utf8");
    const start = at + 30 + nameLength + extra;
    const data = archive.subarray(start, start + size);
    files.set(name, method === 8 ? inflateRawSync(data) : Buffer.from(data));
    at = start + size;
  }
  return files;
}

function ofType(t: Template, type: string): [string, Resource][] {
  return Object.entries(t.Resources).filter(([, r]) => r.Type === type);
}

/** Creates an empty file at `path`, and gives the path. */
function writeAndReturn(path: string): string {
  writeFileSync(path, "");
  return path;
}

async function build(
  project: string,
  args: string[] = [],
): Promise<{ out: string; template: Template; stderr: string }> {
  const out = join(project, "out");
  const { code, stderr } = await runCli(["build", project, "--provider", "aws", "--out", out, "--plain", ...args]);
  expect(code, stderr).toBe(0);
  return { out, template: JSON.parse(readFileSync(join(out, "template.json"), "utf8")) as Template, stderr };
}

describe("nitric-like build --provider aws", () => {
  it("writes examples/chat as one function whose zip holds the bundle, routed from every event", async () => {
    const { out, template, stderr } = await build(copyProject(join(EXAMPLES, "chat")));
    expect(stderr).toMatch(/bundling service "chat" \(1\/1\)/);
    const bundle = readFileSync(join(out, "functions", "chat", "index.cjs"));
    const files = unzip(readFileSync(join(out, "functions", "chat.zip")));
    expect([...files.keys()]).toEqual(["index.cjs", "index.cjs.map"]);
    expect(files.get("index.cjs")?.equals(bundle)).toBe(true);
    // The source map names the project's files as in the project, without their text.
    const map = JSON.parse(files.get("index.cjs.map")?.toString("utf8") ?? "{}") as {
      sources: string[];
      sourcesContent?: unknown;
    };
    expect(map.sources).toContain("services/chat.ts");
    expect(map.sourcesContent).toBeUndefined();
    expect(bundle.toString("utf8").trimEnd().endsWith("//# sourceMappingURL=index.cjs.map")).toBe(true);

    const [[apiId, api]] = ofType(template, "AWS::ApiGatewayV2::Api") as [[string, Resource]];
    expect(api.Properties.ProtocolType).toBe("WEBSOCKET");
    const routes = ofType(template, "AWS::ApiGatewayV2::Route").map(([, r]) => r.Properties.RouteKey);
    expect(routes.sort()).toEqual(["$connect", "$default", "$disconnect"]);
    const [[fnId, fn]] = ofType(template, "AWS::Lambda::Function") as [[string, Resource]];
    expect(fn.Properties.Code).toMatchObject({
      S3Bucket: { Ref: "ArtifactBucket" },
      S3Key: expect.stringMatching(/^nitric-like\/chat\/chat-[0-9a-f]{16}\.zip$/),
    });
    for (const [, integration] of ofType(template, "AWS::ApiGatewayV2::Integration")) {
      expect(integration.Properties.IntegrationType).toBe("AWS_PROXY");
      expect(JSON.stringify(integration.Properties.IntegrationUri)).toContain(`\${${fnId}.Arn}`);
    }
    const permissions = ofType(template, "AWS::Lambda::Permission");
    expect(permissions).toHaveLength(1);
    expect(permissions[0]?.[1].Properties).toMatchObject({
      Action: "lambda:InvokeFunction",
      Principal: "apigateway.amazonaws.com",
      FunctionName: { "Fn::GetAtt": [fnId, "Arn"] },
    });
    expect(Object.values(template.Outputs)).toEqual([
      {
        Description: "websocket socket",
        Value: { "Fn::Sub": `wss://\${${apiId}}.execute-api.\${AWS::Region}.\${AWS::URLSuffix}/live` },
      },
    ]);
  }, 30000);

  it("carries the handler timeout into the functions and says which other limits AWS applies its own way", async () => {
    const project = copyProject(join(EXAMPLES, "chat"));
    appendFileSync(
      join(project, "nitric-like.yaml"),
      "limits:\n  handlerTimeout: 20s\n  maxMessageBytes: 256KB\n  messagesPerSecond: 10\n",
    );
    const { template, stderr } = await build(project);
    const [[, fn]] = ofType(template, "AWS::Lambda::Function") as [[string, Resource]];
    expect(fn.Properties.Timeout).toBe(30);
    expect(fn.Properties.Environment).toMatchObject({ Variables: { NITRIC_LIKE_HANDLER_TIMEOUT_MS: "20000" } });
    expect(stderr).toContain(
      "limits.maxMessageBytes is 256 KB, but API Gateway fixes it at 128 KB: on AWS that applies",
    );
    expect(stderr).toContain("limits.messagesPerSecond is enforced by the local provider only");
    expect(stderr).not.toContain("handlerTimeout is");

    // Over what API Gateway waits for a function (29 s): kept a second under it, and said so.
    const long = copyProject(join(EXAMPLES, "chat"));
    appendFileSync(join(long, "nitric-like.yaml"), "limits:\n  handlerTimeout: 45s\n");
    const capped = await build(long);
    const [[, cappedFn]] = ofType(capped.template, "AWS::Lambda::Function") as [[string, Resource]];
    expect(cappedFn.Properties.Environment).toMatchObject({ Variables: { NITRIC_LIKE_HANDLER_TIMEOUT_MS: "28000" } });
    expect(cappedFn.Properties.Timeout).toBe(33);
    expect(capped.stderr).toContain(
      "limits.handlerTimeout is 45 s, but API Gateway waits at most 29 s for a function's answer: on AWS handlers time out at 28 s; set it to 28s or less to run locally as on AWS",
    );

    // Without limits: the runtime's default handler timeout, the default function timeout, no notes.
    const plain = await build(copyProject(join(EXAMPLES, "chat")));
    const [[, plainFn]] = ofType(plain.template, "AWS::Lambda::Function") as [[string, Resource]];
    expect(plainFn.Properties.Timeout).toBe(30);
    expect(JSON.stringify(plainFn.Properties.Environment)).not.toContain("NITRIC_LIKE_HANDLER_TIMEOUT_MS");
    expect(plain.stderr).not.toContain("API Gateway");
  }, 40000);

  it("takes the handler timeout of the environment built with --env over the file's, and says which of its limits AWS applies its own way", async () => {
    const project = copyProject(join(EXAMPLES, "chat"));
    appendFileSync(
      join(project, "nitric-like.yaml"),
      [
        "limits:\n  handlerTimeout: 20s",
        "environments:",
        "  prod:\n    limits: { handlerTimeout: 12s, idleTimeout: 1m }",
        "    websockets: { socket: { limits: { maxConnections: 10 } } }",
        "  slow:\n    limits: { handlerTimeout: 45s }\n",
      ].join("\n"),
    );
    const timeoutOf = (template: Template) => {
      const [[, fn]] = ofType(template, "AWS::Lambda::Function") as [[string, Resource]];
      return [fn.Properties.Timeout, JSON.stringify(fn.Properties.Environment)];
    };
    const prod = await build(project, ["--env", "prod"]);
    expect(timeoutOf(prod.template)).toEqual([30, expect.stringContaining('"NITRIC_LIKE_HANDLER_TIMEOUT_MS":"12000"')]);
    expect(prod.stderr).toContain(
      "environments.prod.limits.idleTimeout is 1 min, but API Gateway fixes it at 10 min: on AWS that applies",
    );
    expect(prod.stderr).toContain(
      "environments.prod.websockets.socket.limits.maxConnections is enforced by the local provider only",
    );
    const slow = await build(project, ["--env", "slow"]);
    expect(timeoutOf(slow.template)).toEqual([33, expect.stringContaining('"NITRIC_LIKE_HANDLER_TIMEOUT_MS":"28000"')]);
    expect(slow.stderr).toContain(
      "environments.slow.limits.handlerTimeout is 45 s, but API Gateway waits at most 29 s for a function's answer",
    );
    // Without --env: the file's own.
    const own = await build(project);
    expect(timeoutOf(own.template)).toEqual([30, expect.stringContaining('"NITRIC_LIKE_HANDLER_TIMEOUT_MS":"20000"')]);
    expect(own.stderr).not.toContain("environments.");

    // run --provider aws takes its --env's (local by default), as run does.
    appendFileSync(join(project, "nitric-like.yaml"), "  local:\n    limits: { handlerTimeout: 7s }\n");
    const emulated = () =>
      JSON.parse(readFileSync(join(project, ".nitric-like", "aws-run", "template.json"), "utf8")) as Template;
    for (const [args, ms] of [
      [[], "7000"],
      [["--env", "prod"], "12000"],
    ] as const) {
      const app = await startApp(project, ["--provider", "aws", ...args]);
      try {
        expect(timeoutOf(emulated())[1]).toContain(`"NITRIC_LIKE_HANDLER_TIMEOUT_MS":"${ms}"`);
      } finally {
        await app.stop();
      }
    }
  }, 90000);

  it("puts the variables of --env-from into every function's environment, names only said, and refuses what Lambda would", async () => {
    const project = copyProject(join(EXAMPLES, "chat"));
    const file = (name: string, text: string) => {
      const path = join(project, name);
      writeFileSync(path, text);
      return path;
    };
    const base = file("base.env", "API_URL=https://api.example.test/v1\nFEATURE=off\n");
    const prod = file("prod.env", 'FEATURE=on\n# a comment\nQUOTED="two words"\n');
    const { template, stderr } = await build(project, ["--env-from", base, "--env-from", prod]);
    const [[, fn]] = ofType(template, "AWS::Lambda::Function") as [[string, Resource]];
    expect(fn.Properties.Environment).toMatchObject({
      Variables: {
        API_URL: "https://api.example.test/v1",
        FEATURE: "on",
        QUOTED: "two words",
        NITRIC_LIKE_SERVICE: "chat",
      },
    });
    expect(stderr).toContain(
      `env: ${base}, ${prod}: 3 variables (API_URL, FEATURE, QUOTED) in every function's environment`,
    );
    expect(stderr).not.toContain("api.example.test");

    // Names Lambda refuses, all at once, before a function is built; a missing file; too much.
    const bad = file("bad.env", "1ST=x\nX=y\nAWS_REGION=z\nNITRIC_LIKE_SERVICE=w\nfine_name=ok\n");
    const refused = await runCli(["build", project, "--out", join(project, "bad"), "--env-from", bad, "--plain"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(
      '--env-from: "1ST" cannot be a Lambda environment variable: a name starts with a letter',
    );
    expect(refused.stderr).toContain('--env-from: "X" cannot be a Lambda environment variable');
    expect(refused.stderr).toContain(
      `--env-from: "AWS_REGION" is set by Lambda's runtime itself, which a function may not set; rename it`,
    );
    expect(refused.stderr).toContain(
      '--env-from: "NITRIC_LIKE_SERVICE" is a name nitric-like and Nitric keep for themselves',
    );
    expect(refused.stderr).toContain(
      "4 variables of --env-from cannot go into a function's environment; nothing was built",
    );
    expect(refused.stderr).not.toContain('"fine_name"');
    expect(existsSync(join(project, "bad", "template.json"))).toBe(false);
    const missing = await runCli(["build", project, "--env-from", join(project, "nope.env"), "--plain"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`error: build: --env-from ${join(project, "nope.env")}: no such file`);
    expect(missing.stderr).not.toContain("bundling");
    const big = file("big.env", `BIG=${"x".repeat(4000)}\n`);
    const over = await runCli(["build", project, "--out", join(project, "big"), "--env-from", big, "--plain"]);
    expect(over.code).toBe(1);
    expect(over.stderr).toMatch(
      /--env-from: the function of service "chat" would have about \d+ bytes of environment variables \(4003 of them from --env-from; nitric-like's own: NITRIC_LIKE_\w+ \d+[^)]*\), over Lambda's 4096 for a function/,
    );
  }, 60000);

  it("grants each service exactly its .allow() calls, on its tables and its sockets only", async () => {
    const { template } = await build(copyProject(join(FIXTURES, "split")));
    const roles = Object.fromEntries(ofType(template, "AWS::IAM::Role"));
    const statements = (role: string) =>
      (
        (
          (roles[role]?.Properties.Policies ?? []) as {
            PolicyDocument: { Statement: { Action: unknown; Resource: unknown }[] };
          }[]
        )[0]?.PolicyDocument.Statement ?? []
      ).map((s) => ({ Action: s.Action, Resource: s.Resource }));
    expect(statements("DoormanRole")).toContainEqual({
      Action: ["dynamodb:DeleteItem", "dynamodb:PutItem"],
      Resource: { "Fn::GetAtt": ["PresentKvTable", "Arn"] },
    });
    expect(statements("SpeakerRole")).toContainEqual({
      Action: ["dynamodb:GetItem", "dynamodb:Query"],
      Resource: { "Fn::GetAtt": ["PresentKvTable", "Arn"] },
    });
    // Neither may write what the other may: no PutItem for the speaker on the kv table.
    expect(JSON.stringify(statements("SpeakerRole"))).not.toContain(
      '"dynamodb:PutItem"],"Resource":{"Fn::GetAtt":["PresentKvTable"',
    );
    const manage = statements("SpeakerRole").find((s) => s.Action === "execute-api:ManageConnections");
    expect(JSON.stringify(manage?.Resource)).toContain(`\${HallApi}/live/*/@connections/*`);
    // Two services handle events of one socket: API Gateway may invoke EACH of them.
    const targets = ofType(template, "AWS::Lambda::Permission").map(
      ([, p]) => (p.Properties.FunctionName as { "Fn::GetAtt": string[] })["Fn::GetAtt"][0],
    );
    expect(targets.sort()).toEqual(["DoormanFunction", "SpeakerFunction"]);
  }, 30000);

  it("bundles a service that awaits at its top level as an ES module, index.mjs, which run --provider aws serves; without the await it is CommonJS again", async () => {
    const project = copyProject(join(EXAMPLES, "chat"));
    const service = join(project, "services", "chat.ts");
    const code = (greeting: string) =>
      [
        'import { kv, websocket } from "@nitric-like/sdk";',
        'const connections = kv("connections").allow("get", "set", "delete");',
        'const socket = websocket("socket");',
        `const greeting = ${greeting};`,
        "socket.on('connect', async (ctx) => { await connections.set(ctx.connectionId, {}); });",
        "socket.on('disconnect', async (ctx) => { await connections.delete(ctx.connectionId); });",
        "socket.on('message', (ctx) => { ctx.reply(greeting + ': ' + ctx.text()); });",
        "",
      ].join("\n");
    writeFileSync(service, code('await new Promise((resolve) => setTimeout(() => resolve("awaited"), 20))'));
    const { out, stderr } = await build(project);
    expect(stderr).toMatch(/chat: index\.mjs \d+ KB \(an ES module: the service awaits at its top level\)/);
    const bundle = readFileSync(join(out, "functions", "chat", "index.mjs"));
    expect(existsSync(join(out, "functions", "chat", "index.cjs"))).toBe(false);
    const files = unzip(readFileSync(join(out, "functions", "chat.zip")));
    expect([...files.keys()]).toEqual(["index.mjs", "index.mjs.map"]);
    expect(files.get("index.mjs")?.equals(bundle)).toBe(true);

    const app = await startApp(project, ["--provider", "aws"]);
    try {
      const client = await connect(app.url("socket"));
      client.ws.send("ping");
      expect((await client.next()).text).toBe("awaited: ping");
      client.close();
      // Without the await the service is CommonJS again, and its old bundle is gone.
      writeFileSync(service, code('"plain"'));
      await app.waitFor(/service "chat" restarted/, 30000);
      const functionDir = join(project, ".nitric-like", "aws-run", "functions", "chat");
      expect(existsSync(join(functionDir, "index.cjs"))).toBe(true);
      expect(existsSync(join(functionDir, "index.mjs"))).toBe(false);
      const again = await connect(app.url("socket"));
      again.ws.send("ping");
      expect((await again.next()).text).toBe("plain: ping");
      again.close();
    } finally {
      expect((await app.stop()).code).toBe(0);
    }
  }, 90000);

  it("gives a function a new key when only its source's lines move (its source map changes), and the same one for the same sources", async () => {
    const project = copyProject(join(EXAMPLES, "chat"));
    const keyOf = (template: Template) => {
      const [[, fn]] = ofType(template, "AWS::Lambda::Function") as [[string, Resource]];
      return (fn.Properties.Code as { S3Key: string }).S3Key;
    };
    const first = keyOf((await build(project)).template);
    expect(keyOf((await build(project)).template)).toBe(first);
    const service = join(project, "services", "chat.ts");
    const before = readFileSync(join(project, "out", "functions", "chat", "index.cjs"));
    // A comment line: the same minified code, every line below it one further down.
    writeFileSync(service, `// moved down a line\n${readFileSync(service, "utf8")}`);
    const { out, template } = await build(project);
    expect(readFileSync(join(out, "functions", "chat", "index.cjs")).equals(before)).toBe(true);
    expect(keyOf(template)).not.toBe(first);
  }, 60000);

  it("refuses an app with a missing handler and writes nothing", async () => {
    const project = copyProject(join(FIXTURES, "bad-spec"));
    const out = join(project, "out");
    const { code, stderr } = await runCli(["build", project, "--provider", "aws", "--out", out, "--plain"]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/missing \w+ handler for websocket/);
    expect(stderr).toMatch(/nothing was built/);
    expect(existsSync(out)).toBe(false);
  }, 30000);

  it("warns of a bundled package that loads native code, naming it and what imports it, and not of one that does not", async () => {
    const project = writeProject({
      "nitric-like.yaml": "name: addon\nservices:\n  - match: services/*.ts\n",
      "services/addon.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'import { hash } from "fast-hash";',
        'import { pad } from "plain-pad";',
        'const socket = websocket("socket");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", (ctx) => pad(hash(ctx.text())));',
      ].join("\n"),
      // As bcrypt or lmdb: an addon built by node-gyp, found by its loader beside the package.
      "node_modules/fast-hash/package.json": JSON.stringify({
        name: "fast-hash",
        main: "index.js",
        gypfile: true,
        dependencies: { "node-gyp-build": "^4" },
      }),
      "node_modules/fast-hash/binding.gyp": "{}",
      "node_modules/fast-hash/index.js": "exports.hash = (s) => String(s.length);",
      "node_modules/plain-pad/package.json": JSON.stringify({ name: "plain-pad", main: "index.js" }),
      "node_modules/plain-pad/index.js": "exports.pad = (s) => s.padStart(4);",
    });
    const out = join(project, "out");
    const { code, stderr } = await runCli(["build", project, "--provider", "aws", "--out", out, "--plain"]);
    expect(code, stderr).toBe(0);
    expect(stderr).toContain(
      'warning: service "addon": its function bundles "fast-hash" (imported by services/addon.ts), a package that loads native code (a .node addon), which a function\'s bundle cannot carry: on AWS it fails as it loads, unless the package falls back to JavaScript',
    );
    expect(stderr).not.toContain('"plain-pad"');
  }, 30000);

  it("names a package outside the project (a pnpm store's, a linked workspace's) by the package and its file, never by a path leaving the project", async () => {
    // pnpm's store elsewhere on the machine: level and the addon package it depends on, side by side.
    const store = writeProject({
      "node_modules/.pnpm/level@8.0.1/node_modules/level/package.json": JSON.stringify({
        name: "level",
        main: "lib/index.js",
      }),
      "node_modules/.pnpm/level@8.0.1/node_modules/level/lib/index.js": [
        'const fs = require("fs");',
        'const path = require("path");',
        'const { open } = require("classic-level");',
        'exports.open = () => open() + fs.readFileSync(path.join(__dirname, "../defaults.json"), "utf8");',
      ].join("\n"),
      "node_modules/.pnpm/level@8.0.1/node_modules/level/defaults.json": "{}",
      "node_modules/.pnpm/level@8.0.1/node_modules/classic-level/package.json": JSON.stringify({
        name: "classic-level",
        main: "index.js",
        dependencies: { "node-gyp-build": "^4" },
      }),
      "node_modules/.pnpm/level@8.0.1/node_modules/classic-level/binding.gyp": "{}",
      "node_modules/.pnpm/level@8.0.1/node_modules/classic-level/index.js": "exports.open = () => 'db';",
      // A workspace's package, linked: esbuild warns of its code as of the project's.
      "libs/util/package.json": JSON.stringify({ name: "@acme/util", main: "src/index.js" }),
      "libs/util/src/index.js": "exports.settings = { mode: 'a', mode: 'b' };",
    });
    const project = writeProject({
      "nitric-like.yaml": "name: linked\nservices:\n  - match: services/*.ts\n",
      "services/db.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'import { open } from "level";',
        'import { settings } from "@acme/util";',
        'const socket = websocket("socket");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", (ctx) => ctx.reply(open() + settings.mode));',
      ].join("\n"),
      "node_modules/@acme/.keep": "",
    });
    symlinkSync(join(store, "node_modules/.pnpm/level@8.0.1/node_modules/level"), join(project, "node_modules/level"));
    symlinkSync(join(store, "libs/util"), join(project, "node_modules/@acme/util"));
    const out = join(project, "out");
    const { code, stderr } = await runCli(["build", project, "--provider", "aws", "--out", out, "--plain"]);
    expect(code, stderr).toBe(0);
    expect(stderr).toContain('its function bundles "classic-level" (imported by level/lib/index.js), a package');
    expect(stderr).toContain(
      'warning: service "db": package "level" (level/lib/index.js) reads level/defaults.json from beside itself ("../defaults.json")',
    );
    expect(stderr).toContain(
      'warning: service "db": esbuild: @acme/util/src/index.js:1:33: Duplicate key "mode" in object literal',
    );
    const said = stderr.split("\n").filter((line) => line.includes('service "db"'));
    expect(said.length).toBeGreaterThan(1);
    for (const line of said) expect(line).not.toMatch(/\.\.\/\.\.|\.pnpm|nitric-like-test-/);
  }, 30000);

  it("copies the files bundled packages read from beside themselves into the function and its zip, and they run", async () => {
    const project = writeProject({
      "nitric-like.yaml": "name: beside\nservices:\n  - match: services/*.ts\n",
      "services/chat.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'import { greet } from "greetings";',
        'import { farewell } from "esm-greet";',
        'import { shared } from "far-reader";',
        'const socket = websocket("socket");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", (ctx) => ctx.reply(ctx.text() === "far" ? shared() : `${greet(ctx.text())} / ${farewell()}`));',
      ].join("\n"),
      // CommonJS, as most packages that ship data: read as it loads, and as it runs.
      "node_modules/greetings/package.json": JSON.stringify({ name: "greetings", main: "lib/index.js" }),
      "node_modules/greetings/lib/index.js": [
        'const fs = require("fs");',
        'const path = require("path");',
        'const data = JSON.parse(fs.readFileSync(path.join(__dirname, "data.json"), "utf8"));',
        'exports.greet = (name) => `${data.hello}, ${name}${fs.readFileSync(`${__dirname}/words/end.txt`, "utf8")}`;',
      ].join("\n"),
      "node_modules/greetings/lib/data.json": '{"hello":"bonjour"}',
      "node_modules/greetings/lib/words/end.txt": "!",
      // An ES module reading relative to import.meta.url.
      "node_modules/esm-greet/package.json": JSON.stringify({ name: "esm-greet", type: "module", main: "index.js" }),
      "node_modules/esm-greet/index.js": [
        'import { readFileSync } from "node:fs";',
        'export const farewell = () => readFileSync(new URL("./farewell.txt", import.meta.url), "utf8").trim();',
      ].join("\n"),
      "node_modules/esm-greet/farewell.txt": "au revoir\n",
      // A read outside its own folder: once bundled it would leave the function's folder.
      "node_modules/far-reader/package.json": JSON.stringify({ name: "far-reader", main: "lib/index.js" }),
      "node_modules/far-reader/lib/index.js": [
        'const fs = require("fs");',
        'const path = require("path");',
        'exports.shared = () => fs.readFileSync(path.join(__dirname, "../shared.json"), "utf8");',
        'exports.config = () => fs.readFileSync(path.join(__dirname, ".env"), "utf8");',
      ].join("\n"),
      "node_modules/far-reader/shared.json": "{}",
      // Never copied: its values would go to S3 in the zip.
      "node_modules/far-reader/lib/.env": "TOKEN=abc",
    });
    const { out, stderr } = await build(project);
    expect(stderr).toContain(
      '  chat: data.json 19 bytes copied into the function: package "greetings" reads it from beside itself',
    );
    expect(stderr).toContain('  chat: words/end.txt 1 bytes copied into the function: package "greetings"');
    expect(stderr).toContain('  chat: farewell.txt 10 bytes copied into the function: package "esm-greet"');
    expect(stderr).toContain(
      'warning: service "chat": package "far-reader" (node_modules/far-reader/lib/index.js) reads node_modules/far-reader/shared.json from beside itself ("../shared.json"), a path that leaves the function\'s folder once bundled: on AWS it fails with ENOENT',
    );
    expect(stderr).toContain(
      'warning: service "chat": package "far-reader" (node_modules/far-reader/lib/index.js) reads node_modules/far-reader/lib/.env from beside itself: it is not copied into the function',
    );
    const files = unzip(readFileSync(join(out, "functions", "chat.zip")));
    expect([...files.keys()].sort()).toEqual([
      "data.json",
      "farewell.txt",
      "index.cjs",
      "index.cjs.map",
      "words/end.txt",
    ]);
    expect(files.get("data.json")?.toString()).toBe('{"hello":"bonjour"}');
    expect(readFileSync(join(out, "functions", "chat", "words", "end.txt"), "utf8")).toBe("!");

    // In the emulator, the function runs from its folder as Lambda runs from /var/task.
    const app = await startApp(project, ["--provider", "aws"]);
    try {
      const client = await connect(app.url("socket"));
      client.ws.send("ann");
      expect((await client.next()).text).toBe("bonjour, ann! / au revoir");
      client.close();
    } finally {
      expect((await app.stop()).code).toBe(0);
    }
  }, 90000);

  it("deploys a service again under run --provider aws when a data file the build copied into its function changes, as when its code does", async () => {
    const project = writeProject({
      "nitric-like.yaml": "name: data\nservices:\n  - match: services/*.ts\n",
      "services/chat.ts": [
        'import { readFileSync } from "node:fs";',
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("socket");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'const greeting = () => readFileSync(new URL("./greeting.txt", import.meta.url), "utf8").trim();',
        'socket.on("message", (ctx) => ctx.reply(`${greeting()}, ${ctx.text()}`));',
      ].join("\n"),
      "services/greeting.txt": "hello\n",
    });
    const app = await startApp(project, ["--provider", "aws"]);
    try {
      const client = await connect(app.url("socket"));
      client.ws.send("ann");
      expect((await client.next()).text).toBe("hello, ann");
      client.close();
      writeFileSync(join(project, "services", "greeting.txt"), "bonjour\n");
      await app.waitFor(/services\/greeting\.txt changed: restarting service "chat"/, 30000);
      await app.waitFor(/service "chat" restarted/, 30000);
      const again = await connect(app.url("socket"));
      again.ws.send("ann");
      expect((await again.next()).text).toBe("bonjour, ann");
      again.close();
    } finally {
      expect((await app.stop()).code).toBe(0);
    }
  }, 90000);

  it("takes a copied data file deleted out of the function under run --provider aws, and copies a file added to a data folder it copies whole", async () => {
    const project = writeProject({
      "nitric-like.yaml": "name: data\nservices:\n  - match: services/*.ts\n",
      "services/chat.ts": [
        'import { existsSync, readdirSync, readFileSync } from "node:fs";',
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("socket");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'const greeting = new URL("./greeting.txt", import.meta.url);',
        'const names = new URL("./names", import.meta.url);',
        'socket.on("message", (ctx) => ctx.reply(`${existsSync(greeting) ? readFileSync(greeting, "utf8").trim() : "none"}: ${readdirSync(names).sort().join(",")}`));',
      ].join("\n"),
      "services/greeting.txt": "hello\n",
      "services/names/ann.txt": "ann\n",
    });
    const app = await startApp(project, ["--provider", "aws"]);
    const reply = async () => {
      const client = await connect(app.url("socket"));
      try {
        client.ws.send("hi");
        return (await client.next()).text;
      } finally {
        client.close();
      }
    };
    try {
      expect(await reply()).toBe("hello: ann.txt");
      // A file added to the folder: the function's copy of the folder gets it.
      writeFileSync(join(project, "services", "names", "bob.txt"), "bob\n");
      await app.waitFor(/services\/names\/bob\.txt is new: restarting service "chat"/, 30000);
      await app.waitFor(/service "chat" restarted/, 30000);
      expect(await reply()).toBe("hello: ann.txt,bob.txt");
      // The file deleted: the function no longer holds the copy it was given.
      rmSync(join(project, "services", "greeting.txt"));
      await app.waitFor(/services\/greeting\.txt is gone: restarting service "chat"/, 30000);
      await app.waitFor(/service "chat" restarted[\s\S]*service "chat" restarted/, 30000);
      expect(await reply()).toBe("none: ann.txt,bob.txt");
    } finally {
      expect((await app.stop()).code).toBe(0);
    }
  }, 90000);

  it("copies a data file the service's code names once it is made under run --provider aws, and again when it is edited or made anew", async () => {
    const project = writeProject({
      "nitric-like.yaml": "name: data\nservices:\n  - match: services/*.ts\n",
      "services/chat.ts": [
        'import { existsSync, readFileSync } from "node:fs";',
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("socket");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'const file = new URL("./greeting.txt", import.meta.url);',
        'const greeting = () => (existsSync(file) ? readFileSync(file, "utf8").trim() : "none");',
        'socket.on("message", (ctx) => ctx.reply(`${greeting()}, ${ctx.text()}`));',
      ].join("\n"),
    });
    const app = await startApp(project, ["--provider", "aws"]);
    const reply = async () => {
      const client = await connect(app.url("socket"));
      try {
        client.ws.send("ann");
        return (await client.next()).text;
      } finally {
        client.close();
      }
    };
    const greeting = join(project, "services", "greeting.txt");
    const restarts = (n: number) => new RegExp(`(?:service "chat" restarted[\\s\\S]*){${n}}`);
    try {
      expect(await reply()).toBe("none, ann");
      // Not there when run started: made now, the restart's build copies it.
      writeFileSync(greeting, "hello\n");
      await app.waitFor(/services\/greeting\.txt is new: restarting service "chat"/, 30000);
      await app.waitFor(restarts(1), 30000);
      expect(await reply()).toBe("hello, ann");
      writeFileSync(greeting, "bonjour\n");
      await app.waitFor(/services\/greeting\.txt changed: restarting service "chat"/, 30000);
      await app.waitFor(restarts(2), 30000);
      expect(await reply()).toBe("bonjour, ann");
      // Deleted, then made again: waited for again.
      rmSync(greeting);
      await app.waitFor(/services\/greeting\.txt is gone: restarting service "chat"/, 30000);
      await app.waitFor(restarts(3), 30000);
      expect(await reply()).toBe("none, ann");
      writeFileSync(greeting, "hola\n");
      await app.waitFor(/services\/greeting\.txt is new[\s\S]*services\/greeting\.txt is new/, 30000);
      await app.waitFor(restarts(4), 30000);
      expect(await reply()).toBe("hola, ann");
    } finally {
      expect((await app.stop()).code).toBe(0);
    }
  }, 120000);

  it("refuses at build a function over Lambda's 250 MB unzipped, naming its size, what made it big and the fix", async () => {
    const project = writeProject({
      "nitric-like.yaml": "name: huge\nservices:\n  - match: services/*.ts\n",
      "services/chat.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'import { lookup } from "geo-data";',
        'const socket = websocket("socket");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", (ctx) => ctx.reply(lookup(ctx.text())));',
      ].join("\n"),
      "node_modules/geo-data/package.json": JSON.stringify({ name: "geo-data", main: "index.js" }),
      "node_modules/geo-data/index.js": [
        'const fs = require("fs");',
        'const path = require("path");',
        'exports.lookup = (ip) => String(fs.statSync(path.join(__dirname, "cities.mmdb")).size + ip.length);',
      ].join("\n"),
    });
    // A real file of 251 MB (sparse: written in no time).
    truncateSync(writeAndReturn(join(project, "node_modules", "geo-data", "cities.mmdb")), 251 * 1024 * 1024);
    const out = join(project, "out");
    const { code, stderr } = await runCli(["build", project, "--provider", "aws", "--out", out, "--plain"]);
    expect(code).toBe(1);
    expect(stderr).toMatch(
      /error: service "chat": its function would be 251\.\d MB unzipped \(index\.cjs \d+ KB, index\.cjs\.map \d+ KB, cities\.mmdb 251\.0 MB\), over Lambda's 250\.0 MB for a function's code, which it would refuse mid-deploy; the largest parts: cities\.mmdb \(copied: package "geo-data" reads it from beside itself\) 251\.0 MB, @nitric-like\/[a-z-]+ \(bundled\) \d+ KB, /,
    );
    expect(stderr).toContain(
      "drop or replace the largest packages, keep large data out of the function (a kv store, or fetched at run time), or split the service so each function carries less; nothing was deployed",
    );
    expect(existsSync(join(out, "functions", "chat.zip"))).toBe(false);
    expect(existsSync(join(out, "functions", "chat", "cities.mmdb"))).toBe(false);
  }, 60000);

  it("leaves the out folder as the last build left it when it refuses a function midway (over 250 MB, over 4 KB of variables)", async () => {
    // Two services: "alpha" is bundled (and was written) before "beta" is refused.
    const socketOf = (name: string, reply: string) =>
      [
        'import { websocket } from "@nitric-like/sdk";',
        reply.includes("lookup") ? 'import { lookup } from "geo-data";' : "",
        `const socket = websocket("${name}");`,
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        `socket.on("message", (ctx) => ctx.reply(${reply}));`,
      ].join("\n");
    const project = writeProject({
      "nitric-like.yaml": "name: halfway\nservices:\n  - match: services/*.ts\n",
      "services/alpha.ts": socketOf("first", "ctx.text()"),
      "services/beta.ts": socketOf("second", "lookup(ctx.text())"),
      "node_modules/geo-data/package.json": JSON.stringify({ name: "geo-data", main: "index.js" }),
      "node_modules/geo-data/index.js": [
        'const fs = require("fs");',
        'const path = require("path");',
        'exports.lookup = (ip) => String(fs.statSync(path.join(__dirname, "cities.mmdb")).size + ip.length);',
      ].join("\n"),
      "node_modules/geo-data/cities.mmdb": "small",
    });
    const out = join(project, "out");
    const snapshot = () => {
      const files = new Map<string, string>();
      const walk = (dir: string, prefix: string) => {
        for (const entry of readdirSync(dir, { withFileTypes: true })) {
          if (entry.isDirectory()) walk(join(dir, entry.name), `${prefix}${entry.name}/`);
          else files.set(`${prefix}${entry.name}`, readFileSync(join(dir, entry.name)).toString("base64"));
        }
      };
      walk(out, "");
      return files;
    };
    await build(project);
    const before = snapshot();
    expect([...before.keys()]).toContain("functions/beta/cities.mmdb");
    // The code changes, then beta's function is refused: alpha's new bundle must not be left.
    writeFileSync(join(project, "services", "alpha.ts"), socketOf("first", '"changed: " + ctx.text()'));
    truncateSync(join(project, "node_modules", "geo-data", "cities.mmdb"), 251 * 1024 * 1024);
    const huge = await runCli(["build", project, "--provider", "aws", "--out", out, "--plain"]);
    expect(huge.code).toBe(1);
    expect(huge.stderr).toMatch(/service "beta": its function would be 251\.\d MB unzipped/);
    expect(snapshot()).toEqual(before);
    // Refused after every function is bundled and zipped: its environment.
    writeFileSync(join(project, "node_modules", "geo-data", "cities.mmdb"), "small");
    writeFileSync(join(project, "big.env"), `BIG=${"x".repeat(5000)}\n`);
    const big = await runCli([
      "build",
      project,
      "--provider",
      "aws",
      "--out",
      out,
      "--plain",
      "--env-from",
      join(project, "big.env"),
    ]);
    expect(big.code).toBe(1);
    expect(big.stderr).toMatch(/over Lambda's 4096 for a function/);
    expect(snapshot()).toEqual(before);
    // A first build refused leaves no folder at all.
    const fresh = join(project, "fresh");
    const first = await runCli([
      "build",
      project,
      "--provider",
      "aws",
      "--out",
      fresh,
      "--plain",
      "--env-from",
      join(project, "big.env"),
    ]);
    expect(first.code).toBe(1);
    expect(existsSync(fresh)).toBe(false);
    // The next build that succeeds writes the new code.
    await build(project);
    expect(readFileSync(join(out, "functions", "alpha", "index.cjs"), "utf8")).toContain("changed: ");
    expect(existsSync(join(out, ".nitric-like-staging"))).toBe(false);
  }, 90000);

  it("says esbuild's warnings at build, naming the service, file and line", async () => {
    const project = writeProject({
      "nitric-like.yaml": "name: warned\nservices:\n  - match: services/*.ts\n",
      "services/chat.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("socket");',
        "const settings = { greeting: 'hi', greeting: 'hello' };",
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", (ctx) => ctx.reply(settings.greeting));',
      ].join("\n"),
    });
    const { stderr } = await build(project);
    expect(stderr).toContain(
      'warning: service "chat": esbuild: services/chat.ts:3:36: Duplicate key "greeting" in object literal',
    );
  }, 30000);

  it("names the providers it knows when asked for one that is not installed", async () => {
    const project = copyProject(join(EXAMPLES, "chat"));
    const { code, stderr } = await runCli(["build", project, "--provider", "nitric-like-provider-nowhere", "--plain"]);
    expect(code).toBe(1);
    expect(stderr).toContain('provider "nitric-like-provider-nowhere" is not installed');
    expect(stderr).toContain("providers found: local, aws");
    // A third-party provider is named by its package; no install command guessed from the name.
    expect(stderr).toContain("pass its package name (--provider <package>)");
    expect(stderr).not.toContain("pnpm add");
  }, 30000);
});

/** The requestContext API Gateway gives a function for an event of `connectionId` on API `apiId`. */
function apiGatewayContext(routeKey: string, connectionId: string, apiId: string) {
  return {
    routeKey,
    eventType: routeKey === "$connect" ? "CONNECT" : routeKey === "$disconnect" ? "DISCONNECT" : "MESSAGE",
    messageId: routeKey === "$default" ? "abcdEFGHijklMNO=" : undefined,
    extendedRequestId: "L0SM9FjiIAMFbaA=",
    requestTime: "22/Nov/2026:10:00:00 +0000",
    messageDirection: "IN",
    stage: "live",
    connectedAt: Date.now(),
    requestTimeEpoch: Date.now(),
    identity: { sourceIp: "203.0.113.7", userAgent: "doc-client/1.0" },
    requestId: "L0SM9FjiIAMFbaA=",
    domainName: "abc123.execute-api.us-east-1.amazonaws.com",
    connectionId,
    apiId,
  };
}

describe("the Lambda runtime, fed API Gateway events", () => {
  let emulator: Emulator;
  let db: RunningDynalite;
  let invoke: (event: unknown) => Promise<unknown>;
  const context = (routeKey: string, connectionId: string) =>
    apiGatewayContext(routeKey, connectionId, [...emulator.apis.keys()][0] as string);

  beforeAll(async () => {
    const project = copyProject(join(FIXTURES, "lab-ours"));
    const { out } = await build(project);
    db = await startDynalite();
    emulator = await startEmulator({
      buildDir: out,
      dynamodbEndpoint: db.endpoint,
      credentials: db.credentials,
      logger: { info: () => {}, warn: () => {}, error: () => {} },
    });
    const fn = emulator.functions[0];
    if (!fn) throw new Error("no function");
    invoke = (event) => fn.invoke(event);
  }, 30000);
  afterAll(async () => {
    await emulator?.stop();
    await db?.close();
  });

  it("accepts a $connect and hands its multi-valued query and headers to the connect handler", async () => {
    const result = await invoke({
      requestContext: context("$connect", "Doc1ConnIdAAAA="),
      headers: { Host: "abc123.execute-api.us-east-1.amazonaws.com", "User-Agent": "doc-client/1.0" },
      multiValueHeaders: { Host: ["abc123.execute-api.us-east-1.amazonaws.com"], "User-Agent": ["doc-client/1.0"] },
      queryStringParameters: { tag: "y z", room: "a b" },
      multiValueQueryStringParameters: { tag: ["x", "y z"], room: ["a b"] },
      isBase64Encoded: false,
    });
    expect(result).toEqual({ statusCode: 200 });
    // The message handler's one text reply comes back as the route response body.
    const answer = (await invoke({
      requestContext: context("$default", "Doc1ConnIdAAAA="),
      body: JSON.stringify({ op: "get", key: "conn:Doc1ConnIdAAAA=" }),
      isBase64Encoded: false,
    })) as { statusCode: number; body: string };
    expect(answer.statusCode).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({
      value: { query: { tag: ["x", "y z"], room: ["a b"] }, agent: ["doc-client/1.0"] },
    });
  });

  it("answers a refused $connect with the handler's status and reason", async () => {
    const result = await invoke({
      requestContext: context("$connect", "Doc2ConnIdAAAA="),
      headers: {},
      multiValueHeaders: {},
      queryStringParameters: { reject: "go away" },
      multiValueQueryStringParameters: { reject: ["go away"] },
      isBase64Encoded: false,
    });
    expect(result).toEqual({ statusCode: 403, body: "go away" });
  });

  it("decodes a base64 body into a binary message", async () => {
    // The lab returns binary messages as they came; one binary reply goes out through the
    // Management API, which answers 410 for this connection no client holds: logged, not thrown.
    const result = await invoke({
      requestContext: context("$default", "Doc3ConnIdAAAA="),
      body: Buffer.from([0, 255, 1]).toString("base64"),
      isBase64Encoded: true,
    });
    expect(result).toEqual({ statusCode: 200 });
  });

  it("turns a send to a gone connection into NOT_FOUND naming it", async () => {
    const answer = (await invoke({
      requestContext: context("$default", "Doc4ConnIdAAAA="),
      body: JSON.stringify({ op: "send", to: "GoneConnIdAAAA=", text: "hello?" }),
      isBase64Encoded: false,
    })) as { body: string };
    expect(JSON.parse(answer.body)).toEqual({
      error: {
        code: "not_found",
        message: 'websocket "lab": connection "GoneConnIdAAAA=" is not connected (it closed, or never existed)',
      },
    });
  });

  it("runs the disconnect handler on $disconnect with API Gateway's status code", async () => {
    expect(
      await invoke({
        requestContext: {
          ...context("$disconnect", "Doc1ConnIdAAAA="),
          disconnectStatusCode: 1001,
          disconnectReason: "Going away",
        },
        headers: {},
        multiValueHeaders: {},
        isBase64Encoded: false,
      }),
    ).toEqual({ statusCode: 200 });
    const answer = (await invoke({
      requestContext: context("$default", "Doc5ConnIdAAAA="),
      body: JSON.stringify({ op: "get", key: "gone:Doc1ConnIdAAAA=" }),
      isBase64Encoded: false,
    })) as { body: string };
    expect(JSON.parse(answer.body)).toEqual({ value: { code: 1001 } });
  });

  it("prunes a connection API Gateway says is gone (410) from the connections it lists", async () => {
    // Connected a minute ago: one that connected within OPENING_GRACE_MS may be opening still, and
    // is kept (providers/aws/test/broadcast.test.ts).
    const connectEvent = {
      requestContext: { ...context("$connect", "Doc6ConnIdAAAA="), connectedAt: Date.now() - 60_000 },
      headers: {},
      multiValueHeaders: {},
      isBase64Encoded: false,
    };
    expect(await invoke(connectEvent)).toEqual({ statusCode: 200 });
    const ask = async (body: object) =>
      JSON.parse(
        (
          (await invoke({
            requestContext: context("$default", "Doc7ConnIdAAAA="),
            body: JSON.stringify(body),
            isBase64Encoded: false,
          })) as { body: string }
        ).body,
      );
    expect((await ask({ op: "connections" })).ids).toContain("Doc6ConnIdAAAA=");
    // No client holds it: the Management API answers 410 and the broadcast prunes it.
    expect(await ask({ op: "broadcast", text: "anyone?" })).toEqual({ sent: 0 });
    const deadline = Date.now() + 3000;
    let ids: string[] = ["Doc6ConnIdAAAA="];
    while (ids.includes("Doc6ConnIdAAAA=") && Date.now() < deadline) ids = (await ask({ op: "connections" })).ids;
    expect(ids).not.toContain("Doc6ConnIdAAAA=");
  });

  it("hands a $connect's query keys and header names named like Object.prototype's to the handler as own keys", async () => {
    const names = Object.getOwnPropertyNames(Object.prototype);
    // As Lambda delivers it: JSON, whose "__proto__" keys are own keys once parsed.
    const event = JSON.parse(
      JSON.stringify({
        requestContext: context("$connect", "Doc9ConnIdAAAA="),
        multiValueHeaders: Object.fromEntries(names.map((n) => [n, ["h"]])),
        multiValueQueryStringParameters: Object.fromEntries(names.map((n, i) => [n, [String(i)]])),
        isBase64Encoded: false,
      }),
    ) as unknown;
    expect(await invoke(event)).toEqual({ statusCode: 200 });
    const answer = (await invoke({
      requestContext: context("$default", "Doc9ConnIdAAAA="),
      body: JSON.stringify({ op: "seen" }),
      isBase64Encoded: false,
    })) as { body: string };
    const seen = JSON.parse(answer.body) as { query: Record<string, string[]>; headers: Record<string, string[]> };
    expect(Object.keys(seen.query).sort()).toEqual([...names].sort());
    expect(Object.getOwnPropertyDescriptor(seen.query, "__proto__")?.value).toEqual([
      String(names.indexOf("__proto__")),
    ]);
    for (const n of names)
      expect(Object.hasOwn(seen.headers, n.toLowerCase()) && seen.headers[n.toLowerCase()]).toEqual(["h"]);
  });

  it("answers an Invoke or Management API request it cannot parse with 400, and serves the next one", async () => {
    const fn = emulator.functions[0];
    const api = fn?.env.AWS_ENDPOINT_URL_LAMBDA as string;
    const badBody = await signedFetch(emulator, `${api}/2015-03-31/functions/${fn?.name}/invocations`, "lambda", {
      body: "{",
    });
    expect(badBody.status).toBe(400);
    expect(badBody.headers.get("x-amzn-errortype")).toBe("InvalidRequestContentException");
    const badPath = await fetch(`${api}/%E0%A4%A`);
    expect(badPath.status).toBe(400);
    // An event the function fails on: Lambda's 200 with the error named, not a failure of the API.
    const failed = await signedFetch(emulator, `${api}/2015-03-31/functions/${fn?.name}/invocations`, "lambda", {
      body: "{}",
    });
    expect(failed.status).toBe(200);
    expect(failed.headers.get("x-amz-function-error")).toBe("Unhandled");
    expect(((await failed.json()) as { errorMessage: string }).errorMessage).toMatch(
      /handles API Gateway WebSocket events/,
    );
    const good = await signedFetch(emulator, `${api}/2015-03-31/functions/${fn?.name}/invocations`, "lambda", {
      body: JSON.stringify({
        requestContext: context("$default", "Doc9ConnIdAAAA="),
        body: JSON.stringify({ op: "whoami" }),
        isBase64Encoded: false,
      }),
    });
    expect(good.status).toBe(200);
    expect(JSON.parse(((await good.json()) as { body: string }).body)).toEqual({ id: "Doc9ConnIdAAAA=" });
  });

  it("says what it expected when given an event that is not from API Gateway", async () => {
    await expect(invoke({ Records: [] })).rejects.toThrow(/handles API Gateway WebSocket events/);
  });
});

// API Gateway's documented rules ("Quotas for configuring and running a WebSocket API", "Binary
// media types for WebSocket APIs"), kept by the emulator for real ws clients; the idle timeout and
// age limit shortened through the emulator's limits, as a project file shortens them.
describe("the emulator keeps API Gateway's rules", () => {
  let emulator: Emulator;
  let db: RunningDynalite;
  let url: string;
  const logs: string[] = [];
  const KB = 1024;
  // The close reasons are ours (API Gateway documents the codes only).
  const BINARY = "binary frames are not accepted (as on API Gateway); send bytes as text, such as base64";
  const LARGE = `frame too big: at most ${32 * KB} bytes a frame (as on API Gateway); send larger messages in fragments`;
  let out = "";

  beforeAll(async () => {
    ({ out } = await build(copyProject(join(FIXTURES, "lab-ours"))));
    db = await startDynalite();
    emulator = await startEmulator({
      buildDir: out,
      dynamodbEndpoint: db.endpoint,
      credentials: db.credentials,
      logger: { info: (m) => logs.push(m), warn: (m) => logs.push(m), error: (m) => logs.push(m) },
      limits: (socket) =>
        socket === "lab" ? { idleTimeoutMs: 2000, maxConnectionAgeMs: 4000, upgradeTimeoutMs: 500 } : {},
      newConnectionsPerSecond: 20,
      headersTimeoutMs: 500,
    });
    url = emulator.sockets.find((s) => s.name === "lab")?.url as string;
  }, 30000);
  afterAll(async () => {
    await emulator?.stop();
    await db?.close();
  });

  /** Another emulator of the lab's build with `options` (lower limits, say), its log lines going to `lines`. */
  const anotherEmulator = (options: Partial<EmulatorOptions>, lines: string[] = []) =>
    startEmulator({
      buildDir: out,
      dynamodbEndpoint: db.endpoint,
      credentials: db.credentials,
      logger: { info: (m) => lines.push(m), warn: (m) => lines.push(m), error: (m) => lines.push(m) },
      ...options,
    });

  it("listens on a socket's pinned port, and names a pinned port in use with the fix", async () => {
    const free = createServer();
    await new Promise<void>((r) => free.listen(0, "127.0.0.1", r));
    const port = (free.address() as { port: number }).port;
    await new Promise((r) => free.close(r));
    const options = {
      buildDir: out,
      dynamodbEndpoint: db.endpoint,
      credentials: db.credentials,
      logger: { info: () => {}, warn: () => {}, error: () => {} },
      port: (socket: string) => (socket === "lab" ? port : undefined),
    };
    const pinned = await startEmulator(options);
    try {
      const lab = pinned.sockets.find((s) => s.name === "lab")?.url;
      expect(lab).toBe(`ws://127.0.0.1:${port}/live`);
      const c = await connect(lab as string);
      expect((await c.call({ op: "whoami" })).id).toEqual(expect.any(String));
      c.close();
      await expect(startEmulator(options)).rejects.toThrow(
        `websocket "lab": port ${port} is already in use; pick another under websockets.lab.port in the project file, or run with --random-ports`,
      );
    } finally {
      await pinned.stop();
    }
  });

  /** Sends half a request's headers to `port` and resolves, once the server closed it, with its answer and when. */
  async function trickled(port: number, head: string): Promise<{ answer: string; after: number }> {
    const slow = createConnection({ host: "127.0.0.1", port });
    let answer = "";
    slow.on("data", (d) => {
      answer += d;
    });
    const started = Date.now();
    const closed = new Promise<number>((resolve) => slow.on("close", () => resolve(Date.now() - started)));
    slow.write(head);
    const after = await closed;
    return { answer, after };
  }

  it("answers 408 and closes a Management or Invoke API connection whose headers are not whole within its timeout", async () => {
    const port = Number(new URL(emulator.managementUrl).port);
    const { answer, after } = await trickled(port, "POST /2015-03-31/functions/f/invocations HTTP/1.1\r\nHost: x\r\n");
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(after).toBeGreaterThanOrEqual(450);
    expect(after).toBeLessThan(3000);
  });

  it("answers 408 and closes a connection whose upgrade request is not whole within the upgrade timeout", async () => {
    const slow = trickled(Number(new URL(url).port), "GET /live HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n");
    // A client that sends its request whole meanwhile is served.
    const c = await connect(url);
    expect((await c.call({ op: "whoami" })).id).toEqual(expect.any(String));
    c.close();
    const { answer, after } = await slow;
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(after).toBeGreaterThanOrEqual(450);
    expect(after).toBeLessThan(3000);
  });

  it("refuses a malformed upgrade with its reason before $connect runs, so nothing it would store is left", async () => {
    const { port, pathname } = new URL(url);
    const probe = await connect(url);
    const conns = async () => ((await probe.call({ op: "keys", prefix: "conn:" })).keys as string[]).length;
    const before = await conns();
    const answers: string[] = [];
    const malformed = [
      `GET ${pathname}?from=no-key HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      `GET ${pathname}?from=bad-key HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      upgradeRequest(`${pathname}?from=old-version`, "", "x", "7"),
      // A draft before RFC 6455, which the ws library still takes; RFC 6455 asks for 13.
      upgradeRequest(`${pathname}?from=draft-version`, "", "x", "8"),
    ];
    for (const request of malformed) {
      const socket = createConnection({ host: "127.0.0.1", port: Number(port) });
      let answer = "";
      socket.on("data", (d) => {
        answer += d.toString("latin1");
      });
      socket.on("error", () => {});
      socket.write(request);
      await new Promise((resolve) => socket.once("close", resolve));
      answers.push(answer);
    }
    expect(answers[0]).toMatch(/^HTTP\/1\.1 400 [\s\S]*Sec-WebSocket-Key must be 16 bytes in base64/);
    expect(answers[1]).toMatch(/^HTTP\/1\.1 400 [\s\S]*Sec-WebSocket-Key must be 16 bytes in base64/);
    // In a JSON body, as API Gateway words its refusals.
    expect(answers[2]).toMatch(/^HTTP\/1\.1 400 [\s\S]*Sec-WebSocket-Version \\"7\\" is not supported; use 13/);
    expect(answers[3]).toMatch(/^HTTP\/1\.1 400 [\s\S]*Sec-WebSocket-Version \\"8\\" is not supported; use 13/);
    // With the version it speaks, as RFC 6455 section 4.2.2 asks.
    for (const answer of answers.slice(2)) expect(answer).toMatch(/\r\nSec-WebSocket-Version: 13\r\n/i);
    await sleep(300);
    expect(await conns()).toBe(before);
    // A well-formed one is counted: the count would have seen the others.
    (await connect(url)).close();
    expect(await conns()).toBe(before + 1);
    probe.close();
  });

  it("refuses an upgrade off the API's stage (no stage, another path) with 403 before $connect runs, and logs the URL to use", async () => {
    const { pathname, port } = new URL(url);
    expect(pathname).toMatch(/^\/[a-z]+$/);
    const probe = await connect(url);
    const conns = async () => ((await probe.call({ op: "keys", prefix: "conn:" })).keys as string[]).length;
    const before = await conns();
    const logged = logs.length;
    // What the dashboard's log is shown (run --provider aws hands it the API's observer).
    const lab = [...emulator.apis.values()].find((a) => a.socketName === "lab") as {
      observer: ((event: { type: string; status?: number; reason?: string }) => void) | undefined;
    };
    const shown: { type: string; status?: number; reason?: string }[] = [];
    lab.observer = (event) => shown.push(event);
    const base = `ws://127.0.0.1:${port}`;
    for (const wrong of ["/", "/?name=x", `${pathname}x`, `${pathname}/more`, "/__proto__"]) {
      await expect(connect(`${base}${wrong}`), wrong).rejects.toMatchObject({
        status: 403,
        body: JSON.stringify({ message: "Forbidden" }),
      });
    }
    await sleep(300);
    lab.observer = undefined;
    expect(await conns()).toBe(before);
    expect(shown.filter((e) => e.type === "refused")).toHaveLength(5);
    expect(shown[0]).toMatchObject({ type: "refused", status: 403, reason: `not this API's stage: connect to ${url}` });
    // One line for the burst, naming the URL the client should have used.
    const lines = logs.slice(logged).filter((l) => l.includes("refused an upgrade on"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`"/" with 403`);
    expect(lines[0]).toContain(`served at its stage, ${url}`);
    // The stage with a trailing slash and a query is the stage.
    const slash = await connect(`${base}${pathname}/?name=y`);
    expect(await conns()).toBe(before + 1);
    slash.close();
    probe.close();
  });

  it("stops waiting for a function at API Gateway's integration timeout: a slow $connect gets 504, a slow message's client is told", async () => {
    const lines: string[] = [];
    const hasty = await anotherEmulator({ integrationTimeoutMs: 500 }, lines);
    try {
      const at = hasty.sockets.find((s) => s.name === "lab")?.url as string;
      const started = Date.now();
      await expect(connect(`${at}?sleep=1500`)).rejects.toMatchObject({
        status: 504,
        body: JSON.stringify({ message: "Endpoint request timed out" }),
      });
      expect(Date.now() - started).toBeLessThan(1400);
      // The function runs on (1.5 s); once it is done its execution environment is free again. (An
      // event meanwhile would start another, whose cold start a busy machine may take past 500 ms.)
      await sleep(1200);
      // A $connect that answers in time connects as before.
      const client = await connect(`${at}?sleep=100`);
      client.ws.send(JSON.stringify({ op: "sleep", size: 1500 }));
      const told = JSON.parse((await client.next()).text) as { message: string; connectionId: string };
      expect(told.message).toBe("Endpoint request timed out");
      // The function's late answer is dropped; the connection serves the next message.
      await sleep(1200);
      expect(await client.call({ op: "sleep", size: 0 })).toEqual({ slept: 0 });
      await sleep(500);
      expect(client.frames).toEqual([]);
      const late = lines.filter((l) => l.includes("API Gateway's integration timeout"));
      expect(late[0]).toContain("the $connect function has not answered for connection");
      expect(late[0]).toContain("within 500 ms");
      client.close();
    } finally {
      await hasty.stop();
    }
  });

  it("drops a $connect still waiting for an execution environment at the integration timeout, unrun", async () => {
    const lines: string[] = [];
    // One environment a function: a second $connect waits for the first's.
    const hasty = await anotherEmulator({ integrationTimeoutMs: 800, maxInstancesPerFunction: 1 }, lines);
    try {
      const at = hasty.sockets.find((s) => s.name === "lab")?.url as string;
      const probe = await connect(at);
      const conns = async () => ((await probe.call({ op: "keys", prefix: "conn:" })).keys as string[]).length;
      const before = await conns();
      // The first holds the environment past the timeout; the second never gets it in time.
      const slow = connect(`${at}?sleep=2000`);
      await sleep(100);
      const queued = connect(`${at}?queued=1`);
      for (const refused of [slow, queued])
        await expect(refused).rejects.toMatchObject({
          status: 504,
          body: JSON.stringify({ message: "Endpoint request timed out" }),
        });
      // The slow one runs on and stores its connection; the queued one never runs, so stores nothing
      // (run late, it would serve a client refused long before, and a flood would keep `run` busy for minutes).
      await sleep(2500);
      expect(await conns()).toBe(before + 1);
      const dropped = lines.filter((l) => l.includes("dropped unrun"));
      expect(dropped).toHaveLength(1);
      expect(dropped[0]).toContain("waited 800 ms, API Gateway's integration timeout, for an execution environment");
      expect(dropped[0]).toContain("at most 1 environments a function");
      // The environment serves the next client as before.
      const next = await connect(at);
      expect(await conns()).toBe(before + 2);
      next.close();
      probe.close();
    } finally {
      await hasty.stop();
    }
  });

  it("runs the $connect of a client that left while it waited for an execution environment, as Lambda would, and its $disconnect (1006)", async () => {
    const lines: string[] = [];
    const small = await anotherEmulator({ maxInstancesPerFunction: 1 }, lines);
    try {
      const at = small.sockets.find((s) => s.name === "lab")?.url as string;
      const { port, pathname } = new URL(at);
      const probe = await connect(at);
      const count = async (prefix: string) => ((await probe.call({ op: "keys", prefix })).keys as string[]).length;
      const before = { conn: await count("conn:"), gone: await count("gone:") };
      // The only environment is taken for a second and a half...
      const slow = connect(`${at}?sleep=1500`);
      await sleep(100);
      // ...while five clients send their upgrade and hang up, their $connect events waiting for it.
      for (let i = 0; i < 5; i++) {
        const socket = createConnection({ host: "127.0.0.1", port: Number(port) });
        socket.on("error", () => {});
        socket.write(upgradeRequest(`${pathname}?left=${i}`), () => setTimeout(() => socket.destroy(), 50));
      }
      const client = await slow;
      // API Gateway invoked each as its handshake came, and Lambda starts environments as needed: each
      // runs and stores its connection, which its $disconnect then tells the app to forget.
      const deadline = Date.now() + 10000;
      while ((await count("gone:")) < before.gone + 5 && Date.now() < deadline) await sleep(200);
      expect(await count("conn:")).toBe(before.conn + 1 + 5);
      expect(await count("gone:")).toBe(before.gone + 5);
      expect(lines.filter((l) => l.includes("dropped unrun"))).toEqual([]);
      client.close();
      probe.close();
    } finally {
      await small.stop();
    }
  });

  it("gives up at once on the delivery of what $connect sent when it starts too late, its client long gone", async () => {
    const lines: string[] = [];
    const small = await anotherEmulator({ maxInstancesPerFunction: 1 }, lines);
    try {
      const at = small.sockets.find((s) => s.name === "lab")?.url as string;
      const probe = await connect(at);
      // A client whose $connect (300 ms) replies, so its function hands a delivery over...
      const greeted = connect(`${at}?sleep=300&greet=hi`);
      await sleep(100);
      // ...queued behind a message that takes the only environment for 4.5 s.
      probe.ws.send(JSON.stringify({ op: "sleep", size: 4500 }));
      const slow = probe.next(10000);
      const client = await greeted;
      // The client leaves at once: the delivery, starting 4.5 s later, finds it gone.
      client.ws.terminate();
      await slow;
      const started = Date.now();
      // The next event runs within the 5 s from the hand-over, not after the delivery polled 5 s more.
      expect(await probe.call({ op: "sleep", size: 0 })).toEqual({ slept: 0 });
      expect(Date.now() - started).toBeLessThan(2500);
      probe.close();
    } finally {
      await small.stop();
    }
  });

  it("says once a burst, not once a client, that what $connect sent was dropped for clients that left", async () => {
    const lines: string[] = [];
    const small = await anotherEmulator({ maxInstancesPerFunction: 1 }, lines);
    try {
      const at = small.sockets.find((s) => s.name === "lab")?.url as string;
      const probe = await connect(at);
      // Three clients whose $connect replies, one after another in the only environment...
      const greeted = [0, 1, 2].map((i) => connect(`${at}?sleep=300&greet=${i}`));
      await sleep(100);
      // ...their deliveries queued behind a message that takes it for 2 s; each client leaves at once.
      probe.ws.send(JSON.stringify({ op: "sleep", size: 2000 }));
      for (const client of await Promise.all(greeted)) client.ws.terminate();
      await probe.next(10000);
      // The three deliveries find their clients gone: one line says so, not three.
      let dropped: string[] = [];
      for (let i = 0; i < 80 && dropped.length === 0; i++) {
        await sleep(100);
        dropped = lines.filter((l) => l.includes("did not open within"));
      }
      await sleep(3000);
      dropped = lines.filter((l) => l.includes("did not open within"));
      expect(dropped).toHaveLength(1);
      expect(dropped[0]).toContain("messages sent during its connect were dropped");
      probe.close();
    } finally {
      await small.stop();
    }
  });

  it("says once, as it stops, how many events waiting for an execution environment were dropped", async () => {
    const lines: string[] = [];
    const small = await anotherEmulator({ maxInstancesPerFunction: 1 }, lines);
    const at = small.sockets.find((s) => s.name === "lab")?.url as string;
    const clients = await Promise.all([0, 1, 2, 3, 4].map(() => connect(at)));
    // One message takes the only environment; the others wait for it.
    for (const client of clients) client.ws.send(JSON.stringify({ op: "sleep", size: 3000 }));
    await sleep(500);
    await small.stop();
    expect(lines.filter((l) => l.includes("is not running") || l.includes("exited with code"))).toEqual([]);
    const dropped = lines.filter((l) => l.includes("dropped as the emulator stopped"));
    expect(dropped).toHaveLength(1);
    expect(dropped[0]).toMatch(/: \d+ event\(s\) waiting for an execution environment were dropped/);
  });

  it("runs $disconnect (1006) for a client that left while $connect ran, so the app can forget what it stored", async () => {
    const { port, pathname } = new URL(url);
    const probe = await connect(url);
    const gone = async () => (await probe.call({ op: "keys", prefix: "gone:" })).keys as string[];
    const before = new Set(await gone());
    for (let i = 0; i < 5; i++) {
      const socket = createConnection({ host: "127.0.0.1", port: Number(port) });
      socket.on("error", () => {});
      // Gone as soon as its request is out, before $connect has answered.
      socket.write(upgradeRequest(`${pathname}?early=${i}`), () => socket.destroy());
    }
    let added: string[] = [];
    for (let i = 0; i < 50 && added.length < 5; i++) {
      await sleep(100);
      added = (await gone()).filter((k) => !before.has(k));
    }
    expect(added).toHaveLength(5);
    // What the lab's $disconnect stored: the code it was given.
    for (const key of added) expect((await probe.call({ op: "get", key })).value).toEqual({ code: 1006 });
    probe.close();
  });

  it("ends a deleted connection whose client does not answer the close within a second, and runs its $disconnect", async () => {
    const probe = await connect(url);
    const silent = await connect(url);
    const id = (await silent.call({ op: "whoami" })).id as string;
    // It stops reading, so it never answers the close frame; its request still goes out.
    (silent.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    silent.ws.send(JSON.stringify({ op: "close-me" }));
    // The lab's $disconnect stores the code it was given (until then, the get answers an error).
    let stored: unknown;
    // (Within 2.5 s: this emulator's lab ends connections at 4 s of age.)
    for (let i = 0; i < 25 && stored === undefined; i++) {
      await sleep(100);
      stored = (await probe.call({ op: "get", key: `gone:${id}` })).value;
    }
    expect(stored).toEqual({ code: 1006 });
    expect((await probe.call({ op: "is-connected", to: id })).connected).toBe(false);
    silent.ws.terminate();
    probe.close();
  });

  it("refuses headers over 16 KB with 431 and its reason, and lets go of a refused client that never closes its side", async () => {
    const small = await anotherEmulator({ newConnectionsPerSecond: 1 });
    const { port, pathname } = new URL(small.sockets.find((s) => s.name === "lab")?.url as string);
    /**
     * Writes `request` on a raw connection that never ends its side, reads the answer until the
     * server ends its own, then, 1.5 s later, writes again: whether the server had let go of the
     * socket by then (the write is reset) or still holds it half-open.
     */
    const raw = (request: string) =>
      new Promise<{ answer: string; letGo: boolean }>((resolve, reject) => {
        const socket = createConnection({ host: "127.0.0.1", port: Number(port), allowHalfOpen: true });
        let answer = "";
        socket.on("data", (d) => {
          answer += d.toString("latin1");
        });
        socket.on("error", () => resolve({ answer, letGo: true }));
        socket.on("close", () => resolve({ answer, letGo: true }));
        socket.once("end", () =>
          setTimeout(() => {
            // The first write meets the reset, the second is refused by it (EPIPE).
            socket.write("more\r\n");
            setTimeout(() => socket.write("more\r\n"), 200).unref();
            setTimeout(() => {
              socket.destroy();
              resolve({ answer, letGo: false });
            }, 1000).unref();
          }, 1500).unref(),
        );
        socket.write(request);
        setTimeout(() => reject(new Error(`no answer within 5 s; read: ${answer.slice(0, 200)}`)), 5000).unref();
      });
    try {
      const huge = await raw(upgradeRequest(pathname, `X-Big: ${"a".repeat(20_000)}\r\n`));
      expect(huge.answer).toMatch(/^HTTP\/1\.1 431 /);
      expect(huge.answer).toContain("the request line and headers are over 16 KiB");
      expect(huge.letGo).toBe(true);
      // The account's one new connection a second: the first takes it, the second is refused.
      const first = createConnection({ host: "127.0.0.1", port: Number(port) });
      first.on("error", () => {});
      first.write(upgradeRequest(pathname));
      await new Promise((resolve) => first.once("data", resolve));
      const refused = await raw(upgradeRequest(pathname));
      expect(refused.answer).toMatch(/^HTTP\/1\.1 429 /);
      expect(refused.letGo).toBe(true);
      first.destroy();
    } finally {
      await small.stop();
    }
  });

  it("closes a client that sends a binary frame with 1003, before its message reaches a function", async () => {
    const bystander = await connect(url);
    const c = await connect(url);
    const { id } = await c.call({ op: "whoami" });
    c.ws.send(Buffer.from([0, 255, 1]));
    expect(await c.waitClosed()).toEqual({ code: 1003, reason: BINARY });
    // The lab answers a binary message by returning it: nothing came back.
    expect(c.frames).toEqual([]);
    expect(logs.some((l) => l.includes(`closed connection ${id} (1003)`))).toBe(true);
    // Bytes as base64 text go through; everyone else is served.
    bystander.ws.send(Buffer.from([0, 255, 1]).toString("base64"));
    expect((await bystander.next()).text).toBe("AP8B");
    bystander.close();
  });

  it("routes the messages a client sent ahead of its binary frame in the same chunk, and none after it", async () => {
    const probe = await connect(url);
    const key = `ahead-${randomBytes(4).toString("hex")}`;
    const set = (n: number) =>
      maskedFrame(0x1, Buffer.from(JSON.stringify({ op: "set", key: `${key}-${n}`, value: { n } })));
    // One write, so one chunk: the binary frame's header is read before ws parses the two ahead of it.
    const bytes = Buffer.concat([set(1), set(2), maskedFrame(0x2, Buffer.from([1])), set(3)]);
    expect(await rawClose(url, bytes)).toEqual({ code: 1003, reason: BINARY });
    const keys = async () => ((await probe.call({ op: "keys", prefix: key })).keys as string[]).sort();
    await expect.poll(keys, { timeout: 5000 }).toEqual([`${key}-1`, `${key}-2`]);
    await sleep(300);
    expect(await keys()).toEqual([`${key}-1`, `${key}-2`]);
    probe.close();
  });

  it("takes a 32 KB frame and a 128 KB message in 32 KB fragments, and closes a frame over 32 KB with 1009", async () => {
    const c = await connect(url);
    const frame = "a".repeat(32 * KB);
    c.ws.send(frame);
    expect((await c.next()).text).toBe(frame);
    for (let i = 0; i < 4; i++) c.ws.send("b".repeat(32 * KB), { fin: i === 3 });
    expect((await c.next()).text).toBe("b".repeat(128 * KB));
    c.ws.send("c".repeat(32 * KB + 1));
    expect(await c.waitClosed()).toEqual({ code: 1009, reason: LARGE });
    expect(c.frames).toEqual([]);
  });

  it("closes a message over 128 KB with 1009 and the reason, even in fragments of 32 KB, and logs it", async () => {
    const c = await connect(url);
    const { id } = await c.call({ op: "whoami" });
    for (let i = 0; i < 5; i++) c.ws.send("d".repeat(32 * KB), { fin: i === 4 });
    expect(await c.waitClosed()).toEqual({ code: 1009, reason: `message too big: at most ${128 * KB} bytes` });
    expect(c.frames).toEqual([]);
    expect(logs).toContain(`API LabApi: closed connection ${id} (1009): message too big: at most ${128 * KB} bytes`);
  });

  it("closes a message in over 1,024 fragments with 1008 and the reason, holding no more of it (empty ones: no size limit trips)", async () => {
    const c = await connect(url);
    const { id } = await c.call({ op: "whoami" });
    for (let i = 0; i < 1025; i++) c.ws.send("", { fin: false });
    const closed = await c.waitClosed();
    expect(closed.code).toBe(1008);
    expect(closed.reason).toMatch(/^too many pieces: over 1024 fragments in a message/);
    expect(c.frames).toEqual([]);
    expect(logs.some((l) => l.startsWith(`API LabApi: closed connection ${id} (1008): too many pieces`))).toBe(true);
  });

  it("throttles invocations over the account's concurrent executions: each client told, one log line a burst, Invoke 429", async () => {
    const lines: string[] = [];
    const small = await anotherEmulator({ concurrentExecutions: 3 }, lines);
    try {
      const lab = small.sockets.find((s) => s.name === "lab")?.url as string;
      const c = await connect(lab);
      const { id } = await c.call({ op: "whoami" });
      for (let i = 0; i < 10; i++) c.ws.send(JSON.stringify({ op: "sleep", size: 400 }));
      // While three sleep, an Invoke of the function is throttled as Lambda throttles it.
      await sleep(100);
      const fn = small.functions[0];
      const api = fn?.env.AWS_ENDPOINT_URL_LAMBDA as string;
      // (Refused before the function sees the event: any JSON will do.)
      const invoked = await signedFetch(small, `${api}/2015-03-31/functions/${fn?.name}/invocations`, "lambda", {
        body: "{}",
      });
      expect(invoked.status).toBe(429);
      expect(invoked.headers.get("x-amzn-errortype")).toBe("TooManyRequestsException");
      expect(await invoked.json()).toEqual({
        Reason: "ConcurrentInvocationLimitExceeded",
        Type: "User",
        message: "Rate Exceeded.",
      });
      const answers = await Promise.all(Array.from({ length: 10 }, () => c.next()));
      const texts = answers.map((f) => JSON.parse(f.text) as Record<string, unknown>);
      expect(texts.filter((t) => t.slept === 400)).toHaveLength(3);
      expect(texts.filter((t) => t.message === "Internal server error" && t.connectionId === id)).toHaveLength(7);
      const throttled = lines.filter((l) => l.includes("throttled"));
      expect(throttled).toHaveLength(1);
      expect(throttled[0]).toBe(
        `$default of LabApi (connection ${id}) throttled: Rate Exceeded.: over 3 invocations in flight across the functions (Lambda's concurrent executions); the event was dropped`,
      );
      // The slots come back as the invocations end.
      expect((await c.call({ op: "whoami" })).id).toBe(id);
      c.close();
    } finally {
      await small.stop();
    }
  });

  it("queues an asynchronous Invoke while every execution is taken, as Lambda does, runs it once one is free, and answers 429 once the queue is full", async () => {
    const small = await anotherEmulator({ concurrentExecutions: 1, maxQueuedAsync: 3 });
    try {
      const lab = small.sockets.find((s) => s.name === "lab")?.url as string;
      const [holder, c] = [await connect(lab), await connect(lab)];
      const { id } = await c.call({ op: "whoami" });
      holder.ws.send(JSON.stringify({ op: "sleep", size: 1000 }));
      await sleep(200);
      const fn = small.functions[0];
      const api = fn?.env.AWS_ENDPOINT_URL_LAMBDA as string;
      const apiId = [...small.apis.keys()][0] as string;
      for (let i = 0; i < 4; i++) {
        const event = {
          requestContext: apiGatewayContext("$default", id as string, apiId),
          body: JSON.stringify({ op: "send", to: id, text: `queued ${i}` }),
          isBase64Encoded: false,
        };
        const url = `${api}/2015-03-31/functions/${fn?.name}/invocations`;
        const signed = signRequest({
          method: "POST",
          url: new URL(url),
          body: JSON.stringify(event),
          headers: { "x-amz-invocation-type": "Event" },
          service: "lambda",
          region: "us-east-1",
          ...small.credentials,
        });
        const answer = await fetch(url, { method: "POST", headers: signed, body: JSON.stringify(event) });
        if (i < 3) expect(answer.status).toBe(202);
        else {
          expect(answer.status).toBe(429);
          expect(answer.headers.get("x-amzn-errortype")).toBe("TooManyRequestsException");
        }
      }
      // Nothing ran while the one execution slept; then each queued invocation, in order, and not the refused one.
      expect(c.frames).toEqual([]);
      const texts = [(await c.next()).text, (await c.next()).text, (await c.next()).text];
      expect(texts).toEqual(["queued 0", "queued 1", "queued 2"]);
      expect((await holder.next()).text).toBe(JSON.stringify({ slept: 1000 }));
      await sleep(200);
      expect(c.frames).toEqual([]);
      holder.close();
      c.close();
    } finally {
      await small.stop();
    }
  });

  it("warns, naming the fix, when run may keep fewer files open than a socket is meant to hold connections", async () => {
    // This process's limit, as a shell it starts inherits it.
    const limit = Number(execFileSync("sh", ["-c", "ulimit -n"], { encoding: "utf8" }));
    expect(limit).toBeGreaterThan(1000);
    const lines: string[] = [];
    const over = await anotherEmulator(
      { limits: (socket) => (socket === "lab" ? { maxConnections: limit + 1 } : {}) },
      lines,
    );
    await over.stop();
    expect(lines).toContain(
      `websocket "lab": this process may keep at most ${limit} files open (ulimit -n), fewer than the ${limit + 1} connections limits.maxConnections lets this socket hold and the files run needs; past it, new connections are dropped with no answer. Raise the limit (ulimit -n ${limit + 513}) or lower maxConnections`,
    );
    const quiet: string[] = [];
    const within = await anotherEmulator({ limits: () => ({ maxConnections: limit - 1000 }) }, quiet);
    await within.stop();
    expect(quiet.filter((l) => l.includes("files open"))).toEqual([]);
  });

  it("closes a client that floods messages and reads none of what it is told, once 8 MB of it wait", async () => {
    const lines: string[] = [];
    const small = await anotherEmulator({ concurrentExecutions: 1 }, lines);
    const { port, pathname } = new URL(small.sockets.find((s) => s.name === "lab")?.url as string);
    const flooder = createConnection({ host: "127.0.0.1", port: Number(port) });
    flooder.on("error", () => {});
    try {
      flooder.write(upgradeRequest(pathname));
      await new Promise((resolve) => flooder.once("data", resolve));
      // From here on it reads nothing. Another client's message holds the one execution for 2 s,
      // so the flood is throttled and each answer waits for the flooder in the emulator; once
      // messages run again they are handled with nothing sent.
      flooder.pause();
      const holder = await connect(small.sockets.find((s) => s.name === "lab")?.url as string);
      holder.ws.send(JSON.stringify({ op: "sleep", size: 2000 }));
      await sleep(200);
      const quiet = JSON.stringify({ op: "quiet" });
      const frame = Buffer.concat([Buffer.from([0x81, 0x80 | quiet.length, 0, 0, 0, 0]), Buffer.from(quiet)]);
      const batch = Buffer.concat(Array.from({ length: 1000 }, () => frame));
      const notReading = () => lines.some((l) => /closed connection \S+ \(1008\): client not reading/.test(l));
      const floodStarted = Date.now();
      for (let i = 0; i < 400 && !notReading() && !flooder.destroyed; i++) {
        if (flooder.write(batch)) continue;
        // The drain or 50 ms, whichever comes first; the listener goes with it (one left behind
        // per write would pass Node's limit of 10 on the socket and print a warning).
        let drained = () => {};
        const drain = new Promise<void>((r) => {
          drained = r;
          flooder.once("drain", r);
        });
        await Promise.race([drain, sleep(50)]);
        flooder.off("drain", drained);
      }
      for (let i = 0; i < 200 && !notReading(); i++) await sleep(50);
      expect(notReading()).toBe(true);
      expect((await holder.next()).text).toBe(JSON.stringify({ slept: 2000 }));
      holder.close();
      // Some 200,000 throttled in a few seconds (the kernel's buffers fill before the 8 MB do): a
      // line every 5 s, with the count (a loaded machine makes the flood last longer).
      const throttled = lines.filter((l) => l.includes("throttled"));
      expect(throttled.length).toBeGreaterThanOrEqual(1);
      expect(throttled.length).toBeLessThanOrEqual(Math.ceil((Date.now() - floodStarted) / 5000) + 1);
    } finally {
      flooder.destroy();
      await small.stop();
    }
    // 12 s alone on a quiet machine: a loaded one (a full suite beside it) can take twice that.
  }, 60000);

  it("ends an invocation past the function's timeout with Lambda's error and replaces the blocked environment", async () => {
    const lines: string[] = [];
    const small = await anotherEmulator({ functionTimeoutMs: 1000 }, lines);
    try {
      const lab = small.sockets.find((s) => s.name === "lab")?.url as string;
      const c = await connect(lab);
      const { id } = await c.call({ op: "whoami" });
      const started = Date.now();
      // Blocks the function's process for 20 s: only the timeout ends it.
      expect(await c.call({ op: "block", size: 20000 })).toEqual({
        message: "Internal server error",
        connectionId: id,
      });
      expect(Date.now() - started).toBeLessThan(5000);
      expect(lines).toContain(`$default of LabApi: Task timed out after 1.00 seconds`);
      expect(lines.some((l) => /function "\S+": an invocation ran past the function's timeout \(1\.00 s/.test(l))).toBe(
        true,
      );
      // The next event gets a new execution environment, which answers at once.
      expect((await c.call({ op: "whoami" })).id).toBe(id);
      expect(small.functions.find((f) => f.service === "lab")?.instanceCount).toBe(1);
      c.close();
    } finally {
      await small.stop();
    }
  });

  it("gives a function that crashes after a code change a new execution environment too", async () => {
    const small = await anotherEmulator({});
    try {
      await small.restartService("lab");
      const c = await connect(small.sockets.find((s) => s.name === "lab")?.url as string);
      const { id } = await c.call({ op: "whoami" });
      expect(await c.call({ op: "die" })).toEqual({ message: "Internal server error", connectionId: id });
      expect((await c.call({ op: "whoami" })).id).toBe(id);
      c.close();
    } finally {
      await small.stop();
    }
  });

  it("on stop refuses new clients with 503 and lets an event in flight answer before closing its client with 1001, as run's local provider stops", async () => {
    const small = await anotherEmulator({});
    const lab = small.sockets.find((s) => s.name === "lab")?.url as string;
    const c = await connect(lab);
    c.ws.send(JSON.stringify({ op: "sleep", size: 1000 }));
    await sleep(100);
    const stopped = small.stop();
    await sleep(50);
    await expect(connect(lab)).rejects.toMatchObject({ status: 503 });
    // The reply arrives, then the close, then the stop ends: the $disconnect ran with the client's close.
    expect(JSON.parse((await c.next(3000)).text)).toEqual({ slept: 1000 });
    expect(await c.waitClosed()).toEqual({ code: 1001, reason: "Going away" });
    await stopped;
  });

  it.skipIf(process.platform !== "linux")(
    "fails an event sent to an execution environment that died while idle as a crash fails it, and serves the next in a new one",
    async () => {
      const lines: string[] = [];
      const small = await anotherEmulator({ maxInstancesPerFunction: 1 }, lines);
      try {
        const fn = small.functions.find((f) => f.service === "lab");
        const c = await connect(small.sockets.find((s) => s.name === "lab")?.url as string);
        const { id } = await c.call({ op: "whoami" });
        const { pid } = (await c.call({ op: "where" })) as { pid: number };
        // Killed while idle (frozen), and dead (a zombie, its end of the channel closed once its
        // last thread has gone) before this process's event loop turns to see its exit: the event
        // goes to a closed channel.
        process.kill(pid, "SIGKILL");
        const dead = () =>
          readdirSync(`/proc/${pid}/task`).length === 1 &&
          /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
        while (!dead()) {}
        const said = `function "${fn?.name}" was killed by SIGKILL (its channel to the emulator had closed, EPIPE, as an event was sent to it)`;
        await expect(fn?.invoke({})).rejects.toThrow(said);
        expect(lines).toContain(
          `function "${fn?.name}": an execution environment ${said.slice(said.indexOf(" was ") + 1)}, failing the event it ran; the function's next events start a new one when none is free`,
        );
        // The next event gets a new execution environment.
        expect((await c.call({ op: "whoami" })).id).toBe(id);
        expect((await c.call({ op: "where" })).pid).not.toBe(pid);
        c.close();
      } finally {
        await small.stop();
      }
    },
  );

  it("runs each invocation in an execution environment of its own, as Lambda does: a crash or a blocked handler fails only its own event", async () => {
    const lines: string[] = [];
    const small = await anotherEmulator(
      { functionTimeoutMs: 1500, maxInstancesPerFunction: 3, instanceIdleMs: 400 },
      lines,
    );
    try {
      const fn = small.functions.find((f) => f.service === "lab");
      const lab = small.sockets.find((s) => s.name === "lab")?.url as string;
      const [a, b] = [await connect(lab), await connect(lab)];
      const { id: idA } = await a.call({ op: "whoami" });
      const { id: idB } = await b.call({ op: "whoami" });
      // One event after another: the warm environment serves both.
      const warm = (await a.call({ op: "where" })).pid;
      expect((await b.call({ op: "where" })).pid).toBe(warm);
      expect(fn?.instanceCount).toBe(1);
      // While it sleeps through one event, another event starts a second environment.
      a.ws.send(JSON.stringify({ op: "sleep", size: 500 }));
      await sleep(50);
      const other = (await b.call({ op: "where" })).pid;
      expect(other).not.toBe(warm);
      expect(await a.next()).toMatchObject({ text: JSON.stringify({ slept: 500 }) });
      // A handler that blocks its environment past the function's timeout holds no other event.
      a.ws.send(JSON.stringify({ op: "block", size: 10000 }));
      await sleep(50);
      const started = Date.now();
      expect(await b.call({ op: "whoami" })).toEqual({ id: idB });
      expect(Date.now() - started).toBeLessThan(1000);
      expect(JSON.parse((await a.next()).text)).toEqual({ message: "Internal server error", connectionId: idA });
      expect(lines).toContain("$default of LabApi: Task timed out after 1.50 seconds");
      // A crash ends only its own environment: the event sleeping in another one is answered.
      a.ws.send(JSON.stringify({ op: "sleep", size: 600 }));
      await sleep(50);
      expect(await b.call({ op: "die" })).toEqual({ message: "Internal server error", connectionId: idB });
      expect(JSON.parse((await a.next()).text)).toEqual({ slept: 600 });
      expect(lines.filter((l) => l.includes("an execution environment exited"))).toEqual([
        `function "${fn?.name}": an execution environment exited with code 3, failing the event it ran; the function's next events start a new one when none is free`,
      ]);
      // At most maxInstancesPerFunction at once: five sleeping events take two rounds of three.
      const began = Date.now();
      for (let i = 0; i < 5; i++) a.ws.send(JSON.stringify({ op: "sleep", size: 400 }));
      await sleep(200);
      expect(fn?.instanceCount).toBe(3);
      const slept = await Promise.all(Array.from({ length: 5 }, () => a.next()));
      expect(slept.map((f) => f.text)).toEqual(Array(5).fill(JSON.stringify({ slept: 400 })));
      expect(Date.now() - began).toBeGreaterThanOrEqual(800);
      // Said once for the burst: Lambda would have started more.
      expect(lines.filter((l) => l.includes("events wait for one"))).toEqual([
        `function "${fn?.name}": its 3 execution environments are all running an event, so events wait for one here; Lambda would start more, up to the account's concurrent executions (the emulator runs at most 3 a function)`,
      ]);
      // Idle environments end, all but the last.
      for (let i = 0; i < 60 && fn?.instanceCount !== 1; i++) await sleep(50);
      expect(fn?.instanceCount).toBe(1);
      expect((await a.call({ op: "whoami" })).id).toBe(idA);
      a.close();
      b.close();
    } finally {
      await small.stop();
    }
  });

  it("freezes an execution environment between invocations, as Lambda does: what a handler left running waits for its next event", async () => {
    for (const freeze of [true, false]) {
      const lines: string[] = [];
      const small = await anotherEmulator({ maxInstancesPerFunction: 1, freezeBetweenInvocations: freeze }, lines);
      try {
        const c = await connect(small.sockets.find((s) => s.name === "lab")?.url as string);
        const { id } = await c.call({ op: "whoami" });
        expect(await c.call({ op: "later", size: 100, text: "late" })).toEqual({ ok: true });
        await sleep(700);
        const told = lines.filter((l) => l.includes("still pending"));
        if (!freeze) {
          expect(told).toEqual([]);
          expect(c.frames.map((f) => f.text)).toEqual(["late"]);
          c.close();
          continue;
        }
        // Frozen since it answered: the timer has not fired, and the log says why, once.
        expect(c.frames).toEqual([]);
        expect(told).toEqual([
          "lab | nitric-like: warning: a timer was still pending when this function answered an event; Lambda freezes a function once it answers, so it fires only at that execution environment's next event, or never, and the emulator does the same: await what must happen before the handler returns (said once an environment)",
        ]);
        // The next event thaws it: the timer fires, late, beside that event's answer.
        c.ws.send(JSON.stringify({ op: "whoami" }));
        const texts = [(await c.next()).text, (await c.next()).text];
        expect(texts.sort()).toEqual([JSON.stringify({ id }), "late"].sort());
        expect(await c.call({ op: "later", size: 100, text: "later" })).toEqual({ ok: true });
        expect(lines.filter((l) => l.includes("still pending"))).toHaveLength(1);
        c.close();
      } finally {
        await small.stop();
      }
    }
  });

  it("answers an event once the calls its handlers started have ended, so a send nothing awaited goes out before Lambda freezes the function", async () => {
    const c = await connect(url);
    // A kv get and then a send, chained by the handler and awaited by nothing: both end before
    // the runtime answers, so the send arrives first.
    c.ws.send(JSON.stringify({ op: "unawaited", text: "sent anyway" }));
    expect([(await c.next()).text, (await c.next()).text]).toEqual(["sent anyway", JSON.stringify({ ok: true })]);
    c.close();
  });

  it("answers a send to a gone connection once its record is pruned, leaving nothing running as the function freezes", async () => {
    const lines: string[] = [];
    const small = await anotherEmulator({ maxInstancesPerFunction: 1 }, lines);
    try {
      const c = await connect(small.sockets.find((s) => s.name === "lab")?.url as string);
      // The 410 prunes the connection's record: a DeleteItem the answer waits for, so no request
      // (nor its timer) of the runtime's own is left to freeze with the environment.
      const { error } = (await c.call({ op: "send", to: "GoneConnId0000=", text: "x" })) as { error: { code: string } };
      expect(error.code).toBe("not_found");
      expect(await c.call({ op: "whoami" })).toEqual({ id: expect.any(String) });
      expect(lines.filter((l) => l.includes("still pending") || l.includes("could not prune"))).toEqual([]);
      c.close();
    } finally {
      await small.stop();
    }
  });

  it("says which calls a handler left running past the handler timeout, which then wait, frozen, for the function's next events", async () => {
    const lines: string[] = [];
    const small = await anotherEmulator(
      { maxInstancesPerFunction: 1, env: { NITRIC_LIKE_HANDLER_TIMEOUT_MS: "200" } },
      lines,
    );
    try {
      const c = await connect(small.sockets.find((s) => s.name === "lab")?.url as string);
      const id = (await c.call({ op: "whoami" })).id as string;
      // 3,000 kv sets started at once and answered by a send once all are done; the handler returns at once.
      c.ws.send(JSON.stringify({ op: "burst", size: 3000 }));
      // The warning comes 0.2 s after the answer; a loaded machine can take seconds to get there.
      for (let i = 0; i < 500 && !lines.some((l) => l.includes("still running")); i++) await sleep(20);
      const warning = lines.find((l) => l.includes("still running")) ?? "";
      expect(warning.replace(/": \d+ calls/, '": N calls')).toBe(
        `lab | nitric-like: warning: service "lab": N calls its handlers started (a send, a kv or secret call) were still running 0.2 s after the $default event of connection ${id} was handled; Lambda freezes the function once it answers, so they end at its next event, or never: await them in the handler`,
      );
      // Frozen: nothing more happens until another event thaws the function.
      await sleep(500);
      expect(c.frames).toEqual([]);
      const texts: string[] = [];
      for (let i = 0; i < 60 && !texts.some((t) => t.startsWith('{"ok":3000')); i++) {
        c.ws.send(JSON.stringify({ op: "quiet" }));
        await sleep(100);
        texts.push(...c.frames.splice(0).map((f) => f.text));
      }
      expect(texts).toContain(JSON.stringify({ ok: 3000, last: { i: 2999 } }));
      c.close();
    } finally {
      await small.stop();
    }
  });

  it("ends an execution environment that uses more memory than the function's MemorySize, as Lambda does, failing the event it ran", async () => {
    const lines: string[] = [];
    const small = await anotherEmulator({ functionMemoryMb: 160 }, lines);
    try {
      const fn = small.functions.find((f) => f.service === "lab");
      const c = await connect(small.sockets.find((s) => s.name === "lab")?.url as string);
      const { id } = await c.call({ op: "whoami" });
      // Within it: answered.
      expect(await c.call({ op: "hog", size: 10 })).toEqual({ held: 1 });
      expect(await c.call({ op: "hog", size: 200 })).toEqual({ message: "Internal server error", connectionId: id });
      const ended = lines.filter((l) => l.includes("over the function's"));
      expect(ended).toHaveLength(1);
      expect(ended[0]).toMatch(
        new RegExp(
          `^function "${fn?.name}": an execution environment used \\d+ MB, over the function's 160 MB \\(its MemorySize\\), so it is ended as Lambda ends it \\("Runtime exited with error: signal: killed"\\), failing the event it ran; hold less in memory, or give the service more \\(memory: in its services: entry of the project file, up to 10240\\)$`,
        ),
      );
      // The next event gets a new environment, which holds nothing yet.
      expect(await c.call({ op: "hog", size: 1 })).toEqual({ held: 1 });
      c.close();
    } finally {
      await small.stop();
    }
  });

  it("closes a client that pings faster than it takes its pongs with 1008 and the reason, and serves one that waits for each pong", async () => {
    const steady = await connect(url);
    for (let i = 0; i < 200; i++) {
      const pong = new Promise((resolve) => steady.ws.once("pong", resolve));
      steady.ws.ping();
      await pong;
    }
    const flooder = await connect(url);
    const { id } = await flooder.call({ op: "whoami" });
    for (let i = 0; i < 200; i++) flooder.ws.ping();
    const reason =
      "ping flood: 50 pongs wait to be written to you; read them, and wait for a pong before the next ping";
    expect(await flooder.waitClosed()).toEqual({ code: 1008, reason });
    expect(logs).toContain(`API LabApi: closed connection ${id} (1008): ${reason}`);
    expect((await steady.call({ op: "whoami" })).id).toEqual(expect.any(String));
    steady.close();
  });

  it("closes a text frame of invalid UTF-8 with 1007 and the reason, before a function sees it, and logs it", async () => {
    const bystander = await connect(url);
    const c = await connect(url);
    const { id } = await c.call({ op: "whoami" });
    c.ws.send(Buffer.from([0x68, 0xff, 0xfe]), { binary: false });
    const reason = "invalid UTF-8 in a text frame or close reason; send bytes as a binary frame";
    expect(await c.waitClosed()).toEqual({ code: 1007, reason });
    expect(c.frames).toEqual([]);
    expect(logs).toContain(`API LabApi: closed connection ${id} (1007): ${reason}`);
    expect((await bystander.call({ op: "whoami" })).id).toEqual(expect.any(String));
    bystander.close();
  });

  it("closes a frame that breaks RFC 6455 (an unmasked frame, a reserved opcode) with 1002 and the reason", async () => {
    const reason = "protocol error: a frame breaks RFC 6455 (unmasked, bad opcode, bad fragment or close code)";
    // "hi" unmasked, then a masked empty frame of opcode 3.
    expect(await rawClose(url, Buffer.from([0x81, 0x02, 0x68, 0x69]))).toEqual({ code: 1002, reason });
    expect(await rawClose(url, Buffer.from([0x83, 0x80, 1, 2, 3, 4]))).toEqual({ code: 1002, reason });
    expect(logs.filter((l) => l.endsWith(`(1002): ${reason}`)).length).toBeGreaterThanOrEqual(2);
  });

  it("answers a Management or Invoke API request over 6 MB with 413 at once, keeping none of the rest, and serves the next", async () => {
    const management = new URL(emulator.functions[0]?.env.AWS_ENDPOINT_URL_LAMBDA as string);
    const chunk = Buffer.alloc(1024 * 1024, 32);
    const path = "/2015-03-31/functions/any/invocations";
    // Signed as a function would sign it (the body's hash included), so only the size refuses it.
    const headers = signRequest({
      method: "POST",
      url: new URL(path, management),
      body: Buffer.concat(Array.from({ length: 7 }, () => chunk)),
      headers: {},
      service: "lambda",
      region: "us-east-1",
      ...emulator.credentials,
    });
    const answer = await new Promise<{ status: number | undefined; type: unknown; body: string }>((resolve, reject) => {
      const req = request(
        { host: management.hostname, port: management.port, method: "POST", path, headers },
        (res) => {
          let body = "";
          res.on("data", (d) => {
            body += d;
          });
          res.on("end", () => resolve({ status: res.statusCode, type: res.headers["x-amzn-errortype"], body }));
          res.on("error", reject);
        },
      );
      // The upload is cut off once the answer is sent.
      req.on("error", () => {});
      for (let i = 0; i < 7; i++) req.write(chunk);
      req.end();
    });
    expect(answer).toEqual({
      status: 413,
      type: "RequestTooLargeException",
      body: JSON.stringify({ message: "Request must be smaller than 6291456 bytes" }),
    });
    const next = await signedFetch(
      emulator,
      new URL("/2015-03-31/functions/no-such-function/invocations", management),
      "lambda",
      { body: "{}" },
    );
    expect(next.status).toBe(404);
  });

  it("serves the Management and Invoke APIs only to requests signed with the run's credentials, which its functions have", async () => {
    const c = await connect(url);
    const { id } = await c.call({ op: "whoami" });
    const [apiId, api] = [...emulator.apis.entries()][0] as [string, { stage: string }];
    const fn = emulator.functions[0];
    expect(fn?.env.AWS_ACCESS_KEY_ID).toBe(emulator.credentials.accessKeyId);
    expect(fn?.env.AWS_SECRET_ACCESS_KEY).toBe(emulator.credentials.secretAccessKey);
    expect(emulator.credentials.secretAccessKey.length).toBeGreaterThanOrEqual(40);
    const connection = `${emulator.managementUrl}/${apiId}/${api.stage}/@connections/${encodeURIComponent(id as string)}`;
    const refusal = async (answer: Response) => [
      answer.status,
      answer.headers.get("x-amzn-errortype"),
      ((await answer.json()) as { message: string }).message.split(";")[0],
    ];
    expect(await refusal(await fetch(connection, { method: "POST", body: "unsigned" }))).toEqual([
      403,
      "MissingAuthenticationTokenException",
      "Missing Authentication Token: the request is not signed",
    ]);
    expect(await refusal(await fetch(connection))).toEqual([
      403,
      "MissingAuthenticationTokenException",
      "Missing Authentication Token: the request is not signed",
    ]);
    const guessed = await signedFetch(emulator, connection, "execute-api", {
      body: "guessed",
      secretAccessKey: "guess",
    });
    expect((await refusal(guessed)).slice(0, 2)).toEqual([403, "InvalidSignatureException"]);
    const asLambda = await signedFetch(emulator, connection, "lambda", { body: "as lambda" });
    expect((await refusal(asLambda)).slice(0, 2)).toEqual([403, "InvalidSignatureException"]);
    const invocation = `${emulator.managementUrl}/2015-03-31/functions/${fn?.name}/invocations`;
    const event = JSON.stringify({
      requestContext: { routeKey: "$default", connectionId: id, apiId, stage: api.stage },
      body: JSON.stringify({ op: "send-size", size: 3 }),
      isBase64Encoded: false,
    });
    expect((await refusal(await fetch(invocation, { method: "POST", body: event }))).slice(0, 2)).toEqual([
      403,
      "MissingAuthenticationTokenException",
    ]);
    // None of those reached the client; the signed ones do.
    expect((await signedFetch(emulator, connection, "execute-api", { body: "signed" })).status).toBe(200);
    expect((await c.next()).text).toBe("signed");
    expect((await signedFetch(emulator, invocation, "lambda", { body: event })).status).toBe(200);
    expect((await c.next()).text).toBe("xxx");
    c.close();
  });

  it("refuses a Management API request to a stage the API does not have with 403 Forbidden, and logs the endpoint to use", async () => {
    const c = await connect(url);
    const { id } = await c.call({ op: "whoami" });
    const [apiId, api] = [...emulator.apis.entries()][0] as [string, { stage: string }];
    expect(api.stage).toBe("live");
    const at = (stage: string) =>
      `${emulator.managementUrl}/${apiId}/${stage}/@connections/${encodeURIComponent(id as string)}`;
    const logged = logs.length;
    for (const stage of ["prod", "Live", "__proto__"]) {
      for (const method of ["POST", "GET", "DELETE"]) {
        const answer = await signedFetch(emulator, at(stage), "execute-api", { method, body: `to ${stage}` });
        expect([stage, method, answer.status, answer.headers.get("x-amzn-errortype")]).toEqual([
          stage,
          method,
          403,
          "ForbiddenException",
        ]);
        expect(await answer.json()).toEqual({ message: "Forbidden" });
      }
    }
    // Unsigned too: no stage of that name has anything to authenticate.
    expect((await fetch(at("prod"), { method: "POST", body: "unsigned" })).status).toBe(403);
    // One line for the burst, naming the endpoint to use.
    const lines = logs.slice(logged).filter((l) => l.includes("with 403 Forbidden, as API Gateway does"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`has no stage "prod"; its connections are at /${apiId}/live/@connections/{id}`);
    // Nothing reached the client, and the DELETEs did not close it; its own stage serves it.
    await sleep(200);
    expect(c.frames).toEqual([]);
    expect((await signedFetch(emulator, at("live"), "execute-api", { body: "at live" })).status).toBe(200);
    expect((await c.next()).text).toBe("at live");
    c.close();
  });

  it("throttles Management API requests over the account's rate with 429 LimitExceededException, logging once a burst", async () => {
    const lines: string[] = [];
    // 10 a second, a bucket of 5.
    const slow = await anotherEmulator({ callbacksPerSecond: 10 }, lines);
    try {
      const c = await connect(slow.sockets.find((s) => s.name === "lab")?.url as string);
      const { id } = await c.call({ op: "whoami" });
      const [apiId, api] = [...slow.apis.entries()][0] as [string, { stage: string }];
      const connection = `${slow.managementUrl}/${apiId}/${api.stage}/@connections/${encodeURIComponent(id as string)}`;
      const answers = await Promise.all(
        Array.from({ length: 12 }, (_, i) => signedFetch(slow, connection, "execute-api", { body: `post ${i}` })),
      );
      const ok = answers.filter((a) => a.status === 200).length;
      const throttled = answers.filter((a) => a.status === 429);
      expect(ok).toBeGreaterThanOrEqual(5);
      expect(ok).toBeLessThan(12);
      expect(throttled.length).toBe(12 - ok);
      expect(throttled[0]?.headers.get("x-amzn-errortype")).toBe("LimitExceededException");
      // Only the accepted posts reached the client.
      for (let i = 0; i < ok; i++) expect((await c.next()).text).toMatch(/^post \d+$/);
      await sleep(300);
      expect(c.frames).toEqual([]);
      expect(lines.filter((l) => l.includes("over API Gateway's account throttle of 10 requests/s"))).toHaveLength(1);
      // A moment later the bucket has refilled.
      await sleep(500);
      expect((await signedFetch(slow, connection, "execute-api", { body: "later" })).status).toBe(200);
      expect((await c.next()).text).toBe("later");
      c.close();
    } finally {
      await slow.stop();
    }
  });

  it("closes a client that does not read once 8 MB wait for it, answering the next post 410, and serves the others", async () => {
    const lazy = await connect(url);
    const { id } = await lazy.call({ op: "whoami" });
    const other = await connect(url);
    (lazy.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();
    const [apiId, api] = [...emulator.apis.entries()][0] as [string, { stage: string }];
    const post = () =>
      signedFetch(
        emulator,
        `${emulator.managementUrl}/${apiId}/${api.stage}/@connections/${encodeURIComponent(id as string)}`,
        "execute-api",
        { body: "z".repeat(128 * KB) },
      );
    let posted = 0;
    let status = 200;
    while (status === 200 && posted < 1000) {
      status = (await post()).status;
      if (status === 200) posted++;
    }
    expect(status).toBe(410);
    // 8 MB held for it, and what the kernel's buffers took: far from the 128 MB posted at 1,000.
    expect(posted * 128 * KB).toBeGreaterThan(8 * 1024 * KB);
    expect(posted).toBeLessThan(1000);
    expect(logs.some((l) => l.includes(`closed connection ${id} (1008): client not reading`))).toBe(true);
    (lazy.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    expect([1008, 1006]).toContain((await lazy.waitClosed()).code);
    expect((await other.call({ op: "whoami" })).id).toEqual(expect.any(String));
    other.close();
  });

  it("refuses a PostToConnection over 128 KB with 413 PayloadTooLargeException, and a send through the runtime with API Gateway's limit", async () => {
    const c = await connect(url);
    const { id } = await c.call({ op: "whoami" });
    const [apiId, api] = [...emulator.apis.entries()][0] as [string, { stage: string }];
    const management = emulator.functions[0]?.env.AWS_ENDPOINT_URL_LAMBDA as string;
    const post = (size: number) =>
      signedFetch(
        emulator,
        `${management}/${apiId}/${api.stage}/@connections/${encodeURIComponent(id as string)}`,
        "execute-api",
        { body: "y".repeat(size) },
      );
    const refused = await post(128 * KB + 1);
    expect(refused.status).toBe(413);
    expect(refused.headers.get("x-amzn-errortype")).toBe("PayloadTooLargeException");
    expect((await post(128 * KB)).status).toBe(200);
    expect((await c.next()).text).toBe("y".repeat(128 * KB));
    expect(await c.call({ op: "send-size", size: 128 * KB + 1 })).toEqual({
      error: {
        code: "invalid_argument",
        message: 'websocket "lab": the message is too large for API Gateway (at most 128 KB); send less',
      },
    });
    c.close();
  });

  it("refuses a send over 128 KB during connect as it does after, and delivers the rest of what connect sent", async () => {
    const tooLarge = {
      error: {
        code: "invalid_argument",
        message: 'websocket "lab": the message is too large for API Gateway (at most 128 KB); send less',
      },
    };
    // The connect handler's replies come first, then its sends: an oversize reply, which nothing
    // could refuse as it was made, is dropped with a log line, and the frames after it still go.
    const c = await connect(`${url}?early=${128 * KB + 1}`);
    expect((await c.next()).text).toBe(`early send: ${JSON.stringify(tooLarge)}`);
    expect((await c.next()).text).toBe("after early");
    const { id } = await c.call({ op: "whoami" });
    expect(logs.some((l) => l.includes(`a message of ${128 * KB + 1} bytes sent during connect to ${id}`))).toBe(true);
    c.close();
    const fits = await connect(`${url}?early=${128 * KB}`);
    expect((await fits.next()).text).toBe("r".repeat(128 * KB));
    expect((await fits.next()).text).toBe("early send: sent");
    expect((await fits.next()).text).toBe("s".repeat(128 * KB));
    expect((await fits.next()).text).toBe("after early");
    fits.close();
  });

  it("refuses during connect a send its delivery's asynchronous invocation could not carry (Lambda's 1 MB event), and delivers those before it", async () => {
    const c = await connect(`${url}?burst=12`);
    const { sent, refused } = JSON.parse((await c.next()).text) as { sent: number; refused: unknown };
    expect(sent).toBe(7);
    expect(refused).toEqual({
      error: {
        code: "resource_exhausted",
        message: expect.stringContaining(
          "during connect is delivered in one asynchronous Lambda invocation, whose event is at most 1 MB",
        ),
      },
    });
    for (let i = 0; i < sent; i++) expect((await c.next()).text).toBe(String(i).repeat(100 * KB));
    c.close();
    // Replies come only as the handler answers, after its sends were accepted: those with no room
    // left are dropped, said in the log, and the sends and the reply that fits still arrive.
    const full = await connect(`${url}?burst=7&replies=2`);
    expect(JSON.parse((await full.next()).text)).toEqual({ sent: 7, refused: null });
    for (let i = 0; i < 7; i++) expect((await full.next()).text).toBe(String(i).repeat(100 * KB));
    full.close();
    await expect
      .poll(
        () => logs.filter((l) => l.includes("bytes from the connect handler of") && l.includes("did not fit")).length,
      )
      .toBe(2);
    // Lambda's own limit, kept by the emulator's Invoke API: nothing over 1 MB is queued.
    const fn = emulator.functions[0] as { name: string; env: Record<string, string> };
    const invoke = `${fn.env.AWS_ENDPOINT_URL_LAMBDA}/2015-03-31/functions/${fn.name}/invocations`;
    const body = JSON.stringify({ pad: "p".repeat(1024 * KB) });
    const headers = signRequest({
      method: "POST",
      url: new URL(invoke),
      body,
      headers: { "x-amz-invocation-type": "Event" },
      service: "lambda",
      region: "us-east-1",
      ...emulator.credentials,
    });
    const tooLarge = await fetch(invoke, { method: "POST", headers, body });
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.headers.get("x-amzn-errortype")).toBe("RequestEntityTooLargeException");
    expect(await tooLarge.json()).toMatchObject({
      message: `${body.length} byte payload is too large for the Event invocation type (limit ${1024 * KB} bytes)`,
    });
  });

  it("posts a message over 32 KB to its client in frames of at most 32 KB, as API Gateway does", async () => {
    const frames = await rawFrames(url, JSON.stringify({ op: "send-size", size: 100 * KB }), 5);
    const data = frames.filter((f) => f.opcode !== 0x8);
    // The send's message in four frames (text, then continuations), then the command's reply.
    expect(data.slice(0, 4).map((f) => [f.opcode, f.fin, f.length])).toEqual([
      [0x1, false, 32 * KB],
      [0x0, false, 32 * KB],
      [0x0, false, 32 * KB],
      [0x0, true, 4 * KB],
    ]);
    expect(data[4]).toMatchObject({ opcode: 0x1, fin: true });
  });

  it("answers $connect before the connection opens: a refusal is an HTTP status, an acceptance's reply the first frame", async () => {
    await expect(connect(`${url}?reject=not%20you`)).rejects.toMatchObject({ status: 403, body: "not you" });
    const c = await connect(`${url}?greet=early`);
    expect((await c.next()).text).toBe("welcome early");
    c.close();
  });

  it("delivers what the connect handler sent before the answer to a message the client sent as soon as it opened, as locally", async () => {
    // The connect handler's reply goes out through a second invocation of the function, which races
    // the message's own: the message waits until the record says that delivery is done.
    for (let i = 0; i < 12; i++) {
      const c = await connect(`${url}?greet=first${i}`);
      c.ws.send(JSON.stringify({ op: "whoami" }));
      expect((await c.next()).text).toBe(`welcome first${i}`);
      expect(JSON.parse((await c.next()).text)).toHaveProperty("id");
      c.close();
    }
  });

  it("closes a connection idle for the idle timeout, and one at the age limit however busy, with 1001", {
    timeout: 15000,
  }, async () => {
    const started = Date.now();
    const idle = await connect(url);
    const busy = await connect(url);
    const timer = setInterval(() => busy.ws.ping(), 200);
    try {
      expect(await idle.waitClosed()).toEqual({ code: 1001, reason: "Going away" });
      expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
      expect(busy.closed).toBeUndefined();
      expect(await busy.waitClosed()).toEqual({ code: 1001, reason: "Going away" });
      expect(Date.now() - started).toBeGreaterThanOrEqual(3900);
    } finally {
      clearInterval(timer);
    }
  });

  // Last: it empties the account's bucket of new connections.
  it("refuses upgrades over the account's new-connection rate with 429, and takes them again a moment later", async () => {
    await sleep(1000);
    const started = performance.now();
    const clients = await Promise.allSettled(Array.from({ length: 100 }, () => connect(url)));
    const seconds = (performance.now() - started) / 1000;
    const opened = clients.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    const refused = clients.flatMap((r) => (r.status === "rejected" ? [r.reason as { status?: number }] : []));
    // A bucket of one second's worth (20 here), refilled at 20 a second while the 100 upgrades
    // arrive: a loaded machine spreads them over more time, and so lets more in, never more than
    // the bucket and its refill over the whole wait.
    expect(opened.length).toBeGreaterThanOrEqual(20);
    expect(opened.length).toBeLessThanOrEqual(20 + Math.ceil(20 * seconds) + 1);
    expect(refused.length).toBeGreaterThan(0);
    expect(new Set(refused.map((e) => e.status))).toEqual(new Set([429]));
    for (const c of opened) c.close();
    await sleep(300);
    (await connect(url)).close();
  });
});

/** A WebSocket upgrade request for `pathname` (a fresh key), with `extra` header lines. */
function upgradeRequest(pathname: string, extra = "", host = "x", version = "13"): string {
  return `GET ${pathname} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: ${version}\r\n${extra}\r\n`;
}

/**
 * Upgrades a raw connection, writes `bytes` after the 101, and reads until the server's close frame
 * comes (or it ends the connection): the close frame's code and reason.
 */
async function rawClose(url: string, bytes: Buffer): Promise<{ code: number; reason: string }> {
  const { hostname, port, pathname } = new URL(url);
  const socket = createConnection({ host: hostname, port: Number(port) });
  socket.write(upgradeRequest(pathname, "", hostname));
  let buffered = Buffer.alloc(0);
  let wrote = false;
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not closed within 5 s: ${buffered.toString("latin1")}`)), 5000);
      const settle = (close: { code: number; reason: string } | undefined) => {
        if (close === undefined) return;
        clearTimeout(timer);
        resolve(close);
      };
      socket.on("data", (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        const end = buffered.indexOf("\r\n\r\n");
        if (!wrote && end >= 0) {
          wrote = true;
          socket.write(bytes);
        }
        if (end >= 0) settle(closeFrame(buffered.subarray(end + 4)));
      });
      socket.on("error", () => {});
      socket.on("close", () => {
        clearTimeout(timer);
        const received = buffered.subarray(buffered.indexOf("\r\n\r\n") + 4);
        const close = closeFrame(received);
        if (close === undefined) reject(new Error(`no close frame in ${received.toString("latin1")}`));
        else resolve(close);
      });
    });
  } finally {
    socket.destroy();
  }
}

/** The code and reason of the close frame among a server's (unmasked) frames, once it is all there. */
function closeFrame(received: Buffer): { code: number; reason: string } | undefined {
  for (let at = 0; at + 2 <= received.length; ) {
    const len7 = (received[at + 1] as number) & 0x7f;
    const start = at + (len7 === 126 ? 4 : len7 === 127 ? 10 : 2);
    const length =
      len7 === 126 ? received.readUInt16BE(at + 2) : len7 === 127 ? Number(received.readBigUInt64BE(at + 2)) : len7;
    if (start + length > received.length) return undefined;
    if (((received[at] as number) & 0x0f) === 0x8) {
      const payload = received.subarray(start, start + length);
      return { code: payload.readUInt16BE(0), reason: payload.subarray(2).toString("utf8") };
    }
    at = start + length;
  }
  return undefined;
}

/** A client's masked frame (with a zero mask, which leaves the payload as it is). */
function maskedFrame(opcode: number, payload: Buffer): Buffer {
  if (payload.length > 125) throw new Error("maskedFrame: at most 125 bytes");
  return Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | payload.length, 0, 0, 0, 0]), payload]);
}

/** The frame headers a raw client reads after sending one masked text frame, until `count` data frames came. */
async function rawFrames(
  url: string,
  text: string,
  count: number,
): Promise<{ opcode: number; fin: boolean; length: number }[]> {
  const { hostname, port, pathname } = new URL(url);
  const socket = createConnection({ host: hostname, port: Number(port) });
  await new Promise((resolve) => socket.once("connect", resolve));
  socket.write(upgradeRequest(pathname, "", hostname));
  let buffered = Buffer.alloc(0);
  let upgraded = false;
  const frames: { opcode: number; fin: boolean; length: number }[] = [];
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${frames.length} frames arrived`)), 10000);
      socket.on("data", (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        if (!upgraded) {
          const end = buffered.indexOf("\r\n\r\n");
          if (end < 0) return;
          upgraded = true;
          buffered = buffered.subarray(end + 4);
          const payload = Buffer.from(text);
          const mask = randomBytes(4);
          const header =
            payload.length < 126
              ? Buffer.from([0x81, 0x80 | payload.length])
              : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
          socket.write(Buffer.concat([header, mask, payload.map((b, i) => b ^ (mask[i % 4] as number))]));
        }
        for (;;) {
          if (buffered.length < 2) return;
          const len7 = (buffered[1] as number) & 0x7f;
          const at = len7 === 126 ? 4 : len7 === 127 ? 10 : 2;
          if (buffered.length < at) return;
          const length =
            len7 === 126 ? buffered.readUInt16BE(2) : len7 === 127 ? Number(buffered.readBigUInt64BE(2)) : len7;
          if (buffered.length < at + length) return;
          frames.push({ opcode: (buffered[0] as number) & 0x0f, fin: ((buffered[0] as number) & 0x80) !== 0, length });
          buffered = buffered.subarray(at + length);
          if (frames.filter((f) => f.opcode !== 0x8).length >= count) {
            clearTimeout(timer);
            resolve(frames);
            return;
          }
        }
      });
    });
  } finally {
    socket.destroy();
  }
}

/** Two clients of a chat socket: what one sends, the other gets. */
async function chats(url: string, text: string): Promise<void> {
  const [a, b] = [await connect(url), await connect(url)];
  a.ws.send(text);
  expect((await b.next()).text).toBe(text);
  a.close();
  b.close();
}

describe("run --provider aws with a service that fails as it loads", () => {
  it("keeps running, names the cause and what to do (not an unexpected failure), deploys the fixed service on a save, and stops with 0", async () => {
    const project = copyProject(join(EXAMPLES, "chat"));
    const service = join(project, "services", "chat.ts");
    writeFileSync(
      service,
      readFileSync(service, "utf8").replace(
        'const socket = websocket("socket");',
        'const socket = websocket("socket");\nthrow new Error("config service unreachable");',
      ),
    );
    const app = await startApp(project, ["--provider", "aws"]);
    try {
      expect(app.stderr).not.toContain("unexpected failure");
      // The project file's socket is the failed service's: not called unused.
      expect(app.stderr).not.toContain("configures a socket no service declares");
      expect(app.stderr).toContain(
        'error: service "chat" (services/chat.ts:7) failed while its resources were being collected (exited with code 1): config service unreachable',
      );
      expect(app.stderr).toContain("fix it and save: run then deploys the emulated app again with what it declares");
      // Ready, as the app is deployed, but saying which function failed its init.
      expect(app.stderr).toMatch(/^ready: chat, 1 service, but the function of "chat" failed its init \(above\)/m);
      expect(app.stderr).toMatch(
        /error: service "chat": function "\S+" failed its init: config service unreachable; as on Lambda, its next event retries the init in a new execution environment, and fails with it while it fails; fix its module's top level and save/,
      );
      // The dashboard shows the function waiting, with why.
      const services = async () =>
        ((await (await dashboardFetch(app, `/api/state`)).json()) as { services: unknown[] }).services;
      expect(await services()).toEqual([
        {
          name: "chat",
          file: "services/chat.ts",
          state: "waiting",
          reason: expect.stringMatching(/^function "\S+" failed its init: config service unreachable$/),
        },
      ]);
      // Fixed and saved: what it declares now is deployed, its socket printed, and it chats.
      const lacking = (app.stdout + app.stderr).split("which this deployment does not have").length;
      writeFileSync(
        service,
        readFileSync(service, "utf8").replace('throw new Error("config service unreachable");', ""),
      );
      await app.waitFor(/^websocket socket ws:/m, 30000);
      expect(app.stderr).toContain(
        "services/chat.ts changed what it declares: deploying the emulated app again (its clients reconnect)",
      );
      await chats(app.url("socket"), "fixed");
      expect(await services()).toEqual([
        {
          name: "chat",
          file: "services/chat.ts",
          state: "hosted",
          // The chat's clients have just left: their disconnect events may still run.
          detail: expect.stringMatching(/^[1-8] execution environments?, (idle|[1-8] running an event)$/),
        },
      ]);
      expect((app.stdout + app.stderr).split("which this deployment does not have")).toHaveLength(lacking);
    } finally {
      expect((await app.stop()).code).toBe(0);
    }
  }, 60000);
});

describe("run --provider aws --no-watch with a service that fails as it loads", () => {
  it("exits 1 once the others are deployed, with the failed service's cause and that --no-watch cannot wait for a fix, as the local provider does, instead of a ready it cannot keep", async () => {
    const project = copyProject(join(EXAMPLES, "chat"));
    writeFileSync(
      join(project, "services", "loading.ts"),
      [
        'import { websocket } from "@nitric-like/sdk";',
        'throw new Error("bad config:\\n  DB_URL is missing");',
        'websocket("loading").on("message", () => {});',
      ].join("\n"),
    );
    const { code, stdout, stderr } = await runCli(
      ["run", project, "--provider", "aws", "--random-ports", "--plain", "--no-dashboard", "--no-watch"],
      { timeoutMs: 40000 },
    );
    expect(code, stderr).toBe(1);
    expect(stderr).toContain(
      'error: service "loading" (services/loading.ts:2) failed while its resources were being collected (exited with code 1): bad config:\n    DB_URL is missing\n  fix it, then start run again (--no-watch: it does not watch files)\n',
    );
    expect(stderr).toContain(
      'error: service "loading" did not start, and with --no-watch it does not start again, so run cannot be ready: fix the problems above and start run again (without --no-watch, run serves the other services while you fix it)\n',
    );
    expect(stdout).toBe("");
    expect(stderr).not.toMatch(/^ready/m);
    expect(stderr).not.toContain("no service is running");
    expect(stderr).not.toContain("unexpected failure");
  }, 60000);
});

describe("run --provider aws with a function whose init throws an error of several lines", () => {
  it("says the error as run says a local service's: its further lines indented below, a huge one cut with a note, none standing on its own", async () => {
    const project = copyProject(join(EXAMPLES, "chat"));
    const service = join(project, "services", "chat.ts");
    // Only in the function (the collect pass runs without Lambda's variables), so spec passes. A
    // second function's message is far longer than a failure shows.
    writeFileSync(
      service,
      `${readFileSync(service, "utf8")}\nif (process.env.AWS_LAMBDA_FUNCTION_NAME) throw new Error("bad config:\\n  PORT is missing\\n  HOST is missing");\n`,
    );
    writeFileSync(
      join(project, "services", "lines.ts"),
      [
        'import { websocket } from "@nitric-like/sdk";',
        'websocket("lines").on("message", () => {});',
        "if (process.env.AWS_LAMBDA_FUNCTION_NAME)",
        '  throw new Error("many lines:\\n" + Array.from({ length: 5000 }, (_, i) => "line " + i).join("\\n"));',
      ].join("\n"),
    );
    const app = await startApp(project, ["--provider", "aws"]);
    try {
      const said = "bad config:\n    PORT is missing\n    HOST is missing\n  ";
      expect(app.stderr).toMatch(/^error: service "chat": function "\S+" failed its init: bad config:$/m);
      expect(app.stderr).toContain(
        `failed its init: ${said}as on Lambda, its next event retries the init in a new execution environment, and fails with it while it fails; fix its module's top level and save\n`,
      );
      expect(app.stderr).toContain(
        `warning: service "chat" is not serving yet: function "emulated-ChatFunction" failed its init: ${said}each event retries its init (as Lambda does) and fails while it fails\n`,
      );
      // Bounded as run bounds a local service's message.
      const cut = "... (the message is cut here: a failure shows at most 20 lines, 2000 characters of it)";
      const lines = Array.from({ length: 19 }, (_, i) => `    line ${i}\n`).join("");
      expect(app.stderr).toContain(`failed its init: many lines:\n${lines}    ${cut}\n  as on Lambda`);
      expect(app.stderr).not.toContain("line 19\n");
      // An event retries the init, which fails again: said once, the same way.
      const client = new WebSocket(`${app.url("socket")}?name=ann`);
      client.on("error", () => {});
      await app.waitFor(/failing the event that started it/, 30000);
      expect(app.stderr).toContain(
        `error: service "chat": function "emulated-ChatFunction" failed its init: ${said}failing the event that started it (and those that waited for it);`,
      );
      client.terminate();
      // No line of the error stands on its own.
      expect(app.stderr).not.toMatch(/^(PORT|HOST) is missing/m);
      expect(app.stderr).not.toMatch(/^line \d/m);
    } finally {
      expect((await app.stop()).code).toBe(0);
    }
  }, 60000);
});

describe("run --provider aws while services come, go and declare more", () => {
  it("restarts a function alone when a saved service declares the same, and deploys the emulated app again, each socket on its port, when a service is added, declares more, is gone, or is renamed", async () => {
    const project = copyProject(join(EXAMPLES, "chat"));
    const services = join(project, "services");
    const app = await startApp(project, ["--provider", "aws"]);
    try {
      const chatUrl = app.url("socket");
      const chat = join(services, "chat.ts");
      // The same declarations: its function alone restarts.
      writeFileSync(chat, `${readFileSync(chat, "utf8")}\n// a comment\n`);
      await app.waitFor(/service "chat" restarted/, 30000);
      expect(app.stderr).not.toContain("deploying the emulated app again");

      // A new service file: deployed with its socket, which answers; the old socket keeps its URL.
      writeFileSync(
        join(services, "shout.ts"),
        [
          'import { websocket } from "@nitric-like/sdk";',
          'const shout = websocket("shout");',
          'shout.on("connect", () => {});',
          'shout.on("disconnect", () => {});',
          'shout.on("message", (ctx) => ctx.text().toUpperCase());',
        ].join("\n"),
      );
      await app.waitFor(/^websocket shout ws:/m, 30000);
      expect(app.stderr).toContain(
        'services/shout.ts is a new service ("shout"): deploying the emulated app again (its clients reconnect)',
      );
      const shouter = await connect(app.url("shout"));
      shouter.ws.send("hey");
      expect((await shouter.next()).text).toBe("HEY");
      shouter.close();
      expect(app.url("socket")).toBe(chatUrl);
      await chats(chatUrl, "still chatting");

      // A service that declares one more kv store: deployed again, and the store works.
      writeFileSync(
        join(services, "shout.ts"),
        [
          'import { kv, websocket } from "@nitric-like/sdk";',
          'const shout = websocket("shout");',
          'const seen = kv<{ n: number }>("seen").allow("get", "set");',
          'shout.on("connect", () => {});',
          'shout.on("disconnect", () => {});',
          "shout.on('message', async (ctx) => {",
          "  const n = ((await seen.get('count').catch(() => ({ n: 0 }))).n ?? 0) + 1;",
          "  await seen.set('count', { n });",
          "  return ctx.text().toUpperCase() + ' ' + n;",
          "});",
        ].join("\n"),
      );
      await app.waitFor(/services\/shout\.ts changed what it declares/, 30000);
      await app.waitFor(/deployed again in[\s\S]*deployed again in/, 30000);
      const counter = await connect(app.url("shout"));
      counter.ws.send("one");
      expect((await counter.next()).text).toBe("ONE 1");
      counter.ws.send("two");
      expect((await counter.next()).text).toBe("TWO 2");
      counter.close();

      // Gone: deployed again without it; its socket no longer listens, the chat goes on.
      const shoutUrl = app.url("shout");
      unlinkSync(join(services, "shout.ts"));
      await app.waitFor(/services\/shout\.ts is gone: deploying the emulated app again without service "shout"/, 30000);
      await app.waitFor(/deployed again in[\s\S]*deployed again in[\s\S]*deployed again in/, 30000);
      const refused = await new Promise<string>((resolve) => {
        const ws = new WebSocket(shoutUrl);
        ws.on("open", () => resolve("open"));
        ws.on("error", (error) => resolve((error as NodeJS.ErrnoException).code ?? error.message));
      });
      expect(refused).toBe("ECONNREFUSED");
      await chats(chatUrl, "after");

      // Back while something else took its port: it listens on a free one, printed anew.
      const squatter = createServer();
      await new Promise<void>((resolve) => squatter.listen(Number(new URL(shoutUrl).port), "127.0.0.1", resolve));
      try {
        writeFileSync(
          join(services, "shout.ts"),
          [
            'import { websocket } from "@nitric-like/sdk";',
            'const shout = websocket("shout");',
            'shout.on("connect", () => {});',
            'shout.on("disconnect", () => {});',
            'shout.on("message", (ctx) => ctx.text().toUpperCase());',
          ].join("\n"),
        );
        await app.waitFor(/(^websocket shout ws:[\s\S]*){2}/m, 30000);
        expect(app.url("shout")).not.toBe(shoutUrl);
        const back = await connect(app.url("shout"));
        back.ws.send("back");
        expect((await back.next()).text).toBe("BACK");
        back.close();
      } finally {
        squatter.close();
      }

      // Renamed: deployed without it, then with it under its new name; its socket keeps its URL.
      renameSync(chat, join(services, "talk.ts"));
      await app.waitFor(/services\/talk\.ts is a new service \("talk"\)/, 30000);
      await app.waitFor(/(deployed again in[\s\S]*){6}/, 30000);
      await chats(chatUrl, "renamed");
      expect(app.stderr).not.toMatch(/unexpected failure|which this deployment does not have/);
    } finally {
      expect((await app.stop()).code).toBe(0);
    }
  }, 120000);
});

describe("run --provider aws restarting a function while an event runs", () => {
  it("says which function a save restarted while an event ran past the 2 s drain, and that the event was cut", async () => {
    const service = [
      'import { websocket } from "@nitric-like/sdk";',
      'const socket = websocket("socket");',
      'socket.on("connect", () => {});',
      'socket.on("disconnect", () => {});',
      "socket.on('message', async (ctx) => {",
      "  if (ctx.text() === 'slow') {",
      "    console.log('slow event started');",
      // Long enough to outlast the save's bundling and collect pass (seconds on a loaded machine)
      // and the 2 s drain: only the restart ends it.
      "    await new Promise((resolve) => setTimeout(resolve, 25000));",
      "  }",
      "  return ctx.text();",
      "});",
    ].join("\n");
    const project = writeProject({
      // The handler timeout (5 s by default) would otherwise end the slow event itself, before
      // the drain ends, when the save takes over 3 s (two bundles and a collect pass, on a loaded
      // machine) to reach the restart: then the restart cuts nothing.
      "nitric-like.yaml": "name: cut\nlimits:\n  handlerTimeout: 28s\nservices:\n  - match: services/*.ts\n",
      "services/slow.ts": service,
    });
    // Started on a loaded machine too (the test is about timing): the start may take longer than 20 s.
    const app = await startApp(project, ["--provider", "aws", "--no-dashboard"], {}, { readyTimeoutMs: 60000 });
    try {
      const client = await connect(app.url("socket"));
      client.ws.send("slow");
      // Running, not waiting for its environment's init: a save during an init carries the event over instead.
      await app.waitFor(/slow event started/, 20000);
      // The same declarations: the function alone restarts, waiting 2 s for the slow event first.
      writeFileSync(join(project, "services/slow.ts"), `${service}\n// saved\n`);
      await app.waitFor(/service "slow" restarted/, 30000);
      const said = (app.stdout + app.stderr).split("\n").filter((l) => l.includes("restarted it while"));
      expect(said).toHaveLength(1);
      expect(said[0]).toMatch(
        /service "slow" \(function "[^"]*Slow[^"]*"\): a saved change restarted it while an event still ran past the 2 s it waits for events in flight, so that event was cut short/,
      );
      // Its client is told, as API Gateway tells one whose function failed; the new code serves the next.
      expect(JSON.parse((await client.next()).text).message).toBe("Internal server error");
      client.ws.send("fast");
      expect((await client.next()).text).toBe("fast");
      client.close();
    } finally {
      expect((await app.stop()).code).toBe(0);
    }
  }, 120000);
});

describe("run --provider aws runs a function where Lambda does", () => {
  it("in its own folder (LAMBDA_TASK_ROOT), so a path relative to the working directory fails as on AWS, not found in the project", async () => {
    const project = writeProject({
      "nitric-like.yaml": "name: where\nservices:\n  - match: services/*.ts\n",
      "data/words.txt": "alpha\n",
      "services/where.ts": [
        'import { existsSync } from "node:fs";',
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("socket");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        "socket.on('message', (ctx) => JSON.stringify({",
        "  root: process.env.LAMBDA_TASK_ROOT === process.cwd(),",
        '  bundle: existsSync("index.cjs"),',
        '  project: existsSync("data/words.txt") || existsSync("nitric-like.yaml"),',
        "}));",
      ].join("\n"),
    });
    const app = await startApp(project, ["--provider", "aws", "--no-dashboard"]);
    try {
      const client = await connect(app.url("socket"));
      client.ws.send("where");
      expect(JSON.parse((await client.next()).text)).toEqual({ root: true, bundle: true, project: false });
      client.close();
    } finally {
      expect((await app.stop()).code).toBe(0);
    }
  }, 60000);
});

describe("a function bundled as CommonJS", () => {
  it("gives its ES modules import.meta as Node would, the bundle's own, so createRequire(import.meta.url) at a module's top level does not fail its init", async () => {
    const project = writeProject({
      "nitric-like.yaml": "name: meta\nservices:\n  - match: services/*.ts\n",
      "services/meta.ts": [
        'import { createRequire } from "node:module";',
        'import { basename } from "node:path";',
        'import { fileURLToPath } from "node:url";',
        'import { websocket } from "@nitric-like/sdk";',
        "// As lmdb, msgpackr and many ES module packages do as they load.",
        "const require = createRequire(import.meta.url);",
        "const here = fileURLToPath(import.meta.url);",
        'const socket = websocket("socket");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        "socket.on('message', () => JSON.stringify({",
        "  file: basename(here),",
        "  filename: import.meta.filename === here,",
        '  dirname: import.meta.dirname + "/" + basename(here) === here,',
        '  require: typeof require("node:path").join,',
        "}));",
      ].join("\n"),
    });
    const app = await startApp(project, ["--provider", "aws", "--no-dashboard"]);
    try {
      const client = await connect(app.url("socket"));
      client.ws.send("where");
      expect(JSON.parse((await client.next()).text)).toEqual({
        file: "index.cjs",
        filename: true,
        dirname: true,
        require: "function",
      });
      client.close();
    } finally {
      expect((await app.stop()).code).toBe(0);
    }
  }, 60000);
});

describe("run --provider aws when a redeploy cannot start", () => {
  it("says so and why, and the next saved change deploys the app again", async () => {
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(0, "127.0.0.1", resolve));
    const taken = (squatter.address() as { port: number }).port;
    const project = writeProject({
      "nitric-like.yaml": `name: pinned\nservices:\n  - match: services/*.ts\nwebsockets:\n  extra:\n    port: ${taken}\n`,
      "services/first.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const first = websocket("first");',
        'first.on("connect", () => {});',
        'first.on("disconnect", () => {});',
        'first.on("message", (ctx) => "first " + ctx.text());',
      ].join("\n"),
    });
    // Not startApp: its --random-ports would ignore the pin.
    const app = new App(
      project,
      spawn(process.execPath, [CLI, "run", project, "--provider", "aws", "--plain", "--dashboard-port", "0"], {
        env: { ...process.env, NO_COLOR: "1" },
      }),
    );
    await app.waitFor(/^ready: /m);
    const extra = join(project, "services", "extra.ts");
    const service = [
      'import { websocket } from "@nitric-like/sdk";',
      'const extra = websocket("extra");',
      'extra.on("connect", () => {});',
      'extra.on("disconnect", () => {});',
      'extra.on("message", (ctx) => "extra " + ctx.text());',
    ].join("\n");
    try {
      writeFileSync(extra, service);
      await app.waitFor(
        /the emulated app is not running: fix that and save a service's file to deploy it again/,
        30000,
      );
      expect(app.stderr).toContain(`websocket "extra": port ${taken} is already in use`);
      // The dashboard shows the app down, with why.
      const state = (await (await dashboardFetch(app, `/api/state`)).json()) as {
        services: { name: string; state: string; reason?: string }[];
      };
      expect(state.services.find((s) => s.name === "first")).toMatchObject({
        state: "waiting",
        reason: expect.stringContaining(
          `the emulated app is not running: websocket "extra": port ${taken} is already in use`,
        ),
      });
      // Freed, and the file saved as it was: deployed, both sockets serve.
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
      writeFileSync(extra, `${service}\n`);
      await app.waitFor(/^websocket extra ws:/m, 30000);
      expect(app.url("extra")).toBe(`ws://127.0.0.1:${taken}/live`);
      const client = await connect(app.url("extra"));
      client.ws.send("hi");
      expect((await client.next()).text).toBe("extra hi");
      client.close();
      const first = await connect(app.url("first"));
      first.ws.send("back");
      expect((await first.next()).text).toBe("first back");
      first.close();
    } finally {
      squatter.close();
      expect((await app.stop()).code).toBe(0);
    }
  }, 90000);
});

describe("run --provider aws with options for run's own service processes", () => {
  it("says that --tcp and --processes change nothing when the emulator starts the functions itself", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: flags\nservices:\n  - match: services/*.ts\n",
      "services/echo.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("echo");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", (ctx) => ctx.text());',
      ].join("\n"),
    });
    const app = await startApp(dir, ["--provider", "aws", "--tcp", "--processes"]);
    try {
      expect(app.stderr).toContain(
        'warning: --tcp: provider "aws" starts the services itself, so no endpoint of run\'s listens for them on 127.0.0.1 and they get no NITRIC_SERVICE_HOST/PORT; drop --tcp, or use --provider local',
      );
      expect(app.stderr).toContain(
        'warning: --processes: provider "aws" starts the services itself (as it would in the cloud), so --processes changes nothing for them and only keeps the collect pass in processes (for a NODE_OPTIONS a worker thread refuses); drop it otherwise',
      );
      const client = await connect(app.url("echo"));
      client.ws.send("hi");
      expect((await client.next()).text).toBe("hi");
      client.close();
    } finally {
      expect((await app.stop()).code).toBe(0);
    }
  }, 60000);
});

describe("run --provider aws --env-from", () => {
  it("gives every function the file's variables, as up would, and not the .env files, and deploys again when the file changes", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: vars\nservices:\n  - match: services/*.ts\n",
      "services/vars.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("vars");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", () => JSON.stringify({ GREETING: process.env.GREETING ?? null, LOCAL_ONLY: process.env.LOCAL_ONLY ?? null }));',
      ].join("\n"),
      ".env": "LOCAL_ONLY=yes\n",
      "deploy.env": "GREETING=hello from the file\n",
    });
    const app = await startApp(dir, ["--provider", "aws", "--env-from", join(dir, "deploy.env")]);
    try {
      expect(app.stderr).toContain("deploy.env: 1 variable (GREETING) in every function's environment");
      expect(app.stderr).toContain(
        'warning: .env: provider "aws" starts the services itself, without these variables, as a deploy does; to give its functions a file\'s variables, as "up --env-from" deploys them, run with --env-from <file>',
      );
      // The dashboard names what the functions get, never a value.
      const state = (await (await dashboardFetch(app, `/api/state`)).json()) as { env: unknown };
      expect(state.env).toEqual({ files: [join(dir, "deploy.env")], names: ["GREETING"] });
      const client = await connect(app.url("vars"));
      client.ws.send("?");
      expect(JSON.parse((await client.next()).text)).toEqual({ GREETING: "hello from the file", LOCAL_ONLY: null });
      client.close();
      // The file saved: the app is deployed again with its new variables.
      writeFileSync(join(dir, "deploy.env"), "GREETING=changed\n");
      await app.waitFor(/--env-from changed: deploying the emulated app again[\s\S]*deployed again in/, 30000);
      const again = await connect(app.url("vars"));
      again.ws.send("?");
      expect(JSON.parse((await again.next()).text)).toEqual({ GREETING: "changed", LOCAL_ONLY: null });
      again.close();
    } finally {
      expect((await app.stop()).code).toBe(0);
    }
  }, 60000);
});

describe("run --env-from given from outside the project", () => {
  it.each(["local", "aws"])(
    "reads a file named relative to where run started again when it changes (%s), after run moved into the project's folder",
    async (provider) => {
      const dir = writeProject({
        "app/nitric-like.yaml": "name: varsfrom\nservices:\n  - match: services/*.ts\n",
        "app/services/vars.ts": [
          'import { websocket } from "@nitric-like/sdk";',
          'const socket = websocket("vars");',
          'socket.on("message", () => JSON.stringify({ GREETING: process.env.GREETING ?? null }));',
        ].join("\n"),
        "deploy.env": "GREETING=hello\n",
      });
      // run starts beside the project (in the folder that holds the file), and moves into the
      // project's folder for its threads (the local provider's services, the collect pass).
      const app = await startApp(
        join(dir, "app"),
        ["--provider", provider, "--env-from", "deploy.env"],
        {},
        { cwd: dir },
      );
      try {
        const ask = async (want: string) => {
          let got: unknown;
          for (let i = 0; i < 200 && got !== want; i++) {
            try {
              const client = await connect(app.url("vars"));
              client.ws.send("?");
              got = (JSON.parse((await client.next()).text) as { GREETING: unknown }).GREETING;
              client.close();
            } catch {
              // Under aws, the app is being deployed again: its clients reconnect.
            }
            if (got !== want) await sleep(100);
          }
          return got;
        };
        expect(await ask("hello")).toBe("hello");
        const from = app.stderr.length;
        writeFileSync(join(dir, "deploy.env"), "GREETING=changed\n");
        expect(await ask("changed")).toBe("changed");
        expect(app.stderr.slice(from)).not.toMatch(/no such file|error/);
      } finally {
        expect((await app.stop()).code).toBe(0);
      }
    },
    60000,
  );
});

describe("run --provider aws prints what a service prints where run prints it", () => {
  it("puts a function's stdout on run's stdout and its stderr on run's stderr, as the local provider does", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: prints\nservices:\n  - match: services/*.ts\n",
      "services/prints.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("prints");',
        'socket.on("connect", () => {});',
        'socket.on("disconnect", () => {});',
        'socket.on("message", (ctx) => { console.log(`out ${ctx.text()}`); console.error(`err ${ctx.text()}`); return "ok"; });',
      ].join("\n"),
    });
    for (const args of [[], ["--provider", "aws"]]) {
      const app = await startApp(dir, args);
      try {
        const client = await connect(app.url("prints"));
        client.ws.send("hello");
        expect((await client.next()).text).toBe("ok");
        client.close();
        await app.waitFor(/err hello[\s\S]*out hello|out hello[\s\S]*err hello/);
        expect(app.stdout, args.join(" ")).toMatch(/^prints +\| out hello$/m);
        expect(app.stdout, args.join(" ")).not.toContain("err hello");
        expect(app.stderr, args.join(" ")).toMatch(/^prints +\| err hello$/m);
        expect(app.stderr, args.join(" ")).not.toContain("out hello");
      } finally {
        expect((await app.stop()).code).toBe(0);
      }
    }
  }, 60000);
});

describe("sends during connect under compat: aws and under run --provider aws", () => {
  it("refuses the same sends, delivers the same frames, and logs the same oversize replies", async () => {
    const KB = 1024;
    const project = copyProject(join(FIXTURES, "lab-ours"));
    appendFileSync(join(project, "nitric-like.yaml"), "compat: aws\n");
    const seen: Record<string, unknown[]> = {};
    for (const args of [[], ["--provider", "aws"]]) {
      const app = await startApp(project, args);
      const frames: unknown[] = [];
      try {
        // A reply and a send over 128 KB: the send refused as it is made, the reply left out and logged.
        const early = await connect(`${app.url("lab")}?early=${128 * KB + 1}`);
        frames.push((await early.next()).text, (await early.next()).text);
        early.close();
        await app.waitFor(
          /a message of 131073 bytes sent during connect to \S+ is over API Gateway's limit \(128 KB\)/,
        );
        // 100 KB sends until what the delivery invocation's 1 MB event carries is full.
        const burst = await connect(`${app.url("lab")}?burst=12`);
        const summary = JSON.parse(
          (await burst.next()).text.replace(/connection \S+ during connect/, "connection <id> during connect"),
        ) as { sent: number };
        frames.push(summary);
        for (let i = 0; i < summary.sent; i++) frames.push((await burst.next()).text.length);
        // Replies past what that event still has room for are left out (logged); the sends go.
        const full = await connect(`${app.url("lab")}?burst=7&replies=2`);
        frames.push(JSON.parse((await full.next()).text));
        for (let i = 0; i < 7; i++) frames.push((await full.next()).text.length);
        full.close();
        await app.waitFor(/a reply of 102400 bytes from the connect handler of \S+ did not fit/);
        // A message handler's reply over 128 KB is not sent, and is logged; its other reply is.
        frames.push(await burst.call({ op: "reply-size", size: 128 * KB + 1 }));
        await app.waitFor(/a reply of 131073 bytes to connection \S+ is over API Gateway's limit \(128 KB\)/);
        burst.ws.send(JSON.stringify({ op: "reply-size", size: 128 * KB }));
        frames.push((await burst.next()).text.length, JSON.parse((await burst.next()).text));
        burst.close();
      } finally {
        expect((await app.stop()).code).toBe(0);
      }
      seen[args.join(" ") || "local"] = frames;
    }
    expect(seen.local).toEqual([
      `early send: ${JSON.stringify({ error: { code: "invalid_argument", message: 'websocket "lab": the message is too large for API Gateway (at most 128 KB); send less' } })}`,
      "after early",
      {
        sent: 7,
        refused: {
          error: {
            code: "resource_exhausted",
            message:
              'websocket "lab": what is sent to connection <id> during connect is delivered in one asynchronous Lambda invocation, whose event is at most 1 MB (about 750 KB of messages), and this send would not fit; send the rest once the connection is open',
          },
        },
      },
      ...Array(7).fill(100 * KB),
      { sent: 7, refused: null },
      ...Array(7).fill(100 * KB),
      { ok: true },
      128 * KB,
      { ok: true },
    ]);
    expect(seen["--provider aws"]).toEqual(seen.local);
  }, 90000);
});

describe("run --provider aws, one at a time per project", () => {
  it("refuses a second run of the same project, naming the first, and takes over from one that was killed", async () => {
    const project = copyProject(join(EXAMPLES, "chat"));
    const pidFile = join(project, ".nitric-like", "aws-run.pid");
    const first = await startApp(project, ["--provider", "aws"]);
    try {
      expect(readFileSync(pidFile, "utf8").trim()).toBe(String(first.child.pid));
      const second = await runCli(["run", project, "--provider", "aws", "--random-ports", "--plain"], {
        timeoutMs: 30000,
      });
      expect(second.code).toBe(1);
      expect(second.stderr).toContain(
        `error: another "nitric-like run --provider aws" of this project is running (process ${first.child.pid})`,
      );
      expect(second.stderr).not.toMatch(/unexpected failure|hang up/);
      // The first still serves.
      await chats(first.url("socket"), "still here");
    } finally {
      expect((await first.stop()).code).toBe(0);
    }
    expect(existsSync(pidFile)).toBe(false);
    // A run killed without a stop leaves its file: the next run takes over.
    const gone = spawnSync(process.execPath, ["-e", "process.pid"]).pid as number;
    writeFileSync(pidFile, `${gone}\n`);
    const next = await startApp(project, ["--provider", "aws"]);
    expect(readFileSync(pidFile, "utf8").trim()).toBe(String(next.child.pid));
    expect((await next.stop()).code).toBe(0);
  }, 90000);
});

describe("run --provider aws killed outright", () => {
  it("leaves no function process behind, frozen or running", async () => {
    const app = await startApp(copyProject(join(EXAMPLES, "chat")), ["--provider", "aws"]);
    const runPid = app.child.pid as number;
    await chats(app.url("socket"), "before the kill");
    // The functions' execution environments: run's child processes (frozen now, between events).
    const workers = execFileSync("pgrep", ["-P", String(runPid)], { encoding: "utf8" })
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map(Number)
      .filter((pid) => readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("emulator/worker"));
    expect(workers.length).toBeGreaterThan(0);
    process.kill(runPid, "SIGKILL");
    // Gone, or a zombie its new parent has not reaped: no longer running either way.
    const alive = (pid: number) => {
      try {
        return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
      } catch {
        return false;
      }
    };
    for (let i = 0; i < 100 && workers.some(alive); i++) await sleep(50);
    expect(workers.filter(alive)).toEqual([]);
    await app.stop().catch(() => {});
  }, 60000);
});

describe("run --provider aws stopped while a function's init hangs", () => {
  const echo = [
    'import { websocket } from "@nitric-like/sdk";',
    'const socket = websocket("socket");',
    'socket.on("connect", () => {});',
    'socket.on("disconnect", () => {});',
    'socket.on("message", (ctx) => ctx.text());',
  ].join("\n");
  // On Lambda only (not in the collect pass): the function's init never finishes.
  const hang =
    "if (process.env.AWS_LAMBDA_FUNCTION_NAME !== undefined) await new Promise(() => setInterval(() => {}, 1000));";
  /** The emulator's function processes of `project` still running (not zombies). */
  const workersOf = (project: string) =>
    readdirSync("/proc")
      .filter((pid) => /^\d+$/.test(pid))
      .filter((pid) => {
        try {
          const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
          return (
            cmdline.includes("emulator/worker") &&
            cmdline.includes(project) &&
            !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"))
          );
        } catch {
          return false;
        }
      });

  it.each([
    {
      change: "a restart",
      more: "",
      began: /services\/echo\.ts changed: restarting service "echo"/,
      said: /^service "echo": its restart was given up, as the run stopped [\d.]+ s into it, before its function finished starting$/m,
    },
    {
      change: "a redeploy",
      more: 'websocket("other").on("message", (ctx) => ctx.text());',
      began:
        /services\/echo\.ts changed what it declares: deploying the emulated app again[\s\S]*wrote .*template\.json/,
      said: /^deploying the emulated app again was given up: run stopped while the functions were starting; service "echo": its function's init had not finished after [\d.]+ s, and is ended$/m,
    },
  ])(
    "gives up $change at once on Ctrl-C, says whose init it waited for, and leaves nothing running",
    async ({ more, began, said }) => {
      const project = writeProject({
        "nitric-like.yaml": "name: hangs\nservices:\n  - match: services/*.ts\n",
        "services/echo.ts": echo,
      });
      const app = await startApp(project, ["--provider", "aws"]);
      writeFileSync(join(project, "services", "echo.ts"), [echo, more, hang].join("\n"));
      await app.waitFor(began, 30000);
      // Its new function is starting (and will not finish): Ctrl-C.
      await sleep(1500);
      const stopped = Date.now();
      const { code } = await app.stop();
      // Not the emulator's 10 s init limit (Lambda's), nor the stop's 5 s wait for a change under way.
      expect(Date.now() - stopped).toBeLessThan(4500);
      expect(code).toBe(0);
      expect(app.stderr).toMatch(said);
      expect(app.stderr).not.toMatch(/^error:/m);
      // Nothing came up after the stop: no socket of the new deployment, no function left.
      expect(app.stdout).not.toContain("websocket other");
      expect(workersOf(project)).toEqual([]);
    },
    90000,
  );
});

describe("a third-party provider", () => {
  /** The chat example with the echo provider installed beside our SDK, as a package manager would. */
  function projectWithEcho(): string {
    const project = copyProject(join(EXAMPLES, "chat"));
    const shared = join(project, "node_modules");
    const sdk = realpathSync(join(shared, "@nitric-like", "sdk"));
    rmSync(shared);
    mkdirSync(join(project, "node_modules", "@nitric-like"), { recursive: true });
    symlinkSync(sdk, join(project, "node_modules", "@nitric-like", "sdk"), "dir");
    symlinkSync(join(FIXTURES, "provider-echo"), join(project, "node_modules", "nitric-like-provider-echo"), "dir");
    return project;
  }

  it("is found by its package name and builds, deploys and removes through the provider interface", async () => {
    const project = projectWithEcho();
    const provider = ["--provider", "nitric-like-provider-echo", "--plain"];
    const built = await runCli(["build", project, ...provider]);
    expect(built.stderr).toContain("echo: built 1 service(s)");
    expect(built.code).toBe(0);
    const written = JSON.parse(readFileSync(join(project, ".nitric-like", "echo", "echo-spec.json"), "utf8"));
    expect(written.services).toEqual(["chat"]);
    expect(written.spec.resources.map((r: { name: string }) => r.name)).toEqual(["socket", "connections"]);

    const up = await runCli(["up", project, "--stack", "demo", ...provider]);
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout.trim()).toBe("websocket socket wss://echo.example/demo/socket");
    expect(existsSync(join(project, ".echo-cloud", "demo.json"))).toBe(true);

    const down = await runCli(["down", project, "--stack", "demo", ...provider]);
    expect(down.code, down.stderr).toBe(0);
    expect(existsSync(join(project, ".echo-cloud", "demo.json"))).toBe(false);

    const errors = await runCli(["build", project, "--provider", "nitric-like-provider-nowhere", "--plain"]);
    expect(errors.stderr).toContain("providers found: local, aws, nitric-like-provider-echo");
  }, 60000);
});
