// Frame kinds follow the message: seed 002's Nitric tutorial code, verbatim but for the import, run
// by the real CLI on the local provider, with ws clients reading each frame's kind (ws's isBinary,
// what makes a browser hand over a string or a Blob).
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { cleanTemp, connect, startApp, stopAll, writeProject } from "../src/harness.js";

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

// From the seed, as published: only "@nitric/sdk" became "@nitric-like/sdk". It echoes to the
// sender once for every other connection (the tutorial's own slip), which is what the test waits for.
const SEED_002 = `import { websocket, collection } from "@nitric-like/sdk";
const connections = collection("connections").for(
"reading",
"writing",
"deleting"
);
const socket = websocket("socket");
socket.on("connect", async (ctx) => {
// Store the new connection in the collection
await connections.doc(ctx.req.connectionId).set({});
});
socket.on("disconnect", async (ctx) => {
// Remove the disconnected client from the collection
await connections.doc(ctx.req.connectionId).delete();
});
socket.on("message", async (ctx) => {
// Get all connections from the collection
const allConnections = await connections.query().stream();
// Create a promise that resolves when the stream ends
const streamEnd = new Promise<any>((res) => allConnections.on("end", res));
//Broadcast the incoming message to all connected clients except the sender
allConnections.on("data", async (connection) => {
if (connection.id !== ctx.req.connectionId) {
await socket.send(ctx.req.connectionId, ctx.req.data);
}
});
// Wait for the stream to end
await streamEnd;
});
`;

describe("frame kinds follow the message", () => {
  it.each([
    { how: "a worker thread", args: [] as string[] },
    { how: "a process", args: ["--processes"] },
  ])(
    "seed 002's socket.send(id, ctx.req.data) answers a text message with text and a binary one with binary (service in $how)",
    async ({ args }) => {
      const dir = writeProject({
        "nitric-like.yaml": "name: seed-two\nservices:\n  - match: services/*.ts\n",
        "services/messages.ts": SEED_002,
      });
      const app = await startApp(dir, args);
      const sender = await connect(app.url("socket"));
      const other = await connect(app.url("socket"));
      // The connect handler stores the connection before the upgrade completes, but give the
      // second connection's write a moment to land before the first message lists them.
      await new Promise((r) => setTimeout(r, 100));
      sender.ws.send("héllo, text");
      const text = await sender.next();
      expect(text.binary).toBe(false);
      expect(text.text).toBe("héllo, text");
      sender.ws.send(Buffer.from([0, 1, 2, 255]));
      const binary = await sender.next();
      expect(binary.binary).toBe(true);
      expect([...binary.data]).toEqual([0, 1, 2, 255]);
      sender.ws.send("");
      const empty = await sender.next();
      expect(empty.binary).toBe(false);
      expect(empty.data.length).toBe(0);
      expect(other.frames).toEqual([]);
      sender.close();
      other.close();
    },
    30000,
  );
});
