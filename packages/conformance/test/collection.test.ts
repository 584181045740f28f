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
