// Our Management API client and the socket backend over it, against a loopback server playing
// API Gateway's Management API for stage `live`: it checks each request's signature and answers as
// AWS documents (200, 204, 410 Gone, 403 Forbidden, 413 Payload Too Large, 429 Too Many Requests).
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { status } from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { ManagementApiClient } from "../src/aws/management.js";
import { ApiGateway } from "../src/websocket/gateway.js";
import {
  type Answer,
  cleanup,
  ENV,
  expectSigned,
  FAST_RETRY,
  loopback,
  memoryLogger,
  type Received,
} from "./helpers.js";

afterEach(cleanup);

/** A real connection id's shape: base64, so `=` (and in general `/` and `+`) need encoding. */
const ID = "L0SM9cOFvHcCIhw=";
const PATH = "/live/@connections/L0SM9cOFvHcCIhw%3D";

const error = (statusCode: number, type: string, message: string): Answer => ({
  status: statusCode,
  headers: { "content-type": "application/json", "x-amzn-errortype": type },
  body: JSON.stringify({ message }),
});

/** A Management API knowing `open` connections; ids named after an error answer with it. */
async function managementApi(open: string[], answers: Record<string, () => Answer> = {}) {
  const live = new Set(open);
  const server = await loopback((r: Received) => {
    const id = decodeURIComponent(r.path.replace(/^\/live\/@connections\//, ""));
    const special = answers[id];
    if (special) return special();
    if (!live.has(id)) return error(410, "GoneException", "");
    if (r.method === "POST") {
      if (r.body.length > 128 * 1024) return error(413, "PayloadTooLargeException", "Request entity too large");
      return { status: 200 };
    }
    if (r.method === "GET") {
      return {
        status: 200,
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          connectedAt: "2026-12-01T07:00:00.000Z",
          identity: { sourceIp: "192.0.2.7", userAgent: "wscat" },
          lastActiveAt: "2026-12-01T07:05:00.000Z",
        }),
      };
    }
    live.delete(id);
    return { status: 204 };
  });
  const client = new ManagementApiClient(`${server.url}/live`, { ...ENV }, FAST_RETRY);
  const logger = memoryLogger();
  const gateway = new ApiGateway(
    "chat",
    { apiId: "abc123", url: "wss://abc123.example/live", endpoint: `${server.url}/live` },
    client,
    undefined,
    logger,
  );
  return { server, client, gateway, logger };
}

describe("ManagementApiClient", () => {
  it("posts a frame's bytes as they are to {endpoint}/@connections/{encoded id}, signed for execute-api", async () => {
    const { server, client } = await managementApi([ID]);
    const frame = new Uint8Array([0xff, 0x00, 0x80, 0x41]);
    await client.postToConnection(ID, frame);
    const [r] = server.requests as [Received];
    expect([r.method, r.path, r.headers["content-type"]]).toEqual(["POST", PATH, "application/octet-stream"]);
    expect(r.body.equals(Buffer.from(frame))).toBe(true);
    expectSigned(r, "execute-api");
  });

  it("reads GetConnection's answer and deletes with DELETE, both signed", async () => {
    const { server, client } = await managementApi([ID]);
    expect(await client.getConnection(ID)).toEqual({
      connectedAt: new Date("2026-12-01T07:00:00.000Z"),
      lastActiveAt: new Date("2026-12-01T07:05:00.000Z"),
      sourceIp: "192.0.2.7",
      userAgent: "wscat",
    });
    await client.deleteConnection(ID);
    expect(server.requests.map((r) => [r.method, r.path, r.body.length])).toEqual([
      ["GET", PATH, 0],
      ["DELETE", PATH, 0],
    ]);
    for (const r of server.requests) expectSigned(r, "execute-api");
  });

  it("encodes ids with / and + and keeps the endpoint's stage when it ends with a slash", async () => {
    const { server } = await managementApi(["a/b+c="]);
    const client = new ManagementApiClient(`${server.url}/live/`, { ...ENV }, FAST_RETRY);
    await client.postToConnection("a/b+c=", new Uint8Array([1]));
    expect(server.requests[0]?.path).toBe("/live/@connections/a%2Fb%2Bc%3D");
    expectSigned(server.requests[0] as Received, "execute-api");
  });

  it("calls the stage endpoint it is given even when AWS_ENDPOINT_URL is set (in code wins, as in the SDK)", async () => {
    const { server } = await managementApi([ID]);
    const elsewhere = await loopback(() => ({ status: 500 }));
    const client = new ManagementApiClient(
      `${server.url}/live`,
      { ...ENV, AWS_ENDPOINT_URL: elsewhere.url, AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI: elsewhere.url },
      FAST_RETRY,
    );
    await client.postToConnection(ID, new Uint8Array([1]));
    expect(server.requests).toHaveLength(1);
    expect(elsewhere.requests).toHaveLength(0);
  });

  it("names failures as the API documents them, from the status when the answer names none", async () => {
    const { client } = await managementApi([], {
      bare: () => ({ status: 403, body: '{"message":"Forbidden"}' }),
    });
    await expect(client.postToConnection("gone", new Uint8Array())).rejects.toMatchObject({
      name: "GoneException",
      statusCode: 410,
    });
    await expect(client.getConnection("bare")).rejects.toMatchObject({
      name: "ForbiddenException",
      statusCode: 403,
      message: "Forbidden",
    });
  });
});

describe("a socket over the Management API (ApiGateway)", () => {
  it("sends, looks up and closes a live connection", async () => {
    const { gateway, server } = await managementApi([ID]);
    expect(await gateway.send(ID, new TextEncoder().encode("hi"), false)).toBe(true);
    expect(await gateway.has(ID)).toBe(true);
    expect(await gateway.info(ID)).toEqual({
      connectionId: ID,
      connectedAt: Date.parse("2026-12-01T07:00:00.000Z"),
      query: {},
      headers: { "user-agent": { value: ["wscat"] } },
      remoteAddress: "192.0.2.7",
    });
    expect(await gateway.close(ID, 1000, "")).toBe(true);
    expect(await gateway.has(ID)).toBe(false);
    expect(server.requests.map((r) => r.method)).toEqual(["POST", "GET", "GET", "DELETE", "GET"]);
  });

  it("treats 410 Gone as not connected, without retrying", async () => {
    const { gateway, server } = await managementApi([]);
    expect(await gateway.send("gone", new Uint8Array([1]), true)).toBe(false);
    expect(await gateway.has("gone")).toBe(false);
    expect(await gateway.info("gone")).toBeUndefined();
    expect(await gateway.close("gone", 1000, "")).toBe(false);
    expect(server.requests).toHaveLength(4);
  });

  it("turns 403 into PERMISSION_DENIED saying to declare the socket", async () => {
    const { gateway, server } = await managementApi([], {
      [ID]: () => error(403, "ForbiddenException", "Forbidden"),
    });
    await expect(gateway.send(ID, new Uint8Array([1]), false)).rejects.toMatchObject({
      code: status.PERMISSION_DENIED,
      message: `websocket "chat": AWS refused to send to connection ${ID} (ForbiddenException: Forbidden); declare websocket("chat") in this service so its role may manage connections, and deploy again`,
    });
    expect(server.requests).toHaveLength(1);
  });

  it("turns 413 into INVALID_ARGUMENT naming API Gateway's limit", async () => {
    const { gateway } = await managementApi([], {
      [ID]: () => error(413, "PayloadTooLargeException", "Request entity too large"),
    });
    await expect(gateway.send(ID, new Uint8Array(1), true)).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      message: 'websocket "chat": the message is too large for API Gateway (at most 128 KB); send less',
    });
  });

  it("refuses a send and a broadcast over 128 KB before any request, naming API Gateway's limit, and posts 128 KB", async () => {
    const { gateway, server } = await managementApi([ID]);
    const tooLarge = {
      code: status.INVALID_ARGUMENT,
      message: 'websocket "chat": the message is too large for API Gateway (at most 128 KB); send less',
    };
    await expect(gateway.send(ID, new Uint8Array(128 * 1024 + 1), true)).rejects.toMatchObject(tooLarge);
    await expect(gateway.broadcast(new Uint8Array(128 * 1024 + 1), true, new Set())).rejects.toMatchObject(tooLarge);
    expect(server.requests).toHaveLength(0);
    expect(await gateway.send(ID, new Uint8Array(128 * 1024), true)).toBe(true);
    expect(server.requests).toHaveLength(1);
  });

  it("retries 429 three times in all, then says RESOURCE_EXHAUSTED", async () => {
    const { gateway, server } = await managementApi([], {
      [ID]: () => error(429, "LimitExceededException", "Too Many Requests"),
    });
    await expect(gateway.close(ID, 1000, "")).rejects.toMatchObject({
      code: status.RESOURCE_EXHAUSTED,
      message: `websocket "chat": API Gateway throttled close connection ${ID}; retry later (LimitExceededException: Too Many Requests)`,
    });
    expect(server.requests).toHaveLength(3);
  });

  it("gets a frame through when a 429 or 5xx passes", async () => {
    const answers: Answer[] = [
      error(429, "LimitExceededException", "Too Many Requests"),
      { status: 502, body: '{"message":"Internal server error"}' },
      { status: 200 },
    ];
    const { gateway, server } = await managementApi([], { [ID]: () => answers.shift() ?? { status: 599 } });
    expect(await gateway.send(ID, new Uint8Array([1]), false)).toBe(true);
    expect(server.requests).toHaveLength(3);
  });

  it("says UNAVAILABLE when nothing answers", async () => {
    // A port that was just ours and is closed now.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const endpoint = `http://127.0.0.1:${port}/live`;
    const client = new ManagementApiClient(endpoint, { ...ENV }, FAST_RETRY);
    const gateway = new ApiGateway(
      "chat",
      { apiId: "abc123", url: "wss://abc123.example/live", endpoint },
      client,
      undefined,
      memoryLogger(),
    );
    await expect(gateway.send(ID, new Uint8Array([1]), false)).rejects.toMatchObject({
      code: status.UNAVAILABLE,
      message: expect.stringMatching(
        /^websocket "chat": could not send to connection .*: NetworkError: .*ECONNREFUSED/,
      ),
    });
  });
});
