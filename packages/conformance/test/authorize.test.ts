// Connect authorization (`websocket(name, { authorize })`) under `nitric-like run`: the refusals a
// client sees, the identity on every later event and in connection(id), and a token carried as a
// subprotocol, whose accepted protocol the 101 echoes; on local and under `run --provider aws`
// (the emulator runs the template's REQUEST authorizer). Then the template of such an app.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { checkTemplate } from "../src/cfn-spec.js";
import { type App, cleanTemp, connect, runCli, sleep, startApp, writeProject } from "../src/harness.js";

afterAll(cleanTemp);

const SERVICE = `
import { isNitricLikeError, kv, websocket } from "@nitric-like/sdk";

const seen = kv("seen").allow("get", "set");

/** What each call naming the id the authorizer was given does: "ok", or the error's code. */
async function tryEarly(id: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  const calls: [string, () => Promise<unknown>][] = [
    ["send", () => guarded.send(id, "sent while authorizing")],
    ["join", () => guarded.join(id, "early")],
    ["setState", () => guarded.setState(id, { early: true })],
    ["connection", () => guarded.connection(id)],
  ];
  for (const [name, call] of calls) {
    try {
      await call();
      out[name] = "ok";
    } catch (error) {
      out[name] = isNitricLikeError(error) ? error.code : String(error);
    }
  }
  out.isConnected = await guarded.isConnected(id);
  return out;
}

const guarded = websocket("guarded", {
  authorize: async (req) => {
    const offered = req.protocols.find((p) => p.startsWith("token."));
    const token = req.query.token?.[0] ?? offered?.slice("token.".length);
    if (!token) return { status: 401, reason: "missing token" };
    if (token === "early" || token === "early-banned") {
      await seen.set(token + ":" + req.connectionId, await tryEarly(req.connectionId));
      if (token === "early-banned") return { status: 403, reason: "banned: " + token };
    }
    if (token.startsWith("leave-")) {
      // A client that hangs up while this runs (leave-auth-*) or while its connect handler runs.
      await seen.set("leaving:" + token, { id: req.connectionId });
      if (token.startsWith("leave-auth-")) await new Promise((resolve) => setTimeout(resolve, 1200));
      await seen.set("authorized:" + token, { at: Date.now() });
    }
    if (token === "banned") return { status: 403, reason: "banned: " + token };
    if (token === "huge") return { identity: { pad: "x".repeat(9000) } };
    if (token === "throws") throw new Error("secret detail");
    // Past the project's handler timeout (2 s).
    if (token === "slow") await new Promise((resolve) => setTimeout(resolve, 2600));
    // A token offered as a subprotocol is never echoed: the protocol beside it is.
    const protocol = offered ? req.protocols.find((p) => !p.startsWith("token.")) : undefined;
    return protocol === undefined ? { identity: { user: token } } : { identity: { user: token }, protocol };
  },
});

guarded.on("connect", async (ctx) => {
  await seen.set("connect:" + ctx.connectionId, { auth: ctx.auth ?? null });
  if (JSON.stringify(ctx.auth ?? null).includes("leave-connect-")) await new Promise((resolve) => setTimeout(resolve, 1200));
});
guarded.on("disconnect", async (ctx) => {
  await seen.set("disconnect:" + ctx.connectionId, { auth: ctx.auth ?? null });
});
guarded.on("message", async (ctx) => {
  const command = ctx.json<{ op: string; id?: string; token?: string }>();
  if (command.op === "whoami") {
    const info = await guarded.connection(ctx.connectionId);
    const listed = [];
    for await (const c of guarded.connections()) if (c.id === ctx.connectionId) listed.push(c.auth);
    const atConnect = await seen.get("connect:" + ctx.connectionId);
    return { id: ctx.connectionId, auth: ctx.auth, info: info.auth, listed, atConnect: atConnect.auth };
  }
  if (command.op === "early") {
    const early = await seen.get("early:" + ctx.connectionId);
    return { early, members: await guarded.members("early"), state: ctx.connection.state ?? null };
  }
  if (command.op === "left") {
    // What ran for the client that hung up with this token: its authorizer, connect and disconnect.
    const found = async (key: string) => {
      try {
        return (await seen.get(key)) as Record<string, unknown>;
      } catch {
        return null;
      }
    };
    const leaving = await found("leaving:" + command.token);
    const id = leaving ? String(leaving.id) : "";
    return {
      authorizing: leaving !== null,
      authorized: (await found("authorized:" + command.token)) !== null,
      connect: id ? await found("connect:" + id) : null,
      disconnect: id ? await found("disconnect:" + id) : null,
    };
  }
  if (command.op === "gone") {
    try {
      return { auth: (await seen.get("disconnect:" + command.id)).auth };
    } catch {
      return { auth: "none yet" };
    }
  }
  return { error: "unknown op" };
});
`;

function refusal(url: string, protocols?: string[]): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols);
    ws.once("open", () => {
      ws.close();
      reject(new Error("connected"));
    });
    ws.once("error", () => {});
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (d: Buffer) => {
        body += d;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
  });
}

// API Gateway answers an authorizer's refusal with its own body: the reason stays in the log.
const LOCAL = {
  missing: { status: 401, body: "missing token" },
  banned: { status: 403, body: "banned: banned" },
  huge: /identity is \d+ bytes of JSON, over 8192/,
  throws: { status: 500, body: "authorizer failed" },
  slow: { status: 504, body: 'websocket "guarded": the authorizer did not answer within 2 s' },
};
const AWS = {
  missing: { status: 401, body: '{"message":"Unauthorized"}' },
  banned: { status: 403, body: '{"message":"Forbidden"}' },
  huge: /^\{"message":"Internal server error"\}$/,
  throws: { status: 500, body: '{"message":"Internal server error"}' },
  // API Gateway answers every authorizer failure so.
  slow: { status: 500, body: '{"message":"Internal server error"}' },
};

describe.each([
  { provider: "local", args: [] as string[], expected: LOCAL },
  { provider: "local", args: ["--processes"], expected: LOCAL },
  { provider: "aws", args: [] as string[], expected: AWS },
])("authorize on the $provider provider $args", ({ provider, args, expected }) => {
  let app: App;
  let url: string;
  beforeAll(async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: authz\nservices:\n  - match: services/*.ts\nlimits:\n  handlerTimeout: 2s\n",
      "services/guarded.ts": SERVICE,
    });
    app = await startApp(dir, ["--provider", provider, ...args]);
    url = app.url("guarded");
  }, 60000);
  afterAll(async () => {
    const { code } = await app.stop();
    expect(code).toBe(0);
  });

  it("refuses a client without a token with the authorizer's 401 and reason", async () => {
    expect(await refusal(url)).toEqual(expected.missing);
  });

  it("refuses a banned client with the authorizer's 403 and reason", async () => {
    expect(await refusal(`${url}?token=banned`)).toEqual(expected.banned);
  });

  it("refuses an identity over 8 KB with 500 (saying why, where the provider shows reasons)", async () => {
    const { status, body } = await refusal(`${url}?token=huge`);
    expect(status).toBe(500);
    expect(body).toMatch(expected.huge);
  });

  it("refuses with 500 when the authorizer throws, without showing its error", async () => {
    expect(await refusal(`${url}?token=throws`)).toEqual(expected.throws);
  });

  it.runIf(provider === "local")(
    "logs a refusal for an authorizer that threw with the socket and the connection, not a bare reason",
    async () => {
      expect(await refusal(`${url}?token=throws`)).toEqual(expected.throws);
      await app.waitFor(/^error: websocket "guarded" refused connection [\w-]+ with 500: authorizer failed$/m);
      expect(app.stderr).not.toMatch(/^error: authorizer failed$/m);
    },
  );

  it("refuses an authorizer that has not answered within the handler timeout: 504 locally, 500 on AWS", async () => {
    expect(await refusal(`${url}?token=slow`)).toEqual(expected.slow);
  });

  it("gives the identity to connect and message events, connection(id) and connections()", async () => {
    const c = await connect(`${url}?token=alice`);
    const me = await c.call({ op: "whoami" });
    expect(me).toMatchObject({
      auth: { user: "alice" },
      info: { user: "alice" },
      listed: [{ user: "alice" }],
      atConnect: { user: "alice" },
    });
    c.close();
    await c.waitClosed();
    const probe = await connect(`${url}?token=bob`);
    let gone: Record<string, unknown> = {};
    for (let i = 0; i < 100; i++) {
      gone = await probe.call({ op: "gone", id: me.id });
      if (gone.auth !== "none yet") break;
      await sleep(50);
    }
    expect(gone).toEqual({ auth: { user: "alice" } });
    probe.close();
  });

  it("gives the authorizer each query value decoded once, as API Gateway does (%2541 is %41, never A)", async () => {
    const c = await connect(`${url}?token=%2541+b`);
    expect(await c.call({ op: "whoami" })).toMatchObject({ auth: { user: "%41 b" } });
    c.close();
  });

  it("does not count a connection as connected while its authorizer runs, so a refused one leaves nothing behind", async () => {
    // API Gateway has no connection before $connect: on both providers a call naming the id the
    // authorizer was given is not_found, and nothing it could have kept outlives a refusal.
    expect((await refusal(`${url}?token=early-banned`)).status).toBe(403);
    const c = await connect(`${url}?token=early`);
    const notYet = { send: "not_found", join: "not_found", setState: "not_found", connection: "not_found" };
    expect(await c.call({ op: "early" })).toEqual({
      early: { ...notYet, isConnected: false },
      members: [],
      state: null,
    });
    expect(c.frames).toEqual([]);
    c.close();
  });

  it("skips the connect handler of a client that hung up before its authorizer answered, and runs the disconnect of one that hung up during connect", async () => {
    // API Gateway documents only that a connection exists once $connect succeeds. Nothing of a
    // client that left before its authorizer answered was stored, so its connect handler does not
    // run (nor its disconnect); one whose connect handler ran and accepted gets its disconnect
    // (1006), so what the handler stored can be forgotten.
    const probe = await connect(`${url}?token=probe`);
    const left = (token: string) => probe.call({ op: "left", token });
    const hangUp = async (token: string, stage: (r: Record<string, unknown>) => boolean) => {
      const ws = new WebSocket(`${url}?token=${token}`);
      ws.on("error", () => {});
      await expect.poll(async () => stage(await left(token)), { timeout: 10_000, interval: 50 }).toBe(true);
      ws.terminate();
    };
    const nonce = Date.now().toString(36);
    const duringAuth = `leave-auth-${nonce}`;
    const duringConnect = `leave-connect-${nonce}`;
    await hangUp(duringAuth, (r) => r.authorizing === true);
    await hangUp(duringConnect, (r) => r.connect !== null);
    await expect
      .poll(async () => (await left(duringConnect)).disconnect, { timeout: 10_000, interval: 50 })
      .toEqual({ auth: { user: duringConnect } });
    await expect.poll(async () => (await left(duringAuth)).authorized, { timeout: 10_000, interval: 50 }).toBe(true);
    // Time for a connect handler the answer would have started to store its record.
    await sleep(1500);
    expect(await left(duringAuth)).toEqual({ authorizing: true, authorized: true, connect: null, disconnect: null });
    probe.close();
  });

  it("takes a token offered as a subprotocol and echoes the protocol the authorizer accepted", async () => {
    const ws = new WebSocket(url, ["token.carol", "chat"]);
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    expect(ws.protocol).toBe("chat");
    ws.send(JSON.stringify({ op: "whoami" }));
    const reply = await new Promise<string>((resolve) => ws.once("message", (d: Buffer) => resolve(d.toString())));
    expect(JSON.parse(reply)).toMatchObject({ auth: { user: "carol" } });
    ws.close();
  });

  it("says once, without the token, that it let in a client offering subprotocols but chose none, which the client fails", async () => {
    for (const token of ["token.dave-7f3a", "token.erin-7f3a"]) {
      const ws = new WebSocket(url, [token]);
      const error = await new Promise<Error>((resolve) => ws.once("error", resolve));
      expect(error.message).toBe("Server sent no subprotocol");
    }
    const line = "accepted a client that offered subprotocols without choosing one of them, so the client fails";
    await expect.poll(() => app.stderr.includes(line), { timeout: 5000 }).toBe(true);
    expect(app.stderr.split(line).length - 1).toBe(1);
    expect(app.stderr).toContain("have authorize return one of req.protocols as protocol (said once)");
    expect(app.stderr).not.toContain("7f3a");
  });
});

describe("the template of an app with authorize", () => {
  it("has a REQUEST authorizer on $connect, invocable only as that authorizer, and passes the CloudFormation specification", async () => {
    const dir = writeProject({
      "nitric-like.yaml": "name: authz\nservices:\n  - match: services/*.ts\nlimits:\n  handlerTimeout: 2s\n",
      "services/gate.ts": `import { websocket } from "@nitric-like/sdk";
websocket("guarded", { authorize: (req) => (req.query.token ? { identity: { user: req.query.token[0] } } : { status: 401, reason: "no token" }) });
`,
      "services/chat.ts": `import { websocket } from "@nitric-like/sdk";
websocket("guarded").on("connect", () => {}).on("disconnect", () => {}).on("message", (ctx) => ctx.text());
`,
    });
    const out = join(dir, "out");
    const { code, stderr } = await runCli(["build", dir, "--provider", "aws", "--out", out, "--plain"]);
    expect(code, stderr).toBe(0);
    const t = JSON.parse(readFileSync(join(out, "template.json"), "utf8")) as {
      Resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
    };
    const entries = Object.entries(t.Resources);
    const authorizers = entries.filter(([, r]) => r.Type === "AWS::ApiGatewayV2::Authorizer");
    expect(authorizers).toHaveLength(1);
    const [authorizerId, authorizer] = authorizers[0] as [string, { Properties: Record<string, unknown> }];
    expect(authorizer.Properties.AuthorizerType).toBe("REQUEST");
    // No identity sources: a request without a query token may still carry one as a subprotocol.
    expect(authorizer.Properties.IdentitySource).toBeUndefined();
    const gateFn = entries.find(
      ([, r]) =>
        r.Type === "AWS::Lambda::Function" &&
        (r.Properties.Environment as { Variables: Record<string, unknown> }).Variables.NITRIC_LIKE_SERVICE === "gate",
    );
    expect(gateFn).toBeDefined();
    const gateId = gateFn?.[0] as string;
    expect(JSON.stringify(authorizer.Properties.AuthorizerUri)).toContain(`\${${gateId}.Arn}/invocations`);
    const connect = entries.find(
      ([, r]) => r.Type === "AWS::ApiGatewayV2::Route" && r.Properties.RouteKey === "$connect",
    )?.[1];
    expect(connect?.Properties).toMatchObject({ AuthorizationType: "CUSTOM", AuthorizerId: { Ref: authorizerId } });
    for (const [, r] of entries.filter(
      ([, r]) => r.Type === "AWS::ApiGatewayV2::Route" && r.Properties.RouteKey !== "$connect",
    ))
      expect(r.Properties.AuthorizationType).toBeUndefined();
    // The gate function may be invoked by API Gateway as the authorizer and nothing else.
    const gatePermissions = entries.filter(
      ([, r]) =>
        r.Type === "AWS::Lambda::Permission" &&
        JSON.stringify(r.Properties.FunctionName) === JSON.stringify({ "Fn::GetAtt": [gateId, "Arn"] }),
    );
    expect(gatePermissions.map(([, r]) => r.Properties.SourceArn)).toEqual([
      {
        "Fn::Sub": expect.stringMatching(new RegExp(`/authorizers/\\$\\{${authorizerId}\\}$`)) as unknown as string,
      },
    ]);
    const gateEnv = gateFn?.[1].Properties.Environment as { Variables: Record<string, unknown> } | undefined;
    const vars = gateEnv?.Variables ?? {};
    expect(String((vars.NITRIC_LIKE_WEBSOCKETS as { "Fn::Sub": string })["Fn::Sub"])).toContain('"authorize":true');
    expect(await checkTemplate(t as Parameters<typeof checkTemplate>[0])).toEqual([]);
  }, 60000);

  it("refuses a socket with two authorizers at build, naming both services", async () => {
    const service = `import { websocket } from "@nitric-like/sdk";
websocket("guarded", { authorize: () => ({ identity: 1 }) }).on("connect", () => {}).on("disconnect", () => {}).on("message", () => {});
`;
    const dir = writeProject({
      "nitric-like.yaml": "name: authz\nservices:\n  - match: services/*.ts\nlimits:\n  handlerTimeout: 2s\n",
      "services/one.ts": service,
      "services/two.ts": service.replace(/\.on\(.*$/m, ";"),
    });
    const { code, stderr } = await runCli(["build", dir, "--provider", "aws", "--out", join(dir, "out"), "--plain"]);
    expect(code).not.toBe(0);
    expect(stderr).toContain(
      'websocket guarded: authorized by "one" and "two"; a socket has exactly one authorizer, so give websocket("guarded", { authorize }) in one service only',
    );
  }, 60000);
});
