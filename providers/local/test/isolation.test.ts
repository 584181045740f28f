// Isolation: everything listens on 127.0.0.1 unless told otherwise (--host, with a warning), and a
// service's endpoint carries only that service's own declared permissions.
import { readFileSync } from "node:fs";
import { connect } from "node:net";
import { networkInterfaces } from "node:os";
import { KvStore } from "@nitric-like/contracts/kvstore";
import { Action } from "@nitric-like/contracts/resources";
import { Websocket } from "@nitric-like/contracts/websockets";
import { Code } from "@nitric-like/rpc";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  cleanup,
  declareSocket,
  declareStore,
  serviceClient,
  startProvider,
  TRANSPORTS,
  urlOf,
  useTransport,
} from "./helpers.js";
import { portOf } from "./raw.js";

afterEach(cleanup);

/** The local addresses listening on a TCP port, from the kernel's own table (/proc/net/tcp). */
function listeners(port: number): string[] {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  return readFileSync("/proc/net/tcp", "utf8")
    .split("\n")
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f[3] === "0A" && f[1]?.endsWith(`:${hexPort}`))
    .map((f) => {
      const hex = (f[1] as string).split(":")[0] as string;
      // Little-endian bytes of the IPv4 address.
      return [3, 2, 1, 0].map((i) => Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16)).join(".");
    });
}

/** This machine's first address that is not loopback, if it has one. */
function otherAddress(): string | undefined {
  return Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === "IPv4" && !a.internal)?.address;
}

function refused(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, host);
    s.once("connect", () => {
      s.destroy();
      resolve(false);
    });
    s.once("error", () => resolve(true));
  });
}

describe("listening addresses", () => {
  it("binds every gateway and every service endpoint to 127.0.0.1 only", async () => {
    const { provider } = await startProvider();
    const a = await serviceClient(provider, "a");
    await serviceClient(provider, "b");
    await declareSocket(a, "chat");
    const ports = [
      portOf(urlOf(provider, "chat")),
      portOf(await provider.endpoint("a")),
      portOf(await provider.endpoint("b")),
    ];
    for (const port of ports) expect(listeners(port)).toEqual(["127.0.0.1"]);
    const other = otherAddress();
    if (other) for (const port of ports) expect(await refused(other, port)).toBe(true);
  });

  it("binds the gateways elsewhere only when told to, warning, and keeps the endpoints on 127.0.0.1", async () => {
    const { provider, logs } = await startProvider({ host: "0.0.0.0" });
    const a = await serviceClient(provider, "a");
    await declareSocket(a, "chat");
    expect(urlOf(provider, "chat")).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
    expect(listeners(portOf(urlOf(provider, "chat")))).toEqual(["0.0.0.0"]);
    expect(listeners(portOf(await provider.endpoint("a")))).toEqual(["127.0.0.1"]);
    expect(logs.warn).toContain(
      "--host 0.0.0.0: the websocket gateways accept connections from other machines; anyone who can reach this one can connect (the services' endpoints stay on this machine)",
    );
  });
});

describe.each(TRANSPORTS)("per-service permissions over %s", (transport) => {
  beforeEach(() => useTransport(transport));
  it("does not let service A's endpoint use what only service B declared", async () => {
    const { provider } = await startProvider();
    const a = await serviceClient(provider, "a");
    const b = await serviceClient(provider, "b");
    await declareStore(b, "secrets", [Action.KeyValueStoreRead, Action.KeyValueStoreWrite, Action.KeyValueStoreDelete]);
    await declareStore(a, "public", [Action.KeyValueStoreRead]);
    await declareSocket(b, "admin");
    await b.unary(KvStore.method.setValue, { ref: { store: "secrets", key: "k" }, content: { v: 1 } });
    for (const call of [
      a.unary(KvStore.method.getValue, { ref: { store: "secrets", key: "k" } }),
      a.unary(KvStore.method.setValue, { ref: { store: "secrets", key: "k" }, content: {} }),
      a.unary(KvStore.method.deleteKey, { ref: { store: "secrets", key: "k" } }),
      a.unary(KvStore.method.setValue, { ref: { store: "public", key: "k" }, content: {} }),
    ]) {
      await expect(call).rejects.toMatchObject({
        code: Code.PERMISSION_DENIED,
        details: expect.stringMatching(
          /^kv\("(secrets|public)"\): service "a" may not \w+ keys; add \.allow\("\w+"\) to kv\("\1"\) in that service$/,
        ),
      });
    }
    await expect(
      a.unary(Websocket.method.sendMessage, { socketName: "admin", connectionId: "x", data: new Uint8Array() }),
    ).rejects.toMatchObject({
      code: Code.PERMISSION_DENIED,
      details: 'websocket("admin"): service "a" may not manage it; declare websocket("admin") in that service',
    });
    // B still can: the refusals were A's alone.
    expect((await b.unary(KvStore.method.getValue, { ref: { store: "secrets", key: "k" } })).value?.content).toEqual({
      v: 1,
    });
  });

  it("grants what the collect pass found before the service declares it again, to that service only", async () => {
    const { provider } = await startProvider({
      spec: {
        name: "test",
        services: [
          { name: "a", file: "services/a.ts" },
          { name: "b", file: "services/b.ts" },
        ],
        resources: [{ kind: "kv", name: "items", declaredBy: ["a", "b"] }],
        policies: [
          { service: "a", resource: { kind: "kv", name: "items" }, permissions: ["get", "set"] },
          { service: "b", resource: { kind: "kv", name: "items" }, permissions: ["get"] },
        ],
      },
    });
    const a = await serviceClient(provider, "a");
    const b = await serviceClient(provider, "b");
    // Neither has declared anything in this run yet (the published @nitric/sdk may call first).
    await a.unary(KvStore.method.setValue, { ref: { store: "items", key: "k" }, content: { v: 1 } });
    expect((await b.unary(KvStore.method.getValue, { ref: { store: "items", key: "k" } })).value?.content).toEqual({
      v: 1,
    });
    await expect(
      b.unary(KvStore.method.setValue, { ref: { store: "items", key: "k" }, content: {} }),
    ).rejects.toMatchObject({ code: Code.PERMISSION_DENIED });
  });
});
