// A connect handler that outlives the handler timeout: its client is refused with 504, but the
// handler goes on and, as most apps do, stores its connection as it ends. No connection opened, so
// no close will ever come; the provider runs the disconnect handler for it once the connect
// handler has ended (accepting), so what it stored is cleaned up. Real ws clients against
// `nitric-like run` on each provider (on aws the runtime in the emulator's functions, which
// Lambda would freeze once they answer).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type App, cleanTemp, connect, sleep, startApp, writeProject } from "../src/harness.js";

afterAll(cleanTemp);

const SERVICE = `
import { isNitricLikeError, kv, websocket } from "@nitric-like/sdk";

const store = kv("conns").allow("get", "set", "delete");
const late = websocket("late");

late.on("connect", async (ctx) => {
  const tag = ctx.query.tag?.[0];
  if (!tag) return;
  // Past the project's handler timeout (1 s).
  await new Promise((resolve) => setTimeout(resolve, Number(ctx.query.hold?.[0] ?? 0)));
  await store.set("conn:" + tag, { id: ctx.connectionId });
  // Still connected to the app: sends, state and rooms are kept, then dropped with the connection.
  const calls = {};
  for (const [name, call] of [
    ["send", () => late.send(ctx.connectionId, "welcome")],
    ["setState", () => late.setState(ctx.connectionId, { tag })],
    ["join", () => late.join(ctx.connectionId, "lobby")],
  ]) {
    try {
      await call();
      calls[name] = "ok";
    } catch (error) {
      calls[name] = isNitricLikeError(error) ? error.code : String(error);
    }
  }
  await store.set("done:" + tag, calls);
  if (ctx.query.refuse) return ctx.reject("refused late", 403);
  if (ctx.query.throw) throw new Error("failed late");
});

late.on("disconnect", async (ctx) => {
  const tag = ctx.connection.state?.tag ?? "untagged";
  // Ordering: connect's store is there to delete, since its handler has ended.
  let stored = null;
  try {
    stored = (await store.get("conn:" + tag)).id;
  } catch {}
  await store.set("gone:" + tag, { id: ctx.connectionId, code: ctx.code, reason: ctx.reason, stored });
  await store.delete("conn:" + tag);
});

late.on("message", async (ctx) => {
  const { key } = ctx.json();
  try {
    return { value: await store.get(key) };
  } catch (error) {
    if (isNitricLikeError(error) && error.code === "not_found") return { value: null };
    throw error;
  }
});
`;

describe.each([
  { provider: "local", args: [] as string[] },
  { provider: "local", args: ["--processes"] },
  { provider: "aws", args: [] as string[] },
])("a connect handler past the handler timeout on the $provider provider $args", ({ provider, args }) => {
  let app: App;
  let url: string;
  beforeAll(async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: lateconn\nservices:\n  - match: services/*.ts\nlimits:\n  handlerTimeout: 1s\n",
      "services/late.ts": SERVICE,
    });
    app = await startApp(dir, ["--provider", provider, ...args]);
    url = app.url("late");
  }, 60000);
  afterAll(async () => {
    const { code } = await app.stop();
    expect(code).toBe(0);
  });

  /** A key's value in the store, once it is not null (or null after `timeoutMs`). */
  async function stored(key: string, timeoutMs = 0): Promise<unknown> {
    const probe = await connect(url);
    try {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const { value } = await probe.call({ key });
        if (value !== null || Date.now() >= deadline) return value;
        await sleep(100);
      }
    } finally {
      probe.close();
    }
  }

  it("refuses its client with 504, and once it has ended, runs the disconnect handler for it if it accepted (so what it stored is cleaned up), and none if it refused or threw", async () => {
    await expect(connect(`${url}?tag=a&hold=1600`)).rejects.toMatchObject({ status: 504 });
    await expect(connect(`${url}?tag=r&hold=1600&refuse=1`)).rejects.toMatchObject({ status: 504 });
    await expect(connect(`${url}?tag=t&hold=1600&throw=1`)).rejects.toMatchObject({ status: 504 });
    const gone = (await stored("gone:a", 8000)) as Record<string, unknown>;
    expect(gone).toMatchObject({
      code: 1006,
      reason: "connect handler answered after the handler timeout (1 s); its client was refused with 504",
    });
    // It ran after the connect handler had stored the connection, and cleaned it up.
    expect(gone.stored).toBe(gone.id);
    expect(await stored("conn:a")).toBeNull();
    // The log says what follows the timeout, and where to clean up.
    await app.waitFor(
      /did not answer within 1 s \(connection \S+\); its client is refused with 504, and the handler runs on: if it ends accepting, the disconnect handler runs for the connection, so clean up there what connect stored/,
    );
    // Until it ended, the connection was connected to the app, as one whose connect handler runs.
    expect(await stored("done:a")).toEqual({ send: "ok", setState: "ok", join: "ok" });

    // Refusing or throwing, as for a refusal in time: no disconnect, and what it stored stays.
    expect(await stored("done:r", 8000)).not.toBeNull();
    expect(await stored("done:t", 8000)).not.toBeNull();
    await sleep(1500); // time for a disconnect that should not come
    expect(await stored("gone:r")).toBeNull();
    expect(await stored("gone:t")).toBeNull();
    expect(await stored("conn:r")).not.toBeNull();
  }, 40000);
});

/** A service that handles the socket's connect only: another one handles its disconnect. */
const GATE = `
import { kv, websocket } from "@nitric-like/sdk";

const store = kv("conns").allow("set");
const split = websocket("split");

split.on("connect", async (ctx) => {
  const tag = ctx.query.tag?.[0];
  if (!tag) return;
  await new Promise((resolve) => setTimeout(resolve, Number(ctx.query.hold?.[0] ?? 0)));
  await store.set("conn:" + tag, { id: ctx.connectionId });
  await split.setState(ctx.connectionId, { tag });
  if (ctx.query.refuse) return ctx.reject("refused late", 403);
});
`;

/** The service that handles the socket's disconnect and messages. */
const KEEPER = `
import { isNitricLikeError, kv, websocket } from "@nitric-like/sdk";

const store = kv("conns").allow("get", "set", "delete");
const split = websocket("split");

split.on("disconnect", async (ctx) => {
  const tag = ctx.connection.state?.tag ?? "untagged";
  let stored = null;
  try {
    stored = (await store.get("conn:" + tag)).id;
  } catch {}
  await store.set("gone:" + tag, { id: ctx.connectionId, code: ctx.code, reason: ctx.reason, stored });
  await store.delete("conn:" + tag);
});

split.on("message", async (ctx) => {
  const { key } = ctx.json();
  try {
    return { value: await store.get(key) };
  } catch (error) {
    if (isNitricLikeError(error) && error.code === "not_found") return { value: null };
    throw error;
  }
});
`;

describe.each([
  { provider: "local", args: [] as string[] },
  { provider: "aws", args: [] as string[] },
])(
  "a connect handler past the handler timeout whose disconnect handler is another service's, on the $provider provider",
  ({ provider, args }) => {
    let app: App;
    let url: string;
    beforeAll(async () => {
      const dir = writeProject({
        "nitric-like.yaml": "name: latesplit\nservices:\n  - match: services/*.ts\nlimits:\n  handlerTimeout: 1s\n",
        "services/gate.ts": GATE,
        "services/keeper.ts": KEEPER,
      });
      app = await startApp(dir, ["--provider", provider, ...args]);
      url = app.url("split");
    }, 60000);
    afterAll(async () => {
      const { code } = await app.stop();
      expect(code).toBe(0);
    });

    async function stored(key: string, timeoutMs = 0): Promise<unknown> {
      const probe = await connect(url);
      try {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const { value } = await probe.call({ key });
          if (value !== null || Date.now() >= deadline) return value;
          await sleep(100);
        }
      } finally {
        probe.close();
      }
    }

    it("runs the other service's disconnect handler for it once it has ended accepting, with the state it set, and none when it refused", async () => {
      await expect(connect(`${url}?tag=a&hold=1600`)).rejects.toMatchObject({ status: 504 });
      await expect(connect(`${url}?tag=r&hold=1600&refuse=1`)).rejects.toMatchObject({ status: 504 });
      const gone = (await stored("gone:a", 8000)) as Record<string, unknown>;
      expect(gone).toMatchObject({
        code: 1006,
        reason: "connect handler answered after the handler timeout (1 s); its client was refused with 504",
      });
      // After the connect handler had stored the connection, with the state it set: cleaned up.
      expect(gone.stored).toBe(gone.id);
      expect(await stored("conn:a")).toBeNull();
      expect(await stored("conn:r", 8000)).not.toBeNull();
      await sleep(1500); // time for a disconnect that should not come
      expect(await stored("gone:r")).toBeNull();
    }, 40000);
  },
);

/**
 * A service that handles the connect of socket `connect` and the disconnect and messages of socket
 * `disconnect`: two of them, each the other way round, make a pair of functions that each hand a
 * late connect's disconnect to the other.
 */
function crossed(connect: string, disconnect: string): string {
  return `
import { isNitricLikeError, kv, websocket } from "@nitric-like/sdk";

const store = kv("conns").allow("get", "set", "delete");
const entry = websocket(${JSON.stringify(connect)});
const exit = websocket(${JSON.stringify(disconnect)});

entry.on("connect", async (ctx) => {
  const tag = ctx.query.tag?.[0];
  if (!tag) return;
  await new Promise((resolve) => setTimeout(resolve, Number(ctx.query.hold?.[0] ?? 0)));
  await store.set("conn:" + tag, { id: ctx.connectionId });
  await entry.setState(ctx.connectionId, { tag });
});

exit.on("disconnect", async (ctx) => {
  const tag = ctx.connection.state?.tag ?? "untagged";
  let stored = null;
  try {
    stored = (await store.get("conn:" + tag)).id;
  } catch {}
  await store.set("gone:" + tag, { id: ctx.connectionId, code: ctx.code, reason: ctx.reason, stored });
  await store.delete("conn:" + tag);
});

exit.on("message", async (ctx) => {
  const { key } = ctx.json();
  try {
    return { value: await store.get(key) };
  } catch (error) {
    if (isNitricLikeError(error) && error.code === "not_found") return { value: null };
    throw error;
  }
});
`;
}

describe.each([
  { provider: "local", args: [] as string[] },
  { provider: "aws", args: [] as string[] },
])(
  "late connect handlers of two services that each handle the disconnect of the other's socket, on the $provider provider",
  ({ provider, args }) => {
    let app: App;
    beforeAll(async () => {
      const dir = writeProject({
        "nitric-like.yaml": "name: latecross\nservices:\n  - match: services/*.ts\nlimits:\n  handlerTimeout: 1s\n",
        "services/east.ts": crossed("east-door", "west-door"),
        "services/west.ts": crossed("west-door", "east-door"),
      });
      app = await startApp(dir, ["--provider", provider, ...args]);
    }, 60000);
    afterAll(async () => {
      const { code } = await app.stop();
      expect(code).toBe(0);
    });

    /** A key's value, read through `socket`'s message handler, once it is not null (or null after `timeoutMs`). */
    async function stored(socket: string, key: string, timeoutMs = 0): Promise<unknown> {
      const probe = await connect(app.url(socket));
      try {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const { value } = await probe.call({ key });
          if (value !== null || Date.now() >= deadline) return value;
          await sleep(100);
        }
      } finally {
        probe.close();
      }
    }

    it("runs each socket's disconnect handler, in the other service, for a connect that answered late", async () => {
      await expect(connect(`${app.url("east-door")}?tag=e&hold=1600`)).rejects.toMatchObject({ status: 504 });
      await expect(connect(`${app.url("west-door")}?tag=w&hold=1600`)).rejects.toMatchObject({ status: 504 });
      // Both services share the store, so either socket's message handler reads what the other wrote.
      for (const [socket, tag] of [
        ["east-door", "e"],
        ["west-door", "w"],
      ] as const) {
        const gone = (await stored(socket, `gone:${tag}`, 8000)) as Record<string, unknown> | null;
        expect(gone, `${socket}'s disconnect`).toMatchObject({
          code: 1006,
          reason: "connect handler answered after the handler timeout (1 s); its client was refused with 504",
        });
        expect(gone?.stored).toBe(gone?.id);
        expect(await stored(socket, `conn:${tag}`)).toBeNull();
      }
    }, 40000);
  },
);

describe.each([
  { provider: "local", args: [] as string[] },
  { provider: "aws", args: [] as string[] },
])(
  "a connect handler past the handler timeout of a socket with no disconnect handler, on the $provider provider",
  ({ provider, args }) => {
    let app: App;
    beforeAll(async () => {
      const dir = writeProject({
        "nitric-like.yaml": "name: latebare\nservices:\n  - match: services/*.ts\nlimits:\n  handlerTimeout: 1s\n",
        "services/solo.ts": `
import { websocket } from "@nitric-like/sdk";

const bare = websocket("bare");
bare.on("connect", async (ctx) => {
  await new Promise((resolve) => setTimeout(resolve, Number(ctx.query.hold?.[0] ?? 0)));
  console.log("accepted late " + ctx.query.tag?.[0]);
});
bare.on("message", async (ctx) => ctx.text());
`,
      });
      app = await startApp(dir, ["--provider", provider, ...args]);
    }, 60000);
    afterAll(async () => {
      const { code } = await app.stop();
      expect(code).toBe(0);
    });

    it("runs nothing for it once it has ended accepting, and warns of no disconnect handler that does not run", async () => {
      await expect(connect(`${app.url("bare")}?tag=b1&hold=1600`)).rejects.toMatchObject({ status: 504 });
      await app.waitFor(/accepted late b1/);
      await sleep(1000); // time for a warning that should not come
      expect(app.stdout + app.stderr).not.toMatch(/warning: websocket "bare"/);
    }, 40000);
  },
);
