// `compat: aws` in the project file: the local gateway keeps API Gateway's rules as the AWS
// emulator does (a client's binary frame closes it with 1003, a frame over 32 KB with 1009, a
// message over 128 KB with 1009, sends and broadcasts over 128 KB refused with the AWS runtime's
// error), for real ws clients; without the switch none of them applies.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Connections } from "@nitric-like/contracts/connections";
import { Websocket } from "@nitric-like/contracts/websockets";
import { Code } from "@nitric-like/rpc";
import { loadProject } from "@nitric-like/spec";
import { afterEach, describe, expect, it } from "vitest";
import type WebSocket from "ws";
import { cleanup, closed, nextMessage, open } from "./helpers.js";
import { destroyRaw, type EchoWorld, echoWorld, frame, rawWs, stillUpAndOthersFine } from "./raw.js";

const dirs: string[] = [];
afterEach(async () => {
  destroyRaw();
  await cleanup();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const KB = 1024;
const BINARY = "binary frames are not accepted (as on API Gateway); send bytes as text, such as base64";
const LARGE = `frame too big: at most ${32 * KB} bytes a frame (as on API Gateway); send larger messages in fragments`;
const TOO_LARGE = 'websocket "echo": the message is too large for API Gateway (at most 128 KB); send less';

/** An echo world whose project file says `compat: aws` (read by the real loader). */
function awsWorld(limits = "  maxMessageBytes: 1MB\n"): Promise<EchoWorld> {
  const dir = mkdtempSync(join(tmpdir(), "nitric-like-aws-rules-"));
  dirs.push(dir);
  writeFileSync(
    join(dir, "nitric-like.yaml"),
    `name: rules\nservices:\n  - match: services/*.ts\nlimits:\n${limits}compat: aws\n`,
  );
  return echoWorld({ project: loadProject(dir) });
}

/** Sends `text` in fragments of `size` characters. */
function sendInFragments(ws: WebSocket, text: string, size: number): void {
  for (let at = 0; at < text.length; at += size)
    ws.send(text.slice(at, at + size), { binary: false, fin: at + size >= text.length });
}

async function echoes(ws: WebSocket, data: string | Buffer): Promise<{ data: Buffer; binary: boolean }> {
  const got = nextMessage(ws);
  ws.send(data);
  return got;
}

describe("compat: aws keeps API Gateway's rules locally", () => {
  it("closes a client that sends a binary frame with 1003 before the message handler sees it, and serves everyone else", async () => {
    const world = await awsWorld();
    const ws = await open(world.url);
    let echoed = false;
    ws.on("message", () => {
      echoed = true;
    });
    const done = closed(ws);
    ws.send(Buffer.from([0, 255, 1]));
    expect(await done).toEqual({ code: 1003, reason: BINARY });
    expect(echoed).toBe(false);
    expect(world.logs.warn.some((l) => l.includes("(1003)"))).toBe(true);
    expect(
      world.logs.info.some((l) => l.startsWith("compat: aws: the websocket gateways keep API Gateway's rules")),
    ).toBe(true);
    // Bytes as base64 text go through.
    expect((await echoes(world.bystander, "AP8B")).data.toString()).toBe("AP8B");
    await stillUpAndOthersFine(world);
  });

  it("handles the messages a client sent ahead of its binary frame in the same chunk, and none after it", async () => {
    const world = await awsWorld();
    const raw = await rawWs(world.url);
    const texts = () =>
      world.messages.events.map((e) =>
        e.websocketEvent.case === "message" ? Buffer.from(e.websocketEvent.value.body).toString() : "",
      );
    // One write, so one chunk: the binary frame's header is read before ws parses the text ahead of it.
    raw.write(Buffer.concat([frame(1, "first"), frame(1, "second"), frame(2, Buffer.from([1])), frame(1, "after")]));
    expect(await raw.closed).toEqual({ code: 1003, reason: BINARY });
    await expect.poll(texts).toEqual(["first", "second"]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(texts()).toEqual(["first", "second"]);
    await stillUpAndOthersFine(world);
  });

  it("takes a 32 KB frame and a 128 KB message in 32 KB fragments, and closes a frame over 32 KB with 1009", async () => {
    const world = await awsWorld();
    const ws = await open(world.url);
    expect((await echoes(ws, "a".repeat(32 * KB))).data.length).toBe(32 * KB);
    const whole = nextMessage(ws);
    sendInFragments(ws, "b".repeat(128 * KB), 32 * KB);
    expect((await whole).data.toString()).toBe("b".repeat(128 * KB));
    const done = closed(ws);
    ws.send("c".repeat(32 * KB + 1));
    expect(await done).toEqual({ code: 1009, reason: LARGE });
    await stillUpAndOthersFine(world);
  });

  it("closes a message over 128 KB with 1009 even in fragments of 32 KB, whatever the project's maxMessageBytes", async () => {
    const world = await awsWorld();
    const ws = await open(world.url);
    const done = closed(ws);
    sendInFragments(ws, "d".repeat(128 * KB + 32 * KB), 32 * KB);
    expect((await done).code).toBe(1009);
  });

  it("refuses a send or broadcast over 128 KB with the AWS runtime's error, and delivers one of 128 KB", async () => {
    const world = await awsWorld();
    const ws = await open(world.url);
    const id = world.connects.events[1]?.connectionId ?? "";
    const big = new Uint8Array(128 * KB + 1).fill(0x78);
    await expect(
      world.client.unary(Websocket.method.sendMessage, { socketName: "echo", connectionId: id, data: big }),
    ).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, details: TOO_LARGE });
    await expect(
      world.client.unary(Connections.method.broadcast, { socketName: "echo", data: big, binary: false, except: [] }),
    ).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, details: TOO_LARGE });
    const got = nextMessage(ws);
    await world.client.unary(Websocket.method.sendMessage, {
      socketName: "echo",
      connectionId: id,
      data: big.subarray(1),
    });
    expect((await got).data.length).toBe(128 * KB);
    // Server-to-client binary works on AWS, so it does here.
    const bytes = nextMessage(ws);
    await world.client.unary(Websocket.method.sendMessage, {
      socketName: "echo",
      connectionId: id,
      data: new Uint8Array([0, 255]),
      binary: true,
    });
    expect(await bytes).toEqual({ data: Buffer.from([0, 255]), binary: true });
  });

  it("times handlers out at 28 s at most, a second under API Gateway's integration timeout, whatever handlerTimeout says", async () => {
    const capped = await awsWorld("  handlerTimeout: 45s\n");
    expect((await capped.provider.inspect.limits()).echo?.handlerTimeoutMs).toBe(28_000);
    expect(capped.logs.info.join("\n")).toContain("handlers time out at 28 s at most");
    const shorter = await awsWorld("  handlerTimeout: 10s\n");
    expect((await shorter.provider.inspect.limits()).echo?.handlerTimeoutMs).toBe(10_000);
    // Without the switch the project's 45 s holds.
    const dir = mkdtempSync(join(tmpdir(), "nitric-like-aws-rules-"));
    dirs.push(dir);
    writeFileSync(
      join(dir, "nitric-like.yaml"),
      "name: rules\nservices:\n  - match: services/*.ts\nlimits:\n  handlerTimeout: 45s\n",
    );
    const plain = await echoWorld({ project: loadProject(dir) });
    expect((await plain.provider.inspect.limits()).echo?.handlerTimeoutMs).toBe(45_000);
  });

  it("keeps none of them without the switch: binary frames, 64 KB frames and 256 KB sends pass", async () => {
    const world = await echoWorld({ limits: { maxMessageBytes: 512 * KB } });
    const ws = await open(world.url);
    expect(await echoes(ws, Buffer.from([0, 255, 1]))).toEqual({ data: Buffer.from([0, 255, 1]), binary: true });
    expect((await echoes(ws, "e".repeat(64 * KB))).data.length).toBe(64 * KB);
    const got = nextMessage(ws);
    await world.client.unary(Websocket.method.sendMessage, {
      socketName: "echo",
      connectionId: world.connects.events[1]?.connectionId ?? "",
      data: new Uint8Array(256 * KB).fill(0x78),
    });
    expect((await got).data.length).toBe(256 * KB);
  });
});
