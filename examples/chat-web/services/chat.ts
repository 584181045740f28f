// A chat in the browser. Open the page in two tabs and type: every line appears in every tab, the
// sender's included, and a tab opened later first gets the last 50 lines (kept in the kv store
// `history`, so they survive a restart).
//
// Under `nitric-like run` this service also serves the page (public/index.html) on
// http://127.0.0.1:3000 (CHAT_WEB_PORT to change it), with the socket's URL put into it: the page
// never hard-codes where the socket is, and one command starts everything.
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { kv, websocket } from "@nitric-like/sdk";

/** One chat line, as stored and as sent to the pages (a type, not an interface: kv values are JSON objects). */
type Line = {
  from: string;
  name: string;
  text: string;
  at: number;
};

const KEEP = 50;
const socket = websocket("chat");
const history = kv<Line>("history").allow("get", "set", "delete");

/** Keys sort by time: `line:<ms, zero-padded>:<connection id>`. */
const keyOf = (line: Line) => `line:${String(line.at).padStart(15, "0")}:${line.from}`;

async function recent(): Promise<{ keys: string[]; lines: Line[] }> {
  const keys: string[] = [];
  for await (const key of history.keys("line:")) keys.push(key);
  const lines = await Promise.all(keys.slice(-KEEP).map((k) => history.get(k)));
  return { keys, lines };
}

socket.on("connect", async (ctx) => {
  // Arrives as the page's first message, once the connection is open.
  ctx.send({ type: "history", lines: (await recent()).lines, you: ctx.connectionId });
});

socket.on("message", async (ctx) => {
  let name = "someone";
  let text = ctx.text();
  try {
    const parsed = ctx.json<{ name?: unknown; text?: unknown }>();
    if (typeof parsed.text === "string") text = parsed.text;
    if (typeof parsed.name === "string" && parsed.name.trim() !== "") name = parsed.name.trim().slice(0, 40);
  } catch {
    // Not JSON (wscat, say): the whole message is the text.
  }
  text = text.trim().slice(0, 1000);
  if (text === "") return;
  const line: Line = { from: ctx.connectionId, name, text, at: Date.now() };
  await history.set(keyOf(line), line);
  await socket.broadcast({ type: "line", line });
  const { keys } = await recent();
  for (const old of keys.slice(0, Math.max(0, keys.length - KEEP))) await history.delete(old);
});

socket.on("disconnect", () => {});

/** Serves the page, with the socket's URL in it, on 127.0.0.1. */
async function servePage(): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url !== "/" && req.url !== "/index.html") {
      res.writeHead(404, { "Content-Type": "text/plain" }).end("not found\n");
      return;
    }
    Promise.all([readFile(join(process.cwd(), "public", "index.html"), "utf8"), socket.url()]).then(
      ([page, url]) => {
        // JSON inside an HTML attribute: quotes and angle brackets escaped.
        const safe = url.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");
        res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store" });
        res.end(page.replace("{{SOCKET_URL}}", safe));
      },
      (error: unknown) => {
        res.writeHead(500, { "Content-Type": "text/plain" }).end(`${String(error)}\n`);
      },
    );
  });
  const port = Number(process.env.CHAT_WEB_PORT ?? 3000);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  }).catch(async (error: NodeJS.ErrnoException) => {
    if (error.code !== "EADDRINUSE") throw error;
    console.warn(`port ${port} is taken (CHAT_WEB_PORT picks another); using a free one`);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  });
  const address = server.address();
  console.log(`chat page http://127.0.0.1:${typeof address === "object" && address ? address.port : port}`);
  return server;
}

// Only when running locally: the collect pass (NITRIC_ENVIRONMENT=build) just reads declarations,
// and a deployed function (cloud) serves no page. No top-level await: AWS bundles are CommonJS.
if (process.env.NITRIC_ENVIRONMENT === "run") {
  servePage().catch((error: unknown) => {
    console.error(`the chat page could not be served: ${String(error)}`);
  });
}
