// Projects with more than one service, and services started by the project's own command.
import { join } from "node:path";
import { afterAll, afterEach, expect, it } from "vitest";
import { cleanTemp, connect, copyProject, FIXTURES, runCli, sleep, startApp, stopAll } from "../src/harness.js";

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

it("splits one socket's handlers over two services, each with its own endpoint and permissions", async () => {
  const dir = copyProject(join(FIXTURES, "split"));
  const spec = JSON.parse((await runCli(["spec", dir])).stdout);
  expect(spec.resources[0]).toMatchObject({
    name: "hall",
    handlers: { connect: "doorman", disconnect: "doorman", message: "speaker" },
  });

  const app = await startApp(dir);
  const a = await connect(app.url("hall"));
  const b = await connect(app.url("hall"));
  a.ws.send("who");
  const { present } = JSON.parse((await a.next()).text) as { present: string[] };
  expect(present).toHaveLength(2);
  // The speaker declared only .allow("get"): its endpoint may not write, though the doorman's may.
  a.ws.send("write");
  expect((await a.next()).text).toBe("permission_denied");
  b.close();
  let left: string[] = [];
  for (let i = 0; i < 50; i++) {
    a.ws.send("who");
    left = (JSON.parse((await a.next()).text) as { present: string[] }).present;
    if (left.length === 1) break;
    await sleep(50);
  }
  expect(left).toHaveLength(1);

  a.ws.send("env");
  const env = JSON.parse((await a.next()).text) as Record<string, string>;
  expect(env.NITRIC_ENVIRONMENT).toBe("run");
  // A service thread reaches its endpoint over its MessagePort alone: no gRPC address (a process
  // gets its Unix socket as SERVICE_ADDRESS: endpoint.test.ts).
  expect(env.SERVICE_ADDRESS).toBeUndefined();
  expect(env.NITRIC_SERVICE_PORT).toBeUndefined();
  expect(env.NITRIC_SERVICE_HOST).toBeUndefined();

  // Output is forwarded line by line with the service's name: stdout to stdout, stderr to stderr.
  expect(app.stdout).toMatch(/^doorman +\| doorman saw \S+$/m);
  expect(app.stderr).toMatch(/^speaker +\| speaker counted 2$/m);
}, 30000);

it("starts services with the project's own start command", async () => {
  const app = await startApp(copyProject(join(FIXTURES, "start-cmd")));
  const c = await connect(app.url("plain"));
  c.ws.send("hi");
  expect((await c.next()).text).toBe("plain hi");
}, 30000);
