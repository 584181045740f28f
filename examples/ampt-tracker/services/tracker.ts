// Ampt's WebSocket location tracker (its docs' example), on nitric-like: the same `ws` interface,
// with a kv store where Ampt uses @ampt/data. Clients connect with ?name=<user>, send
// { "lat": .., "long": .. } to report where they are, "where" to get everyone's last location,
// and { "disconnectMe": true } to be disconnected.
import { kv } from "@nitric-like/sdk";
import { type SocketConnection, ws } from "@nitric-like/sdk/ampt";

type LatLong = { lat: number; long: number };

const data = kv("tracker").allow("get", "set", "delete");

ws.on("connected", async (connection: SocketConnection) => {
  const { connectionId, meta } = connection;
  const { connectedAt, queryStringParams } = meta;
  await data.set(`connection:${connectionId}`, {
    connectionId,
    connectedAt: connectedAt ?? 0,
    username: queryStringParams?.name ?? "anonymous",
  });
  // Ampt sends on connect; Nitric forbids it; nitric-like delivers it once the connection is open.
  await connection.send({ message: "Welcome to the tracker!" });
});

ws.on("disconnected", async (connection: SocketConnection) => {
  await data.delete(`connection:${connection.connectionId}`);
});

// Ampt's example names this parameter `data`, hiding the store it then calls `data.get` on.
ws.on<LatLong | { disconnectMe: true } | string>("message", async (connection, message) => {
  const { connectionId } = connection;
  if (message === "where") {
    const locations: Record<string, unknown> = {};
    for await (const key of data.keys("current_location:")) {
      locations[key.slice("current_location:".length)] = await data.get(key);
    }
    await ws.send(connectionId, { locations });
    return;
  }
  if (typeof message === "object" && "disconnectMe" in message) {
    await ws.close(connectionId);
    return;
  }
  if (typeof message !== "object" || typeof message.lat !== "number" || typeof message.long !== "number") {
    await ws.send(connectionId, {
      error: 'send { "lat": <number>, "long": <number> }, "where", or { "disconnectMe": true }',
    });
    return;
  }
  const existingConnection = await data.get(`connection:${connectionId}`);
  const username = String(existingConnection.username);
  await data.set(`current_location:${username}`, { lat: message.lat, long: message.long });
  await ws.send(connectionId, { saved: username });
});
