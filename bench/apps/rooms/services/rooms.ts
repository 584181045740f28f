// Room broadcast: a connection that asks (`?room=r`) joins room "r" in its connect handler; any
// message is sent to every connection in room "r" but the sender, in one call the provider fans out.
import { websocket } from "@nitric-like/sdk";

const socket = websocket("rooms");
const room = socket.room("r");
socket.on("connect", async (ctx) => {
  if (ctx.query.room) await ctx.connection.join("r");
});
socket.on("disconnect", () => {});
socket.on("message", async (ctx) => {
  await room.broadcast(ctx.data, { except: ctx.connectionId });
});
