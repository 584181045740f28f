// Broadcast: any message is sent to every open connection (the sender included), in one call
// that the provider fans out.
import { websocket } from "@nitric-like/sdk";

const socket = websocket("broadcast");
socket.on("connect", () => {});
socket.on("disconnect", () => {});
socket.on("message", async (ctx) => {
  await socket.broadcast(ctx.data);
});
