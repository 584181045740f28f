// Type-level tests: tsc checks this file (pnpm test type-checks the tests), so a regression in
// the permission narrowing fails the build; vitest runs it too.
import { describe, expect, expectTypeOf, it } from "vitest";
import {
  type ConnectContext,
  type KvRef,
  kv,
  type MessageContext,
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
