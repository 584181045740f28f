// Type-level tests: tsc checks this file (pnpm test type-checks the tests), so a regression in the
// kit's types fails the build; vitest runs it too.
import { describe, expect, expectTypeOf, it } from "vitest";
import type { App, AppConnection } from "./index.js";

/** A socket's types, as its service declares them: websocket<Identity, State>("socket"). */
type Identity = { user: string; roles: string[] };
type State = { joinedAt: string };

describe("app.connections() types", () => {
  it("types auth and state as the socket's when the test gives them, as websocket<Identity, State>() does", () => {
    // Before, auth and state were unknown whatever the socket declared: every test cast them
    // (`c.auth as { user: string }`).
    const check = async (app: App) => {
      const listed = await app.connections<Identity, State>("socket");
      expectTypeOf(listed).toEqualTypeOf<AppConnection<Identity, State>[]>();
      const [c] = listed;
      if (!c) return;
      expectTypeOf(c.auth).toEqualTypeOf<Identity>();
      expectTypeOf(c.auth.roles).toEqualTypeOf<string[]>();
      // Undefined until a handler sets it, as ctx.connection.state is.
      expectTypeOf(c.state).toEqualTypeOf<State | undefined>();
      expectTypeOf(c.state?.joinedAt).toEqualTypeOf<string | undefined>();
      // The identity alone, for a socket with no state.
      const [d] = await app.connections<Identity>();
      expectTypeOf(d?.auth.user).toEqualTypeOf<string | undefined>();
      expectTypeOf(d?.state).toEqualTypeOf<unknown>();
    };
    expect(typeof check).toBe("function");
  });

  it("leaves auth and state unknown when the test gives no types: another service may authorize the socket", () => {
    const check = async (app: App) => {
      const [c] = await app.connections();
      expectTypeOf(c?.auth).toEqualTypeOf<unknown>();
      // @ts-expect-error unknown until the socket's types are given
      c?.auth.user;
      expectTypeOf<AppConnection>().toEqualTypeOf<AppConnection<unknown, unknown>>();
    };
    expect(typeof check).toBe("function");
  });
});
