#!/usr/bin/env node
// One poison message: a client sends a message whose handler makes the service exit, while another
// client keeps sending (one message at a time, 50 ms apart). Counts the restarts it causes, when
// its client is closed and how, and the other client's longest wait for an answer, over
// `--seconds` (default 20), with the service in a worker thread and in a process.
// Usage: node bench/poison.mjs [--seconds 20]
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { cleanup, startApp, stop } from "./lib.mjs";

const { values } = parseArgs({ options: { seconds: { type: "string", default: "20" } } });
const windowMs = Number(values.seconds) * 1000;

function open(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

/** The other client's next answer, or null when it does not come within the window or the client closes. */
function answer(ws, text, ms) {
  return new Promise((resolve) => {
    const done = (value) => {
      clearTimeout(timer);
      ws.off("message", onMessage);
      ws.off("close", onClose);
      resolve(value);
    };
    const onMessage = (data) => done(String(data));
    const onClose = () => done(null);
    const timer = setTimeout(() => done(null), ms);
    ws.on("message", onMessage);
    ws.on("close", onClose);
    ws.send(text);
  });
}

async function measure(args) {
  const { child, url, output } = await startApp("poison", "chat", args);
  try {
    const other = await open(url);
    const poisoner = await open(url);
    const t0 = Date.now();
    let closed;
    poisoner.on("close", (code, reason) => {
      closed = { code, reason: String(reason), afterMs: Date.now() - t0 };
    });
    poisoner.send("die");
    let answered = 0;
    let longestMs = 0;
    let unanswered = false;
    while (Date.now() - t0 < windowMs) {
      const sent = Date.now();
      const got = await answer(other, `hi ${answered}`, windowMs - (sent - t0));
      if (got === null) {
        unanswered = true;
        longestMs = Math.max(longestMs, Date.now() - sent);
        break;
      }
      answered++;
      longestMs = Math.max(longestMs, Date.now() - sent);
      await new Promise((r) => setTimeout(r, 50));
    }
    const restarts = [...output().matchAll(/service "chat" .*; restarting in/g)].length;
    other.terminate();
    poisoner.terminate();
    return { restarts, closed, answered, longestMs, unanswered };
  } finally {
    await stop(child);
  }
}

try {
  console.log(`one poison message, watched for ${windowMs / 1000} s`);
  for (const [how, args] of [
    ["thread", []],
    ["process", ["--processes"]],
  ]) {
    const r = await measure(args);
    const close = r.closed ? `${r.closed.code} "${r.closed.reason}" after ${r.closed.afterMs} ms` : "never";
    console.log(
      `${how.padEnd(8)} restarts ${r.restarts}; poisoner closed ${close}; other client: ${r.answered} answers, longest wait ${r.longestMs} ms${r.unanswered ? " (then none)" : ""}`,
    );
  }
} finally {
  cleanup();
}
