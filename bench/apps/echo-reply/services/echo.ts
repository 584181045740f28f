// Echo through the reply path: the answer rides on the event response, no extra round trip.
import { websocket } from "@nitric-like/sdk";

const socket = websocket("echo");
socket.on("connect", () => {});
socket.on("disconnect", () => {});
socket.on("message", (ctx) => ctx.text());
