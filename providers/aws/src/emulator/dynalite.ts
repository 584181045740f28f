/**
 * DynamoDB for `run --provider aws` and the tests: dynalite on 127.0.0.1, behind the emulator's
 * signature check. `startDynalite` serves it on the calling thread; `startDynaliteThread` on a
 * worker thread of its own (dynalite-thread.ts), which is how `run --provider aws` serves it.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { Worker } from "node:worker_threads";
import { guard } from "@nitric-like/provider-kit/boundary";
import type { Logger } from "@nitric-like/spec";
import type { Credentials } from "../aws/signer.js";
import { readSignedBody, runCredentials } from "./auth.js";
import { answerFailure, HEADERS_TIMEOUT_MS, REQUEST_TIMEOUT_MS, requestTimeouts } from "./http.js";

/** DynamoDB's largest request, and dynalite's: 16 MB. */
export const MAX_DYNAMODB_REQUEST_BYTES = 16 * 1024 * 1024;

/** A running dynalite: where it listens and the credentials it takes. */
export interface RunningDynalite {
  endpoint: string;
  credentials: Credentials;
  close(): Promise<void>;
}

/**
 * The iterator classes of each copy of abstract-level that dynalite's stores use (classic-level on
 * disk, memory-level in memory), resolved from dynalite's own dependencies.
 */
export function dynaliteIteratorClasses(): { prototype: object }[] {
  const classes = new Set<{ prototype: object }>();
  const dynaliteRequire = createRequire(createRequire(import.meta.url).resolve("dynalite"));
  const stores = [
    createRequire(dynaliteRequire.resolve("level")).resolve("classic-level"),
    dynaliteRequire.resolve("memory-level"),
  ];
  for (const store of stores) {
    const level = createRequire(store)("abstract-level") as Record<string, { prototype: object }>;
    for (const name of ["AbstractIterator", "AbstractKeyIterator", "AbstractValueIterator"]) {
      const c = level[name];
      if (c !== undefined) classes.add(c);
    }
  }
  return [...classes];
}

/**
 * dynalite 4.0.0 ends every read stream (each Query and Scan) with `iterator.return()`, which the
 * iterators of abstract-level 3 do not have (they have `close()`): each such iterator stayed open,
 * and with it its LevelDB snapshot, for as long as `run --provider aws` ran: 200 Queries left 200
 * open (v8.queryObjects), and a chat's every broadcast is one. The iterators of the copies dynalite
 * uses get a `return()` that closes them; nothing else calls it, and a version that has one keeps
 * its own. Done once, before the first store opens.
 */
let dynaliteIteratorsClosed = false;
function closeDynaliteIterators(): void {
  if (dynaliteIteratorsClosed) return;
  dynaliteIteratorsClosed = true;
  for (const c of dynaliteIteratorClasses()) {
    if ("return" in c.prototype) continue;
    Object.defineProperty(c.prototype, "return", {
      value(this: { close(): Promise<void> }) {
        return this.close();
      },
      configurable: true,
      writable: true,
    });
  }
}

/** What dynalite is started with. */
export interface DynaliteOptions {
  /** The only credentials it serves (new ones unless given). */
  credentials?: Credentials;
  /** The region a request must be signed for (us-east-1 unless given). */
  region?: string;
  /** What a refused request is told to do. */
  hint?: string;
  logger?: Logger;
  headersTimeoutMs?: number;
  /** The port to listen on (a free one unless given). */
  port?: number;
}

/**
 * Starts dynalite on 127.0.0.1; `path` keeps its data on disk. dynalite looks only at a request's
 * Authorization header's shape, so its handler is put behind the emulator's signature check
 * (auth.ts): it serves only requests signed with `credentials` (new ones unless given) for
 * `region`. A refused request gets DynamoDB's 400 with the reason, before its body is read.
 */
export async function startDynalite(path?: string, options: DynaliteOptions = {}): Promise<RunningDynalite> {
  const credentials = options.credentials ?? runCredentials();
  const scope = {
    credentials,
    region: options.region ?? "us-east-1",
    service: "dynamodb",
    hint: options.hint ?? "sign it (SigV4) with the credentials the emulator gives its functions",
  };
  const logger = options.logger ?? defaultLogger;
  closeDynaliteIterators();
  // Loaded here, not with this module: `run --provider aws` loads this module on its own thread
  // to start dynalite's, where alone dynalite runs.
  if (path) await checkStore(path);
  const { default: dynalite } = await import("dynalite");
  const server = dynalite({ ...(path ? { path } : {}), createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  // dynalite makes its server without options: the same limits on a request's arrival as the
  // emulator's other servers, set as the properties Node's server reads them from at listen().
  Object.assign(server, requestTimeouts(options.headersTimeoutMs ?? HEADERS_TIMEOUT_MS, REQUEST_TIMEOUT_MS));
  const serve = server.listeners("request")[0] as RequestListener;
  server.removeAllListeners("request");
  server.on("request", (req: IncomingMessage, res: ServerResponse) =>
    guard(
      async () => {
        const body = await readSignedBody(req, res, scope, MAX_DYNAMODB_REQUEST_BYTES, "json");
        if (body !== undefined) serve(replayed(req, body), res);
      },
      (error) => answerFailure(res, logger, "dynalite", `serving ${req.method} ${req.url}`, error),
    ),
  );
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, "127.0.0.1", () => resolve());
  });
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    credentials,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      }),
  };
}

/**
 * Opens dynalite's LevelDB store at `path` and closes it again, so that a store that cannot be
 * opened (damaged: a CURRENT or MANIFEST file cut short or overwritten; or held by another
 * program) is a user-facing error naming the folder and the way out. dynalite itself would listen
 * anyway and fail every request with "Database is closed", ending its thread.
 */
async function checkStore(path: string): Promise<void> {
  const dynaliteRequire = createRequire(createRequire(import.meta.url).resolve("dynalite"));
  const { Level } = dynaliteRequire("level") as {
    Level: new (path: string) => { open(): Promise<void>; close(): Promise<void> };
  };
  const db = new Level(path);
  try {
    await db.open();
  } catch (error) {
    const e = error as Error & { cause?: Error & { code?: string } };
    const why = e.cause?.message ?? e.message;
    const locked = e.cause?.code === "LEVEL_LOCKED";
    throw Object.assign(
      new Error(
        locked
          ? `dynalite: its tables in ${JSON.stringify(path)} are held by another process (${why}); stop it and run again`
          : `dynalite: its tables in ${JSON.stringify(path)} cannot be opened (${why}); move the folder away to start with empty tables (mv ${JSON.stringify(path)} ${JSON.stringify(`${path}.damaged`)})`,
      ),
      { userFacing: true },
    );
  }
  await db.close();
}

/** A request whose body was read, for a handler that reads it again: the same head, the body replayed. */
function replayed(req: IncomingMessage, body: Buffer): IncomingMessage {
  const copy = Readable.from(body.length > 0 ? [body] : []);
  return Object.assign(copy, { headers: req.headers, method: req.method, url: req.url }) as unknown as IncomingMessage;
}

const defaultLogger: Logger = { info: () => {}, warn: console.error, error: console.error };

const THREAD = new URL("./dynalite-thread.js", import.meta.url);

/** What dynalite's thread starts with (its workerData): the path and options, less the logger. */
export interface DynaliteThreadData {
  path: string | undefined;
  options: Omit<DynaliteOptions, "logger"> & { credentials: Credentials };
}

/** What dynalite's thread posts to the thread that started it. */
export type DynaliteThreadMessage =
  | { type: "listening"; endpoint: string }
  /** It could not start, for a reason the user fixes (a damaged store): said as it is. */
  | { type: "refused"; text: string }
  | { type: "log"; level: "info" | "warn" | "error"; text: string };

/** dynalite on a thread of its own. */
export interface RunningDynaliteThread extends RunningDynalite {
  /** Its thread now: a new one once a thread that ended was started again. */
  readonly worker: Worker;
}

/** How long a stop waits for dynalite's thread to close its store before it ends the thread. */
const THREAD_CLOSE_MS = 5000;

/**
 * Starts dynalite (as `startDynalite`) on a worker thread of its own: its work (LevelDB's reads, a
 * Query over a table of connections, each request's signature check) runs beside the thread that
 * started it rather than between that thread's work, which under `run --provider aws` is every
 * client's frames. What it logs reaches `options.logger`. A thread that ends on an error once it
 * served is started again on the same port, with the error logged (a store on disk keeps its
 * tables; one in memory starts empty).
 */
export async function startDynaliteThread(
  path?: string,
  options: DynaliteOptions = {},
): Promise<RunningDynaliteThread> {
  const { logger = defaultLogger, ...rest } = options;
  const data: DynaliteThreadData = { path, options: { ...rest, credentials: rest.credentials ?? runCredentials() } };
  let worker!: Worker;
  let stopping = false;
  const start = (): Promise<string> =>
    new Promise<string>((resolve, reject) => {
      let listening = false;
      let failure: Error | undefined;
      const thread = new Worker(THREAD, { workerData: data });
      worker = thread;
      thread.on("message", (message: DynaliteThreadMessage) => {
        if (message.type === "log") logger[message.level](message.text);
        else if (message.type === "refused") failure = Object.assign(new Error(message.text), { userFacing: true });
        else {
          listening = true;
          resolve(message.endpoint);
        }
      });
      thread.on("error", (error) => {
        failure = error;
      });
      thread.on("exit", (code) => {
        const why = failure ? (failure.stack ?? String(failure)) : `exit code ${code}`;
        if (!listening) reject(failure ?? new Error(`dynalite's thread ended before it listened (${why})`));
        else if (!stopping) {
          logger.error(`dynalite stopped: ${why}; starting it again on ${endpoint}`);
          start().catch((error: Error) =>
            logger.error(
              `dynalite could not start again: ${error.message}; the functions' DynamoDB calls fail until run is started again`,
            ),
          );
        }
      });
    });
  const endpoint = await start();
  data.options.port = Number(new URL(endpoint).port);
  return {
    endpoint,
    credentials: data.options.credentials,
    get worker() {
      return worker;
    },
    async close() {
      stopping = true;
      // A thread that ended and could not start again: nothing left to close.
      if (worker.threadId === -1) return;
      const ended = new Promise((resolve) => worker.once("exit", resolve));
      worker.postMessage("close");
      const timer = setTimeout(() => void worker.terminate(), THREAD_CLOSE_MS);
      await ended;
      clearTimeout(timer);
    },
  };
}
