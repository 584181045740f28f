// `nitric-like new`: a project made from the template runs under `nitric-like run` as it is.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, expect, it } from "vitest";
import { cleanTemp, connect, EXAMPLES, linkNodeModules, runCli, startApp, stopAll, tempDir } from "../src/harness.js";

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

it("creates a chat project named after its folder that runs and chats", async () => {
  const dir = join(tempDir(), "My Chat");
  const made = await runCli(["new", dir]);
  expect(made.code).toBe(0);
  expect(made.stdout.trim()).toBe(dir);
  expect(made.stderr).toContain('created my-chat in "My Chat" from the chat template:');
  expect(made.stderr).toContain("npx nitric-like run");
  expect(readFileSync(join(dir, "nitric-like.yaml"), "utf8")).toMatch(/^name: my-chat$/m);
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  expect(pkg.name).toBe("my-chat");
  expect(pkg.dependencies["@nitric-like/sdk"]).toMatch(/^file:vendor\/nitric-like-sdk-\d+\.\d+\.\d+\.tgz$/);
  expect(readFileSync(join(dir, ".gitignore"), "utf8")).toContain(".nitric-like/");

  linkNodeModules(dir); // what npm install gives it
  const spec = await runCli(["spec", dir]);
  expect(spec.code).toBe(0);
  expect(JSON.parse(spec.stdout).resources.map((r: { name: string }) => r.name)).toEqual(["socket", "names"]);

  const app = await startApp(dir);
  expect(app.dashboard).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  const ann = await connect(`${app.url("socket")}/?name=ann`);
  const bo = await connect(`${app.url("socket")}/?name=bo`);
  expect((await ann.next()).text).toBe("welcome, ann");
  expect((await bo.next()).text).toBe("welcome, bo");
  ann.ws.send("hi bo");
  expect((await bo.next()).text).toBe("ann: hi bo");
}, 40000);

it("creates a rooms project from --template rooms whose own tests pass, and whose spec lists its routes", async () => {
  const dir = join(tempDir(), "game night");
  const made = await runCli(["new", dir, "--template", "rooms"]);
  expect(made.code, made.stderr).toBe(0);
  expect(made.stderr).toContain('created game-night in "game night" from the rooms template:');
  // The base's files and the template's own.
  for (const file of [
    ".gitignore",
    "package.json",
    "tsconfig.json",
    "pnpm-workspace.yaml",
    "services/rooms.ts",
    "test/rooms.test.ts",
  ])
    expect(existsSync(join(dir, file)), file).toBe(true);
  expect(JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).name).toBe("game-night");
  expect(readFileSync(join(dir, "nitric-like.yaml"), "utf8")).toMatch(/^name: game-night$/m);

  // What npm install gives it: the workspace's packages and vitest.
  const root = join(EXAMPLES, "..");
  mkdirSync(join(dir, "node_modules", "@nitric-like"), { recursive: true });
  for (const pkg of ["cli", "sdk", "testing"])
    symlinkSync(join(root, "packages", pkg), join(dir, "node_modules", "@nitric-like", pkg), "dir");
  symlinkSync(join(root, "node_modules", "vitest"), join(dir, "node_modules", "vitest"), "dir");
  const spec = await runCli(["spec", dir]);
  expect(spec.code, spec.stderr).toBe(0);
  expect(JSON.parse(spec.stdout).resources[0]).toMatchObject({
    name: "rooms",
    routes: [
      { action: "join", service: "rooms" },
      { action: "say", service: "rooms" },
    ],
  });
  const tests = spawnSync(process.execPath, [join(dir, "node_modules", "vitest", "vitest.mjs"), "run"], {
    cwd: dir,
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1", CI: "true" },
    timeout: 120000,
  });
  expect(tests.status, `${tests.stdout}\n${tests.stderr}`).toBe(0);
  expect(tests.stdout).toMatch(/Tests\s+5 passed \(5\)/);
}, 150000);

it("makes a project whose test runner lets the test kit's waits end first: a message that never comes fails with the kit's words, not vitest's timeout", async () => {
  const dir = join(tempDir(), "waits");
  const made = await runCli(["new", dir]);
  expect(made.code, made.stderr).toBe(0);
  const root = join(EXAMPLES, "..");
  mkdirSync(join(dir, "node_modules", "@nitric-like"), { recursive: true });
  for (const pkg of ["cli", "sdk", "testing"])
    symlinkSync(join(root, "packages", pkg), join(dir, "node_modules", "@nitric-like", pkg), "dir");
  symlinkSync(join(root, "node_modules", "vitest"), join(dir, "node_modules", "vitest"), "dir");
  // A test as a user writes it: the chat never sends a message back to its sender.
  writeFileSync(
    join(dir, "test", "waits.test.ts"),
    `import { startApp, stopAll } from "@nitric-like/testing";
import { afterEach, it } from "vitest";
afterEach(stopAll);
it("gets its own message back", async () => {
  const app = await startApp(".");
  const ann = await app.connect({ query: { name: "ann" } });
  await ann.expectMessage("welcome, ann");
  ann.send("hi");
  await ann.expectMessage("ann: hi");
});
`,
  );
  const tests = spawnSync(
    process.execPath,
    [join(dir, "node_modules", "vitest", "vitest.mjs"), "run", "test/waits.test.ts"],
    { cwd: dir, encoding: "utf8", env: { ...process.env, NO_COLOR: "1", CI: "true" }, timeout: 60000 },
  );
  const output = `${tests.stdout}\n${tests.stderr}`;
  expect(tests.status, output).toBe(1);
  expect(output).toContain('client of websocket "socket": no message arrived within 5000 ms');
  expect(output).not.toContain("Test timed out");
}, 90000);

it("refuses a folder that is not empty, and an unknown template, naming the choices", async () => {
  const dir = tempDir();
  writeFileSync(join(dir, "notes.txt"), "mine");
  const full = await runCli(["new", dir]);
  expect(full.code).toBe(1);
  expect(full.stderr).toContain(`new: ${dir} already exists and is not empty; choose a new folder`);
  const unknown = await runCli(["new", join(dir, "x"), "--template", "blog"]);
  expect(unknown.code).toBe(1);
  expect(unknown.stderr).toContain('new: no template "blog"; templates: chat, rooms');
  const none = await runCli(["new"]);
  expect(none.code).toBe(1);
  expect(none.stderr).toContain('new: which folder? such as "nitric-like new my-app"');
});

it("says a file is a file, and a link to nothing a link, rather than a folder that is not empty", async () => {
  const dir = tempDir();
  const file = join(dir, "notes.txt");
  writeFileSync(file, "mine");
  const onFile = await runCli(["new", file]);
  expect(onFile.code).toBe(1);
  expect(onFile.stderr).toBe(
    `error: new: ${file} is a file, not a folder; give a new folder's path (such as "nitric-like new my-app"), or move the file away\n`,
  );
  expect(readFileSync(file, "utf8")).toBe("mine");
  const link = join(dir, "app");
  symlinkSync(join(dir, "gone"), link);
  const onLink = await runCli(["new", link]);
  expect(onLink.code).toBe(1);
  expect(onLink.stderr).toBe(
    `error: new: ${link} is a symbolic link to ${JSON.stringify(join(dir, "gone"))}, which does not exist; remove the link, or give a new folder's path\n`,
  );
  expect(existsSync(join(dir, "gone"))).toBe(false);
});

it("prints a cd that a shell runs as it is, for a folder with a quote or a leading dash in its name", async () => {
  const dir = tempDir();
  for (const name of ["-x", "it's mine"]) {
    const made = await runCli(["new", "--", name], { cwd: dir });
    expect(made.code, made.stderr).toBe(0);
    const cd = made.stderr.split("\n").find((line) => line.trimStart().startsWith("cd "));
    const shell = spawnSync("sh", ["-c", `${cd} && pwd`], { cwd: dir, encoding: "utf8" });
    expect(shell.status, `${cd}: ${shell.stderr}`).toBe(0);
    expect(shell.stdout.trim()).toBe(join(dir, name));
  }
});

/** The paths in a tarball, and its package.json. */
function tarball(file: string): { paths: string[]; manifest: Record<string, unknown> } {
  const list = spawnSync("tar", ["tzf", file], { encoding: "utf8" });
  expect(list.status, list.stderr).toBe(0);
  const manifest = spawnSync("tar", ["xzf", file, "-O", "package/package.json"], { encoding: "utf8" });
  return { paths: list.stdout.trim().split("\n"), manifest: JSON.parse(manifest.stdout) };
}

it("packs every @nitric-like package it runs with into vendor/ as pnpm pack does: built code, no sources, no workspace: ranges", async () => {
  const dir = join(tempDir(), "packed");
  expect((await runCli(["new", dir])).code).toBe(0);
  const files = readdirSync(join(dir, "vendor")).sort();
  const names = ["cli", "contracts", "provider-aws", "provider-kit", "provider-local", "rpc", "sdk", "spec", "testing"];
  expect(files).toEqual(
    names.map((n) => expect.stringMatching(new RegExp(`^nitric-like-${n}-\\d+\\.\\d+\\.\\d+\\.tgz$`))),
  );
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  expect(Object.keys(pkg.overrides)).toEqual(names.map((n) => `@nitric-like/${n}`));
  const pnpmFile = readFileSync(join(dir, "pnpm-workspace.yaml"), "utf8");
  for (const f of files) {
    expect(Object.values(pkg.overrides)).toContain(`file:vendor/${f}`);
    expect(pnpmFile).toContain(`file:vendor/${f}`);
    const { paths, manifest } = tarball(join(dir, "vendor", f));
    expect(JSON.stringify(manifest)).not.toContain("workspace:");
    expect(manifest.engines).toEqual({ node: expect.stringMatching(/^>=20/) });
    expect(paths).toContain("package/package.json");
    // A template's files are the new project's, its test included.
    const own = paths.filter((p) => !p.startsWith("package/templates/"));
    expect(own.filter((p) => /^package\/(src|test)\/|\.test\.|^package\/tsconfig|inputs\.json$/.test(p))).toEqual([]);
    for (const target of Object.values(manifest.exports as Record<string, string | { default: string }>)) {
      const path = typeof target === "string" ? target : target.default;
      expect(paths, `${f}: ${path}`).toContain(`package/${path.replace(/^\.\//, "")}`);
    }
  }
  // The same files as `pnpm pack` puts in each package's tarball, and the same manifest.
  const ROOT = join(EXAMPLES, "..");
  const folders = names.map((n) =>
    join(ROOT, n.startsWith("provider-") && n !== "provider-kit" ? `providers/${n.slice(9)}` : `packages/${n}`),
  );
  const out = tempDir();
  await Promise.all(
    folders.map(
      (cwd) =>
        new Promise<void>((done, fail) =>
          spawn("pnpm", ["pack", "--pack-destination", out], { cwd, stdio: "ignore" }).on("exit", (code) =>
            code === 0 ? done() : fail(new Error(`pnpm pack in ${cwd} exited ${code}`)),
          ),
        ),
    ),
  );
  for (const f of files) {
    const ours = tarball(join(dir, "vendor", f));
    const pnpms = tarball(join(out, f));
    expect(ours.paths.sort(), f).toEqual(pnpms.paths.sort());
    expect(ours.manifest, f).toEqual(pnpms.manifest);
  }
  const cli = tarball(join(dir, "vendor", files[0] as string));
  expect(cli.paths).toContain("package/bin/nitric-like.js");
  expect(cli.paths).toContain("package/dist/nitric-like.mjs");
  expect(cli.paths).toContain("package/templates/chat/services/chat.ts");
}, 30000);

it("with --from-registry depends on the published packages: ^version, no vendor/, no overrides", async () => {
  const dir = join(tempDir(), "published");
  const made = await runCli(["new", dir, "--from-registry"]);
  expect(made.code, made.stderr).toBe(0);
  expect(existsSync(join(dir, "vendor"))).toBe(false);
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  const version = JSON.parse(readFileSync(join(EXAMPLES, "..", "packages", "cli", "package.json"), "utf8")).version;
  expect(pkg.dependencies["@nitric-like/sdk"]).toBe(`^${version}`);
  expect(pkg.devDependencies["@nitric-like/cli"]).toBe(`^${version}`);
  expect(pkg.overrides).toBeUndefined();
  expect(readFileSync(join(dir, "pnpm-workspace.yaml"), "utf8")).not.toContain("overrides");
});
