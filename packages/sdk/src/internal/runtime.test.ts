// Process lifetime: real service processes (node running the built SDK) against a real gRPC
// server playing the provider. These need `pnpm build` first (the test command builds). And the
// transport a runner gives the SDK (useTransport), in this process.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { KvStore } from "@nitric-like/contracts/kvstore";
import { Resources, ResourceType } from "@nitric-like/contracts/resources";
import { WebsocketEventType } from "@nitric-like/contracts/websockets";
import { Code, createMemoryTransport, Router, RpcError } from "@nitric-like/rpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FakeProvider, startFakeProvider } from "../../test/fake-provider.js";
import { kv } from "../resources/kv.js";
import { useTransport } from "./runtime.js";

const dist = fileURLToPath(new URL("../../dist/index.js", import.meta.url));
let provider: FakeProvider;

beforeAll(async () => {
  if (!existsSync(dist)) throw new Error(`${dist} is missing: run pnpm build first`);
  provider = await startFakeProvider();
});
afterAll(async () => {
  await provider.stop();
});

/** Runs a service process; resolves with its exit code and stderr once it exits by itself. */
function service(code: string, environment: "run" | "build") {
  const child = spawn(process.execPath, ["--input-type=module", "-e", code], {
    env: { ...process.env, SERVICE_ADDRESS: provider.address, NITRIC_ENVIRONMENT: environment },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    stderr += d;
  });
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.on("exit", (exitCode) => {
      clearTimeout(timer);
      resolve({ code: exitCode, stderr });
    });
  });
  return { exited };
}

const sdk = JSON.stringify(dist);

describe("service process lifetime", () => {
  it("exits 1 with the provider's reason when a declaration is refused", async () => {
    provider.refuse = (request) =>
      request.id?.name === "refused"
        ? new RpcError(Code.FAILED_PRECONDITION, 'websocket "refused" is handled by service "other"')
        : undefined;
    try {
      const { exited } = service(
        `import { websocket } from ${sdk}; websocket("refused").on("connect", () => {}); setInterval(() => {}, 1000);`,
        "run",
      );
      const result = await exited;
      expect(result).toEqual({
        code: 1,
        stderr:
          'nitric-like: websocket("refused") could not be declared: websocket "refused" is handled by service "other"\n',
      });
    } finally {
      provider.refuse = undefined;
    }
  });

  it("exits by itself once the provider ends every handler stream with OK (the collect pass)", async () => {
    const { exited } = service(
      `import { kv, websocket } from ${sdk};
       const store = kv("collect-store").allow("get", "set");
       websocket("collect").on("connect", () => {}).on("message", () => {});
       websocket("collect").on("disconnect", () => {});`,
      "build",
    );
    const streams = await Promise.all(
      [WebsocketEventType.Connect, WebsocketEventType.Disconnect, WebsocketEventType.Message].map((t) =>
        provider.stream("collect", t),
      ),
    );
    // Ending some streams must not end the process: the others still keep it alive.
    streams[0]?.end();
    streams[1]?.end();
    const early = await Promise.race([exited, new Promise((r) => setTimeout(() => r("alive"), 300))]);
    expect(early).toBe("alive");
    streams[2]?.end();
    expect(await exited).toEqual({ code: 0, stderr: "" });
    expect(provider.log).toContain("declare KeyValueStore collect-store");
  });

  it("refuses a handler registered in a timer once the runner said the module loaded, naming the socket, the route and the fix", async () => {
    const runtimeEntry = JSON.stringify(fileURLToPath(new URL("../../dist/runtime.js", import.meta.url)));
    const { exited } = service(
      `import { websocket } from ${sdk}; import { serviceLoaded } from ${runtimeEntry};
       const socket = websocket("loaded").on("message", () => {});
       socket.route("top", () => "top");
       serviceLoaded();
       setTimeout(() => socket.route("join", () => "joined"), 50);`,
      "run",
    );
    const result = await exited;
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      'websocket("loaded").route("join"): the service registered it after its module finished loading (in a timer, a callback or a handler)',
    );
    expect(result.stderr).toContain(
      "register handlers at module load: at top level or during import, not in a timer/callback",
    );
  });

  it("refuses a resource or a wider grant declared in a timer once the module loaded, naming it and the fix; a handle declared at load keeps working", async () => {
    const runtimeEntry = JSON.stringify(fileURLToPath(new URL("../../dist/runtime.js", import.meta.url)));
    const { exited } = service(
      `import { collection, kv, secret, websocket } from ${sdk}; import { serviceLoaded } from ${runtimeEntry};
       const names = kv("names").allow("get");
       collection("docs").for("reading");
       secret("token").allow("access");
       websocket("top");
       serviceLoaded();
       const tries = [
         ["new kv", () => kv("late")],
         ["wider kv", () => kv("names").allow("get", "set")],
         ["same kv", () => kv("names").allow("get")],
         ["new secret", () => secret("late")],
         ["wider secret", () => secret("token").allow("put")],
         ["new socket", () => websocket("late", {})],
         ["same socket", () => websocket("top")],
         ["new collection", () => collection("late").for("writing")],
         ["wider collection", () => collection("docs").for("reading", "writing")],
         ["same collection", () => collection("docs").for("reading")],
       ];
       setTimeout(async () => {
         for (const [what, f] of tries) {
           try { f(); console.error(what + ": ok"); } catch (e) { console.error(what + ": " + e.code + ": " + e.message); }
         }
         await names.get("k").then(() => console.error("get: ok"), (e) => console.error("get: " + e.code));
       }, 20);`,
      "run",
    );
    const result = await exited;
    expect(result.code).toBe(0);
    const said = new Map(
      result.stderr
        .trim()
        .split("\n")
        .map((line) => [line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 2)] as const),
    );
    const when =
      "after its module finished loading (in a timer, a callback or a handler), so spec, build and up may never see it and a deployment would not include it; declare resources at module load: at top level or during import, not in a timer/callback";
    expect(said.get("new kv")).toBe(
      `failed_precondition: kv("late"): the service declared it ${when}, as kv("late"), and use that handle later`,
    );
    expect(said.get("wider kv")).toBe(
      `failed_precondition: kv("names").allow("set"): the service asked for "set" after its module finished loading, beyond the "get" it granted as it loaded (in a timer, a callback or a handler), so spec, build and up may never see it and a deployment would not include it; declare resources at module load: at top level or during import, not in a timer/callback, as kv("names").allow("get", "set"), and use that handle later`,
    );
    expect(said.get("new secret")).toContain(`failed_precondition: secret("late"): the service declared it ${when}`);
    expect(said.get("wider secret")).toContain(
      'failed_precondition: secret("token").allow("put"): the service asked for "put" after its module finished loading, beyond the "access" it granted as it loaded',
    );
    expect(said.get("wider secret")).toContain('as secret("token").allow("access", "put")');
    expect(said.get("new socket")).toContain(`failed_precondition: websocket("late"): the service declared it ${when}`);
    expect(said.get("new collection")).toBe(
      `failed_precondition: collection("late").for("writing"): the service declared it ${when}, as collection("late").for("writing"), and use that handle later`,
    );
    expect(said.get("wider collection")).toContain(
      'failed_precondition: collection("docs").for("writing"): the service asked for "writing" after its module finished loading, beyond the "reading" it granted as it loaded',
    );
    expect(said.get("wider collection")).toContain('as collection("docs").for("reading", "writing")');
    for (const same of ["same kv", "same socket", "same collection"]) expect(said.get(same)).toBe("ok");
    // The handle declared at load is used in the timer as before (the fake provider has no "k").
    expect(said.get("get")).toBe("not_found");
    // Nothing refused reached the provider.
    expect(provider.log.filter((l) => /declare \w+ late$/.test(l))).toEqual([]);
  });

  it("exits 1 saying the connection was lost when a handler stream fails in run", async () => {
    const { exited } = service(
      `import { websocket } from ${sdk}; websocket("lost").on("message", () => {}); setInterval(() => {}, 1000);`,
      "run",
    );
    const stream = await provider.stream("lost", WebsocketEventType.Message);
    stream.fail(Code.UNAVAILABLE, "provider restarting");
    expect(await exited).toEqual({
      code: 1,
      stderr: "nitric-like: lost the connection to the provider (provider restarting)\n",
    });
  });
});

describe("the transport a runner gives", () => {
  it("carries every call of the SDK once useTransport has been called, and SERVICE_ADDRESS none", async () => {
    // Were the transport ignored, the calls would reach the gRPC provider at SERVICE_ADDRESS.
    process.env.SERVICE_ADDRESS = provider.address;
    const heard: string[] = [];
    const values = new Map<string, unknown>();
    const router = new Router()
      .service(Resources, {
        declare(call, respond) {
          heard.push(`${call.peer} declare ${ResourceType[call.request.id?.type ?? 0]} ${call.request.id?.name ?? ""}`);
          respond(null, {});
        },
      })
      .service(KvStore, {
        getValue(call, respond) {
          const { store = "", key = "" } = call.request.ref ?? {};
          heard.push(`${call.peer} getValue ${store} ${key}`);
          const content = values.get(key);
          if (content === undefined) return respond(new RpcError(Code.NOT_FOUND, `key ${key} not found`));
          respond(null, { value: { ref: { store, key }, content: content as never } });
        },
        setValue(call, respond) {
          const { store = "", key = "" } = call.request.ref ?? {};
          heard.push(`${call.peer} setValue ${store} ${key}`);
          values.set(key, call.request.content);
          respond(null, {});
        },
        deleteKey(call, respond) {
          respond(new RpcError(Code.UNIMPLEMENTED, `${call.path}: not served here`));
        },
        scanKeys(call) {
          call.fail(new RpcError(Code.UNIMPLEMENTED, `${call.path}: not served here`));
        },
      });
    useTransport(createMemoryTransport(router, "runner"));
    const store = kv<{ n: number }>("given-transport").allow("get", "set");
    await store.set("k", { n: 1 });
    expect(await store.get("k")).toEqual({ n: 1 });
    await expect(store.get("missing")).rejects.toMatchObject({ code: "not_found" });
    expect(heard).toEqual([
      "runner declare KeyValueStore given-transport",
      "runner declare Policy ",
      "runner setValue given-transport k",
      "runner getValue given-transport k",
      "runner getValue given-transport missing",
    ]);
    expect(provider.declarations.filter((d) => JSON.stringify(d).includes("given-transport"))).toEqual([]);
    expect(provider.log.filter((l) => l.includes("given-transport"))).toEqual([]);
  });
});
