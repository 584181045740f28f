// The room broadcast baseline: a plain `ws` server on 127.0.0.1 keeping a Map of rooms (room name
// to the Set of its sockets); a client that asks (`?room=r`) joins room "r", and any message is
// sent to every open socket in room "r" but the sender. In its own process like the provider.
import { WebSocket, WebSocketServer } from "ws";

const rooms = new Map();
const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 }, () => {
  console.log(`listening ws://127.0.0.1:${wss.address().port}`);
});
wss.on("connection", (ws, req) => {
  const room = new URL(req.url ?? "/", "http://x").searchParams.get("room") ? "r" : undefined;
  if (room) {
    let members = rooms.get(room);
    if (!members) {
      members = new Set();
      rooms.set(room, members);
    }
    members.add(ws);
    ws.on("close", () => members.delete(ws));
  }
  ws.on("message", (data, isBinary) => {
    for (const client of rooms.get("r") ?? []) {
      if (client !== ws && client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
    }
  });
});
process.on("SIGTERM", () => process.exit(0));
