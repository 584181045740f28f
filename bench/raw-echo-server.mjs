// The baseline: a plain `ws` echo server on 127.0.0.1, in its own process like the provider.
import { WebSocketServer } from "ws";

const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 }, () => {
  console.log(`listening ws://127.0.0.1:${wss.address().port}`);
});
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
});
process.on("SIGTERM", () => process.exit(0));
