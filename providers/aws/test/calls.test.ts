// The deploy commands' AWS request timeouts (src/deploy/calls.ts) with a real S3 client and real
// servers on 127.0.0.1: a limit on silence, which a slow upload that keeps sending never meets,
// and which a server that takes the request and stops reading does.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { afterEach, describe, expect, it } from "vitest";
import { callTimeouts, clientConfig } from "../src/deploy/calls.js";

const saved = { ...process.env };
const servers: Server[] = [];
afterEach(async () => {
  process.env = { ...saved };
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

/** An S3 stand-in that reads a PUT's body at `bytesPerSecond` (none at all when 0), then answers. */
async function slowS3(bytesPerSecond: number): Promise<{ url: string; read: () => number }> {
  let read = 0;
  const server = createServer((req, res) => {
    if (bytesPerSecond === 0) {
      req.pause();
      return;
    }
    req.on("data", (chunk: Buffer) => {
      read += chunk.length;
      req.pause();
      setTimeout(() => req.resume(), (chunk.length / bytesPerSecond) * 1000);
    });
    req.on("end", () => res.writeHead(200, { etag: '"x"' }).end());
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, read: () => read };
}

function s3(url: string): S3Client {
  return new S3Client({
    ...clientConfig("us-east-1", callTimeouts("NITRIC_LIKE_AWS_TIMEOUT_MS", { connectMs: 10_000, idleMs: 60_000 })),
    endpoint: url,
    forcePathStyle: true,
    credentials: { accessKeyId: "x", secretAccessKey: "x" },
    maxAttempts: 1,
  });
}

describe("AWS request timeouts of the deploy commands", () => {
  it("never cuts an upload that keeps sending, however long it takes, and cuts one the other end stops reading", async () => {
    process.env.NITRIC_LIKE_AWS_TIMEOUT_MS = "5000";
    // 16 MB read at 2 MB/s: 8 s in all, longer than the limit. (Loopback buffers megabytes that
    // the other end then reads in silence; a real link buffers far less, so far less is needed.)
    const slow = await slowS3(2 * 1024 * 1024);
    const client = s3(slow.url);
    const started = Date.now();
    try {
      await client.send(new PutObjectCommand({ Bucket: "b", Key: "k", Body: Buffer.alloc(16 * 1024 * 1024, 7) }));
    } finally {
      client.destroy();
    }
    expect(Date.now() - started).toBeGreaterThan(5000);
    expect(slow.read()).toBe(16 * 1024 * 1024);

    process.env.NITRIC_LIKE_AWS_TIMEOUT_MS = "500";
    const stopped = await slowS3(0);
    const cut = s3(stopped.url);
    const at = Date.now();
    try {
      await expect(
        cut.send(new PutObjectCommand({ Bucket: "b", Key: "k", Body: Buffer.alloc(1024 * 1024, 7) })),
      ).rejects.toMatchObject({ name: "TimeoutError" });
    } finally {
      cut.destroy();
    }
    expect(Date.now() - at).toBeLessThan(10_000);
  }, 60_000);
});
