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

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "nitric-like-dashboard-kv-"));
  const spec: Spec = {
    name: "d",
    services: [],
    resources: [{ kind: "kv", name: "items", declaredBy: [] }],
    policies: [],
  };
  provider = await createLocalProvider({
    project: { name: "d", dir, file: join(dir, "nitric-like.yaml"), services: [], websockets: {} },
    spec,
    logger: { info() {}, warn() {}, error() {} },
    randomPorts: true,
  });
  dashboard = await startDashboard({ port: 0, fallback: false, provider: "local", spec, running: provider });
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
