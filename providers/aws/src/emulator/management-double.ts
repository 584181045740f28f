/**
 * A stand-in for API Gateway's Management API under load, on 127.0.0.1, for simulating broadcasts
 * at scale (bench/aws-broadcast.mjs and the broadcast tests): each PostToConnection is answered
 * after `latencyMs` (AWS: ~15 ms), at most `perSecond` are accepted per second (the account's
 * 10,000 requests/s; a token bucket holding one second's worth unless `burst` says otherwise) and the rest are answered 429
 * `LimitExceededException`; ids in `gone` answer 410 `GoneException`. It counts the frames each
 * id got. Point a function's NITRIC_LIKE_WEBSOCKETS endpoint at `url` + `/live`.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { BatchWriteItemCommand, DynamoDBClient } from "@aws-sdk/client-dynamodb";
import type { Credentials } from "../aws/signer.js";

/** Options of the double. */
export interface ManagementDoubleOptions {
  /** How long each answer takes. @default 15 */
  latencyMs?: number;
  /** Accepted PostToConnection calls per second, over all callers. @default 10000 */
  perSecond?: number;
  /** The most calls accepted at once after a quiet spell (the bucket's size). @default perSecond */
  burst?: number;
  /** Ids that answer 410. */
  gone?: Iterable<string>;
}

/** A running double. */
export interface ManagementDouble {
  /** `http://127.0.0.1:<port>`; the stage's endpoint is `${url}/live`. */
  url: string;
  /** Frames each id got. */
  readonly received: Map<string, number>;
  /** Posts that got a frame (200). */
  delivered(): number;
  /** 429s answered. */
  throttled(): number;
  /** 410s answered. */
  goneAnswers(): number;
  /** The time (Date.now()) of the last delivered frame. */
  lastDeliveredAt(): number;
  /** The most posts that were in flight at once. */
  peakInFlight(): number;
  /** Forgets the counts (not the gone ids). */
  reset(): void;
  close(): Promise<void>;
}

/** Starts the double. */
export async function startManagementDouble(options: ManagementDoubleOptions = {}): Promise<ManagementDouble> {
  const latency = options.latencyMs ?? 15;
  const rate = options.perSecond ?? 10_000;
  const burst = options.burst ?? rate;
  const gone = new Set(options.gone ?? []);
  const received = new Map<string, number>();
  let delivered = 0;
  let throttled = 0;
  let goneAnswers = 0;
  let last = 0;
  let inFlight = 0;
  let peak = 0;
  let tokens = burst;
  let refilled = Date.now();
  const take = (): boolean => {
    const now = Date.now();
    tokens = Math.min(burst, tokens + ((now - refilled) * rate) / 1000);
    refilled = now;
    if (tokens < 1) return false;
    tokens -= 1;
    return true;
  };
  const server: Server = createServer((req, res) => {
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      // A frame is at most 128 KB; anything larger is not a Management API call.
      if (size > 256 * 1024) req.destroy();
    });
    req.on("end", () => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      const path = new URL(req.url ?? "/", "http://x").pathname;
      const m = /^\/[^/]+\/@connections\/([^/]+)$/.exec(path);
      const id = m ? decodeURIComponent(m[1] as string) : undefined;
      const admitted = take();
      setTimeout(() => {
        inFlight--;
        if (!id || req.method !== "POST") {
          res.writeHead(404, { "content-type": "application/json" }).end('{"message":"not found"}');
        } else if (!admitted) {
          throttled++;
          res
            .writeHead(429, { "content-type": "application/json", "x-amzn-errortype": "LimitExceededException" })
            .end('{"message":"Too Many Requests"}');
        } else if (gone.has(id)) {
          goneAnswers++;
          res
            .writeHead(410, { "content-type": "application/json", "x-amzn-errortype": "GoneException" })
            .end(JSON.stringify({ message: `Connection ${id} is gone` }));
        } else {
          delivered++;
          last = Date.now();
          received.set(id, (received.get(id) ?? 0) + 1);
          res.writeHead(200).end();
        }
      }, latency);
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    delivered: () => delivered,
    throttled: () => throttled,
    goneAnswers: () => goneAnswers,
    lastDeliveredAt: () => last,
    peakInFlight: () => peak,
    reset: () => {
      received.clear();
      delivered = 0;
      throttled = 0;
      goneAnswers = 0;
      last = 0;
      peak = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * Writes connection records (as the runtime's `$connect` does, without headers) straight into a
 * connections table, connected a minute before now unless `connectedAt` says when (a record younger
 * than OPENING_GRACE_MS is not pruned on a 410: it may be opening).
 */
export async function seedConnections(
  dynamodb: { endpoint: string; credentials: Credentials; region?: string },
  table: string,
  socket: string,
  ids: readonly string[],
  connectedAt = Date.now() - 60_000,
): Promise<void> {
  const client = new DynamoDBClient({ region: "us-east-1", ...dynamodb });
  const now = Date.now();
  const batches: (typeof ids)[] = [];
  for (let i = 0; i < ids.length; i += 25) batches.push(ids.slice(i, i + 25));
  let next = 0;
  const worker = async () => {
    while (next < batches.length) {
      const batch = batches[next++] as string[];
      let items = batch.map((id) => ({
        PutRequest: {
          Item: {
            socket: { S: socket },
            id: { S: id },
            connectedAt: { N: String(connectedAt) },
            query: { S: "{}" },
            headers: { S: "{}" },
            remoteAddress: { S: "192.0.2.1" },
            expiresAt: { N: String(Math.floor(now / 1000) + 7500) },
          },
        },
      }));
      while (items.length > 0) {
        const out = await client.send(new BatchWriteItemCommand({ RequestItems: { [table]: items } }));
        items = (out.UnprocessedItems?.[table] ?? []) as typeof items;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: 8 }, worker));
  } finally {
    client.destroy();
  }
}
