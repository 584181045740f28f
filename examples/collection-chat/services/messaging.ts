// Seed 002's messaging app on the collection API (Nitric's earlier document API, kept in our SDK):
// connections are documents, and a message goes to every other connection. The seed sent it to
// the sender once per other connection; here each document's own id is the target. (Our SDK's
// socket.broadcast() does the same in one call, inside the provider.)
import { collection, websocket } from "@nitric-like/sdk";

const connections = collection("connections").for("reading", "writing", "deleting");
const socket = websocket("socket");

socket.on("connect", async (ctx) => {
  await connections.doc(ctx.connectionId).set({ since: ctx.connectedAt.toISOString() });
});

socket.on("disconnect", async (ctx) => {
  await connections.doc(ctx.connectionId).delete();
});

socket.on("message", async (ctx) => {
  const others = await connections.query().where("since", "!=", null).fetch();
  await Promise.all(
    others.documents
      .filter((doc) => doc.id !== ctx.connectionId)
      .map((doc) => socket.send(doc.id, ctx.data, { throwIfNotConnected: false })),
  );
});
