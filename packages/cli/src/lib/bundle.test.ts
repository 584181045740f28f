// The service bundler on real files: our SDK and its dependencies go into the bundle, the project's
// own packages stay external, and an unchanged service reuses its bundle.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, expect, it } from "vitest";
import { bundleService } from "./bundle.js";

const SDK = fileURLToPath(new URL("../../../sdk", import.meta.url));
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function project(source: string) {
  const dir = mkdtempSync(join(tmpdir(), "nitric-like-bundle-"));
  dirs.push(dir);
  mkdirSync(join(dir, "node_modules", "@nitric-like"), { recursive: true });
  symlinkSync(SDK, join(dir, "node_modules", "@nitric-like", "sdk"), "dir");
  mkdirSync(join(dir, "node_modules", "shout"));
  writeFileSync(join(dir, "node_modules", "shout", "package.json"), '{"name":"shout","main":"index.js"}');
  writeFileSync(join(dir, "node_modules", "shout", "index.js"), "module.exports = (s) => s.toUpperCase();");
  mkdirSync(join(dir, "services"));
  const path = join(dir, "services", "api.ts");
  writeFileSync(path, source);
  return { dir, path, entry: { name: "api", file: "services/api.ts", path } };
}

const SOURCE = `import shout from "shout";
import { websocket } from "@nitric-like/sdk";
websocket("socket").on("message", (ctx) => shout(ctx.text()));
`;

it("bundles our SDK with its dependencies and leaves the project's own packages external", async () => {
  const { dir, entry, path } = project(SOURCE);
  const bundle = await bundleService(dir, entry);
  const code = readFileSync(bundle.outfile, "utf8");
  const imports = [...code.matchAll(/^import .* from "([^"]+)";?$/gm)].map((m) => m[1]);
  expect(imports).toContain("shout");
  expect(
    imports.some((i) => i?.startsWith("@nitric-like/") || i?.startsWith("@grpc/") || i?.startsWith("@bufbuild/")),
  ).toBe(false);
  expect(code).toMatch(/makeUnaryRequest\(method, serialize, deserialize/); // grpc-js's client, inside the bundle
  expect(bundle.inputs.has(path)).toBe(true);
});

it("reuses the bundle while its files are unchanged and makes it again when one changes", async () => {
  const { dir, entry, path } = project(SOURCE);
  const first = await bundleService(dir, entry);
  const madeAt = statSync(first.outfile).mtimeMs;
  await new Promise((r) => setTimeout(r, 20));
  const again = await bundleService(dir, entry);
  expect(statSync(again.outfile).mtimeMs).toBe(madeAt);
  expect([...again.inputs].sort()).toEqual([...first.inputs].sort());

  writeFileSync(path, `${SOURCE}websocket("socket").on("connect", () => console.log("changed on purpose"));\n`);
  const changed = await bundleService(dir, entry);
  expect(readFileSync(changed.outfile, "utf8")).toContain("changed on purpose");
});

it("reports a compile error with its place, and builds again once the file is fixed", async () => {
  const { dir, entry, path } = project(SOURCE);
  await bundleService(dir, entry);
  writeFileSync(path, "export const x = ;\n");
  await expect(bundleService(dir, entry)).rejects.toThrow(/services\/api\.ts:1:\d+/);
  writeFileSync(path, SOURCE);
  const fixed = await bundleService(dir, entry);
  expect(readFileSync(fixed.outfile, "utf8")).toContain(
    'websocket("socket").on("message", (ctx) => shout(ctx.text()))',
  );
});

it("makes a @nitric/sdk service a second bundle for a thread: @nitric/sdk inside, its grpc-js the stand-in", async () => {
  const { dir, entry } = project(`import { kind } from "@nitric/sdk";
import * as grpc from "@grpc/grpc-js";
console.log(kind, grpc.kind);
`);
  const pkg = (name: string, index: string) => {
    mkdirSync(join(dir, "node_modules", name), { recursive: true });
    writeFileSync(join(dir, "node_modules", name, "package.json"), JSON.stringify({ name, main: "index.js" }));
    writeFileSync(join(dir, "node_modules", name, "index.js"), index);
  };
  pkg("@nitric/sdk", 'exports.kind = require("@grpc/grpc-js").kind;');
  pkg("@grpc/grpc-js", 'exports.kind = "installed";');
  const bundle = await bundleService(dir, entry);
  const importsOf = (file: string) =>
    [...readFileSync(file, "utf8").matchAll(/^import .* from "([^"]+)";?$/gm)].map((m) => m[1]);
  // The process bundle keeps @nitric/sdk as installed (with the grpc-js it brings).
  expect(bundle.threadable).toBe(false);
  expect(importsOf(bundle.outfile)).toContain("@nitric/sdk");
  // The thread bundle has @nitric/sdk in it, calling through the stand-in...
  expect(bundle.threadOutfile).toBeDefined();
  const threaded = readFileSync(bundle.threadOutfile as string, "utf8");
  expect(importsOf(bundle.threadOutfile as string)).not.toContain("@nitric/sdk");
  expect(threaded).toContain("STAND_IN_CLIENT");
  expect(threaded).not.toContain('"installed"');
  // ...while the service's own import of grpc-js stays the project's.
  expect(importsOf(bundle.threadOutfile as string)).toContain("@grpc/grpc-js");
  // Reused while unchanged, the thread bundle with it.
  const again = await bundleService(dir, entry);
  expect(again.threadOutfile).toBe(bundle.threadOutfile);
});
