// The dashboard's kv editor against a real local provider: a value saved there follows the rules of
// every kv set() (@nitric-like/spec), so it cannot put into a store what AWS would refuse or change.
import { mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLocalProvider, type LocalProvider } from "@nitric-like/provider-local";
import type { Spec } from "@nitric-like/spec";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Dashboard, startDashboard } from "./dashboard.js";

let provider: LocalProvider;
let dashboard: Dashboard;
let dir: string;
/** What the dashboard logged as its own failures (answered 500). */
const errors: string[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "nitric-like-dashboard-kv-"));
  const spec: Spec = {
    name: "d",
    services: [],
    resources: [
      { kind: "kv", name: "items", declaredBy: [] },
      { kind: "websocket", name: "chat", declaredBy: [], handlers: {} },
    ],
    policies: [],
  };
  provider = await createLocalProvider({
    project: { name: "d", dir, file: join(dir, "nitric-like.yaml"), services: [], websockets: {} },
    spec,
    logger: { info() {}, warn() {}, error() {} },
    randomPorts: true,
  });
  dashboard = await startDashboard({
    port: 0,
    fallback: false,
    provider: "local",
    spec,
    running: provider,
    logger: { info() {}, warn() {}, error: (m) => errors.push(m) },
  });
});

afterAll(async () => {
  await dashboard?.close();
  await provider?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const put = (body: string) =>
  fetch(`${dashboard.url}/api/kv/value`, {
    method: "PUT",
    headers: { "content-type": "application/json", "x-dashboard-key": dashboard.key },
    body,
  });

/** A request to the dashboard's API with the run's key; a body is sent as JSON. */
const call = (method: string, path: string, body?: unknown) =>
  fetch(`${dashboard.url}${path}`, {
    method,
    headers: { "content-type": "application/json", "x-dashboard-key": dashboard.key },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });

describe("the dashboard's answers to a request's mistakes", () => {
  it("answers a kv key kv would refuse with 400 and kv's words, not 500, and logs nothing as a bug", async () => {
    const long = "k".repeat(1025);
    const cases: [string, string, string][] = [
      ["GET", "", 'kv("items").get(""): the key is empty; use a non-empty string'],
      ["GET", long, 'kv("items").get(): the key is 1025 bytes long and at most 1024 are allowed; use a shorter key'],
      ["DELETE", "", 'kv("items").delete(""): the key is empty; use a non-empty string'],
      [
        "DELETE",
        long,
        'kv("items").delete(): the key is 1025 bytes long and at most 1024 are allowed; use a shorter key',
      ],
    ];
    for (const [method, key, error] of cases) {
      const r = await call(method, `/api/kv/value?store=items&key=${key}`);
      expect([method, key.length, r.status, await r.json()]).toEqual([method, key.length, 400, { error }]);
    }
    expect(errors).toEqual([]);
  });

  it("refuses a send or close whose fields have the wrong type with 400, never taking such a connectionId as a broadcast", async () => {
    const cases: [string, Record<string, unknown>, string][] = [
      ["/api/send", { socket: "chat", connectionId: 5, text: "x" }, '"connectionId" must be a string, or left out'],
      ["/api/send", { socket: "chat", connectionId: null, text: "x" }, '"connectionId" must be a string, or left out'],
      ["/api/send", { socket: "chat", text: 5 }, '"text" must be a string, or left out'],
      ["/api/send", { socket: "chat", text: "x", binary: "yes" }, '"binary" must be a boolean, or left out'],
      ["/api/close", { socket: "chat", connectionId: "a", code: "4000" }, '"code" must be a number, or left out'],
      ["/api/close", { socket: "chat", connectionId: "a", reason: 5 }, '"reason" must be a string, or left out'],
    ];
    for (const [path, body, error] of cases) {
      const r = await call("POST", path, body);
      expect([body, r.status, await r.json()]).toEqual([body, 400, { error }]);
    }
    // Left out, the connectionId means every connection (the page's broadcast).
    expect(await (await call("POST", "/api/send", { socket: "chat", text: "x" })).json()).toEqual({ sent: 0 });
    expect(errors).toEqual([]);
  });
});

describe("the dashboard's kv editor", () => {
  it("saves a value kv keeps, __proto__ included, and refuses one it cannot with the rule's message", async () => {
    const ok = await put('{"store": "items", "key": "a", "value": {"__proto__": {"x": 1}, "n": 2}}');
    expect(ok.status).toBe(200);
    expect(Object.keys((await provider.inspect.kvGet("items", "a")) ?? {})).toEqual(["__proto__", "n"]);
    // 1e400 parses to Infinity, which JSON would store as null.
    const infinite = await put('{"store": "items", "key": "b", "value": {"n": 1e400}}');
    expect(infinite.status).toBe(400);
    expect(await infinite.json()).toEqual({
      error: 'kv("items").set("b"): value.n is Infinity, which kv cannot store: use null or a finite number',
    });
    const big = await put(JSON.stringify({ store: "items", key: "c", value: { t: "x".repeat(410 * 1024) } }));
    expect(big.status).toBe(400);
    expect(((await big.json()) as { error: string }).error).toMatch(/DynamoDB allows at most 409600 \(400 KB\)/);
    const array = await put('{"store": "items", "key": "d", "value": [1]}');
    expect(array.status).toBe(400);
    expect(await provider.inspect.kvGet("items", "b")).toBeUndefined();
  });

  it("saves text whose characters a chunk of the request splits as they were sent", async () => {
    const text = "é😀".repeat(1000);
    const body = Buffer.from(JSON.stringify({ store: "items", key: "split", value: { text } }));
    // Cut inside a character: the server gets its bytes in two reads, as a long body over TCP does.
    const cut = body.indexOf(Buffer.from("😀")) + 2;
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        `${dashboard.url}/api/kv/value`,
        {
          method: "PUT",
          headers: {
            "content-type": "application/json",
            "content-length": body.byteLength,
            "x-dashboard-key": dashboard.key,
          },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on("error", reject);
      req.write(body.subarray(0, cut));
      setTimeout(() => req.end(body.subarray(cut)), 100);
    });
    expect(status).toBe(200);
    expect(await provider.inspect.kvGet("items", "split")).toEqual({ text });
  });
});
