// The flood benchmark's service. A message starting with "b" keeps the service busy for 8 s (a
// synchronous loop: nothing else runs in it meanwhile); "p<n>" asks for n messages of 256 KB;
// anything else is answered "ok".
import { websocket } from "@nitric-like/sdk";

const socket = websocket("flood");
const chunk = new Uint8Array(256 * 1024);
socket.on("connect", () => {});
socket.on("disconnect", () => {});
socket.on("message", async (ctx) => {
  const first = ctx.data[0];
  if (first === 0x62) {
    const end = Date.now() + 8000;
    while (Date.now() < end) {
      // busy
    }
    return;
  }
  if (first === 0x70) {
    const n = Number(ctx.text().slice(1)) || 0;
    for (let i = 0; i < n; i++) {
      try {
        await socket.send(ctx.connectionId, chunk);
      } catch {
        return; // closed as not reading
      }
    }
    return;
  }
  return "ok";
});
