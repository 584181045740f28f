// A browser chat with rooms, and who may enter it. It shows, in one small service:
// - `authorize`: the page sends a token as a subprotocol (`token.<t>`; browsers cannot set headers
//   on a WebSocket) or as `?token=`; a known token becomes the connection's identity (`ctx.auth`),
//   an unknown one is refused with 403 and a reason, none with 401.
// - message routes: the page's messages are JSON with an "action" ("join" or "say"), and each action
//   has a handler of its own (`socket.route(action, handler)`); anything else reaches on("message").
// - rooms: a connection is in one room at a time (`/join <room>` on the page); a line goes to the
//   room's other members with `socket.broadcast(data, { room, except })`, and the sender gets it
//   back as its own answer; whenever someone joins or leaves, the room gets its member list
//   (`socket.members(room)`).
// - connection state: the display name (the page's, or the identity's user) and the room are kept
//   with the connection (`ctx.connection.setState`), so every event has them with no kv read, and
//   the disconnect handler still knows which room to tell.
//
// Under `nitric-like run` this service also serves the page (public/index.html) on
// http://127.0.0.1:3001 (ROOMS_WEB_PORT to change it), with the socket's URL put into it.
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { isNitricLikeError, websocket } from "@nitric-like/sdk";

/** The demo's users, by token: a real app checks a signed token or asks its identity provider. */
const USERS = new Map([
  ["t-ann", "ann"],
  ["t-bo", "bo"],
  ["t-cy", "cy"],
]);

/** What authorize gives a connection: `ctx.auth` on every event. */
type Identity = { user: string };
/** What the connection carries on every event: `ctx.connection.state`. */
type State = { name: string; room?: string };

// Declared with both types: the authorizer's answer is checked against Identity, and every
// handler reads ctx.auth and ctx.connection.state typed, with no cast.
const socket = websocket<Identity, State>("rooms", {
  authorize: (req) => {
    const offered = req.protocols.find((p) => p.startsWith("token."));
    const token = offered?.slice("token.".length) ?? req.query.token?.[0];
    if (!token) return { status: 401, reason: "a token is required (try t-ann, t-bo or t-cy)" };
    const user = USERS.get(token);
    if (!user) return { status: 403, reason: `unknown token "${token.slice(0, 40)}"` };
    // Echo a protocol the page offered, never the token itself.
    return req.protocols.includes("rooms") ? { identity: { user }, protocol: "rooms" } : { identity: { user } };
  },
});

/** Names the page shows: at most 40 characters, no control characters. */
function cleanName(value: string | undefined): string {
  return (value ?? "")
    .replace(/\p{Cc}/gu, "")
    .trim()
    .slice(0, 40);
}

/** Sends a room's member list (ids and names) to everyone in it. */
async function announceMembers(room: string, leaving?: string): Promise<void> {
  const ids = (await socket.members(room)).filter((id) => id !== leaving);
  const members: { id: string; name: string }[] = [];
  for (const id of ids) {
    try {
      members.push({ id, name: (await socket.state(id))?.name ?? "?" });
    } catch (error) {
      if (!(isNitricLikeError(error) && error.code === "not_found")) throw error; // closed meanwhile
    }
  }
  members.sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  await socket.broadcast({ type: "members", room, members }, { room });
}

socket.on("connect", async (ctx) => {
  const { user } = ctx.auth;
  const state: State = { name: cleanName(ctx.query.name?.[0]) || user };
  await ctx.connection.setState(state);
  ctx.send({ type: "hello", you: ctx.connectionId, user, name: state.name });
});

// Message routes: the page sends {"action":"join","room":"..."} and {"action":"say","text":"..."};
// each action has a handler of its own (on AWS, a route of the API), and whatever selects no route
// (not JSON, another action) reaches on("message"), which says what the socket takes.
socket.route("join", async (ctx) => {
  // Set by the connect handler before the connection opened; undefined only had that failed.
  const state = ctx.connection.state ?? { name: ctx.auth.user };
  const { room } = ctx.json<{ room?: unknown }>();
  if (typeof room !== "string")
    return { type: "error", message: 'rooms: join needs a room, {"action":"join","room":"..."}' };
  try {
    await ctx.connection.join(room); // false (no change) when it is in it already
  } catch (error) {
    // An invalid name (invalid_argument) or a 101st room (resource_exhausted): the message says which.
    if (isNitricLikeError(error) && (error.code === "invalid_argument" || error.code === "resource_exhausted"))
      return { type: "error", message: error.message };
    throw error;
  }
  // A client's messages are handled as they arrive, not one after another, so this event's state
  // may not name every room an earlier join left it in: it leaves each room listed but this one.
  const left: string[] = [];
  for (const old of await ctx.connection.rooms()) if (old !== room && (await ctx.connection.leave(old))) left.push(old);
  await ctx.connection.setState({ ...state, room });
  for (const old of left) await announceMembers(old);
  await ctx.connection.send({ type: "joined", room }); // before the member list, not on the answer
  await announceMembers(room);
  return undefined;
});

socket.route("say", async (ctx) => {
  const state = ctx.connection.state ?? { name: ctx.auth.user };
  const { text } = ctx.json<{ text?: unknown }>();
  if (typeof text !== "string")
    return { type: "error", message: 'rooms: say needs a text, {"action":"say","text":"..."}' };
  const line = text.trim().slice(0, 1000);
  if (line === "" || state.room === undefined) return undefined;
  const said = { type: "line", room: state.room, from: ctx.connectionId, name: state.name, text: line, at: Date.now() };
  // The room's other members; the sender gets the line as its answer (after the broadcast).
  await socket.broadcast(said, { room: state.room, except: ctx.connectionId });
  return said;
});

socket.on("message", () => ({
  type: "error",
  message: 'rooms: unknown message; send {"action":"join","room":"..."} or {"action":"say","text":"..."}',
}));

socket.on("disconnect", async (ctx) => {
  // The connection has left its rooms already; its state still says which one to tell.
  const room = ctx.connection.state?.room;
  if (room !== undefined) await announceMembers(room, ctx.connectionId);
});

/** Serves the page, with the socket's URL in it, on 127.0.0.1. */
async function servePage(): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url !== "/" && req.url !== "/index.html") {
      res.writeHead(404, { "Content-Type": "text/plain" }).end("not found\n");
      return;
    }
    Promise.all([readFile(join(process.cwd(), "public", "index.html"), "utf8"), socket.url()]).then(
      ([page, url]) => {
        const safe = url.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");
        res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store" });
        res.end(page.replace("{{SOCKET_URL}}", safe));
      },
      (error: unknown) => {
        res.writeHead(500, { "Content-Type": "text/plain" }).end(`${String(error)}\n`);
      },
    );
  });
  const port = Number(process.env.ROOMS_WEB_PORT ?? 3001);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  }).catch(async (error: NodeJS.ErrnoException) => {
    if (error.code !== "EADDRINUSE") throw error;
    console.warn(`port ${port} is taken (ROOMS_WEB_PORT picks another); using a free one`);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  });
  const address = server.address();
  console.log(`rooms page http://127.0.0.1:${typeof address === "object" && address ? address.port : port}`);
  return server;
}

// Only when running locally: the collect pass (NITRIC_ENVIRONMENT=build) only reads declarations,
// and a deployed function serves no page. No top-level await: AWS bundles are CommonJS.
if (process.env.NITRIC_ENVIRONMENT === "run") {
  servePage().catch((error: unknown) => {
    console.error(`the rooms page could not be served: ${String(error)}`);
  });
}
