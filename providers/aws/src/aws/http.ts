/**
 * One HTTP request over `node:http` or `node:https`, on a keep-alive agent per protocol. Not
 * `fetch`: Node's fetch (undici) sets itself up on its first use, so a cold function's first AWS
 * call (the `$connect`'s PutItem, the first PostToConnection) takes 46–67 ms over fetch, 15–23 ms
 * over node:http (bench/aws-runtime.mjs, first event). The modules load on the first request, not at init.
 */
import type { Agent, IncomingHttpHeaders, IncomingMessage, RequestOptions } from "node:http";
import type { Socket } from "node:net";

/** An answer, whatever its status. */
export interface HttpAnswer {
  status: number;
  /** Lower-cased names, as Node gives them. */
  headers: IncomingHttpHeaders;
  body: string;
}

interface Transport {
  request: (
    url: URL,
    options: RequestOptions,
    callback: (response: IncomingMessage) => void,
  ) => {
    on(event: "error", listener: (error: NodeJS.ErrnoException) => void): unknown;
    on(event: "socket", listener: (socket: Socket) => void): unknown;
    end(body?: string | Uint8Array): void;
    destroy(error: Error): void;
    /** Whether it went out on a kept-alive connection an earlier request had used. */
    reusedSocket: boolean;
  };
  agent: Agent;
}

const transports = new Map<string, Promise<Transport>>();

/**
 * Connections open at once to one endpoint; more requests wait for one of them. A function on AWS
 * runs one invocation at a time, which has at most 64 posts in flight (a broadcast's page), so
 * this never holds it back there. Where many invocations share a process (the emulator runs a
 * broadcast's 100 pages in one), it keeps them from opening thousands of connections at once:
 * unbounded, 6,400 connects to one server overflowed its accept queue, and the connects the
 * kernel dropped failed their 1 s timeout (a broadcast to 100,000 in bench/aws-broadcast.mjs lost
 * 160–230 frames that way).
 */
export const MAX_SOCKETS_PER_HOST = 128;

/**
 * The module, loaded on first use: by process.getBuiltinModule (Node 20.16 and later), which skips
 * the ES module loader an import() goes through (~1.5 ms less on a cold function's first request).
 */
function load(name: "node:http" | "node:https"): Promise<typeof import("node:http")> {
  const builtin = process.getBuiltinModule?.(name) as typeof import("node:http") | undefined;
  return builtin ? Promise.resolve(builtin) : import(name);
}

function transport(protocol: string): Promise<Transport> {
  let t = transports.get(protocol);
  if (!t) {
    t = load(protocol === "https:" ? "node:https" : "node:http").then((m) => ({
      request: m.request as Transport["request"],
      // Connections stay open between invocations; one the far end closed while the function
      // was frozen fails its next request, which httpRequest sends again on a new connection.
      agent: new m.Agent({ keepAlive: true, maxSockets: MAX_SOCKETS_PER_HOST }),
    }));
    transports.set(protocol, t);
  }
  return t;
}

/** How long a request may take; either, exceeded, fails it with a TimeoutError. */
export interface Timeouts {
  /**
   * From the request getting a connection until it is open (a kept-alive one is open already);
   * time spent waiting for one of the MAX_SOCKETS_PER_HOST connections is not counted.
   */
  connectMs: number;
  /** From the connection being open until the whole answer has arrived. */
  responseMs: number;
}

/**
 * The runtime's: AWS's endpoints are in the function's own region, where a connection opens in a
 * few milliseconds and DynamoDB and the Management API answer in tens; a second's wait to
 * connect or three for an answer means the connection or the far end is stuck, and a fresh
 * attempt does better than waiting for Lambda to end the invocation.
 */
export const DEFAULT_TIMEOUTS: Timeouts = { connectMs: 1_000, responseMs: 3_000 };

/**
 * The largest answer read: DynamoDB's biggest (a 1 MB Query page, its JSON encoding and binary as
 * base64 included) with room to spare. A larger one is cut off, not buffered.
 */
export const MAX_ANSWER_BYTES = 16 * 1024 * 1024;

/** An answer larger than MAX_ANSWER_BYTES. */
export class AnswerTooLargeError extends Error {
  override readonly name = "AnswerTooLargeError";
}

/** A request that took longer than its timeout. */
export class TimeoutError extends Error {
  override readonly name = "TimeoutError";
}

/** A kept-alive connection the far end had closed (while the function was frozen, say). */
class StaleConnection extends Error {}

/**
 * Sends one request and reads the whole answer; a failure to connect, send or read rejects. A
 * request that a kept-alive connection fails before any answer, because the far end had closed
 * it, is sent once more on a new connection: the far end never read it (closing a connection
 * between requests is how servers end idle ones), so even a call that is never retried goes once.
 */
export async function httpRequest(
  url: URL,
  method: string,
  headers: Record<string, string>,
  body: string | Uint8Array | undefined,
  timeouts: Timeouts = DEFAULT_TIMEOUTS,
  maxAnswerBytes: number = MAX_ANSWER_BYTES,
): Promise<HttpAnswer> {
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`${url.href}: only http: and https: endpoints are supported`);
  }
  const { request, agent } = await transport(url.protocol);
  const outgoing = { ...headers };
  if (body !== undefined) outgoing["content-length"] = String(Buffer.byteLength(body));
  try {
    return await requestOnce(agent);
  } catch (error) {
    if (!(error instanceof StaleConnection)) throw error;
    return requestOnce(false);
  }

  function requestOnce(agent: Transport["agent"] | false): Promise<HttpAnswer> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let done = false;
      const settle =
        <T>(f: (value: T) => void) =>
        (value: T) => {
          done = true;
          clearTimeout(timer);
          f(value);
        };
      const fail = settle(reject);
      let answered = false;
      const req = request(url, { method, headers: outgoing, agent }, (response) => {
        answered = true;
        const chunks: Buffer[] = [];
        let size = 0;
        response.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size <= maxAnswerBytes) chunks.push(chunk);
          else if (!done) {
            const error = new AnswerTooLargeError(
              `${url.host}: the answer is over ${maxAnswerBytes} bytes; a page this large is not an AWS answer, check the endpoint`,
            );
            fail(error);
            req.destroy(error);
          }
        });
        response.on("error", fail);
        response.on("close", () => {
          if (!response.complete) fail(new Error("the connection closed before the whole answer arrived"));
        });
        response.on("end", () =>
          settle(resolve)({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body: Buffer.concat(chunks).toString("utf8"),
          }),
        );
      });
      const expire = (what: string, ms: number) => {
        clearTimeout(timer);
        if (done) return;
        timer = setTimeout(() => {
          const error = new TimeoutError(`${url.host}: ${what} ${ms} ms`);
          fail(error);
          req.destroy(error);
        }, ms);
      };
      const answering = () => expire("no whole answer within", timeouts.responseMs);
      req.on("socket", (socket) => {
        if (!socket.connecting) answering();
        else {
          expire("no connection within", timeouts.connectMs);
          socket.once("connect", answering);
        }
      });
      req.on("error", (error: NodeJS.ErrnoException) => {
        const stale =
          !answered && req.reusedSocket && agent !== false && (error.code === "ECONNRESET" || error.code === "EPIPE");
        fail(stale ? new StaleConnection(error.message) : error);
      });
      req.end(body);
    });
  }
}
