// A chat: every message a client sends goes to every other client, signed with the name it gave
// when it connected (ws://.../?name=ann). Names are kept in a kv store, on disk under .nitric-like/.
import { kv, websocket } from "@nitric-like/sdk";

const socket = websocket("socket");
const names = kv<{ name: string }>("names").allow("get", "set", "delete");

socket.on("connect", async (ctx) => {
  const name = ctx.query.name?.[0] ?? "anonymous";
  await names.set(ctx.connectionId, { name });
  ctx.send(`welcome, ${name}`);
});

socket.on("message", async (ctx) => {
  const { name } = await names.get(ctx.connectionId);
  await socket.broadcast(`${name}: ${ctx.text()}`, { except: ctx.connectionId });
});

socket.on("disconnect", async (ctx) => {
  await names.delete(ctx.connectionId);
});
