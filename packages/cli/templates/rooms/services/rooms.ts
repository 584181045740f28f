// Rooms: a client connects with a name (ws://.../?name=ann), joins a room and talks to the others
// in it. Its messages are JSON commands, each handled by a route of its own:
//   {"action":"join","room":"lobby"}   leave the current room (if any) and join this one
//   {"action":"say","text":"hello"}    to the room's other members
// Anything else reaches on("message"), which says what the socket takes. The provider keeps the
// rooms and each connection's state (its name and room), so no store is needed: the state comes
// with every event of the connection, its disconnect included.
import { isNitricLikeError, websocket } from "@nitric-like/sdk";

/** What each connection carries. */
type State = { name: string; room?: string };

const socket = websocket("rooms");

socket.on("connect", async (ctx) => {
  const name = (ctx.query.name?.[0] ?? "").replace(/\p{Cc}/gu, "").slice(0, 40) || "anonymous";
  await ctx.connection.setState({ name } satisfies State);
  ctx.send({ type: "welcome", name, try: { action: "join", room: "lobby" } });
});

socket.route("join", async (ctx) => {
  const state = ctx.connection.state as State;
  const { room } = ctx.json<{ room?: unknown }>();
  if (typeof room !== "string")
    return { type: "error", message: 'join needs a room: {"action":"join","room":"lobby"}' };
  if (room === state.room) return { type: "joined", room, members: (await socket.members(room)).length };
  try {
    await ctx.connection.join(room); // a room name out of the rules throws invalid_argument, saying them
  } catch (error) {
    if (isNitricLikeError(error) && error.code === "invalid_argument") return { type: "error", message: error.message };
    throw error;
  }
  if (state.room !== undefined) {
    await ctx.connection.leave(state.room);
    await socket.broadcast({ type: "left", room: state.room, name: state.name }, { room: state.room });
  }
  await ctx.connection.setState({ ...state, room } satisfies State);
  await socket.broadcast({ type: "joined", room, name: state.name }, { room, except: ctx.connectionId });
  return { type: "joined", room, members: (await socket.members(room)).length };
});

socket.route("say", async (ctx) => {
  const { name, room } = ctx.connection.state as State;
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
  const { name, room } = ctx.connection.state as State;
  if (room !== undefined) await socket.broadcast({ type: "left", room, name }, { room });
});
