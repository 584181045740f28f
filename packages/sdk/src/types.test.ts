// Type-level tests: tsc checks this file (pnpm test type-checks the tests), so a regression in
// the permission narrowing fails the build; vitest runs it too.
import { describe, expect, expectTypeOf, it } from "vitest";
import {
  type CollectionRef,
  type ConnectContext,
  collection,
  type DocumentRef,
  type JsonObject,
  type KvPermission,
  type KvRef,
  kv,
  type MessageContext,
  type RouteContext,
  type SecretPermission,
  type SecretRef,
  type WebsocketContext,
  type WebsocketEvent,
  type WebsocketHandlerFn,
  websocket,
} from "./index.js";

describe("kv().allow() types", () => {
  it("exposes only the allowed methods", () => {
    type ReadOnly = KvRef<{ n: number }, "get">;
    expectTypeOf<ReadOnly>().toHaveProperty("get");
    expectTypeOf<ReadOnly>().toHaveProperty("keys");
    expectTypeOf<ReadOnly>().not.toHaveProperty("set");
    expectTypeOf<ReadOnly>().not.toHaveProperty("delete");
    type Writer = KvRef<{ n: number }, "set" | "delete">;
    expectTypeOf<Writer>().toHaveProperty("set");
    expectTypeOf<Writer>().toHaveProperty("delete");
    expectTypeOf<Writer>().not.toHaveProperty("get");
    expectTypeOf<ReturnType<ReadOnly["get"]>>().toEqualTypeOf<Promise<{ n: number }>>();
    expect(true).toBe(true);
  });
});

describe("kv().allow() on a real handle", () => {
  it("narrows the reference to the allowed methods and the store's value type", () => {
    // Never called (it would declare against a provider): tsc checks the lines, vitest the shape.
    const uses = async () => {
      const reader = kv<{ n: number }>("typed").allow("get");
      expectTypeOf(reader.get).returns.toEqualTypeOf<Promise<{ n: number }>>();
      expectTypeOf(reader.keys()).toEqualTypeOf<AsyncIterable<string>>();
      // @ts-expect-error "get" does not allow set
      await reader.set("k", { n: 1 });
      // @ts-expect-error "get" does not allow delete
      await reader.delete("k");
      const writer = kv<{ n: number }>("typed").allow("set");
      await writer.set("k", { n: 1 });
      // @ts-expect-error the value must be the store's type
      await writer.set("k", { n: "one" });
      // @ts-expect-error "set" does not allow get
      await writer.get("k");
      const all = kv("typed").allow("get", "set", "delete");
      await all.delete((await all.get("k")).toString());
      // @ts-expect-error unknown permission
      kv("typed").allow("read");
    };
    expect(typeof uses).toBe("function");
  });
});

describe("declaration checks", () => {
  it("throws at once on an invalid name, with the fix", () => {
    expect(() => kv("My Store")).toThrow(
      'kv("My Store"): invalid resource name "My Store", use lower-kebab-case such as "my-store"',
    );
    expect(() => websocket("chatRoom")).toThrow(/use lower-kebab-case such as "chat-room"/);
  });

  it("types handler contexts per event", () => {
    expectTypeOf<Parameters<WebsocketHandlerFn<"message">>[0]>().toEqualTypeOf<MessageContext>();
    expectTypeOf<Parameters<WebsocketHandlerFn<"connect">>[0]>().toEqualTypeOf<ConnectContext>();
    const onConnect: WebsocketHandlerFn<"connect"> = (ctx) => {
      // @ts-expect-error a connect context has no message data
      void ctx.binary;
    };
    expect(typeof onConnect).toBe("function");
  });
});

describe("socket.route() types", () => {
  it("types a route's json() as the route's T and its route as a string; a message handler's route may be undefined", () => {
    // Never called (it would declare against a provider): tsc checks the lines, vitest the shape.
    const uses = () => {
      const socket = websocket("typed-routes");
      socket.route<{ room: string }>("join", (ctx) => {
        expectTypeOf(ctx).toEqualTypeOf<RouteContext<{ room: string }>>();
        expectTypeOf(ctx.json()).toEqualTypeOf<{ room: string }>();
        expectTypeOf(ctx.json<number>()).toEqualTypeOf<number>();
        expectTypeOf(ctx.route).toEqualTypeOf<string>();
        return ctx.json().room;
      });
      socket.route("say", (ctx) => expectTypeOf(ctx.json()).toEqualTypeOf<unknown>());
      socket.on("message", (ctx) => expectTypeOf(ctx.route).toEqualTypeOf<string | undefined>());
      // @ts-expect-error a route's handler gets a route context, not a connect context
      socket.route("x", (ctx: ConnectContext) => ctx.reject());
    };
    expect(typeof uses).toBe("function");
  });
});

describe("public type names", () => {
  it("names what the public types are generic over, so a helper can be typed from the SDK alone", () => {
    // Before, KvRef, SecretRef and WebsocketHandlerFn took types only @nitric-like/spec exported, a
    // package a project does not depend on (pnpm cannot import it): no helper could be generic.
    const names = <P extends KvPermission>(ref: KvRef<{ name: string }, P>) => ref.name;
    const secretName = <P extends SecretPermission>(ref: SecretRef<P>) => ref.name;
    const logged = <E extends WebsocketEvent>(event: E, fn: WebsocketHandlerFn<E>): WebsocketHandlerFn<E> => {
      return (ctx: WebsocketContext<E>) => {
        console.log(event, ctx.connectionId);
        return fn(ctx);
      };
    };
    expectTypeOf<KvPermission>().toEqualTypeOf<"get" | "set" | "delete">();
    expectTypeOf<SecretPermission>().toEqualTypeOf<"access" | "put">();
    expectTypeOf<WebsocketEvent>().toEqualTypeOf<"connect" | "disconnect" | "message">();
    expect([typeof names, typeof secretName, typeof logged]).toEqual(["function", "function", "function"]);
  });
});

describe("collection().for() types", () => {
  it("narrows a document to what .for() granted, as kv's .allow() does", () => {
    // Never called (it would declare against a provider): tsc checks the lines, vitest the shape.
    const uses = async () => {
      const readOnly = collection<{ name: string }>("typed-docs").for("reading");
      expectTypeOf(readOnly.doc("a").get).returns.toEqualTypeOf<Promise<{ name: string }>>();
      // @ts-expect-error "reading" does not grant set
      await readOnly.doc("a").set({ name: "ann" });
      // @ts-expect-error "reading" does not grant delete
      await readOnly.doc("a").delete();
      const writer = collection<{ name: string }>("typed-docs").for("writing", "deleting");
      await writer.doc("a").set({ name: "ann" });
      await writer.doc("a").delete();
      // @ts-expect-error "writing" does not grant get
      await writer.doc("a").get();
      // @ts-expect-error the content must be the collection's type
      await writer.doc("a").set({ name: 1 });
      const all = collection("typed-docs").for("reading", "writing", "deleting");
      const full: CollectionRef<JsonObject> = all;
      const doc: DocumentRef<JsonObject> = full.doc("a");
      await doc.set(await doc.get());
      // @ts-expect-error unknown permission
      collection("typed-docs").for("read");
    };
    expect(typeof uses).toBe("function");
  });
});

describe("kv() and collection() value types", () => {
  it("take a value type written as an interface, and refuse one JSON cannot hold", () => {
    // An interface has no index signature: kv<Profile> failed with "Index signature for type
    // 'string' is missing in type 'Profile'", so users had to rewrite their types as aliases.
    interface Address {
      city: string;
      lines: string[];
    }
    interface Profile {
      name: string;
      nick?: string;
      age: number | null;
      addresses: Address[];
      tags: readonly string[];
    }
    // Never called (it would declare against a provider): tsc checks the lines, vitest the shape.
    const uses = async () => {
      const profiles = kv<Profile>("typed-profiles").allow("get", "set");
      expectTypeOf(profiles.get).returns.toEqualTypeOf<Promise<Profile>>();
      await profiles.set("ann", { name: "ann", age: null, addresses: [{ city: "Oslo", lines: [] }], tags: [] });
      // @ts-expect-error a property of the wrong type is still refused
      await profiles.set("ann", { name: 1, age: null, addresses: [], tags: [] });
      const docs = collection<Profile>("typed-profiles").for("reading");
      expectTypeOf(docs.doc("ann").get).returns.toEqualTypeOf<Promise<Profile>>();
      kv<JsonObject>("typed-any").allow("get");
      kv("typed-default").allow("get");
      // @ts-expect-error a Date is not JSON: kv refuses it
      kv<{ at: Date }>("typed-bad");
      // @ts-expect-error a Map is not JSON
      kv<{ seen: Map<string, number> }>("typed-bad");
      // @ts-expect-error a bigint is not JSON
      kv<{ n: bigint }>("typed-bad");
      // @ts-expect-error a function is not JSON
      collection<{ f: () => void }>("typed-bad");
      // @ts-expect-error nor is a Date inside an interface's array
      kv<{ list: { at: Date }[] }>("typed-bad");
    };
    expect(typeof uses).toBe("function");
  });
});
