// Frame kinds follow the message: seed 002's Nitric tutorial code (fixtures/seed-002: verbatim but
// for the import), run by the real CLI, with ws clients reading each frame's kind (ws's isBinary,
// what makes a browser hand over a string or a Blob). The seed echoes to the sender once for every
// other connection (its own slip), which is what the test waits for.
import { appendFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { cleanTemp, connect, copyProject, FIXTURES, startApp, stopAll } from "../src/harness.js";

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

describe("frame kinds follow the message", () => {
  it.each([
    { how: "in a worker thread", args: [] as string[], aws: false, compat: false },
    { how: "in a process", args: ["--processes"], aws: false, compat: false },
    { how: "on the AWS emulator", args: ["--provider", "aws"], aws: true, compat: false },
    { how: "in a worker thread under compat: aws", args: [] as string[], aws: true, compat: true },
  ])(
    "seed 002's socket.send(id, ctx.req.data) answers a text message with text and a binary one with binary (service $how)",
    async ({ args, aws, compat }) => {
      const project = copyProject(join(FIXTURES, "seed-002"));
      if (compat) appendFileSync(join(project, "nitric-like.yaml"), "compat: aws\n");
      const app = await startApp(project, args);
      const sender = await connect(app.url("socket"));
      const other = await connect(app.url("socket"));
      // The connect handler stores the connection before the upgrade completes, but give the
      // second connection's write a moment to land before the first message lists them.
      await new Promise((r) => setTimeout(r, 100));
      sender.ws.send("héllo, text");
      const text = await sender.next();
      expect(text.binary).toBe(false);
      expect(text.text).toBe("héllo, text");
      sender.ws.send("");
      const empty = await sender.next();
      expect(empty.binary).toBe(false);
      expect(empty.data.length).toBe(0);
      sender.ws.send(Buffer.from([0, 1, 2, 255]));
      if (aws) {
        // API Gateway takes no binary frame from a client: it closes the connection with 1003 (and
        // so does the local provider under compat: aws).
        expect((await sender.waitClosed()).code).toBe(1003);
        expect(sender.frames).toEqual([]);
      } else {
        const binary = await sender.next();
        expect(binary.binary).toBe(true);
        expect([...binary.data]).toEqual([0, 1, 2, 255]);
      }
      expect(other.frames).toEqual([]);
      sender.close();
      other.close();
    },
    30000,
  );
});
