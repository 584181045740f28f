// Room broadcasts on AWS, simulated as aws-broadcast.test.ts does the socket's: the app built with
// `nitric-like build --provider aws` runs in the emulator, the connections table (records and
// membership items) in dynalite, and the socket's Management API is a double that answers 410 for
// gone connections. A room broadcast takes the socket broadcast's path, reading the room's members.
import { join } from "node:path";
import { type Emulator, type ManagementDouble, startDynalite } from "@nitric-like/provider-aws/emulator";
import { DynamoDbClient } from "@nitric-like/provider-aws/runtime";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { CALLER, simulateSocket } from "../src/aws-sim.js";
import { cleanTemp, runCli, writeProject } from "../src/harness.js";

const SERVICE = `import { websocket } from "@nitric-like/sdk";

const socket = websocket("room");
socket.on("connect", () => {});
socket.on("disconnect", () => {});
socket.on("message", async (ctx) => {
  const cmd = ctx.json();
  if (cmd.op === "join-all") {
    let next = 0;
    const worker = async () => {
      while (next < cmd.ids.length) await socket.join(cmd.ids[next++], cmd.room);
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    return JSON.stringify({ ok: true });
  }
  if (cmd.op === "members") return JSON.stringify({ ids: await socket.members(cmd.room) });
  if (cmd.op === "rooms") return JSON.stringify({ rooms: await socket.rooms(cmd.id) });
  const sent = await socket.room(cmd.room).broadcast("to the room", { except: [ctx.connectionId, ...cmd.except] });
  return JSON.stringify({ sent });
});
`;

let out: string;
let dynamo: { endpoint: string; close(): Promise<void> };
const started: { emulator: Emulator; double: ManagementDouble }[] = [];

beforeAll(async () => {
  const project = writeProject({
    "nitric-like.yaml": "name: rooms-fanout\nservices:\n  - match: services/*.ts\n",
    "services/room.ts": SERVICE,
  });
  out = join(project, "out");
  const built = await runCli(["build", project, "--provider", "aws", "--out", out, "--plain"]);
  expect(built.code, built.stderr).toBe(0);
  dynamo = await startDynalite();
}, 60_000);

afterEach(async () => {
  for (const s of started.splice(0)) {
    await s.emulator.stop();
    await s.double.close();
  }
});

afterAll(async () => {
  await dynamo?.close();
  cleanTemp();
});

async function simulate(stack: string, ids: string[], gone: string[], env: Record<string, string> = {}) {
  const sim = await simulateSocket({
    buildDir: out,
    dynamodbEndpoint: dynamo.endpoint,
    stack,
    connected: ids,
    double: { perSecond: 10_000, gone },
    env,
  });
  const { management, lines } = sim;
  started.push({ emulator: sim.emulator, double: management });
  const call = async (cmd: object) => JSON.parse(await sim.send(JSON.stringify(cmd))) as Record<string, unknown>;
  return { management, lines, call };
}

async function until(what: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!what() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}

const idsOf = (n: number, prefix: string) =>
  Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(10, "0")}=`);

describe("room broadcast on AWS, simulated", () => {
  it("fans a room of 300 out in pages to its members only, but the excepted, and prunes the 410s from the room", async () => {
    const ids = idsOf(500, "Room");
    const members = ids.slice(0, 300);
    const outsiders = ids.slice(300);
    const gone = members.filter((_, i) => i % 20 === 3); // 15
    const except = members.filter((_, i) => i % 60 === 5); // 5
    const sim = await simulate("roomfan", ids, gone, { NITRIC_LIKE_BROADCAST_PAGE_SIZE: "50" });
    expect(await sim.call({ op: "join-all", ids: members, room: "blue" })).toEqual({ ok: true });

    const { sent } = (await sim.call({ op: "broadcast", room: "blue", except })) as { sent: number };
    // Over 100 members: handed to page invocations, so `sent` counts what was handed over.
    expect(sent).toBe(members.length - except.length);
    const expected = members.filter((id) => !gone.includes(id) && !except.includes(id));
    await until(() => sim.management.delivered() >= expected.length, 30_000);
    await new Promise((r) => setTimeout(r, 500)); // a frame posted twice would arrive by now
    expect(sim.management.delivered()).toBe(expected.length);
    for (const id of expected) expect(sim.management.received.get(id)).toBe(1);
    for (const id of [...outsiders, ...except, CALLER]) expect(sim.management.received.has(id)).toBe(false);
    expect(sim.management.goneAnswers()).toBe(gone.length);
    expect(sim.lines.join("\n")).toMatch(/page \d+: delivered \d+ of 50 frame\(s\)/);

    // The gone connections left the room with their records.
    let after = { ids: [] as string[] };
    const pruned = members.length - gone.length;
    for (let i = 0; i < 50 && after.ids.length !== pruned; i++) {
      after = (await sim.call({ op: "members", room: "blue" })) as { ids: string[] };
      if (after.ids.length !== pruned) await new Promise((r) => setTimeout(r, 100));
    }
    expect(after.ids.sort()).toEqual(members.filter((id) => !gone.includes(id)).sort());
    expect(await sim.call({ op: "rooms", id: gone[0] })).toEqual({ rooms: [] });
    expect(await sim.call({ op: "rooms", id: expected[0] })).toEqual({ rooms: ["blue"] });
  }, 90_000);

  it("posts a room broadcast to at most 100 members from the calling function, pruning the 410s, a membership left without its record too", async () => {
    const ids = idsOf(40, "Few");
    const orphan = "OrphanConnId0=";
    const gone = [...ids.slice(0, 4), orphan];
    const sim = await simulate("roominline", ids, gone);
    await sim.call({ op: "join-all", ids: ids.slice(0, 30), room: "small" });
    // A join that raced its connection's disconnect: the membership item outlived the record.
    await new DynamoDbClient({
      AWS_REGION: "us-east-1",
      AWS_ACCESS_KEY_ID: "x",
      AWS_SECRET_ACCESS_KEY: "x",
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
    }).putItem({
      TableName: "roominline-ConnectionsTable",
      Item: {
        socket: { S: "room#small" },
        id: { S: orphan },
        expiresAt: { N: String(Math.floor(Date.now() / 1000) + 600) },
      },
    });
    expect(((await sim.call({ op: "members", room: "small" })) as { ids: string[] }).ids).toContain(orphan);
    expect(await sim.call({ op: "broadcast", room: "small", except: [] })).toEqual({ sent: 26 });
    expect(sim.management.delivered()).toBe(26);
    expect(sim.management.goneAnswers()).toBe(5);
    expect(sim.lines.join("\n")).not.toMatch(/asynchronous invocation/);
    const after = (await sim.call({ op: "members", room: "small" })) as { ids: string[] };
    expect(after.ids.length).toBe(26);
  }, 60_000);
});
