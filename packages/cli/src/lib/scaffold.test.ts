import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadProject, projectNameProblem } from "@nitric-like/spec";
import fc from "fast-check";
import { afterAll, expect, it } from "vitest";
import { scaffold } from "./scaffold.js";

const root = mkdtempSync(join(tmpdir(), "nl-scaffold-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A name a folder can have: no "/", no NUL, not "." or "..", at most 255 bytes. */
const folderName = fc
  .string({ unit: "binary", minLength: 1, maxLength: 80 })
  .filter((s) => !/[/\0]/.test(s) && s !== "." && s !== ".." && Buffer.byteLength(s) <= 255);

let n = 0;
function made(folder: string) {
  // Each in a parent of its own, so the folder itself has exactly the name under test.
  const parent = join(root, String(n++));
  const { dir, name } = scaffold(join(parent, folder), "chat", { version: "0.1.0", fromRegistry: true });
  const project = loadProject(dir);
  return { name, project, pkg: JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name: string } };
}

it("names a project after its folder with a name the project file accepts, whatever the folder is called", () => {
  for (const [folder, expected] of [
    ["2048", "app-2048"],
    ["My Chat", "my-chat"],
    ["null", "app-null"],
    ["True", "app-true"],
    ["---", "my-app"],
    ["über-app", "uber-app"],
  ] as const) {
    const { name, project, pkg } = made(folder);
    expect([name, project.name, pkg.name]).toEqual([expected, expected, expected]);
  }
  fc.assert(
    fc.property(folderName, (folder) => {
      const { name, project, pkg } = made(folder);
      expect(project.name).toBe(name);
      expect(pkg.name).toBe(name);
      expect(projectNameProblem(name)).toBeUndefined();
    }),
    { numRuns: 60 },
  );
});
