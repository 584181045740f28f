// A build's output folder as run --provider aws uses it: the emulator's restart of one service
// (bundleFunction into the build folder) and the full builds of a redeploy (buildAws, written in a
// staging folder and put in place) must leave each function folder with one bundle, the current one.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadProject, type Spec } from "@nitric-like/spec";
import { afterAll, expect, it } from "vitest";
import { buildAws } from "../src/build/build.js";
import { bundleFunction } from "../src/build/bundle.js";

const NODE_MODULES = fileURLToPath(new URL("../../../packages/conformance/node_modules", import.meta.url));
const root = mkdtempSync(join(tmpdir(), "nitric-like-aws-staging-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const spec: Spec = {
  name: "staged",
  services: [{ name: "chat", file: "services/chat.ts" }],
  resources: [
    {
      kind: "websocket",
      name: "socket",
      declaredBy: ["chat"],
      handlers: { connect: "chat", disconnect: "chat", message: "chat" },
    },
  ],
  policies: [{ service: "chat", resource: { kind: "websocket", name: "socket" }, permissions: ["manage"] }],
};
const logger = { info: () => {}, warn: () => {}, error: () => {} };

/** The service's code: `mark` in its bundle; an ES module when `awaits`. */
const code = (mark: string, awaits: boolean) =>
  [
    'import { websocket } from "@nitric-like/sdk";',
    awaits ? "await Promise.resolve();" : "",
    'const socket = websocket("socket");',
    'socket.on("connect", () => {});',
    'socket.on("disconnect", () => {});',
    `socket.on("message", (ctx) => ctx.reply(${JSON.stringify(mark)}));`,
  ].join("\n");

it("leaves one bundle per function when a full build follows a restart that changed the bundle's format", async () => {
  mkdirSync(join(root, "services"), { recursive: true });
  writeFileSync(join(root, "nitric-like.yaml"), "name: staged\nservices:\n  - match: services/*.ts\n");
  symlinkSync(NODE_MODULES, join(root, "node_modules"), "dir");
  const path = join(root, "services", "chat.ts");
  const service = { name: "chat", file: "services/chat.ts", path };
  const outDir = join(root, "out");
  const build = () => buildAws({ project: loadProject(root), spec, services: [service], outDir, logger });
  const fn = join(outDir, "functions", "chat");

  writeFileSync(path, code("first", false));
  await build();
  expect(existsSync(join(fn, "index.cjs"))).toBe(true);
  // run --provider aws restarts the saved service alone: now an ES module.
  writeFileSync(path, code("restarted", true));
  await bundleFunction(root, service, outDir);
  expect(existsSync(join(fn, "index.mjs"))).toBe(true);
  expect(existsSync(join(fn, "index.cjs"))).toBe(false);
  // A redeploy builds it all again, CommonJS: the restart's index.mjs, which the emulator (as
  // Lambda) would load first, is gone with its map.
  writeFileSync(path, code("redeployed", false));
  await build();
  expect(readFileSync(join(fn, "index.cjs"), "utf8")).toContain("redeployed");
  expect(existsSync(join(fn, "index.mjs"))).toBe(false);
  expect(existsSync(join(fn, "index.mjs.map"))).toBe(false);
}, 60000);
