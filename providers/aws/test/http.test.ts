// The runtime's HTTP client (src/aws/http.ts) against real loopback servers: one kept-alive
// connection for consecutive requests, the body's length, and failures that say what happened.
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_TIMEOUTS, httpRequest, MAX_ANSWER_BYTES, MAX_SOCKETS_PER_HOST } from "../src/aws/http.js";

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

async function serve(
  handle: (req: IncomingMessage, body: string, res: import("node:http").ServerResponse) => void,
): Promise<{ url: URL; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => handle(req, Buffer.concat(chunks).toString("utf8"), res));
  });
  server.on("connection", (s) => sockets.add(s));
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  server.unref();
  return { url: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/path?q=1`), sockets };
}

describe("the runtime's HTTP client", () => {
  it("sends the method, headers and body with its length, and reads status, headers and body", async () => {
    const seen: Record<string, string | undefined>[] = [];
    const { url } = await serve((req, body, res) => {
      seen.push({
        method: req.method,
        url: req.url,
        length: req.headers["content-length"],
        type: req.headers["content-type"],
        body,
      });
      res.writeHead(418, { "x-amzn-errortype": "TeapotException" }).end("é short and stout");
    });
    const answer = await httpRequest(url, "POST", { "content-type": "application/json" }, '{"ü":1}');
    expect(seen).toEqual([
      {
        method: "POST",
        url: "/path?q=1",
        length: String(Buffer.byteLength('{"ü":1}')),
        type: "application/json",
        body: '{"ü":1}',
      },
    ]);
    expect(answer).toMatchObject({ status: 418, body: "é short and stout" });
    expect(answer.headers["x-amzn-errortype"]).toBe("TeapotException");
  });

  it("sends no body and no length for a request without one", async () => {
    const seen: (string | undefined)[] = [];
    const { url } = await serve((req, body, res) => {
      seen.push(req.headers["content-length"], body);
      res.end();
    });
    await httpRequest(url, "DELETE", {}, undefined);
    expect(seen).toEqual([undefined, ""]);
  });

  it("keeps one connection open for consecutive requests", async () => {
    const { url, sockets } = await serve((_req, _body, res) => res.end("ok"));
    for (let i = 0; i < 3; i++) expect((await httpRequest(url, "POST", {}, `n${i}`)).body).toBe("ok");
    expect(sockets.size).toBe(1);
  });

  it("sends a request again on a new connection when the kept-alive one was closed by the far end, as after a freeze", async () => {
    let served = 0;
    const { url, sockets } = await serve((_req, body, res) => {
      served++;
      res.end(`got ${body}`);
    });
    expect((await httpRequest(url, "POST", {}, "one")).body).toBe("got one");
    // The far end ends the idle connection, and this process sends before it has seen that (a
    // frozen function sees nothing until it runs again).
    for (const s of sockets) s.destroy();
    const second = httpRequest(url, "POST", {}, "two");
    expect((await second).body).toBe("got two");
    expect(served).toBe(2);
  });

  it("rejects an answer cut off before its end, rather than returning part of it", async () => {
    const { url } = await serve((_req, _body, res) => {
      res.writeHead(200, { "content-length": "100" });
      res.write("only part");
      setTimeout(() => res.socket?.destroy(), 10);
    });
    await expect(httpRequest(url, "POST", {}, "x")).rejects.toThrow(/aborted|closed before the whole answer/);
  });

  it("rejects a refused connection with the system's reason", async () => {
    const { url } = await serve((_req, _body, res) => res.end());
    await new Promise((r) => servers.pop()?.close(r));
    await expect(httpRequest(url, "POST", {}, "x")).rejects.toThrow(/ECONNREFUSED/);
  });

  it("refuses an endpoint that is neither http: nor https:", async () => {
    await expect(httpRequest(new URL("ftp://127.0.0.1/x"), "GET", {}, undefined)).rejects.toThrow(
      "ftp://127.0.0.1/x: only http: and https: endpoints are supported",
    );
  });

  it("opens at most 128 connections to one endpoint, and a request's wait for one is not a connect timeout", async () => {
    let open = 0;
    let most = 0;
    const { url } = await serve((_req, _body, res) => {
      setTimeout(() => res.end("ok"), 300);
    });
    const server = servers.at(-1) as Server;
    server.on("connection", (socket) => {
      most = Math.max(most, ++open);
      socket.on("close", () => open--);
    });
    // 300 at once: three waves of at most 128, the last waiting about 600 ms for a connection,
    // three times the connect timeout, which counts from getting one.
    const answers = await Promise.all(
      Array.from({ length: 300 }, () =>
        httpRequest(url, "GET", {}, undefined, { connectMs: 200, responseMs: DEFAULT_TIMEOUTS.responseMs }),
      ),
    );
    expect(MAX_SOCKETS_PER_HOST).toBe(128);
    expect(answers.every((a) => a.status === 200 && a.body === "ok")).toBe(true);
    expect(most).toBe(MAX_SOCKETS_PER_HOST);
  });

  it("cuts off an answer over its bound instead of buffering it, and says so", async () => {
    const { url } = await serve((_req, _body, res) => {
      res.writeHead(200);
      // 17 MB in 1 MB chunks, more than the 16 MB bound; the client stops reading before the end.
      const chunk = Buffer.alloc(1024 * 1024, 120);
      let sent = 0;
      const more = (): void => {
        while (sent < 17) {
          sent++;
          if (!res.write(chunk)) {
            res.once("drain", more);
            return;
          }
        }
        res.end();
      };
      res.on("error", () => {});
      more();
    });
    expect(MAX_ANSWER_BYTES).toBe(16 * 1024 * 1024);
    await expect(httpRequest(url, "GET", {}, undefined)).rejects.toThrow(
      /^127\.0\.0\.1:\d+: the answer is over 16777216 bytes; .*check the endpoint$/,
    );
    // A smaller bound, and an answer just under it, which is read whole.
    await expect(httpRequest(url, "GET", {}, undefined, DEFAULT_TIMEOUTS, 17 * 1024 * 1024)).resolves.toMatchObject({
      status: 200,
    });
  });
});
