// The broadcast baseline: a plain `ws` server on 127.0.0.1 that sends any message it gets to
// every open client (the sender included), in its own process like the provider.
import { WebSocket, WebSocketServer } from "ws";

const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 }, () => {
  console.log(`listening ws://127.0.0.1:${wss.address().port}`);
});
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => {
    for (const client of wss.clients) if (client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
  });
});
process.on("SIGTERM", () => process.exit(0));
