/**
 * One HTTP request over `node:http` or `node:https`, on a keep-alive agent per protocol. Not
 * `fetch`: Node's fetch (undici) sets itself up on its first use, so a cold function's first AWS
 * call (the `$connect`'s PutItem, the first PostToConnection) took 46–67 ms, against 15–23 ms now
 * (bench/aws-runtime.mjs, first event). The modules load on the first request, not at init.
 */
import type { Agent, IncomingHttpHeaders, IncomingMessage, RequestOptions } from "node:http";

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
    on(event: "error", listener: (error: Error) => void): unknown;
    end(body?: string | Uint8Array): void;
  };
  agent: Agent;
}

const transports = new Map<string, Promise<Transport>>();

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
      // was frozen fails its next request, which is retried as a network error.
      agent: new m.Agent({ keepAlive: true }),
    }));
    transports.set(protocol, t);
  }
  return t;
}

/** Sends one request and reads the whole answer; a failure to connect, send or read rejects. */
export async function httpRequest(
  url: URL,
  method: string,
  headers: Record<string, string>,
  body: string | Uint8Array | undefined,
): Promise<HttpAnswer> {
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`${url.href}: only http: and https: endpoints are supported`);
  }
  const { request, agent } = await transport(url.protocol);
  const outgoing = { ...headers };
  if (body !== undefined) outgoing["content-length"] = String(Buffer.byteLength(body));
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers: outgoing, agent }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("error", reject);
      response.on("close", () => {
        if (!response.complete) reject(new Error("the connection closed before the whole answer arrived"));
      });
      response.on("end", () =>
        resolve({
          status: response.statusCode ?? 0,
          headers: response.headers,
          body: Buffer.concat(chunks).toString("utf8"),
        }),
      );
    });
    req.on("error", reject);
    req.end(body);
  });
}
