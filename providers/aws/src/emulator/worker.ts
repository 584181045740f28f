/**
 * One execution environment of an emulated Lambda function: a child process that loads a built
 * `index.cjs` (or `index.mjs`, an ES module, as Lambda loads either), runs its init at once (as a
 * warm instance would be), and answers the invocations the emulator sends over IPC, one at a time.
 *
 * Run with "freeze", it freezes once its init is done and once it has answered each invocation, as
 * Lambda freezes an environment: it blocks on a read of its stdin, so no timer, promise or socket
 * of its event loop runs until the emulator writes a byte there, just before the next invocation.
 * Stdin at its end (the emulator ended it, or exited however it did) makes it exit.
 */
import { readSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { makeStdioBlocking } from "@nitric-like/provider-kit/blocking-stdio";

/** What Lambda's Node.js runtime passes a handler beside the event (the part the runtime reads). */
interface Context {
  getRemainingTimeInMillis(): number;
}

type Handler = ((event: unknown, context: Context) => Promise<unknown>) & { ready?: Promise<unknown> };

interface Invoke {
  type: "invoke";
  id: number;
  event: unknown;
  /** When the invocation times out (Date.now()'s clock). */
  deadline: number;
}

const file = process.argv[2];
const freezes = process.argv[3] === "freeze";
if (!file || !process.send) {
  console.error("nitric-like emulator worker: run by the emulator with the bundle path and an IPC channel");
  process.exit(2);
}
const send = (message: object) => process.send?.(message);
// Its output is pipes the emulator reads: blocking, a burst printed before an init throws, or
// before a handler answers and the environment freezes, reaches the run's output whole and at once.
makeStdioBlocking(process);

/** Whether it has said that a timer was pending as it froze (once an environment: an interval would say it each time). */
let toldOfTimers = false;

/** Blocks until the emulator thaws it (see above); exits when it never will. */
function freeze(after: string): void {
  // The runtime leaves no timer that keeps the loop alive once it has answered: one here is the app's.
  const timers = toldOfTimers ? 0 : process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
  if (timers > 0) {
    toldOfTimers = true;
    console.error(
      `nitric-like: warning: ${timers === 1 ? "a timer was" : `${timers} timers were`} still pending when this function ${after}; Lambda freezes a function once it answers, so ${timers === 1 ? "it fires" : "they fire"} only at that execution environment's next event, or never, and the emulator does the same: await what must happen before the handler returns (said once an environment)`,
    );
  }
  const byte = Buffer.alloc(1);
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    try {
      if (readSync(0, byte, 0, 1, null) === 0) process.exit(0);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EOF") process.exit(0);
      if (code !== "EAGAIN") throw error;
      // A non-blocking stdin: wait a moment, still frozen.
      Atomics.wait(pause, 0, 0, 2);
    }
  }
}

/** Sends `message`, then freezes once it is on its way (so the emulator gets it first). */
const answer = (message: object, after: string) =>
  freezes ? process.send?.(message, () => freeze(after)) : send(message);

let handler: Handler;
try {
  // An ES module's top-level awaits are part of its init, as on Lambda.
  const mod = (
    file.endsWith(".mjs") ? await import(pathToFileURL(file).href) : createRequire(import.meta.url)(file)
  ) as { handler?: Handler };
  if (typeof mod.handler !== "function") throw new Error(`${file} exports no handler function`);
  handler = mod.handler;
} catch (error) {
  // The message alone: the bundle is minified, so its stack would name nothing of the source.
  send(initError(error));
  process.exit(1);
}

Promise.resolve(handler.ready).then(
  () => answer({ type: "ready" }, "finished its init"),
  (error: unknown) => send(initError(error)),
);

/** What an init that failed says: the thrown error's message and its type (its name, as Lambda's Node.js runtime reports it). */
function initError(error: unknown): { type: "init-error"; message: string; errorType: string } {
  const named = error instanceof Error && typeof error.name === "string" && error.name !== "";
  return {
    type: "init-error",
    message: error instanceof Error ? error.message : String(error),
    errorType: named ? error.name : "Error",
  };
}

process.on("message", (message: Invoke) => {
  if (message?.type !== "invoke") return;
  const deadline = message.deadline;
  handler(message.event, { getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()) }).then(
    (result) => answer({ type: "result", id: message.id, result: result ?? null }, "answered an event"),
    (error: unknown) =>
      answer({ type: "result", id: message.id, error: (error as Error).message ?? String(error) }, "answered an event"),
  );
});

// The emulator ends a worker by closing the IPC channel (and its stdin, for a frozen one).
process.on("disconnect", () => process.exit(0));
