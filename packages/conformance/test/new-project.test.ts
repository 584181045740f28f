// The README's "A new project" section, run as written: in a folder outside the repository, the
// CLI installed from this clone (`npm install -g ./packages/cli`, into a temp prefix), then
// `nitric-like new my-app` and exactly the next steps it prints (npm, then pnpm), and two clients
// chat. The project's @nitric-like packages come from the tarballs `new` packs into vendor/;
// its other dependencies from the registry (npm's cache first, pnpm's store).
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join, resolve } from "node:path";
import { afterAll, expect, it } from "vitest";
import { cleanTemp, connect, EXAMPLES, runCli, tempDir } from "../src/harness.js";

const ROOT = resolve(EXAMPLES, "..");
const readme = readFileSync(join(ROOT, "README.md"), "utf8");
const section = readme.slice(readme.indexOf("## A new project"), readme.indexOf("## How it fits together"));
const [npmScript, pnpmScript] = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) =>
  (m[1] as string).trim().split("\n"),
);
const INSTALL_CLI = "pnpm install && pnpm build && npm install -g ./packages/cli";

const started = new Set<ChildProcess>();
// Removing the new projects (each with ~120 MB of node_modules) can take longer than the default
// hook timeout on a busy disk.
afterAll(() => {
  for (const child of started)
    if (child.pid !== undefined && groupAlive(child.pid)) process.kill(-child.pid, "SIGKILL");
  cleanTemp();
}, 180_000);

/** Whether any process of the group `pgid` leads is still running. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Runs one shell line to its end; throws with its output unless it exits 0 (or `expectFail`). */
function sh(line: string, cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number) {
  return new Promise<{ code: number | null; out: string; ms: number }>((done, fail) => {
    const t0 = Date.now();
    const child = spawn(line, { cwd, env, shell: true, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr.on("data", (d) => {
      out += d;
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      fail(new Error(`"${line}" did not finish in ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      done({ code, out, ms: Date.now() - t0 });
    });
  });
}

/** The environment a user's shell has once the CLI is installed globally into `prefix`. */
function userEnv(prefix: string): NodeJS.ProcessEnv {
  // What pnpm put in the test's environment (its config, the script's name) is not in a user's shell.
  const env: NodeJS.ProcessEnv = Object.fromEntries(
    Object.entries(process.env).filter(
      ([key]) =>
        !(key.startsWith("npm_") || key.startsWith("PNPM_SCRIPT") || key === "INIT_CWD") ||
        key === "npm_config_nodedir",
    ),
  );
  Object.assign(env, {
    PATH: `${join(prefix, "bin")}:${process.env.PATH}`,
    NO_COLOR: "1",
    // Third-party packages from npm's cache when it has them; no audit, fund or update checks.
    npm_config_prefer_offline: "true",
    npm_config_audit: "false",
    npm_config_fund: "false",
    npm_config_update_notifier: "false",
  });
  return env;
}

/** The steps `new` printed under `heading`, one per line. */
function printedSteps(stderr: string, heading: string): string[] {
  const after = stderr.slice(stderr.indexOf(heading) + heading.length).split("\n");
  const steps: string[] = [];
  for (const line of after.slice(1)) {
    if (!line.startsWith("  ")) break;
    steps.push(line.trim());
  }
  return steps;
}

/**
 * Runs `runLine` (a `run` step) in the project `cwd` until ready, has two clients chat through
 * it, then stops it as Ctrl-C in a terminal does and checks that nothing of it keeps running.
 */
async function runAndChat(
  runLine: string,
  cwd: string,
  env: NodeJS.ProcessEnv,
  stoppedWith: string,
  timings: Record<string, number>,
) {
  const t0 = Date.now();
  // Spawned as the words it is (no shell, which a Ctrl-C would end first), leading its own group.
  const [command, ...args] = runLine.split(" ");
  const child = spawn(command as string, args, { cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  started.add(child);
  let out = "";
  const exited = new Promise<string>((done) => child.on("exit", (code, signal) => done(`${code} ${signal}`)));
  child.stdout.on("data", (d) => {
    out += d;
  });
  child.stderr.on("data", (d) => {
    out += d;
  });
  for (let i = 0; !/^ready: my-app/m.test(out); i++) {
    if (child.exitCode !== null || i > 600) throw new Error(`"${runLine}" did not get ready:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  timings[`${runLine} (to ready)`] = Date.now() - t0;
  const url = /^websocket socket (ws:\/\/127\.0\.0\.1:\d+)$/m.exec(out)?.[1];
  expect(url, out).toBeDefined();
  const ann = await connect(`${url}/?name=ann`);
  const bo = await connect(`${url}/?name=bo`);
  expect((await ann.next()).text).toBe("welcome, ann");
  expect((await bo.next()).text).toBe("welcome, bo");
  ann.ws.send("hi bo");
  expect((await bo.next()).text).toBe("ann: hi bo");
  bo.ws.send("hi ann");
  expect((await ann.next()).text).toBe("bo: hi ann");
  ann.ws.close();
  bo.ws.close();
  // Ctrl-C in the terminal: SIGINT to the whole group.
  process.kill(-(child.pid as number), "SIGINT");
  expect(await exited, out).toBe(stoppedWith);
  // Nothing of the project keeps running: the CLI, its services and workers are gone.
  for (let i = 0; groupAlive(child.pid as number); i++) {
    if (i > 200) throw new Error(`"${runLine}" left processes running after Ctrl-C:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  started.delete(child);
}

/**
 * Runs the README's script in a fresh folder outside the repository and chats through the
 * project it makes: the install line in the clone (its `pnpm install && pnpm build` part is what
 * the test command has done already), `nitric-like new my-app` there, then exactly the printed
 * next steps under `heading`, the last one (`run`) left running.
 */
async function runReadmeScript(
  script: string[] | undefined,
  heading: string,
  stoppedWith: string,
  timings: Record<string, number>,
) {
  expect(script?.[0]).toBe(INSTALL_CLI);
  const [, newLine, ...rest] = script as string[];
  const home = tempDir();
  expect(home.startsWith(ROOT)).toBe(false);
  const prefix = join(home, "global");
  const env = userEnv(prefix);
  const install = await sh("npm install -g ./packages/cli", ROOT, { ...env, npm_config_prefix: prefix }, 60000);
  expect(install.code, install.out).toBe(0);
  timings["npm install -g ./packages/cli"] = install.ms;

  const work = join(home, "work");
  mkdirSync(work);
  expect(newLine).toBe("nitric-like new my-app");
  const made = await sh(newLine as string, work, env, 30000);
  expect(made.code, made.out).toBe(0);
  timings[newLine as string] = made.ms;
  const steps = printedSteps(made.out, heading);
  expect(steps).toEqual(rest);

  let cwd = work;
  for (const step of steps.slice(0, -1)) {
    if (step.startsWith("cd ")) {
      cwd = resolve(cwd, step.slice(3));
      continue;
    }
    const result = await sh(step, cwd, env, 240000);
    expect(result.code, `${step}:\n${result.out}`).toBe(0);
    timings[step] = result.ms;
  }

  await runAndChat(steps.at(-1) as string, cwd, env, stoppedWith, timings);
  return { project: cwd, env };
}

// npx re-raises the SIGINT it was sent once its child has exited, whatever the child's code (so
// the CLI's own clean exit on Ctrl-C is held by cli.test.ts, and here by nothing left running).
const NPX_STOPPED = "null SIGINT";

const BAD_SERVICE = `import { kv } from "@nitric-like/sdk";

const names = kv<{ name: string }>("names").allow("set");
export const read = () => names.get("ann");
`;

/** What the template's chat gets to register a route from a timer its top level starts, 3 s in. */
const LATE_ROUTE = `
setTimeout(() => {
  socket.route("join", () => "joined");
}, 3000);
`;

it("runs the README's new-project script with npm outside the repository: installs from vendor/, chats, type-checks", async () => {
  const timings: Record<string, number> = {};
  const { project, env } = await runReadmeScript(npmScript, "next, with npm:", NPX_STOPPED, timings);
  const pkg = JSON.parse(readFileSync(join(project, "package.json"), "utf8"));
  expect(pkg.devDependencies["@nitric-like/cli"]).toMatch(/^file:vendor\/nitric-like-cli-\d+\.\d+\.\d+\.tgz$/);
  // The CLI npx ran is the one installed from vendor/, not the clone's.
  expect(readFileSync(join(project, "node_modules", "@nitric-like", "cli", "package.json"), "utf8")).not.toContain(
    "workspace:",
  );

  // The installed CLI makes the next project from itself: the same tarballs, byte for byte.
  const again = await sh("npx nitric-like new ../again", project, env, 30000);
  expect(again.code, again.out).toBe(0);
  for (const f of readdirSync(join(project, "vendor")))
    expect(
      readFileSync(join(project, "..", "again", "vendor", f)).equals(readFileSync(join(project, "vendor", f))),
      f,
    ).toBe(true);

  const check = await sh("npm run check", project, env, 60000);
  expect(check.code, check.out).toBe(0);
  timings["npm run check"] = check.ms;
  // The template's own test, on the test kit from its tarball: the project inside vitest, real clients.
  const test = await sh("npm test", project, env, 120000);
  expect(test.code, test.out).toBe(0);
  expect(test.out).toMatch(/Tests\s+5 passed/);
  timings["npm test"] = test.ms;
  writeFileSync(join(project, "services", "bad.ts"), BAD_SERVICE);
  const bad = await sh("npm run check", project, env, 60000);
  expect(bad.code).not.toBe(0);
  expect(bad.out).toContain("services/bad.ts(4,33): error TS2339: Property 'get' does not exist on type 'KvRef<");
  rmSync(join(project, "services", "bad.ts"));

  // The AWS provider works from its tarball too: build bundles the service with its runtime.
  const build = await sh("npx nitric-like build", project, env, 60000);
  expect(build.code, build.out).toBe(0);
  expect(
    JSON.parse(readFileSync(join(project, ".nitric-like", "aws", "template.json"), "utf8")).Resources,
  ).toBeDefined();
  timings["npx nitric-like build"] = build.ms;
  console.log(`new project with npm on Node ${process.version}, ms: ${JSON.stringify(timings)}`);
}, 300000);

it("runs the README's new-project script with pnpm outside the repository: installs from vendor/, chats, type-checks", async () => {
  const timings: Record<string, number> = {};
  const { project, env } = await runReadmeScript(pnpmScript, "or with pnpm:", "0 null", timings);
  const check = await sh("pnpm check", project, env, 60000);
  expect(check.code, check.out).toBe(0);
  writeFileSync(join(project, "services", "bad.ts"), BAD_SERVICE);
  const bad = await sh("pnpm check", project, env, 60000);
  expect(bad.code).not.toBe(0);
  expect(bad.out).toContain("error TS2339: Property 'get' does not exist");
  rmSync(join(project, "services", "bad.ts"));
  // From the project's own tarballs too, a route a timer registers once the module has loaded
  // stops run before ready with the fix, rather than a deployment lacking it.
  const chat = join(project, "services", "chat.ts");
  writeFileSync(chat, readFileSync(chat, "utf8") + LATE_ROUTE);
  const late = await sh("pnpm nitric-like run --random-ports --plain --no-dashboard --no-watch", project, env, 60000);
  expect(late.code, late.out).toBe(1);
  expect(late.out).not.toMatch(/^ready/m);
  expect(late.out).toMatch(
    /websocket\("socket"\)\.route\("join"\): service "chat" registered it after its module finished loading [^\n]*register handlers at module load: at top level or during import, not in a timer\/callback/,
  );
  console.log(`new project with pnpm on Node ${process.version}, ms: ${JSON.stringify(timings)}`);
}, 300000);

/**
 * A registry for the @nitric-like scope on 127.0.0.1: it serves the tarballs in `dir` as
 * published packages (their packuments and the tarballs), as npm's registry will once they are
 * published. Everything else comes from the real registry.
 */
async function scopeRegistry(dir: string) {
  const packages = new Map<string, { manifest: Record<string, unknown>; file: string; data: Buffer }>();
  for (const file of readdirSync(dir)) {
    const data = readFileSync(join(dir, file));
    const manifest = JSON.parse(
      spawnSync("tar", ["xzf", join(dir, file), "-O", "package/package.json"], { encoding: "utf8" }).stdout,
    );
    packages.set(manifest.name, { manifest, file, data });
  }
  const server = createServer((req, res) => {
    const path = decodeURIComponent((req.url ?? "/").split("?")[0] as string).slice(1);
    const tarball = [...packages.values()].find((p) => path === `-/${p.file}`);
    if (tarball) {
      res.writeHead(200, { "content-type": "application/octet-stream" }).end(tarball.data);
      return;
    }
    const pkg = packages.get(path);
    if (!pkg) {
      res.writeHead(404, { "content-type": "application/json" }).end('{"error":"not found"}');
      return;
    }
    const version = pkg.manifest.version as string;
    const dist = {
      tarball: `http://127.0.0.1:${(server.address() as AddressInfo).port}/-/${pkg.file}`,
      integrity: `sha512-${createHash("sha512").update(pkg.data).digest("base64")}`,
      shasum: createHash("sha1").update(pkg.data).digest("hex"),
    };
    res.writeHead(200, { "content-type": "application/json" }).end(
      JSON.stringify({
        name: path,
        "dist-tags": { latest: version },
        versions: { [version]: { ...pkg.manifest, dist } },
      }),
    );
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, close: () => server.close() };
}

it("with --from-registry, installs the published packages once a registry has them, and chats", async () => {
  const timings: Record<string, number> = {};
  const home = tempDir();
  // What publishing would put on the registry: the tarballs new packs (the same as pnpm pack's).
  const packed = await runCli(["new", join(home, "packed")]);
  expect(packed.code, packed.stderr).toBe(0);
  const registry = await scopeRegistry(join(home, "packed", "vendor"));
  try {
    // As if the scope were published: the user's npm config sends @nitric-like to that registry.
    const userconfig = join(home, "npmrc");
    writeFileSync(userconfig, `@nitric-like:registry=${registry.url}\n`);
    const env = { ...userEnv(join(home, "global")), npm_config_userconfig: userconfig };
    const made = await runCli(["new", "my-app", "--from-registry"], { cwd: home });
    expect(made.code, made.stderr).toBe(0);
    const steps = printedSteps(made.stderr, "next, with npm:");
    expect(steps).toEqual(["cd my-app", "npm install", "npx nitric-like run"]);
    const project = join(home, "my-app");
    const install = await sh("npm install", project, env, 240000);
    expect(install.code, install.out).toBe(0);
    timings["npm install"] = install.ms;
    const lock = readFileSync(join(project, "package-lock.json"), "utf8");
    expect(lock).toContain(`${registry.url}-/nitric-like-cli-`);
    expect(lock).not.toContain("file:vendor");
    await runAndChat("npx nitric-like run", project, env, NPX_STOPPED, timings);
  } finally {
    registry.close();
  }
  console.log(`new project from a registry on Node ${process.version}, ms: ${JSON.stringify(timings)}`);
}, 300000);
