// Messages a client sent just before it closed, in the AWS emulator: API Gateway invokes a route's
// function as each message arrives (Lambda cannot take an invocation back), so they run although
// their client has gone, beside or after its $disconnect. The emulator, which holds a message while
// its function's execution environments are all busy (where Lambda would start more), runs it
// still, once one is free. A real service whose handlers write what they ran to a file, in the
// emulator over dynalite, with one execution environment.

import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type RunningDynalite, startDynalite, startEmulator } from "@nitric-like/provider-aws/emulator";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanTemp, connect, runCli, sleep, writeProject } from "../src/harness.js";

afterAll(cleanTemp);

const SERVICE = [
  'import { appendFileSync } from "node:fs";',
  'import { websocket } from "@nitric-like/sdk";',
  'const socket = websocket("socket");',
  "const ran = (what) => appendFileSync(process.env.RAN_FILE, `${what}\\n`);",
  'socket.on("connect", () => {});',
  'socket.on("disconnect", (ctx) => ran(`disconnect ${ctx.connectionId}`));',
  'socket.on("message", async (ctx) => {',
  '  const [name, ms] = ctx.text().split(":");',
  "  if (Number(ms) > 0) await new Promise((r) => setTimeout(r, Number(ms)));",
  "  ran(`message ${name} ${ctx.connectionId}`);",
  "  return `answered ${name}`;",
  "});",
].join("\n");

describe("the AWS emulator, for a client that closed with messages waiting", () => {
  let db: RunningDynalite;
  let out = "";
  let ranFile = "";

  beforeAll(async () => {
    const project = writeProject({
      "nitric-like.yaml": "name: closing\nservices:\n  - match: services/*.ts\n",
      "services/closing.ts": SERVICE,
    });
    out = join(project, "out");
    ranFile = join(project, "ran");
    const { code, stderr } = await runCli(["build", project, "--provider", "aws", "--out", out, "--plain"]);
    expect(code, stderr).toBe(0);
    db = await startDynalite();
  }, 60000);
  afterAll(async () => {
    await db?.close();
  });

  it("runs the messages a client sent before it closed, as API Gateway invokes each as it arrives, and its $disconnect, dropping only the replies", async () => {
    writeFileSync(ranFile, "");
    const lines: string[] = [];
    const emulator = await startEmulator({
      buildDir: out,
      dynamodbEndpoint: db.endpoint,
      credentials: db.credentials,
      env: { RAN_FILE: ranFile },
      maxInstancesPerFunction: 1,
      logger: { info: (m) => lines.push(m), warn: (m) => lines.push(m), error: (m) => lines.push(m) },
    });
    try {
      const client = await connect(emulator.sockets[0]?.url as string);
      await new Promise<void>((resolve) => {
        client.ws.send("first:600");
        // The other messages wait for the one environment, busy with the first.
        client.ws.send("second");
        client.ws.send("third");
        client.ws.once("close", () => resolve());
        setTimeout(() => client.close(), 100);
      });
      const ran = () => readFileSync(ranFile, "utf8").split("\n").filter(Boolean);
      // Closed while the first still ran and the others waited.
      expect(ran()).toEqual([]);
      const deadline = Date.now() + 5000;
      while (ran().length < 4 && Date.now() < deadline) await sleep(50);
      const events = ran().map((line) => line.split(" ").slice(0, -1).join(" "));
      // One environment: each in the order it came.
      expect(events).toEqual(["message first", "message second", "message third", "disconnect"]);
      // All of one connection.
      expect(new Set(ran().map((line) => line.split(" ").at(-1))).size).toBe(1);
      // Their replies had nowhere to go: dropped, as API Gateway drops them, nothing said as failed.
      expect(lines.filter((l) => /error|fail|gone|dropped/i.test(l))).toEqual([]);
    } finally {
      await emulator.stop();
    }
  });
});
