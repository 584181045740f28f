import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { findServices, globToRegExp, loadProject } from "./project.js";

const dirs: string[] = [];
function project(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "nitric-like-project-"));
  dirs.push(dir);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("globToRegExp", () => {
  it("matches one folder level with * and any depth with **", () => {
    expect(globToRegExp("services/*.ts").test("services/chat.ts")).toBe(true);
    expect(globToRegExp("services/*.ts").test("services/a/chat.ts")).toBe(false);
    expect(globToRegExp("services/**/*.ts").test("services/chat.ts")).toBe(true);
    expect(globToRegExp("services/**/*.ts").test("services/a/b/chat.ts")).toBe(true);
    expect(globToRegExp("./services/?.ts").test("services/a.ts")).toBe(true);
    expect(globToRegExp("services/*.ts").test("services/chat.tsx")).toBe(false);
  });

  it("matches any literal path exactly, whatever characters it has", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-zA-Z0-9.+()$^{}|[\] _-]{1,20}$/), (name) => {
        expect(globToRegExp(name).test(name)).toBe(true);
        expect(globToRegExp(name).test(`${name}x`)).toBe(false);
      }),
    );
  });
});

describe("loadProject", () => {
  it("reads nitric-like.yaml, and nitric.yaml for Nitric projects", () => {
    const a = loadProject(
      project({
        "nitric-like.yaml": "name: a\nservices:\n  - match: services/*.ts\nwebsockets:\n  socket:\n    port: 4100\n",
      }),
    );
    expect(a).toMatchObject({
      name: "a",
      services: [{ match: "services/*.ts" }],
      websockets: { socket: { port: 4100 } },
    });
    const b = loadProject(
      project({ "nitric.yaml": "name: b\nservices:\n  - match: services/*.ts\n    start: node $SERVICE_PATH\n" }),
    );
    expect(b).toMatchObject({ name: "b", services: [{ match: "services/*.ts", start: "node $SERVICE_PATH" }] });
  });

  it("says what to write when the file is missing or wrong", () => {
    expect(() => loadProject(project({}))).toThrow(/no project file found, create nitric-like.yaml/);
    expect(() => loadProject(project({ "nitric-like.yaml": "services: []\n" }))).toThrow(/"name" is required/);
    expect(() => loadProject(project({ "nitric-like.yaml": "name: x\n" }))).toThrow(/"services" is required/);
    expect(() => loadProject(project({ "nitric-like.yaml": "name: x\nservices:\n  - start: x\n" }))).toThrow(
      /services\[0\] needs a "match" glob/,
    );
    expect(() =>
      loadProject(
        project({ "nitric-like.yaml": "name: x\nservices:\n  - match: a\nwebsockets:\n  s:\n    port: 99999\n" }),
      ),
    ).toThrow(/websockets\.s\.port must be a port number/);
    expect(() => loadProject(project({ "nitric-like.yaml": "name: [unclosed\n" }))).toThrow(/not valid YAML/);
  });
});

describe("findServices", () => {
  it("names each service after its file and skips node_modules", () => {
    const dir = project({
      "nitric-like.yaml": "name: x\nservices:\n  - match: services/**/*.ts\n",
      "services/chat.ts": "",
      "services/admin/audit.ts": "",
      "services/node_modules/dep/index.ts": "",
    });
    expect(findServices(loadProject(dir)).map((s) => [s.name, s.file])).toEqual([
      ["audit", "services/admin/audit.ts"],
      ["chat", "services/chat.ts"],
    ]);
  });

  it("refuses two services with the same name and a glob that matches nothing", () => {
    const clash = project({
      "nitric-like.yaml": "name: x\nservices:\n  - match: services/**/*.ts\n",
      "services/a.ts": "",
      "services/b/a.ts": "",
    });
    expect(() => findServices(loadProject(clash))).toThrow(/two services are named "a"/);
    const none = project({ "nitric-like.yaml": "name: x\nservices:\n  - match: services/*.ts\n" });
    expect(() => findServices(loadProject(none))).toThrow(/"services\/\*\.ts" matches no file/);
  });
});
