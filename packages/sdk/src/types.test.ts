// Type-level tests: tsc checks this file (pnpm test type-checks the tests), so a regression in
// the permission narrowing fails the build; vitest runs it too.
import { describe, expect, expectTypeOf, it } from "vitest";
// Types only: importing the module itself would declare websocket("ws").
import type { AmptWs } from "./ampt.js";
import {
  type CollectionRef,
  type ConnectContext,
  collection,
  type DisconnectContext,
  type DocumentRef,
  type JsonObject,
  type JsonValue,
  type KvPermission,
  type KvRef,
  kv,
  type MessageContext,
  type RouteContext,
  type SecretPermission,
  type SecretRef,
  type Websocket,
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
    // send() is a connect context's (README: "sending during connect"); a message handler replies
    // with reply() or sends with connection.send(), and at run time its ctx.send() is refused.
    expectTypeOf<ConnectContext>().toHaveProperty("send");
    expectTypeOf<MessageContext>().not.toHaveProperty("send");
    expectTypeOf<RouteContext>().not.toHaveProperty("send");
    expectTypeOf<DisconnectContext>().not.toHaveProperty("send");
    expectTypeOf<MessageContext["connection"]>().toHaveProperty("send");
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

describe("websocket() identity types", () => {
  it("types ctx.auth on every event, connection(id) and connections() as what authorize returns", () => {
    // Before, ctx.auth was unknown whatever the authorizer returned: `ctx.auth.userId` did not
    // compile, and every handler cast it (`ctx.auth as { userId: string }`).
    // Never called (it would declare against a provider): tsc checks the lines, vitest the shape.
    const uses = async () => {
      const socket = websocket("typed-auth", {
        authorize: async (req) => {
          if (!req.query.token) return { status: 401, reason: "a token is required" };
          return { identity: { userId: "42", roles: ["admin"] } };
        },
      });
      type Identity = { userId: string; roles: string[] };
      socket.on("connect", (ctx) => expectTypeOf(ctx.auth).toEqualTypeOf<Identity>());
      socket.on("message", (ctx) => ctx.auth.userId);
      socket.on("message", (ctx) => expectTypeOf(ctx.auth).toEqualTypeOf<Identity>());
      socket.on("disconnect", (ctx) => expectTypeOf(ctx.auth.roles).toEqualTypeOf<string[]>());
      socket.route("join", (ctx) => expectTypeOf(ctx.auth).toEqualTypeOf<Identity>());
      expectTypeOf((await socket.connection("c")).auth).toEqualTypeOf<Identity>();
      for await (const c of socket.connections()) expectTypeOf(c.auth).toEqualTypeOf<Identity>();
      // @ts-expect-error the identity has no such property
      socket.on("message", (ctx) => ctx.auth.name);
      // A synchronous authorizer whose identity is a plain string.
      const plain = websocket("typed-auth-plain", { authorize: () => ({ identity: "ann", protocol: "chat" }) });
      plain.on("message", (ctx) => expectTypeOf(ctx.auth).toEqualTypeOf<string>());
    };
    expect(typeof uses).toBe("function");
  });

  it("leaves ctx.auth unknown without an authorizer, and takes a declared identity in a service without it", () => {
    const uses = () => {
      // Another service may authorize the socket: without an authorizer here the identity is
      // unknown (undefined at run time when no service gives one), never silently `any`.
      const open = websocket("typed-open");
      open.on("message", (ctx) => expectTypeOf(ctx.auth).toEqualTypeOf<unknown>());
      // @ts-expect-error unknown: check it or declare the identity
      open.on("message", (ctx) => ctx.auth.userId);
      const declared = websocket<{ userId: string }>("typed-auth");
      declared.on("message", (ctx) => expectTypeOf(ctx.auth.userId).toEqualTypeOf<string>());
      // Declared where the authorizer is given, the authorizer's answer is checked against it.
      websocket<{ userId: string }>("typed-auth-checked", {
        // @ts-expect-error the identity must be the declared one
        authorize: () => ({ identity: { userId: 42 } }),
      });
    };
    expect(typeof uses).toBe("function");
  });

  it("refuses an identity JSON cannot carry, with a type error that names it", () => {
    const uses = () => {
      // @ts-expect-error a Date is not JSON: the identity crosses the wire as JSON
      websocket<{ at: Date }>("typed-bad-auth");
      // @ts-expect-error a Map is not JSON
      websocket<{ seen: Map<string, number> }>("typed-bad-auth");
      websocket("typed-bad-auth", {
        // @ts-expect-error a Date inferred from the authorizer is refused too
        authorize: (req) => (req.query.t ? { status: 403 } : { identity: { at: new Date() } }),
      });
      // An identity is never undefined on an event (the authorizer that gives one refuses the
      // client), so a Map.get() identity reads as its value type.
      const users = new Map([["t-ann", "ann"]]);
      const byToken = websocket("typed-auth-map", { authorize: () => ({ identity: users.get("t-ann") }) });
      byToken.on("message", (ctx) => expectTypeOf(ctx.auth).toEqualTypeOf<string>());
    };
    expect(typeof uses).toBe("function");
  });
});

describe("websocket() state types", () => {
  it("types a connection's state as declared: ctx.connection.state, setState() and state(id)", () => {
    // Before, the state was unknown everywhere and setState() took anything: each handler cast
    // `ctx.connection.state as State`, and a setState() of the wrong shape compiled.
    type State = { name: string; room?: string };
    const uses = async () => {
      const socket = websocket<{ user: string }, State>("typed-state", {
        authorize: () => ({ identity: { user: "ann" } }),
      });
      socket.on("connect", async (ctx) => {
        await ctx.connection.setState({ name: ctx.auth.user });
        // @ts-expect-error the state must be the declared one
        await ctx.connection.setState({ nick: "ann" });
      });
      // Undefined until a handler sets it.
      socket.on("message", (ctx) => expectTypeOf(ctx.connection.state).toEqualTypeOf<State | undefined>());
      socket.route("join", (ctx) => ctx.connection.state?.room);
      expectTypeOf(await socket.state("c")).toEqualTypeOf<State | undefined>();
      await socket.setState("c", { name: "bo", room: "lobby" });
      await socket.setState("c", undefined);
      // @ts-expect-error the state must be the declared one
      await socket.setState("c", { name: 1 });
      // Without a declared state it stays unknown, as before.
      const open = websocket("typed-open");
      open.on("message", (ctx) => expectTypeOf(ctx.connection.state).toEqualTypeOf<unknown>());
      expectTypeOf(await open.state("c")).toEqualTypeOf<unknown>();
      // @ts-expect-error a Date is not JSON: the state is kept as JSON
      websocket<unknown, { since: Date }>("typed-bad-state");
    };
    expect(typeof uses).toBe("function");
  });

  it("keeps a typed socket usable where a plain Websocket and plain handlers are expected", () => {
    const uses = () => {
      const socket = websocket("typed-auth", { authorize: () => ({ identity: { userId: "42" } }) });
      const plain: Websocket = socket;
      const handler: WebsocketHandlerFn<"message"> = (ctx) => ctx.connectionId;
      socket.on("message", handler);
      const typed: WebsocketHandlerFn<"message", { userId: string }> = (ctx) => ctx.auth.userId;
      socket.on("message", typed);
      // @ts-expect-error a handler that needs an identity cannot go on a socket without one
      websocket("typed-open").on("message", typed);
      return plain;
    };
    expect(typeof uses).toBe("function");
  });
});

describe("the Ampt-style ws types", () => {
  it("types a message's data as what it can be: parsed JSON, text, or the bytes of a binary frame", () => {
    // Before, the default was JsonValue, though a binary frame arrives as a Uint8Array.
    const uses = (ws: AmptWs) => {
      ws.on("message", (_connection, data) => expectTypeOf(data).toEqualTypeOf<JsonValue | Uint8Array>());
      ws.on<{ lat: number }>("message", (_connection, data) => expectTypeOf(data.lat).toEqualTypeOf<number>());
    };
    expect(typeof uses).toBe("function");
  });
});

describe("collection().query().where() types", () => {
  it("takes the fields of the collection's type, dotted paths into objects included, and refuses a typo", () => {
    // Before, where() took any string: where("nmae", ...) compiled and matched no document.
    interface Profile {
      name: string;
      nick?: string;
      address: { city: string; geo: { lat: number } } | null;
      tags: string[];
    }
    const uses = async () => {
      const profiles = collection<Profile>("typed-where").for("reading");
      profiles.query().where("name", "==", "ann").where("nick", "startsWith", "a").where("tags", "!=", []);
      profiles.query().where("address.city", "==", "Oslo").where("address.geo.lat", ">", 59);
      // @ts-expect-error no such field: a typo matched nothing
      profiles.query().where("nmae", "==", "ann");
      // @ts-expect-error no such field inside address
      profiles.query().where("address.town", "==", "Oslo");
      // An untyped collection (and one whose type recurses) takes any path.
      collection("typed-where-any").for("reading").query().where("any.path", "==", 1);
      interface Tree {
        label: string;
        child?: Tree;
      }
      collection<Tree>("typed-where-tree").for("reading").query().where("child.child.label", "==", "x");
    };
    expect(typeof uses).toBe("function");
  });
});
