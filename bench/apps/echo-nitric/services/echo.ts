// Echo on the published @nitric/sdk 1.2.2.
import { websocket } from "@nitric/sdk";

const socket = websocket("echo");
socket.on("connect", (ctx) => ctx);
socket.on("disconnect", (ctx) => ctx);
socket.on("message", async (ctx) => {
  await socket.send(ctx.req.connectionId, ctx.req.text());
  return ctx;
});
