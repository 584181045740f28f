// The test kit, through real projects on the local provider: each fault it injects is observed by
// the running service itself (its disconnect handler's log line, its answers).
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import inspector from "node:inspector";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { Output, runCommand } from "@nitric-like/cli/run";
import { afterEach, expect, it } from "vitest";
import { type App, ConnectRefusedError, startApp, stopAll } from "../src/index.js";

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const nearestModules = () => fileURLToPath(new URL("../node_modules", import.meta.url));
const open = { query: { token: "letmein" } };

afterEach(stopAll);

it("connects with query, headers and protocols, and reads text, bytes and JSON in order", async () => {
  const app = await startApp(fixture("recorder"));
  expect(app.url()).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
  const client = await app.connect({ ...open, headers: { "x-name": "ann" }, protocols: ["chat.v1"] });
  expect(client.protocol).toBe("chat.v1");
  await client.expectMessage("hello ann");
  client.send("hi");
  await client.expectMessage(/^echo hi$/);
  client.send(new Uint8Array([9, 9]));
  expect((await client.next()).text).toBe("binary 2");
  client.send("bytes");
  const bytes = await client.expectMessage(new Uint8Array([1, 2, 3]));
  expect(bytes.binary).toBe(true);
  client.send("json");
  expect((await client.expectMessage({ kind: "json", n: 1 })).json()).toEqual({ kind: "json", n: 1, extra: true });
  // Anything else goes as JSON text, as the SDK's send() sends it (a route's message, say).
  client.send({ action: "join", room: "lobby", skip: undefined });
  await client.expectMessage('echo {"action":"join","room":"lobby"}');
  client.send([1, null]);
  await client.expectMessage("echo [1,null]");
  expect(() => client.send(undefined as never)).toThrow(/cannot send undefined: it has no JSON form/);
  await client.expectNoMessage({ forMs: 100 });
  expect(await client.close(4001, "done")).toEqual({ code: 4001, reason: "done" });
  await app.stop();
});

/** Messages typed as an app types them: interfaces, which have no index signature. */
interface Join {
  action: "join";
  room: string;
}
interface JsonReply {
  kind: string;
  n?: number | undefined;
}

it("takes the app's own message interfaces in send() and expectMessage(), and refuses a pattern holding undefined", async () => {
  const app = await startApp(fixture("recorder"));
  const client = await app.connect(open);
  await client.next();
  const join: Join = { action: "join", room: "lobby" };
  client.send(join);
  await client.expectMessage('echo {"action":"join","room":"lobby"}');
  client.send("json");
  const reply: JsonReply = { kind: "json", n: 1 };
  await client.expectMessage(reply);
  // An optional key set to undefined matches no JSON message: said at once, not after the wait.
  const loose: JsonReply = { kind: "json", n: undefined };
  client.send("json");
  await expect(client.expectMessage(loose, { timeoutMs: 60000 })).rejects.toThrow(
    /expectMessage\(JSON \{"kind":"json"\}\): pattern\.n is undefined, which no JSON message has; leave it out of the pattern/,
  );
  await expect(client.expectMessage([{ a: [1, undefined] }])).rejects.toThrow(/pattern\[0\]\.a\[1\] is undefined/);
});

it("fails expectMessage with what arrived instead, and next() when nothing arrives in time", async () => {
  const app = await startApp(fixture("recorder"));
  const client = await app.connect(open);
  await expect(client.expectMessage("goodbye")).rejects.toThrow(
    /expected a message matching "goodbye", got "hello anonymous"/,
  );
  await expect(client.next({ timeoutMs: 100 })).rejects.toThrow(/no message arrived within 100 ms/);
  client.send("json");
  await expect(client.expectMessage({ kind: "xml" })).rejects.toThrow(/got "\{.*json/);
});

it("ends a wait that got no message with what the app printed meanwhile: a handler's error, not the timeout alone", async () => {
  // Before, a test whose handler threw (or whose reply the provider refused to send) read only
  // "no message arrived within 1000 ms; raise timeoutMs if it is slow", the reason in app.logs.
  const app = await startApp(fixture("recorder"));
  const client = await app.connect(open);
  await client.expectMessage("hello anonymous");
  client.send("throw");
  await expect(client.next({ timeoutMs: 1000 })).rejects.toThrow(
    /no message arrived within 1000 ms; raise timeoutMs if it is slow; meanwhile the app printed:\n(.*\n)*recorder \| .*message handler failed .*the handler threw/,
  );
  // Only what it printed during the wait: nothing here.
  await expect(client.expectMessage("x", { timeoutMs: 100 })).rejects.toThrow(/slow$/);
});

it("refuses a wait that is no number of milliseconds (NaN, negative, endless), naming the call and the option", async () => {
  // Before, NaN made next() spin until a message came and a start never time out, a negative or
  // endless wait ended at once, forMs: NaN passed expectNoMessage() unchecked, keepAliveMs: 0 sent
  // pings in a loop and blockedAfterMs: 0 ended the services as blocked over and over.
  const range = "give a number of milliseconds from 1 to 2147483647";
  await expect(startApp(fixture("recorder"), { timeoutMs: Number.NaN })).rejects.toThrow(
    `startApp(${JSON.stringify(fixture("recorder"))}): timeoutMs is NaN; ${range}`,
  );
  await expect(startApp(fixture("recorder"), { blockedAfterMs: 0 })).rejects.toThrow(`blockedAfterMs is 0; ${range}`);
  const app = await startApp(fixture("recorder"));
  await expect(app.connect({ ...open, keepAliveMs: 0 })).rejects.toThrow(
    `client of websocket "socket": connect: keepAliveMs is 0; ${range}`,
  );
  await expect(app.connect({ ...open, timeoutMs: -1 })).rejects.toThrow(`connect: timeoutMs is -1; ${range}`);
  const client = await app.connect(open);
  await expect(client.next({ timeoutMs: Number.POSITIVE_INFINITY })).rejects.toThrow(
    `client of websocket "socket": next(): timeoutMs is Infinity; ${range} (no wait is endless; the runner's own timeout ends a test)`,
  );
  await expect(client.expectMessage("hello anonymous", { timeoutMs: -5 })).rejects.toThrow(`next(): timeoutMs is -5`);
  await expect(client.expectNoMessage({ forMs: Number.NaN })).rejects.toThrow(
    "expectNoMessage(): forMs is NaN; give a number of milliseconds from 0 to 2147483647",
  );
  await expect(app.waitForLog(/ready/, { timeoutMs: "5s" as never })).rejects.toThrow(
    `app.waitForLog(/ready/): timeoutMs is "5s"; ${range}`,
  );
  await expect(client.close(1000, "", { timeoutMs: 0 })).rejects.toThrow(`close(): timeoutMs is 0; ${range}`);
  await client.expectMessage("hello anonymous");
  await client.expectNoMessage({ forMs: 0 });
});

it("refuses a close() a close frame cannot carry, naming the client and what a code or reason may be", async () => {
  // Before, ws's words came through ("First argument must be a valid error code number", "The
  // message must not be greater than 123 bytes"), and 3000.5 was sent as 3000.
  const app = await startApp(fixture("recorder"));
  const client = await app.connect(open);
  const codes = "a close code is a whole number from 1000 to 1014 (1004 to 1006 are never sent) or from 3000 to 4999";
  for (const code of [999, 1005, 1006, 1015, 5000, 3000.5])
    await expect(client.close(code)).rejects.toThrow(`client of websocket "socket": close(${code}): ${codes}`);
  await expect(client.close(4000, "x".repeat(124))).rejects.toThrow(
    `close(4000, "${"x".repeat(40)}..."): the reason is 124 bytes and a close frame holds at most 123 bytes of it; shorten it`,
  );
  expect(client.isOpen).toBe(true);
  expect(await client.close(4000, "x".repeat(123))).toEqual({ code: 4000, reason: "x".repeat(123) });
});

it("rejects a connect whose header or subprotocol no request can carry, naming the client and the option", async () => {
  const app = await startApp(fixture("recorder"));
  await expect(app.connect({ ...open, headers: { "x-name": "ann\nbo" } })).rejects.toThrow(
    /^client of websocket "socket": cannot make this request: .*"x-name".*; a header's name is a token and its value one line/,
  );
  await expect(app.connect({ ...open, protocols: ["chat v1"] })).rejects.toThrow(
    /^client of websocket "socket": cannot make this request: .*subprotocol.*; a subprotocol is a token/,
  );
  await expect(app.connect({ ...open, protocols: ["a", "a"] })).rejects.toThrow(/each offered once/);
  // The app serves on: nothing was sent.
  const client = await app.connect(open);
  await client.expectMessage("hello anonymous");
});

it("rejects a connect whose handler does not return within timeoutMs, saying so and what to do", async () => {
  // Before, ws's own words came through: "could not connect to ws://...: Opening handshake has timed out".
  const app = await startApp(fixture("held"));
  const never = join(app.dir, "never");
  await expect(app.connect({ query: { connect: never }, timeoutMs: 300 })).rejects.toThrow(
    `client of websocket "socket": ${app.url()} did not answer the upgrade within 300 ms: its authorize or connect handler has not returned; raise timeoutMs if it is slow`,
  );
  writeFileSync(never, "");
});

it("rejects a refused connect with the status and the reason the service gave", async () => {
  const app = await startApp(fixture("recorder"));
  const refused = await app.connect().catch((e: unknown) => e);
  expect(refused).toBeInstanceOf(ConnectRefusedError);
  expect(refused).toMatchObject({ status: 401, body: expect.stringContaining("a token is required") });
});

it("drop(): the TCP connection ends with no close frame, and the service's disconnect handler sees 1006", async () => {
  const app = await startApp(fixture("recorder"));
  const client = await app.connect(open);
  await client.next();
  client.send("whoami");
  const id = (await client.next()).text;
  client.drop();
  expect((await client.closed).code).toBe(1006);
  await app.waitForLog(new RegExp(`^recorder \\| disconnect ${id} 1006$`, "m"));
});

it("idle(): a client that goes silent is closed by the idle timeout of the test environment (1001 and the reason), one that keeps pinging is not", async () => {
  const app = await startApp(fixture("recorder"), { environment: "test" });
  const [pinger, sleeper] = await Promise.all([
    app.connect({ ...open, keepAliveMs: 100 }),
    app.connect({ ...open, keepAliveMs: 100 }),
  ]);
  await pinger.next();
  await sleeper.next();
  sleeper.send("whoami");
  const id = (await sleeper.next()).text;
  sleeper.idle();
  const closed = await sleeper.closed;
  expect(closed.code).toBe(1001);
  expect(closed.reason).toMatch(/^idle timeout/);
  await app.waitForLog(new RegExp(`^recorder \\| disconnect ${id} 1001$`, "m"));
  // Twice the 1 s limit without a message: its pings keep it open.
  await new Promise((r) => setTimeout(r, 2000));
  expect(pinger.isOpen).toBe(true);
  pinger.send("still");
  await pinger.expectMessage("echo still");
});

it("restart(): a new copy of the service answers, and the clients stay connected through it", async () => {
  const app = await startApp(fixture("recorder"));
  const [ann, bo] = await Promise.all([app.connect(open), app.connect(open)]);
  await ann.next();
  await bo.next();
  ann.send("copy");
  const before = (await ann.next()).text;
  await app.restart();
  await app.restart("recorder");
  ann.send("copy");
  const after = (await ann.next()).text;
  expect(after).toMatch(/^copy-/);
  expect(after).not.toBe(before);
  bo.send("still here");
  await bo.expectMessage("echo still here");
  expect([ann.isOpen, bo.isOpen]).toEqual([true, true]);
  await expect(app.restart("nobody")).rejects.toThrow(/no such service; name one of "recorder"/);
});

it.each([
  { what: "thread", processes: false },
  { what: "process", processes: true },
])(
  "restart() lets the old copy ($what) answer the events it was sent, so no handler runs twice; new events wait for the new copy",
  async ({ processes }) => {
    const dir = mkdtempSync(join(tmpdir(), "kit-held-"));
    const file = (name: string) => join(dir, name);
    try {
      const app = await startApp(fixture("held"), { processes });
      const runs = app.kv<{ n: number }>("runs");
      const talker = await app.connect();
      talker.send("copy");
      const before = (await talker.next()).text;
      talker.send(file("message"));
      const joining = app.connect({ query: { connect: file("connect") } });
      const authorizing = app.connect({ query: { authorize: file("authorize") } });
      // Awaited below; a refusal must fail there, not as an unhandled rejection.
      for (const opening of [joining, authorizing]) opening.catch(() => {});
      const counts = async () =>
        Promise.all(["authorize", "connect", "message"].map(async (k) => (await runs.get(k))?.n ?? 0));
      for (let i = 0; i < 500 && (await counts()).some((n) => n === 0); i++)
        await new Promise((r) => setTimeout(r, 10));
      expect(await counts()).toEqual([1, 1, 1]);
      // Each handler holds until its file exists: made once the restart has begun.
      const restarting = app.restart();
      await new Promise((r) => setTimeout(r, 300));
      talker.send("copy");
      for (const name of ["authorize", "connect", "message"]) writeFileSync(file(name), "");
      await restarting;
      await talker.expectMessage("answered message");
      const after = (await talker.next()).text;
      expect(after).toMatch(/^copy /);
      expect(after).not.toBe(before);
      const [joined, authorized] = await Promise.all([joining, authorizing]);
      expect([talker.isOpen, joined.isOpen, authorized.isOpen]).toEqual([true, true, true]);
      expect(await counts()).toEqual([1, 1, 1]);
      // The new copy serves what comes next.
      talker.send(file("message"));
      await talker.expectMessage("answered message");
      expect(await counts()).toEqual([1, 1, 2]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

it.each([
  { what: "thread", processes: false },
  { what: "process", processes: true },
])(
  "starts a connection's messages in the order sent, and one that awaits does not hold the next back ($what)",
  async ({ processes }) => {
    const dir = mkdtempSync(join(tmpdir(), "kit-order-"));
    try {
      const app = await startApp(fixture("held"), { processes });
      const client = await app.connect();
      const names = Array.from({ length: 20 }, (_, i) => `m${i}`);
      // The handler holds each message until its file exists: the odd ones' exist already.
      for (const [i, name] of names.entries()) if (i % 2 === 1) writeFileSync(join(dir, name), "");
      for (const name of names) client.send(join(dir, name));
      const replies = async (n: number) => {
        const got: string[] = [];
        for (let i = 0; i < n; i++) got.push((await client.next()).text);
        return got.sort();
      };
      const answered = (parity: number) =>
        names
          .filter((_, i) => i % 2 === parity)
          .map((name) => `answered ${name}`)
          .sort();
      expect(await replies(10)).toEqual(answered(1));
      for (const [i, name] of names.entries()) if (i % 2 === 0) writeFileSync(join(dir, name), "");
      expect(await replies(10)).toEqual(answered(0));
      client.send("started");
      expect((await client.next()).json()).toEqual(names);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

it.each([
  { what: "thread", kind: "thread", project: "recorder", processes: false, exit: "exited with code 1" },
  { what: "process", kind: "process", project: "recorder", processes: true, exit: "was killed by SIGKILL" },
  // Its own start command runs it; our SDK answers the checks there.
  {
    what: "process of its own start command",
    kind: "process",
    project: "recorder-start",
    processes: false,
    exit: "was killed by SIGKILL",
  },
])(
  "ends and restarts a service $what that never lets its event loop turn, saying why, and serves again",
  async ({ kind, project, processes, exit }) => {
    const app = await startApp(fixture(project), { blockedAfterMs: 1000, processes });
    const [ann, bo] = await Promise.all([app.connect(open), app.connect(open)]);
    await ann.next();
    await bo.next();
    bo.send("copy");
    const before = (await bo.next()).text;
    const started = Date.now();
    ann.send("block 60000");
    await app.waitForLog(
      new RegExp(
        `service "recorder" has not let its event loop turn for 1\\.\\d s \\(a loop that never yields, or a synchronous wait\\), so none of its events can run; ending its ${kind} to restart it`,
      ),
      { timeoutMs: 10000 },
    );
    await app.waitForLog(new RegExp(`service "recorder" ${exit}; restarting in`), { timeoutMs: 5000 });
    expect(Date.now() - started).toBeLessThan(10000);
    // A new copy of the service answers the other client.
    let after = before;
    for (let i = 0; i < 50 && after === before; i++) {
      bo.send("copy");
      after = (await bo.next()).text;
      if (after === before) await new Promise((r) => setTimeout(r, 100));
    }
    expect(after).toMatch(/^copy-/);
    expect(after).not.toBe(before);
  },
);

it.each([
  { what: "thread", processes: false },
  { what: "process", processes: true },
])(
  "fails a service $what whose new copy never lets its event loop turn as it starts, saying why once, instead of hanging",
  async ({ processes }) => {
    const marker = join(mkdtempSync(join(tmpdir(), "kit-block-")), "block");
    process.env.RECORDER_BLOCK_AT_START = marker;
    try {
      const app = await startApp(fixture("recorder"), { blockedAfterMs: 1000, processes });
      const ann = await app.connect(open);
      await ann.next();
      writeFileSync(marker, "");
      await app.restart();
      await app.waitForLog(/failed to start/, { timeoutMs: 10000 });
      // Said once, as a failure at import is, and not restarted in a loop: the copy would block again.
      await new Promise((r) => setTimeout(r, 2500));
      expect(app.logs).toContain(
        'service "recorder" (services/recorder.ts) failed to start: its event loop did not turn for 1.',
      );
      expect(app.logs).toMatch(
        /s while it started \(a loop at its top level that never yields, or a synchronous wait\), so it never registered its handlers\n {2}fix it, then start run again/,
      );
      // (A client's event that fails meanwhile names that failure as why: it is not said again as one.)
      expect(app.logs.match(/^error: service "recorder" \S+ failed to start/gm)).toHaveLength(1);
      expect(app.logs).not.toMatch(/restarting in|has not let its event loop turn/);
      // The kit does not watch files: with no service left, the run ends as `run --no-watch` does.
      await expect(app.stop()).rejects.toThrow(/exited with code 1[\s\S]*no service is running, and with --no-watch/);
    } finally {
      delete process.env.RECORDER_BLOCK_AT_START;
      rmSync(dirname(marker), { recursive: true, force: true });
    }
  },
);

it.each([
  { what: "thread", processes: false },
  { what: "process", processes: true },
])(
  "restarts with backoff a service $what whose copy restarted after a crash blocks as it loads, as one more crash, and it recovers by itself",
  async ({ processes }) => {
    const marker = join(mkdtempSync(join(tmpdir(), "kit-block-")), "block");
    process.env.RECORDER_BLOCK_AT_START = marker;
    try {
      const app = await startApp(fixture("recorder"), { blockedAfterMs: 1000, processes });
      const ann = await app.connect(open);
      await ann.next();
      // What its top level waits on goes away, and it crashes: its next copies block as they load.
      writeFileSync(marker, "");
      ann.send("crash");
      await ann.expectMessage("crashing");
      await app.waitForLog(/failed again at load, same cause \(2 times\); restarting in 1\.00 s/, { timeoutMs: 20000 });
      rmSync(marker);
      const bo = await app.connect({ ...open, timeoutMs: 15000 });
      await bo.expectMessage("hello anonymous");
      expect(app.logs).toContain(
        'service "recorder" (services/recorder.ts) failed at load after it crashed: its event loop did not turn for 1.0 s while it started (a loop at its top level that never yields, or a synchronous wait), so it never registered its handlers\n  restarting in 0.50 s, as after a crash:',
      );
      expect(app.logs.match(/did not turn/g)).toHaveLength(1);
      expect(app.logs).not.toMatch(/failed to start|crashed 5 times/);
    } finally {
      delete process.env.RECORDER_BLOCK_AT_START;
      rmSync(dirname(marker), { recursive: true, force: true });
    }
  },
);

/** Blocks the project's service for 1.5 s, 5 times its blockedAfterMs: it must come through it untouched. */
async function expectLeftAlone(project: string): Promise<void> {
  const app = await startApp(fixture(project), { blockedAfterMs: 300 });
  const [ann, bo] = await Promise.all([app.connect(open), app.connect(open)]);
  await ann.next();
  await bo.next();
  bo.send("copy");
  const before = (await bo.next()).text;
  ann.send("block 1500");
  await ann.expectMessage("unblocked", { timeoutMs: 5000 });
  bo.send("copy");
  expect((await bo.next()).text).toBe(before);
  expect(app.logs).not.toMatch(/has not let its event loop turn/);
}

it("leaves a blocked start-command service alone when its program never answered a check (not our SDK)", async () => {
  process.env.RECORDER_SILENT = "1";
  try {
    await expectLeftAlone("recorder-start");
  } finally {
    delete process.env.RECORDER_SILENT;
  }
});

it("leaves a blocked service thread alone while run's inspector is open (a debugger may hold it at a breakpoint)", async () => {
  inspector.open(0, "127.0.0.1");
  try {
    await expectLeftAlone("recorder");
  } finally {
    inspector.close();
  }
});

it("stop() closes clients with 1001, frees every port and removes the copy; a second stop is the same stop", async () => {
  const app: App = await startApp(fixture("recorder"));
  const client = await app.connect(open);
  const url = app.url();
  await app.stop();
  expect(await client.closed).toMatchObject({ code: 1001 });
  await expect(import("ws").then(({ default: WebSocket }) => probe(new WebSocket(url)))).resolves.toBe("refused");
  expect(existsSync(app.dir)).toBe(false);
  await app.stop();
});

it("stop() fails, naming it, when a port is still taken after the run stopped", async () => {
  const app = await startApp(fixture("recorder"));
  const { createServer } = await import("node:net");
  const port = Number(new URL(app.url()).port);
  const client = await app.connect(open);
  await client.next();
  // Something takes the gateway's port the moment it is free, as a leaked server would hold it:
  // it tries from the moment stop() begins, on every turn of the event loop, so it wins the port
  // long before stop() has ended the services and looks.
  const squatter = createServer();
  const taken = new Promise<void>((resolve) => {
    // One listener of each kind for all the tries (a callback per listen() would pile up).
    squatter.once("listening", () => resolve());
    squatter.on("error", () => setImmediate(() => squatter.listen(port, "127.0.0.1")));
    squatter.listen(port, "127.0.0.1");
  });
  await expect(app.stop()).rejects.toThrow(/left open or unclean: websocket "socket" still accepts connections/);
  await taken;
  await new Promise((r) => squatter.close(r));
});

it("runs a service on the published @nitric/sdk the same way: echo, drop seen by its disconnect handler, restart", async () => {
  const app = await startApp(fixture("nitric-echo"));
  const client = await app.connect();
  client.send("one");
  await client.expectMessage("nitric echo one");
  await app.restart();
  client.send("two");
  // This service answers with socket.send() before its handler returns: when the restart stops it
  // before its answer reached the provider, the event goes again to the new copy (at least once).
  let got = await client.next();
  while (got.text === "nitric echo one") got = await client.next();
  expect(got.text).toBe("nitric echo two");
  const other = await app.connect({ socket: "echo" });
  other.drop();
  await app.waitForLog(/^echo \| nitric disconnect \S+$/m);
  expect(client.isOpen).toBe(true);
});

it("runs two apps at once (the second with service processes), resolving relative folders from where the test started", async () => {
  const start = process.cwd();
  const first = await startApp(relative(start, fixture("recorder")));
  const second = await startApp(relative(start, fixture("nitric-echo")));
  const [a, b] = await Promise.all([first.connect(open), second.connect()]);
  await a.expectMessage("hello anonymous");
  b.send("x");
  await b.expectMessage("nitric echo x");
  await first.stop();
  expect(existsSync(first.dir)).toBe(false);
  b.send("y");
  await b.expectMessage("nitric echo y");
  await second.stop();
  expect(process.cwd()).toBe(start);
});

it("rejects a file, a folder with no project file and one inside a project, naming the folder given (not a temp copy), and leaves no copy", async () => {
  const { mkdtempSync, mkdirSync, readdirSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const copies = () => readdirSync(tmpdir()).filter((f) => /^nitric-like-(empty|services|nitric-like\.yaml)-/.test(f));
  const before = copies();
  const empty = mkdtempSync(join(tmpdir(), "empty-"));
  try {
    await expect(startApp(empty)).rejects.toThrow(
      `startApp(${JSON.stringify(empty)}): ${empty}: no project file found, create nitric-like.yaml`,
    );
    const file = join(fixture("recorder"), "nitric-like.yaml");
    await expect(startApp(file)).rejects.toThrow(
      `startApp(${JSON.stringify(file)}): ${file} is a file; give the project's folder (the one with nitric-like.yaml)`,
    );
    // The test's own folder given for the project's (new URL(".", import.meta.url) for "..").
    const services = join(fixture("recorder"), "services");
    await expect(startApp(services)).rejects.toThrow(/services: no project file here; it is inside the project in /);
    // A project the copy fails on (a named pipe in it): said, and the half-made copy removed.
    const piped = mkdtempSync(join(tmpdir(), "services-"));
    const { cpSync } = await import("node:fs");
    cpSync(fixture("recorder"), piped, { recursive: true });
    mkdirSync(join(piped, "tmp"));
    const { execFileSync } = await import("node:child_process");
    execFileSync("mkfifo", [join(piped, "tmp", "pipe")]);
    await expect(startApp(piped)).rejects.toThrow(/could not copy the project to \S+: .*FIFO/);
    rmSync(piped, { recursive: true, force: true });
  } finally {
    rmSync(empty, { recursive: true, force: true });
  }
  expect(copies()).toEqual(before);
});

it("rejects with the run's own words when the project cannot start, and for a folder that is not there", async () => {
  await expect(startApp(fixture("failing"))).rejects.toThrow(
    /the run stopped \(exit 1\) before it was ready;[\s\S]*failed while its resources were being collected[\s\S]*the database URL is not set/,
  );
  // What is wrong with the project file is said before anything starts, with its own path.
  await expect(startApp(fixture("broken"))).rejects.toThrow(
    /^startApp\("\S+broken"\): \S*broken\/nitric-like\.yaml: websockets\.socket\.colour is not a setting/,
  );
  await expect(startApp(fixture("nowhere"))).rejects.toThrow(/no such folder; give a project's folder/);
  expect(process.cwd()).toBe(fileURLToPath(new URL("../../..", import.meta.url)).replace(/\/$/, ""));
});

it("rejects a provider not installed with the project's folder and the option, before copying it", async () => {
  // Before, the run's words came through: the temp copy's folder, and "--provider <package>".
  const project = fixture("recorder");
  await expect(startApp(project, { provider: "AWS" })).rejects.toThrow(
    `startApp(${JSON.stringify(project)}): provider "AWS" is not installed in ${project}; providers found: local, aws`,
  );
  await expect(startApp(project, { provider: "AWS" })).rejects.toThrow(
    /pass its package name \(\{ provider: "<package>" \}\)$/,
  );
});

it("removes the temp copy of an app never stopped when the test's process exits (a file with no afterEach(stopAll))", async () => {
  const { execFile } = await import("node:child_process");
  const kit = new URL("../dist/index.js", import.meta.url).href;
  const script = `import(${JSON.stringify(kit)}).then(async ({ startApp }) => {
    const app = await startApp(${JSON.stringify(fixture("recorder"))}, { processes: true });
    console.log(app.dir);
    process.exit(0);
  });`;
  const dir = await new Promise<string>((resolve, reject) =>
    execFile(process.execPath, ["--input-type=module", "-e", script], { timeout: 30000 }, (error, stdout, stderr) =>
      error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout.trim()),
    ),
  );
  expect(dir).toMatch(/nitric-like-recorder-/);
  expect(existsSync(dir)).toBe(false);
});

it("removes, at the next process's start, the copy of an app whose worker thread was ended (vitest's threads pool) or whose process was killed", async () => {
  const { execFile } = await import("node:child_process");
  const kit = new URL("../dist/index.js", import.meta.url).href;
  const project = JSON.stringify(fixture("recorder"));
  // What the script printed; it must end with exit 0 or, when `killed`, SIGKILL.
  const node = (script: string, killed = false) =>
    new Promise<string>((resolve, reject) =>
      execFile(process.execPath, ["--input-type=module", "-e", script], { timeout: 30000 }, (error, stdout, stderr) =>
        (killed ? error?.signal === "SIGKILL" : !error)
          ? resolve(stdout.trim())
          : reject(new Error(`${error?.message ?? "exit 0"}\n${stderr}`)),
      ),
    );
  // A worker thread starts an app and is terminated, as vitest ends a test file's thread: no
  // "exit" event runs in it. Then a process starts one and is killed with SIGKILL.
  const inThread = await node(`import { Worker } from "node:worker_threads";
    const worker = new Worker(${JSON.stringify(`import(${JSON.stringify(kit)}).then(async ({ startApp }) => {
      const app = await startApp(${project}, { processes: true });
      (await import("node:worker_threads")).parentPort.postMessage(app.dir);
    });`)}, { eval: true });
    worker.once("message", async (dir) => { console.log(dir); await worker.terminate(); process.exit(0); });`);
  expect(inThread).toMatch(/nitric-like-recorder-/);
  expect(existsSync(inThread)).toBe(true);
  // The next process's first start removes it.
  const killed = await node(
    `import(${JSON.stringify(kit)}).then(async ({ startApp }) => {
    const app = await startApp(${project}, { processes: true });
    const { writeSync } = await import("node:fs");
    writeSync(1, app.dir + "\\n");
    process.kill(process.pid, "SIGKILL");
  });`,
    true,
  );
  expect(existsSync(inThread)).toBe(false);
  expect(killed).toMatch(/nitric-like-recorder-/);
  expect(existsSync(killed)).toBe(true);
  // And the next one's removes this one, leaving alone the copy of an app still running and one
  // another process is making (its owner file made, its mark not yet written).
  const app = await startApp(fixture("recorder"));
  const making = mkdtempSync(join(tmpdir(), "nitric-like-making-"));
  mkdirSync(join(making, ".nitric-like"));
  writeFileSync(join(making, ".nitric-like", "test-kit-copy"), "");
  await node(`import(${JSON.stringify(kit)}).then(async ({ startApp }) => {
    const app = await startApp(${project}, { processes: true });
    await app.stop();
  });`);
  expect(existsSync(killed)).toBe(false);
  expect(existsSync(app.dir)).toBe(true);
  expect(existsSync(making)).toBe(true);
  rmSync(making, { recursive: true, force: true });
}, 60000);

function probe(ws: import("ws").WebSocket): Promise<"open" | "refused"> {
  return new Promise((resolve) => {
    ws.on("open", () => {
      ws.terminate();
      resolve("open");
    });
    ws.on("error", () => resolve("refused"));
  });
}

it("a start given up on while the run still starts (a timeout shorter than its start) leaves no run behind", async () => {
  // The kit stops the run it gave up on; a run told to stop before it serves stops once it serves.
  const copy = mkdtempSync(join(tmpdir(), "kit-abort-"));
  cpSync(fixture("recorder"), copy, { recursive: true });
  symlinkSync(nearestModules(), join(copy, "node_modules"), "dir");
  const output: string[] = [];
  const sink = { write: (text: string) => void output.push(text) };
  const home = process.cwd();
  try {
    const exit = runCommand(
      { dir: copy, provider: "local", randomPorts: true, watch: false, dashboard: false, signal: AbortSignal.abort() },
      new Output(sink, sink, true),
    );
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      exit,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the run did not stop:\n${output.join("")}`)), 20000);
      }),
    ]).finally(() => clearTimeout(timer));
    expect(code).toBe(0);
    expect(output.join("")).toContain("stopping");
  } finally {
    process.chdir(home);
    rmSync(copy, { recursive: true, force: true });
  }
}, 30000);
