// `run`'s extras, through the real CLI: .env files (loaded, precedence, never printed, reloaded on
// change), --inspect (a real inspector per service on 127.0.0.1), a service edited to declare what
// nobody serves (refused once, the running version stays), and what `run --help` promises.
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import {
  type App,
  CLI,
  cleanTemp,
  connect,
  dashboardFetch,
  linkNodeModules,
  runCli,
  sleep,
  startApp,
  stopAll,
  tempDir,
  writeProject,
} from "../src/harness.js";

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

/** A service that answers every message with the variables it was started with. */
const ENV_SERVICE = [
  'import { websocket } from "@nitric-like/sdk";',
  'const socket = websocket("socket");',
  "socket.on('connect', async () => {});",
  "socket.on('disconnect', async () => {});",
  "socket.on('message', async (ctx) => {",
  "  const { FROM_DOTENV, FROM_LOCAL, OVERRIDDEN, FROM_SHELL } = process.env;",
  "  await socket.send(ctx.connectionId, JSON.stringify({ FROM_DOTENV, FROM_LOCAL, OVERRIDDEN, FROM_SHELL }));",
  "});",
].join("\n");

async function ask(app: App): Promise<Record<string, unknown>> {
  const client = await connect(app.url("socket"));
  try {
    return await client.call({});
  } finally {
    client.close();
  }
}

function getJson(url: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    request(url, (res) => {
      let body = "";
      res.on("data", (d) => {
        body += d;
      });
      res.on("end", () => {
        try {
          resolve(JSON.parse(body));
        } catch (error) {
          reject(error);
        }
      });
    })
      .on("error", reject)
      .end();
  });
}

describe("run on a terminal", () => {
  const noScript = spawnSync("script", ["--version"], { encoding: "utf8" }).error ? "no `script` command" : undefined;

  it.skipIf(noScript !== undefined)(
    "shows what a service prints of a client's message without the terminal obeying it: control sequences as escapes, colours kept",
    async () => {
      const dir = writeProject({
        "nitric-like.yaml": "name: echoes\nservices:\n  - match: services/*.ts\n",
        "services/app.ts": `import { websocket } from "@nitric-like/sdk";
const socket = websocket("socket");
socket.on("connect", () => {});
socket.on("disconnect", () => {});
socket.on("message", (ctx) => {
  console.log("got " + ctx.text());
  console.error("err " + ctx.text());
  return "ok";
});
`,
      });
      const quote = (a: string) => `'${a.replace(/'/g, "'\\''")}'`;
      const command = [process.execPath, CLI, "run", dir, "--random-ports", "--no-dashboard", "--no-watch"]
        .map(quote)
        .join(" ");
      // util-linux script runs it on a pseudo-terminal, as a user's shell would.
      const child = spawn("script", ["-qec", command, "/dev/null"], { detached: true });
      let shown = "";
      child.stdout.on("data", (d: Buffer) => {
        shown += d.toString();
      });
      const ended = new Promise((resolve) => child.once("exit", resolve));
      try {
        await expect.poll(() => /websocket socket (ws:\/\/\S+)/.exec(shown)?.[1], { timeout: 30000 }).toBeTruthy();
        const url = /websocket socket (ws:\/\/\S+)/.exec(shown)?.[1] as string;
        const client = await connect(url);
        // A title, a screen clear and a clipboard write (OSC 52), then a colour.
        client.ws.send("\u001b]0;pwned\u0007|\u001b[2J|\u001b]52;c;cHduZWQ=\u0007|\u001b[32mgreen\u001b[0m");
        expect((await client.next()).text).toBe("ok");
        await expect.poll(() => shown, { timeout: 10000 }).toContain("err ");
        const escaped = "\\u001b]0;pwned\\u0007|\\u001b[2J|\\u001b]52;c;cHduZWQ=\\u0007|\u001b[32mgreen\u001b[0m";
        expect(shown).toContain(`got ${escaped}`);
        expect(shown).toContain(`err ${escaped}`);
        expect(shown).not.toContain("\u001b]0;pwned");
        expect(shown).not.toContain("\u001b[2J");
        client.close();
        // Ctrl-C, as typed at the terminal.
        child.stdin.write("\u0003");
        await Promise.race([ended, sleep(15000)]);
      } finally {
        try {
          process.kill(-(child.pid as number), "SIGKILL");
        } catch {}
      }
    },
    60000,
  );
});

describe("run and .env files", () => {
  it("loads .env and .env.<env> into services (shell over .env.<env> over .env), printing names but never values", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: envy\nservices:\n  - match: services/*.ts\n",
      "services/app.ts": ENV_SERVICE,
      ".env": "FROM_DOTENV=dotenv-value-1f3a\nOVERRIDDEN=dotenv-value-9c2e\nFROM_SHELL=dotenv-value-77b0\n",
      ".env.local": "# local only\nFROM_LOCAL='local value 5d1c'\nOVERRIDDEN=local-value-e4a8\n",
      ".env.staging": "FROM_LOCAL=staging-value-0000\n",
    });
    const app = await startApp(dir, [], { FROM_SHELL: "shell-value-2b6d" });
    expect(await ask(app)).toEqual({
      FROM_DOTENV: "dotenv-value-1f3a",
      FROM_LOCAL: "local value 5d1c",
      OVERRIDDEN: "local-value-e4a8",
      FROM_SHELL: "shell-value-2b6d",
    });
    expect(app.stderr).toContain(
      "env: .env, .env.local: 4 variables (FROM_DOTENV, FROM_SHELL, OVERRIDDEN, FROM_LOCAL)",
    );
    // The dashboard shows resources and services, never a variable's value.
    const dashboard = JSON.stringify(await (await dashboardFetch(app, "/api/state")).json());
    expect(dashboard).toContain('"envy"');
    expect(dashboard).toContain(
      '"env":{"files":[".env",".env.local"],"names":["FROM_DOTENV","FROM_SHELL","OVERRIDDEN","FROM_LOCAL"]}',
    );
    for (const text of [app.stdout, app.stderr, dashboard])
      expect(text).not.toMatch(/dotenv-value|local value|local-value|staging-value|shell-value/);

    // A change to .env restarts the services with the new values.
    writeFileSync(join(dir, ".env"), "FROM_DOTENV=dotenv-value-second\n");
    await app.waitFor(/\.env changed: restarting every service/);
    let answer: Record<string, unknown> = {};
    for (let i = 0; i < 100 && answer.FROM_DOTENV !== "dotenv-value-second"; i++) {
      answer = await ask(app).catch(() => ({}));
      if (answer.FROM_DOTENV !== "dotenv-value-second") await sleep(50);
    }
    expect(answer).toEqual({
      FROM_DOTENV: "dotenv-value-second",
      FROM_LOCAL: "local value 5d1c",
      OVERRIDDEN: "local-value-e4a8",
      FROM_SHELL: "shell-value-2b6d",
    });
    expect(app.stdout + app.stderr).not.toMatch(/dotenv-value|local value|local-value/);

    // A saved .env it cannot read is said, and the services keep the values they have.
    writeFileSync(join(dir, ".env"), "FROM_DOTENV=dotenv-value-third\nREGION\nB=2\n");
    await app.waitFor(/line 2 \("REGION"\) is not a NAME=value line/);
    expect(app.stderr).toContain(
      "make it NAME=value, or a # comment; the services keep the values they have until the file is fixed",
    );
    await sleep(300);
    expect((await ask(app)).FROM_DOTENV).toBe("dotenv-value-second");
  }, 60000);
});

/** A @nitric/sdk service that echoes; `extra` is more code at its top level. */
const nitricService = (extra: string) =>
  [
    'import { api, websocket } from "@nitric/sdk";',
    'const socket = websocket("socket");',
    "socket.on('connect', async (ctx) => ctx);",
    "socket.on('disconnect', async (ctx) => ctx);",
    "socket.on('message', async (ctx) => {",
    "  await socket.send(ctx.req.connectionId, JSON.stringify({ version: VERSION }));",
    "  return ctx;",
    "});",
    "void api;",
    extra,
  ].join("\n");

describe("run stopping a @nitric/sdk service", () => {
  // @nitric/sdk prints this on stdout as each handler stream ends, which is how run stops it.
  const ENDED = "Membrane has terminated the trigger stream";

  it.each([
    ["a thread", []],
    ["a process", ["--processes"]],
  ])(
    "says nothing of the handler streams it ends at Ctrl-C or on a save (%s), but shows the line when the service prints it as it runs",
    async (_how, args) => {
      const dir = writeProject({
        "nitric.yaml": "name: quiet\nservices:\n  - match: services/*.ts\n",
        // The same words printed by the service as it starts: not run stopping it, so shown.
        "services/app.ts": nitricService(`const VERSION = 1;\nconsole.log(${JSON.stringify(ENDED)});`),
      });
      const app = await startApp(dir, args);
      expect(await ask(app)).toEqual({ version: 1 });
      await app.waitFor(new RegExp(`^app \\| ${ENDED}$`, "m"));
      writeFileSync(join(dir, "services", "app.ts"), nitricService("const VERSION = 2;"));
      await app.waitFor(/services\/app\.ts changed: restarting service "app"/);
      let answer: Record<string, unknown> = {};
      for (let i = 0; i < 100 && answer.version !== 2; i++) {
        answer = await ask(app).catch(() => ({}));
        if (answer.version !== 2) await sleep(50);
      }
      expect(answer).toEqual({ version: 2 });
      const { code } = await app.stop();
      expect(code).toBe(0);
      // run ends its three handler streams at the save and again at Ctrl-C: only the line it printed itself.
      const lines = (app.stdout + app.stderr).split("\n").filter((l) => l.includes(ENDED));
      expect(lines).toEqual([`app | ${ENDED}`]);
    },
    60000,
  );
});

describe("new in a folder whose name is no stack name", () => {
  it("writes a project name the project file accepts, which spec then reads", async () => {
    const dir = join(tempDir(), "2048");
    const made = await runCli(["new", dir, "--from-registry"]);
    expect(made.code).toBe(0);
    expect(made.stderr).toContain('created app-2048 in "2048" from the chat template:');
    expect(readFileSync(join(dir, "nitric-like.yaml"), "utf8")).toMatch(/^name: app-2048$/m);
    linkNodeModules(dir);
    const spec = await runCli(["spec", dir]);
    expect(spec.stderr).not.toContain("stack name");
    expect(spec.code).toBe(0);
    expect(JSON.parse(spec.stdout).name).toBe("app-2048");
  }, 60000);
});

describe("run --env-from", () => {
  it("loads the file over the .env files, the shell still over it, printing its name and never a value; a missing one stops run", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: envy\nservices:\n  - match: services/*.ts\n",
      "services/app.ts": ENV_SERVICE,
      ".env": "FROM_DOTENV=dotenv-value-1f3a\nOVERRIDDEN=dotenv-value-9c2e\n",
      "extra.env": "OVERRIDDEN=extra-value-5e1d\nFROM_SHELL=extra-value-0b3c\n",
    });
    const extra = join(dir, "extra.env");
    const app = await startApp(dir, ["--env-from", extra], { FROM_SHELL: "shell-value-2b6d" });
    expect(await ask(app)).toEqual({
      FROM_DOTENV: "dotenv-value-1f3a",
      OVERRIDDEN: "extra-value-5e1d",
      FROM_SHELL: "shell-value-2b6d",
    });
    expect(app.stderr).toContain(`env: .env, ${extra}: 3 variables (FROM_DOTENV, OVERRIDDEN, FROM_SHELL)`);
    expect(app.stdout + app.stderr).not.toMatch(/dotenv-value|extra-value|shell-value/);
    const missing = await runCli(["run", dir, "--random-ports", "--env-from", join(dir, "nope.env")]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`error: run: --env-from ${join(dir, "nope.env")}: no such file`);
  }, 60000);
});

describe("run with a bad .env or --env", () => {
  it("refuses a .env line Node would drop, a bad NODE_OPTIONS and an unknown --env before bundling anything", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: envy\nservices:\n  - match: services/*.ts\n",
      "services/app.ts": ENV_SERVICE,
      ".env": "FROM_DOTENV=1\nDEBUG\n",
    });
    const built = () => spawnSync("find", [join(dir, ".nitric-like")], { encoding: "utf8" }).stdout;
    const line = await runCli(["run", dir, "--random-ports", "--plain"]);
    expect(line.code).toBe(1);
    expect(line.stderr).toContain('error: run: .env: line 2 ("DEBUG") is not a NAME=value line');
    expect(line.stderr).not.toContain("bundling");
    expect(built()).toBe("");
    writeFileSync(join(dir, ".env"), "NODE_OPTIONS=--no-such-flag\n");
    const options = await runCli(["run", dir, "--random-ports", "--plain"]);
    expect(options.code).toBe(1);
    expect(options.stderr).toContain("error: run: Node refuses the NODE_OPTIONS that .env sets");
    expect(options.stderr).not.toContain("bundling");
    expect(built()).toBe("");
    unlinkSync(join(dir, ".env"));
    const environment = await runCli(["run", dir, "--random-ports", "--plain", "--env", "prod"]);
    expect(environment.code).toBe(1);
    expect(environment.stderr).toContain('no environment "prod"');
    expect(environment.stderr).not.toContain("bundling");
    expect(built()).toBe("");
  }, 60000);
});

describe("run and a service changed to declare what nobody serves", () => {
  it("refuses the change once, naming the resource and its file, keeps the running version, and restarts on the fix", async () => {
    const dir = writeProject({
      "nitric.yaml": "name: grows\nservices:\n  - match: services/*.ts\n",
      "services/app.ts": nitricService("const VERSION = 1;"),
    });
    const app = await startApp(dir);
    expect(await ask(app)).toEqual({ version: 1 });

    writeFileSync(
      join(dir, "services", "app.ts"),
      nitricService('const VERSION = 2;\napi("main").get("/hello", async (ctx) => ctx);'),
    );
    await app.waitFor(/service "app" is not restarted/);
    expect(app.stderr).toContain(
      'error: service "app" (services/app.ts): declares api "main", a kind of resource nitric-like does not serve; remove api("main")',
    );
    expect(app.stderr).toContain(
      'service "app" is not restarted: it declares what nitric-like does not serve (listed above), it serves websockets, kv stores and secrets only',
    );
    // No crash loop, no UNIMPLEMENTED: the running version goes on answering.
    await sleep(1500);
    expect(await ask(app)).toEqual({ version: 1 });
    expect(app.stderr).not.toMatch(/UNIMPLEMENTED|restarting|exited with code/);
    expect(app.stderr.match(/declares api "main"/g)).toHaveLength(1);

    writeFileSync(join(dir, "services", "app.ts"), nitricService("const VERSION = 3;"));
    await app.waitFor(/services\/app\.ts changed: restarting service "app"/);
    let answer: Record<string, unknown> = {};
    for (let i = 0; i < 100 && answer.version !== 3; i++) {
      answer = await ask(app).catch(() => ({}));
      if (answer.version !== 3) await sleep(50);
    }
    expect(answer).toEqual({ version: 3 });
  }, 60000);

  it("does not start a new service file that declares it, says why once, and starts it on the fix", async () => {
    const dir = writeProject({
      "nitric.yaml": "name: grows\nservices:\n  - match: services/*.ts\n",
      "services/app.ts": nitricService("const VERSION = 1;"),
    });
    const app = await startApp(dir);
    const added = join(dir, "services", "added.ts");
    const declares = (extra: string) => nitricService(`const VERSION = 7;\n${extra}`).replaceAll('"socket"', '"added"');
    writeFileSync(added, declares('api("main").get("/hello", async (ctx) => ctx);'));
    await app.waitFor(/service "added" is not started/);
    expect(app.stderr).toContain(
      'error: service "added" (services/added.ts): declares api "main", a kind of resource nitric-like does not serve; remove api("main")',
    );
    expect(app.stderr).toContain(
      'service "added" is not started: it declares what nitric-like does not serve (listed above), it serves websockets, kv stores and secrets only: websocket(), kv() and secret() (and collection() in @nitric-like/sdk); save a fix and it starts',
    );
    await sleep(1000);
    expect(app.stdout).not.toMatch(/^websocket added /m);
    expect(app.stderr).not.toMatch(/UNIMPLEMENTED|exited with code/);

    writeFileSync(added, declares(""));
    await app.waitFor(/^websocket added ws:/m);
    const client = await connect(app.url("added"));
    try {
      expect(await client.call({})).toEqual({ version: 7 });
    } finally {
      client.close();
    }
    expect(app.stderr.match(/declares api "main"/g)).toHaveLength(1);
  }, 60000);
});

describe("run and a project file or service file changed while it runs", () => {
  it("checks a changed project file at once and says a change applies at the next run", async () => {
    const PROJECT = "name: edits\nservices:\n  - match: services/*.ts\n";
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/app.ts": ENV_SERVICE });
    const app = await startApp(dir);
    const file = join(dir, "nitric-like.yaml");

    writeFileSync(file, `${PROJECT}limits:\n  messagesPerSecond: 5\n`);
    await app.waitFor(/nitric-like\.yaml changed: run reads it only as it starts/);
    expect(app.stderr).toContain(
      "warning: nitric-like.yaml changed: run reads it only as it starts, so this run goes on as the file was; stop it (Ctrl-C) and run again to apply the change",
    );
    writeFileSync(file, `${PROJECT}limits:\n  messagesPerSecond: fast\n`);
    // The problem's own line may come in a later chunk of output than the line before it.
    await app.waitFor(/error: nitric-like\.yaml: limits\.messagesPerSecond .*fast/);
    expect(app.stderr).toContain(
      "error: nitric-like.yaml changed and now has a problem (this run goes on as the file was):",
    );
    expect(app.stderr).toMatch(/error: nitric-like\.yaml: limits\.messagesPerSecond .*fast/);
    writeFileSync(file, PROJECT);
    await app.waitFor(/nitric-like\.yaml is as this run read it again/);
    await sleep(300);
    expect(app.stderr.match(/run reads it only as it starts/g)).toHaveLength(1);
    expect(await ask(app)).toEqual({});
  }, 60000);

  for (const mode of ["threads", "processes"] as const)
    it(`starts a new service file, stops one whose file is gone, and moves a renamed service's sockets to its new name (${mode})`, async () => {
      const dir = writeProject({
        "nitric-like.yaml": "name: edits\nservices:\n  - match: services/*.ts\n",
        "services/app.ts": ENV_SERVICE,
      });
      const app = await startApp(dir, mode === "processes" ? ["--processes"] : []);
      const services = join(dir, "services");
      const state = async () => {
        const st = (await (await dashboardFetch(app, "/api/state")).json()) as {
          spec: { resources: { kind: string; name: string }[] };
          registrations: { service: string; socket: string; event: string }[];
        };
        return {
          sockets: st.spec.resources
            .filter((r) => r.kind === "websocket")
            .map((r) => r.name)
            .sort(),
          handlers: [...new Set(st.registrations.map((r) => `${r.socket}:${r.service}`))].sort(),
        };
      };

      // A new file: bundled, collected and started, its socket printed and served, the dashboard told.
      writeFileSync(join(services, "extra.ts"), ENV_SERVICE.replace('"socket"', '"other"'));
      await app.waitFor(/^websocket other ws:/m);
      expect(app.stderr).toContain('services/extra.ts is a new service ("extra"): starting it');
      const other = await connect(app.url("other"));
      expect(await other.call({})).toEqual({});
      other.close();
      expect(await state()).toEqual({ sockets: ["other", "socket"], handlers: ["other:extra", "socket:app"] });

      // Renamed: the old service stops, the new one takes its socket; a client that stays connected
      // through it is answered by the new one.
      const stays = await connect(app.url("socket"));
      renameSync(join(services, "app.ts"), join(services, "renamed.ts"));
      await app.waitFor(/services\/renamed\.ts is a new service/);
      expect(app.stderr).toContain('warning: services/app.ts is gone: stopping service "app"');
      expect(app.stderr).not.toMatch(/does not compile|Could not resolve|is handled by/);
      expect(await stays.call({})).toEqual({});
      stays.close();
      expect((await state()).handlers).toEqual(["other:extra", "socket:renamed"]);

      // A new service that would handle an event another one handles waits, said once; fixed, it starts.
      const dup = join(services, "dup.ts");
      writeFileSync(dup, ENV_SERVICE);
      await app.waitFor(/service "dup" waits for a file change/);
      expect(app.stderr).toContain(
        'error: websocket socket: the connect event is handled by "renamed" and "dup"; a socket event has exactly one handler, so keep socket.on("connect", ...) in one service',
      );
      writeFileSync(dup, ENV_SERVICE.replace('"socket"', '"third"'));
      await app.waitFor(/^websocket third ws:/m);
      expect(app.stderr).toContain('services/dup.ts changed: collecting service "dup" again');

      // Deleted: stopped, its handlers and its resources gone from the dashboard; the others go on.
      unlinkSync(join(services, "extra.ts"));
      await app.waitFor(/services\/extra\.ts is gone: stopping service "extra"/);
      for (let i = 0; i < 200 && (await state()).sockets.includes("other"); i++) await sleep(100);
      expect(await state()).toEqual({ sockets: ["socket", "third"], handlers: ["socket:renamed", "third:dup"] });
      expect(await ask(app)).toEqual({});
      expect(app.stderr.match(/is a new service/g)).toHaveLength(3);

      // A running service saved to declare one more socket: restarted, and the dashboard's spec follows.
      writeFileSync(
        join(services, "renamed.ts"),
        `${ENV_SERVICE}\nconst more = websocket("more");\nmore.on("connect", () => {});\nmore.on("disconnect", () => {});\nmore.on("message", () => "more");\n`,
      );
      await app.waitFor(/^websocket more ws:/m);
      // Its collect pass (a process of its own under --processes) may take seconds on a loaded machine.
      for (let i = 0; i < 200 && !(await state()).sockets.includes("more"); i++) await sleep(100);
      expect((await state()).sockets).toEqual(["more", "socket", "third"]);
    }, 60000);
});

describe("run and a new @nitric/sdk service file", () => {
  // @nitric/sdk opens its handler streams without waiting for its socket's declaration, so the
  // new socket's gateway starts listening after the handlers registered: its line must come then.
  it.each([
    ["a thread", []],
    ["a process", ["--processes"]],
  ])(
    "prints the socket a new @nitric/sdk service file declares, which connect then finds (%s)",
    async (_how, args) => {
      const dir = writeProject({
        "nitric-like.yaml": "name: added\nservices:\n  - match: services/*.ts\n",
        "services/app.ts": ENV_SERVICE,
      });
      const app = await startApp(dir, args);
      writeFileSync(
        join(dir, "services", "nitric.ts"),
        nitricService("const VERSION = 1;").replace('websocket("socket")', 'websocket("other")'),
      );
      await app.waitFor(/services\/nitric\.ts is a new service \("nitric"\): starting it/);
      await app.waitFor(/^websocket other ws:/m);
      const other = await connect(app.url("other"));
      expect(await other.call({})).toEqual({ version: 1 });
      other.close();
      const sockets = JSON.parse(readFileSync(join(dir, ".nitric-like", "sockets.json"), "utf8")) as {
        sockets: { name: string }[];
      };
      expect(sockets.sockets.map((s) => s.name).sort()).toEqual(["other", "socket"]);
    },
    60000,
  );
});

describe("run and a service glob with ** while folders come", () => {
  it("starts a service file in a folder made while it runs, and one saved there later; a second service of one name is said once", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: deep\nservices:\n  - match: services/**/*.ts\n",
      "services/app.ts": ENV_SERVICE,
    });
    const app = await startApp(dir);
    const tools = join(dir, "services", "admin", "tools");
    // The folders and the file at once: no watcher saw the file itself, only the new folder.
    mkdirSync(tools, { recursive: true });
    writeFileSync(join(tools, "ops.ts"), ENV_SERVICE.replace('"socket"', '"ops"'));
    await app.waitFor(/^websocket ops ws:/m);
    expect(app.stderr).toContain('services/admin/tools/ops.ts is a new service ("ops"): starting it');
    // The new folders are watched from now on.
    writeFileSync(join(tools, "more.ts"), ENV_SERVICE.replace('"socket"', '"more"'));
    await app.waitFor(/^websocket more ws:/m);
    const client = await connect(app.url("more"));
    expect(await client.call({})).toEqual({});
    client.close();
    // A second file named as a running service: said once, and nothing else changes.
    writeFileSync(join(dir, "services", "admin", "app.ts"), ENV_SERVICE.replace('"socket"', '"twin"'));
    await app.waitFor(/two services are named "app"/);
    expect(app.stderr).toContain(
      'error: nitric-like.yaml: two services are named "app" (services/admin/app.ts and services/app.ts); rename one file (run goes on with the services it has)',
    );
    writeFileSync(join(dir, "services", "admin", "app.ts"), ENV_SERVICE.replace('"socket"', '"twin2"'));
    await sleep(800);
    expect(app.stderr.match(/two services are named "app"/g)).toHaveLength(1);
    expect(await ask(app)).toEqual({});
  }, 60000);
});

describe("run and a service thread that prints faster than run can", () => {
  it("holds at most 8 MB of its output back: the rest is dropped and said so, and the service answers on", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: chatty\nservices:\n  - match: services/*.ts\n",
      "services/chatty.ts": [
        'import { websocket } from "@nitric-like/sdk";',
        'const socket = websocket("socket");',
        "socket.on('connect', async () => {});",
        "socket.on('disconnect', async () => {});",
        "socket.on('message', async (ctx) => {",
        "  const line = 'x'.repeat(200);",
        "  if (ctx.text() === 'flood') for (let i = 0; i < 200000; i++) console.log(i, line);",
        "  ctx.reply(ctx.text());",
        "});",
      ].join("\n"),
    });
    const app = await startApp(dir);
    const client = await connect(app.url("socket"));
    expect(await client.call({})).toEqual({});
    client.ws.send("flood");
    expect((await client.next(20000)).text).toBe("flood");
    // 40 MB written in a loop: what did not fit the 8 MB bound is counted, not held.
    await app.waitFor(/bytes of this service's output dropped: it wrote faster than run could print/, 30000);
    const dropped = Number(/\[(\d+) bytes of this service's output dropped/.exec(app.stdout + app.stderr)?.[1]);
    expect(dropped).toBeGreaterThan(20_000_000);
    expect(dropped).toBeLessThan(40_000_000);
    expect(await client.call({ again: true })).toEqual({ again: true });
    client.close();
  }, 60000);
});

describe("run --inspect", () => {
  it("opens each service's inspector on a port of 127.0.0.1 of its own, printed on stdout, that answers /json/list", async () => {
    const dir = writeProject({
      "nitric-like.yaml":
        "name: probe\nservices:\n  - match: services/*.ts\n  - match: started/*.mjs\n    start: node $SERVICE_PATH\n",
      "services/app.ts": ENV_SERVICE,
      "services/other.ts": ENV_SERVICE.replace('"socket"', '"other"'),
      // A service with a start command gets the inspector through NODE_OPTIONS.
      "started/plain.mjs": [
        'import { websocket } from "@nitric-like/sdk";',
        'const s = websocket("plain");',
        "s.on('connect', () => {});",
        "s.on('disconnect', () => {});",
        "s.on('message', (ctx) => 'plain ' + ctx.text());",
      ].join("\n"),
    });
    const app = await startApp(dir, ["--inspect"]);
    for (const name of ["app", "other", "plain"]) await app.waitFor(new RegExp(`^service ${name} inspector `, "m"));
    const lines = [...app.stdout.matchAll(/^service (\S+) inspector (ws:\/\/127\.0\.0\.1:(\d+)\/[\w-]+)$/gm)];
    expect(lines.map((m) => m[1]).sort()).toEqual(["app", "other", "plain"]);
    const ports = lines.map((m) => m[3]);
    expect(new Set(ports).size).toBe(3);
    for (const [, , url, port] of lines) {
      const targets = (await getJson(`http://127.0.0.1:${port}/json/list`)) as { webSocketDebuggerUrl: string }[];
      expect(targets.map((t) => t.webSocketDebuggerUrl)).toEqual([url]);
    }
    // Still a working app.
    expect(await ask(app)).toMatchObject({});
  }, 60000);

  it("prints no inspector without --inspect", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: quiet\nservices:\n  - match: services/*.ts\n",
      "services/app.ts": ENV_SERVICE,
    });
    const app = await startApp(dir);
    expect(await ask(app)).toMatchObject({});
    expect(app.stdout + app.stderr).not.toMatch(/inspector|Debugger listening/);
  }, 60000);

  it("is in run --help, which also says services run as threads and what stops run", async () => {
    const { code, stdout } = await runCli(["run", "--help"]);
    expect(code).toBe(0);
    expect(stdout).toContain("--inspect");
    expect(stdout).toContain("service <name> inspector ws://127.0.0.1:<port>/<id>");
    expect(stdout).toContain("whether it uses @nitric-like/sdk or @nitric/sdk");
    expect(stdout).not.toMatch(/@nitric\/sdk\s+or a start command always get processes/);
    expect(stdout).toMatch(/declares a resource\s+nitric-like does not serve/);
    expect(stdout).toMatch(/\.env and \.env\.<env>/);
    expect(stdout).toMatch(/--single-thread\s+Run every service on run's own thread/);
    expect(stdout).toMatch(/Implies --no-watch/);
  });
});
