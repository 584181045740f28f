// What a service process gets to reach its endpoint under `nitric-like run`: a Unix socket in a
// private folder of the run (SERVICE_ADDRESS), TCP only with --tcp (NITRIC_SERVICE_HOST/PORT),
// and a run killed with SIGKILL leaves a folder the next run removes.
import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { type App, cleanTemp, runCli, startApp, stopAll, writeProject } from "../src/harness.js";

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

/** A service with a start command that prints what it was given, then stays up. */
function probeProject(): string {
  return writeProject({
    "nitric-like.yaml": 'name: probe\nservices:\n  - match: services/*.cjs\n    start: node "$SERVICE_PATH"\n',
    "services/probe.cjs": [
      "const e = process.env;",
      'const line = ["probe pid=" + process.pid, "address=" + e.SERVICE_ADDRESS, "host=" + (e.NITRIC_SERVICE_HOST ?? "-"), "port=" + (e.NITRIC_SERVICE_PORT ?? "-")];',
      'console.log(line.join(" "));',
      'if (e.NITRIC_ENVIRONMENT === "run") setInterval(() => {}, 1000);',
      "",
    ].join("\n"),
  });
}

/** What the probe service printed under `run` (the collect pass's line has a TCP address). */
async function probed(app: App, pattern: RegExp): Promise<RegExpExecArray> {
  await app.waitFor(pattern);
  return pattern.exec(app.stdout) as RegExpExecArray;
}

describe("a service's endpoint under nitric-like run", () => {
  it("is a Unix socket in a private folder of the run, with no TCP address, and --tcp adds one, saying who is served there", async () => {
    const app = await startApp(probeProject());
    const [, , path] = await probed(app, /probe pid=(\d+) address=unix:(\S+) host=- port=-/);
    const dir = dirname(path ?? "");
    expect(basename(dir)).toMatch(new RegExp(`^nitric-like-run-${process.getuid?.()}-[A-Za-z0-9]{6}$`));
    const st = lstatSync(dir);
    expect(st.isDirectory()).toBe(true);
    expect(st.uid).toBe(process.getuid?.());
    expect(st.mode & 0o777).toBe(0o700);
    expect(lstatSync(path ?? "").isSocket()).toBe(true);
    expect(app.stderr).toContain(
      'service "probe" has a start command: its endpoint is the Unix socket in SERVICE_ADDRESS; if its SDK reads NITRIC_SERVICE_HOST/PORT instead, run with --tcp',
    );
    await app.stop();
    expect(existsSync(dir)).toBe(false);

    const tcp = await startApp(probeProject(), ["--tcp"]);
    await probed(tcp, /probe pid=\d+ address=unix:\S+ host=127\.0\.0\.1 port=\d+/);
    // Where the kernel says whose each connection is (Linux), only this user's are served; elsewhere a warning.
    if (existsSync("/proc/net/tcp")) {
      expect(tcp.stdout + tcp.stderr).toContain(
        `--tcp: every service's endpoint also listens on 127.0.0.1 (NITRIC_SERVICE_HOST/PORT), where only processes of your user (uid ${process.getuid?.()}) are served: the kernel's table of connections says whose each one is, and another user's is cut`,
      );
      expect(tcp.stderr).not.toContain("warning: --tcp");
    } else {
      expect(tcp.stderr).toContain(
        "warning: --tcp: every service's endpoint also listens on 127.0.0.1 (NITRIC_SERVICE_HOST/PORT) with no credential, so any user of this machine can act as a service there",
      );
    }
  });

  it("removes the socket folder of a run killed with SIGKILL when the next run starts", async () => {
    const project = probeProject();
    const killed = await startApp(project);
    const [, pid, path] = await probed(killed, /probe pid=(\d+) address=unix:(\S+) host=-/);
    const dir = dirname(path ?? "");
    // kill -9 of the CLI and of its service (a process group of its own): nothing gets to clean up.
    killed.child.kill("SIGKILL");
    process.kill(Number(pid), "SIGKILL");
    expect((await killed.exited).signal).toBe("SIGKILL");
    await killed.stop();
    // (Not checked here that the folder is still there: any run starting meanwhile, such as another
    // test file's, may already have removed it, which is the point.)

    const next = await startApp(project);
    await probed(next, /probe pid=\d+ address=unix:\S+/);
    expect(existsSync(dir)).toBe(false);
  });

  it("is an owner-only Unix socket in the collect pass too, with 127.0.0.1 only for services with a start command", async () => {
    // Each service prints what it was given and fails, so that `spec` shows its output.
    const print =
      'console.log(["address=" + process.env.SERVICE_ADDRESS, "host=" + (process.env.NITRIC_SERVICE_HOST ?? "-")].join(" ")); process.exit(3);\n';
    const dir = writeProject({
      "nitric-like.yaml":
        'name: probe\nservices:\n  - match: services/*.ts\n  - match: started/*.cjs\n    start: node "$SERVICE_PATH"\n',
      "services/bundled.ts": print,
      "started/started.cjs": print,
    });
    const { code, stderr } = await runCli(["spec", dir]);
    expect(code).toBe(1);
    const folder = `/nitric-like-run-${process.getuid?.()}-[A-Za-z0-9]{6}/collect\\.sock`;
    expect(stderr).toMatch(new RegExp(`address=unix:\\S+${folder} host=-`));
    expect(stderr).toMatch(new RegExp(`address=unix:\\S+${folder} host=127\\.0\\.0\\.1`));
  });

  it.skipIf(process.getuid?.() !== 0)(
    "serves the collect pass's 127.0.0.1 to this user's processes only: another user's Declare is cut, and said",
    async (ctx) => {
      // The start-command service starts a process as "nobody" (another user of the machine)
      // that tries to declare a store in its name on the collector's TCP port, prints how that
      // ended, and fails so that `spec` shows its output.
      const line = readFileSync("/etc/passwd", "utf8")
        .split("\n")
        .find((l) => l.startsWith("nobody:"));
      const [, , uid = "65534", gid = "65534"] = (line ?? "").split(":");
      const grpcJs = createRequire(fileURLToPath(new URL("../../rpc/package.json", import.meta.url))).resolve(
        "@grpc/grpc-js",
      );
      // The attacker loads grpc-js from this checkout: a checkout in a folder only root may enter
      // (mktemp -d's 0700) gives it nothing to run, so the test cannot be made there.
      const readable = spawnSync(process.execPath, ["-e", `require(${JSON.stringify(grpcJs)})`], {
        uid: Number(uid),
        gid: Number(gid),
        cwd: "/",
      });
      if (readable.status !== 0) ctx.skip();
      // ResourceDeclareRequest { id: { type: KeyValueStore (6), name: "stolen" }, key_value_store: {} }
      const declare = "0a0a0806120673746f6c656e6a00";
      const attack = [
        `const grpc = require(${JSON.stringify(grpcJs)});`,
        'const c = new grpc.Client("127.0.0.1:" + process.env.PORT, grpc.credentials.createInsecure());',
        `c.makeUnaryRequest("/nitric.proto.resources.v1.Resources/Declare", (b) => b, (b) => b, Buffer.from("${declare}", "hex"), new grpc.Metadata(), { deadline: Date.now() + 5000 }, (e) => { console.log(e ? "code=" + e.code : "OK"); process.exit(0); });`,
      ].join("\n");
      const probe = [
        'const { spawnSync } = require("node:child_process");',
        `const r = spawnSync(process.execPath, ["-e", ${JSON.stringify(attack)}], { uid: ${uid}, gid: ${gid}, cwd: "/", encoding: "utf8", env: { PORT: process.env.NITRIC_SERVICE_PORT } });`,
        'console.log("attacker: " + (r.stdout || "").trim() + " " + (r.stderr || "").trim().slice(0, 300));',
        "process.exit(3);",
        "",
      ].join("\n");
      const dir = writeProject({
        "nitric-like.yaml": 'name: probe\nservices:\n  - match: started/*.cjs\n    start: node "$SERVICE_PATH"\n',
        "started/started.cjs": probe,
      });
      const { code, stderr } = await runCli(["spec", dir]);
      expect(code).toBe(1);
      // grpc-js's UNAVAILABLE (14): the connection was cut before any call was read.
      expect(stderr).toMatch(/attacker: code=14\b/);
      expect(stderr).toContain(
        `warning: service "started": cut a connection to its collect pass on 127.0.0.1 from another user (uid ${uid}); only processes of your user (uid 0) may declare your services' resources`,
      );
    },
  );
});
