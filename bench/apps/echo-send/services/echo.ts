// Echo through socket.send: one SendMessage round trip per message, as Nitric apps do it.
import { websocket } from "@nitric-like/sdk";

const socket = websocket("echo");
socket.on("connect", () => {});
socket.on("disconnect", () => {});
socket.on("message", async (ctx) => {
  await socket.send(ctx.connectionId, ctx.text());
});
