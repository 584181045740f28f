// Poison events on the local provider: an event whose delivery ended with its service dying is
// delivered at most MAX_FATAL_DELIVERIES times. The tests play the service (real gRPC or port
// clients) and the CLI's supervisor (serviceExited / serviceStarting, as it calls them).
import type { IncomingMessage } from "node:http";
import {
  type ServerMessage,
  type WebsocketEventRequest,
  WebsocketEventType,
  WebsocketHandler,
} from "@nitric-like/contracts/websockets";
import { MAX_FATAL_DELIVERIES } from "@nitric-like/provider-kit";
import type { Client } from "@nitric-like/rpc";
import type { Spec } from "@nitric-like/spec";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import type { LocalProvider } from "../src/index.js";
import {
  accept,
  cleanup,
  closed,
  declareSocket,
  handle,
  nextMessage,
  open,
  serviceClient,
  sleep,
  startProvider,
  TRANSPORTS,
  until,
  urlOf,
  useTransport,
} from "./helpers.js";

afterEach(cleanup);

const text = (e: WebsocketEventRequest) =>
  e.websocketEvent.case === "message" ? Buffer.from(e.websocketEvent.value.body).toString() : "";

const echo = (e: WebsocketEventRequest) => ({
  replies: e.websocketEvent.case === "message" ? [{ data: e.websocketEvent.value.body }] : [],
});

/** One process of service "svc": connects accepted, messages answered by `answer` (undefined: never). */
async function serviceProcess(
  provider: LocalProvider,
  answer: (e: WebsocketEventRequest) => ReturnType<typeof echo> | undefined,
) {
  provider.serviceStarting("svc");
  const client: Client = await serviceClient(provider, "svc");
  await declareSocket(client, "chat");
  await handle(client, "chat", "connect", accept);
  await handle(client, "chat", "disconnect", () => ({}));
  return handle(client, "chat", "message", answer);
}

const spec = {
  name: "test",
  services: [],
  resources: [
    {
      kind: "websocket" as const,
      name: "chat",
      declaredBy: ["svc"],
      handlers: { connect: "svc", disconnect: "svc", message: "svc" },
    },
  ],
  policies: [],
};

describe.each(TRANSPORTS)("poison messages over %s", (transport) => {
  beforeEach(() => useTransport(transport));

  it("drops a message its service died on twice: its client gets 1011 and the reason, one log line names service, socket and size, another client is answered", async () => {
    expect(MAX_FATAL_DELIVERIES).toBe(2);
    const { provider, logs } = await startProvider({ spec });
    const first = await serviceProcess(provider, () => undefined);
    const poisoner = await open(urlOf(provider, "chat"));
    const other = await open(urlOf(provider, "chat"));
    const gone = closed(poisoner);
    poisoner.send("poison pill");
    await until(() => first.events.length === 1, "the first delivery");
    // The service dies with the message unanswered: counted, and redelivered to its next process.
    expect(provider.serviceExited("svc", 1, null)).toBe(1);
    const second = await serviceProcess(provider, () => undefined);
    await until(() => second.events.length === 1, "the second delivery");
    expect(text(second.events[0] as WebsocketEventRequest)).toBe("poison pill");
    // It dies again on it: the message is dropped and its client closed, at once (no restart needed).
    expect(provider.serviceExited("svc", null, "SIGKILL")).toBe(1);
    expect(await gone).toEqual({
      code: 1011,
      reason: `message handler's service "svc" exited twice while handling this message`,
    });
    expect(logs.error).toHaveLength(1);
    expect(logs.error[0]).toMatch(
      /^websocket "chat": service "svc" exited twice while handling a 11-byte message of connection \S+, so that event is dropped; closed the connection with 1011$/,
    );
    // The next process never sees it, and answers the other client.
    const third = await serviceProcess(provider, echo);
    const got = nextMessage(other);
    other.send("still here");
    expect((await got).data.toString()).toBe("still here");
    await sleep(50);
    expect(third.events.map(text)).toEqual(["still here"]);
    expect(other.readyState).toBe(1);
  });

  it("names the route in the close reason and the log line when a routed message is the poison", async () => {
    const routed: Spec = {
      ...spec,
      resources: spec.resources.map((r) => ({ ...r, routes: [{ action: "join", service: "svc" }] })),
    };
    const { provider, logs } = await startProvider({ spec: routed });
    const process = async () => {
      await serviceProcess(provider, echo);
      const client: Client = await serviceClient(provider, "svc");
      return handle(client, "chat", "message", () => undefined, "join");
    };
    const first = await process();
    const poisoner = await open(urlOf(provider, "chat"));
    const gone = closed(poisoner);
    poisoner.send(JSON.stringify({ action: "join", room: "a" }));
    await until(() => first.events.length === 1, "the first delivery to the route");
    expect(provider.serviceExited("svc", 1, null)).toBe(1);
    const second = await process();
    await until(() => second.events.length === 1, "the second delivery to the route");
    expect(provider.serviceExited("svc", 1, null)).toBe(1);
    expect(await gone).toEqual({
      code: 1011,
      reason: `route "join"'s service "svc" exited twice while handling this message`,
    });
    expect(logs.error).toEqual([
      expect.stringMatching(
        /^websocket "chat": service "svc" exited twice while handling a 28-byte message for route "join" of connection \S+, so that event is dropped; closed the connection with 1011$/,
      ),
    ]);
  });

  it("tries a message that was in flight when its service died alone, so a message that died with it is answered and not dropped", async () => {
    const { provider, logs } = await startProvider({ spec });
    const first = await serviceProcess(provider, () => undefined);
    const poisoner = await open(urlOf(provider, "chat"));
    const innocent = await open(urlOf(provider, "chat"));
    // Connected before: while a suspect is tried, its service's connect events wait too.
    const bystander = await open(urlOf(provider, "chat"));
    const gone = closed(poisoner);
    poisoner.send("poison");
    innocent.send("innocent");
    await until(() => first.events.length === 2, "both deliveries");
    expect(provider.serviceExited("svc", 1, null)).toBe(2);
    // Both are suspects now: the first goes alone; the other waits until it is answered.
    const second = await serviceProcess(provider, () => undefined);
    await until(() => second.events.length === 1, "the poison message alone");
    bystander.send("fresh");
    await sleep(100);
    expect(second.events.map(text)).toEqual(["poison"]);
    provider.serviceExited("svc", 1, null);
    expect((await gone).code).toBe(1011);
    const answered = [nextMessage(innocent), nextMessage(bystander)];
    const third = await serviceProcess(provider, echo);
    expect((await Promise.all(answered)).map((m) => m.data.toString())).toEqual(["innocent", "fresh"]);
    expect(third.events.map(text)).toEqual(["innocent", "fresh"]);
    expect(logs.error).toHaveLength(1);
    expect(innocent.readyState).toBe(1);
  });

  it("holds other messages while a suspect is tried alone, then sends them once it is answered", async () => {
    const { provider } = await startProvider({ spec });
    const first = await serviceProcess(provider, () => undefined);
    const a = await open(urlOf(provider, "chat"));
    // Connected before: while a suspect is tried, its service's connect events wait too.
    const b = await open(urlOf(provider, "chat"));
    a.send("slow but fine");
    await until(() => first.events.length === 1, "the first delivery");
    provider.serviceExited("svc", 1, null);
    // The next process answers "after" at once and the suspect only when the test says so.
    provider.serviceStarting("svc");
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "chat");
    await handle(client, "chat", "connect", accept);
    const call = client.bidi(WebsocketHandler.method.handleEvents);
    call.on("error", () => {});
    const seen: { id: string; event: WebsocketEventRequest }[] = [];
    call.on("data", (m: ServerMessage) => {
      if (m.content.case !== "websocketEventRequest") return;
      seen.push({ id: m.id, event: m.content.value });
      if (text(m.content.value) === "after")
        call.write({ id: m.id, content: { case: "websocketEventResponse", value: echo(m.content.value) } });
    });
    call.write({
      id: "",
      content: { case: "registrationRequest", value: { socketName: "chat", eventType: WebsocketEventType.Message } },
    });
    await until(() => seen.length === 1, "the suspect");
    const gotB = nextMessage(b);
    b.send("after");
    await sleep(100);
    expect(seen.map((s) => text(s.event))).toEqual(["slow but fine"]);
    const gotA = nextMessage(a);
    const [suspect] = seen as [{ id: string; event: WebsocketEventRequest }];
    call.write({ id: suspect.id, content: { case: "websocketEventResponse", value: echo(suspect.event) } });
    expect((await gotA).data.toString()).toBe("slow but fine");
    expect((await gotB).data.toString()).toBe("after");
    expect(seen.map((s) => text(s.event))).toEqual(["slow but fine", "after"]);
    call.end();
  });

  it("does not count a delivery against a message when its service was stopped on purpose", async () => {
    const { provider, logs } = await startProvider({ spec });
    const first = await serviceProcess(provider, () => undefined);
    const ws = await open(urlOf(provider, "chat"));
    ws.send("kept");
    await until(() => first.events.length === 1, "the first delivery");
    for (let i = 0; i < MAX_FATAL_DELIVERIES + 1; i++) {
      // A code change: the CLI stops the process itself (died: false).
      provider.serviceExited("svc", null, "SIGTERM", false);
      const next = await serviceProcess(provider, () => undefined);
      await until(() => next.events.length === 1, `delivery ${i + 2}`);
    }
    provider.serviceExited("svc", null, "SIGTERM", false);
    const got = nextMessage(ws);
    await serviceProcess(provider, echo);
    expect((await got).data.toString()).toBe("kept");
    expect(logs.error).toEqual([]);
  });

  it("counts a delivery whose handler stream ended before the service's exit was reported", async () => {
    const { provider } = await startProvider({ spec });
    let ws: WebSocket | undefined;
    let gone: Promise<{ code: number; reason: string }> | undefined;
    for (let i = 0; i < MAX_FATAL_DELIVERIES; i++) {
      const dying = await serviceProcess(provider, () => undefined);
      if (ws === undefined) {
        ws = await open(urlOf(provider, "chat"));
        gone = closed(ws);
        ws.send("poison");
      }
      await until(() => dying.events.length === 1, `delivery ${i + 1}`);
      // The stream goes first (the port or HTTP/2 connection closed), the exit is reported after.
      dying.call.end();
      await sleep(20);
      expect(provider.serviceExited("svc", 1, null)).toBe(1);
    }
    expect((await gone)?.code).toBe(1011);
  });

  it("refuses a connection whose connect handler's service died on it twice with 500, logging once", async () => {
    const { provider, logs } = await startProvider({ spec });
    let refused: Promise<{ status: number; body: string }> | undefined;
    for (let i = 0; i < MAX_FATAL_DELIVERIES; i++) {
      provider.serviceStarting("svc");
      const client = await serviceClient(provider, "svc");
      await declareSocket(client, "chat");
      const connects = await handle(client, "chat", "connect", () => undefined);
      refused ??= refusal(urlOf(provider, "chat"));
      await until(() => connects.events.length === 1, `connect delivery ${i + 1}`);
      provider.serviceExited("svc", 1, null);
    }
    const { status, body } = await (refused as Promise<{ status: number; body: string }>);
    expect(status).toBe(500);
    expect(body).toMatch(
      /^websocket "chat": service "svc" exited twice while handling a connect event of connection \S+, so that event is dropped\n$/,
    );
    expect(logs.error).toEqual([body.trim()]);
  });

  it("drops a disconnect event its service died on twice, logging once", async () => {
    const { provider, logs } = await startProvider({ spec });
    let ws: WebSocket | undefined;
    for (let i = 0; i < MAX_FATAL_DELIVERIES; i++) {
      provider.serviceStarting("svc");
      const client = await serviceClient(provider, "svc");
      await declareSocket(client, "chat");
      await handle(client, "chat", "connect", accept);
      const disconnects = await handle(client, "chat", "disconnect", () => undefined);
      if (ws === undefined) {
        ws = await open(urlOf(provider, "chat"));
        ws.close(1000);
      }
      await until(() => disconnects.events.length === 1, `disconnect delivery ${i + 1}`);
      provider.serviceExited("svc", 1, null);
    }
    await until(() => logs.error.length > 0, "the log line");
    await sleep(50);
    expect(logs.error).toHaveLength(1);
    expect(logs.error[0]).toMatch(
      /^websocket "chat": service "svc" exited twice while handling a disconnect event of connection \S+, so that event is dropped$/,
    );
  });

  it("tries a connect that was in flight when a message killed its service alone, apart from that message: the client is let in", async () => {
    const { provider, logs } = await startProvider({ spec });
    const first = await playedProcess(provider);
    const poisonerOpen = open(`${urlOf(provider, "chat")}?n=poisoner`);
    await until(() => first.seen.length === 1, "the poisoner's connect");
    first.seen[0]?.answer();
    const poisoner = await poisonerOpen;
    const gone = closed(poisoner);
    // A slow connect handler is running when a message kills the service.
    const late = open(`${urlOf(provider, "chat")}?n=late`);
    await until(() => first.seen.length === 2, "the late client's connect");
    poisoner.send("poison");
    await until(() => first.seen.length === 3, "the poison message");
    expect(provider.serviceExited("svc", 1, null)).toBe(2);
    // The next process dies on the poison message as soon as it gets it; it answers a connect in 100 ms.
    const second = await playedProcess(provider, (e) => {
      if (e.event === "message") provider.serviceExited("svc", 1, null);
      else setTimeout(e.answer, 100);
    });
    expect((await late).readyState).toBe(WebSocket.OPEN);
    expect(await gone).toEqual({
      code: 1011,
      reason: `message handler's service "svc" exited twice while handling this message`,
    });
    expect(second.seen.map((e) => e.name)).toEqual(["late", "poison"]);
    expect(logs.error).toEqual([expect.stringMatching(/exited twice while handling a 6-byte message/)]);
  });

  it("sends an event that came after a crash once the first suspect is answered, not after every suspect", async () => {
    const { provider } = await startProvider({ spec });
    const first = await playedProcess(provider);
    const suspects = ["c1", "c2", "c3"].map((n) => open(`${urlOf(provider, "chat")}?n=${n}`));
    await until(() => first.seen.length === 3, "three connects in flight");
    expect(provider.serviceExited("svc", 1, null)).toBe(3);
    const second = await playedProcess(provider);
    await until(() => second.seen.length === 1, "the first suspect, alone");
    const fresh = open(`${urlOf(provider, "chat")}?n=fresh`);
    await sleep(100);
    // Held while a suspect is tried: it could be what kills the service.
    expect(second.seen.map((e) => e.name)).toEqual(["c1"]);
    second.seen[0]?.answer();
    await until(() => second.seen.length === 2, "the next event");
    expect(second.seen.map((e) => e.name)).toEqual(["c1", "fresh"]);
    second.seen[1]?.answer();
    expect((await fresh).readyState).toBe(WebSocket.OPEN);
    // The other suspects go alone after it, one after another.
    second.onEvent = (e) => e.answer();
    for (const e of second.seen.slice(2)) e.answer();
    for (const ws of await Promise.all(suspects)) expect(ws.readyState).toBe(WebSocket.OPEN);
    expect(second.seen.map((e) => e.name)).toEqual(["c1", "fresh", "c2", "c3"]);
  });

  it("waits for a handler past its timeout before it tries a suspect, up to the timeout once more, and a death beside it is not the suspect's last", async () => {
    const { provider, logs } = await startProvider({ spec, handlerTimeoutMs: 300 });
    const first = await playedProcess(provider);
    const innocentOpen = open(`${urlOf(provider, "chat")}?n=innocent`);
    await until(() => first.seen.length === 1, "the innocent client's connect");
    first.seen[0]?.answer();
    const innocent = await innocentOpen;
    // A connect handler runs past its timeout (its client refused with 504), and then kills the service.
    const refused = refusal(`${urlOf(provider, "chat")}?n=late`);
    expect((await refused).status).toBe(504);
    innocent.send("innocent");
    await until(() => first.seen.length === 3, "the innocent message");
    provider.serviceExited("svc", 1, null);
    // Both are suspects: the late connect goes alone and times out again; the message waits for it.
    const second = await playedProcess(provider);
    await until(() => second.seen.length === 1, "the late connect, alone");
    const sent = Date.now();
    await until(() => second.seen.length === 2, "the message, once the late handler is no longer waited for");
    expect(second.seen.map((e) => e.name)).toEqual(["late", "innocent"]);
    expect(Date.now() - sent).toBeGreaterThanOrEqual(550);
    // The late handler kills the service with the message beside it: not the message's last delivery.
    provider.serviceExited("svc", 1, null);
    const answered = nextMessage(innocent);
    const third = await playedProcess(provider, (e) => e.answer());
    expect((await answered).data.toString()).toBe("innocent");
    expect(third.seen.map((e) => e.name)).toEqual(["innocent"]);
    expect(innocent.readyState).toBe(WebSocket.OPEN);
    expect(logs.error.filter((l) => l.includes("exited twice"))).toEqual([]);
    // The message's third delivery is said, once, naming the late handler that ran beside it.
    const late = second.seen[0]?.connection;
    const innocentId = second.seen[1]?.connection;
    expect(logs.warn.filter((l) => l.includes("exited"))).toEqual([
      `websocket "chat": service "svc" exited again with a 8-byte message of connection ${innocentId} in flight, but handlers past the handler timeout still ran beside it and may have caused that (the connect handler of connection ${late}); so that event is tried once more, alone, and dropped if the service dies again`,
      expect.stringMatching(/exited twice while handling a connect event of connection/),
    ]);
  });

  it("sends a suspect as soon as the message handler past its timeout that it waits for answers", async () => {
    const { provider } = await startProvider({ spec, handlerTimeoutMs: 300 });
    const first = await playedProcess(provider, (e) => {
      if (e.event === "connect") e.answer();
    });
    const slow = await open(`${urlOf(provider, "chat")}?n=slow`);
    const other = await open(`${urlOf(provider, "chat")}?n=other`);
    slow.send("slow");
    other.send("other");
    await until(() => first.seen.length === 4, "both messages");
    provider.serviceExited("svc", 1, null);
    const second = await playedProcess(provider, (e) => {
      if (e.event === "connect") e.answer();
    });
    await until(() => second.seen.length === 1, "the first suspect, alone");
    const answered = nextMessage(other);
    // It times out (its handler still runs): the next suspect waits for it.
    await sleep(450);
    expect(second.seen.map((e) => e.name)).toEqual(["slow"]);
    second.seen[0]?.answer();
    await until(() => second.seen.length === 2, "the next suspect, at once");
    second.seen[1]?.answer();
    expect((await answered).data.toString()).toBe("other");
  });
});

/** The HTTP status and body of a refused upgrade. */
function refusal(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.on("open", () => reject(new Error("connected, expected a refusal")));
    ws.on("error", () => {});
    ws.on("unexpected-response", (_req, res: IncomingMessage) => {
      let body = "";
      res.on("data", (c: Buffer) => {
        body += c.toString();
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
  });
}

/** An event a played service got: its client's name (`?n=`) or its text, and how to answer it. */
interface PlayedEvent {
  event: "connect" | "message";
  name: string;
  /** The connection it is of. */
  connection: string;
  answer(): void;
}

/**
 * A process of service "svc" played by the test: it records its connect and message events in
 * order, and answers each when the test says (`answer`), or as `onEvent` does once it is set.
 */
async function playedProcess(provider: LocalProvider, onEvent?: (e: PlayedEvent) => void) {
  provider.serviceStarting("svc");
  const client: Client = await serviceClient(provider, "svc");
  await declareSocket(client, "chat");
  const played = { seen: [] as PlayedEvent[], onEvent };
  for (const event of ["connect", "message"] as const) {
    const call = client.bidi(WebsocketHandler.method.handleEvents);
    call.on("error", () => {});
    await new Promise<void>((registered) => {
      call.on("data", (m: ServerMessage) => {
        if (m.content.case === "registrationResponse") registered();
        if (m.content.case !== "websocketEventRequest") return;
        const request = m.content.value;
        const name =
          request.websocketEvent.case === "connection"
            ? (request.websocketEvent.value.queryParams.n?.value[0] ?? "")
            : text(request);
        const e: PlayedEvent = {
          event,
          name,
          connection: request.connectionId,
          answer: () => {
            const value = (event === "connect" ? accept() : echo(request)) ?? {};
            try {
              call.write({ id: m.id, content: { case: "websocketEventResponse", value } });
            } catch {
              // Its process is gone.
            }
          },
        };
        played.seen.push(e);
        played.onEvent?.(e);
      });
      const eventType = event === "connect" ? WebsocketEventType.Connect : WebsocketEventType.Message;
      call.write({ id: "", content: { case: "registrationRequest", value: { socketName: "chat", eventType } } });
    });
  }
  return played;
}
