/**
 * dynalite's thread (started by `startDynaliteThread` in dynalite.ts): serves dynalite as
 * `startDynalite` does, posts its endpoint once it listens and each line it logs, and closes its
 * store when told "close", which ends the thread.
 */
import { parentPort, workerData } from "node:worker_threads";
import { type DynaliteThreadData, type DynaliteThreadMessage, startDynalite } from "./dynalite.js";

const port = parentPort;
if (!port) throw new Error("dynalite-thread.js runs as a worker thread, started by startDynaliteThread");
const { path, options } = workerData as DynaliteThreadData;
const post = (message: DynaliteThreadMessage) => port.postMessage(message);
const line =
  (level: "info" | "warn" | "error") =>
  (text: string): void =>
    post({ type: "log", level, text });
const db = await startDynalite(path, {
  ...options,
  logger: { info: line("info"), warn: line("warn"), error: line("error") },
});
post({ type: "listening", endpoint: db.endpoint });
port.on("message", (message: unknown) => {
  if (message === "close") void db.close().then(() => port.close());
});
