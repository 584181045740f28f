// The collect pass on real services: a service on our SDK alone collected as a worker thread
// (`threads: true`, as `run` does) gives what the same service gives collected as a process, for a
// service that declares, one that crashes, one that exits non-zero and one that declares nothing.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { CollectedService, Project } from "@nitric-like/spec";
import { afterEach, expect, it } from "vitest";
import { bundleService } from "./bundle.js";
import { type CollectOptions, collect } from "./collect.js";

const SDK = fileURLToPath(new URL("../../../sdk", import.meta.url));
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A project with one service of `source`, bundled. */
async function service(source: string) {
  const dir = mkdtempSync(join(tmpdir(), "nitric-like-collect-"));
  dirs.push(dir);
  mkdirSync(join(dir, "node_modules", "@nitric-like"), { recursive: true });
  symlinkSync(SDK, join(dir, "node_modules", "@nitric-like", "sdk"), "dir");
  mkdirSync(join(dir, "services"));
  const path = join(dir, "services", "api.ts");
  writeFileSync(path, source);
  const entry = { name: "api", file: "services/api.ts", path };
  const project = { name: "app", dir } as Project;
  const bundle = await bundleService(dir, entry);
  expect(bundle.threadable).toBe(true);
  return { project, services: [{ entry, bundle }] };
}

/** The service collected as a thread and as a process (in the project's folder, as `run` collects). */
async function both(source: string, options: CollectOptions = {}): Promise<[CollectedService, CollectedService]> {
  const { project, services } = await service(source);
  const cwd = process.cwd();
  process.chdir(project.dir);
  try {
    const [thread] = await collect(project, services, { ...options, threads: true });
    const [child] = await collect(project, services, options);
    return [thread as CollectedService, child as CollectedService];
  } finally {
    process.chdir(cwd);
  }
}

it("records the same declarations and handlers from a thread as from a process", async () => {
  const [thread, child] = await both(`import { kv, websocket } from "@nitric-like/sdk";
kv("store").allow("get", "set");
const socket = websocket("socket");
socket.on("connect", () => {});
socket.on("message", () => {});
`);
  expect(thread.failure).toBeUndefined();
  expect(thread.declared.map((d) => d.name).sort()).toEqual(["socket", "store"]);
  expect(thread.handlers).toHaveLength(2);
  expect(thread).toEqual(child);
});

it("reports a service that crashes as a process does, with its output", async () => {
  const [thread, child] = await both(`import { websocket } from "@nitric-like/sdk";
websocket("socket");
console.log("about to fail");
throw new Error("boom at start");
`);
  expect(thread.failure?.message).toBe("exited with code 1 while its resources were being collected");
  expect(thread.failure?.message).toBe(child.failure?.message);
  for (const r of [thread, child]) {
    expect(r.failure?.output).toContain("about to fail");
    expect(r.failure?.output).toContain("boom at start");
  }
});

it("reports a service that exits non-zero as a process does", async () => {
  const [thread, child] = await both(`import { websocket } from "@nitric-like/sdk";
websocket("socket").on("message", () => {});
setTimeout(() => process.exit(3), 10);
`);
  expect(thread.failure?.message).toBe("exited with code 3 while its resources were being collected");
  expect(thread.failure?.message).toBe(child.failure?.message);
});

it("stops a service that declares nothing and does not exit, as a process", async () => {
  const source = `import { kv } from "@nitric-like/sdk";
if (process.env.NEVER_SET_HERE) kv("store");
setInterval(() => {}, 1000);
`;
  const [thread, child] = await both(source, { startTimeoutMs: 500 });
  expect(thread.failure?.message).toBe(
    "declared nothing within 0.5 s and did not exit; a service must declare its resources when it starts",
  );
  expect(thread.failure?.message).toBe(child.failure?.message);
});
