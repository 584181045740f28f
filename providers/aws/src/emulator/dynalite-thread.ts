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
let db: Awaited<ReturnType<typeof startDynalite>>;
try {
  db = await startDynalite(path, {
    ...options,
    logger: { info: line("info"), warn: line("warn"), error: line("error") },
  });
} catch (error) {
  // A reason the user fixes (a damaged store) goes across as its words: a thread's error event
  // would lose that it is one.
  if ((error as { userFacing?: unknown }).userFacing !== true) throw error;
  post({ type: "refused", text: (error as Error).message });
  process.exit(1);
}
post({ type: "listening", endpoint: db.endpoint });
port.on("message", (message: unknown) => {
  if (message === "close") void db.close().then(() => port.close());
});
