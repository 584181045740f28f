// `nitric-like build --out DIR` (and `up`) never deletes what the build did not write: a folder
// holding anything and no build marker is refused before anything is bundled, and a rebuild removes
// only the files the last build listed.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cleanTemp, copyProject, EXAMPLES, runCli } from "../src/harness.js";

afterAll(cleanTemp);

const MARKER = ".nitric-like-build.json";

describe("nitric-like build --out", () => {
  it("refuses the project folder itself (--out .), before bundling, and leaves every file", async () => {
    const project = copyProject(join(EXAMPLES, "chat"));
    const before = readdirSync(project).sort();
    const { code, stderr } = await runCli(["build", ".", "--provider", "aws", "--out", ".", "--plain"], {
      cwd: project,
    });
    expect(code).toBe(1);
    expect(stderr).toContain(`build: --out ${JSON.stringify(project)} holds ${before.length} entries`);
    expect(stderr).toContain(`and no ${MARKER}, so no earlier build wrote it`);
    // The folder it suggests is a new one, not .nitric-like/build, where run keeps its bundles.
    expect(stderr).toContain(
      `pass a new or empty folder (e.g. --out ${JSON.stringify(join(project, "nitric-like-out"))})`,
    );
    expect(stderr).not.toContain("bundling");
    expect(readdirSync(project).sort()).toEqual(before);
    expect(existsSync(join(project, "services", "chat.ts"))).toBe(true);
  }, 60000);

  it("refuses a provider that cannot build, or none of that name, before bundling and writing anything", async () => {
    for (const [provider, said] of [
      ["local", 'error: provider "local" cannot build; pass --provider aws'],
      ["gcp", 'error: provider "gcp" is not installed in'],
    ] as const) {
      const project = copyProject(join(EXAMPLES, "chat"));
      const before = readdirSync(project).sort();
      const { code, stderr } = await runCli(["build", project, "--provider", provider, "--plain"]);
      expect(code).toBe(1);
      expect(stderr.startsWith(said), stderr).toBe(true);
      expect(stderr).not.toContain("bundling");
      expect(readdirSync(project).sort()).toEqual(before);
    }
  }, 60000);

  it("refuses the same for up", async () => {
    const project = copyProject(join(EXAMPLES, "chat"));
    const out = join(project, "mine");
    mkdirSync(out);
    writeFileSync(join(out, "notes.txt"), "keep me");
    const { code, stderr } = await runCli(["up", project, "--out", out, "--stack", "x", "--plain"], {
      timeoutMs: 60000,
    });
    expect(code).toBe(1);
    expect(stderr).toContain(`up: --out ${JSON.stringify(out)} holds 1 entry (such as "notes.txt")`);
    expect(readFileSync(join(out, "notes.txt"), "utf8")).toBe("keep me");
  }, 60000);

  it("builds into a new or empty folder, rebuilds over its own build, and never removes a file it did not write", async () => {
    const project = copyProject(join(EXAMPLES, "chat"));
    const out = join(project, "out");
    mkdirSync(out);
    const first = await runCli(["build", project, "--provider", "aws", "--out", out, "--plain"]);
    expect(first.code, first.stderr).toBe(0);
    const marker = JSON.parse(readFileSync(join(out, MARKER), "utf8")) as { files: string[] };
    expect(marker.files).toEqual(
      expect.arrayContaining(["template.json", "artifacts.json", "functions/chat.zip", "functions/chat/index.cjs"]),
    );
    // A file the user put there, and a stale one the last build listed but the next will not write.
    writeFileSync(join(out, "notes.txt"), "keep me");
    writeFileSync(join(out, "functions", "old.zip"), "stale");
    writeFileSync(join(out, MARKER), JSON.stringify({ ...marker, files: [...marker.files, "functions/old.zip"] }));
    const second = await runCli(["build", project, "--provider", "aws", "--out", out, "--plain"]);
    expect(second.code, second.stderr).toBe(0);
    expect(readFileSync(join(out, "notes.txt"), "utf8")).toBe("keep me");
    expect(existsSync(join(out, "functions", "old.zip"))).toBe(false);
    expect(existsSync(join(out, "template.json"))).toBe(true);
    const again = JSON.parse(readFileSync(join(out, MARKER), "utf8")) as { files: string[] };
    expect(again.files).not.toContain("notes.txt");
  }, 60000);

  it("never follows a marker's path out of the folder", async () => {
    const project = copyProject(join(EXAMPLES, "chat"));
    const out = join(project, "out");
    mkdirSync(out);
    writeFileSync(
      join(out, MARKER),
      JSON.stringify({ tool: "nitric-like", provider: "aws", files: ["../nitric-like.yaml", "/etc/hostname"] }),
    );
    const { code, stderr } = await runCli(["build", project, "--provider", "aws", "--out", out, "--plain"]);
    expect(code, stderr).toBe(0);
    expect(existsSync(join(project, "nitric-like.yaml"))).toBe(true);
  }, 60000);
});
