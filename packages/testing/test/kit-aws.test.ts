// The test kit with provider "aws": the project runs as the functions `build --provider aws` makes,
// in the AWS emulator (API Gateway's rules, Lambda, DynamoDB in dynalite), inside the test. Each
// test shows what differs from the local provider, so it fails if the kit ran the local one.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterEach, expect, it } from "vitest";
import { ConnectRefusedError, startApp, stopAll } from "../src/index.js";

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const open = { query: { token: "letmein" } };

afterEach(stopAll);

/**
 * The processes this test process has started that are still running (pid and command line; an
 * exited one not yet reaped, <defunct>, is gone), less the reaper (REAPER_NAME in provider-kit's
 * reaper.ts), which ends the others if this process dies, and lives as long as it does.
 */
function children(): string[] {
  const out = execFileSync("ps", ["-o", "pid=,args=", "--ppid", String(process.pid)], { encoding: "utf8" });
  return out
    .split("\n")
    .filter(
      (line) =>
        line.trim() !== "" &&
        !/\bps -o pid=,args=/.test(line) &&
        !line.includes("nitric-like-reaper") &&
        !line.includes("<defunct>"),
    );
}

it("runs the project as functions in the AWS emulator: the stage in its URL, API Gateway's connection ids and rules, answers", async () => {
  const before = children();
  const app = await startApp(fixture("recorder"), { provider: "aws" });
  expect(app.provider).toBe("aws");
  expect(app.url()).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/live$/);
  // The functions run in the emulator's worker process, one more child of this one.
  expect(children().length).toBeGreaterThan(before.length);
  const client = await app.connect(open);
  await client.expectMessage("hello anonymous");
  client.send("whoami");
  // API Gateway's ids (base64, 16 characters ending in "="), not the local provider's 12 characters.
  expect((await client.next()).text).toMatch(/^[A-Za-z0-9+/]{15}=$/);
  client.send("json");
  await client.expectMessage({ kind: "json", n: 1 });
  // The local provider hands a binary frame to the handler ("binary 1"); API Gateway closes.
  client.send(new Uint8Array([1]));
  expect(await client.closed).toEqual({
    code: 1003,
    reason: "binary frames are not accepted (as on API Gateway); send bytes as text, such as base64",
  });
  await app.waitForLog(/^recorder \| disconnect \S+ 1003$/m);
  await app.stop();
  expect(existsSync(app.dir)).toBe(false);
  // stop() ended the emulator's process too.
  expect(children()).toEqual(before);
});

it("on aws: a refused connect rejects with its status and reason, drop() reaches the disconnect function as 1006, idle() meets the test environment's idle timeout", async () => {
  const app = await startApp(fixture("recorder"), { provider: "aws", environment: "test" });
  expect(app.url()).toMatch(/\/live$/);
  const refused = await app.connect().catch((e: unknown) => e);
  expect(refused).toBeInstanceOf(ConnectRefusedError);
  expect(refused).toMatchObject({ status: 401, body: expect.stringContaining("a token is required") });
  const dropped = await app.connect(open);
  await dropped.next();
  dropped.drop();
  await app.waitForLog(/^recorder \| disconnect \S+ 1006$/m);
  const sleeper = await app.connect({ ...open, keepAliveMs: 100 });
  await sleeper.next();
  sleeper.idle();
  // The project's 1 s, shorter than API Gateway's 10 min (the emulator takes shorter ones).
  const closed = await sleeper.closed;
  expect(closed.code).toBe(1001);
});

it("on aws: restart() builds and starts the service's function again: clients stay connected, and the next event meets a new copy", async () => {
  const app = await startApp(fixture("recorder"), { provider: "aws" });
  const client = await app.connect(open);
  await client.expectMessage("hello anonymous");
  client.send("copy");
  const before = (await client.next()).text;
  client.send("copy");
  // Warm: the same copy answers again.
  expect((await client.next()).text).toBe(before);
  await app.restart();
  client.send("copy");
  const after = (await client.next()).text;
  expect(after).toMatch(/^copy-/);
  expect(after).not.toBe(before);
  expect(client.isOpen).toBe(true);
  await expect(app.restart("nope")).rejects.toThrow(/no such service; name one of "recorder"/);
});

it("runs apps on both providers at once, and a service on the published @nitric/sdk on aws", async () => {
  const [onAws, nitricOnAws] = await Promise.all([
    startApp(fixture("recorder"), { provider: "aws" }),
    startApp(fixture("nitric-echo"), { provider: "aws" }),
  ]);
  const onLocal = await startApp(fixture("recorder"));
  const [a, n, l] = await Promise.all([onAws.connect(open), nitricOnAws.connect(), onLocal.connect(open)]);
  await a.expectMessage("hello anonymous");
  await l.expectMessage("hello anonymous");
  n.send("x");
  await n.expectMessage("nitric echo x");
  // The same message, each provider's rule: binary reaches the local handler, closes on aws.
  l.send(new Uint8Array([1, 2]));
  await l.expectMessage("binary 2");
  a.send(new Uint8Array([1, 2]));
  expect((await a.closed).code).toBe(1003);
  await onAws.stop();
  n.send("y");
  await n.expectMessage("nitric echo y");
});

it("on aws: a service whose function fails its init (after loading for the collect pass) stops the start, not a ready app whose events fail", async () => {
  await expect(startApp(fixture("failing-init"), { provider: "aws" })).rejects.toThrow(
    /the run stopped \(exit 1\) before it was ready;[\s\S]*failed its init: the function's role cannot read its config; as on Lambda, its next event retries the init in a new execution environment, and fails with it while it fails; fix its module's top level and start run again \(--no-watch: it does not watch files\)[\s\S]*no service is running, and with --no-watch none starts again/,
  );
});

it("on aws: a start in which one service's function fails its init and another's does not rejects with the cause, not an app half of whose events fail", async () => {
  const before = children();
  const error = await startApp(fixture("half-failing-init"), { provider: "aws" }).catch((e: Error) => e);
  expect(error).toBeInstanceOf(Error);
  expect((error as Error).message).toMatch(
    /^startApp\(.*\): the function of service "config" failed its init as the app started \(its events would retry it, as on AWS\); the output:/,
  );
  // The run's words: the cause, before a ready line that says so.
  expect((error as Error).message).toMatch(
    /warning: service "config" is not serving yet: function "\S+" failed its init: the function's role cannot read its config; each event retries its init \(as Lambda does\) and fails while it fails\nready: half-failing-init, 2 services, but the function of "config" failed its init \(above\)\. Ctrl-C to stop\./,
  );
  // Stopped: nothing of it left running.
  expect(children()).toEqual(before);
});

it("on aws: a start that times out while a function's init hangs stops at once, the function's process ended, not after the emulator's 10 s init limit (Lambda's)", async () => {
  const before = children();
  const started = Date.now();
  const error = await startApp(fixture("hanging-init"), { provider: "aws", timeoutMs: 3000 }).catch((e: Error) => e);
  const took = Date.now() - started;
  expect(error).toBeInstanceOf(Error);
  expect((error as Error).message).toMatch(/^startApp\(.*\): not ready within 3000 ms; the output:/);
  // The stop reached the emulator while it waited for the init: nothing is left running, and the
  // start did not wait out the init limit (10 s from the emulator's start, Lambda's).
  expect(children()).toEqual(before);
  expect((error as Error).message).not.toMatch(/did not finish its init|the run did not stop/);
  // The output says what the stop gave up: the function whose init had not finished.
  expect((error as Error).message).toMatch(
    /run stopped while the functions were starting; service "hanging-init": its function's init had not finished after [\d.]+ s, and is ended/,
  );
  expect(took).toBeLessThan(15000);
});

it("on aws: a service that fails as it loads stops the start with the run's words (as on local), not a ready app with no sockets", async () => {
  await expect(startApp(fixture("failing"), { provider: "aws" })).rejects.toThrow(
    /the run stopped \(exit 1\) before it was ready;[\s\S]*failed while its resources were being collected \(exited with code 1\): the database URL is not set\n {2}fix it, then start run again \(--no-watch: it does not watch files\)[\s\S]*no service is running, and with --no-watch none starts again/,
  );
});
