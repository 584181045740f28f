// "An idle transport never keeps its process alive" (wire.ts): a service's process or thread
// that has made its calls must be able to exit without closing anything, as with grpc-js. The
// client runs in a child process or a worker thread, from the built packages (dist).
import { spawn } from "node:child_process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { MessageChannel, Worker } from "node:worker_threads";
import { Health } from "@nitric-like/contracts/health";
import { afterEach, describe, expect, it } from "vitest";
import { GrpcServer } from "./grpc.js";
import { PortServer } from "./port.js";
import { Router } from "./router.js";

const dist = (path: string) => pathToFileURL(fileURLToPath(new URL(`../dist/${path}`, import.meta.url))).href;
const contracts = pathToFileURL(fileURLToPath(new URL("../../contracts/dist/health.js", import.meta.url))).href;

/** Fails a test whose process or thread hangs, well before the test's own timeout. */
const HANG_MS = 15000;

const router = () =>
  new Router().service(Health, { check: (call, respond) => respond(null, { status: call.request.service ? 1 : 2 }) });

let stops: (() => unknown)[] = [];
afterEach(async () => {
  for (const stop of stops) await stop();
  stops = [];
});

describe("an idle transport", () => {
  it("lets a process that made its gRPC calls exit without closing the transport", async () => {
    const server = new GrpcServer(router());
    const port = await server.bind("127.0.0.1:0");
    stops.push(() => server.forceStop());
    const code = `
      import { Client } from ${JSON.stringify(dist("index.js"))};
      import { createGrpcTransport } from ${JSON.stringify(dist("grpc.js"))};
      import { Health } from ${JSON.stringify(contracts)};
      const client = new Client(createGrpcTransport("127.0.0.1:${port}"));
      const answer = await client.unary(Health.method.check, { service: "x" });
      console.log("status", answer.status);
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", code], { stdio: ["ignore", "pipe", "pipe"] });
    stops.push(() => child.kill());
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d;
    });
    child.stderr.on("data", (d: Buffer) => {
      out += d;
    });
    const exit = await new Promise<number | string>((resolve) => {
      const timer = setTimeout(() => resolve("still running"), HANG_MS);
      child.on("exit", (c) => {
        clearTimeout(timer);
        resolve(c ?? "killed");
      });
    });
    expect({ exit, out: out.trim() }).toEqual({ exit: 0, out: "status 1" });
  });

  it("lets a worker thread that made its calls over a port exit without closing the port", async () => {
    const { port1, port2 } = new MessageChannel();
    const server = new PortServer(router());
    server.serve(port1);
    stops.push(() => port1.close());
    const code = `
      import { workerData, parentPort } from "node:worker_threads";
      import { Client, createPortTransport } from ${JSON.stringify(dist("index.js"))};
      import { Health } from ${JSON.stringify(contracts)};
      const client = new Client(createPortTransport(workerData.port));
      const answer = await client.unary(Health.method.check, { service: "x" });
      parentPort.postMessage(answer.status);
    `;
    const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`), {
      workerData: { port: port2 },
      transferList: [port2],
    });
    stops.push(() => worker.terminate());
    const answers: unknown[] = [];
    worker.on("message", (m) => answers.push(m));
    const exit = await new Promise<number | string>((resolve) => {
      const timer = setTimeout(() => resolve("still running"), HANG_MS);
      worker.on("error", (e) => resolve(String(e)));
      worker.on("exit", (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    expect({ exit, answers }).toEqual({ exit: 0, answers: [1] });
  });
});
