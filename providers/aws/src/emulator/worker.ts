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
import { isAbsolute, relative, sep } from "node:path";
import { pathToFileURL } from "node:url";
import { makeStdioBlocking } from "@nitric-like/provider-kit/blocking-stdio";
import { SOURCE_DIR_VAR } from "../runtime/stacks.js";

/** What Lambda's Node.js runtime passes a handler beside the event (the part the runtime reads). */
interface Context {
  getRemainingTimeInMillis(): number;
}

type Handler = ((event: unknown, context: Context) => Promise<unknown>) & {
  ready?: Promise<unknown>;
  /** Our runtime's (createHandler): the stacks of the module's last calls, newest first, while it has not finished loading. */
  loadStoppedAfter?: () => string[];
};

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

/** Its init has finished and said so ("ready"). */
let initialized = false;
/** An uncaught error is ending it: nothing more is answered. */
let ending = false;

/**
 * An error nothing caught (thrown in a timer or callback, or a promise rejected that nobody
 * awaited), as Lambda's Node.js runtime takes it: printed with its label, posted as the init's
 * error during the init, else as the error of the invocation under way (the emulator fails the one
 * it sent), and then the runtime exits (129 after an uncaught exception, 128 after an unhandled
 * rejection). Between invocations the environment is frozen, so what a handler left pending fails
 * at the next event, once thawed for it, as on Lambda.
 */
function uncaught(error: unknown, rejection: boolean): void {
  if (ending) return;
  ending = true;
  console.error(rejection ? "Unhandled Promise Rejection" : "Uncaught Exception", error);
  // The runtime's names: the error's own type, or one for a rejection with the reason as its message.
  const failure = rejection
    ? { errorType: "Runtime.UnhandledPromiseRejection", message: String(error), uncaught: "unhandled rejection" }
    : { ...errorOf(error), uncaught: "uncaught exception" };
  const exit = () => process.exit(rejection ? 128 : 129);
  // Exits once the emulator has it (or the channel is gone: the callback gets that error).
  if (process.send) process.send({ type: initialized ? "uncaught" : "init-error", ...failure }, exit);
  else exit();
}
process.on("uncaughtException", (error) => uncaught(error, false));
process.on("unhandledRejection", (reason) => uncaught(reason, true));

/**
 * Its event loop has nothing left while its init has not finished: the module is stopped at a
 * top-level await nothing is left to settle (the IPC channel is left out of that count during the
 * init, below). Node ends a main module so with exit code 13; Lambda's runtime, which awaits the
 * import of the function's module, ends so too (Runtime.ExitError, "exit status 13"). Said to the
 * emulator with the line the module's last call was made from, then it exits with 13.
 */
let unsettled = false;
process.on("beforeExit", () => {
  if (initialized || ending || unsettled) return;
  unsettled = true;
  const at = (handlerOf()?.loadStoppedAfter?.() ?? []).map(loadLocation).find((l) => l !== undefined);
  const message = { type: "init-unsettled", ...(at === undefined ? {} : { at }) };
  if (process.send) process.send(message, () => process.exit(13));
  else process.exit(13);
});

/**
 * The first frame of `stack` in the function's own source files (not a package's, not the
 * bundle's): `services/chat.ts:12`, relative to the project under `run` (SOURCE_DIR_VAR) or to the
 * function's folder; undefined when none is.
 */
function loadLocation(stack: string): string | undefined {
  const base = process.env[SOURCE_DIR_VAR] || process.env.LAMBDA_TASK_ROOT || process.cwd();
  for (const line of stack.split("\n")) {
    const m = /^\s+at (?:.*\(|async )?(?:file:\/\/)?(\/[^():]+):(\d+):\d+\)?$/.exec(line);
    if (!m) continue;
    const path = m[1] as string;
    const rel = relative(base, path);
    if (path === file || rel.startsWith("..") || isAbsolute(rel) || rel.split(sep).includes("node_modules")) continue;
    return `${rel}:${m[2]}`;
  }
  return undefined;
}

let handler: Handler;
/** The handler once its module has been imported, for the beforeExit listener above (which may run before). */
let imported: Handler | undefined;
const handlerOf = (): Handler | undefined => imported;
try {
  // An ES module's top-level awaits are part of its init, as on Lambda.
  const mod = (
    file.endsWith(".mjs") ? await import(pathToFileURL(file).href) : createRequire(import.meta.url)(file)
  ) as { handler?: Handler };
  if (typeof mod.handler !== "function") throw new Error(`${file} exports no handler function`);
  handler = mod.handler;
  imported = handler;
} catch (error) {
  // The message alone: the bundle is minified, so its stack would name nothing of the source.
  send(initError(error));
  process.exit(1);
}

// During the init, the IPC channel does not keep the event loop alive (its message listeners
// would): a module stopped at a top-level await nothing is left to settle then empties it (see
// beforeExit above), as Node's loop would empty with no channel. Kept alive again once it is ready.
process.channel?.unref();
Promise.resolve(handler.ready)
  // A turn of the event loop first: a promise its init rejected and nobody awaited is seen as
  // unhandled once the microtasks have run, and fails the init, as Lambda's runtime (which asks
  // for the first event over HTTP) sees it before any event runs.
  .then(() => new Promise((resolve) => setImmediate(resolve)))
  .then(
    () => {
      if (ending) return;
      initialized = true;
      process.channel?.ref();
      answer({ type: "ready" }, "finished its init");
    },
    (error: unknown) => {
      if (!ending) send(initError(error));
    },
  );

/** What an init that failed says: the thrown error's message and its type. */
function initError(error: unknown): { type: "init-error"; message: string; errorType: string } {
  return { type: "init-error", ...errorOf(error) };
}

/** An error's message and its type (its name, as Lambda's Node.js runtime reports it). */
function errorOf(error: unknown): { message: string; errorType: string } {
  const named = error instanceof Error && typeof error.name === "string" && error.name !== "";
  return {
    message: error instanceof Error ? error.message : String(error),
    errorType: named ? error.name : "Error",
  };
}

process.on("message", (message: Invoke) => {
  if (message?.type !== "invoke" || ending) return;
  // Thawed for it: the timers that fell due while it was frozen run first, as they do on Lambda,
  // so one that throws fails this event even when its handler answers without yielding. It is
  // read in the loop's poll phase, which can come before its timers phase once thawed (frozen in
  // a timer's callback, the loop's clock is behind); a timer set now, on the current clock, fires
  // after every timer already due (an immediate would run before them).
  if (freezes) setTimeout(() => invoke(message), 0);
  else invoke(message);
});

/** Runs the handler on `message`'s event and answers with its result or error. */
function invoke(message: Invoke): void {
  // A timer that fell due while it was frozen threw: that failed this invocation.
  if (ending) return;
  const deadline = message.deadline;
  handler(message.event, { getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()) }).then(
    (result) => {
      // An uncaught error already failed this invocation.
      if (ending) return;
      answer({ type: "result", id: message.id, result: result ?? null }, "answered an event");
    },
    (error: unknown) => {
      if (ending) return;
      answer({ type: "result", id: message.id, error: (error as Error).message ?? String(error) }, "answered an event");
    },
  );
}

// The emulator ends a worker by closing the IPC channel (and its stdin, for a frozen one).
process.on("disconnect", () => process.exit(0));
