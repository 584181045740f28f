// A broadcast chat: every message a client sends goes to every OTHER connected client.
// Connections are kept in a kv store, so they survive a service restart.
import { isNitricLikeError, kv, websocket } from "@nitric-like/sdk";

const connections = kv("connections").allow("get", "set", "delete");
const socket = websocket("socket");

socket.on("connect", async (ctx) => {
  await connections.set(ctx.connectionId, { connectedAt: Date.now() });
});

socket.on("disconnect", async (ctx) => {
  await connections.delete(ctx.connectionId);
});

socket.on("message", async (ctx) => {
  for await (const id of connections.keys()) {
    if (id === ctx.connectionId) continue;
    await socket.send(id, ctx.text()).catch(async (error) => {
      // A connection left over from an earlier run: forget it.
      if (isNitricLikeError(error) && error.code === "not_found") await connections.delete(id);
      else throw error;
    });
  }
});
