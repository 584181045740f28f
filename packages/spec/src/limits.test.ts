import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_LIMITS, formatDuration, parseLimits, resolveLimits } from "./limits.js";
import { checkEnvironment, loadProject, socketLimitsOf } from "./project.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function load(yaml: string) {
  const dir = mkdtempSync(join(tmpdir(), "nitric-like-limits-"));
  dirs.push(dir);
  writeFileSync(join(dir, "nitric-like.yaml"), `name: x\nservices:\n  - match: s/*.ts\n${yaml}`);
  return loadProject(dir);
}

describe("limits in the project file", () => {
  it("defaults to API Gateway's limits and Ampt's handler timeout", () => {
    expect(resolveLimits()).toEqual({
      maxMessageBytes: 131072,
      idleTimeoutMs: 600_000,
      maxConnectionAgeMs: 7_200_000,
      maxConnections: 10_000,
      messagesPerSecond: 1000,
      messageBurst: 1000,
      maxPendingMessages: 100,
      maxPendingBytes: 1024 * 1024,
      upgradeTimeoutMs: 10_000,
      handlerTimeoutMs: 5000,
      maxPendingBytesTotal: 32 * 1024 * 1024,
      maxQueuedBytesTotal: 64 * 1024 * 1024,
    });
    expect(DEFAULT_LIMITS.maxMessageBytes).toBe(128 * 1024);
  });

  it("reads top-level limits and per-socket ones, the socket's winning", () => {
    const p = load(
      "limits:\n  idleTimeout: 30s\n  maxMessageBytes: 64KB\n  handlerTimeout: 60s\n  messagesPerSecond: 20\nwebsockets:\n  chat:\n    limits:\n      idleTimeout: 500ms\n      maxConnections: 3\n      maxConnectionAge: 1.5h\n",
    );
    expect(p.limits).toEqual({
      idleTimeoutMs: 30_000,
      maxMessageBytes: 65536,
      handlerTimeoutMs: 60_000,
      messagesPerSecond: 20,
    });
    const chat = resolveLimits(p.limits, p.websockets.chat?.limits);
    expect(chat).toMatchObject({
      idleTimeoutMs: 500,
      maxConnections: 3,
      maxConnectionAgeMs: 5_400_000,
      maxMessageBytes: 65536,
      messagesPerSecond: 20,
      // One second's worth when only the rate is set.
      messageBurst: 20,
    });
  });

  it("names the key, the value and the fix for every invalid limit", () => {
    const cases: [string, RegExp][] = [
      ["limits:\n  idleTimeout: 10\n", /limits\.idleTimeout is 10: use a duration .* such as 10m$/],
      ["limits:\n  idleTimeout: ten minutes\n", /limits\.idleTimeout is "ten minutes": use a duration/],
      ["limits:\n  handlerTimeout: 61s\n", /limits\.handlerTimeout is "61s": use a duration from 1ms to 60s /],
      ["limits:\n  maxMessageBytes: -1\n", /limits\.maxMessageBytes is -1: use a size from 1 byte to 64MB/],
      ["limits:\n  maxMessageBytes: 12 parsecs\n", /limits\.maxMessageBytes is "12 parsecs": use a size/],
      ["limits:\n  maxConnections: 1.5\n", /limits\.maxConnections is 1\.5: use a whole number from 1/],
      ["limits:\n  messagesPerSecond: 0\n", /limits\.messagesPerSecond is 0: use a number above 0/],
      [
        "limits:\n  maxConections: 5\n",
        /limits\.maxConections is not a limit; did you mean maxConnections\? The limits are maxMessageBytes, idleTimeout/,
      ],
      ["limits: 5\n", /limits must be a mapping/],
      [
        "websockets:\n  chat:\n    limits:\n      handlerTimeout: 5s\n",
        /websockets\.chat\.limits\.handlerTimeout applies to every handler; set it under the top-level limits: instead/,
      ],
      [
        "websockets:\n  chat:\n    limits:\n      maxPendingBytesTotal: 8MB\n",
        /websockets\.chat\.limits\.maxPendingBytesTotal is shared by every socket; set it under the top-level limits: instead/,
      ],
      ["limits:\n  upgradeTimeout: 11m\n", /limits\.upgradeTimeout is "11m": use a duration from 1ms to 10m /],
      ["limits:\n  maxPendingMessages: 0\n", /limits\.maxPendingMessages is 0: use a whole number from 1/],
      [
        "limits:\n  maxQueuedBytesTotal: 5000MB\n",
        /limits\.maxQueuedBytesTotal is "5000MB": use a size from 1 byte to 4096MB/,
      ],
    ];
    for (const [yaml, message] of cases) {
      expect(() => load(yaml), yaml).toThrow(message);
      expect(() => load(yaml)).toThrow(/nitric-like\.yaml: /);
    }
  });

  it("parses the units it documents and nothing else", () => {
    expect(parseLimits({ idleTimeout: "250ms", maxConnectionAge: "2m", maxMessageBytes: "1MB" }, "limits")).toEqual({
      idleTimeoutMs: 250,
      maxConnectionAgeMs: 120_000,
      maxMessageBytes: 1024 * 1024,
    });
    expect(() => parseLimits({ idleTimeout: "2d" }, "limits")).toThrow(/limits\.idleTimeout/);
  });

  it("reads the flow limits: pending messages and bytes per connection, upgrade timeout, and the shared totals", () => {
    const p = load(
      "limits:\n  maxPendingBytesTotal: 8MB\n  maxQueuedBytesTotal: 16MB\n  upgradeTimeout: 2s\nwebsockets:\n  chat:\n    limits:\n      maxPendingMessages: 10\n      maxPendingBytes: 64KB\n",
    );
    expect(socketLimitsOf(p, "chat")).toMatchObject({
      maxPendingMessages: 10,
      maxPendingBytes: 64 * 1024,
      upgradeTimeoutMs: 2000,
      maxPendingBytesTotal: 8 * 1024 * 1024,
      maxQueuedBytesTotal: 16 * 1024 * 1024,
    });
  });

  it("formats durations for close reasons", () => {
    expect(formatDuration(600_000)).toBe("10 min");
    expect(formatDuration(7_200_000)).toBe("2 h");
    expect(formatDuration(1500)).toBe("1.5 s");
    expect(formatDuration(200)).toBe("200 ms");
  });

  it("applies an environment's limits over the project's, and a socket's in it over both", () => {
    const p = load(
      [
        "limits:\n  messagesPerSecond: 100\n  idleTimeout: 10m",
        "websockets:\n  chat:\n    limits:\n      maxConnections: 50",
        "environments:",
        "  local:\n    limits:\n      messagesPerSecond: 5",
        "  prod:\n    limits:\n      idleTimeout: 1m\n    websockets:\n      chat:\n        limits:\n          maxConnections: 5000",
        "",
      ].join("\n"),
    );
    expect(socketLimitsOf(p, "chat", "local")).toMatchObject({
      messagesPerSecond: 5,
      messageBurst: 5,
      maxConnections: 50,
    });
    expect(socketLimitsOf(p, "chat", "prod")).toMatchObject({
      messagesPerSecond: 100,
      idleTimeoutMs: 60_000,
      maxConnections: 5000,
    });
    expect(socketLimitsOf(p, "other", "prod")).toMatchObject({ maxConnections: 10_000, idleTimeoutMs: 60_000 });
    expect(() => checkEnvironment(p, "prod")).not.toThrow();
    expect(() => checkEnvironment(p, "staging")).toThrow(
      'nitric-like.yaml: no environment "staging"; use one of local, prod, or add it under environments: (an empty one, "staging: {}", changes no setting)',
    );
    expect(() => load("environments:\n  prod:\n    limit: {}\n")).toThrow(
      "nitric-like.yaml: environments.prod.limit is not a setting; did you mean environments.prod.limits?",
    );
    expect(() => load("environments:\n  prod:\n    limits:\n      idleTimeout: 5\n")).toThrow(
      /environments\.prod\.limits\.idleTimeout is 5: use a duration/,
    );
  });
});
