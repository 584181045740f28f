// A service's own files read what sits beside their SOURCE, as Node gives a module its place
// (`new URL("./x", import.meta.url)`, `fileURLToPath(import.meta.url)`, `__dirname`), although
// `run` and `spec` run them bundled into .nitric-like/build: in every mode of `run`, in `spec`'s
// collect pass, and after `build --provider aws` (which copies the files into the function).
import { afterAll, describe, expect, it } from "vitest";
import { cleanTemp, connect, runCli, startApp, stopAll, writeProject } from "../src/harness.js";

afterAll(async () => {
  await stopAll();
  cleanTemp();
});

/** A project whose service reads files beside its source in each way Node code does. */
function project(): string {
  return writeProject({
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
      "const socket = websocket(config.socket);",
      'socket.on("connect", () => {});',
      'socket.on("disconnect", () => {});',
      'socket.on("message", async (ctx) => {',
      '  const worker = new Worker(new URL("./config-worker.js", import.meta.url));',
      '  const fromWorker = await new Promise((resolve) => worker.once("message", resolve));',
      "  await worker.terminate();",
      "  await ctx.reply(JSON.stringify({",
      '    url: readFileSync(new URL("./greeting.txt", import.meta.url), "utf8").trim(),',
      '    dir: readFileSync(join(here, "greeting.txt"), "utf8").trim(),',
      '    cjs: readFileSync(join(__dirname, "greeting.txt"), "utf8").trim(),',
      "    file: __filename === fileURLToPath(import.meta.url),",
      "    word: word(),",
      "    fromWorker,",
      "  }));",
      "});",
    ].join("\n"),
    "services/lib/word.ts": [
      'import { readFileSync } from "node:fs";',
      'export const word = () => readFileSync(new URL("./word.txt", import.meta.url), "utf8").trim();',
    ].join("\n"),
    "services/lib/word.txt": "deep\n",
    "services/config.json": '{"socket":"beside"}',
    "services/greeting.txt": "hello\n",
    "services/config-worker.js": 'require("node:worker_threads").parentPort.postMessage("worker");\n',
  });
}

const EXPECTED = { url: "hello", dir: "hello", cjs: "hello", file: true, word: "deep", fromWorker: "worker" };

/** Runs the project with `mode` and checks every way of reading beside the source. */
async function readsBeside(mode: string[]): Promise<void> {
  const app = await startApp(project(), mode);
  try {
    const client = await connect(app.url("beside"));
    client.ws.send("hi");
    expect(JSON.parse((await client.next()).text)).toEqual(EXPECTED);
    client.close();
  } finally {
    expect((await app.stop()).code).toBe(0);
  }
}

describe("a service's own place", () => {
  it("finds the files beside its source under run (worker threads): import.meta.url, its dirname and __dirname", async () => {
    await readsBeside([]);
  }, 60000);

  it("finds the files beside its source under run --processes", async () => {
    await readsBeside(["--processes"]);
  }, 60000);

  it("finds the files beside its source under run --single-thread", async () => {
    await readsBeside(["--single-thread"]);
  }, 60000);

  it("is its source file's in spec's collect pass, so a config read beside it at load names the socket", async () => {
    const { code, stdout, stderr } = await runCli(["spec", project(), "--json", "--plain"]);
    expect(code, stderr).toBe(0);
    expect(stdout).toContain('"beside"');
  }, 60000);
});
