/**
 * One emulated Lambda function: a child process that loads a built `index.cjs` (or `index.mjs`,
 * an ES module, as Lambda loads either), runs its init at once (as a warm instance would be), and
 * answers invocations the emulator sends over IPC.
 */
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

type Handler = ((event: unknown) => Promise<unknown>) & { ready?: Promise<unknown> };

interface Invoke {
  type: "invoke";
  id: number;
  event: unknown;
}

const file = process.argv[2];
if (!file || !process.send) {
  console.error("nitric-like emulator worker: run by the emulator with the bundle path and an IPC channel");
  process.exit(2);
}
const send = (message: object) => process.send?.(message);

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
  send({ type: "init-error", message: error instanceof Error ? error.message : String(error) });
  process.exit(1);
}

Promise.resolve(handler.ready).then(
  () => send({ type: "ready" }),
  (error: unknown) => send({ type: "init-error", message: (error as Error).message ?? String(error) }),
);

process.on("message", (message: Invoke) => {
  if (message?.type !== "invoke") return;
  handler(message.event).then(
    (result) => send({ type: "result", id: message.id, result: result ?? null }),
    (error: unknown) => send({ type: "result", id: message.id, error: (error as Error).message ?? String(error) }),
  );
});

// The emulator ends a worker by closing the IPC channel.
process.on("disconnect", () => process.exit(0));
