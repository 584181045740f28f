// Mistakes and machine states the user fixes (a port in use, a folder that cannot be written, a
// missing file) end `nitric-like run` with exit 1 and one error line naming the port or path and
// the fix: no stack trace, no "unexpected failure, please report it" (exit 70), which is for bugs.
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { CLI, cleanTemp, copyProject, EXAMPLES, FIXTURES, runCli, writeProject } from "../src/harness.js";

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});
afterAll(cleanTemp);

const isRoot = process.getuid?.() === 0;

/** The uid and gid of "nobody", from /etc/passwd. */
function nobody(): { uid: number; gid: number } {
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith("nobody:"));
  const [, , u, g] = (line ?? "nobody:x:65534:65534").split(":");
  return { uid: Number(u), gid: Number(g) };
}

/**
 * Whether "nobody" can run the CLI of this checkout: a checkout under a folder only its owner may
 * enter (`mktemp -d` makes one) cannot be, and the tests that need another user then say so and
 * skip rather than fail on a file nobody may read.
 */
function nobodyCanRunCli(): boolean {
  if (!isRoot) return false;
  const check = spawnSync(process.execPath, ["-e", `require("fs").accessSync(${JSON.stringify(CLI)}, 4)`], {
    ...nobody(),
    cwd: "/",
  });
  const ok = check.status === 0;
  if (!ok)
    console.log(`user-errors: "nobody" cannot read ${CLI} (a parent folder is private): the tests run as nobody skip`);
  return ok;
}
const asNobody = nobodyCanRunCli();

/** Runs the CLI to its end, as `user` when given (root only). */
function runAs(args: string[], user: { uid: number; gid: number }) {
  return new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, NO_COLOR: "1", HOME: "/tmp" },
      cwd: "/",
      ...user,
    });
    let stderr = "";
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.stdout.resume();
    const timer = setTimeout(() => child.kill("SIGKILL"), 60000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

/** A TCP port taken by a real server on 127.0.0.1. */
async function takenPort(): Promise<number> {
  const server = createServer();
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return (server.address() as { port: number }).port;
}

/** The result of a user error: exit 1, one error line matching `line`, nothing of a bug report. */
function expectUserError(result: { code: number | null; stderr: string }, line: RegExp): void {
  const errors = result.stderr.split("\n").filter((l) => l.startsWith("error:"));
  expect(errors, result.stderr).toHaveLength(1);
  expect(errors[0]).toMatch(line);
  expect(result.stderr).not.toContain("unexpected failure");
  expect(result.stderr).not.toMatch(/^\s+at /m);
  expect(result.code, result.stderr).toBe(1);
}

const RUN = ["--no-watch", "--plain"];

describe("nitric-like run: user errors exit 1 with one line and the fix", () => {
  it.each(["local", "aws"])(
    "names a websocket's pinned port that is in use and how to change it (%s)",
    async (provider) => {
      const port = await takenPort();
      const dir = copyProject(join(EXAMPLES, "chat"));
      writeFileSync(
        join(dir, "nitric-like.yaml"),
        `name: chat\nservices:\n  - match: services/*.ts\nwebsockets:\n  socket:\n    port: ${port}\n`,
      );
      expectUserError(
        await runCli(["run", dir, "--no-dashboard", "--provider", provider, ...RUN]),
        new RegExp(
          `^error: websocket "socket": port ${port} is already in use; pick another under websockets\\.socket\\.port in the project file, or run with --random-ports$`,
        ),
      );
    },
  );

  it("names a --dashboard-port that is in use and what to do", async () => {
    const port = await takenPort();
    const dir = copyProject(join(EXAMPLES, "chat"));
    expectUserError(
      await runCli(["run", dir, "--random-ports", "--dashboard-port", String(port), ...RUN]),
      new RegExp(
        `^error: dashboard: port ${port} is already in use; pick another with --dashboard-port, or --no-dashboard$`,
      ),
    );
  });

  it.each(["local", "aws"])("names a missing --env-from file before bundling anything (%s)", async (provider) => {
    const dir = copyProject(join(EXAMPLES, "chat"));
    const missing = join(dir, "nope.env");
    expectUserError(
      await runCli([
        "run",
        dir,
        "--random-ports",
        "--no-dashboard",
        "--provider",
        provider,
        "--env-from",
        missing,
        ...RUN,
      ]),
      new RegExp(`^error: run: --env-from ${missing}: no such file; give the path of a file of NAME=value lines$`),
    );
    // Nothing was bundled (run keeps its bundles under .nitric-like).
    expect(existsSync(join(dir, ".nitric-like"))).toBe(false);
  });

  it("names a .nitric-like that is a file, not a folder", async () => {
    const dir = copyProject(join(EXAMPLES, "chat"));
    writeFileSync(join(dir, ".nitric-like"), "");
    expectUserError(
      await runCli(["run", dir, "--random-ports", "--no-dashboard", ...RUN]),
      new RegExp(
        `^error: "${join(dir, ".nitric-like")}" is a file, not a folder; nitric-like keeps its build and kv data in "${join(dir, ".nitric-like")}": move that file away and run again$`,
      ),
    );
  });

  // Permissions do not stop root: as root, the CLI runs as nobody on a project it cannot write.
  it.skipIf(isRoot && !asNobody)(
    "names a project folder it cannot write, and the user who must be able to",
    async () => {
      const dir = copyProject(join(EXAMPLES, "chat"));
      const state = join(dir, ".nitric-like");
      const args = ["run", dir, "--random-ports", "--no-dashboard", ...RUN];
      let result: { code: number | null; stderr: string };
      let user: string;
      if (isRoot) {
        chmodSync(dir, 0o755);
        result = await runAs(args, nobody());
        user = "nobody";
      } else {
        chmodSync(dir, 0o555);
        result = await runCli(args);
        chmodSync(dir, 0o755);
        user = (await import("node:os")).userInfo().username;
      }
      expectUserError(
        result,
        new RegExp(
          `^error: "${state}/build": permission denied \\(mkdir\\); nitric-like keeps its build and kv data in "${state}": make that folder \\(or the project folder, to create it\\) writable by user "${user}", or run as the project's owner$`,
        ),
      );
    },
  );

  it.skipIf(!asNobody)("names a kv folder it cannot write", async () => {
    const dir = copyProject(join(EXAMPLES, "chat"));
    const state = join(dir, ".nitric-like");
    chmodSync(dir, 0o755);
    mkdirSync(join(state, "kv"), { recursive: true });
    const { uid, gid } = nobody();
    chownSync(state, uid, gid);
    // .nitric-like is nobody's, its kv folder root's: the build is written, the stores cannot be.
    expectUserError(
      await runAs(["run", dir, "--random-ports", "--no-dashboard", ...RUN], { uid, gid }),
      new RegExp(
        `^error: kv: cannot open the stores in "${state}/kv" \\(.+\\); make that folder writable by this user, or remove it if its data can go$`,
      ),
    );
  });

  // lab-ours declares kv stores and secrets, so run opens both folders as it starts (secret put
  // said this of the secrets folder already).
  it.each(["kv", "secrets"])("names a %s folder that is a file, not a folder, as run starts", async (folder) => {
    const dir = copyProject(join(FIXTURES, "lab-ours"));
    const state = join(dir, ".nitric-like");
    mkdirSync(state);
    writeFileSync(join(state, folder), "");
    expectUserError(
      await runCli(["run", dir, "--random-ports", "--no-dashboard", ...RUN]),
      new RegExp(
        `^error: "${state}/${folder}" is a file, not a folder; nitric-like keeps its build and kv data in "${state}": move that file away and run again$`,
      ),
    );
  });

  // lmdb trusts its file: one cut short (a full disk, an interrupted copy) or not lmdb's at all
  // ended run and secret put with SIGBUS or SIGSEGV and not a word.
  it("names a kv or secrets file that is cut short or not lmdb's, and how to start afresh, instead of crashing", async () => {
    const dir = copyProject(join(FIXTURES, "lab-ours"));
    const state = join(dir, ".nitric-like");
    // A real lmdb file: the secrets' one, made by a first put.
    const put = await runCli(["secret", "put", "vault", dir], { input: "open sesame" });
    expect(put.code, put.stderr).toBe(0);
    const secretsFile = join(state, "secrets", "data.mdb");
    const whole = readFileSync(secretsFile);
    expect(whole.length).toBeGreaterThan(8192);
    const afresh = (folder: string) =>
      `move the folder away to start afresh \\(mv "${folder}" "${folder}\\.damaged"\\), or put back a copy from a backup$`;
    const run = () => runCli(["run", dir, "--random-ports", "--no-dashboard", ...RUN]);

    // The kv stores' file, cut short: the first two pages of a real one.
    mkdirSync(join(state, "kv"));
    writeFileSync(join(state, "kv", "data.mdb"), whole.subarray(0, 8192));
    expectUserError(
      await run(),
      new RegExp(
        `^error: kv: the stores' file "${state}/kv/data\\.mdb" is damaged: it is cut short: it is 8192 bytes, and its data goes on to page \\d+ \\(at least \\d+ bytes\\); ${afresh(`${state}/kv`)}`,
      ),
    );
    // Not an lmdb file at all.
    writeFileSync(join(state, "kv", "data.mdb"), "hello world\n");
    expectUserError(
      await run(),
      new RegExp(
        `^error: kv: the stores' file "${state}/kv/data\\.mdb" is damaged: it is not an lmdb data file \\(12 bytes, without lmdb's header\\); ${afresh(`${state}/kv`)}`,
      ),
    );

    // The secrets' file cut short: secret put says so too.
    writeFileSync(join(state, "kv", "data.mdb"), "");
    writeFileSync(secretsFile, whole.subarray(0, 8192));
    const damaged = `^error: secrets: the secrets' file "${state}/secrets/data\\.mdb" is damaged: it is cut short: it is 8192 bytes, and its data goes on to page \\d+ \\(at least \\d+ bytes\\); ${afresh(`${state}/secrets`)}`;
    expectUserError(await runCli(["secret", "put", "vault", dir], { input: "x" }), new RegExp(damaged));
    expectUserError(await run(), new RegExp(damaged));
  }, 60000);

  it("names run --provider aws's DynamoDB folder when LevelDB cannot open it, and how to start afresh", async () => {
    const dir = copyProject(join(EXAMPLES, "chat"));
    const tables = join(dir, ".nitric-like", "aws-dynamodb");
    mkdirSync(tables, { recursive: true });
    // A CURRENT file that names no manifest, as one overwritten or cut short does.
    writeFileSync(join(tables, "CURRENT"), "MANIFEST-999999\n");
    expectUserError(
      await runCli(["run", dir, "--random-ports", "--no-dashboard", "--provider", "aws", ...RUN]),
      new RegExp(
        `^error: dynalite: its tables in "${tables}" cannot be opened \\(.+\\); move the folder away to start with empty tables \\(mv "${tables}" "${tables}\\.damaged"\\)$`,
      ),
    );
  }, 60000);

  it("names a project folder that does not exist", async () => {
    const dir = join(copyProject(join(EXAMPLES, "chat")), "nope");
    expectUserError(
      await runCli(["run", dir, "--random-ports", "--no-dashboard", ...RUN]),
      new RegExp(`^error: "${dir}": no such folder; give the project's folder, or create a project there with`),
    );
  });

  it("names a service glob that matches no file, and the fix", async () => {
    const dir = writeProject({ "nitric-like.yaml": "name: x\nservices:\n  - match: services/*.ts\n" });
    expectUserError(
      await runCli(["run", dir, "--random-ports", "--no-dashboard", ...RUN]),
      /^error: nitric-like\.yaml: "services\/\*\.ts" matches no file in .+; add the service's file there, or change the "match" glob to where it is$/,
    );
  });
});
