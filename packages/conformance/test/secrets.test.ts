// `nitric-like secret put` end to end: real processes, a real `run` serving the stored versions to a
// real ws client, the value piped, read from a file, or typed at a terminal (a pty from script(1)).
import { spawn } from "node:child_process";
import { readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type App, CLI, cleanTemp, connect, runCli, startApp, writeProject } from "../src/harness.js";

afterAll(cleanTemp);

const PROJECT = "name: vaulted\nservices:\n  - match: services/*.ts\n";

// Each connection is greeted with the secret's newest value, or with why there is none.
const SERVICE = `import { secret, websocket } from "@nitric-like/sdk";
const socket = websocket("door");
const motd = secret("motd").allow("access");
secret("api-key").allow("access");
socket.on("connect", async (ctx) => {
  try {
    const value = await motd.latest().access();
    ctx.send(JSON.stringify({ text: value.asString(), bytes: value.asBytes().length, version: value.version.id }));
  } catch (error) {
    ctx.send(JSON.stringify({ error: (error as Error).message }));
  }
});
socket.on("message", () => {});
socket.on("disconnect", () => {});
`;

/** What a new connection is greeted with. */
async function greeting(app: App): Promise<Record<string, unknown>> {
  const c = await connect(app.url("door"));
  const frame = await c.next();
  c.close();
  return JSON.parse(frame.text) as Record<string, unknown>;
}

// The same store serves `run` on either provider: the local one, and the aws emulator's Secrets Manager.
describe.each(["local", "aws"])("nitric-like secret put, for run --provider %s", (provider) => {
  let dir: string;
  let app: App;
  beforeAll(async () => {
    dir = writeProject({ "nitric-like.yaml": PROJECT, "services/door.ts": SERVICE });
    app = await startApp(dir, ["--provider", provider]);
  }, 60000);
  afterAll(async () => {
    expect((await app.stop()).code).toBe(0);
  });

  it("says at start which secrets have no value yet, and the service gets not_found saying how to store one", async () => {
    expect(app.stderr + app.stdout).toContain(
      'secret "motd" has no value yet: its access() fails with not_found until you store one with nitric-like secret put motd',
    );
    // Said once for each of the two secrets, neither of which has a value yet.
    expect((app.stderr + app.stdout).match(/has no value yet: its access/g)).toHaveLength(2);
    expect((await greeting(app)).error).toContain("or with `nitric-like secret put motd`");
  });

  it("stores a piped value (less echo's newline) that the running run serves at the next access, then newer versions", async () => {
    const first = await runCli(["secret", "put", "motd", dir], { input: "open sesame\n" });
    expect(first.stderr).toContain('stored secret "motd" for run (11 bytes)');
    expect(first.code).toBe(0);
    const version = first.stdout.trim();
    expect(version).toMatch(/^[0-9a-f-]{36}$/);
    expect(await greeting(app)).toEqual({ text: "open sesame", bytes: 11, version });

    // A file's bytes are kept as they are, its newline too.
    const file = join(dir, "motd.txt");
    writeFileSync(file, "line one\nline two\n");
    const second = await runCli(["secret", "put", "motd", dir, "--from-file", file]);
    expect(second.code).toBe(0);
    expect(await greeting(app)).toEqual({ text: "line one\nline two\n", bytes: 18, version: second.stdout.trim() });
    expect(second.stdout.trim()).not.toBe(version);
  });

  it("keeps the store in a folder only its user can enter", () => {
    const secrets = join(dir, ".nitric-like", "secrets");
    expect(statSync(secrets).mode & 0o777).toBe(0o700);
    expect(readdirSync(secrets).length).toBeGreaterThan(0);
  });

  it("refuses a secret no service declares, a value over 65,536 bytes or empty, and a missing action, storing nothing", async () => {
    const before = await greeting(app);
    const typo = await runCli(["secret", "put", "motdd", dir], { input: "x" });
    expect(typo.code).toBe(1);
    expect(typo.stderr).toContain(
      'secret put: no service of "vaulted" declares secret("motdd"); the secrets declared are "api-key", "motd" (did you mean "motd"?)',
    );
    const big = await runCli(["secret", "put", "motd", dir], { input: "x".repeat(70000) });
    expect(big.code).toBe(1);
    expect(big.stderr).toContain("the value is 65537 bytes, over the 65536 a secret holds");
    expect(big.stderr).toContain("nothing was stored");
    // A file is read no further than one byte over the limit, however large.
    const huge = join(dir, "huge.bin");
    writeFileSync(huge, Buffer.alloc(5_000_000, 1));
    const file = await runCli(["secret", "put", "motd", dir, "--from-file", huge]);
    expect(file.code).toBe(1);
    expect(file.stderr).toContain("the value is 65537 bytes, over the 65536 a secret holds");
    const missing = await runCli(["secret", "put", "motd", dir, "--from-file", join(dir, "nope.txt")]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`secret put: --from-file ${join(dir, "nope.txt")}: no such file; give the path`);
    const folder = await runCli(["secret", "put", "motd", dir, "--from-file", dir]);
    expect(folder.code).toBe(1);
    expect(folder.stderr).toContain(`secret put: --from-file ${dir}: it is a folder`);
    expect(folder.stderr + missing.stderr).not.toMatch(/^\s+at |bundling/m);
    const empty = await runCli(["secret", "put", "motd", dir], { input: "\n" });
    expect(empty.code).toBe(1);
    expect(empty.stderr).toContain('secret("motd"): the value is empty');
    const bad = await runCli(["secret", "put", "Not Valid", dir], { input: "x" });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('invalid resource name "Not Valid", use lower-kebab-case such as "not-valid"');
    const none = await runCli(["secret"]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain("secret: say what to do: nitric-like secret put <name> [dir]");
    const other = await runCli(["secret", "get", "motd"]);
    expect(other.code).toBe(1);
    expect(other.stderr).toContain('secret: unknown action "get"');
    expect(await greeting(app)).toEqual(before);
  });

  it("reads a value typed at a terminal without showing it", async () => {
    // script(1) gives the CLI a pty as stdin and stdout; what is written to script's stdin is typed.
    const child = spawn(
      "script",
      ["-q", "-e", "-c", `${process.execPath} ${CLI} secret put motd ${dir}`, "/dev/null"],
      {
        env: { ...process.env, NO_COLOR: "1" },
      },
    );
    let seen = "";
    child.stdout.on("data", (d) => {
      seen += d;
    });
    const deadline = Date.now() + 20000;
    while (!seen.includes("not shown") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(seen).toContain('value of secret "motd" (not shown; Enter to end):');
    // A typo taken back with backspace (0x7f) is not part of the value.
    child.stdin.write("s3cretX\x7f-typed\r");
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(code).toBe(0);
    expect(seen).not.toContain("s3cret");
    const version = /([0-9a-f]{8}-[0-9a-f-]{27})/.exec(seen)?.[1];
    expect(await greeting(app)).toEqual({ text: "s3cret-typed", bytes: 12, version });
  }, 30000);
});

describe("nitric-like secret put, given its value on the command line", () => {
  it("says the value never goes there, and how to give it, without taking it for a folder to create", async () => {
    const dir = writeProject({ "nitric-like.yaml": PROJECT, "services/door.ts": SERVICE });
    // The value where the project's folder goes: not "no such folder ... nitric-like new hunter2".
    const positional = await runCli(["secret", "put", "motd", "hunter2"], { input: "" });
    expect(positional.code).toBe(1);
    expect(positional.stderr).toContain(
      "secret put: the word after the secret's name names the project's folder, and no folder has that name; the value is never taken from the command line",
    );
    expect(positional.stderr).toContain("give --from-file <path>, or type it at the prompt; nothing was stored");
    expect(positional.stderr).not.toMatch(/hunter2|nitric-like new|bundling/);
    // An option for it, as other tools have, says the same.
    const option = await runCli(["secret", "put", "motd", dir, "--value", "hunter2"]);
    expect(option.code).toBe(1);
    expect(option.stderr).toContain(
      "error: secret: unknown option --value: the value is never taken from the command line (shell history keeps it): pipe it, give --from-file <path>",
    );
  });
});
