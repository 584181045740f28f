// The poison bench's service: echoes every message, except that "die" makes it exit.
import { websocket } from "@nitric-like/sdk";

const socket = websocket("chat");
socket.on("connect", () => {});
socket.on("disconnect", () => {});
socket.on("message", (ctx) => {
  if (ctx.text() === "die") process.exit(1);
  return `echo ${ctx.text()}`;
});
