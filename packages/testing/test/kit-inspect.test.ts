// app.kv() and app.connections(): what the app keeps, read and written where it keeps it, on the
// local provider (lmdb, the gateway's rooms and state) and on aws (DynamoDB in dynalite, the
// emulated connections table), so a test can seed data and check what a handler stored.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { MAX_KV_KEYS, startApp, stopAll } from "../src/index.js";
// Types only: importing the service would declare its resources in the test.
import type { Identity, State } from "./fixtures/stateful/services/stateful.js";

const fixture = fileURLToPath(new URL("./fixtures/stateful", import.meta.url));

afterEach(stopAll);

describe.each(["local", "aws"])("on %s", (provider) => {
  it("app.kv(): reads what a handler stored, and a value the test seeds is what the handler reads", async () => {
    const app = await startApp(fixture, { provider });
    const notes = app.kv<{ text: string; by: string }>("notes");
    const ann = await app.connect({ query: { user: "ann" } });
    ann.send("note hello");
    await ann.expectMessage("noted");
    expect(await notes.get("note:ann")).toEqual({ text: "hello", by: "ann" });
    expect(await notes.get("note:nobody")).toBeUndefined();
    await notes.set("note:bo", { text: "seeded", by: "bo" });
    ann.send("read bo");
    await ann.expectMessage("seeded");
    expect(await notes.keys("note:")).toEqual(["note:ann", "note:bo"]);
    expect(await notes.keys("other:")).toEqual([]);
    await notes.delete("note:bo");
    await notes.delete("note:bo");
    ann.send("read bo");
    await ann.expectMessage("none");
    // Held to every kv set()'s rules, with its words.
    await expect(notes.set("note:x", [] as never)).rejects.toThrow(/^app\.kv\("notes"\)\.set: .*JSON object/);
    // A key no kv get() takes is refused with get()'s words; before, lmdb's ("String does not fit
    // in target buffer") or DynamoDB's came through, or an empty key read as missing.
    const long = "k".repeat(5000);
    const tooLong = "the key is 5000 bytes long and at most 1024 are allowed; use a shorter key";
    await expect(notes.get(long)).rejects.toThrow(`app.kv("notes"): kv("notes").get(): ${tooLong}`);
    await expect(notes.delete(long)).rejects.toThrow(`app.kv("notes"): kv("notes").delete(): ${tooLong}`);
    await expect(notes.get("")).rejects.toThrow('kv("notes").get(""): the key is empty; use a non-empty string');
    await expect(notes.keys("\ud800")).rejects.toThrow(/the prefix has a lone surrogate/);
    await expect(app.kv("nope").get("k")).rejects.toThrow(
      'app.kv("nope"): no service declares kv store "nope"; the project\'s stores are "notes"',
    );
  });

  it("app.connections(): each connection's identity, rooms and state, as the handlers left them", async () => {
    const app = await startApp(fixture, { provider });
    const ann = await app.connect({ query: { user: "ann" } });
    const bo = await app.connect({ query: { user: "bo" } });
    ann.send("join blue");
    await ann.expectMessage("joined true");
    const listed = await app.connections<Identity, State>("socket");
    expect(listed).toHaveLength(2);
    const byUser = new Map(listed.map((c) => [c.auth.user, c]));
    expect(byUser.get("ann")).toMatchObject({
      socket: "socket",
      query: { user: ["ann"] },
      rooms: ["blue", "lobby"],
      state: { joinedAt: "connect" },
    });
    expect(byUser.get("bo")).toMatchObject({ rooms: ["lobby"], auth: { user: "bo" } });
    await bo.close();
    await expect.poll(async () => (await app.connections()).map((c) => c.id)).toEqual([byUser.get("ann")?.id]);
    await expect(app.connections("nope")).rejects.toThrow(
      /^app\.connections\("nope"\): no such socket; the project has sockets "socket"$/,
    );
  });

  it("after stop(), each call on the app says it is stopped (no hang, no empty list, no file put back in its copy)", async () => {
    const app = await startApp(fixture, { provider });
    const ann = await app.connect({ query: { user: "ann" } });
    ann.send("note hello");
    await ann.expectMessage("noted");
    await app.stop();
    const stopped = (call: string) =>
      `${call}: the app is stopped (app.stop() or stopAll() ran); start another with startApp()`;
    const notes = app.kv<{ text: string; by: string }>("notes");
    // Each within a second: before, set() and delete() on the local provider's closed lmdb never settled.
    const calls: [Promise<unknown>, string][] = [
      [notes.get("note:ann"), 'app.kv("notes")'],
      [notes.set("note:bo", { text: "x", by: "bo" }), 'app.kv("notes")'],
      [notes.delete("note:ann"), 'app.kv("notes")'],
      [notes.keys(), 'app.kv("notes")'],
      [app.connections(), "app.connections()"],
      [app.restart(), "app.restart()"],
      [app.connect(), "app.connect()"],
    ];
    for (const [call, at] of calls)
      await expect(Promise.race([call, new Promise((r) => setTimeout(r, 1000, "still pending"))])).rejects.toThrow(
        stopped(at),
      );
    // A restart of the aws function used to build it again into the removed copy.
    await new Promise((r) => setTimeout(r, 200));
    expect(existsSync(app.dir)).toBe(false);
  });
});

it("app.kv().keys() lists at most MAX_KV_KEYS and says to narrow the prefix past it", async () => {
  const app = await startApp(fixture);
  const notes = app.kv("notes");
  expect(MAX_KV_KEYS).toBe(10000);
  await Promise.all(
    Array.from({ length: MAX_KV_KEYS + 1 }, (_, i) => notes.set(`k:${String(i).padStart(5, "0")}`, { i })),
  );
  await expect(notes.keys("k:")).rejects.toThrow(/more than 10000 keys; give a longer prefix/);
  expect(await notes.keys("k:0999")).toHaveLength(10);
}, 60000);
