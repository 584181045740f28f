// `nitric-like connect`: a client in the terminal for a socket of the project's running run (found
// by name in .nitric-like/sockets.json) or any URL; lines in, messages out, on real run processes.
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { cleanTemp, copyProject, EXAMPLES, FIXTURES, runCli, startApp, stopAll, writeProject } from "../src/harness.js";

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

describe("nitric-like connect", () => {
  it("sends each line of its input to a socket of the running run, prints what arrives, and closes at the input's end", async () => {
    const app = await startApp(copyProject(join(FIXTURES, "routes")));
    const sockets = join(app.dir, ".nitric-like", "sockets.json");
    expect(statSync(sockets).mode & 0o777).toBe(0o600);
    const { code, stdout, stderr } = await runCli(["connect", app.dir, "--socket", "game", "--query", "name=ann"], {
      input: '{"action":"join","room":"blue"}\nhello\n',
    });
    expect(code, stderr).toBe(0);
    // Routes and the message handler run side by side: their answers may come in either order.
    expect(
      stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l))
        .sort((a, b) => (a.handler < b.handler ? -1 : 1)),
    ).toEqual([
      { handler: "join", service: "game", room: "blue" },
      { handler: "message", text: "hello" },
    ]);
    expect(stderr).toContain(`connected to ${app.url("game")}/?name=ann; type a message and Enter, Ctrl-D to close`);
    expect(stderr).toContain("closed 1000");
    await app.stop();
    // run takes its file away when it stops; connect then says none is running.
    expect(existsSync(sockets)).toBe(false);
    const after = await runCli(["connect", app.dir, "--socket", "game"]);
    expect(after.code).toBe(1);
    expect(after.stderr).toContain('connect: no nitric-like run of "routes-lab" is running');
    expect(after.stderr).toContain("start one with nitric-like run");
  }, 60000);

  it("warns a second run of the same project that another runs it, and connect keeps reaching the first", async () => {
    const first = await startApp(copyProject(join(FIXTURES, "routes")));
    const sockets = join(first.dir, ".nitric-like", "sockets.json");
    const before = readFileSync(sockets, "utf8");
    const second = await startApp(first.dir);
    expect(second.stderr).toContain(
      `warning: another nitric-like run (process ${first.child.pid}) is running this project: both rebuild its bundles in .nitric-like and restart its services on every save, they share its kv store, and "nitric-like connect" keeps reaching that one's sockets; stop one of them (Ctrl-C in its terminal) unless you mean to run both`,
    );
    // The first run's file is left as it was: connect still reaches the first run.
    expect(readFileSync(sockets, "utf8")).toBe(before);
    const { code, stderr } = await runCli(["connect", first.dir, "--socket", "game"], { input: "" });
    expect(code, stderr).toBe(0);
    expect(stderr).toContain(`connected to ${first.url("game")}`);
    expect((await second.stop()).code).toBe(0);
    expect(readFileSync(sockets, "utf8")).toBe(before);
    expect(first.stderr).not.toContain("another nitric-like run");
  });

  it("asks which socket when the run has several, and names them for a wrong one", async () => {
    const app = await startApp(copyProject(join(FIXTURES, "routes")));
    const which = await runCli(["connect", "game", "."], { cwd: app.dir });
    expect(which.code).toBe(1);
    expect(which.stderr).toContain(
      "connect: expected one project folder, got 2: game .; name the socket with --socket",
    );
    const none = await runCli(["connect"], { cwd: app.dir });
    expect(none.code).toBe(1);
    expect(none.stderr).toContain(
      'connect: which socket? the running "routes-lab" has game, mixed, nested, typed: give --socket <name>',
    );
    const wrong = await runCli(["connect", "--socket", "gane"], { cwd: app.dir });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(
      'connect: no socket "gane" in the running "routes-lab"; did you mean "game"? (its sockets: game, mixed, nested, typed)',
    );
  }, 60000);

  it("prints a refusal's status and reason and exits 1; offers subprotocols and says which one was taken", async () => {
    const app = await startApp(copyProject(join(EXAMPLES, "rooms")), [], { ROOMS_WEB_PORT: "0" });
    const refused = await runCli(["connect", app.dir]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(
      `connect: ${app.url("rooms")}/ refused the connection: HTTP 401 a token is required (try t-ann, t-bo or t-cy)`,
    );
    const entered = await runCli(
      [
        "connect",
        "--url",
        app.url("rooms"),
        "--protocol",
        "token.t-ann",
        "--protocol",
        "rooms",
        "--header",
        "X-Test: 1",
      ],
      { input: '{"action":"say","text":"hi"}\n' },
    );
    expect(entered.code, entered.stderr).toBe(0);
    expect(entered.stderr).toContain("(subprotocol rooms)");
    expect(JSON.parse(entered.stdout.trim().split("\n")[0] as string)).toMatchObject({ type: "hello", user: "ann" });
    // The token alone: the app lets it in but accepts none of its subprotocols, so the client must
    // fail the connection; connect says so and what to offer, not only ws's words.
    const tokenOnly = await runCli(["connect", "--url", app.url("rooms"), "--protocol", "token.t-ann"]);
    expect(tokenOnly.code).toBe(1);
    expect(tokenOnly.stderr).toContain(
      `connect: cannot reach ${app.url("rooms")}/: the socket accepted the connection but none of the subprotocols offered ("token.t-ann"), so a client (a browser too) must fail it; offer one it accepts as well (--protocol <name>`,
    );
  }, 60000);

  it("refuses what it cannot connect to, saying why", async () => {
    const dir = writeProject({ "nitric-like.yaml": "name: idle\nservices:\n  - match: services/*.ts\n" });
    for (const [args, message] of [
      [["--url", "http://127.0.0.1:1"], 'connect: "http://127.0.0.1:1" is not a ws:// or wss:// URL'],
      [["--url", "ws://127.0.0.1:1"], "connect: cannot reach ws://127.0.0.1:1/: connect ECONNREFUSED"],
      [["--url", "ws://127.0.0.1:1", "--query", "novalue"], 'connect: --query "novalue" is not name=value'],
      [[dir, "extra"], "connect: expected one project folder, got 2"],
      [[dir], 'connect: no nitric-like run of "idle" is running'],
      // What ws and Node refuse when the request is made, said before it is (these ended in
      // "unexpected failure" with a stack, exit 70).
      [
        ["--url", "ws://127.0.0.1:1", "--protocol", "a b"],
        `connect: --protocol "a b" is not a subprotocol name; use letters, digits and`,
      ],
      [
        ["--url", "ws://127.0.0.1:1", "--protocol", "chat", "--protocol", "chat"],
        'connect: --protocol "chat" is given twice; offer each subprotocol once',
      ],
      [
        ["--url", "ws://127.0.0.1:1", "--header", "bad name:x"],
        'connect: --header "bad name:x": "bad name" is not a header name; use letters, digits and',
      ],
      [
        ["--url", "ws://127.0.0.1:1", "--header", "x-token:a\u0001b"],
        "the value has a character a header cannot carry (a control character, or one above U+00FF); remove it",
      ],
      [["--url", "ws://127.0.0.1:1", "--header", "x-name:\u0100"], "the value has a character a header cannot"],
    ] as const) {
      const { code, stderr } = await runCli(["connect", ...args]);
      expect(code, stderr).toBe(1);
      expect(stderr).toContain(message);
    }
  }, 60000);
});
