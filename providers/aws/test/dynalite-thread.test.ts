// dynalite on a thread of its own, as `run --provider aws` serves it (startDynaliteThread): the
// built module (dist/), since the thread loads dynalite-thread.js beside it.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { threadId } from "node:worker_threads";
import { GetItemCommand, ListTablesCommand, PutItemCommand } from "@aws-sdk/client-dynamodb";
import { afterEach, expect, it } from "vitest";
import { type RunningDynaliteThread, startDynaliteThread } from "../dist/emulator/index.js";
import { CREDENTIALS, createTable, ENV, sdkDynamo } from "./helpers.js";

const HINT = "sign it with the test's credentials";
let dir: string | undefined;
let db: RunningDynaliteThread | undefined;
const lines: string[] = [];
const logger = {
  info: (l: string) => lines.push(l),
  warn: (l: string) => lines.push(l),
  error: (l: string) => lines.push(l),
};

afterEach(async () => {
  await db?.close();
  db = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
  lines.length = 0;
});

async function start(): Promise<RunningDynaliteThread> {
  dir = mkdtempSync(join(tmpdir(), "nitric-like-dynalite-thread-"));
  db = await startDynaliteThread(dir, { credentials: CREDENTIALS, region: ENV.AWS_REGION, hint: HINT, logger });
  return db;
}

it("serves signed requests from a thread of its own, refuses unsigned ones with the hint, and ends its thread on close", async () => {
  const running = await start();
  expect(running.worker.threadId).not.toBe(threadId);
  const sdk = sdkDynamo(running.endpoint);
  try {
    await createTable(sdk, "items", "p", "s");
    await sdk.send(
      new PutItemCommand({ TableName: "items", Item: { p: { S: "a" }, s: { S: "1" }, v: { S: "kept" } } }),
    );
    const got = await sdk.send(new GetItemCommand({ TableName: "items", Key: { p: { S: "a" }, s: { S: "1" } } }));
    expect(got.Item?.v?.S).toBe("kept");
  } finally {
    sdk.destroy();
  }
  const unsigned = await fetch(running.endpoint, {
    method: "POST",
    headers: { "x-amz-target": "DynamoDB_20120810.ListTables", "content-type": "application/x-amz-json-1.0" },
    body: "{}",
  });
  expect(unsigned.status).toBe(400);
  expect(((await unsigned.json()) as { message: string }).message).toMatch(new RegExp(`; ${HINT}$`));

  const ended = new Promise<number>((resolve) => running.worker.once("exit", resolve));
  await running.close();
  db = undefined;
  await ended;
  await expect(fetch(running.endpoint, { method: "POST", body: "{}" })).rejects.toThrow();
});

it("starts a thread that ended again on the same port, with the tables on disk, and says so", async () => {
  const running = await start();
  const sdk = sdkDynamo(running.endpoint);
  try {
    await createTable(sdk, "items", "p", "s");
    await sdk.send(new PutItemCommand({ TableName: "items", Item: { p: { S: "a" }, s: { S: "1" } } }));
    const first = running.worker;
    await first.terminate();
    const deadline = Date.now() + 10_000;
    while (running.worker === first || !lines.some((l) => l.startsWith("dynalite stopped"))) {
      if (Date.now() > deadline) throw new Error(`not started again within 10 s; logged: ${lines.join(" | ")}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(lines).toContainEqual(`dynalite stopped: exit code 1; starting it again on ${running.endpoint}`);
    // The new thread listens on the endpoint the functions were given; the table is still there.
    let tables: string[] | undefined;
    while (!tables) {
      if (Date.now() > deadline) throw new Error("the new thread does not answer within 10 s");
      tables = await sdk.send(new ListTablesCommand({})).then(
        (out) => out.TableNames,
        () => undefined,
      );
    }
    expect(tables).toEqual(["items"]);
    const got = await sdk.send(new GetItemCommand({ TableName: "items", Key: { p: { S: "a" }, s: { S: "1" } } }));
    expect(got.Item?.p?.S).toBe("a");
  } finally {
    sdk.destroy();
  }
});

it("says so when a thread that ended cannot start again (its port taken meanwhile), and still closes", async () => {
  const running = await start();
  const { port } = new URL(running.endpoint);
  const first = running.worker;
  await first.terminate();
  // The port, taken before the new thread can listen on it.
  const squatter = createServer();
  await new Promise<void>((resolve, reject) => {
    squatter.once("error", reject);
    squatter.listen(Number(port), "127.0.0.1", resolve);
  });
  try {
    const deadline = Date.now() + 10_000;
    while (!lines.some((l) => l.startsWith("dynalite could not start again"))) {
      if (Date.now() > deadline) throw new Error(`no line within 10 s; logged: ${lines.join(" | ")}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(lines.find((l) => l.startsWith("dynalite could not start again"))).toMatch(/EADDRINUSE/);
    const closed = running.close().then(() => "closed");
    expect(await Promise.race([closed, new Promise((r) => setTimeout(() => r("hung"), 3000))])).toBe("closed");
    db = undefined;
  } finally {
    await new Promise((r) => squatter.close(r));
  }
});

// dynalite listened on a store LevelDB could not open and failed every request with "Database is
// closed", ending its thread again and again: run --provider aws then died as a bug (exit 70).
it("refuses to start on a store LevelDB cannot open, naming the folder and the way out, or who holds it", async () => {
  dir = mkdtempSync(join(tmpdir(), "nitric-like-dynalite-thread-"));
  const store = join(dir, "aws-dynamodb");
  const options = { credentials: CREDENTIALS, region: ENV.AWS_REGION, hint: HINT, logger };
  // A store that another process holds: a second thread on the same folder cannot take its lock.
  db = await startDynaliteThread(store, options);
  const held = await startDynaliteThread(store, options).then(
    () => undefined,
    (error: Error & { userFacing?: boolean }) => error,
  );
  expect(held?.userFacing).toBe(true);
  expect(held?.message).toMatch(
    new RegExp(
      `^dynalite: its tables in "${store}" are held by another process \\(.*LOCK.*\\); stop it and run again$`,
    ),
  );
  await db.close();
  db = undefined;
  // A store whose CURRENT file names no manifest (overwritten, or cut short).
  writeFileSync(join(store, "CURRENT"), "MANIFEST-999999\n");
  const damaged = await startDynaliteThread(store, options).then(
    () => undefined,
    (error: Error & { userFacing?: boolean }) => error,
  );
  expect(damaged?.userFacing).toBe(true);
  expect(damaged?.message).toMatch(
    new RegExp(
      `^dynalite: its tables in "${store}" cannot be opened \\(.*MANIFEST-999999.*\\); move the folder away to start with empty tables \\(mv "${store}" "${store}\\.damaged"\\)$`,
    ),
  );
  expect(lines).toEqual([]);
});
