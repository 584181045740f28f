// Rooms: a client connects with a name (ws://.../?name=ann), joins a room and talks to the others
// in it. Its messages are JSON commands, each handled by a route of its own:
//   {"action":"join","room":"lobby"}   leave the current room (if any) and join this one
//   {"action":"say","text":"hello"}    to the room's other members
// Anything else reaches on("message"), which says what the socket takes. The provider keeps the
// rooms and each connection's state (its name and room), so no store is needed: the state comes
// with every event of the connection, its disconnect included.
import { isNitricLikeError, websocket } from "@nitric-like/sdk";

/** What each connection carries: `ctx.connection.state`, typed on every handler. */
type State = { name: string; room?: string };

// The types are the identity's (unknown: no authorizer here) and the state's.
const socket = websocket<unknown, State>("rooms");

socket.on("connect", async (ctx) => {
  const name = (ctx.query.name?.[0] ?? "").replace(/\p{Cc}/gu, "").slice(0, 40) || "anonymous";
  await ctx.connection.setState({ name });
  ctx.send({ type: "welcome", name, try: { action: "join", room: "lobby" } });
});

socket.route("join", async (ctx) => {
  // Set by the connect handler before the connection opened; undefined only had that failed.
  const { name } = ctx.connection.state ?? { name: "anonymous" };
  const { room } = ctx.json<{ room?: unknown }>();
  if (typeof room !== "string")
    return { type: "error", message: 'join needs a room: {"action":"join","room":"lobby"}' };
  let joined: boolean;
  try {
    joined = await ctx.connection.join(room); // false when it was in it already
  } catch (error) {
    // A room name out of the rules (invalid_argument) or a 101st room (resource_exhausted): the message says which.
    if (isNitricLikeError(error) && (error.code === "invalid_argument" || error.code === "resource_exhausted"))
      return { type: "error", message: error.message };
    throw error;
  }
  // A client's messages are handled as they arrive, not one after another, so this event's state may
  // not name every room an earlier join left it in: it leaves each room the provider lists but this one.
  for (const old of await ctx.connection.rooms()) {
    if (old !== room && (await ctx.connection.leave(old)))
      await socket.broadcast({ type: "left", room: old, name }, { room: old });
  }
  await ctx.connection.setState({ name, room });
  if (joined) await socket.broadcast({ type: "joined", room, name }, { room, except: ctx.connectionId });
  return { type: "joined", room, members: (await socket.members(room)).length };
});

socket.route("say", async (ctx) => {
  const { name, room } = ctx.connection.state ?? { name: "anonymous" };
  const { text } = ctx.json<{ text?: unknown }>();
  if (room === undefined) return { type: "error", message: 'join a room first: {"action":"join","room":"lobby"}' };
  if (typeof text !== "string" || text.trim() === "")
    return { type: "error", message: 'say needs a text: {"action":"say","text":"hello"}' };
  await socket.broadcast({ type: "said", room, name, text: text.slice(0, 1000) }, { room, except: ctx.connectionId });
  return undefined;
});

socket.on("message", () => ({
  type: "error",
  message: 'send {"action":"join","room":"lobby"} or {"action":"say","text":"hello"}',
}));

socket.on("disconnect", async (ctx) => {
  // The connection has left its rooms already; its state still says which one to tell.
  const { name, room } = ctx.connection.state ?? { name: "anonymous" };
  if (room !== undefined) await socket.broadcast({ type: "left", room, name }, { room });
});
