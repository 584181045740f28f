// How a broadcast is handed over (src/websocket/gateway.ts): the socket backend over a connections
// table in dynalite, the Management API double on 127.0.0.1 and Lambda's Invoke API played by a
// loopback server (signed requests checked) that queues, refuses or fails each hand-over. Which
// pages go where, what the continuation carries, and that a page Lambda may have queued is never
// posted a second way.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DynamoDbClient } from "../src/aws/dynamodb.js";
import { ManagementApiClient } from "../src/aws/management.js";
import { seedConnections, startManagementDouble } from "../src/emulator/management-double.js";
import { invokeAsync } from "../src/runtime/invoke.js";
import { ConnectionsTable } from "../src/websocket/connections-table.js";
import { type BroadcastEvent, isBroadcastEvent } from "../src/websocket/fanout.js";
import { ApiGateway } from "../src/websocket/gateway.js";
import {
  type Answer,
  CREDENTIALS,
  cleanup,
  createTable,
  ENV,
  expectSigned,
  loopback,
  memoryLogger,
  type Received,
  sdkDynamo,
  startDynalite,
} from "./helpers.js";

let endpoint: string;
let tables = 0;

beforeEach(async () => {
  endpoint = await startDynalite();
});
afterEach(cleanup);

const NO_RETRY = { attempts: 1, baseDelayMs: 0, throttlingBaseDelayMs: 0 };
const idsOf = (n: number, prefix: string) =>
  Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(10, "0")}=`);

/**
 * A socket "room" with `ids` recorded (connected a minute ago; `opening` ones just now), its
 * Management API a double (410 for `gone`) and Lambda answering `lambda`.
 */
async function socket(
  ids: string[],
  lambda: (r: Received) => Answer,
  pageSize = 100,
  options: { gone?: string[]; opening?: string[] } = {},
) {
  const table = `connections-${++tables}`;
  const sdk = sdkDynamo(endpoint);
  await createTable(sdk, table, "socket", "id");
  sdk.destroy();
  const dynamodb = { endpoint, credentials: CREDENTIALS, region: ENV.AWS_REGION };
  await seedConnections(dynamodb, table, "room", ids);
  if (options.opening) await seedConnections(dynamodb, table, "room", options.opening, Date.now());
  const double = await startManagementDouble({ latencyMs: 1, perSecond: 100_000, gone: options.gone ?? [] });
  const invoke = await loopback(lambda);
  const env = { ...ENV, AWS_ENDPOINT_URL_DYNAMODB: endpoint, AWS_ENDPOINT_URL_LAMBDA: invoke.url };
  const connections = new ConnectionsTable(new DynamoDbClient(env), table);
  const logger = memoryLogger();
  const management = new ManagementApiClient(`${double.url}/live`, env, NO_RETRY);
  const gateway = new ApiGateway(
    "room",
    { apiId: "api", url: "wss://api.invalid/live", endpoint: `${double.url}/live` },
    management,
    connections,
    logger,
    { inlineMax: 100, pageSize, fanout: (event) => invokeAsync("room-fn", event, env, NO_RETRY) },
  );
  const events = () =>
    invoke.requests.map((r) => {
      expectSigned(r, "lambda");
      expect(r.path).toBe("/2015-03-31/functions/room-fn/invocations");
      expect(r.headers["x-amz-invocation-type"]).toBe("Event");
      const event = JSON.parse(r.body.toString("utf8")) as BroadcastEvent;
      expect(isBroadcastEvent(event)).toBe(true);
      return event;
    });
  return { gateway, double, logger, events, management };
}

const queued: Answer = { status: 202 };

describe("a broadcast's hand-over", () => {
  it("hands 5 pages over from the caller and the rest to a continuation, which hands over the others, each id once", async () => {
    const ids = idsOf(1234, "Cont");
    const s = await socket(ids, () => queued);
    const except = new Set([ids[3] as string, ids[1200] as string]);
    const sent = await s.gateway.broadcast(Buffer.from("hello"), false, except);
    expect(s.double.delivered()).toBe(0); // the caller posts nothing itself
    const first = s.events();
    const continuation = first.filter((e) => e.start);
    expect(continuation).toHaveLength(1);
    const pages = first.filter((e) => !e.start);
    expect(pages.map((e) => e.page)).toEqual([1, 2, 3, 4, 5, 6].slice(0, pages.length));
    expect(pages.length).toBeGreaterThanOrEqual(5);
    expect(sent).toBe(pages.reduce((n, e) => n + e.ids.length, 0));
    expect(continuation[0]?.page).toBe(pages.length);
    expect(continuation[0]?.except?.sort()).toEqual([...except].sort());
    for (const e of pages) {
      expect(e.ids.length).toBeLessThanOrEqual(100);
      expect(Buffer.from(e.data, "base64").toString()).toBe("hello");
    }

    // The continuation, as the function's next invocation gets it.
    await s.gateway.continueBroadcast(continuation[0] as BroadcastEvent);
    const later = s.events().slice(first.length);
    expect(later.some((e) => e.start)).toBe(false);
    expect(later.map((e) => e.page)).toEqual(later.map((_, i) => pages.length + 1 + i));
    const all = [...pages, ...later].flatMap((e) => e.ids);
    expect(all.length).toBe(ids.length - 2);
    expect(new Set(all).size).toBe(all.length);
    expect(all.sort()).toEqual(ids.filter((id) => !except.has(id)).sort());
  });

  it("posts everything from the caller when Lambda refuses the first hand-over (403), saying to deploy again", async () => {
    const ids = idsOf(250, "Refused");
    const s = await socket(ids, () => ({
      status: 403,
      headers: { "content-type": "application/json", "x-amzn-errortype": "AccessDeniedException" },
      body: JSON.stringify({ message: "not authorized to perform lambda:InvokeFunction" }),
    }));
    const sent = await s.gateway.broadcast(Buffer.from("hi"), false, new Set());
    expect(sent).toBe(250);
    expect(s.double.delivered()).toBe(250);
    expect([...s.double.received.values()].every((n) => n === 1)).toBe(true);
    expect(s.logger.lines.join("\n")).toMatch(
      /warn: websocket "room": could not hand broadcast [0-9a-f-]{36} to an asynchronous invocation \(Lambda Invoke answered 403: AccessDeniedException: .*\); posting it from this invocation instead, 32 at a time; deploy again so the function may invoke itself/,
    );
  });

  it("never posts a page a second way when Lambda may have queued it (500), and hands the other pages over", async () => {
    const ids = idsOf(250, "Maybe");
    let calls = 0;
    const s = await socket(ids, () =>
      ++calls === 1
        ? {
            status: 500,
            headers: { "content-type": "application/json", "x-amzn-errortype": "ServiceException" },
            body: "{}",
          }
        : queued,
    );
    const sent = await s.gateway.broadcast(Buffer.from("hi"), false, new Set());
    expect(s.double.delivered()).toBe(0);
    const events = s.events();
    expect(events).toHaveLength(3); // tried once each: 100 (lost), 100, 50
    expect(sent).toBe(150);
    expect(s.logger.lines.join("\n")).toMatch(
      /error: websocket "room": broadcast [0-9a-f-]{36}: 100 connection\(s\) were not handed over for delivery and get nothing: Lambda Invoke answered 500/,
    );
  });

  it("posts a page from its invocation: each id once, gone ones pruned from the table, one log line", async () => {
    const ids = idsOf(40, "Page");
    const s = await socket(ids, () => queued);
    const event: BroadcastEvent = {
      nitricLike: "broadcast",
      socket: "room",
      broadcast: "b-1",
      page: 7,
      data: Buffer.from("frame").toString("base64"),
      binary: false,
      ids: [...ids, "NeverConnected="],
    };
    const gone = await startManagementDouble({ latencyMs: 1, gone: ["NeverConnected=", ids[0] as string] });
    const outcome = await s.gateway.postPage(
      event,
      new ManagementApiClient(`${gone.url}/live`, { ...ENV }, NO_RETRY),
      Date.now() + 10_000,
    );
    await gone.close();
    expect(outcome).toMatchObject({ delivered: 39, gone: 2, failed: 0 });
    expect(s.logger.lines).toContainEqual(
      expect.stringMatching(
        /^info: websocket "room": broadcast b-1 page 7: delivered 39 of 41 frame\(s\), 2 gone \(pruned\), 0 failed, 0 throttled answer\(s\) retried, in \d+ ms$/,
      ),
    );
    const left = (await s.gateway.list()).map((c) => c.connectionId);
    expect(left).toHaveLength(39);
    expect(left).not.toContain(ids[0]);
  });

  it("prunes a gone connection but not one that connected just now, which may be opening (its $connect recorded it)", async () => {
    const ids = idsOf(10, "Old");
    const opening = ["JustConnected="];
    const s = await socket(ids, () => queued, 100, { gone: [ids[0] as string, ...opening], opening });
    // Posted by the caller (under inlineMax): 9 get it, the two 410s are told apart by age.
    expect(await s.gateway.broadcast(Buffer.from("hi"), false, new Set())).toBe(9);
    const left = (await s.gateway.list()).map((c) => c.connectionId);
    expect(left).toContain("JustConnected=");
    expect(left).not.toContain(ids[0]);
    expect(left).toHaveLength(10);
    await s.double.close();
  });
});
