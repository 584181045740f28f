// The project file is strict, through the real CLI: every unknown key at every level and every
// bad value is listed at once with what was meant, and nothing runs; a socket configured for no
// service is a warning that spec, run and build print and go on.
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { cleanTemp, runCli, startApp, stopAll, tempDir, writeProject } from "../src/harness.js";

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

const SERVICE = [
  'import { websocket } from "@nitric-like/sdk";',
  'const socket = websocket("chat");',
  'socket.on("connect", () => {});',
  'socket.on("disconnect", () => {});',
  'socket.on("message", (ctx) => ctx.text());',
].join("\n");

const BROKEN = [
  "name: My App",
  "services:",
  "  - match: services/*.ts",
  "    env: { TOKEN: x }",
  "websocket:",
  "  chat: { port: 4000 }",
  "websockets:",
  "  chat:",
  "    prot: 4000",
  "limits:",
  "  idleTimeout: 10",
  "",
].join("\n");

const PROBLEMS = [
  "error: nitric-like.yaml: websocket is not a setting; did you mean websockets?",
  'error: nitric-like.yaml: name "My App" cannot be a stack name: it must start with a letter and have only letters, digits and hyphens; use name: my-app',
  "error: nitric-like.yaml: services[0].env is not a setting; services[0] takes match, start, memory",
  "error: nitric-like.yaml: websockets.chat.prot is not a setting; did you mean websockets.chat.port?",
  "error: nitric-like.yaml: limits.idleTimeout is 10: use a duration from 1ms to 168h with its unit (ms, s, m, h), such as 10m",
  "error: the project file has 5 problems (listed above)",
];

describe("a strict project file", () => {
  it.each(["spec", "run", "build"])(
    "makes %s list every problem with what was meant, exit 1 and run nothing",
    async (command) => {
      const dir = writeProject({ "nitric-like.yaml": BROKEN, "services/chat.ts": SERVICE });
      const extra = command === "run" ? ["--random-ports", "--plain", "--no-dashboard"] : [];
      const out = command === "build" ? ["--out", join(tempDir(), "out")] : [];
      const { code, stdout, stderr } = await runCli([command, ".", ...extra, ...out], { cwd: dir });
      expect(code).toBe(1);
      expect(stderr.trim().split("\n")).toEqual(PROBLEMS);
      expect(stdout).toBe("");
      // Refused before anything is bundled or collected.
      expect(stderr).not.toMatch(/bundling|collecting|ready/);
    },
    30000,
  );

  it("warns about a socket configured for no service (spec, build, run) and goes on", async () => {
    const dir = writeProject({
      "nitric-like.yaml": [
        "name: chat-app",
        "services:",
        "  - match: services/*.ts",
        "websockets:",
        "  chta:",
        "    limits: { maxConnections: 5 }",
        "",
      ].join("\n"),
      "services/chat.ts": SERVICE,
    });
    const warning =
      'warning: nitric-like.yaml: websockets.chta configures a socket no service declares (websocket("chta")), so its settings apply to nothing; did you mean chat?';
    const spec = await runCli(["spec", dir]);
    expect(spec.code).toBe(0);
    expect(JSON.parse(spec.stdout).name).toBe("chat-app");
    expect(spec.stderr).toContain(warning);
    const build = await runCli(["build", dir, "--out", join(tempDir(), "out")], { timeoutMs: 60000 });
    expect(build.code).toBe(0);
    expect(build.stderr).toContain(warning);
    const app = await startApp(dir);
    expect(app.stderr).toContain(warning);
    expect(app.url("chat")).toMatch(/^ws:/);
  }, 90000);
});
