// A second copy of a service on its endpoint (started by hand with the service's SERVICE_ADDRESS,
// under run --processes) registers the service's handlers again: it gets their events while it
// runs, and once it stops the running service handles them again: it does not lose them for good,
// as it would if its stream were ended with OK, which the SDKs take as "stop". Through the real
// CLI, a real ws client and two copies of a service of our SDK; and of @nitric/sdk.
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { cleanTemp, connect, startApp, stopAll, writeProject } from "../src/harness.js";

const copies: ChildProcess[] = [];

afterEach(async () => {
  for (const c of copies.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

/** A service answering each message with `who` and the message, printing its endpoint once loaded. */
function service(sdk: "ours" | "nitric", who: string): string {
  return sdk === "ours"
    ? [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("socket");',
        "socket.on('connect', () => {});",
        "socket.on('disconnect', () => {});",
        `socket.on('message', (ctx) => ${JSON.stringify(`${who} `)} + ctx.text());`,
        'console.log("endpoint=" + process.env.SERVICE_ADDRESS);',
      ].join("\n")
    : [
        'import { websocket } from "@nitric/sdk";',
        'const socket = websocket("socket");',
        "socket.on('connect', (ctx) => ctx);",
        "socket.on('disconnect', (ctx) => ctx);",
        "socket.on('message', async (ctx) => {",
        `  await socket.send(ctx.req.connectionId, ${JSON.stringify(`${who} `)} + Buffer.from(ctx.req.data).toString());`,
        "  return ctx;",
        "});",
        'console.log("endpoint=" + process.env.SERVICE_ADDRESS);',
      ].join("\n");
}

/** What one message gets back from the socket (a fresh client each time). */
async function answerOf(url: string, text: string): Promise<string> {
  const client = await connect(url);
  try {
    client.ws.send(text);
    return (await client.next(15000)).text;
  } finally {
    client.close();
  }
}

describe.each(["ours", "nitric"] as const)(
  "a second copy of a service on its endpoint (%s SDK), under run --processes",
  (sdk) => {
    it("gets the service's events while it runs, and the service handles them again once it stops", async () => {
      const dir = writeProject({
        "nitric-like.yaml": "name: secondcopy\nservices:\n  - match: services/*.ts\n",
        "services/chat.ts": service(sdk, "service"),
        // Not a service of the project: started by hand below, as a user would.
        "copy/chat.mjs": service(sdk, "copy"),
      });
      const app = await startApp(dir, ["--no-dashboard", "--no-watch", "--processes"]);
      await app.waitFor(/endpoint=\S+/);
      const endpoint = /endpoint=(\S+)/.exec(app.stdout)?.[1] ?? "";
      expect(await answerOf(app.url("socket"), "one")).toBe("service one");

      const copy = spawn(process.execPath, [join(dir, "copy/chat.mjs")], {
        cwd: dir,
        env: { ...process.env, SERVICE_ADDRESS: endpoint, NITRIC_ENVIRONMENT: "run" },
        stdio: ["ignore", "pipe", "pipe"],
      });
      copies.push(copy);
      let copyOut = "";
      copy.stdout?.on("data", (d: Buffer) => {
        copyOut += d.toString();
      });
      copy.stderr?.on("data", (d: Buffer) => {
        copyOut += d.toString();
      });
      // The copy's registrations are in once it answers.
      let got = "";
      for (let deadline = Date.now() + 20000; got !== "copy two" && Date.now() < deadline; )
        got = await answerOf(app.url("socket"), "two");
      expect(got, copyOut).toBe("copy two");

      const exited = new Promise((resolve) => copy.once("exit", resolve));
      copy.kill("SIGTERM");
      await exited;
      // Straight back to the service: no wait for a handler that would never come back.
      const started = Date.now();
      expect(await answerOf(app.url("socket"), "three")).toBe("service three");
      expect(Date.now() - started).toBeLessThan(5000);
      await app.waitFor(/the earlier stream of service "chat", which registered it before, handles its events again/);
      expect(app.stdout + app.stderr).not.toMatch(/did not register within|has not registered it since it started/);
    }, 90000);
  },
);
