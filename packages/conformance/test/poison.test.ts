// Poison messages under `nitric-like run`: a message whose handler makes the service exit is tried
// a bounded number of times, then its client is closed with 1011, and the service (restarted by the
// CLI's supervisor) goes on answering everyone else. Real CLI, real service threads and processes.
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { cleanTemp, connect, sleep, startApp, stopAll, writeProject } from "../src/harness.js";

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

/** A service whose message handler echoes, except "die" (process.exit) and "throw" (an uncaught error before it answers). */
function poisonProject(): string {
  return writeProject({
    "nitric-like.yaml": "name: poison\nservices:\n  - match: services/*.ts\n",
    "services/chat.ts": [
      'import { websocket } from "@nitric-like/sdk";',
      'const socket = websocket("chat");',
      'socket.on("connect", () => {});',
      'socket.on("disconnect", () => {});',
      'socket.on("message", (ctx) => {',
      "  const text = ctx.text();",
      '  if (text.startsWith("die")) process.exit(1);',
      // An uncaught error while the message is unanswered (a throw inside the handler is only an error answer).
      '  if (text.startsWith("throw"))',
      "    return new Promise(() =>",
      "      setTimeout(() => {",
      '        throw new Error("poisoned");',
      "      }, 0),",
      "    );",
      '  return "echo " + text;',
      "});",
    ].join("\n"),
  });
}

describe.each([
  { how: "a worker thread", args: [] as string[] },
  { how: "a process", args: ["--processes"] },
])("a message that kills its service (service in $how)", ({ args }) => {
  it.each(["die", "throw"])(
    'is tried twice, then its client is closed with 1011, logged once, and another client is answered meanwhile and afterwards ("%s")',
    async (kind) => {
      const app = await startApp(poisonProject(), args);
      const other = await connect(app.url("chat"));
      const poisoner = await connect(app.url("chat"));
      const message = `${kind} ${"x".repeat(20)}`;
      const started = Date.now();
      poisoner.ws.send(message);
      // Meanwhile, the other client keeps talking: each message is answered (none waits out the 10 s handler wait).
      let answered = 0;
      while (poisoner.closed === undefined && Date.now() - started < 15000) {
        other.ws.send(`hello ${answered}`);
        expect((await other.next(15000)).text).toBe(`echo hello ${answered}`);
        answered++;
        await sleep(20);
      }
      const closed = await poisoner.waitClosed(15000);
      const elapsed = Date.now() - started;
      const restarts = [...app.stderr.matchAll(/service "chat" (exited with code \d+|was killed by \w+); restarting/g)];
      console.log(
        `poison (${kind}, ${args.length ? "process" : "thread"}): ${restarts.length} restarts, client closed after ${elapsed} ms, other client answered ${answered} times`,
      );
      expect(closed).toEqual({
        code: 1011,
        reason: `message handler's service "chat" exited twice while handling this message`,
      });
      expect(restarts).toHaveLength(2);
      expect(answered).toBeGreaterThan(0);
      const lines = app.stderr.split("\n").filter((l) => l.includes("exited twice while handling"));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(
        new RegExp(
          `websocket "chat": service "chat" exited twice while handling a ${message.length}-byte message of connection \\S+, so that event is dropped; closed the connection with 1011$`,
        ),
      );
      // Afterwards: the other client is still answered, and a new client too, with no further restart.
      other.ws.send("after");
      expect((await other.next(15000)).text).toBe("echo after");
      const fresh = await connect(app.url("chat"));
      fresh.ws.send("new");
      expect((await fresh.next(15000)).text).toBe("echo new");
      expect(other.closed).toBeUndefined();
      await sleep(300);
      expect([...app.stderr.matchAll(/service "chat" .*; restarting/g)]).toHaveLength(2);
    },
    60000,
  );
});

describe("poison messages in a row", () => {
  it("restart their service after the first delay each time, not a growing backoff, and the other clients are answered", async () => {
    const app = await startApp(poisonProject());
    const other = await connect(app.url("chat"));
    for (let i = 0; i < 3; i++) {
      const poisoner = await connect(app.url("chat"));
      poisoner.ws.send(`die ${i}`);
      expect((await poisoner.waitClosed(15000)).code).toBe(1011);
      other.ws.send(`between ${i}`);
      expect((await other.next(15000)).text).toBe(`echo between ${i}`);
    }
    const delays = [...app.stderr.matchAll(/service "chat" exited with code 1; restarting in ([\d.]+) s/g)].map(
      (m) => m[1],
    );
    expect(delays).toEqual(["0.25", "0.25", "0.25", "0.25", "0.25", "0.25"]);
    expect(app.stderr.split("\n").filter((l) => l.includes("exited twice while handling"))).toHaveLength(3);
  }, 60000);

  it("answer a message that was in flight with a poison message, and drop only the poison one", async () => {
    const app = await startApp(poisonProject());
    const innocent = await connect(app.url("chat"));
    const poisoner = await connect(app.url("chat"));
    // Both reach the service in the same turn: the poison one kills it with the other unanswered.
    poisoner.ws.send("die now");
    innocent.ws.send("innocent");
    expect((await poisoner.waitClosed(15000)).code).toBe(1011);
    expect((await innocent.next(15000)).text).toBe("echo innocent");
    expect(innocent.closed).toBeUndefined();
  }, 60000);
});

/**
 * A service whose connect handler, for `?n=late`, runs past the handler timeout (2 s) and then
 * exits the process; its message handler answers "slow" after 1.5 s (within the timeout).
 */
function lateCrashProject(): string {
  return writeProject({
    "nitric-like.yaml": "name: late-crash\nservices:\n  - match: services/*.ts\nlimits:\n  handlerTimeout: 2s\n",
    "services/chat.ts": [
      'import { websocket } from "@nitric-like/sdk";',
      'const socket = websocket("chat");',
      'socket.on("connect", async (ctx) => {',
      '  if (ctx.query.n?.[0] === "late") {',
      "    await new Promise((r) => setTimeout(r, 3000));",
      "    process.exit(1);",
      "  }",
      "});",
      'socket.on("disconnect", () => {});',
      'socket.on("message", async (ctx) => {',
      "  await new Promise((r) => setTimeout(r, 1500));",
      '  return "echo " + ctx.text();',
      "});",
    ].join("\n"),
  });
}

describe("a handler past its timeout that kills its service", () => {
  it("is not blamed on a message tried beside it: the message's client is answered, and the late connect is dropped", async () => {
    const app = await startApp(lateCrashProject());
    const innocent = await connect(app.url("chat"));
    // Refused with 504 at the timeout; its handler runs on, and kills the service a second later.
    await expect(connect(`${app.url("chat")}?n=late`)).rejects.toMatchObject({ status: 504 });
    // In flight when the late handler kills the service: a suspect, as the late connect is.
    innocent.ws.send("slow");
    expect((await innocent.next(30000)).text).toBe("echo slow");
    expect(innocent.closed).toBeUndefined();
    const dropped = app.stderr.split("\n").filter((l) => l.includes("exited twice while handling"));
    expect(dropped).toEqual([expect.stringMatching(/exited twice while handling a connect event of connection/)]);
    expect(app.stderr).not.toMatch(/exited twice while handling a \d+-byte message/);
    expect([...app.stderr.matchAll(/service "chat" exited with code 1; restarting/g)]).toHaveLength(2);
  }, 60000);
});

/**
 * A service whose connect handler, for `?n=hang`, runs on long past the handler timeout (1 s), and
 * whose message handler exits the process on "die" and echoes anything else.
 */
function hangingConnectProject(): string {
  return writeProject({
    "nitric-like.yaml": "name: hang-beside\nservices:\n  - match: services/*.ts\nlimits:\n  handlerTimeout: 1s\n",
    "services/chat.ts": [
      'import { websocket } from "@nitric-like/sdk";',
      'const socket = websocket("chat");',
      'socket.on("connect", async (ctx) => {',
      '  if (ctx.query.n?.[0] === "hang") await new Promise((r) => setTimeout(r, 60000));',
      "});",
      'socket.on("disconnect", () => {});',
      'socket.on("message", (ctx) => {',
      '  if (ctx.text() === "die") process.exit(1);',
      '  return "echo " + ctx.text();',
      "});",
    ].join("\n"),
  });
}

describe("a poison message tried beside a handler past its timeout", () => {
  it("gets a third delivery, alone, and run says why in one line naming the late handler", async () => {
    const app = await startApp(hangingConnectProject());
    const other = await connect(app.url("chat"));
    const poisoner = await connect(app.url("chat"));
    // Refused with 504 at the timeout; its handler runs on.
    await expect(connect(`${app.url("chat")}?n=hang`)).rejects.toMatchObject({ status: 504 });
    // Kills the service with the late connect beside it: both are tried again, the connect first;
    // the message waits for it twice the timeout, then goes beside it and kills the service again.
    poisoner.ws.send("die");
    const closed = await poisoner.waitClosed(30000);
    expect(closed).toEqual({
      code: 1011,
      reason: `message handler's service "chat" exited twice while handling this message`,
    });
    const lines = app.stderr.split("\n");
    const excused = lines.filter((l) => l.includes("handlers past the handler timeout still ran beside it"));
    expect(excused).toEqual([
      expect.stringMatching(
        /websocket "chat": service "chat" exited again with a 3-byte message of connection \S+ in flight, but handlers past the handler timeout still ran beside it and may have caused that \(the connect handler of connection \S+\); so that event is tried once more, alone, and dropped if the service dies again$/,
      ),
    ]);
    expect(lines.filter((l) => /exited twice while handling a 3-byte message/.test(l))).toHaveLength(1);
    // Three deaths: the first, the one beside the late connect, and the third delivery's, alone.
    expect([...app.stderr.matchAll(/service "chat" exited with code 1; restarting/g)]).toHaveLength(3);
    other.ws.send("still here");
    expect((await other.next(10000)).text).toBe("echo still here");
  }, 60000);
});
