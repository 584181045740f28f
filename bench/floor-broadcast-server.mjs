// The broadcast floor on one thread: a `ws` server that builds each message's frame once (ws's
// Sender.frame) and writes that one Buffer to every open client's socket, with no per-client
// framing, copying or bookkeeping; what is left is one socket write per client. `bench/broadcast.mjs
// --floor` measures it beside the raw loop, to show how far below the raw loop one thread can go.
// (Through ws's internal `_socket`: a benchmark baseline only, never a server to copy.)
import { Sender, WebSocket, WebSocketServer } from "ws";

const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 }, () => {
  console.log(`listening ws://127.0.0.1:${wss.address().port}`);
});
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => {
    const parts = Sender.frame(data, {
      fin: true,
      opcode: isBinary ? 2 : 1,
      mask: false,
      readOnly: false,
      rsv1: false,
    });
    const frame = parts.length === 1 ? parts[0] : Buffer.concat(parts);
    for (const client of wss.clients) if (client.readyState === WebSocket.OPEN) client._socket.write(frame);
  });
});
process.on("SIGTERM", () => process.exit(0));
