import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ServerMessageSchema } from "@nitric-like/contracts/websockets";
import type { ServerStream } from "@nitric-like/rpc";
import type { Logger } from "@nitric-like/spec";
import { describe, expect, it } from "vitest";
import { type AnswerSink, type HandlerError, HandlerRegistry, MAX_LATE_EVENTS } from "./handlers.js";

type ServerMessageInit = MessageInitShape<typeof ServerMessageSchema>;

/**
 * The provider's side of a handler stream as every transport hands it to a router's handler (the
 * registry writes events to it); it keeps what was written instead of sending it.
 */
class Call implements ServerStream<ServerMessageInit> {
  readonly path = "/nitric.proto.websockets.v1.WebsocketHandler/HandleEvents";
  readonly peer = "test";
  cancelled = false;
  ended = false;
  writable = true;
  readonly written: ServerMessageInit[] = [];
  private readonly closeListeners: (() => void)[] = [];

  write(message: ServerMessageInit): boolean {
    if (this.ended) return false;
    this.written.push(message);
    return true;
  }
  end(): void {
    this.close();
  }
  fail(): void {
    this.close();
  }
  onClose(listener: () => void): void {
    if (this.ended) queueMicrotask(listener);
    else this.closeListeners.push(listener);
  }
  flushed(): Promise<void> {
    return Promise.resolve();
  }
  private close(): void {
    if (this.ended) return;
    this.ended = true;
    for (const listener of this.closeListeners.splice(0)) listener();
  }
}

function logger(): Logger & { errors: string[] } {
  const errors: string[] = [];
  return { errors, info() {}, warn() {}, error: (m: string) => errors.push(m) };
}

const event = (connectionId: string) => ({
  socketName: "chat",
  connectionId,
  websocketEvent: { case: "message" as const, value: { body: new Uint8Array([1]), binary: true } },
});

const answer = (id: string, data: number) => ({
  $typeName: "nitric.proto.websockets.v1.ClientMessage",
  id,
  content: {
    case: "websocketEventResponse",
    value: {
      $typeName: "nitric.proto.websockets.v1.WebsocketEventResponse",
      websocketResponse: { case: undefined },
      replies: [{ $typeName: "nitric.proto.websockets.v1.WebsocketReply", data: new Uint8Array([data]), binary: true }],
    },
  },
});

describe("HandlerRegistry.deliver", () => {
  it("hands each answer to the sink with its context, and a sink that throws costs no other answer of the batch", () => {
    const log = logger();
    const registry = new HandlerRegistry(log, 30_000, 1_000);
    const call = new Call();
    const stream = registry.register("svc", "chat", "message", call);
    const heard: [string, number][] = [];
    const sink: AnswerSink<string> = {
      answered(context, response) {
        if (context === "bad") throw new Error("boom");
        heard.push([context, response.replies[0]?.data[0] ?? -1]);
      },
      failed() {},
    };
    for (const c of ["a", "bad", "b"]) registry.deliver("chat", "message", event(c), sink, c);
    const ids = call.written.map((m) => m.id ?? "");
    expect(ids).toHaveLength(3);
    stream.answer({
      id: "",
      content: {
        case: "answerBatch",
        value: { answers: ids.map((id, i) => answer(id, i)) },
      },
    } as never);
    expect(heard).toEqual([
      ["a", 0],
      ["b", 2],
    ]);
    expect(log.errors.join("\n")).toMatch(/websocket "chat": handling an answer of service "svc" failed: Error: boom/);
    expect(registry.pendingCount()).toBe(0);
  });

  it("reports an event nobody handles after the call returns, never inside it", async () => {
    const registry = new HandlerRegistry(logger(), 30_000, 1_000);
    const failures: HandlerError[] = [];
    let returned = false;
    registry.deliver(
      "chat",
      "message",
      event("c1"),
      {
        answered() {},
        failed(_c, error) {
          expect(returned).toBe(true);
          failures.push(error);
        },
      },
      undefined,
    );
    returned = true;
    expect(failures).toHaveLength(0);
    await Promise.resolve();
    expect(failures.map((f) => [f.failure, f.message])).toEqual([
      ["none", 'websocket "chat": no service handles message events; add socket.on("message", ...)'],
    ]);
  });

  it("holds an event for a promised handler and sends it after the registration, not inside it", async () => {
    const registry = new HandlerRegistry(logger(), 30_000, 1_000);
    registry.expect("chat", "message", "svc");
    const sink: AnswerSink<undefined> = { answered() {}, failed() {} };
    registry.deliver("chat", "message", event("c1"), sink, undefined);
    const call = new Call();
    registry.register("svc", "chat", "message", call);
    // The provider answers the registration right after register() returns.
    call.write({ id: "", content: { case: "registrationResponse", value: {} } });
    await Promise.resolve();
    expect(call.written.map((m) => m.content?.case)).toEqual(["registrationResponse", "websocketEventRequest"]);
  });

  it("fails a held event with the wait limit's reason when its handler does not come", async () => {
    const registry = new HandlerRegistry(logger(), 30_000, 50);
    registry.expect("chat", "message", "svc");
    const failure = await registry.dispatch("chat", "message", event("c1")).catch((e: HandlerError) => e);
    expect((failure as HandlerError).failure).toBe("unavailable");
    expect((failure as HandlerError).message).toMatch(/did not register within 0.05 s \(connection c1\)/);
  });

  it("says a service that is running (started again, not exited) has not registered the handler, rather than guess at a crash", async () => {
    const registry = new HandlerRegistry(logger(), 30_000, 50);
    registry.expect("chat", "message", "svc");
    registry.serviceStarting("svc");
    const failure = await registry.dispatch("chat", "message", event("c1")).catch((e: HandlerError) => e);
    expect((failure as HandlerError).message).toBe(
      'websocket "chat": the message handler did not register within 0.05 s (connection c1); its service "svc" is running and has not registered it since it started; is it still loading, or does it no longer declare it?',
    );
  });
});

describe("HandlerRegistry late answers", () => {
  it("gives a timed-out event's late answer to its LateAnswer once, waiting for at most MAX_LATE_EVENTS a stream (the oldest past it abandoned)", async () => {
    const registry = new HandlerRegistry(logger(), 20, 1_000);
    const call = new Call();
    const stream = registry.register("svc", "chat", "connect", call);
    const heard: string[] = [];
    const failures = await Promise.all(
      Array.from({ length: MAX_LATE_EVENTS + 1 }, (_, i) =>
        registry
          .dispatch("chat", "connect", event(`c${i}`), "", {
            answered: (response) => heard.push(`c${i} answered ${response.replies[0]?.data[0]}`),
            abandoned: (error) => heard.push(`c${i} abandoned: ${error.message}`),
          })
          .then(
            () => "answered in time",
            (error: HandlerError) => error.failure,
          ),
      ),
    );
    expect(new Set(failures)).toEqual(new Set(["timeout"]));
    await Promise.resolve();
    expect(heard).toEqual([
      `c0 abandoned: websocket "chat": ${MAX_LATE_EVENTS} events of the connect handler of service "svc" are past the handler timeout and unanswered; stopped waiting for the oldest (connection c0)`,
    ]);
    expect(registry.pendingCount()).toBe(MAX_LATE_EVENTS);
    const idOf = (n: number) => call.written[n]?.id ?? "";
    stream.answer(answer(idOf(1), 7) as never);
    stream.answer(answer(idOf(1), 8) as never);
    stream.answer(answer(idOf(0), 9) as never);
    expect(heard.slice(1)).toEqual(["c1 answered 7"]);
    expect(registry.pendingCount()).toBe(MAX_LATE_EVENTS - 1);
  });
});

describe("HandlerRegistry message routes", () => {
  it("keeps a route's stream apart from the message handler's and from other routes', and lists it with its route", () => {
    const registry = new HandlerRegistry(logger(), 30_000, 1_000);
    const plain = new Call();
    const join = new Call();
    const say = new Call();
    registry.register("chat", "chat", "message", plain);
    registry.register("rooms", "chat", "message", join, false, "join");
    registry.register("rooms", "chat", "message", say, false, "say");
    const sink: AnswerSink<undefined> = { answered() {}, failed() {} };
    registry.deliver("chat", "message", event("c1"), sink, undefined, "join");
    registry.deliver("chat", "message", event("c2"), sink, undefined);
    registry.deliver("chat", "message", event("c3"), sink, undefined, "join");
    const ids = (call: Call) =>
      call.written.map((m) => (m.content?.case === "websocketEventRequest" ? m.content.value.connectionId : ""));
    expect([ids(plain), ids(join), ids(say)]).toEqual([["c2"], ["c1", "c3"], []]);
    expect(registry.get("chat", "message", "join")?.service).toBe("rooms");
    expect(registry.get("chat", "message")?.service).toBe("chat");
    expect(registry.registrations()).toEqual([
      { service: "chat", socket: "chat", event: "message" },
      { service: "rooms", socket: "chat", event: "message", route: "join" },
      { service: "rooms", socket: "chat", event: "message", route: "say" },
    ]);
    // A route's stream ending leaves the message handler's in place.
    join.end();
    registry.unregister(registry.get("chat", "message", "join") as never);
    expect(registry.get("chat", "message")?.service).toBe("chat");
    expect(registry.isExpected("chat", "message", "join")).toBe(true);
  });

  it("names the route when nobody handles it, and when its promised handler does not come", async () => {
    const registry = new HandlerRegistry(logger(), 30_000, 50);
    const none = await registry.dispatch("chat", "message", event("c1"), "join").catch((e: HandlerError) => e);
    expect((none as HandlerError).message).toBe(
      'websocket "chat": no service handles route "join"; add socket.route("join", ...)',
    );
    registry.expect("chat", "message", "rooms", "join");
    // A live message handler is not the route's.
    registry.register("chat", "chat", "message", new Call());
    const late = await registry.dispatch("chat", "message", event("c2"), "join").catch((e: HandlerError) => e);
    expect((late as HandlerError).failure).toBe("unavailable");
    expect((late as HandlerError).message).toMatch(
      /^websocket "chat": the handler of route "join" did not register within 0.05 s \(connection c2\)/,
    );
  });
});

describe("HandlerRegistry.drainService", () => {
  it("lets a service stopped on purpose answer what it was sent, sends it nothing new, and resolves once it has answered", async () => {
    const registry = new HandlerRegistry(logger(), 30_000, 5_000);
    registry.expect("chat", "message", "svc");
    const heard: string[] = [];
    const sink: AnswerSink<string> = {
      answered: (context) => void heard.push(context),
      failed: (context, error) => void heard.push(`${context} failed: ${error.failure}`),
    };
    const oldCall = new Call();
    const old = registry.register("svc", "chat", "message", oldCall);
    registry.deliver("chat", "message", event("c1"), sink, "first");
    let drained = false;
    const draining = registry.drainService("svc", 5_000).then(() => {
      drained = true;
    });
    // Sent meanwhile: it waits for the next copy instead of going to the one being stopped.
    registry.deliver("chat", "message", event("c1"), sink, "second");
    await new Promise((r) => setTimeout(r, 30));
    expect(oldCall.written.map((m) => m.id)).toHaveLength(1);
    expect(drained).toBe(false);
    expect(registry.pendingCount()).toBe(1);
    old.answer(answer(oldCall.written[0]?.id ?? "", 1) as never);
    await draining;
    expect(heard).toEqual(["first"]);
    // The old copy ends (its stream closes) and the next copy registers: the waiting event goes to it.
    registry.unregister(old);
    registry.serviceExited("svc", "was stopped", false);
    registry.serviceStarting("svc");
    const newCall = new Call();
    const next = registry.register("svc", "chat", "message", newCall);
    await Promise.resolve();
    const sent = newCall.written.filter((m) => m.content?.case === "websocketEventRequest");
    expect(sent).toHaveLength(1);
    next.answer(answer(sent[0]?.id ?? "", 2) as never);
    expect(heard).toEqual(["first", "second"]);
  });

  it("gives what the stopped copy did not answer within the grace to the next copy, counting no death against it", async () => {
    const registry = new HandlerRegistry(logger(), 30_000, 5_000);
    registry.expect("chat", "message", "svc");
    const heard: string[] = [];
    const sink: AnswerSink<string> = {
      answered: (context) => void heard.push(context),
      failed: (context, error) => void heard.push(`${context} failed: ${error.failure}`),
    };
    const oldCall = new Call();
    registry.register("svc", "chat", "message", oldCall);
    registry.deliver("chat", "message", event("c1"), sink, "slow");
    await registry.drainService("svc", 20);
    expect(heard).toEqual([]);
    // run then stops the copy: its exit is reported (on purpose), and its stream closes.
    registry.serviceExited("svc", "was stopped", false);
    registry.serviceStarting("svc");
    const newCall = new Call();
    const next = registry.register("svc", "chat", "message", newCall);
    await Promise.resolve();
    const sent = newCall.written.filter((m) => m.content?.case === "websocketEventRequest");
    expect(sent).toHaveLength(1);
    next.answer(answer(sent[0]?.id ?? "", 1) as never);
    expect(heard).toEqual(["slow"]);
    expect(oldCall.ended).toBe(true);
  });
});
