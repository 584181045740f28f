// Code copied from the pages that started the project, imports and all: Ampt's WebSocket page
// imports @ampt/sdk and @ampt/data, and seed 002's tutorial imports collection() from @nitric/sdk,
// whose 1.x versions have none. nitric-like has each of them in a module of its own, so what the
// user sees says to import that one, at the import's line: not "install @ampt/sdk" (Ampt's own
// SDK, which would never call a handler here) nor esbuild's `import_sdk.collection is not a
// function`. Architect's functions send with @architect/functions' arc.ws.send, which a socket's
// send() replaces. Through the real CLI.
import { afterAll, describe, expect, it } from "vitest";
import { cleanTemp, runCli, writeProject } from "../src/harness.js";

afterAll(cleanTemp);

const PROJECT = "name: seeds\nservices:\n  - match: services/*.ts\n";

/** Ampt's "Listening for Events" and "Managing Connections", as the page prints their imports. */
const AMPT_PAGE = `import { ws } from "@ampt/sdk";
import { data } from "@ampt/data";

ws.on("connected", async (connection) => {
  await data.set(\`connection:\${connection.connectionId}\`, { connectionId: connection.connectionId });
});

ws.on("disconnected", async (connection) => {
  await data.remove(\`connection:\${connection.connectionId}\`);
});

ws.on("message", (connection, message) => {});
`;

/** Seed 002's imports and its first lines, as the tutorial prints them. */
const SEED_002 = `import { websocket, collection } from "@nitric/sdk";

const connections = collection("connections").for(
"reading",
"writing",
"deleting"
);

const socket = websocket("socket");

socket.on("connect", async (ctx) => {
await connections.doc(ctx.req.connectionId).set({});
});
socket.on("disconnect", async (ctx) => {
await connections.doc(ctx.req.connectionId).delete();
});
socket.on("message", async (ctx) => {});
`;

const AMPT_SDK =
  "services/tracker.ts:1:20: nitric-like does not run @ampt/sdk, Ampt's own SDK (it needs Ampt's runtime), but has its ws interface: import { ws } from \"@nitric-like/sdk/ampt\" (README: Code written for Ampt)";
const AMPT_DATA =
  "services/tracker.ts:2:22: nitric-like does not run @ampt/data, Ampt's own data store, but has the part of it Ampt's WebSocket page uses (get, set, remove): import { data } from \"@nitric-like/sdk/ampt/data\" (README: Code written for Ampt)";

describe("Ampt's page with its own imports", () => {
  it("is refused at @ampt/sdk's and @ampt/data's imports by spec, run and build, naming what to import instead", async () => {
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/tracker.ts": AMPT_PAGE });
    for (const args of [
      ["spec", dir],
      ["run", dir, "--random-ports", "--no-dashboard", "--no-watch"],
      ["build", dir, "--provider", "aws"],
    ]) {
      const { code, stderr } = await runCli(args, { timeoutMs: 60000 });
      expect(code, `${args[0]}: ${stderr}`).toBe(1);
      expect(stderr, args[0]).toContain(AMPT_SDK);
      expect(stderr, args[0]).toContain(AMPT_DATA);
      expect(stderr, args[0]).not.toMatch(/install it|Cannot find package/);
    }
  }, 120000);

  it("is refused the same when Ampt's packages are installed, whose handlers nothing here would call", async () => {
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/tracker.ts": AMPT_PAGE,
      // Stand-ins for the packages as npm installs them: a package.json and a module each.
      "node_modules/@ampt/sdk/package.json": '{ "name": "@ampt/sdk", "version": "1.0.0", "main": "index.js" }\n',
      "node_modules/@ampt/sdk/index.js": "exports.ws = { on() {} };\n",
      "node_modules/@ampt/data/package.json": '{ "name": "@ampt/data", "version": "1.0.0", "main": "index.js" }\n',
      "node_modules/@ampt/data/index.js": "exports.data = {};\n",
    });
    const { code, stderr } = await runCli(["spec", dir]);
    expect(code, stderr).toBe(1);
    expect(stderr).toContain(AMPT_SDK);
    expect(stderr).toContain(AMPT_DATA);
  }, 60000);
});

/** Architect's ws-default sending with @architect/functions, as ESM and as CommonJS. */
const ARC_ESM = `import arc from "@architect/functions";
import { websocket } from "@nitric-like/sdk";

websocket("ws").on("message", async (ctx) => {
  await arc.ws.send({ id: ctx.connectionId, payload: { text: ctx.text() } });
});
`;
const ARC_CJS = `const arc = require("@architect/functions");

exports.handler = async function ws(event) {
  await arc.ws.send({ id: event.requestContext.connectionId, payload: { text: event.body } });
  return { statusCode: 200 };
};
`;

const ARC_INSTEAD =
  'nitric-like does not run @architect/functions, Architect\'s helpers for its Lambda functions (they call the API Gateway Architect deployed); use a socket instead: import { websocket } from "@nitric-like/sdk", and arc.ws.send({ id, payload }) is websocket("ws").send(id, payload), arc.ws.close({ id }) is websocket("ws").close(id) (README: Code written for Architect)';

describe("Architect's functions with @architect/functions", () => {
  it("are refused at the import by spec, run and build, naming the socket calls to use instead", async () => {
    for (const [file, source, at] of [
      ["services/ws-default.ts", ARC_ESM, "1:17"],
      ["services/ws-default.js", ARC_CJS, "1:21"],
    ] as const) {
      const dir = writeProject({
        "nitric-like.yaml": "name: arc\nservices:\n  - match: services/*.*s\n",
        [file]: source,
      });
      for (const args of [
        ["spec", dir],
        ["run", dir, "--random-ports", "--no-dashboard", "--no-watch"],
        ["build", dir, "--provider", "aws"],
      ]) {
        const { code, stderr } = await runCli(args, { timeoutMs: 60000 });
        expect(code, `${args[0]}: ${stderr}`).toBe(1);
        expect(stderr, args[0]).toContain(`${file}:${at}: ${ARC_INSTEAD}`);
        expect(stderr, args[0]).not.toMatch(/install it|Cannot find (package|module)/);
      }
    }
    // Installed, its helpers would call an API Gateway that is not there: refused the same.
    const dir = writeProject({
      "nitric-like.yaml": PROJECT,
      "services/ws-default.ts": ARC_ESM,
      "node_modules/@architect/functions/package.json":
        '{ "name": "@architect/functions", "version": "8.0.0", "main": "index.js" }\n',
      "node_modules/@architect/functions/index.js": "exports.ws = { send() {} };\n",
    });
    const { code, stderr } = await runCli(["spec", dir]);
    expect(code, stderr).toBe(1);
    expect(stderr).toContain(`services/ws-default.ts:1:17: ${ARC_INSTEAD}`);
  }, 240000);
});

describe("seed 002's collection() imported from @nitric/sdk", () => {
  it("says @nitric/sdk has none, at the import's line, and to import it from @nitric-like/sdk", async () => {
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/messaging.ts": SEED_002 });
    const { code, stderr } = await runCli(["run", dir, "--random-ports", "--no-dashboard", "--no-watch"], {
      timeoutMs: 60000,
    });
    expect(code, stderr).toBe(1);
    expect(stderr).toContain(
      'error: service "messaging" (services/messaging.ts:1) failed while its resources were being collected (exited with code 1): @nitric/sdk 1.2.2 has no collection(), which the service imports from it\n' +
        '  nitric-like keeps Nitric\'s earlier document API in its own SDK: import { collection } from "@nitric-like/sdk" (README: collection(name).for(...))',
    );
    expect(stderr).not.toContain("is not a function");
  }, 90000);

  it.each(["spec", "build"])(
    "says so under %s too, at the import's line, not Node's SyntaxError of a missing export",
    async (command) => {
      const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/messaging.ts": SEED_002 });
      const { code, stderr } = await runCli([command, dir], { timeoutMs: 60000 });
      expect(code, stderr).toBe(1);
      expect(stderr).toContain(
        'error: service "messaging" (services/messaging.ts): exited with code 1 while its resources were being collected, at services/messaging.ts:1: @nitric/sdk 1.2.2 has no collection(), which the service imports from it\n' +
          '  nitric-like keeps Nitric\'s earlier document API in its own SDK: import { collection } from "@nitric-like/sdk" (README: collection(name).for(...))',
      );
      expect(stderr).not.toContain("does not provide an export named");
    },
    90000,
  );
});
