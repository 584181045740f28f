// Architect's WebSocket page (seed 004) as nitric-like runs it: its three functions (ws-connect,
// ws-default, ws-disconnect) as three services, each handling one event of one socket, and its
// handlers' answers in API Gateway's Lambda form. ws-connect is "primarily intended to verify
// event.header.Origin", and there a $connect handler refuses a client by returning a status other
// than 2xx: ported as written, it must keep refusing, on both providers, not let everyone in.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type App, cleanTemp, connect, runCli, startApp, writeProject } from "../src/harness.js";

afterAll(cleanTemp);

const ORIGIN = "https://app.example.com";

const SERVICES = {
  "nitric-like.yaml": "name: arc\nservices:\n  - match: src/ws/*.ts\n",
  "src/ws/ws-connect.ts": `import { websocket } from "@nitric-like/sdk";
const ws = websocket("ws");
// Architect's ws-connect: verify the Origin header, answering as a Lambda does.
ws.on("connect", (ctx) => {
  const origin = ctx.headers.origin?.[0];
  if (ctx.query.status) return { statusCode: Number(ctx.query.status[0]) };
  // An object that merely has the property (a response not received yet) answers nothing.
  if (ctx.query.unset) return { statusCode: null };
  // Not a Lambda answer: an HTTP response the handler happened to return, or an object with more.
  if (ctx.query.response) return new (class Response { statusCode = 404; })();
  if (ctx.query.more) return { statusCode: 404, user: "ann" };
  if (origin !== ${JSON.stringify(ORIGIN)}) return { statusCode: 403, body: "origin not allowed" };
  return { statusCode: 200 };
});
`,
  "src/ws/ws-default.ts": `import { websocket } from "@nitric-like/sdk";
const ws = websocket("ws");
// Architect's ws-default: the page sends {"text":...} and reads {"text":...}, and the function
// answers as a Lambda does; with a body, API Gateway sends the client the body alone.
ws.on("message", async (ctx) => {
  const { text, answer } = ctx.json();
  if (answer === "body") return { statusCode: 200, body: JSON.stringify({ text: "answered: " + text }) };
  await ws.send(ctx.connectionId, { text: "echo: " + text });
  return { statusCode: 200 };
});
`,
  "src/ws/ws-disconnect.ts": `import { websocket } from "@nitric-like/sdk";
const ws = websocket("ws");
ws.on("disconnect", () => ({ statusCode: 200 }));
`,
};

/** The status and body of a refused upgrade. */
async function refusal(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const error = await connect(url, headers).then(
    (c) => {
      c.ws.close();
      throw new Error(`${url} was let in`);
    },
    (e: { status: number; body: string }) => e,
  );
  return { status: error.status, body: error.body };
}

describe.each([
  { provider: "local", args: [] as string[] },
  { provider: "aws", args: ["--provider", "aws"] },
])("Architect's ws-connect answering { statusCode } on the $provider provider", ({ args }) => {
  let app: App;
  beforeAll(async () => {
    app = await startApp(writeProject(SERVICES), args);
  }, 90000);
  afterAll(async () => {
    expect((await app.stop()).code).toBe(0);
  });

  it("refuses a client its { statusCode: 403, body } refuses, with that status and body as the reason", async () => {
    const url = app.url("ws");
    expect(await refusal(url, { Origin: "https://evil.example" })).toEqual({ status: 403, body: "origin not allowed" });
    expect(await refusal(`${url}?status=401`, { Origin: ORIGIN })).toMatchObject({ status: 401 });
  });

  it("lets in a client its { statusCode: 200 } accepts, and one it returns no Lambda answer for, and ws-default answers it", async () => {
    const c = await connect(app.url("ws"), { Origin: ORIGIN });
    c.ws.send(JSON.stringify({ text: "hi" }));
    expect((await c.next()).text).toBe('{"text":"echo: hi"}');
    c.ws.close();
    (await connect(`${app.url("ws")}?unset=1`, { Origin: ORIGIN })).ws.close();
    (await connect(`${app.url("ws")}?response=1`, { Origin: ORIGIN })).ws.close();
    (await connect(`${app.url("ws")}?more=1`, { Origin: ORIGIN })).ws.close();
  });

  it("sends the client a returned { statusCode, body }'s body alone, and nothing for { statusCode: 200 }", async () => {
    const c = await connect(app.url("ws"), { Origin: ORIGIN });
    c.ws.send(JSON.stringify({ text: "one" }));
    c.ws.send(JSON.stringify({ text: "two", answer: "body" }));
    const got = [(await c.next()).text, (await c.next()).text];
    expect(got.sort()).toEqual(['{"text":"answered: two"}', '{"text":"echo: one"}']);
    await expect(c.next(1000)).rejects.toThrow("no frame arrived in time");
    c.ws.close();
  });

  it("refuses with 500 a status that neither accepts nor refuses, and logs what to return", async () => {
    expect(await refusal(`${app.url("ws")}?status=302`, { Origin: ORIGIN })).toEqual({
      status: 500,
      body: "connect handler failed",
    });
    await app.waitFor(/connect handler returned \{ statusCode: 302 \}, which neither accepts nor refuses the client/);
  });
});

describe("Architect's functions copied as they are written, as Lambda handlers", () => {
  it("are told that nothing calls an exported handler(event), and what to register instead", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: arc\nservices:\n  - match: src/ws/*.ts\n  - match: src/ws/*.js\n",
      // The page's own default function, in TypeScript and in CommonJS.
      "src/ws/ws-default.ts": `export const handler = async function ws(event: { body: string }) {
  // event.requestContext.connectionId
  // event.requestContext.apiId
  // event.body
  return {statusCode: 200}
}
`,
      "src/ws/ws-connect.js": "exports.handler = async function ws(event) {\n  return {statusCode: 200}\n}\n",
    });
    const { code, stderr } = await runCli(["run", dir, "--random-ports", "--no-dashboard", "--no-watch"], {
      timeoutMs: 60000,
    });
    expect(code, stderr).toBe(1);
    for (const file of ["src/ws/ws-default.ts", "src/ws/ws-connect.js"]) {
      expect(stderr).toContain(
        `  ${file} exports handler(event), a Lambda function's entry, which nitric-like does not call: register handlers on a socket instead, such as websocket("ws").on("message", (ctx) => ...) with event.body as ctx.text() and event.requestContext.connectionId as ctx.connectionId (README: Code written for Architect)`,
      );
    }
    expect(stderr).not.toContain("is not a service (a helper module, say)");
  }, 90000);
});
