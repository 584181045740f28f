// `nitric-like new`: a project made from the template runs under `nitric-like run` as it is.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, expect, it } from "vitest";
import { cleanTemp, connect, linkNodeModules, runCli, startApp, stopAll, tempDir } from "../src/harness.js";

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

it("creates a chat project named after its folder that runs and chats", async () => {
  const dir = join(tempDir(), "My Chat");
  const made = await runCli(["new", dir]);
  expect(made.code).toBe(0);
  expect(made.stdout.trim()).toBe(dir);
  expect(made.stderr).toContain("created my-chat from the chat template:");
  expect(made.stderr).toContain("npx nitric-like run");
  expect(readFileSync(join(dir, "nitric-like.yaml"), "utf8")).toMatch(/^name: my-chat$/m);
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  expect(pkg.name).toBe("my-chat");
  expect(pkg.dependencies["@nitric-like/sdk"]).toMatch(/^\^\d+\.\d+\.\d+$/);
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

it("refuses a folder that is not empty, and an unknown template, naming the choices", async () => {
  const dir = tempDir();
  writeFileSync(join(dir, "notes.txt"), "mine");
  const full = await runCli(["new", dir]);
  expect(full.code).toBe(1);
  expect(full.stderr).toContain(`new: ${dir} already exists and is not empty; choose a new folder`);
  const unknown = await runCli(["new", join(dir, "x"), "--template", "blog"]);
  expect(unknown.code).toBe(1);
  expect(unknown.stderr).toContain('new: no template "blog"; templates: chat');
  const none = await runCli(["new"]);
  expect(none.code).toBe(1);
  expect(none.stderr).toContain('new: which folder? such as "nitric-like new my-app"');
});
