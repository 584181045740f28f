// How the runtime retries its AWS calls, against real servers on 127.0.0.1 that throttle, fail
// and hang: the SDK's standard mode (attempts, backoff, Retry-After, the retry quota) and the
// per-attempt timeouts.
import { spawn } from "node:child_process";
import { createServer, type ServerResponse } from "node:http";
import { type AddressInfo, connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_TIMEOUTS } from "../src/aws/http.js";
import {
  AwsError,
  backoffDelay,
  type RetryPolicy,
  RetryQuota,
  retryAfterMs,
  STANDARD_RETRY,
  sendSigned,
} from "../src/aws/request.js";
import { type Answer, cleanup, ENV, FAST_RETRY, loopback } from "./helpers.js";

afterEach(cleanup);

function call(url: string, policy: RetryPolicy) {
  return sendSigned(
    { ...ENV },
    { service: "dynamodb", method: "POST", url: new URL(url), headers: { "x-amz-target": "T" }, body: "{}" },
    policy,
  );
}

/** Answers from the list, the last one again once the list runs out. */
function answers(...list: Answer[]) {
  let i = 0;
  return () => list[Math.min(i++, list.length - 1)] as Answer;
}

const THROTTLED: Answer = {
  status: 400,
  body: JSON.stringify({ __type: "com.amazonaws.dynamodb.v20120810#ThrottlingException", message: "slow down" }),
};

describe("retries as the SDK's standard mode", () => {
  it("makes three attempts in all by default, then throws the last answer's error", async () => {
    expect(STANDARD_RETRY.attempts).toBe(3);
    const server = await loopback(() => ({ status: 503, body: "{}" }));
    const error = await call(server.url, { ...FAST_RETRY, quota: new RetryQuota() }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AwsError);
    expect((error as AwsError).statusCode).toBe(503);
    expect(server.requests).toHaveLength(3);
  });

  it("does not retry what the SDK does not (a 400 that is not throttling)", async () => {
    const server = await loopback(() => ({ status: 400, body: JSON.stringify({ __type: "ValidationException" }) }));
    await expect(call(server.url, { ...FAST_RETRY, quota: new RetryQuota() })).rejects.toThrow();
    expect(server.requests).toHaveLength(1);
  });

  it("draws each wait at random up to base × 2^retry, and never more than 20 s", () => {
    const high = () => 0.999999;
    expect(backoffDelay("transient", 0, STANDARD_RETRY, high)).toBe(99);
    expect(backoffDelay("transient", 1, STANDARD_RETRY, high)).toBe(199);
    expect(backoffDelay("throttling", 0, STANDARD_RETRY, high)).toBe(499);
    expect(backoffDelay("throttling", 3, STANDARD_RETRY, high)).toBe(3999);
    expect(backoffDelay("throttling", 10, STANDARD_RETRY, high)).toBe(19999);
    expect(backoffDelay("transient", 30, STANDARD_RETRY, high)).toBe(19999);
    expect(backoffDelay("throttling", 10, STANDARD_RETRY, () => 0)).toBe(0);
  });

  it("honours Retry-After in seconds: the retry waits for it", async () => {
    const server = await loopback(
      answers({ ...THROTTLED, headers: { "retry-after": "1" } }, { status: 200, body: "{}" }),
    );
    const started = Date.now();
    await call(server.url, { ...FAST_RETRY, quota: new RetryQuota() });
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(server.requests).toHaveLength(2);
  });

  it("honours x-amz-retry-after in milliseconds and Retry-After as an HTTP date", async () => {
    const server = await loopback(
      answers({ status: 503, headers: { "x-amz-retry-after": "400" } }, { status: 200, body: "{}" }),
    );
    const started = Date.now();
    await call(server.url, { ...FAST_RETRY, quota: new RetryQuota() });
    expect(Date.now() - started).toBeGreaterThanOrEqual(380);
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(retryAfterMs({ "retry-after": "Thu, 01 Jan 2026 00:00:02 GMT" }, now)).toBe(2000);
    expect(retryAfterMs({ "retry-after": "0.5" }, now)).toBe(500);
    expect(retryAfterMs({ "retry-after": "soon" }, now)).toBeUndefined();
  });

  it("waits no longer than the backoff plus the slack, whatever Retry-After asks (the SDK's 5 s)", async () => {
    const server = await loopback(answers({ ...THROTTLED, headers: { "retry-after": "3600" } }, { status: 200 }));
    const started = Date.now();
    await call(server.url, { ...FAST_RETRY, retryAfterSlackMs: 300, quota: new RetryQuota() });
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(280);
    expect(waited).toBeLessThan(2000);
  });
});

describe("the retry quota", () => {
  it("is a bucket of 500: 5 a retry, refused when empty, 1 back for a success without retries", async () => {
    const quota = new RetryQuota();
    let failing = true;
    const server = await loopback(() => (failing ? { status: 500, body: "{}" } : { status: 200, body: "{}" }));
    const policy = { ...FAST_RETRY, quota };
    // Each failed call makes 2 retries: 10 tokens.
    for (let i = 0; i < 50; i++) await expect(call(server.url, policy)).rejects.toThrow();
    expect(server.requests).toHaveLength(150);
    expect(quota.available).toBe(0);
    // Nothing left: the next call fails after its first attempt.
    await expect(call(server.url, policy)).rejects.toThrow();
    expect(server.requests).toHaveLength(151);
    failing = false;
    await call(server.url, policy);
    expect(quota.available).toBe(1);
  });

  it("gives a success after a retry its retry's tokens back", async () => {
    const quota = new RetryQuota();
    for (let i = 0; i < 10; i++) quota.take(false);
    expect(quota.available).toBe(450);
    const server = await loopback(answers({ status: 503 }, { status: 200, body: "{}" }));
    await call(server.url, { ...FAST_RETRY, quota });
    expect(server.requests).toHaveLength(2);
    expect(quota.available).toBe(450);
  });
});

/** A server that never answers the first `hang` requests and answers 200 after. */
async function hanging(hang: number) {
  const pending: ServerResponse[] = [];
  let count = 0;
  const server = createServer((req, res) => {
    req.resume();
    if (count++ < hang) pending.push(res);
    else res.writeHead(200).end("{}");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests: () => count,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * A port whose connections never open: a process listening with a backlog of 1 that then blocks
 * its event loop, so it accepts nothing; once two connections fill the queue, the kernel drops
 * the next ones' SYNs and their connect hangs.
 */
async function unconnectable() {
  const child = spawn(process.execPath, [
    "-e",
    `const s = require("node:net").createServer(); s.listen({ port: 0, host: "127.0.0.1", backlog: 1 }, () =>
      process.stdout.write(s.address().port + "\\n", () => { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 30000); process.exit(0); }));`,
  ]);
  const port = await new Promise<number>((resolve) =>
    child.stdout.once("data", (d) => resolve(Number(String(d).trim()))),
  );
  const fillers: Socket[] = [];
  for (let opened = 0; opened < 2; ) {
    const socket = connect(port, "127.0.0.1");
    fillers.push(socket);
    socket.on("error", () => {});
    if (
      await new Promise<boolean>((resolve) => {
        socket.once("connect", () => resolve(true));
        setTimeout(() => resolve(false), 500);
      })
    )
      opened++;
    else break;
  }
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => {
      for (const f of fillers) f.destroy();
      child.kill();
    },
  };
}

describe("timeouts", () => {
  it("fail an attempt whose connection does not open in time, with a TimeoutError naming the endpoint", async () => {
    const server = await unconnectable();
    try {
      const quota = new RetryQuota();
      const started = Date.now();
      const error = (await call(server.url, {
        ...FAST_RETRY,
        attempts: 2,
        quota,
        timeouts: { connectMs: 200, responseMs: 5000 },
      }).catch((e: unknown) => e)) as AwsError;
      expect(error.name).toBe("TimeoutError");
      expect(error.message).toMatch(/^127\.0\.0\.1:\d+: no connection within 200 ms/);
      const took = Date.now() - started;
      expect(took).toBeGreaterThanOrEqual(390);
      expect(took).toBeLessThan(3000);
      expect(quota.available).toBe(490);
    } finally {
      server.close();
    }
  });

  it("are a second to connect and three for the whole answer by default", () => {
    expect(DEFAULT_TIMEOUTS).toEqual({ connectMs: 1000, responseMs: 3000 });
  });

  it("fail an attempt that gets no answer in time, the retry succeeds, and the timeout costs 10 tokens", async () => {
    const server = await hanging(1);
    try {
      const quota = new RetryQuota();
      const started = Date.now();
      await call(server.url, { ...FAST_RETRY, quota, timeouts: { connectMs: 1000, responseMs: 200 } });
      expect(Date.now() - started).toBeGreaterThanOrEqual(190);
      expect(server.requests()).toBe(2);
      // The retry took 10 and the success gave them back.
      expect(quota.available).toBe(500);
    } finally {
      await server.close();
    }
  });

  it("throw a TimeoutError naming the endpoint once every attempt timed out", async () => {
    const server = await hanging(10);
    try {
      const quota = new RetryQuota();
      const error = (await call(server.url, {
        ...FAST_RETRY,
        quota,
        timeouts: { connectMs: 1000, responseMs: 100 },
      }).catch((e: unknown) => e)) as AwsError;
      expect(error.name).toBe("TimeoutError");
      expect(error.message).toMatch(/^127\.0\.0\.1:\d+: no whole answer within 100 ms/);
      expect(server.requests()).toBe(3);
      expect(quota.available).toBe(480);
    } finally {
      await server.close();
    }
  });
});
