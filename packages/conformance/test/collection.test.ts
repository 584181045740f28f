// collection(name).query().where(...) under `nitric-like run`, driven by a real ws client: a where
// reads the documents' own fields, never what every object inherits.
import { afterAll, afterEach, expect, it } from "vitest";
import { cleanTemp, connect, startApp, stopAll, writeProject } from "../src/harness.js";

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

const SERVICE = `import { collection, websocket } from "@nitric-like/sdk";

const cars = collection("cars").for("reading", "writing");
const socket = websocket("cars");
socket.on("connect", () => {});
socket.on("disconnect", () => {});
socket.on("message", async (ctx) => {
  const { op, id, doc, field, value } = ctx.json<{ op: string; id: string; doc: Record<string, unknown>; field: string; value: never }>();
  if (op === "set") {
    await cars.doc(id).set(doc);
    return { ok: true };
  }
  const { documents } = await cars.query().where(field, "==", value).fetch();
  return documents.map((d) => d.id).sort();
});
`;

it("where() matches own fields only: constructor and __proto__ are data, not Object.prototype", async () => {
  const app = await startApp(
    writeProject({
      "nitric-like.yaml": "name: cars\nservices:\n  - match: services/*.ts\n",
      "services/cars.ts": SERVICE,
    }),
    ["--no-dashboard"],
  );
  const client = await connect(app.url("cars"));
  await client.call({ op: "set", id: "f40", doc: { constructor: { name: "Ferrari" } } });
  await client.call({ op: "set", id: "plain", doc: { model: "T" } });
  const where = async (field: string, value: unknown) => await client.call({ op: "where", field, value });
  expect(await where("constructor.name", "Ferrari")).toEqual(["f40"]);
  // Inherited: every object's constructor is Object. Only an own field may match.
  expect(await where("constructor.name", "Object")).toEqual([]);
  expect(await where("__proto__", {})).toEqual([]);
  expect(await where("model", "T")).toEqual(["plain"]);
  client.close();
}, 40000);

// A collection is the kv store of the same name, and its errors came from the store: a service
// that wrote collection("notes").for("writing") was told to add .allow("get") to kv("notes"),
// which it never declared, and that key "n1" was not found.
const NOTES = `import { collection, isNitricLikeError, websocket } from "@nitric-like/sdk";

const notes = collection("notes").for("writing");
const socket = websocket("notes");
socket.on("connect", () => {});
socket.on("disconnect", () => {});
socket.on("message", async (ctx) => {
  const { op } = ctx.json<{ op: string }>();
  try {
    const n = notes as unknown as { doc(id: string): { get(): Promise<unknown>; delete(): Promise<void> }; query(): { fetch(): Promise<unknown> } };
    if (op === "get") await n.doc("n1").get();
    if (op === "delete") await n.doc("n1").delete();
    if (op === "query") await n.query().fetch();
    if (op === "date") await notes.doc("n1").set({ at: new Date(0) as never });
    if (op === "empty") await notes.doc("").set({});
    if (op === "toString") collection("notes").for("toString" as never);
    return { ok: true };
  } catch (error) {
    return isNitricLikeError(error) ? { code: error.code, message: error.message } : { other: String(error) };
  }
});
`;

const READER = `import { collection, isNitricLikeError, websocket } from "@nitric-like/sdk";
const notes = collection("drafts").for("reading");
const socket = websocket("drafts");
socket.on("connect", () => {});
socket.on("disconnect", () => {});
socket.on("message", async () => {
  try {
    return await notes.doc("d1").get();
  } catch (error) {
    return isNitricLikeError(error) ? { code: error.code, message: error.message } : { other: String(error) };
  }
});
`;

it.each(["local", "aws"])(
  "says a collection's errors as collection(), doc() and .for(), not as the kv store under it (%s)",
  async (provider) => {
    const app = await startApp(
      writeProject({
        "nitric-like.yaml": "name: notes\nservices:\n  - match: services/*.ts\n",
        "services/notes.ts": NOTES,
        "services/drafts.ts": READER,
      }),
      ["--no-dashboard", "--provider", provider],
    );
    const client = await connect(app.url("notes"));
    const call = (op: string) => client.call({ op });
    expect(await call("get")).toEqual({
      code: "permission_denied",
      message:
        'collection("notes"): service "notes" may not read documents; add .for("reading") to collection("notes") in that service',
    });
    expect(await call("query")).toEqual({
      code: "permission_denied",
      message:
        'collection("notes"): service "notes" may not read documents; add .for("reading") to collection("notes") in that service',
    });
    expect(await call("delete")).toEqual({
      code: "permission_denied",
      message:
        'collection("notes"): service "notes" may not delete documents; add .for("deleting") to collection("notes") in that service',
    });
    expect(await call("date")).toEqual({
      code: "invalid_argument",
      message:
        'collection("notes").doc("n1").set(): value.at is a Date, which kv cannot store: use a string, such as date.toISOString(), or a number, such as date.getTime()',
    });
    expect(await call("empty")).toEqual({
      code: "invalid_argument",
      message: 'collection("notes").doc("").set(): the key is empty; use a non-empty string',
    });
    expect(await call("toString")).toEqual({
      code: "invalid_argument",
      message: 'collection("notes").for("toString"): unknown permission; use "reading", "writing" or "deleting"',
    });
    client.close();
    const reader = await connect(app.url("drafts"));
    expect(await reader.call({})).toEqual({
      code: "not_found",
      message: 'collection("drafts"): document "d1" not found',
    });
    reader.close();
  },
  60000,
);
