// The inspector (what the dashboard sees) against a real provider: real ws clients, real handler
// streams over gRPC, real lmdb.
import type { TrafficEvent } from "@nitric-like/spec";
import { afterEach, describe, expect, it } from "vitest";
import {
  accept,
  cleanup,
  closed,
  declareSocket,
  declareStore,
  handle,
  nextMessage,
  open,
  serviceClient,
  sleep,
  startProvider,
  urlOf,
} from "./helpers.js";

afterEach(cleanup);

const text = (s: string) => new TextEncoder().encode(s);
/** What the traffic events say, without their times and with frames as text. */
function plain(events: TrafficEvent[]) {
  return events.map((e) =>
    e.type === "message"
      ? `${e.direction} ${e.socket} ${Buffer.from(e.data).toString()}${e.binary ? " (binary)" : ""}`
      : `${e.type} ${e.socket}`,
  );
}

describe("inspector", () => {
  it("lists connections with their metadata, sends, broadcasts and closes", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "room");
    await handle(client, "room", "connect", accept);
    const a = await open(`${urlOf(provider, "room")}/?name=ann&tag=x&tag=y`);
    const b = await open(urlOf(provider, "room"));
    const list = await provider.inspect.connections("room");
    expect(list).toHaveLength(2);
    const ann = list.find((c) => c.query.name?.[0] === "ann");
    expect(ann?.query).toEqual({ name: ["ann"], tag: ["x", "y"] });
    expect(ann?.socket).toBe("room");
    expect(ann?.remoteAddress).toBe("127.0.0.1");
    expect(ann?.headers["sec-websocket-version"]).toEqual(["13"]);
    expect(await provider.inspect.connections()).toHaveLength(2);

    const toAnn = nextMessage(a);
    expect(await provider.inspect.send("room", ann?.id ?? "", text("just you"), false)).toBe(true);
    expect((await toAnn).data.toString()).toBe("just you");
    expect(await provider.inspect.send("room", "no-such-id", text("x"), false)).toBe(false);

    const both = [nextMessage(a), nextMessage(b)];
    expect(await provider.inspect.broadcast("room", text("all"), true)).toBe(2);
    for (const m of await Promise.all(both)) expect(m).toEqual({ data: Buffer.from("all"), binary: true });

    const gone = closed(a);
    expect(await provider.inspect.close("room", ann?.id ?? "", 4001, "bye")).toBe(true);
    expect(await gone).toEqual({ code: 4001, reason: "bye" });
    await expect(provider.inspect.connections("nope")).rejects.toThrow('websocket "nope" is not running');
  });

  it("reports traffic in and out only while someone listens", async () => {
    const { provider } = await startProvider();
    const client = await serviceClient(provider, "svc");
    await declareSocket(client, "echo");
    await handle(client, "echo", "connect", accept);
    await handle(client, "echo", "message", (e) => ({
      replies: [{ data: e.websocketEvent.case === "message" ? e.websocketEvent.value.body : new Uint8Array() }],
    }));
    const seen: TrafficEvent[] = [];
    const stop = provider.inspect.onTraffic((e) => seen.push(e));
    const ws = await open(urlOf(provider, "echo"));
    const echo = nextMessage(ws);
    ws.send("ping");
    expect((await echo).data.toString()).toBe("ping");
    expect(plain(seen)).toEqual(["open echo", "in echo ping", "out echo ping"]);
    const message = seen[1];
    expect(message?.type === "message" && message.connectionId).toBe((await provider.inspect.connections())[0]?.id);

    stop();
    const again = nextMessage(ws);
    ws.send("unseen");
    await again;
    ws.close(1000);
    await sleep(50);
    expect(plain(seen)).toHaveLength(3);
  });

  it("lists, reads, writes and deletes kv values", async () => {
    const { provider } = await startProvider();
    await declareStore(await serviceClient(provider, "svc"), "notes", []);
    await provider.inspect.kvSet("notes", "user:2", { name: "Bob" });
    await provider.inspect.kvSet("notes", "user:1", { name: "Ann" });
    await provider.inspect.kvSet("notes", "other", { n: 1 });
    expect(await provider.inspect.kvKeys("notes", "user:", 10)).toEqual(["user:1", "user:2"]);
    expect(await provider.inspect.kvKeys("notes", "", 2)).toEqual(["other", "user:1"]);
    expect(await provider.inspect.kvGet("notes", "user:1")).toEqual({ name: "Ann" });
    await provider.inspect.kvDelete("notes", "user:1");
    expect(await provider.inspect.kvGet("notes", "user:1")).toBeUndefined();
  });
});
